"""World: batched infos, episodic evaluation without selection bias, collection, the dataset-driven protocol."""

import gymnasium as gym
import numpy as np
import pytest

from swm_core import NoOpPolicy, RandomPolicy, VariationSpace, World
from swm_core.data import open_dataset
from swm_core.envs.base import SWMEnv
from swm_core.spaces import RGB, Box
from swm_core.world import evaluation_seeds


class TimedEnv(SWMEnv):
    """A 1-D walker: x += action. Even seeds start 2 steps from the goal, odd seeds 1000 steps away, so quick
    successes and slow failures are interleaved and a biased evaluator over-counts successes."""

    variation_space = VariationSpace({"agent": {"color": RGB((255, 0, 0)), "offset": Box(0, 5, default=0)}})
    default_variations = ()

    def __init__(self, image_size=8, render_mode="rgb_array"):
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        super().__init__(image_size, render_mode)

    def _reset_sim(self, rng, options):
        self.x = 0.0
        self.far = bool(self._seed_parity)

    def reset(self, *, seed=None, options=None):
        self._seed_parity = (seed or 0) % 2
        return super().reset(seed=seed, options=options)

    def _sample_goal_state(self, rng):
        return np.array([1000.0 if self.far else 2.0], np.float32)

    def _step_sim(self, action):
        self.x += float(action[0])

    def _render_state(self, state):
        img = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        img[..., 0] = int(state[0]) % 256
        img[0, 0] = self.variation["agent.color"]
        return img

    def _success(self):
        return abs(self.x - float(self.goal_state[0])) < 0.5

    def _proprio_of(self, state):
        return np.asarray(state, np.float32)

    def get_state(self):
        return np.array([self.x], np.float32)

    def get_sim_state(self):
        return np.array([self.x], np.float64)

    def set_sim_state(self, sim_state):
        self.x = float(sim_state[0])


if "swm-test/Timed-v0" not in gym.registry:
    gym.register("swm-test/Timed-v0", entry_point=TimedEnv)


class Forward:
    def get_actions(self, infos):
        return np.ones((len(infos["step_idx"]), 1), np.float32)


def test_unknown_env_id_lists_native_envs():
    with pytest.raises(ValueError, match=r"unknown env id 'swm/Nope-v1'.*swm/PushT-v1"):
        World("swm/Nope-v1")
    # a registered Gymnasium env that is not a swm env runs as a black box (frames only; tests/test_blackbox.py)
    assert World("CartPole-v1").variation_space is None


def test_infos_are_batched_and_step_updates_them():
    world = World("swm-test/Timed-v0", num_envs=3, image_size=8, max_episode_steps=5, seed=0)
    world.reset(seed=10)
    assert world.infos["pixels"].shape == (3, 8, 8, 3) and world.infos["pixels"].dtype == np.uint8
    assert world.infos["goal"].shape == (3, 8, 8, 3)
    assert world.infos["variation.agent.color"].shape == (3, 3)
    world.set_policy(Forward())
    world.step()
    np.testing.assert_array_equal(world.infos["state"][:, 0], [1, 1, 1])
    np.testing.assert_array_equal(world.infos["step_idx"], [1, 1, 1])
    np.testing.assert_array_equal(world.infos["action"][:, 0], [1, 1, 1])


def test_step_rejects_wrong_action_shape():
    world = World("swm-test/Timed-v0", num_envs=2, image_size=8)
    world.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 1\)"):
        world.step(np.zeros((3, 1), np.float32))


def test_evaluate_counts_every_episode_without_bias():
    # 12 episodes on 4 slots: even seeds succeed at step 2, odd ones never (budget 20)
    world = World("swm-test/Timed-v0", num_envs=4, image_size=8, max_episode_steps=20)
    result = world.evaluate(Forward(), episodes=12, seed=0)
    seeds = result["seeds"]
    np.testing.assert_array_equal(seeds, evaluation_seeds(0, 12))  # derived from the seed, not collect's 0..11
    assert not set(seeds.tolist()) & set(range(12)) and 0 < (seeds % 2 == 0).sum() < 12
    even = seeds % 2 == 0
    assert result["episodes"] == 12
    assert result["success_rate"] == even.mean()
    np.testing.assert_array_equal(result["success"], even)
    np.testing.assert_array_equal(result["steps_to_success"], np.where(even, 2, -1))
    np.testing.assert_array_equal(result["episode_length"], np.where(even, 2, 20))


