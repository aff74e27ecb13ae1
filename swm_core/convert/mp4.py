"""MP4 folders as a converter source and destination: ``videos/<column>/episode_<k>.mp4`` (one H.264 video per
episode and image column, keyframe every ``gop`` frames), ``table.parquet`` (every other column, Arrow types
unchanged) and ``swm_mp4.json`` (metadata, written last: a folder without it is incomplete). Lossless videos
(libx264rgb, qp 0) keep raw frames bit-exact; lossy ones (libx264, ``crf``) stay within codec error."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from swm_core.convert.output import atomic_output
from swm_core.convert.source import (
    Source,
    arrow_to_numpy,
    check_episode,
    check_requested,
    jpeg_settings,
    meta_for,
    resolve_encoding,
)
from swm_core.lance_writer import INDEX_COLUMNS
from swm_core.s3 import is_s3
from swm_core.s3file import open_read
from swm_core.video import encode_video, read_video

MP4_MANIFEST = "swm_mp4.json"
MP4_TABLE = "table.parquet"


def _video_to_image(frames: np.ndarray, shape) -> np.ndarray:
    return frames[..., :1].copy() if shape[-1] == 1 else frames


def mp4_source(path, storage_options=None, columns=None) -> Source:
    """Open an MP4 trajectory folder (local or ``s3://``) as a :class:`Source`."""
    path = str(path).rstrip("/")
    manifest_path = f"{path}/{MP4_MANIFEST}"
    if not is_s3(path) and not os.path.isfile(manifest_path):
        if os.path.isdir(path):
            raise ValueError(f"{path} has no {MP4_MANIFEST}: not an MP4 trajectory folder, or an incomplete one")
        raise FileNotFoundError(f"no MP4 trajectory folder at {path}")
    try:
        with open_read(manifest_path, storage_options, whole=True) as fh:
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
        with open_read(f"{path}/{MP4_TABLE}", storage_options, whole=True) as fh:
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
    columns = check_requested(columns, all_cols, path)
    cols = [c for c in all_cols if columns is None or c in columns or c in INDEX_COLUMNS]
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
                    ep[c] = arrow_to_numpy(rows.column(c), shapes.get(c, ()), c, path)
            yield ep

    return Source(path, "mp4", cols, [c for c in image_columns if c in cols], shapes, lengths, meta, episodes)


def _numpy_to_arrow(x: np.ndarray) -> pa.Array:
    if x.ndim == 1:
        return pa.array(x)
    dim = int(np.prod(x.shape[1:]))
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x).reshape(-1)), dim)


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
        lossless = resolve_encoding(source, None) == "raw"
    fps = float(fps or source.meta.get("control_hz") or 10)
    dst = str(dst)
    with atomic_output(dst, overwrite, storage_options, manifest=MP4_MANIFEST) as tmp:
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
                check_episode(ep, first, source.path, e)
            for c in source.image_columns:
                encode_video(tmp / "videos" / c / f"episode_{e:06d}.mp4", [ep[c]], fps, lossless=lossless, crf=crf,
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
                    "meta": meta_for(source, "raw" if lossless else "jpeg", *jpeg_settings(source, None, None))}
        (tmp / MP4_MANIFEST).write_text(json.dumps(manifest, indent=1))
    return dst
