"""The true simulator as a world model ("oracle"): what a planner reaches with no model error at all.

``OracleWorldModel(env_id)`` follows the :class:`swm_core.world_model.WorldModel` contract, so the solver mains and
the benchmarks plan with it exactly as with a trained checkpoint. ``get_cost`` starts every candidate from the
env's current simulator state (``infos['sim_state']``, with the FoV values in force, ``infos['variation.<key>']``),
runs the env's own dynamics through its ``H * action_block`` env steps and scores the true state after the last one
against ``infos['goal_state']``:

- Push-T: ||(agent xy, block xy) - goal||_2 / 20 + block-angle error modulo the block's rotational symmetry / (pi/9),
  the two quantities of the success rule, each in units of its threshold (a cost below 1 implies success);
- Two-Room: agent-goal distance / 16 (below 1 is success);
- Pendulum, CartPole, MountainCar: the sum of each state error of the success rule over its tolerance (angles
  wrapped), below 1 implies success;
- Acrobot: how far the tip is below the goal's tip height, in units of the arm's length (0 is success).

Every env that restores its full simulator state (``set_sim_state``) and has a cost here is supported: Push-T,
Two-Room, the four classic-control envs, and Two-Room's discrete-action variants, which are simulated with the continuous base env (discrete solvers
hand the cost the rows of their action table). The actions are simulated as the float32 values the env receives, so
a plan's cost is exactly the outcome of executing it from the same state. ``MPCPolicy`` passes the extra ``infos``
keys named in ``plan_keys``. The oracle is not differentiable (plan it with a sampling solver) and simulates on the
CPU, one candidate after another.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from swm_core.envs import BASE_ENV, cartpole, mountain_car, pendulum, pusht, two_room


def pusht_cost(states: np.ndarray, goal_state: np.ndarray, variation: dict) -> np.ndarray:
    """Push-T's cost of env ``states`` (S, 7) for ``goal_state`` (7,): position error / 20 + angle error / (pi/9)."""
    period = pusht.SYMMETRY[pusht.BLOCK_SHAPES[int(variation["block.shape"])]]
    states, goal = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    position = np.linalg.norm(states[:, :4] - goal[:4], axis=1)
    angle = pusht.angle_error(states[:, 4], goal[4], period)
    return position / pusht.SUCCESS_DISTANCE + angle / pusht.SUCCESS_ANGLE


def two_room_cost(states: np.ndarray, goal_state: np.ndarray, variation: dict) -> np.ndarray:
    """Two-Room's cost of env ``states`` (S, 2) for ``goal_state`` (2,): agent-goal distance / 16."""
    states, goal = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    return np.linalg.norm(states[:, :2] - goal[:2], axis=1) / two_room.SUCCESS_DISTANCE


def _wrapped(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def pendulum_cost(states: np.ndarray, goal_state: np.ndarray, variation: dict) -> np.ndarray:
    """Pendulum's cost of ``states`` (S, 2) (angle, speed): angle error / 0.1 + speed error / 0.5 (its tolerances)."""
    states, goal = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    return (np.abs(_wrapped(states[:, 0] - goal[0])) / pendulum.ANGLE_TOLERANCE
            + np.abs(states[:, 1] - goal[1]) / pendulum.SPEED_TOLERANCE)


def cartpole_cost(states: np.ndarray, goal_state: np.ndarray, variation: dict) -> np.ndarray:
    """CartPole's cost of ``states`` (S, 4): the sum of |error| / tolerance over x, xdot, theta (wrapped), thetadot."""
    err = np.abs(np.asarray(states, np.float64) - np.asarray(goal_state, np.float64))
    err[:, 2] = np.abs(_wrapped(err[:, 2]))
    return (err / np.asarray(cartpole.TOLERANCES)).sum(axis=1)


def mountain_car_cost(states: np.ndarray, goal_state: np.ndarray, variation: dict) -> np.ndarray:
    """MountainCar's cost of ``states`` (S, 2) (position, velocity): position error / 0.05 (its tolerance)."""
    states = np.asarray(states, np.float64)
    return np.abs(states[:, 0] - float(goal_state[0])) / mountain_car.POSITION_TOLERANCE


def acrobot_cost(states: np.ndarray, goal_state: np.ndarray, variation: dict) -> np.ndarray:
    """Acrobot's cost of ``states`` (S, 4): how far the tip lies below the goal state's tip, over the arm's length
    (0: the success rule holds, the tip at least as high as the goal's)."""
    l1, l2 = float(variation["physics.link_length_1"]), float(variation["physics.link_length_2"])
    states, goal = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)

    def height(th1, th2):
        return -l1 * np.cos(th1) - l2 * np.cos(th1 + th2)

    return np.maximum(0.0, height(goal[0], goal[1]) - height(states[:, 0], states[:, 1])) / (l1 + l2)


COSTS = {"swm/PushT-v1": pusht_cost, "swm/TwoRoom-v1": two_room_cost, "swm/Pendulum-v1": pendulum_cost,
         "swm/CartPole-v1": cartpole_cost, "swm/MountainCar-v1": mountain_car_cost, "swm/Acrobot-v1": acrobot_cost}


