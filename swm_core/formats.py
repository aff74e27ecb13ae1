"""Converters between the Lance trajectory layout and HDF5, MP4 folders and LeRobot folders; S3 access.

Every format is read as a *source* (metadata, episode lengths, and episodes as dicts of numpy arrays, images as
uint8 (T, H, W, C) or as JPEG bytes) and written by a *writer*, so any source converts to any destination:

- ``lance``: a Lance trajectory dataset (:mod:`swm_core.data`; local or ``s3://``), also the stable-worldmodel
  layout (JPEG ``binary`` images, ``fixed_size_list<float32>`` columns, no metadata). Written through
  :class:`swm_core.data.LanceWriter`: one conversion is one atomic Lance commit (nothing or everything).
- ``hdf5``: one ``.h5`` file, one dataset per column of shape (N, ...) plus ``ep_len`` int32 and ``ep_offset``
  int64 (the stable-worldmodel HDF5 layout). Raw images are uint8 (N, H, W, C) datasets chunked ``chunk_rows``
  frames per chunk with optional ``lzf``/``gzip`` compression; JPEG images are variable-length uint8 datasets
  (``encoding='jpeg'`` attribute) holding the JPEG bytes unchanged. The file attribute ``swm`` holds the JSON
  metadata. Images stored channel-first (N, C, H, W) by older writers are read too.
- ``mp4``: a folder with ``videos/<column>/episode_<k>.mp4`` (one H.264 video per episode and image column,
  keyframe every ``gop`` frames), ``table.parquet`` (every other column, Arrow types unchanged) and
  ``swm_mp4.json`` (metadata, written last: a folder without it is incomplete). Lossless videos (libx264rgb,
  qp 0) keep raw frames bit-exact; lossy ones (libx264, ``crf``) stay within codec error.
- ``lerobot`` (read only): a LeRobot v2/v3 folder (``meta/info.json``, ``data/**.parquet``, ``videos/**.mp4``).
  One camera key becomes ``pixels``, ``observation.state`` becomes ``proprio``; other numeric features keep
  their names.

HDF5 and MP4 destinations are written to a temporary sibling and renamed into place, so a failed conversion
leaves no destination. ``s3://`` paths take ``storage_options`` (see :func:`s3_storage_options`); HDF5 and MP4
files on S3 are read through :class:`S3File` (ranged GETs, block cache, retries).
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import io
import json
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from swm_core import data as swm_data
from swm_core.data import LanceWriter, open_dataset, tag_version

FORMATS = ("lance", "hdf5", "mp4", "lerobot")
WRITABLE = ("lance", "hdf5", "mp4")
HDF5_COMPRESSIONS = (None, "lzf", "gzip")
MP4_MANIFEST = "swm_mp4.json"
MP4_TABLE = "table.parquet"
INDEX_DATASETS = ("ep_len", "ep_offset")

# -------------------------------------------------------------------------------------------------------- S3


def is_s3(path) -> bool:
    return str(path).startswith("s3://")


def s3_storage_options(
    endpoint: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
    *,
    max_retries: int = 6,
    retry_timeout: float = 30.0,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Lance ``storage_options`` for S3 from flags, falling back to the standard AWS environment variables
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION).

    An ``http://`` endpoint adds ``allow_http='true'``; ``max_retries``/``retry_timeout`` (seconds) bound how
    long a failing request is retried (exponential backoff from 0.1 s: the defaults ride out ~6 s of outage,
    such as a server restart) before the error surfaces."""
    env = os.environ if environ is None else environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    access_key_id = access_key_id or env.get("AWS_ACCESS_KEY_ID")
    secret_access_key = secret_access_key or env.get("AWS_SECRET_ACCESS_KEY")
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if int(max_retries) < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
    if float(retry_timeout) <= 0:
        raise ValueError(f"retry_timeout must be > 0 seconds, got {retry_timeout!r}")
    options: dict[str, str] = {}
    if endpoint:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"S3 endpoint must start with http:// or https://, got {endpoint!r}")
        options["endpoint"] = endpoint.rstrip("/")
        if endpoint.startswith("http://"):
            options["allow_http"] = "true"
    if access_key_id:
        options["aws_access_key_id"] = access_key_id
    if secret_access_key:
        options["aws_secret_access_key"] = secret_access_key
    if region or endpoint:
        options["region"] = region or "us-east-1"  # custom endpoints ignore it, but the signer needs one
    options["client_max_retries"] = str(int(max_retries))
    options["client_retry_timeout"] = str(max(1, int(round(float(retry_timeout)))))
    return options


def storage_options_for(path, storage_options: Mapping[str, str] | None = None, **flags) -> dict | None:
    """``storage_options`` for ``path``: None for a local path; for ``s3://`` the given options, else
    :func:`s3_storage_options` built from ``flags`` and the environment."""
    if not is_s3(path):
        return None
    if storage_options:
        return dict(storage_options)
    return s3_storage_options(**flags)


def _split_s3(url: str) -> tuple[str, str]:
    rest = str(url)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"S3 path {url!r} has no bucket (expected s3://bucket/key)")
    return bucket, key.strip("/")


def _endpoint(storage_options) -> str:
    return (storage_options or {}).get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"


def s3_client(storage_options: Mapping[str, str] | None = None):
    """A boto3 S3 client for the same endpoint/credentials as Lance ``storage_options`` (path-style URLs)."""
    import boto3
    from botocore.config import Config

    so = dict(storage_options or s3_storage_options())
    retries = int(so.get("client_max_retries", 6))
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": retries + 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.client(
        "s3",
        endpoint_url=so.get("endpoint"),
        aws_access_key_id=so.get("aws_access_key_id"),
        aws_secret_access_key=so.get("aws_secret_access_key"),
        region_name=so.get("region", "us-east-1"),
        config=config,
    )


_CONNECTION_MARKERS = ("error sending request", "connection refused", "could not connect", "connect error",
                       "dns error", "tcp connect", "endpoint url")


@contextlib.contextmanager
def s3_errors(path, storage_options=None):
    """Re-raise an unreachable-endpoint failure for an ``s3://`` path as ConnectionError naming the endpoint."""
    try:
        yield
    except ConnectionError:
        raise
    except Exception as err:  # lance raises ValueError/OSError, botocore its own exceptions
        text = str(err).lower()
        name = type(err).__name__
        if is_s3(path) and (any(m in text for m in _CONNECTION_MARKERS) or "EndpointConnection" in name):
            raise ConnectionError(
                f"cannot reach the S3 endpoint {_endpoint(storage_options)} for {path} "
                f"(is the server running? endpoint/credentials come from flags or AWS_ENDPOINT_URL etc.): {err}"
            ) from err
        raise


