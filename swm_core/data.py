"""Trajectory data layer on Lance: write episodes, read rows, serve training windows.

Layout: one row per env step, episodes contiguous. Row t holds observation t and the action executed after it
(an episode's last row has a NaN action). Columns: ``episode_idx``/``step_idx`` int32; images (any uint8
(H, W, C) column such as ``pixels``/``goal``) as JPEG bytes (``binary``) or raw (``fixed_size_binary``); vectors
as ``fixed_size_list<dtype>[dim]``; scalars keep their type. A FoV key ``agent.color`` recorded as
``variation.agent.color`` becomes the column ``variation__agent__color``. The schema metadata key ``swm`` holds
JSON: env_id, image_size, encoding, jpeg_quality, jpeg_subsampling, control_hz, fov_keys, image_columns, shapes,
format_version.

Datasets written by the stable-worldmodel package (no ``swm`` metadata, JPEG ``binary`` images, every numeric
column ``fixed_size_list<float32>``) are read too: binary columns are taken to be JPEG images.

- ``LanceWriter``: buffer episodes, ``commit()`` appends them as one atomic Lance version.
- ``open_dataset`` -> ``TrajectoryDataset``: episode index (from ``episode_idx`` only) and ``read_rows``.
- ``WindowDataset``: a torch Dataset of ``num_steps`` frames ``frameskip`` rows apart, with the ``frameskip``
  actions after each frame concatenated; split by episode. ``batch(indices)`` reads a whole batch: the small
  non-image columns come from memory (one scan per process, under ``in_memory_bytes``), the images from one
  sorted ``take`` of the frame rows, each used frame decoded once straight into the batch tensor.
  ``WindowDataset.loader()`` builds a seeded DataLoader of whole batches whose workers start with
  "forkserver": Lance is not fork-safe, and a forked worker of a process that used Lance refuses to read.
  ``loader(threads=N)`` builds the batches on N threads of this process instead (the take and the JPEG decoding
  run without the GIL), in the same order; it hides S3 latency without worker processes.
- ``keep_large_allocations()``: opt-in, process-wide glibc setting that lets large batch buffers be reused
  instead of faulted in afresh (2.3x faster 224 px raw-frame batches here).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import lance
import numpy as np
import pyarrow as pa
import torch
from lance.dataset import Session as LanceSession

try:
    import simplejpeg
except ImportError:  # pragma: no cover - exercised only where simplejpeg is missing
    simplejpeg = None
    import cv2

METADATA_KEY = b"swm"
FORMAT_VERSION = 1
ACTION_COLUMN = "action"
FLOAT64_COLUMNS = ("sim_state",)  # float64 vector columns kept at full precision; other floats become float32
INDEX_COLUMNS = ("episode_idx", "step_idx")  # added by the writer to every row
ENCODINGS = ("jpeg", "raw")
# JPEG chroma subsampling: 4:4:4 keeps full colour resolution (our default); 4:2:0 (what most tools and the
# stable-worldmodel package write) halves it both ways: ~2.5x smaller 224 px frames that also decode faster
JPEG_SUBSAMPLINGS = ("444", "422", "420")
SPLITS = ("train", "val", "all")


class ColumnNotFoundError(KeyError, ValueError):
    """A requested column is not in the dataset (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0])


def column_name(key: str) -> str:
    """Column name for an episode key: ``variation.agent.color`` -> ``variation__agent__color``."""
    return key.replace(".", "__")


# ---------------------------------------------------------------------------------------------------- JPEG


def check_jpeg_subsampling(value) -> str:
    """``value`` as one of JPEG_SUBSAMPLINGS ('444', '422', '420'; 420 and 4:2:0 are accepted too), else a
    ValueError naming it."""
    text = str(value).replace(":", "")
    if text not in JPEG_SUBSAMPLINGS:
        raise ValueError(f"jpeg_subsampling must be one of {JPEG_SUBSAMPLINGS}, got {value!r}")
    return text


def _encode_frames(frames: np.ndarray, quality: int, subsampling: str = "444") -> list[bytes]:
    """JPEG bytes per frame; a frame equal to the one before it (a goal image held for an episode) reuses its
    bytes instead of being encoded again."""
    out: list[bytes] = []
    for i, frame in enumerate(frames):
        same = i > 0 and np.array_equal(frame, frames[i - 1])
        out.append(out[-1] if same else _encode_jpeg(frame, quality, subsampling))
    return out


