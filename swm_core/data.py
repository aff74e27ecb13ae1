"""Trajectory data on Lance: the layout, and the reader (datasets, rows, training windows, loaders).

Layout: one row per env step, episodes contiguous. Row t holds observation t and the action executed after it
(an episode's last row has a NaN action). Columns: ``episode_idx``/``step_idx`` int32; images (any uint8
(H, W, C) column such as ``pixels``/``goal``) as JPEG bytes (``binary``) or raw (``fixed_size_binary``); vectors
as ``fixed_size_list<dtype>[dim]``; scalars keep their type. A FoV key ``agent.color`` recorded as
``variation.agent.color`` becomes the column ``variation__agent__color``. The schema metadata key ``swm`` holds
JSON: env_id, image_size, encoding, jpeg_quality, jpeg_subsampling, control_hz, fov_keys, image_columns, shapes,
format_version.

Datasets written by the stable-worldmodel package (no ``swm`` metadata, JPEG ``binary`` images, every numeric
column ``fixed_size_list<float32>``) are read too: binary columns are taken to be JPEG images.

- ``LanceWriter`` (:mod:`swm_core.lance_writer`, re-exported here): buffer episodes, ``commit()`` appends them as
  one atomic Lance version.
- ``open_dataset`` -> ``TrajectoryDataset``: episode index (from ``episode_idx`` only) and ``read_rows``.
- ``WindowDataset``: a torch Dataset of ``num_steps`` frames ``frameskip`` rows apart, with the ``frameskip``
  actions after each frame concatenated; split by episode. ``batch(indices)`` reads a whole batch: the small
  non-image columns come from memory (one scan per process, under ``in_memory_bytes``), the images from one
  sorted ``take`` of the frame rows, each used frame decoded once straight into the batch tensor.
  ``WindowDataset.loader()`` builds a seeded DataLoader of whole batches whose workers start with
  "forkserver": Lance is not fork-safe, and a forked worker of a process that used Lance refuses to read.
  ``loader(threads=N)`` builds the batches on N threads of this process instead (the take and the JPEG decoding
  run without the GIL), in the same order, each batch's take running ahead on N threads of its own; it hides S3
  latency without worker processes.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import lance
import numpy as np
import pyarrow as pa
import torch

from swm_core.jpeg import decode_jpeg_into
from swm_core.lance_io import (
    OBJECT_STORE_BLOCK_SIZE,
    infer_metadata,
    lance_session,
    open_lance,
    read_block_size,
    single_array,
    to_numpy,
)
from swm_core.lance_writer import LanceWriter
from swm_core.s3 import connection_error, resolve_storage_options

__all__ = [
    "ACTION_COLUMN", "SPLITS", "ColumnNotFoundError", "TrajectoryDataset", "open_dataset", "split_episodes",
    "WindowDataset", "ThreadedBatches",
    "LanceWriter", "OBJECT_STORE_BLOCK_SIZE",  # re-exported: the README imports them from here
]

ACTION_COLUMN = "action"
SPLITS = ("train", "val", "all")


class ColumnNotFoundError(KeyError, ValueError):
    """A requested column is not in the dataset (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0])


# ------------------------------------------------------------------------------------------ Arrow <-> numpy


def _decode_images(arr: pa.Array, shape: Sequence[int], positions: np.ndarray | None = None) -> np.ndarray:
    """Images at ``positions`` (default: all) of an image column -> uint8 (n, H, W, C)."""
    shape = tuple(int(s) for s in shape)
    if pa.types.is_fixed_size_binary(arr.type):
        size = int(np.prod(shape))
        flat = np.frombuffer(arr.buffers()[1], np.uint8, count=len(arr) * size, offset=arr.offset * size)
        frames = flat.reshape(len(arr), *shape)
        return frames if positions is None else frames[positions]
    if pa.types.is_fixed_size_list(arr.type):
        frames = arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), *shape)
        return frames if positions is None else frames[positions]
    positions = np.arange(len(arr)) if positions is None else positions
    out = np.empty((len(positions), *shape), np.uint8)
    _decode_into(arr, positions.tolist(), range(len(positions)), out)
    return out


