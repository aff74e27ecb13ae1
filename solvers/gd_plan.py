# Gradient-descent planning with any swm world model. Docs: docs/reference.md §5; tests: tests/test_solvers.py
"""Gradient-descent MPC solver: backpropagate the cost through the (differentiable) world model to the actions.

``num_samples`` action sequences are optimized in parallel: sample 0 starts at ``init`` (the warm start), the
others at ``init`` plus Gaussian noise. Adam (or SGD) steps with a cosine-annealed learning rate; after every
step the actions are projected back into the bounds. Returns, per env, the lowest-cost sequence seen.
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
    num_samples: int = 8
    """action sequences optimized in parallel per env (sample 0 = the warm start)"""
    iters: int = 100
    """gradient steps per plan"""
    lr: float = 1.0
    """first learning rate (cosine-annealed to 1% of it)"""
    optimizer: str = "adam"
    """adam or sgd"""
    init_noise_std: float = 0.5
    """std of the noise around the warm start for samples 1..S-1"""
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


class GDSolver:
    """Gradient descent: ``solver(cost_fn, init, low, high) -> (B, H, D)``; ``cost_fn`` must be differentiable.

    Args:
        num_samples: sequences optimized in parallel per env (S); sample 0 starts at ``init``.
        iters: gradient steps.
        lr: learning rate at the first step.
        min_lr_ratio: the learning rate follows a cosine from ``lr`` down to ``lr * min_lr_ratio``.
        optimizer: "adam" (per-coordinate step sizes: robust to the scale of the cost) or "sgd".
        init_noise_std: std of the Gaussian noise added to ``init`` for samples 1..S-1.
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.
        action_table: must be None (continuous solver).

    The loss is the sum of all costs: envs and samples do not interact (their gradients are separate, and Adam's
    statistics are per coordinate). NaN costs raise a ValueError. ``last_info``: ``best_cost`` (B,),
    ``iterations``, ``model_evals`` (candidates passed to cost_fn, forward passes with a backward pass included).
    """

    action_kind = "continuous"

    def __init__(self, num_samples: int = 8, iters: int = 100, lr: float = 1.0, min_lr_ratio: float = 0.01,
                 optimizer: str = "adam", init_noise_std: float = 0.5, seed: int = 0,
                 device: str | torch.device | None = None, action_table=None):
        name = type(self).__name__
        if action_table is not None:
            raise ValueError(f"{name} plans continuous actions: expected no action_table, got a discrete action "
                             f"table ({_describe(action_table)}); use CategoricalCEMSolver or PGDSolver")
        if num_samples < 1 or iters < 1 or lr <= 0 or not 0 <= min_lr_ratio <= 1 or init_noise_std < 0:
            raise ValueError(f"{name}: need num_samples >= 1, iters >= 1, lr > 0, min_lr_ratio in [0, 1], "
                             f"init_noise_std >= 0; got {num_samples}, {iters}, {lr}, {min_lr_ratio}, {init_noise_std}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"{name}: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.num_samples, self.iters, self.lr, self.min_lr_ratio = int(num_samples), int(iters), float(lr), min_lr_ratio
        self.optimizer, self.init_noise_std = optimizer, float(init_noise_std)
        self.seed, self.device = int(seed), device
        self._generator: torch.Generator | None = None
        self.last_info: dict = {}

    def check_action_space(self, space) -> None:
        check_continuous_space(type(self).__name__, space)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def learning_rate(self, i: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * i / max(self.iters - 1, 1)))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)

    def __call__(self, cost_fn, init, low, high) -> torch.Tensor:
        name = type(self).__name__
        init, low, high = check_problem(name, init, low, high, self.device)
        gen = self.generator(init.device)
        (b, h, d), s = init.shape, self.num_samples
        start = torch.maximum(torch.minimum(init, high), low)
        noise = torch.randn((b, s, h, d), generator=gen, device=init.device, dtype=init.dtype)
        noise[:, 0] = 0
        actions = torch.maximum(torch.minimum(start[:, None] + self.init_noise_std * noise, high), low)
        actions.requires_grad_(True)
        opt = (torch.optim.Adam([actions], lr=self.lr) if self.optimizer == "adam"
               else torch.optim.SGD([actions], lr=self.lr))
        best_cost = torch.full((b, s), torch.inf, device=init.device, dtype=init.dtype)
        best = actions.detach().clone()
        with torch.enable_grad():
            for i in range(self.iters + 1):
                costs = evaluate_costs(name, cost_fn, actions)
                with torch.no_grad():  # keep the best iterate (the costs are of the actions before this step)
                    better = costs < best_cost
                    best_cost = torch.where(better, costs, best_cost)
                    best = torch.where(better[:, :, None, None], actions, best)
                if i == self.iters:  # the last pass only scores the final iterate
                    break
                for group in opt.param_groups:
                    group["lr"] = self.learning_rate(i)
                opt.zero_grad(set_to_none=True)
                grad, = torch.autograd.grad(costs.sum(), actions)
                if not torch.isfinite(grad).all():
                    raise ValueError(f"{name}: the gradient of the cost w.r.t. the actions is not finite")
                actions.grad = grad
                opt.step()
                with torch.no_grad():
                    actions.copy_(torch.maximum(torch.minimum(actions, high), low))
        env_best_cost, idx = best_cost.min(dim=1)
        self.last_info = {"best_cost": env_best_cost, "iterations": self.iters,
                          "model_evals": (self.iters + 1) * b * s}
        return best[torch.arange(b, device=init.device), idx].detach()


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
    solver = GDSolver(num_samples=args.num_samples, iters=args.iters, lr=args.lr, optimizer=args.optimizer,
                      init_noise_std=args.init_noise_std, seed=args.seed)
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
        rows = [summarize("gd", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"gd": result}
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
