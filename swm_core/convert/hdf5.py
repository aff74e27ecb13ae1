"""HDF5 as a converter source and destination: one ``.h5`` file, one dataset per column of shape (N, ...) plus
``ep_len`` int32 and ``ep_offset`` int64 (the stable-worldmodel HDF5 layout).

Raw images are uint8 (N, H, W, C) datasets chunked ``chunk_rows`` frames per chunk with optional ``lzf``/``gzip``
compression; JPEG images are variable-length uint8 datasets (``encoding='jpeg'`` attribute) holding the JPEG bytes
unchanged. The file attribute ``swm`` holds the JSON metadata. Images stored channel-first (N, C, H, W) by older
writers are read too. Files on S3 are read through :class:`swm_core.s3file.S3File`.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from swm_core.convert.output import atomic_output
from swm_core.convert.source import (
    Source,
    check_jpegs,
    check_requested,
    is_jpeg,
    jpeg_settings,
    meta_for,
    resolve_encoding,
)
from swm_core.jpeg import decode_jpegs, encode_jpegs, jpeg_header, jpeg_shape
from swm_core.lance_writer import INDEX_COLUMNS
from swm_core.s3 import is_s3, s3_errors
from swm_core.s3file import S3File

HDF5_COMPRESSIONS = (None, "lzf", "gzip")
INDEX_DATASETS = ("ep_len", "ep_offset")


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
    columns = check_requested(columns, names, path)
    cols = [k for k in names if columns is None or k in columns or k in INDEX_COLUMNS]
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
                    shape = jpeg_shape(d[0].tobytes())
                except Exception as err:
                    raise ValueError(f"{path}: column {k!r} holds bytes that are not JPEG images: {err}") from err
            shapes[k] = tuple(int(s) for s in shape)
        elif kinds[k] == "chw":
            shapes[k] = (d.shape[2], d.shape[3], d.shape[1])
        else:
            shapes[k] = tuple(d.shape[1:])
    return cols, lengths, offsets, kinds, shapes, meta


def hdf5_source(path, storage_options=None, columns=None) -> Source:
    """Open an HDF5 trajectory file (local or ``s3://``) as a :class:`Source`."""
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
                            ep[k] = blobs if jpeg_bytes else decode_jpegs(blobs, shapes[k])
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


def _as_frames(x: np.ndarray, shape) -> np.ndarray:
    """Image payload (uint8 (T, H, W, C) or an object array of JPEG bytes) -> uint8 (T, H, W, C)."""
    return decode_jpegs(x, shape) if x.dtype == object else x


def _copied_subsampling(ep: dict, source: Source, subsampling: str) -> str:
    """The subsampling an output's JPEG frames will hold: that of the first image frame when the source's frames
    are JPEG already (they are copied, not re-encoded), else ``subsampling``."""
    for c in source.image_columns:
        if c in ep and is_jpeg(ep[c]) and len(ep[c]):
            found = jpeg_header(bytes(ep[c][0]))[3]
            return found if found not in (None, "Gray") else subsampling
    return subsampling


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
    encoding = resolve_encoding(source, images)
    quality, subsampling = jpeg_settings(source, jpeg_quality, jpeg_subsampling)
    opts = {"compression": compression}
    if compression == "gzip" and compression_level is not None:
        opts["compression_opts"] = int(compression_level)
    N = source.num_rows
    dst = str(dst)
    with atomic_output(dst, overwrite, storage_options) as tmp:
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
                            if is_jpeg(x):
                                check_jpegs(x, source.shapes.get(k), source.path, k, e)
                            blobs = x if is_jpeg(x) else encode_jpegs(x, quality, subsampling)
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
            f.attrs["swm"] = json.dumps({**meta_for(source, encoding, quality, subsampling),
                                         "columns": list(f.keys())})
    return dst
