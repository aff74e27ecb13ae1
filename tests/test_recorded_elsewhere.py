"""Dataset-driven evaluation on data recorded elsewhere: the stable-worldmodel package's Lance layout holds a
``state`` column but no ``sim_state`` (and no FoV columns, no metadata). The env restores its simulator from the
recorded state where it can (``SWMEnv.sim_state_from_state``) and says clearly when it cannot."""

import json
import os
import subprocess
import sys

import lance
import numpy as np
import pyarrow as pa
import pytest
import simplejpeg

from swm_core import World, expert_policy
from swm_core.data import open_dataset
from swm_core.envs.base import SWMEnv
from swm_core.envs.pusht import PushTEnv
from tests.conftest import ROOT


def f32_list(x):
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def as_package_layout(src, dst) -> None:
    """Rewrite a swm dataset the way the stable-worldmodel package stores its own: plain Lance, JPEG ``pixels``
    (quality 95), every numeric column a fixed-size list of float32, no sim_state, no FoV columns, no metadata."""
    ds = open_dataset(src)
    tables = []
    for e in ds.episode_ids:
        ep = ds.read_episode(int(e), ["pixels", "state", "action", "proprio"])
        n = len(ep["state"])
        jpegs = [simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality=95) for f in ep["pixels"]]
        tables.append(pa.table({"episode_idx": pa.array(np.full(n, e, np.int32)),
                                "step_idx": pa.array(np.arange(n, dtype=np.int32)),
                                "pixels": pa.array(jpegs, type=pa.binary()),
                                "state": f32_list(ep["state"]), "proprio": f32_list(ep["proprio"]),
                                "action": f32_list(np.nan_to_num(ep["action"]))}))
    lance.write_dataset(pa.concat_tables(tables), str(dst))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two-Room and Push-T expert episodes in swm's layout and in the package's."""
    root = tmp_path_factory.mktemp("elsewhere")
    out = {}
    for env_id, name in (("swm/TwoRoom-v1", "tworoom"), ("swm/PushT-v1", "pusht")):
        ours, theirs = root / f"{name}.lance", root / f"{name}_package.lance"
        World(env_id, num_envs=2, image_size=32, max_episode_steps=40, seed=0).collect(
            ours, episodes=4, seed=0, policy=expert_policy(env_id, seed=0), progress=False)
        as_package_layout(ours, theirs)
        out[env_id] = (ours, theirs)
    return out


@pytest.mark.parametrize("env_id", ["swm/TwoRoom-v1", "swm/PushT-v1"])
def test_starts_are_restored_from_the_recorded_state(recorded, env_id):
    ours, theirs = recorded[env_id]
    assert "sim_state" not in open_dataset(theirs).columns
    world = World(env_id, num_envs=1, image_size=32)
    starts, pairs = world.dataset_starts(theirs, episodes=5, goal_offset=10, seed=1)
    assert pairs["restored_from_state"].all()
    mine, own_pairs = world.dataset_starts(ours, episodes=5, goal_offset=10, seed=1)
    assert not own_pairs["restored_from_state"].any()
    np.testing.assert_array_equal(pairs["episode_idx"], own_pairs["episode_idx"])  # the same pairs drawn
    env = world.envs[0].unwrapped
    for spec, start_state in zip(starts, pairs["start_state"]):
        env.reset(seed=0, options=spec["options"])
        np.testing.assert_allclose(env.get_state(), start_state, atol=1e-4)  # float32 state, restored exactly


def test_two_room_replay_from_the_package_layout_reaches_every_goal(recorded):
    """Two-Room's state is its whole simulator: replaying the recorded actions from a start restored from
    ``state`` reaches the recorded goal, as from swm's own ``sim_state``."""
    _, theirs = recorded["swm/TwoRoom-v1"]
    ds = open_dataset(theirs)
    world = World("swm/TwoRoom-v1", num_envs=1, image_size=32)
    starts, pairs = world.dataset_starts(theirs, episodes=6, goal_offset=10, seed=2)
    env = world.envs[0].unwrapped
    for spec, e, t in zip(starts, pairs["episode_idx"], pairs["start_step"]):
        env.reset(seed=0, options=spec["options"])
        actions = ds.read_episode(int(e), ["action"])["action"][t:t + 10]
        for a in actions:
            *_, info = env.step(a)
        assert info["success"]


def test_pusht_restores_the_block_at_rest():
    env = PushTEnv(image_size=32)
    state = np.array([100.0, 200.0, 300.0, 250.0, 1.0, 3.0, -4.0], np.float32)
    sim = env.sim_state_from_state(state)
    np.testing.assert_array_equal(sim, [100, 200, 3, -4, 300, 250, 1.0, 0, 0, 0])
    env.reset(seed=0, options={"sim_state": sim})
    np.testing.assert_allclose(env.get_state(), state, atol=1e-5)


def test_an_env_that_cannot_restore_from_state_says_so(recorded, monkeypatch):
    monkeypatch.setattr(PushTEnv, "sim_state_from_state", SWMEnv.sim_state_from_state)
    _, theirs = recorded["swm/PushT-v1"]
    world = World("swm/PushT-v1", num_envs=1, image_size=32)
    with pytest.raises(ValueError, match=r"has no 'sim_state' column and PushTEnv cannot restore its simulator "
                                         r"from a recorded state alone"):
        world.dataset_starts(theirs, episodes=2, goal_offset=10)


def test_solver_main_plans_on_the_package_layout_as_on_swms_own(recorded, tmp_path):
    """A solver main on data in the package's layout (no env id in it: --env-id), the true simulator as the model:
    the same pairs, the same plans and the same successes as on swm's own recording of those episodes."""
    results = []
    for name, path in zip(("ours", "theirs"), recorded["swm/TwoRoom-v1"]):
        out = tmp_path / f"{name}.json"
        proc = subprocess.run([sys.executable, "solvers/cem_plan.py", "--checkpoint", "oracle", "--env-id",
                               "swm/TwoRoom-v1", "--dataset", str(path), "--episodes", "4", "--num-envs", "4",
                               "--num-samples", "32", "--topk", "4", "--iters", "3", "--goal-offset", "10",
                               "--eval-budget", "20", "--no-episodic", "--no-floors", "--output-json", str(out)],
                              cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        results.append(json.loads(out.read_text())["dataset"]["cem"])
    ours, theirs = results
    assert all(theirs["restored_from_state"]) and not any(ours["restored_from_state"])
    assert theirs["episode_idx"] == ours["episode_idx"] and theirs["start_step"] == ours["start_step"]
    assert theirs["success"] == ours["success"] and any(ours["success"])
