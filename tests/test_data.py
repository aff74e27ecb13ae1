"""Lance data layer: exact round trips, dtypes, windows, splits, appends, crashes, errors, legacy layout."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest
import simplejpeg
import torch

from swm_core.data import ColumnNotFoundError, WindowDataset, open_dataset, split_episodes
from swm_core.lance_writer import LanceWriter, tag_version

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16


def step_episode(ep: int, T: int, size: int = SIZE, action_dim: int = 2) -> dict:
    """An episode whose values identify (episode, step): frame pixels = 10*ep + step (mod 256), etc."""
    steps = np.arange(T)
    frames = np.empty((T, size, size, 3), np.uint8)
    frames[:] = ((10 * ep + steps) % 256).astype(np.uint8)[:, None, None, None]
    frames[:, 0, 0, 1] = ep  # recognisable episode marker
    action = np.stack([steps + 0.25 * j + 1000 * ep for j in range(action_dim)], 1).astype(np.float32)
    action[-1] = np.nan  # the last row has no action
    proprio = np.stack([steps, np.full(T, ep), -steps], 1).astype(np.float32)
    return {"pixels": frames, "action": action, "proprio": proprio}


def smooth_frames(T: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((T, size, size, 3), np.uint8)
    for t in range(T):
        cx, cy = rng.uniform(0, size, 2)
        base = 128 + 80 * np.sin((xx - cx) / 7.0) * np.cos((yy - cy) / 9.0)
        frames[t] = np.stack([base, 255 - base, 0.5 * base + 40], -1).astype(np.uint8)
    return frames


def write(path, episodes, **kwargs) -> list[int]:
    with LanceWriter(path, **kwargs) as w:
        return [w.add_episode(e) for e in episodes]


# ------------------------------------------------------------------------------------------- round trips


def test_raw_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "raw.lance"
    eps = []
    for T in [7, 12, 5]:
        eps.append(
            {
                "pixels": rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8),
                "goal": rng.integers(0, 256, (T, 8, 6, 1), dtype=np.uint8),
                "action": rng.normal(size=(T, 2)).astype(np.float32),
                "proprio": rng.normal(size=(T, 4)).astype(np.float32),
            }
        )
    ids = write(path, eps, env_id="swm/PushT-v1", encoding="raw", control_hz=10)
    assert ids == [0, 1, 2]

    ds = open_dataset(path)
    assert ds.num_episodes == 3 and ds.num_rows == 24
    assert ds.episode_lengths.tolist() == [7, 12, 5]
    assert ds.episode_offsets.tolist() == [0, 7, 19]
    assert ds.episode_ids.tolist() == [0, 1, 2]
    assert ds.metadata["encoding"] == "raw" and ds.metadata["control_hz"] == 10
    assert ds.metadata["env_id"] == "swm/PushT-v1" and ds.metadata["image_size"] == SIZE
    assert sorted(ds.metadata["image_columns"]) == ["goal", "pixels"]
    for e, ep in enumerate(eps):
        got = ds.read_episode(e)
        for k, v in ep.items():
            np.testing.assert_array_equal(got[k], v)
        assert got["step_idx"].tolist() == list(range(len(ep["action"])))
        assert set(got["episode_idx"].tolist()) == {e}

    # unsorted rows with repeats come back in the order asked
    rows = [20, 3, 3, 8, 0]
    got = ds.read_rows(rows, ["pixels", "action"])
    all_pixels = np.concatenate([e["pixels"] for e in eps])
    all_actions = np.concatenate([e["action"] for e in eps])
    np.testing.assert_array_equal(got["pixels"], all_pixels[rows])
    np.testing.assert_array_equal(got["action"], all_actions[rows])


def test_jpeg_round_trip_within_codec_error(tmp_path):
    path = tmp_path / "jpeg.lance"
    frames = [smooth_frames(6, 64, seed) for seed in range(2)]
    write(path, [{"pixels": f, "action": np.zeros((6, 2), np.float32)} for f in frames])
    ds = open_dataset(path)
    assert ds.metadata["encoding"] == "jpeg"
    assert pa.types.is_binary(ds.schema.field("pixels").type)
    for e in range(2):
        got = ds.read_episode(e, ["pixels"])["pixels"]
        assert got.dtype == np.uint8 and got.shape == frames[e].shape
        err = np.abs(got.astype(np.int16) - frames[e]).mean()
        assert 0 < err < 3, err  # lossy, but close


def test_jpeg_subsampling_420_is_smaller_and_still_close(tmp_path):
    frames = smooth_frames(6, 64, seed=3)
    size, err = {}, {}
    for sub in ("444", "420"):
        path = tmp_path / f"{sub}.lance"
        write(path, [{"pixels": frames, "action": np.zeros((6, 2), np.float32)}], jpeg_subsampling=sub)
        ds = open_dataset(path)
        assert ds.metadata["jpeg_subsampling"] == sub
        blobs = lance.dataset(path).to_table(columns=["pixels"]).column("pixels").to_pylist()
        assert {simplejpeg.decode_jpeg_header(b)[3] for b in blobs} == {sub}  # what the file really holds
        size[sub] = sum(map(len, blobs))
        err[sub] = np.abs(ds.read_episode(0, ["pixels"])["pixels"].astype(np.int16) - frames).mean()
    assert size["420"] < 0.8 * size["444"] and err["444"] < err["420"] < 4, (size, err)
    # frames given as JPEG bytes are stored as they are, and the metadata says what their headers say
    given = np.array([simplejpeg.encode_jpeg(f, 95, colorsubsampling="420") for f in frames], dtype=object)
    write(tmp_path / "given.lance", [{"pixels": given, "action": np.zeros((6, 2), np.float32)}])
    assert open_dataset(tmp_path / "given.lance").metadata["jpeg_subsampling"] == "420"
    write(tmp_path / "mixed.lance", [{"pixels": given, "goal": frames, "action": np.zeros((6, 2), np.float32)}])
    assert open_dataset(tmp_path / "mixed.lance").metadata["jpeg_subsampling"] == "mixed"
    with pytest.raises(ValueError, match=r"jpeg_subsampling must be one of \('444', '422', '420'\), got '411'"):
        LanceWriter(tmp_path / "bad.lance", jpeg_subsampling="411")
    assert not (tmp_path / "bad.lance").exists()


def test_dtypes_are_preserved(tmp_path):
    T = 5
    path = tmp_path / "dtypes.lance"
    episode = {
        "count": np.arange(T, dtype=np.int64) * 3_000_000_000,  # needs int64
        "grid": np.arange(T * 2, dtype=np.int32).reshape(T, 2),
        "success": np.array([False, False, True, False, True]),
        "contacts": np.zeros((T, 3), bool),
        "reward": np.linspace(0, 1, T),  # float64 scalar -> float32
        "sim_state": np.linspace(0, 1, T * 3).reshape(T, 3) + 1e-12,  # float64 kept
        "variation.agent.color": np.tile(np.array([[255, 0, 7]], np.uint8), (T, 1)),
        "variation.block.scale": np.full(T, 40.5, np.float32),
    }
    write(path, [episode], fov_keys=["agent.color", "block.scale"])
    ds = open_dataset(path)
    types = {f.name: f.type for f in ds.schema}
    assert types["episode_idx"] == pa.int32() and types["step_idx"] == pa.int32()
    assert types["count"] == pa.int64() and types["success"] == pa.bool_() and types["reward"] == pa.float32()
    assert types["grid"] == pa.list_(pa.int32(), 2)
    assert types["contacts"] == pa.list_(pa.bool_(), 3)
    assert types["sim_state"] == pa.list_(pa.float64(), 3)
    assert types["variation__agent__color"] == pa.list_(pa.uint8(), 3)
    assert ds.metadata["fov_keys"] == ["agent.color", "block.scale"]
    assert ds.metadata["image_columns"] == []

    got = ds.read_episode(0)
    assert got["count"].dtype == np.int64 and got["count"].tolist() == episode["count"].tolist()
    assert got["grid"].dtype == np.int32 and got["grid"].tolist() == episode["grid"].tolist()
    assert got["success"].dtype == np.bool_ and got["success"].tolist() == episode["success"].tolist()
    assert got["contacts"].dtype == np.bool_ and got["contacts"].shape == (T, 3)
    assert got["reward"].dtype == np.float32
    assert got["sim_state"].dtype == np.float64
    np.testing.assert_array_equal(got["sim_state"], episode["sim_state"])  # bit-exact float64
    assert got["variation__agent__color"].tolist() == [[255, 0, 7]] * T
    assert got["episode_idx"].dtype == np.int32


# ---------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_windows_return_exact_frames_and_actions(tmp_path, encoding):
    path = tmp_path / f"win_{encoding}.lance"
    lengths = [30, 23]
    write(path, [step_episode(e, T) for e, T in enumerate(lengths)], encoding=encoding)
    num_steps, frameskip = 3, 4
    wd = WindowDataset(path, num_steps, frameskip, columns=("pixels", "action", "proprio"), split="all")
    assert len(wd) == sum(L - num_steps * frameskip for L in lengths)

    expected_windows = [(e, t) for e, L in enumerate(lengths) for t in range(L - num_steps * frameskip)]
    picks = [0, 5, 17, 18, len(wd) - 1, 7]  # includes the first window of episode 1 and the very last one
    samples = wd.__getitems__(picks)
    for i, sample in zip(picks, samples):
        e, t = expected_windows[i]
        frame_steps = t + frameskip * np.arange(num_steps)
        assert sample["pixels"].dtype == torch.uint8 and sample["pixels"].shape == (num_steps, SIZE, SIZE, 3)
        pix = sample["pixels"].numpy().astype(int)
        want = (10 * e + frame_steps) % 256
        tol = 0 if encoding == "raw" else 2
        assert np.abs(pix[:, 5, 5, 0] - want).max() <= tol
        assert np.abs(pix[:, SIZE // 2, :, 2] - want[:, None]).max() <= tol
        # the frameskip actions executed after each frame, concatenated: (num_steps, frameskip * A)
        act = sample["action"].numpy()
        assert act.dtype == np.float32 and act.shape == (num_steps, frameskip * 2)
        rows = frame_steps[:, None] + np.arange(frameskip)[None, :]  # (num_steps, frameskip)
        want_act = np.stack([rows + 1000 * e, rows + 0.25 + 1000 * e], -1).reshape(num_steps, -1)
        np.testing.assert_array_equal(act, want_act)
        assert np.isfinite(act).all()
        np.testing.assert_array_equal(sample["proprio"].numpy()[:, 0], frame_steps)
        np.testing.assert_array_equal(sample["proprio"].numpy()[:, 1], e)
    # __getitem__ agrees with __getitems__
    one = wd[17]
    for k in one:
        torch.testing.assert_close(one[k], samples[2][k], equal_nan=True)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_batch_path_is_exact(tmp_path, encoding):
    """``batch()`` / ``loader()`` (one take, columns in memory, frames decoded once) return exactly the frames and
    actions of the per-sample path and of the rows written (JPEG: the stored bytes decoded)."""
    path = tmp_path / f"fast_{encoding}.lance"
    lengths = [30, 23, 26]
    eps = [step_episode(e, T) for e, T in enumerate(lengths)]
    for e, ep in enumerate(eps):  # textured frames so that JPEG decoding is not trivially exact
        ep["pixels"] = smooth_frames(len(ep["action"]), SIZE, seed=e)
    write(path, eps, encoding=encoding)
    cols = ("pixels", "action", "proprio", "step_idx")
    fast = WindowDataset(path, 3, 4, columns=cols, split="all")
    stored = WindowDataset(path, 3, 4, columns=cols, split="all", in_memory_bytes=0)
    assert fast.memory_columns == ["action", "proprio", "step_idx"] and stored.memory_columns == []
    idx = [40, 3, 17, 3, len(fast) - 1, 18, 19, 0]  # unsorted, a repeat, overlapping windows (shared frames)
    batch = fast.batch(idx)
    assert batch["pixels"].shape == (8, 3, SIZE, SIZE, 3) and batch["action"].shape == (8, 3, 8)
    assert batch["action"].dtype == torch.float32 and batch["step_idx"].dtype == torch.int32
    for k, v in stored.batch(idx).items():
        torch.testing.assert_close(batch[k], v, rtol=0, atol=0)
    for i, j in enumerate(idx):
        sample = fast[j]
        for k in cols:
            torch.testing.assert_close(batch[k][i], sample[k], rtol=0, atol=0)
    td = open_dataset(path)
    for i, j in enumerate(idx):
        start = int(fast.window_starts[j])
        rows = td.read_rows(start + 4 * np.arange(3), ["pixels", "proprio"])  # decodes the stored bytes
        np.testing.assert_array_equal(batch["pixels"][i].numpy(), rows["pixels"])
        np.testing.assert_array_equal(batch["proprio"][i].numpy(), rows["proprio"])
        acts = td.read_rows(start + np.arange(12), ["action"])["action"]
        np.testing.assert_array_equal(batch["action"][i].numpy(), acts.reshape(3, 8))
        if encoding == "raw":  # bit-exact with the frames written
            e = int(np.searchsorted(td.episode_offsets, start, side="right") - 1)
            steps = start - td.episode_offsets[e] + 4 * np.arange(3)
            np.testing.assert_array_equal(batch["pixels"][i].numpy(), eps[e]["pixels"][steps])
    # loader(): the window order of a plain seeded DataLoader, whole batches, the same tensors
    plain = torch.utils.data.DataLoader(fast, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(5))
    whole = fast.loader(batch_size=16, shuffle=True, seed=5)
    assert whole.batch_size is None and len(whole) == len(plain)
    for a, b in zip(plain, whole, strict=True):
        for k in cols:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_loaders_yield_the_windows_of_a_plain_read_byte_for_byte(tmp_path, encoding):
    """Every loader path (``batch()``, ``loader()``, ``loader(threads=N)``, whose reads run ahead of the decoding)
    yields, batch after batch, exactly the windows a plain seeded DataLoader over the window indices visits, and
    each window is byte for byte what a straightforward read of its rows gives: the stored frames decoded one by
    one (or copied, raw), the frameskip actions after each frame, the other columns at the frame rows."""
    path, lengths = tmp_path / f"plain_{encoding}.lance", [30, 23, 26]
    eps = [{"pixels": smooth_frames(T, SIZE, seed=e), "goal": smooth_frames(T, 8, seed=10 + e)[..., :1],
            "action": np.random.default_rng(e).normal(size=(T, 2)).astype(np.float32),
            "proprio": np.random.default_rng(20 + e).normal(size=(T, 3)).astype(np.float32)}
           for e, T in enumerate(lengths)]
    write(path, eps, encoding=encoding)
    rows = lance.dataset(path).to_table().to_pydict()  # the plain read: every row, as Python values

    def image(column, row, shape):
        if encoding == "raw":
            return np.frombuffer(rows[column][row], np.uint8).reshape(shape)
        return simplejpeg.decode_jpeg(rows[column][row], colorspace="RGB" if shape[-1] == 3 else "GRAY")

    def window(start, T, fs):
        frames = start + fs * np.arange(T)
        return {"pixels": np.stack([image("pixels", r, (SIZE, SIZE, 3)) for r in frames]),
                "goal": np.stack([image("goal", r, (8, 8, 1)) for r in frames]),
                "action": np.array(rows["action"][start : start + T * fs], np.float32).reshape(T, -1),
                "proprio": np.array([rows["proprio"][r] for r in frames], np.float32),
                "step_idx": np.array([rows["step_idx"][r] for r in frames], np.int32)}

    cols = ("pixels", "goal", "action", "proprio", "step_idx")
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for T, fs, memory in [(3, 4, 256 << 20), (2, 1, 0), (2, 3, 0)]:  # actions held in memory or read with frames
        wd = WindowDataset(path, T, fs, columns=cols, split="all", in_memory_bytes=memory)
        starts = [o + t for o, L in zip(offsets, lengths) for t in range(L - T * fs)]
        assert len(wd) == len(starts)
        order = torch.utils.data.DataLoader(range(len(wd)), batch_size=16, shuffle=True,
                                            generator=torch.Generator().manual_seed(7))
        expected = [[window(starts[w], T, fs) for w in b.tolist()] for b in order]
        unsorted = [5, 0, 5, len(wd) - 1, 1, 2]  # repeats, neighbours sharing frames
        for got, want in [(wd.batch(unsorted), [window(starts[w], T, fs) for w in unsorted]),
                          *zip(wd.loader(batch_size=16, seed=7), expected, strict=True),
                          *zip(wd.loader(batch_size=16, seed=7, threads=2), expected, strict=True),
                          *zip(wd.loader(batch_size=16, seed=7, threads=1), expected, strict=True)]:
            assert list(got) == list(cols)
            for c in cols:
                a, b = got[c].numpy(), np.stack([w[c] for w in want])
                assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), (T, fs, c)


def test_window_count_matches_brute_force(tmp_path):
    lengths = [1, 6, 7, 8, 12, 21]
    path = tmp_path / "count.lance"
    write(path, [step_episode(e, T, size=4) for e, T in enumerate(lengths)], encoding="raw")
    ds = open_dataset(path)
    for num_steps, frameskip in [(1, 1), (2, 3), (4, 5), (3, 1), (1, 6)]:
        wd = WindowDataset(path, num_steps, frameskip, columns=("action",), split="all")
        # brute force: a start is valid iff every action of the window is real (not the NaN last row)
        brute = 0
        for e in range(len(lengths)):
            act = ds.read_episode(e, ["action"])["action"]
            for t in range(len(act)):
                rows = t + np.arange(num_steps * frameskip)
                if rows[-1] < len(act) and np.isfinite(act[rows]).all():
                    brute += 1
        assert len(wd) == brute == sum(max(0, L - num_steps * frameskip) for L in lengths)
        if len(wd):
            batch = torch.stack([s["action"] for s in wd.__getitems__(range(len(wd)))])
            assert torch.isfinite(batch).all()


def test_split_by_episode_is_disjoint_and_seeded(tmp_path):
    path = tmp_path / "split.lance"
    write(path, [step_episode(e, 12, size=4) for e in range(20)], encoding="raw")
    cols = ("episode_idx", "action")
    train = WindowDataset(path, 2, 2, columns=cols, split="train", val_fraction=0.25, seed=3)
    val = WindowDataset(path, 2, 2, columns=cols, split="val", val_fraction=0.25, seed=3)
    assert len(val.episode_ids) == 5 and len(train.episode_ids) == 15
    assert set(train.episode_ids).isdisjoint(val.episode_ids)
    assert sorted({*train.episode_ids, *val.episode_ids}) == list(range(20))
    assert len(train) + len(val) == 20 * (12 - 4)
    # every window lies inside one episode of its split
    train_eps = {int(s["episode_idx"][0]) for s in train.__getitems__(range(len(train)))}
    val_eps = {int(s["episode_idx"][0]) for s in val.__getitems__(range(len(val)))}
    assert train_eps == set(train.episode_ids.tolist()) and val_eps == set(val.episode_ids.tolist())
    for s in val.__getitems__(range(len(val))):
        assert (s["episode_idx"] == s["episode_idx"][0]).all()
    # seeded: same seed, same split; another seed, another split
    again = WindowDataset(path, 2, 2, columns=cols, split="val", val_fraction=0.25, seed=3)
    assert again.episode_ids.tolist() == val.episode_ids.tolist()
    other = split_episodes(np.arange(20), "val", 0.25, seed=4)
    assert other.tolist() != val.episode_ids.tolist()
    with pytest.raises(ValueError, match="split"):
        WindowDataset(path, split="test", columns=cols)


@pytest.mark.filterwarnings("ignore:lance is not fork-safe")
def test_dataloader_workers_match_single_process(tmp_path):
    path = tmp_path / "dl.lance"
    write(path, [step_episode(e, 15) for e in range(6)], encoding="jpeg")
    wd = WindowDataset(path, 2, 3, split="all", columns=("pixels", "action", "proprio"))
    wd[0]  # the parent holds an open handle: workers must open their own

    single = list(wd.loader(batch_size=8, shuffle=True, num_workers=0, seed=1))
    multi = list(wd.loader(batch_size=8, shuffle=True, num_workers=2, seed=1))
    assert len(single) == len(multi) == -(-len(wd) // 8)
    assert single[0]["pixels"].shape == (8, 2, SIZE, SIZE, 3) and single[0]["action"].shape == (8, 2, 6)
    for a, b in zip(single, multi):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # shuffled and seeded: not the sequential order, and every window once per epoch
    starts = torch.cat([b["proprio"][:, 0, 0] + 100 * b["proprio"][:, 0, 1] for b in single])
    assert sorted(starts.tolist()) != starts.tolist()
    assert len(set(starts.tolist())) == len(wd)


def test_threaded_loader_matches_single_thread(tmp_path):
    path = tmp_path / "threads.lance"
    write(path, [step_episode(e, 15) for e in range(6)], encoding="jpeg")
    wd = WindowDataset(path, 2, 3, split="all", columns=("pixels", "action", "proprio"))
    single = list(wd.loader(batch_size=5, shuffle=True, seed=2))
    loader = wd.loader(batch_size=5, shuffle=True, seed=2, threads=3)
    assert len(loader) == len(single) == -(-len(wd) // 5)
    for epoch in range(2):  # each pass is one epoch, the first in the same order as the single-threaded loader
        threaded = list(loader)
        assert len(threaded) == len(single)
        if epoch == 0:
            for a, b in zip(single, threaded):
                for k in a:
                    torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
        starts = torch.cat([b["proprio"][:, 0, 0] + 100 * b["proprio"][:, 0, 1] for b in threaded])
        assert sorted(starts.tolist()) == sorted(set(starts.tolist())) and len(starts) == len(wd)
    class Tagged(WindowDataset):  # a subclass's own batch() is what the threads run

        def batch(self, indices):
            return {**super().batch(indices), "window": torch.as_tensor(np.asarray(indices))}

    tagged = Tagged(path, 2, 3, split="all", columns=("pixels", "action", "proprio"))
    for a, b in zip(tagged.loader(batch_size=5, shuffle=True, seed=2, threads=2), single, strict=True):
        assert torch.equal(a["pixels"], b["pixels"]) and a["window"].shape == (len(b["pixels"]),)
    # an early break leaves nothing running that a new pass would trip on
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert len(list(loader)) == len(single)
    with pytest.raises(ValueError, match="threads=2 and num_workers=1"):
        wd.loader(threads=2, num_workers=1)
    with pytest.raises(ValueError, match="threads must be >= 0, got -1"):
        wd.loader(threads=-1)
    with pytest.raises(ValueError, match="prefetch_factor"):
        wd.loader(threads=1, prefetch_factor=2)


@pytest.mark.filterwarnings("ignore:lance is not fork-safe")
def test_plain_fork_after_lance_use_fails_clearly(tmp_path):
    """Lance's runtime does not survive fork(): a forked worker must refuse rather than crash or hang."""
    path = tmp_path / "fork.lance"
    write(path, [step_episode(0, 15)], encoding="raw")
    wd = WindowDataset(path, 2, 3, split="all")
    loader = torch.utils.data.DataLoader(wd, batch_size=4, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(RuntimeError, match="forkserver"):
        next(iter(loader))


# ----------------------------------------------------------------------------------- appends and crashes


def test_rerun_appends_with_fresh_episode_ids(tmp_path):
    path = tmp_path / "append.lance"
    assert write(path, [step_episode(e, 8) for e in range(3)], env_id="swm/TwoRoom-v1") == [0, 1, 2]
    v1 = open_dataset(path).version
    assert write(path, [step_episode(e, 9) for e in range(2)], env_id="swm/TwoRoom-v1") == [3, 4]
    ds = open_dataset(path)
    assert ds.version == v1 + 1
    assert ds.episode_ids.tolist() == [0, 1, 2, 3, 4]
    assert ds.episode_lengths.tolist() == [8, 8, 8, 9, 9]
    assert ds.metadata["env_id"] == "swm/TwoRoom-v1"
    np.testing.assert_array_equal(ds.read_episode(4, ["proprio"])["proprio"], step_episode(1, 9)["proprio"])
    # older versions and tags stay readable
    assert open_dataset(path, version=v1).episode_ids.tolist() == [0, 1, 2]
    tag_version(path, "first", v1)
    assert open_dataset(path, version="first").num_episodes == 3
    with pytest.raises(ValueError, match="no version"):
        open_dataset(path, version="missing-tag")


def test_schema_mismatch_on_append_names_the_column(tmp_path):
    path = tmp_path / "mismatch.lance"
    write(path, [step_episode(0, 8)])
    bad_dim = step_episode(1, 8, action_dim=3)
    with pytest.raises(ValueError, match="'action'"):
        write(path, [bad_dim])
    extra = {**step_episode(1, 8), "reward": np.zeros(8, np.float32)}
    with pytest.raises(ValueError, match="reward"):
        write(path, [extra])
    missing = {k: v for k, v in step_episode(1, 8).items() if k != "proprio"}
    with pytest.raises(ValueError, match="proprio"):
        write(path, [missing])
    bigger = step_episode(1, 8, size=SIZE * 2)  # JPEG bytes have one type whatever the size: shape check
    with pytest.raises(ValueError, match="'pixels'"):
        write(path, [bigger])
    with pytest.raises(ValueError, match="encoding"):
        LanceWriter(path, encoding="raw")
    assert open_dataset(path).num_episodes == 1  # nothing was appended


def test_exception_in_with_block_keeps_last_commit(tmp_path):
    path = tmp_path / "crash.lance"
    write(path, [step_episode(e, 6) for e in range(2)])
    with pytest.raises(RuntimeError, match="boom"):
        with LanceWriter(path) as w:
            w.add_episode(step_episode(2, 6))
            raise RuntimeError("boom")
    assert open_dataset(path).episode_ids.tolist() == [0, 1]
    assert write(path, [step_episode(0, 6)]) == [2]


def test_process_killed_mid_commit_leaves_previous_version(tmp_path):
    path = tmp_path / "killed.lance"
    write(path, [step_episode(e, 10) for e in range(2)], encoding="raw")
    v1 = open_dataset(path).version
    child = textwrap.dedent(
        f"""
        import os, sys
        import lance, numpy as np, pyarrow as pa
        sys.path.insert(0, {str(ROOT)!r})
        from swm_core.lance_writer import LanceWriter
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_data import step_episode

        real_write = lance.fragment.write_fragments  # what LanceWriter writes its data files with

        def dying_write(table, uri, **kw):
            def batches():  # dies after Lance has written several data files, before the manifest
                for i, b in enumerate(table.to_batches(max_chunksize=5)):
                    if i == 6:
                        os._exit(17)
                    yield b
            kw["max_rows_per_file"] = 10
            return real_write(pa.RecordBatchReader.from_batches(table.schema, batches()), uri, **kw)

        lance.fragment.write_fragments = dying_write
        with LanceWriter({str(path)!r}, encoding="raw") as w:
            for e in range(4):
                w.add_episode(step_episode(e, 10))
        """
    )
    before = set((path / "data").iterdir())
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert len(set((path / "data").iterdir()) - before) >= 2  # it really died half-way through the write
    ds = open_dataset(path)
    assert ds.version == v1 and ds.episode_ids.tolist() == [0, 1]
    np.testing.assert_array_equal(ds.read_episode(1, ["pixels"])["pixels"], step_episode(1, 10)["pixels"])
    assert write(path, [step_episode(7, 10)], encoding="raw") == [2]
    ds = open_dataset(path)
    assert ds.episode_ids.tolist() == [0, 1, 2] and ds.num_rows == 30
    np.testing.assert_array_equal(ds.read_episode(2, ["action"])["action"], step_episode(7, 10)["action"])


# ------------------------------------------------------------------------------------------------ errors


def test_missing_path_and_column_errors(tmp_path):
    missing = tmp_path / "nope.lance"
    with pytest.raises(FileNotFoundError, match="nope.lance"):
        open_dataset(missing)
    with pytest.raises(FileNotFoundError, match="nope.lance"):
        WindowDataset(missing)
    path = tmp_path / "cols.lance"
    write(path, [step_episode(0, 8)])
    ds = open_dataset(path)
    with pytest.raises(KeyError, match="'velocity'.*available.*pixels"):
        ds.read_rows([0, 1], ["velocity"])
    with pytest.raises(ColumnNotFoundError, match="goal"):
        WindowDataset(path, columns=("pixels", "goal"))
    with pytest.raises(IndexError, match="8"):
        ds.read_rows([8])
    with pytest.raises(ValueError, match="episode 5"):
        ds.read_episode(5)
    with pytest.raises(ValueError, match="encoding"):
        LanceWriter(tmp_path / "x.lance", encoding="png")
    with pytest.raises(ValueError, match="leading length"):
        LanceWriter(tmp_path / "x.lance").add_episode({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="JPEG needs 1 or 3 channels"):
        LanceWriter(tmp_path / "x.lance").add_episode({"pixels": np.zeros((2, 4, 4, 4), np.uint8)})
    with pytest.raises(ValueError, match="fov key 'agent.color'"):
        LanceWriter(tmp_path / "x.lance", fov_keys=["agent.color"]).add_episode({"a": np.zeros(3)})
    with pytest.raises(ValueError, match="num_steps"):
        WindowDataset(path, num_steps=0)
    assert not (tmp_path / "x.lance").exists()  # nothing written by failed writers


# ------------------------------------------------------------------------------ stable-worldmodel layout


def test_reads_stable_worldmodel_layout(tmp_path):
    """Written with pyarrow/lance directly: JPEG binary images, float32 fixed-size lists, no metadata."""
    path = tmp_path / "pusht_expert.lance"
    lengths = [14, 11]
    eps = [step_episode(e, T) for e, T in enumerate(lengths)]

    def f32_list(x):
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])

    tables = []
    for e, ep in enumerate(eps):
        T = len(ep["action"])
        jpegs = [simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality=95) for f in ep["pixels"]]
        tables.append(
            pa.table(
                {
                    "episode_idx": pa.array(np.full(T, e, np.int32)),
                    "step_idx": pa.array(np.arange(T, dtype=np.int32)),
                    "pixels": pa.array(jpegs, type=pa.binary()),
                    "proprio": f32_list(ep["proprio"]),
                    "action": f32_list(ep["action"]),
                    "terminated": f32_list(np.zeros(T)),
                    "goal_state": f32_list(np.ones((T, 5))),
                }
            )
        )
    lance.write_dataset(pa.concat_tables(tables), path)
    assert lance.dataset(path).schema.metadata is None

    ds = open_dataset(path)
    assert ds.metadata["layout"] == "stable-worldmodel"
    assert ds.metadata["image_columns"] == ["pixels"]
    assert ds.metadata["shapes"]["pixels"] == (SIZE, SIZE, 3)
    assert ds.episode_lengths.tolist() == lengths
    got = ds.read_episode(1, ["terminated", "pixels"])
    assert got["terminated"].shape == (11, 1) and got["pixels"].shape == (11, SIZE, SIZE, 3)

    wd = WindowDataset(path, num_steps=2, frameskip=5, split="all")
    assert len(wd) == (14 - 10) + (11 - 10)
    last = wd[len(wd) - 1]  # episode 1, start 0
    np.testing.assert_array_equal(last["action"].numpy()[1], eps[1]["action"][5:10].reshape(-1))
    np.testing.assert_array_equal(last["proprio"].numpy(), eps[1]["proprio"][[0, 5]])
    assert np.abs(last["pixels"].numpy()[:, 8, 8, 0].astype(int) - (10 + np.array([0, 5]))).max() <= 2
    with pytest.raises(ValueError, match="schema mismatch"):  # our writer will not mix layouts
        write(path, [eps[0]])