def pusht_rollouts(env, variation: dict, sim_state: np.ndarray, goal_state: np.ndarray,
                   actions: np.ndarray) -> np.ndarray:
    """Final env states (S, 7) of Push-T action sequences ``actions`` (S, T, 2) from ``sim_state``. A Push-T control
    step is a pure function of (sim_state, action, FoV values), ``PushTScene.step``, the env's own step."""
    scene = pusht.PushTScene(variation, env.image_size)
    out = np.empty((len(actions), 7), np.float32)
    for i, sequence in enumerate(actions):
        state = sim_state
        for action in sequence:
            state = scene.step(state, action)
        out[i] = pusht.PushTScene.state_of(state)
    return out


def env_rollouts(env, variation: dict, sim_state: np.ndarray, goal_state: np.ndarray,
                 actions: np.ndarray) -> np.ndarray:
    """Final env states (S, *state) of ``actions`` (S, T, A) run through ``env.simulate`` (``step`` without drawing)
    from ``sim_state`` (any env of the SWMEnv contract: reset under the FoV values, then ``set_sim_state`` before
    every sequence)."""
    env.reset(seed=0, options={"variation_values": variation, "sim_state": sim_state, "goal_state": goal_state})
    out = []
    for sequence in actions:
        env.set_sim_state(sim_state)
        state = env.get_state()
        for action in sequence:
            state = env.simulate(action)
        out.append(state)
    return np.stack(out)


ROLLOUTS = {env_id: pusht_rollouts if env_id == "swm/PushT-v1" else env_rollouts for env_id in COSTS}


class OracleWorldModel(nn.Module):
    """The true simulator of ``env_id`` as a world model (see the module docstring).

    Args:
        env_id: the env planned in: one of ``COSTS`` or a discrete variant of Two-Room.
        action_block: env steps per model step (the learned baselines' frameskip is 5).
        image_size: resolution the solver mains render the env at (the oracle itself draws nothing).

    ``sim_steps`` counts the env steps simulated so far (all calls).
    """

    default_solver = "cem"

    def __init__(self, env_id: str, action_block: int = 5, image_size: int = 64):
        super().__init__()
        base = BASE_ENV.get(env_id, env_id)
        if base not in COSTS:
            raise ValueError(f"no oracle for env {env_id!r}: the oracle simulates the native envs that restore their "
                             f"simulator state, {sorted(COSTS)} (and their discrete-action variants "
                             f"{sorted(BASE_ENV)})")
        if isinstance(action_block, bool) or int(action_block) != action_block or action_block < 1:
            raise ValueError(f"OracleWorldModel: action_block must be an integer >= 1, got {action_block!r}")
        self.env_id, self.base_env_id = env_id, base
        self.env = gym.make(base, image_size=int(image_size), disable_env_checker=True).unwrapped
        self.action_dim = int(np.prod(self.env.action_space.shape))
        self.action_block, self.image_size = int(action_block), int(image_size)
        self.leaves = tuple(self.env.variation_space.keys())
        self.plan_keys = ("sim_state", "goal_state", *("variation." + k for k in self.leaves))
        self.sim_steps = 0

    def set_stats(self, stats: dict) -> None:
        """Nothing to normalize: the oracle simulates raw env actions."""

    def get_cost(self, infos: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """candidates (B, S, H, action_block * A) -> costs (B, S) of the true states after H * action_block env
        steps from each env's ``sim_state``; on the candidates' device, float32."""
        name = type(self).__name__
        if not torch.is_tensor(candidates) or candidates.ndim != 4:
            got = tuple(candidates.shape) if torch.is_tensor(candidates) else type(candidates).__name__
            raise ValueError(f"{name}: candidates must be a tensor (B, S, H, action_block * A), got {got}")
        b, s, h, d = candidates.shape
        if d != self.action_block * self.action_dim:
            raise ValueError(f"{name}: candidates' last dim must be action_block * A = {self.action_block} * "
                             f"{self.action_dim}, got {d}")
        if candidates.requires_grad:
            raise ValueError(f"{name} is not differentiable (it runs the simulator): plan it with a sampling solver "
                             f"(cem, icem, mppi, predictive_sampling, categorical_cem)")
        missing = [k for k in self.plan_keys if k not in infos]
        if missing:
            raise ValueError(f"{name} needs infos keys {missing[:4]}{' ...' if len(missing) > 4 else ''}: World's "
                             f"infos have them and MPCPolicy passes the keys in model.plan_keys")
        actions = candidates.detach().to("cpu", torch.float32).numpy().reshape(b, s, h * self.action_block, -1)
        rollouts, cost = ROLLOUTS[self.base_env_id], COSTS[self.base_env_id]
        costs = np.empty((b, s))
        for i in range(b):
            variation = {k: infos["variation." + k][i].cpu().numpy() for k in self.leaves}
            sim_state = infos["sim_state"][i].cpu().numpy().astype(np.float64)
            goal = infos["goal_state"][i].cpu().numpy()
            costs[i] = cost(rollouts(self.env, variation, sim_state, goal, actions[i]), goal, variation)
        self.sim_steps += b * s * h * self.action_block
        return torch.as_tensor(costs, dtype=torch.float32, device=candidates.device)
