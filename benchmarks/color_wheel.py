# The paper's background-color wheel: `python benchmarks/color_wheel.py [--quick]`.
"""Success of world models trained on the default white background and planned on other background colors: a
grid of hue x saturation at a fixed value (HSV), white at the centre, drawn as a polar heat map (angle: hue,
radius: saturation). The paper (docs/reference.md §6) reports that LeWM holds up near white and along green and
collapses for red, blue and purple.

How: ``benchmarks/success_table.py`` runs once per color (benchmarks/common.py ``success_table_under_shift``) with
``--variation background.color=R,G,B`` and the same training flags every time, so the data and the checkpoints
under ``--out-dir`` are made once and reused by every color (training never sees a shift); the centre (white, the
training color) is the unshifted run. Each model is planned with its default solver on the same held-out
start/goal pairs (dataset-driven protocol) for every color; mean ± std over ``--seeds`` seeds, with the no-op and
random floors under the same color. The background is a visual factor: the observations and the goal image show
it, the dynamics do not change.

--quick: Two-Room, LeWM, 3 seeds, 6 hues x 3 saturations (1/3, 2/3, 1) at value 1, plus the centre: 19 colors,
20 start/goal pairs per seed and color, success_table's other --quick settings. The default run: Push-T, LeWM, 12 hues x 4 saturations, success_table's full
settings (meant for a GPU). --smoke: seconds-long, for the tests (1 seed, 1 hue x 1 saturation, success_table's
--smoke sizes). Writes color_wheel[_quick|_smoke].json and .png under --results-dir and the run's record
color_wheel-<config>.json (``python scripts/results_md.py`` renders it).
"""

from __future__ import annotations

import colorsys
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
WHITE = (255, 255, 255)  # the training background of both envs


@dataclass
class Args:
    envs: tuple[str, ...] | None = None
    """env ids with a background.color leaf (default: swm/PushT-v1; --quick and --smoke: swm/TwoRoom-v1)"""
    baselines: tuple[str, ...] = ("lewm",)
    """models (lewm, pldm, dinowm, gcbc)"""
    hues: int | None = None
    """hues, evenly spaced from 0 degrees (red) (default 12; --quick 6; --smoke 1)"""
    saturations: tuple[float, ...] | None = None
    """saturations in (0, 1] (default 0.25 0.5 0.75 1; --quick 1/3 2/3 1; --smoke 1)"""
    value: float = 1.0
    """HSV value of every color, in (0, 1]; the centre is the gray of this value (white at 1, the unshifted run)"""
    seeds: int | None = None
    """seeds per model (default 3; --smoke 1)"""
    seed: int = 0
    """the data's seed and the first training/pair seed"""
    episodes: int | None = None
    """start/goal pairs per model, seed and color (default: success_table's, 50; --quick 20; --smoke 2)"""
    train_steps: int | None = None
    """gradient steps of every model (default: each CPU preset's own)"""
    out_dir: str = "runs/success_table"
    """cache of datasets, checkpoints and plans, shared by every color (and with benchmarks/success_table.py)"""
    results_dir: str = "benchmarks/results"
    """where color_wheel[_quick|_smoke].json and .png and the record color_wheel-<config>.json go"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every training and planning subprocess"""
    jobs: int = 3
    """(model, seed) runs at a time within one color (3: one per seed, so that both cores of a 2-core CPU stay
    busy when one model's seeds take most of the time)"""
    quick: bool = False
    """Two-Room, LeWM, 3 seeds, 6 hues x 3 saturations, 20 pairs, success_table's --quick settings"""
    smoke: bool = False
    """seconds-long run for tests: Two-Room, 1 seed, 1 hue x 1 saturation, success_table's --smoke sizes"""


MODE = {"quick": dict(envs=(TWO_ROOM,), hues=6, saturations=(1 / 3, 2 / 3, 1.0), episodes=20),
        "smoke": dict(envs=(TWO_ROOM,), hues=1, saturations=(1.0,), seeds=1),
        "full": dict(envs=(PUSHT,), hues=12, saturations=(0.25, 0.5, 0.75, 1.0))}


def hsv_rgb(hue_deg: float, saturation: float, value: float) -> tuple[int, int, int]:
    """An HSV color (hue in degrees) as 8-bit RGB, rounded to the nearest integer."""
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360) / 360, saturation, value)
    return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


