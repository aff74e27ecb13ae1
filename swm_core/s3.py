"""S3 access settings: ``s3://`` URIs, Lance ``storage_options``, a boto3 client, and unreachable-endpoint errors.

Endpoint and credentials come from flags or the standard AWS environment variables (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION). boto3 is imported only when a client
is made.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping


def is_s3(path) -> bool:
    return str(path).startswith("s3://")


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key without surrounding slashes)."""
    rest = str(url)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"S3 path {url!r} has no bucket (expected s3://bucket/key)")
    return bucket, key.strip("/")


def endpoint_name(storage_options) -> str:
    """The endpoint that ``storage_options`` (or the environment) points at, for error messages."""
    return (storage_options or {}).get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"


def s3_storage_options(
    endpoint: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
    *,
    max_retries: int = 6,
    retry_timeout: float = 30.0,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Lance ``storage_options`` for S3 from flags, falling back to the standard AWS environment variables
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION).

    An ``http://`` endpoint adds ``allow_http='true'``; ``max_retries``/``retry_timeout`` (seconds) bound how
    long a failing request is retried (exponential backoff from 0.1 s: the defaults ride out ~6 s of outage,
    such as a server restart) before the error surfaces."""
    env = os.environ if environ is None else environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    access_key_id = access_key_id or env.get("AWS_ACCESS_KEY_ID")
    secret_access_key = secret_access_key or env.get("AWS_SECRET_ACCESS_KEY")
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if int(max_retries) < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
    if float(retry_timeout) <= 0:
        raise ValueError(f"retry_timeout must be > 0 seconds, got {retry_timeout!r}")
    options: dict[str, str] = {}
    if endpoint:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"S3 endpoint must start with http:// or https://, got {endpoint!r}")
        options["endpoint"] = endpoint.rstrip("/")
        if endpoint.startswith("http://"):
            options["allow_http"] = "true"
    if access_key_id:
        options["aws_access_key_id"] = access_key_id
    if secret_access_key:
        options["aws_secret_access_key"] = secret_access_key
    if region or endpoint:
        options["region"] = region or "us-east-1"  # custom endpoints ignore it, but the signer needs one
    options["client_max_retries"] = str(int(max_retries))
    options["client_retry_timeout"] = str(max(1, int(round(float(retry_timeout)))))
    return options


def storage_options_for(path, storage_options: Mapping[str, str] | None = None, **flags) -> dict | None:
    """``storage_options`` for ``path``: None for a local path; for ``s3://`` the given options, else
    :func:`s3_storage_options` built from ``flags`` and the environment."""
    if not is_s3(path):
        return None
    if storage_options:
        return dict(storage_options)
    return s3_storage_options(**flags)


def resolve_storage_options(path, storage_options=None) -> dict | None:
    """``storage_options`` as given, or for an ``s3://`` path without them the ones built from the AWS environment
    variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...; see :func:`s3_storage_options`)."""
    if storage_options:
        return dict(storage_options)
    if is_s3(path):
        return s3_storage_options()
    return None


def s3_client(storage_options: Mapping[str, str] | None = None):
    """A boto3 S3 client for the same endpoint/credentials as Lance ``storage_options`` (path-style URLs)."""
    import boto3
    from botocore.config import Config

    so = dict(storage_options or s3_storage_options())
    retries = int(so.get("client_max_retries", 6))
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": retries + 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.client(
        "s3",
        endpoint_url=so.get("endpoint"),
        aws_access_key_id=so.get("aws_access_key_id"),
        aws_secret_access_key=so.get("aws_secret_access_key"),
        region_name=so.get("region", "us-east-1"),
        config=config,
    )


def connection_error(path, storage_options, err: Exception) -> ConnectionError | None:
    """For a Lance read of an ``s3://`` path that failed because the endpoint is unreachable, a ConnectionError
    naming the endpoint; else None."""
    text = str(err).lower()
    if is_s3(path) and (
        "error sending request" in text
        or "connection refused" in text
        or "dns error" in text
        or "tcp connect" in text
    ):
        endpoint = (storage_options or {}).get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        return ConnectionError(f"cannot reach the S3 endpoint {endpoint} for {path}: {err}")
    return None


_CONNECTION_MARKERS = ("error sending request", "connection refused", "could not connect", "connect error",
                       "dns error", "tcp connect", "endpoint url")


@contextlib.contextmanager
def s3_errors(path, storage_options=None):
    """Re-raise an unreachable-endpoint failure for an ``s3://`` path as ConnectionError naming the endpoint."""
    try:
        yield
    except ConnectionError:
        raise
    except Exception as err:  # lance raises ValueError/OSError, botocore its own exceptions
        text = str(err).lower()
        name = type(err).__name__
        if is_s3(path) and (any(m in text for m in _CONNECTION_MARKERS) or "EndpointConnection" in name):
            raise ConnectionError(
                f"cannot reach the S3 endpoint {endpoint_name(storage_options)} for {path} "
                f"(is the server running? endpoint/credentials come from flags or AWS_ENDPOINT_URL etc.): {err}"
            ) from err
        raise