class S3File(io.RawIOBase):
    """A read-only, seekable file object over one S3 object (for h5py, PyAV, pyarrow).

    Small reads are served from ``block_size`` blocks fetched with ranged GETs and kept in a small LRU cache
    (``cache_blocks``: file metadata); a read of a block or more is one GET of exactly that range.
    ``prefetch(ranges)`` fetches byte ranges (merged when close) concurrently and serves reads inside them until
    the next prefetch. A failed GET is retried (``retries`` times, with backoff) before a ConnectionError naming
    the endpoint. ``whole=True`` fetches the object in one GET (small files: videos, tables)."""

    def __init__(self, url: str, storage_options=None, block_size: int = 64 * 1024, cache_blocks: int = 64,
                 retries: int = 5, whole: bool = False, client=None):
        super().__init__()
        self.url = str(url)
        self.storage_options = storage_options
        self.bucket, self.key = _split_s3(self.url)
        self.client = client or s3_client(storage_options)
        self.retries = int(retries)
        self._lock = threading.Lock()
        head = self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self.key))
        self.size = int(head["ContentLength"])
        self.block_size = max(self.size, 1) if whole else int(block_size)
        self.cache_blocks = int(cache_blocks)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._prefetched: list[tuple[int, bytes]] = []  # sorted (start, data)
        self._pos = 0
        self.requests = 1
        if whole:
            self._blocks[0] = self._get(0, self.size) if self.size else b""

    def _call(self, fn):
        import botocore.exceptions as bexc

        for attempt in range(self.retries + 1):
            try:
                return fn()
            except bexc.ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", ""))
                if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                    raise FileNotFoundError(
                        f"no S3 object at {self.url} (endpoint {_endpoint(self.storage_options)})") from None
                if attempt == self.retries or not code.startswith("5"):
                    raise
            except (bexc.EndpointConnectionError, bexc.ConnectionClosedError, bexc.ReadTimeoutError,
                    bexc.ConnectTimeoutError, bexc.ResponseStreamingError) as err:
                if attempt == self.retries:
                    raise ConnectionError(
                        f"cannot reach the S3 endpoint {_endpoint(self.storage_options)} for {self.url} "
                        f"after {self.retries} retries: {err}"
                    ) from err
            time.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _get(self, start: int, stop: int) -> bytes:
        def fetch():
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{stop - 1}")
            return resp["Body"].read()

        self.requests += 1
        return self._call(fetch)

    def _block(self, b: int) -> bytes:
        with self._lock:
            data = self._blocks.get(b)
            if data is not None:
                self._blocks.move_to_end(b)
                return data
        start = b * self.block_size
        data = self._get(start, min(self.size, start + self.block_size))
        with self._lock:
            self._blocks[b] = data
            while len(self._blocks) > self.cache_blocks:
                self._blocks.popitem(last=False)
        return data

    def prefetch(self, ranges: Sequence[tuple[int, int]], threads: int = 16, merge_gap: int = 256 * 1024) -> None:
        """Fetch the byte ranges ``(offset, size)`` concurrently (ranges closer than ``merge_gap`` bytes become one
        GET); reads inside them are served from memory until the next prefetch."""
        spans: list[list[int]] = []
        for offset, size in sorted((int(o), int(n)) for o, n in ranges if n > 0):
            stop = min(self.size, offset + size)
            if spans and offset <= spans[-1][1] + merge_gap:
                spans[-1][1] = max(spans[-1][1], stop)
            elif offset < stop:
                spans.append([offset, stop])
        if len(spans) > 1:
            with ThreadPoolExecutor(min(threads, len(spans))) as pool:
                datas = list(pool.map(lambda sp: self._get(*sp), spans))
        else:
            datas = [self._get(*sp) for sp in spans]
        self._prefetched = [(sp[0], d) for sp, d in zip(spans, datas)]

    def _from_prefetched(self, start: int, n: int):
        i = bisect.bisect_right(self._prefetched, start, key=lambda x: x[0]) - 1
        if i >= 0:
            s0, data = self._prefetched[i]
            if start + n <= s0 + len(data):
                return data[start - s0 : start - s0 + n]
        return None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + int(offset))
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        hit = self._from_prefetched(self._pos, n) if self._prefetched else None
        if hit is None and n >= self.block_size:
            hit = self._get(self._pos, self._pos + n)
        if hit is not None:
            view[:n] = hit
            self._pos += n
            return n
        done = 0
        while done < n:
            b, off = divmod(self._pos + done, self.block_size)
            block = self._block(b)
            take = min(n - done, len(block) - off)
            view[done : done + take] = block[off : off + take]
            done += take
        self._pos += n
        return n


def _open_read(path, storage_options=None, whole: bool = False):
    """A binary file object for a local path or an ``s3://`` URL."""
    if is_s3(path):
        return S3File(path, storage_options, whole=whole)
    return open(path, "rb")


def _s3_exists(url: str, storage_options=None) -> bool:
    import botocore.exceptions as bexc

    bucket, key = _split_s3(url)
    client = s3_client(storage_options)
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except bexc.ClientError:
        pass
    resp = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
    return resp.get("KeyCount", 0) > 0


def _upload(local: Path, url: str, storage_options=None) -> None:
    """Upload a file (one PUT: atomic) or a folder to ``url``. A folder's ``MP4_MANIFEST`` goes last; replacing a
    folder first deletes its old manifest and, before the new manifest, the old files the new folder lacks, so an
    upload that fails midway leaves no manifest, never a mix of old and new files that reads as complete."""
    from boto3.s3.transfer import TransferConfig

    bucket, key = _split_s3(url)
    client = s3_client(storage_options)
    config = TransferConfig(multipart_threshold=1 << 40)  # single PUTs: an object is whole or absent
    if local.is_file():
        client.upload_file(str(local), bucket, key, Config=config)
        return
    prefix = key.rstrip("/") + "/"
    old = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
           for o in page.get("Contents", [])}
    if prefix + MP4_MANIFEST in old:  # replacing a folder: a half-done upload must not read as a complete dataset
        client.delete_object(Bucket=bucket, Key=prefix + MP4_MANIFEST)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == MP4_MANIFEST)
    if not files:
        return
    new = [prefix + p.relative_to(local).as_posix() for p in files]
    for p, k in zip(files[:-1], new[:-1]):
        client.upload_file(str(p), bucket, k, Config=config)
    for k in sorted(old - set(new)):  # the replaced folder's files the new one does not have
        client.delete_object(Bucket=bucket, Key=k)
    client.upload_file(str(files[-1]), bucket, new[-1], Config=config)


# ------------------------------------------------------------------------------------------------ images


def _decode_jpegs(blobs, shape) -> np.ndarray:
    out = np.empty((len(blobs), *shape), np.uint8)
    for i, b in enumerate(blobs):
        swm_data._decode_jpeg_into(np.frombuffer(b, np.uint8) if isinstance(b, bytes) else b, out[i])
    return out


def _encode_jpegs(frames: np.ndarray, quality: int, subsampling: str = "444") -> np.ndarray:
    out = np.empty(len(frames), object)
    out[:] = [swm_data._encode_jpeg(f, quality, subsampling) for f in frames]
    return out


def _jpeg_shape(blob) -> tuple[int, int, int]:
    return tuple(int(s) for s in swm_data._jpeg_shape(bytes(blob)))


def _as_frames(x: np.ndarray, shape) -> np.ndarray:
    """Image payload (uint8 (T, H, W, C) or an object array of JPEG bytes) -> uint8 (T, H, W, C)."""
    return _decode_jpegs(x, shape) if x.dtype == object else x


def _is_jpeg(x: np.ndarray) -> bool:
    return x.dtype == object


# ---------------------------------------------------------------------------------------------- sources


@dataclass
class Source:
    """A readable trajectory dataset in any format.

    ``columns``: column names in order; ``image_columns``/``shapes`` (per-row shapes, images (H, W, C));
    ``lengths``: rows per episode; ``meta``: env_id, control_hz, fov_keys, encoding, jpeg_quality, ...
    ``episodes(jpeg_bytes)`` yields {column: array (T, ...)} in episode order; with ``jpeg_bytes`` an image
    column stored as JPEG comes as an object array of the JPEG bytes (no decode, no re-encode)."""

    path: str
    format: str
    columns: list[str]
    image_columns: list[str]
    shapes: dict[str, tuple]
    lengths: np.ndarray
    meta: dict
    _episodes: object = field(repr=False, default=None)

    @property
    def num_rows(self) -> int:
        return int(np.sum(self.lengths))

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    def episodes(self, jpeg_bytes: bool = False) -> Iterator[dict[str, np.ndarray]]:
        return self._episodes(jpeg_bytes)


def _check_requested(columns, available: Sequence[str], path) -> list[str] | None:
    if columns is None:
        return None
    columns = [columns] if isinstance(columns, str) else list(columns)
    for c in columns:
        if c not in available:
            raise ValueError(f"column {c!r} is not in {path} (columns: {list(available)})")
    return columns


