"""``return_best`` of the sampling solvers (CEM, iCEM, MPPI, predictive sampling) and the oracle world model
(swm_core/oracle.py: the true simulator planned like a model), down to the solver mains and the success table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swm_core import MPCPolicy, NoOpPolicy, RandomPolicy, World
from swm_core.oracle import OracleWorldModel
from swm_core.policy import PLAN_KEYS

ROOT = Path(__file__).resolve().parent.parent
SAMPLING = ("cem", "icem", "mppi", "predictive_sampling")
CLASSES = {"cem": "CEMSolver", "icem": "ICEMSolver", "mppi": "MPPISolver",
           "predictive_sampling": "PredictiveSamplingSolver"}
GOOD, WIDTH = torch.tensor([-0.6, -0.6]), 0.3  # the better basin's centre and width; the other basin is at +0.6


def two_basins(candidates: torch.Tensor) -> torch.Tensor:
    """(B, S, 1, 2) -> (B, S): 1 minus a narrow well at -0.6 (depth 1) and one at +0.6 (depth 0.8); their average
    (the origin) costs ~1, the worst there is."""
    x = candidates.flatten(2)
    return 1 - torch.exp(-((x - GOOD) ** 2).sum(-1) / WIDTH**2) - 0.8 * torch.exp(-((x + GOOD) ** 2).sum(-1) / WIDTH**2)


@pytest.fixture(scope="module")
def solvers(load_script):
    return {name: getattr(load_script(f"solvers/{name}_plan.py"), CLASSES[name]) for name in SAMPLING}


def make(solvers, name, seed=0, return_best=False, **kw):
    sizes = {"num_samples": 200, "iters": 2, **kw}
    if name in ("cem", "icem"):
        sizes["topk"] = sizes["num_samples"] // 10
    return solvers[name](seed=seed, return_best=return_best, **sizes)


class Recorder:
    """A cost function that remembers every cost it returned (per call: (B, S))."""

    def __init__(self, fn):
        self.fn, self.costs = fn, []

    def __call__(self, candidates):
        costs = self.fn(candidates)
        self.costs.append(costs.clone())
        return costs


@pytest.mark.parametrize("name", ["cem", "icem", "mppi"])
@pytest.mark.parametrize("seed", [0, 1])
def test_best_lands_in_the_better_basin_where_the_mean_does_not(solvers, name, seed):
    """After two iterations the elites (MPPI: the weights) still cover both wells, so the mean sits between them;
    the best candidate evaluated lies in the deeper well."""
    init = torch.zeros(4, 1, 2)
    mean_plan = make(solvers, name, seed)(two_basins, init, -1.0, 1.0)
    best_plan = make(solvers, name, seed, return_best=True)(two_basins, init, -1.0, 1.0)
    to_good, to_other = (best_plan.flatten(1) - GOOD).norm(dim=1), (best_plan.flatten(1) + GOOD).norm(dim=1)
    assert (to_good < WIDTH / 2).all() and (to_good < to_other).all(), best_plan  # at the bottom of the deeper well
    assert (two_basins(best_plan[:, None]) < 0.25).all(), best_plan
    assert (two_basins(mean_plan[:, None]) > 0.4).all(), mean_plan  # on neither well's floor


@pytest.mark.parametrize("name", SAMPLING)
def test_returned_plan_costs_the_lowest_cost_evaluated_and_stays_in_bounds(solvers, name):
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(3, 4, 2, generator=gen) * 2 - 1
    cost = Recorder(lambda c: (c - target[:, None]).pow(2).flatten(2).sum(-1).sqrt())  # a kinked (L2) cost
    low, high = torch.tensor([-0.5, -1.0]), torch.tensor([1.0, 0.25])
    solver = make(solvers, name, return_best=True, num_samples=32, iters=5)
    plan = solver(cost, torch.zeros(3, 4, 2), low, high)
    lowest = torch.stack([c.min(dim=1).values for c in cost.costs]).min(dim=0).values
    assert torch.equal(solver.last_info["best_seen_cost"], lowest)
    assert torch.equal(cost.fn(plan[:, None])[:, 0], lowest)
    assert solver.last_info["return_best"] is True
    assert (plan >= low).all() and (plan <= high).all()


@pytest.mark.parametrize("name", SAMPLING)
def test_same_seed_same_plan_and_the_default_is_unchanged(solvers, name):
    init = torch.zeros(4, 1, 2)
    plans = [make(solvers, name, seed=5, return_best=True)(two_basins, init, -1.0, 1.0) for _ in range(2)]
    assert torch.equal(plans[0], plans[1])
    default, off = make(solvers, name, seed=5), make(solvers, name, seed=5, return_best=False)
    assert solvers[name](seed=5).return_best is False  # the paper's behaviour unless asked
    assert torch.equal(default(two_basins, init, -1.0, 1.0), off(two_basins, init, -1.0, 1.0))
    # tracking the best does not touch the random stream: the last evaluated mean is the same with the option on
    on = make(solvers, name, seed=5, return_best=True)
    on(two_basins, init, -1.0, 1.0)
    key = "best_cost" if name == "predictive_sampling" else "mean_cost"
    assert torch.equal(on.last_info[key], default.last_info[key])
    if name == "predictive_sampling":  # its nominal is already the best of a deterministic cost: the same plan
        assert torch.equal(make(solvers, name, seed=5)(two_basins, init, -1.0, 1.0), plans[0])


def test_icem_warm_start_continues_from_the_returned_best(solvers):
    """iCEM carries its elites to the next replan when the new init is a shift of the plan it returned."""
    solver = make(solvers, "icem", return_best=True, iters=3)
    cost = lambda c: two_basins(c[:, :, :1])  # noqa: E731  (only the first model step matters)
    plan = solver(cost, torch.zeros(2, 3, 2), -1.0, 1.0)
    shifted = torch.cat([plan[:, 1:], torch.zeros_like(plan[:, :1])], dim=1)
    solver(cost, shifted, -1.0, 1.0)
    assert solver.last_info["reused_elites"].all()


# ------------------------------------------------------------------------------------------------- the oracle


def record(env_id: str, steps: int = 25, seed: int = 3):
    """Start infos (the planner's keys), the random actions taken (N, steps, A) and the end states (N, state)."""
    world = World(env_id, num_envs=2, seed=seed)
    world.reset(seed=seed)
    start = {k: v.copy() for k, v in world.infos.items()}
    policy = RandomPolicy(world.action_space, seed=seed)
    actions = []
    for _ in range(steps):
        actions.append(policy.get_actions(world.infos))
        world.step(actions[-1])
    return start, np.stack(actions, 1), world.infos["state"].copy()


def planner_infos(start: dict, model, goal_state) -> dict:
    keys = PLAN_KEYS + model.plan_keys
    return {k: torch.as_tensor(np.ascontiguousarray(goal_state if k == "goal_state" else start[k])) for k in keys}


# the success rule's first tolerance: moving the goal's first state coordinate by it costs exactly 1
UNIT = {"swm/PushT-v1": 20.0, "swm/TwoRoom-v1": 16.0, "swm/Pendulum-v1": 0.1, "swm/CartPole-v1": 0.1,
        "swm/MountainCar-v1": 0.05}


@pytest.mark.parametrize("env_id", sorted(UNIT))
def test_oracle_cost_is_zero_at_the_end_state_of_the_recorded_actions(env_id):
    model = OracleWorldModel(env_id, action_block=5)
    start, actions, end = record(env_id)
    infos = planner_infos(start, model, end)
    recorded = torch.as_tensor(actions).reshape(2, 1, 5, -1)
    candidates = torch.cat([recorded, torch.zeros_like(recorded), recorded.flip(2)], dim=1)
    costs = model.get_cost(infos, candidates)
    assert costs.shape == (2, 3) and costs.dtype == torch.float32
    assert torch.equal(costs[:, 0], torch.zeros(2))  # the simulator is the env: exactly where the env went
    assert (costs[:, 1:] > 0.05).all()
    assert model.sim_steps == 2 * 3 * 25
    # the cost is in units of the success thresholds: the end state of the recorded actions moved on purpose
    shifted = end.copy()
    shifted[:, 0] += UNIT[env_id]
    assert torch.allclose(model.get_cost(planner_infos(start, model, shifted), recorded)[:, 0], torch.ones(2),
                          atol=1e-4)


def test_acrobot_oracle_cost_is_the_tip_height_missing_over_the_arm_length():
    model = OracleWorldModel("swm/Acrobot-v1", action_block=5)
    start, actions, end = record("swm/Acrobot-v1")
    recorded = torch.as_tensor(actions).reshape(2, 1, 5, 5)
    assert torch.equal(model.get_cost(planner_infos(start, model, end), recorded)[:, 0], torch.zeros(2))
    upright = np.tile(np.array([np.pi, 0.0, 0.0, 0.0], np.float32), (2, 1))  # tip at l1 + l2 above the pivot
    lengths = start["variation.physics.link_length_1"] + start["variation.physics.link_length_2"]
    tip = -start["variation.physics.link_length_1"] * np.cos(end[:, 0]) \
        - start["variation.physics.link_length_2"] * np.cos(end[:, 0] + end[:, 1])
    expected = torch.as_tensor((lengths - tip) / lengths, dtype=torch.float32)
    assert torch.allclose(model.get_cost(planner_infos(start, model, upright), recorded)[:, 0], expected, atol=1e-5)


def test_pusht_oracle_cost_counts_the_angle_modulo_the_block_symmetry():
    model = OracleWorldModel("swm/PushT-v1", action_block=1)
    start, actions, end = record("swm/PushT-v1", steps=3)
    recorded = torch.as_tensor(actions).reshape(2, 1, 3, 2)
    turned = end.copy()
    turned[:, 4] += np.pi / 9  # a T has no rotational symmetry: an error of pi/9 costs 1
    assert torch.allclose(model.get_cost(planner_infos(start, model, turned), recorded)[:, 0], torch.ones(2),
                          atol=1e-5)
    full_turn = end.copy()
    full_turn[:, 4] += 2 * np.pi
    assert model.get_cost(planner_infos(start, model, full_turn), recorded).abs().max() < 1e-5


def test_oracle_solves_an_easy_two_room_pair_where_no_op_does_not():
    options = {"variation_values": {"agent.position": [60.0, 60.0], "target.position": [90.0, 90.0]}}
    successes = {}
    for name, policy in (("oracle", MPCPolicy(OracleWorldModel("swm/TwoRoom-v1"), make_cem(), horizon=2,
                                              receding_horizon=2, device="cpu")), ("no-op", NoOpPolicy())):
        world = World("swm/TwoRoom-v1", num_envs=2, seed=0)
        world.set_policy(policy)
        world.reset(seed=0, options=options)
        done = np.zeros(2, bool)
        for _ in range(30):
            world.step()
            done |= world.infos["success"]
        successes[name] = done
    assert successes["oracle"].all() and not successes["no-op"].any()


def make_cem():
    from swm_core.checkpoint import import_script

    return import_script(ROOT / "solvers" / "cem_plan.py").CEMSolver(num_samples=32, topk=4, iters=3, seed=0,
                                                                      return_best=True)


def test_oracle_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"no oracle for env 'swm/Nope-v1'.*swm/PushT-v1"):
        OracleWorldModel("swm/Nope-v1")
    with pytest.raises(ValueError, match="action_block must be an integer >= 1, got 0"):
        OracleWorldModel("swm/TwoRoom-v1", action_block=0)
    model = OracleWorldModel("swm/TwoRoomDiscrete-v1", action_block=1)  # simulated with its continuous base env
    assert model.base_env_id == "swm/TwoRoom-v1" and model.action_dim == 2
    start, _, end = record("swm/TwoRoom-v1", steps=1)
    infos = planner_infos(start, model, end)
    with pytest.raises(ValueError, match="last dim must be action_block \\* A = 1 \\* 2, got 3"):
        model.get_cost(infos, torch.zeros(2, 1, 1, 3))
    with pytest.raises(ValueError, match="not differentiable"):
        model.get_cost(infos, torch.zeros(2, 1, 1, 2, requires_grad=True))
    with pytest.raises(ValueError, match=r"needs infos keys \['sim_state'\]"):
        model.get_cost({k: v for k, v in infos.items() if k != "sim_state"}, torch.zeros(2, 1, 1, 2))


