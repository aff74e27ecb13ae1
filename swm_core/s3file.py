"""A read-only, seekable file object over one S3 object (ranged GETs, a block cache, retries), and ``open_read``
for a local path or an ``s3://`` URL alike. Used to read HDF5 files, videos and tables from S3."""

from __future__ import annotations

import bisect
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from swm_core.s3 import endpoint_name, is_s3, s3_client, split_s3_url


class S3File(io.RawIOBase):
    """A read-only, seekable file object over one S3 object (for h5py, PyAV, pyarrow).

    Small reads are served from ``block_size`` blocks fetched with ranged GETs and kept in a small LRU cache
    (``cache_blocks``: file metadata); a read of a block or more is one GET of exactly that range.
    ``prefetch(ranges)`` fetches byte ranges (merged when close) concurrently and serves reads inside them until
    the next prefetch. A failed GET is retried (``retries`` times, with backoff) before a ConnectionError naming
    the endpoint. ``whole=True`` fetches the object in one GET (small files: videos, tables)."""

    def __init__(self, url: str, storage_options=None, block_size: int = 64 * 1024, cache_blocks: int = 64,
                 retries: int = 5, whole: bool = False, client=None):
        super().__init__()
        self.url = str(url)
        self.storage_options = storage_options
        self.bucket, self.key = split_s3_url(self.url)
        self.client = client or s3_client(storage_options)
        self.retries = int(retries)
        self._lock = threading.Lock()
        head = self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self.key))
        self.size = int(head["ContentLength"])
        self.block_size = max(self.size, 1) if whole else int(block_size)
        self.cache_blocks = int(cache_blocks)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._prefetched: list[tuple[int, bytes]] = []  # sorted (start, data)
        self._pos = 0
        self.requests = 1
        if whole:
            self._blocks[0] = self._get(0, self.size) if self.size else b""

    def _call(self, fn):
        import botocore.exceptions as bexc

        for attempt in range(self.retries + 1):
            try:
                return fn()
            except bexc.ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", ""))
                if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                    raise FileNotFoundError(
                        f"no S3 object at {self.url} (endpoint {endpoint_name(self.storage_options)})") from None
                if attempt == self.retries or not code.startswith("5"):
                    raise
            except (bexc.EndpointConnectionError, bexc.ConnectionClosedError, bexc.ReadTimeoutError,
                    bexc.ConnectTimeoutError, bexc.ResponseStreamingError) as err:
                if attempt == self.retries:
                    raise ConnectionError(
                        f"cannot reach the S3 endpoint {endpoint_name(self.storage_options)} for {self.url} "
                        f"after {self.retries} retries: {err}"
                    ) from err
            time.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _get(self, start: int, stop: int) -> bytes:
        def fetch():
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{stop - 1}")
            return resp["Body"].read()

        self.requests += 1
        return self._call(fetch)

    def _block(self, b: int) -> bytes:
        with self._lock:
            data = self._blocks.get(b)
            if data is not None:
                self._blocks.move_to_end(b)
                return data
        start = b * self.block_size
        data = self._get(start, min(self.size, start + self.block_size))
        with self._lock:
            self._blocks[b] = data
            while len(self._blocks) > self.cache_blocks:
                self._blocks.popitem(last=False)
        return data

    def prefetch(self, ranges: Sequence[tuple[int, int]], threads: int = 16, merge_gap: int = 256 * 1024) -> None:
        """Fetch the byte ranges ``(offset, size)`` concurrently (ranges closer than ``merge_gap`` bytes become one
        GET); reads inside them are served from memory until the next prefetch."""
        spans: list[list[int]] = []
        for offset, size in sorted((int(o), int(n)) for o, n in ranges if n > 0):
            stop = min(self.size, offset + size)
            if spans and offset <= spans[-1][1] + merge_gap:
                spans[-1][1] = max(spans[-1][1], stop)
            elif offset < stop:
                spans.append([offset, stop])
        if len(spans) > 1:
            with ThreadPoolExecutor(min(threads, len(spans))) as pool:
                datas = list(pool.map(lambda sp: self._get(*sp), spans))
        else:
            datas = [self._get(*sp) for sp in spans]
        self._prefetched = [(sp[0], d) for sp, d in zip(spans, datas)]

    def _from_prefetched(self, start: int, n: int):
        i = bisect.bisect_right(self._prefetched, start, key=lambda x: x[0]) - 1
        if i >= 0:
            s0, data = self._prefetched[i]
            if start + n <= s0 + len(data):
                return data[start - s0 : start - s0 + n]
        return None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + int(offset))
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        hit = self._from_prefetched(self._pos, n) if self._prefetched else None
        if hit is None and n >= self.block_size:
            hit = self._get(self._pos, self._pos + n)
        if hit is not None:
            view[:n] = hit
            self._pos += n
            return n
        done = 0
        while done < n:
            b, off = divmod(self._pos + done, self.block_size)
            block = self._block(b)
            take = min(n - done, len(block) - off)
            view[done : done + take] = block[off : off + take]
            done += take
        self._pos += n
        return n


def open_read(path, storage_options=None, whole: bool = False):
    """A binary file object for a local path or an ``s3://`` URL."""
    if is_s3(path):
        return S3File(path, storage_options, whole=whole)
    return open(path, "rb")

