"""Hindsight goals for offline goal-conditioned RL (baselines/gcbc_train.py, gciql_train.py, gcivl_train.py).

OGBench's recipe (docs/reference.md §4): the goal of a sample at dataset row t is
    current (p_current): row t itself;
    future  (p_future):  a later row of the same episode: t + k, k >= 1 drawn from Geometric(1 - discount) and
                         clipped to the episode's last row (``geometric=True``), or uniform over t + 1 .. last;
    random  (p_random):  a uniform row of another episode of the split (of the same episode when the split has
                         only one).
A value goal also gives the reward of the transition t -> t + 1: reward 0 and mask 0 when the goal is row t
itself, else reward -1 and mask 1 (so V(s, g) = -(steps to g) discounted).

``GoalDataset`` is a ``WindowDataset`` of single-step transitions whose ``batch()`` adds the next frame and the
goals. The goals of a batch are a pure function of (seed, stream, the batch's transition indices)
(:func:`goal_rng`): whichever process or DataLoader worker reads it, and whatever was read before. Under several
training processes each process reads its slice of a global batch (``dataset[(global indices, lo, hi)]``, as
``swm_core.distributed.ShardedBatches(with_global=True)`` hands them out) with the goals drawn for the whole global
batch, so W processes of batch B see the (transition, goal) pairs of one process of batch W * B, and a resumed run
sees the goals of the uninterrupted one. Not imported by ``import swm_core``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from swm_core.data import WindowDataset, open_dataset

GOAL_KINDS = ("current", "future", "random")


def goal_rng(seed: int, stream: int, indices) -> np.random.Generator:
    """The generator of one batch's goals, seeded by (seed, stream, the batch's indices in order)."""
    idx = np.ascontiguousarray(np.asarray(indices, dtype=np.int64).reshape(-1))
    words = np.frombuffer(hashlib.sha256(idx.tobytes()).digest(), dtype=np.uint32)
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), len(idx), *words.tolist()]))


class GoalSampler:
    """Goal rows for rows of the episodes (``offsets``, ``lengths``: their first row and row count in the dataset).

    Probabilities (p_current, p_future, p_random) must be non-negative and sum to 1; ``discount`` in [0, 1) sets
    the geometric future offset; ``geometric=False`` draws the future row uniformly over the rest of the episode.
    """

    def __init__(self, offsets, lengths, p_current: float = 0.2, p_future: float = 0.5, p_random: float = 0.3,
                 discount: float = 0.99, geometric: bool = True):
        probs = np.array([p_current, p_future, p_random], dtype=np.float64)
        if not np.isfinite(probs).all() or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"goal probabilities (current, future, random) must be non-negative and sum to 1, got "
                             f"({p_current}, {p_future}, {p_random})")
        if not 0.0 <= float(discount) < 1.0:
            raise ValueError(f"goal discount must be in [0, 1), got {discount!r}")
        offsets, lengths = np.asarray(offsets, np.int64).reshape(-1), np.asarray(lengths, np.int64).reshape(-1)
        if len(offsets) == 0 or len(offsets) != len(lengths) or (lengths < 1).any():
            raise ValueError(f"need one or more episodes with >= 1 row each, got offsets {offsets.tolist()[:8]} and "
                             f"lengths {lengths.tolist()[:8]}")
        order = np.argsort(offsets, kind="stable")
        self.offsets, self.lengths = offsets[order], lengths[order]
        self.cum = np.concatenate([[0], np.cumsum(self.lengths)])  # episode e holds positions cum[e] .. cum[e+1]-1
        self.probs, self.discount, self.geometric = probs, float(discount), bool(geometric)

    def episode_of(self, rows) -> np.ndarray:
        """The position (in ``offsets``) of each row's episode; a row outside every episode raises ValueError."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        ep = np.searchsorted(self.offsets, rows, side="right") - 1
        bad = (ep < 0) | (rows >= self.offsets[np.maximum(ep, 0)] + self.lengths[np.maximum(ep, 0)])
        if bad.any():
            raise ValueError(f"row {int(rows[bad][0])} is in none of the sampler's {len(self.offsets)} episodes")
        return ep

    def sample(self, rows, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(goal rows, kinds) for ``rows``; kinds index GOAL_KINDS (0 current, 1 future, 2 random)."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        ep = self.episode_of(rows)
        n = len(rows)
        kind = rng.choice(3, size=n, p=self.probs)
        last = self.offsets[ep] + self.lengths[ep] - 1
        if self.geometric:
            future = np.minimum(rows + rng.geometric(1.0 - self.discount, size=n), last)
        else:
            first = np.minimum(rows + 1, last)
            future = first + np.floor(rng.random(n) * (last - first + 1)).astype(np.int64)
        # another episode's row: a uniform position among the rows of the other episodes, then mapped to a row
        total, own = int(self.cum[-1]), self.lengths[ep]
        others = len(self.offsets) > 1
        pos = np.floor(rng.random(n) * (total - own if others else total)).astype(np.int64)
        if others:
            pos = pos + np.where(pos >= self.cum[ep], own, 0)
        other_ep = np.searchsorted(self.cum, pos, side="right") - 1
        anywhere = self.offsets[other_ep] + pos - self.cum[other_ep]
        return np.select([kind == 0, kind == 1], [rows, future], anywhere), kind


class GoalDataset(WindowDataset):
    """Transitions (row t, action a_t, row t + 1) of one split, with hindsight goals; a batch is a dict of tensors:

    ``pixels`` (B, H, W, C) uint8, ``action`` (B, A), ``row`` (B,), and ``proprio`` (B, P) when the dataset has it
    and ``proprio=True``; with ``next_obs``: ``next_pixels`` (and ``next_proprio``); with ``value_goals`` (a dict
    of GoalSampler options): ``value_goal`` (and ``value_goal_proprio``), ``value_goal_kind``, ``reward`` and
    ``mask``; with ``actor_goals``: ``actor_goal`` (and ``actor_goal_proprio``), ``actor_goal_kind``. Every
    transition whose action is real is one window (rows t <= L - 2 of an episode of length L).
    """

    def __init__(self, path, value_goals: Mapping | None = None, actor_goals: Mapping | None = None,
                 next_obs: bool = False, proprio: bool = True, split: str = "train", val_fraction: float = 0.1,
                 seed: int = 0, stream: int = 0, storage_options: Mapping[str, str] | None = None, version=None):
        td = open_dataset(path, storage_options, version)
        columns = ["pixels", "action"] + (["proprio"] if proprio and "proprio" in td.columns else [])
        super().__init__(path, num_steps=1, frameskip=1, columns=columns, split=split, val_fraction=val_fraction,
                         seed=seed, storage_options=storage_options, version=td.version)
        pos = {int(e): i for i, e in enumerate(td.episode_ids)}
        idx = np.array([pos[int(e)] for e in self.episode_ids], dtype=np.int64)
        offsets, lengths = td.episode_offsets[idx], td.episode_lengths[idx]
        self.samplers = {name: GoalSampler(offsets, lengths, **spec)
                         for name, spec in (("value_goal", value_goals), ("actor_goal", actor_goals)) if spec}
        self.next_obs, self.stream = bool(next_obs), int(stream)
        self.frame_columns = [c for c in columns if c != "action"]
        self._td, self._owner = td, os.getpid()

    def __getstate__(self):
        state = super().__getstate__()
        state["_td"], state["_owner"] = None, None
        return state

    def _trajectories(self):
        if self._td is None or self._owner != os.getpid():
            self._td = open_dataset(self.path, self.storage_options, self.version)
            self._owner = os.getpid()
        return self._td

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        """As WindowDataset's; ``(global indices, lo, hi)`` -> ``batch(global indices, part=(lo, hi))``."""
        if isinstance(index, tuple) and len(index) == 3:
            return self.batch(index[0], part=(index[1], index[2]))
        return super().__getitem__(index)

    def batch(self, indices: Sequence[int], rng: np.random.Generator | None = None,
              part: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """Transitions ``indices`` with their next frames and goals. The goals are drawn for all of ``indices``
        from ``rng`` (default: :func:`goal_rng` of this dataset's seed and stream and the indices); ``part=(lo,
        hi)`` returns transitions lo:hi of them only (one process's slice of a global batch), with those goals.
        All extra frames are read with one take."""
        idx, n = np.asarray(indices, dtype=np.int64).reshape(-1), len(self)
        lo, hi = (0, len(idx)) if part is None else (int(part[0]), int(part[1]))
        if not 0 <= lo <= hi <= len(idx):
            raise ValueError(f"part {part!r} is not a slice lo:hi with 0 <= lo <= hi <= {len(idx)} (the batch size)")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"window {idx[(idx < -n) | (idx >= n)][0]} is out of range for {n} windows")
        rng = goal_rng(self.seed, self.stream, idx % max(n, 1)) if rng is None else rng
        out = {c: t[:, 0] for c, t in super().batch(idx[lo:hi]).items()}
        every = self.window_starts[idx]
        rows = every[lo:hi]
        out["row"] = torch.from_numpy(rows.copy())
        extra = {"next": rows + 1} if self.next_obs else {}
        for name, sampler in self.samplers.items():
            goals, kind = sampler.sample(every, rng)
            extra[name] = goals[lo:hi]
            out[f"{name}_kind"] = torch.from_numpy(kind[lo:hi].astype(np.int64))
        if "value_goal" in extra:
            reached = (extra["value_goal"] == rows).astype(np.float32)
            out["reward"], out["mask"] = torch.from_numpy(reached - 1.0), torch.from_numpy(1.0 - reached)
        if extra:
            read = self._trajectories().read_rows(np.concatenate(list(extra.values())), self.frame_columns)
            for k, name in enumerate(extra):
                for c in self.frame_columns:
                    key = f"next_{c}" if name == "next" else name if c == "pixels" else f"{name}_{c}"
                    chunk = read[c][k * len(rows) : (k + 1) * len(rows)]
                    out[key] = torch.from_numpy(np.ascontiguousarray(chunk))
        return out
