"""Writing Lance trajectory datasets: ``LanceWriter`` (episodes in, one atomic Lance version per commit) and
version tags (``check_tag``, ``tag_version``). The layout is described in :mod:`swm_core.data`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import lance
import numpy as np
import pyarrow as pa
from lance.dataset import Transaction

from swm_core.jpeg import check_jpeg_subsampling, encode_frames, whole_jpeg_header
from swm_core.lance_io import (
    METADATA_KEY,
    infer_metadata,
    lance_session,
    open_lance,
    single_array,
    to_numpy,
    try_open,
)
from swm_core.s3 import resolve_storage_options

FORMAT_VERSION = 1
FLOAT64_COLUMNS = ("sim_state",)  # float64 vector columns kept at full precision; other floats become float32
INDEX_COLUMNS = ("episode_idx", "step_idx")  # added by the writer to every row
ENCODINGS = ("jpeg", "raw")


def column_name(key: str) -> str:
    """Column name for an episode key: ``variation.agent.color`` -> ``variation__agent__color``."""
    return key.replace(".", "__")


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

        existing = try_open(self.path, self.storage_options)
        self._exists = existing is not None
        if existing is not None:
            self.version = existing.version
            meta = infer_metadata(existing)
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
                col = single_array(existing.to_table(columns=["episode_idx"]).column(0))
                self._next_episode = int(to_numpy(col).max()) + 1
        self._committed_next = self._next_episode  # where discard() rewinds the ids to

    # -- conversion -------------------------------------------------------------------------------------

    def _column(self, name: str, x: np.ndarray) -> tuple[pa.Array, tuple, bool]:
        """(arrow array, per-row shape, is_image) for one episode column of leading length T."""
        if x.dtype == object and x.ndim == 1:  # frames already JPEG-encoded (bytes): stored as they are
            if self.encoding != "jpeg":
                raise ValueError(
                    f"column {name!r}: JPEG-encoded frames need encoding='jpeg', not {self.encoding!r}"
                )
            headers = []
            for t, b in enumerate(x):
                try:
                    headers.append(whole_jpeg_header(b))
                except Exception as err:
                    raise ValueError(f"column {name!r}, step {t}: the object value is not a JPEG image: "
                                     f"{err}") from None
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
                arr = pa.array(encode_frames(x, self.jpeg_quality, self.jpeg_subsampling), type=pa.binary())
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
                session=lance_session(),
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
        """Append every buffered episode as one Lance version; returns the dataset version (None if empty). The
        commit records the SHA-256 of each data file it adds (:mod:`swm_core.integrity`, for ``verify``)."""
        from swm_core.integrity import checksum_properties  # loaded once data is written, not by every import

        self._stage()
        if not self._staged:
            return self.version
        op = (lance.LanceOperation.Append(self._staged) if self._exists
              else lance.LanceOperation.Overwrite(self._schema, self._staged))
        properties = checksum_properties(self.path, self._staged, self.storage_options)
        ds = lance.LanceDataset.commit(self.path, Transaction(self.version or 0, op, transaction_properties=properties),
                                       storage_options=self.storage_options)
        self._exists, self._staged, self._staged_episodes = True, [], 0
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
        ds = try_open(os.fspath(path), storage_options)
        if ds is not None and tag in ds.tags.list():
            raise ValueError(f"dataset {os.fspath(path)!r} already has a tag {tag!r} (on version "
                             f"{ds.tags.list()[tag]['version']}); pick another name")
    return tag


def tag_version(path, tag: str, version: int | None = None, storage_options=None) -> int:
    """Tag a dataset version (default: the latest) so ``open_dataset(path, version=tag)`` finds it."""
    check_tag(tag, path, storage_options)
    ds = open_lance(os.fspath(path), storage_options=storage_options)
    version = ds.version if version is None else int(version)
    ds.tags.create(tag, version)
    return version


# ------------------------------------------------------------------------------------------------- reader
