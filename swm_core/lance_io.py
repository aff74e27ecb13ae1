"""Lance access shared by the trajectory reader (:mod:`swm_core.data`) and writer (:mod:`swm_core.lance_writer`).

- ``lance_session()``: this process's Lance session; refuses to run in a fork of a process that used Lance.
- ``open_lance()`` / ``try_open()``: ``lance.dataset`` with clear errors, at a version number or tag, read in
  ``read_block_size()`` blocks (1 MiB from an object store, 64 KiB from a local file).
- ``infer_metadata()``: the ``swm`` schema metadata, or metadata inferred from a stable-worldmodel layout.
- ``single_array()`` / ``to_numpy()``: Arrow columns -> numpy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import lance
import numpy as np
import pyarrow as pa
from lance.dataset import Session as LanceSession

from swm_core.jpeg import jpeg_shape
from swm_core.s3 import connection_error

METADATA_KEY = b"swm"

# Smallest ranged read from an object store (s3://...). At Lance's default there (64 KiB) every window of a random
# batch costs GETs of its own; 1 MiB blocks serve several windows per GET, and fetching the extra bytes from a
# server costs less than the requests saved. notes: docs/notes/data.md
OBJECT_STORE_BLOCK_SIZE = 1 << 20
# Smallest read from a local file. Lance hands each read to a thread of its own, which costs more than copying tens
# of kilobytes, so reads less than this apart are merged: at Lance's default (4 KiB) each frame of a window is its
# own read, at 64 KiB the frames of a window of small frames are one. notes: docs/notes/data.md
LOCAL_BLOCK_SIZE = 64 << 10

_LANCE_PID: int | None = None  # the process that first used Lance through this module
_SESSION: LanceSession | None = None


def lance_session() -> LanceSession:
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


def read_block_size(path, block_size: int | None = None) -> int:
    """The block size to open ``path`` with: ``block_size`` when given, else OBJECT_STORE_BLOCK_SIZE for an object
    store URI (``scheme://``, not ``file://``) and LOCAL_BLOCK_SIZE for a local path."""
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size must be a positive number of bytes (or None for the default), "
                             f"got {block_size!r}")
        return int(block_size)
    path = os.fspath(path)
    return OBJECT_STORE_BLOCK_SIZE if "://" in path and not path.startswith("file://") else LOCAL_BLOCK_SIZE


def _is_not_found(err: Exception) -> bool:
    return "not found" in str(err).lower() or "no such file" in str(err).lower()


def open_lance(path: str, version=None, storage_options=None,
               block_size: int | None = None) -> lance.LanceDataset:
    """lance.dataset with clear errors: FileNotFoundError for a missing path, ValueError for a bad version,
    ConnectionError naming the endpoint of an unreachable S3 server. ``block_size``: see read_block_size."""
    try:
        ds = lance.dataset(path, storage_options=storage_options, session=lance_session(),
                           block_size=read_block_size(path, block_size))
    except (ValueError, OSError) as err:
        if _is_not_found(err):
            raise FileNotFoundError(f"no Lance dataset at {path!r}") from None
        conn = connection_error(path, storage_options, err)
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


def try_open(path: str, storage_options=None) -> lance.LanceDataset | None:
    """The Lance dataset at ``path`` (latest version), or None where there is none."""
    try:
        return open_lance(path, storage_options=storage_options)
    except FileNotFoundError:
        return None


def infer_metadata(ds: lance.LanceDataset) -> dict:
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
                shapes[field.name] = jpeg_shape(first.column(field.name)[0].as_py())
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


def single_array(chunked) -> pa.Array:
    """A (chunked) Arrow column as one array (no copy when it has one chunk)."""
    if isinstance(chunked, pa.ChunkedArray):
        return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    return chunked


def to_numpy(arr: pa.Array, shape: Sequence[int] | None = None) -> np.ndarray:
    """A non-image column -> numpy (n, *shape); zero-copy for fixed-size numeric columns without nulls."""
    if pa.types.is_fixed_size_list(arr.type):
        values = arr.flatten().to_numpy(zero_copy_only=False)
        row_shape = tuple(shape) if shape is not None else (arr.type.list_size,)
        return values.reshape(len(arr), *row_shape)
    if pa.types.is_primitive(arr.type) or pa.types.is_boolean(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    return np.array(arr.to_pylist(), dtype=object)