def _arrow_to_numpy(arr: pa.Array, shape: tuple, name: str, path) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if arr.null_count:
        raise ValueError(f"column {name!r} of {path} has {arr.null_count} null values; converters need full columns")
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        values = arr.flatten()
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type)):
            raise ValueError(f"column {name!r} of {path} holds lists of {values.type}; only numeric lists convert")
        flat = values.to_numpy(zero_copy_only=False)
        if len(arr) and flat.size % len(arr):
            raise ValueError(f"column {name!r} of {path} has rows of different lengths")
        row = tuple(shape) if shape and int(np.prod(shape)) * len(arr) == flat.size else (flat.size // max(len(arr), 1),)
        return flat.reshape(len(arr), *row)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return arr.to_numpy(zero_copy_only=False)
    raise ValueError(f"column {name!r} of {path} has type {t}; converters handle numeric and image columns")


def _lance_source(path, storage_options=None, version=None, columns=None) -> Source:
    import lance

    path = str(path)
    with s3_errors(path, storage_options):
        td = open_dataset(path, storage_options, version)
        ds = lance.dataset(path, version=td.version, storage_options=td.storage_options)
    columns = _check_requested(columns, td.columns, path)
    cols = [c for c in td.columns if columns is None or c in columns or c in swm_data.INDEX_COLUMNS]
    image_columns = [c for c in cols if c in td.image_columns]
    shapes = {c: td.shape_of(c) for c in cols}
    meta = dict(td.metadata)
    for c in image_columns:
        t = td.schema.field(c).type
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)):
            raise ValueError(f"image column {c!r} of {path} has type {t} (expected binary or fixed_size_binary)")
    jpeg_cols = {c for c in image_columns if not pa.types.is_fixed_size_binary(td.schema.field(c).type)}

    def episodes(jpeg_bytes: bool):
        for i in range(td.num_episodes):
            o, n = int(td.episode_offsets[i]), int(td.episode_lengths[i])
            with s3_errors(path, storage_options):
                table = ds.take(np.arange(o, o + n), columns=cols)
            ep = {}
            for c in cols:
                arr = table.column(c)
                if c in jpeg_cols and jpeg_bytes:
                    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
                    blobs = np.empty(n, object)
                    blobs[:] = arr.to_pylist()
                    ep[c] = blobs
                elif c in image_columns:
                    try:
                        ep[c] = td.decode(c, arr)
                    except Exception as err:
                        raise ValueError(f"{path}: cannot decode image column {c!r} of episode "
                                         f"{int(td.episode_ids[i])}: {err}") from err
                else:
                    ep[c] = _arrow_to_numpy(arr, shapes[c], c, path)
            yield ep

    return Source(path, "lance", cols, image_columns, shapes, np.asarray(td.episode_lengths, np.int64), meta,
                  episodes)


def _hdf5_image_kind(dset) -> str | None:
    """'jpeg' (vlen bytes), 'hwc', 'chw' or None for a non-image dataset."""
    import h5py

    if h5py.check_vlen_dtype(dset.dtype) == np.dtype(np.uint8) and dset.ndim == 1:
        return "jpeg"
    if dset.dtype == np.uint8 and dset.ndim == 4:
        if dset.attrs.get("layout") == "chw":
            return "chw"
        if dset.shape[-1] not in (1, 3, 4) and dset.shape[1] in (1, 3, 4):
            return "chw"
        return "hwc"
    return None


def _open_h5(path, storage_options=None):
    import h5py

    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401  (Blosc/Zstd filters used by some stable-worldmodel files)
    try:
        if is_s3(path):
            with s3_errors(path, storage_options):
                return h5py.File(S3File(path, storage_options), "r")
        return h5py.File(path, "r", rdcc_nbytes=64 << 20)
    except FileNotFoundError:
        raise FileNotFoundError(f"no HDF5 file at {path}") from None
    except ConnectionError:  # an unreachable S3 endpoint (S3File names it), not a corrupt file
        raise
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file (truncated or corrupted?): {err}") from None


def _hdf5_layout(f, path: str, columns) -> tuple:
    """Validate an open HDF5 trajectory file: (columns, ep_len, ep_offset, image kinds, shapes, metadata)."""
    import h5py

    for k in INDEX_DATASETS:
        if k not in f:
            raise ValueError(f"{path} has no {k!r} dataset: an HDF5 trajectory file needs ep_len and ep_offset "
                             f"(datasets: {list(f.keys())})")
    try:
        lengths = np.asarray(f["ep_len"][:], np.int64).reshape(-1)
        offsets = np.asarray(f["ep_offset"][:], np.int64).reshape(-1)
        raw_meta = f.attrs.get("swm")
    except Exception as err:
        raise ValueError(f"{path}: cannot read the episode index (truncated or corrupted?): {err}") from err
    meta = json.loads(raw_meta) if raw_meta is not None else {"layout": "stable-worldmodel-hdf5"}
    names = [k for k in f.keys() if k not in INDEX_DATASETS]
    order = meta.get("columns", [])
    names.sort(key=lambda k: order.index(k) if k in order else len(order))
    for k in names:
        if not isinstance(f[k], h5py.Dataset):
            raise ValueError(f"{path}: {k!r} is an HDF5 group; a trajectory file holds one dataset per column")
    if len(lengths) != len(offsets):
        raise ValueError(f"{path}: ep_len has {len(lengths)} entries but ep_offset has {len(offsets)}")
    columns = _check_requested(columns, names, path)
    cols = [k for k in names if columns is None or k in columns or k in swm_data.INDEX_COLUMNS]
    if not cols:
        raise ValueError(f"{path} holds no column datasets besides ep_len/ep_offset")
    n_rows = {k: f[k].shape[0] if f[k].ndim else 0 for k in cols}
    N = max(n_rows.values())
    for k, n in n_rows.items():
        if n != N:
            raise ValueError(f"{path}: column {k!r} has {n} rows but other columns have {N} (mismatched lengths)")
    bad = np.flatnonzero((lengths < 1) | (offsets < 0) | (offsets + lengths > N))
    if len(bad):
        e = int(bad[0])
        raise ValueError(f"{path}: episode {e} (ep_offset {offsets[e]}, ep_len {lengths[e]}) does not fit in the "
                         f"{N} rows of the columns (mismatched episode lengths)")
    by_start = np.argsort(offsets, kind="stable")
    if (offsets[by_start][1:] < (offsets + lengths)[by_start][:-1]).any():
        raise ValueError(f"{path}: episodes overlap (ep_offset/ep_len inconsistent)")
    if int(lengths.sum()) != N:
        raise ValueError(f"{path}: ep_len sums to {int(lengths.sum())} rows but the columns have {N} "
                         "(mismatched episode lengths)")
    kinds = {k: _hdf5_image_kind(f[k]) for k in cols}
    shapes = {}
    for k in cols:
        d = f[k]
        if kinds[k] == "jpeg":
            shape = d.attrs.get("shape")
            if shape is None:
                try:
                    shape = _jpeg_shape(d[0].tobytes())
                except Exception as err:
                    raise ValueError(f"{path}: column {k!r} holds bytes that are not JPEG images: {err}") from err
            shapes[k] = tuple(int(s) for s in shape)
        elif kinds[k] == "chw":
            shapes[k] = (d.shape[2], d.shape[3], d.shape[1])
        else:
            shapes[k] = tuple(d.shape[1:])
    return cols, lengths, offsets, kinds, shapes, meta


