"""S3 through a real local S3-compatible server (localbucket): write, read, windows, convert, restart, errors."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from swm_core.convert import convert, output
from swm_core.data import WindowDataset, open_dataset
from swm_core.lance_io import LOCAL_BLOCK_SIZE, OBJECT_STORE_BLOCK_SIZE
from swm_core.lance_writer import LanceWriter
from swm_core.s3 import s3_client, s3_storage_options, storage_options_for
from swm_core.s3file import S3File

ROOT = Path(__file__).resolve().parents[1]
LOCALBUCKET = shutil.which("localbucket") or str(Path(sys.executable).parent / "localbucket")
BUCKET = "swm-test"

pytestmark = [
    pytest.mark.timeout(60),  # each test; a hung server must not stall the suite
    pytest.mark.skipif(not os.path.exists(LOCALBUCKET), reason="localbucket (dev dependency) is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A localbucket process serving ``root`` on 127.0.0.1:``port``; restartable on the same port."""

    def __init__(self, root: Path, log: Path | None = None):
        self.root, self.port, self.proc, self.log = root, free_port(), None, log

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        err = open(self.log, "a") if self.log else subprocess.DEVNULL  # its request log (one line per request)
        self.proc = subprocess.Popen([LOCALBUCKET, "--host", "127.0.0.1", "--port", str(self.port), str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=err)
        if self.log:
            err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"localbucket exited with code {self.proc.returncode} on port {self.port}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"localbucket did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3root")
    (root / BUCKET).mkdir()
    srv = Server(root)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def so(server):
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    return s3_storage_options(server.endpoint, "test", "test", "us-east-1", max_retries=10, retry_timeout=20)


def episodes(lengths=(26, 23, 30), size=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for T in lengths:
        frames = rng.integers(0, 256, (T, size, size, 3), dtype=np.uint8)
        action = rng.normal(size=(T, 2)).astype(np.float32)
        action[-1] = np.nan
        out.append({"pixels": frames, "action": action, "proprio": rng.normal(size=(T, 3)).astype(np.float32)})
    return out


def write(path, eps, storage_options=None):
    with LanceWriter(path, env_id="swm/PushT-v1", encoding="raw", storage_options=storage_options) as w:
        for ep in eps:
            w.add_episode(ep)
    return w.version


def test_storage_options_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    so = s3_storage_options(max_retries=3, retry_timeout=7)
    assert so == {"endpoint": "http://10.0.0.1:9000", "allow_http": "true", "aws_access_key_id": "AK",
                  "aws_secret_access_key": "SK", "region": "eu-west-3", "client_max_retries": "3",
                  "client_retry_timeout": "7"}
    flags = s3_storage_options("https://s3.example.com", "k2", "s2", "us-west-2")
    assert flags["endpoint"] == "https://s3.example.com" and "allow_http" not in flags
    assert flags["aws_access_key_id"] == "k2" and flags["region"] == "us-west-2"
    assert storage_options_for("data/local.lance") is None
    with pytest.raises(ValueError, match="ftp://x"):
        s3_storage_options("ftp://x")


def test_write_read_and_windows_through_s3(server, so, tmp_path):
    eps = episodes()
    local, remote = tmp_path / "l.lance", f"s3://{BUCKET}/exact.lance"
    write(local, eps)
    assert write(remote, eps, so) == 1
    assert (server.root / BUCKET / "exact.lance" / "_versions").is_dir()  # really stored by the server
    a, b = open_dataset(local), open_dataset(remote, storage_options=so)
    assert b.episode_lengths.tolist() == [26, 23, 30]
    np.testing.assert_array_equal(b.read_episode(2, ["pixels"])["pixels"], eps[2]["pixels"])
    wl = WindowDataset(local, split="all")
    wr = WindowDataset(remote, split="all", storage_options=so)
    assert len(wl) == len(wr) > 0
    idx = np.random.default_rng(0).permutation(len(wr))[:4].tolist()
    batch = next(iter(torch.utils.data.DataLoader(wr, batch_size=4, sampler=idx)))
    for j, i in enumerate(idx[:4]):
        for c in ("pixels", "action", "proprio"):
            torch.testing.assert_close(batch[c][j], wl[i][c], rtol=0, atol=0, equal_nan=True)
    assert a.num_rows == b.num_rows
    # batches built on threads from S3: the local loader's batches, in its order
    for x, y in zip(wl.loader(batch_size=5, seed=3), wr.loader(batch_size=5, seed=3, threads=2), strict=True):
        for c in ("pixels", "action", "proprio"):
            torch.testing.assert_close(x[c], y[c], rtol=0, atol=0, equal_nan=True)


def test_s3_batches_are_read_in_large_blocks(tmp_path):
    """From an object store a batch's rows come in reads of at least OBJECT_STORE_BLOCK_SIZE (1 MiB): a few GETs
    instead of one or more per window at Lance's 64 KiB default, and the very same frames."""
    root, log = tmp_path / "root", tmp_path / "requests.log"
    (root / BUCKET).mkdir(parents=True)
    srv = Server(root, log=log)
    srv.start()
    try:
        so = s3_storage_options(srv.endpoint, "test", "test", "us-east-1")
        eps = episodes(lengths=(120, 110, 130, 125), size=48)  # raw 7 KB frames: 3.3 MB of pixels in all
        local, remote = tmp_path / "l.lance", f"s3://{BUCKET}/blocks.lance"
        write(local, eps)
        write(remote, eps, so)

        def data_gets() -> int:  # ranged GETs of the data files (not the manifest or the version listing)
            return sum('"GET ' in line and "/blocks.lance/data/" in line for line in log.read_text().splitlines())

        reference = WindowDataset(local, split="all")
        assert reference.block_size == LOCAL_BLOCK_SIZE == 64 << 10  # local files: reads 64 KiB apart merge
        idx = np.sort(np.random.default_rng(0).choice(len(reference), 32, replace=False))
        gets = {}
        for block_size in (64 << 10, None):
            ds = WindowDataset(remote, split="all", storage_options=so, block_size=block_size)
            before = data_gets()
            batch = ds.batch(idx)
            gets[block_size] = data_gets() - before
            for c in ("pixels", "action", "proprio"):
                torch.testing.assert_close(batch[c], reference.batch(idx)[c], rtol=0, atol=0, equal_nan=True)
        assert ds.block_size == OBJECT_STORE_BLOCK_SIZE == 1 << 20
        assert gets[None] <= 3 and gets[64 << 10] >= 3 * gets[None], gets  # measured: 2 vs 10
    finally:
        srv.stop()
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match=f"block_size must be a positive number of bytes.*got {bad!r}"):
            WindowDataset(local, split="all", block_size=bad)


def test_collect_to_s3(so):
    from swm_core import RandomPolicy, World

    world = World("swm/TwoRoom-v1", num_envs=2, image_size=16, max_episode_steps=6, seed=0)
    path = f"s3://{BUCKET}/collected.lance"
    world.collect(path, episodes=3, seed=0, policy=RandomPolicy(seed=0), storage_options=so, progress=False)
    ds = open_dataset(path, storage_options=so)
    assert ds.num_episodes == 3 and ds.metadata["env_id"] == "swm/TwoRoom-v1"
    assert ds.read_rows([0], ["pixels"])["pixels"].shape == (1, 16, 16, 3)


def test_collect_script_to_s3_with_flags_and_a_tag(server, so, tmp_path):
    path = f"s3://{BUCKET}/collected_cli.lance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # the flags alone say where
    flags = [sys.executable, str(ROOT / "scripts" / "collect.py"), "--env-id", "swm/TwoRoom-v1", "--output", path,
             "--episodes", "2", "--num-envs", "2", "--max-episode-steps", "5", "--image-size", "16", "--policy",
             "random", "--endpoint", server.endpoint, "--access-key-id", "k", "--secret-access-key", "s",
             "--region", "us-east-1"]  # fmt: skip
    r = subprocess.run([*flags, "--tag", "first"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert open_dataset(path, storage_options=so, version="first").num_episodes == 2
    r = subprocess.run([*flags, "--tag", "first"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode != 0 and "already has a tag 'first'" in r.stderr
    assert open_dataset(path, storage_options=so).num_episodes == 2  # the refused run recorded nothing


def test_training_reads_an_s3_version_with_flags(server, so, tmp_path, load_script):
    import test_lewm

    from swm_core.checkpoint import read_checkpoint

    lewm = load_script("baselines/lewm_train.py")
    path = f"s3://{BUCKET}/train.lance"
    write(path, episodes(lengths=(30, 30, 30), seed=5), so)
    write(path, episodes(lengths=(30, 30, 30), seed=6), so)  # version 2: six episodes
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # the flags alone say where
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    out = tmp_path / "m" / "model.pt"
    r = subprocess.run([sys.executable, str(ROOT / "baselines" / "lewm_train.py"), "--dataset", path,
                        "--dataset-version", "1", "--endpoint", server.endpoint, "--access-key-id", "k",
                        "--secret-access-key", "s3cret", "--region", "us-east-1", "--total-steps", "2",
                        "--num-workers", "0", "--output", str(out), *test_lewm.TINY_FLAGS],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    ckpt = read_checkpoint(out)
    saved = ckpt["extra"]["args"]
    assert saved["dataset_version"] == "1" and saved["endpoint"] == server.endpoint
    assert "secret_access_key" not in saved and b"s3cret" not in out.read_bytes()  # no credentials kept
    means = {}  # the normalisation statistics of each version's train split: the checkpoint has version 1's
    for version in (1, 2):
        train = WindowDataset(path, split="train", val_fraction=0.34, seed=1, storage_options=so, version=version)
        stats = lewm.compute_stats(open_dataset(path, so, version), train.episode_ids)
        means[version] = stats["action"]["mean"]
    assert torch.allclose(torch.as_tensor(ckpt["stats"]["action"]["mean"]), torch.as_tensor(means[1]))
    assert not torch.allclose(torch.as_tensor(means[1]), torch.as_tensor(means[2]))


def test_convert_to_and_from_s3(so, tmp_path):
    eps = episodes(seed=1)
    local = tmp_path / "l.lance"
    write(local, eps)
    convert(local, f"s3://{BUCKET}/conv.h5", dst_storage_options=so, compression="gzip")
    out = convert(f"s3://{BUCKET}/conv.h5", f"s3://{BUCKET}/conv.lance", storage_options=so, tag="v-h5")
    assert out["version"] == 1
    convert(f"s3://{BUCKET}/conv.lance", tmp_path / "back.mp4", storage_options=so,
                    dst_storage_options=None, version="v-h5")
    convert(tmp_path / "back.mp4", f"s3://{BUCKET}/conv.mp4", dst_storage_options=so)
    convert(f"s3://{BUCKET}/conv.mp4", tmp_path / "back.lance", storage_options=so, dst_storage_options=None)
    a, b = open_dataset(local), open_dataset(tmp_path / "back.lance")
    ra, rb = a.read_rows(np.arange(a.num_rows)), b.read_rows(np.arange(b.num_rows))
    for c in a.columns:
        np.testing.assert_array_equal(ra[c], rb[c], err_msg=c)  # raw -> HDF5 -> Lance -> lossless MP4: exact


def test_server_restart_mid_epoch_is_retried(server, so, tmp_path):
    eps = episodes(lengths=(40, 40, 40), seed=2)
    local, remote = tmp_path / "l.lance", f"s3://{BUCKET}/restart.lance"
    write(local, eps)
    write(remote, eps, so)
    wl = WindowDataset(local, split="all")
    wr = WindowDataset(remote, split="all", storage_options=so)
    order = np.random.default_rng(0).permutation(len(wr))[:48].reshape(6, 8)
    first = wr.__getitems__(order[0].tolist())  # the Lance handle is open and has read data
    no_retry = WindowDataset(remote, split="all", storage_options=dict(so, client_max_retries="0"))
    no_retry.__getitems__(order[0].tolist())
    server.stop()
    with pytest.raises(Exception, match=f"127.0.0.1:{server.port}"):  # without retries the outage is fatal
        no_retry.__getitems__(order[1].tolist())
    restarter = threading.Timer(1.0, server.start)
    restarter.start()
    try:
        batches = [first] + [wr.__getitems__(b.tolist()) for b in order[1:]]  # server down for ~1 s
    finally:
        restarter.join()
    assert server.proc is not None and server.proc.poll() is None
    for b, batch in zip(order, batches):
        for i, sample in zip(b, batch):
            expected = wl[int(i)]
            for c in ("pixels", "action", "proprio"):
                torch.testing.assert_close(sample[c], expected[c], rtol=0, atol=0, equal_nan=True)


def test_unreachable_endpoint_names_it(tmp_path):
    port = free_port()  # nothing listens there
    so = s3_storage_options(f"http://127.0.0.1:{port}", "a", "b", max_retries=1, retry_timeout=1)
    expected = ConnectionError
    with pytest.raises(expected, match=f"127.0.0.1:{port}"):
        open_dataset(f"s3://{BUCKET}/x.lance", storage_options=so)
    with pytest.raises(ConnectionError, match=f"S3 endpoint http://127.0.0.1:{port}"):
        convert(f"s3://{BUCKET}/x.lance", tmp_path / "x.h5", storage_options=so)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        S3File(f"s3://{BUCKET}/x.h5", so, retries=1)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):  # not "a corrupted HDF5 file"
        convert(f"s3://{BUCKET}/x.h5", tmp_path / "y.lance", storage_options=so)
    local = tmp_path / "l.lance"
    write(local, episodes(lengths=(12,)))
    for name in ("x.h5", "x.mp4"):  # an unreachable destination, too
        with pytest.raises(ConnectionError, match=f"S3 endpoint http://127.0.0.1:{port}"):
            convert(local, f"s3://{BUCKET}/{name}", dst_storage_options=so)
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.lance").exists()


def test_failed_folder_overwrite_never_reads_as_complete(so, tmp_path, monkeypatch):
    old, new = tmp_path / "old.lance", tmp_path / "new.lance"
    write(old, episodes(lengths=(26, 23, 30), seed=3))
    write(new, episodes(lengths=(26, 23), seed=4))
    dst = f"s3://{BUCKET}/replaced.mp4"
    convert(old, dst, dst_storage_options=so)
    real_client = s3_client

    def failing_client(storage_options):  # the third uploaded file fails: the new folder is half written
        client, calls = real_client(storage_options), []
        real_upload = client.upload_file

        def upload_file(*args, **kwargs):
            calls.append(args)
            if len(calls) == 3:
                raise ConnectionError("simulated outage mid-upload")
            return real_upload(*args, **kwargs)

        client.upload_file = upload_file
        return client

    monkeypatch.setattr(output, "s3_client", failing_client)
    with pytest.raises(ConnectionError, match="mid-upload"):
        convert(new, dst, dst_storage_options=so, overwrite=True)
    monkeypatch.setattr(output, "s3_client", real_client)
    with pytest.raises(ValueError, match="has no swm_mp4.json"):  # no mix of old and new episodes
        convert(dst, tmp_path / "mixed.lance", storage_options=so)
    convert(new, dst, dst_storage_options=so, overwrite=True)  # a complete replacement: only the new files
    convert(dst, tmp_path / "back.lance", storage_options=so)
    back = open_dataset(tmp_path / "back.lance")
    assert back.num_episodes == 2 and back.episode_lengths.tolist() == [26, 23]
    listed = real_client(so).list_objects_v2(Bucket=BUCKET, Prefix="replaced.mp4/")["Contents"]
    assert not [o["Key"] for o in listed if "episode_000002" in o["Key"]], "the old folder's third episode stayed"


def test_convert_script_with_aws_environment(server, so, tmp_path):
    local = tmp_path / "l.lance"
    write(local, episodes(lengths=(24, 22), seed=3))
    env = dict(os.environ, AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
               AWS_REGION="us-east-1")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), "--src", str(local), "--dst",
                        f"s3://{BUCKET}/cli.lance", "--tag", "cli"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    ds = open_dataset(f"s3://{BUCKET}/cli.lance", storage_options=so, version="cli")
    assert ds.episode_lengths.tolist() == [24, 22]


def test_window_dataset_from_aws_environment(server, so, monkeypatch):
    write(f"s3://{BUCKET}/env.lance", episodes(lengths=(25,), seed=4), so)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    wd = WindowDataset(f"s3://{BUCKET}/env.lance", split="all")  # no storage_options passed
    assert len(wd) == 5 and wd[0]["pixels"].shape == (4, 16, 16, 3)
