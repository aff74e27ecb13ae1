"""Black-box Gymnasium envs through World: frames resized, visual wrappers only, FoV and restoring refused clearly,
episodes ending with the env, datasets that load in WindowDataset; ALE ids when ale-py is installed."""

from __future__ import annotations

import importlib.util

import cv2
import gymnasium as gym
import numpy as np
import pytest

from swm_core import RandomPolicy, World
from swm_core.data import WindowDataset, open_dataset

needs_pygame = pytest.mark.skipif(importlib.util.find_spec("pygame") is None,
                                  reason="gymnasium's rgb_array render of classic control needs pygame "
                                         "(pip install -e '.[dev]')")
HAS_ALE = importlib.util.find_spec("ale_py") is not None


class NoRender(gym.Env):
    metadata = {"render_modes": []}
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(2)


gym.register("swm-test/NoRender-v0", entry_point=NoRender)


@needs_pygame
def test_frames_are_the_env_render_resized_and_states_its_observation():
    world = World("CartPole-v1", num_envs=2, image_size=32, max_episode_steps=20)
    world.reset(seed=5)
    ref = gym.make("CartPole-v1", render_mode="rgb_array")
    obs, _ = ref.reset(seed=6)  # World's env 1 gets seed 5 + 1
    expected = cv2.resize(ref.render(), (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(world.infos["pixels"][1], expected)
    np.testing.assert_allclose(world.infos["state"][1], obs)
    assert world.variation_space is None and world.infos["sim_state"].shape == (2, 1)
    world.step(np.array([1, 0]))
    obs, *_ = ref.step(0)
    np.testing.assert_allclose(world.infos["state"][1], obs)


@needs_pygame
def test_visual_wrappers_apply_and_fov_options_are_a_clear_error():
    world = World("Pendulum-v1", image_size=24, wrappers=["grayscale"])
    world.reset(seed=0)
    px = world.infos["pixels"][0].astype(int)
    assert np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2])
    with pytest.raises(ValueError, match=r"no factors of variation \(FoV\).*visual wrappers do"):
        world.reset(seed=0, options={"variation": ["all"]})
    with pytest.raises(ValueError, match="state cannot be restored"):
        world.reset(seed=0, options={"sim_state": [0.0, 0.0]})


@needs_pygame
def test_episodes_end_with_the_env_and_collected_data_loads_in_window_dataset(tmp_path):
    path = tmp_path / "cartpole.lance"
    world = World("CartPole-v1", num_envs=2, image_size=16, max_episode_steps=200)
    world.collect(path, episodes=4, seed=0, policy=RandomPolicy(seed=0), progress=False)
    ds = open_dataset(path)
    assert ds.num_episodes == 4 and ds.metadata["env_id"] == "CartPole-v1" and ds.metadata["fov_keys"] == []
    assert all(length < 100 for length in ds.episode_lengths)  # a random policy drops the pole within ~40 steps
    ep = ds.read_episode(ds.episode_ids[0], ["terminated", "action"])
    assert ep["terminated"][-1] and not ep["terminated"][:-1].any() and ep["action"][-1] == -1
    windows = WindowDataset(path, num_steps=3, frameskip=1, val_fraction=0.0)
    assert len(windows) > 0 and tuple(windows[0]["pixels"].shape) == (3, 16, 16, 3)
    with pytest.raises(ValueError, match="cannot be saved or restored.*dataset-driven"):
        world.evaluate_from_dataset(path, episodes=2, goal_offset=2, policy=RandomPolicy(seed=0))


@needs_pygame
def test_same_seed_same_frames():
    def frames(seed):
        world = World("Pendulum-v1", image_size=16, max_episode_steps=10)
        world.reset(seed=seed)
        out = [world.infos["pixels"][0].copy()]
        for a in np.linspace(-2, 2, 5):
            world.step(np.array([[a]], np.float32))
            out.append(world.infos["pixels"][0].copy())
        return np.stack(out)

    np.testing.assert_array_equal(frames(1), frames(1))
    assert not np.array_equal(frames(1), frames(2))


def test_unknown_ids_and_envs_without_frames_are_clear_errors():
    with pytest.raises(ValueError, match="unknown env id 'Nope-v9'.*rgb_array render"):
        World("Nope-v9")
    with pytest.raises(ValueError, match="has no 'rgb_array' render"):
        World("swm-test/NoRender-v0")


@pytest.mark.skipif(HAS_ALE, reason="ale-py is installed: the missing-package message cannot be seen")
def test_ale_ids_without_ale_py_say_how_to_install():
    with pytest.raises(ValueError, match=r"needs the ale-py package: pip install -e '\.\[atari\]'"):
        World("ALE/Pong-v5")


@pytest.mark.skipif(not HAS_ALE, reason="ale-py is not installed (optional: pip install -e '.[atari]')")
def test_ale_pong_runs_as_a_black_box(tmp_path):
    world = World("ALE/Pong-v5", num_envs=1, image_size=32, max_episode_steps=5)
    world.collect(tmp_path / "pong.lance", episodes=1, policy=RandomPolicy(seed=0), progress=False)
    ds = open_dataset(tmp_path / "pong.lance")
    assert ds.num_rows == 6 and ds.read_rows([0], ["pixels"])["pixels"].shape == (1, 32, 32, 3)
