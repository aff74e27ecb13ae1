"""MPCPolicy: receding horizon, warm start, batching, discrete actions, and the whole loop on a known model."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from swm_core import MPCPolicy, World

ROOT = Path(__file__).resolve().parent.parent




class PointModel(nn.Module):
    """An exact Two-Room model without walls: pos' = pos + speed * a per env step; cost = distance to goal."""

    def __init__(self, action_block=5, speed=5.0):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.action_dim, self.action_block, self.speed = 2, action_block, speed

    def get_cost(self, infos, candidates):
        b, s, h, _ = candidates.shape
        steps = candidates.reshape(b, s, h * self.action_block, 2).clamp(-1, 1)
        final = infos["state"][:, None] + self.speed * steps.sum(2)
        return (final - infos["goal_state"][:, None]).norm(dim=-1)


class ScriptedSolver:
    """Returns plan k filled with the value k (per env) and records every init it was given."""

    def __init__(self):
        self.inits, self.calls = [], 0

    def __call__(self, cost_fn, init, low, high):
        self.inits.append(init.clone())
        self.calls += 1
        b, h, d = init.shape
        costs = cost_fn(torch.zeros(b, 3, h, d))
        assert costs.shape == (b, 3)
        steps = torch.arange(h, dtype=torch.float32)[None, :, None] / 10
        return (self.calls / 10 + steps).expand(b, h, d).clamp(-1, 1)


def fake_infos(n, step=0):
    return {"step_idx": np.full(n, step), "state": np.zeros((n, 2), np.float32),
            "goal_state": np.ones((n, 2), np.float32), "active": np.ones(n, bool)}


def test_receding_horizon_and_warm_start():
    solver = ScriptedSolver()
    policy = MPCPolicy(PointModel(action_block=2), solver, horizon=3, receding_horizon=2)
    policy.set_action_space(gym.spaces.Box(-1, 1, (2,), np.float32))
    infos = fake_infos(2)
    executed = [policy.get_actions(infos) for _ in range(8)]
    assert solver.calls == 2  # 2 model steps x 2 env steps executed per plan -> a new plan every 4 env steps
    # plan 1 = 0.1 + [0, .1, .2] per model step; executed: model steps 0, 1, each repeated over its 2 env steps
    np.testing.assert_allclose([a[0, 0] for a in executed[:4]], [0.1, 0.1, 0.2, 0.2], atol=1e-6)
    np.testing.assert_allclose([a[0, 0] for a in executed[4:]], [0.2, 0.2, 0.3, 0.3], atol=1e-6)
    # warm start: the second plan starts from the unexecuted tail of the first (model step 2), then zeros
    assert torch.all(solver.inits[0] == 0)
    np.testing.assert_allclose(solver.inits[1][0, :, 0].numpy(), [0.3, 0.0, 0.0], atol=1e-6)

    cold_solver = ScriptedSolver()
    cold = MPCPolicy(PointModel(action_block=2), cold_solver, horizon=3, receding_horizon=2, warm_start=False)
    cold.set_action_space(gym.spaces.Box(-1, 1, (2,), np.float32))
    for _ in range(5):
        cold.get_actions(infos)
    assert cold_solver.calls == 2 and torch.all(cold_solver.inits[1] == 0)


def test_reset_replans_only_that_env_and_inactive_envs_do_not_plan():
    solver = ScriptedSolver()
    policy = MPCPolicy(PointModel(action_block=1), solver, horizon=2, receding_horizon=2)
    policy.set_action_space(gym.spaces.Box(-1, 1, (2,), np.float32))
    infos = fake_infos(3)
    policy.get_actions(infos)
    assert solver.inits[-1].shape[0] == 3
    policy.reset([1])
    policy.get_actions(infos)
    assert solver.calls == 2 and solver.inits[-1].shape[0] == 1  # only env 1 replanned
    infos["active"][:] = [True, False, True]
    policy.reset([0, 1, 2])
    policy.get_actions(infos)
    assert solver.inits[-1].shape[0] == 2


