"""Classic-control envs (swm/Pendulum-v1, swm/CartPole-v1, swm/MountainCar-v1,
swm/Acrobot-v1): dynamics, success rule, every FoV leaf, restore from
state, seeding, geometry against gymnasium's own render, collection to Lance, and the scripted experts."""

from __future__ import annotations

import math

import cv2
import gymnasium as gym
import numpy as np
import pytest

import swm_core.envs  # noqa: F401  (registers the ids)
from swm_core import NoOpPolicy, World, expert_policy
from swm_core.data import WindowDataset, open_dataset
from swm_core.envs.acrobot import AcrobotEnv
from swm_core.envs.cartpole import CartPoleEnv
from swm_core.envs.mountain_car import MountainCarEnv
from swm_core.envs.pendulum import PendulumEnv

# per env: class, a start sim_state and action that make every physics leaf matter within 3 steps
CASES = {
    "swm/Pendulum-v1": (PendulumEnv, [1.0, 7.0], [1.0]),
    "swm/CartPole-v1": (CartPoleEnv, [0.3, 1.0, 0.4, 1.5], [1.0]),
    "swm/MountainCar-v1": (MountainCarEnv, [-0.3, 0.065], [1.0]),
    "swm/Acrobot-v1": (AcrobotEnv, [1.0, 0.5, 1.0, -1.0], [1.0]),
}
GOAL_LEAF = {"swm/Pendulum-v1": "goal.angle", "swm/CartPole-v1": "goal.position", "swm/MountainCar-v1": "goal.position",
             "swm/Acrobot-v1": "goal.height"}
IDS = list(CASES)


def make(env_id, values=None, seed=0, image_size=64, **options):
    env = CASES[env_id][0](image_size=image_size)
    _, info = env.reset(seed=seed, options={"variation_values": values or {}, **options})
    return env, info


def run(env, actions):
    frames, states = [], []
    for a in actions:
        _, _, _, _, info = env.step(np.asarray(a, dtype=np.float32))
        frames.append(info["pixels"])
        states.append(info["state"])
    return np.stack(frames), np.stack(states)


def other_value(leaf):
    """A valid value of ``leaf`` unlike its default (the far end of its range)."""
    lo, hi, d = leaf.low, leaf.high, leaf.default.astype(np.float64)
    value = np.where(np.abs(hi - d) >= np.abs(d - lo), hi, lo)
    return value.astype(leaf.dtype)


@pytest.mark.parametrize("env_id", IDS)
def test_registered_and_made_through_world(env_id):
    world = World(env_id, num_envs=2, image_size=32)
    world.reset(seed=0)
    assert world.infos["pixels"].shape == (2, 32, 32, 3) and world.infos["goal"].shape == (2, 32, 32, 3)
    assert world.action_space.shape == (1,)
    world.step(np.zeros((2, 1), np.float32))
    assert world.infos["step_idx"].tolist() == [1, 1]


def test_pendulum_dynamics_match_gymnasium_under_defaults():
    ours, _ = make("swm/Pendulum-v1", sim_state=[2.0, -0.5])
    ref = gym.make("Pendulum-v1").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([2.0, -0.5])
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-1, 1, 1).astype(np.float32)
        ours.step(a)
        ref.step(a * 2.0)  # gymnasium's torque limit is 2, ours is physics.max_torque (default 2) x action
        np.testing.assert_allclose(ours.get_sim_state(), ref.state, rtol=0, atol=1e-6)  # theirs mixes float32


@pytest.mark.filterwarnings("ignore:.*already returned terminated")
def test_cartpole_dynamics_match_gymnasium_under_defaults():
    ours, _ = make("swm/CartPole-v1", sim_state=[0.1, 0.0, 0.05, -0.1])
    ref = gym.make("CartPole-v1").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([0.1, 0.0, 0.05, -0.1])
    rng = np.random.default_rng(0)
    for _ in range(30):
        push = int(rng.integers(2))
        ours.step(np.array([1.0 if push else -1.0], np.float32))  # full force = gymnasium's force_mag 10
        ref.step(push)
        np.testing.assert_allclose(ours.get_sim_state(), ref.state, rtol=0, atol=1e-6)  # theirs mixes float32