def _hdf5_source(path, storage_options=None, columns=None) -> Source:
    path = str(path)
    if not is_s3(path) and not os.path.exists(path):
        raise FileNotFoundError(f"no HDF5 file at {path}")
    f = _open_h5(path, storage_options)
    try:
        cols, lengths, offsets, kinds, shapes, meta = _hdf5_layout(f, path, columns)
    finally:
        f.close()
    image_columns = [k for k in cols if kinds[k]]
    stored = {k: ("jpeg" if kinds[k] == "jpeg" else "raw") for k in image_columns}
    meta.setdefault("encoding", "jpeg" if "jpeg" in stored.values() else "raw")

    def episodes(jpeg_bytes: bool):
        fh = _open_h5(path, storage_options)
        try:
            for e in range(len(lengths)):
                o, n = int(offsets[e]), int(lengths[e])
                ep = {}
                for k in cols:
                    try:
                        x = fh[k][o : o + n]
                    except Exception as err:
                        raise ValueError(f"{path}: cannot read column {k!r} rows {o}..{o + n} "
                                         f"(truncated or corrupted file?): {err}") from err
                    if kinds[k] == "jpeg":
                        blobs = np.empty(n, object)
                        blobs[:] = [b.tobytes() for b in x]
                        try:
                            ep[k] = blobs if jpeg_bytes else _decode_jpegs(blobs, shapes[k])
                        except Exception as err:
                            raise ValueError(f"{path}: column {k!r} episode {e}: corrupted JPEG data: {err}") from err
                    elif kinds[k] == "chw":
                        ep[k] = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
                    else:
                        ep[k] = x
                yield ep
        finally:
            fh.close()

    src = Source(path, "hdf5", cols, image_columns, shapes, lengths, meta, episodes)
    src.meta["stored_encoding"] = stored
    return src


def _mp4_source(path, storage_options=None, columns=None) -> Source:
    path = str(path).rstrip("/")
    manifest_path = f"{path}/{MP4_MANIFEST}"
    if not is_s3(path) and not os.path.isfile(manifest_path):
        if os.path.isdir(path):
            raise ValueError(f"{path} has no {MP4_MANIFEST}: not an MP4 trajectory folder, or an incomplete one")
        raise FileNotFoundError(f"no MP4 trajectory folder at {path}")
    try:
        with _open_read(manifest_path, storage_options, whole=True) as fh:
            manifest = json.loads(fh.read())
    except FileNotFoundError:
        raise ValueError(f"{path} has no {MP4_MANIFEST}: not an MP4 trajectory folder, or an incomplete one") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{manifest_path} is corrupted: {err}") from None
    needed = ("lengths", "image_columns", "columns", "shapes", "meta")
    missing = [k for k in needed if k not in manifest] if isinstance(manifest, dict) else None
    if missing is None or missing:
        raise ValueError(f"{manifest_path} is corrupted: it lacks {missing or 'everything'} (an MP4 trajectory "
                         "folder's manifest holds lengths, image_columns, columns, shapes and meta)")
    lengths = np.asarray(manifest["lengths"], np.int64)
    image_columns = list(manifest["image_columns"])
    try:
        with _open_read(f"{path}/{MP4_TABLE}", storage_options, whole=True) as fh:
            table = pq.read_table(fh)
    except Exception as err:
        raise ValueError(f"{path}/{MP4_TABLE}: cannot read the table of non-image columns: {err}") from err
    if table.num_rows != int(lengths.sum()):
        raise ValueError(f"{path}/{MP4_TABLE} has {table.num_rows} rows but the episodes have {int(lengths.sum())} "
                         "(mismatched episode lengths)")
    all_cols = list(manifest["columns"])
    absent = [c for c in all_cols if c not in image_columns and c not in table.column_names]
    if absent:
        raise ValueError(f"{path}/{MP4_TABLE} lacks column(s) {absent} that {MP4_MANIFEST} lists")
    columns = _check_requested(columns, all_cols, path)
    cols = [c for c in all_cols if columns is None or c in columns or c in swm_data.INDEX_COLUMNS]
    shapes = {c: tuple(s) for c, s in manifest["shapes"].items() if c in cols}
    meta = dict(manifest["meta"])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def episodes(jpeg_bytes: bool):
        for e in range(len(lengths)):
            o, n = int(offsets[e]), int(lengths[e])
            ep = {}
            rows = table.slice(o, n)
            for c in cols:
                if c in image_columns:
                    video = f"{path}/videos/{c}/episode_{e:06d}.mp4"
                    frames = read_video(video, storage_options)
                    if len(frames) != n:
                        raise ValueError(f"{video} has {len(frames)} frames but episode {e} has {n} rows "
                                         "(mismatched episode lengths)")
                    ep[c] = _video_to_image(frames, shapes[c])
                else:
                    ep[c] = _arrow_to_numpy(rows.column(c), shapes.get(c, ()), c, path)
            yield ep

    return Source(path, "mp4", cols, [c for c in image_columns if c in cols], shapes, lengths, meta, episodes)


# ------------------------------------------------------------------------------------------------- video


def _video_to_image(frames: np.ndarray, shape) -> np.ndarray:
    return frames[..., :1].copy() if shape[-1] == 1 else frames


