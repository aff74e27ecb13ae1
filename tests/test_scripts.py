"""scripts/ end to end with tiny flags (CleanRL-style subprocess tests)."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from swm_core.data import open_dataset

ROOT = Path(__file__).resolve().parent.parent


def run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_collect_script_writes_and_appends(tmp_path):
    out = tmp_path / "tr.lance"
    flags = ["scripts/collect.py", "--env-id", "swm/TwoRoom-v1", "--output", str(out), "--episodes", "3",
             "--num-envs", "2", "--max-episode-steps", "12", "--policy", "mix", "--variation", "agent.color"]
    first = run(*flags, "--jpeg-subsampling", "420")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "dataset now holds 3 episodes, 39 rows" in first.stdout
    assert open_dataset(out).metadata["jpeg_subsampling"] == "420"
    second = run(*flags, "--seed", "100")
    assert second.returncode == 0, second.stderr[-2000:]
    ds = open_dataset(out)
    assert ds.num_episodes == 6 and list(ds.episode_ids) == list(range(6))
    assert ds.metadata["env_id"] == "swm/TwoRoom-v1" and "agent.color" in ds.metadata["fov_keys"]
    colors = ds.read_rows(ds.episode_offsets, ["variation__agent__color"])["variation__agent__color"]
    assert len({tuple(c) for c in colors}) > 1  # sampled per episode


def test_collect_script_bad_input_is_named(tmp_path):
    bad_env = run("scripts/collect.py", "--env-id", "swm/Nope-v1", "--output", str(tmp_path / "x.lance"))
    assert bad_env.returncode != 0 and "unknown env id 'swm/Nope-v1'" in bad_env.stderr
    bad_key = run("scripts/collect.py", "--output", str(tmp_path / "y.lance"), "--episodes", "1",
                  "--variation", "agent.colour")
    assert bad_key.returncode != 0 and "unknown variation key 'agent.colour'" in bad_key.stderr
    assert not (tmp_path / "y.lance").exists() or open_dataset(tmp_path / "y.lance").num_episodes == 0
    bad_policy = run("scripts/collect.py", "--output", str(tmp_path / "z.lance"), "--policy", "smart")
    assert bad_policy.returncode != 0 and "--policy must be one of" in bad_policy.stderr
    bad_sub = run("scripts/collect.py", "--output", str(tmp_path / "s.lance"), "--jpeg-subsampling", "4:1:1")
    assert bad_sub.returncode != 0 and "jpeg_subsampling must be one of ('444', '422', '420'), got '4:1:1'" in bad_sub.stderr
    assert not (tmp_path / "s.lance").exists()


def test_env_speed_benchmark_runs(tmp_path):
    out = run("benchmarks/env_speed.py", "--quick", "--episodes", "2", "--max-episode-steps", "10",
              "--out-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "swm/PushT-v1" in out.stdout and (tmp_path / "env_speed.json").exists()
    assert np.isfinite(float(out.stdout.split("swm/TwoRoom-v1")[1].split()[1].replace(",", "")))


def test_data_throughput_benchmark_runs(tmp_path):
    """Every format written, read back and timed (1 thread and 2 threads, local and the local S3 server)."""
    out = run("benchmarks/data_throughput.py", "--episodes", "4", "--image-size", "16", "--max-episode-steps", "30",
              "--batch-size", "4", "--batches", "2", "--max-seconds", "0.02", "--threads", "2",
              "--jpeg-subsampling", "420", "--s3-block-size", "65536", "--data-dir", str(tmp_path / "data"),
              "--out-dir", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    report = json.loads((tmp_path / "out" / "data_throughput_16px.json").read_text())
    assert report["args"]["s3_block_size"] == 65536
    measured = {(r["format"], r["cls"], r["source"], r["order"]) for r in report["results"]}
    for fmt in ("lance", "hdf5", "mp4"):
        for cls in ("raw", "compressed"):
            assert {(fmt, cls, s, o) for s in ("local", "cached", "s3") for o in ("random", "sequential")} <= measured
            assert {(fmt, cls, s) for s in ("cached", "s3")} <= {(r["format"], r["cls"], r["source"])
                                                                 for r in report["threaded"] if r["threads"] == 2}
    assert all(r["samples_per_s"] > 0 for r in report["results"] + report["threaded"])
    lossless = [v for v in report["variants"] if v["cls"] == "raw"]
    assert lossless and all(v["options"]["psnr_db"] is None for v in lossless)  # raw classes are bit-exact
    jpeg = {v["format"]: v["codec"] for v in report["variants"] if v["codec"].startswith("JPEG")}
    assert jpeg == {"lance": "JPEG q95 420", "hdf5": "JPEG q95 420 bytes (vlen)"}
    assert "2 threads, one process" in out.stdout and (tmp_path / "out" / "data_throughput_16px.png").exists()
    bad = run("benchmarks/data_throughput.py", "--s3-block-size", "0", "--data-dir", str(tmp_path / "bad"))
    said = " ".join(bad.stderr.replace("│", " ").split())  # tyro boxes and wraps the error
    assert bad.returncode != 0 and "--s3-block-size must be a positive number of bytes, got 0" in said
    assert not (tmp_path / "bad").exists()


def test_interrupted_collect_keeps_commits_and_rerun_appends(tmp_path):
    out = tmp_path / "killed.lance"
    flags = ["scripts/collect.py", "--env-id", "swm/TwoRoom-v1", "--output", str(out), "--num-envs", "1",
             "--max-episode-steps", "20", "--commit-every", "2", "--policy", "random"]
    proc = subprocess.Popen([sys.executable, *flags, "--episodes", "100000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait for a couple of commits, then kill it mid-run
            if (out / "_versions").exists() and len(list((out / "_versions").iterdir())) >= 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("collect made no commit within 120 s")
    finally:
        proc.kill()
        proc.wait()
    ds = open_dataset(out)
    kept = ds.num_episodes
    assert kept >= 2 and kept % 2 == 0  # whole commits only
    assert all(length == 21 for length in ds.episode_lengths)
    rerun = run(*flags, "--episodes", "3", "--seed", "500")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ds = open_dataset(out)
    assert ds.num_episodes == kept + 3 and list(ds.episode_ids) == list(range(kept + 3))