def test_mountain_car_dynamics_match_gymnasium_under_defaults():
    ours, _ = make("swm/MountainCar-v1", sim_state=[-0.5, 0.0])
    ref = gym.make("MountainCarContinuous-v0").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([-0.5, 0.0], np.float32)
    rng = np.random.default_rng(0)
    for _ in range(150):  # long enough to hit the left wall and the speed limit
        a = np.sign(ours.get_sim_state()[1:]) if rng.random() < 0.9 else rng.uniform(-1, 1, 1)
        ours.step(a.astype(np.float32))
        ref.step(a.astype(np.float32))
        np.testing.assert_allclose(ours.get_sim_state(), ref.state, rtol=0, atol=1e-5)  # theirs is float32


@pytest.mark.parametrize(("state", "expected"), [([0.45, 0.0], True), ([0.41, 0.07], True), ([0.49, -0.07], True),
                                                 ([0.39, 0.0], False), ([0.51, 0.0], False), ([-0.45, 0.0], False)])
def test_mountain_car_success_rule_on_hand_made_states(state, expected):
    assert MountainCarEnv.is_success(np.array(state), np.array([0.45, 0.0])) is expected
    env, info = make("swm/MountainCar-v1", values={"goal.position": 0.45}, sim_state=state)
    assert info["success"] is expected


def test_acrobot_dynamics_match_gymnasium_under_defaults():
    ours, _ = make("swm/Acrobot-v1", sim_state=[0.05, -0.03, 0.02, 0.01])
    ref = gym.make("Acrobot-v1").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([0.05, -0.03, 0.02, 0.01])
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = int(rng.integers(3))
        ours.step(np.array([a - 1.0], np.float32))  # gymnasium's torques -1, 0, 1 = ours at physics.max_torque 1
        ref.step(a)
        np.testing.assert_allclose(ours.get_sim_state(), ref.state, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("state", "expected"), [([math.pi, 0, 0, 0], True), ([2.2, 0, 0, 0], True),
                                                 ([0, 0, 0, 0], False), ([math.pi / 2, 0.6, 0, 0], False),
                                                 ([2.0, 1.0, 5.0, 5.0], True), ([1.9, 0, 0, 0], False)])
def test_acrobot_success_rule_on_hand_made_states(state, expected):
    """Tip at least as high as the goal's: default goal 0.5 x (1 m + 1 m) = gymnasium's line at 1 m."""
    env, info = make("swm/Acrobot-v1", values={"goal.height": 0.5}, sim_state=state)
    assert env.tip_height(info["goal_state"]) == pytest.approx(1.0, abs=1e-6)
    assert info["success"] is expected


