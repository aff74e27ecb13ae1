# The fault table: each fault performed for real on tiny data: `python benchmarks/fault_table.py [--rows ...]`.
"""Every row does one thing that goes wrong in practice, in a temporary folder, on tiny data, and records what was
done, what the project answered (its error message, abbreviated) and what was lost, which must be nothing: the data
and checkpoints that existed before the fault are checked byte for byte or value for value afterwards. A row whose
answer or loss is not what the project promises is marked FAILED, and the run exits 1.

Rows (``--rows`` picks some, by name): unknown_env, unknown_fov_key, fov_out_of_range, missing_dataset,
missing_column, truncated_data_file, flipped_bytes, truncated_jpeg, garbage_jpeg, checkpoint_mismatch,
malicious_checkpoint, nan_loss, kill_collect, kill_training, s3_restart, zero_sizes. The S3 row needs the
localbucket server (a dev dependency) and is skipped without it. Training, planning and collection run as
subprocesses of the project's own scripts with tiny flags (baselines/lewm_train.py, solvers/cem_plan.py,
scripts/collect.py); the rest call swm_core in this process. tests/test_fault_table.py runs each row function and
asserts its details. The run's record goes to --out-dir/fault_table-<config>.json (benchmarks/common.py). The table
as measured: docs/notes/faults.md
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import torch
import tyro

from swm_core import RandomPolicy, World
from swm_core.checkpoint import import_script, load_checkpoint, read_checkpoint, save_checkpoint
from swm_core.convert import convert
from swm_core.data import WindowDataset, open_dataset
from swm_core.integrity import CorruptDataError, verify_dataset
from swm_core.lance_writer import LanceWriter

common = import_script(Path(__file__).with_name("common.py"))
ROOT = Path(__file__).resolve().parent.parent
LOCALBUCKET = shutil.which("localbucket") or str(Path(sys.executable).parent / "localbucket")
# LeWM at its smallest (as tests/test_lewm.py trains it): seconds per run on one CPU thread
LEWM_FLAGS = [
    "--encoder", "conv", "--image-size", "32", "--conv-channels", "8", "16", "--latent-dim", "16",
    "--proj-hidden", "32", "--action-hidden", "16", "--pred-depth", "1", "--pred-heads", "2",
    "--pred-dim-head", "8", "--pred-mlp-dim", "32", "--history", "2", "--frameskip", "2", "--batch-size", "8",
    "--sigreg-num-proj", "16", "--val-fraction", "0.34", "--log-every", "2", "--val-every", "0",
    "--val-batches", "1", "--num-workers", "0", "--device", "cpu", "--lr", "1e-3",
]  # fmt: skip
LEWM_CONFIG = dict(action_block=2, history=2, image_size=32, encoder="conv", conv_channels=[8, 16], latent_dim=16,
                   proj_hidden=32, action_hidden=16, pred_depth=1, pred_heads=2, pred_dim_head=8, pred_mlp_dim=32,
                   dropout=0.0)  # fmt: skip


@dataclass
class Row:
    """One fault: what was done, what the project answered, what was lost; ``ok`` when the answer is the promised
    one and nothing was lost; ``details`` holds the full messages and figures the test asserts."""

    fault: str
    done: str
    answer: str
    lost: str
    ok: bool
    details: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- helpers


def short(text, limit: int = 170) -> str:
    """An error message on one line, the temporary folders left out of its paths, cut to ``limit`` characters."""
    words = []
    for word in str(text).split():
        start = word.find(tempfile.gettempdir() + "/")
        if start >= 0:  # '/tmp/swm_faults_x/row/d.lance' -> 'd.lance' (quotes and trailing punctuation kept)
            end = len(word.rstrip("'\":,;)"))
            word = word[:start] + word[word.rfind("/", start, end) + 1 :]
        words.append(word)
    text = " ".join(words)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_phrase(text, phrase: str, limit: int = 100) -> str:
    """``text`` abbreviated from ``phrase`` on (the part of a long message that says what is wrong)."""
    text = " ".join(str(text).split())
    i = text.find(phrase)
    return short(text if i < 0 else ("..." if i else "") + text[i:], limit)


def caught(fn: Callable) -> Exception | None:
    """The exception ``fn()`` raises, or None."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the row reports whatever the project raised
        return err
    return None


