"""Lance as a converter source and destination (also the stable-worldmodel layout: JPEG ``binary`` images,
``fixed_size_list<float32>`` columns, no metadata). Written through :class:`swm_core.lance_writer.LanceWriter`:
one conversion is one atomic Lance commit (nothing or everything)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from swm_core.convert.source import (
    Source,
    arrow_to_numpy,
    check_episode,
    check_jpegs,
    check_requested,
    is_jpeg,
    jpeg_settings,
    resolve_encoding,
)
from swm_core.data import open_dataset
from swm_core.jpeg import decode_jpegs
from swm_core.lance_io import try_open
from swm_core.lance_writer import INDEX_COLUMNS, LanceWriter, check_tag, tag_version
from swm_core.s3 import is_s3, s3_errors


def lance_source(path, storage_options=None, version=None, columns=None) -> Source:
    """Open a Lance dataset (at ``version``: number or tag) as a :class:`Source`."""
    import lance

    path = str(path)
    with s3_errors(path, storage_options):
        td = open_dataset(path, storage_options, version)
        ds = lance.dataset(path, version=td.version, storage_options=td.storage_options)
    columns = check_requested(columns, td.columns, path)
    cols = [c for c in td.columns if columns is None or c in columns or c in INDEX_COLUMNS]
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
                    except Exception as err:  # FrameError: its index is the step
                        step = f", step {err.index}" if hasattr(err, "index") else ""
                        raise ValueError(f"{path}: cannot decode image column {c!r} of episode "
                                         f"{int(td.episode_ids[i])}{step}: {err}") from err
                else:
                    ep[c] = arrow_to_numpy(arr, shapes[c], c, path)
            yield ep

    return Source(path, "lance", cols, image_columns, shapes, np.asarray(td.episode_lengths, np.int64), meta,
                  episodes)


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
    encoding = resolve_encoding(source, encoding)
    quality, subsampling = jpeg_settings(source, jpeg_quality, jpeg_subsampling)
    dst = str(dst)
    with s3_errors(dst, storage_options):
        exists = try_open(dst, storage_options) is not None
    if exists and not append:
        raise FileExistsError(f"{dst} already holds a Lance dataset (pass append=True / --append to add to it "
                              "as a new version)")
    if tag is not None:  # before anything is written: a bad or taken tag must not leave a committed append
        with s3_errors(dst, storage_options):
            check_tag(tag, dst if exists else None, storage_options)
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
                        check_episode(ep, first, source.path, e)
                    # a new dataset keeps the source's episode ids while they increase (an append, or an id
                    # out of order, gets the next free one)
                    ids = ep.get("episode_idx")
                    source_id = int(ids[0]) if keep_ids and ids is not None and len(ids) else None
                    keep_ids = source_id is not None and source_id >= writer.next_episode_id
                    episode = {}
                    for c, x in ep.items():
                        if c == "episode_idx":
                            continue
                        if c in source.image_columns and is_jpeg(x):
                            if passthrough:  # copied as they are: a truncated or garbage cell stops here
                                check_jpegs(x, source.shapes.get(c), source.path, c, e if ids is None else int(ids[0]))
                            else:
                                x = decode_jpegs(x, source.shapes[c])
                        episode[_writer_key(c, fov_keys)] = x
                    writer.add_episode(episode, source_id if keep_ids else None)
                if first is None:
                    raise ValueError(f"{source.path} holds no episodes")
            version = writer.version
    except BaseException:
        if created_dir and os.path.isdir(dst) and try_open(dst) is None:
            shutil.rmtree(dst, ignore_errors=True)  # stray data files of an uncommitted write
        raise
    if tag:
        with s3_errors(dst, storage_options):
            tag_version(dst, tag, version, storage_options)
    return version
