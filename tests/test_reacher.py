"""swm/Reacher-v1 (DMC Reacher on MuJoCo): dynamics against dm_control's, the success rule, every FoV leaf,
restore from state, seeding, geometry against MuJoCo's own render of dm_control's model, collection to Lance, the
scripted expert, the swm command, and the clear error without the mujoco extra."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo picks its OpenGL backend when first imported: headless EGL

import importlib.util  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import swm_core.envs  # noqa: E402,F401  (registers the ids)
from swm_core import NoOpPolicy, World, expert_policy  # noqa: E402
from swm_core.data import WindowDataset, open_dataset  # noqa: E402
from swm_core.envs.reacher import FINGER_RADIUS, ReacherEnv, fingertip, reach_angles  # noqa: E402

ENV_ID = "swm/Reacher-v1"
INSTALL = "pip install -e '.[mujoco]'"
needs_mujoco = pytest.mark.skipif(importlib.util.find_spec("mujoco") is None,
                                  reason=f"swm/Reacher-v1 needs the mujoco extra: {INSTALL}")
needs_dm_control = pytest.mark.skipif(importlib.util.find_spec("dm_control") is None,
                                      reason=f"the reference model is dm_control's: {INSTALL}")
START = [0.4, 1.0, 2.0, -3.0, 0.1, -0.1, 0.0, 0.0]  # qpos, qvel, target, warm start: every physics leaf matters


def make(values=None, seed=0, image_size=64, **options):
    env = ReacherEnv(image_size=image_size)
    _, info = env.reset(seed=seed, options={"variation_values": values or {}, **options})
    return env, info


def run(env, actions):
    frames, states = [], []
    for a in actions:
        _, _, _, _, info = env.step(np.asarray(a, dtype=np.float32))
        frames.append(info["pixels"])
        states.append(info["sim_state"])
    return np.stack(frames), np.stack(states)


def other_value(leaf):
    lo, hi, d = leaf.low, leaf.high, leaf.default.astype(np.float64)
    return np.where(np.abs(hi - d) >= np.abs(d - lo), hi, lo).astype(leaf.dtype)


@needs_mujoco
def test_registered_and_made_through_world():
    world = World(ENV_ID, num_envs=2, image_size=32)
    world.reset(seed=0)
    assert world.infos["pixels"].shape == (2, 32, 32, 3) and world.infos["goal"].shape == (2, 32, 32, 3)
    assert world.action_space.shape == (2,) and world.infos["sim_state"].shape == (2, 8)
    assert world.infos["state"].shape == (2, 6) and world.infos["proprio"].shape == (2, 6)
    world.step(np.zeros((2, 2), np.float32))
    assert world.infos["step_idx"].tolist() == [1, 1]


@needs_mujoco
@needs_dm_control
def test_dynamics_match_dm_control_under_defaults():
    from dm_control import suite

    ref = suite.load("reacher", "easy", task_kwargs={"random": 0})
    ref.reset()
    physics = ref.physics
    ours, _ = make(sim_state=[0.3, -1.0, 0.5, -0.2, 0.1, 0.1, 0.0, 0.0])
    with physics.reset_context():
        physics.data.qpos[:] = [0.3, -1.0]
        physics.data.qvel[:] = [0.5, -0.2]
    rng = np.random.default_rng(0)
    wrist = []
    for t in range(150):  # the wrist pushed against its limit first, then random torques
        a = np.array([0.5, 1.0], np.float32) if t < 50 else rng.uniform(-1, 1, 2).astype(np.float32)
        ours.step(a)
        ref.step(a)
        wrist.append(physics.data.qpos[1])
        # masses are float32 FoV values (dm_control's come from density x volume): agreement to ~1e-7
        np.testing.assert_allclose(ours.get_sim_state()[:4], np.r_[physics.data.qpos, physics.data.qvel], atol=2e-6)
    assert max(wrist) > math.radians(159)  # the run reached the wrist's limit


@needs_mujoco
def test_kinematics_match_mujoco_and_inverse_kinematics_reaches():
    import mujoco

    rng = np.random.default_rng(0)
    for i in range(5):
        env, _ = make(seed=i, variation=["physics"])
        l1, l2 = float(env.variation["physics.arm_length"]), float(env.variation["physics.hand_length"])
        env.data.qpos[:] = rng.uniform(-2.5, 2.5, 2)
        mujoco.mj_forward(env.model, env.data)
        finger = env.data.geom_xpos[env.model.geom("finger").id]
        np.testing.assert_allclose(fingertip(env.data.qpos, l1, l2), finger[:2], atol=1e-12)
        target = fingertip([0.3, 1.2], l1, l2)
        for elbow in (1.0, -1.0):
            q = reach_angles(*target, l1, l2, elbow=elbow)
            np.testing.assert_allclose(fingertip(q, l1, l2), target, atol=1e-9)
            assert math.copysign(1.0, q[1]) == elbow and abs(q[1]) <= math.radians(160)


@needs_mujoco
@pytest.mark.parametrize(("offset", "size", "expected"), [
    (0.0, 0.05, True), (0.059, 0.05, True), (0.061, 0.05, False), (0.024, 0.015, True), (0.026, 0.015, False),
    (0.2, 0.05, False),
])
def test_success_rule_on_hand_made_states(offset, size, expected):
    """dm_control's rule: fingertip centre within the target's radius + the fingertip's (1 cm) of its centre."""
    tip = fingertip([0.7, -0.4], 0.12, 0.12)
    target = (tip[0] + offset * 0.6, tip[1] - offset * 0.8)  # ``offset`` metres away, not along an axis
    sim_state = [0.7, -0.4, 0.0, 0.0, *target, 0.0, 0.0]
    env, info = make(values={"target.size": size}, sim_state=sim_state)
    assert info["success"] is expected
    assert ReacherEnv.is_success(sim_state, info["variation"]) is expected
    assert float(info["variation"]["target.size"]) + FINGER_RADIUS == pytest.approx(size + 0.01)


