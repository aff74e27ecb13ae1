"""Two-Room: registration, exact physics (speed, wall, doors, border), success, sim_state, FoV, goal image, expert."""

import math

import gymnasium as gym
import numpy as np
import pytest

import swm_core.envs  # noqa: F401  (registers the ids)
from swm_core.envs.two_room import (
    BORDER,
    SUCCESS_DISTANCE,
    WALL_CENTER,
    WORLD_SIZE,
    TwoRoomDiscreteEnv,
    TwoRoomEnv,
    TwoRoomExpert,
    TwoRoomGeometry,
)
from swm_core.world import stack_infos


def make(values=None, seed=0, **options):
    env = TwoRoomEnv(image_size=64)
    _, info = env.reset(seed=seed, options={"variation_values": values or {}, **options})
    return env, info


def push(env, action, steps):
    for _ in range(steps):
        _, _, _, _, info = env.step(np.asarray(action, dtype=np.float32))
    return info["sim_state"]


def swap(xy, axis):
    """World point for a vertical wall (axis 1) mirrored onto the horizontal layout (axis 0)."""
    return np.array(xy if axis == 1 else xy[::-1], dtype=np.float64)


def test_registration_and_spaces():
    import swm_core.envs.two_room  # noqa: F401  (registers the discrete id until envs/__init__ lists it)

    env = gym.make("swm/TwoRoom-v1", image_size=32)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs["pixels"].shape == (32, 32, 3) and obs["pixels"].dtype == np.uint8
    assert info["sim_state"].dtype == np.float64 and info["state"].dtype == np.float32
    assert reward == pytest.approx(-np.linalg.norm(info["goal_state"] - info["state"]))
    assert isinstance(gym.make("swm/TwoRoomDiscrete-v1").action_space, gym.spaces.Discrete)
    assert len(TwoRoomEnv.variation_space.keys()) == 21


def test_movement_is_speed_times_clipped_action():
    env, info = make({"agent.position": (60.0, 112.0), "agent.speed": 4.0})
    np.testing.assert_array_equal(info["sim_state"], [60.0, 112.0])
    np.testing.assert_allclose(push(env, (0.5, -1.0), 1), [62.0, 108.0])
    np.testing.assert_allclose(push(env, (3.0, -7.0), 1), [66.0, 104.0])  # clipped to (1, -1)
    np.testing.assert_allclose(push(env, (-0.25, 0.0), 2), [64.0, 104.0])
    assert env.get_proprio().tolist() == env.get_state().tolist() == [64.0, 104.0]


@pytest.mark.parametrize("axis", [1, 0])
def test_wall_blocks_outside_door_and_lets_through_door(axis):
    # door 1: centre 49, half-size 16 -> opening [33, 65]; agent radius 7 -> passage [40, 58]; band half 5 + 7
    values = {"wall.axis": axis, "agent.speed": 10.5}
    k = 0 if axis == 1 else 1
    edge_left, edge_right = WALL_CENTER - 12, WALL_CENTER + 12

    env, _ = make({**values, "agent.position": swap((80.0, 150.0), axis)})
    pos = push(env, swap((1.0, 0.0), axis), 10)
    # stops exactly at the wall, no tunnelling
    np.testing.assert_array_equal(pos, swap((edge_left, 150.0), axis))
    pos = push(env, swap((1.0, 0.3), axis), 3)  # slides along the wall
    np.testing.assert_allclose(pos, swap((edge_left, 150.0 + 3 * 3.15), axis))

    env, _ = make({**values, "agent.position": swap((150.0, 100.0), axis)})
    np.testing.assert_array_equal(push(env, swap((-1.0, 0.0), axis), 10), swap((edge_right, 100.0), axis))

    env, _ = make({**values, "agent.position": swap((80.0, 49.0), axis)})
    pos = push(env, swap((1.0, 0.0), axis), 10)
    assert pos[k] > edge_right and pos[1 - k] == 49.0  # went through the door
    env, _ = make({**values, "agent.position": swap((80.0, 49.0), axis)})
    push(env, swap((1.0, 0.0), axis), 3)  # now inside the door: moves along the wall stop at the jambs
    assert abs(env.get_sim_state()[k] - WALL_CENTER) < 12
    assert push(env, swap((0.0, -1.0), axis), 3)[1 - k] == 40.0
    assert push(env, swap((0.0, 1.0), axis), 5)[1 - k] == 58.0

    # a door just narrower than the agent is a wall
    env, _ = make({**values, "agent.position": swap((80.0, 49.0), axis), "door.size": (6.9, 16, 16)})
    np.testing.assert_array_equal(push(env, swap((1.0, 0.0), axis), 5), swap((edge_left, 49.0), axis))