def answer_of(err: Exception | None) -> str:
    return "no error (nothing refused it)" if err is None else short(f"{type(err).__name__}: {err}")


def script(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a project script (path relative to the repository root) with one thread; its output is captured."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARN" not in ln]
    return lines[-1] if lines else f"(exit status {proc.returncode}, no message)"


def snapshot(path) -> tuple[int, str]:
    """(version, SHA-256 of every stored value in Arrow IPC form) of a dataset: what a fault must not change."""
    ds = lance.dataset(str(path))
    sink = pa.BufferOutputStream()
    table = ds.to_table()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return ds.version, hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def unchanged(path, before: tuple[int, str]) -> bool:
    return snapshot(path) == before


def collect_tiny(path, episodes: int = 2, seed: int = 0) -> Path:
    """A tiny Two-Room dataset (16 px, 6 steps per episode) recorded with World.collect."""
    world = World("swm/TwoRoom-v1", num_envs=1, image_size=16, max_episode_steps=6, seed=seed)
    world.collect(path, episodes=episodes, seed=seed, policy=RandomPolicy(seed=seed), progress=False)
    return Path(path)


def synthetic_episodes(episodes: int, steps: int, size: int = 16, seed: int = 0, action_dim: int = 2,
                       proprio: bool = True) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        ep = {"pixels": rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
              "action": rng.normal(0.0, 1.0, (steps, action_dim)).astype(np.float32)}
        if proprio:
            ep["proprio"] = rng.normal(0.0, 1.0, (steps, 4)).astype(np.float32)
        ep["action"][-1] = np.nan
        out.append(ep)
    return out


def write_synthetic(path, commits: list[list[dict]], env_id: str = "swm/Tiny-v0", size: int = 16) -> Path:
    """Write each list of episodes as one commit (one Lance version each)."""
    for episodes in commits:
        with LanceWriter(path, env_id=env_id, image_size=size, control_hz=10) as writer:
            for ep in episodes:
                writer.add_episode(ep)
    return Path(path)


def data_files(path, version: int | None = None) -> list[str]:
    """The data files (relative to the dataset) a version references."""
    ds = lance.dataset(str(path), version=version)
    return [f"data/{f.path}" for frag in ds.get_fragments() for f in frag.metadata.files]


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- input errors


def unknown_env(tmp: Path) -> Row:
    err = caught(lambda: World("swm/TwoRom-v1"))
    ok = isinstance(err, ValueError) and "unknown env id 'swm/TwoRom-v1'" in str(err) and "swm/TwoRoom-v1" in str(err)
    return Row("unknown env id", "World('swm/TwoRom-v1') (a typo)", answer_of(err),
               "nothing (nothing is created before the check)", ok, {"error": str(err)})


def _bad_collect(tmp: Path, options: dict) -> tuple[Exception | None, bool]:
    """Collect 2 episodes, then try to append 2 more with ``options``: (the error, whether the data is intact)."""
    path = collect_tiny(tmp / "d.lance")
    before = snapshot(path)
    world = World("swm/TwoRoom-v1", num_envs=1, image_size=16, max_episode_steps=6)
    err = caught(lambda: world.collect(path, episodes=2, options=options, policy=RandomPolicy(), progress=False))
    return err, unchanged(path, before)


def unknown_fov_key(tmp: Path) -> Row:
    err, intact = _bad_collect(tmp, {"variation": ["agent.colour"]})
    text = str(err)
    ok = isinstance(err, ValueError) and "unknown variation key 'agent.colour'" in text and "agent.color" in text
    return Row("unknown FoV key", "World.collect(..., options={'variation': ['agent.colour']}) onto a dataset",
               answer_of(err), "nothing: the dataset's 2 episodes are unchanged" if intact else "the dataset changed",
               ok and intact, {"error": text, "intact": intact})