def _encode_jpeg(image: np.ndarray, quality: int, subsampling: str = "444") -> bytes:
    channels = image.shape[-1]
    if simplejpeg is not None:
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(image), quality=quality, colorspace="RGB" if channels == 3 else "GRAY",
            colorsubsampling=subsampling if channels == 3 else "Gray",
        )
    bgr = image[..., ::-1] if channels == 3 else image[..., 0]
    factor = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{subsampling}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality,
                                                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
    if not ok:
        raise ValueError(f"OpenCV failed to JPEG-encode an image of shape {image.shape}")
    return buf.tobytes()


def _decode_jpeg_into(data, out: np.ndarray) -> None:
    """Decode one JPEG (bytes-like) into ``out`` (H, W, C) uint8 in place."""
    channels = out.shape[-1]
    if simplejpeg is not None:
        simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY", buffer=out)
        return
    flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    out[...] = (img[..., ::-1] if channels == 3 else img[..., None]).reshape(out.shape)


def _jpeg_shape(data) -> tuple[int, int, int]:
    return _jpeg_header(data)[:3]


def _jpeg_header(data) -> tuple[int, int, int, str | None]:
    """(height, width, channels, chroma subsampling: '444'/'422'/'420'/..., 'Gray', or None where unknown)."""
    if simplejpeg is not None:
        height, width, colorspace, subsampling = simplejpeg.decode_jpeg_header(bytes(data))
        return height, width, 1 if colorspace.lower() == "gray" else 3, subsampling
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2], None


# ------------------------------------------------------------------------------------------ Arrow <-> numpy


def _single(chunked) -> pa.Array:
    if isinstance(chunked, pa.ChunkedArray):
        return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    return chunked


def _binary_views(arr: pa.Array):
    """(offsets, data) numpy views of a binary/large_binary array (no copy)."""
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    buffers = arr.buffers()
    offsets = np.frombuffer(
        buffers[1], off_type, count=len(arr) + 1, offset=arr.offset * np.dtype(off_type).itemsize
    )
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


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
    offsets, data = _binary_views(arr)
    positions = np.arange(len(arr)) if positions is None else positions
    out = np.empty((len(positions), *shape), np.uint8)
    for i, p in enumerate(positions.tolist()):
        _decode_jpeg_into(data[offsets[p] : offsets[p + 1]], out[i])
    return out


