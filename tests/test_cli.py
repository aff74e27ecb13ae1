"""The ``swm`` command end to end (``python -m swm_core.cli ...`` in a subprocess), on tiny inputs."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pytest

from swm_core import RandomPolicy, World


def swm(*args, cwd=None):
    out = subprocess.run([sys.executable, "-m", "swm_core.cli", *map(str, args)], capture_output=True, text=True,
                         timeout=300, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out.returncode, out.stdout, out.stderr


def test_envs_fov_and_wrappers_list_what_exists():
    rc, out, err = swm("envs")
    assert rc == 0, err
    assert "swm/Pendulum-v1" in out and "swm/CartPole-v1" in out and "FoV leaves 12" in out
    rc, out, err = swm("fov", "swm/Pendulum-v1")
    assert rc == 0, err
    assert "physics.gravity" in out and "Box[5.0, 15.0]" in out and "default 10.0" in out and "['goal.angle']" in out
    rc, out, err = swm("wrappers")
    assert rc == 0, err
    assert "noise" in out and "std=" in out and "chroma_key" in out and "background (required)" in out


def test_preview_writes_a_png_grid_of_frames_and_goals(tmp_path):
    path = tmp_path / "grid.png"
    rc, out, err = swm("preview", "swm/CartPole-v1", "--variation", "cart", "--wrapper", "noise:std=5",
                       "--frames", "3", "--image-size", "32", "--out", path)
    assert rc == 0, err
    img = cv2.imread(str(path))
    assert img.shape == (64, 96, 3)
    assert not (img[:32, :32] == img[:32, 32:64]).all()  # sampled cart colours/sizes differ between episodes


def test_preview_writes_a_gif_of_the_episodes_moving_above_their_goals(tmp_path):
    import numpy as np
    from PIL import Image, ImageSequence

    rc, out, err = swm("preview", "swm/Pendulum-v1", "--frames", "2", "--image-size", "16", "--gif-steps", "5",
                       "--out", tmp_path / "p.png")
    assert rc == 0, err
    assert "wrote" in out and (tmp_path / "p.png").exists()
    gif = Image.open(tmp_path / "p.gif")
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3) and gif.info["duration"] == 50  # 20 Hz control
    png = cv2.cvtColor(cv2.imread(str(tmp_path / "p.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(frames[0].astype(int) - png).mean() < 8  # the GIF opens on the PNG's frames (palette-quantised)
    assert not np.array_equal(frames[0][:16], frames[-1][:16])  # the pendulums moved
    assert all(np.abs(f[16:].astype(int) - png[16:]).mean() < 8 for f in frames)  # the goals stay
    rc, out, err = swm("preview", "swm/Pendulum-v1", "--frames", "1", "--image-size", "16", "--gif-steps", "0",
                       "--out", tmp_path / "q.png")
    assert rc == 0 and (tmp_path / "q.png").exists() and not (tmp_path / "q.gif").exists(), err


def test_inspect_and_convert_a_tiny_dataset(tmp_path):
    path = tmp_path / "tiny.lance"
    World("swm/Pendulum-v1", image_size=16, max_episode_steps=4).collect(
        path, episodes=2, policy=RandomPolicy(seed=0), progress=False)
    rc, out, err = swm("inspect", path, "--verify")
    assert rc == 0, err
    assert "2 episodes, 10 rows" in out and "'swm/Pendulum-v1'" in out and "physics.gravity" in out
    rc, out, err = swm("convert", path, tmp_path / "tiny.h5")
    assert rc == 0, err
    assert "converted 2 episodes (10 rows) lance -> hdf5" in out and (tmp_path / "tiny.h5").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("fov", "Nope-v1"), "unknown env id 'Nope-v1'"),
    (("fov", "CartPole-v1"), "black-box Gymnasium env with no factors of variation"),
    (("preview", "swm/Pendulum-v1", "--wrapper", "nope"), "unknown visual wrapper 'nope'"),
    (("preview", "swm/Pendulum-v1", "--wrapper", "noise:nope=1"), "unknown parameter(s) ['nope']"),
    (("preview", "swm/Pendulum-v1", "--variation", "pole.nope"), "unknown variation key 'pole.nope'"),
    (("preview", "swm/Pendulum-v1", "--gif-steps", "-1"), "gif_steps must be >= 0 (0 = no GIF), got -1"),
    (("inspect", "missing.lance"), "missing.lance"),
])
def test_bad_input_is_a_clear_error_with_status_2(args, message, tmp_path):
    rc, out, err = swm(*args, cwd=tmp_path)
    assert rc == 2 and "swm: error: " in err and message in err, (rc, err[-500:])