def _disc_overlaps_wall(p, r, v):
    """Independent check: distance from the centre to each solid wall rectangle (and the border) < r."""
    k = 0 if int(v["wall.axis"]) == 1 else 1
    if min(p) < BORDER + r - 1e-9 or max(p) > WORLD_SIZE - BORDER - r + 1e-9:
        return True
    n = int(v["door.number"])
    cuts = sorted(
        (float(c) - float(s), float(c) + float(s)) for c, s in zip(v["door.position"][:n], v["door.size"][:n])
    )
    solid, start = [], BORDER
    for lo, hi in cuts:
        if lo > start:
            solid.append((start, lo))
        start = max(start, hi)
    solid.append((start, WORLD_SIZE - BORDER))
    half = float(v["wall.thickness"]) / 2
    for lo, hi in solid:
        if hi <= lo:
            continue
        dk = max(WALL_CENTER - half - p[k], 0.0, p[k] - WALL_CENTER - half)
        dj = max(lo - p[1 - k], 0.0, p[1 - k] - hi)
        if math.hypot(dk, dj) < r - 1e-6:
            return True
    return False


def test_disc_never_overlaps_wall_or_tunnels_under_random_fov_and_actions():
    env = TwoRoomEnv(image_size=16)
    rng = np.random.default_rng(0)
    crossings = 0
    for ep in range(30):
        _, info = env.reset(seed=ep, options={"variation": ["door", "wall", "agent.radius", "agent.speed"]})
        v = info["variation"]
        geom = TwoRoomGeometry.from_variation(v)
        prev = info["sim_state"]
        for _ in range(150):
            a = rng.uniform(-1.5, 1.5, size=2) if rng.random() < 0.7 else np.sign(rng.normal(size=2))
            _, _, _, _, info = env.step(a.astype(np.float32))
            p = info["sim_state"]
            assert not _disc_overlaps_wall(p, float(v["agent.radius"]), v), (ep, p)
            assert np.abs(p - prev).max() <= float(v["agent.speed"]) + 1e-9
            sides = [np.sign(q[geom.k] - WALL_CENTER) for q in (prev, p) if not geom.in_band(q)]
            if len(sides) == 2 and sides[0] != sides[1]:
                raise AssertionError(f"jumped over the wall band: {prev} -> {p}")
            crossings += geom.in_band(p) and not geom.in_band(prev)
            prev = p
    assert crossings > 0  # doors were used


def test_border_clamps():
    env, _ = make({"agent.position": (30.0, 30.0)})
    np.testing.assert_array_equal(push(env, (-1.0, -1.0), 10), [BORDER + 7, BORDER + 7])
    env, _ = make({"agent.position": (180.0, 180.0), "agent.radius": 10.0})
    np.testing.assert_array_equal(push(env, (1.0, 1.0), 10), [WORLD_SIZE - BORDER - 10] * 2)


@pytest.mark.parametrize("offset,expected", [(15.9, True), (16.1, False), (SUCCESS_DISTANCE, False)])
def test_success_threshold(offset, expected):
    env, info = make({"agent.position": (60.0, 100.0)}, goal_state=np.array([60.0, 100.0 + offset]))
    assert info["success"] is expected
    assert info["variation"]["target.position"].tolist() == pytest.approx([60.0, 100.0 + offset])


def test_success_reached_by_stepping():
    env, info = make({"agent.position": (60.0, 100.0), "target.position": (80.0, 100.0)})
    assert not info["success"]
    _, _, terminated, _, info = env.step(np.array([1.0, 0.0], np.float32))  # distance 20 -> 15
    assert info["success"] and terminated


def test_sim_state_round_trip_and_projection():
    env, _ = make(seed=3)
    rng = np.random.default_rng(1)
    push(env, (0.3, -0.2), 5)
    saved = env.get_sim_state()
    actions = rng.uniform(-1, 1, size=(40, 2)).astype(np.float32)
    first = [env.step(a)[4] for a in actions]
    env.set_sim_state(saved)
    second = [env.step(a)[4] for a in actions]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["sim_state"], b["sim_state"])
        np.testing.assert_array_equal(a["pixels"], b["pixels"])
    # reset from a sim_state starts there and records it as the start position
    _, info = env.reset(seed=9, options={"sim_state": saved})
    np.testing.assert_array_equal(info["sim_state"], saved)
    np.testing.assert_array_equal(info["variation"]["agent.position"], saved.astype(np.float32))
    # a position inside the wall is moved to the wall's face; inside the border onto the border
    env.set_sim_state([110.0, 150.0])
    np.testing.assert_array_equal(env.get_sim_state(), [100.0, 150.0])
    env.set_sim_state([0.0, 300.0])
    np.testing.assert_array_equal(env.get_sim_state(), [21.0, 203.0])
    with pytest.raises(ValueError, match="sim_state"):
        env.set_sim_state([1.0, 2.0, 3.0])


