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
    (("inspect", "missing.lance"), "missing.lance"),
])
def test_bad_input_is_a_clear_error_with_status_2(args, message, tmp_path):
    rc, out, err = swm(*args, cwd=tmp_path)
    assert rc == 2 and "swm: error: " in err and message in err, (rc, err[-500:])
