"""Checksums of the data files of Lance trajectory datasets: recorded by every commit, verified on demand.

``LanceWriter.commit()`` hashes (SHA-256) each data file of the fragments it is about to commit and stores
``{file name: hex digest}`` as JSON in that commit's transaction properties (key ``swm.sha256``): the checksums
are part of the very commit that makes the files visible, so no version references a data file this project
wrote without its checksum. Each append records its own files; a tag names a version and needs nothing.

``verify_dataset(path)`` reads every data file of a version back (local or ``s3://``), compares its size with the
manifest's and its SHA-256 with the recorded one, and reports each file; ``check_dataset`` raises
``CorruptDataError`` naming each corrupted file. ``python scripts/inspect_dataset.py DATASET --verify`` and
``WindowDataset(..., verify=True)`` call them. Nothing here runs when a dataset is only read.

A file with no recorded checksum is reported as unverified, never as corrupted (its size is still checked):
datasets written by other tools (stable-worldmodel), files rewritten by Lance's compaction, and files whose commit
was removed by Lance's ``cleanup_old_versions`` (it deletes the transaction files of the versions it removes, and
the checksums with them: verify before a cleanup). Object stores other than S3 are not hashed (unverified).
Costs and the fault table: docs/notes/faults.md
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

from swm_core.lance_io import open_lance
from swm_core.s3 import is_s3, resolve_storage_options
from swm_core.s3file import open_read

CHECKSUM_KEY = "swm.sha256"  # the transaction property holding {data file name: SHA-256 hex}
CHUNK_BYTES = 8 << 20  # read size while hashing (one ranged GET each on S3)


class CorruptDataError(ValueError):
    """Data files of a dataset whose bytes differ from what was committed (the message names each one)."""


def hashable(path: str) -> bool:
    """Whether this module reads the data files of ``path`` back: a local path (or file://) or s3://."""
    return "://" not in path or path.startswith("file://") or is_s3(path)


def data_file_url(path: str, name: str) -> str:
    """Where the data file ``name`` (as the manifest names it) of the dataset at ``path`` is stored."""
    base = path[len("file://"):] if path.startswith("file://") else path
    return f"{base.rstrip('/')}/data/{name}"


def file_sha256(url: str, storage_options=None) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a local file or an S3 object, read in CHUNK_BYTES pieces."""
    digest, size = hashlib.sha256(), 0
    with open_read(url, storage_options) as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def checksum_properties(path: str, fragments: Iterable, storage_options=None) -> dict[str, str]:
    """The transaction properties that record the SHA-256 of every data file of ``fragments`` (Lance
    FragmentMetadata written under ``path``, not committed yet); {} where the store is not hashed here."""
    if not hashable(path):
        return {}
    sums = {f.path: file_sha256(data_file_url(path, f.path), storage_options)[0] for frag in fragments
            for f in frag.files}
    return {CHECKSUM_KEY: json.dumps(sums, sort_keys=True)}


def recorded_checksums(ds) -> dict[str, str]:
    """{data file name: SHA-256} recorded by the commits up to the opened version of the Lance dataset ``ds``."""
    sums: dict[str, str] = {}
    for entry in ds.versions():
        if entry["version"] > ds.version:
            continue
        try:
            txn = ds.read_transaction(entry["version"])
        except (OSError, ValueError, RuntimeError):  # its transaction file is gone (cleanup_old_versions)
            continue
        props = (txn.transaction_properties or {}) if txn is not None else {}
        if CHECKSUM_KEY in props:
            sums.update(json.loads(props[CHECKSUM_KEY]))
    return sums


def _check_file(path: str, data_file, recorded: str | None, storage_options) -> dict:
    """One data file's report: {"file", "bytes", "status": ok / corrupted / unverified, "detail"}."""
    name, expected = f"data/{data_file.path}", data_file.file_size_bytes
    report = {"file": name, "bytes": expected, "status": "unverified", "detail": ""}
    if not hashable(path):
        return {**report, "detail": "files on this object store are not read back here"}
    try:
        digest, size = file_sha256(data_file_url(path, data_file.path), storage_options)
    except FileNotFoundError:
        return {**report, "status": "corrupted", "detail": "the file is missing"}
    report["bytes"] = size
    if expected and size != expected:
        return {**report, "status": "corrupted",
                "detail": f"{size} bytes, but the manifest says {expected}: truncated or extended"}
    if recorded is None:
        return {**report, "detail": "no checksum recorded (another writer, a compaction, or its commit was "
                                    "cleaned up); the size matches the manifest"}
    if digest != recorded:
        return {**report, "status": "corrupted",
                "detail": f"SHA-256 {digest[:12]}... differs from the {recorded[:12]}... recorded at its commit: "
                          "bytes changed since"}
    return {**report, "status": "ok", "detail": "SHA-256 matches"}


def verify_dataset(path, storage_options=None, version=None) -> dict:
    """Check every data file of a version (default: the latest; a number or a tag) against its commit.

    Returns {"path", "version", "files": [per-file reports], "ok", "corrupted", "unverified" (file names)}."""
    path = os.fspath(path)
    storage_options = resolve_storage_options(path, storage_options)
    ds = open_lance(path, version, storage_options)
    sums = recorded_checksums(ds)
    files = [_check_file(path, f, sums.get(f.path), storage_options)
             for frag in ds.get_fragments() for f in frag.metadata.files]
    out = {"path": path, "version": ds.version, "files": files}
    for status in ("ok", "corrupted", "unverified"):
        out[status] = [f["file"] for f in files if f["status"] == status]
    return out


def check_dataset(path, storage_options=None, version=None) -> dict:
    """``verify_dataset``, raising CorruptDataError that names each corrupted data file and what is wrong."""
    report = verify_dataset(path, storage_options, version)
    bad = [f for f in report["files"] if f["status"] == "corrupted"]
    if bad:
        listing = "; ".join(f"{f['file']}: {f['detail']}" for f in bad)
        raise CorruptDataError(f"dataset {report['path']!r} (version {report['version']}) has {len(bad)} corrupted "
                               f"data file(s) of {len(report['files'])}: {listing}. Restore them from a copy, or "
                               f"open an earlier version (tag) that does not use them")
    return report
