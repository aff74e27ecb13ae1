# Describe a Lance trajectory dataset, check its data files: `python scripts/inspect_dataset.py DATASET [--verify]`.
"""Prints the version and tags, episodes, rows, columns (type and per-row shape) and the ``swm`` metadata of a
dataset. ``--verify`` reads every data file of the version back and compares it with the SHA-256 recorded by the
commit that wrote it (:mod:`swm_core.integrity`): each corrupted file is named, and the exit status is 1.

(Not named inspect.py: Python puts a script's folder first on sys.path, so a scripts/inspect.py would stand in for
the standard library's inspect module in every script of this folder, and break them.)"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tyro

from swm_core.data import open_dataset
from swm_core.integrity import verify_dataset
from swm_core.lance_io import open_lance
from swm_core.s3 import is_s3, s3_storage_options


@dataclass
class Args:
    dataset: tyro.conf.Positional[str]
    """the Lance dataset (local path or s3://bucket/path)"""
    verify: bool = False
    """check every data file against the SHA-256 recorded at its commit; exit 1 naming each corrupted file"""
    version: str | None = None
    """the version number or tag to inspect (default: the latest)"""
    endpoint: str | None = None
    """S3 endpoint URL for an s3:// dataset (default: $AWS_ENDPOINT_URL)"""
    access_key_id: str | None = None
    """S3 access key (default: $AWS_ACCESS_KEY_ID)"""
    secret_access_key: str | None = None
    """S3 secret key (default: $AWS_SECRET_ACCESS_KEY)"""
    region: str | None = None
    """S3 region (default: $AWS_REGION)"""


def describe(path: str, storage_options=None, version=None) -> list[str]:
    """The lines that describe the dataset at one version."""
    ds = open_dataset(path, storage_options, version)
    tags = {name: info["version"] for name, info in open_lance(path, None, storage_options).tags.list().items()}
    lengths = ds.episode_lengths
    lines = [f"dataset {path}, version {ds.version}"
             + (f" (tags: {', '.join(f'{t} -> v{v}' for t, v in sorted(tags.items()))})" if tags else ""),
             f"episodes {ds.num_episodes}, rows {ds.num_rows}"
             + (f", episode length mean {np.mean(lengths):.1f}, min {lengths.min()}, max {lengths.max()}"
                if len(lengths) else ""),
             "columns:"]
    width = max(len(c) for c in ds.columns)
    for c in ds.columns:
        kind = (f"image, {ds.metadata.get('encoding', 'jpeg')}" if c in ds.image_columns
                else str(ds.schema.field(c).type))
        lines.append(f"  {c:<{width}}  {kind}  per-row shape {ds.shape_of(c)}")
    meta = {k: v for k, v in ds.metadata.items() if k != "shapes"}
    lines.append("metadata: " + json.dumps(meta, default=str))
    return lines


def verify_lines(report: dict) -> list[str]:
    """The verification's summary line and one line per corrupted or unverified file."""
    files = report["files"]
    lines = [f"verify version {report['version']}: {len(files)} data files, {len(report['ok'])} ok, "
             f"{len(report['corrupted'])} corrupted, {len(report['unverified'])} unverified"]
    for f in files:
        if f["status"] != "ok":
            lines.append(f"  {f['status'].upper()} {f['file']}: {f['detail']}")
    return lines


def main(args: Args) -> int:
    """Print the description (and the verification); return the exit status: 1 when a file is corrupted or the
    dataset does not open, else 0."""
    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.dataset) else None)
    version = int(args.version) if args.version is not None and args.version.isdigit() else args.version
    status = 0
    try:
        print("\n".join(describe(args.dataset, storage_options, version)))
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        if not args.verify or isinstance(err, FileNotFoundError):
            raise SystemExit(f"cannot read {args.dataset}: {err}") from None
        print(f"cannot read {args.dataset}: {err}")  # a damaged file can break the episode index: name it below
        status = 1
    if args.verify:
        report = verify_dataset(args.dataset, storage_options, version)
        print("\n".join(verify_lines(report)))
        status = 1 if report["corrupted"] else status
    return status


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