class FrameError(ValueError):
    """A stored image that does not decode; ``index``: its position in the array read (the readers re-raise it
    naming the dataset, column, episode and step)."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def _decode_into(arr: pa.Array, items, slots, out: np.ndarray) -> None:
    """Decode the JPEGs at positions ``items`` of a binary array into ``out[slots]``."""
    size = 8 if pa.types.is_large_binary(arr.type) else 4
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, f"<i{size}", len(arr) + 1, arr.offset * size).tolist()
    data = memoryview(b"" if data is None else data).cast("B")  # views of the Arrow buffers, no copy
    for i, s in zip(items, slots):
        try:
            decode_jpeg_into(data[offsets[i] : offsets[i + 1]], out[s])
        except Exception as err:  # simplejpeg / OpenCV: not a whole JPEG, or not of the column's (H, W, C)
            raise FrameError(f"the stored image does not decode (truncated or corrupted JPEG?): "
                             f"{type(err).__name__}: {err}", i) from None


def _named(err: FrameError, path, column: str, row: int, episode_ids, episode_offsets) -> FrameError:
    """``err`` again, naming the dataset, the column and the episode and step of dataset row ``row``."""
    e = int(np.searchsorted(episode_offsets, row, "right")) - 1
    return FrameError(f"{os.fspath(path)!r}: column {column!r}, episode {int(episode_ids[e])}, step "
                      f"{row - int(episode_offsets[e])} (row {row}): {err}", row)


# ------------------------------------------------------------------------------------------------- reader


@contextlib.contextmanager
def _reading(path, storage_options=None, what: str = "data"):
    """Re-raise a failed read of a Lance dataset as ConnectionError naming the endpoint (unreachable S3) or as
    ValueError naming the dataset and what was read (truncated data files, a corrupt manifest, a bad JPEG)."""
    try:
        yield
    except (ConnectionError, FrameError):  # FrameError names the frame already
        raise
    except (OSError, ValueError) as err:  # lance and pyarrow (ArrowInvalid is a ValueError), simplejpeg
        conn = connection_error(path, storage_options, err)
        if conn is not None:
            raise conn from None
        raise ValueError(f"cannot read {what} of the Lance dataset {os.fspath(path)!r} (truncated or corrupted "
                         f"files?): {type(err).__name__}: {err}") from err


def _episode_index(ds: lance.LanceDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode_ids, offsets, lengths) from a scan of the ``episode_idx`` column only."""
    if "episode_idx" not in ds.schema.names:
        raise ValueError(f"dataset {ds.uri!r} has no 'episode_idx' column (columns: {ds.schema.names})")
    col = single_array(ds.to_table(columns=["episode_idx"]).column(0))
    ep = to_numpy(col).reshape(len(col), -1)[:, 0].astype(np.int64)
    if len(ep) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    offsets = np.concatenate([[0], np.flatnonzero(ep[1:] != ep[:-1]) + 1]).astype(np.int64)
    lengths = np.diff(np.append(offsets, len(ep))).astype(np.int64)
    ids = ep[offsets]
    if len(np.unique(ids)) != len(ids):
        raise ValueError(
            f"dataset {ds.uri!r}: episode rows are not contiguous (an episode_idx appears twice)"
        )
    return ids, offsets, lengths


# ------------------------------------------------------------------------------------------------- writer