@pytest.mark.parametrize(("theta1", "theta2"), [(0.0, 0.0), (1.0, -0.5), (-2.5, 1.2)])
def test_acrobot_frame_geometry_matches_gymnasium_render(theta1, theta2):
    pytest.importorskip("pygame", reason="gymnasium's rgb_array render needs pygame (pip install -e '.[dev]')")
    ref = gym.make("Acrobot-v1", render_mode="rgb_array").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([theta1, theta2, 0.0, 0.0])
    theirs = cv2.resize(ref.render(), (128, 128), interpolation=cv2.INTER_AREA)
    ours = make("swm/Acrobot-v1", image_size=128, values={"goal.height": 0.5}, sim_state=[theta1, theta2, 0, 0])[0].render()
    masks = [np.all(np.abs(img.astype(int) - (0, 204, 204)) < 40, axis=-1) for img in (theirs, ours)]
    assert (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum() > 0.8  # the links cover the same pixels
    gray = [np.all(img < 230, axis=-1) & (np.ptp(img, axis=-1) < 20) for img in (theirs, ours)]  # not the links
    lines = [np.flatnonzero(g.sum(1) > 100) for g in gray]
    assert abs(lines[0].mean() - lines[1].mean()) < 1.5  # the goal line at 1 m


@pytest.mark.parametrize(("state", "expected"), [
    ([0.0, 0.0], True), ([0.09, 0.4], True), ([-0.09, -0.4], True), ([0.11, 0.0], False), ([0.0, 0.6], False),
    ([2 * math.pi + 0.05, 0.0], True), ([math.pi, 0.0], False),
])
def test_pendulum_success_rule_on_hand_made_states(state, expected):
    env, _ = make("swm/Pendulum-v1", values={"goal.angle": 0.0}, sim_state=state)
    assert env.goal_state.tolist() == [0.0, 0.0]
    assert env.step(np.zeros(1, np.float32))[4]["success"] == PendulumEnv.is_success(env.get_state(), [0, 0])
    assert PendulumEnv.is_success(np.array(state, np.float64), np.zeros(2)) is expected


@pytest.mark.parametrize(("state", "expected"), [
    ([0.5, 0.0, 0.0, 0.0], True), ([0.59, 0.25, 0.09, -0.4], True), ([0.65, 0.0, 0.0, 0.0], False),
    ([0.5, 0.4, 0.0, 0.0], False), ([0.5, 0.0, 0.15, 0.0], False), ([0.5, 0.0, 0.0, 0.6], False),
    ([0.5, 0.0, 2 * math.pi, 0.0], True),
])
def test_cartpole_success_rule_on_hand_made_states(state, expected):
    goal = np.array([0.5, 0.0, 0.0, 0.0])
    assert CartPoleEnv.is_success(np.array(state), goal) is expected
    env, info = make("swm/CartPole-v1", values={"goal.position": 0.5}, sim_state=state)
    assert info["success"] is expected and env.goal_state.tolist() == goal.tolist()


def _leaf_cases():
    return [(env_id, key) for env_id in IDS for key in CASES[env_id][0].variation_space.keys()]


@pytest.mark.parametrize(("env_id", "key"), _leaf_cases())
def test_every_leaf_changes_the_frame_or_the_dynamics_as_named(env_id, key):
    """physics.* leaves change the motion; goal.* leaves the goal; every other leaf the frame only."""
    cls, sim_state, action = CASES[env_id]
    value = other_value(cls.variation_space[key])
    base_values = {GOAL_LEAF[env_id]: cls.variation_space[GOAL_LEAF[env_id]].default}
    a, info_a = make(env_id, values=base_values, sim_state=sim_state)
    b, info_b = make(env_id, values={**base_values, key: value}, sim_state=sim_state)
    frames_a, states_a = run(a, [action] * 3)
    frames_b, states_b = run(b, [action] * 3)
    if key.startswith("physics."):
        assert not np.allclose(states_a, states_b), f"{key} did not change the dynamics"
    elif key.startswith("goal."):
        assert not np.array_equal(info_a["goal_state"], info_b["goal_state"])
        assert not np.array_equal(info_a["goal"], info_b["goal"])
    else:
        np.testing.assert_array_equal(states_a, states_b)
        assert not np.array_equal(frames_a, frames_b), f"{key} did not change the frame"


@pytest.mark.parametrize("env_id", IDS)
def test_restore_from_sim_state_reproduces_the_next_frames(env_id):
    env, _ = make(env_id, seed=3, variation=["all"])
    rng = np.random.default_rng(0)
    run(env, rng.uniform(-1, 1, (7, 1)))
    info = env.step(np.zeros(1, np.float32))[4]
    twin, info_t = make(env_id, seed=99, values=info["variation"], sim_state=info["sim_state"],
                        goal_state=info["goal_state"])
    np.testing.assert_array_equal(info_t["pixels"], info["pixels"])
    np.testing.assert_array_equal(info_t["goal"], info["goal"])
    actions = rng.uniform(-1, 1, (5, 1))
    np.testing.assert_array_equal(run(env, actions)[0], run(twin, actions)[0])


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_frames_other_seed_other_frames(env_id):
    def episode(seed):
        env, info = make(env_id, seed=seed, variation=["all"])
        frames, _ = run(env, np.random.default_rng(0).uniform(-1, 1, (5, 1)))
        return np.concatenate([info["goal"][None], frames])

    np.testing.assert_array_equal(episode(4), episode(4))
    assert not np.array_equal(episode(4), episode(5))


@pytest.mark.parametrize("env_id", IDS)
def test_goal_image_is_the_render_of_the_goal_state(env_id):
    env, info = make(env_id, seed=1)
    env.set_sim_state(np.asarray(info["goal_state"], np.float64))
    np.testing.assert_array_equal(env.render(), info["goal"])


@pytest.mark.parametrize("env_id", IDS)
def test_bad_inputs_raise_clear_errors(env_id):
    env, _ = make(env_id)
    with pytest.raises(ValueError, match="sim_state.*must be . finite numbers"):
        env.set_sim_state([1.0])
    with pytest.raises(ValueError, match="sim_state.*must be . finite numbers"):
        env.set_sim_state([np.nan] * len(env.get_sim_state()))
    with pytest.raises(ValueError, match="outside the allowed range"):
        make(env_id, values={"physics.gravity": 100.0})
    with pytest.raises(ValueError, match="unknown variation key 'physics.nope'"):
        make(env_id, variation=["physics.nope"])
    with pytest.raises(ValueError, match="action must be finite with shape"):
        env.step(np.zeros(2, np.float32))


# --- geometry against gymnasium's own rgb_array render -----------------------------------------------------
def _pole_direction(img, color):
    """Angle (0 = up, counter-clockwise positive) of the centroid of ``color`` pixels seen from ``pivot``."""
    mask = np.all(np.abs(img.astype(np.int32) - np.asarray(color)) < 30, axis=-1)
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean(), mask


@pytest.mark.parametrize("theta", [0.0, 0.7, -1.9, 3.0])
def test_pendulum_frame_geometry_matches_gymnasium_render(theta):
    pytest.importorskip("pygame", reason="gymnasium's rgb_array render needs pygame (pip install -e '.[dev]')")
    ref = gym.make("Pendulum-v1", render_mode="rgb_array").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([theta, 0.0])
    theirs = cv2.resize(ref.render(), (128, 128), interpolation=cv2.INTER_AREA)
    ours, _ = make("swm/Pendulum-v1", image_size=128, sim_state=[theta, 0.0])
    for img in (theirs, ours.render()):
        cx, cy, mask = _pole_direction(img, (204, 77, 77))
        dx, dy = cx - 63.5, cy - 63.5  # image centre = the pivot in both
        assert abs(math.remainder(math.atan2(-dx, -dy) - theta, 2 * math.pi)) < 0.05
        assert abs(math.hypot(dx, dy) / 128 - 0.5 / 4.4) < 0.01  # centroid at half the 1 m pole, 4.4 m across


@pytest.mark.parametrize(("x", "theta"), [(0.0, 0.0), (1.2, 0.3), (-1.5, -0.5)])
def test_cartpole_frame_geometry_matches_gymnasium_render(x, theta):
    pytest.importorskip("pygame", reason="gymnasium's rgb_array render needs pygame (pip install -e '.[dev]')")
    ref = gym.make("CartPole-v1", render_mode="rgb_array").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([x, 0.0, theta, 0.0])
    theirs = cv2.resize(ref.render(), (240, 160), interpolation=cv2.INTER_AREA)  # 600x400 -> 4.8 m = 240 px
    ours = make("swm/CartPole-v1", image_size=240, sim_state=[x, 0.0, theta, 0.0])[0].render()
    measured = []
    for img in (theirs, ours):
        cart = np.all(img < 40, axis=-1)
        cart[np.sum(cart, axis=1) > img.shape[1] // 2] = False  # drop the track line
        cart_x = np.nonzero(cart)[1].mean()
        px, py, _ = _pole_direction(img, (202, 152, 101))
        axle_y = np.nonzero(cart)[0].min()  # pole centroid seen from the cart's top edge
        measured.append((cart_x, math.atan2(px - cart_x, axle_y - py)))
    assert abs(measured[0][0] - measured[1][0]) < 1.5  # px, of 240
    assert abs(measured[0][0] - (120 - 0.5 + x * 50)) < 1.5
    assert abs(measured[0][1] - measured[1][1]) < 0.06 and abs(measured[1][1] - theta) < 0.06


@pytest.mark.parametrize("x", [-0.5, -1.0, 0.3])
def test_mountain_car_frame_geometry_matches_gymnasium_render(x):
    pytest.importorskip("pygame", reason="gymnasium's rgb_array render needs pygame (pip install -e '.[dev]')")
    ref = gym.make("MountainCarContinuous-v0", render_mode="rgb_array").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([x, 0.0])
    theirs = cv2.resize(ref.render(), (240, 160), interpolation=cv2.INTER_AREA)  # 1.8 units = 240 px in both
    ours = make("swm/MountainCar-v1", image_size=240, values={"goal.position": 0.45}, sim_state=[x, 0.0])[0].render()
    found = []
    for img in (theirs, ours):
        gray = np.all(np.abs(img.astype(int) - 128) < 12, axis=-1).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(gray)
        areas = stats[1:, cv2.CC_STAT_AREA]  # the wheels are the big gray blobs (the track's edges are thin)
        wheels = np.nonzero(np.isin(labels, 1 + np.flatnonzero(areas >= areas.max() / 2)))
        flag = np.nonzero(np.all(np.abs(img.astype(int) - (204, 204, 0)) < 40, axis=-1))
        found.append((wheels[1].mean(), wheels[0].mean(), flag[1].mean(), flag[0].mean()))
    (wx, wy, fx, fy), (ox, oy, gx, gy) = found
    assert abs(wx - ox) < 1.5 and abs(wy - (oy - 80)) < 1.5  # ours shows 0.6 more units of sky: 80 rows
    assert abs(wx - ((x + 1.2) * 240 / 1.8 - 0.5)) < 1.5
    assert abs(fx - gx) < 1.5 and abs(fy - (gy - 80)) < 1.5


# --- collection and the experts -------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_collect_to_lance_reads_back_and_replays_from_the_dataset(env_id, tmp_path):
    path = tmp_path / "d.lance"
    world = World(env_id, num_envs=2, image_size=16, max_episode_steps=12)
    world.collect(path, episodes=3, seed=0, policy=expert_policy(env_id), options={"variation": ["physics"]},
                  encoding="raw", progress=False)
    ds = open_dataset(path)
    assert ds.num_episodes == 3 and ds.num_rows == 3 * 13 and ds.metadata["env_id"] == env_id
    fov = [c for c in ds.columns if c.startswith("variation__")]
    ep = ds.read_episode(ds.episode_ids[0], ["pixels", "sim_state", "goal_state", *fov])
    assert ep["pixels"].shape == (13, 16, 16, 3)
    values = {c[len("variation__"):].replace("__", "."): ep[c][0] for c in fov}
    _, info = make(env_id, image_size=16, values=values, sim_state=ep["sim_state"][5], goal_state=ep["goal_state"][5])
    np.testing.assert_array_equal(info["pixels"], ep["pixels"][5])  # the recorded frame, redrawn from its state
    windows = WindowDataset(path, num_steps=2, frameskip=2, val_fraction=0.0)
    assert len(windows) > 0 and windows[0]["pixels"].shape == (2, 16, 16, 3)
    res = World(env_id, num_envs=2, image_size=16).evaluate_from_dataset(
        path, episodes=4, goal_offset=3, eval_budget=6, policy=NoOpPolicy())
    assert res["episodes"] == 4


@pytest.mark.parametrize(("env_id", "steps"), [("swm/Pendulum-v1", 200), ("swm/CartPole-v1", 200),
                                               ("swm/MountainCar-v1", 200), ("swm/Acrobot-v1", 200)])
def test_expert_reaches_the_goal_in_most_episodes_and_noop_rarely(env_id, steps):
    world = World(env_id, num_envs=4, image_size=16, max_episode_steps=steps)
    expert = world.evaluate(expert_policy(env_id), episodes=12, seed=0)
    noop = world.evaluate(NoOpPolicy(), episodes=12, seed=0)
    assert expert["success_rate"] >= 0.9, expert["success_rate"]
    assert noop["success_rate"] <= 0.35, noop["success_rate"]


@pytest.mark.parametrize("env_id", IDS)
def test_float32_fov_values_at_the_range_ends_are_accepted(env_id):
    """FoV values come back from a dataset as float32: the top of a range, rounded, must still validate."""
    space = CASES[env_id][0].variation_space
    values = {k: np.float32(space[k].high) for k in space.keys() if space[k].shape == () and space[k].dtype.kind == "f"}
    _, info = make(env_id, values=values)
    assert all(np.isclose(info["variation"][k], v) for k, v in values.items())


@pytest.mark.parametrize("env_id", ["swm/Pendulum-v1", "swm/CartPole-v1", "swm/MountainCar-v1", "swm/Acrobot-v1"])
def test_expert_collects_fewer_episodes_than_envs(env_id, tmp_path):
    """A World slot that never gets an episode holds all-zero FoV values: the expert must not fail on it."""
    world = World(env_id, num_envs=3, image_size=16, max_episode_steps=4)
    world.collect(tmp_path / "one.lance", episodes=1, seed=0, policy=expert_policy(env_id), progress=False)
    assert open_dataset(tmp_path / "one.lance").num_episodes == 1
