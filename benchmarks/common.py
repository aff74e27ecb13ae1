"""The plumbing every benchmark shares: running the project's scripts in subprocesses, caching their outputs, the
code hashes in cache names, reading the solver mains' JSON, plots, and the result records.

A benchmark loads this file by its path (``swm_core.checkpoint.import_script``), so it works the same when run as
``python benchmarks/<name>.py`` from anywhere and when a test loads the benchmark by its path.

Result records: every benchmark run writes one JSON file, ``<results dir>/<benchmark>-<config>.json``, holding the
exact command line, the git commit (and whether the tree had uncommitted changes), the CPU model, the thread
counts, the seeds, the date (UTC), whether it was a --quick run, and the rows of the tables it printed (with the
paper's numbers in their own columns where the benchmark prints them). ``<config>`` names the run configuration:
the mode (full, quick, smoke) and every flag that differs from that mode's defaults, so runs with other settings
never overwrite each other. ``python scripts/results_md.py`` turns the records in benchmarks/results/ into
docs/results.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
RECORD_SCHEMA = "swm-benchmark-record/1"
# the fields every record has (scripts/results_md.py refuses a record without one of them)
RECORD_FIELDS = ("schema", "benchmark", "config", "title", "command", "git", "cpu", "cpu_count", "threads", "seeds",
                 "date", "quick", "seconds", "tables")
# Args fields that only say where outputs and caches go or how many processes run at once: not part of a run's
# configuration name
OUTPUT_FIELDS = frozenset({"out_dir", "results_dir", "output_json", "output_png", "data_dir", "jobs"})


# ------------------------------------------------------------------------------------------------ subprocesses


class RunFailed(RuntimeError):
    """A project script exited with an error; the message holds the command, the log and its last lines."""


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that ran this benchmark, as a user types it from the repository root."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", script, *(shlex.quote(a) for a in args)])


def run(cmd: list[str], log: Path, threads: int = 1) -> float:
    """Run a project script (``cmd[0]`` a path relative to the repository root) with this Python, its output to
    ``log`` (whose first line is the command, see :func:`same_command`); return its wall time in seconds.
    ``threads`` > 0 sets OMP_NUM_THREADS and MKL_NUM_THREADS of the subprocess (0: inherit). Raises RunFailed."""
    env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    header = "$ python " + " ".join(cmd)
    print(header, flush=True)
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write(header + "\n")
        f.flush()
        proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-12:])
        raise RunFailed(f"{cmd[0]} exited with {proc.returncode} (log {log}):\n{tail}")
    return time.perf_counter() - t0


def same_command(cmd: list[str], log: Path) -> bool:
    """Whether ``log`` was written by :func:`run` running exactly ``cmd`` (its first line is the command)."""
    log = Path(log)
    if not log.is_file():
        return False
    with open(log) as f:
        return f.readline().rstrip("\n") == "$ python " + " ".join(cmd)


def slug(env_id: str) -> str:
    """'swm/TwoRoom-v1' -> 'tworoom' (for file names)."""
    return env_id.split("/")[-1].split("-")[0].lower()


def collect(env_id: str, path: Path, episodes: int, seed: int, expert_fraction: float, threads: int = 1) -> Path:
    """scripts/collect.py (a mix of expert and random episodes) into ``path`` unless it is already there; written
    under a temporary name, then moved, so an interrupted run leaves nothing that looks finished."""
    path = Path(path)
    if path.exists():
        print(f"reusing {path}")
        return path
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(["scripts/collect.py", "--env-id", env_id, "--output", str(partial), "--episodes", str(episodes),
         "--policy", "mix", "--expert-fraction", str(expert_fraction), "--seed", str(seed)],
        path.parent / "logs" / f"collect_{path.stem}.log", threads)
    partial.rename(path)
    return path


# ---------------------------------------------------------------------------------------- cache names, hashes


def code_hash(*paths: Path) -> str:
    """sha1[:8] of the files' bytes: a cached checkpoint or plan is reused only while the code that made it is
    byte for byte the same (the solver mains refuse a checkpoint whose training script's SHA-256 changed anyway)."""
    digest = hashlib.sha1()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:8]


def core_files() -> list[Path]:
    """swm_core's modules: what every training and planning script runs besides its own file."""
    return sorted((ROOT / "swm_core").rglob("*.py"))


