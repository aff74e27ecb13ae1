"""Push-T: physics, success, exact restore, factors of variation, rendering and the expert."""

import math

import gymnasium as gym
import numpy as np
import pytest

import swm_core.envs  # noqa: F401  (registers swm/PushT-v1)
from swm_core.envs.pusht import (
    ACTION_SCALE,
    ARENA_HIGH,
    ARENA_LOW,
    DT,
    K_P,
    K_V,
    SUBSTEPS,
    PushTEnv,
    angle_error,
    polygon_area,
    pusht_success,
    shape_geometry,
)
from swm_core.envs.pusht_expert import PushTExpert
from swm_core.spaces import RGB, Discrete

# a fixed scene: T block at the centre, bar on top (local y < 0), stem pointing down (+y)
FIXED = {"agent.start_position": (100, 450), "block.start_position": (256, 256), "block.angle": 0.0}


def make_env(image_size=64, **variation_values):
    env = PushTEnv(image_size=image_size)
    env.reset(seed=0, options={"variation_values": {**FIXED, **variation_values}})
    return env


def place(env, agent_xy, block_pose=(256.0, 256.0, 0.0)):
    env.set_sim_state(np.array([*agent_xy, 0.0, 0.0, *block_pose, 0.0, 0.0, 0.0]))


def test_registered_and_spaces():
    env = gym.make("swm/PushT-v1")
    obs, info = env.reset(seed=0)
    assert isinstance(env.unwrapped, PushTEnv)
    assert env.action_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert info["goal"].shape == (64, 64, 3)
    assert info["state"].shape == (7,) and info["state"].dtype == np.float32
    assert info["proprio"].shape == (4,) and info["goal_proprio"].shape == (4,)
    assert info["sim_state"].dtype == np.float64
    assert len(info["variation"]) == 21
    np.testing.assert_array_equal(info["proprio"], info["state"][[0, 1, 5, 6]])
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert reward == pytest.approx(-np.linalg.norm(info["goal_state"] - info["state"]), rel=1e-6)
    with pytest.raises(ValueError, match="action"):
        env.unwrapped.step(np.zeros(3, np.float32))
    env.close()


def test_shape_library_is_consistent():
    for name in ("T", "L", "Z", "square", "I", "small_tee", "plus"):
        rects, outline, area = shape_geometry(name, 30.0)
        assert polygon_area(outline) == pytest.approx(area)  # the outline bounds exactly the rectangles
        centers = np.stack([(rects[:, 0] + rects[:, 2]) / 2, (rects[:, 1] + rects[:, 3]) / 2], 1)
        weights = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
        np.testing.assert_allclose((weights[:, None] * centers).sum(0) / area, 0.0, atol=1e-9)  # centroid
    rects, _, area = shape_geometry("T", 30.0)
    assert area == 7 * 30**2 and rects[:, 2].max() - rects[:, 0].min() == 120  # the reference T: 120 wide


def test_pd_controller_law_and_reaching_a_target():
    env = make_env()
    place(env, (150.0, 420.0))  # far from the block
    env.step(np.array([0.5, -0.25], np.float32))
    p, v, target = np.array([150.0, 420.0]), np.zeros(2), np.array([150.0 + 50.0, 420.0 - 25.0])
    for _ in range(SUBSTEPS):  # semi-implicit Euler of the PD law, as the reference integrates it
        v = v + (K_P * (target - p) - K_V * v) * DT
        p = p + v * DT
    np.testing.assert_allclose(env.get_sim_state()[:4], [*p, *v], rtol=0, atol=1e-9)
    goal = np.array([80.0, 470.0])
    for _ in range(30):
        state = env.get_state()
        env.step(np.clip((goal - state[:2]) / ACTION_SCALE, -1, 1).astype(np.float32))
    state = env.get_state()
    assert np.linalg.norm(state[:2] - goal) < 0.5 and np.linalg.norm(state[5:7]) < 5.0
    np.testing.assert_array_equal(state[2:5], [256, 256, 0])  # the block was never touched