class TrajectoryDataset:
    """A Lance trajectory dataset opened at one version, with its episode index."""

    def __init__(self, ds: lance.LanceDataset, path: str, storage_options=None):
        self._ds = ds
        self.path = path
        self.storage_options = storage_options
        self.version: int = ds.version
        self.schema: pa.Schema = ds.schema
        self.columns: list[str] = list(ds.schema.names)
        with _reading(path, storage_options, "the metadata and episode index"):
            self.metadata: dict = infer_metadata(ds)
            self.episode_ids, self.episode_offsets, self.episode_lengths = _episode_index(ds)
        self.image_columns: list[str] = list(self.metadata.get("image_columns", []))
        self._episode_pos = {int(e): i for i, e in enumerate(self.episode_ids)}

    @property
    def num_rows(self) -> int:
        return int(self.episode_lengths.sum())

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ids)

    def __repr__(self) -> str:
        return (
            f"TrajectoryDataset({self.path!r}, version={self.version}, episodes={self.num_episodes}, "
            f"rows={self.num_rows}, columns={self.columns})"
        )

    def check_columns(self, columns: Iterable[str] | None) -> list[str]:
        """The requested columns (default: all), or ColumnNotFoundError naming the missing one."""
        if columns is None:
            return list(self.columns)
        if isinstance(columns, str):
            columns = [columns]
        columns = list(columns)
        for c in columns:
            if c not in self.columns:
                raise ColumnNotFoundError(f"column {c!r} is not in {self.path!r}; available: {self.columns}")
        return columns

    def shape_of(self, column: str) -> tuple:
        """Per-row shape of a column (images: (H, W, C))."""
        shape = self.metadata.get("shapes", {}).get(column)
        if shape is None:
            t = self.schema.field(column).type
            shape = (t.list_size,) if pa.types.is_fixed_size_list(t) else ()
        return tuple(shape)

    def decode(self, column: str, arr, positions: np.ndarray | None = None) -> np.ndarray:
        """Arrow values of ``column`` -> numpy (images decoded to uint8 (n, H, W, C))."""
        arr = single_array(arr)
        if column in self.image_columns:
            return _decode_images(arr, self.shape_of(column), positions)
        out = to_numpy(arr, self.shape_of(column) or None)
        return out if positions is None else out[positions]

    def read_rows(self, rows, columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Rows (any order, repeats allowed) -> {column: array (n, ...)}; one sorted ``take``.

        Arrays may be read-only views of Arrow memory when rows are sorted and unique.
        """
        columns = self.check_columns(columns)
        lance_session()  # refuses to read in a fork of the process that opened this dataset
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            bad = rows[(rows < 0) | (rows >= self.num_rows)][0]
            raise IndexError(f"row {bad} is out of range for {self.num_rows} rows")
        uniq, inverse = np.unique(rows, return_inverse=True)
        same = len(uniq) == len(rows) and np.array_equal(uniq, rows)
        with _reading(self.path, self.storage_options, f"rows of columns {list(columns)}"):
            table = self._ds.take(uniq, columns=columns)
        out = {}
        for c in columns:
            with _reading(self.path, self.storage_options, f"column {c!r}"):
                try:
                    out[c] = self.decode(c, table.column(c), None if same else inverse)
                except FrameError as err:
                    raise _named(err, self.path, c, int(uniq[err.index]), self.episode_ids,
                                 self.episode_offsets) from None
        return out

    def episode_rows(self, episode: int) -> np.ndarray:
        if int(episode) not in self._episode_pos:
            raise ValueError(
                f"episode {episode!r} is not in {self.path!r} (ids {self.episode_ids.min() if self.num_episodes else '-'}"
                f"..{self.episode_ids.max() if self.num_episodes else '-'}, {self.num_episodes} episodes)"
            )
        i = self._episode_pos[int(episode)]
        return np.arange(self.episode_offsets[i], self.episode_offsets[i] + self.episode_lengths[i])

    def read_episode(self, episode: int, columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """All rows of one episode (by episode_idx)."""
        return self.read_rows(self.episode_rows(episode), columns)


def open_dataset(path, storage_options: Mapping[str, str] | None = None, version=None,
                 block_size: int | None = None) -> TrajectoryDataset:
    """Open a trajectory dataset (local path or ``s3://``) at the latest version, a version number or a tag.
    ``block_size``: smallest read in bytes (default: 1 MiB on an object store, Lance's default locally)."""
    path = os.fspath(path)
    storage_options = resolve_storage_options(path, storage_options)
    return TrajectoryDataset(open_lance(path, version, storage_options, block_size), path, storage_options)


# --------------------------------------------------------------------------------------------- windows


def split_episodes(episode_ids, split: str = "train", val_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Episode ids of a split: a seeded shuffle puts round(val_fraction * E) episodes (at least one when
    val_fraction > 0 and E >= 2, never all) in "val", the rest in "train"; returned sorted."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    ids = np.sort(np.asarray(episode_ids, dtype=np.int64))
    if split == "all":
        return ids
    n_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    perm = np.random.default_rng(seed).permutation(len(ids))
    chosen = perm[:n_val] if split == "val" else perm[n_val:]
    return np.sort(ids[chosen])


class WindowDataset(torch.utils.data.Dataset):
    """Training windows: ``num_steps`` frames ``frameskip`` rows apart within one episode.

    Sample i -> {image column: uint8 (num_steps, H, W, C), "action": float32 (num_steps, frameskip * A) (the
    frameskip actions after each frame, concatenated), other column: (num_steps, ...)}. A window starting at
    step t is valid when all its actions are real: t + num_steps * frameskip <= L - 1, so an episode of length
    L gives max(0, L - num_steps * frameskip) windows. Only the num_steps frame rows are decoded.

    ``batch(indices)`` (also ``ds[list_of_indices]``) returns a whole batch as one dict of tensors
    (B, num_steps, ...); ``loader()`` yields these batches directly (no per-sample split and re-collate).
    The non-image columns (action, proprio, ...) are held in memory when they fit in ``in_memory_bytes``
    together (read by one scan, in each process on its first batch, never pickled), so a batch is one sorted
    ``take`` of the image rows it uses; columns past the budget are read by the take too. Reads less than
    ``block_size`` bytes apart are merged: from an object store (``s3://``, default 1 MiB) one GET serves several
    windows, from a local file (default 64 KiB) the frames of a window of small frames are one read.
    ``verify=True`` first checks every data file against its commit's checksums (CorruptDataError names a bad one).
    Each process opens its own Lance handle (it is never pickled). Lance is not fork-safe: DataLoader workers
    must start with "forkserver" or "spawn" (``loader()`` does); a plain fork raises a clear RuntimeError.
    """

    def __init__(
        self,
        path,
        num_steps: int = 4,
        frameskip: int = 5,
        columns: Sequence[str] = ("pixels", "action", "proprio"),
        split: str = "train",
        val_fraction: float = 0.1,
        seed: int = 0,
        storage_options: Mapping[str, str] | None = None,
        version=None,
        in_memory_bytes: int = 256 << 20,
        block_size: int | None = None,
        verify: bool = False,
    ):
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps!r}")
        if int(frameskip) < 1:
            raise ValueError(f"frameskip must be >= 1, got {frameskip!r}")
        if int(in_memory_bytes) < 0:
            raise ValueError(f"in_memory_bytes must be >= 0, got {in_memory_bytes!r}")
        if isinstance(columns, str):
            columns = (columns,)
        self.path = os.fspath(path)
        self.storage_options = resolve_storage_options(self.path, storage_options)
        self.num_steps, self.frameskip = int(num_steps), int(frameskip)
        self.split, self.val_fraction, self.seed = split, float(val_fraction), int(seed)

        self.block_size = read_block_size(self.path, block_size)
        td = open_dataset(self.path, self.storage_options, version, self.block_size)
        if verify:  # every data file of this version against the SHA-256 recorded at its commit (reads them all)
            from swm_core.integrity import check_dataset

            check_dataset(self.path, self.storage_options, td.version)
        self.columns = td.check_columns(columns)
        self.version = td.version  # workers open this exact version
        self.metadata = td.metadata
        self.image_columns = [c for c in self.columns if c in td.image_columns]
        self.shapes = {c: td.shape_of(c) for c in self.columns}
        self.episode_ids = split_episodes(td.episode_ids, split, val_fraction, seed)
        lookup = {int(e): i for i, e in enumerate(td.episode_ids)}
        idx = np.array([lookup[int(e)] for e in self.episode_ids], dtype=np.int64)
        offsets, lengths = td.episode_offsets[idx], td.episode_lengths[idx]
        order = np.argsort(offsets, kind="stable")
        self.episode_ids, offsets, lengths = self.episode_ids[order], offsets[order], lengths[order]
        self.episode_offsets = offsets  # first row of each episode (names the episode of a frame that fails)
        self.windows_per_episode = np.maximum(lengths - self.num_steps * self.frameskip, 0)
        self.window_starts = np.concatenate(
            [np.zeros(0, np.int64)]
            + [o + np.arange(n, dtype=np.int64) for o, n in zip(offsets, self.windows_per_episode)]
        )
        # non-image columns held in memory (in the order asked for, while the budget lasts)
        self.in_memory_bytes = int(in_memory_bytes)
        self.memory_columns: list[str] = []
        used = 0
        for c in self.columns:
            size = _fixed_row_bytes(td.schema.field(c).type)
            if c in self.image_columns or size is None or used + size * td.num_rows > self.in_memory_bytes:
                continue
            self.memory_columns.append(c)
            used += size * td.num_rows
        self._memory: dict[str, np.ndarray] | None = None  # loaded on first use in each process
        self._ds: lance.LanceDataset | None = td._ds  # this process's handle; dropped when pickled
        self._pid: int | None = os.getpid()

    def __len__(self) -> int:
        return len(self.window_starts)

    def loader(
        self,
        batch_size: int = 64,
        shuffle: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        threads: int = 0,
        **kwargs,
    ) -> torch.utils.data.DataLoader | ThreadedBatches:
        """A DataLoader of whole batches (dicts of (B, num_steps, ...) tensors, one ``batch()`` call each):
        seeded shuffling (the same window order as ``DataLoader(self, batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed))``), and workers started with "forkserver" (Lance is not
        fork-safe) and kept alive across epochs. Extra kwargs go to DataLoader. A subclass that overrides
        ``__getitems__`` gets a DataLoader over its samples instead (its override is kept).

        ``threads=N`` (with ``num_workers=0``) builds the batches on N threads of this process, up to 2N ahead,
        their Lance reads on N more (so ``threads=1`` reads the next batches while it decodes one), and yields
        them in the same order as ``threads=0``; ``pin_memory=True`` pins them there."""
        if int(threads) < 0:
            raise ValueError(f"threads must be >= 0, got {threads!r}")
        if threads and num_workers:
            raise ValueError(
                f"threads={threads} and num_workers={num_workers}: pick one (threads build batches in this "
                "process, workers in other processes)"
            )
        if threads and type(self).__getitems__ is not WindowDataset.__getitems__:
            raise ValueError(f"threads={threads} needs WindowDataset.batch(); {type(self).__name__} overrides "
                             "__getitems__ (use num_workers instead)")
        if num_workers > 0:
            if kwargs.get("multiprocessing_context") is None:
                if "forkserver" in torch.multiprocessing.get_all_start_methods():
                    ctx = torch.multiprocessing.get_context("forkserver")
                    ctx.set_forkserver_preload(["torch"])  # workers fork from a server with torch imported
                else:
                    ctx = torch.multiprocessing.get_context("spawn")
                kwargs["multiprocessing_context"] = ctx
            kwargs.setdefault("persistent_workers", True)
        else:
            kwargs.pop("multiprocessing_context", None)
            kwargs.pop("persistent_workers", None)
        generator = torch.Generator().manual_seed(seed)
        if type(self).__getitems__ is not WindowDataset.__getitems__:
            return torch.utils.data.DataLoader(
                self,
                batch_size,
                shuffle,
                num_workers=num_workers,
                drop_last=drop_last,
                generator=generator,
                **kwargs,
            )
        # the DataLoader draws its workers' base seed and then the permutation from one generator, as it does
        # with batch_size/shuffle, so both loaders visit the windows in the same order
        sampler = (
            torch.utils.data.RandomSampler(self, generator=generator)
            if shuffle
            else torch.utils.data.SequentialSampler(self)
        )
        batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
        if threads:
            pin = bool(kwargs.pop("pin_memory", False))
            if kwargs:
                raise ValueError(f"threads={threads} takes no other DataLoader options, got {sorted(kwargs)}")
            # a DataLoader of the index lists only: it draws from the generator exactly as the one below does
            indices = torch.utils.data.DataLoader(
                np.arange(len(self)), sampler=batches, batch_size=None, generator=generator, collate_fn=np.asarray
            )
            return ThreadedBatches(self, indices, int(threads), pin)
        return torch.utils.data.DataLoader(
            self, sampler=batches, batch_size=None, num_workers=num_workers, generator=generator, **kwargs
        )

    def _dataset(self) -> lance.LanceDataset:
        if self._ds is None or self._pid != os.getpid():
            self._ds = lance.dataset(self.path, version=self.version, storage_options=self.storage_options,
                                     session=lance_session(), block_size=self.block_size)
            self._pid = os.getpid()
        return self._ds

    def _memory_columns(self) -> dict[str, np.ndarray]:
        """The in-memory columns of every row: one scan, the first time this process needs them."""
        if self._memory is None:
            memory = {}
            if self.memory_columns:
                with _reading(self.path, self.storage_options, f"columns {self.memory_columns}"):
                    table = self._dataset().to_table(columns=self.memory_columns)
                for c in self.memory_columns:
                    memory[c] = to_numpy(single_array(table.column(c)), self.shapes[c] or None)
            self._memory = memory
        return self._memory

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ds"], state["_pid"], state["_memory"] = None, None, None
        return state

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        """Window ``index`` -> one sample; a list/array of indices -> one batch (as ``batch``)."""
        if np.ndim(index) == 0:
            return {c: t[0] for c, t in self.batch([int(index)]).items()}
        return self.batch(index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Samples for a plain DataLoader (which collates them again); ``loader()`` skips that round trip."""
        batch = self.batch(indices)
        n = len(next(iter(batch.values()))) if batch else 0
        return [{c: t[i] for c, t in batch.items()} for i in range(n)]

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Windows ``indices`` (any order, repeats allowed) -> {column: tensor (B, num_steps, ...)}."""
        return self._assemble(self._fetch(indices))

    def _fetch(self, indices: Sequence[int]) -> tuple:
        """The storage reads of ``batch(indices)``, for ``_assemble``: one sorted take of the frame rows of the
        columns not held in memory (and one of the action rows when the action is read and frameskip > 1)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"window {bad} is out of range for {n} windows")
        starts = self.window_starts[idx]
        frame_rows = (starts[:, None] + np.arange(self.num_steps) * self.frameskip).reshape(-1)  # (B * T,)
        stored = [c for c in self.columns if c not in self._memory_columns()]
        frame_cols = [c for c in stored if c != ACTION_COLUMN or self.frameskip == 1]  # action rows: frame rows
        unique = np.unique(frame_rows, return_index=True, return_inverse=True)  # (sorted set, first, inverse)
        table = actions = None
        if stored:
            lance_session()  # refuses to read in a fork of the process that opened the dataset
        if frame_cols:
            with _reading(self.path, self.storage_options, f"rows of columns {frame_cols}"):
                table = self._dataset().take(unique[0], columns=frame_cols)
        if len(frame_cols) < len(stored):  # the frameskip actions after each frame: rows of their own
            action_set = np.unique(starts[:, None] + np.arange(self.num_steps * self.frameskip))
            with _reading(self.path, self.storage_options, f"rows of column {ACTION_COLUMN!r}"):
                actions = (action_set, self._dataset().take(action_set, columns=[ACTION_COLUMN]).column(0))
        return starts, frame_rows, unique, table, actions

    def _assemble(self, fetched: tuple) -> dict[str, torch.Tensor]:
        """The batch of ``_fetch``'s reads: frames decoded straight into the batch tensor (each frame once), the
        other columns gathered from memory or from the rows read."""
        starts, frame_rows, (frame_set, first, inverse), table, actions = fetched
        B, T = len(starts), self.num_steps
        action_rows = starts[:, None] + np.arange(T * self.frameskip)
        out: dict[str, torch.Tensor] = {}
        for c in self.columns:
            values = self._memory_columns().get(c)
            if values is not None:  # in memory: a gather, no I/O
                rows = action_rows if c == ACTION_COLUMN else frame_rows
            elif c == ACTION_COLUMN and actions is not None:
                rows = np.searchsorted(actions[0], action_rows)
                values = to_numpy(single_array(actions[1]), self.shapes[c] or None)
            elif c in self.image_columns:
                # numpy, not torch.empty: above 32 MiB (glibc's largest mmap threshold) every allocation gets
                # fresh pages from the kernel, and numpy asks for transparent huge pages (madvise) where torch
                # does not, so large batch buffers are much cheaper to touch. notes: docs/notes/data.md
                frames = np.empty((B * T, *self.shapes[c]), np.uint8)
                with _reading(self.path, self.storage_options, f"frames of column {c!r}"):
                    try:
                        _gather_images(single_array(table.column(c)), self.shapes[c], first, inverse, frames)
                    except FrameError as err:
                        raise _named(err, self.path, c, int(frame_set[err.index]), self.episode_ids,
                                     self.episode_offsets) from None
                out[c] = torch.from_numpy(frames).view(B, T, *self.shapes[c])
                continue
            else:
                rows, values = inverse, to_numpy(single_array(table.column(c)), self.shapes[c] or None)
            values = values[rows].astype(np.float32, copy=False) if c == ACTION_COLUMN else values[rows]
            # rows of action windows (B, T * frameskip): the frameskip actions after each frame, concatenated
            out[c] = torch.from_numpy(values.reshape(B, T, -1) if rows.ndim == 2 else
                                      values.reshape(B, T, *values.shape[1:]))
        return out


class ThreadedBatches:
    """Batches of ``dataset.batch(indices)`` for each index list of ``indices``, built on ``threads`` threads (at
    most 2 * threads ahead) and yielded in order; each pass over it is one epoch. The Lance reads of the batches
    run on ``threads`` threads of their own, ahead, so they overlap the decoding of the batches before them."""

    def __init__(self, dataset: WindowDataset, indices: Iterable[Sequence[int]], threads: int, pin: bool = False):
        self.dataset, self.indices, self.threads, self.pin = dataset, indices, threads, pin

    def __len__(self) -> int:
        return len(self.indices)

    def _build(self, make) -> dict[str, torch.Tensor]:
        batch = make()
        if self.pin and torch.cuda.is_available():
            batch = {c: t.pin_memory() for c, t in batch.items()}
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        ds = self.dataset
        ds._memory_columns()  # one scan before the threads start, not one per thread
        split = type(ds).batch is WindowDataset.batch  # a subclass's own batch() runs whole, on the batch threads
        fetch, assemble = (ds._fetch, ds._assemble) if split else ((lambda idx: idx), ds.batch)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="swm-reads") as reads, \
                ThreadPoolExecutor(self.threads, thread_name_prefix="swm-batches") as pool:
            pending: deque = deque()
            try:
                for idx in self.indices:
                    read = reads.submit(fetch, idx)
                    pending.append((pool.submit(self._build, lambda r=read: assemble(r.result())), read))
                    if len(pending) >= 2 * self.threads:
                        yield pending.popleft()[0].result()
                while pending:
                    yield pending.popleft()[0].result()
            finally:  # an early break: drop what was queued, wait for what is running
                for build, read in pending:
                    build.cancel(), read.cancel()


def _fixed_row_bytes(t: pa.DataType) -> int | None:
    """Bytes per row of a fixed-width numeric/bool column (a fixed-size list of one too), else None."""
    if pa.types.is_fixed_size_list(t):
        inner = _fixed_row_bytes(t.value_type)
        return None if inner is None else inner * t.list_size
    if pa.types.is_boolean(t):
        return 1
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return t.bit_width // 8
    return None


def _gather_images(
    arr: pa.Array, shape: Sequence[int], first: np.ndarray, inverse: np.ndarray, out: np.ndarray
):
    """Images of the unique rows of an image column -> ``out`` (n, H, W, C) at the positions ``inverse`` maps
    them to. JPEG: each unique frame is decoded once, straight into its first position, then copied to the
    others; raw: one gather."""
    if not pa.types.is_binary(arr.type) and not pa.types.is_large_binary(arr.type):
        np.take(_decode_images(arr, shape), inverse, axis=0, out=out)
        return
    _decode_into(arr, range(len(first)), first.tolist(), out)
    if len(first) < len(inverse):  # rows used by more than one window
        source = first[inverse]
        repeat = np.flatnonzero(source != np.arange(len(inverse)))
        out[repeat] = out[source[repeat]]
