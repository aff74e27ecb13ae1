# Every MPC solver on one trained LeWM, same protocol: `python benchmarks/solver_table.py [--quick]`. docs/reference.md §5
"""The solver table: all nine solvers of solvers/ planning with the same trained world model (LeWM, CPU preset) on
the same held-out start/goal pairs (dataset-driven protocol: goal offset 25, eval budget 50 env steps, pairs drawn
with the same seed), beside the no-op and random floors. Columns: success %, success % on the pairs not already
solved at the start, ms per plan (one batched solver call for up to ``num_envs`` envs), model evaluations per
plan and env (sequences scored by the world model; gradient solvers' evaluations include a backward pass, GRASP's
one-step passes over the horizon count as one sequence each).

A second group (the efficiency group) answers: which cheaper setting (iCEM with population decay, CEM and
predictive sampling with fewer samples) matches CEM 300x30's success with >= 5x fewer model evaluations? Every
setting executes each 5-step plan whole (the scripts' default receding horizon = horizon), so no plan has an
unexecuted tail to warm-start from: the savings are the samples' and iterations' alone. It plans its own ``efficiency_episodes`` pairs (100 by default), the
same pairs for every setting. Success is compared pair by pair with a 95% interval on the mean difference: "yes"
when the whole interval lies above -margin (10 points: non-inferior), "no" when it lies below 0 (worse),
"unclear" otherwise (more pairs needed; 100 pairs give intervals of about +-8 points). ``--no-table`` runs the
efficiency group alone.

Everything runs as the project's own scripts in subprocesses: scripts/collect.py (a mix of expert and random
episodes), baselines/lewm_train.py --preset cpu, solvers/<name>_plan.py --output-json. Datasets and checkpoints
are cached under --out-dir (the file names carry their settings), so a rerun only plans. The paper reports no
per-solver success table (docs/reference.md §5 gives the solvers' defaults); the paper column shows LeWM + CEM (Two-Room:
official docs 87, Push-T: 94). Defaults are the paper's solver settings; --quick is a ~10-minute CPU run (Two-Room
only, small data, 300 training steps, 20 pairs and fewer samples for the table, 100 pairs for the efficiency group;
~7 minutes once the data and the model are cached); --smoke is the seconds-long run the tests use. The numbers
are read from each solver main's --output-json; the run's record goes to --results-dir/solver_table-<config>.json
(benchmarks/common.py; ``python scripts/results_md.py`` puts it in docs/results.md).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro

from swm_core.checkpoint import import_script

common = import_script(Path(__file__).with_name("common.py"))
ROOT = Path(__file__).resolve().parent.parent
SOLVERS = ("cem", "icem", "mppi", "predictive_sampling", "categorical_cem", "gd", "pgd", "lagrangian", "grasp")
ENVS = ("swm/TwoRoom-v1", "swm/PushT-v1")
# LeWM + CEM, docs/reference.md §6 (Two-Room: the official docs)
PAPER_CEM = {"swm/TwoRoom-v1": 87, "swm/PushT-v1": 94}
# the discrete solvers plan in an env's discrete-action variants too (same model, the variant's own action table)
DISCRETE_SOLVERS = ("categorical_cem", "pgd")
DISCRETE_VARIANTS = {"swm/TwoRoom-v1": ("swm/TwoRoomDiscrete-v1", "swm/TwoRoomMultiDiscrete-v1")}
VARIANT_LABELS = {"swm/TwoRoomDiscrete-v1": "Discrete(9)", "swm/TwoRoomMultiDiscrete-v1": "MultiDiscrete"}

# solver flags on top of each script's defaults (the defaults are the paper's settings)
FULL_FLAGS: dict[str, list[str]] = {name: [] for name in SOLVERS}
QUICK_FLAGS = {
    "cem": ["--num-samples", "100", "--topk", "10", "--iters", "10"],
    "icem": ["--num-samples", "100", "--topk", "10", "--iters", "10"],
    "mppi": ["--num-samples", "100", "--iters", "10"],
    "predictive_sampling": ["--num-samples", "100", "--iters", "10"],
    "categorical_cem": ["--num-samples", "100", "--topk", "10", "--iters", "10"],
    "gd": ["--num-samples", "8", "--iters", "30"],
    "pgd": ["--num-samples", "8", "--iters", "30", "--decode-samples", "8"],
    "lagrangian": ["--num-samples", "4", "--outer-steps", "3", "--inner-iters", "15"],
    "grasp": ["--iters", "60", "--sync-every", "30"],
}
SMOKE_FLAGS = {
    "cem": ["--num-samples", "8", "--topk", "2", "--iters", "2"],
    "icem": ["--num-samples", "8", "--topk", "2", "--iters", "2"],
    "mppi": ["--num-samples", "8", "--iters", "2"],
    "predictive_sampling": ["--num-samples", "8", "--iters", "2"],
    "categorical_cem": ["--num-samples", "8", "--topk", "2", "--iters", "2"],
    "gd": ["--num-samples", "2", "--iters", "2"],
    "pgd": ["--num-samples", "2", "--iters", "2", "--decode-samples", "2"],
    "lagrangian": ["--num-samples", "2", "--outer-steps", "1", "--inner-iters", "2"],
    "grasp": ["--iters", "2", "--sync-every", "1", "--sync-steps", "1"],
}
# the efficiency question: (solver, flags); the first entry is the reference (CEM 300x30, the paper's setting)
CEM_300x30 = ["--num-samples", "300", "--topk", "30", "--iters", "30"]
CHEAPER = [  # each >= 5x fewer evaluations per plan than 300 x 30 = 9000
    ("icem", ["--num-samples", "300", "--topk", "30", "--iters", "6"]),  # 1,105 evals (population decay 1.25)
    ("icem", ["--num-samples", "150", "--topk", "15", "--iters", "10"]),  # 682
    ("icem", ["--num-samples", "100", "--topk", "10", "--iters", "10"]),  # 453
    ("cem", ["--num-samples", "150", "--topk", "15", "--iters", "12"]),  # 1,800
    ("cem", ["--num-samples", "100", "--topk", "10", "--iters", "10"]),  # 1,000
    ("cem", ["--num-samples", "60", "--topk", "6", "--iters", "10"]),  # 600
    ("predictive_sampling", ["--num-samples", "100", "--iters", "10"]),  # 1,000
]
EFFICIENCY = {"full": [("cem", FULL_FLAGS["cem"]), *CHEAPER], "quick": [("cem", CEM_300x30), *CHEAPER],
    "smoke": [("cem", SMOKE_FLAGS["cem"]), ("icem", SMOKE_FLAGS["icem"])],
}


@dataclass
class Args:
    envs: tuple[str, ...] | None = None
    """env ids (default: swm/TwoRoom-v1 swm/PushT-v1; with --quick or --smoke: swm/TwoRoom-v1)"""
    solvers: tuple[str, ...] | None = None
    """solvers to run, names of solvers/<name>_plan.py (default: all nine; with --smoke: cem icem)"""
    checkpoint: str | None = None
    """a trained world model to plan with (one env only); default: train LeWM (CPU preset) on collected data"""
    train_dataset: str | None = None
    """Lance dataset to train LeWM on (one env only); default: collect train_episodes episodes"""
    dataset: str | None = None
    """held-out Lance dataset the start/goal pairs come from (one env only); default: collect eval_episodes"""
    out_dir: str = "runs/solver_table"
    """cache of datasets, checkpoints, solver JSONs and logs"""
    results_dir: str = "benchmarks/results"
    """where solver_table[_quick|_smoke].json and .png go, and the run's record solver_table-<config>.json"""
    train_episodes: int = 400
    """training episodes (100 env steps each)"""
    eval_episodes: int = 60
    """held-out episodes (collected with seed + 10000)"""
    expert_fraction: float = 0.7
    """fraction of collected episodes driven by the scripted expert (the rest are random)"""
    train_steps: int = 1500
    """LeWM gradient steps"""
    batch_size: int = 64
    """LeWM batch size"""
    episodes: int = 50
    """start/goal pairs planned per solver"""
    goal_offset: int = 25
    """the goal is the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per pair"""
    num_envs: int = 10
    """envs planned together in one batched solver call"""
    efficiency: bool = True
    """also run the efficiency group (which cheaper setting matches CEM 300x30)"""
    efficiency_episodes: int = 100
    """start/goal pairs of the efficiency group (the same for every setting)"""
    table: bool = True
    """run the solver table (--no-table: only the efficiency group)"""
    match_margin: float = 10.0
    """efficiency group: success points a cheaper setting may lose (95% interval) and still match"""
    seed: int = 0
    """seed of the data, the training and the pair draws"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every subprocess (0: inherit); on a shared 2-core CPU one thread planned ~10x faster"""
    quick: bool = False
    """~10 minutes on an idle 2-core CPU: Two-Room, 80/100 episodes, 300 steps, 20 (table) / 100 (efficiency) pairs"""
    smoke: bool = False
    """seconds-long run for tests: 4 episodes, 2 training steps, 2 pairs, cem and icem, tiny budgets"""


