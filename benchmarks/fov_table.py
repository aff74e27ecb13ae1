# The paper's FoV table, success under single-factor shifts: `python benchmarks/fov_table.py [--quick]`.
"""Success of world models trained on unshifted data and planned with one factor of variation (FoV) shifted at
evaluation, one factor at a time, beside the paper's numbers (docs/reference.md §6: Push-T, LeWM / PLDM /
DINO-WM) and the no-op and random floors under the same shift.

How: ``benchmarks/success_table.py`` runs once per shift (benchmarks/common.py ``success_table_under_shift``), with
``--variation KEY=VALUE`` for the factor's leaf and the same training flags every time, so the data and the trained
checkpoints under ``--out-dir`` are made once and reused by every shift (training never sees a shift); each model is
planned with its default solver on the same held-out start/goal pairs (dataset-driven protocol) for every shift;
mean ± std over ``--seeds`` seeds. A FoV shift changes the env itself: the observations and the goal image both
show it, and a size changes the dynamics too (docs/notes/robustness.md).

The factors (``FACTORS``; ``swm fov ENV`` lists the leaves): Push-T, the paper's five: agent color, canvas color,
agent size, agent shape, anchor position (the green target drawn in every frame). Two-Room, the same families
where it has them: agent color, canvas color, agent size (radius), wall color (it has no agent shape) and door
position (its fixed landmark, in place of the anchor; it changes the route too). Each is set to one value well
outside the training data (``FACTORS`` lists them), so the numbers are reproducible; ``--sample`` draws the leaf
from its whole range every episode instead.

--quick: Two-Room, LeWM and PLDM (the models that plan well at CPU scale; others with --baselines), 3 seeds, every
factor, success_table's --quick settings (its data, the presets' training, 50 pairs). The default run: Push-T,
LeWM, PLDM, DINO-WM and GCBC (when baselines/gcbc_train.py exists; it acts through its own policy), success_table's
full settings (meant for a GPU). --smoke: seconds-long, for the tests (LeWM, 1 seed, one factor, success_table's
--smoke sizes). Writes fov_table[_quick|_smoke].json and .png under --results-dir and the run's record
fov_table-<config>.json (``python scripts/results_md.py`` renders it).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro

from swm_core.checkpoint import import_script
from swm_core.shift import parse_shift

common = import_script(Path(__file__).with_name("common.py"))
ROOT = Path(__file__).resolve().parent.parent
PUSHT, TWO_ROOM = "swm/PushT-v1", "swm/TwoRoom-v1"
# factor name -> (FoV leaf, the out-of-distribution value it is set to); the defaults are in `swm fov ENV`
FACTORS = {
    PUSHT: {"agent color": ("agent.color", "255,0,0"),  # default royal blue (65, 105, 225)
            "canvas color": ("background.color", "255,255,0"),  # default white
            "agent size": ("agent.scale", "60"),  # default 40, range [20, 60]
            "agent shape": ("agent.shape", "square"),  # default circle
            "anchor position": ("goal.position", "100,100")},  # default (256, 256)
    TWO_ROOM: {"agent color": ("agent.color", "0,0,255"),  # default red
               "canvas color": ("background.color", "255,255,0"),  # default white
               "agent size": ("agent.radius", "14"),  # default 7, range [7, 14]
               "wall color": ("wall.color", "0,0,255"),  # default black
               "door position": ("door.position", "175,112,175")},  # one door, at 49 by default
}
MODELS = {"lewm": "LeWM", "pldm": "PLDM", "dinowm": "DINO-WM", "gcbc": "GCBC"}
# docs/reference.md §6: the paper's single-factor FoV table, Push-T (LeWM / PLDM / DINO-WM)
PAPER = {PUSHT: {"none": (50.8, 50.8, 20.0), "agent color": (12, 8, 18), "canvas color": (6, 6, 10),
                 "agent size": (22, 18, 4), "agent shape": (26, 52, 18), "anchor position": (32, 18, 4)}}
PAPER_MODELS = ("lewm", "pldm", "dinowm")


@dataclass
class Args:
    envs: tuple[str, ...] | None = None
    """env ids (default: swm/PushT-v1; --quick and --smoke: swm/TwoRoom-v1)"""
    factors: tuple[str, ...] | None = None
    """factors to shift, by name (default: every factor of the env, see FACTORS; --smoke: agent color); the
    unshifted row is always run"""
    baselines: tuple[str, ...] | None = None
    """models (default: lewm pldm dinowm gcbc, gcbc only when baselines/gcbc_train.py exists; --quick: lewm pldm;
    --smoke: lewm)"""
    sample: bool = False
    """draw each factor's leaf from its whole range every episode (--variation KEY) instead of setting it to its
    out-of-distribution value"""
    seeds: int | None = None
    """seeds per model (default 3; --smoke 1)"""
    seed: int = 0
    """the data's seed and the first training/pair seed"""
    episodes: int | None = None
    """start/goal pairs per model, seed and shift (default: success_table's, 50; --smoke 2)"""
    train_steps: int | None = None
    """gradient steps of every model (default: each CPU preset's own)"""
    out_dir: str = "runs/success_table"
    """cache of datasets, checkpoints and plans, shared by every shift (and with benchmarks/success_table.py)"""
    results_dir: str = "benchmarks/results"
    """where fov_table[_quick|_smoke].json and .png and the record fov_table-<config>.json go"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every training and planning subprocess"""
    jobs: int = 3
    """(model, seed) runs at a time within one shift (3: one per seed, so that both cores of a 2-core CPU stay
    busy when one model's seeds take most of the time)"""
    quick: bool = False
    """Two-Room, LeWM and PLDM, 3 seeds, every factor, success_table's --quick settings"""
    smoke: bool = False
    """seconds-long run for tests: Two-Room, LeWM, 1 seed, one factor, success_table's --smoke sizes"""