def test_fov_sampling_is_seeded_valid_and_mixes_rooms():
    env = TwoRoomEnv(image_size=32)
    a = env.reset(seed=5, options={"variation": "all"})[1]
    b = env.reset(seed=5, options={"variation": "all"})[1]
    c = env.reset(seed=6, options={"variation": "all"})[1]
    for key in a["variation"]:
        np.testing.assert_array_equal(a["variation"][key], b["variation"][key])
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    assert not np.array_equal(a["variation"]["agent.position"], c["variation"]["agent.position"])
    cross = []
    for seed in range(300):
        options = {"variation": "all"} if seed % 2 else None
        v = env.reset(seed=seed, options=options)[1]["variation"]
        geom = TwoRoomGeometry.from_variation(v)
        start, target = v["agent.position"].astype(np.float64), v["target.position"].astype(np.float64)
        assert (
            geom.is_free(start)
            and geom.is_free(target)
            and not geom.in_band(start)
            and not geom.in_band(target)
        )
        assert max(hi - lo for lo, hi in geom.passages) >= 1.0
        assert np.linalg.norm(start - target) >= SUCCESS_DISTANCE
        cross.append(np.sign(start[geom.k] - WALL_CENTER) != np.sign(target[geom.k] - WALL_CENTER))
    assert 0.4 < np.mean(cross) < 0.6
    assert TwoRoomEnv.room_of([100.0, 200.0]) == 0 and TwoRoomEnv.room_of([130.0, 20.0]) == 1
    assert TwoRoomEnv.room_of([100.0, 200.0], axis=0) == 1 and TwoRoomEnv.room_of([130.0, 20.0], axis=0) == 0


def test_requested_variations_add_to_the_defaults():
    defaults = TwoRoomEnv.variation_space.defaults()
    env = TwoRoomEnv(image_size=32)
    for seed in range(3):
        v = env.reset(seed=seed, options={"variation": ["agent.color"]})[1]["variation"]
        assert not np.array_equal(v["agent.color"], defaults["agent.color"])
        assert not np.array_equal(v["agent.position"], defaults["agent.position"])
        assert not np.array_equal(v["target.position"], defaults["target.position"])
        np.testing.assert_array_equal(v["background.color"], defaults["background.color"])


def test_variation_values_are_exact_and_visible():
    values = {
        "agent.position": (56.0, 140.0),
        "agent.color": (10, 20, 30),
        "background.color": (200, 190, 180),
        "agent.radius": 11.0,
    }
    env, info = make(values)
    for key, value in values.items():
        np.testing.assert_array_equal(info["variation"][key], np.asarray(value, info["variation"][key].dtype))
    px = info["pixels"]
    s = 64 / WORLD_SIZE
    assert px[int(140 * s), int(56 * s)].tolist() == [10, 20, 30]  # agent centre
    assert px[int(60 * s), int(180 * s)].tolist() == [200, 190, 180]  # open floor
    assert px[1, 1].tolist() == [0, 0, 0]  # border
    assert px[int(150 * s), int(WALL_CENTER * s)].tolist() == [0, 0, 0]  # wall
    assert px[int(49 * s), int(WALL_CENTER * s)].tolist() == [255, 255, 255]  # door (door colour = white)


ALTERNATIVES = {
    "agent.color": (0, 0, 255),
    "agent.radius": 14.0,
    "agent.position": (40.0, 180.0),
    "target.color": (0, 0, 255),
    "target.radius": 14.0,
    "target.position": (180.0, 40.0),
    "wall.color": (90, 90, 90),
    "wall.border_color": (90, 90, 90),
    "wall.thickness": 41,
    "wall.axis": 0,
    "door.color": (0, 0, 255),
    "door.number": 2,
    "door.size": (6.0, 16.0, 16.0),
    "door.position": (150.0, 112.0, 175.0),
    "background.color": (90, 90, 90),
    "rendering.render_target": 0,
    "distractors.count": 2,
    "distractors.position": [(60.0, 60.0)] * 8,
    "distractors.size": 30.0,
    "distractors.color": (0, 0, 255),
}


