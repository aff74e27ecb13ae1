# MPPI planning with any swm world model. Docs: docs/reference.md §5 (solvers); tests: tests/test_solvers.py
"""Model predictive path integral (MPPI) MPC solver.

Each iteration perturbs the mean sequence with Gaussian noise (sample 0 is the mean itself), clamps to the bounds,
weights every candidate by softmax(-(cost - min cost) / temperature) and moves the mean to the weighted average
(clamped to the bounds: float rounding can put an average of in-bounds candidates a few ulps outside).
Low temperature puts the mass on the best candidates, high temperature averages uniformly: a smooth cousin of
CEM. The noise std shrinks by ``std_decay`` per iteration down to ``min_std`` (``std_decay=1`` keeps it fixed, as
in textbook MPPI). Returns the final mean, or with ``return_best`` (``--return-best``) the lowest-cost candidate
evaluated in any iteration.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from swm_core import MPCPolicy, NoOpPolicy, RandomPolicy, World
from swm_core.checkpoint import check_env, load_checkpoint
from swm_core.data import open_dataset
from swm_core.oracle import OracleWorldModel
from swm_core.shift import parse_shift


@dataclass
class Args:
    checkpoint: str
    """world-model checkpoint written by any baselines/*_train.py, or 'oracle': the true simulator as the model
    (swm_core/oracle.py; Push-T and Two-Room), the planner's ceiling"""
    oracle_action_block: int = 5
    """--checkpoint oracle: env steps per model step (the learned baselines' frameskip)"""
    dataset: str | None = None
    """Lance dataset for the dataset-driven protocol (held-out episodes); None: episodic evaluation only"""
    env_id: str | None = None
    """env to plan in (default: the one the checkpoint or the dataset was recorded on)"""
    episodes: int = 50
    """evaluation episodes per protocol"""
    goal_offset: int = 25
    """dataset-driven protocol: the goal is the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per episode"""
    episodic: bool = True
    """also run the episodic protocol (env resets, the env draws the goal)"""
    floors: bool = True
    """also evaluate a no-op and a random policy on the same starts and goals"""
    variation: tuple[str, ...] = ()
    """FoV shift in both protocols: 'KEY' samples that leaf (a parent: its subtree; 'all') every episode, 'KEY=VALUE'
    sets it (a number, a comma list such as agent.color=255,0,0, or a choice's name); observations and goal show it
    (swm fov ENV lists the leaves)"""
    wrapper: tuple[str, ...] = ()
    """visual wrappers on the observations, never the goal: 'NAME' or 'NAME:param=value,...', a number may be a
    schedule over env steps, e.g. noise:std=linear(0,20,100) (swm wrappers lists them)"""
    num_envs: int = 8
    """envs planned together in one batched solver call"""
    num_samples: int = 300
    """MPPI candidates per env and iteration"""
    iters: int = 30
    """MPPI iterations per plan"""
    temperature: float = 0.5
    """softmax temperature lambda, in cost units"""
    noise_std: float = 1.0
    """initial std of the perturbations"""
    std_decay: float = 0.9
    """the std is multiplied by this after every iteration (1 = fixed)"""
    min_std: float = 0.05
    """floor on the std"""
    block_noise: bool = False
    """draw one perturbation per model step and hold it over its action_block env steps (smooth candidates that
    travel far); default: independent noise for every env step, as in the paper"""
    return_best: bool = False
    """return the lowest-cost candidate evaluated over all iterations (the warm start then continues from it);
    default: the final weighted mean, as in the paper"""
    horizon: int = 5
    """planning horizon in model steps (each model step is the model's action_block env steps)"""
    receding_horizon: int = 5
    """model steps executed before replanning"""
    warm_start: bool = True
    """start each plan from the unexecuted tail of the previous one"""
    seed: int = 0
    """seed of the solver, the start/goal draws and the episodic resets"""
    device: str = "auto"
    """torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ..."""
    video: str | None = None
    """write an MP4 (agent | goal) of the first dataset-driven episodes here"""
    output_json: str | None = None
    """write the results table here as JSON"""
    model_script: str | None = None
    """script defining the checkpoint's model (default: where it was trained, then baselines/ beside solvers/
    and in the working directory)"""
    allow_script_change: bool = False
    """build the model even if that script's source differs from the one recorded in the checkpoint"""


def _describe(x) -> str:
    if torch.is_tensor(x):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:120]


def check_problem(name: str, init, low, high, device=None):
    """Validate ``init`` (B, H, D) and the per-dimension bounds ``low``/``high`` (D,); move them to one device."""
    if not torch.is_tensor(init) or init.ndim != 3 or not init.is_floating_point():
        raise ValueError(f"{name}: init must be a float tensor of shape (B, H, D), got {_describe(init)}")
    if min(init.shape) < 1:
        raise ValueError(f"{name}: init must have B, H, D >= 1, got shape {tuple(init.shape)}")
    if device is not None:
        init = init.to(device)
    dim = init.shape[-1]
    bounds = []
    for label, bound in (("low", low), ("high", high)):
        bound = torch.as_tensor(bound, dtype=init.dtype, device=init.device)
        if bound.ndim == 0:
            bound = bound.expand(dim)
        if tuple(bound.shape) != (dim,):
            raise ValueError(f"{name}: {label} must have shape ({dim},), one bound per action dim, "
                             f"got shape {tuple(bound.shape)}")
        if torch.isnan(bound).any():
            raise ValueError(f"{name}: {label} contains NaN: {bound.tolist()}")
        bounds.append(bound)
    low, high = bounds
    if (low > high).any():
        raise ValueError(f"{name}: low must be <= high in every dim, got low={low.tolist()} high={high.tolist()}")
    return init, low, high


def evaluate_costs(name: str, cost_fn, candidates: torch.Tensor) -> torch.Tensor:
    """``cost_fn(candidates (B, S, H, D)) -> (B, S)``, checked: wrong shapes and NaN costs raise ValueError."""
    costs = cost_fn(candidates)
    expected = tuple(candidates.shape[:2])
    if not torch.is_tensor(costs) or tuple(costs.shape) != expected:
        got = tuple(costs.shape) if torch.is_tensor(costs) else type(costs).__name__
        raise ValueError(f"{name}: cost_fn must return costs of shape (B, S) = {expected}, got {got}")
    nan = torch.isnan(costs)
    if nan.any():
        raise ValueError(f"{name}: cost_fn returned NaN for {int(nan.sum())} of {costs.numel()} candidates "
                         f"(envs {torch.nonzero(nan.any(1)).flatten().tolist()}); NaN costs are never ranked")
    return costs


def check_continuous_space(name: str, space) -> None:
    """Raise unless ``space`` is a continuous (Box) action space."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{name} plans continuous actions: expected a Box action space, got {space}; "
                         f"use CategoricalCEMSolver or PGDSolver (with an action_table) for discrete actions")


def keep_best(best_plan, best_cost, candidates, lowest, argmin):
    """The lowest-cost candidate seen so far per env, on device with no loop over envs: ``candidates[b, argmin[b]]``
    (cost ``lowest[b]``, this iteration's minimum) replaces ``best_plan[b]`` where it is lower than ``best_cost[b]``
    (a tie keeps the earlier one; ``best_cost`` None: the first iteration). Returns (best_plan, best_cost)."""
    found = candidates[torch.arange(len(argmin), device=argmin.device), argmin]
    if best_cost is None:
        return found, lowest
    better = lowest < best_cost
    return torch.where(better[:, None, None], found, best_plan), torch.where(better, lowest, best_cost)


class MPPISolver:
    """MPPI: ``solver(cost_fn, init, low, high) -> (B, H, D)``.

    Args:
        num_samples: candidates per env per iteration (S); sample 0 is the current mean.
        iters: iterations.
        temperature: lambda of the softmax weights exp(-cost / lambda), in cost units.
        noise_std: initial std of the Gaussian perturbations.
        std_decay: the std is multiplied by this after every iteration (1 = fixed noise).
        min_std: floor on the std.
        topk: if set, only the ``topk`` lowest-cost candidates get a weight (TD-MPC style); ``None`` = all.
        block_noise: hold each noise draw over the ``action_block`` env steps of a model step (see ``noise``).
        action_block: env steps per model step (the layout of D); only ``block_noise`` uses it.
        return_best: return the lowest-cost candidate evaluated over all iterations instead of the final mean.
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.
        action_table: must be None (continuous solver).

    NaN costs raise a ValueError; +inf costs get zero weight. ``last_info``: ``best_cost`` (B,), ``mean_cost`` (B,)
    (cost of the last evaluated mean), ``best_seen_cost`` (B,) lowest cost evaluated over all iterations, ``ess`` (B,)
    effective sample size of the last weights, ``return_best``, ``iterations``, ``model_evals``.
    """

    action_kind = "continuous"

    def __init__(self, num_samples: int = 300, iters: int = 30, temperature: float = 0.5, noise_std: float = 1.0,
                 std_decay: float = 0.9, min_std: float = 0.05, topk: int | None = None,
                 block_noise: bool = False, action_block: int = 1, return_best: bool = False, seed: int = 0,
                 device: str | torch.device | None = None, action_table=None):
        name = type(self).__name__
        if action_table is not None:
            raise ValueError(f"{name} plans continuous actions: expected no action_table, got a discrete action "
                             f"table ({_describe(action_table)}); use CategoricalCEMSolver or PGDSolver")
        if num_samples < 2 or iters < 1:
            raise ValueError(f"{name}: need num_samples >= 2 and iters >= 1, got {num_samples}, {iters}")
        self.return_best = bool(return_best)
        if temperature <= 0 or noise_std <= 0 or min_std < 0 or not 0 < std_decay <= 1:
            raise ValueError(f"{name}: need temperature > 0, noise_std > 0, min_std >= 0, std_decay in (0, 1]; got "
                             f"{temperature}, {noise_std}, {min_std}, {std_decay}")
        if topk is not None and not 1 <= topk <= num_samples:
            raise ValueError(f"{name}: topk must be None or in [1, num_samples={num_samples}], got {topk}")
        self.num_samples, self.iters, self.topk = int(num_samples), int(iters), topk
        self.temperature, self.noise_std = float(temperature), float(noise_std)
        self.std_decay, self.min_std = float(std_decay), float(min_std)
        self.seed, self.device = int(seed), device
        if isinstance(action_block, bool) or int(action_block) != action_block or action_block < 1:
            raise ValueError(f"{name}: action_block must be an integer >= 1, got {action_block!r}")
        self.block_noise, self.action_block = bool(block_noise), int(action_block)
        self._generator: torch.Generator | None = None
        self.last_info: dict = {}

    def noise(self, shape, gen, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of ``shape`` (B, S, H, D). With ``block_noise``, one draw per model step, repeated
        over its ``action_block`` env steps (D = action_block * A with the env steps first, as the models
        concatenate a block's actions)."""
        b, s, h, d = shape
        if not self.block_noise or self.action_block == 1:
            return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)
        if d % self.action_block:
            raise ValueError(f"{type(self).__name__}: block_noise needs D = action_block * A, but D = {d} is not a "
                             f"multiple of action_block = {self.action_block}")
        a = d // self.action_block
        held = torch.randn((b, s, h, 1, a), generator=gen, device=like.device, dtype=like.dtype)
        return held.expand(b, s, h, self.action_block, a).reshape(shape)

    def check_action_space(self, space) -> None:
        check_continuous_space(type(self).__name__, space)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    @torch.no_grad()
    def __call__(self, cost_fn, init, low, high) -> torch.Tensor:
        name = type(self).__name__
        init, low, high = check_problem(name, init, low, high, self.device)
        gen = self.generator(init.device)
        (b, h, d), s = init.shape, self.num_samples
        mean = torch.maximum(torch.minimum(init, high), low)
        std, best_plan, best_seen = self.noise_std, mean, None
        for _ in range(self.iters):
            noise = self.noise((b, s, h, d), gen, init)
            candidates = torch.add(mean[:, None], noise, alpha=std).clamp_(low, high)
            candidates[:, 0] = mean
            costs = evaluate_costs(name, cost_fn, candidates)
            best_cost, best_idx = costs.min(dim=1)
            best_plan, best_seen = keep_best(best_plan, best_seen, candidates, best_cost, best_idx)
            if torch.isinf(best_cost).any():
                raise ValueError(f"{name}: every candidate of envs "
                                 f"{torch.nonzero(torch.isinf(best_cost)).flatten().tolist()} has infinite cost")
            logits = -(costs - best_cost[:, None]) / self.temperature
            if self.topk is not None and self.topk < s:
                cutoff = torch.topk(costs, self.topk, dim=1, largest=False).values[:, -1:]
                logits = logits.masked_fill(costs > cutoff, -torch.inf)
            weights = torch.softmax(logits, dim=1)
            # a convex combination of in-bounds candidates, but float rounding can put it a few ulps outside the
            # bounds; it is the next candidate 0 and the returned plan, so clamp it
            mean = torch.einsum("bs,bshd->bhd", weights, candidates).clamp_(low, high)
            std = max(std * self.std_decay, self.min_std)
        self.last_info = {"best_cost": best_cost, "mean_cost": costs[:, 0], "best_seen_cost": best_seen,
                          "ess": 1.0 / weights.pow(2).sum(1), "return_best": self.return_best,
                          "iterations": self.iters, "model_evals": self.iters * b * s}
        return best_plan if self.return_best else mean


# ---- main ----
# mirrors the MAIN-TEMPLATE of solvers/cem_plan.py, adapted to this solver
def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def summarize(name: str, result: dict, seconds: float, plans: int | None = None) -> dict:
    row = {"policy": name, "success_pct": 100 * result["success_rate"], "episodes": result["episodes"],
           "solved_at_start_pct": 100 * result["solved_at_start_rate"]}
    unsolved = ~result["solved_at_start"]
    row["success_unsolved_pct"] = 100 * float(result["success"][unsolved].mean()) if unsolved.any() else float("nan")
    steps = result["steps_to_success"][result["success"]]
    row["mean_steps_to_success"] = float(steps.mean()) if len(steps) else float("nan")
    row["ms_per_plan"] = 1000 * seconds / plans if plans else float("nan")
    return row


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'policy':<10}{'success %':>10}{'solved at start %':>19}{'success % (unsolved)':>22}"
          f"{'steps to success':>18}{'ms/plan':>9}")
    for r in rows:
        print(f"{r['policy']:<10}{r['success_pct']:>10.1f}{r['solved_at_start_pct']:>19.1f}"
              f"{r['success_unsolved_pct']:>22.1f}{r['mean_steps_to_success']:>18.1f}{r['ms_per_plan']:>9.0f}")


def main(args: Args) -> dict:

    oracle = args.checkpoint == "oracle"
    # the oracle simulates on the CPU: planning there too spares copying every candidate off an accelerator
    device = torch.device("cpu") if oracle and args.device == "auto" else pick_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, ckpt = (None, {"extra": {}}) if oracle else load_checkpoint(
        args.checkpoint, map_location=device, model_script=args.model_script,
        search_dirs=[Path(__file__).resolve().parent.parent / "baselines", "baselines"],
        allow_script_change=args.allow_script_change)
    dataset = open_dataset(args.dataset) if args.dataset else None
    env_id = args.env_id or ckpt["extra"].get("env_id") or (dataset.metadata.get("env_id") if dataset else None)
    if env_id is None:
        raise SystemExit("cannot tell which env to plan in: pass --env-id")
    check_env(ckpt, env_id, args.checkpoint)
    shift = parse_shift(env_id, args.variation, args.wrapper)  # bad --variation/--wrapper fail here
    if oracle:
        model = OracleWorldModel(env_id, action_block=args.oracle_action_block,
                                 image_size=int((dataset.metadata.get("image_size") if dataset else None) or 64))
    image_size = int(getattr(model, "image_size", 0) or (dataset.metadata.get("image_size") if dataset else 64))
    world = World(env_id, num_envs=args.num_envs, image_size=image_size, max_episode_steps=args.eval_budget,
                  seed=args.seed, wrappers=shift.wrappers)
    solver = MPPISolver(num_samples=args.num_samples, iters=args.iters, temperature=args.temperature,
                        noise_std=args.noise_std, std_decay=args.std_decay, min_std=args.min_std,
                        block_noise=args.block_noise, action_block=int(getattr(model, "action_block", None) or 1),
                        return_best=args.return_best, seed=args.seed)
    solver.check_action_space(world.action_space)
    results = {"args": asdict(args), "env_id": env_id, "shift": shift.describe(), "tables": {}}
    protocols = []
    if dataset is not None:
        protocols.append(("dataset", lambda p, video=None: world.evaluate_from_dataset(
            dataset, episodes=args.episodes, goal_offset=args.goal_offset, eval_budget=args.eval_budget,
            seed=args.seed, policy=p, video=video, options=shift.options)))
    if args.episodic:
        protocols.append(("episodic", lambda p, video=None: world.evaluate(
            p, episodes=args.episodes, seed=args.seed, max_episode_steps=args.eval_budget, options=shift.options)))
    for protocol, run in protocols:
        # a fresh copy of the unused solver per protocol: its random stream and warm-start memory start anew, so a
        # protocol's numbers do not depend on which protocols ran before it
        policy = MPCPolicy(model, copy.deepcopy(solver), horizon=args.horizon,
                           receding_horizon=args.receding_horizon, warm_start=args.warm_start, device=device)
        t0 = time.perf_counter()
        result = run(policy, args.video if protocol == "dataset" else None)
        rows = [summarize("mppi", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"mppi": result}
        if args.floors:
            for name, floor in (("no-op", NoOpPolicy()), ("random", RandomPolicy(seed=args.seed))):
                per_episode[name] = run(floor)
                rows.append(summarize(name, per_episode[name], 0.0))
        print_table(f"{protocol} protocol: {env_id}, {args.episodes} episodes, budget {args.eval_budget}"
                    + (f", shift: {shift.label}" if shift else "")
                    + (f", goal offset {args.goal_offset}" if protocol == "dataset" else "")
                    + (", the true simulator as the model" if oracle else ""), rows)
        results["tables"][protocol] = rows
        results[protocol] = {name: {**{k: np.asarray(v).tolist() for k, v in r.items() if k != "variations"},
                                    **shift.record(r)} for name, r in per_episode.items()}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