def test_metadata_is_json_in_schema(tmp_path):
    path = tmp_path / "meta.lance"
    write(path, [step_episode(0, 4)], env_id="swm/PushT-v1", image_size=SIZE, control_hz=10, encoding="raw")
    meta = json.loads(lance.dataset(path).schema.metadata[b"swm"])
    assert meta["env_id"] == "swm/PushT-v1" and meta["image_size"] == SIZE and meta["control_hz"] == 10
    assert meta["encoding"] == "raw" and meta["image_columns"] == ["pixels"] and meta["fov_keys"] == []
    assert meta["shapes"]["pixels"] == [SIZE, SIZE, 3] and meta["shapes"]["action"] == [2]
    assert meta["format_version"] == 1
    assert os.path.isdir(path)


def test_keep_large_allocations_reuses_freed_buffers_instead_of_faulting_new_pages(load_script):
    """Three malloc + fill + free rounds of 64 MiB (what a big batch buffer goes through), in a fresh process:
    by default glibc maps each one anew (16,384 page faults a round); after the call it reuses the first.
    (keep_large_allocations lives in benchmarks/data_throughput.py, its only user.)"""
    code = textwrap.dedent('''
        import ctypes, importlib.util, resource, sys
        spec = importlib.util.spec_from_file_location("data_throughput", sys.argv[2])
        bench = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        keep_large_allocations = bench.keep_large_allocations
        if sys.argv[1] == "keep":
            assert keep_large_allocations()
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        def round_trip(n=64 << 20):
            p = libc.malloc(n)
            ctypes.memset(p, 1, n)
            libc.free(p)
        round_trip()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            round_trip()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    ''')
    faults = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", code, mode, str(ROOT / "benchmarks" / "data_throughput.py")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        faults[mode] = int(out.stdout.split()[-1])
    assert faults["default"] > 3 * 10_000 and faults["keep"] < 1_000, faults
    with pytest.raises(ValueError, match="threshold_bytes must be >= 0, got -1"):
        load_script("benchmarks/data_throughput.py").keep_large_allocations(-1)
