"""Atomic outputs of the HDF5 and MP4 writers: written to a temporary sibling and renamed into place (a local path),
or uploaded (``s3://``) so that a failed conversion leaves no destination and a half-done upload never reads as
complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from swm_core.s3 import is_s3, s3_client, s3_errors, split_s3_url


def _s3_exists(url: str, storage_options=None) -> bool:
    import botocore.exceptions as bexc

    bucket, key = split_s3_url(url)
    client = s3_client(storage_options)
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except bexc.ClientError:
        pass
    resp = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
    return resp.get("KeyCount", 0) > 0


def _upload(local: Path, url: str, storage_options=None, manifest: str | None = None) -> None:
    """Upload a file (one PUT: atomic) or a folder to ``url``. A folder's ``manifest`` file goes last; replacing a
    folder first deletes its old manifest and, before the new manifest, the old files the new folder lacks, so an
    upload that fails midway leaves no manifest, never a mix of old and new files that reads as complete."""
    from boto3.s3.transfer import TransferConfig

    bucket, key = split_s3_url(url)
    client = s3_client(storage_options)
    config = TransferConfig(multipart_threshold=1 << 40)  # single PUTs: an object is whole or absent
    if local.is_file():
        client.upload_file(str(local), bucket, key, Config=config)
        return
    prefix = key.rstrip("/") + "/"
    old = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
           for o in page.get("Contents", [])}
    if manifest is not None and prefix + manifest in old:  # replacing a folder: a half-done upload must not read as a complete dataset
        client.delete_object(Bucket=bucket, Key=prefix + manifest)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == manifest)
    if not files:
        return
    new = [prefix + p.relative_to(local).as_posix() for p in files]
    for p, k in zip(files[:-1], new[:-1]):
        client.upload_file(str(p), bucket, k, Config=config)
    for k in sorted(old - set(new)):  # the replaced folder's files the new one does not have
        client.delete_object(Bucket=bucket, Key=k)
    client.upload_file(str(files[-1]), bucket, new[-1], Config=config)


def _temp_sibling(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_output(dst: str, overwrite: bool, storage_options=None, manifest: str | None = None):
    """Yield a temporary local path; on success move it to ``dst`` (rename, or upload for ``s3://``, where a
    folder's ``manifest`` file goes last)."""
    if is_s3(dst):
        with s3_errors(dst, storage_options):
            exists = _s3_exists(dst, storage_options)
        if exists and not overwrite:
            raise FileExistsError(f"{dst} already exists (pass overwrite=True / --overwrite to replace it)")
        import tempfile

        tmpdir = Path(tempfile.mkdtemp(prefix="swm-convert-"))
        tmp = tmpdir / Path(split_s3_url(dst)[1]).name
        try:
            yield tmp
            with s3_errors(dst, storage_options):
                _upload(tmp, dst, storage_options, manifest)
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
