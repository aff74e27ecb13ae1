# Prediction error vs planning success: `python benchmarks/mse_vs_success.py [--quick]`. docs/reference.md §6
"""Does a world model's prediction error along the trajectories it plans tell its successes from its failures?
The paper's answer (docs/reference.md §6): per-trajectory MSE overlaps heavily between successes and failures in
every regime. This benchmark reproduces the comparison and adds two numbers the paper lacks.

Models: LeWM (planned with CEM) and PLDM (MPPI), each planned with the solver its checkpoint names, at that
solver's default settings (the paper's: 300 samples x 30 iterations, horizon 5, replanning every 5 model steps).
The checkpoints come from ``benchmarks/success_table.py``'s cache: it is run once as a subprocess with the same
--out-dir (default: its own cache, runs/success_table, so the models and plans of a ``success_table.py --quick``
run are reused), which collects its data (400 training episodes, 70% scripted expert, 60 held-out ones), trains
one model per baseline and seed (seed k: training seed k, pairs drawn with seed k, the data of --seed) and plans
the held-out pairs with the solver mains. The planning that is recorded is done here, in process, with the same
solver, settings and seeds, so the ``held_out`` regime replays success_table's pairs and its success % equals
success_table's (kept in the JSON as ``success_table``: a check that the recording changes nothing).

Regimes (the dataset-driven protocol: start at a recorded state, the goal is the recorded frame ``goal_offset``
env steps later, ``eval_budget`` env steps allowed, the episode ends at its first success):

- ``train``: pairs from the training data (success_table's 70%-expert mix the models were trained on);
- ``held_out``: pairs from success_table's held-out data (the same mix, never trained on);
- ``random``: pairs from episodes of the uniform random policy (collected here, seed --seed + 20000);
- ``random_all_fov``: random-policy episodes collected with every factor of variation sampled (``--variation
  all``; seed --seed + 30000) and planned under ``--variation all`` (every leaf drawn afresh per episode; the goal is
  rendered under the drawn values, a start that the drawn layout makes collide is moved to the nearest free spot).

Prediction error of one planned episode: a policy wrapper around MPCPolicy records the frames the planner was
shown and the actions it executed (World assigns episode e to env slot e % num_envs, in order). The model encodes
the first frame, rolls its predictor open loop over the executed actions in blocks of its frameskip
(``action_block``) and compares the k-th prediction with the encoding of the frame observed k blocks later:
``e_k = mean over latent dims of (z_hat_k - z_k)^2`` (the model's own latent space; the last frame of an episode is
never shown to a policy, so K = (steps - 1) // action_block predictions). The per-trajectory MSE is the mean of
``e_k`` over the first ``--rollout-steps`` predictions (default: the planner's horizon, the look-ahead it relied
on); the whole-episode mean is kept too. Episodes with no prediction (solved within one block) are counted apart.

What the paper lacks:

- the ROC AUC of the per-trajectory MSE as a predictor of *failure* (failures are the positives): the
  Mann-Whitney statistic from average ranks (ties averaged), i.e. P(error of a failure > error of a success) +
  half P(equal); 0.5 = no information. Per seed, then mean ± std over seeds.
- the error on the task-relevant direction: at each prediction, the component of the latent error along the unit
  vector from the actual latent z_k to the goal latent z_g, ``p_k = <z_hat_k - z_k, (z_g - z_k) / |z_g - z_k|>``
  (positive: the model believes the agent nearer the goal than it is). The table reports the mean of ``p_k^2``
  over the same steps as the MSE; for an isotropic error its expectation equals the MSE, so a larger value means
  the error concentrates on the direction that matters for reaching the goal. Its AUC is computed the same way.

Output: ``--results-dir``/mse_vs_success[_quick|_smoke].json (every episode's success, length and per-step
errors), a PNG of overlaid histograms of log10 MSE (successes vs failures) per model and regime, and the record
mse_vs_success-<config>.json (``python scripts/results_md.py``).

--quick: Two-Room, LeWM and PLDM, 3 seeds, 50 pairs per regime, the solvers' default settings, one thread on a
2-core CPU (docs/notes/robustness.md has the time estimate). --smoke: the seconds-long run the tests use (LeWM
only, 2 training steps, 2 pairs, tiny CEM). The default is the full run for a GPU: 5 seeds.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from swm_core import MPCPolicy, RandomPolicy, World
from swm_core.checkpoint import import_script, load_checkpoint
from swm_core.data import open_dataset
from swm_core.policy import BasePolicy
from swm_core.shift import parse_shift

ROOT = Path(__file__).resolve().parent.parent
common = import_script(Path(__file__).with_name("common.py"))
REGIMES = {
    "train": "pairs from the training data (70% scripted expert)",
    "held_out": "pairs from held-out data of the same mix",
    "random": "pairs from random-policy episodes",
    "random_all_fov": "random-policy episodes with every FoV leaf sampled, planned under --variation all",
}
# world models planned in latent space with an encoder and an open-loop rollout (encode, rollout)
MODELS = ("lewm", "pldm")
# seeds added to --seed for the random-policy datasets collected here
RANDOM_SEED_OFFSET = {"random": 20_000, "random_all_fov": 30_000}
# --smoke solver settings, as success_table's --smoke plans (the other modes: each solver main's defaults)
SMOKE_SOLVER = {"cem": {"num_samples": 8, "topk": 2, "iters": 2}, "icem": {"num_samples": 8, "topk": 2, "iters": 2},
                "mppi": {"num_samples": 8, "iters": 2}, "predictive_sampling": {"num_samples": 8, "iters": 2}}


@dataclass
class Args:
    env_id: str = "swm/TwoRoom-v1"
    """the env (a native swm env with factors of variation that success_table can train on)"""
    models: tuple[str, ...] = MODELS
    """world models to study (lewm, pldm), each planned with its checkpoint's default solver"""
    regimes: tuple[str, ...] = tuple(REGIMES)
    """which regimes: train, held_out, random, random_all_fov"""
    seeds: int = 5
    """models per baseline (training seeds seed, seed + 1, ...; seed k draws the pairs with seed k)"""
    seed: int = 0
    """the first seed; also the seed of success_table's data and (+20000, +30000) of the random datasets"""
    episodes: int = 50
    """start/goal pairs planned per regime, model and seed"""
    random_episodes: int = 60
    """episodes of each random-policy dataset (100 env steps each)"""
    goal_offset: int = 25
    """the goal is the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per pair"""
    num_envs: int = 10
    """envs planned together"""
    rollout_steps: int | None = None
    """model steps of the open-loop rollout averaged into the per-trajectory MSE (default: the solver's horizon)"""
    out_dir: str = "runs/success_table"
    """success_table's cache (datasets, checkpoints), shared with it; the random datasets are collected here too"""
    results_dir: str = "benchmarks/results"
    """where mse_vs_success[_quick|_smoke].json and .png go, and the run's record mse_vs_success-<config>.json"""
    device: str = "auto"
    """torch device for training and planning (auto: cuda if available, else cpu)"""
    threads: int = 1
    """torch threads here and OMP_NUM_THREADS of the subprocesses (0: inherit)"""
    quick: bool = False
    """a CPU run: 3 seeds, 50 pairs per regime, LeWM and PLDM on Two-Room"""
    smoke: bool = False
    """seconds-long run for tests: LeWM, 1 seed, 2 training steps, 2 pairs, tiny CEM"""


