"""swm/Cube-v1 (OGBench's single cube on MuJoCo): the success rule, every FoV leaf, restore from state, seeding,
collection to Lance, OGBench's own oracle as the expert, and the clear error without the mujoco extra. Frames come
from MuJoCo's renderer, a few per second on a loaded CPU: one env is shared and kept small."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo picks its OpenGL backend when first imported: headless EGL

import importlib.util  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import swm_core.envs  # noqa: E402,F401  (registers the ids)
from swm_core import NoOpPolicy, World, expert_policy  # noqa: E402
from swm_core.data import WindowDataset, open_dataset  # noqa: E402
from swm_core.world import stack_infos  # noqa: E402

ENV_ID = "swm/Cube-v1"
INSTALL = "pip install -e '.[mujoco]'"
HAVE_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("mujoco", "ogbench"))
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason=f"swm/Cube-v1 needs the mujoco extra: {INSTALL}")
SIZE = 32


@pytest.fixture(scope="module")
def env():
    import mujoco

    try:
        mujoco.GLContext(8, 8).make_current()
    except Exception as err:  # noqa: BLE001  (no display and no EGL: say so instead of passing)
        pytest.skip(f"no OpenGL context for MuJoCo's renderer (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {err}")
    from swm_core.envs.cube import CubeEnv

    made = CubeEnv(image_size=SIZE)
    yield made
    made.close()


def reset(env, seed=0, values=None, **options):
    return env.reset(seed=seed, options={"variation_values": values or {}, **options})[1]


def run(env, actions):
    infos = [env.step(np.asarray(a, np.float32))[4] for a in actions]
    return np.stack([i["pixels"] for i in infos]), np.stack([i["sim_state"] for i in infos])


@needs_extra
@pytest.mark.parametrize(("offset", "expected"), [(0.0, True), (0.039, True), (0.041, False), (0.2, False)])
def test_success_rule_on_hand_made_states(env, offset, expected):
    """OGBench's rule: the cube's centre within 4 cm of the target's."""
    from swm_core.envs.cube import CUBE_QPOS, CubeEnv

    info = reset(env, seed=1)
    state = info["state"].astype(np.float64)
    direction = np.array([0.6, -0.8, 0.0])
    state[CUBE_QPOS:CUBE_QPOS + 3] = state[21:24] + offset * direction
    assert CubeEnv.is_success(state) is expected
    sim_state = info["sim_state"].copy()
    sim_state[1 + CUBE_QPOS:1 + CUBE_QPOS + 3] = state[CUBE_QPOS:CUBE_QPOS + 3]  # mjSTATE_INTEGRATION: time, qpos, ...
    assert reset(env, seed=1, sim_state=sim_state)["success"] is expected


@needs_extra
def test_every_leaf_changes_the_frame_or_the_dynamics_as_named(env):
    """cube.size changes the motion (the cube rests at its half-size, with its mass) and the frame; every other leaf
    the frame only."""
    space = env.variation_space
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 5))
    base = reset(env, seed=2)
    frames_a, states_a = run(env, actions)
    for key in space.keys():
        leaf = space[key]
        value = np.where(np.abs(leaf.high - leaf.default) >= np.abs(leaf.default - leaf.low), leaf.high, leaf.low)
        info = reset(env, seed=2, values={key: value.astype(leaf.dtype)})
        frames_b, states_b = run(env, actions)
        assert not np.array_equal(info["pixels"], base["pixels"]) or not np.array_equal(frames_a, frames_b), key
        if key == "cube.size":
            assert not np.allclose(states_a, states_b), key
        else:
            np.testing.assert_array_equal(states_a, states_b, err_msg=key)