def test_push_moves_block_only_when_pushed_into():
    env = make_env()
    start = (256.0 - 15 - 15 - 3, 276.0)  # left of the stem, 3 px gap
    place(env, start)
    for _ in range(5):
        env.step(np.array([-0.5, 0.0], np.float32))  # pushing away
    np.testing.assert_array_equal(env.get_state()[2:5], [256, 256, 0])
    place(env, start)
    for _ in range(5):
        env.step(np.array([0.5, 0.0], np.float32))  # pushing into the stem
    state = env.get_state()
    assert state[2] - 256 > 20  # moved along the push
    assert abs(state[3] - 256) < 0.5 * (state[2] - 256)
    assert angle_error(state[4], 0.0) > 0.01  # pushed below the centroid: it turns too
    sim = env.get_sim_state()
    assert np.linalg.norm(sim[7:9]) > 10  # moving when the push ends
    sim[:2] = (60.0, 60.0)  # take the agent away: with damping 0 the block keeps its velocity for one substep only
    env.set_sim_state(sim)
    env.step(np.zeros(2, np.float32))
    after = env.get_sim_state()
    np.testing.assert_allclose(after[4:7], sim[4:7] + sim[7:10] * DT, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(after[7:10], 0.0)


def test_block_shape_changes_the_physics_body():
    moved = {}
    for shape in ("T", "I"):
        env = make_env(**{"block.shape": shape})
        place(env, (256.0 - 60 - 15 - 3, 256.0 - 26))  # left of the T's bar end; the I is only 30 wide
        for _ in range(2):  # ~35 px: into the T's bar, short of the I
            env.step(np.array([0.5, 0.0], np.float32))
        moved[shape] = np.linalg.norm(env.get_state()[2:4] - 256)
    assert moved["T"] > 10 and moved["I"] == 0


def test_walls_hold_the_block_and_agent_stays_inside():
    env = make_env()
    place(env, (256.0, 200.0), (256.0, 100.0, 0.7))
    for i in range(60):
        env.step(np.array([0.05 * math.sin(i), -1.0], np.float32))
    state = env.get_state()
    corners = state[2:4] + env.scene.block_outline @ np.array(
        [[math.cos(state[4]), -math.sin(state[4])], [math.sin(state[4]), math.cos(state[4])]]).T
    assert corners.min() > ARENA_LOW - 3 and corners.max() < ARENA_HIGH + 3
    assert state[1] == pytest.approx(ARENA_LOW + 15, abs=0.5)  # the PD target is clipped to the arena


def test_success_thresholds_and_angle_symmetry():
    goal = np.array([100, 100, 300, 300, 1.0, 0, 0], np.float32)
    near = goal.copy()
    assert pusht_success(goal, goal)
    for dx, ok in ((19.9, True), (20.1, False)):
        state = goal.copy()
        state[2] += dx
        assert pusht_success(state, goal) is ok
    state = goal.copy()
    state[0] += 15
    state[2] += 15  # 15 px each, 21.2 over the 4-vector
    assert not pusht_success(state, goal)
    for da, ok in ((math.pi / 9 - 0.01, True), (math.pi / 9 + 0.01, False)):
        near[4] = goal[4] - da
        assert pusht_success(near, goal) is ok
    wrapped = goal.copy()
    wrapped[4] = goal[4] + 2 * math.pi - 0.05  # angles compare modulo 2π
    assert pusht_success(wrapped, goal)
    flipped = goal.copy()
    flipped[4] = goal[4] + math.pi
    assert not pusht_success(flipped, goal, 2 * math.pi)  # the T has no symmetry
    assert pusht_success(flipped, goal, math.pi)  # an I does
    quarter = goal.copy()
    quarter[4] = goal[4] + math.pi / 2 + 0.1
    assert pusht_success(quarter, goal, math.pi / 2) and not pusht_success(quarter, goal, math.pi)
    assert angle_error(0.1, 2 * math.pi - 0.1) == pytest.approx(0.2)


def test_env_success_uses_goal_state_and_shape_symmetry():
    for shape, turn, expected in (("T", math.pi, False), ("I", math.pi, True), ("square", math.pi / 2, True)):
        env = PushTEnv()
        _, info = env.reset(seed=1, options={"variation_values": {"block.shape": shape}})
        g = info["goal_state"].astype(np.float64)
        env.set_sim_state(np.array([g[0], g[1], 0, 0, g[2], g[3], g[4], 0, 0, 0]))
        assert env._success()
        env.set_sim_state(np.array([g[0], g[1], 0, 0, g[2], g[3], g[4] + turn, 0, 0, 0]))
        assert env._success() is expected
        env.set_sim_state(np.array([g[0], g[1], 0, 0, g[2] + 25, g[3], g[4], 0, 0, 0]))
        _, _, terminated, _, info = env.step(np.zeros(2, np.float32))
        assert not info["success"] and not terminated


def test_sim_state_restore_replays_exactly():
    env = make_env()
    place(env, (256.0 - 33, 276.0))
    rng = np.random.default_rng(0)
    # push into the block (contacts every step), then wander
    actions = np.concatenate([np.tile([[0.6, 0.05]], (15, 1)), rng.uniform(-1, 1, (25, 2))]).astype(np.float32)
    sims = [env.get_sim_state()]
    for a in actions:
        env.step(a)
        sims.append(env.get_sim_state())
    sims = np.array(sims)
    assert np.linalg.norm(sims[15, 4:6] - sims[5, 4:6]) > 20  # the replayed part has contacts
    other = PushTEnv()
    for t in (0, 5, 12):
        other.reset(seed=123, options={"variation_values": FIXED, "sim_state": sims[t]})
        replay = [other.get_sim_state()]
        for a in actions[t:]:
            replay.append(other.step(a)[4]["sim_state"])
        np.testing.assert_array_equal(np.array(replay), sims[t:])  # bit for bit
    with pytest.raises(ValueError, match="sim_state"):
        other.set_sim_state(np.zeros(7))


def test_reset_distribution_and_goal():
    env = PushTEnv()
    for seed in range(20):
        _, info = env.reset(seed=seed)
        for s in (info["state"], info["goal_state"]):
            assert np.all((s[:2] >= 50) & (s[:2] <= 450)) and np.all((s[2:4] >= 100) & (s[2:4] <= 400))
            assert 0 <= s[4] < 2 * math.pi
            assert not env.scene.agent_overlaps_block(s[:2], s[2:5])
        np.testing.assert_array_equal(info["goal_state"][5:], 0)
        np.testing.assert_array_equal(info["state"][:2], info["variation"]["agent.start_position"])
        np.testing.assert_array_equal(info["state"][2:4], info["variation"]["block.start_position"])
    starts = [env.reset(seed=s)[1]["state"][:5] for s in (0, 1)]
    assert not np.array_equal(*starts)
    np.testing.assert_array_equal(env.reset(seed=4)[1]["state"], env.reset(seed=4)[1]["state"])


def test_goal_image_is_the_goal_state_rendered():
    env = PushTEnv()
    for seed in range(5):
        _, info = env.reset(seed=seed, options={"variation": ["all"]})
        g = info["goal_state"].astype(np.float64)
        np.testing.assert_array_equal(info["goal"], env._render_state(info["goal_state"]))
        env.set_sim_state(np.array([g[0], g[1], 0, 0, g[2], g[3], g[4], 0, 0, 0]))
        np.testing.assert_array_equal(env.render(), info["goal"])
        assert not np.array_equal(info["pixels"], info["goal"])


@pytest.mark.parametrize("size", [32, 64, 96])
def test_image_size(size):
    env = PushTEnv(image_size=size)
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == info["goal"].shape == (size, size, 3)
    assert env.observation_space["pixels"].shape == (size, size, 3)
    assert env.observation_space.contains(obs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        PushTEnv(image_size=4)
    with pytest.raises(ValueError, match="render_mode"):
        PushTEnv(render_mode="human")
    env = PushTEnv()
    with pytest.raises(ValueError, match="agent.scale"):
        env.reset(options={"variation_values": {"agent.scale": 100}})
    with pytest.raises(ValueError, match="block.shape"):
        env.reset(options={"variation_values": {"block.shape": "circle"}})
    with pytest.raises(ValueError, match="unknown variation key 'agent.colour'"):
        env.reset(options={"variation_values": {"agent.colour": (1, 2, 3)}})
    with pytest.raises(ValueError, match="unknown variation key"):
        env.reset(options={"variation": ["wall"]})


def test_fov_sampling_is_seeded():
    env = PushTEnv()
    a = env.reset(seed=7, options={"variation": ["all"]})[1]
    b = env.reset(seed=7, options={"variation": ["all"]})[1]
    c = env.reset(seed=8, options={"variation": ["all"]})[1]
    for key in a["variation"]:
        np.testing.assert_array_equal(a["variation"][key], b["variation"][key])
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    assert not np.array_equal(a["variation"]["agent.color"], c["variation"]["agent.color"])
    d = env.reset(seed=7, options={"variation": ["block"]})[1]["variation"]
    np.testing.assert_array_equal(d["agent.color"], PushTEnv.variation_space["agent.color"].default)
    assert not np.array_equal(d["block.color"], PushTEnv.variation_space["block.color"].default)


def test_variation_values_show_in_the_frame():
    env = PushTEnv(image_size=64)
    values = {**FIXED, "background.color": (10, 20, 30), "agent.color": (250, 5, 7), "block.color": (1, 200, 3)}
    _, info = env.reset(seed=0, options={"variation_values": values})
    px = info["pixels"]
    np.testing.assert_array_equal(px[32, 8], (10, 20, 30))  # empty floor
    np.testing.assert_array_equal(px[56, 12], (250, 5, 7))  # the agent's centre (100, 450) -> pixel (12.5, 56.25)
    np.testing.assert_array_equal(px[36, 32], (1, 200, 3))  # the T's stem below the centroid
    goal_color = PushTEnv.variation_space["goal.color"].default
    assert np.all(px == goal_color, axis=-1).sum() > 20
    hidden = env.reset(seed=0, options={"variation_values": {**values, "rendering.render_goal": 0}})[1]["pixels"]
    assert np.all(hidden == goal_color, axis=-1).sum() == 0


def test_every_leaf_changes_the_scene():
    space = PushTEnv.variation_space
    # a polygon agent, so that its angle shows; one distractor, so that its position, size and color show
    base = {**FIXED, "agent.shape": 1, "block.start_position": (300, 300), "agent.start_position": (120, 120),
            "distractors.count": 1}
    env = PushTEnv(image_size=96)
    assert len(space.keys()) == 21

    def frame(values):
        env.reset(seed=0, options={"variation_values": values})
        return env.step(np.zeros(2, np.float32))[4]["pixels"]  # one step: the initial agent velocity shows

    reference = frame(base)
    for key in space.keys():
        leaf = space[key]
        current = np.asarray(base.get(key, leaf.default), np.float64)
        if isinstance(leaf, RGB):
            other = 255 - current
        elif isinstance(leaf, Discrete):
            other = (current + 1) % leaf.n
        else:  # 30% or 70% of the way through the range, whichever is farther from the current value
            low, high = leaf.low + 0.3 * (leaf.high - leaf.low), leaf.low + 0.7 * (leaf.high - leaf.low)
            other = np.where(np.abs(low - current) > np.abs(high - current), low, high)
        changed = frame({**base, key: other})
        assert not np.array_equal(changed, reference), f"{key}={other} did not change the frame"


def _final_distance(policy, seed, steps=150):
    env = PushTEnv()
    _, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        action = policy.get_actions(info)[0] if policy is not None else rng.uniform(-1, 1, 2).astype(np.float32)
        info = env.step(action)[4]
    s, g = info["state"], info["goal_state"]
    return np.linalg.norm(s[2:4] - g[2:4]), float(angle_error(s[4], g[4])), info["success"]


def test_expert_reaches_goals_and_beats_random():
    expert = [_final_distance(PushTExpert(seed=0), seed) for seed in (1000, 1001, 1002)]
    random = [_final_distance(None, seed) for seed in (1000, 1001, 1002)]
    assert np.mean([d for d, _, _ in expert]) < np.mean([d for d, _, _ in random]) / 5
    assert sum(success for _, _, success in expert) >= 2
    assert np.mean([a for _, a, _ in expert]) < math.pi / 9


def test_expert_batched_interface():
    envs = [PushTEnv() for _ in range(3)]
    infos = [env.reset(seed=i, options={"variation": ["block.shape"]})[1] for i, env in enumerate(envs)]
    expert = PushTExpert(seed=0)
    for _ in range(5):
        batch = {k: np.stack([info[k] for info in infos]) for k in ("state", "goal_state", "sim_state")}
        batch["variation.block.shape"] = np.array([info["variation"]["block.shape"] for info in infos])
        actions = expert.get_actions(batch)
        assert actions.shape == (3, 2) and actions.dtype == np.float32 and np.all(np.abs(actions) <= 1)
        infos = [env.step(a)[4] for env, a in zip(envs, actions)]
    # same inputs, same actions (seeded, no hidden randomness in the plan)
    a1 = PushTExpert(seed=3).get_actions(batch)
    a2 = PushTExpert(seed=3).get_actions(batch)
    np.testing.assert_array_equal(a1, a2)
    expert.reset([0])
    expert.reset()
    with pytest.raises(ValueError, match="push_speed"):
        PushTExpert(push_speed=2.0)


def test_distractors_are_drawn_in_frames_and_goal_only():
    """distractors.*: ``count`` squares of ``color`` and side ``size`` at ``position``, in the frame and the goal
    image; count 0 draws nothing whatever the other leaves; the dynamics never see them; sampled positions are
    seeded and inside the arena."""
    env = PushTEnv(image_size=64)

    def reset(seed=0, **values):
        return env.reset(seed=seed, options={"variation_values": {**FIXED, **values}})[1]

    spots = [(60.0, 60.0), (450.0, 60.0), (60.0, 300.0)] + [(400.0, 400.0)] * 5
    leaves = {"distractors.position": spots, "distractors.size": 40.0, "distractors.color": (1, 2, 3)}
    reference, hidden = reset(), reset(**leaves)  # count 0 (the default)
    np.testing.assert_array_equal(hidden["pixels"], reference["pixels"])
    np.testing.assert_array_equal(hidden["goal"], reference["goal"])
    one = reset(**leaves, **{"distractors.count": 1})
    for frame in (one["pixels"], one["goal"]):
        mask = np.all(frame == (1, 2, 3), axis=-1)
        # world [40, 80]^2 at 8 world units per pixel: the pixels whose centres (i + 0.5) * 8 lie inside, 5 to 9
        assert mask.sum() == 25 and mask[5:10, 5:10].all()
    big = reset(**{**leaves, "distractors.size": 80.0, "distractors.count": 1})  # [20, 100]: pixels 2 to 12
    assert np.all(big["pixels"] == (1, 2, 3), axis=-1).sum() == 121
    three = reset(**leaves, **{"distractors.count": 3})
    assert np.all(three["pixels"] == (1, 2, 3), axis=-1).sum() == 75
    # the dynamics and the goal state ignore them
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (20, 2)).astype(np.float32)
    runs = []
    for values in ({}, {**leaves, "distractors.count": 8}):
        info = reset(**values)
        runs.append((info["goal_state"], np.stack([env.step(a)[4]["sim_state"] for a in actions])))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    # sampled positions: a fresh draw per episode from the episode's seed
    sample = {"variation": ["distractors.position"], "variation_values": {"distractors.count": 4}}
    a, b, c = (env.reset(seed=s, options=sample)[1] for s in (5, 5, 6))
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    assert not np.array_equal(a["variation"]["distractors.position"], c["variation"]["distractors.position"])
    positions = np.concatenate([a["variation"]["distractors.position"], c["variation"]["distractors.position"]])
    assert np.all((positions >= ARENA_LOW) & (positions <= ARENA_HIGH))