def file_hash(path: str | Path) -> str:
    """sha1[:8] of a file's bytes (a weights file)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:8]


# ----------------------------------------------------------------------------------------- planning results


def read_plan(path: Path, protocol: str = "dataset") -> dict:
    """A planning JSON as the solver mains' ``--output-json`` (and TD-MPC2's evaluation) write it:
    ``{"args", "env_id", "tables": {protocol: rows}, protocol: {policy: per-episode results}}``. Returns
    ``{"args", "env_id", "model": the model's row (the first), "rows": {policy: row}, "per_episode": {policy: ...}}``.
    """
    data = json.loads(Path(path).read_text())
    try:
        rows = data["tables"][protocol]
    except KeyError:
        raise ValueError(f"{path} holds no {protocol!r} table (tables: {sorted(data.get('tables', {}))})") from None
    if not rows:
        raise ValueError(f"{path}: the {protocol!r} table is empty")
    return {"args": data.get("args", {}), "env_id": data.get("env_id"), "model": rows[0],
            "rows": {r["policy"]: r for r in rows}, "per_episode": data.get(protocol, {})}


def success_table_under_shift(flags: list[str], variation: list[str], out_dir: str | Path, threads: int = 1) -> dict:
    """benchmarks/success_table.py ``flags`` with ``--variation *variation`` (none: unshifted), its datasets,
    checkpoints and plans cached in ``out_dir``: the shift goes to planning only, so every call with the same
    ``flags`` reuses the same trained models. Its JSON and record go to ``out_dir/shifts/<hash of the shift>``.
    Returns its JSON result (``{"envs": {env_id: {"rows", "floors", ...}}, "failures", ...}``); a run that failed
    for some baselines returns what it wrote (its ``failures`` say which); one that wrote nothing raises RunFailed."""
    tag = "none" if not variation else "shift-" + hashlib.sha1(" ".join(variation).encode()).hexdigest()[:8]
    folder = Path(out_dir) / "shifts" / tag
    cmd = ["benchmarks/success_table.py", *flags, "--out-dir", str(out_dir), "--results-dir", str(folder),
           *(["--variation", *variation] if variation else [])]

    def outputs() -> list[Path]:  # its raw JSON (success_table[_mode][_shift-...].json), not its record (success_table-...)
        return [p for p in folder.glob("success_table*.json") if not p.name.startswith("success_table-")]

    for old in outputs():  # never read a previous run's result
        old.unlink()
    try:
        run(cmd, folder / "success_table.log", threads)
    except RunFailed:
        if not outputs():
            raise
    (path,) = outputs()
    return json.loads(path.read_text())


def success_by_baseline(result: dict, env_id: str) -> tuple[dict, dict]:
    """From a success_table result: ``{baseline: {"mean", "std", "per_seed", "status", "note"}}`` of ``env_id`` and
    its floors ``{"no-op": [% per seed], "random": [...]}``."""
    env = result["envs"][env_id]
    rows = {r["baseline"]: {k: r.get(k) for k in ("mean", "std", "per_seed", "status", "note")} for r in env["rows"]}
    for row in rows.values():
        if not row["per_seed"]:
            row["mean"] = row["std"] = None
    return rows, {k: list(v) for k, v in env["floors"].items()}


# ---------------------------------------------------------------------------------------------------- plots


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (benchmarks only write files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Save and close ``fig`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


# -------------------------------------------------------------------------------------------------- records


def jsonable(x):
    """A JSON-safe copy: numpy scalars and arrays to Python, tuples to lists, inf/nan to None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def _significant(x, digits: int = 6):
    """Floats rounded to ``digits`` significant digits (timings need no more), recursively."""
    if isinstance(x, float):
        return float(f"{x:.{digits}g}")
    if isinstance(x, list):
        return [_significant(v, digits) for v in x]
    return x


def dumps_record(record: dict) -> str:
    """A record as JSON text that reads well in a diff: one line per field, per table field and per table row."""
    record = jsonable(record)

    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"]
    for i, (key, value) in enumerate(record.items()):
        end = "," if i < len(record) - 1 else ""
        if key != "tables":
            lines.append(f" {dump(key)}: {dump(value)}{end}")
            continue
        lines.append(f" {dump(key)}: [")
        for j, tab in enumerate(value):
            lines.append("  {")
            for k, (tkey, tvalue) in enumerate(tab.items()):
                tend = "," if k < len(tab) - 1 else ""
                if tkey == "rows":
                    lines.append(f"   {dump(tkey)}: [")
                    lines += [f"    {dump(_significant(row))}" + ("," if r < len(tvalue) - 1 else "")
                              for r, row in enumerate(tvalue)]
                    lines.append(f"   ]{tend}")
                else:
                    lines.append(f"   {dump(tkey)}: {dump(tvalue)}{tend}")
            lines.append("  }" + ("," if j < len(value) - 1 else ""))
        lines.append(f" ]{end}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # valid JSON, or fail here rather than in scripts/results_md.py
    return text


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_state() -> dict:
    """``{"commit": HEAD or None, "dirty": uncommitted changes to tracked files}``; the records and
    docs/results.md themselves do not count (they change with every run)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)benchmarks/results", ":(exclude)docs/results.md"],
                                cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _token(name: str, value) -> str:
    """One flag of a configuration name, safe in a file name; a path or a long value becomes a short hash."""
    if isinstance(value, bool):
        return name if value else f"no_{name}"
    if isinstance(value, (tuple, list)):
        text = "_".join(str(v) for v in value)
    else:
        text = str(value)
    if len(text) > 32 or text.startswith(("/", ".", "~")) or Path(text).exists():  # a file: its name's hash
        text = hashlib.sha1(text.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "._" else "_" for c in text)
    return f"{name}{safe}"


def config_name(mode: str, args, defaults, ignore=()) -> str:
    """The run configuration's name: ``mode`` and, sorted by name, every Args field that differs from
    ``defaults`` (the same Args with the mode's defaults), except the output fields, the mode flags and ``ignore``.
    E.g. 'quick', 'quick-baselineslewm-block_noise-seeds7'."""
    skip = OUTPUT_FIELDS | {"quick", "smoke"} | set(ignore)
    tokens = []
    for field in sorted(f.name for f in dataclasses.fields(args)):
        value = getattr(args, field)
        if field not in skip and value != getattr(defaults, field):
            tokens.append(_token(field.replace("_", ""), value) if not isinstance(value, bool)
                          else _token(field, value))
    name = "-".join([mode, *tokens])
    if len(name) > 100:  # many flags: a short, stable name instead (the record holds the exact command)
        name = f"{mode}-custom-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def table(title: str, columns: list[str], rows: list[list], formats: dict | None = None,
          notes: list[str] | tuple[str, ...] = ()) -> dict:
    """One printed table for a record: ``rows`` are lists of cells in ``columns`` order (numbers, strings or
    None); ``formats`` maps a column to a Python format spec for docs/results.md (e.g. '.1f'); the paper's
    numbers go in their own column(s) named 'paper...' beside ours."""
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"table {title!r}: a row has {len(row)} cells for {len(columns)} columns: {row}")
    unknown = set(formats or {}) - set(columns)
    if unknown:
        raise ValueError(f"table {title!r}: formats for unknown columns {sorted(unknown)}")
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows], "formats": dict(formats or {}),
            "notes": list(notes)}


def write_record(directory: str | Path, benchmark: str, config: str, *, title: str, command: str, seeds: list[int],
                 quick: bool, tables: list[dict], seconds: float | None = None, threads: dict | None = None,
                 extra: dict | None = None) -> Path:
    """Write the run's record to ``<directory>/<benchmark>-<config>.json`` and return its path.

    ``threads``: thread counts besides this process's torch threads and OMP_NUM_THREADS (e.g. the subprocesses');
    ``extra``: anything else worth keeping with the numbers (JSON-able), e.g. the device or the paper's source."""
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    record = {
        "schema": RECORD_SCHEMA,
        "benchmark": benchmark,
        "config": config,
        "title": title,
        "command": command,
        "git": git_state(),
        "cpu": cpu_model(),
        "cpu_count": cpu_count(),
        "threads": {"torch": torch_threads, "omp": os.environ.get("OMP_NUM_THREADS"), **(threads or {})},
        "seeds": [int(s) for s in seeds],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(quick),
        "seconds": None if seconds is None else round(float(seconds), 1),
        "tables": tables,
        **(extra or {}),
    }
    path = Path(directory) / f"{benchmark}-{config}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_record(record))
    os.replace(tmp, path)
    print(f"wrote the record {path}")
    return path