MODE_SIZES = {"quick": dict(seeds=3),
              "smoke": dict(models=("lewm",), seeds=1, episodes=2, random_episodes=2, num_envs=2)}


def apply_mode(args: Args, mode: str) -> None:
    """The mode's sizes, for the fields still at their defaults."""
    defaults = Args()
    for field, value in MODE_SIZES.get(mode, {}).items():
        if getattr(args, field) == getattr(defaults, field):
            setattr(args, field, value)


def check_args(args: Args) -> None:
    """Bad input fails here, before any data collection or training."""
    bad = [m for m in args.models if m not in MODELS]
    if bad or not args.models:
        raise ValueError(f"--models {list(args.models)}: unknown model(s) {bad}; allowed: {', '.join(MODELS)}")
    bad = [r for r in args.regimes if r not in REGIMES]
    if bad or not args.regimes:
        raise ValueError(f"--regimes {list(args.regimes)}: unknown regime(s) {bad}; allowed: {', '.join(REGIMES)}")
    for name in ("seeds", "episodes", "random_episodes", "goal_offset", "eval_budget", "num_envs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.rollout_steps is not None and args.rollout_steps < 1:
        raise ValueError(f"--rollout-steps must be >= 1 model steps, got {args.rollout_steps}")
    parse_shift(args.env_id, ["all"])  # an unknown env, or one without factors of variation, fails here


# ------------------------------------------------------------------------------------------------- the AUC


def average_ranks(x) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def roc_auc(scores, positive) -> float:
    """ROC AUC of ``scores`` as a predictor of ``positive`` (bool per score): the Mann-Whitney U of the positives
    over n_pos * n_neg, from average ranks, so a tie between a positive and a negative counts one half. NaN when
    either class is empty."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    if scores.shape != positive.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {positive.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = average_ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# --------------------------------------------------------------------------------------------- recording


class RecordingPolicy(BasePolicy):
    """Wraps a policy and keeps, per episode, the frames it was shown, the actions it returned and the goal frame.

    World runs episode e in env slot e % num_envs, in order, and calls ``reset(slots)`` when slots start their
    next episode, so the k-th episode a slot starts is ``slot + k * num_envs``."""

    def __init__(self, inner, num_envs: int):
        self.inner, self.num_envs = inner, num_envs
        self.started = np.zeros(num_envs, dtype=np.int64)
        self.current = np.full(num_envs, -1, dtype=np.int64)
        self.frames: dict[int, list] = {}
        self.actions: dict[int, list] = {}
        self.goals: dict[int, np.ndarray] = {}

    def set_action_space(self, action_space) -> None:
        super().set_action_space(action_space)
        self.inner.set_action_space(action_space)

    def reset(self, env_ids) -> None:
        for slot in np.asarray(env_ids, dtype=np.int64).reshape(-1):
            episode = int(slot + self.started[slot] * self.num_envs)
            self.started[slot] += 1
            self.current[slot] = episode
            self.frames[episode], self.actions[episode] = [], []
        self.inner.reset(env_ids)

    def get_actions(self, infos):
        actions = np.asarray(self.inner.get_actions(infos))
        active = np.asarray(infos.get("active", np.ones(len(actions), dtype=bool)), dtype=bool)
        for slot in np.flatnonzero(active):
            episode = int(self.current[slot])
            if episode < 0:
                continue
            if not self.frames[episode]:
                if int(infos["step_idx"][slot]) != 0:
                    raise RuntimeError(f"episode {episode} in slot {slot} starts at step {infos['step_idx'][slot]}")
                self.goals[episode] = np.array(infos["goal"][slot])
            self.frames[episode].append(np.array(infos["pixels"][slot]))
            self.actions[episode].append(np.array(actions[slot], dtype=np.float32))
        return actions


@torch.no_grad()
def open_loop_errors(model, frames: np.ndarray, actions: np.ndarray, goal: np.ndarray, device) -> dict | None:
    """Per prediction k = 1..K of the open-loop rollout from the first frame over the executed actions: the latent
    MSE ``mse`` (K,) and the signed error along the unit vector from the actual latent to the goal latent
    ``goal_dir`` (K,). None when the episode is shorter than one model step plus one frame."""
    block = int(model.action_block)
    k = (len(frames) - 1) // block
    if k < 1:
        return None
    rows = block * np.arange(k + 1)
    z = model.encode(torch.as_tensor(frames[rows], device=device))  # (K + 1, D)
    z_goal = model.encode(torch.as_tensor(goal[None], device=device))[0]
    blocks = torch.as_tensor(actions[: k * block].reshape(1, k, -1), dtype=torch.float32, device=device)
    pred = model.rollout(z[:1], blocks)[0]  # (K, D)
    err = pred - z[1:]
    to_goal = z_goal - z[1:]
    unit = to_goal / to_goal.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return {"mse": err.square().mean(-1).cpu().numpy(), "goal_dir": (err * unit).sum(-1).cpu().numpy()}


# ------------------------------------------------------------------------------------------ data and models


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def success_table_checkpoints(args: Args, mode: str) -> dict:
    """Run benchmarks/success_table.py once (data, training and its planning of the held-out pairs, all cached
    under --out-dir) and return {"train": path, "held_out": path, "checkpoints": {(model, seed): path},
    "success": {(model, seed): its success % on the held-out pairs}}."""
    out = Path(args.out_dir)
    results = out / "mse_vs_success_checkpoints"
    cmd = ["benchmarks/success_table.py", "--envs", args.env_id, "--baselines", *args.models, "--seeds",
           str(args.seeds), "--seed", str(args.seed), "--episodes", str(args.episodes), "--num-envs",
           str(args.num_envs), "--goal-offset", str(args.goal_offset), "--eval-budget", str(args.eval_budget),
           "--out-dir", str(out), "--results-dir", str(results), "--device", args.device, "--threads",
           str(args.threads), *([f"--{mode}"] if mode != "full" else [])]
    common.run(cmd, out / "logs" / f"mse_vs_success_{common.slug(args.env_id)}_{mode}.log", args.threads)
    data = json.loads((results / f"success_table{'' if mode == 'full' else '_' + mode}.json").read_text())
    env = data["envs"][args.env_id]
    checkpoints, success = {}, {}
    for row in env["rows"]:
        for command, pct in zip(row["commands"], row["per_seed"]):
            words = shlex.split(command)
            key = (row["baseline"], int(words[words.index("--seed") + 1]))
            checkpoints[key], success[key] = words[words.index("--checkpoint") + 1], pct
    seeds = [args.seed + k for k in range(args.seeds)]
    missing = [(m, s) for m in args.models for s in seeds if (m, s) not in checkpoints]
    if missing:
        raise common.RunFailed(f"success_table trained no checkpoint for {missing}: {data.get('failures')}")
    return {"train": env["train_dataset"], "held_out": env["dataset"], "checkpoints": checkpoints, "success": success}


def collect_random(args: Args, regime: str, image_size: int) -> Path:
    """A random-policy dataset (with every FoV leaf sampled for random_all_fov), collected once under --out-dir as
    scripts/collect.py --policy random [--variation all] records it (100-step episodes, 4 envs, JPEG); written
    under a temporary name, then moved."""
    seed = args.seed + RANDOM_SEED_OFFSET[regime]
    fov = regime == "random_all_fov"
    path = Path(args.out_dir) / (f"{common.slug(args.env_id)}_random{'_fovall' if fov else ''}_"
                                 f"{args.random_episodes}ep_s{seed}.lance")
    if path.exists():
        print(f"reusing {path}")
        return path
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with World(args.env_id, num_envs=min(4, args.random_episodes), image_size=image_size, max_episode_steps=100,
               seed=seed) as world:
        world.collect(partial, episodes=args.random_episodes, seed=seed, policy=RandomPolicy(seed=seed),
                      options={"variation": ["all"]} if fov else None, progress=False)
    partial.rename(path)
    print(f"collected {path}")
    return path


def make_solver(name: str, model, mode: str, seed: int) -> tuple[object, dict]:
    """solvers/<name>_plan.py's solver class at its main's default settings (--smoke: tiny), and its MPC
    settings (horizon, receding_horizon, warm_start)."""
    script = ROOT / "solvers" / f"{name}_plan.py"
    if not script.exists():
        raise ValueError(f"the checkpoint asks for solver {name!r}, but {script.relative_to(ROOT)} does not exist")
    module = import_script(script)
    cls = next(c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__
               and c.__name__.lower() == name.replace("_", "") + "solver")
    defaults = {f.name: f.default for f in dataclasses.fields(module.Args)
                if f.default is not dataclasses.MISSING}
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in defaults.items() if k in params and k not in ("device", "seed", "action_table")}
    if mode == "smoke":
        kwargs.update(SMOKE_SOLVER.get(name, {}))
    if "action_block" in params:
        kwargs["action_block"] = int(model.action_block)
    mpc = {k: defaults[k] for k in ("horizon", "receding_horizon", "warm_start")}
    return cls(**kwargs, seed=seed), {**mpc, "solver": name, "settings": kwargs}


# ------------------------------------------------------------------------------------------------ planning


def summarize_episode(errors: dict | None, cap: int) -> dict:
    """One episode's summary: the per-trajectory MSE over the first ``cap`` predictions, the whole-episode MSE
    and the mean squared goal-direction error over the same ``cap`` predictions (None without a prediction)."""
    if errors is None:
        return {"mse": None, "mse_episode": None, "goal_dir_sq": None, "goal_dir": None, "steps_mse": [],
                "steps_goal_dir": []}
    mse, goal_dir = errors["mse"], errors["goal_dir"]
    return {"mse": float(mse[:cap].mean()), "mse_episode": float(mse.mean()),
            "goal_dir_sq": float(np.square(goal_dir[:cap]).mean()), "goal_dir": float(goal_dir[:cap].mean()),
            "steps_mse": mse.tolist(), "steps_goal_dir": goal_dir.tolist()}


def plan_regime(args: Args, mode: str, model, solver_name: str, dataset: Path, regime: str, seed: int,
                device) -> dict:
    """Plan ``args.episodes`` pairs of ``dataset`` with the model, record every episode, and compute its
    prediction errors: {"success_pct", "episodes": [per-episode dicts], "solver"}."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    solver, mpc = make_solver(solver_name, model, mode, seed)
    cap = args.rollout_steps or int(mpc["horizon"])
    policy = RecordingPolicy(MPCPolicy(model, solver, horizon=mpc["horizon"], receding_horizon=mpc["receding_horizon"],
                                       warm_start=mpc["warm_start"], device=device), args.num_envs)
    options = parse_shift(args.env_id, ["all"]).options if regime == "random_all_fov" else None
    with World(args.env_id, num_envs=args.num_envs, image_size=int(model.image_size),
               max_episode_steps=args.eval_budget, seed=seed) as world:
        result = world.evaluate_from_dataset(dataset, episodes=args.episodes, goal_offset=args.goal_offset,
                                             eval_budget=args.eval_budget, seed=seed, policy=policy, options=options)
    episodes = []
    for e in range(args.episodes):
        frames, actions = np.stack(policy.frames[e]), np.stack(policy.actions[e])
        if len(frames) != int(result["episode_length"][e]):
            raise RuntimeError(f"episode {e}: recorded {len(frames)} frames for {result['episode_length'][e]} steps")
        errors = open_loop_errors(model, frames, actions.reshape(len(actions), -1), policy.goals[e], device)
        episodes.append({"success": bool(result["success"][e]), "steps": int(result["episode_length"][e]),
                         "solved_at_start": bool(result["solved_at_start"][e]), **summarize_episode(errors, cap)})
    return {"success_pct": 100 * float(result["success_rate"]), "rollout_steps": cap, "episodes": episodes,
            "solver": {k: mpc[k] for k in ("solver", "settings", "horizon", "receding_horizon")}}


# ------------------------------------------------------------------------------------------------- summary


def seed_stats(run: dict) -> dict:
    """AUCs of one (regime, model, seed) run over its episodes with a prediction."""
    eps = [e for e in run["episodes"] if e["mse"] is not None]
    fail = np.array([not e["success"] for e in eps], dtype=bool)
    pick = lambda key: np.array([e[key] for e in eps], dtype=np.float64)  # noqa: E731
    return {"auc_mse": roc_auc(pick("mse"), fail) if eps else float("nan"),
            "auc_mse_episode": roc_auc(pick("mse_episode"), fail) if eps else float("nan"),
            "auc_goal_dir": roc_auc(pick("goal_dir_sq"), fail) if eps else float("nan")}


def mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(runs: dict, regime: str, model: str, seeds: list[int]) -> dict:
    """One table row: successes and failures pooled over seeds, their mean errors, the AUCs mean ± std over seeds."""
    per_seed = [runs[(regime, model, s)] for s in seeds if (regime, model, s) in runs]
    eps = [e for r in per_seed for e in r["episodes"]]
    with_pred = [e for e in eps if e["mse"] is not None]

    def mean_of(key, success):
        vals = [e[key] for e in with_pred if e["success"] == success]
        return float(np.mean(vals)) if vals else float("nan")

    stats = [seed_stats(r) for r in per_seed]
    row = {"regime": regime, "model": model, "pairs": len(eps),
           "success_pct": mean_std([r["success_pct"] for r in per_seed])[0],
           "successes": sum(e["success"] for e in with_pred), "failures": sum(not e["success"] for e in with_pred),
           "too_short": len(eps) - len(with_pred),
           "mse_success": mean_of("mse", True), "mse_failure": mean_of("mse", False),
           "goal_dir_success": mean_of("goal_dir_sq", True), "goal_dir_failure": mean_of("goal_dir_sq", False)}
    for key in ("auc_mse", "auc_mse_episode", "auc_goal_dir"):
        row[key], row[key + "_std"] = mean_std([s[key] for s in stats])
        row[key + "_per_seed"] = [s[key] for s in stats]
    return row


COLUMNS = ["regime", "model", "success %", "successes", "failures", "too short", "MSE success", "MSE failure",
           "AUC MSE->failure", "± std", "AUC whole episode", "goal-dir success", "goal-dir failure", "AUC goal-dir"]


def record_table(rows: list[dict], args: Args, cap_note: str) -> dict:
    cells = [[r["regime"], r["model"], r["success_pct"], r["successes"], r["failures"], r["too_short"],
              r["mse_success"], r["mse_failure"], r["auc_mse"], r["auc_mse_std"], r["auc_mse_episode"],
              r["goal_dir_success"], r["goal_dir_failure"], r["auc_goal_dir"]] for r in rows]
    formats = {"success %": ".1f", "MSE success": ".4g", "MSE failure": ".4g", "AUC MSE->failure": ".2f",
               "± std": ".2f", "AUC whole episode": ".2f", "goal-dir success": ".4g", "goal-dir failure": ".4g",
               "AUC goal-dir": ".2f"}
    return common.table(
        f"{args.env_id}: latent prediction error of planned trajectories, successes vs failures", COLUMNS, cells,
        formats=formats,
        notes=[f"dataset-driven pairs (goal offset {args.goal_offset}, budget {args.eval_budget}), {args.episodes} per "
               f"regime, model and seed; successes/failures pooled over seeds; AUC (failures positive, 0.5 = no "
               f"information) mean ± std over seeds", cap_note,
               "goal-dir: mean squared component of the latent error along the unit vector from the actual latent to "
               "the goal latent (equals the MSE in expectation for an isotropic error)",
               "too short: solved within one model step (no prediction to compare)",
               "paper (docs/reference.md §6): per-trajectory MSE overlaps heavily between successes and failures "
               "in every regime; it reports no AUC"])


def plot(path: Path, runs: dict, rows: list[dict], args: Args, seeds: list[int]) -> None:
    """Overlaid histograms of log10 per-trajectory MSE, successes vs failures, one panel per (model, regime)."""
    plt = common.pyplot()
    models, regimes = list(args.models), list(args.regimes)
    fig, axes = plt.subplots(len(models), len(regimes), figsize=(3.6 * len(regimes), 2.8 * len(models)),
                             squeeze=False)
    by_key = {(r["regime"], r["model"]): r for r in rows}
    for i, model in enumerate(models):
        for j, regime in enumerate(regimes):
            ax = axes[i][j]
            eps = [e for s in seeds for e in runs.get((regime, model, s), {"episodes": []})["episodes"]
                   if e["mse"] is not None]
            values = np.log10(np.maximum([e["mse"] for e in eps], 1e-12)) if eps else np.zeros(0)
            success = np.array([e["success"] for e in eps], dtype=bool)
            bins = np.linspace(values.min() - 0.1, values.max() + 0.1, 16) if len(values) else 10
            for mask, label, color in ((success, "success", "tab:green"), (~success, "failure", "tab:red")):
                if mask.any():  # each class as fractions of its own episodes
                    ax.hist(values[mask], bins=bins, alpha=0.5, color=color, weights=np.full(mask.sum(), 1 / mask.sum()),
                            label=f"{label} (n={int(mask.sum())})")
            row = by_key[(regime, model)]
            ax.set_title(f"{model}, {regime}\nAUC {row['auc_mse']:.2f} ± {row['auc_mse_std']:.2f}", fontsize=8)
            ax.set_xlabel("log10 per-trajectory latent MSE", fontsize=7)
            ax.set_ylabel("fraction of the class", fontsize=7)
            ax.ticklabel_format(axis="x", useOffset=False)
            if len(values):
                ax.legend(fontsize=6)
    common.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------- main


def print_table(rows: list[dict], command: str) -> None:
    print(f"\nPrediction error vs success (command: {command})")
    print(f"{'regime':<16}{'model':<7}{'succ %':>7}{'S':>4}{'F':>4}{'short':>6}{'MSE S':>10}{'MSE F':>10}"
          f"{'AUC':>12}{'AUC ep':>8}{'dir S':>10}{'dir F':>10}{'AUC dir':>8}")
    for r in rows:
        print(f"{r['regime']:<16}{r['model']:<7}{r['success_pct']:>7.1f}{r['successes']:>4}{r['failures']:>4}"
              f"{r['too_short']:>6}{r['mse_success']:>10.4g}{r['mse_failure']:>10.4g}"
              f"{r['auc_mse']:>6.2f} ± {r['auc_mse_std']:<4.2f}{r['auc_mse_episode']:>8.2f}"
              f"{r['goal_dir_success']:>10.4g}{r['goal_dir_failure']:>10.4g}{r['auc_goal_dir']:>8.2f}")


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())
    apply_mode(args, mode)
    check_args(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    command = common.command_line("benchmarks/mse_vs_success.py")
    device = pick_device(args.device)
    seeds = [args.seed + k for k in range(args.seeds)]
    found = success_table_checkpoints(args, mode)
    datasets = {"train": Path(found["train"]), "held_out": Path(found["held_out"])}
    image_size = int(open_dataset(datasets["train"]).metadata.get("image_size") or 64)
    for regime in args.regimes:
        if regime in RANDOM_SEED_OFFSET:
            datasets[regime] = collect_random(args, regime, image_size)
    runs = {}
    for model_name in args.models:
        for seed in seeds:
            model, ckpt = load_checkpoint(found["checkpoints"][(model_name, seed)], map_location=device,
                                          search_dirs=[ROOT / "baselines"])
            if not (hasattr(model, "encode") and hasattr(model, "rollout")):
                raise ValueError(f"{model_name}'s model has no encode/rollout: its prediction error cannot be read")
            solver = ckpt.get("default_solver") or "cem"
            for regime in args.regimes:
                t0 = time.perf_counter()
                runs[(regime, model_name, seed)] = plan_regime(args, mode, model, solver, datasets[regime], regime,
                                                               seed, device)
                print(f"{model_name} seed {seed} {regime}: {runs[(regime, model_name, seed)]['success_pct']:.0f}% "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
    rows = [summarize(runs, regime, m, seeds) for regime in args.regimes for m in args.models]
    print_table(rows, command)
    cap = next(iter(runs.values()))["rollout_steps"]
    cap_note = (f"per-trajectory MSE: mean latent MSE over the first {cap} model steps of the open-loop rollout over "
                f"the executed actions; AUC whole episode: over every model step")
    seconds = time.perf_counter() - t_start
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "mse_vs_success" + ("" if mode == "full" else f"_{mode}")
    result = {"command": command, "args": asdict(args), "mode": mode, "seeds": seeds, "seconds": seconds,
              "datasets": {k: str(v) for k, v in datasets.items()},
              "checkpoints": {f"{m}_seed{s}": p for (m, s), p in found["checkpoints"].items()},
              "success_table": {f"{m}_seed{s}": v for (m, s), v in found["success"].items()},
              "rows": rows, "runs": [{"regime": r, "model": m, "seed": s, **run} for (r, m, s), run in runs.items()]}
    (results_dir / f"{stem}.json").write_text(json.dumps(common.jsonable(result), indent=1))
    plot(results_dir / f"{stem}.png", runs, rows, args, seeds)
    print(f"wrote {results_dir / (stem + '.json')} and {results_dir / (stem + '.png')}")
    result["record"] = str(common.write_record(
        results_dir, "mse_vs_success", config, title="Prediction error along planned trajectories: successes vs "
        "failures", command=command, seeds=seeds, quick=mode == "quick", tables=[record_table(rows, args, cap_note)],
        seconds=seconds, threads={"torch": torch.get_num_threads(), "per_subprocess": args.threads or None},
        extra={"regimes": {r: REGIMES[r] for r in args.regimes}}))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
