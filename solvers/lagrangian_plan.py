# Augmented-Lagrangian planning with any swm world model. Docs: docs/reference.md §5; tests: tests/test_solvers.py
"""Augmented-Lagrangian MPC solver: gradient descent on the actions under differentiable inequality constraints.

Minimize cost(a) subject to g(a) <= 0 (``constraint_fn(candidates (B, S, H, D)) -> (B, S, C)``) within the bounds,
by the method of multipliers: each outer step minimizes the augmented Lagrangian
L(a) = cost + sum_c (max(0, lambda_c + rho g_c)^2 - lambda_c^2) / (2 rho) over the box (projected gradient with
Barzilai-Borwein steps and an Armijo line search, to a tolerance), then updates lambda <- max(0, lambda + rho g);
rho grows (x ``rho_growth``) only when the violation did not shrink enough. A sample stops once it is feasible
within ``feasibility_tol``. Without ``constraint_fn`` it is plain projected gradient descent. Returns, per env,
the best feasible sample (the least violating one if none is feasible).
"""

from __future__ import annotations

import copy
import json
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
    num_samples: int = 4
    """action sequences optimized in parallel per env"""
    outer_steps: int = 10
    """most multiplier updates per plan (a plan stops early once feasible within 1e-3)"""
    inner_iters: int = 50
    """most projected-gradient steps per multiplier update"""
    lr: float = 0.3
    """size of the first step, as the largest change of an action coordinate (later: Barzilai-Borwein steps)"""
    rho: float = 1.0
    """initial penalty weight (x10 whenever the violation did not shrink to 1/4, capped at 1e6)"""
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


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    """Sum over every dim after the leading (B, S): one value per sample."""
    return x.flatten(2).sum(-1)


def _largest(x: torch.Tensor) -> torch.Tensor:
    """Largest absolute entry per sample: (B, S, ...) -> (B, S)."""
    return x.flatten(2).abs().amax(-1)