MODE = {"quick": dict(envs=(TWO_ROOM,), baselines=("lewm", "pldm")),
        "smoke": dict(envs=(TWO_ROOM,), baselines=("lewm",), seeds=1, factors=("agent color",)),
        "full": dict(envs=(PUSHT,), baselines=("lewm", "pldm", "dinowm", "gcbc"))}


def resolve(args: Args, mode: str) -> dict[str, list[tuple[str, list[str]]]]:
    """Fill the mode's defaults into ``args`` and check everything; returns {env: [(factor, --variation strings)]}
    with the unshifted row first. Raises ValueError on an unknown env, factor or model, before any run."""
    for field, value in MODE[mode].items():
        if getattr(args, field) is None:
            setattr(args, field, value)
    if args.baselines == MODE["full"]["baselines"] and not (ROOT / "baselines" / "gcbc_train.py").exists():
        args.baselines = args.baselines[:-1]
    unknown = [b for b in args.baselines if b not in MODELS]
    if unknown or not args.baselines:
        raise ValueError(f"--baselines {list(args.baselines)}: unknown {unknown}; allowed: {list(MODELS)}")
    if args.seeds is None:
        args.seeds = 3
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    plan = {}
    for env_id in args.envs:
        if env_id not in FACTORS:
            raise ValueError(f"--envs {env_id!r}: no factors for it; allowed: {list(FACTORS)}")
        names = args.factors or tuple(FACTORS[env_id])
        bad = [f for f in names if f not in FACTORS[env_id]]
        if bad:
            raise ValueError(f"--factors {bad} unknown for {env_id}; allowed: {list(FACTORS[env_id])}")
        rows = [("none", [])]
        for name in names:
            leaf, value = FACTORS[env_id][name]
            variation = [leaf] if args.sample else [f"{leaf}={value}"]
            parse_shift(env_id, variation)  # the env's own checks, before any training
            rows.append((name, variation))
        plan[env_id] = rows
    return plan


def table_flags(args: Args, mode: str, env_id: str) -> list[str]:
    """The success_table.py flags every shift of ``env_id`` shares (so that the trained models are shared too)."""
    flags = ["--envs", env_id, "--baselines", *args.baselines, "--seeds", str(args.seeds), "--seed",
             str(args.seed), "--device", args.device, "--threads", str(args.threads), "--jobs", str(args.jobs)]
    flags += [] if mode == "full" else [f"--{mode}"]
    for name in ("episodes", "train_steps"):
        if getattr(args, name) is not None:
            flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return flags


def run_rows(args: Args, mode: str, env_id: str, shifts: list, failures: list[str]) -> list[dict]:
    """One success_table run per shift; one row per factor with every model's numbers and the floors."""
    rows = []
    for factor, variation in shifts:
        row = {"factor": factor, "shift": "; ".join(variation) or "-", "models": {}, "floors": {}}
        try:
            result = common.success_table_under_shift(table_flags(args, mode, env_id), variation, args.out_dir)
        except common.RunFailed as e:
            failures.append(str(e))
            row["error"] = str(e).splitlines()[0]
            rows.append(row)
            continue
        failures += result.get("failures", [])
        row["models"], row["floors"] = common.success_by_baseline(result, env_id)
        rows.append(row)
    return rows


def fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(env_id: str, rows: list[dict], baselines: tuple[str, ...], seeds: int) -> None:
    paper = PAPER.get(env_id, {})
    print(f"\nSuccess under single-factor FoV shifts, {env_id}: mean ± std over {seeds} seed(s)"
          + (" (paper: LeWM / PLDM / DINO-WM)" if paper else ""))
    print(f"{'factor':<16}{'shift':<28}" + "".join(f"{MODELS[b]:>16}" for b in baselines)
          + f"{'no-op':>8}{'random':>8}" + (f"{'paper':>18}" if paper else ""))
    for r in rows:
        cells = [f"{fmt(m['mean'])} ± {fmt(m['std'])}" if (m := r["models"].get(b)) else "failed" for b in baselines]
        floors = [fmt(np.mean(r["floors"][f])) if r["floors"].get(f) else "-" for f in ("no-op", "random")]
        ref = " / ".join(f"{v:g}" for v in paper[r["factor"]]) if r["factor"] in paper else ""
        print(f"{r['factor']:<16}{r['shift']:<28}" + "".join(f"{c:>16}" for c in cells)
              + "".join(f"{c:>8}" for c in floors) + (f"{ref:>18}" if paper else ""))