def _rgb_converter():
    """frame -> uint8 (H, W, 3) RGB with one shared swscale context (``frame.to_ndarray(format='rgb24')`` builds
    a new one per frame: ~10x slower on small frames)."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24").to_ndarray()


def read_video(path, storage_options=None) -> np.ndarray:
    """Every frame of a video file (local or ``s3://``) -> uint8 (T, H, W, 3)."""
    import av

    try:
        fh = _open_read(path, storage_options, whole=True) if is_s3(path) else str(path)
        rgb = _rgb_converter()
        with av.open(fh) as container:
            frames = [rgb(f) for f in container.decode(video=0)]
    except FileNotFoundError:
        raise FileNotFoundError(f"no video file at {path}") from None
    except av.error.FFmpegError as err:
        raise ValueError(f"{path} is not a readable video (truncated or corrupted?): {err}") from None
    if not frames:
        raise ValueError(f"{path} holds no video frames (truncated or corrupted?)")
    return np.stack(frames)


class VideoReader:
    """Random access to the frames of one constant-frame-rate video: seek to the keyframe at or before a wanted
    frame, then decode forward (frames after the same keyframe share the decode). The keyframe index comes from
    one pass over the packets (no decoding)."""

    def __init__(self, file, fps: float | None = None, storage_options=None):
        import av

        self.name = str(file)
        source = _open_read(file, storage_options, whole=True) if is_s3(file) else str(file)
        try:
            self.container = av.open(source)
            self.stream = self.container.streams.video[0]
            self.fps = Fraction(fps).limit_denominator(1001) if fps else Fraction(self.stream.average_rate)
            self.time_base = Fraction(self.stream.time_base)
            keys = [self._index(p.pts) for p in self.container.demux(self.stream) if p.pts is not None and p.is_keyframe]
            self.container.seek(0, stream=self.stream)
        except av.error.FFmpegError as err:
            raise ValueError(f"{file} is not a readable video (truncated or corrupted?): {err}") from None
        self.stream.codec_context.thread_count = 1  # frame threads delay the first frame after every seek (3x)
        self._rgb = _rgb_converter()
        self.keyframes = np.array(sorted(keys) or [0], np.int64)
        self._next: int | None = None  # index of the frame the decoder yields next (None: must seek)
        self._frames = None

    def _index(self, pts: int) -> int:
        return int(round(pts * self.time_base * self.fps))

    def _pts(self, index: int) -> int:
        return int(round(Fraction(index) / self.fps / self.time_base))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) -> uint8 (n, H, W, 3)."""
        import av

        indices = np.asarray(indices, np.int64).reshape(-1)
        got: dict[int, np.ndarray] = {}
        try:
            for k in np.unique(indices).tolist():
                key = int(self.keyframes[max(0, np.searchsorted(self.keyframes, k, side="right") - 1)])
                if self._next is None or k < self._next or key > self._next:
                    self.container.seek(self._pts(key), stream=self.stream, backward=True, any_frame=False)
                    self._frames = self.container.decode(self.stream)
                for frame in self._frames:
                    i = self._index(frame.pts)
                    self._next = i + 1
                    if i == k:
                        got[k] = self._rgb(frame)
                        break
                    if i > k:
                        raise ValueError(f"{self.name}: frame {k} not found (the stream jumps to frame {i})")
                else:
                    self._next = None
                    raise ValueError(f"{self.name}: frame {k} is past the end of the video")
        except av.error.FFmpegError as err:
            self._next = None
            raise ValueError(f"{self.name}: cannot decode (truncated or corrupted?): {err}") from None
        return np.stack([got[int(i)] for i in indices])

    def close(self) -> None:
        self.container.close()


def _write_video(path: Path, frames_iter, fps: float, *, lossless: bool, crf: int, gop: int, pix_fmt: str,
                 preset: str) -> None:
    import av

    fps_q = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = None
        for frames in frames_iter:
            for frame in frames:
                if frame.shape[-1] == 1:
                    frame = np.repeat(frame, 3, axis=-1)
                elif frame.shape[-1] != 3:
                    raise ValueError(f"{path}: MP4 needs 1 or 3 channels, got frames of shape {frame.shape}")
                if stream is None:
                    h, w = frame.shape[:2]
                    if lossless:
                        stream = container.add_stream("libx264rgb", rate=fps_q)
                        stream.pix_fmt = "rgb24"
                        stream.options = {"qp": "0", "g": str(gop), "keyint_min": str(gop), "bf": "0",
                                          "preset": preset}
                    else:
                        if pix_fmt == "yuv420p" and (h % 2 or w % 2):
                            pix_fmt = "yuv444p"  # 4:2:0 needs even sizes
                        stream = container.add_stream("libx264", rate=fps_q)
                        stream.pix_fmt = pix_fmt
                        stream.options = {"crf": str(crf), "g": str(gop), "keyint_min": str(gop), "bf": "0",
                                          "preset": preset}
                    stream.width, stream.height = w, h
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)


# -------------------------------------------------------------------------------------------- LeRobot


def _lerobot_episode_meta(root: Path) -> dict[int, dict]:
    """meta/episodes: v3 parquet files or v2 episodes.jsonl -> {episode_index: row dict}."""
    rows: dict[int, dict] = {}
    files = sorted(glob.glob(str(root / "meta" / "episodes" / "**" / "*.parquet"), recursive=True))
    for f in files:
        for r in pq.read_table(f).to_pylist():
            rows[int(r["episode_index"])] = r
    jsonl = root / "meta" / "episodes.jsonl"
    if not rows and jsonl.exists():
        for line in jsonl.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[int(r["episode_index"])] = r
    return rows


def _lerobot_source(path, camera_key: str | None = None, state_key: str = "observation.state",
                    action_key: str = "action", columns=None) -> Source:
    root = Path(path)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot folder: {info_path} is missing")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{info_path} is corrupted: {err}") from None
    features: dict = info.get("features", {})
    fps = float(info.get("fps") or 10)
    cameras = [k for k, v in features.items() if v.get("dtype") in ("video", "image")]
    if camera_key is None:
        if not cameras:
            raise ValueError(f"{root}: no video or image feature in meta/info.json (features: {list(features)})")
        camera_key = cameras[0]
    elif camera_key not in cameras:
        raise ValueError(f"{root}: camera key {camera_key!r} is not a video/image feature; available: {cameras}")
    if state_key not in features:
        raise ValueError(f"{root}: state key {state_key!r} is not a feature (features: {list(features)})")
    if action_key not in features:
        raise ValueError(f"{root}: action key {action_key!r} is not a feature (features: {list(features)})")

    files = sorted(glob.glob(str(root / "data" / "**" / "*.parquet"), recursive=True))
    if not files:
        raise ValueError(f"{root}: no parquet files under data/")
    numeric = [k for k, v in features.items() if v.get("dtype") not in ("video", "image", "string")]
    wanted = [k for k in numeric if k not in ("episode_index",)]
    read_cols = list(dict.fromkeys(["episode_index", "frame_index", "timestamp", *wanted]))
    if features[camera_key].get("dtype") == "image":
        read_cols.append(camera_key)
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except Exception as err:
            raise ValueError(f"{f}: not a readable parquet file (truncated or corrupted?): {err}") from None
        missing = [c for c in read_cols if c not in t.column_names]
        if missing:
            raise ValueError(f"{f} lacks column(s) {missing} declared in meta/info.json")
        tables.append(t.select(read_cols))
    table = pa.concat_tables(tables)
    ep_col = table.column("episode_index").to_numpy()
    fr_col = table.column("frame_index").to_numpy()
    order = np.lexsort((fr_col, ep_col))
    table = table.take(pa.array(order))
    ep_col, fr_col = ep_col[order], fr_col[order]
    ids, starts = np.unique(ep_col, return_index=True)
    lengths = np.diff(np.append(starts, len(ep_col))).astype(np.int64)
    for e, s, n in zip(ids, starts, lengths):
        if not np.array_equal(fr_col[s : s + n], np.arange(n)):
            raise ValueError(f"{root}: episode {int(e)} has frame_index values that are not 0..{n - 1}")
    ep_meta = _lerobot_episode_meta(root)
    for e, n in zip(ids, lengths):
        m = ep_meta.get(int(e))
        if m is not None and "length" in m and int(m["length"]) != int(n):
            raise ValueError(f"{root}: episode {int(e)} has {n} rows in data/ but length {m['length']} in meta "
                             "(mismatched episode lengths)")

    rename = {state_key: "proprio", camera_key: "pixels", "frame_index": "step_idx"}
    out_cols = ["step_idx", "pixels"] + [rename.get(k, k) for k in wanted if k not in ("frame_index",)]
    out_cols = list(dict.fromkeys(out_cols))
    columns = _check_requested(columns, out_cols, root)
    cols = [c for c in out_cols if columns is None or c in columns or c in ("step_idx",)]
    shape = features[camera_key].get("shape") or []
    names = features[camera_key].get("names") or []
    if len(shape) == 3 and names and list(names)[0] in ("channels", "channel"):
        shape = [shape[1], shape[2], shape[0]]
    shapes = {"pixels": tuple(int(s) for s in shape)} if len(shape) == 3 else {}

    def video_file(e: int) -> tuple[Path, float]:
        m = ep_meta.get(e, {})
        chunks = int(info.get("chunks_size") or 1000)
        template = info.get("video_path")
        fmt = {"video_key": camera_key, "episode_index": e, "episode_chunk": e // chunks,
               "chunk_index": int(m.get(f"videos/{camera_key}/chunk_index", e // chunks)),
               "file_index": int(m.get(f"videos/{camera_key}/file_index", 0))}
        start = float(m.get(f"videos/{camera_key}/from_timestamp", 0.0))
        if template and "{episode_index" not in template and f"videos/{camera_key}/from_timestamp" not in m:
            # v3: several episodes share a file; without the episode's offset we would read another's frames
            raise ValueError(f"{root}: episode {e} has no 'videos/{camera_key}/from_timestamp' in meta/episodes/, "
                             f"which a LeRobot v3 folder (video files shared by episodes: {template!r}) needs to "
                             "find the episode's frames")
        if template:
            return root / template.format(**fmt), start
        hits = glob.glob(str(root / "videos" / "**" / camera_key / f"episode_{e:06d}.mp4"), recursive=True)
        if not hits:
            raise ValueError(f"{root}: no video for camera {camera_key!r}, episode {e} under videos/")
        return Path(hits[0]), start

    if features[camera_key].get("dtype") == "video":
        first_file = video_file(int(ids[0]))[0]
        if not first_file.exists():
            raise FileNotFoundError(f"{root}: video {first_file} for camera {camera_key!r} is missing")

    meta = {"env_id": info.get("robot_type") and f"lerobot/{info.get('robot_type')}", "control_hz": fps,
            "fov_keys": [], "encoding": "jpeg", "layout": "lerobot", "lerobot_version": info.get("codebase_version"),
            "camera_key": camera_key}

    def episodes(jpeg_bytes: bool):
        readers: dict[Path, VideoReader] = {}
        try:
            for e, s, n in zip(ids.tolist(), starts.tolist(), lengths.tolist()):
                rows = table.slice(s, n)
                ep = {}
                if "pixels" in cols:
                    if features[camera_key].get("dtype") == "video":
                        file, start = video_file(e)
                        if file not in readers:
                            if not file.exists():
                                raise FileNotFoundError(f"{root}: video {file} for camera {camera_key!r} is missing")
                            readers.clear()
                            readers[file] = VideoReader(file, fps=fps)
                        ts = rows.column("timestamp").to_numpy().astype(np.float64)
                        end = ep_meta.get(e, {}).get(f"videos/{camera_key}/to_timestamp")
                        if end is not None and len(ts) and start + ts.max() > float(end) + 0.5 / fps:
                            raise ValueError(f"{root}: episode {e} (camera {camera_key!r}) has frames up to "
                                             f"{start + ts.max():.3f}s but its video segment ends at {float(end):.3f}s "
                                             "(mismatched episode lengths)")
                        idx = np.round((start + ts) * fps).astype(np.int64)
                        try:
                            frames = readers[file].read(idx)
                        except ValueError as err:
                            raise ValueError(f"{root}: episode {e} (camera {camera_key!r}): {err} "
                                             "(mismatched episode lengths?)") from err
                    else:
                        from PIL import Image

                        cells = rows.column(camera_key).to_pylist()
                        frames = np.stack([np.asarray(Image.open(io.BytesIO(c["bytes"])).convert("RGB"))
                                           for c in cells])
                    ep["pixels"] = frames
                for k in wanted:
                    name = rename.get(k, k)
                    if name in cols:
                        ep[name] = _arrow_to_numpy(rows.column(k), (), k, root)
                yield {c: ep[c] for c in cols}
        finally:
            for r in readers.values():
                r.close()

    src = Source(str(root), "lerobot", cols, ["pixels"] if "pixels" in cols else [], shapes, lengths, meta,
                 episodes)
    src.meta["episode_ids"] = ids.tolist()
    return src


# ------------------------------------------------------------------------------------------------ writers


def _check_episode(ep: dict, first: dict, path, e: int) -> None:
    if set(ep) != set(first):
        raise ValueError(f"{path}: episode {e} has columns {sorted(ep)} but episode 0 has {sorted(first)}")
    for k, x in ep.items():
        f0 = first[k]
        if x.dtype != f0.dtype or (x.dtype != object and x.shape[1:] != f0.shape[1:]):
            raise ValueError(f"{path}: column {k!r} is {x.dtype}{x.shape[1:]} in episode {e} but "
                             f"{f0.dtype}{f0.shape[1:]} in episode 0")


def _temp_sibling(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def _atomic_output(dst: str, overwrite: bool, storage_options=None):
    """Yield a temporary local path; on success move it to ``dst`` (rename, or upload for ``s3://``)."""
    if is_s3(dst):
        with s3_errors(dst, storage_options):
            exists = _s3_exists(dst, storage_options)
        if exists and not overwrite:
            raise FileExistsError(f"{dst} already exists (pass overwrite=True / --overwrite to replace it)")
        import tempfile

        tmpdir = Path(tempfile.mkdtemp(prefix="swm-convert-"))
        tmp = tmpdir / Path(_split_s3(dst)[1]).name
        try:
            yield tmp
            with s3_errors(dst, storage_options):
                _upload(tmp, dst, storage_options)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return
    target = Path(dst)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True / --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        if target.exists():
            old = _temp_sibling(target)
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)