class LagrangianSolver:
    """Augmented Lagrangian: ``solver(cost_fn, init, low, high, constraint_fn=None) -> (B, H, D)``.

    The method of multipliers (Hestenes-Powell-Rockafellar) for inequalities g(a) <= 0 within the bounds. Outer step
    k minimizes, over the box, L(a) = cost(a) + sum_c (max(0, lambda_c + rho g_c(a))^2 - lambda_c^2) / (2 rho)
    (the inner solve), then updates lambda <- max(0, lambda + rho g), and multiplies rho by ``rho_growth`` (up to
    ``rho_max``) only when V = max_c |max(g_c, -lambda_c / rho)| (violation and complementarity in one number) did
    not shrink below ``penalty_shrink`` times its previous value. A sample stops once V <= ``feasibility_tol`` after a
    converged inner solve; its lambda then satisfies the KKT conditions up to the tolerances.

    The inner solve is projected gradient descent on the box with Barzilai-Borwein (spectral) steps and a monotone
    Armijo line search along the projection arc (a trial is accepted only if it lowers L by sigma <grad, move>),
    run until the projected-gradient residual max|clamp(a - grad L) - a| <= ``inner_tol``, until no decrease is
    measurable in float precision, or for ``inner_iters`` trial steps. Without constraints it is one such solve
    of the cost with ``outer_steps * inner_iters`` trial steps. Every sample (env, start) has its own step,
    multipliers and penalty, so batched envs never interact.

    Args:
        num_samples: sequences optimized in parallel per env (S); sample 0 starts at ``init``.
        outer_steps: most multiplier updates.
        inner_iters: most trial steps per inner solve, each one evaluation of the cost (and constraints) with its
            gradient; each solve also evaluates its start point (the multipliers changed since the last one).
        lr: size of the first trial step, as the largest change of an action coordinate it would make.
        rho: initial penalty weight.
        rho_growth: penalty growth factor, applied when the violation did not shrink enough.
        rho_max: cap on the penalty weight.
        penalty_shrink: the violation must shrink by at least this factor per outer step to keep rho.
        feasibility_tol: a sample counts as feasible when every g <= this.
        inner_tol: projected-gradient residual that ends an inner solve.
        armijo: sufficient-decrease constant sigma of the line search, in (0, 1).
        init_noise_std: std of the Gaussian noise added to ``init`` for samples 1..S-1.
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.
        action_table: must be None (continuous solver).
        constraint_fn: constraints of the solver's own (e.g. ``action_norm_constraint``), imposed together with
            those a call passes (a world model's ``get_constraints``, through ``model_kwargs``).

    NaN costs or constraint values raise a ValueError. ``last_info``: ``best_cost`` (B,) cost of the returned
    sequence, ``max_violation`` (B,) its largest positive g (0 when feasible), ``multipliers`` (B, C) its lambda
    (after the last update, the KKT multipliers at the returned plan), ``feasible`` (B,) bool, ``rho`` (B,) its
    final penalty, ``outer_steps`` (B,) its multiplier updates, ``iterations`` (evaluation rounds of the batch),
    ``model_evals``.
    """

    action_kind = "continuous"

    def __init__(self, num_samples: int = 4, outer_steps: int = 10, inner_iters: int = 50, lr: float = 0.3,
                 rho: float = 1.0, rho_growth: float = 10.0, rho_max: float = 1e6, penalty_shrink: float = 0.25,
                 feasibility_tol: float = 1e-3, inner_tol: float = 1e-4, armijo: float = 1e-4,
                 init_noise_std: float = 0.5, seed: int = 0, device: str | torch.device | None = None,
                 action_table=None, constraint_fn=None):
        name = type(self).__name__
        if action_table is not None:
            raise ValueError(f"{name} plans continuous actions: expected no action_table, got a discrete action "
                             f"table ({_describe(action_table)}); use CategoricalCEMSolver or PGDSolver")
        self.constraint_fn = constraint_fn
        if num_samples < 1 or outer_steps < 1 or inner_iters < 1 or lr <= 0:
            raise ValueError(f"{name}: need num_samples, outer_steps, inner_iters >= 1 and lr > 0; got "
                             f"{num_samples}, {outer_steps}, {inner_iters}, {lr}")
        if rho <= 0 or rho_growth < 1 or rho_max < rho or not 0 < penalty_shrink < 1:
            raise ValueError(f"{name}: need rho > 0, rho_growth >= 1, rho_max >= rho, penalty_shrink in (0, 1); got "
                             f"{rho}, {rho_growth}, {rho_max}, {penalty_shrink}")
        if feasibility_tol < 0 or inner_tol < 0 or not 0 < armijo < 1:
            raise ValueError(f"{name}: need feasibility_tol >= 0, inner_tol >= 0, armijo in (0, 1); got "
                             f"{feasibility_tol}, {inner_tol}, {armijo}")
        self.num_samples, self.outer_steps, self.inner_iters = int(num_samples), int(outer_steps), int(inner_iters)
        self.lr, self.init_noise_std = float(lr), float(init_noise_std)
        self.rho, self.rho_growth, self.rho_max = float(rho), float(rho_growth), float(rho_max)
        self.penalty_shrink, self.inner_tol, self.armijo = float(penalty_shrink), float(inner_tol), float(armijo)
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
        x = torch.maximum(torch.minimum(start[:, None] + self.init_noise_std * noise, high), low)
        width = (high - low)[torch.isfinite(high - low)]
        max_move = 10.0 * max(float(width.max()) if width.numel() else 1.0, 1e-12)  # the longest trial step
        resolution = 16 * torch.finfo(init.dtype).eps

        def project(a: torch.Tensor) -> torch.Tensor:
            return torch.maximum(torch.minimum(a, high), low)

        def expand(v: torch.Tensor) -> torch.Tensor:  # (B, S) -> broadcastable against (B, S, H, D)
            return v[:, :, None, None]

        state = {"lam": None, "rho": torch.full((b, s), self.rho, device=init.device, dtype=init.dtype), "evals": 0}

        def evaluate(a: torch.Tensor):
            """(L, grad L, cost, g) at a, for the current multipliers and penalties."""
            a = a.detach().requires_grad_(True)
            with torch.enable_grad():
                costs = evaluate_costs(name, cost_fn, a)
                g, objective = None, costs
                if constraint_fn is not None:
                    g = evaluate_constraints(name, constraint_fn, a)
                    if state["lam"] is None:
                        state["lam"] = torch.zeros_like(g.detach())
                    lam, rho = state["lam"], state["rho"][:, :, None]
                    if tuple(g.shape) != tuple(lam.shape):
                        raise ValueError(f"{name}: constraint_fn returned {tuple(g.shape)} values after "
                                         f"{tuple(lam.shape)}; the number of constraints must not change")
                    shifted = torch.clamp_min(lam + rho * g, 0.0)
                    objective = costs + (shifted.pow(2) - lam.pow(2)).sum(-1) / (2 * rho[..., 0])
                grad, = torch.autograd.grad(objective.sum(), a)
            if not torch.isfinite(grad).all():
                raise ValueError(f"{name}: the gradient of the augmented Lagrangian is not finite")
            state["evals"] += 1
            return objective.detach(), grad, costs.detach(), None if g is None else g.detach()

        def clip_step(step: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
            return torch.minimum(step, max_move / _largest(grad).clamp_min(1e-30))

        def inner_solve(x, step, frozen, budget):
            """Monotone spectral projected gradient on L from x; samples in ``frozen`` do not move."""
            value, grad, cost, g = evaluate(x)
            residual = _largest(project(x - grad) - x)
            done = frozen | (residual <= self.inner_tol)
            converged = residual <= self.inner_tol
            if step is None:  # first solve: the first trial moves the largest coordinate by lr
                step = clip_step(self.lr / residual.clamp_min(1e-30), grad)
            for _ in range(budget):
                trial = torch.where(expand(done), x, project(x - expand(step) * grad))
                if torch.equal(trial, x):
                    break
                t_value, t_grad, t_cost, t_g = evaluate(trial)
                move = trial - x
                slope = _per_sample(grad * move)  # <= 0 for a projected-gradient step
                ok = (t_value <= value + self.armijo * slope) & ~done
                sy, ss = _per_sample(move * (t_grad - grad)), _per_sample(move * move)
                spectral = clip_step(torch.where(sy > 0, ss / sy.clamp_min(1e-30), torch.inf), t_grad)
                cut = (-slope / (2 * (t_value - value - slope))).nan_to_num(0.5).clamp(0.1, 0.5)
                step = torch.where(ok, spectral, torch.where(done, step, step * cut))
                x = torch.where(expand(ok), trial, x)
                value, cost = torch.where(ok, t_value, value), torch.where(ok, t_cost, cost)
                grad = torch.where(expand(ok), t_grad, grad)
                if g is not None:
                    g = torch.where(ok[:, :, None], t_g, g)
                residual = torch.where(ok, _largest(project(x - grad) - x), residual)
                converged = converged | (ok & (residual <= self.inner_tol))
                # done: converged, a fixed point, or no decrease left that float precision can show
                stalled = torch.where(ok, ss == 0, ~done & (-slope <= resolution * value.abs()))
                converged = converged | stalled
                done = done | converged
            return x, step, cost, g, converged

        if constraint_fn is None:
            x, _, cost, _, _ = inner_solve(x, None, torch.zeros((b, s), dtype=torch.bool, device=init.device),
                                           self.outer_steps * self.inner_iters)
            violation = torch.zeros_like(cost)
            outer = torch.zeros((b, s), dtype=torch.long, device=init.device)
        else:
            active = torch.ones((b, s), dtype=torch.bool, device=init.device)
            previous = torch.full((b, s), torch.inf, device=init.device, dtype=init.dtype)
            outer = torch.zeros((b, s), dtype=torch.long, device=init.device)
            step = None
            for _ in range(self.outer_steps):
                x, step, cost, g, converged = inner_solve(x, step, ~active, self.inner_iters)
                lam, rho = state["lam"], state["rho"]
                # |max(g, -lambda / rho)|: > 0 where a constraint is violated, or inactive while its multiplier
                # is not yet 0 (violation and complementarity in one measure)
                measure = torch.maximum(g, -lam / rho[:, :, None]).abs().amax(-1)
                new_lam = torch.clamp_min(lam + rho[:, :, None] * g, 0.0)
                grow = active & (measure > self.penalty_shrink * previous)
                new_rho = torch.where(grow, torch.clamp_max(rho * self.rho_growth, self.rho_max), rho)
                state["lam"] = torch.where(active[:, :, None], new_lam, lam)
                state["rho"] = new_rho
                step = step * rho / new_rho  # the penalty's curvature grows with rho
                previous = torch.where(active, measure, previous)
                outer += active
                active = active & ~(converged & (measure <= self.feasibility_tol))
                if not active.any():
                    break
            violation = g.clamp_min(0).amax(-1)
        with torch.no_grad():
            feasible = violation <= self.feasibility_tol
            # feasible samples first (by cost), then the others (by violation)
            score = torch.where(feasible, cost, torch.inf)
            pick = torch.where(feasible.any(1), score.argmin(1), violation.argmin(1))
            rows = torch.arange(b, device=init.device)
            lam = state["lam"]
            self.last_info = {
                "best_cost": cost[rows, pick], "max_violation": violation[rows, pick],
                "feasible": feasible[rows, pick], "rho": state["rho"][rows, pick], "outer_steps": outer[rows, pick],
                "iterations": state["evals"], "multipliers": lam[rows, pick] if lam is not None else None,
                "model_evals": state["evals"] * b * s,
            }
        return x.detach()[rows, pick]


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
    norm_limit = None if args.max_action_norm is None else action_norm_constraint(
        int(np.prod(world.action_space.shape)), args.max_action_norm)
    solver = LagrangianSolver(num_samples=args.num_samples, outer_steps=args.outer_steps,
                              inner_iters=args.inner_iters, lr=args.lr, rho=args.rho, seed=args.seed,
                              constraint_fn=norm_limit)  # with the model's get_constraints, if it has one
    solver.check_action_space(world.action_space)
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
        rows = [summarize("lagrangian", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"lagrangian": result}
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
