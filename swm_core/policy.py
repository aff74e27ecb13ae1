"""Policies: anything with ``get_actions(infos) -> (N, A)``. Random, no-op, scripted experts, feed-forward, MPC.

``infos`` is :attr:`swm_core.world.World.infos`: batched numpy arrays, one row per env. A policy may define
``reset(env_ids)`` (World calls it when those envs start a new episode) and ``set_action_space(space)`` (World
calls it when the policy is attached, so the policy knows the action bounds).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

PLAN_KEYS = ("pixels", "goal", "proprio", "goal_proprio", "state", "goal_state")


@runtime_checkable
class Policy(Protocol):
    def get_actions(self, infos: dict) -> np.ndarray: ...


class BasePolicy:
    action_space: gym.Space | None = None

    def set_action_space(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, env_ids) -> None:  # noqa: B027 - optional hook
        pass

    def get_actions(self, infos: dict) -> np.ndarray:
        raise NotImplementedError


class RandomPolicy(BasePolicy):
    """Uniform actions from the action space, seeded."""

    def __init__(self, action_space: gym.Space | None = None, seed: int = 0):
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def get_actions(self, infos):
        n = len(infos["step_idx"])
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            return self.rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)
        if isinstance(space, gym.spaces.Discrete):
            return self.rng.integers(space.start, space.start + space.n, size=n)
        if isinstance(space, gym.spaces.MultiDiscrete):
            return self.rng.integers(space.start, space.start + space.nvec, size=(n, *space.shape))
        raise ValueError(f"RandomPolicy supports Box, Discrete and MultiDiscrete action spaces, got {space}")


class NoOpPolicy(BasePolicy):
    """Does nothing (zero action): the floor every success rate should be read against."""

    def get_actions(self, infos):
        n = len(infos["step_idx"])
        space = self.action_space
        if space is None:
            raise RuntimeError("NoOpPolicy has no action space: attach it with world.set_policy(policy) first")
        if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):  # index 0 of each: the env's no-op
            return np.broadcast_to(np.asarray(space.start, np.int64), (n, *space.shape)).copy()
        return np.zeros((n, *space.shape), dtype=space.dtype)


class MixturePolicy(BasePolicy):
    """Per episode, a policy drawn from ``policies`` with ``probs`` (e.g. expert and random data in one run)."""

    def __init__(self, policies, probs, seed: int = 0):
        if len(policies) != len(probs) or not np.isclose(sum(probs), 1.0) or min(probs) < 0:
            raise ValueError(f"MixturePolicy: probs {probs} must be {len(policies)} non-negative numbers summing to 1")
        self.policies, self.probs = list(policies), np.asarray(probs, dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        self.choice: np.ndarray | None = None

    def set_action_space(self, action_space):
        super().set_action_space(action_space)
        for p in self.policies:
            if hasattr(p, "set_action_space"):
                p.set_action_space(action_space)

    def reset(self, env_ids):
        env_ids = np.asarray(env_ids)
        if self.choice is None:
            self.choice = np.zeros(int(env_ids.max()) + 1, dtype=np.int64)
        if env_ids.max() >= len(self.choice):
            self.choice = np.pad(self.choice, (0, int(env_ids.max()) + 1 - len(self.choice)))
        self.choice[env_ids] = self.rng.choice(len(self.policies), size=len(env_ids), p=self.probs)
        for p in self.policies:
            if hasattr(p, "reset"):
                p.reset(env_ids)

    def get_actions(self, infos):
        n = len(infos["step_idx"])
        if self.choice is None or len(self.choice) < n:
            self.reset(np.arange(n))
        actions = [np.asarray(p.get_actions(infos)) for p in self.policies]
        return np.stack(actions)[self.choice[:n], np.arange(n)]


def _to_device(infos: dict, keys, device, index=None) -> dict:
    out = {}
    for key in keys:
        if key in infos:
            value = infos[key] if index is None else infos[key][index]
            out[key] = torch.as_tensor(np.ascontiguousarray(value), device=device)
    return out


class FeedForwardPolicy(BasePolicy):
    """A trained network mapping the current observation and goal to actions: ``model.get_action(infos)``."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)

    def set_action_space(self, action_space):
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"FeedForwardPolicy outputs continuous actions; the env's action space is {action_space}")
        model_a = getattr(self.model, "action_dim", None)
        if model_a is not None and model_a != int(np.prod(action_space.shape)):
            raise ValueError(f"the model outputs actions of size {model_a}, but the env's action space {action_space} "
                             f"has size {int(np.prod(action_space.shape))}: was it trained on another env?")
        super().set_action_space(action_space)

    @torch.no_grad()
    def get_actions(self, infos):
        if self.action_space is None:
            raise RuntimeError("FeedForwardPolicy has no action space: attach it with world.set_policy(policy) first")
        actions = self.model.get_action(_to_device(infos, PLAN_KEYS, self.device))
        low, high = self.action_space.low, self.action_space.high
        return np.clip(actions.float().cpu().numpy(), low, high).astype(self.action_space.dtype)


