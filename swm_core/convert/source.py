"""The converters' common reading interface: a :class:`Source` (any format, read episode by episode), and the checks
and settings every destination derives from a source."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from swm_core.jpeg import check_jpeg_subsampling, whole_jpeg_header
from swm_core.lance_writer import ENCODINGS


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


def check_requested(columns, available: Sequence[str], path) -> list[str] | None:
    """The requested ``columns`` as a list (None: all), or ValueError naming one that is not ``available``."""
    if columns is None:
        return None
    columns = [columns] if isinstance(columns, str) else list(columns)
    for c in columns:
        if c not in available:
            raise ValueError(f"column {c!r} is not in {path} (columns: {list(available)})")
    return columns


def arrow_to_numpy(arr: pa.Array, shape: tuple, name: str, path) -> np.ndarray:
    """A numeric (or numeric-list) Arrow column -> numpy (n, *shape); ValueError for nulls or other types."""
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


def is_jpeg(x: np.ndarray) -> bool:
    """Whether an image payload is JPEG bytes (an object array) rather than uint8 frames."""
    return x.dtype == object


def check_episode(ep: dict, first: dict, path, e: int) -> None:
    """ValueError unless episode ``e`` has the columns, dtypes and per-row shapes of episode 0 (``first``)."""
    if set(ep) != set(first):
        raise ValueError(f"{path}: episode {e} has columns {sorted(ep)} but episode 0 has {sorted(first)}")
    for k, x in ep.items():
        f0 = first[k]
        if x.dtype != f0.dtype or (x.dtype != object and x.shape[1:] != f0.shape[1:]):
            raise ValueError(f"{path}: column {k!r} is {x.dtype}{x.shape[1:]} in episode {e} but "
                             f"{f0.dtype}{f0.shape[1:]} in episode 0")


def check_jpegs(blobs, shape, path, column: str, episode: int) -> None:
    """Raise ValueError naming the file, column, episode and step of the first JPEG that lacks its start or end
    marker (a truncated JPEG), whose header does not read, or that does not match the column's (H, W, C): JPEG bytes
    copied without re-encoding are checked this far (not decoded)."""
    for t, blob in enumerate(blobs):
        try:
            got = whole_jpeg_header(blob)[:3]
        except Exception as err:
            raise ValueError(f"{path}: image column {column!r}, episode {episode}, step {t} is not a readable JPEG "
                             f"(truncated or corrupted?): {err}") from None
        if shape and tuple(got) != tuple(shape):
            raise ValueError(f"{path}: image column {column!r}, episode {episode}, step {t} is a {got} JPEG, but "
                             f"the column holds {tuple(shape)} frames")


def resolve_encoding(source: Source, encoding: str | None) -> str:
    """The image encoding of an output: ``encoding``, or for None/'auto' the source's (else 'jpeg')."""
    if encoding in (None, "auto"):
        encoding = source.meta.get("encoding") or "jpeg"
        if encoding not in ENCODINGS:
            encoding = "jpeg"
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS} or 'auto', got {encoding!r}")
    return encoding


def jpeg_settings(source: Source, jpeg_quality, jpeg_subsampling) -> tuple[int, str]:
    """(quality, subsampling) for frames encoded to JPEG here: as given, else as the source recorded, else 95 and
    '444'. Frames that are JPEG already are copied unchanged, so a JPEG source keeps its own."""
    quality = int(jpeg_quality or source.meta.get("jpeg_quality") or 95)
    return quality, check_jpeg_subsampling(jpeg_subsampling or source.meta.get("jpeg_subsampling") or "444")


def meta_for(source: Source, encoding: str, jpeg_quality: int, jpeg_subsampling: str = "444") -> dict:
    """The metadata an output records: the source's, with its encoding, JPEG settings, image columns and shapes."""
    meta = {k: v for k, v in source.meta.items() if k not in ("shapes", "stored_encoding", "episode_ids", "columns")}
    meta.update({"encoding": encoding, "jpeg_quality": jpeg_quality, "jpeg_subsampling": jpeg_subsampling,
                 "image_columns": list(source.image_columns),
                 "shapes": {k: list(v) for k, v in source.shapes.items()}})
    return meta