def test_evaluate_fewer_episodes_than_envs_and_options_recorded():
    world = World("swm-test/Timed-v0", num_envs=4, image_size=8, max_episode_steps=4)
    options = {"variation_values": {"agent.color": [1, 2, 3]}}
    result = world.evaluate(Forward(), episodes=2, seed=4, options=options)
    assert result["episodes"] == 2 and result["success_rate"] == np.mean(result["seeds"] % 2 == 0)
    np.testing.assert_array_equal(result["variations"][0]["agent.color"], [1, 2, 3])


def test_noop_and_random_policies_shapes():
    world = World("swm-test/Timed-v0", num_envs=3, image_size=8)
    world.reset(seed=0)
    noop, rand = NoOpPolicy(), RandomPolicy(seed=1)
    world.set_policy(noop)
    assert np.all(noop.get_actions(world.infos) == 0)
    world.set_policy(rand)
    a, b = rand.get_actions(world.infos), RandomPolicy(world.action_space, seed=1).get_actions(world.infos)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 1) and np.all(np.abs(a) <= 1)


def test_collect_then_evaluate_from_dataset_restores_state_and_fov(tmp_path):
    path = tmp_path / "timed.lance"
    world = World("swm-test/Timed-v0", num_envs=2, image_size=8, max_episode_steps=30, seed=0)
    options = {"variation": ["agent.color", "agent.offset"]}
    world.collect(path, episodes=4, seed=0, options=options, policy=Forward(), encoding="raw", progress=False)

    from swm_core.data import open_dataset

    ds = open_dataset(path)
    assert ds.num_episodes == 4 and list(ds.episode_lengths) == [31] * 4
    ep = ds.read_episode(ds.episode_ids[0], ["state", "action", "variation__agent__color", "pixels"])
    np.testing.assert_array_equal(ep["state"][:, 0], np.arange(31))
    assert np.all(ep["action"][:-1] == 1) and np.all(np.isnan(ep["action"][-1]))
    colors = ep["variation__agent__color"]
    assert np.all(colors == colors[0])  # held for the whole episode
    np.testing.assert_array_equal(ep["pixels"][:, 0, 0], colors)

    # dataset-driven: start at a recorded step, goal = recorded frame goal_offset later; moving forward
    # reaches it in exactly goal_offset steps, doing nothing never does.
    fresh = World("swm-test/Timed-v0", num_envs=3, image_size=8, max_episode_steps=30)
    res = fresh.evaluate_from_dataset(path, episodes=6, goal_offset=5, eval_budget=10, seed=3, policy=Forward())
    assert res["success_rate"] == 1.0
    np.testing.assert_array_equal(res["steps_to_success"], [5] * 6)
    np.testing.assert_array_equal(res["goal_state"][:, 0] - res["start_state"][:, 0], [5] * 6)
    for k in range(6):  # FoV values restored from the recorded episode
        rec = ds.read_episode(int(res["episode_idx"][k]), ["variation__agent__color"])["variation__agent__color"][0]
        np.testing.assert_array_equal(res["variations"][k]["agent.color"], rec)
    noop = fresh.evaluate_from_dataset(path, episodes=6, goal_offset=5, eval_budget=10, seed=3, policy=NoOpPolicy())
    assert noop["success_rate"] == 0.0
    np.testing.assert_array_equal(noop["episode_idx"], res["episode_idx"])  # same pairs for the same seed


def test_evaluate_from_dataset_errors(tmp_path):
    world = World("swm-test/Timed-v0", num_envs=1, image_size=8, max_episode_steps=10)
    with pytest.raises(FileNotFoundError, match="missing.lance"):
        world.evaluate_from_dataset(tmp_path / "missing.lance", episodes=1, policy=Forward())
    path = tmp_path / "short.lance"
    world.collect(path, episodes=1, seed=0, policy=Forward(), progress=False)
    with pytest.raises(ValueError, match="longer than goal_offset=25"):
        world.evaluate_from_dataset(path, episodes=1, goal_offset=25, policy=Forward())
    other = World("swm-test/Timed-v0", num_envs=1, image_size=16)
    with pytest.raises(ValueError, match="holds 8px frames"):
        other.evaluate_from_dataset(path, episodes=1, goal_offset=2, policy=Forward())