class MPCPolicy(BasePolicy):
    """Model-predictive control with any solver over a world model's ``get_cost``.

    Plans ``horizon`` model steps of ``action_block`` env steps each, executes the first ``receding_horizon``
    model steps, then replans; with ``warm_start`` the next plan starts from the unexecuted tail of the last one.
    Envs are planned together in one batched solver call (only those that need a new plan).
    """

    def __init__(self, model, solver, horizon: int = 5, receding_horizon: int = 5, action_block: int | None = None,
                 warm_start: bool = True, device: str | torch.device | None = None):
        if not 1 <= receding_horizon <= horizon:
            raise ValueError(f"receding_horizon must be in [1, horizon={horizon}], got {receding_horizon}")
        if action_block is not None and int(action_block) < 1:
            raise ValueError(f"action_block must be >= 1 env steps per model step, got {action_block!r}")
        model_block = getattr(model, "action_block", None)
        self.action_block = int(action_block or model_block or 1)
        if model_block is not None and self.action_block != model_block:
            raise ValueError(f"action_block {action_block} differs from the model's action_block {model_block}")
        self.model, self.solver = model, solver
        self.horizon, self.receding_horizon, self.warm_start = horizon, receding_horizon, warm_start
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.eval().requires_grad_(False)  # no autograd graph unless a solver's candidates need one
        self._queue: np.ndarray | None = None  # (N, receding_horizon * action_block, A) actions to execute
        self._queue_pos: np.ndarray | None = None
        self._plan: torch.Tensor | None = None  # (N, horizon, action_block * A) last plans
        self.num_plans = 0
        self.discrete = False

    def set_action_space(self, action_space):
        discrete = isinstance(action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
        if discrete:
            table = getattr(self.solver, "action_table", None)
            if table is None:
                raise ValueError(f"{type(self.solver).__name__} plans continuous actions but the env's action space "
                                 f"is {action_space}: use a discrete solver (categorical CEM, PGD) with its table")
            table = torch.as_tensor(table, dtype=torch.float32)
            # MultiDiscrete: the solver plans over the joint index, one table row per combination
            n = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else int(np.prod(action_space.nvec))
            if len(table) != n:
                raise ValueError(f"{type(self.solver).__name__}'s action_table has {len(table)} rows but the env's "
                                 f"action space {action_space} has {n} actions (MultiDiscrete: one row per "
                                 f"combination, in np.ravel_multi_index order)")
            low, high = table.min(0).values.numpy(), table.max(0).values.numpy()
        elif isinstance(action_space, gym.spaces.Box):
            low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
        else:
            raise ValueError(f"MPCPolicy supports Box, Discrete and MultiDiscrete action spaces, got {action_space}")
        # a discrete solver may also plan over a grid of a Box (its table's rows are valid continuous actions)
        gridded_box = isinstance(action_space, gym.spaces.Box) and getattr(self.solver, "action_table", None) is not None
        if hasattr(self.solver, "check_action_space") and not gridded_box:
            self.solver.check_action_space(action_space)
        a = len(low)
        model_a = getattr(self.model, "action_dim", a)
        if model_a != a:
            raise ValueError(
                f"the world model expects actions of size {model_a} per env step, but the env's action space "
                f"{action_space} gives size {a}: was the checkpoint trained on another env?"
            )
        super().set_action_space(action_space)
        self.discrete = discrete
        self.low = torch.as_tensor(np.tile(low, self.action_block), dtype=torch.float32, device=self.device)
        self.high = torch.as_tensor(np.tile(high, self.action_block), dtype=torch.float32, device=self.device)

    def reset(self, env_ids):
        if self._queue_pos is not None:
            env_ids = np.asarray(env_ids)
            self._queue_pos[env_ids[env_ids < len(self._queue_pos)]] = self._queue.shape[1]
            if self._plan is not None:
                self._plan[torch.as_tensor(env_ids[env_ids < len(self._queue_pos)])] = 0.0

    def _allocate(self, n: int) -> None:
        a = self.low.numel() // self.action_block
        steps = self.receding_horizon * self.action_block
        self._queue = np.zeros((n, steps) if self.discrete else (n, steps, a), dtype=np.float32)
        self._queue_pos = np.full(n, steps, dtype=np.int64)
        self._plan = torch.zeros(n, self.horizon, self.low.numel(), device=self.device)

    def get_actions(self, infos):
        if self.action_space is None:
            raise RuntimeError("MPCPolicy has no action space: attach it with world.set_policy(policy) first")
        n = len(infos["step_idx"])
        if self._queue is None or len(self._queue) != n:
            self._allocate(n)
        active = np.asarray(infos.get("active", np.ones(n, dtype=bool)), dtype=bool)
        need = np.flatnonzero(active & (self._queue_pos >= self._queue.shape[1]))
        if len(need):
            self._replan(infos, need)
        idx = np.minimum(self._queue_pos, self._queue.shape[1] - 1)
        actions = self._queue[np.arange(n), idx]
        self._queue_pos += active
        space = self.action_space
        if isinstance(space, gym.spaces.MultiDiscrete):  # joint index -> one index per sub-space
            joint = np.unravel_index(actions.astype(np.int64), space.nvec.reshape(-1))
            return (np.stack(joint, -1).reshape(n, *space.shape) + space.start).astype(np.int64)
        if isinstance(space, gym.spaces.Discrete):
            return actions.astype(np.int64) + int(space.start)
        return actions.reshape(n, *space.shape).astype(space.dtype)

    def _replan(self, infos, env_ids):
        # a model may read more of infos than PLAN_KEYS (the oracle: sim_state and the FoV values), named in plan_keys
        keys = PLAN_KEYS + tuple(getattr(self.model, "plan_keys", ()))
        sub = _to_device(infos, keys, self.device, index=env_ids)
        ids = torch.as_tensor(env_ids, device=self.device)
        if self.warm_start:
            tail = self._plan[ids, self.receding_horizon:]
            init = torch.cat([tail, torch.zeros_like(self._plan[ids, : self.receding_horizon])], dim=1)
        else:
            init = torch.zeros_like(self._plan[ids])
        # solvers that need more of the model than its cost (GRASP's latents, the Lagrangian's constraints) say so
        extra = self.solver.model_kwargs(self.model, sub) if hasattr(self.solver, "model_kwargs") else {}
        plan = self.solver(lambda candidates: self.model.get_cost(sub, candidates), init, self.low, self.high, **extra)
        expected = (len(env_ids), self.horizon, self.low.numel())
        if not torch.is_tensor(plan) or tuple(plan.shape) != expected:
            got = tuple(plan.shape) if torch.is_tensor(plan) else type(plan).__name__
            raise ValueError(f"solver {type(self.solver).__name__} returned a plan of shape {got}, expected {expected}")
        plan = torch.maximum(torch.minimum(plan.detach(), self.high), self.low)
        self._plan[ids] = plan
        if self.discrete:  # execute the solver's indices (B, H, action_block)
            executed = self.solver.last_indices[:, : self.receding_horizon].reshape(len(env_ids), -1)
        else:
            executed = plan[:, : self.receding_horizon].reshape(len(env_ids), -1, self.low.numel() // self.action_block)
        self._queue[env_ids] = executed.float().cpu().numpy()
        self._queue_pos[env_ids] = 0
        self.num_plans += 1


def expert_policy(env_id: str, seed: int = 0, **kwargs) -> BasePolicy:
    """The scripted expert of a native env."""
    if "PushT" in env_id:
        from swm_core.envs.pusht_expert import PushTExpert

        return PushTExpert(seed=seed, **kwargs)
    if "TwoRoom" in env_id:
        from swm_core.envs.two_room import TwoRoomExpert

        return TwoRoomExpert(seed=seed, **kwargs)
    if env_id == "swm/Pendulum-v1":
        from swm_core.envs.pendulum import PendulumExpert

        return PendulumExpert(seed=seed, **kwargs)
    if env_id == "swm/CartPole-v1":
        from swm_core.envs.cartpole import CartPoleExpert

        return CartPoleExpert(seed=seed, **kwargs)
    if env_id == "swm/MountainCar-v1":
        from swm_core.envs.mountain_car import MountainCarExpert

        return MountainCarExpert(seed=seed, **kwargs)
    if env_id == "swm/Acrobot-v1":
        from swm_core.envs.acrobot import AcrobotExpert

        return AcrobotExpert(seed=seed, **kwargs)
    if env_id == "swm/Reacher-v1":
        from swm_core.envs.reacher import ReacherExpert

        return ReacherExpert(seed=seed, **kwargs)
    if env_id == "swm/Cube-v1":
        from swm_core.envs.cube import CubeExpert

        return CubeExpert(seed=seed, **kwargs)
    raise ValueError(f"no scripted expert for env {env_id!r}; available for swm/PushT-v1, swm/TwoRoom-v1 (and its "
                     "discrete variants), swm/Pendulum-v1, swm/CartPole-v1, swm/MountainCar-v1, swm/Acrobot-v1, "
                     "swm/Reacher-v1 and swm/Cube-v1 (OGBench's own oracle)")