def _jpeg_settings(source: Source, jpeg_quality, jpeg_subsampling) -> tuple[int, str]:
    """(quality, subsampling) for frames encoded to JPEG here: as given, else as the source recorded, else 95 and
    '444'. Frames that are JPEG already are copied unchanged, so a JPEG source keeps its own."""
    quality = int(jpeg_quality or source.meta.get("jpeg_quality") or 95)
    return quality, swm_data.check_jpeg_subsampling(jpeg_subsampling or source.meta.get("jpeg_subsampling") or "444")


def _check_jpegs(blobs, shape, path, column: str, episode: int) -> None:
    """Raise ValueError naming the file, column, episode and frame of the first JPEG whose header does not read or
    does not match the column's (H, W, C): JPEG bytes copied without re-encoding are checked this far."""
    for t, blob in enumerate(blobs):
        try:
            got = swm_data._jpeg_shape(bytes(blob))
        except Exception as err:
            raise ValueError(f"{path}: image column {column!r}, episode {episode}, frame {t} is not a readable JPEG "
                             f"(corrupted?): {err}") from None
        if shape and tuple(got) != tuple(shape):
            raise ValueError(f"{path}: image column {column!r}, episode {episode}, frame {t} is a {got} JPEG, but "
                             f"the column holds {tuple(shape)} frames")


def _copied_subsampling(ep: dict, source: Source, subsampling: str) -> str:
    """The subsampling an output's JPEG frames will hold: that of the first image frame when the source's frames
    are JPEG already (they are copied, not re-encoded), else ``subsampling``."""
    for c in source.image_columns:
        if c in ep and _is_jpeg(ep[c]) and len(ep[c]):
            found = swm_data._jpeg_header(bytes(ep[c][0]))[3]
            return found if found not in (None, "Gray") else subsampling
    return subsampling


def _meta_for(source: Source, encoding: str, jpeg_quality: int, jpeg_subsampling: str = "444") -> dict:
    meta = {k: v for k, v in source.meta.items() if k not in ("shapes", "stored_encoding", "episode_ids", "columns")}
    meta.update({"encoding": encoding, "jpeg_quality": jpeg_quality, "jpeg_subsampling": jpeg_subsampling,
                 "image_columns": list(source.image_columns),
                 "shapes": {k: list(v) for k, v in source.shapes.items()}})
    return meta


def _resolve_encoding(source: Source, encoding: str | None) -> str:
    if encoding in (None, "auto"):
        encoding = source.meta.get("encoding") or "jpeg"
        if encoding not in swm_data.ENCODINGS:
            encoding = "jpeg"
    if encoding not in swm_data.ENCODINGS:
        raise ValueError(f"encoding must be one of {swm_data.ENCODINGS} or 'auto', got {encoding!r}")
    return encoding


def _write_vlen(dset, row: int, blobs) -> None:
    """Write byte strings to rows row.. of a vlen uint8 dataset (low-level: h5py's ``dset[a:b] = x`` turns
    equal-length blobs into a 2-D array and fails)."""
    import h5py

    x = np.empty(len(blobs), object)
    for i, b in enumerate(blobs):
        x[i] = np.frombuffer(b, np.uint8)
    fspace = dset.id.get_space()
    fspace.select_hyperslab((row,), (len(x),))
    dset.id.write(h5py.h5s.create_simple((len(x),)), fspace, x)


def _create_hdf5_datasets(f, ep: dict, source: Source, N: int, encoding: str, quality: int, subsampling: str,
                          chunk_rows: int, opts: dict) -> None:
    import h5py

    for k, x in ep.items():
        if k in source.image_columns:
            shape = tuple(source.shapes[k])
            if encoding == "jpeg":
                d = f.create_dataset(k, (N,), dtype=h5py.vlen_dtype(np.uint8), chunks=(min(N, max(chunk_rows, 64)),))
                d.attrs["shape"] = list(shape)
                d.attrs["jpeg_quality"] = quality
                d.attrs["jpeg_subsampling"] = subsampling
            else:
                chunks = (min(N, chunk_rows), *shape) if chunk_rows else None  # 0: contiguous
                d = f.create_dataset(k, (N, *shape), np.uint8, chunks=chunks, **opts)
            d.attrs["encoding"] = encoding
        else:
            f.create_dataset(k, (N, *x.shape[1:]), x.dtype, chunks=(min(N, 4096), *x.shape[1:]), **opts)