@pytest.mark.parametrize("key", TwoRoomEnv.variation_space.keys())
def test_every_leaf_changes_the_scene_or_the_physics(key):
    base = {"agent.position": (60.0, 170.0), "target.position": (170.0, 60.0), "rendering.render_target": 1}
    if key.startswith("distractors.") and key != "distractors.count":  # one drawn, so that its leaves show
        base["distractors.count"] = 1
    env, info = make(base)
    if key == "agent.speed":
        env2, _ = make({**base, key: 9.0})
        assert push(env, (1.0, 0.0), 1)[0] == pytest.approx(60.0 + 5.0)
        assert push(env2, (1.0, 0.0), 1)[0] == pytest.approx(60.0 + 9.0)
        return
    _, changed = make({**base, key: ALTERNATIVES[key]})
    assert not np.array_equal(info["pixels"], changed["pixels"]), key


def test_bad_variation_input_raises():
    env = TwoRoomEnv(image_size=32)
    with pytest.raises(ValueError, match="unknown variation key"):
        env.reset(seed=0, options={"variation": ["agent.colour"]})
    with pytest.raises(ValueError, match="outside the allowed range"):
        env.reset(seed=0, options={"variation_values": {"agent.radius": 20.0}})
    with pytest.raises(ValueError, match="overlaps the border or the wall"):
        env.reset(seed=0, options={"variation_values": {"agent.position": (110.0, 150.0)}})
    with pytest.raises(ValueError, match="overlaps the border or the wall"):
        env.reset(seed=0, options={"variation_values": {"target.position": (15.0, 100.0)}})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="render_mode"):
        TwoRoomEnv(render_mode="human")


@pytest.mark.parametrize("render_target", [0, 1])
def test_goal_image_is_the_render_with_the_agent_at_the_target(render_target):
    env = TwoRoomEnv(image_size=64)
    _, info = env.reset(seed=4, options={"variation_values": {"rendering.render_target": render_target}})
    assert not np.array_equal(info["pixels"], info["goal"])
    env.set_sim_state(info["goal_state"].astype(np.float64))
    np.testing.assert_array_equal(env.render(), info["goal"])
    if render_target == 0:  # the solved observation looks exactly like the goal
        np.testing.assert_array_equal(env.step(np.zeros(2, np.float32))[4]["pixels"], info["goal"])


def _run(policy, options, seeds, axis_cross_only=True, budget=200):
    envs, infos = [], []
    for seed in seeds:
        env = TwoRoomEnv(image_size=16)
        _, info = env.reset(seed=seed, options=options)
        geom = TwoRoomGeometry.from_variation(info["variation"])
        same = np.sign(info["state"][geom.k] - WALL_CENTER) == np.sign(
            info["goal_state"][geom.k] - WALL_CENTER
        )
        if axis_cross_only and same:
            continue
        envs.append(env)
        infos.append(info)
    done, steps = np.zeros(len(envs), bool), np.full(len(envs), budget)
    for t in range(budget):
        actions = policy(stack_infos(infos))
        for i, env in enumerate(envs):
            if not done[i]:
                infos[i] = env.step(actions[i])[4]
                if infos[i]["success"]:
                    done[i], steps[i] = True, t + 1
    return done, steps


@pytest.mark.parametrize(
    "options", [None, {"variation_values": {"wall.axis": 0}}, {"variation": ["door", "wall", "agent.radius"]}]
)
def test_expert_crosses_through_the_door_and_random_rarely_does(options):
    seeds = range(100)
    done, steps = _run(TwoRoomExpert(seed=0).get_actions, options, seeds)
    assert len(done) >= 40
    assert done.mean() >= 0.95, done.mean()
    rng = np.random.default_rng(0)
    rand_done, _ = _run(
        lambda infos: rng.uniform(-1, 1, (len(infos["state"]), 2)).astype(np.float32), options, seeds
    )
    assert rand_done.mean() <= 0.2, rand_done.mean()


def test_expert_keep_moving_wanders_and_noise_is_seeded():
    env = TwoRoomEnv(image_size=16)
    _, info = env.reset(seed=1)
    expert = TwoRoomExpert(seed=0, keep_moving=True)
    reached, positions = False, []
    for _ in range(300):
        action = expert.get_actions(stack_infos([info]))[0]
        info = env.step(action)[4]
        reached |= bool(info["success"])
        positions.append(info["sim_state"].copy())
    positions = np.array(positions)
    assert reached
    assert len(np.unique(positions.round(), axis=0)) > 100  # never parks: ~every step is a new position
    # noise: seeded and actually perturbing
    infos = stack_infos([TwoRoomEnv(image_size=16).reset(seed=2)[1] for _ in range(4)])
    a1 = TwoRoomExpert(seed=7, noise=0.3).get_actions(infos)
    a2 = TwoRoomExpert(seed=7, noise=0.3).get_actions(infos)
    a0 = TwoRoomExpert(seed=7).get_actions(infos)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, a0) and a1.dtype == np.float32 and a1.shape == (4, 2)
    with pytest.raises(ValueError, match="variation"):
        TwoRoomExpert().get_actions({"state": infos["state"], "goal_state": infos["goal_state"]})