def wheel(args: Args) -> list[dict]:
    """The colors: the centre (saturation 0) first, then every (hue, saturation), hue-major."""
    centre = hsv_rgb(0.0, 0.0, args.value)
    cells = [{"hue": None, "saturation": 0.0, "rgb": centre}]
    for h in np.arange(args.hues) * 360.0 / args.hues:
        cells += [{"hue": float(h), "saturation": float(s), "rgb": hsv_rgb(h, s, args.value)}
                  for s in sorted(args.saturations)]
    for cell in cells:
        cell["variation"] = [] if cell["rgb"] == WHITE else ["background.color=" + ",".join(map(str, cell["rgb"]))]
    return cells


def resolve(args: Args, mode: str) -> list[dict]:
    """Fill the mode's defaults into ``args`` and check everything before any run; returns the colors."""
    for field, value in MODE[mode].items():
        if getattr(args, field) is None:
            setattr(args, field, value)
    args.seeds = 3 if args.seeds is None else args.seeds
    unknown = [b for b in args.baselines if b not in MODELS]
    if unknown or not args.baselines:
        raise ValueError(f"--baselines {list(args.baselines)}: unknown {unknown}; allowed: {list(MODELS)}")
    if args.seeds < 1 or args.hues < 1:
        raise ValueError(f"--seeds and --hues must be >= 1, got {args.seeds} and {args.hues}")
    bad = [s for s in args.saturations if not 0 < s <= 1]
    if bad or not args.saturations:
        raise ValueError(f"--saturations {list(args.saturations)}: each must be in (0, 1], at least one")
    if not 0 < args.value <= 1:
        raise ValueError(f"--value must be in (0, 1], got {args.value}")
    cells = wheel(args)
    for env_id in args.envs:  # the env's own checks (a background.color leaf), before any training
        for cell in cells:
            parse_shift(env_id, cell["variation"])
    return cells


def table_flags(args: Args, mode: str, env_id: str) -> list[str]:
    """The success_table.py flags every color shares (so that the trained models are shared too)."""
    flags = ["--envs", env_id, "--baselines", *args.baselines, "--seeds", str(args.seeds), "--seed",
             str(args.seed), "--device", args.device, "--threads", str(args.threads), "--jobs", str(args.jobs)]
    flags += [] if mode == "full" else [f"--{mode}"]
    for name in ("episodes", "train_steps"):
        if getattr(args, name) is not None:
            flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return flags


def run_cells(args: Args, mode: str, env_id: str, cells: list[dict], failures: list[str]) -> list[dict]:
    rows = []
    for cell in cells:
        row = {**cell, "models": {}, "floors": {}}
        try:
            result = common.success_table_under_shift(table_flags(args, mode, env_id), cell["variation"],
                                                      args.out_dir)
        except common.RunFailed as e:
            failures.append(str(e))
            rows.append({**row, "error": str(e).splitlines()[0]})
            continue
        failures += result.get("failures", [])
        row["models"], row["floors"] = common.success_by_baseline(result, env_id)
        rows.append(row)
    return rows


def record_table(env_id: str, rows: list[dict], baselines: tuple[str, ...], value: float, episodes: int) -> dict:
    columns = ["hue °", "saturation", "RGB"] + [c for b in baselines for c in (f"{MODELS[b]} %", f"{MODELS[b]} ±")]
    columns += ["no-op %", "random %"]
    out = []
    for r in rows:
        cells = [r["hue"], r["saturation"], ",".join(map(str, r["rgb"]))]
        for b in baselines:
            m = r["models"].get(b) or {}
            cells += [m.get("mean"), m.get("std")]
        out.append(cells + [float(np.mean(r["floors"][f])) if r["floors"].get(f) else None for f in ("no-op", "random")])
    formats = {"hue °": ".0f", "saturation": ".2f", **{c: ".1f" for c in columns if c.endswith((" %", " ±"))}}
    notes = [f"background.color at HSV value {value:g}; the first row (saturation 0) is the centre"
             + (", the training background (unshifted)" if rows and rows[0]["rgb"] == WHITE else "")
             + f"; dataset-driven protocol, {episodes} start/goal pairs per model, seed and color, models trained on "
             "white; floors: no-op and random under the same color",
             "paper (docs/reference.md §6, Push-T, LeWM): holds up near white and along green, collapses for red, "
             "blue and purple"]
    return common.table(f"{env_id}: success over background hue x saturation", columns, out, formats, notes)