def write_hdf5(source: Source, dst, *, images: str = "auto", chunk_rows: int = 1, compression: str | None = "lzf",
               compression_level: int | None = None, jpeg_quality: int | None = None,
               jpeg_subsampling: str | None = None, overwrite: bool = False, storage_options=None) -> str:
    """Write a source as one HDF5 file (see the module docstring); returns ``dst``."""
    import h5py

    if compression in ("none", ""):
        compression = None
    if compression not in HDF5_COMPRESSIONS:
        raise ValueError(f"compression must be one of {HDF5_COMPRESSIONS}, got {compression!r}")
    if compression_level is not None and compression != "gzip":
        raise ValueError("compression_level applies to gzip only")
    if compression_level is not None and not 0 <= int(compression_level) <= 9:
        raise ValueError(f"compression_level must be in [0, 9], got {compression_level!r}")
    if int(chunk_rows) < 0:
        raise ValueError(f"chunk_rows must be >= 1 (or 0: contiguous, uncompressed), got {chunk_rows!r}")
    if int(chunk_rows) == 0 and compression is not None:
        raise ValueError("contiguous image datasets (chunk_rows=0) cannot be compressed; pass compression=None")
    encoding = _resolve_encoding(source, images)
    quality, subsampling = _jpeg_settings(source, jpeg_quality, jpeg_subsampling)
    opts = {"compression": compression}
    if compression == "gzip" and compression_level is not None:
        opts["compression_opts"] = int(compression_level)
    N = source.num_rows
    dst = str(dst)
    with _atomic_output(dst, overwrite, storage_options) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            row = 0
            for e, ep in enumerate(source.episodes(jpeg_bytes=encoding == "jpeg")):
                n = int(source.lengths[e])
                if "episode_idx" not in ep:
                    ep = {"episode_idx": np.full(n, e, np.int32), **ep}
                if e == 0:
                    subsampling = _copied_subsampling(ep, source, subsampling) if encoding == "jpeg" else subsampling
                    _create_hdf5_datasets(f, ep, source, N, encoding, quality, subsampling, int(chunk_rows), opts)
                elif set(ep) != set(f.keys()):
                    raise ValueError(f"{source.path}: episode {e} has columns {sorted(ep)} but episode 0 has "
                                     f"{sorted(f.keys())}")
                for k, x in ep.items():
                    if len(x) != n:
                        raise ValueError(f"{source.path}: column {k!r} has {len(x)} rows in episode {e}, "
                                         f"expected {n} (mismatched episode lengths)")
                    if k in source.image_columns:
                        if encoding == "jpeg":
                            if _is_jpeg(x):
                                _check_jpegs(x, source.shapes.get(k), source.path, k, e)
                            blobs = x if _is_jpeg(x) else _encode_jpegs(x, quality, subsampling)
                            _write_vlen(f[k], row, blobs)
                            continue
                        else:
                            x = _as_frames(x, source.shapes[k])
                    if x.dtype != object and (x.dtype != f[k].dtype or x.shape[1:] != f[k].shape[1:]):
                        raise ValueError(f"{source.path}: column {k!r} is {x.dtype}{x.shape[1:]} in episode {e} "
                                         f"but {f[k].dtype}{f[k].shape[1:]} in episode 0")
                    f[k][row : row + n] = x
                row += n
            if row == 0:
                raise ValueError(f"{source.path} holds no episodes")
            f.create_dataset("ep_len", data=np.asarray(source.lengths, np.int32))
            f.create_dataset("ep_offset", data=np.concatenate([[0], np.cumsum(source.lengths)[:-1]]).astype(np.int64))
            f.attrs["swm"] = json.dumps({**_meta_for(source, encoding, quality, subsampling),
                                         "columns": list(f.keys())})
    return dst


def write_mp4(source: Source, dst, *, lossless: bool | None = None, crf: int = 18, gop: int = 5,
              pix_fmt: str = "yuv444p", preset: str = "medium", fps: float | None = None, overwrite: bool = False,
              storage_options=None) -> str:
    """Write a source as an MP4 folder (see the module docstring); returns ``dst``.

    ``lossless=None`` picks lossless videos for raw sources and lossy (``crf``) ones for JPEG sources."""
    if int(gop) < 1:
        raise ValueError(f"gop must be >= 1, got {gop!r}")
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf!r}")
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise ValueError(f"pix_fmt must be 'yuv420p' or 'yuv444p', got {pix_fmt!r}")
    if not source.image_columns:
        raise ValueError(f"{source.path} has no image column to write as video")
    if lossless is None:
        lossless = _resolve_encoding(source, None) == "raw"
    fps = float(fps or source.meta.get("control_hz") or 10)
    dst = str(dst)
    with _atomic_output(dst, overwrite, storage_options) as tmp:
        tmp.mkdir(parents=True)
        for c in source.image_columns:
            (tmp / "videos" / c).mkdir(parents=True)
        writer = None
        schema = None
        first = None
        for e, ep in enumerate(source.episodes(jpeg_bytes=False)):
            if "episode_idx" not in ep:
                ep = {"episode_idx": np.full(len(next(iter(ep.values()))), e, np.int32), **ep}
            if first is None:
                first = ep
            else:
                _check_episode(ep, first, source.path, e)
            for c in source.image_columns:
                _write_video(tmp / "videos" / c / f"episode_{e:06d}.mp4", [ep[c]], fps, lossless=lossless, crf=crf,
                             gop=gop, pix_fmt=pix_fmt, preset=preset)
            table = pa.table({k: _numpy_to_arrow(x) for k, x in ep.items() if k not in source.image_columns})
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(tmp / MP4_TABLE, schema)
            writer.write_table(table.cast(schema))
        if writer is None:
            raise ValueError(f"{source.path} holds no episodes")
        writer.close()
        columns = list(first)
        shapes = {k: list(source.shapes.get(k, first[k].shape[1:])) for k in columns}
        manifest = {"format": "swm-mp4", "format_version": 1, "columns": columns,
                    "image_columns": list(source.image_columns), "shapes": shapes,
                    "lengths": [int(n) for n in source.lengths], "fps": fps, "lossless": bool(lossless),
                    "codec": "libx264rgb" if lossless else "libx264", "crf": None if lossless else int(crf),
                    "gop": int(gop), "pix_fmt": "rgb24" if lossless else pix_fmt,
                    "meta": _meta_for(source, "raw" if lossless else "jpeg", *_jpeg_settings(source, None, None))}
        (tmp / MP4_MANIFEST).write_text(json.dumps(manifest, indent=1))
    return dst


def _numpy_to_arrow(x: np.ndarray) -> pa.Array:
    if x.ndim == 1:
        return pa.array(x)
    dim = int(np.prod(x.shape[1:]))
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x).reshape(-1)), dim)


def _writer_key(column: str, fov_keys: Sequence[str]) -> str:
    """Episode key for LanceWriter so that it maps back to ``column`` (FoV columns need their dot key)."""
    if column.startswith("variation__"):
        key = column[len("variation__") :].replace("__", ".")
        if key in fov_keys:
            return f"variation.{key}"
    return column