def test_discrete_env_action_table():
    table = TwoRoomDiscreteEnv.action_table
    assert table.shape == (9, 2) and table.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), [0] + [1] * 8, atol=1e-6)
    assert len(np.unique(table.round(4), axis=0)) == 9
    denv, cenv = TwoRoomDiscreteEnv(image_size=16), TwoRoomEnv(image_size=16)
    denv.reset(seed=3)
    cenv.reset(seed=3)
    for idx in [1, 2, 3, 4, 5, 6, 7, 8, 0, np.int64(2)]:
        np.testing.assert_array_equal(
            denv.step(idx)[4]["sim_state"], cenv.step(table[int(idx)])[4]["sim_state"]
        )
    for bad in (9, -1, 1.5, [1, 2]):
        with pytest.raises(ValueError, match="action"):
            denv.step(bad)


def test_multidiscrete_env_maps_one_index_per_axis():
    from swm_core.envs.two_room import TwoRoomMultiDiscreteEnv

    env, cenv = TwoRoomMultiDiscreteEnv(image_size=16), TwoRoomEnv(image_size=16)
    assert env.action_space == gym.spaces.MultiDiscrete([5, 5])
    values = TwoRoomMultiDiscreteEnv.action_values
    assert values[0] == 0 and sorted(values.tolist()) == [-1.0, -0.5, 0.0, 0.5, 1.0]  # index 0 stays put
    table = TwoRoomMultiDiscreteEnv.action_table  # joint index = np.ravel_multi_index(action, (5, 5))
    for action in ([4, 0], [1, 3], [2, 2], np.array([3, 4])):
        np.testing.assert_array_equal(table[np.ravel_multi_index(tuple(action), (5, 5))], values[np.asarray(action)])
    env.reset(seed=3)
    cenv.reset(seed=3)
    for action in ([4, 0], [1, 3], [0, 0], np.array([3, 4], dtype=np.int64), [2.0, 1.0]):
        np.testing.assert_array_equal(env.step(action)[4]["sim_state"],
                                      cenv.step(values[np.asarray(action, dtype=int)])[4]["sim_state"])
    for bad in ([5, 0], [-1, 2], [1.5, 0], 3, [1, 2, 3]):
        with pytest.raises(ValueError, match=r"action must be two integers in \[0, 4\]"):
            env.step(bad)



def test_distractors_are_drawn_in_frames_and_goal_only():
    """distractors.*: ``count`` squares of ``color`` and side ``size`` at ``position``, in the frame and the goal
    image; count 0 draws nothing whatever the other leaves; the dynamics never see them."""
    base = {"agent.position": (60.0, 170.0), "target.position": (170.0, 60.0)}
    leaves = {"distractors.position": [(50.0, 50.0), (170.0, 170.0)] + [(60.0, 100.0)] * 6,
              "distractors.size": 14.0, "distractors.color": (1, 2, 3)}
    _, reference = make(base)
    _, hidden = make({**base, **leaves})  # count 0 (the default)
    np.testing.assert_array_equal(hidden["pixels"], reference["pixels"])
    np.testing.assert_array_equal(hidden["goal"], reference["goal"])
    _, one = make({**base, **leaves, "distractors.count": 1})
    for frame in (one["pixels"], one["goal"]):
        mask = np.all(frame == (1, 2, 3), axis=-1)
        # world [43, 57]^2 at 64/224 pixels per unit: pixel centres inside for pixels 12 to 15
        assert mask.sum() == 16 and mask[12:16, 12:16].all()
    _, two = make({**base, **leaves, "distractors.count": 2})
    assert np.all(two["pixels"] == (1, 2, 3), axis=-1).sum() == 32
    _, big = make({**base, **leaves, "distractors.count": 1, "distractors.size": 28.0})  # [36, 64]: pixels 10 to 17
    assert np.all(big["pixels"] == (1, 2, 3), axis=-1).sum() == 64
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 2)).astype(np.float32)
    runs = []
    for values in (base, {**base, **leaves, "distractors.count": 8}):
        env, _ = make(values)
        runs.append([env.step(a)[4]["sim_state"] for a in actions])
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))
