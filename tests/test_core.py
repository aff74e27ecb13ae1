"""FoV spaces, env registration, reset options, no-op policies."""

import numpy as np
import pytest
import torch

from swm_core.spaces import RGB, Box, Discrete, VariationSpace


def make_space():
    return VariationSpace({
        "agent": {"color": RGB((255, 0, 0)), "scale": Box(20, 60, default=40), "shape": Discrete(3, 0, ["o", "x", "+"])},
        "background": {"color": RGB((255, 255, 255))},
        "start": Box(0, 10, shape=(2,)),
    })


def test_resolve_parent_all_and_unknown():
    space = make_space()
    assert space.resolve(["agent"]) == ["agent.color", "agent.scale", "agent.shape"]
    assert space.resolve("all") == space.keys()
    assert space.resolve(["background.color", "start"]) == ["background.color", "start"]
    with pytest.raises(ValueError, match=r"unknown variation key 'agent.size'.*'agent.scale'"):
        space.resolve(["agent.size"])


def test_values_for_episode_adds_to_defaults_and_is_seeded():
    space = make_space()
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    base = space.values_for_episode(["start"], {}, rng())
    assert np.all(base["agent.color"] == [255, 0, 0]) and base["agent.scale"] == 40
    more = space.values_for_episode(["start"], {"variation": ["agent.scale"]}, rng())
    # the default variation (start) is still sampled when another key is requested
    assert not np.allclose(more["start"], space["start"].default)
    assert 20 <= more["agent.scale"] <= 60 and more["agent.scale"] != 40
    again = space.values_for_episode(["start"], {"variation": ["agent.scale"]}, rng())
    for key in more:
        np.testing.assert_array_equal(more[key], again[key])
    exact = space.values_for_episode([], {"variation_values": {"agent.color": [1, 2, 3], "agent.shape": "x"}}, rng())
    assert exact["agent.color"].tolist() == [1, 2, 3] and exact["agent.color"].dtype == np.uint8
    assert exact["agent.shape"] == 1


def test_out_of_range_and_bad_values_name_the_range():
    space = make_space()
    with pytest.raises(ValueError, match=r"'agent.scale'.*outside the allowed range \[20.0, 60.0\]"):
        space.validate({"agent.scale": 61})
    with pytest.raises(ValueError, match=r"'agent.color'.*\[0.0, 0.0, 0.0\]"):
        space.validate({"agent.color": [256, 0, 0]})
    with pytest.raises(ValueError, match=r"'agent.shape'.*not one of \['o', 'x', '\+'\]"):
        space.validate({"agent.shape": "square"})
    with pytest.raises(ValueError, match="expected shape"):
        space.validate({"start": [1, 2, 3]})
    with pytest.raises(ValueError, match="unknown variation key 'nope'"):
        space.validate({"nope": 1})


def test_sampling_covers_range():
    leaf = Box(-1, 1, shape=(1000,))
    x = leaf.sample(np.random.default_rng(0))
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.5
    d = Discrete(4).sample(np.random.default_rng(0))
    assert d.dtype == np.int64 and 0 <= d < 4


def test_native_env_ids_win_over_another_packages_registration():
    """The stable-worldmodel package registers swm/TwoRoom-v1 too; importing swm_core.envs puts ours back."""
    import importlib
    import warnings

    import gymnasium as gym

    import swm_core.envs

    del gym.registry["swm/TwoRoom-v1"]
    gym.register(id="swm/TwoRoom-v1", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(swm_core.envs)
    assert gym.registry["swm/TwoRoom-v1"].entry_point == "swm_core.envs.two_room:TwoRoomEnv"
    assert any("CartPoleEnv" in str(w.message) for w in caught)


def test_integer_leaves_and_variation_options_are_checked():
    space = VariationSpace({"wall": {"thickness": Box(2, 10, default=4, dtype=np.int64)}})
    assert space.validate({"wall.thickness": 7.0})["wall.thickness"] == 7
    with pytest.raises(ValueError, match=r"variation 'wall.thickness': value 7.9 must be whole numbers"):
        space.validate({"wall.thickness": 7.9})
    with pytest.raises(ValueError, match=r"options\['variation'\] names the keys to sample.*options\['variation_values'\]"):
        space.values_for_episode((), {"variation": {"wall.thickness": 5}}, np.random.default_rng(0))


def test_env_reset_options_are_checked_and_infos_are_copies():
    import gymnasium as gym

    import swm_core.envs  # noqa: F401

    env = gym.make("swm/TwoRoom-v1", image_size=16, disable_env_checker=True).unwrapped
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) \['variatons'\]; allowed: \['goal_pixels'"):
        env.reset(seed=0, options={"variatons": ["agent.color"]})
    with pytest.raises(ValueError, match=r"options\['goal_state'\] must be finite with the state's shape \(2,\)"):
        env.reset(seed=0, options={"goal_state": [1.0]})
    with pytest.raises(ValueError, match=r"options\['goal_pixels'\] must be a \(16, 16, 3\) frame, got shape \(3, 3\)"):
        env.reset(seed=0, options={"goal_pixels": np.zeros((3, 3))})
    _, info = env.reset(seed=0)
    info["variation"]["agent.color"][:] = 0  # editing a returned info leaves the env's FoV record alone
    assert env.variation["agent.color"].tolist() != [0, 0, 0]


def test_noop_policy_on_discrete_spaces_and_bad_action_blocks():
    import gymnasium as gym

    from swm_core import MPCPolicy, NoOpPolicy

    infos = {"step_idx": np.zeros(3)}
    noop = NoOpPolicy()
    noop.set_action_space(gym.spaces.Discrete(4, start=5))
    assert noop.get_actions(infos).tolist() == [5, 5, 5]  # index 0 of the space, inside it
    noop.set_action_space(gym.spaces.MultiDiscrete([3, 3]))
    assert noop.get_actions(infos).tolist() == [[0, 0]] * 3
    with pytest.raises(RuntimeError, match="NoOpPolicy has no action space"):
        NoOpPolicy().get_actions(infos)
    with pytest.raises(ValueError, match="action_block must be >= 1 env steps per model step, got 0"):
        MPCPolicy(torch.nn.Linear(1, 1), solver=None, action_block=0)