def _to_numpy(arr: pa.Array, shape: Sequence[int] | None = None) -> np.ndarray:
    """A non-image column -> numpy (n, *shape); zero-copy for fixed-size numeric columns without nulls."""
    if pa.types.is_fixed_size_list(arr.type):
        values = arr.flatten().to_numpy(zero_copy_only=False)
        row_shape = tuple(shape) if shape is not None else (arr.type.list_size,)
        return values.reshape(len(arr), *row_shape)
    if pa.types.is_primitive(arr.type) or pa.types.is_boolean(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    return np.array(arr.to_pylist(), dtype=object)


# --------------------------------------------------------------------------------------------------- open


def _is_not_found(err: Exception) -> bool:
    return "not found" in str(err).lower() or "no such file" in str(err).lower()


_LANCE_PID: int | None = None  # the process that first used Lance through this module
_SESSION: LanceSession | None = None


def keep_large_allocations(threshold_bytes: int = 1 << 30) -> bool:
    """Let glibc serve and keep allocations up to ``threshold_bytes`` from its heap, for the whole process.

    By default glibc maps every allocation above 32 MiB fresh from the kernel and unmaps it on free, so each
    large batch (a Lance ``take`` of 224 px raw frames: 38.5 MB for 64 windows x 4 frames) faults in ~9,400 new
    pages. Raising the mmap (and trim) threshold makes freed buffers reusable: on this project's 2-core machine
    a 224 px raw-frame batch went from 33.5 to 14.7 ms (Lance take 24.1 -> 8.9 ms). The price: freed memory stays
    with the process (its peak), as in most training jobs. Call it once, early; ``data_throughput.py`` does.
    Returns False (and changes nothing) where the C library is not glibc.
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


def _session() -> LanceSession:
    """This process's Lance session; refuses to run in a fork of a process that already used Lance.

    Lance is not fork-safe: its tokio runtime does not survive fork(), and a forked child (e.g. a DataLoader
    worker started with the default "fork" method) that reads with Lance crashes or hangs now and then. Start
    workers with "forkserver" or "spawn" instead (``WindowDataset.loader`` does).
    """
    global _LANCE_PID, _SESSION
    pid = os.getpid()
    if _LANCE_PID is None:
        _LANCE_PID, _SESSION = pid, LanceSession()
    elif _LANCE_PID != pid:
        raise RuntimeError(
            f"process {pid} was forked from process {_LANCE_PID}, which had already used Lance; Lance is not "
            "fork-safe (its runtime does not survive fork and reads crash or hang at random). Create the "
            "DataLoader with multiprocessing_context='forkserver' (or 'spawn'), e.g. WindowDataset.loader(...)"
        )
    return _SESSION


def resolve_storage_options(path, storage_options=None) -> dict | None:
    """``storage_options`` as given, or for an ``s3://`` path without them the ones built from the AWS environment
    variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...; see :func:`swm_core.formats.s3_storage_options`)."""
    if storage_options:
        return dict(storage_options)
    if str(path).startswith("s3://"):
        from swm_core.formats import s3_storage_options

        return s3_storage_options()
    return None


def _connection_error(path, storage_options, err: Exception) -> ConnectionError | None:
    text = str(err).lower()
    if str(path).startswith("s3://") and (
        "error sending request" in text
        or "connection refused" in text
        or "dns error" in text
        or "tcp connect" in text
    ):
        endpoint = (storage_options or {}).get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        return ConnectionError(f"cannot reach the S3 endpoint {endpoint} for {path}: {err}")
    return None


@contextlib.contextmanager
def _reading(path, storage_options=None, what: str = "data"):
    """Re-raise a failed read of a Lance dataset as ConnectionError naming the endpoint (unreachable S3) or as
    ValueError naming the dataset and what was read (truncated data files, a corrupt manifest, a bad JPEG)."""
    try:
        yield
    except ConnectionError:
        raise
    except (OSError, ValueError) as err:  # lance and pyarrow (ArrowInvalid is a ValueError), simplejpeg
        conn = _connection_error(path, storage_options, err)
        if conn is not None:
            raise conn from None
        raise ValueError(f"cannot read {what} of the Lance dataset {os.fspath(path)!r} (truncated or corrupted "
                         f"files?): {type(err).__name__}: {err}") from err


# Smallest ranged read from an object store (s3://...). At Lance's default there (64 KiB) every window of a random
# batch costs GETs of its own; 1 MiB blocks serve several windows per GET, and fetching the extra bytes from a
# server costs less than the requests saved. S3 / local speed of random 64-window JPEG batches from a localbucket
# server (README, "Data loading"): 0.30x -> 0.86x at 64 px, 0.62x -> 0.92x at 224 px. Local files keep Lance's own
# default.
OBJECT_STORE_BLOCK_SIZE = 1 << 20


def read_block_size(path, block_size: int | None = None) -> int | None:
    """The block size to open ``path`` with: ``block_size`` when given, else OBJECT_STORE_BLOCK_SIZE for an object
    store URI (``scheme://``, not ``file://``) and None (Lance's default) for a local path."""
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size must be a positive number of bytes (or None for the default), "
                             f"got {block_size!r}")
        return int(block_size)
    path = os.fspath(path)
    return OBJECT_STORE_BLOCK_SIZE if "://" in path and not path.startswith("file://") else None


def _lance_open(path: str, version=None, storage_options=None,
                block_size: int | None = None) -> lance.LanceDataset:
    """lance.dataset with clear errors: FileNotFoundError for a missing path, ValueError for a bad version,
    ConnectionError naming the endpoint of an unreachable S3 server. ``block_size``: see read_block_size."""
    try:
        ds = lance.dataset(path, storage_options=storage_options, session=_session(),
                           block_size=read_block_size(path, block_size))
    except (ValueError, OSError) as err:
        if _is_not_found(err):
            raise FileNotFoundError(f"no Lance dataset at {path!r}") from None
        conn = _connection_error(path, storage_options, err)
        if conn is not None:
            raise conn from None
        raise ValueError(f"{path!r} is not a readable Lance dataset (truncated or corrupted?): {err}") from err
    if version is None:
        return ds
    if not isinstance(version, (int, np.integer, str)) or isinstance(version, bool):
        raise ValueError(f"version must be an int or a tag name, got {version!r}")
    try:
        return ds.checkout_version(int(version) if isinstance(version, (int, np.integer)) else version)
    except (ValueError, OSError, KeyError) as err:
        versions = [v["version"] for v in ds.versions()]
        tags = sorted(ds.tags.list())
        raise ValueError(
            f"dataset {path!r} has no version {version!r} (versions {versions}, tags {tags}): {err}"
        ) from None


def _try_open(path: str, storage_options=None) -> lance.LanceDataset | None:
    try:
        return _lance_open(path, storage_options=storage_options)
    except FileNotFoundError:
        return None


