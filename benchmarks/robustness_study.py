# Robustness across environments: `python benchmarks/robustness_study.py [--quick] [--shard i/n | --merge DIR]`.
"""The cross-environment, multi-seed robustness study the paper lacks: one sweep of distribution shifts at
evaluation (factors of variation and visual wrappers) replicated on structurally different environments, for
several world models and a goal-conditioned policy, over several seeds, with error bars.

Shifts (``SHIFTS``; every one applied at evaluation only, the training data stays unshifted):

- ``none``: in distribution;
- ``agent_color``, ``background_color``, ``agent_size``: one FoV leaf sampled uniformly over its range every
  episode (``--variation KEY``), the env's own leaf for that family (``FOV_LEAVES``: Two-Room's agent, Push-T's
  agent, CartPole's cart, Pendulum's pole); observations and goal image show it, a size changes the dynamics too;
- ``noise`` (``--wrapper noise:std=20``) and ``blur`` (``--wrapper blur:kernel=5,sigma=2``): visual wrappers on the
  observed frames, never on the goal.

Each job is one (env, shift, model, seed): ``benchmarks/success_table.py --envs ENV --baselines MODEL --seeds 1
--seed SEED --data-seed --seed [shift flags]`` run as a subprocess with the shared ``--out-dir`` (default:
success_table's own cache, runs/success_table). success_table passes the shift to planning and evaluation only,
so every shift of an (env, model, seed) reuses one trained checkpoint, and the checkpoints are those of a plain
``success_table.py --seeds N`` run on the same data (seed k: training seed k, pairs drawn with seed k, the data
of --seed). Models are planned as success_table plans them: LeWM with CEM, PLDM with MPPI, GCBC by its own policy
(its --eval-only mode); the dataset-driven protocol, goal offset 25, budget 50 env steps.

Jobs run ``--jobs`` at a time (one subprocess chain each): first one job per env (it collects that env's data),
then the (env, model, seed) groups in parallel, each group's shifts in turn (its checkpoint is trained once).

Cluster array jobs: ``--shard i/n`` runs only shard i of the job list and writes
``--results-dir``/robustness_study[_quick|_smoke]_shard-i-of-n.json. The jobs are ordered by env, model, seed,
shift; when n is at most the number of (env, model, seed) groups, each shard gets whole groups (contiguous, sizes
within one group), so no two shards train the same checkpoint; otherwise the job list itself is cut into n
contiguous parts. Shards that run at the same time must not share --out-dir (two could collect the same dataset
at once): give each its own; everything is seeded, so the numbers are the same. ``--merge DIR`` reads every
shard's JSON in DIR, checks that they come from one sweep and cover it, and writes the table, figure and record as
an unsharded run does.

Output: ``--results-dir``/robustness_study[_quick|_smoke].json and .png (panels per env: bars per model for each
shift, error bars = std over seeds, the random floor marked) and the record robustness_study-<config>.json
(``python scripts/results_md.py``): one table per env and a summary of each model's drop under shift.

--quick: Two-Room, Push-T and CartPole x none, agent_color, background_color, noise x LeWM, PLDM, GCBC x 3
seeds, 20 pairs per job, every CPU preset's own training length (docs/notes/robustness.md: the time estimate).
--smoke: the seconds-long run the tests use (Two-Room, none and agent_color, LeWM, 1 seed, success_table
--smoke). The default is the full sweep for a GPU: three envs, all six shifts, 50 pairs per job.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro

from swm_core.checkpoint import import_script
from swm_core.shift import parse_shift

ROOT = Path(__file__).resolve().parent.parent
common = import_script(Path(__file__).with_name("common.py"))
ENVS = ("swm/TwoRoom-v1", "swm/PushT-v1", "swm/CartPole-v1", "swm/Pendulum-v1")
# the FoV leaf of each family in each env ("agent": what the policy moves)
FOV_LEAVES = {
    "agent_color": {"swm/TwoRoom-v1": "agent.color", "swm/PushT-v1": "agent.color", "swm/CartPole-v1": "cart.color",
                    "swm/Pendulum-v1": "pole.color"},
    "background_color": {env: "background.color" for env in ENVS},
    "agent_size": {"swm/TwoRoom-v1": "agent.radius", "swm/PushT-v1": "agent.scale", "swm/CartPole-v1": "cart.width",
                   "swm/Pendulum-v1": "pole.width"},
}
WRAPPER_SHIFTS = {"noise": "noise:std=20", "blur": "blur:kernel=5,sigma=2"}
SHIFTS = ("none", *FOV_LEAVES, *WRAPPER_SHIFTS)
MODELS = ("lewm", "pldm", "gcbc", "gciql", "gcivl", "dinowm", "tdmpc2")  # success_table's baselines


@dataclass
class Args:
    envs: tuple[str, ...] = ENVS[:3]
    """env ids: swm/TwoRoom-v1, swm/PushT-v1, swm/CartPole-v1, swm/Pendulum-v1"""
    shifts: tuple[str, ...] = SHIFTS
    """shifts: none, agent_color, background_color, agent_size (FoV leaves sampled per episode), noise, blur
    (visual wrappers)"""
    models: tuple[str, ...] = ("lewm", "pldm", "gcbc")
    """success_table baselines to run (lewm, pldm, gcbc, gciql, gcivl, dinowm, tdmpc2)"""
    seeds: int = 3
    """seeds per (env, shift, model): training and pair seeds seed, seed + 1, ... on the data of --seed"""
    seed: int = 0
    """the first seed, and the seed of the collected data"""
    episodes: int | None = None
    """start/goal pairs per job (default: success_table's, 50; --quick 20)"""
    shard: str | None = None
    """run only shard i of n of the job list ('i/n', 0 <= i < n) and write its JSON for --merge"""
    merge: str | None = None
    """build the table, figure and record from the shard JSONs in this folder (runs nothing else)"""
    out_dir: str = "runs/success_table"
    """success_table's cache (datasets, checkpoints, plans), shared with it; the jobs' logs and JSONs go under it"""
    results_dir: str = "benchmarks/results"
    """where robustness_study[_quick|_smoke][_shard-i-of-n].json and .png go, and the record"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of every subprocess (0: inherit)"""
    jobs: int = 2
    """jobs run at a time (2: one per core of a 2-core CPU)"""
    quick: bool = False
    """a CPU sweep: 3 envs x 4 shifts x LeWM, PLDM, GCBC x 3 seeds, 20 pairs per job"""
    smoke: bool = False
    """seconds-long run for tests: Two-Room, none and agent_color, LeWM, 1 seed, success_table --smoke"""


MODE_SIZES = {"quick": dict(shifts=("none", "agent_color", "background_color", "noise"), episodes=20),
              "smoke": dict(envs=ENVS[:1], shifts=("none", "agent_color"), models=("lewm",), seeds=1)}


def apply_mode(args: Args, mode: str) -> None:
    """The mode's sizes, for the fields still at their defaults."""
    defaults = Args()
    for field, value in MODE_SIZES.get(mode, {}).items():
        if getattr(args, field) == getattr(defaults, field):
            setattr(args, field, value)


def shift_flags(env_id: str, shift: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(--variation, --wrapper) strings of ``shift`` in ``env_id``."""
    if shift == "none":
        return (), ()
    if shift in WRAPPER_SHIFTS:
        return (), (WRAPPER_SHIFTS[shift],)
    return (FOV_LEAVES[shift][env_id],), ()


def flags_label(env_id: str, shift: str) -> str:
    variation, wrapper = shift_flags(env_id, shift)
    return " ".join([*(f"--variation {v}" for v in variation), *(f"--wrapper {w}" for w in wrapper)]) or "-"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with n >= 1 and 0 <= i < n."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    index, count = int(parts[0]), int(parts[1])
    if count < 1 or index >= count:
        raise ValueError(f"--shard {text!r}: need n >= 1 and 0 <= i < n (shards are numbered 0 to n - 1)")
    return index, count


def job_list(args: Args) -> list[dict]:
    """Every (env, shift, model, seed) job, ordered by env, model, seed, then shift."""
    seeds = [args.seed + k for k in range(args.seeds)]
    return [{"env": env, "shift": shift, "model": model, "seed": seed}
            for env in args.envs for model in args.models for seed in seeds for shift in args.shifts]


def group_of(job: dict) -> tuple:
    """The (env, model, seed) whose checkpoint the job plans with."""
    return job["env"], job["model"], job["seed"]


def shard_jobs(jobs: list[dict], index: int, count: int) -> list[dict]:
    """Shard ``index`` of ``count``: whole (env, model, seed) groups when count <= groups (contiguous runs of
    groups, as equal as groups allow), else a contiguous part of the job list. Disjoint and complete over the
    shards, and the same for the same list."""
    if count > len(jobs):
        raise ValueError(f"--shard {index}/{count}: the sweep has only {len(jobs)} jobs; use at most {len(jobs)} shards")
    groups = list(dict.fromkeys(group_of(j) for j in jobs))
    if count <= len(groups):
        chosen = set(groups[index * len(groups) // count:(index + 1) * len(groups) // count])
        return [j for j in jobs if group_of(j) in chosen]
    return jobs[index * len(jobs) // count:(index + 1) * len(jobs) // count]


def check_args(args: Args) -> None:
    """Bad input fails here, before any data collection or training."""
    for name, given, allowed in (("--envs", args.envs, ENVS), ("--shifts", args.shifts, SHIFTS),
                                 ("--models", args.models, MODELS)):
        bad = [x for x in given if x not in allowed]
        if bad or not given:
            raise ValueError(f"{name} {list(given)}: unknown {bad or 'none given'}; allowed: {', '.join(allowed)}")
        if len(set(given)) != len(given):
            raise ValueError(f"{name} {list(given)}: each may be given once")
    missing = [m for m in args.models if not (ROOT / "baselines" / f"{m}_train.py").exists()]
    if missing:
        raise ValueError(f"--models {missing}: baselines/<name>_train.py not found")
    for name in ("seeds", "jobs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.shard is not None and args.merge is not None:
        raise ValueError("--shard runs part of a sweep and --merge combines finished shards: give one of them")
    for env in args.envs:  # the shift strings against each env (unknown leaves and bad wrapper values fail here)
        for shift in args.shifts:
            parse_shift(env, *shift_flags(env, shift))


def sweep_of(args: Args, mode: str, config: str) -> dict:
    """What identifies a sweep (the shards of one sweep carry the same)."""
    return {"mode": mode, "config": config, "envs": list(args.envs), "shifts": list(args.shifts),
            "models": list(args.models), "seeds": [args.seed + k for k in range(args.seeds)], "data_seed": args.seed,
            "episodes": args.episodes, "jobs": len(job_list(args)),
            "flags": {env: {s: flags_label(env, s) for s in args.shifts} for env in args.envs}}


# ---------------------------------------------------------------------------------------------------- jobs


def job_name(job: dict) -> str:
    return f"{common.slug(job['env'])}-{job['shift']}-{job['model']}-seed{job['seed']}"


def run_job(args: Args, mode: str, job: dict) -> dict:
    """One success_table subprocess for one job; returns the job with its success %, floors and status."""
    env, variation, wrapper = job["env"], *shift_flags(job["env"], job["shift"])
    results = Path(args.out_dir) / "robustness_jobs" / mode / job_name(job)
    shutil.rmtree(results, ignore_errors=True)
    cmd = ["benchmarks/success_table.py", "--envs", env, "--baselines", job["model"], "--seeds", "1", "--seed",
           str(job["seed"]), "--data-seed", str(args.seed), "--out-dir", args.out_dir, "--results-dir", str(results),
           "--device", args.device, "--threads", str(args.threads), "--jobs", "1",
           *([f"--{mode}"] if mode != "full" else []), *(["--episodes", str(args.episodes)] if args.episodes else []),
           *(["--variation", *variation] if variation else []), *(["--wrapper", *wrapper] if wrapper else [])]
    out = {**job, "variation": list(variation), "wrapper": list(wrapper), "status": "ok", "success": None,
           "floors": {}, "solver": None, "error": None, "command": "python " + " ".join(cmd)}
    t0 = time.perf_counter()
    try:
        common.run(cmd, results.with_suffix(".log"), args.threads)
    except common.RunFailed as e:
        out.update(status="failed", error=str(e))
    out["seconds"] = time.perf_counter() - t0
    found = [p for p in results.glob("success_table*.json") if not p.name.startswith("success_table-")]
    if len(found) != 1:
        out.update(status="failed", error=out["error"] or f"success_table wrote no result JSON in {results}")
        return out
    res = json.loads(found[0].read_text())["envs"][env]
    row = res["rows"][0]
    out["solver"] = row.get("solver")
    if row["per_seed"]:
        out["success"] = float(row["per_seed"][0])
    else:
        out.update(status="failed", error=out["error"] or "; ".join(row.get("errors") or [row.get("note", "")]))
    out["floors"] = {name: float(v[0]) for name, v in res["floors"].items() if v}
    return out


def execute(args: Args, mode: str, jobs: list[dict]) -> list[dict]:
    """Run the jobs, ``--jobs`` at a time: first one job per env (it collects the env's data), then every
    (env, model, seed) group's remaining jobs in turn, the groups in parallel. Results in job order."""
    done: dict[int, dict] = {}

    def run_group(indices: list[int]) -> None:
        for i in indices:
            done[i] = run_job(args, mode, jobs[i])
            j = done[i]
            success = "-" if j["success"] is None else f"{j['success']:.0f}%"
            print(f"[{len(done)}/{len(jobs)}] {job_name(j)}: {j['status']}, success {success} ({j['seconds']:.0f}s)",
                  flush=True)

    firsts = list({j["env"]: i for i, j in reversed(list(enumerate(jobs)))}.values())
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        if i not in firsts:
            groups.setdefault(group_of(job), []).append(i)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run_group, [i]) for i in sorted(firsts)]:
            future.result()
        for future in [pool.submit(run_group, indices) for indices in groups.values()]:
            future.result()
    return [done[i] for i in range(len(jobs))]


# ------------------------------------------------------------------------------------------------- results


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def build(sweep: dict, results: list[dict]) -> dict:
    """Per env and shift: each model's success per seed (in seed order), mean and std; the floors per seed (one
    value per seed, from the first job that planned them), their means; per env and model the drop under shift."""
    by_key = {(r["env"], r["shift"], r["model"], r["seed"]): r for r in results}
    per_env, summary = {}, []
    for env in sweep["envs"]:
        rows = []
        for shift in sweep["shifts"]:
            row = {"shift": shift, "flags": sweep["flags"][env][shift], "models": {}, "floors": {}}
            for model in sweep["models"]:
                jobs = [by_key.get((env, shift, model, s)) for s in sweep["seeds"]]
                values = [j["success"] for j in jobs if j and j["success"] is not None]
                m, sd = mean_std(values)
                row["models"][model] = {"per_seed": values, "mean": m, "std": sd,
                                        "failed": sum(1 for j in jobs if not j or j["status"] != "ok")}
            for name in ("no-op", "random"):
                per_seed = [next((by_key[(env, shift, model, s)]["floors"][name] for model in sweep["models"]
                                  if name in by_key.get((env, shift, model, s), {}).get("floors", {})), None)
                            for s in sweep["seeds"]]
                row["floors"][name] = mean_std([v for v in per_seed if v is not None])[0]
            rows.append(row)
        per_env[env] = rows
        summary += degradation(env, rows, sweep["models"])
    for model in sweep["models"]:  # the drop averaged over envs
        drops = [s["drop"] for s in summary if s["model"] == model and np.isfinite(s["drop"])]
        summary.append({"env": "all", "model": model, "none": float("nan"), "shifted": float("nan"),
                        "drop": float(np.mean(drops)) if drops else float("nan"), "worst_shift": "-",
                        "worst": float("nan")})
    return {"envs": per_env, "summary": summary}


def degradation(env: str, rows: list[dict], models: list[str]) -> list[dict]:
    """Per model: success without shift, mean under the shifts, the drop and the worst shift."""
    out = []
    base = next((r for r in rows if r["shift"] == "none"), None)
    for model in models:
        shifted = [(r["shift"], r["models"][model]["mean"]) for r in rows
                   if r["shift"] != "none" and np.isfinite(r["models"][model]["mean"])]
        none = base["models"][model]["mean"] if base else float("nan")
        mean_shifted = float(np.mean([v for _, v in shifted])) if shifted else float("nan")
        worst = min(shifted, key=lambda x: x[1]) if shifted else ("-", float("nan"))
        out.append({"env": env, "model": model, "none": none, "shifted": mean_shifted, "drop": none - mean_shifted,
                    "worst_shift": worst[0], "worst": worst[1]})
    return out


def record_tables(sweep: dict, built: dict) -> list[dict]:
    models, tables = sweep["models"], []
    columns = ["shift", "flags", *[c for m in models for c in (f"{m} %", f"{m} ± std")], "per seed",
               "no-op floor", "random floor"]
    formats = {c: ".1f" for c in columns if c.endswith("%") or c.endswith("std") or c.endswith("floor")}
    for env, rows in built["envs"].items():
        cells = [[r["shift"], r["flags"], *[v for m in models for v in (r["models"][m]["mean"], r["models"][m]["std"])],
                  " | ".join("/".join(f"{v:.0f}" for v in r["models"][m]["per_seed"]) for m in models),
                  r["floors"]["no-op"], r["floors"]["random"]] for r in rows]
        tables.append(common.table(
            f"{env}: success % under each evaluation shift", columns, cells, formats=formats,
            notes=[f"mean ± std over seeds {sweep['seeds']} (per seed: {' | '.join(models)}), "
                   f"{sweep['episodes'] or 50} dataset-driven pairs per job; training data unshifted",
                   "FoV shifts sample the leaf uniformly over its range every episode; wrappers touch the observed "
                   "frames only (docs/notes/robustness.md)"]))
    tables.append(common.table(
        "Drop under shift per model: success without shift minus the mean over the shifts",
        ["env", "model", "none %", "mean shifted %", "drop", "worst shift", "worst %"],
        [[s["env"], s["model"], s["none"], s["shifted"], s["drop"], s["worst_shift"], s["worst"]]
         for s in built["summary"]],
        formats={"none %": ".1f", "mean shifted %": ".1f", "drop": ".1f", "worst %": ".1f"},
        notes=["env 'all': the drop averaged over the envs"]))
    return tables


def print_tables(sweep: dict, built: dict, command: str) -> None:
    print(f"\nRobustness study (command: {command})")
    for env, rows in built["envs"].items():
        print(f"\n{env}: success % (mean ± std over seeds {sweep['seeds']})")
        print(f"{'shift':<18}" + "".join(f"{m:>16}" for m in sweep["models"]) + f"{'random floor':>14}   flags")
        for r in rows:
            cells = "".join(f"{r['models'][m]['mean']:>9.1f} ± {r['models'][m]['std']:<4.1f}" for m in sweep["models"])
            print(f"{r['shift']:<18}{cells}{r['floors']['random']:>14.1f}   {r['flags']}")
    print("\ndrop under shift (none minus the mean over shifts):")
    for s in built["summary"]:
        print(f"  {s['env']:<18}{s['model']:<8}drop {s['drop']:6.1f}   worst: {s['worst_shift']} ({s['worst']:.1f})")


def plot(path: Path, sweep: dict, built: dict) -> None:
    """One panel per env: for each shift, a bar per model (mean, error bar = std over seeds); random floor ticks."""
    plt = common.pyplot()
    envs, models, shifts = sweep["envs"], sweep["models"], sweep["shifts"]
    fig, axes = plt.subplots(len(envs), 1, figsize=(max(6.0, 1.2 * len(shifts) * (1 + 0.25 * len(models))),
                                                    2.8 * len(envs)), squeeze=False)
    width = 0.8 / len(models)
    for ax, env in zip(axes[:, 0], envs):
        rows = built["envs"][env]
        x = np.arange(len(rows))
        for k, model in enumerate(models):
            means = [r["models"][model]["mean"] for r in rows]
            stds = [r["models"][model]["std"] for r in rows]
            ax.bar(x + (k - (len(models) - 1) / 2) * width, np.nan_to_num(means), width,
                   yerr=np.nan_to_num(stds), capsize=2, label=model)
        ax.scatter(x, [r["floors"]["random"] for r in rows], marker="_", s=400, color="k", label="random floor")
        ax.set_xticks(x, [r["shift"] for r in rows], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("success %")
        ax.set_title(f"{env} (mean ± std over {len(sweep['seeds'])} seeds)", fontsize=9)
        ax.legend(fontsize=7, ncol=len(models) + 1)
    common.save_figure(fig, path)


def finish(args: Args, sweep: dict, results: list[dict], command: str, seconds: float, extra: dict) -> dict:
    """Table, figure, JSON and record from the jobs' results (an unsharded run or a merge)."""
    built = build(sweep, results)
    print_tables(sweep, built, command)
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = "robustness_study" + ("" if sweep["mode"] == "full" else f"_{sweep['mode']}")
    failures = [f"{job_name(r)}: {r['error']}" for r in results if r["status"] != "ok"]
    out = {"command": command, "sweep": sweep, "seconds": seconds, "jobs": results, **built, "failures": failures,
           **extra}
    (results_dir / f"{stem}.json").write_text(json.dumps(common.jsonable(out), indent=1))
    plot(results_dir / f"{stem}.png", sweep, built)
    print(f"wrote {results_dir / (stem + '.json')} and {results_dir / (stem + '.png')}")
    out["record"] = str(common.write_record(
        results_dir, "robustness_study", sweep["config"],
        title="Robustness across environments: success under evaluation shifts, models x seeds", command=command,
        seeds=sweep["seeds"], quick=sweep["mode"] == "quick", tables=record_tables(sweep, built), seconds=seconds,
        threads={"per_subprocess": args.threads or None, "jobs": args.jobs}, extra={"failures": failures, **extra}))
    return out


def shard_path(results_dir: Path, mode: str, index: int, count: int) -> Path:
    return results_dir / f"robustness_study{'' if mode == 'full' else '_' + mode}_shard-{index}-of-{count}.json"


def merge(args: Args, command: str) -> dict:
    """Combine the shard JSONs in --merge into the sweep's table, figure and record."""
    folder = Path(args.merge)
    files = sorted(folder.glob("robustness_study*_shard-*-of-*.json"))
    if not files:
        raise ValueError(f"--merge {folder}: no robustness_study*_shard-i-of-n.json files there")
    shards = [json.loads(p.read_text()) for p in files]
    sweeps = {json.dumps(s["sweep"], sort_keys=True) for s in shards}
    if len(sweeps) != 1:
        raise ValueError(f"--merge {folder}: the shard files come from {len(sweeps)} different sweeps "
                         f"({[p.name for p in files]}); keep one sweep's shards in the folder")
    counts = {s["shard"][1] for s in shards}
    got = sorted(s["shard"][0] for s in shards)
    if len(counts) != 1 or got != list(range(next(iter(counts)))):
        raise ValueError(f"--merge {folder}: shards {got} of {sorted(counts)}; every shard 0..n-1 is needed once")
    sweep = shards[0]["sweep"]
    results = [r for s in sorted(shards, key=lambda s: s["shard"][0]) for r in s["jobs"]]
    keys = [(r["env"], r["shift"], r["model"], r["seed"]) for r in results]
    if len(set(keys)) != len(keys) or len(keys) != sweep["jobs"]:
        raise ValueError(f"--merge {folder}: the shards hold {len(keys)} jobs ({len(set(keys))} distinct), the sweep "
                         f"has {sweep['jobs']}")
    return finish(args, sweep, results, command, sum(s["seconds"] for s in shards),
                  {"shards": [{"shard": s["shard"], "command": s["command"], "seconds": s["seconds"]}
                              for s in shards]})


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    command = common.command_line("benchmarks/robustness_study.py")
    if args.merge is not None:
        if args.shard is not None:
            raise ValueError("--shard runs part of a sweep and --merge combines finished shards: give one of them")
        return merge(args, command)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args(), ignore=("shard", "merge"))
    apply_mode(args, mode)
    check_args(args)
    jobs = job_list(args)
    shard = parse_shard(args.shard) if args.shard is not None else None
    mine = shard_jobs(jobs, *shard) if shard else jobs
    sweep = sweep_of(args, mode, config)
    print(f"{len(mine)} of {len(jobs)} jobs" + (f" (shard {shard[0]}/{shard[1]})" if shard else ""), flush=True)
    results = execute(args, mode, mine)
    seconds = time.perf_counter() - t_start
    if shard is None:
        return finish(args, sweep, results, command, seconds, {"args": asdict(args)})
    path = shard_path(Path(args.results_dir), mode, *shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {"command": command, "args": asdict(args), "sweep": sweep, "shard": list(shard), "seconds": seconds,
           "jobs": results,
           "job_list": hashlib.sha1(json.dumps(jobs).encode()).hexdigest()[:12]}
    path.write_text(json.dumps(common.jsonable(out), indent=1))
    print(f"wrote {path} ({len(results)} jobs; combine the shards with --merge {path.parent})")
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
