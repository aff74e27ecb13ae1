"""Converters: exact round trips, LeRobot folders, stable-worldmodel layouts, versions, failures, bad input, CLI."""

import contextlib
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import av
import h5py
import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simplejpeg

from swm_core.convert import (
    convert,
    hdf5_to_lance,
    lance_to_hdf5,
    lance_to_mp4,
    lerobot_to_lance,
    mp4_to_lance,
)
from swm_core.convert.mp4 import MP4_MANIFEST
from swm_core.data import WindowDataset, open_dataset
from swm_core.lance_writer import LanceWriter
from swm_core.video import VideoReader, read_video

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16


def moving_square(T: int, size: int = SIZE, ep: int = 0) -> np.ndarray:
    """Smooth background plus a bright square that moves 2 px per step: neighbouring frames differ a lot."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((T, size, size, 3), np.uint8)
    for t in range(T):
        base = 90 + 40 * np.sin((xx + 3 * ep) / 5.0) * np.cos(yy / 6.0)
        img = np.stack([base, 200 - base, 0.5 * base + 30 + 10 * ep], -1)
        x0 = (2 * t + 3 * ep) % (size - 4)
        img[4:8, x0 : x0 + 4] = (250, 250, 40)
        frames[t] = img.astype(np.uint8)
    return frames


def episode(ep: int, T: int, rng) -> dict:
    action = rng.normal(size=(T, 2)).astype(np.float32)
    action[-1] = np.nan
    return {
        "pixels": moving_square(T, ep=ep),
        "goal": np.repeat(moving_square(1, ep=ep + 7), T, axis=0),  # one goal per episode: equal JPEG sizes
        "action": action,
        "proprio": rng.normal(size=(T, 4)).astype(np.float32),
        "sim_state": rng.normal(size=(T, 3)),  # float64 column
        "success": rng.random(T) > 0.5,
        "reward": rng.normal(size=T).astype(np.float32),
        "count": np.arange(T, dtype=np.int64) * 3,
        "variation.agent.color": np.tile(np.array([ep, 2, 3], np.uint8), (T, 1)),
    }


def make_lance(path, encoding="raw", lengths=(12, 9, 15), seed=0) -> list[dict]:
    rng = np.random.default_rng(seed)
    eps = [episode(e, T, rng) for e, T in enumerate(lengths)]
    with LanceWriter(path, env_id="swm/PushT-v1", encoding=encoding, control_hz=10, fov_keys=["agent.color"]) as w:
        for ep in eps:
            w.add_episode(ep)
    return eps


def read_all(path, version=None) -> tuple:
    ds = open_dataset(path, version=version)
    return ds, ds.read_rows(np.arange(ds.num_rows))


def assert_same_dataset(a_path, b_path, image_tol: float = 0.0):
    a, ra = read_all(a_path)
    b, rb = read_all(b_path)
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    assert a.episode_lengths.tolist() == b.episode_lengths.tolist()
    for k in ("env_id", "control_hz", "fov_keys", "image_columns", "shapes"):
        assert a.metadata[k] == b.metadata[k], k
    for c in a.columns:
        if c in a.image_columns and image_tol > 0:
            err = np.abs(ra[c].astype(int) - rb[c].astype(int))
            assert err.mean() <= image_tol, (c, err.mean())
        else:
            np.testing.assert_array_equal(ra[c], rb[c], err_msg=c)


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compression,level,chunk_rows", [("lzf", None, 1), ("gzip", 4, 3), (None, None, 2)])
def test_lance_hdf5_lance_raw_is_exact(tmp_path, compression, level, chunk_rows):
    src, h5, back = tmp_path / "a.lance", tmp_path / "a.h5", tmp_path / "b.lance"
    make_lance(src, "raw")
    lance_to_hdf5(src, h5, compression=compression, compression_level=level, chunk_rows=chunk_rows)
    with h5py.File(h5) as f:
        assert f["pixels"].shape == (36, SIZE, SIZE, 3) and f["pixels"].dtype == np.uint8
        assert f["pixels"].chunks == (chunk_rows, SIZE, SIZE, 3)
        assert f["pixels"].compression == compression
        if level is not None:
            assert f["pixels"].compression_opts == level
        assert f["ep_len"][:].tolist() == [12, 9, 15] and f["ep_len"].dtype == np.int32
        assert f["ep_offset"][:].tolist() == [0, 12, 21] and f["ep_offset"].dtype == np.int64
        assert f["sim_state"].dtype == np.float64 and f["count"].dtype == np.int64 and f["success"].dtype == bool
        assert f["variation__agent__color"].shape == (36, 3)
    hdf5_to_lance(h5, back)
    assert_same_dataset(src, back)
    assert open_dataset(back).metadata["encoding"] == "raw"


def test_lance_hdf5_lance_jpeg_keeps_jpeg(tmp_path):
    src, h5, back = tmp_path / "a.lance", tmp_path / "a.h5", tmp_path / "b.lance"
    eps = make_lance(src, "jpeg")
    lance_to_hdf5(src, h5)
    with h5py.File(h5) as f:
        assert f["pixels"].attrs["encoding"] == "jpeg" and f["pixels"].shape == (36,)
        first = f["pixels"][0].tobytes()
    original = lance.dataset(src).take([0], columns=["pixels"]).column(0)[0].as_py()
    assert first == original  # the JPEG bytes are copied, not re-encoded
    hdf5_to_lance(h5, back)
    assert_same_dataset(src, back, image_tol=1.0)
    frames = open_dataset(back).read_episode(2, ["pixels"])["pixels"]
    assert np.abs(frames.astype(int) - eps[2]["pixels"]).mean() < 3  # within JPEG error of the true frames


def test_raw_frames_encode_with_the_chosen_jpeg_subsampling(tmp_path):
    src = tmp_path / "raw.lance"
    make_lance(src, "raw")
    convert(src, tmp_path / "a.lance", encoding="jpeg", jpeg_subsampling="420")
    convert(src, tmp_path / "a.h5", encoding="jpeg", jpeg_subsampling="4:2:2")
    blobs = lance.dataset(tmp_path / "a.lance").to_table(columns=["pixels"]).column(0).to_pylist()
    assert {simplejpeg.decode_jpeg_header(b)[3] for b in blobs} == {"420"}
    assert open_dataset(tmp_path / "a.lance").metadata["jpeg_subsampling"] == "420"
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["pixels"].attrs["jpeg_subsampling"] == "422"
        assert simplejpeg.decode_jpeg_header(f["pixels"][3].tobytes())[3] == "422"
    convert(tmp_path / "a.h5", tmp_path / "b.lance")  # JPEG bytes copied: the source's subsampling kept
    assert open_dataset(tmp_path / "b.lance").metadata["jpeg_subsampling"] == "422"
    convert(tmp_path / "a.lance", tmp_path / "b.h5", jpeg_subsampling="444")  # copied, so still 4:2:0
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["pixels"].attrs["jpeg_subsampling"] == "420"
        assert simplejpeg.decode_jpeg_header(f["pixels"][0].tobytes())[3] == "420"
    with pytest.raises(ValueError, match="jpeg_subsampling must be one of"):
        convert(src, tmp_path / "c.h5", encoding="jpeg", jpeg_subsampling="411")
    assert not (tmp_path / "c.h5").exists()


def test_jpeg_bytes_and_float64_survive_round_trips(tmp_path):
    src, h5, back = tmp_path / "a.lance", tmp_path / "a.h5", tmp_path / "b.lance"
    make_lance(src, "jpeg")
    convert(src, h5)
    convert(h5, back)
    a, b = lance.dataset(src).to_table(), lance.dataset(back).to_table()
    assert a.column("pixels").equals(b.column("pixels")) and a.column("goal").equals(b.column("goal"))
    h5_64 = tmp_path / "f64.h5"
    cols = write_swm_hdf5(h5_64, [22, 21])
    with h5py.File(h5_64, "a") as f:
        f["state"] = np.random.default_rng(0).normal(size=(43, 3))  # float64
    convert(h5_64, tmp_path / "f64.lance")
    ds = open_dataset(tmp_path / "f64.lance")
    with h5py.File(h5_64) as f:
        np.testing.assert_array_equal(ds.read_rows(np.arange(43), ["state"])["state"], f["state"][:])
    assert ds.schema.field("state").type.value_type == pa.float64() and cols["action"].dtype == np.float32


def test_staged_writer_commits_everything_or_nothing(tmp_path):
    path = tmp_path / "staged.lance"
    rng = np.random.default_rng(0)
    eps = [episode(e, 10, rng) for e in range(4)]
    with pytest.raises(RuntimeError, match="boom"):
        with LanceWriter(path, encoding="raw", max_buffer_bytes=1, fov_keys=["agent.color"]) as w:
            for ep in eps:
                w.add_episode(ep)  # each episode goes to disk right away (buffer limit 1 byte)
            raise RuntimeError("boom")
    assert list((path / "data").glob("*.lance"))  # the episodes did reach the disk before the failure
    with pytest.raises(FileNotFoundError):
        open_dataset(path)  # data files were written, but no version references them
    with LanceWriter(path, encoding="raw", max_buffer_bytes=1, fov_keys=["agent.color"]) as w:
        for ep in eps:
            w.add_episode(ep)
    ds = open_dataset(path)
    assert ds.version == 1 and ds.num_episodes == 4
    np.testing.assert_array_equal(ds.read_episode(3, ["pixels"])["pixels"], eps[3]["pixels"])


def test_hdf5_raw_from_jpeg_decodes(tmp_path):
    src, h5 = tmp_path / "a.lance", tmp_path / "a.h5"
    make_lance(src, "jpeg")
    convert(src, h5, encoding="raw")
    ds = open_dataset(src)
    with h5py.File(h5) as f:
        np.testing.assert_array_equal(f["pixels"][:], ds.read_rows(np.arange(36), ["pixels"])["pixels"])


def test_lance_mp4_lance_lossless_is_exact(tmp_path):
    src, mp4, back = tmp_path / "a.lance", tmp_path / "a.mp4", tmp_path / "b.lance"
    make_lance(src, "raw")
    lance_to_mp4(src, mp4, gop=4)
    manifest = json.loads((mp4 / MP4_MANIFEST).read_text())
    assert manifest["lossless"] and manifest["gop"] == 4 and manifest["lengths"] == [12, 9, 15]
    videos = sorted(p.name for p in (mp4 / "videos" / "pixels").iterdir())
    assert videos == ["episode_000000.mp4", "episode_000001.mp4", "episode_000002.mp4"]
    mp4_to_lance(mp4, back)
    assert_same_dataset(src, back)


def test_lance_mp4_lance_lossy_within_codec_error(tmp_path):
    src, mp4, back = tmp_path / "a.lance", tmp_path / "a.mp4", tmp_path / "b.lance"
    eps = make_lance(src, "jpeg")
    convert(src, mp4, crf=12)
    assert not json.loads((mp4 / MP4_MANIFEST).read_text())["lossless"]
    convert(mp4, back)
    assert_same_dataset(src, back, image_tol=4.0)
    got = open_dataset(back).read_episode(1, ["pixels"])["pixels"].astype(int)
    truth = eps[1]["pixels"].astype(int)
    err_same = np.abs(got - truth).mean(axis=(1, 2, 3))
    err_next = np.abs(got[:-1] - truth[1:]).mean(axis=(1, 2, 3))
    assert (err_same < 5).all() and (err_same[:-1] < err_next).all()  # frame t decodes to frame t


def test_video_reader_random_access_matches_sequential(tmp_path):
    src, mp4 = tmp_path / "a.lance", tmp_path / "a.mp4"
    make_lance(src, "raw", lengths=(30,))
    convert(src, mp4, gop=5)
    video = mp4 / "videos" / "pixels" / "episode_000000.mp4"
    everything = read_video(video)
    reader = VideoReader(video)
    idx = [17, 3, 29, 3, 0, 11, 12, 25]
    np.testing.assert_array_equal(reader.read(idx), everything[idx])
    np.testing.assert_array_equal(reader.read([28, 1]), everything[[28, 1]])


def test_column_selection(tmp_path):
    src, h5 = tmp_path / "a.lance", tmp_path / "a.h5"
    make_lance(src, "raw")
    convert(src, h5, columns=["pixels", "action"])
    with h5py.File(h5) as f:
        assert sorted(f.keys()) == ["action", "ep_len", "ep_offset", "episode_idx", "pixels", "step_idx"]


# ------------------------------------------------------------------------------------ stable-worldmodel


def write_swm_hdf5(path, lengths, channel_first=False, seed=0) -> dict:
    """The stable-worldmodel HDF5 layout: raw uint8 pixels, float32 columns, ep_len/ep_offset, no metadata."""
    rng = np.random.default_rng(seed)
    N = sum(lengths)
    pixels = np.concatenate([moving_square(T, ep=e) for e, T in enumerate(lengths)])
    cols = {
        "pixels": pixels.transpose(0, 3, 1, 2).copy() if channel_first else pixels,
        "action": rng.normal(size=(N, 2)).astype(np.float32),
        "proprio": rng.normal(size=(N, 2)).astype(np.float32),
        "reward": rng.normal(size=N).astype(np.float32),
        "terminated": np.zeros(N, bool),
        "step_idx": np.concatenate([np.arange(T) for T in lengths]).astype(np.int64),
        "ep_idx": np.concatenate([np.full(T, e) for e, T in enumerate(lengths)]).astype(np.int64),
    }
    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            f.create_dataset(k, data=v)
        f.create_dataset("ep_len", data=np.asarray(lengths, np.int32))
        f.create_dataset("ep_offset", data=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    cols["pixels"] = pixels
    return cols


@pytest.mark.parametrize("channel_first", [False, True])
def test_stable_worldmodel_hdf5_converts_losslessly(tmp_path, channel_first):
    h5, dst = tmp_path / "pusht.h5", tmp_path / "pusht.lance"
    lengths = [25, 31]
    cols = write_swm_hdf5(h5, lengths, channel_first)
    out = convert(h5, dst)
    assert out["episodes"] == 2 and out["rows"] == 56
    ds = open_dataset(dst)
    assert ds.metadata["encoding"] == "raw" and ds.episode_lengths.tolist() == lengths
    rows = ds.read_rows(np.arange(56))
    for k in ("pixels", "action", "proprio", "reward", "terminated", "ep_idx"):
        np.testing.assert_array_equal(rows[k], cols[k], err_msg=k)
    np.testing.assert_array_equal(rows["step_idx"], cols["step_idx"])
    wd = WindowDataset(dst, num_steps=4, frameskip=5, columns=("pixels", "action", "proprio"), split="all")
    start = 25 + 3  # episode 1, step 3
    sample = wd[int(np.flatnonzero(wd.window_starts == start)[0])]
    frames = start + np.arange(4) * 5
    np.testing.assert_array_equal(sample["pixels"].numpy(), cols["pixels"][frames])
    np.testing.assert_array_equal(sample["proprio"].numpy(), cols["proprio"][frames])
    np.testing.assert_array_equal(sample["action"].numpy(), cols["action"][start : start + 20].reshape(4, 10))


def test_stable_worldmodel_lance_readable_and_convertible(tmp_path):
    path = tmp_path / "swm.lance"
    lengths = [22, 21]
    rng = np.random.default_rng(3)
    N = sum(lengths)
    frames = np.concatenate([moving_square(T, ep=e) for e, T in enumerate(lengths)])

    def f32(x):
        x = np.asarray(x, np.float32).reshape(N, -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])

    action, proprio = rng.normal(size=(N, 2)), rng.normal(size=(N, 3))
    table = pa.table({
        "episode_idx": pa.array(np.concatenate([np.full(T, e) for e, T in enumerate(lengths)]).astype(np.int32)),
        "step_idx": pa.array(np.concatenate([np.arange(T) for T in lengths]).astype(np.int32)),
        "pixels": pa.array([simplejpeg.encode_jpeg(f, quality=95) for f in frames], type=pa.binary()),
        "proprio": f32(proprio), "action": f32(action), "terminated": f32(np.zeros(N)),
    })
    lance.write_dataset(table, path)
    wd = WindowDataset(path, num_steps=2, frameskip=5, split="all")  # read directly
    s = wd[0]
    np.testing.assert_array_equal(s["action"].numpy(), action[:10].astype(np.float32).reshape(2, 10))
    assert np.abs(s["pixels"].numpy().astype(int) - frames[[0, 5]]).mean() < 3

    h5, back = tmp_path / "swm.h5", tmp_path / "back.lance"
    convert(path, h5)
    convert(h5, back)
    a, b = open_dataset(path), open_dataset(back)
    ra, rb = a.read_rows(np.arange(N)), b.read_rows(np.arange(N))
    for c in ("episode_idx", "step_idx", "proprio", "action", "terminated"):
        np.testing.assert_array_equal(ra[c], rb[c], err_msg=c)
    assert b.schema.field("terminated").type == a.schema.field("terminated").type
    assert np.abs(ra["pixels"].astype(int) - rb["pixels"]).mean() <= 1.0


@pytest.fixture
def gym_registry_kept():
    """Importing stable_worldmodel registers its own swm/* envs under our ids; later tests must get ours back."""
    import gymnasium as gym

    saved = dict(gym.envs.registry)
    yield
    gym.envs.registry.clear()
    gym.envs.registry.update(saved)


def test_layouts_match_the_stable_worldmodel_package(tmp_path, gym_registry_kept):
    """Against the installed package (the optional `peers` extra): its readers load our JPEG Lance and HDF5 files
    window for window as ours do, and we read the files its own writers produce."""
    swm_pkg = pytest.importorskip("stable_worldmodel.data")
    pytest.importorskip("stable_worldmodel.data.hdf5")  # needs hdf5plugin
    import torch

    lengths = [26, 31]
    eps = make_lance(tmp_path / "raw.lance", lengths=lengths, seed=4)
    convert(tmp_path / "raw.lance", tmp_path / "ours.lance", encoding="jpeg")
    convert(tmp_path / "raw.lance", tmp_path / "ours.h5")  # defaults: raw uint8, 1-frame chunks, lzf
    keys = dict(frameskip=5, num_steps=3, keys_to_load=["pixels", "action", "proprio"])
    for ours, theirs in [
        (WindowDataset(tmp_path / "ours.lance", 3, 5, split="all"), swm_pkg.LanceDataset(tmp_path / "ours.lance", **keys)),
        (WindowDataset(tmp_path / "raw.lance", 3, 5, split="all"), swm_pkg.HDF5Dataset(path=tmp_path / "ours.h5", **keys)),
    ]:
        clip = {int(theirs.offsets[e]) + int(t): i for i, (e, t) in enumerate(theirs.clip_indices)}
        picks = [0, 7, len(ours) - 1]
        batch = ours.batch(picks)
        for i, j in enumerate(picks):
            got = theirs[clip[int(ours.window_starts[j])]]
            torch.testing.assert_close(got["pixels"].permute(0, 2, 3, 1), batch["pixels"][i], rtol=0, atol=0)
            torch.testing.assert_close(got["action"], batch["action"][i], rtol=0, atol=0)
            torch.testing.assert_close(got["proprio"], batch["proprio"][i], rtol=0, atol=0)

    # its writers -> our readers
    episodes = [{k: list(ep[k]) for k in ("pixels", "action", "proprio", "reward")} for ep in eps]  # it takes lists
    with swm_pkg.LanceWriter(tmp_path / "theirs.lance", mode="overwrite") as w:
        w.write_episodes(episodes)
    with swm_pkg.HDF5Writer(tmp_path / "theirs.h5", mode="overwrite") as w:
        w.write_episodes(episodes)
    convert(tmp_path / "theirs.h5", tmp_path / "from_h5.lance")
    for path, tol in ((tmp_path / "theirs.lance", 6.0), (tmp_path / "from_h5.lance", 0)):
        ds = open_dataset(path)
        assert ds.episode_lengths.tolist() == lengths
        rows = ds.read_rows(np.arange(sum(lengths)), ["pixels", "action", "proprio", "reward"])
        for k in ("action", "proprio", "reward"):
            want = np.concatenate([ep[k] for ep in eps]).astype(np.float32)
            np.testing.assert_array_equal(rows[k].reshape(want.shape), want, err_msg=k)
        frames = np.concatenate([ep["pixels"] for ep in eps])
        assert np.abs(rows["pixels"].astype(int) - frames).mean() <= tol  # PIL JPEG q95 in its Lance files


# ------------------------------------------------------------------------------------------------ LeRobot


def encode_video(path: Path, frames: np.ndarray, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        s.options = {"crf": "10", "g": "6", "bf": "0"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_lerobot(root: Path, version: str, lengths=(26, 23), fps=10, seed=0) -> dict:
    """A LeRobot-layout folder (v2.1: a parquet and an mp4 per episode; v3.0: episodes share files)."""
    rng = np.random.default_rng(seed)
    cams = ("observation.images.top", "observation.images.wrist")
    features = {
        "observation.images.top": {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]},
        "observation.images.wrist": {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [2]},
        "action": {"dtype": "float32", "shape": [2]},
        "next.reward": {"dtype": "float32", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]},
        "frame_index": {"dtype": "int64", "shape": [1]},
        "timestamp": {"dtype": "float32", "shape": [1]},
        "index": {"dtype": "int64", "shape": [1]},
    }
    truth = {"frames": {}, "wrist": {}, "state": {}, "action": {}}
    tables = []
    start = 0
    for e, T in enumerate(lengths):
        state = rng.normal(size=(T, 2)).astype(np.float32)
        action = rng.normal(size=(T, 2)).astype(np.float32)
        truth["frames"][e], truth["wrist"][e] = moving_square(T, ep=e), moving_square(T, ep=e + 5)
        truth["state"][e], truth["action"][e] = state, action
        list_type = pa.list_(pa.float32()) if version.startswith("v2") else pa.list_(pa.float32(), 2)
        tables.append(pa.table({
            "observation.state": pa.array(list(state), type=list_type),
            "action": pa.array(list(action), type=list_type),
            "next.reward": pa.array(rng.normal(size=T).astype(np.float32)),
            "episode_index": pa.array(np.full(T, e, np.int64)),
            "frame_index": pa.array(np.arange(T, dtype=np.int64)),
            "timestamp": pa.array((np.arange(T) / fps).astype(np.float32)),
            "index": pa.array(start + np.arange(T, dtype=np.int64)),
        }))
        start += T
    info = {"codebase_version": version, "fps": fps, "chunks_size": 1000, "total_episodes": len(lengths),
            "total_frames": sum(lengths), "features": features, "robot_type": "test"}
    if version.startswith("v2"):
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        for e, t in enumerate(tables):
            (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
            pq.write_table(t, root / "data" / "chunk-000" / f"episode_{e:06d}.parquet")
            for cam, key in zip(cams, ("frames", "wrist")):
                encode_video(root / "videos" / "chunk-000" / cam / f"episode_{e:06d}.mp4", truth[key][e], fps)
        (root / "meta").mkdir(parents=True, exist_ok=True)
        (root / "meta" / "episodes.jsonl").write_text(
            "\n".join(json.dumps({"episode_index": e, "length": T}) for e, T in enumerate(lengths)))
    else:
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables[::-1]), root / "data" / "chunk-000" / "file-000.parquet")  # unsorted
        for cam, key in zip(cams, ("frames", "wrist")):
            encode_video(root / "videos" / cam / "chunk-000" / "file-000.mp4",
                         np.concatenate([truth[key][e] for e in range(len(lengths))]), fps)
        rows = []
        t0 = 0.0
        for e, T in enumerate(lengths):
            row = {"episode_index": e, "length": T, "data/chunk_index": 0, "data/file_index": 0}
            for cam in cams:
                row.update({f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": 0,
                            f"videos/{cam}/from_timestamp": t0, f"videos/{cam}/to_timestamp": t0 + T / fps})
            rows.append(row)
            t0 += T / fps
        (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return truth


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_lerobot_to_lance_windows_match(tmp_path, version):
    root, dst = tmp_path / "lerobot", tmp_path / "lr.lance"
    truth = make_lerobot(root, version)
    out = lerobot_to_lance(root, dst, camera_key="observation.images.wrist", encoding="raw")
    assert out["episodes"] == 2 and out["rows"] == 49
    ds = open_dataset(dst)
    assert ds.metadata["control_hz"] == 10 and ds.episode_lengths.tolist() == [26, 23]
    assert {"pixels", "proprio", "action", "next__reward", "timestamp", "index"} <= set(ds.columns)
    wd = WindowDataset(dst, num_steps=4, frameskip=5, columns=("pixels", "action", "proprio"), split="all")
    assert len(wd) == (26 - 20) + (23 - 20)  # windows need t + num_steps * frameskip <= L - 1
    for i in range(len(wd)):
        start = int(wd.window_starts[i])
        e, t = (0, start) if start < 26 else (1, start - 26)
        s = wd[i]
        frames = t + np.arange(4) * 5
        np.testing.assert_array_equal(s["action"].numpy(), truth["action"][e][t : t + 20].reshape(4, 10))
        np.testing.assert_array_equal(s["proprio"].numpy(), truth["state"][e][frames])
        err = np.abs(s["pixels"].numpy().astype(int) - truth["wrist"][e][frames]).mean()
        assert err < 3, (i, err)  # the wrist camera, within codec error
    default = lerobot_to_lance(root, tmp_path / "top.lance")  # first camera, JPEG
    top = open_dataset(tmp_path / "top.lance").read_episode(1, ["pixels"])["pixels"]
    assert default["episodes"] == 2 and np.abs(top.astype(int) - truth["frames"][1]).mean() < 4


def test_lerobot_bad_keys_and_lengths(tmp_path):
    root = tmp_path / "lerobot"
    make_lerobot(root, "v2.1")
    with pytest.raises(ValueError, match="observation.images.side.*available"):
        lerobot_to_lance(root, tmp_path / "x.lance", camera_key="observation.images.side")
    with pytest.raises(ValueError, match="observation.joint"):
        lerobot_to_lance(root, tmp_path / "x.lance", state_key="observation.joint")
    (root / "meta" / "episodes.jsonl").write_text('{"episode_index": 0, "length": 30}\n{"episode_index": 1, "length": 23}')
    with pytest.raises(ValueError, match="episode 0 has 26 rows.*length 30"):
        lerobot_to_lance(root, tmp_path / "x.lance")
    assert not (tmp_path / "x.lance").exists()


def test_lerobot_v3_needs_each_episodes_video_segment(tmp_path):
    root = tmp_path / "v3"
    make_lerobot(root, "v3.0")
    meta_file = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    rows = pq.read_table(meta_file).to_pylist()
    cam = "observation.images.top"
    rows[1][f"videos/{cam}/to_timestamp"] -= 0.5  # episode 1's segment ends 5 frames before its rows do
    pq.write_table(pa.Table.from_pylist(rows), meta_file)
    with pytest.raises(ValueError, match=r"episode 1 \(camera 'observation.images.top'\) has frames up to .* but its "
                                         r"video segment ends at .*mismatched episode lengths"):
        lerobot_to_lance(root, tmp_path / "x.lance", encoding="raw")
    shutil.rmtree(root / "meta" / "episodes")  # without it every episode would read the shared file from 0 s
    with pytest.raises(ValueError, match=rf"episode 0 has no 'videos/{cam}/from_timestamp' in meta/episodes/"):
        lerobot_to_lance(root, tmp_path / "x.lance", encoding="raw")
    assert not (tmp_path / "x.lance").exists()


def test_round_trips_keep_episode_ids_and_float_widths(tmp_path):
    n = 20  # two episodes with ids 5 and 9 (a subset of a larger dataset) and a float16 column
    frame = simplejpeg.encode_jpeg(np.full((8, 8, 3), 90, np.uint8), quality=95)
    table = pa.table({"episode_idx": pa.array(np.repeat([5, 9], 10).astype(np.int32)),
                      "step_idx": pa.array(np.tile(np.arange(10), 2).astype(np.int32)),
                      "pixels": pa.array([frame] * n, pa.binary()),
                      "action": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(2 * n, dtype=np.float32)), 2),
                      "half": pa.array(np.linspace(-2, 2, n).astype(np.float16))})
    src = tmp_path / "s.lance"
    lance.write_dataset(table, src)
    convert(src, tmp_path / "b.h5")
    convert(src, tmp_path / "b.mp4")
    for mid in ("", "b.h5", "b.mp4"):
        dst = tmp_path / f"{mid or 'direct'}.lance"
        convert(tmp_path / mid if mid else src, dst)
        ds = open_dataset(dst)
        assert ds.episode_ids.tolist() == [5, 9], mid
        assert lance.dataset(dst).schema.field("half").type == pa.float16(), mid
        np.testing.assert_array_equal(ds.read_rows(np.arange(n), ["half"])["half"], np.linspace(-2, 2, n).astype(np.float16))
    convert(src, tmp_path / "direct.lance", append=True)  # an append continues after the last id
    assert open_dataset(tmp_path / "direct.lance").episode_ids.tolist() == [5, 9, 10, 11]
    with LanceWriter(tmp_path / "w.lance", encoding="raw") as w:
        assert w.add_episode({"action": np.zeros((3, 2), np.float32)}, episode_id=4) == 4
        with pytest.raises(ValueError, match=r"episode_id 2 must be >= 5: ids up to 4 are taken"):
            w.add_episode({"action": np.zeros((3, 2), np.float32)}, episode_id=2)
        assert w.add_episode({"action": np.zeros((3, 2), np.float32)}) == 5
        assert w.next_episode_id == 6


# --------------------------------------------------------------------------------------- versions and tags


def test_version_tag_and_checkout(tmp_path):
    h5a, h5b, dst = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "d.lance"
    write_swm_hdf5(h5a, [22, 21], seed=0)
    write_swm_hdf5(h5b, [23], seed=1)
    v1 = convert(h5a, dst, tag="first")["version"]
    with pytest.raises(FileExistsError, match="append"):
        convert(h5b, dst)
    v2 = convert(h5b, dst, append=True, tag="second")["version"]
    assert v2 == v1 + 1
    assert open_dataset(dst, version="first").num_episodes == 2
    assert open_dataset(dst, version="second").num_episodes == 3 and open_dataset(dst).version == v2
    out = convert(dst, tmp_path / "v1.h5", version="first")
    assert out["episodes"] == 2
    with h5py.File(tmp_path / "v1.h5") as f:
        assert f["ep_len"][:].tolist() == [22, 21]
    with pytest.raises(ValueError, match="no version 'third'"):
        convert(dst, tmp_path / "v3.h5", version="third")
    assert not (tmp_path / "v3.h5").exists()
    # a taken or invalid tag fails before the append is committed (a retry would otherwise add the episodes twice)
    with pytest.raises(ValueError, match="already has a tag 'first'"):
        convert(h5b, dst, append=True, tag="first")
    with pytest.raises(ValueError, match=r"tag 'bad tag/x' is not a valid tag name; allowed: ASCII letters"):
        convert(h5b, dst, append=True, tag="bad tag/x")
    assert open_dataset(dst).version == v2 and open_dataset(dst).num_episodes == 3
    with pytest.raises(ValueError, match="not a valid tag name"):
        convert(h5b, tmp_path / "new.lance", tag="v.lock")
    assert not (tmp_path / "new.lance").exists()


# ----------------------------------------------------------------------------------- failures, bad input


def corrupt_second_episode(h5_path):
    with h5py.File(h5_path, "a") as f:
        blob = np.frombuffer(b"\xff\xd8\xff\xe0 not a jpeg", np.uint8)
        f["pixels"][int(f["ep_offset"][1]) + 2] = blob


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("dst_name", ["out.lance", "out.h5", "out.mp4"])
def test_failed_conversion_leaves_no_destination(tmp_path, dst_name):
    src, h5 = tmp_path / "a.lance", tmp_path / "a.h5"
    make_lance(src, "jpeg")
    convert(src, h5)  # JPEG bytes in HDF5
    corrupt_second_episode(h5)
    dst = tmp_path / dst_name
    with pytest.raises(ValueError, match=r"a\.h5.*pixels.*episode 1|episode 1.*pixels"):
        convert(h5, dst, encoding="raw")
    assert not dst.exists() and no_partials(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "out.lance")


def test_failed_overwrite_keeps_the_old_file(tmp_path):
    src, h5, out = tmp_path / "a.lance", tmp_path / "a.h5", tmp_path / "out.h5"
    make_lance(src, "jpeg")
    convert(src, h5)
    convert(src, out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        convert(src, out)
    corrupt_second_episode(h5)
    with pytest.raises(ValueError, match="pixels"):
        convert(h5, out, encoding="raw", overwrite=True)
    assert out.read_bytes() == before and no_partials(tmp_path)


def test_failed_append_commits_nothing(tmp_path):
    src, h5, dst = tmp_path / "a.lance", tmp_path / "a.h5", tmp_path / "d.lance"
    make_lance(src, "jpeg")
    convert(src, h5)
    convert(src, dst)
    corrupt_second_episode(h5)
    with pytest.raises(ValueError, match="pixels"):
        convert(h5, dst, append=True, encoding="jpeg")
    ds = open_dataset(dst)
    assert ds.version == 1 and ds.num_episodes == 3


def test_truncated_and_corrupted_files(tmp_path):
    src, h5 = tmp_path / "a.lance", tmp_path / "a.h5"
    make_lance(src, "raw")
    convert(src, h5, compression=None)
    data = h5.read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated.h5"):
        convert(bad, tmp_path / "t.lance")
    assert not (tmp_path / "t.lance").exists()
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ValueError, match="garbage.h5.*not a readable HDF5"):
        convert(garbage, tmp_path / "g.lance")

    mp4 = tmp_path / "a.mp4"
    convert(src, mp4)
    video = mp4 / "videos" / "goal" / "episode_000001.mp4"
    video.write_bytes(video.read_bytes()[:200])
    with pytest.raises(ValueError, match="episode_000001.mp4"):
        convert(mp4, tmp_path / "m.lance")
    assert not (tmp_path / "m.lance").exists()
    (mp4 / MP4_MANIFEST).unlink()  # an incomplete folder is not mistaken for a dataset
    with pytest.raises(ValueError, match="unknown format|swm_mp4.json"):
        convert(mp4, tmp_path / "m.lance")


def test_truncated_lance_files_and_corrupt_jpegs_are_named(tmp_path):
    src = tmp_path / "a.lance"
    make_lance(src, "jpeg")
    cut = tmp_path / "cut.lance"  # half of its data file is gone
    shutil.copytree(src, cut)
    data_file = sorted((cut / "data").glob("*.lance"))[0]
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    named = r"Lance dataset '.*cut.lance' \(truncated or corrupted files\?\)"
    with pytest.raises(ValueError, match=named):
        open_dataset(cut)
    with pytest.raises(ValueError, match=named):
        WindowDataset(cut, num_steps=2, frameskip=2, split="all")
    with pytest.raises(ValueError, match=named):
        convert(cut, tmp_path / "cut.h5")
    assert not (tmp_path / "cut.h5").exists()

    table = lance.dataset(src).to_table()  # one JPEG of episode 1 replaced by garbage with a JPEG start marker
    pixels = table.column("pixels").to_pylist()
    pixels[12 + 3] = b"\xff\xd8\xff\xe0 not a jpeg"
    table = table.set_column(table.schema.get_field_index("pixels"), table.schema.field("pixels"),
                             pa.array(pixels, pa.binary()))
    bad = tmp_path / "bad.lance"
    lance.write_dataset(table, bad, schema=table.schema)
    windows = WindowDataset(bad, num_steps=1, frameskip=1, split="all", columns=("pixels",))
    frame = r"bad.lance': column 'pixels', episode 1, step 3 \(row 15\): the stored image does not decode"
    with pytest.raises(ValueError, match=frame):
        windows.batch(list(range(len(windows))))
    with pytest.raises(ValueError, match=frame):
        open_dataset(bad).read_rows(np.arange(20), ["pixels"])
    for dst in ("copy.h5", "copy.lance"):  # JPEG bytes copied as they are: their headers are checked
        with pytest.raises(ValueError, match=r"bad.lance: image column 'pixels', episode 1, step 3 is not a readable JPEG"):
            convert(bad, tmp_path / dst)
        assert not (tmp_path / dst).exists()


def test_missing_columns_and_mismatched_lengths(tmp_path):
    src = tmp_path / "a.lance"
    make_lance(src, "raw")
    with pytest.raises(ValueError, match="'nope'"):
        convert(src, tmp_path / "x.h5", columns=["pixels", "nope"])
    h5 = tmp_path / "s.h5"
    write_swm_hdf5(h5, [22, 21])
    with h5py.File(h5, "a") as f:
        del f["ep_len"]
    with pytest.raises(ValueError, match="'ep_len'"):
        convert(h5, tmp_path / "x.lance")
    write_swm_hdf5(h5, [22, 21])
    with h5py.File(h5, "a") as f:
        f["ep_len"][1] = 25
    with pytest.raises(ValueError, match="mismatched episode lengths"):
        convert(h5, tmp_path / "x.lance")
    write_swm_hdf5(h5, [22, 21])
    with h5py.File(h5, "a") as f:
        short = f["proprio"][:-3]
        del f["proprio"]
        f["proprio"] = short
    with pytest.raises(ValueError, match="'proprio' has 40 rows"):
        convert(h5, tmp_path / "x.lance")
    assert not (tmp_path / "x.lance").exists() and not (tmp_path / "x.h5").exists()
    mp4 = tmp_path / "a.mp4"  # an MP4 folder whose manifest or table lost a field
    convert(src, mp4)
    table = pq.read_table(mp4 / "table.parquet")
    pq.write_table(table.drop(["proprio"]), mp4 / "table.parquet")
    with pytest.raises(ValueError, match=r"a.mp4/table.parquet lacks column\(s\) \['proprio'\] that swm_mp4.json lists"):
        convert(mp4, tmp_path / "x.lance")
    pq.write_table(table, mp4 / "table.parquet")
    manifest = json.loads((mp4 / "swm_mp4.json").read_text())
    (mp4 / "swm_mp4.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "lengths"}))
    with pytest.raises(ValueError, match=r"swm_mp4.json is corrupted: it lacks \['lengths'\]"):
        convert(mp4, tmp_path / "x.lance")
    assert not (tmp_path / "x.lance").exists()


def test_unknown_formats(tmp_path):
    src = tmp_path / "a.lance"
    make_lance(src, "raw")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="unknown format.*notes.txt"):
        convert(txt, tmp_path / "x.lance")
    with pytest.raises(ValueError, match="unknown format.*out.xyz"):
        convert(src, tmp_path / "out.xyz")
    with pytest.raises(ValueError, match="unknown destination format 'parquet'"):
        convert(src, tmp_path / "out", dst_format="parquet")
    with pytest.raises(ValueError, match="unknown source format 'zarr'"):
        convert(src, tmp_path / "x.h5", src_format="zarr")
    with pytest.raises(FileNotFoundError, match="missing.lance"):
        convert(tmp_path / "missing.lance", tmp_path / "x.h5")
    with pytest.raises(ValueError, match="compression must be one of"):
        convert(src, tmp_path / "x.h5", compression="zstd")
    assert not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------------------------------------- CLI


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def run_cli_here(monkeypatch, capsys, *args) -> str:
    """The script in this process (no interpreter start-up): its stdout."""
    monkeypatch.setattr(sys, "argv", ["convert.py", *map(str, args)])
    with pytest.raises(SystemExit) if "--list-versions" in args or ("--tag" in args and "--dst" not in args) \
            else contextlib.nullcontext():
        runpy.run_path(str(ROOT / "scripts" / "convert.py"), run_name="__main__")
    return capsys.readouterr().out


def test_convert_script_end_to_end(tmp_path, monkeypatch, capsys):
    src = tmp_path / "a.lance"
    make_lance(src, "raw", lengths=(12, 9))
    r = run_cli("--src", src, "--dst", tmp_path / "a.h5", "--compression", "gzip", "--compression-level", "1")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["pixels"].compression == "gzip" and f["pixels"].compression_opts == 1
    r = run_cli("--src", tmp_path / "a.h5", "--dst", tmp_path / "c.xyz")
    assert r.returncode != 0 and "unknown format" in r.stderr and not (tmp_path / "c.xyz").exists()

    out = run_cli_here(monkeypatch, capsys, "--src", tmp_path / "a.h5", "--dst", tmp_path / "b.lance", "--tag", "from-h5")
    assert "committed version 1 tagged 'from-h5'" in out
    assert_same_dataset(src, tmp_path / "b.lance")
    run_cli_here(monkeypatch, capsys, "--src", tmp_path / "a.h5", "--dst", tmp_path / "b.lance", "--append")
    assert "from-h5" in run_cli_here(monkeypatch, capsys, "--src", tmp_path / "b.lance", "--list-versions")
    run_cli_here(monkeypatch, capsys, "--src", tmp_path / "b.lance", "--dst", tmp_path / "c.h5", "--version", "from-h5")
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["ep_len"][:].tolist() == [12, 9]  # version 1, not the appended version 2
    out = run_cli_here(monkeypatch, capsys, "--src", tmp_path / "b.lance", "--tag", "again", "--version", "1")
    assert "tagged version 1" in out
    assert open_dataset(tmp_path / "b.lance", version="again").num_episodes == 2
    assert open_dataset(tmp_path / "b.lance").num_episodes == 4