def _infer_metadata(ds: lance.LanceDataset) -> dict:
    """The ``swm`` metadata of a dataset, or one inferred from its schema (stable-worldmodel layout)."""
    raw = (ds.schema.metadata or {}).get(METADATA_KEY)
    if raw is not None:
        meta = json.loads(raw)
        meta["shapes"] = {k: tuple(v) for k, v in meta.get("shapes", {}).items()}
        meta.setdefault("layout", "swm")
        return meta
    binary = [f.name for f in ds.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    first = ds.take([0], columns=binary) if binary and ds.count_rows() > 0 else None
    image_columns, shapes = [], {}
    for field in ds.schema:
        t = field.type
        if field.name in binary:
            image_columns.append(field.name)
            if first is not None:
                shapes[field.name] = _jpeg_shape(first.column(field.name)[0].as_py())
        elif pa.types.is_fixed_size_list(t):
            shapes[field.name] = (t.list_size,)
        else:
            shapes[field.name] = ()
    return {
        "layout": "stable-worldmodel",
        "env_id": None,
        "image_size": shapes[image_columns[0]][0] if image_columns and image_columns[0] in shapes else None,
        "encoding": "jpeg",
        "control_hz": None,
        "fov_keys": [],
        "image_columns": image_columns,
        "shapes": shapes,
        "format_version": None,
    }


def _episode_index(ds: lance.LanceDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode_ids, offsets, lengths) from a scan of the ``episode_idx`` column only."""
    if "episode_idx" not in ds.schema.names:
        raise ValueError(f"dataset {ds.uri!r} has no 'episode_idx' column (columns: {ds.schema.names})")
    col = _single(ds.to_table(columns=["episode_idx"]).column(0))
    ep = _to_numpy(col).reshape(len(col), -1)[:, 0].astype(np.int64)
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


class LanceWriter:
    """Buffers episodes and appends them to a Lance dataset, one atomic version per ``commit()``.

    ``add_episode({"pixels": (T,H,W,3) uint8, "action": (T,A), "variation.agent.color": (T,3), ...})``
    returns the new episode's id. ``with LanceWriter(...) as w:`` commits on a clean exit and commits nothing
    of the buffered episodes when the block raises. On an existing dataset, episode ids continue from its
    largest one and every episode must match its schema. An image column may also be given as a 1-D object
    array of JPEG bytes (encoding='jpeg'): stored unchanged. Frames are encoded at ``jpeg_quality`` with
    ``jpeg_subsampling`` chroma ('444' default, '422', '420': smaller and faster to decode). ``keep_float64``
    keeps every float column at its own width, float64 and float16 too (conversions; default: float32, float64 only
    for ``FLOAT64_COLUMNS``). Past ``max_buffer_bytes`` buffered, episodes are written as
    data files that no version references until ``commit()`` adds them all in one atomic commit.
    """

    def __init__(
        self,
        path,
        *,
        env_id: str | None = None,
        image_size: int | None = None,
        encoding: str = "jpeg",
        jpeg_quality: int = 95,
        jpeg_subsampling: str = "444",
        control_hz: float | None = None,
        fov_keys: Iterable[str] = (),
        storage_options: Mapping[str, str] | None = None,
        keep_float64: bool = False,
        max_buffer_bytes: int = 512 << 20,
    ):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality!r}")
        if isinstance(fov_keys, str):
            raise ValueError(f"fov_keys must be a list of dot keys, got the string {fov_keys!r}")
        self.path = os.fspath(path)
        self.storage_options = resolve_storage_options(self.path, storage_options)
        self.encoding = encoding
        self.jpeg_quality = int(jpeg_quality)
        self.jpeg_subsampling = check_jpeg_subsampling(jpeg_subsampling)
        self._given_subsampling: set[str] = set()  # read from the headers of JPEG frames given as bytes
        self._encoded_colour = False  # whether any colour frame was encoded here (with jpeg_subsampling)
        self.env_id = env_id
        self.image_size = image_size
        self.control_hz = control_hz
        self.fov_keys = [str(k) for k in fov_keys]
        self.keep_float64 = bool(keep_float64)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self._batches: list[pa.RecordBatch] = []
        self._staged: list = []  # fragments written but not committed (a commit references them all at once)
        self._schema: pa.Schema | None = None  # fixed by the existing dataset or the first episode
        self._shapes: dict[str, tuple] = {}
        self.version: int | None = None
        self._next_episode = 0

        existing = _try_open(self.path, self.storage_options)
        self._exists = existing is not None
        if existing is not None:
            self.version = existing.version
            meta = _infer_metadata(existing)
            if meta.get("env_id") and env_id and meta["env_id"] != env_id:
                raise ValueError(f"{self.path!r} holds env_id {meta['env_id']!r}, not {env_id!r}")
            if meta.get("image_columns") and meta.get("encoding") != encoding:
                raise ValueError(
                    f"{self.path!r} stores images with encoding {meta.get('encoding')!r}; "
                    f"this writer was asked for {encoding!r}"
                )
            self.env_id = self.env_id or meta.get("env_id")
            self._schema = existing.schema
            self._shapes = dict(meta.get("shapes", {}))
            if existing.count_rows() > 0:
                col = _single(existing.to_table(columns=["episode_idx"]).column(0))
                self._next_episode = int(_to_numpy(col).max()) + 1
        self._committed_next = self._next_episode  # where discard() rewinds the ids to

    # -- conversion -------------------------------------------------------------------------------------

    def _column(self, name: str, x: np.ndarray) -> tuple[pa.Array, tuple, bool]:
        """(arrow array, per-row shape, is_image) for one episode column of leading length T."""
        if x.dtype == object and x.ndim == 1:  # frames already JPEG-encoded (bytes): stored as they are
            if self.encoding != "jpeg":
                raise ValueError(
                    f"column {name!r}: JPEG-encoded frames need encoding='jpeg', not {self.encoding!r}"
                )
            try:
                headers = [_jpeg_header(b) for b in x]
            except Exception as err:
                raise ValueError(f"column {name!r}: object values that are not JPEG images: {err}") from None
            shapes = {h[:3] for h in headers}
            if len(shapes) != 1:
                raise ValueError(f"column {name!r}: JPEG frames of different shapes {sorted(shapes)}")
            self._given_subsampling.update(h[3] for h in headers if h[3] not in (None, "Gray"))
            return pa.array([bytes(b) for b in x], type=pa.binary()), shapes.pop(), True
        if x.dtype == np.uint8 and x.ndim == 4:
            if self.encoding == "jpeg":
                if x.shape[-1] not in (1, 3):
                    raise ValueError(
                        f"column {name!r}: JPEG needs 1 or 3 channels, got shape {x.shape[1:]}; "
                        "use encoding='raw'"
                    )
                arr = pa.array(_encode_frames(x, self.jpeg_quality, self.jpeg_subsampling), type=pa.binary())
                self._encoded_colour |= x.shape[-1] == 3
            else:
                size = int(np.prod(x.shape[1:]))
                buf = pa.py_buffer(np.ascontiguousarray(x).reshape(-1))
                arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(size), len(x), [None, buf])
            return arr, tuple(x.shape[1:]), True
        kind = x.dtype.kind
        if kind == "f" and not (self.keep_float64 and x.dtype in (np.float16, np.float64)):
            keep64 = x.dtype == np.float64 and name in FLOAT64_COLUMNS
            x = x.astype(np.float64 if keep64 else np.float32, copy=False)
        elif kind not in "biuf":
            raise ValueError(
                f"column {name!r}: unsupported dtype {x.dtype} (allowed: bool, int, uint, float)"
            )
        row_shape = tuple(x.shape[1:])
        if x.ndim == 1:
            return pa.array(x), row_shape, False
        dim = int(np.prod(row_shape))
        if dim == 0:
            raise ValueError(f"column {name!r}: empty per-row shape {row_shape}")
        values = pa.array(np.ascontiguousarray(x).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(values, dim), row_shape, False

    def _stored_subsampling(self) -> str:
        """What the colour JPEG frames of the first episode (which fixes the metadata) hold: jpeg_subsampling for
        frames encoded here, the headers' value for frames given as bytes (a stable-worldmodel file's 4:2:0, say),
        'mixed' when they differ."""
        kinds = self._given_subsampling | ({self.jpeg_subsampling} if self._encoded_colour else set())
        if len(kinds) > 1:
            return "mixed"
        return kinds.pop() if kinds else self.jpeg_subsampling

    def _metadata(self, image_columns: list[str]) -> dict:
        image_size = self.image_size
        if image_size is None and image_columns:
            first = "pixels" if "pixels" in image_columns else image_columns[0]
            h, w = self._shapes[first][:2]
            image_size = h if h == w else [h, w]
        return {
            "env_id": self.env_id,
            "image_size": image_size,
            "encoding": self.encoding,
            "jpeg_quality": self.jpeg_quality,
            "jpeg_subsampling": self._stored_subsampling(),
            "control_hz": self.control_hz,
            "fov_keys": self.fov_keys,
            "image_columns": image_columns,
            "shapes": {k: list(v) for k, v in self._shapes.items()},
            "format_version": FORMAT_VERSION,
        }

    # -- API --------------------------------------------------------------------------------------------

    def add_episode(self, episode: Mapping[str, np.ndarray], episode_id: int | None = None) -> int:
        """Buffer one episode (arrays sharing a leading T); returns its episode_idx: ``episode_id`` when given (a
        conversion keeping its source's ids; it must be above every id written so far, so ids stay unique and
        increasing), else one more than the last."""
        if not isinstance(episode, Mapping) or not episode:
            raise ValueError("episode must be a non-empty dict of arrays with a shared leading length T")
        arrays = {str(k): np.asarray(v) for k, v in episode.items()}
        if "episode_idx" in arrays:
            raise ValueError("episode_idx is assigned by the writer; remove it from the episode")
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
        T = next(iter(lengths.values()))
        if T is None or T == 0 or any(n != T for n in lengths.values()):
            raise ValueError(f"all episode arrays need the same leading length T >= 1, got {lengths}")
        for key in self.fov_keys:
            if f"variation.{key}" not in arrays:
                raise ValueError(f"fov key {key!r} has no column 'variation.{key}' in the episode")

        step = arrays.pop("step_idx", None)
        if step is not None and step.dtype.kind not in "iu":
            raise ValueError(f"step_idx must hold integers, got dtype {step.dtype}")
        ep_id = self._next_episode if episode_id is None else int(episode_id)
        if ep_id < self._next_episode:
            raise ValueError(f"episode_id {episode_id!r} must be >= {self._next_episode}: ids up to "
                             f"{self._next_episode - 1} are taken (ids stay unique and increasing)")
        cols: dict[str, pa.Array] = {
            "episode_idx": pa.array(np.full(T, ep_id, np.int32)),
            "step_idx": pa.array((np.arange(T) if step is None else step.reshape(T)).astype(np.int32)),
        }
        shapes = {"episode_idx": (), "step_idx": ()}
        image_columns = []
        for key, x in arrays.items():
            name = column_name(key)
            if name in cols:
                raise ValueError(f"two episode keys map to the column {name!r}")
            cols[name], shapes[name], is_image = self._column(name, x)
            if is_image:
                image_columns.append(name)

        fields = [pa.field(n, a.type) for n, a in cols.items()]
        if self._schema is None:
            self._shapes = shapes
            meta = self._metadata(image_columns)
            self._schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta).encode()})
        else:
            self._check_schema(pa.schema(fields), shapes)
        batch = pa.RecordBatch.from_arrays([cols[n] for n in self._schema.names], schema=self._schema)
        self._batches.append(batch)
        self._next_episode = ep_id + 1
        if sum(b.nbytes for b in self._batches) > self.max_buffer_bytes:
            self._stage()
        return ep_id

    def _stage(self) -> None:
        """Write the buffered episodes as data files that no version references yet (bounded memory)."""
        if self._batches:
            table = pa.Table.from_batches(self._batches, schema=self._schema)
            self._staged += lance.fragment.write_fragments(
                table,
                self.path,
                schema=self._schema,
                storage_options=self.storage_options,
                session=_session(),
            )
            self._staged_episodes = getattr(self, "_staged_episodes", 0) + len(self._batches)
            self._batches = []

    def _check_schema(self, schema: pa.Schema, shapes: dict[str, tuple]) -> None:
        have, want = set(schema.names), set(self._schema.names)
        if want - have:
            raise ValueError(
                f"schema mismatch with {self.path!r}: episode lacks column(s) {sorted(want - have)} "
                f"(dataset columns: {self._schema.names})"
            )
        if have - want:
            raise ValueError(
                f"schema mismatch with {self.path!r}: episode has extra column(s) {sorted(have - want)} "
                f"(dataset columns: {self._schema.names})"
            )
        for field in self._schema:
            new = schema.field(field.name).type
            if new != field.type:
                raise ValueError(
                    f"schema mismatch with {self.path!r}: column {field.name!r} is {new} in this episode "
                    f"but {field.type} in the dataset"
                )
            old_shape = self._shapes.get(field.name)
            if old_shape is not None and tuple(old_shape) != tuple(shapes[field.name]):
                raise ValueError(
                    f"schema mismatch with {self.path!r}: column {field.name!r} has per-row shape "
                    f"{tuple(shapes[field.name])} in this episode but {tuple(old_shape)} in the dataset"
                )

    @property
    def next_episode_id(self) -> int:
        """The smallest episode id ``add_episode`` still accepts (the id it gives when none is passed)."""
        return self._next_episode

    @property
    def num_buffered(self) -> int:
        """Episodes added since the last commit."""
        return len(self._batches) + getattr(self, "_staged_episodes", 0)

    def commit(self) -> int | None:
        """Append every buffered episode as one Lance version; returns the dataset version (None if empty)."""
        if self._staged:  # part of the episodes are already written as data files: commit them all at once
            self._stage()
            op = (
                lance.LanceOperation.Append(self._staged)
                if self._exists
                else lance.LanceOperation.Overwrite(self._schema, self._staged)
            )
            ds = lance.LanceDataset.commit(
                self.path,
                op,
                read_version=self.version if self._exists else None,
                storage_options=self.storage_options,
            )
            self._exists, self._staged, self._staged_episodes = True, [], 0
            self.version, self._committed_next = ds.version, self._next_episode
            return self.version
        if not self._batches:
            return self.version
        table = pa.Table.from_batches(self._batches, schema=self._schema)
        ds = lance.write_dataset(
            table,
            self.path,
            schema=self._schema,
            mode="append" if self._exists else "create",
            storage_options=self.storage_options,
            session=_session(),
        )
        self._exists = True
        self._batches = []
        self.version, self._committed_next = ds.version, self._next_episode
        return self.version

    def discard(self) -> None:
        """Drop the buffered (uncommitted) episodes (staged data files stay unreferenced: no version sees them)."""
        self._next_episode = self._committed_next
        self._batches, self._staged, self._staged_episodes = [], [], 0

    def __enter__(self) -> LanceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def check_tag(tag, path=None, storage_options=None) -> str:
    """Raise ValueError unless ``tag`` is a valid Lance tag name (ASCII letters, digits, '.', '-', '_'; not empty,
    no leading or trailing '.', no '..', no '.lock' ending) that the dataset at ``path`` (if it exists) does not
    hold yet. Called before a write that ends in a tag, so a bad tag fails before anything is committed."""
    allowed = "ASCII letters, digits, '.', '-' and '_', not starting or ending with '.', no '..', no '.lock' ending"
    if not isinstance(tag, str) or not tag or not all(c.isascii() and (c.isalnum() or c in "._-") for c in tag) \
            or tag[0] == "." or tag[-1] == "." or ".." in tag or tag.endswith(".lock"):
        raise ValueError(f"tag {tag!r} is not a valid tag name; allowed: {allowed}")
    if path is not None:
        ds = _try_open(os.fspath(path), storage_options)
        if ds is not None and tag in ds.tags.list():
            raise ValueError(f"dataset {os.fspath(path)!r} already has a tag {tag!r} (on version "
                             f"{ds.tags.list()[tag]['version']}); pick another name")
    return tag


def tag_version(path, tag: str, version: int | None = None, storage_options=None) -> int:
    """Tag a dataset version (default: the latest) so ``open_dataset(path, version=tag)`` finds it."""
    check_tag(tag, path, storage_options)
    ds = _lance_open(os.fspath(path), storage_options=storage_options)
    version = ds.version if version is None else int(version)
    ds.tags.create(tag, version)
    return version


# ------------------------------------------------------------------------------------------------- reader


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
            self.metadata: dict = _infer_metadata(ds)
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
        arr = _single(arr)
        if column in self.image_columns:
            return _decode_images(arr, self.shape_of(column), positions)
        out = _to_numpy(arr, self.shape_of(column) or None)
        return out if positions is None else out[positions]

    def read_rows(self, rows, columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Rows (any order, repeats allowed) -> {column: array (n, ...)}; one sorted ``take``.

        Arrays may be read-only views of Arrow memory when rows are sorted and unique.
        """
        columns = self.check_columns(columns)
        _session()  # refuses to read in a fork of the process that opened this dataset
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
                out[c] = self.decode(c, table.column(c), None if same else inverse)
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
    return TrajectoryDataset(_lance_open(path, version, storage_options, block_size), path, storage_options)


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
    ``take`` of the image rows it uses; columns past the budget are read by the take too. From an object store
    (``s3://``) each ranged read is at least ``block_size`` bytes (default 1 MiB: one GET serves several windows).
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
        and yields them in the same order as ``threads=0``; ``pin_memory=True`` pins them there."""
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
                                     session=_session(), block_size=self.block_size)
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
                    memory[c] = _to_numpy(_single(table.column(c)), self.shapes[c] or None)
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
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"window {bad} is out of range for {n} windows")
        B, T, span = len(idx), self.num_steps, self.num_steps * self.frameskip
        starts = self.window_starts[idx]
        frame_rows = (starts[:, None] + np.arange(T) * self.frameskip).reshape(-1)  # (B * T,)
        memory = self._memory_columns()
        out: dict[str, torch.Tensor] = {}

        # in-memory columns: gathers, no I/O
        for c, values in memory.items():
            if c == ACTION_COLUMN:  # the frameskip actions after each frame, concatenated
                rows = starts[:, None] + np.arange(span)
                acts = values[rows].astype(np.float32, copy=False)
                out[c] = torch.from_numpy(acts.reshape(B, T, -1))
            else:
                out[c] = torch.from_numpy(values[frame_rows].reshape(B, T, *values.shape[1:]))

        # the rest: one sorted take at the frame rows (plus one at the action rows if the action is not held)
        stored = [c for c in self.columns if c not in memory]
        frame_cols = [c for c in stored if c != ACTION_COLUMN]
        if ACTION_COLUMN in stored and self.frameskip == 1:
            frame_cols.append(ACTION_COLUMN)  # action rows == frame rows
        if frame_cols:
            _session()  # refuses to read in a fork of the process that opened the dataset
            frame_set, first, inverse = np.unique(frame_rows, return_index=True, return_inverse=True)
            with _reading(self.path, self.storage_options, f"rows of columns {frame_cols}"):
                table = self._dataset().take(frame_set, columns=frame_cols)
            for c in frame_cols:
                arr = _single(table.column(c))
                if c in self.image_columns:
                    # numpy, not torch.empty: above 32 MiB (glibc's largest mmap threshold) every allocation gets
                    # fresh pages from the kernel, and numpy asks for transparent huge pages (madvise) where torch
                    # does not. Touching a 38.5 MB buffer took 16 ms from torch.empty and 2 ms from np.empty; a
                    # 224 px 4:2:0 JPEG batch (64 windows x 4 frames) went from 41 to 22 ms (take 3 + decode 18).
                    frames = torch.from_numpy(np.empty((B * T, *self.shapes[c]), np.uint8))
                    with _reading(self.path, self.storage_options, f"frames of column {c!r}"):
                        _gather_images(arr, self.shapes[c], first, inverse, frames.numpy())
                    out[c] = frames.view(B, T, *self.shapes[c])
                else:
                    values = _to_numpy(arr, self.shapes[c] or None)[inverse]
                    if c == ACTION_COLUMN:
                        values = values.astype(np.float32, copy=False)
                    out[c] = torch.from_numpy(values.reshape(B, T, *values.shape[1:]))
        if ACTION_COLUMN in stored and self.frameskip > 1:
            rows = starts[:, None] + np.arange(span)
            action_set = np.unique(rows)
            with _reading(self.path, self.storage_options, f"rows of column {ACTION_COLUMN!r}"):
                arr = _single(self._dataset().take(action_set, columns=[ACTION_COLUMN]).column(0))
            values = _to_numpy(arr, self.shapes[ACTION_COLUMN] or None)
            acts = values[np.searchsorted(action_set, rows)].astype(np.float32, copy=False)
            out[ACTION_COLUMN] = torch.from_numpy(acts.reshape(B, T, -1))
        return {c: out[c] for c in self.columns}


class ThreadedBatches:
    """Batches of ``dataset.batch(indices)`` for each index list of ``indices``, built on ``threads`` threads (at
    most 2 * threads ahead) and yielded in order; each pass over it is one epoch."""

    def __init__(self, dataset: WindowDataset, indices: Iterable[Sequence[int]], threads: int, pin: bool = False):
        self.dataset, self.indices, self.threads, self.pin = dataset, indices, threads, pin

    def __len__(self) -> int:
        return len(self.indices)

    def _build(self, idx) -> dict[str, torch.Tensor]:
        batch = self.dataset.batch(idx)
        if self.pin and torch.cuda.is_available():
            batch = {c: t.pin_memory() for c, t in batch.items()}
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.dataset._memory_columns()  # one scan before the threads start, not one per thread
        with ThreadPoolExecutor(self.threads, thread_name_prefix="swm-batches") as pool:
            pending: deque = deque()
            try:
                for idx in self.indices:
                    pending.append(pool.submit(self._build, idx))
                    if len(pending) >= 2 * self.threads:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:  # an early break: drop what was queued, wait for what is running
                for f in pending:
                    f.cancel()



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
    offsets, data = _binary_views(arr)
    for u, p in enumerate(first.tolist()):
        _decode_jpeg_into(data[offsets[u] : offsets[u + 1]], out[p])
    if len(first) < len(inverse):  # rows used by more than one window
        source = first[inverse]
        repeat = np.flatnonzero(source != np.arange(len(inverse)))
        out[repeat] = out[source[repeat]]
