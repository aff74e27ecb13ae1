"""Exact resume: what a training script saves, beyond the weights, to continue a run as if it had never stopped
(``swm_core`` does not import this module).

A checkpoint ``model.pt`` (:mod:`swm_core.checkpoint`) holds the weights and the model's config. Beside it,
``model.train-<step>.pt`` holds the training state: the step, the optimizers' (and any scheduler's) state dicts,
the data position (``ShardedBatches.state_dict()``) and whatever else the script passes; tensors and plain values
only, so it loads with ``weights_only=True``. Random draws: the scripts reseed Python, NumPy and torch at the start
of every step from (seed, step, rank) with :func:`seed_step`, so after a resume they draw what the uninterrupted
run drew, whatever the generators did before (validation, another process count), and no generator state is saved.

:func:`save` writes the training state first, then the checkpoint (through the caller, atomically), which names the
training state in its extras (``train_state``), then removes the older training states of that checkpoint. A
process killed at any point leaves the old checkpoint with the training state it names, or the new pair.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from swm_core.checkpoint import atomic_save


def state_path(checkpoint, step: int) -> Path:
    """Where the training state of ``checkpoint`` at ``step`` lives: ``<stem>.train-<step>.pt`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.train-{int(step):08d}.pt")


def save(checkpoint, step: int, state: dict, write_checkpoint: Callable[[str], object]) -> Path:
    """Write the training ``state`` at ``step``, then call ``write_checkpoint(name)``, which must write the
    checkpoint atomically with ``train_state=name`` among its extras, then remove older training states."""
    path = state_path(checkpoint, step)
    atomic_save({**state, "step": int(step)}, path)
    write_checkpoint(path.name)
    for old in path.parent.glob(f"{glob.escape(Path(checkpoint).stem)}.train-*.pt"):
        if old.name != path.name:
            old.unlink(missing_ok=True)
    return Path(checkpoint)


def load(checkpoint, ckpt: dict, map_location="cpu") -> dict | None:
    """The training state that the checkpoint ``ckpt`` (read from ``checkpoint``) names, or None when it names
    none (written without one) or the file is not beside it (a checkpoint copied alone)."""
    name = (ckpt.get("extra") or {}).get("train_state")
    if not name:
        return None
    path = Path(checkpoint).with_name(name)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} (the training state of {checkpoint}) is not readable: {err}") from None
    step = (ckpt.get("extra") or {}).get("step")
    if not isinstance(state, dict) or state.get("step") != step:
        got = state.get("step") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} holds the training state of step {got}, but {checkpoint} is at step {step}")
    return state


def seed_step(seed: int, step: int, rank: int = 0) -> int:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators from (seed, step, rank); returns the
    32-bit seed used. Called at the start of every step: dropout and other global draws then depend on the step
    only, so a resumed run repeats them, and processes (ranks) draw independently."""
    digest = hashlib.sha256(f"{int(seed)}:{int(step)}:{int(rank)}".encode()).digest()
    value = int.from_bytes(digest[:4], "little")
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


def read_loss_log(path) -> list[dict]:
    """The entries of a loss log, in order; a torn last line (a killed writer) is skipped."""
    entries = []
    for line in Path(path).read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


class LossLog:
    """Per-step values as JSON lines ``{"step": s, name: value, ...}`` (floats written exactly), flushed each step.
    For a resumed run (``start_step`` > 0) the lines after ``start_step`` (written by the run that stopped, after
    its last checkpoint) are dropped first, so the file reads as one uninterrupted run."""

    def __init__(self, path, start_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if start_step > 0 and self.path.is_file():
            kept = [e for e in read_loss_log(self.path) if e.get("step", math.inf) <= start_step]
        self.path.write_text("".join(json.dumps(e) + "\n" for e in kept))
        self.file = self.path.open("a")

    def write(self, step: int, values: dict) -> None:
        self.file.write(json.dumps({"step": int(step), **{k: float(v) for k, v in values.items()}}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