def plot(path: Path, per_env: dict, baselines: tuple[str, ...]) -> None:
    """One polar heat map per (env, model): angle = hue, ring = saturation (the centre disc: saturation 0); an outer
    ring shows each hue's most saturated color."""
    plt = common.pyplot()
    panels = [(e, b) for e in per_env for b in baselines]
    fig = plt.figure(figsize=(4.6 * len(panels), 4.4))
    cmap = plt.get_cmap("viridis")
    for k, (env_id, b) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="polar")
        rows = per_env[env_id]
        hues = sorted({r["hue"] for r in rows if r["hue"] is not None})
        sats = sorted({r["saturation"] for r in rows if r["hue"] is not None})
        width = 2 * np.pi / max(len(hues), 1)
        for r in rows:
            mean = (r["models"].get(b) or {}).get("mean")
            color = cmap(mean / 100) if mean is not None else "lightgray"
            if r["hue"] is None:
                theta, bottom, height, w = 0.0, 0.0, 1.0, 2 * np.pi
            else:
                theta, bottom, height, w = np.deg2rad(r["hue"]), 1.0 + sats.index(r["saturation"]), 1.0, width
            ax.bar(theta, height, width=w, bottom=bottom, color=color, edgecolor="white", linewidth=0.5)
            if mean is not None:
                ax.text(theta if r["hue"] is not None else 0.0, bottom + height / 2 if r["hue"] is not None else 0.0,
                        f"{mean:.0f}", ha="center", va="center", fontsize=7, color="w" if mean < 60 else "k")
        top = max((r for r in rows if r["hue"] is not None), key=lambda r: r["saturation"], default=None)
        for r in rows:
            if top is not None and r["hue"] is not None and r["saturation"] == top["saturation"]:
                ax.bar(np.deg2rad(r["hue"]), 0.3, width=width, bottom=len(sats) + 1.1,
                       color=np.asarray(r["rgb"]) / 255, edgecolor="none")
        ax.set_ylim(0, len(sats) + 1.4)
        ax.set_yticks(np.arange(len(sats)) + 1.5, [f"s={s:.2f}" for s in sats], fontsize=6)
        ax.set_xticks(np.deg2rad(hues), [f"{h:.0f}°" for h in hues], fontsize=7)
        ax.set_rlabel_position(np.rad2deg(width) / 2)  # on a border between two hues
        ax.grid(False)
        ax.set_title(f"{MODELS[b]}, {env_id}: success %", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 100))
    fig.colorbar(sm, ax=fig.axes, shrink=0.7, pad=0.1, label="success %")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)  # not common.save_figure: tight_layout cannot place polar axes beside a colorbar
    plt.close(fig)


def main(args: Args) -> dict:
    t0 = time.perf_counter()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())
    cells = resolve(args, mode)
    command = common.command_line("benchmarks/color_wheel.py")
    per_env, failures = {}, []
    for env_id in args.envs:
        rows = per_env[env_id] = run_cells(args, mode, env_id, cells, failures)
        print(f"\nSuccess over the background color wheel, {env_id}: mean ± std over {args.seeds} seed(s)")
        for r in rows:
            hue = "centre" if r["hue"] is None else f"{r['hue']:.0f}°"
            numbers = "  ".join(f"{MODELS[b]} {m['mean']:.1f} ± {m['std']:.1f}" if (m := r["models"].get(b))
                                and m["mean"] is not None else f"{MODELS[b]} failed" for b in args.baselines)
            print(f"{hue:>7} s={r['saturation']:.2f} rgb={','.join(map(str, r['rgb'])):<12} {numbers}")
    seconds = time.perf_counter() - t0
    results = Path(args.results_dir)
    stem = "color_wheel" + ("" if mode == "full" else f"_{mode}")
    seeds = [args.seed + k for k in range(args.seeds)]
    result = {"command": command, "args": asdict(args), "mode": mode, "seeds": seeds, "seconds": seconds,
              "envs": per_env, "failures": failures}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(common.jsonable(result), indent=1))
    plot(results / f"{stem}.png", per_env, args.baselines)
    episodes = args.episodes or (2 if mode == "smoke" else 50)  # success_table's own defaults
    result["record"] = str(common.write_record(
        results, "color_wheel", config, title="Success over background hue x saturation (models trained on white)",
        command=command, seeds=seeds, quick=mode == "quick",
        tables=[record_table(e, rows, args.baselines, args.value, episodes) for e, rows in per_env.items()],
        seconds=seconds,
        threads={"per_subprocess": args.threads, "jobs": args.jobs}, extra={"failures": failures}))
    print(f"\nwrote {results / (stem + '.json')}, {results / (stem + '.png')}; total {seconds:.0f}s")
    if failures:
        print(f"{len(failures)} run(s) failed:\n" + "\n\n".join(failures), file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(1 if main(tyro.cli(Args))["failures"] else 0)
