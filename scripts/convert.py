# Convert trajectory datasets between Lance, HDF5, MP4 folders and LeRobot folders: `python scripts/convert.py --help`.
from __future__ import annotations

import json
from dataclasses import dataclass

import tyro

from swm_core.convert import FORMATS, convert
from swm_core.data import open_dataset
from swm_core.lance_writer import tag_version
from swm_core.s3 import is_s3, s3_storage_options


@dataclass
class Args:
    src: str
    """source dataset: a *.lance dataset, a *.h5 file, an MP4 folder or a LeRobot folder (local or s3://bucket/path)"""
    dst: str = ""
    """destination: *.lance, *.h5/*.hdf5 or an MP4 folder (*.mp4); local or s3://bucket/path"""
    src_format: str | None = None
    """source format (default: detected): lance, hdf5, mp4 or lerobot"""
    dst_format: str | None = None
    """destination format (default: from the name): lance, hdf5 or mp4"""
    version: str | None = None
    """Lance source: the version number or tag to convert (default: the latest)"""
    tag: str | None = None
    """Lance destination: tag the version this conversion commits with this name (without --dst: tag the latest
    version of --src, or the one --version names)"""
    list_versions: bool = False
    """print the versions and tags of the Lance dataset at --src and exit"""
    encoding: str = "auto"
    """image encoding of a Lance/HDF5 destination: 'jpeg', 'raw' or 'auto' (as in the source)"""
    jpeg_quality: int | None = None
    """JPEG quality when images are (re-)encoded (default: the source's, else 95)"""
    jpeg_subsampling: str | None = None
    """JPEG chroma subsampling when images are encoded: '444', '422' or '420' (default: the source's, else '444');
    frames that are JPEG already are copied unchanged"""
    columns: tuple[str, ...] = ()
    """convert only these columns (episode_idx/step_idx are always kept); default: all"""
    append: bool = False
    """Lance destination: add to an existing dataset as a new version"""
    overwrite: bool = False
    """HDF5/MP4 destination: replace an existing one (only once the new one is complete)"""
    camera_key: str | None = None
    """LeRobot source: the camera feature that becomes 'pixels' (default: the first video/image feature)"""
    state_key: str = "observation.state"
    """LeRobot source: the feature that becomes 'proprio'"""
    chunk_rows: int = 1
    """HDF5: frames per chunk of raw image datasets (0: contiguous, needs --compression none)"""
    compression: str = "lzf"
    """HDF5: 'lzf', 'gzip' or 'none'"""
    compression_level: int | None = None
    """HDF5: gzip level 0-9"""
    lossless: bool | None = None
    """MP4: lossless videos (libx264rgb qp 0); default: lossless for raw sources, lossy (--crf) for JPEG ones"""
    crf: int = 18
    """MP4: x264 constant rate factor of lossy videos (0 best, 51 worst)"""
    gop: int = 5
    """MP4: keyframe interval in frames (small = fast random access)"""
    pix_fmt: str = "yuv444p"
    """MP4: pixel format of lossy videos, 'yuv444p' or 'yuv420p'"""
    endpoint: str | None = None
    """S3 endpoint URL (default: $AWS_ENDPOINT_URL), e.g. http://127.0.0.1:9000"""
    access_key_id: str | None = None
    """S3 access key (default: $AWS_ACCESS_KEY_ID)"""
    secret_access_key: str | None = None
    """S3 secret key (default: $AWS_SECRET_ACCESS_KEY)"""
    region: str | None = None
    """S3 region (default: $AWS_REGION)"""
    max_retries: int = 6
    """S3: retries of a failed request before giving up"""
    retry_timeout: float = 30.0
    """S3: seconds after which a failing request is no longer retried"""


def list_versions(path: str, storage_options) -> None:
    import lance

    ds = lance.dataset(path, storage_options=storage_options)
    tags = ds.tags.list()
    by_version: dict[int, list[str]] = {}
    for name, info in tags.items():
        by_version.setdefault(int(info["version"]), []).append(name)
    for v in ds.versions():
        names = ", ".join(sorted(by_version.get(int(v["version"]), [])))
        print(f"version {v['version']:>4}  {v['timestamp']}  {names}")


if __name__ == "__main__":
    args = tyro.cli(Args)
    s3 = is_s3(args.src) or is_s3(args.dst)
    storage_options = (
        s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region,
                           max_retries=args.max_retries, retry_timeout=args.retry_timeout)
        if s3 else None
    )
    if args.list_versions:
        list_versions(args.src, storage_options if is_s3(args.src) else None)
        raise SystemExit(0)
    version = int(args.version) if args.version is not None and args.version.isdigit() else args.version
    if not args.dst and args.tag:  # tag an existing version of --src (default: the latest)
        so = storage_options if is_s3(args.src) else None
        tagged = tag_version(args.src, args.tag, None if version is None else open_dataset(args.src, so, version).version,
                             storage_options=so)
        print(f"tagged version {tagged} of {args.src} as {args.tag!r}")
        raise SystemExit(0)
    if not args.dst:
        raise SystemExit("--dst is required (or pass --list-versions, or --tag alone to tag a version of --src)")
    if args.src_format is not None and args.src_format not in FORMATS:
        raise SystemExit(f"--src-format must be one of {FORMATS}, got {args.src_format!r}")
    summary = convert(
        args.src, args.dst, src_format=args.src_format, dst_format=args.dst_format,
        storage_options=storage_options if is_s3(args.src) else None,
        dst_storage_options=storage_options if is_s3(args.dst) else None,
        version=version, tag=args.tag, columns=list(args.columns) or None,
        encoding=None if args.encoding == "auto" else args.encoding, jpeg_quality=args.jpeg_quality,
        jpeg_subsampling=args.jpeg_subsampling, append=args.append, overwrite=args.overwrite,
        camera_key=args.camera_key, state_key=args.state_key,
        chunk_rows=args.chunk_rows, compression=None if args.compression == "none" else args.compression,
        compression_level=args.compression_level, lossless=args.lossless, crf=args.crf, gop=args.gop,
        pix_fmt=args.pix_fmt,
    )
    print(json.dumps(summary))
    print(f"converted {summary['episodes']} episodes ({summary['rows']} rows) {summary['src_format']} -> "
          f"{summary['dst_format']} in {summary['seconds']:.1f}s"
          + (f"; committed version {summary['version']}" if "version" in summary else "")
          + (f" tagged {summary['tag']!r}" if summary.get("tag") else ""))