def write_lance(source: Source, dst, *, encoding: str | None = None, jpeg_quality: int | None = None,
                jpeg_subsampling: str | None = None, append: bool = False, tag: str | None = None,
                storage_options=None) -> int:
    """Write a source through :class:`LanceWriter` as one atomic commit; returns the new Lance version."""
    encoding = _resolve_encoding(source, encoding)
    quality, subsampling = _jpeg_settings(source, jpeg_quality, jpeg_subsampling)
    dst = str(dst)
    with s3_errors(dst, storage_options):
        exists = swm_data._try_open(dst, storage_options) is not None
    if exists and not append:
        raise FileExistsError(f"{dst} already holds a Lance dataset (pass append=True / --append to add to it "
                              "as a new version)")
    if tag is not None:  # before anything is written: a bad or taken tag must not leave a committed append
        with s3_errors(dst, storage_options):
            swm_data.check_tag(tag, dst if exists else None, storage_options)
    fov_keys = list(source.meta.get("fov_keys") or [])
    image_size = source.meta.get("image_size")
    created_dir = not is_s3(dst) and not os.path.exists(dst)
    passthrough = encoding == "jpeg"
    try:
        with s3_errors(dst, storage_options):
            writer = LanceWriter(dst, env_id=source.meta.get("env_id"), image_size=image_size, encoding=encoding,
                                 jpeg_quality=quality, jpeg_subsampling=subsampling,
                                 control_hz=source.meta.get("control_hz"), fov_keys=fov_keys,
                                 storage_options=storage_options, keep_float64=True)
            with writer:
                first, keep_ids = None, not exists
                for e, ep in enumerate(source.episodes(jpeg_bytes=passthrough)):
                    if first is None:
                        first = ep
                    else:
                        _check_episode(ep, first, source.path, e)
                    # a new dataset keeps the source's episode ids while they increase (an append, or an id
                    # out of order, gets the next free one)
                    ids = ep.get("episode_idx")
                    source_id = int(ids[0]) if keep_ids and ids is not None and len(ids) else None
                    keep_ids = source_id is not None and source_id >= writer.next_episode_id
                    episode = {}
                    for c, x in ep.items():
                        if c == "episode_idx":
                            continue
                        if c in source.image_columns and _is_jpeg(x):
                            if passthrough:
                                _check_jpegs(x, source.shapes.get(c), source.path, c, e)
                            else:
                                x = _decode_jpegs(x, source.shapes[c])
                        episode[_writer_key(c, fov_keys)] = x
                    writer.add_episode(episode, source_id if keep_ids else None)
                if first is None:
                    raise ValueError(f"{source.path} holds no episodes")
            version = writer.version
    except BaseException:
        if created_dir and os.path.isdir(dst) and swm_data._try_open(dst) is None:
            shutil.rmtree(dst, ignore_errors=True)  # stray data files of an uncommitted write
        raise
    if tag:
        with s3_errors(dst, storage_options):
            tag_version(dst, tag, version, storage_options)
    return version


# ------------------------------------------------------------------------------------------------ convert


def detect_format(path, storage_options=None, must_exist: bool = True) -> str:
    """The format of ``path`` from its contents (existing paths) or its name: .lance, .h5/.hdf5, .mp4 folder,
    LeRobot folder (meta/info.json)."""
    p = str(path).rstrip("/")
    low = p.lower()
    if not is_s3(p) and os.path.exists(p):
        if os.path.isfile(p):
            with open(p, "rb") as fh:
                head = fh.read(8)
            if head == b"\x89HDF\r\n\x1a\n" or low.endswith((".h5", ".hdf5")):
                return "hdf5"
            raise ValueError(f"unknown format for file {p!r}: expected an HDF5 file (.h5/.hdf5), a Lance dataset, an "
                             f"MP4 trajectory folder or a LeRobot folder")
        if os.path.isdir(os.path.join(p, "_versions")) or low.endswith(".lance"):
            return "lance"
        if os.path.isfile(os.path.join(p, MP4_MANIFEST)):
            return "mp4"
        if os.path.isfile(os.path.join(p, "meta", "info.json")):
            return "lerobot"
        raise ValueError(f"unknown format for folder {p!r}: no Lance _versions/, {MP4_MANIFEST} or meta/info.json")
    if low.endswith(".lance"):
        return "lance"
    if low.endswith((".h5", ".hdf5")):
        return "hdf5"
    if low.endswith((".mp4", "_mp4", "-mp4")):
        return "mp4"
    if must_exist and not is_s3(p):
        raise FileNotFoundError(f"no dataset at {p!r}")
    raise ValueError(f"unknown format for {p!r}: name it *.lance, *.h5/*.hdf5 or *.mp4 (a folder), or pass the "
                     f"format explicitly (one of {FORMATS})")


def open_source(path, format: str | None = None, *, storage_options=None, version=None, columns=None,
                camera_key: str | None = None, state_key: str = "observation.state") -> Source:
    """Open any supported dataset as a :class:`Source` (``version``: Lance version number or tag)."""
    format = format or detect_format(path, storage_options)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; supported: {FORMATS}")
    if version is not None and format != "lance":
        raise ValueError(f"version applies to Lance sources only, not {format}")
    if format == "lance":
        return _lance_source(path, storage_options, version, columns)
    if format == "hdf5":
        return _hdf5_source(path, storage_options, columns)
    if format == "mp4":
        return _mp4_source(path, storage_options, columns)
    if is_s3(path):
        raise ValueError("LeRobot folders are read from local paths only")
    return _lerobot_source(path, camera_key=camera_key, state_key=state_key, columns=columns)


def convert(src, dst, *, src_format: str | None = None, dst_format: str | None = None, storage_options=None,
            dst_storage_options=None, version=None, tag: str | None = None, columns=None, encoding: str | None = None,
            jpeg_quality: int | None = None, jpeg_subsampling: str | None = None, append: bool = False,
            overwrite: bool = False, camera_key: str | None = None, state_key: str = "observation.state", chunk_rows: int = 1,
            compression: str | None = "lzf", compression_level: int | None = None, lossless: bool | None = None,
            crf: int = 18, gop: int = 5, pix_fmt: str = "yuv444p") -> dict:
    """Convert ``src`` to ``dst`` (formats detected from the paths unless given). Returns a summary dict:
    src, dst, formats, episodes, rows, seconds and, for a Lance destination, the committed ``version`` (tagged
    ``tag`` when given). ``encoding`` is the image encoding of Lance/HDF5 outputs ('jpeg', 'raw'; default: as in
    the source); frames encoded to JPEG here use ``jpeg_quality`` and ``jpeg_subsampling`` ('444', '422', '420';
    default: as the source recorded, else 95 and '444'). ``dst_storage_options`` defaults to ``storage_options``."""
    t0 = time.perf_counter()
    src_format = src_format or detect_format(src, storage_options)
    dst_format = dst_format or detect_format(dst, must_exist=False)
    if src_format not in FORMATS:
        raise ValueError(f"unknown source format {src_format!r}; supported: {FORMATS}")
    if dst_format not in WRITABLE:
        raise ValueError(f"unknown destination format {dst_format!r}; writable: {WRITABLE}")
    if tag and dst_format != "lance":
        raise ValueError(f"tag applies to Lance destinations only, not {dst_format}")
    if os.path.abspath(str(src)) == os.path.abspath(str(dst)):
        raise ValueError(f"source and destination are the same path {src!r}")
    dst_so = dst_storage_options if dst_storage_options is not None else storage_options
    source = open_source(src, src_format, storage_options=storage_options, version=version, columns=columns,
                         camera_key=camera_key, state_key=state_key)
    out = {"src": str(src), "dst": str(dst), "src_format": src_format, "dst_format": dst_format,
           "episodes": source.num_episodes, "rows": source.num_rows}
    if dst_format == "lance":
        out["version"] = write_lance(source, dst, encoding=encoding, jpeg_quality=jpeg_quality,
                                     jpeg_subsampling=jpeg_subsampling, append=append, tag=tag, storage_options=dst_so)
        out["tag"] = tag
    elif dst_format == "hdf5":
        write_hdf5(source, dst, images=encoding or "auto", chunk_rows=chunk_rows, compression=compression,
                   compression_level=compression_level, jpeg_quality=jpeg_quality,
                   jpeg_subsampling=jpeg_subsampling, overwrite=overwrite,
                   storage_options=dst_so)
    else:
        write_mp4(source, dst, lossless=lossless, crf=crf, gop=gop, pix_fmt=pix_fmt, overwrite=overwrite,
                  storage_options=dst_so)
    out["seconds"] = time.perf_counter() - t0
    return out


def lance_to_hdf5(src, dst, **kwargs) -> dict:
    return convert(src, dst, src_format="lance", dst_format="hdf5", **kwargs)


def hdf5_to_lance(src, dst, **kwargs) -> dict:
    return convert(src, dst, src_format="hdf5", dst_format="lance", **kwargs)


def lance_to_mp4(src, dst, **kwargs) -> dict:
    return convert(src, dst, src_format="lance", dst_format="mp4", **kwargs)


def mp4_to_lance(src, dst, **kwargs) -> dict:
    return convert(src, dst, src_format="mp4", dst_format="lance", **kwargs)


def lerobot_to_lance(src, dst, **kwargs) -> dict:
    return convert(src, dst, src_format="lerobot", dst_format="lance", **kwargs)