def fov_out_of_range(tmp: Path) -> Row:
    err, intact = _bad_collect(tmp, {"variation_values": {"agent.color": [300, 0, 0]}})
    text = str(err)
    ok = isinstance(err, ValueError) and "'agent.color'" in text and "outside the allowed range" in text
    return Row("out-of-range FoV value", "collect with variation_values {'agent.color': [300, 0, 0]} (max 255)",
               answer_of(err), "nothing: the dataset's 2 episodes are unchanged" if intact else "the dataset changed",
               ok and intact, {"error": text, "intact": intact})


def missing_dataset(tmp: Path) -> Row:
    path = tmp / "nope.lance"
    errors = [caught(lambda: open_dataset(path)), caught(lambda: WindowDataset(path))]
    ok = all(isinstance(e, FileNotFoundError) and "nope.lance" in str(e) for e in errors) and not path.exists()
    return Row("missing dataset", "open_dataset / WindowDataset on a path that holds nothing", answer_of(errors[1]),
               "nothing (no empty dataset is created there)", ok, {"errors": [str(e) for e in errors]})


def missing_column(tmp: Path) -> Row:
    path = write_synthetic(tmp / "d.lance", [synthetic_episodes(2, 10, proprio=False)])
    before = snapshot(path)
    err = caught(lambda: WindowDataset(path, columns=("pixels", "action", "proprio")))
    text = str(err)
    intact = unchanged(path, before)
    ok = isinstance(err, KeyError) and "'proprio' is not in" in text and "available" in text and intact
    return Row("dataset missing a column", "WindowDataset(columns=(pixels, action, proprio)) on data without proprio",
               answer_of(err), "nothing: the dataset is unchanged", ok, {"error": text})


def zero_sizes(tmp: Path) -> Row:
    path = collect_tiny(tmp / "d.lance")
    before = snapshot(path)
    world = World("swm/TwoRoom-v1", image_size=16, max_episode_steps=6)
    windows = WindowDataset(path, num_steps=2, frameskip=1, columns=("pixels", "action"), split="all")
    errors = {
        "num_envs=0": caught(lambda: World("swm/TwoRoom-v1", num_envs=0)),
        "num_envs=-2": caught(lambda: World("swm/TwoRoom-v1", num_envs=-2)),
        "episodes=0": caught(lambda: world.collect(path, episodes=0, progress=False)),
        "episodes=-1": caught(lambda: world.collect(path, episodes=-1, progress=False)),
        "batch_size=0": caught(lambda: windows.loader(batch_size=0)),
        "batch_size=-8": caught(lambda: windows.loader(batch_size=-8)),
    }
    data = write_synthetic(tmp / "train.lance", [synthetic_episodes(6, 30, size=32)])
    proc = script("baselines/lewm_train.py", "--dataset", data, "--total-steps", "2", "--output",
                  tmp / "run" / "model.pt", *LEWM_FLAGS, "--batch-size", "0")  # fmt: skip
    said = {k: str(e) for k, e in errors.items()}
    said["lewm_train.py --batch-size 0"] = last_line(proc)
    named = all(e is not None and k.split("=")[1] in str(e) for k, e in errors.items())
    ok = named and proc.returncode != 0 and "got 0" in said["lewm_train.py --batch-size 0"]
    intact = unchanged(path, before) and not (tmp / "run").exists()
    return Row("zero or negative sizes", "World(num_envs=0 / -2), collect(episodes=0 / -1), loader(batch_size=0 / -8), "
               "lewm_train.py --batch-size 0", " | ".join(short(said[k], 70) for k in
                                                          ("num_envs=0", "episodes=-1", "batch_size=0")),
               "nothing: the dataset is unchanged, no run folder" if intact else "the dataset changed",
               ok and intact, {"errors": said})


# --------------------------------------------------------------------------------------------- damaged data


