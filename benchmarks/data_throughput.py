# Data-loading throughput, Lance vs HDF5 vs MP4 (the paper's data table): results in benchmarks/results/.
# Run: python benchmarks/data_throughput.py --quick   (formats: swm_core/convert/, Lance layer: swm_core/data.py)
"""Records (or reuses) a Push-T dataset with World.collect, writes it in every format, then times training-window
loading: random-order windows (num_steps 4, frameskip 5, batch 64; only the num_steps frames are decoded) and
sequential order, from local disk (the files' pages dropped from the page cache with posix_fadvise before every
batch), local cached (second pass over the same windows, page cache warm) and S3 (a localbucket server on
127.0.0.1; our Lance reader fetches 1 MiB blocks there, ``--s3-block-size``).

Each format is compared within a codec class: raw (bit-exact frames: Lance raw, HDF5 uint8, MP4 lossless) and
compressed (Lance JPEG, HDF5 JPEG bytes, MP4 H.264). Every comparator is tuned: HDF5 raw tries contiguous and
per-frame chunks with no/lzf/gzip compression, MP4 tries several keyframe intervals; the best variant of each is
reported (all variants are in the JSON). Action/proprio: our Lance loader (WindowDataset.batch) holds them in memory
(one scan at open), the HDF5 loader reads them from storage, the MP4 format keeps them in a parquet table loaded at
open. Every loader returns whole batches (no per-sample split and re-collate).

``--threads N`` (default 2) also times every reader, page cache warm and from S3, with N threads of one process
building batches at once (each thread its own reader), as ``WindowDataset.loader(threads=N)`` does.

The decode floor: the same random windows' frames as JPEG bytes already in memory, decoded by the same decoder
into one batch buffer on 1 and N threads, timed in turns with our Lance JPEG reader (``batch()``, ``loader()``,
``loader(threads=1)``, ``loader(threads=N)``, ``loader(num_workers=N)``); the ratios to it say how much of a
batch's time is spent outside the JPEG decoding. CPU time per sample is reported beside samples/s (a shared CPU
inflates it far less than wall time), and the 1-minute load average before and after.

With the `peers` extra installed (stable-worldmodel, hdf5plugin), the package's own LanceDataset and HDF5Dataset are
timed round-robin with ours on the same files (and on a Lance file its own LanceWriter wrote), as its DataLoader
calls them (__getitems__ / __getitem__, then default_collate); the ratios ours/theirs are printed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

from swm_core import MixturePolicy, RandomPolicy, World, expert_policy
from swm_core.checkpoint import import_script
from swm_core.convert import convert, open_source
from swm_core.convert.mp4 import MP4_MANIFEST, MP4_TABLE
from swm_core.data import ThreadedBatches, WindowDataset, open_dataset
from swm_core.jpeg import check_jpeg_subsampling, decode_jpeg_into, decode_jpegs
from swm_core.s3 import is_s3, s3_storage_options
from swm_core.s3file import S3File, open_read
from swm_core.video import VideoReader

common = import_script(Path(__file__).with_name("common.py"))

# Paper (GPU cluster, 224 px Push-T, samples/s; disk in bytes). Lance rows are its default JPEG layout; HDF5 stores
# raw uint8 frames; MP4 is H.264.
PAPER = {
    ("lance", "compressed", "local"): 4815, ("lance", "compressed", "cached"): 4431,
    ("lance", "compressed", "s3"): 3184,
    ("hdf5", "raw", "local"): 1416, ("hdf5", "raw", "cached"): 1474, ("hdf5", "raw", "s3"): 9,
    ("mp4", "compressed", "local"): 1331,
}
PAPER_DISK = {("lance", "compressed"): 13e9, ("hdf5", "raw"): 43e9, ("mp4", "compressed"): 0.5e9}
SOURCES = ("local", "cached", "s3")
COLUMNS = ("pixels", "action", "proprio")


def keep_large_allocations(threshold_bytes: int = 1 << 30) -> bool:
    """Let glibc serve and keep allocations up to ``threshold_bytes`` from its heap, for the whole process.

    By default glibc maps every allocation above 32 MiB fresh from the kernel and unmaps it on free, so each
    large batch (a Lance ``take`` of 224 px raw frames: 38.5 MB for 64 windows x 4 frames) faults in ~9,400 new
    pages. Raising the mmap (and trim) threshold makes freed buffers reusable (notes: docs/notes/data.md). The
    price: freed memory stays with the process (its peak), as in most training jobs. Call it once, early; this
    benchmark does. Returns False (and changes nothing) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    if int(threshold_bytes) < 0:
        raise ValueError(f"threshold_bytes must be >= 0, got {threshold_bytes!r}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    threshold = min(int(threshold_bytes), 2**31 - 1)  # mallopt takes a C int
    return bool(mallopt(m_mmap_threshold, threshold)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


@dataclass
class Args:
    quick: bool = False
    """small run for a 2-core CPU: 64 px, 32 episodes, short measurements (a few minutes)"""
    episodes: int | None = None
    """episodes to record (default: 32 with --quick, 200 otherwise)"""
    image_size: int | None = None
    """frame size in pixels (default: 64 with --quick, 224 otherwise)"""
    max_episode_steps: int = 100
    """steps per recorded episode"""
    data_dir: str = "data/bench"
    """where the recorded dataset and its conversions live (reused when present)"""
    out_dir: str = "benchmarks/results"
    """where the JSON and PNG go, and the run's record data_throughput-<config>.json"""
    batch_size: int = 64
    """windows per batch"""
    num_steps: int = 4
    """frames per window"""
    frameskip: int = 5
    """env steps between frames (actions per frame)"""
    batches: int | None = None
    """batches per measurement at most (default: 12 with --quick, 40 otherwise)"""
    max_seconds: float | None = None
    """seconds per measurement at most, at least 2 batches (default: 2.5 with --quick, 20 otherwise)"""
    s3: bool = True
    """also measure S3 through a local localbucket server"""
    s3_block_size: int | None = None
    """smallest ranged read of our Lance reader from S3, in bytes (default: swm_core.data.OBJECT_STORE_BLOCK_SIZE,
    1 MiB; Lance's own default there is 64 KiB); run with several values to sweep it"""
    local_block_size: int | None = None
    """smallest read of our Lance reader from a local file, in bytes (default: swm_core.lance_io.LOCAL_BLOCK_SIZE,
    64 KiB; Lance's own default is 4 KiB)"""
    rewrite: bool = False
    """re-record and re-convert even when the files exist"""
    seed: int = 0
    """seed of the recording and of the random window order"""
    keep_allocations: bool = True
    """call keep_large_allocations() first (glibc keeps freed big buffers for reuse); it applies to
    every reader in this process alike. --no-keep-allocations measures glibc's default"""
    jpeg_subsampling: str = "444"
    """chroma subsampling of our JPEG files: '444' (full colour) or '420' (what stable-worldmodel's writer uses:
    ~2.5x smaller at 224 px, faster to decode); the HDF5 JPEG file holds the same bytes"""
    threads: int = 2
    """also measure every reader with batches built on this many threads of one process (0: skip), as
    ``WindowDataset.loader(threads=N)`` does"""
    floor_only: bool = False
    """only our Lance JPEG reader against the decode floor (collects the dataset and writes its JPEG Lance copy; no
    other format, no JSON, no record): a short run to repeat when the CPU is idle"""

    def __post_init__(self):
        defaults = {"episodes": (32, 200), "image_size": (64, 224), "batches": (12, 40), "max_seconds": (2.5, 20.0)}
        for name, (quick, full) in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, quick if self.quick else full)
        for name in ("episodes", "image_size", "batches", "max_seconds", "max_episode_steps", "batch_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)!r}")
        for name in ("s3_block_size", "local_block_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number of bytes, got "
                                 f"{getattr(self, name)!r}")


@dataclass
class Variant:
    """One dataset on disk: a format with one codec setting."""

    format: str  # lance | hdf5 | mp4
    cls: str  # raw | compressed
    codec: str  # human-readable codec and settings
    path: str
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- recording


def record(args: Args, root: Path) -> Path:
    """The raw (bit-exact frames) Lance dataset every other format is written from."""
    # every setting of the recording is in the name, so a cached file is only reused for the same data
    path = root / f"pusht_{args.image_size}px_{args.episodes}ep_{args.max_episode_steps}st_s{args.seed}_raw.lance"
    if path.exists() and not args.rewrite:
        try:
            if open_dataset(path).num_episodes == args.episodes:
                return path
        except (FileNotFoundError, ValueError):
            pass
    shutil.rmtree(path, ignore_errors=True)
    world = World("swm/PushT-v1", num_envs=2, image_size=args.image_size, max_episode_steps=args.max_episode_steps,
                  seed=args.seed)
    policy = MixturePolicy([expert_policy("swm/PushT-v1", seed=args.seed), RandomPolicy(seed=args.seed + 1)],
                           [0.5, 0.5], seed=args.seed)
    t0 = time.perf_counter()
    world.collect(path, episodes=args.episodes, seed=args.seed, policy=policy, encoding="raw", progress=False)
    print(f"recorded {args.episodes} Push-T episodes at {args.image_size} px in {time.perf_counter() - t0:.0f}s "
          f"-> {path}")
    return path


def write_variants(args: Args, raw: Path, root: Path) -> list[Variant]:
    stem = raw.name[: -len("_raw.lance")]
    sub = check_jpeg_subsampling(args.jpeg_subsampling)
    tag = "" if sub == "444" else sub  # the 4:4:4 files keep their earlier names
    jpeg = root / f"{stem}_jpeg{tag}.lance"
    variants = [Variant("lance", "raw", "raw uint8", str(raw)),
                Variant("lance", "compressed", f"JPEG q95 {sub}", str(jpeg))]
    for chunk, comp, level in ((0, None, None), (1, None, None), (1, "lzf", None), (1, "gzip", 1), (4, "lzf", None)):
        layout = "contiguous" if chunk == 0 else f"chunks of {chunk} frame{'s' if chunk > 1 else ''}"
        name = f"{stem}_raw_c{chunk}_{comp or 'none'}{level or ''}.h5"
        variants.append(Variant("hdf5", "raw", f"uint8, {layout}, {comp or 'no'}{level or ''} compression",
                                str(root / name), {"encoding": "raw", "chunk_rows": chunk, "compression": comp,
                                                    "compression_level": level}))
    variants.append(Variant("hdf5", "compressed", f"JPEG q95 {sub} bytes (vlen)", str(root / f"{stem}_jpeg{tag}.h5"),
                            {"encoding": "jpeg"}))
    for gop in (1, 5, 10):
        variants.append(Variant("mp4", "compressed", f"H.264 crf 18 yuv420p, GOP {gop}",
                                str(root / f"{stem}_h264_g{gop}.mp4"),
                                {"lossless": False, "crf": 18, "gop": gop, "pix_fmt": "yuv420p"}))
    variants.append(Variant("mp4", "raw", "H.264 lossless RGB (qp 0), GOP 5", str(root / f"{stem}_lossless_g5.mp4"),
                            {"lossless": True, "gop": 5}))
    variants = variants[:2] if args.floor_only else variants  # the two Lance files only
    for v in variants:
        if v.path == str(raw):
            continue
        if Path(v.path).exists() and not args.rewrite:
            continue
        shutil.rmtree(v.path, ignore_errors=True) if Path(v.path).is_dir() else Path(v.path).unlink(missing_ok=True)
        src = jpeg if v.format == "hdf5" and v.cls == "compressed" else raw  # JPEG bytes copied from Lance JPEG
        t0 = time.perf_counter()
        if v.path == str(jpeg):
            convert(raw, jpeg, encoding="jpeg", jpeg_quality=95, jpeg_subsampling=sub)
        else:
            convert(src, v.path, **v.options)
        print(f"  wrote {v.format:5s} {v.codec:45s} in {time.perf_counter() - t0:5.1f}s  {disk_bytes(v.path) / 1e6:8.1f} MB")
    return variants


def disk_bytes(path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def evict(path) -> None:
    """Drop a file's (or a folder's files') pages from the page cache, so the next read comes from disk."""
    p = Path(path)
    for f in [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------ loaders
# Every loader maps window indices (into the shared window list) to a batch of torch tensors: pixels
# (B, num_steps, H, W, 3) uint8, action (B, num_steps, frameskip*A) float32, proprio (B, num_steps, D) float32.


def as_batch(batch: dict) -> dict:
    """numpy arrays -> the tensors a DataLoader yields. Every loader here reads whole batches (WindowDataset.loader()
    yields WindowDataset.batch()), so none pays a per-sample split and re-collate."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class LanceLoader:
    def __init__(self, path, args: Args, storage_options=None):
        self.wd = WindowDataset(path, num_steps=args.num_steps, frameskip=args.frameskip, columns=COLUMNS,
                                split="all", storage_options=storage_options,
                                block_size=args.s3_block_size if is_s3(path) else args.local_block_size)

    def batch(self, idx):
        return self.wd.batch(idx)  # what WindowDataset.loader() yields

    def close(self):
        pass


class HDF5Loader:
    """Reads only the rows a batch needs: the frame rows of pixels/proprio and each window's action rows (one
    slice per window). Rows are read one by one from contiguous or finely chunked datasets and with one sorted
    selection from coarsely chunked ones (h5py's point selections across many chunks are ~50x slower). On S3 the
    byte ranges of the needed rows/chunks are fetched concurrently first (h5py reads one range at a time)."""

    def __init__(self, path, args: Args, windows: np.ndarray, storage_options=None, swmr: bool = False):
        import h5py

        self.s3 = is_s3(path)
        self.file_obj = S3File(path, storage_options) if self.s3 else None
        # swmr: HDF5 will not open one file with two SWMR flags, and stable-worldmodel's reader opens it with SWMR
        self.f = h5py.File(self.file_obj if self.s3 else path, "r", swmr=swmr and not self.s3)
        self.windows, self.ns, self.fs = windows, args.num_steps, args.frameskip
        self.pixels, self.action, self.proprio = self.f["pixels"], self.f["action"], self.f["proprio"]
        self.jpeg = h5py.check_vlen_dtype(self.pixels.dtype) is not None
        self.shape = tuple(self.pixels.attrs["shape"]) if self.jpeg else self.pixels.shape[1:]
        self._vlen_refs: dict[int, np.ndarray] = {}  # chunk -> heap references (file metadata, kept)
        self._heap_sizes: dict[int, int] = {}

    @staticmethod
    def _rows(dset, rows: np.ndarray):
        if dset.chunks is not None and dset.chunks[0] >= 64:
            return dset[rows]
        if h5py_vlen(dset):
            return [dset[r] for r in rows.tolist()]
        return np.stack([dset[r] for r in rows.tolist()])

    def _ranges(self, dset, rows) -> list[tuple[int, int]]:
        """Byte ranges (offset, size) holding ``rows`` of ``dset`` in the file."""
        rows = np.asarray(rows)
        if h5py_vlen(dset):
            return self._ranges_vlen(dset, rows)
        if dset.chunks is None:  # contiguous: row r lives at offset + r * row_bytes
            offset = dset.id.get_offset()
            if offset is None:
                return []
            row_bytes = int(np.prod(dset.shape[1:])) * dset.dtype.itemsize
            return [(offset + int(r) * row_bytes, row_bytes) for r in np.unique(rows)]
        chunk = dset.chunks[0]
        ranges = []
        for c in np.unique(rows // chunk).tolist():
            info = dset.id.get_chunk_info_by_coord((c * chunk,) + (0,) * (dset.ndim - 1))
            if info.byte_offset is not None:
                ranges.append((info.byte_offset, info.size))
        return ranges

    def _ranges_vlen(self, dset, rows):
        """Variable-length rows live in global heap collections: read the rows' heap references from their
        chunks (16 bytes each: length, collection address, index), then fetch the whole collections."""
        chunk = dset.chunks[0]
        addresses = set()
        for c in np.unique(rows // chunk).tolist():
            refs = self._vlen_refs.get(c)
            if refs is None:
                info = dset.id.get_chunk_info_by_coord((c * chunk,))
                if info.byte_offset is None or info.filter_mask or info.size % 16:
                    continue
                _, raw = dset.id.read_direct_chunk((c * chunk,))
                refs = self._vlen_refs[c] = np.frombuffer(raw, [("len", "<u4"), ("addr", "<u8"), ("idx", "<u4")])
            addresses.update(refs["addr"][rows[(rows // chunk) == c] - c * chunk].tolist())
        ranges = []
        for a in addresses:
            if a not in self._heap_sizes:  # collection header: "GCOL", version, 3 reserved, uint64 size
                self.file_obj.seek(a)
                self._heap_sizes[a] = int(np.frombuffer(self.file_obj.read(16)[8:16], "<u8")[0])
            ranges.append((a, self._heap_sizes[a]))
        return ranges

    def batch(self, idx):
        starts = self.windows[np.asarray(idx)]
        frame_rows = starts[:, None] + np.arange(self.ns) * self.fs
        uniq, inv = np.unique(frame_rows, return_inverse=True)
        span = self.ns * self.fs
        if self.s3:  # one concurrent fetch of everything the batch reads
            action_rows = (starts[:, None] + np.arange(span)).reshape(-1)
            self.file_obj.prefetch(self._ranges(self.pixels, uniq) + self._ranges(self.proprio, uniq)
                                   + self._ranges(self.action, action_rows))
        raw = self._rows(self.pixels, uniq)
        pixels = decode_jpegs(raw, self.shape) if self.jpeg else raw
        proprio = self._rows(self.proprio, uniq)
        action = np.stack([self.action[s : s + span] for s in starts.tolist()]).reshape(len(starts), self.ns, -1)
        inv = inv.reshape(frame_rows.shape)
        return as_batch({"pixels": pixels[inv], "action": action.astype(np.float32),
                                "proprio": proprio[inv].astype(np.float32)})

    def close(self):
        self.f.close()


def h5py_vlen(dset) -> bool:
    import h5py

    return h5py.check_vlen_dtype(dset.dtype) is not None


class MP4Loader:
    """One VideoReader per episode (an LRU of open files); frames of a batch grouped by episode and read in order
    (one seek per keyframe group). action/proprio from the parquet table, loaded at open."""

    def __init__(self, path, args: Args, windows: np.ndarray, storage_options=None, max_open: int = 64):
        import pyarrow.parquet as pq

        self.path, self.so = str(path).rstrip("/"), storage_options
        with open_read(f"{self.path}/{MP4_MANIFEST}", storage_options, whole=True) as fh:
            self.manifest = json.loads(fh.read())
        with open_read(f"{self.path}/{MP4_TABLE}", storage_options, whole=True) as fh:
            table = pq.read_table(fh, columns=["action", "proprio"])
        n = table.num_rows
        self.action = table.column("action").combine_chunks().flatten().to_numpy().reshape(n, -1)
        self.proprio = table.column("proprio").combine_chunks().flatten().to_numpy().reshape(n, -1)
        lengths = np.asarray(self.manifest["lengths"])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.windows, self.ns, self.fs = windows, args.num_steps, args.frameskip
        self.readers: OrderedDict[int, VideoReader] = OrderedDict()
        self.max_open = max_open

    def _reader(self, e: int) -> VideoReader:
        r = self.readers.get(e)
        if r is None:
            r = VideoReader(f"{self.path}/videos/pixels/episode_{e:06d}.mp4", fps=self.manifest["fps"],
                                    storage_options=self.so)
            self.readers[e] = r
            if len(self.readers) > self.max_open:
                self.readers.popitem(last=False)[1].close()
        else:
            self.readers.move_to_end(e)
        return r

    def batch(self, idx):
        starts = self.windows[np.asarray(idx)]
        frame_rows = starts[:, None] + np.arange(self.ns) * self.fs
        uniq, inv = np.unique(frame_rows, return_inverse=True)
        episode = np.searchsorted(self.offsets, uniq, side="right") - 1
        frames = np.empty((len(uniq), *self.manifest["shapes"]["pixels"]), np.uint8)
        for e in np.unique(episode).tolist():
            sel = np.flatnonzero(episode == e)
            frames[sel] = self._reader(e).read(uniq[sel] - self.offsets[e])
        span = self.ns * self.fs
        action = np.stack([self.action[s : s + span] for s in starts.tolist()]).reshape(len(starts), self.ns, -1)
        inv = inv.reshape(frame_rows.shape)
        return as_batch({"pixels": frames[inv], "action": action, "proprio": self.proprio[uniq][inv]})

    def close(self):
        for r in self.readers.values():
            r.close()


def make_loader(v: Variant, args: Args, windows, path=None, storage_options=None):
    path = path or v.path
    if v.format == "lance":
        return LanceLoader(path, args, storage_options)
    if v.format == "hdf5":
        return HDF5Loader(path, args, windows, storage_options)
    return MP4Loader(path, args, windows, storage_options)


# ------------------------------------------------------------------------------------------------ measure


def measure(loaders: dict, batches: np.ndarray, max_seconds: float, cold=()) -> dict:
    """Time the same batches on every loader, round-robin (batch b on each loader, then batch b + 1), so load
    from other jobs sharing this CPU falls on all of them alike; stop after ``max_seconds`` per loader on average
    (at least 2 batches). The order rotates from batch to batch: loaders reading one file (ours and a peer's)
    take turns at reading a batch's pages first, from disk, rather than one always finding them in the page cache.
    ``cold``: files whose pages are dropped from the page cache before every batch of every loader (untimed), so
    each batch reads from disk, as from a dataset far larger than the page cache (the files here are small enough
    that a dozen random batches would otherwise find most of their pages cached). samples/s and ms/batch use the
    median batch time (the mean is kept too)."""
    times = {k: [] for k in loaders}
    names = list(loaders)
    t_start = time.perf_counter()
    for i, b in enumerate(batches):
        for k in names[i % len(names) :] + names[: i % len(names)]:
            loader = loaders[k]
            for path in cold:
                evict(path)
            t = time.perf_counter()
            out = loader.batch(b.tolist())
            times[k].append(time.perf_counter() - t)
            assert out["pixels"].shape[0] == len(b)
        if time.perf_counter() - t_start > max_seconds * len(loaders) and i >= 1:
            break
    result = {}
    for k, ts in times.items():
        med, mean = float(np.median(ts)), float(np.mean(ts))
        result[k] = {"samples_per_s": batches.shape[1] / med, "ms_per_batch": 1000 * med,
                     "samples_per_s_mean": batches.shape[1] / mean, "batches": len(ts)}
    return result


def measure_threaded(factories: dict, batches: np.ndarray, threads: int, max_seconds: float, rounds: int = 2) -> dict:
    """samples/s of each reader when ``threads`` threads of one process build the batches (each thread its own
    reader from ``factories[k]()``, as ``WindowDataset.loader(threads=N)`` runs batch() concurrently): passes over
    ``batches`` until ``max_seconds``, after one warm pass. Readers take turns, ``rounds`` times (shared CPU); the
    mean over rounds is reported."""
    rates: dict[str, list[float]] = {k: [] for k in factories}
    pools, readers, made = {}, {k: [] for k in factories}, {}
    for k, make in factories.items():
        local = threading.local()

        def work(b, local=local, make=make, k=k):
            if not hasattr(local, "reader"):
                local.reader = make()
                readers[k].append(local.reader)
            return local.reader.batch(b.tolist())["pixels"].shape[0]

        pools[k], made[k] = ThreadPoolExecutor(threads), work
        sum(pools[k].map(work, batches))  # warm: open a reader per thread, fill caches
    try:
        for _ in range(rounds):
            for k in factories:
                n, t0 = 0, time.perf_counter()
                while True:
                    n += sum(pools[k].map(made[k], batches))
                    if time.perf_counter() - t0 >= max_seconds:
                        break
                rates[k].append(n / (time.perf_counter() - t0))
    finally:
        for k in factories:
            pools[k].shutdown()
            for r in readers[k]:
                r.close()
    return {k: {"samples_per_s": float(np.mean(v)), "rounds": [float(x) for x in v]} for k, v in rates.items()}


def psnr(loader, reference, idx) -> float:
    a, b = loader.batch(idx)["pixels"].numpy().astype(np.float64), reference.batch(idx)["pixels"].numpy()
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


class LocalS3:
    """A localbucket server on a free 127.0.0.1 port serving ``root`` (objects are files under root/bucket)."""

    def __init__(self, root: Path, bucket: str = "bench"):
        self.root, self.bucket = root, bucket
        (root / bucket).mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        exe = shutil.which("localbucket") or str(Path(sys.executable).parent / "localbucket")
        self.proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(self.port), str(root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"localbucket did not start on port {self.port}")
        self.storage_options = s3_storage_options(f"http://127.0.0.1:{self.port}", "bench", "bench")

    def put(self, local: str) -> tuple[str, Path]:
        """Place a dataset in the bucket (copied as files, which is how localbucket stores objects)."""
        name = Path(local).name
        dst = self.root / self.bucket / name
        if not dst.exists():
            (shutil.copytree if Path(local).is_dir() else shutil.copy2)(local, dst)
        return f"s3://{self.bucket}/{name}", dst

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PeerLoader:
    """The stable-worldmodel package's own reader as its DataLoader uses it: ``__getitems__`` (LanceDataset) or
    ``__getitem__`` per window (HDF5Dataset), then default_collate. Our window indices are mapped to its clips
    (it lists every window of ``span`` rows; ours are those whose actions are all real, a subset)."""

    def __init__(self, ds, windows: np.ndarray):
        self.ds = ds
        clip = {int(ds.offsets[e]) + int(t): i for i, (e, t) in enumerate(ds.clip_indices)}
        self.index = np.array([clip[int(w)] for w in windows], dtype=np.int64)
        self.many = hasattr(ds, "__getitems__")

    def batch(self, idx):
        clips = self.index[np.asarray(idx)].tolist()
        samples = self.ds.__getitems__(clips) if self.many else [self.ds[i] for i in clips]
        return torch.utils.data.default_collate(samples)

    def close(self):
        pass


def write_with_peer(raw: Path, root: Path, args: Args) -> Path | None:
    """The same episodes written by the stable-worldmodel package's own LanceWriter (its layout: PIL JPEG q95,
    every numeric column float32), for a comparison on the files that package writes."""
    from stable_worldmodel.data import LanceWriter as PeerLanceWriter

    path = root / raw.name.replace("_raw.lance", "_swmpkg.lance")
    if path.exists() and not args.rewrite:
        return path
    shutil.rmtree(path, ignore_errors=True)
    source = open_source(raw)
    episodes = ({k: list(v) for k, v in ep.items() if k not in ("episode_idx", "step_idx")}  # it takes lists
                for ep in source.episodes())
    t0 = time.perf_counter()
    with PeerLanceWriter(path, jpeg_quality=95, mode="overwrite") as w:
        w.write_episodes(episodes)
    print(f"  wrote lance (stable-worldmodel's LanceWriter, JPEG q95) in {time.perf_counter() - t0:5.1f}s  "
          f"{disk_bytes(path) / 1e6:8.1f} MB")
    return path


def peer_rows(args: Args, raw: Path, root: Path, variants, best, windows, batches) -> tuple[list[dict], list[str]]:
    """The stable-worldmodel package's own Lance and HDF5 loaders, measured round-robin with ours on the same files,
    settings and process (random order, local with the page cache dropped, then cached), when it is installed."""
    try:
        from stable_worldmodel.data import HDF5Dataset, LanceDataset
    except Exception as err:  # the optional `peers` extra (stable-worldmodel, hdf5plugin) is not installed
        print(f"  stable-worldmodel loaders not measured: {err}")
        return [], []
    import warnings

    warnings.filterwarnings("ignore", message="The given buffer is not writable")
    ours_jpeg = best[("lance", "compressed")]
    peer_file = write_with_peer(raw, root, args)
    window = dict(frameskip=args.frameskip, num_steps=args.num_steps, keys_to_load=list(COLUMNS))
    h5 = [v for v in variants if v.format == "hdf5" and v.cls == "raw"]
    specs = {  # name -> (row label, class, codec, path, loader factory)
        "ours_lance": ("lance (ours)", "compressed", ours_jpeg.codec, ours_jpeg.path,
                       lambda: LanceLoader(ours_jpeg.path, args)),
        "peer_lance": ("stable-worldmodel LanceDataset", "compressed", ours_jpeg.codec, ours_jpeg.path,
                       lambda: PeerLoader(LanceDataset(ours_jpeg.path, **window), windows)),
        "ours_lance_pf": ("lance (ours), its files", "compressed", "JPEG q95 (PIL, its LanceWriter)", str(peer_file),
                          lambda: LanceLoader(peer_file, args)),
        "peer_lance_pf": ("stable-worldmodel LanceDataset, its files", "compressed",
                          "JPEG q95 (PIL, its LanceWriter)", str(peer_file),
                          lambda: PeerLoader(LanceDataset(peer_file, **window), windows)),
        "ours_hdf5": ("hdf5 (ours)", "raw", best[("hdf5", "raw")].codec, best[("hdf5", "raw")].path,
                      lambda: HDF5Loader(best[("hdf5", "raw")].path, args, windows, swmr=True)),
    }
    for i, v in enumerate(h5):  # its HDF5 reader on every raw variant; the best one is reported
        specs[f"peer_hdf5_{i}"] = ("stable-worldmodel HDF5Dataset", "raw", v.codec, v.path,
                                   lambda v=v: PeerLoader(HDF5Dataset(path=v.path, **window), windows))
    rows, notes = [], []
    for source in ("local", "cached"):
        for spec in specs.values():
            if source == "local":
                evict(spec[3])
        loaders = {k: spec[4]() for k, spec in specs.items()}
        if source == "cached":
            measure(loaders, batches["random"], args.max_seconds / 2)
        else:  # same frames and actions from every reader (pixels channel-first in stable-worldmodel's)
            b = batches["random"][0][:8].tolist()
            ref = loaders["ours_lance"].batch(b)
            for k in ("peer_lance", "peer_lance_pf", "ours_lance_pf"):
                got = loaders[k].batch(b)
                px = got["pixels"] if k.startswith("ours") else got["pixels"].permute(0, 1, 3, 4, 2)
                err = (px.float() - ref["pixels"].float()).abs().mean().item()
                same = torch.equal(got["action"], ref["action"]) and torch.equal(got["proprio"], ref["proprio"])
                notes.append(f"{k} vs ours on {source}: action/proprio identical {same}, pixel mean abs diff {err:.2f}")
        cold = sorted({spec[3] for spec in specs.values()}) if source == "local" else ()
        m = measure(loaders, batches["random"], args.max_seconds, cold)
        peer_h5 = max((k for k in m if k.startswith("peer_hdf5")), key=lambda k: m[k]["samples_per_s"])
        for k, spec in specs.items():
            if k.startswith("peer_hdf5") and k != peer_h5:
                continue
            rows.append({"format": spec[0], "cls": spec[1], "codec": spec[2], "source": source, "order": "random",
                         **m[k], "bytes": disk_bytes(spec[3])})
        for loader in loaders.values():
            loader.close()
        print(f"  measured peers {source}: " + ", ".join(f"{r['format']} {r['samples_per_s']:,.0f}"
                                                        for r in rows if r["source"] == source))
        if source == "cached" and args.threads:  # the same readers, each thread its own, page cache warm
            keys = [k for k in specs if not k.startswith("peer_hdf5") or k == peer_h5]
            m = measure_threaded({k: specs[k][4] for k in keys}, batches["random"], args.threads, args.max_seconds)
            for k in keys:
                spec = specs[k]
                rows.append({"format": spec[0], "cls": spec[1], "codec": spec[2], "source": source, "order": "random",
                             "threads": args.threads, **m[k], "bytes": disk_bytes(spec[3])})
            print(f"  measured peers {source}, {args.threads} threads: "
                  + ", ".join(f"{specs[k][0]} {m[k]['samples_per_s']:,.0f}" for k in keys))
    return rows, notes


# --------------------------------------------------------------------------------------------- decode floor


class FloorLoader:
    """The decode floor of a JPEG Lance file: each batch's frames as JPEG bytes already in memory (read before any
    timing), decoded with the reader's decoder (swm_core.jpeg.decode_jpeg_into) straight into one (B * T, H, W, C)
    buffer, each distinct frame once (a frame two windows share is copied), as our reader does. What a batch costs
    with no storage, no Lance and no per-window bookkeeping: the most any JPEG reader can deliver."""

    def __init__(self, path, args: Args, windows: np.ndarray, batches: np.ndarray, block_size: int | None = None):
        import lance

        self.ds, self.plans = lance.dataset(str(path), block_size=block_size), {}
        self.shape = tuple(open_dataset(path).shape_of("pixels"))
        for b in batches:
            rows = (windows[b][:, None] + np.arange(args.num_steps) * args.frameskip).reshape(-1)
            uniq, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
            blobs = self.ds.take(uniq, columns=["pixels"]).column(0).to_pylist()
            source = first[inverse]
            repeat = np.flatnonzero(source != np.arange(len(rows)))
            self.plans[tuple(b.tolist())] = (blobs, first.tolist(), repeat, source[repeat], len(b), uniq)

    def take(self, idx):
        """The other half of a batch's cost: the Lance take of its frames' JPEG bytes (opened with our reader's
        block size), nothing decoded."""
        return self.ds.take(self.plans[tuple(idx)][5], columns=["pixels"])

    def batch(self, idx):
        blobs, first, repeat, source, n, _ = self.plans[tuple(idx)]
        out = np.empty((len(first) + len(repeat), *self.shape), np.uint8)
        for blob, slot in zip(blobs, first):
            decode_jpeg_into(blob, out[slot])
        out[repeat] = out[source]
        return {"pixels": torch.from_numpy(out).view(n, -1, *self.shape)}

    def close(self):
        pass


def measure_passes(runs: dict, samples: int, max_seconds: float, rounds: int = 2) -> dict:
    """samples/s of each ``runs[k]()`` (an iterable over the same ``samples`` samples, one pass), passes repeated
    until ``max_seconds`` after one warm pass; the runs take turns, ``rounds`` times (the CPU is shared), and the
    median over rounds is reported, with the CPU time of this process (all its threads; worker processes' not
    counted) per sample, which other jobs on a shared CPU inflate much less than wall time."""
    rates: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for run in runs.values():
        for _ in run():  # warm: start workers and threads, fill the page cache
            pass
    for _ in range(rounds):
        for k, run in runs.items():
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < max_seconds:
                for _ in run():
                    pass
                n += samples
            rates[k].append(n / (time.perf_counter() - t0))
            cpu[k].append(1e6 * (time.process_time() - c0) / n)
    return {k: {"samples_per_s": float(np.median(v)), "rounds": [float(x) for x in v],
                "cpu_us_per_sample": float(np.median(cpu[k]))} for k, v in rates.items()}


def floor_rows(args: Args, jpeg: Variant, windows: np.ndarray, batches: np.ndarray) -> tuple[list[dict], list]:
    """Our Lance JPEG reader against the decode floor (FloorLoader) and against its Lance take alone (``take
    only``: the same frames' bytes read, nothing decoded) on the same random windows, page cache warm: one decoding
    thread (``batch()`` calls, ``loader()``'s DataLoader, and ``loader(threads=1)``, whose Lance reads
    run on a second thread, ahead), then ``args.threads`` threads (``loader(threads=N)``, ThreadedBatches) and as
    many worker processes (``loader(num_workers=N)``: a DataLoader of whole batches, workers started by forkserver)
    against the floor decoding on as many threads. Returns the rows and the ratios; each row holds the 1-minute
    load average before and after (other jobs on the CPU)."""
    wd = LanceLoader(jpeg.path, args).wd
    floor = FloorLoader(jpeg.path, args, windows, batches, wd.block_size)
    lists = [b.tolist() for b in batches]
    one = torch.utils.data.DataLoader(wd, sampler=lists, batch_size=None)  # what loader() builds, these batches
    runs = {("floor", 1): lambda: map(floor.batch, lists), ("take only", 1): lambda: map(floor.take, lists),
            ("batch()", 1): lambda: map(wd.batch, lists), ("loader()", 1): lambda: iter(one),
            ("loader(threads=1)", 1): lambda: ThreadedBatches(wd, lists, 1)}
    pools = []
    n = args.threads
    if n:
        pools.append(ThreadPoolExecutor(n))
        ctx = torch.multiprocessing.get_context("forkserver")
        workers = torch.utils.data.DataLoader(wd, sampler=lists, batch_size=None, num_workers=n,
                                              multiprocessing_context=ctx, persistent_workers=True)
        runs |= {("floor", n): lambda: pools[0].map(floor.batch, lists),
                 (f"loader(threads={n})", n): lambda: ThreadedBatches(wd, lists, n),
                 (f"loader(num_workers={n})", n): lambda: iter(workers)}
    load_before = os.getloadavg()
    try:
        m = measure_passes(runs, batches.size, args.max_seconds / 2)  # each run twice, in turns
    finally:
        for p in pools:
            p.shutdown()
    load = [load_before[0], os.getloadavg()[0]]
    for k in m:
        if k[0].startswith("loader(num_workers"):
            m[k]["cpu_us_per_sample"] = None  # the work is in the worker processes
    rows = [{"reader": k[0], "threads": k[1], "codec": jpeg.codec, **v, "load_1min": load} for k, v in m.items()]
    rate = {k: v["samples_per_s"] for k, v in m.items()}
    cpu = {k: v["cpu_us_per_sample"] for k, v in m.items()}
    floor1 = rate[("floor", 1)]
    ratios = [("batch() / floor, 1 thread", rate[("batch()", 1)] / floor1),
              ("loader() / floor, 1 thread", rate[("loader()", 1)] / floor1),
              ("loader(threads=1) / floor, 1 thread (target >= 0.9x)", rate[("loader(threads=1)", 1)] / floor1),
              ("CPU time per sample, floor / batch() (1 thread)", cpu[("floor", 1)] / cpu[("batch()", 1)])]
    for k in [(f"loader(threads={n})", n), (f"loader(num_workers={n})", n)] if n else []:
        ratios += [(f"{k[0]} / floor, {n} threads", rate[k] / rate[("floor", n)]),
                   (f"{k[0]} / batch(), 1 thread (target >= 1.7x)", rate[k] / rate[("batch()", 1)]),
                   (f"{k[0]} / loader(threads=1)", rate[k] / rate[("loader(threads=1)", 1)])]
    if n:
        ratios.append((f"floor, {n} threads / 1 thread (what the CPU allowed)", rate[("floor", n)] / floor1))
    return rows, ratios


# --------------------------------------------------------------------------------------------------- main


def finite(x):
    """JSON-safe copy: numpy scalars to Python, inf/nan (a lossless codec's PSNR) to None."""
    return common.jsonable(x)


def fmt_rate(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def print_floor(args: Args, floor: list[dict], floor_ratios: list, command: str) -> None:
    print(f"\n## Our Lance JPEG reader vs the decode floor ({args.image_size} px; the same frames' JPEG bytes in memory, "
          f"decoded by the same decoder on as many threads; random order, batch {args.batch_size}, page cache warm; "
          f"{command})\n")
    print("| reader | threads | samples/s | rounds | CPU µs/sample | load average (1 min) before, after |\n"
          "|---|---:|---:|---|---:|---|")
    for r in floor:
        cpu = "-" if r["cpu_us_per_sample"] is None else f"{r['cpu_us_per_sample']:.0f}"
        print(f"| {r['reader']} | {r['threads']} | {fmt_rate(r['samples_per_s'])} | "
              f"{', '.join(fmt_rate(x) for x in r['rounds'])} | {cpu} | {r['load_1min'][0]:.2f}, {r['load_1min'][1]:.2f} |")
    print("\n| ratio (samples/s) | ours |\n|---|---:|")
    for name, x in floor_ratios:
        print(f"| {name} | {x:.2f}x |")


def record_tables(args: Args, results, ratios, threaded, threaded_ratios, peers, peer_ratios, floor,
                  floor_ratios) -> list[dict]:
    """The printed tables for the run's record: throughput per format and source beside the paper's, the ratios
    beside the paper's, our JPEG reader against the decode floor, and (when measured) the threaded and
    stable-worldmodel comparisons."""
    seq = {(r["format"], r["cls"], r["source"]): r["samples_per_s"] for r in results if r["order"] == "sequential"}
    rows = [[r["format"], r["cls"], r["codec"], r["source"], r["samples_per_s"], r.get("paper"), r["ms_per_batch"],
             seq.get((r["format"], r["cls"], r["source"])), r["bytes"] / 1e6, r.get("psnr_db")]
            for r in results if r["order"] == "random"]
    tables = [common.table(
        f"training-window throughput, {args.image_size} px Push-T, {args.episodes} episodes, batch {args.batch_size}",
        ["format", "class", "codec", "source", "random samples/s", "paper samples/s", "ms/batch",
         "sequential samples/s", "on disk MB", "PSNR dB"], rows,
        formats={"random samples/s": ",.0f", "paper samples/s": ",.0f", "ms/batch": ".1f",
                 "sequential samples/s": ",.0f", "on disk MB": ",.1f", "PSNR dB": ".1f"},
        notes=["paper: GPU cluster, 224 px Push-T (Lance JPEG, HDF5 raw, MP4 H.264); PSNR empty: bit-exact"]),
        common.table("ratios (random order, samples/s)", ["ratio", "ours", "paper"],
                     [[name, ours, paper] for name, ours, paper in ratios],
                     formats={"ours": ".2f", "paper": ".2f"})]
    tables.append(common.table(
        "our Lance JPEG reader vs the decode floor (random order, page cache warm)",
        ["reader", "threads", "samples/s", "CPU µs/sample", "load average before", "load average after"],
        [[r["reader"], r["threads"], r["samples_per_s"], r["cpu_us_per_sample"], *r["load_1min"]] for r in floor],
        formats={"samples/s": ",.0f", "CPU µs/sample": ".0f", "load average before": ".2f",
                 "load average after": ".2f"},
        notes=["CPU µs/sample: this process's CPU time, all threads (worker processes' not counted)"]))
    tables.append(common.table("ratios to the decode floor", ["ratio", "ours"], [[a, b] for a, b in floor_ratios],
                               formats={"ours": ".2f"}))
    if threaded:
        tables.append(common.table(
            f"{args.threads} threads in one process (random order)",
            ["format", "class", "source", "samples/s"],
            [[r["format"], r["cls"], r["source"], r["samples_per_s"]] for r in threaded], formats={"samples/s": ",.0f"}))
        tables.append(common.table(f"ratios, {args.threads} threads", ["ratio", "ours"],
                                   [[name, x] for name, x in threaded_ratios], formats={"ours": ".2f"}))
    if peers:
        tables.append(common.table(
            "our loaders vs the stable-worldmodel package's (random order, one process)",
            ["loader", "class", "codec", "source", "threads", "samples/s"],
            [[r["format"], r["cls"], r["codec"], r["source"], r.get("threads", 1), r["samples_per_s"]] for r in peers],
            formats={"samples/s": ",.0f"}))
        tables.append(common.table("ratios ours / theirs", ["ratio", "ours / theirs"],
                                   [[name, x] for name, x in peer_ratios], formats={"ours / theirs": ".2f"}))
    return tables


if __name__ == "__main__":
    args = tyro.cli(Args)
    torch.set_num_threads(1)  # as in DataLoader workers; torch.stack's thread pool stalls on a busy CPU
    command = common.command_line("benchmarks/data_throughput.py")
    config = common.config_name("quick" if args.quick else "full", args, Args(quick=args.quick))
    if args.keep_allocations:  # process-wide: every reader below, ours and the peers', gets the same allocator
        print(f"keep_large_allocations(): {keep_large_allocations()}")
    root, out_dir = Path(args.data_dir), Path(args.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    raw = record(args, root)
    variants = write_variants(args, raw, root)
    ref = WindowDataset(raw, num_steps=args.num_steps, frameskip=args.frameskip, columns=COLUMNS, split="all")
    windows = ref.window_starts
    rng = np.random.default_rng(args.seed)
    n = min(args.batches, len(windows) // args.batch_size)
    if n < 1:
        raise ValueError(f"{len(windows)} windows make no batch of --batch-size {args.batch_size}: record more "
                         "--episodes or lower --batch-size")
    batches = {"random": rng.permutation(len(windows))[: n * args.batch_size].reshape(n, args.batch_size),
               "sequential": np.arange(n * args.batch_size).reshape(n, args.batch_size)}
    print(f"{len(windows)} windows (num_steps {args.num_steps}, frameskip {args.frameskip}), batch "
          f"{args.batch_size}, up to {n} batches / {args.max_seconds}s per measurement; CPU: {os.cpu_count()} cores "
          "(shared with other jobs: numbers are noisy)")

    if args.floor_only:
        floor, floor_ratios = floor_rows(args, variants[1], windows, batches["random"])
        print_floor(args, floor, floor_ratios, command)
        sys.exit(0)

    # 1. pick each comparator's best variant (random order, page cache warm)
    reference = LanceLoader(raw, args)
    loaders = {i: make_loader(v, args, windows) for i, v in enumerate(variants)}
    measure(loaders, batches["random"][:1], 0)  # warm the page cache
    selection = measure(loaders, batches["random"], args.max_seconds / 2)
    for i, v in enumerate(variants):
        v.options["selection"] = selection[i]
        v.options["psnr_db"] = psnr(loaders[i], reference, batches["random"][0].tolist())
        loaders[i].close()
    best = {}
    for v in variants:
        key = (v.format, v.cls)
        if key not in best or v.options["selection"]["samples_per_s"] > best[key].options["selection"]["samples_per_s"]:
            best[key] = v
    print("variants (random order, warm cache; the best of each format x class is measured below):")
    for v in variants:
        mark = "*" if best[(v.format, v.cls)] is v else " "
        print(f"  {mark} {v.format:5s} {v.cls:10s} {v.codec:45s} {v.options['selection']['samples_per_s']:8,.0f} "
              f"samples/s  PSNR {v.options['psnr_db']:5.1f} dB  {fmt_bytes(disk_bytes(v.path))}")

    # 2. measure the best variants, all formats round-robin: local (page cache dropped), cached (second pass), S3
    server = LocalS3(root / "s3root") if args.s3 else None
    chosen = sorted(best.values(), key=lambda v: (v.cls, v.format))
    results, threaded = [], []
    try:
        per_frame = next(v for v in variants if v.format == "hdf5" and v.cls == "raw"
                         and v.options["chunk_rows"] == 1 and v.options["compression"] is None)
        per_frame_rate = {}
        for source in SOURCES if args.s3 else SOURCES[:2]:
            for order in ("random", "sequential"):
                loaders = {}
                for i, v in enumerate(chosen):
                    path, so = v.path, None
                    if source == "s3":
                        path, server_copy = server.put(v.path)
                        so = server.storage_options
                        evict(server_copy)
                    elif source == "local":
                        evict(v.path)
                    loaders[i] = make_loader(v, args, windows, path, so)
                # HDF5 raw in chunks of one frame, whether best or not (not twice: two HDF5 readers of one file in
                # one process share the library's chunk cache, so the second finds the first one's chunks there)
                if source != "s3" and order == "random" and per_frame not in chosen:
                    loaders["per_frame"] = make_loader(per_frame, args, windows)
                if source == "cached":
                    measure(loaders, batches[order], args.max_seconds)  # the first pass warms the page cache
                cold = [v.path for v in [*chosen, per_frame]] if source == "local" else ()
                m = measure(loaders, batches[order], args.max_seconds, cold)
                if source != "s3" and order == "random":
                    per_frame_rate[source] = m["per_frame" if "per_frame" in m else chosen.index(per_frame)]
                if "per_frame" in loaders:
                    loaders.pop("per_frame").close()
                for i, v in enumerate(chosen):
                    loaders[i].close()
                    results.append({"format": v.format, "cls": v.cls, "codec": v.codec, "source": source,
                                    "order": order, **m[i], "bytes": disk_bytes(v.path),
                                    "psnr_db": v.options["psnr_db"],
                                    "paper": PAPER.get((v.format, v.cls, source)) if order == "random" else None})
                print(f"  measured {source:6s} {order:10s}: " + ", ".join(
                    f"{v.format} {v.cls} {m[i]['samples_per_s']:,.0f}" for i, v in enumerate(chosen)))
        # 2b. N threads in one process (WindowDataset.loader(threads=N)): every reader gets the same threads
        if args.threads:
            for source in ("cached", "s3") if args.s3 else ("cached",):
                factories = {}
                for i, v in enumerate(chosen):
                    path, so = (server.put(v.path)[0], server.storage_options) if source == "s3" else (v.path, None)
                    factories[i] = lambda v=v, path=path, so=so: make_loader(v, args, windows, path, so)
                m = measure_threaded(factories, batches["random"], args.threads, args.max_seconds)
                for i, v in enumerate(chosen):
                    threaded.append({"format": v.format, "cls": v.cls, "codec": v.codec, "source": source,
                                     "order": "random", "threads": args.threads, **m[i], "bytes": disk_bytes(v.path)})
                print(f"  measured {source:6s} random, {args.threads} threads: " + ", ".join(
                    f"{v.format} {v.cls} {m[i]['samples_per_s']:,.0f}" for i, v in enumerate(chosen)))
    finally:
        if server is not None:
            server.stop()
    results.sort(key=lambda r: (r["cls"], r["format"], SOURCES.index(r["source"]), r["order"]))
    # 2c. our Lance JPEG reader against the decode floor, 1 thread and args.threads threads / workers
    floor, floor_ratios = floor_rows(args, best[("lance", "compressed")], windows, batches["random"])
    print("  measured the decode floor: " + ", ".join(f"{r['reader']} ({r['threads']}) {r['samples_per_s']:,.0f}"
                                                     for r in floor))
    peers, peer_notes = peer_rows(args, raw, root, variants, best, windows, batches)

    # 3. the table, the ratios
    def rate(fmt, cls, source, order="random", key="samples_per_s"):
        for r in results:
            if (r["format"], r["cls"], r["source"], r["order"]) == (fmt, cls, source, order):
                return r[key]
        return None

    def fastest(cls, source):
        cands = [(rate(f, cls, source), f) for f in ("lance", "hdf5", "mp4") if rate(f, cls, source)]
        return max(cands)[1] if cands else None

    print(f"\n## Data loading throughput ({args.image_size} px Push-T, {args.episodes} episodes; {command})\n")
    print("| format | class | codec | source | random samples/s | ms/batch | sequential samples/s | on disk | "
          "PSNR dB | fastest in class | paper samples/s |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|:---:|---:|")
    for r in results:
        if r["order"] != "random":
            continue
        seq = rate(r["format"], r["cls"], r["source"], "sequential")
        win = "yes" if r["format"] == fastest(r["cls"], r["source"]) and not r["format"].startswith("stable") else ""
        print(f"| {r['format']} | {r['cls']} | {r['codec']} | {r['source']} | {fmt_rate(r['samples_per_s'])} | "
              f"{r['ms_per_batch']:.1f} | {fmt_rate(seq)} | {fmt_bytes(r['bytes'])} | {r.get('psnr_db', float('nan')):.1f} | "
              f"{win} | {fmt_rate(r.get('paper'))} |")
    print("\npaper on-disk sizes: " + ", ".join(f"{f} {c} {fmt_bytes(b)}" for (f, c), b in PAPER_DISK.items()))

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    ratios = [(f"Lance raw / HDF5 raw in chunks of 1 frame ({source}; target >= 1.0x)",
               ratio(rate("lance", "raw", source), per_frame_rate[source]["samples_per_s"]), None)
              for source in ("local", "cached")]
    for cls in ("raw", "compressed"):
        for source in SOURCES:
            # same class on both sides; the paper measured Lance JPEG against HDF5 raw: the paper-style rows below
            ratios.append((f"Lance / HDF5 ({cls}, {source})", ratio(rate("lance", cls, source), rate("hdf5", cls, source)),
                           None))
        for source in SOURCES:
            ratios.append((f"Lance / MP4 ({cls}, {source})", ratio(rate("lance", cls, source), rate("mp4", cls, source)),
                           ratio(PAPER[("lance", "compressed", "local")], PAPER[("mp4", "compressed", "local")])
                           if source == "local" and cls == "compressed" else None))
    for fmt in ("lance", "hdf5", "mp4"):
        for cls in ("raw", "compressed"):
            paper = ratio(PAPER.get((fmt, cls, "s3")), PAPER.get((fmt, cls, "local")))
            ratios.append((f"S3 / local ({fmt} {cls})", ratio(rate(fmt, cls, "s3"), rate(fmt, cls, "local")), paper))
    for source in SOURCES:
        ratios.append((f"paper-style: Lance JPEG / HDF5 raw ({source})",
                       ratio(rate("lance", "compressed", source), rate("hdf5", "raw", source)),
                       ratio(PAPER.get(("lance", "compressed", source)), PAPER.get(("hdf5", "raw", source)))))
    print("\n| ratio (random order, samples/s) | ours | paper |\n|---|---:|---:|")
    for name, ours, paper in ratios:
        print(f"| {name} | {'-' if ours is None else f'{ours:.2f}x'} | {'-' if paper is None else f'{paper:.2f}x'} |")
    winners = {f"{cls}/{source}": fastest(cls, source) for cls in ("raw", "compressed") for source in SOURCES}

    def trate(fmt, cls, source):
        return next((r["samples_per_s"] for r in threaded if (r["format"], r["cls"], r["source"]) == (fmt, cls, source)),
                    None)

    threaded_ratios = []
    if threaded:
        print(f"\n## {args.threads} threads, one process (random order; each reader once per thread)\n")
        print("| format | class | source | samples/s, 1 thread | samples/s, threads | speed-up |\n|---|---|---|---:|---:|---:|")
        for r in threaded:  # both sides mean throughputs (the threaded rate is samples / wall time)
            one = rate(r["format"], r["cls"], r["source"], key="samples_per_s_mean")
            speedup = "-" if not one else f"{r['samples_per_s'] / one:.2f}x"
            print(f"| {r['format']} | {r['cls']} | {r['source']} | {fmt_rate(one)} | {fmt_rate(r['samples_per_s'])} | "
                  f"{speedup} |")
        for cls in ("raw", "compressed"):
            for source in ("cached", "s3"):
                for other in ("hdf5", "mp4"):
                    threaded_ratios.append((f"Lance / {other.upper()} ({cls}, {source}, "
                                            f"{args.threads} threads)",
                                            ratio(trate("lance", cls, source), trate(other, cls, source))))
        for fmt in ("lance", "hdf5", "mp4"):
            for cls in ("raw", "compressed"):
                threaded_ratios.append((f"S3 / local cached ({fmt} {cls}, {args.threads} threads)",
                                        ratio(trate(fmt, cls, "s3"), trate(fmt, cls, "cached"))))
        print("\n| ratio (random order, samples/s) | ours |\n|---|---:|")
        for name, x in threaded_ratios:
            print(f"| {name} | {'-' if x is None else f'{x:.2f}x'} |")

    print_floor(args, floor, floor_ratios, command)

    # the stable-worldmodel package's own loaders, same files, settings and process, measured round-robin with ours
    peer_ratios = []
    if peers:
        print("\n## Our loaders vs the stable-worldmodel package's (random order, batch "
              f"{args.batch_size}, one process)\n")
        print("| loader | class | codec | source | threads | samples/s | ms/batch | on disk |\n"
              "|---|---|---|---|---:|---:|---:|---:|")
        for r in peers:
            ms = f"{r['ms_per_batch']:.1f}" if "ms_per_batch" in r else "-"
            print(f"| {r['format']} | {r['cls']} | {r['codec']} | {r['source']} | {r.get('threads', 1)} | "
                  f"{fmt_rate(r['samples_per_s'])} | {ms} | {fmt_bytes(r['bytes'])} |")

        def peer_rate(name, source, threads=1):
            return next((r["samples_per_s"] for r in peers
                         if (r["format"], r["source"], r.get("threads", 1)) == (name, source, threads)), None)

        for source in ("local", "cached"):
            ours_l, ours_h = peer_rate("lance (ours)", source), peer_rate("hdf5 (ours)", source)
            peer_ratios += [
                (f"our Lance / its Lance, same JPEG Lance files ({source}; target >= 10x)",
                 ratio(ours_l, peer_rate("stable-worldmodel LanceDataset", source))),
                (f"our Lance / its Lance, on the files its LanceWriter wrote ({source}; target >= 10x)",
                 ratio(peer_rate("lance (ours), its files", source),
                       peer_rate("stable-worldmodel LanceDataset, its files", source))),
                (f"our Lance JPEG / its HDF5 raw ({source})", ratio(ours_l, peer_rate("stable-worldmodel HDF5Dataset",
                                                                                       source))),
                (f"our HDF5 raw / its HDF5 raw ({source})", ratio(ours_h, peer_rate("stable-worldmodel HDF5Dataset",
                                                                                     source))),
            ]
        if args.threads:
            peer_ratios += [
                (f"our Lance / its Lance, same JPEG Lance files (cached, {args.threads} threads each; target >= 10x)",
                 ratio(peer_rate("lance (ours)", "cached", args.threads),
                       peer_rate("stable-worldmodel LanceDataset", "cached", args.threads))),
                (f"our Lance / its Lance, on the files its LanceWriter wrote (cached, {args.threads} threads each)",
                 ratio(peer_rate("lance (ours), its files", "cached", args.threads),
                       peer_rate("stable-worldmodel LanceDataset, its files", "cached", args.threads))),
                (f"our Lance, {args.threads} threads / its Lance, 1 thread (cached; what a user of each gets in one "
                 "process)", ratio(peer_rate("lance (ours)", "cached", args.threads),
                                   peer_rate("stable-worldmodel LanceDataset", "cached"))),
            ]
        print("\n| ratio ours / theirs | samples/s |\n|---|---:|")
        for name, x in peer_ratios:
            print(f"| {name} | {'-' if x is None else f'{x:.2f}x'} |")
        print("\n" + "\n".join(peer_notes))
    print("\nfastest per class/source: " + ", ".join(f"{k}: {w}" for k, w in winners.items()))
    elapsed = time.perf_counter() - t_all
    print(f"\ntotal {elapsed:.0f}s; CPU {os.cpu_count()} cores shared with other jobs, so absolute numbers are noisy")

    # 4. JSON and PNG
    tag = f"data_throughput_{args.image_size}px"
    report = {"command": command, "args": asdict(args), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
              "note": "CPU shared with other jobs"}, "windows": int(len(windows)),
              "variants": [asdict(v) | {"bytes": disk_bytes(v.path)} for v in variants],
              "results": results, "ratios": [{"name": a, "ours": b, "paper": c} for a, b, c in ratios],
              "threaded": threaded, "threaded_ratios": [{"name": a, "ours": b} for a, b in threaded_ratios],
              "floor": floor, "floor_ratios": [{"name": a, "ours": b} for a, b in floor_ratios],
              "peers": peers, "peer_ratios": [{"name": a, "ours_over_theirs": b} for a, b in peer_ratios],
              "peer_checks": peer_notes,
              "winners": winners, "paper": {" ".join(k): v for k, v in PAPER.items()}, "seconds": elapsed}
    (out_dir / f"{tag}.json").write_text(json.dumps(finite(report), indent=1))

    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = {"lance": "#2a7ab9", "hdf5": "#d9822b", "mp4": "#5a9e4b"}
    for ax, cls in zip(axes, ("raw", "compressed")):
        for j, fmt in enumerate(("lance", "hdf5", "mp4")):
            vals = [rate(fmt, cls, s) or 0 for s in SOURCES]
            ax.bar(np.arange(len(SOURCES)) + (j - 1) * 0.27, vals, 0.27, label=fmt, color=colors[fmt])
        ax.set_xticks(np.arange(len(SOURCES)), SOURCES)
        ax.set_yscale("log")
        ax.set_title(f"{cls} frames")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("samples/s (random windows, batch 64)")
    axes[0].legend()
    fig.suptitle(f"Push-T {args.image_size} px: training-window throughput (num_steps {args.num_steps}, "
                 f"frameskip {args.frameskip})")
    common.save_figure(fig, out_dir / f"{tag}.png")
    print(f"wrote {out_dir / f'{tag}.json'} and {out_dir / f'{tag}.png'}")
    common.write_record(out_dir, "data_throughput", config, title="Data-loading throughput: Lance vs HDF5 vs MP4",
                        command=command, seeds=[args.seed], quick=args.quick, seconds=elapsed,
                        tables=record_tables(args, results, ratios, threaded, threaded_ratios, peers, peer_ratios,
                                             floor, floor_ratios),
                        threads={"readers": args.threads})
