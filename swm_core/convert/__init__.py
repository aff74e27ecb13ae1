"""Converters between the Lance trajectory layout and HDF5, MP4 folders and LeRobot folders.

Every format is read as a *source* (:class:`swm_core.convert.source.Source`: metadata, episode lengths, and
episodes as dicts of numpy arrays, images as uint8 (T, H, W, C) or as JPEG bytes) and written by a *writer*, so any
source converts to any destination. One module per format: :mod:`~swm_core.convert.lance` (also the
stable-worldmodel layout), :mod:`~swm_core.convert.hdf5`, :mod:`~swm_core.convert.mp4`,
:mod:`~swm_core.convert.lerobot` (read only).

HDF5 and MP4 destinations are written to a temporary sibling and renamed into place, so a failed conversion
leaves no destination. ``s3://`` paths take ``storage_options`` (see :func:`swm_core.s3.s3_storage_options`); HDF5
and MP4 files on S3 are read through :class:`swm_core.s3file.S3File` (ranged GETs, block cache, retries).
"""

from __future__ import annotations

import os
import time

from swm_core.convert.hdf5 import hdf5_source, write_hdf5
from swm_core.convert.lance import lance_source, write_lance
from swm_core.convert.lerobot import lerobot_source
from swm_core.convert.mp4 import MP4_MANIFEST, mp4_source, write_mp4
from swm_core.convert.source import Source
from swm_core.s3 import is_s3

FORMATS = ("lance", "hdf5", "mp4", "lerobot")
WRITABLE = ("lance", "hdf5", "mp4")


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
        return lance_source(path, storage_options, version, columns)
    if format == "hdf5":
        return hdf5_source(path, storage_options, columns)
    if format == "mp4":
        return mp4_source(path, storage_options, columns)
    if is_s3(path):
        raise ValueError("LeRobot folders are read from local paths only")
    return lerobot_source(path, camera_key=camera_key, state_key=state_key, columns=columns)


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