def truncated_data_file(tmp: Path) -> Row:
    first, second = synthetic_episodes(2, 12, seed=1), synthetic_episodes(1, 12, seed=2)
    path = write_synthetic(tmp / "d.lance", [first, second])
    added = sorted(set(data_files(path, 2)) - set(data_files(path, 1)))[0]
    v1 = open_dataset(path, version=1)
    want = v1.read_rows(np.arange(v1.num_rows), ["pixels", "action"])
    damaged = path / added
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    err = caught(lambda: open_dataset(path))
    report = verify_dataset(path)
    v1 = open_dataset(path, version=1)
    got = v1.read_rows(np.arange(v1.num_rows), ["pixels", "action"])
    v1_intact = all(np.array_equal(got[k], want[k], equal_nan=True) for k in want)
    v1_clean = not verify_dataset(path, version=1)["corrupted"]
    ok = isinstance(err, ValueError) and report["corrupted"] == [added] and v1_intact and v1_clean
    return Row("truncated Lance data file", "cut the data file of the 2nd commit to half its size",
               f"{short(answer_of(err), 110)} | verify names {added[:16]}...: "
               + next((f["detail"] for f in report["files"] if f["status"] == "corrupted"), "nothing"),
               "nothing else: version 1 (2 episodes) reads back exactly and verifies clean; the damaged file is named "
               "for a restore", ok, {"error": str(err), "report": report, "added": added, "v1_intact": v1_intact})


def flipped_bytes(tmp: Path) -> Row:
    episodes = synthetic_episodes(3, 12, seed=3)
    path = write_synthetic(tmp / "d.lance", [episodes])
    actions = np.concatenate([ep["action"] for ep in episodes])
    row = 5
    (name,) = data_files(path)
    raw = bytearray((path / name).read_bytes())
    at = raw.find(actions[row].tobytes())
    if at < 0:
        raise RuntimeError(f"the action values of row {row} are not stored plainly in {name}: cannot flip them")
    raw[at + 3] ^= 0x40  # the exponent byte of the first float32 of row 5's action
    (path / name).write_bytes(bytes(raw))
    read = open_dataset(path).read_rows([row], ["action"])["action"][0]
    silently_wrong = not np.array_equal(read, actions[row])
    report = verify_dataset(path)
    window_err = caught(lambda: WindowDataset(path, split="all", columns=("pixels", "action"), verify=True))
    inspector = import_script(ROOT / "scripts" / "inspect_dataset.py")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = inspector.main(inspector.Args(dataset=str(path), verify=True))
    ok = (silently_wrong and report["corrupted"] == [name] and isinstance(window_err, CorruptDataError)
          and name in str(window_err) and status == 1 and f"CORRUPTED {name}" in out.getvalue())
    return Row("bytes flipped inside stored values", f"flipped one bit of the action of row {row} in its data file",
               f"a plain read gives {read[0]:.4g} for {actions[row][0]:.4g}, no error; verify: "
               f"{short(str(window_err), 110)}; inspect_dataset.py --verify exits {status}",
               "nothing silently: the corrupted file is named (restore it from a copy)", ok,
               {"report": report, "error": str(window_err), "inspect_status": status, "inspect": out.getvalue(),
                "silently_wrong": silently_wrong, "file": name})