# ----------------------------------------------------------------------------------- mains and the success table


def run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_success_table_oracle_row_with_return_best(tmp_path):
    """``--baselines oracle``: no training data, a row planned with the true simulator, floors from it, and the note
    says --return-best; the solver main's JSON holds the same figure."""
    proc = run("benchmarks/success_table.py", "--smoke", "--baselines", "oracle", "--return-best", "--out-dir",
               str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the true simulator as the model" in proc.stdout
    data = json.loads((tmp_path / "results" / "success_table_smoke.json").read_text())
    env = data["envs"]["swm/TwoRoom-v1"]
    (row,) = env["rows"]
    assert row["baseline"] == "oracle" and row["solver"] == "cem" and row["status"] == "ok"
    assert "--return-best" in row["note"] and all("--checkpoint oracle" in c for c in row["commands"])
    assert len(row["per_seed"]) == 2 and all(len(env["floors"][f]) == 2 for f in ("no-op", "random"))
    assert not list((tmp_path / "runs").glob("*train*"))  # the oracle needs no training data
    plan = json.loads(next((tmp_path / "runs" / "tworoom_smoke_plans").glob("oracle_cem_*_seed0.json")).read_text())
    assert plan["args"]["return_best"] is True and plan["args"]["checkpoint"] == "oracle"
    assert plan["tables"]["dataset"][0]["success_pct"] == row["per_seed"][0]


def test_categorical_cem_main_plans_a_discrete_env_with_the_oracle(tmp_path):
    """``--checkpoint oracle`` in the categorical-CEM main: Two-Room's discrete variant, simulated with its
    continuous base env, reaches goals that the no-op and random floors do not."""
    out = tmp_path / "ccem.json"
    proc = run("solvers/categorical_cem_plan.py", "--checkpoint", "oracle", "--env-id", "swm/TwoRoomDiscrete-v1",
               "--episodes", "4", "--num-envs", "4", "--num-samples", "32", "--topk", "4", "--iters", "3",
               "--horizon", "3", "--receding-horizon", "3", "--eval-budget", "60", "--output-json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the true simulator as the model" in proc.stdout
    rows = {r["policy"]: r["success_pct"] for r in json.loads(out.read_text())["tables"]["episodic"]}
    assert rows["ccem"] >= 75 and rows["no-op"] == 0
