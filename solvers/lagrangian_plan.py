# Augmented-Lagrangian planning with any swm world model. Docs: /work/shared/REFERENCE.md §5; tests: tests/test_solvers.py
"""Augmented-Lagrangian MPC solver: gradient descent on the actions under differentiable inequality constraints.

Minimize cost(a) subject to g(a) <= 0 (``constraint_fn(candidates (B, S, H, D)) -> (B, S, C)``). The inner loop
runs (projected) Adam on L(a) = cost + sum_c lambda_c g_c + (rho / 2) sum_c relu(g_c)^2; the outer loop raises
the multipliers by dual ascent, lambda <- max(0, lambda + rho g), and grows the penalty,
rho <- min(rho_growth * rho, rho_max).
The linear term enforces the constraint at the optimum, the quadratic one adds curvature where it is violated.
Without ``constraint_fn`` it is plain projected gradient descent. Returns, per env, the best feasible sample
(the least violating one if none is feasible).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import tyro


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
    num_envs: int = 8
    """envs planned together in one batched solver call"""
    num_samples: int = 4
    """action sequences optimized in parallel per env"""
    outer_steps: int = 5
    """multiplier updates per plan"""
    inner_iters: int = 50
    """Adam steps per multiplier update"""
    lr: float = 0.3
    """first learning rate (one cosine over all steps)"""
    rho: float = 1.0
    """initial penalty weight (doubled per outer step, capped at 1e4)"""
    max_action_norm: float | None = None
    """plan under the constraint |a| <= this for every env step (None: no constraint, plain projected GD)"""
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


def evaluate_constraints(name: str, constraint_fn, candidates: torch.Tensor) -> torch.Tensor:
    """``constraint_fn(candidates (B, S, H, D)) -> (B, S, C)``, satisfied where <= 0; checked like the costs."""
    g = constraint_fn(candidates)
    b, s = candidates.shape[:2]
    if not torch.is_tensor(g) or g.ndim != 3 or tuple(g.shape[:2]) != (b, s) or g.shape[2] < 1:
        got = tuple(g.shape) if torch.is_tensor(g) else type(g).__name__
        raise ValueError(f"{name}: constraint_fn must return (B, S, C) = ({b}, {s}, C>=1) values, got {got}")
    if torch.isnan(g).any():
        raise ValueError(f"{name}: constraint_fn returned NaN for {int(torch.isnan(g).sum())} values")
    return g


class LagrangianSolver:
    """Augmented Lagrangian: ``solver(cost_fn, init, low, high, constraint_fn=None) -> (B, H, D)``.

    Args:
        num_samples: sequences optimized in parallel per env (S); sample 0 starts at ``init``.
        outer_steps: multiplier updates.
        inner_iters: Adam steps per outer step.
        lr: learning rate of the first step; one Adam runs through all outer steps (restarting it would kick the
            actions by ``lr`` in every coordinate at each outer step).
        min_lr_ratio: the learning rate follows one cosine from ``lr`` down to ``lr * min_lr_ratio`` over all
            ``outer_steps * inner_iters`` steps.
        rho: initial penalty weight.
        rho_growth: penalty growth factor per outer step.
        rho_max: cap on the penalty weight.
        feasibility_tol: a sample counts as feasible when every g <= this.
        init_noise_std: std of the Gaussian noise added to ``init`` for samples 1..S-1.
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.
        action_table: must be None (continuous solver).
        constraint_fn: constraints of the solver's own (e.g. ``action_norm_constraint``), imposed together with
            those a call passes (a world model's ``get_constraints``, through ``model_kwargs``).

    NaN costs or constraint values raise a ValueError. ``last_info``: ``best_cost`` (B,) cost of the returned
    sequence, ``max_violation`` (B,) its largest positive g (0 when feasible), ``multipliers`` (B, C) its lambda,
    ``feasible`` (B,) bool, ``rho`` final penalty, ``iterations`` (gradient steps), ``model_evals``.
    """

    action_kind = "continuous"

    def __init__(self, num_samples: int = 4, outer_steps: int = 5, inner_iters: int = 50, lr: float = 0.3,
                 min_lr_ratio: float = 0.01, rho: float = 1.0, rho_growth: float = 2.0, rho_max: float = 1e4,
                 feasibility_tol: float = 1e-3, init_noise_std: float = 0.5, seed: int = 0,
                 device: str | torch.device | None = None, action_table=None, constraint_fn=None):
        name = type(self).__name__
        if action_table is not None:
            raise ValueError(f"{name} plans continuous actions: expected no action_table, got a discrete action "
                             f"table ({_describe(action_table)}); use CategoricalCEMSolver or PGDSolver")
        self.constraint_fn = constraint_fn
        if num_samples < 1 or outer_steps < 1 or inner_iters < 1 or lr <= 0:
            raise ValueError(f"{name}: need num_samples, outer_steps, inner_iters >= 1 and lr > 0; got "
                             f"{num_samples}, {outer_steps}, {inner_iters}, {lr}")
        if rho <= 0 or rho_growth < 1 or rho_max < rho or not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"{name}: need rho > 0, rho_growth >= 1, rho_max >= rho, min_lr_ratio in [0, 1]; got "
                             f"{rho}, {rho_growth}, {rho_max}, {min_lr_ratio}")
        self.num_samples, self.outer_steps, self.inner_iters = int(num_samples), int(outer_steps), int(inner_iters)
        self.lr, self.min_lr_ratio, self.init_noise_std = float(lr), float(min_lr_ratio), float(init_noise_std)
        self.rho, self.rho_growth, self.rho_max = float(rho), float(rho_growth), float(rho_max)
        self.feasibility_tol, self.seed, self.device = float(feasibility_tol), int(seed), device
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
        """Extra call arguments from a world model: ``constraint_fn`` if it has ``get_constraints(infos, c)``."""
        if hasattr(model, "get_constraints"):
            return {"constraint_fn": lambda candidates: model.get_constraints(infos, candidates)}
        return {}

    def learning_rate(self, i: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * i / max(self.outer_steps * self.inner_iters - 1, 1)))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)

    def __call__(self, cost_fn, init, low, high, constraint_fn=None) -> torch.Tensor:
        name = type(self).__name__
        own, given = self.constraint_fn, constraint_fn
        if own is not None and given is not None:  # both sets of constraints, side by side along C
            constraint_fn = lambda candidates: torch.cat([own(candidates), given(candidates)], dim=-1)  # noqa: E731
        elif own is not None:
            constraint_fn = own
        init, low, high = check_problem(name, init, low, high, self.device)
        gen = self.generator(init.device)
        (b, h, d), s = init.shape, self.num_samples
        start = torch.maximum(torch.minimum(init, high), low)
        noise = torch.randn((b, s, h, d), generator=gen, device=init.device, dtype=init.dtype)
        noise[:, 0] = 0
        actions = torch.maximum(torch.minimum(start[:, None] + self.init_noise_std * noise, high), low)
        actions.requires_grad_(True)
        lam, rho, evals = None, self.rho, 0
        opt = torch.optim.Adam([actions], lr=self.lr)
        with torch.enable_grad():
            for k in range(self.outer_steps):
                for i in range(self.inner_iters):
                    costs = evaluate_costs(name, cost_fn, actions)
                    loss = costs
                    if constraint_fn is not None:
                        g = evaluate_constraints(name, constraint_fn, actions)
                        lam = torch.zeros_like(g) if lam is None else lam
                        loss = loss + (lam * g).sum(-1) + 0.5 * rho * torch.relu(g).pow(2).sum(-1)
                    evals += b * s
                    for group in opt.param_groups:
                        group["lr"] = self.learning_rate(k * self.inner_iters + i)
                    grad, = torch.autograd.grad(loss.sum(), actions)
                    if not torch.isfinite(grad).all():
                        raise ValueError(f"{name}: the gradient of the augmented Lagrangian is not finite")
                    actions.grad = grad
                    opt.step()
                    with torch.no_grad():
                        actions.copy_(torch.maximum(torch.minimum(actions, high), low))
                if constraint_fn is None:
                    continue
                with torch.no_grad():
                    g = evaluate_constraints(name, constraint_fn, actions)
                    lam = torch.clamp_min(lam + rho * g, 0.0)
                    rho = min(rho * self.rho_growth, self.rho_max)
        with torch.no_grad():
            costs = evaluate_costs(name, cost_fn, actions)
            evals += b * s
            if constraint_fn is None:
                violation = torch.zeros_like(costs)
            else:
                violation = evaluate_constraints(name, constraint_fn, actions).clamp_min(0).amax(-1)
            feasible = violation <= self.feasibility_tol
            # feasible samples first (by cost), then the others (by violation)
            score = torch.where(feasible, costs, torch.inf)
            pick = torch.where(feasible.any(1), score.argmin(1), violation.argmin(1))
            rows = torch.arange(b, device=init.device)
            self.last_info = {
                "best_cost": costs[rows, pick], "max_violation": violation[rows, pick],
                "feasible": feasible[rows, pick], "rho": rho, "iterations": self.outer_steps * self.inner_iters,
                "multipliers": lam[rows, pick] if lam is not None else None, "model_evals": evals,
            }
        return actions.detach()[rows, pick]


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


def action_norm_constraint(action_dim: int, max_norm: float):
    """g = |a_k| - max_norm for every env step k of every model step: (B, S, H, K * A) -> (B, S, H * K)."""

    def constraint_fn(candidates: torch.Tensor) -> torch.Tensor:
        b, s = candidates.shape[:2]
        return candidates.reshape(b, s, -1, action_dim).norm(dim=-1) - max_norm

    return constraint_fn


def main(args: Args) -> dict:
    from swm_core import MPCPolicy, NoOpPolicy, RandomPolicy, World
    from swm_core.checkpoint import check_env, load_checkpoint
    from swm_core.data import open_dataset

    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, ckpt = load_checkpoint(args.checkpoint, map_location=device)
    dataset = open_dataset(args.dataset) if args.dataset else None
    env_id = args.env_id or ckpt["extra"].get("env_id") or (dataset.metadata.get("env_id") if dataset else None)
    if env_id is None:
        raise SystemExit("cannot tell which env to plan in: pass --env-id")
    check_env(ckpt, env_id, args.checkpoint)
    image_size = int(getattr(model, "image_size", 0) or (dataset.metadata.get("image_size") if dataset else 64))
    world = World(env_id, num_envs=args.num_envs, image_size=image_size, max_episode_steps=args.eval_budget,
                  seed=args.seed)
    norm_limit = None if args.max_action_norm is None else action_norm_constraint(
        int(np.prod(world.action_space.shape)), args.max_action_norm)
    solver = LagrangianSolver(num_samples=args.num_samples, outer_steps=args.outer_steps,
                              inner_iters=args.inner_iters, lr=args.lr, rho=args.rho, seed=args.seed,
                              constraint_fn=norm_limit)  # with the model's get_constraints, if it has one
    solver.check_action_space(world.action_space)
    results = {"args": asdict(args), "env_id": env_id, "tables": {}}
    protocols = []
    if dataset is not None:
        protocols.append(("dataset", lambda p, video=None: world.evaluate_from_dataset(
            dataset, episodes=args.episodes, goal_offset=args.goal_offset, eval_budget=args.eval_budget,
            seed=args.seed, policy=p, video=video)))
    if args.episodic:
        protocols.append(("episodic", lambda p, video=None: world.evaluate(
            p, episodes=args.episodes, seed=args.seed, max_episode_steps=args.eval_budget)))
    for protocol, run in protocols:
        # a fresh copy of the unused solver per protocol: its random stream and warm-start memory start anew, so a
        # protocol's numbers do not depend on which protocols ran before it
        policy = MPCPolicy(model, copy.deepcopy(solver), horizon=args.horizon,
                           receding_horizon=args.receding_horizon, warm_start=args.warm_start, device=device)
        t0 = time.perf_counter()
        result = run(policy, args.video if protocol == "dataset" else None)
        rows = [summarize("lagrangian", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"lagrangian": result}
        if args.floors:
            for name, floor in (("no-op", NoOpPolicy()), ("random", RandomPolicy(seed=args.seed))):
                per_episode[name] = run(floor)
                rows.append(summarize(name, per_episode[name], 0.0))
        print_table(f"{protocol} protocol: {env_id}, {args.episodes} episodes, budget {args.eval_budget}"
                    + (f", goal offset {args.goal_offset}" if protocol == "dataset" else ""), rows)
        results["tables"][protocol] = rows
        results[protocol] = {name: {k: np.asarray(v).tolist() for k, v in r.items() if k != "variations"}
                             for name, r in per_episode.items()}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
