# The paper's in-distribution success table, world-model baselines: `python benchmarks/success_table.py [--quick]`.
"""Every world-model baseline present in baselines/ (LeWM, PLDM, DINO-WM, TD-MPC2; a missing script is skipped with
a note) trained on the same data with its CPU preset and planned with its default solver on the same held-out
start/goal pairs: the dataset-driven protocol (goal offset 25, eval budget 50 env steps), mean ± std over
``--seeds`` seeds (seed k trains every model with seed k and draws the pairs with seed k, so within a seed all
baselines face the same pairs), beside the paper's numbers (REFERENCE §6; Push-T from the paper, Two-Room from the
official docs) and the no-op and random floors.

How each model is planned is read from its script: the model class's ``default_solver`` names
solvers/<name>_plan.py (LeWM and DINO-WM: cem, PLDM: mppi); a solver without such a script (TD-MPC2: its own MPPI
with policy samples) is run by the training script's ``--eval-only --resume CKPT --eval-dataset`` mode and its
printed table is parsed. Everything runs as subprocesses; datasets and checkpoints are cached under --out-dir.

--quick: Two-Room only (Push-T is added with --envs), 80 training / 20 held-out episodes, 200 gradient steps per
model, 20 pairs, CEM/MPPI with 100 samples x 10 iterations: well under an hour on a 2-core CPU. --smoke: the
seconds-long run the tests use. The default run uses every preset's own training length and the solvers' paper
settings; it is meant for a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro

ROOT = Path(__file__).resolve().parent.parent
ENVS = ("swm/TwoRoom-v1", "swm/PushT-v1")
BASELINES = {"lewm": "baselines/lewm_train.py", "pldm": "baselines/pldm_train.py",
             "dinowm": "baselines/dinowm_train.py", "tdmpc2": "baselines/tdmpc2_train.py"}
# REFERENCE §6: Push-T from the paper's table, Two-Room from the official docs (no TD-MPC2 figure there)
PAPER = {"swm/PushT-v1": {"dinowm": 92, "lewm": 94, "pldm": 78, "tdmpc2": 12},
         "swm/TwoRoom-v1": {"dinowm": 100, "pldm": 97, "lewm": 87}}
QUICK_SOLVER_FLAGS = {"cem": ["--num-samples", "100", "--topk", "10", "--iters", "10"],
                      "mppi": ["--num-samples", "100", "--iters", "10"]}
# the original papers' planners, used when a model class does not name its own ``default_solver``
PAPER_SOLVER = {"lewm": "cem", "pldm": "mppi", "dinowm": "cem", "tdmpc2": "tdmpc2"}
SMOKE_SOLVER_FLAGS = {"cem": ["--num-samples", "8", "--topk", "2", "--iters", "2"],
                      "mppi": ["--num-samples", "8", "--iters", "2"]}
OWN_EVAL_FLAGS = {"quick": [], "full": [],  # the training script's own planner (TD-MPC2): its defaults
                  "smoke": ["--num-samples", "16", "--mppi-iterations", "1", "--num-elites", "4", "--num-pi-trajs",
                            "2"]}


@dataclass
class Args:
    envs: tuple[str, ...] | None = None
    """env ids (default: swm/TwoRoom-v1 swm/PushT-v1; with --quick or --smoke: swm/TwoRoom-v1)"""
    baselines: tuple[str, ...] | None = None
    """baselines to run (default: all four; a missing baselines/<name>_train.py is skipped with a note)"""
    seeds: int = 3
    """seeds per baseline (mean ± std)"""
    train_dataset: str | None = None
    """Lance dataset every baseline trains on (one env only); default: collect train_episodes episodes"""
    dataset: str | None = None
    """held-out Lance dataset the start/goal pairs come from (one env only); default: collect eval_episodes"""
    out_dir: str = "runs/success_table"
    """cache of datasets, checkpoints, planning JSONs and logs"""
    results_dir: str = "benchmarks/results"
    """where success_table[_quick|_smoke].json and .png go"""
    train_episodes: int = 400
    """training episodes (100 env steps each)"""
    eval_episodes: int = 60
    """held-out episodes (collected with seed + 10000)"""
    expert_fraction: float = 0.7
    """fraction of collected episodes driven by the scripted expert (the rest are random)"""
    train_steps: int | None = None
    """gradient steps of every baseline (default: each CPU preset's own)"""
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
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every subprocess (0: inherit); on a shared 2-core CPU one thread was several times faster"""
    quick: bool = False
    """well under an hour on a 2-core CPU: Two-Room, 80/20 episodes, 200 steps per model, 20 pairs, small budgets"""
    smoke: bool = False
    """seconds-long run for tests: 4 episodes, 2 training steps, 2 pairs, 2 seeds, lewm and tdmpc2"""


# sizes --quick and --smoke set; they replace only the fields still at their defaults (--episodes 30 is kept)
MODE_SIZES = {"quick": dict(train_episodes=80, eval_episodes=20, train_steps=200, episodes=20),
              "smoke": dict(train_episodes=4, eval_episodes=2, train_steps=2, episodes=2, num_envs=2, seeds=2,
                            baselines=("lewm", "tdmpc2"))}


def apply_mode(args: Args, mode: str) -> None:
    defaults = Args()
    for field, value in MODE_SIZES.get(mode, {}).items():
        if getattr(args, field) == getattr(defaults, field):
            setattr(args, field, value)


class RunFailed(RuntimeError):
    pass


def run(cmd: list[str], log: Path, threads: int) -> str:
    """Run a project script (path relative to the repo root) with this Python, output to ``log``; return it."""
    env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print("$ python " + " ".join(cmd), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    text = log.read_text()
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-12:])
        raise RunFailed(f"{cmd[0]} exited with {proc.returncode} (log {log}):\n{tail}")
    return text


def slug(env_id: str) -> str:
    return env_id.split("/")[-1].split("-")[0].lower()


def collect(args: Args, env_id: str, path: Path, episodes: int, seed: int) -> Path:
    """scripts/collect.py into ``path`` unless it is already there (written under a temporary name, then moved)."""
    if path.exists():
        print(f"reusing {path}")
        return path
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(["scripts/collect.py", "--env-id", env_id, "--output", str(partial), "--episodes", str(episodes),
         "--policy", "mix", "--expert-fraction", str(args.expert_fraction), "--seed", str(seed)],
        path.parent / "logs" / f"collect_{path.stem}.log", args.threads)
    partial.rename(path)
    return path


def planner_of(name: str, script: Path) -> tuple[str, str, str]:
    """(solver name, how to run it, note) from the script's ``default_solver`` (else the original paper's
    planner): 'script' = solvers/<name>_plan.py, 'own' = the training script's --eval-only mode, 'none' = neither
    (the reason is then the note)."""
    source = script.read_text()
    found = re.search(r"^\s+default_solver\s*=\s*[\"'](\w+)[\"']", source, re.M)
    solver = found.group(1) if found else PAPER_SOLVER[name]
    note = "" if found else "no default_solver in the script: the paper's planner"
    if (ROOT / "solvers" / f"{solver}_plan.py").exists():
        return solver, "script", note
    if re.search(r"^\s+eval_only\s*:", source, re.M) and re.search(r"^\s+eval_dataset\s*:", source, re.M):
        return solver, "own", "own planner (the script's --eval-dataset mode)"
    return solver, "none", f"cannot plan it: no solvers/{solver}_plan.py and no --eval-only mode"


def train(args: Args, name: str, train_data: Path, ckpt_dir: Path, seed: int,
          extra: list[str] = ()) -> tuple[Path, str | None]:
    """baselines/<name>_train.py --preset cpu into ``ckpt_dir/model.pt`` unless it is already there; returns the
    checkpoint and the training log (None when reused). ``extra`` flags go to the script (e.g. its evaluation)."""
    ckpt = ckpt_dir / "model.pt"
    if ckpt.exists():
        print(f"reusing {ckpt}")
        return ckpt, None
    partial = ckpt_dir.with_name(ckpt_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [BASELINES[name], "--preset", "cpu", "--dataset", str(train_data), "--seed", str(seed), "--device",
           args.device, "--output", str(partial / "model.pt")]
    if args.train_steps is not None:
        cmd += ["--total-steps", str(args.train_steps), "--checkpoint-every", str(args.train_steps)]
    if args.smoke:
        cmd += ["--batch-size", "8", "--num-workers", "0", "--val-batches", "1"]
    text = run([*cmd, *extra], ckpt_dir.parent / "logs" / f"train_{ckpt_dir.name}.log", args.threads)
    partial.rename(ckpt_dir)
    return ckpt, text


def plan_with_solver(args: Args, mode: str, solver: str, ckpt: Path, dataset: Path, out: Path, seed: int,
                     floors: bool) -> dict:
    """solvers/<solver>_plan.py on the held-out pairs; returns {policy: success %} (the model's row is 'model')."""
    flags = {"quick": QUICK_SOLVER_FLAGS, "smoke": SMOKE_SOLVER_FLAGS}.get(mode, {}).get(solver, [])
    cmd = [f"solvers/{solver}_plan.py", "--checkpoint", str(ckpt), "--dataset", str(dataset), "--episodes",
           str(args.episodes), "--goal-offset", str(args.goal_offset), "--eval-budget", str(args.eval_budget),
           "--num-envs", str(args.num_envs), "--no-episodic", "--seed", str(seed), "--device", args.device,
           "--output-json", str(out), *([] if floors else ["--no-floors"]), *flags]
    run(cmd, out.with_suffix(".log"), args.threads)
    table = json.loads(out.read_text())["tables"]["dataset"]
    result = {"model": table[0]["success_pct"], "command": "python " + " ".join(cmd)}
    result.update({r["policy"]: r["success_pct"] for r in table[1:]})
    return result


TABLE_ROW = re.compile(r"^(tdmpc2 \(MPPI \+ pi\)|pi prior only|no-op|random)\s+([\d.]+)%")


def own_eval_flags(args: Args, mode: str, dataset: Path, seed: int) -> list[str]:
    """Flags of a training script's own dataset-driven evaluation (TD-MPC2's --eval-dataset mode)."""
    return ["--eval-dataset", str(dataset), "--eval-episodes", str(args.episodes), "--goal-offset",
            str(args.goal_offset), "--eval-budget", str(args.eval_budget), "--eval-num-envs", str(args.num_envs),
            "--eval-seed", str(seed), *OWN_EVAL_FLAGS[mode]]


def parse_own_eval(text: str, what: str, command: str) -> dict:
    """The success column of the table a training script's own evaluation prints."""
    rows = {m.group(1): float(m.group(2)) for m in map(TABLE_ROW.match, text.splitlines()) if m}
    model_row = next((k for k in rows if k.startswith("tdmpc2")), None)
    if model_row is None:
        raise RunFailed(f"{what} printed no 'tdmpc2 (MPPI + pi)' row to parse")
    return {"model": rows.pop(model_row), "command": command, **rows}


def plan_own(args: Args, mode: str, name: str, ckpt: Path, dataset: Path, log: Path, seed: int) -> dict:
    """The training script's own evaluation of a trained checkpoint (--eval-only)."""
    cmd = [BASELINES[name], "--preset", "cpu", "--eval-only", "--resume", str(ckpt), "--seed", str(seed),
           "--device", args.device, *own_eval_flags(args, mode, dataset, seed)]
    text = run(cmd, log, args.threads)
    return parse_own_eval(text, f"{cmd[0]} --eval-only (log {log})", "python " + " ".join(cmd))


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def print_table(env_id: str, rows: list[dict], floors: dict, seeds: int, command: str) -> None:
    print(f"\nIn-distribution success, {env_id}: dataset-driven protocol, mean ± std over {seeds} seed(s) "
          f"(command: {command})")
    print(f"{'baseline':<10}{'solver':<10}{'success % (ours)':>18}{'per seed':>20}{'paper':>12}   note")
    for r in rows:
        paper = r["paper"]
        paper_s = "-" if paper is None else (f"{paper}" + (" (docs)" if "TwoRoom" in env_id else ""))
        if r["status"] != "ok" and not r["per_seed"]:
            print(f"{r['baseline']:<10}{r['solver']:<10}{'-':>18}{'-':>20}{paper_s:>12}   {r['note']}")
            continue
        per_seed = "/".join(f"{v:.0f}" for v in r["per_seed"])
        print(f"{r['baseline']:<10}{r['solver']:<10}{r['mean']:>11.1f} ± {r['std']:<4.1f}{per_seed:>20}"
              f"{paper_s:>12}   {r['note']}")
    for name in ("no-op", "random"):
        vals = floors.get(name, [])
        if vals:
            m, s = mean_std(vals)
            print(f"{name + ' floor':<20}{m:>11.1f} ± {s:<4.1f}{'/'.join(f'{v:.0f}' for v in vals):>20}"
                  f"{'-':>12}")
    print("paper: REFERENCE §6 (GPU, 224 px, 50 episodes; Push-T from the paper, Two-Room from the official docs); "
          "ours: the CPU presets at 64 px")


def plot(path: Path, per_env: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    apply_mode(args, mode)
    envs = args.envs or (ENVS if mode == "full" else ENVS[:1])
    args.baselines = args.baselines or tuple(BASELINES)
    unknown = [b for b in args.baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; allowed: {', '.join(BASELINES)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if (args.train_dataset or args.dataset) and len(envs) != 1:
        raise ValueError(f"--train-dataset/--dataset name one env's files, but --envs gives {envs}: pass one --envs")
    command = "python benchmarks/success_table.py " + " ".join(sys.argv[1:])
    out = Path(args.out_dir)
    seeds = [args.seed + k for k in range(args.seeds)]
    per_env, failures = {}, []
    for env_id in envs:
        name = slug(env_id)
        held_out = Path(args.dataset) if args.dataset else collect(
            args, env_id, out / f"{name}_eval_{args.eval_episodes}ep_s{args.seed + 10_000}.lance",
            args.eval_episodes, args.seed + 10_000)
        train_data = Path(args.train_dataset) if args.train_dataset else collect(
            args, env_id, out / f"{name}_train_{args.train_episodes}ep_x{args.expert_fraction}_s{args.seed}.lance",
            args.train_episodes, args.seed)
        rows, floors_by_seed = [], {}  # floors: once per seed, from the first run that evaluated them
        for baseline in args.baselines:
            script = ROOT / BASELINES[baseline]
            row = {"baseline": baseline, "paper": PAPER.get(env_id, {}).get(baseline), "per_seed": [],
                   "commands": [], "errors": []}
            if not script.exists():
                rows.append({**row, "solver": "-", "status": "skipped", "note": f"{BASELINES[baseline]} not found",
                             "mean": float("nan"), "std": float("nan")})
                continue
            solver, how, note = planner_of(baseline, script)
            if how == "none":
                rows.append({**row, "solver": solver, "status": "skipped", "note": note,
                             "mean": float("nan"), "std": float("nan")})
                continue
            for seed in seeds:
                steps = f"{args.train_steps}st" if args.train_steps is not None else "preset"
                ckpt_dir = out / f"{name}_{baseline}_{train_data.stem}_{steps}_seed{seed}"
                plan_dir = out / f"{name}_{mode}_plans"
                plan_dir.mkdir(parents=True, exist_ok=True)
                try:
                    if how == "script":
                        ckpt, _ = train(args, baseline, train_data, ckpt_dir, seed)
                        res = plan_with_solver(args, mode, solver, ckpt, held_out,
                                               plan_dir / f"{baseline}_{solver}_seed{seed}.json", seed,
                                               floors=seed not in floors_by_seed)
                    else:  # evaluated by the training run itself, or --eval-only on a cached checkpoint
                        flags = own_eval_flags(args, mode, held_out, seed)
                        ckpt, log = train(args, baseline, train_data, ckpt_dir, seed, extra=flags)
                        res = (parse_own_eval(log, f"{BASELINES[baseline]} --eval-dataset", "(in the training run)")
                               if log is not None else plan_own(args, mode, baseline, ckpt, held_out,
                                                                plan_dir / f"{baseline}_own_seed{seed}.log", seed))
                except RunFailed as e:
                    failures.append(str(e))
                    row["errors"].append(str(e))
                    continue
                row["per_seed"].append(res["model"])
                row["commands"].append(res["command"])
                if seed not in floors_by_seed and "no-op" in res and "random" in res:
                    floors_by_seed[seed] = {"no-op": res["no-op"], "random": res["random"]}
            m, s = mean_std(row["per_seed"])
            if row["errors"]:
                note = (note + "; " if note else "") + f"{len(row['errors'])} seed(s) failed"
            rows.append({**row, "solver": solver, "status": "ok" if row["per_seed"] else "failed", "note": note,
                         "mean": m, "std": s})
        floors = {f: [floors_by_seed[s][f] for s in seeds if s in floors_by_seed] for f in ("no-op", "random")}
        per_env[env_id] = {"dataset": str(held_out), "train_dataset": str(train_data), "rows": rows,
                           "floors": floors}
        print_table(env_id, rows, floors, len(seeds), command)
    seconds = time.perf_counter() - t_start
    print(f"\ntotal time: {seconds:.0f}s ({mode} mode; {args.threads or 'inherited'} thread(s) per subprocess)")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "success_table" + ("" if mode == "full" else f"_{mode}")
    result = {"command": command, "args": asdict(args), "mode": mode, "seeds": seeds, "seconds": seconds,
              "envs": per_env, "failures": failures}
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    plot(results_dir / f"{stem}.png", per_env)
    print(f"wrote {results_dir / (stem + '.json')} and {results_dir / (stem + '.png')}")
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n\n".join(failures), file=sys.stderr)
    return result


if __name__ == "__main__":
    result = main(tyro.cli(Args))
    sys.exit(1 if result["failures"] else 0)