@needs_mujoco
@pytest.mark.parametrize("key", ReacherEnv.variation_space.keys())
def test_every_leaf_changes_the_frame_or_the_dynamics_as_named(key):
    """physics.* leaves change the motion (the link lengths the frame too); target.size the frame and the success
    radius; every other leaf the frame only."""
    value = other_value(ReacherEnv.variation_space[key])
    a, info_a = make(sim_state=START)
    b, info_b = make(values={key: value}, sim_state=START)
    actions = [[1.0, -1.0]] * 3
    frames_a, states_a = run(a, actions)
    frames_b, states_b = run(b, actions)
    if key.startswith("physics."):
        assert not np.allclose(states_a[:, :4], states_b[:, :4]), f"{key} did not change the dynamics"
        assert (key.endswith("_length")) == (not np.array_equal(info_a["pixels"], info_b["pixels"]))
    else:
        np.testing.assert_array_equal(states_a, states_b)
        assert not np.array_equal(frames_a, frames_b), f"{key} did not change the frame"
    if key == "target.size":  # 0.05 -> 0.015: a fingertip 4 cm from the target no longer counts
        tip = fingertip([0.7, -0.4], 0.12, 0.12)
        near = [0.7, -0.4, 0, 0, tip[0] + 0.04, tip[1], 0, 0]
        assert make(sim_state=near)[1]["success"] and not make(values={key: value}, sim_state=near)[1]["success"]


@needs_mujoco
def test_restore_from_sim_state_reproduces_the_next_frames():
    env, _ = make(seed=3, variation=["all"])
    run(env, [[0.3, 1.0]] * 40)  # the wrist ends against its limit: the constraint solver's warm start matters
    info = env.step(np.array([-0.5, 1.0], np.float32))[4]
    assert abs(info["sim_state"][1]) > math.radians(150) and np.any(info["sim_state"][6:] != 0)
    twin, info_t = make(seed=99, values=info["variation"], sim_state=info["sim_state"],
                        goal_state=info["goal_state"])
    np.testing.assert_array_equal(info_t["pixels"], info["pixels"])
    np.testing.assert_array_equal(info_t["goal"], info["goal"])
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 2))
    frames_a, states_a = run(env, actions)
    frames_b, states_b = run(twin, actions)
    np.testing.assert_array_equal(frames_a, frames_b)
    np.testing.assert_array_equal(states_a, states_b)  # bit for bit, not merely close