def record_table(env_id: str, rows: list[dict], baselines: tuple[str, ...], episodes: str) -> dict:
    paper = PAPER.get(env_id)
    columns = ["factor", "shift"] + [c for b in baselines for c in (f"{MODELS[b]} %", f"{MODELS[b]} ±")]
    columns += ["no-op %", "random %"] + ([f"paper {MODELS[b]}" for b in PAPER_MODELS] if paper else [])
    out = []
    for r in rows:
        cells = [r["factor"], r["shift"]]
        for b in baselines:
            m = r["models"].get(b) or {}
            cells += [m.get("mean"), m.get("std")]
        cells += [float(np.mean(r["floors"][f])) if r["floors"].get(f) else None for f in ("no-op", "random")]
        cells += list(paper.get(r["factor"], (None,) * 3)) if paper else []
        out.append(cells)
    formats = {c: ".1f" for c in columns if c.endswith((" %", " ±"))}
    notes = [f"dataset-driven protocol, {episodes} start/goal pairs per model, seed and shift; models trained on "
             "unshifted data, the factor set at evaluation (observations and goal image); floors: no-op and random "
             "policies under the same shift"]
    if paper:
        notes.append("paper: docs/reference.md §6 (GPU, 224 px; its factors are drawn at random and its "
                     "trajectories come from a random policy, so its 'none' row is not its in-distribution success)")
    return common.table(f"{env_id}: success under single-factor FoV shifts", columns, out, formats, notes)


def plot(path: Path, per_env: dict, baselines: tuple[str, ...]) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(per_env), figsize=(7 * len(per_env), 4), squeeze=False)
    width = 0.8 / (len(baselines) + (1 if any(e in PAPER for e in per_env) else 0))
    for (env_id, rows), ax in zip(per_env.items(), axes[0]):
        x = np.arange(len(rows))
        for k, b in enumerate(baselines):
            means = [(r["models"].get(b) or {}).get("mean") or 0.0 for r in rows]
            stds = [(r["models"].get(b) or {}).get("std") or 0.0 for r in rows]
            ax.bar(x + (k - len(baselines) / 2 + 0.5) * width, means, width, yerr=stds, capsize=2, label=MODELS[b])
            if env_id in PAPER and b in PAPER_MODELS:
                ref = [PAPER[env_id].get(r["factor"], (0, 0, 0))[PAPER_MODELS.index(b)] for r in rows]
                ax.scatter(x + (k - len(baselines) / 2 + 0.5) * width, ref, marker="_", s=120, color="k",
                           label="paper" if k == 0 else None, zorder=3)
        for name, color in (("no-op", "tab:gray"), ("random", "tab:red")):
            vals = [np.mean(r["floors"][name]) if r["floors"].get(name) else np.nan for r in rows]
            ax.hlines(vals, x - 0.45, x + 0.45, ls=":", color=color, label=f"{name} floor")  # per factor
        ax.set_xticks(x, [r["factor"] for r in rows], rotation=20, fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("success %")
        ax.set_title(f"{env_id}: single-factor FoV shifts", fontsize=9)
        ax.legend(fontsize=7)
    common.save_figure(fig, path)


def main(args: Args) -> dict:
    t0 = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())
    plan = resolve(args, mode)
    command = common.command_line("benchmarks/fov_table.py")
    per_env, failures = {}, []
    for env_id, shifts in plan.items():
        per_env[env_id] = run_rows(args, mode, env_id, shifts, failures)
        print_table(env_id, per_env[env_id], args.baselines, args.seeds)
    seconds = time.perf_counter() - t0
    results = Path(args.results_dir)
    stem = "fov_table" + ("" if mode == "full" else f"_{mode}")
    seeds = [args.seed + k for k in range(args.seeds)]
    result = {"command": command, "args": asdict(args), "mode": mode, "seeds": seeds, "seconds": seconds,
              "envs": per_env, "failures": failures}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(common.jsonable(result), indent=1))
    plot(results / f"{stem}.png", per_env, args.baselines)
    episodes = str(args.episodes or ("2" if mode == "smoke" else "50"))
    result["record"] = str(common.write_record(
        results, "fov_table", config, title="Success under single-factor FoV shifts (models trained unshifted)",
        command=command, seeds=seeds, quick=mode == "quick",
        tables=[record_table(e, rows, args.baselines, episodes) for e, rows in per_env.items()], seconds=seconds,
        threads={"per_subprocess": args.threads, "jobs": args.jobs}, extra={"failures": failures}))
    print(f"\nwrote {results / (stem + '.json')}, {results / (stem + '.png')}; total {seconds:.0f}s")
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n\n".join(failures), file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(1 if main(tyro.cli(Args))["failures"] else 0)