def _bad_jpeg(tmp: Path, kind: str) -> Row:
    episodes = synthetic_episodes(3, 12, seed=4)
    good = write_synthetic(tmp / "good.lance", [episodes])
    table = lance.dataset(str(good)).to_table()
    pixels = table.column("pixels").to_pylist()
    row = 12 + 7  # episode 1, step 7
    cell = pixels[row]
    pixels[row] = (cell[: len(cell) // 2] if kind == "truncated"
                   else bytes(np.random.default_rng(0).integers(0, 256, len(cell), dtype=np.uint8)))
    table = table.set_column(table.schema.get_field_index("pixels"), table.schema.field("pixels"),
                             pa.array(pixels, pa.binary()))
    path = tmp / "bad.lance"  # as another tool (or a failing disk) could leave it
    lance.write_dataset(table, str(path), schema=table.schema)
    windows = WindowDataset(path, num_steps=2, frameskip=1, split="all", columns=("pixels", "action"))
    read_err = caught(lambda: windows.batch(list(range(len(windows)))))
    convert_err = caught(lambda: convert(path, tmp / "copy.lance"))
    intact = all(np.array_equal(open_dataset(path).read_episode(e, ["pixels"])["pixels"],
                                open_dataset(good).read_episode(e, ["pixels"])["pixels"]) for e in (0, 2))
    named = all(e is not None and "episode 1, step 7" in str(e) for e in (read_err, convert_err))
    ok = named and not (tmp / "copy.lance").exists() and intact
    what = "its first half" if kind == "truncated" else "random bytes"
    return Row(f"{kind} JPEG cell", f"replaced the JPEG of episode 1, step 7 with {what}; read a batch; convert to "
               "Lance", f"read: {short(str(read_err), 110)} | convert: {short(str(convert_err), 80)}",
               "nothing: the other episodes read; no partial copy is left", ok,
               {"read_error": str(read_err), "convert_error": str(convert_err)})


def truncated_jpeg(tmp: Path) -> Row:
    return _bad_jpeg(tmp, "truncated")


def garbage_jpeg(tmp: Path) -> Row:
    return _bad_jpeg(tmp, "garbage")


# ---------------------------------------------------------------------------------------------- checkpoints


def lewm_checkpoint(path, env_id: str, action_dim: int = 2) -> Path:
    """An untrained tiny LeWM checkpoint (the training script's own class) recorded for ``env_id``."""
    lewm = import_script(ROOT / "baselines" / "lewm_train.py")
    torch.manual_seed(0)
    config = dict(LEWM_CONFIG, action_dim=action_dim)
    return save_checkpoint(path, lewm.LeWM(**config), config=config, env_id=env_id, step=0)


def checkpoint_mismatch(tmp: Path) -> Row:
    pusht = lewm_checkpoint(tmp / "pusht" / "model.pt", "swm/PushT-v1")
    wide = lewm_checkpoint(tmp / "wide" / "model.pt", "swm/TwoRoom-v1", action_dim=3)
    digests = {p: file_digest(p) for p in (pusht, wide)}
    plan = ["--env-id", "swm/TwoRoom-v1", "--episodes", "1", "--num-envs", "1", "--num-samples", "8", "--topk", "2",
            "--iters", "1", "--horizon", "2", "--receding-horizon", "2", "--eval-budget", "4", "--no-floors"]
    other_env = script("solvers/cem_plan.py", "--checkpoint", pusht, "--output-json", tmp / "a.json", *plan)
    other_size = script("solvers/cem_plan.py", "--checkpoint", wide, "--output-json", tmp / "b.json", *plan)
    tiny = lewm_checkpoint(tmp / "tiny" / "model.pt", "swm/Tiny-v0", action_dim=3)
    data = write_synthetic(tmp / "train.lance", [synthetic_episodes(6, 30, size=32)])
    resume = script("baselines/lewm_train.py", "--dataset", data, "--total-steps", "2", "--resume", tiny,
                    "--output", tmp / "run" / "model.pt", *LEWM_FLAGS)  # fmt: skip
    said = [last_line(p) for p in (other_env, other_size, resume)]
    ok = (all(p.returncode != 0 for p in (other_env, other_size, resume))
          and "trained on 'swm/PushT-v1', but the env to plan in is 'swm/TwoRoom-v1'" in said[0]
          and "size 3" in said[1] and "action_dim 3" in said[2])
    intact = all(file_digest(p) == d for p, d in digests.items()) and not any(
        (tmp / n).exists() for n in ("a.json", "b.json", "run"))
    return Row("checkpoint of another env or action size", "plan Two-Room with a Push-T checkpoint and with a 3-D "
               "action one (cem_plan.py); resume a 3-D action checkpoint on 2-D data (lewm_train.py)",
               " | ".join(from_phrase(s, k) for s, k in zip(said, ("was trained on", "expects actions",
                                                                   "was trained with"))),
               "nothing: the checkpoints are unchanged, no result or run folder is written" if intact
               else "something was written", ok and intact, {"errors": said})


class _RunsCode:
    """A pickle payload that creates ``marker`` when unpickled (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(tmp: Path) -> Row:
    marker, control = tmp / "pwned", tmp / "control_pwned"
    path = tmp / "evil" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format_version": 2, "class_name": "LeWM", "config": "{}", "extra": "{}",
                "state_dict": {"w": _RunsCode(marker)}}, path)
    # the control: the same kind of file, unpickled the unsafe way in another process, does run its code
    live = tmp / "evil" / "control.pt"
    torch.save({"state_dict": _RunsCode(control)}, live)
    script("-c", f"import torch; torch.load({str(live)!r}, weights_only=False)")
    err = caught(lambda: load_checkpoint(path))
    solver = script("solvers/cem_plan.py", "--checkpoint", path, "--env-id", "swm/TwoRoom-v1", "--episodes", "1")
    ok = (control.exists() and isinstance(err, ValueError) and "not a readable swm checkpoint" in str(err)
          and solver.returncode != 0 and not marker.exists())
    refused = " ".join(str(err).split()).partition("Unsupported global: GLOBAL ")[2].split(" ")[0]  # torch names it
    return Row("malicious checkpoint", "a model.pt whose pickle opens a file when loaded (the same payload, "
               "loaded unsafely elsewhere, does)", f"{short(str(err), 75)}"
               + (f" (Unsupported global: GLOBAL {refused})" if refused else "")
               + f"; cem_plan.py exits {solver.returncode}",
               "nothing: no code ran (the marker file was not created)" if not marker.exists()
               else "the payload ran", ok, {"error": str(err), "marker_created": marker.exists(),
                                            "control_created": control.exists(), "solver": last_line(solver)})


# ------------------------------------------------------------------------------------------------ training


def training_data(tmp: Path) -> Path:
    return write_synthetic(tmp / "train.lance", [synthetic_episodes(6, 30, size=32, seed=5)])


def nan_loss(tmp: Path) -> Row:
    data = training_data(tmp)
    ckpt = tmp / "run" / "model.pt"
    # NaN gradients at the 4th optimisation step (step 3), the loss itself finite: the script must stop there
    proc = script("tests/poison_grads.py", "4", "baselines/lewm_train.py", "--dataset", data, "--total-steps", "6",
                  "--checkpoint-every", "3", "--output", ckpt, *LEWM_FLAGS)  # fmt: skip
    said = last_line(proc)
    model_err = caught(lambda: load_checkpoint(ckpt))
    step = read_checkpoint(ckpt)["extra"].get("step") if ckpt.exists() else None
    finite = model_err is None and all(torch.isfinite(v).all() for v in load_checkpoint(ckpt)[0].state_dict().values()
                                       if v.is_floating_point())
    ok = (proc.returncode != 0 and f"became nan at step 3; the last good checkpoint is {ckpt}" in said
          and step == 3 and finite)
    return Row("NaN loss", "lewm_train.py with NaN gradients injected at step 3 (tests/poison_grads.py)", short(said),
               f"nothing: the step-{step} checkpoint loads, every weight finite" if finite
               else "no loadable checkpoint",
               ok, {"error": said, "checkpoint_step": step})


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the process ended (status {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise RuntimeError(f"no {what} within {timeout:.0f} s")


def _killed(cmd: list, ready: Callable[[], bool], what: str) -> None:
    """Start a project script, wait until ``ready()``, then kill -9 it."""
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    proc = subprocess.Popen([sys.executable, *map(str, cmd)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for(ready, proc, 180, what)
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup runs
        proc.wait()


def kill_collect(tmp: Path) -> Row:
    path = tmp / "d.lance"
    flags = ["scripts/collect.py", "--env-id", "swm/TwoRoom-v1", "--output", path, "--num-envs", "1", "--image-size",
             "16", "--max-episode-steps", "10", "--commit-every", "2", "--policy", "random"]

    def committed_twice() -> bool:
        try:
            return lance.dataset(str(path)).version >= 2
        except (ValueError, OSError):  # nothing committed yet
            return False

    _killed([*flags, "--episodes", "100000"], committed_twice, "second commit")
    ds = open_dataset(path)
    kept, lengths = ds.num_episodes, ds.episode_lengths.tolist()
    report = verify_dataset(path)
    rerun = script(*flags, "--episodes", "3", "--seed", "500")
    after = open_dataset(path)
    whole = kept >= 2 and kept % 2 == 0 and all(n == 11 for n in lengths)
    appended = rerun.returncode == 0 and after.episode_ids.tolist() == list(range(kept + 3))
    ok = whole and not report["corrupted"] and appended
    return Row("kill -9 during collect", "collect.py --commit-every 2 killed with SIGKILL mid-run (after >= 2 "
               "commits); then rerun with --episodes 3",
               f"opens with {kept} whole episodes ({kept // 2} commits), verify: "
               f"{len(report['ok'])} files ok; the rerun appends episodes {kept}..{kept + 2}",
               "no committed episode (the uncommitted tail, < --commit-every episodes, is re-collected)", ok,
               {"kept": kept, "lengths": lengths, "report": report, "after": after.episode_ids.tolist(),
                "rerun": rerun.returncode})


def kill_training(tmp: Path) -> Row:
    data = training_data(tmp)
    ckpt = tmp / "killed" / "model.pt"
    train = ["baselines/lewm_train.py", "--dataset", data, *LEWM_FLAGS, "--checkpoint-every", "2"]

    def checkpointed() -> bool:
        try:
            return ckpt.exists() and read_checkpoint(ckpt)["extra"].get("step", 0) >= 2
        except (ValueError, OSError):
            return False

    _killed([*train, "--total-steps", "100000", "--output", ckpt], checkpointed, "checkpoint at step 2")
    killed_at = read_checkpoint(ckpt)["extra"]["step"]
    total = killed_at + 4
    resumed = script(*train, "--total-steps", total, "--resume", ckpt, "--output", tmp / "resumed" / "model.pt")
    straight = script(*train, "--total-steps", total, "--output", tmp / "straight" / "model.pt")
    if resumed.returncode or straight.returncode:
        return Row("kill -9 during training", "", last_line(resumed if resumed.returncode else straight), "?", False,
                   {"resumed": resumed.stderr[-2000:], "straight": straight.stderr[-2000:]})
    a = load_checkpoint(tmp / "resumed" / "model.pt")[0].state_dict()
    b = load_checkpoint(tmp / "straight" / "model.pt")[0].state_dict()
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    step = read_checkpoint(tmp / "resumed" / "model.pt")["extra"]["step"]
    return Row("kill -9 during training", f"lewm_train.py --checkpoint-every 2 killed with SIGKILL (its last "
               f"checkpoint: step {killed_at}); --resume it to step {total}; the same run uninterrupted",
               f"resumed from step {killed_at} to {step}; final weights vs the uninterrupted run: "
               + ("identical" if diff == 0 else f"max |diff| {diff:.3g} (not an exact resume)"),
               f"nothing: the step-{killed_at} checkpoint loads; steps after it are recomputed",
               step == total and caught(lambda: load_checkpoint(ckpt)) is None,
               {"killed_at": killed_at, "final_step": step, "max_abs_diff": diff})


# ---------------------------------------------------------------------------------------------------- S3


class _Server:
    """localbucket serving ``root`` on a free local port; restartable on the same port."""

    def __init__(self, root: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root, self.proc = root, None

    def start(self) -> None:
        self.proc = subprocess.Popen([LOCALBUCKET, "--host", "127.0.0.1", "--port", str(self.port), str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"localbucket did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def s3_restart(tmp: Path) -> Row:
    if not os.path.exists(LOCALBUCKET):
        return Row("S3 server restarted mid-epoch", "skipped: the localbucket server is not installed", "-", "-", True,
                   {"skipped": True})
    from swm_core.s3 import s3_storage_options

    (tmp / "s3" / "bucket").mkdir(parents=True)
    server = _Server(tmp / "s3")
    restarter = threading.Timer(1.0, server.start)
    server.start()
    try:
        so = s3_storage_options(f"http://127.0.0.1:{server.port}", "test", "test", "us-east-1", max_retries=10,
                                retry_timeout=20)  # fmt: skip
        episodes = synthetic_episodes(4, 30, seed=6)
        write_synthetic(tmp / "local.lance", [episodes])
        remote = "s3://bucket/d.lance"
        with LanceWriter(remote, env_id="swm/Tiny-v0", image_size=16, storage_options=so) as writer:
            for ep in episodes:
                writer.add_episode(ep)
        kw = dict(num_steps=3, frameskip=2, split="all", columns=("pixels", "action", "proprio"))
        expected = list(WindowDataset(tmp / "local.lance", **kw).loader(batch_size=8, seed=0))
        got = []
        for i, batch in enumerate(WindowDataset(remote, storage_options=so, **kw).loader(batch_size=8, seed=0)):
            got.append(batch)
            if i == 0:  # the server goes away for about a second, mid-epoch
                server.stop()
                restarter.start()
        waited = restarter.finished.is_set()  # the epoch ended after the restart: its reads met the outage
        same = len(got) == len(expected) and all(
            torch.equal(torch.nan_to_num(g[c]), torch.nan_to_num(e[c])) for g, e in zip(got, expected) for c in g)
        report = verify_dataset(remote, so)
    finally:
        restarter.cancel()  # a failed epoch must not leave a server started behind it
        if restarter.is_alive():
            restarter.join()
        server.stop()
    ok = same and waited and len(report["ok"]) == len(report["files"]) > 0
    return Row("S3 server restarted mid-epoch", "localbucket killed after the 1st batch of an epoch, restarted 1 s "
               "later", f"reads retried: all {len(got)} batches arrived (verify over S3: {len(report['ok'])} files ok)",
               "nothing: every batch equals the local copy's, in the same order" if same else "batches differ", ok,
               {"batches": len(got), "expected": len(expected), "same": same, "waited": waited, "report": report})


# ------------------------------------------------------------------------------------------------ the table

ROWS: dict[str, Callable[[Path], Row]] = {
    "unknown_env": unknown_env, "unknown_fov_key": unknown_fov_key, "fov_out_of_range": fov_out_of_range,
    "missing_dataset": missing_dataset, "missing_column": missing_column, "truncated_data_file": truncated_data_file,
    "flipped_bytes": flipped_bytes, "truncated_jpeg": truncated_jpeg, "garbage_jpeg": garbage_jpeg,
    "checkpoint_mismatch": checkpoint_mismatch, "malicious_checkpoint": malicious_checkpoint, "nan_loss": nan_loss,
    "kill_collect": kill_collect, "kill_training": kill_training, "s3_restart": s3_restart, "zero_sizes": zero_sizes,
}  # fmt: skip


@dataclass
class Args:
    rows: tuple[str, ...] = ()
    """rows to run, by name (default: all; the names are listed in this file's docstring)"""
    out_dir: str = "benchmarks/results"
    """where the run's record fault_table-<config>.json goes"""
    keep: bool = False
    """keep the temporary folder of each row (its path is printed)"""


def run_row(name: str, tmp: Path) -> Row:
    """A row; an unexpected exception becomes a FAILED row naming it (the other rows still run)."""
    t0 = time.perf_counter()
    try:
        row = ROWS[name](tmp)
    except Exception as err:  # noqa: BLE001
        row = Row(name, "", f"the row itself failed: {short(f'{type(err).__name__}: {err}')}", "?", False)
    row.details["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main(args: Args) -> list[Row]:
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"--rows: unknown row(s) {unknown}; allowed: {list(ROWS)}")
    t_start = time.perf_counter()
    names = list(args.rows) or list(ROWS)
    base = Path(tempfile.mkdtemp(prefix="swm_faults_"))
    rows = []
    try:
        for name in names:
            (base / name).mkdir()
            rows.append(run_row(name, base / name))
            r = rows[-1]
            print(f"[{'ok' if r.ok else 'FAILED'}] {r.fault} ({r.details['seconds']} s)\n  done: {r.done}\n"
                  f"  answer: {r.answer}\n  lost: {r.lost}", flush=True)
    finally:
        if args.keep:
            print(f"kept the rows' folders under {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    command = common.command_line("benchmarks/fault_table.py")
    table = common.table("Faults performed for real on tiny data: what the project answered and what was lost",
                         ["fault", "what was done", "what the project answered", "what was lost", "ok"],
                         [[r.fault, r.done, r.answer, r.lost, "yes" if r.ok else "FAILED"] for r in rows],
                         notes=["each row runs in a temporary folder; messages are abbreviated; 'ok': the answer "
                                "is the promised one and the data or checkpoint from before the fault is intact"])
    common.write_record(args.out_dir, "fault_table", common.config_name("full", args, Args()),
                        title="Fault table", command=command, seeds=[0], quick=False, tables=[table],
                        seconds=time.perf_counter() - t_start, threads={"subprocesses": 1})
    failed = [r.fault for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)} of {len(rows)} rows as promised" + (f"; FAILED: {failed}" if failed else ""))
    if failed:
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args))