@needs_mujoco
def test_same_seed_same_frames_other_seed_other_frames():
    def episode(seed):
        env, info = make(seed=seed, variation=["all"])
        frames, _ = run(env, np.random.default_rng(0).uniform(-1, 1, (5, 2)))
        return np.concatenate([info["goal"][None], frames])

    np.testing.assert_array_equal(episode(4), episode(4))
    assert not np.array_equal(episode(4), episode(5))


@needs_mujoco
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_goal_image_is_the_render_of_the_goal_state_which_succeeds(seed):
    env, info = make(seed=seed, variation=["physics"])
    goal = info["goal_state"]
    assert ReacherEnv.is_success(goal, info["variation"])  # the goal's fingertip is on the target
    env.set_sim_state(np.r_[goal, 0.0, 0.0])
    np.testing.assert_array_equal(env.render(), info["goal"])
    assert np.sign(goal[1]) == np.sign(info["state"][1])  # the elbow on the start's side


@needs_mujoco
def test_bad_inputs_raise_clear_errors():
    env, _ = make()
    with pytest.raises(ValueError, match="Reacher sim_state.*must be 8 finite numbers"):
        env.set_sim_state([1.0])
    with pytest.raises(ValueError, match="Reacher sim_state.*must be 8 finite numbers"):
        env.set_sim_state([np.nan] * 8)
    with pytest.raises(ValueError, match="'physics.arm_length'.*outside the allowed range"):
        make(values={"physics.arm_length": 1.0})
    with pytest.raises(ValueError, match="unknown variation key 'arm.nope'"):
        make(variation=["arm.nope"])
    with pytest.raises(ValueError, match="action must be finite with shape"):
        env.step(np.zeros(3, np.float32))


# --- geometry against MuJoCo's own render of dm_control's model -----------------------------------------------
def _mujoco_segmentation(qpos, target, size, image_size):
    """Per-pixel geom names of dm_control's reacher seen by its ``fixed`` camera, or a skip without EGL."""
    import mujoco
    from dm_control.suite import reacher

    physics = reacher.Physics.from_xml_string(*reacher.get_model_and_assets())
    physics.named.model.geom_size["target", 0] = size
    physics.named.model.geom_pos["target", :2] = target
    physics.data.qpos[:] = qpos
    physics.forward()
    try:
        renderer = mujoco.Renderer(physics.model.ptr, image_size, image_size)
    except Exception as err:  # noqa: BLE001  (no display and no EGL: say so instead of passing)
        pytest.skip(f"no OpenGL context for MuJoCo's renderer (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {err}")
    renderer.enable_segmentation_rendering()
    renderer.update_scene(physics.data.ptr, camera="fixed")
    seg = renderer.render()
    renderer.close()
    ids = {name: physics.model.name2id(name, "geom") for name in ("arm", "hand", "finger", "target", "root")}
    geom = seg[..., 0]
    return {name: geom == i for name, i in ids.items()}


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@needs_mujoco
@needs_dm_control
@pytest.mark.parametrize(("qpos", "target", "size"), [
    ([0.3, 1.2], (-0.08, -0.1), 0.05), ([-2.0, -0.7], (0.15, 0.05), 0.015), ([2.9, 2.5], (0.0, -0.2), 0.03),
])
def test_frame_geometry_matches_mujoco_render(qpos, target, size):
    n = 256
    theirs = _mujoco_segmentation(qpos, target, size, n)
    colors = {"arm.color": (255, 0, 0), "finger.color": (0, 255, 0), "target.color": (0, 0, 255),
              "root.color": (255, 255, 0), "floor.color": (0, 0, 0), "wall.color": (255, 255, 255)}
    env, _ = make(values={**colors, "target.size": size}, image_size=n, sim_state=[*qpos, 0, 0, *target, 0, 0])
    img = env.render().astype(np.int32)
    ours = {name: np.abs(img - colors[f"{name}.color"]).sum(-1) < 128 for name in ("arm", "finger", "target", "root")}
    arm = theirs["arm"] | theirs["hand"]
    assert (arm & ours["arm"]).sum() / (arm | ours["arm"]).sum() > 0.9  # the links cover the same pixels
    for name in ("finger", "target", "root"):  # same place to half a pixel, same size to a few percent
        assert np.linalg.norm(_centroid(theirs[name]) - _centroid(ours[name])) < 0.5, name
        assert abs(ours[name].sum() / theirs[name].sum() - 1) < 0.08, name


