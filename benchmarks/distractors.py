# The paper's distractor study: `python benchmarks/distractors.py [--quick]`.
"""Success of world models trained without distractors and planned with n distractor squares in the scene, for
several n, with a fitted curve: the paper (docs/reference.md §6) reports that success falls roughly quadratically
with the number of distractors. Here a + b·n + c·n² is fitted by least squares to every (n, success of one seed)
point of a model, and a + b·n too; the table says which describes the points better by adjusted R² (the quadratic
must earn its extra parameter; a tie goes to the line).

The distractors are the ``distractors`` FoV group of Push-T and Two-Room (swm_core/envs/base.py
``distractor_leaves``): filled squares drawn on the floor of every frame and of the goal image, with no physics.
Each run sets ``distractors.count=n`` and samples ``distractors.position`` (every episode its own positions, from
the episode's seed, inside the arena); ``--size`` and ``--color`` set the squares' side (world units) and color
(default: the env's, ``swm fov ENV``).

How: ``benchmarks/success_table.py`` runs once per n (benchmarks/common.py ``success_table_under_shift``) with the
same training flags every time, so the data and the checkpoints under ``--out-dir`` are made once and reused by
every n (training never sees a distractor); n = 0 is the unshifted run. Each model is planned with its default
solver on the same held-out start/goal pairs (dataset-driven protocol) for every n; mean ± std over ``--seeds``
seeds, with the no-op and random floors under the same distractors.

--quick: Two-Room, LeWM and PLDM, 3 seeds, n = 0, 1, 2, 4, 8, success_table's --quick settings. The default run:
Push-T, LeWM, PLDM and DINO-WM, n = 0 to 8, success_table's full settings (meant for a GPU). --smoke: seconds-long,
for the tests (LeWM, 1 seed, n = 0 and 2, success_table's --smoke sizes). Writes distractors[_quick|_smoke].json
and .png under --results-dir and the run's record distractors-<config>.json (``python scripts/results_md.py``).
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
PUSHT, TWO_ROOM = "swm/PushT-v1", "swm/TwoRoom-v1"
MODELS = {"lewm": "LeWM", "pldm": "PLDM", "dinowm": "DINO-WM", "gcbc": "GCBC"}


@dataclass
class Args:
    envs: tuple[str, ...] | None = None
    """env ids with the distractors FoV group (default: swm/PushT-v1; --quick and --smoke: swm/TwoRoom-v1)"""
    counts: tuple[int, ...] | None = None
    """numbers of distractors (default 0 to 8; --quick 0 1 2 4 8; --smoke 0 2); 0 is the unshifted run"""
    baselines: tuple[str, ...] | None = None
    """models (lewm, pldm, dinowm, gcbc; default lewm pldm dinowm; --quick lewm pldm; --smoke lewm)"""
    size: float | None = None
    """side of every square in world units (default: the env's distractors.size)"""
    color: tuple[int, int, int] | None = None
    """RGB of the squares (default: the env's distractors.color)"""
    seeds: int | None = None
    """seeds per model (default 3; --smoke 1)"""
    seed: int = 0
    """the data's seed and the first training/pair seed"""
    episodes: int | None = None
    """start/goal pairs per model, seed and count (default: success_table's, 50; --smoke 2)"""
    train_steps: int | None = None
    """gradient steps of every model (default: each CPU preset's own)"""
    out_dir: str = "runs/success_table"
    """cache of datasets, checkpoints and plans, shared by every count (and with benchmarks/success_table.py)"""
    results_dir: str = "benchmarks/results"
    """where distractors[_quick|_smoke].json and .png and the record distractors-<config>.json go"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every training and planning subprocess"""
    jobs: int = 3
    """(model, seed) runs at a time within one count (3: one per seed, so that both cores of a 2-core CPU stay
    busy when one model's seeds take most of the time)"""
    quick: bool = False
    """Two-Room, LeWM and PLDM, 3 seeds, n = 0 1 2 4 8, success_table's --quick settings"""
    smoke: bool = False
    """seconds-long run for tests: Two-Room, LeWM, 1 seed, n = 0 and 2, success_table's --smoke sizes"""


MODE = {"quick": dict(envs=(TWO_ROOM,), counts=(0, 1, 2, 4, 8), baselines=("lewm", "pldm")),
        "smoke": dict(envs=(TWO_ROOM,), counts=(0, 2), baselines=("lewm",), seeds=1),
        "full": dict(envs=(PUSHT,), counts=tuple(range(9)), baselines=("lewm", "pldm", "dinowm"))}


def fit_polynomial(x, y, degree: int) -> dict:
    """Least-squares fit of y = sum_k coef[k] x^k (k = 0..degree): ``{"coef", "sse", "r2", "adj_r2"}``. ``coef`` is
    None with fewer distinct x than coefficients; ``r2`` is None when y does not vary, ``adj_r2`` (1 - (1 - R²)
    (n - 1) / (n - degree - 1)) also when n <= degree + 1."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(np.unique(x)) <= degree:
        return {"coef": None, "sse": None, "r2": None, "adj_r2": None}
    design = np.vander(x, degree + 1, increasing=True)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    sse = float(np.sum((y - design @ coef) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else None
    n = len(y)
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - degree - 1) if r2 is not None and n > degree + 1 else None
    return {"coef": [float(c) for c in coef], "sse": sse, "r2": r2, "adj_r2": adj}


def compare_fits(x, y) -> dict:
    """The linear and the quadratic fit of the points and which describes them better by adjusted R² (a tie goes
    to the line); 'undetermined' when either has no adjusted R² (too few points, or y does not vary)."""
    linear, quadratic = fit_polynomial(x, y, 1), fit_polynomial(x, y, 2)
    if linear["adj_r2"] is None or quadratic["adj_r2"] is None:
        better = "undetermined"
    else:
        better = "quadratic" if quadratic["adj_r2"] > linear["adj_r2"] + 1e-12 else "linear"
    return {"linear": linear, "quadratic": quadratic, "better": better}


def shifts_of(args: Args) -> list[tuple[int, list[str]]]:
    """(n, --variation strings) per count: n = 0 unshifted; else count set, positions sampled, size/color set."""
    extra = ([f"distractors.size={args.size:g}"] if args.size is not None else []) + (
        ["distractors.color=" + ",".join(str(int(c)) for c in args.color)] if args.color is not None else [])
    return [(n, [] if n == 0 else [f"distractors.count={n}", "distractors.position", *extra]) for n in args.counts]


def resolve(args: Args, mode: str) -> list[tuple[int, list[str]]]:
    """Fill the mode's defaults into ``args`` and check everything before any run; returns the shifts."""
    for field, value in MODE[mode].items():
        if getattr(args, field) is None:
            setattr(args, field, value)
    args.seeds = 3 if args.seeds is None else args.seeds
    unknown = [b for b in args.baselines if b not in MODELS]
    if unknown or not args.baselines:
        raise ValueError(f"--baselines {list(args.baselines)}: unknown {unknown}; allowed: {list(MODELS)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if len(set(args.counts)) != len(args.counts) or not args.counts:
        raise ValueError(f"--counts {list(args.counts)}: give each number once, at least one")
    args.counts = tuple(sorted(args.counts))
    shifts = shifts_of(args)
    for env_id in args.envs:  # the env's own checks (a distractors group, counts and values in range)
        for _, variation in shifts:
            parse_shift(env_id, variation)
    return shifts


def table_flags(args: Args, mode: str, env_id: str) -> list[str]:
    """The success_table.py flags every count shares (so that the trained models are shared too)."""
    flags = ["--envs", env_id, "--baselines", *args.baselines, "--seeds", str(args.seeds), "--seed",
             str(args.seed), "--device", args.device, "--threads", str(args.threads), "--jobs", str(args.jobs)]
    flags += [] if mode == "full" else [f"--{mode}"]
    for name in ("episodes", "train_steps"):
        if getattr(args, name) is not None:
            flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return flags


def run_counts(args: Args, mode: str, env_id: str, shifts: list, failures: list[str]) -> dict:
    """One success_table run per count, then each model's fits: {"rows": [...], "fits": {model: compare_fits}}."""
    rows = []
    for n, variation in shifts:
        row = {"count": n, "shift": "; ".join(variation) or "-", "models": {}, "floors": {}}
        try:
            result = common.success_table_under_shift(table_flags(args, mode, env_id), variation, args.out_dir)
        except common.RunFailed as e:
            failures.append(str(e))
            rows.append({**row, "error": str(e).splitlines()[0]})
            continue
        failures += result.get("failures", [])
        row["models"], row["floors"] = common.success_by_baseline(result, env_id)
        rows.append(row)
    fits = {}
    for b in args.baselines:
        points = [(r["count"], v) for r in rows for v in ((r["models"].get(b) or {}).get("per_seed") or [])]
        fits[b] = compare_fits([p[0] for p in points], [p[1] for p in points])
    return {"rows": rows, "fits": fits}


def record_tables(env_id: str, res: dict, baselines: tuple[str, ...], episodes: str) -> list[dict]:
    columns = ["distractors"] + [c for b in baselines for c in (f"{MODELS[b]} %", f"{MODELS[b]} ±")]
    columns += ["no-op %", "random %"]
    rows = []
    for r in res["rows"]:
        cells = [r["count"]]
        for b in baselines:
            m = r["models"].get(b) or {}
            cells += [m.get("mean"), m.get("std")]
        rows.append(cells + [float(np.mean(r["floors"][f])) if r["floors"].get(f) else None
                             for f in ("no-op", "random")])
    success = common.table(
        f"{env_id}: success vs the number of distractor squares", columns, rows,
        {c: ".1f" for c in columns if c.endswith((" %", " ±"))},
        [f"dataset-driven protocol, {episodes} start/goal pairs per model, seed and count; positions drawn every "
         "episode; models trained without distractors; floors: no-op and random under the same distractors",
         "paper (docs/reference.md §6): success falls roughly quadratically with the number of distractors"])
    fit_rows = []
    for b in baselines:
        f = res["fits"][b]
        q = f["quadratic"]["coef"] or [None] * 3
        lin = f["linear"]["coef"] or [None] * 2
        fit_rows.append([MODELS[b], *q, f["quadratic"]["adj_r2"], *lin, f["linear"]["adj_r2"], f["better"]])
    fit_columns = ["model", "a", "b", "c", "adj. R² (quadratic)", "linear a", "linear b", "adj. R² (linear)",
                   "better fit"]
    fits = common.table(f"{env_id}: fitted success % = a + b·n + c·n²", fit_columns, fit_rows,
                        {c: ".3g" for c in fit_columns[1:-1]},
                        ["least squares over every (n, one seed's success %) point; better fit: the higher adjusted "
                         "R² (a tie goes to the line)"])
    return [success, fits]


def plot(path: Path, per_env: dict, baselines: tuple[str, ...]) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(per_env), figsize=(6 * len(per_env), 4), squeeze=False)
    for (env_id, res), ax in zip(per_env.items(), axes[0]):
        rows = res["rows"]
        counts = np.array([r["count"] for r in rows], np.float64)
        grid = np.linspace(counts.min(), counts.max(), 100)
        for k, b in enumerate(baselines):
            color = f"C{k}"
            means = [(r["models"].get(b) or {}).get("mean") for r in rows]
            stds = [(r["models"].get(b) or {}).get("std") or 0.0 for r in rows]
            ax.errorbar(counts, [np.nan if m is None else m for m in means], yerr=stds, fmt="o", color=color,
                        capsize=3, label=MODELS[b])
            fit = res["fits"][b]
            for kind, ls in (("quadratic", "-"), ("linear", ":")):
                coef = fit[kind]["coef"]
                if coef is not None:
                    ax.plot(grid, np.polynomial.polynomial.polyval(grid, coef), ls=ls, color=color,
                            label=f"{MODELS[b]} {kind} fit" + (" (better)" if fit["better"] == kind else ""))
        for name, color in (("no-op", "tab:gray"), ("random", "tab:red")):
            vals = [np.mean(r["floors"][name]) if r["floors"].get(name) else np.nan for r in rows]
            ax.plot(counts, vals, ls="--", color=color, lw=0.8, label=f"{name} floor")
        ax.set_xlabel("distractor squares")
        ax.set_ylabel("success %")
        ax.set_ylim(-2, 105)
        ax.set_title(f"{env_id}: success vs distractors", fontsize=9)
        ax.legend(fontsize=7)
    common.save_figure(fig, path)


def main(args: Args) -> dict:
    t0 = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())
    shifts = resolve(args, mode)
    command = common.command_line("benchmarks/distractors.py")
    per_env, failures = {}, []
    for env_id in args.envs:
        res = per_env[env_id] = run_counts(args, mode, env_id, shifts, failures)
        print(f"\nSuccess vs the number of distractors, {env_id}: mean ± std over {args.seeds} seed(s)")
        for r in res["rows"]:
            numbers = "  ".join(f"{MODELS[b]} {m['mean']:.1f} ± {m['std']:.1f}" if (m := r["models"].get(b))
                                and m["mean"] is not None else f"{MODELS[b]} failed" for b in args.baselines)
            print(f"n={r['count']:<3} {numbers}")
        for b, fit in res["fits"].items():
            coef = fit["quadratic"]["coef"]
            curve = "-" if coef is None else f"{coef[0]:.1f} {coef[1]:+.2f}·n {coef[2]:+.3f}·n²"
            print(f"{MODELS[b]}: quadratic fit {curve}; better fit: {fit['better']}")
    seconds = time.perf_counter() - t0
    results = Path(args.results_dir)
    stem = "distractors" + ("" if mode == "full" else f"_{mode}")
    seeds = [args.seed + k for k in range(args.seeds)]
    result = {"command": command, "args": asdict(args), "mode": mode, "seeds": seeds, "seconds": seconds,
              "envs": per_env, "failures": failures}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(common.jsonable(result), indent=1))
    plot(results / f"{stem}.png", per_env, args.baselines)
    episodes = str(args.episodes or ("2" if mode == "smoke" else "50"))
    tables = [t for e, res in per_env.items() for t in record_tables(e, res, args.baselines, episodes)]
    result["record"] = str(common.write_record(
        results, "distractors", config, title="Success vs the number of distractor squares (models trained without)",
        command=command, seeds=seeds, quick=mode == "quick", tables=tables, seconds=seconds,
        threads={"per_subprocess": args.threads, "jobs": args.jobs}, extra={"failures": failures}))
    print(f"\nwrote {results / (stem + '.json')}, {results / (stem + '.png')}; total {seconds:.0f}s")
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n\n".join(failures), file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(1 if main(tyro.cli(Args))["failures"] else 0)
