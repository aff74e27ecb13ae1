# GRASP planning with any swm world model. Docs: docs/reference.md §5; tests: tests/test_solvers.py
"""GRASP: gradient-based planning with virtual intermediate states (the official swm code lacks it).

Instead of backpropagating through a sequential H-step rollout, GRASP optimizes the actions a_0..a_{H-1} *and*
virtual states s_1..s_{H-1} (s_0 = the start, s_H = the goal, both fixed) on

    L = sum_t || F(sg(s_t), a_t) - s_{t+1} ||^2  +  goal_weight * sum_t || F(sg(s_t), a_t) - g ||^2

where F is the one-step model and sg stops the gradient. All H one-step predictions run in parallel (one batched
call of F), so no gradient ever crosses more than one step: that is what keeps long horizons well conditioned.
The virtual states get annealed Gaussian noise after each step (exploration, Langevin-style). Every
``sync_every`` steps a sync grounds the relaxed problem in the real one: ``sync_steps`` Adam steps on the true
sequence cost ``cost_fn`` (a full rollout), after which the virtual states are replaced by the true rollout of the
current actions. The plan is chosen by the true cost.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from swm_core import MPCPolicy, NoOpPolicy, RandomPolicy, World
from swm_core.checkpoint import check_env, load_checkpoint
from swm_core.data import open_dataset
from swm_core.shift import parse_shift


@dataclass
class Args:
    checkpoint: str
    """world-model checkpoint written by any baselines/*_train.py"""
    dataset: str | None = None
    """Lance dataset for the dataset-driven protocol (held-out episodes); None: episodic evaluation only"""
    env_id: str | None = None
    """env to plan in (default: the one the checkpoint or the dataset was recorded on)"""
    episodes: int = 50
    """evaluation episodes per protocol"""
    goal_offset: int = 25
    """dataset-driven protocol: the goal is the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per episode"""
    episodic: bool = True
    """also run the episodic protocol (env resets, the env draws the goal)"""
    floors: bool = True
    """also evaluate a no-op and a random policy on the same starts and goals"""
    variation: tuple[str, ...] = ()
    """FoV shift in both protocols: 'KEY' samples that leaf (a parent: its subtree; 'all') every episode, 'KEY=VALUE'
    sets it (a number, a comma list such as agent.color=255,0,0, or a choice's name); observations and goal show it
    (swm fov ENV lists the leaves)"""
    wrapper: tuple[str, ...] = ()
    """visual wrappers on the observations, never the goal: 'NAME' or 'NAME:param=value,...', a number may be a
    schedule over env steps, e.g. noise:std=linear(0,20,100) (swm wrappers lists them)"""
    num_envs: int = 8
    """envs planned together in one batched solver call"""
    iters: int = 120
    """GRASP steps per plan"""
    lr_s: float = 0.1
    """learning rate of the virtual states"""
    lr_a: float = 0.03
    """learning rate of the actions"""
    goal_weight: float = 0.1
    """weight of the goal term"""
    state_noise: float = 0.01
    """initial std of the noise on the virtual states (annealed to 0)"""
    sync_every: int = 30
    """GRASP steps between syncs with a true rollout"""
    sync_steps: int = 10
    """gradient steps on the true cost per sync"""
    sync_lr: float = 0.05
    """learning rate of the sync steps"""
    num_samples: int = 1
    """independent GRASP problems per env"""
    horizon: int = 5
    """planning horizon in model steps (each model step is the model's action_block env steps)"""
    receding_horizon: int = 5
    """model steps executed before replanning"""
    warm_start: bool = True
    """start each plan from the unexecuted tail of the previous one"""
    seed: int = 0
    """seed of the solver, the start/goal draws and the episodic resets"""
    device: str = "auto"
    """torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ..."""
    video: str | None = None
    """write an MP4 (agent | goal) of the first dataset-driven episodes here"""
    output_json: str | None = None
    """write the results table here as JSON"""
    model_script: str | None = None
    """script defining the checkpoint's model (default: where it was trained, then baselines/ beside solvers/
    and in the working directory)"""
    allow_script_change: bool = False
    """build the model even if that script's source differs from the one recorded in the checkpoint"""


def _describe(x) -> str:
    if torch.is_tensor(x):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:120]


def check_problem(name: str, init, low, high, device=None):
    """Validate ``init`` (B, H, D) and the per-dimension bounds ``low``/``high`` (D,); move them to one device."""
    if not torch.is_tensor(init) or init.ndim != 3 or not init.is_floating_point():
        raise ValueError(f"{name}: init must be a float tensor of shape (B, H, D), got {_describe(init)}")
    if min(init.shape) < 1:
        raise ValueError(f"{name}: init must have B, H, D >= 1, got shape {tuple(init.shape)}")
    if device is not None:
        init = init.to(device)
    dim = init.shape[-1]
    bounds = []
    for label, bound in (("low", low), ("high", high)):
        bound = torch.as_tensor(bound, dtype=init.dtype, device=init.device)
        if bound.ndim == 0:
            bound = bound.expand(dim)
        if tuple(bound.shape) != (dim,):
            raise ValueError(f"{name}: {label} must have shape ({dim},), one bound per action dim, "
                             f"got shape {tuple(bound.shape)}")
        if torch.isnan(bound).any():
            raise ValueError(f"{name}: {label} contains NaN: {bound.tolist()}")
        bounds.append(bound)
    low, high = bounds
    if (low > high).any():
        raise ValueError(f"{name}: low must be <= high in every dim, got low={low.tolist()} high={high.tolist()}")
    return init, low, high


def evaluate_costs(name: str, cost_fn, candidates: torch.Tensor) -> torch.Tensor:
    """``cost_fn(candidates (B, S, H, D)) -> (B, S)``, checked: wrong shapes and NaN costs raise ValueError."""
    costs = cost_fn(candidates)
    expected = tuple(candidates.shape[:2])
    if not torch.is_tensor(costs) or tuple(costs.shape) != expected:
        got = tuple(costs.shape) if torch.is_tensor(costs) else type(costs).__name__
        raise ValueError(f"{name}: cost_fn must return costs of shape (B, S) = {expected}, got {got}")
    nan = torch.isnan(costs)
    if nan.any():
        raise ValueError(f"{name}: cost_fn returned NaN for {int(nan.sum())} of {costs.numel()} candidates "
                         f"(envs {torch.nonzero(nan.any(1)).flatten().tolist()}); NaN costs are never ranked")
    return costs


def check_continuous_space(name: str, space) -> None:
    """Raise unless ``space`` is a continuous (Box) action space."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{name} plans continuous actions: expected a Box action space, got {space}; "
                         f"use CategoricalCEMSolver or PGDSolver (with an action_table) for discrete actions")


class GRASPSolver:
    """GRASP: ``solver(cost_fn, init, low, high, step_fn=, start=, goal=) -> (B, H, D)``.

    ``step_fn(s (B, N, *state_shape), a (B, N, D)) -> next s (B, N, *state_shape)`` is the differentiable one-step
    model (N = samples x time steps, all in one call); ``start``/``goal`` are (B, *state_shape). ``cost_fn`` is the
    usual sequence cost (B, S, H, D) -> (B, S), used by the syncs and to pick the plan.

    With a world model: ``solver(cost_fn, init, low, high, **solver.model_kwargs(model, infos))``, which needs
    ``model.plan_latents(infos) -> (z0 (B, *Z), zg (B, *Z))`` (the encoded current observation and goal) and
    ``model.step_latent(z (B, N, *Z), a_block (B, N, D)) -> z_next (B, N, *Z)`` (one model step of one action
    block, differentiable w.r.t. the action).

    Args:
        iters: GRASP steps (each one parallel one-step pass over the whole horizon).
        lr_s: Adam learning rate of the virtual states. Adam steps are absolute (about lr_s per step and
            coordinate), so scale it with the spread of the latents along the plan (benchmarks/grasp_vs_gd.py uses
            0.3 for paths of ~30 units).
        lr_a: Adam learning rate of the actions.
        goal_weight: weight of the goal term. Its pull grows with the distance to the goal and biases every
            transition toward it: lower it when the goal is many latent units away (0.01 in grasp_vs_gd.py).
        state_noise: std of the Gaussian noise on the virtual states at the first step, annealed linearly to 0.
        sync_every: GRASP steps between syncs (a sync also ends the run); 0 = only the final sync.
        sync_steps: Adam steps on the true cost per sync (0 = only re-roll the virtual states).
        sync_lr: learning rate of the sync steps.
        sync_states: after each sync, replace the virtual states by the true rollout of the current actions.
        min_lr_ratio: lr_s and lr_a follow a cosine down to this fraction of their value over the ``iters`` steps.
        num_samples: independent GRASP problems per env (S); sample 0 starts from ``init``, the others from
            ``init`` plus Gaussian noise of std ``init_noise_std``; the best by true cost is returned.
        init_noise_std: see ``num_samples``.
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.
        action_table: must be None (continuous solver).

    Virtual states start on the straight line from start to goal. Every sequence scored by ``cost_fn`` (sync
    steps and the final pass) is a candidate: the lowest true cost seen is returned. NaN costs or states raise a
    ValueError.
    ``last_info``: ``best_cost`` (B,) true cost of the plan, ``relaxed_loss`` (B,) the GRASP loss at the last step,
    ``iterations`` (GRASP steps), ``gradient_steps`` (GRASP + sync steps), ``model_evals`` (sequence candidates
    passed to cost_fn), ``step_evals`` (one-step transitions passed to step_fn).
    """

    action_kind = "continuous"

    def __init__(self, iters: int = 120, lr_s: float = 0.1, lr_a: float = 0.03, goal_weight: float = 0.1,
                 state_noise: float = 0.01, sync_every: int = 30, sync_steps: int = 10, sync_lr: float = 0.05,
                 sync_states: bool = True, min_lr_ratio: float = 0.1, num_samples: int = 1,
                 init_noise_std: float = 0.5, seed: int = 0, device: str | torch.device | None = None,
                 action_table=None):
        name = type(self).__name__
        if action_table is not None:
            raise ValueError(f"{name} plans continuous actions: expected no action_table, got a discrete action "
                             f"table ({_describe(action_table)}); use CategoricalCEMSolver or PGDSolver")
        if iters < 1 or num_samples < 1 or sync_every < 0 or sync_steps < 0:
            raise ValueError(f"{name}: need iters >= 1, num_samples >= 1, sync_every >= 0, sync_steps >= 0; got "
                             f"{iters}, {num_samples}, {sync_every}, {sync_steps}")
        if lr_s <= 0 or lr_a <= 0 or sync_lr <= 0 or goal_weight < 0 or state_noise < 0 or init_noise_std < 0:
            raise ValueError(f"{name}: need lr_s, lr_a, sync_lr > 0 and goal_weight, state_noise, init_noise_std >= 0;"
                             f" got {lr_s}, {lr_a}, {sync_lr}, {goal_weight}, {state_noise}, {init_noise_std}")
        self.iters, self.lr_s, self.lr_a, self.goal_weight = int(iters), float(lr_s), float(lr_a), float(goal_weight)
        self.state_noise, self.sync_every, self.sync_steps = float(state_noise), int(sync_every), int(sync_steps)
        self.sync_lr, self.num_samples, self.init_noise_std = float(sync_lr), int(num_samples), float(init_noise_std)
        self.min_lr_ratio = float(min_lr_ratio)
        self.sync_states, self.seed, self.device = bool(sync_states), int(seed), device
        self._generator: torch.Generator | None = None
        self.last_info: dict = {}

    def check_action_space(self, space) -> None:
        check_continuous_space(type(self).__name__, space)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    @staticmethod
    def model_kwargs(model, infos: dict) -> dict:
        """``step_fn``, ``start`` and ``goal`` from a world model with ``plan_latents`` and ``step_latent``."""
        missing = [a for a in ("plan_latents", "step_latent") if not hasattr(model, a)]
        if missing:
            raise ValueError(f"GRASPSolver needs a world model with plan_latents(infos) -> (z0, zg) and "
                             f"step_latent(z, a_block) -> z_next; {type(model).__name__} lacks {missing}")
        with torch.no_grad():
            start, goal = model.plan_latents(infos)
        return {"step_fn": model.step_latent, "start": start.detach(), "goal": goal.detach()}

    def _step(self, step_fn, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """One batched call of step_fn on (B, S, T, *Z) states and (B, S, T, D) actions."""
        b, s, t = actions.shape[:3]
        zshape = states.shape[3:]
        out = step_fn(states.reshape(b, s * t, *zshape), actions.reshape(b, s * t, -1))
        if not torch.is_tensor(out) or tuple(out.shape) != (b, s * t, *zshape):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"{type(self).__name__}: step_fn must map states {(b, s * t, *zshape)} and actions "
                             f"{(b, s * t, actions.shape[-1])} to next states {(b, s * t, *zshape)}, got {got}")
        if torch.isnan(out).any():
            raise ValueError(f"{type(self).__name__}: step_fn returned NaN states")
        return out.view(b, s, t, *zshape)

    def relaxed_loss(self, step_fn, start: torch.Tensor, goal: torch.Tensor, virtual: torch.Tensor,
                     actions: torch.Tensor) -> torch.Tensor:
        """The GRASP objective per env and sample (B, S), for virtual states (B, S, H-1, *Z), actions (B, S, H, D).

        One step_fn call predicts all H transitions from the stop-gradient states [start, virtual]; gradients reach
        the actions through those one-step predictions and the virtual states only as targets.
        """
        b, n = actions.shape[:2]
        zshape = start.shape[1:]
        s0, g = start[:, None, None], goal[:, None, None]
        full = torch.cat([s0.expand(-1, n, 1, *zshape), virtual, g.expand(-1, n, 1, *zshape)], dim=2)
        pred = self._step(step_fn, full[:, :, :-1].detach(), actions)
        zdims = tuple(range(3, 3 + len(zshape)))
        dyn = (pred - full[:, :, 1:]).pow(2).mean(zdims).sum(-1)
        to_goal = (pred - g).pow(2).mean(zdims).sum(-1)
        return dyn + self.goal_weight * to_goal

    def _rollout(self, step_fn, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """True states s_1..s_{H-1} (B, S, H-1, *Z) of ``actions`` from ``start`` (sequential, no gradient)."""
        s = start[:, None].expand(-1, actions.shape[1], *start.shape[1:])[:, :, None]
        states = []
        for t in range(actions.shape[2] - 1):
            s = self._step(step_fn, s, actions[:, :, t : t + 1])
            states.append(s)
        return torch.cat(states, dim=2) if states else s[:, :, :0]

    def __call__(self, cost_fn, init, low, high, step_fn=None, start=None, goal=None) -> torch.Tensor:
        name = type(self).__name__
        if step_fn is None or start is None or goal is None:
            raise ValueError(f"{name} needs a one-step model: call solver(cost_fn, init, low, high, step_fn=..., "
                             f"start=..., goal=...), or pass **solver.model_kwargs(model, infos) for a world model")
        init, low, high = check_problem(name, init, low, high, self.device)
        gen = self.generator(init.device)
        (b, h, d), n = init.shape, self.num_samples
        start = torch.as_tensor(start, device=init.device).to(init.dtype).detach()
        goal = torch.as_tensor(goal, device=init.device).to(init.dtype).detach()
        if start.shape != goal.shape or start.ndim < 2 or start.shape[0] != b:
            raise ValueError(f"{name}: start and goal must both have shape (B={b}, *state_shape), got "
                             f"{tuple(start.shape)} and {tuple(goal.shape)}")
        noise = torch.randn((b, n, h, d), generator=gen, device=init.device, dtype=init.dtype)
        noise[:, 0] = 0
        base = torch.maximum(torch.minimum(init, high), low)
        actions = torch.maximum(torch.minimum(base[:, None] + self.init_noise_std * noise, high), low)
        frac = torch.linspace(0, 1, h + 1, device=init.device, dtype=init.dtype)[1:-1]
        frac = frac.view(1, 1, h - 1, *([1] * (start.ndim - 1)))
        s0, g = start[:, None, None], goal[:, None, None]  # (B, 1, 1, *Z)
        virtual = (s0 + frac * (g - s0)).expand(-1, n, -1, *start.shape[1:]).clone()
        actions.requires_grad_(True)
        virtual.requires_grad_(True)
        self._best_cost = torch.full((b, n), torch.inf, device=init.device, dtype=init.dtype)
        self._best = actions.detach().clone()
        self._evals, step_evals, steps = 0, 0, 0

        def make_opt():
            return torch.optim.Adam([{"params": [actions], "lr": self.lr_a}, {"params": [virtual], "lr": self.lr_s}])

        opt = make_opt()
        syncs = set(range(self.sync_every, self.iters, self.sync_every)) if self.sync_every else set()
        with torch.enable_grad():
            for i in range(self.iters):
                loss = self.relaxed_loss(step_fn, start, goal, virtual, actions)  # (B, S)
                step_evals += b * n * h
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                decay = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * i / self.iters))
                opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = self.lr_a * decay, self.lr_s * decay
                opt.step()
                steps += 1
                with torch.no_grad():
                    actions.copy_(torch.maximum(torch.minimum(actions, high), low))
                    sigma = self.state_noise * (1 - i / self.iters)
                    if sigma > 0:
                        virtual.add_(sigma * torch.randn(virtual.shape, generator=gen, device=init.device,
                                                         dtype=init.dtype))
                if i + 1 in syncs or i + 1 == self.iters:
                    self._sync(cost_fn, actions, low, high)
                    steps += self.sync_steps
                    if self.sync_states:
                        with torch.no_grad():
                            virtual.copy_(self._rollout(step_fn, start, actions.detach()))
                        step_evals += b * n * (h - 1)
                    opt = make_opt()
        with torch.no_grad():
            self._score(cost_fn, actions.detach())
            best_cost, pick = self._best_cost.min(1)
            rows = torch.arange(b, device=init.device)
        self.last_info = {"best_cost": best_cost, "relaxed_loss": loss.detach()[rows, pick], "iterations": self.iters,
                          "gradient_steps": steps, "model_evals": self._evals, "step_evals": step_evals}
        return self._best[rows, pick]

    def _score(self, cost_fn, actions: torch.Tensor) -> torch.Tensor:
        """True costs of ``actions`` (B, S, H, D); remembers the best sequence seen per (env, sample)."""
        costs = evaluate_costs(type(self).__name__, cost_fn, actions)
        self._evals += costs.numel()
        with torch.no_grad():
            better = costs.detach() < self._best_cost
            self._best_cost = torch.where(better, costs.detach(), self._best_cost)
            self._best = torch.where(better[:, :, None, None], actions.detach(), self._best)
        return costs

    def _sync(self, cost_fn, actions: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> None:
        """``sync_steps`` Adam steps on the true sequence cost (a full rollout), in place."""
        if self.sync_steps == 0:
            return
        opt = torch.optim.Adam([actions], lr=self.sync_lr)
        for _ in range(self.sync_steps):
            costs = self._score(cost_fn, actions)
            opt.zero_grad(set_to_none=True)
            costs.sum().backward()
            opt.step()
            with torch.no_grad():
                actions.copy_(torch.maximum(torch.minimum(actions, high), low))


# ---- main ----
# mirrors the MAIN-TEMPLATE of solvers/cem_plan.py, adapted to this solver
def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def summarize(name: str, result: dict, seconds: float, plans: int | None = None) -> dict:
    row = {"policy": name, "success_pct": 100 * result["success_rate"], "episodes": result["episodes"],
           "solved_at_start_pct": 100 * result["solved_at_start_rate"]}
    unsolved = ~result["solved_at_start"]
    row["success_unsolved_pct"] = 100 * float(result["success"][unsolved].mean()) if unsolved.any() else float("nan")
    steps = result["steps_to_success"][result["success"]]
    row["mean_steps_to_success"] = float(steps.mean()) if len(steps) else float("nan")
    row["ms_per_plan"] = 1000 * seconds / plans if plans else float("nan")
    return row


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'policy':<10}{'success %':>10}{'solved at start %':>19}{'success % (unsolved)':>22}"
          f"{'steps to success':>18}{'ms/plan':>9}")
    for r in rows:
        print(f"{r['policy']:<10}{r['success_pct']:>10.1f}{r['solved_at_start_pct']:>19.1f}"
              f"{r['success_unsolved_pct']:>22.1f}{r['mean_steps_to_success']:>18.1f}{r['ms_per_plan']:>9.0f}")


def main(args: Args) -> dict:

    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, ckpt = load_checkpoint(args.checkpoint, map_location=device, model_script=args.model_script,
                                  search_dirs=[Path(__file__).resolve().parent.parent / "baselines", "baselines"],
                                  allow_script_change=args.allow_script_change)
    dataset = open_dataset(args.dataset) if args.dataset else None
    env_id = args.env_id or ckpt["extra"].get("env_id") or (dataset.metadata.get("env_id") if dataset else None)
    if env_id is None:
        raise SystemExit("cannot tell which env to plan in: pass --env-id")
    check_env(ckpt, env_id, args.checkpoint)
    shift = parse_shift(env_id, args.variation, args.wrapper)  # bad --variation/--wrapper fail here
    image_size = int(getattr(model, "image_size", 0) or (dataset.metadata.get("image_size") if dataset else 64))
    world = World(env_id, num_envs=args.num_envs, image_size=image_size, max_episode_steps=args.eval_budget,
                  seed=args.seed, wrappers=shift.wrappers)
    solver = GRASPSolver(iters=args.iters, lr_s=args.lr_s, lr_a=args.lr_a, goal_weight=args.goal_weight,
                         state_noise=args.state_noise, sync_every=args.sync_every, sync_steps=args.sync_steps,
                         sync_lr=args.sync_lr, num_samples=args.num_samples, seed=args.seed)
    solver.check_action_space(world.action_space)
    missing = [a for a in ("plan_latents", "step_latent") if not hasattr(model, a)]
    if missing:
        raise SystemExit(f"GRASP needs a one-step latent model: {type(model).__name__} lacks {missing}")
    results = {"args": asdict(args), "env_id": env_id, "shift": shift.describe(), "tables": {}}
    protocols = []
    if dataset is not None:
        protocols.append(("dataset", lambda p, video=None: world.evaluate_from_dataset(
            dataset, episodes=args.episodes, goal_offset=args.goal_offset, eval_budget=args.eval_budget,
            seed=args.seed, policy=p, video=video, options=shift.options)))
    if args.episodic:
        protocols.append(("episodic", lambda p, video=None: world.evaluate(
            p, episodes=args.episodes, seed=args.seed, max_episode_steps=args.eval_budget, options=shift.options)))
    for protocol, run in protocols:
        # a fresh copy of the unused solver per protocol: its random stream and warm-start memory start anew, so a
        # protocol's numbers do not depend on which protocols ran before it
        policy = MPCPolicy(model, copy.deepcopy(solver), horizon=args.horizon,
                           receding_horizon=args.receding_horizon, warm_start=args.warm_start, device=device)
        t0 = time.perf_counter()
        result = run(policy, args.video if protocol == "dataset" else None)
        rows = [summarize("grasp", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"grasp": result}
        if args.floors:
            for name, floor in (("no-op", NoOpPolicy()), ("random", RandomPolicy(seed=args.seed))):
                per_episode[name] = run(floor)
                rows.append(summarize(name, per_episode[name], 0.0))
        print_table(f"{protocol} protocol: {env_id}, {args.episodes} episodes, budget {args.eval_budget}"
                    + (f", shift: {shift.label}" if shift else "")
                    + (f", goal offset {args.goal_offset}" if protocol == "dataset" else ""), rows)
        results["tables"][protocol] = rows
        results[protocol] = {name: {**{k: np.asarray(v).tolist() for k, v in r.items() if k != "variations"},
                                    **shift.record(r)} for name, r in per_episode.items()}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