# sizes --quick and --smoke set; they replace only the fields still at their defaults (--episodes 30 is kept)
MODE_SIZES = {"quick": dict(train_episodes=80, eval_episodes=100, train_steps=300, batch_size=32, episodes=20),
              "smoke": dict(train_episodes=4, eval_episodes=2, train_steps=2, batch_size=8, episodes=2, num_envs=2,
                            efficiency_episodes=2,
                            solvers=("cem", "icem"))}


def apply_mode(args: Args, mode: str) -> None:
    defaults = Args()
    for field, value in MODE_SIZES.get(mode, {}).items():
        if getattr(args, field) == getattr(defaults, field):
            setattr(args, field, value)


def train_lewm(args: Args, train: Path, ckpt_dir: Path) -> Path:
    """baselines/lewm_train.py --preset cpu into ``ckpt_dir/model.pt`` unless it is already there."""
    ckpt = ckpt_dir / "model.pt"
    if ckpt.exists():
        print(f"reusing {ckpt}")
        return ckpt
    partial = ckpt_dir.with_name(ckpt_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = ["baselines/lewm_train.py", "--preset", "cpu", "--dataset", str(train), "--total-steps",
           str(args.train_steps), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--device",
           args.device, "--output", str(partial / "model.pt"), "--checkpoint-every", str(max(args.train_steps, 1))]
    if args.smoke:
        cmd += ["--num-workers", "0", "--val-batches", "1"]
    common.run(cmd, ckpt_dir.parent / "logs" / f"train_{ckpt_dir.name}.log", args.threads)
    partial.rename(ckpt_dir)
    return ckpt


def model_evals_per_plan(solver: str, a: dict, row: dict) -> float | None:
    """Sequences the world model scores per plan and env: the JSON's own figure if it has one, else the count
    each solver's ``last_info['model_evals']`` documents, from the settings it ran with."""
    if row.get("model_evals_per_plan") is not None:
        return float(row["model_evals_per_plan"])
    s, it = a.get("num_samples"), a.get("iters")
    if solver in ("cem", "mppi", "predictive_sampling", "categorical_cem"):
        return float(s * it)
    if solver == "icem":  # population decays per iteration down to min_samples (solvers/icem_plan.py)
        topk = a["topk"]
        floor = max(2 * topk, topk + int(round(a["keep_elites"] * topk)) + 1)
        return float(sum(max(floor, math.floor(s / a["population_decay"] ** i)) for i in range(it)))
    if solver == "gd":
        return float((it + 1) * s)
    if solver == "pgd":
        return float(it * s + s * a["decode_samples"])
    if solver == "lagrangian":
        return float(a["outer_steps"] * a["inner_iters"] * s + s)
    if solver == "grasp":  # per sync: Adam steps on the true cost + a state re-roll; the final scoring; and
        # every GRASP step's parallel one-step pass over the horizon, counted as one sequence
        syncs = len(range(a["sync_every"], it, a["sync_every"])) + 1 if a["sync_every"] else 1
        return float(s * (syncs * (a["sync_steps"] + 1) + 1 + it))
    return None


def settings_label(solver: str, a: dict) -> str:
    """A short description of the solver settings actually used (read back from the JSON's args), with the
    discrete-action env variant it planned in, if any."""
    label = _settings(solver, a)
    return f"{label}, {VARIANT_LABELS[a['env_id']]}" if a.get("env_id") in VARIANT_LABELS else label


def _settings(solver: str, a: dict) -> str:
    s, it = a.get("num_samples"), a.get("iters")
    if solver in ("cem", "icem", "categorical_cem"):
        return f"{s}x{it} top{a['topk']}" + ("" if a.get("warm_start", True) else " cold")
    if solver in ("mppi", "predictive_sampling"):
        return f"{s}x{it}"
    if solver in ("gd", "pgd"):
        return f"{s} inits x{it}"
    if solver == "lagrangian":
        return f"{s} inits x{a['outer_steps']}x{a['inner_iters']}"
    if solver == "grasp":
        return f"{it} steps, sync/{a['sync_every']}"
    return ""


def plan(args: Args, env_dir: Path, solver: str, flags: list[str], ckpt: Path, dataset: Path,
         floors: bool, episodes: int | None = None) -> dict:
    """Run solvers/<solver>_plan.py on ``episodes`` (default args.episodes) held-out pairs; return its row (and
    the floors' rows if asked)."""
    episodes = episodes or args.episodes
    tag = solver + ("_" + "_".join(f.lstrip("-").replace("-", "").replace("/", "_") for f in flags) if flags else "")
    tag += f"_{episodes}p"
    out = env_dir / f"{tag}.json"
    cmd = [f"solvers/{solver}_plan.py", "--checkpoint", str(ckpt), "--dataset", str(dataset), "--episodes",
           str(episodes), "--goal-offset", str(args.goal_offset), "--eval-budget", str(args.eval_budget),
           "--num-envs", str(args.num_envs), "--no-episodic", "--seed", str(args.seed), "--device", args.device,
           "--output-json", str(out), *([] if floors else ["--no-floors"]), *flags]
    seconds = common.run(cmd, env_dir / "logs" / f"{tag}.log", args.threads)
    data = common.read_plan(out)
    first = data["model"]
    per_pair = data["per_episode"][first["policy"]]
    row = {"solver": solver, "settings": settings_label(solver, data["args"]), "flags": flags,
           "success_pct": first["success_pct"], "success_unsolved_pct": first["success_unsolved_pct"],
           "solved_at_start_pct": first["solved_at_start_pct"], "ms_per_plan": first["ms_per_plan"],
           "model_evals_per_plan": model_evals_per_plan(solver, data["args"], first),
           "mean_cost": first.get("mean_cost"), "episodes": first["episodes"], "seconds": seconds,
           "success": per_pair["success"], "pairs": list(zip(per_pair["episode_idx"], per_pair["start_step"])),
           "command": "python " + " ".join(cmd), "json": str(out)}
    floor_rows = [{"solver": r["policy"], "settings": "floor", "success_pct": r["success_pct"],
                   "success_unsolved_pct": r["success_unsolved_pct"], "solved_at_start_pct": r["solved_at_start_pct"],
                   "episodes": r["episodes"]} for r in data["rows"].values() if r is not first]
    return {"row": row, "floors": floor_rows}


def efficiency_verdicts(rows: list[dict], margin: float) -> list[dict]:
    """Compare each setting with the first (the reference) on the same pairs: evals ratio, paired success
    difference with its 95% interval, and the verdict ('reference', 'yes', 'no', 'unclear', '< 5x fewer')."""
    ref = rows[0]
    out = []
    for r in rows:
        if r.get("error") or ref.get("error"):
            out.append({**r, "evals_ratio": float("nan"), "delta_pct": float("nan"), "ci_pct": float("nan"),
                        "verdict": "failed", "matches": False})
            continue
        if r["pairs"] != ref["pairs"]:
            raise RuntimeError(f"{r['solver']} {r['settings']} planned other pairs than the reference")
        diff = np.asarray(r["success"], float) - np.asarray(ref["success"], float)
        half_width = 1.96 * (diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0)
        ratio = (ref["model_evals_per_plan"] or float("nan")) / (r["model_evals_per_plan"] or float("nan"))
        low, high = 100 * (diff.mean() - half_width), 100 * (diff.mean() + half_width)
        if r is ref:
            verdict = "reference"
        elif not ratio >= 5:
            verdict = "< 5x fewer"
        else:
            verdict = "yes" if low >= -margin else "no" if high < 0 else "unclear"
        out.append({**r, "evals_ratio": ratio, "delta_pct": 100 * diff.mean(), "ci_pct": 100 * half_width,
                    "verdict": verdict, "matches": verdict == "yes"})
    return out


def fmt(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_tables(env_id: str, rows: list[dict], floors: list[dict], eff: list[dict], command: str,
                 margin: float) -> None:
    if rows:  # --no-table runs only the efficiency group
        show_cost = any(r.get("mean_cost") is not None for r in rows)
        print(f"\nSolver table: {env_id}, LeWM (CPU preset), dataset-driven protocol, "
              f"{next((r['episodes'] for r in rows if 'episodes' in r), '?')} pairs (command: {command})")
        head = (f"{'solver':<20}{'settings':<32}{'success %':>10}{'unsolved-at-start %':>21}"
                + (f"{'mean cost':>11}" if show_cost else "") + f"{'ms/plan':>10}{'evals/plan':>12}{'paper':>11}")
        print(head)
        for r in rows + floors:
            if r.get("error"):
                print(f"{r['solver']:<20}failed: {r['error'].splitlines()[-1].strip()[:150]}")
                continue
            paper = "-"
            if r["solver"] == "cem" and env_id in PAPER_CEM:
                paper = f"{PAPER_CEM[env_id]}" + (" (docs)" if "TwoRoom" in env_id else "")
            print(f"{r['solver']:<20}{r['settings']:<32}{fmt(r['success_pct'], '.1f'):>10}"
                  f"{fmt(r['success_unsolved_pct'], '.1f'):>21}"
                  + (f"{fmt(r.get('mean_cost'), '.3f'):>11}" if show_cost else "")
                  + f"{fmt(r.get('ms_per_plan'), ',.0f'):>10}{fmt(r.get('model_evals_per_plan'), ',.0f'):>12}{paper:>11}")
        print("paper: LeWM + CEM only (the paper has no per-solver table); evals/plan: sequences scored per plan and env; "
              "ms/plan: evaluation wall time / batched solver calls (up to num_envs envs each, env steps included)")
    if not eff:
        return
    print(f"\nWhich setting matches CEM {eff[0]['settings']} with >= 5x fewer model evaluations? ({env_id}; "
          f"match: the 95% interval of the paired success difference lies above -{margin:g} points)")
    print(f"{'solver':<20}{'settings':<20}{'success %':>10}{'evals/plan':>12}{'evals ratio':>13}"
          f"{'Δ success (95% CI)':>22}{'ms/plan':>10}{'matches':>12}")
    for r in eff:
        if r.get("error"):
            print(f"{r['solver']:<20}{r.get('settings', ''):<20}failed: {r['error'].splitlines()[-1].strip()[:100]}")
            continue
        delta = f"{r['delta_pct']:+.1f} ± {r['ci_pct']:.1f}"
        print(f"{r['solver']:<20}{r['settings']:<20}{r['success_pct']:>10.1f}{fmt(r['model_evals_per_plan'], ',.0f'):>12}"
              f"{fmt(r['evals_ratio'], '.1f'):>12}x{delta:>22}{fmt(r['ms_per_plan'], ',.0f'):>10}"
              f"{r['verdict']:>12}")
    best = [r for r in eff[1:] if r["matches"]]
    if best:
        top = max(best, key=lambda r: r["evals_ratio"])
        print(f"answer: {top['solver']} {top['settings']} ({top['evals_ratio']:.1f}x fewer evaluations, "
              f"success {top['success_pct']:.1f}% vs {eff[0]['success_pct']:.1f}%)")
    elif any(r["verdict"] == "unclear" for r in eff):
        print(f"answer: none shown to match yet: {eff[0]['episodes']} pairs are too few to tell (see 'unclear')")
    else:
        print("answer: no setting tried matches the reference with >= 5x fewer evaluations")


def plot(path: Path, per_env: dict) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(len(per_env), 2, figsize=(11, 3.6 * len(per_env)), squeeze=False)
    for (env_id, res), (ax_bar, ax_eff) in zip(per_env.items(), axes):
        rows = res["rows"]
        y = np.arange(len(rows))
        ax_bar.barh(y, [0 if r.get("error") else r["success_pct"] for r in rows], color="tab:blue")
        ax_bar.set_yticks(y, [f"{r['solver']} ({'failed' if r.get('error') else r['settings']})" for r in rows],
                          fontsize=7)
        ax_bar.invert_yaxis()
        for f, color in zip(res["floors"], ("tab:gray", "tab:red")):
            ax_bar.axvline(f["success_pct"], ls="--", color=color, label=f"{f['solver']} floor")
        ax_bar.set_xlabel("success %")
        ax_bar.set_xlim(0, 100)
        ax_bar.set_title(env_id, fontsize=9)
        if res["floors"]:
            ax_bar.legend(fontsize=7)
        pts = {(r["solver"], r["settings"]): r for r in rows + res["efficiency"]
               if not r.get("error") and r["model_evals_per_plan"]}.values()
        for r in pts:
            ax_eff.scatter(r["model_evals_per_plan"], r["success_pct"], s=18)
            ax_eff.annotate(f"{r['solver']} {r['settings']}", (r["model_evals_per_plan"], r["success_pct"]),
                            fontsize=6)
        ax_eff.set_xscale("log")
        ax_eff.set_xlabel("model evaluations per plan and env")
        ax_eff.set_ylabel("success %")
        ax_eff.set_ylim(-5, 105)
    common.save_figure(fig, path)


def record_tables(per_env: dict, margin: float) -> list[dict]:
    """The printed tables as record tables: per env the solver table (floors last) and the efficiency group."""
    tables = []
    for env_id, res in per_env.items():
        if res["rows"]:
            rows = []
            for r in res["rows"] + res["floors"]:
                if r.get("error"):
                    rows.append([r["solver"], r.get("settings", ""), None, None, None, None, None,
                                 "failed: " + r["error"].splitlines()[-1].strip()[:150]])
                    continue
                paper = PAPER_CEM.get(env_id) if r["solver"] == "cem" else None
                rows.append([r["solver"], r["settings"], r["success_pct"], r["success_unsolved_pct"],
                             r.get("ms_per_plan"), r.get("model_evals_per_plan"), paper, ""])
            tables.append(common.table(
                f"{env_id}: every solver on one LeWM",
                ["solver", "settings", "success %", "unsolved-at-start %", "ms/plan", "evals/plan", "paper", "note"],
                rows, formats={"success %": ".1f", "unsolved-at-start %": ".1f", "ms/plan": ",.0f",
                               "evals/plan": ",.0f"},
                notes=["paper: LeWM + CEM only (docs/reference.md §6; Two-Room from the official docs), the paper has "
                       "no per-solver table; evals/plan: sequences scored per plan and env; ms/plan: evaluation wall "
                       "time / batched solver calls"]))
        eff = res["efficiency"]
        if eff:
            rows = []
            for r in eff:
                if r.get("error"):
                    rows.append([r["solver"], r.get("settings", ""), None, None, None, None, None, None, "failed"])
                    continue
                rows.append([r["solver"], r["settings"], r["success_pct"], r["model_evals_per_plan"],
                             r["evals_ratio"], r["delta_pct"], r["ci_pct"], r["ms_per_plan"], r["verdict"]])
            tables.append(common.table(
                f"{env_id}: which setting matches CEM {eff[0].get('settings', '')} with >= 5x fewer model evaluations",
                ["solver", "settings", "success %", "evals/plan", "evals ratio", "Δ success", "95% CI ±", "ms/plan",
                 "matches"], rows,
                formats={"success %": ".1f", "evals/plan": ",.0f", "evals ratio": ".1f", "Δ success": "+.1f",
                         "95% CI ±": ".1f", "ms/plan": ",.0f"},
                notes=[f"match: the 95% interval of the paired success difference lies above -{margin:g} points; "
                       f"{eff[0].get('episodes', '?')} pairs, the same for every setting"]))
    return tables


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())  # the flags the user gave, before the mode's sizes
    apply_mode(args, mode)
    args.solvers = args.solvers or SOLVERS
    envs = args.envs or (ENVS if mode == "full" else ENVS[:1])
    unknown = [s for s in args.solvers if s not in SOLVERS]
    if unknown:
        raise ValueError(f"unknown solver(s) {unknown}; allowed: {', '.join(SOLVERS)}")
    if (args.checkpoint or args.train_dataset or args.dataset) and len(envs) != 1:
        raise ValueError(f"--checkpoint/--train-dataset/--dataset name one env's files, but --envs gives {envs}: "
                         f"pass a single --envs")
    flag_table = {"full": FULL_FLAGS, "quick": QUICK_FLAGS, "smoke": SMOKE_FLAGS}[mode]
    command = common.command_line("benchmarks/solver_table.py")
    out = Path(args.out_dir)
    per_env, failures = {}, []
    for env_id in envs:
        name = common.slug(env_id)
        env_dir = out / f"{name}_{mode}"
        held_out = Path(args.dataset) if args.dataset else common.collect(
            env_id, out / f"{name}_eval_{args.eval_episodes}ep_x{args.expert_fraction}_s{args.seed + 10_000}.lance",
            args.eval_episodes, args.seed + 10_000, args.expert_fraction, args.threads)
        if args.checkpoint:
            ckpt = Path(args.checkpoint)
        else:
            train = Path(args.train_dataset) if args.train_dataset else common.collect(
                env_id, out / f"{name}_train_{args.train_episodes}ep_x{args.expert_fraction}_s{args.seed}.lance",
                args.train_episodes, args.seed, args.expert_fraction, args.threads)
            # the hash of lewm_train.py and swm_core in the name: a checkpoint is reused only while they are unchanged
            code = common.code_hash(ROOT / "baselines" / "lewm_train.py", *common.core_files())
            ckpt = train_lewm(args, train, out / (f"{name}_lewm_{train.stem}_{args.train_steps}st_bs{args.batch_size}"
                                                  f"_s{args.seed}_{args.device}_{code}"))
        rows, floors, done = [], [], {}
        runs = [(solver, flag_table[solver]) for solver in args.solvers] + [
            (solver, [*flag_table[solver], "--env-id", variant])
            for solver in DISCRETE_SOLVERS if solver in args.solvers for variant in DISCRETE_VARIANTS.get(env_id, ())]
        for solver, flags in runs if args.table else ():
            try:
                res = plan(args, env_dir, solver, flags, ckpt, held_out, floors=not floors)
                floors = floors or res["floors"]
                rows.append(res["row"])
            except common.RunFailed as e:
                failures.append(str(e))
                rows.append({"solver": solver, "settings": " ".join(flags), "flags": flags, "error": str(e)})
            done[(solver, tuple(flags), args.episodes)] = rows[-1]
        eff = []
        if args.efficiency:
            for solver, flags in EFFICIENCY[mode]:
                key = (solver, tuple(flags), args.efficiency_episodes)
                if key not in done:
                    try:
                        done[key] = plan(args, env_dir, solver, flags, ckpt, held_out, False,
                                         args.efficiency_episodes)["row"]
                    except common.RunFailed as e:
                        failures.append(str(e))
                        done[key] = {"solver": solver, "settings": " ".join(flags), "flags": flags, "error": str(e)}
                eff.append(done[key])
            eff = efficiency_verdicts(eff, args.match_margin)
        per_env[env_id] = {"checkpoint": str(ckpt), "dataset": str(held_out), "rows": rows, "floors": floors,
                           "efficiency": eff}
        print_tables(env_id, rows, floors, eff, command, args.match_margin)
    seconds = time.perf_counter() - t_start
    print(f"\ntotal time: {seconds:.0f}s ({mode} mode; {args.threads or 'inherited'} thread(s) per subprocess)")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "solver_table" + ("" if mode == "full" else f"_{mode}")
    result = {"command": command, "args": asdict(args), "mode": mode, "seconds": seconds, "envs": per_env,
              "failures": failures}
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(results_dir / f"{stem}.png", per_env)
    print(f"wrote {results_dir / (stem + '.json')} and {results_dir / (stem + '.png')}")
    result["record"] = str(common.write_record(
        results_dir, "solver_table", config, title="Every MPC solver on one trained LeWM", command=command,
        seeds=[args.seed], quick=mode == "quick", tables=record_tables(per_env, args.match_margin), seconds=seconds,
        threads={"per_subprocess": args.threads or None}, extra={"failures": failures}))
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n\n".join(failures), file=sys.stderr)
    return result


if __name__ == "__main__":
    result = main(tyro.cli(Args))
    sys.exit(1 if result["failures"] else 0)