@needs_extra
def test_restore_from_sim_state_reproduces_the_next_frames_and_seeds_repeat(env):
    info = reset(env, seed=3, variation=["all"])
    first = info["pixels"]
    rng = np.random.default_rng(0)
    run(env, rng.uniform(-1, 1, (3, 5)))
    info = env.step(np.zeros(5, np.float32))[4]
    actions = rng.uniform(-1, 1, (3, 5))
    frames_a, states_a = run(env, actions)
    twin = reset(env, seed=99, values=info["variation"], sim_state=info["sim_state"], goal_state=info["goal_state"])
    np.testing.assert_array_equal(twin["pixels"], info["pixels"])
    np.testing.assert_array_equal(twin["goal"], info["goal"])
    frames_b, states_b = run(env, actions)
    np.testing.assert_array_equal(frames_a, frames_b)
    np.testing.assert_array_equal(states_a, states_b)  # bit for bit
    np.testing.assert_array_equal(reset(env, seed=3, variation=["all"])["pixels"], first)  # same seed, same frame
    assert not np.array_equal(reset(env, seed=4, variation=["all"])["pixels"], first)


@needs_extra
def test_goal_is_the_cube_on_the_target_and_drawn_from_the_goal_state(env):
    from swm_core.envs.cube import CUBE_QPOS, CubeEnv

    info = reset(env, seed=5)
    goal = info["goal_state"]
    assert CubeEnv.is_success(goal) and not info["success"]
    np.testing.assert_allclose(goal[CUBE_QPOS:CUBE_QPOS + 3], info["state"][21:24])  # the target, not moved
    at_goal = info["sim_state"].copy()
    at_goal[1:22] = goal[:21]  # mjSTATE_INTEGRATION: time, then qpos; the target's mocap pose is unchanged
    np.testing.assert_array_equal(reset(env, seed=5, sim_state=at_goal)["pixels"], info["goal"])


@needs_extra
def test_oracle_reaches_the_goal_in_most_episodes(env):
    expert = expert_policy(ENV_ID, seed=0)
    reached = []
    for seed in range(3):
        info = reset(env, seed=10 + seed)
        expert.reset([0])
        assert not info["success"]
        for _ in range(100):
            info = env.step(expert.get_actions(stack_infos([info]))[0])[4]
            if info["success"]:
                break
        reached.append(info["success"])
    assert sum(reached) >= 2, reached


@needs_extra
def test_collect_to_lance_reads_back_and_replays_from_the_dataset(env, tmp_path):
    path = tmp_path / "d.lance"
    world = World(ENV_ID, num_envs=1, image_size=16, max_episode_steps=4)
    world.collect(path, episodes=2, seed=0, policy=expert_policy(ENV_ID), options={"variation": ["cube"]},
                  encoding="raw", progress=False)
    ds = open_dataset(path)
    assert ds.num_episodes == 2 and ds.num_rows == 2 * 5 and ds.metadata["env_id"] == ENV_ID
    fov = [c for c in ds.columns if c.startswith("variation__")]
    ep = ds.read_episode(ds.episode_ids[0], ["pixels", "sim_state", "goal_state", *fov])
    assert ep["pixels"].shape == (5, 16, 16, 3)
    values = {c[len("variation__"):].replace("__", "."): ep[c][0] for c in fov}
    redraw = world.envs[0].unwrapped
    _, info = redraw.reset(seed=7, options={"variation_values": values, "sim_state": ep["sim_state"][2],
                                            "goal_state": ep["goal_state"][2]})
    np.testing.assert_array_equal(info["pixels"], ep["pixels"][2])  # the recorded frame, redrawn from its state
    windows = WindowDataset(path, num_steps=2, frameskip=1, val_fraction=0.0)
    assert len(windows) > 0 and windows[0]["pixels"].shape == (2, 16, 16, 3)
    res = world.evaluate_from_dataset(path, episodes=2, goal_offset=2, eval_budget=2, policy=NoOpPolicy())
    assert res["episodes"] == 2


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ogbench", None)  # ``import ogbench`` now fails as if it were not installed
    with pytest.raises(ValueError, match=r"swm/Cube-v1 needs MuJoCo and OGBench.*pip install -e '\.\[mujoco\]'"):
        World(ENV_ID, image_size=16)