def test_action_size_mismatch_and_bad_arguments():
    with pytest.raises(ValueError, match="receding_horizon must be in"):
        MPCPolicy(PointModel(), ScriptedSolver(), horizon=2, receding_horizon=3)
    policy = MPCPolicy(PointModel(), ScriptedSolver())
    with pytest.raises(ValueError, match=r"expects actions of size 2 per env step.*size 3"):
        policy.set_action_space(gym.spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(ValueError, match="plans continuous actions"):
        policy.set_action_space(gym.spaces.Discrete(9))


def test_cem_mpc_reaches_two_room_goals_with_an_exact_model(load_script):
    """The whole loop (World -> MPCPolicy -> CEM -> get_cost) on an exact model: same-room goals are reached."""
    cem = load_script("solvers/cem_plan.py")
    world = World("swm/TwoRoom-v1", num_envs=4, image_size=16, max_episode_steps=60)
    solver = cem.CEMSolver(num_samples=64, topk=8, iters=5, seed=0)
    policy = MPCPolicy(PointModel(), solver, horizon=3, receding_horizon=1)
    options = {"variation_values": {"agent.position": [60, 60], "target.position": [90, 150]}}
    result = world.evaluate(policy, episodes=4, seed=0, options=options)
    assert result["success_rate"] == 1.0
    # 95 px away, success within 16 px, 5 px per step: at least 16 steps; a good planner takes few more
    assert np.all(result["steps_to_success"] <= 26)


@pytest.mark.parametrize("script", ["categorical_cem", "pgd"])
@pytest.mark.parametrize("env_id", ["swm/TwoRoomDiscrete-v1", "swm/TwoRoomMultiDiscrete-v1"])
def test_discrete_solver_executes_indices_in_the_discrete_env(load_script, env_id, script):
    module = load_script(f"solvers/{script}_plan.py")
    world = World(env_id, num_envs=2, image_size=16, max_episode_steps=60)
    table = module.env_action_table(world.envs[0], world.action_space, bins=3)  # the env's own table
    assert len(table) == (9 if env_id == "swm/TwoRoomDiscrete-v1" else 25)
    if script == "categorical_cem":
        solver = module.CategoricalCEMSolver(table, num_samples=64, topk=8, iters=4, seed=0)
    else:
        solver = module.PGDSolver(table, num_samples=8, iters=30, seed=0)
    policy = MPCPolicy(PointModel(action_block=2), solver, horizon=3, receding_horizon=1)
    options = {"variation_values": {"agent.position": [60, 60], "target.position": [60, 160]}}
    result = world.evaluate(policy, episodes=2, seed=0, options=options)
    assert result["success_rate"] == 1.0
    actions = policy.get_actions(world.infos)  # what World steps the envs with: valid elements of the space
    assert actions.dtype == np.int64 and all(world.action_space.contains(a) for a in actions)


def test_table_and_space_mismatch_and_a_bad_plan_shape_are_named(load_script):
    ccem = load_script("solvers/categorical_cem_plan.py")
    from swm_core.envs.two_room import TwoRoomDiscreteEnv

    solver = ccem.CategoricalCEMSolver(torch.as_tensor(TwoRoomDiscreteEnv.action_table), num_samples=8, topk=2)
    with pytest.raises(ValueError, match=r"action_table has 9 rows but the env's action space MultiDiscrete"):
        MPCPolicy(PointModel(), solver).set_action_space(gym.spaces.MultiDiscrete([5, 5]))

    class WrongShape:  # a solver returning one action dim too many
        def __call__(self, cost_fn, init, low, high):
            return torch.zeros(init.shape[0], init.shape[1], init.shape[2] + 1)

    world = World("swm/TwoRoom-v1", num_envs=2, image_size=16, max_episode_steps=10)
    policy = MPCPolicy(PointModel(), WrongShape(), horizon=3, receding_horizon=1)
    world.set_policy(policy)
    world.reset(seed=0)
    with pytest.raises(ValueError, match=r"solver WrongShape returned a plan of shape \(2, 3, 11\), expected \(2, 3, 10\)"):
        policy.get_actions(world.infos)


class GoalReacher(nn.Module):
    """A 'trained' feed-forward policy: unit step from state toward goal_state."""

    def get_action(self, infos):
        d = infos["goal_state"] - infos["state"]
        return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def test_feedforward_policy_in_world():
    from swm_core import FeedForwardPolicy

    world = World("swm/TwoRoom-v1", num_envs=2, image_size=16, max_episode_steps=40)
    options = {"variation_values": {"agent.position": [40, 60], "target.position": [90, 150]}}
    result = world.evaluate(FeedForwardPolicy(GoalReacher()), episodes=2, seed=0, options=options)
    assert result["success_rate"] == 1.0


def test_cem_main_refuses_a_checkpoint_for_another_action_size(load_script, tmp_path):
    lewm = load_script("baselines/lewm_train.py")
    from swm_core.checkpoint import save_checkpoint

    config = dict(action_dim=3, action_block=2, history=1, image_size=16, encoder="conv", conv_channels=[4, 8],
                  latent_dim=8, proj_hidden=16, action_hidden=8, pred_depth=1, pred_heads=2, pred_dim_head=4,
                  pred_mlp_dim=16, dropout=0.0)
    path = save_checkpoint(tmp_path / "three.pt", lewm.LeWM(**config), config, env_id="swm/TwoRoom-v1")
    cem = load_script("solvers/cem_plan.py")
    args = cem.Args(checkpoint=str(path), episodes=1, num_envs=1, num_samples=4, topk=2, iters=1, floors=False)
    with pytest.raises(ValueError, match=r"expects actions of size 3 per env step.*size 2"):
        cem.main(args)


def tiny_lewm_checkpoint(load_script, path, env_id="swm/TwoRoom-v1"):
    lewm = load_script("baselines/lewm_train.py")
    from swm_core.checkpoint import save_checkpoint

    config = dict(action_dim=2, action_block=2, history=1, image_size=16, encoder="conv", conv_channels=[4, 8],
                  latent_dim=8, proj_hidden=16, action_hidden=8, pred_depth=1, pred_heads=2, pred_dim_head=4,
                  pred_mlp_dim=16, dropout=0.0)
    return save_checkpoint(path, lewm.LeWM(**config), config, env_id=env_id)


def test_solver_mains_refuse_a_checkpoint_of_another_env(load_script, tmp_path):
    path = tiny_lewm_checkpoint(load_script, tmp_path / "tworoom.pt")
    for script in ("cem", "mppi"):
        module = load_script(f"solvers/{script}_plan.py")
        args = module.Args(checkpoint=str(path), env_id="swm/PushT-v1", episodes=1, num_envs=1, num_samples=4,
                           iters=1, floors=False)
        with pytest.raises(ValueError, match=r"trained on 'swm/TwoRoom-v1', but the env to plan in is 'swm/PushT-v1'"):
            module.main(args)


@pytest.mark.parametrize("script", ["cem", "icem", "mppi", "predictive_sampling"])
def test_solver_mains_hold_block_noise_over_the_models_action_block(load_script, tmp_path, monkeypatch, script):
    """--block-noise: the main gives the solver the checkpoint's action_block (2), so each draw covers 2 env steps."""
    path = tiny_lewm_checkpoint(load_script, tmp_path / "tworoom.pt")
    module = load_script(f"solvers/{script}_plan.py")
    cls = next(v for k, v in vars(module).items() if k.endswith("Solver") and hasattr(v, "noise"))
    drawn = []
    original = cls.noise

    def spy(self, shape, gen, like):
        noise = original(self, shape, gen, like)
        drawn.append((self.block_noise, self.action_block, noise))
        return noise

    monkeypatch.setattr(cls, "noise", spy)
    extra = {"topk": 2} if script == "cem" else {"topk": 1, "keep_elites": 0.0} if script == "icem" else {}
    module.main(module.Args(checkpoint=str(path), episodes=1, num_envs=1, num_samples=4, iters=1, floors=False,
                            eval_budget=4, block_noise=True, **extra))
    assert drawn and all(held and block == 2 for held, block, _ in drawn)
    noise = drawn[0][2]
    steps = noise.reshape(*noise.shape[:3], 2, 2)
    assert torch.equal(steps[..., 0, :], steps[..., 1, :])


@pytest.mark.parametrize("env_id", ["swm/TwoRoomDiscrete-v1", "swm/TwoRoomMultiDiscrete-v1"])
def test_discrete_solver_mains_plan_a_two_room_model_in_its_discrete_variants(load_script, tmp_path, env_id):
    path = tiny_lewm_checkpoint(load_script, tmp_path / "tworoom.pt")  # trained on the continuous env: same dynamics
    for script in ("categorical_cem", "pgd"):
        module = load_script(f"solvers/{script}_plan.py")
        sizes = dict(num_samples=4, topk=2) if script == "categorical_cem" else dict(num_samples=4)
        args = module.Args(checkpoint=str(path), env_id=env_id, episodes=2, num_envs=2, iters=1, eval_budget=4,
                           **sizes)  # with the no-op and random floors, which act in the discrete space too
        result = module.main(args)
        assert result["env_id"] == env_id
        assert [r["episodes"] for r in result["tables"]["episodic"]] == [2, 2, 2]