# --- collection, the expert and the swm command ---------------------------------------------------------------
@needs_mujoco
def test_collect_to_lance_reads_back_and_replays_from_the_dataset(tmp_path):
    path = tmp_path / "d.lance"
    world = World(ENV_ID, num_envs=2, image_size=16, max_episode_steps=12)
    world.collect(path, episodes=3, seed=0, policy=expert_policy(ENV_ID), options={"variation": ["physics"]},
                  encoding="raw", progress=False)
    ds = open_dataset(path)
    assert ds.num_episodes == 3 and ds.num_rows == 3 * 13 and ds.metadata["env_id"] == ENV_ID
    fov = [c for c in ds.columns if c.startswith("variation__")]
    ep = ds.read_episode(ds.episode_ids[0], ["pixels", "sim_state", "goal_state", *fov])
    assert ep["pixels"].shape == (13, 16, 16, 3) and ep["sim_state"].shape == (13, 8)
    values = {c[len("variation__"):].replace("__", "."): ep[c][0] for c in fov}
    _, info = make(image_size=16, values=values, sim_state=ep["sim_state"][5], goal_state=ep["goal_state"][5])
    np.testing.assert_array_equal(info["pixels"], ep["pixels"][5])  # the recorded frame, redrawn from its state
    windows = WindowDataset(path, num_steps=2, frameskip=2, val_fraction=0.0)
    assert len(windows) > 0 and windows[0]["pixels"].shape == (2, 16, 16, 3)
    res = World(ENV_ID, num_envs=2, image_size=16).evaluate_from_dataset(
        path, episodes=4, goal_offset=3, eval_budget=6, policy=NoOpPolicy())
    assert res["episodes"] == 4


@needs_mujoco
@pytest.mark.parametrize("options", [None, {"variation": ["physics"], "variation_values": {"target.size": 0.015}}])
def test_expert_reaches_the_goal_in_most_episodes_and_noop_rarely(options):
    world = World(ENV_ID, num_envs=4, image_size=16, max_episode_steps=100)
    expert = world.evaluate(expert_policy(ENV_ID), episodes=12, seed=0, options=options)
    noop = world.evaluate(NoOpPolicy(), episodes=12, seed=0, options=options)
    assert expert["success_rate"] >= 0.9, expert["success_rate"]
    assert noop["success_rate"] <= 0.25, noop["success_rate"]


@needs_mujoco
def test_swm_envs_and_fov_list_it(capsys):
    from swm_core.cli import main

    assert main(["envs"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(ENV_ID))
    assert "Box(-1.0, 1.0, (2,), float32)" in line and "FoV leaves 13" in line
    assert main(["fov", ENV_ID]) == 0
    out = capsys.readouterr().out
    assert "physics.arm_length" in out and "Box[0.08, 0.16]" in out and "default 0.12" in out
    assert "target.size" in out and "Box[0.015, 0.05]" in out and "default 0.05" in out


def test_without_the_mujoco_extra_the_error_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # ``import mujoco`` now fails as if it were not installed
    with pytest.raises(ValueError, match=r"swm/Reacher-v1 needs MuJoCo.*pip install -e '\.\[mujoco\]'"):
        World(ENV_ID, image_size=16)
    from swm_core.cli import main

    assert main(["fov", ENV_ID]) == 2
    assert INSTALL in capsys.readouterr().err
    assert main(["envs"]) == 0  # the other envs are still listed; this one says what it needs
    out = capsys.readouterr().out
    assert "swm/Pendulum-v1" in out and f"{ENV_ID:<30} unavailable:" in out and INSTALL in out