def test_collect_is_reproducible(tmp_path):
    def run(p):
        w = World("swm-test/Timed-v0", num_envs=2, image_size=8, max_episode_steps=6)
        w.collect(p, episodes=3, seed=7, options={"variation": ["agent"]}, policy=RandomPolicy(seed=7),
                  encoding="raw", progress=False)
        from swm_core.data import open_dataset

        ds = open_dataset(p)
        return ds.read_rows(np.arange(ds.num_rows), ["action", "variation__agent__offset"])

    a, b = run(tmp_path / "a.lance"), run(tmp_path / "b.lance")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_bad_counts_budgets_and_options_are_named(tmp_path):
    world = World("swm-test/Timed-v0", num_envs=2, image_size=8, max_episode_steps=6)
    with pytest.raises(ValueError, match="max_episode_steps must be >= 1 env steps, got 0"):
        world.evaluate(Forward(), episodes=2, max_episode_steps=0)
    with pytest.raises(ValueError, match="episodes must be >= 1, got -2"):
        world.evaluate(Forward(), episodes=-2)
    with pytest.raises(ValueError, match="commit_every must be >= 1, got 0"):
        world.collect(tmp_path / "c.lance", episodes=2, policy=Forward(), commit_every=0, progress=False)
    assert not (tmp_path / "c.lance").exists()
    with pytest.raises(ValueError, match="max_episode_steps must be >= 1 env steps, got -3"):
        world.collect(tmp_path / "c.lance", episodes=2, policy=Forward(), max_episode_steps=-3, progress=False)
    with pytest.raises(ValueError, match="options is a list of 3 dicts, but the World has 2 envs"):
        world.reset(seed=0, options=[{}, {}, {}])
    world.collect(tmp_path / "d.lance", episodes=2, policy=Forward(), encoding="raw", progress=False)
    with pytest.raises(ValueError, match="eval_budget must be >= 1 env steps, got 0"):
        world.evaluate_from_dataset(tmp_path / "d.lance", episodes=2, goal_offset=2, eval_budget=0, policy=Forward())
    with pytest.raises(ValueError, match="goal_offset must be >= 1 env steps"):
        world.evaluate_from_dataset(tmp_path / "d.lance", episodes=2, goal_offset=-5, policy=Forward())
    with pytest.raises(ValueError, match="episodes must be >= 1, got -1"):
        world.evaluate_from_dataset(tmp_path / "d.lance", episodes=-1, goal_offset=2, policy=Forward())


def test_a_policy_acts_again_after_an_evaluation():
    world = World("swm-test/Timed-v0", num_envs=3, image_size=8, max_episode_steps=4)
    world.evaluate(Forward(), episodes=1, seed=0)  # slots 1 and 2 idle: marked inactive
    world.reset(seed=0)
    assert world.infos["active"].all()


def test_truncated_marks_the_last_step_of_the_runs_budget(tmp_path):
    world = World("swm-test/Timed-v0", num_envs=1, image_size=8, max_episode_steps=10)
    world.collect(tmp_path / "t.lance", episodes=1, seed=1, policy=Forward(), max_episode_steps=4, encoding="raw",
                  progress=False)  # seed 1: the goal is far, the episode runs its whole budget of 4 steps
    rows = open_dataset(tmp_path / "t.lance").read_rows(np.arange(5), ["truncated"])["truncated"]
    assert rows.tolist() == [False, False, False, False, True]


def test_automatic_resets_keep_the_options_of_reset():
    world = World("swm-test/Timed-v0", num_envs=2, image_size=8, max_episode_steps=2)
    world.reset(seed=0, options={"variation_values": {"agent.color": [0, 0, 255]}})
    for _ in range(5):  # episodes of 2 steps: two automatic resets per env
        world.step(np.ones((2, 1), np.float32))
        assert world.infos["variation.agent.color"].tolist() == [[0, 0, 255]] * 2



def test_discrete_actions_are_stored_as_integers(tmp_path):
    for env_id, shape in (("swm/TwoRoomDiscrete-v1", ()), ("swm/TwoRoomMultiDiscrete-v1", (2,))):
        world = World(env_id, num_envs=2, image_size=16, max_episode_steps=5)
        path = tmp_path / f"{env_id.split('/')[1]}.lance"
        world.collect(path, episodes=2, policy=RandomPolicy(seed=0), progress=False)
        ds = open_dataset(path)
        actions = ds.read_rows(np.arange(ds.num_rows), ["action"])["action"]
        assert actions.dtype == np.int64 and actions.shape == (ds.num_rows, *shape)
        last = ds.episode_offsets + ds.episode_lengths - 1  # no action follows an episode's last observation
        assert (actions[last] == -1).all()
        taken = np.delete(actions, last, axis=0)
        assert ((taken >= 0) & (taken < world.action_space.nvec.max() if shape else taken < 9)).all()
