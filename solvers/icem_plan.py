# iCEM planning with any swm world model. Docs: docs/reference.md §5 (solvers); tests: tests/test_solvers.py
"""Improved cross-entropy method (iCEM, Pinneri et al. 2020) MPC solver.

CEM plus three sample-efficiency tricks:
- colored noise: perturbations along time have a 1/f^beta power spectrum (beta 0 = white, 2.5 = smooth);
- elite retention: a fraction of the elites is carried into the next iteration, and at the next replan the
  elites of the last plan are carried over too, shifted in time by as many model steps as the caller shifted
  its warm start (the shift is read off ``init``; envs whose ``init`` is not a shift of the last plan start
  fresh);
- momentum on the mean/std update and a population that shrinks by ``population_decay`` per iteration.
Candidates are clipped to the bounds. Returns the final mean, or with ``return_best`` (``--return-best``) the
lowest-cost candidate evaluated in any iteration (the next replan's elites are then matched against that plan).
"""

from __future__ import annotations

import copy
import functools
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
from swm_core.oracle import OracleWorldModel
from swm_core.shift import parse_shift


@dataclass
class Args:
    checkpoint: str
    """world-model checkpoint written by any baselines/*_train.py, or 'oracle': the true simulator as the model
    (swm_core/oracle.py; Push-T and Two-Room), the planner's ceiling"""
    oracle_action_block: int = 5
    """--checkpoint oracle: env steps per model step (the learned baselines' frameskip)"""
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
    num_samples: int = 300
    """iCEM candidates per env in the first iteration"""
    topk: int = 30
    """iCEM elites"""
    iters: int = 30
    """iCEM iterations per plan"""
    init_std: float = 1.0
    """initial sampling std"""
    min_std: float = 0.05
    """floor on the std"""
    noise_beta: float = 2.5
    """colored-noise exponent along time (0 = white noise)"""
    block_noise: bool = False
    """hold each colored draw over the action_block env steps of its model step (default: the block's env steps
    get independent draws, colored across model steps only)"""
    keep_elites: float = 0.3
    """fraction of the elites carried to the next iteration and the next replan"""
    momentum: float = 0.1
    """weight of the old mean/std in each update"""
    population_decay: float = 1.25
    """the population shrinks by this factor per iteration"""
    return_best: bool = False
    """return the lowest-cost candidate evaluated over all iterations (the warm start then continues from it);
    default: the final mean, as in the paper"""
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


@functools.lru_cache(maxsize=32)
def colored_filter(t: int, beta: float, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(T, T) matrix F that colours white noise along time: ``white @ F`` has a power spectrum falling as 1/f^beta.

    The colouring is linear: scale the FFT of the noise by f^(-beta/2) (the zero frequency gets the lowest non-zero
    one's scale), transform back, and divide by the exact std that scaling implies, so every element keeps unit
    variance. F is that map applied to the rows of the identity, computed once per (T, beta, device, dtype) in
    float64 on the CPU (MPS has no float64). One small matmul per iteration then replaces an rfft/irfft pair,
    which on short horizons cost more than the sampling itself.
    """
    freqs = torch.fft.rfftfreq(t, dtype=torch.float64)
    freqs[0] = freqs[1]
    scale = freqs.pow(-beta / 2)
    # variance of irfft(rfft(w) * scale) = mean of scale^2 over the full (two-sided) spectrum
    full = torch.cat([scale, scale[1 : t - t // 2].flip(0)])
    scale = scale / full.pow(2).mean().sqrt()
    eye = torch.eye(t, dtype=torch.float64)
    return torch.fft.irfft(torch.fft.rfft(eye, dim=-1) * scale, n=t, dim=-1).to(device=device, dtype=dtype)


def colored_noise(shape, beta: float, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise of ``shape`` (..., T), unit variance per element, whose power spectrum along the last (time)
    axis falls as 1/f^beta (``colored_filter``)."""
    t = shape[-1]
    if beta == 0 or t < 2:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    # drawn time-first, so the colouring is one (T, T) x (T, N) product: ~7x faster on CPU than (N, T) x (T, T)
    white = torch.randn((t, math.prod(shape[:-1])), generator=generator, device=device, dtype=dtype)
    colored = colored_filter(t, float(beta), str(white.device), dtype).T @ white
    return colored.T.unflatten(0, tuple(shape[:-1]))  # a (..., T) view of the time-first result


def keep_best(best_plan, best_cost, candidates, lowest, argmin):
    """The lowest-cost candidate seen so far per env, on device with no loop over envs: ``candidates[b, argmin[b]]``
    (cost ``lowest[b]``, this iteration's minimum) replaces ``best_plan[b]`` where it is lower than ``best_cost[b]``
    (a tie keeps the earlier one; ``best_cost`` None: the first iteration). Returns (best_plan, best_cost)."""
    found = candidates[torch.arange(len(argmin), device=argmin.device), argmin]
    if best_cost is None:
        return found, lowest
    better = lowest < best_cost
    return torch.where(better[:, None, None], found, best_plan), torch.where(better, lowest, best_cost)


class ICEMSolver:
    """iCEM: ``solver(cost_fn, init, low, high) -> (B, H, D)``.

    Args:
        num_samples: candidates per env in the first iteration (S); sample 0 is the current mean.
        topk: elites per iteration.
        iters: iterations.
        init_std: initial std of every action dim.
        min_std: floor on the std.
        noise_beta: colored-noise exponent along time (0 = white noise, i.e. plain CEM sampling).
        block_noise: hold each draw over the ``action_block`` env steps of its model step (see ``noise``).
        action_block: env steps per model step (the layout of D); only ``block_noise`` uses it.
        keep_elites: fraction of the elites carried into the next iteration and into the next replan.
        momentum: weight of the old mean/std in the update (mean <- a * mean + (1 - a) * elite_mean).
        population_decay: iteration i samples max(min_samples, num_samples / population_decay**i) candidates.
        min_samples: smallest population; ``None`` = max(2 * topk, topk + kept elites + 1).
        shift_elites: carry the last plan's elites over to the next replan (state kept per batch size).
        return_best: return the lowest-cost candidate evaluated over all iterations instead of the final mean.
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.
        action_table: must be None (continuous solver).

    NaN costs raise a ValueError. ``last_info``: ``best_cost`` (B,), ``mean_cost`` (B,), ``best_seen_cost`` (B,) lowest
    cost evaluated over all iterations, ``return_best``, ``iterations``, ``model_evals``, ``population`` (list of S per iteration), ``reused_elites`` (B,) bool: envs whose elites came
    from the previous plan.
    """

    action_kind = "continuous"

    def __init__(self, num_samples: int = 300, topk: int = 30, iters: int = 30, init_std: float = 1.0,
                 min_std: float = 0.05, noise_beta: float = 2.5, keep_elites: float = 0.3, momentum: float = 0.1,
                 population_decay: float = 1.25, min_samples: int | None = None, shift_elites: bool = True,
                 block_noise: bool = False, action_block: int = 1, return_best: bool = False, seed: int = 0,
                 device: str | torch.device | None = None, action_table=None):
        name = type(self).__name__
        if action_table is not None:
            raise ValueError(f"{name} plans continuous actions: expected no action_table, got a discrete action "
                             f"table ({_describe(action_table)}); use CategoricalCEMSolver or PGDSolver")
        if not 1 <= topk <= num_samples:
            raise ValueError(f"{name}: topk must be in [1, num_samples={num_samples}], got {topk}")
        if iters < 1:
            raise ValueError(f"{name}: iters must be >= 1, got {iters}")
        if init_std <= 0 or min_std < 0:
            raise ValueError(f"{name}: need init_std > 0 and min_std >= 0, got {init_std}, {min_std}")
        if not 0 <= keep_elites <= 1 or not 0 <= momentum < 1 or population_decay < 1:
            raise ValueError(f"{name}: need keep_elites in [0, 1], momentum in [0, 1), population_decay >= 1; got "
                             f"{keep_elites}, {momentum}, {population_decay}")
        self.num_elites_kept = int(round(keep_elites * topk))
        floor = max(2 * topk, topk + self.num_elites_kept + 1) if min_samples is None else int(min_samples)
        if not topk + self.num_elites_kept + 1 <= floor <= num_samples:
            raise ValueError(f"{name}: min_samples must be in [topk + kept elites + 1 = "
                             f"{topk + self.num_elites_kept + 1}, num_samples={num_samples}], got {floor}")
        self.num_samples, self.topk, self.iters, self.min_samples = int(num_samples), int(topk), int(iters), floor
        self.init_std, self.min_std, self.noise_beta = float(init_std), float(min_std), float(noise_beta)
        self.momentum, self.population_decay = float(momentum), float(population_decay)
        self.shift_elites, self.seed, self.device = bool(shift_elites), int(seed), device
        if isinstance(action_block, bool) or int(action_block) != action_block or action_block < 1:
            raise ValueError(f"{name}: action_block must be an integer >= 1, got {action_block!r}")
        self.block_noise, self.action_block = bool(block_noise), int(action_block)
        self.return_best = bool(return_best)
        self._generator: torch.Generator | None = None
        self._memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # B -> (last plan, its elites)
        self.last_info: dict = {}

    def noise(self, shape, gen, like: torch.Tensor) -> torch.Tensor:
        """Colored noise of ``shape`` (B, N, H, D), correlated along H. With ``block_noise``, one draw per model step
        and action dim, repeated over its ``action_block`` env steps (D = action_block * A with the env steps first,
        as the models concatenate a block's actions)."""
        b, n, h, d = shape
        if not self.block_noise or self.action_block == 1:
            return colored_noise((b, n, d, h), self.noise_beta, gen, like.device, like.dtype).transpose(-1, -2)
        if d % self.action_block:
            raise ValueError(f"{type(self).__name__}: block_noise needs D = action_block * A, but D = {d} is not a "
                             f"multiple of action_block = {self.action_block}")
        a = d // self.action_block
        held = colored_noise((b, n, a, h), self.noise_beta, gen, like.device, like.dtype).transpose(-1, -2)
        return held[..., None, :].expand(b, n, h, self.action_block, a).reshape(shape)

    def check_action_space(self, space) -> None:
        check_continuous_space(type(self).__name__, space)

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def population(self, i: int) -> int:
        return max(self.min_samples, int(math.floor(self.num_samples / self.population_decay**i)))

    def _carried_elites(self, init: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The last plan's elites shifted by the per-env shift k that makes ``init[:, :H-k] == last[:, k:]``."""
        b, h, _ = init.shape
        reused = torch.zeros(b, dtype=torch.bool, device=init.device)
        memory = self._memory.get(b)
        if not self.shift_elites or memory is None or memory[0].shape != init.shape or self.num_elites_kept == 0:
            return None, reused
        last, elites = memory
        if last.device != init.device:
            return None, reused
        carried = elites.clone()
        for k in range(h):  # k = 0: replanning from the same init
            match = torch.isclose(init[:, : h - k], last[:, k:], rtol=1e-5, atol=1e-6).flatten(1).all(1) & ~reused
            if match.any():
                shifted = torch.cat([elites[:, :, k:], init[:, None, h - k :].expand(-1, elites.shape[1], -1, -1)],
                                    dim=2)
                carried[match] = shifted[match]
                reused |= match
        return carried, reused

    @torch.no_grad()
    def __call__(self, cost_fn, init, low, high) -> torch.Tensor:
        name = type(self).__name__
        init, low, high = check_problem(name, init, low, high, self.device)
        gen = self.generator(init.device)
        b, h, d = init.shape
        mean = torch.maximum(torch.minimum(init, high), low)
        std = torch.full_like(mean, self.init_std)
        kept, reused = self._carried_elites(mean)
        population, evals, best_plan, best_cost = [], 0, mean, None
        for i in range(self.iters):
            s = self.population(i)
            # slot 0 is the mean, then the kept elites; after the first iteration every env carries its elites,
            # so noise is drawn only for the slots after them (the mean and the elites lie inside the bounds)
            carry = kept is not None and i > 0
            first = 1 + kept.shape[1] if carry else 0
            noise = self.noise((b, s - first, h, d), gen, init)
            candidates = torch.empty((b, s, h, d), device=init.device, dtype=init.dtype)
            torch.addcmul(mean[:, None], std[:, None], noise, out=candidates[:, first:])
            candidates[:, first:].clamp_(low, high)
            candidates[:, 0] = mean
            if carry:
                candidates[:, 1:first] = kept
            elif kept is not None:  # first iteration: only envs whose last plan this one continues get its elites
                slots = candidates[:, 1 : 1 + kept.shape[1]]
                slots.copy_(torch.where(reused[:, None, None, None], kept, slots))
                candidates.clamp_(low, high)  # a warm start's new tail may lie outside the bounds
            costs = evaluate_costs(name, cost_fn, candidates)
            population.append(s)
            evals += b * s
            elite_costs, idx = torch.topk(costs, self.topk, dim=1, largest=False, sorted=True)
            best_plan, best_cost = keep_best(best_plan, best_cost, candidates, elite_costs[:, 0], idx[:, 0])
            # one row gather over (B * S) flattened rows: faster on CPU than a 4-D gather with an expanded index
            rows = (idx + torch.arange(b, device=idx.device)[:, None] * s).flatten()
            elites = candidates.view(b * s, h, d).index_select(0, rows).view(b, self.topk, h, d)
            kept = elites[:, : self.num_elites_kept] if self.num_elites_kept else None
            elite_mean = elites.mean(dim=1)
            elite_std = (elites - elite_mean[:, None]).pow_(2).mean(dim=1).sqrt_()  # faster than Tensor.std on CPU
            # momentum a: a * old + (1 - a) * elite statistic, as one lerp each
            # clamped: float rounding can put the average of in-bounds elites a few ulps outside the bounds
            mean = torch.lerp(elite_mean, mean, self.momentum).clamp_(low, high)
            std = torch.lerp(elite_std, std, self.momentum).clamp_min_(self.min_std)
        plan = best_plan if self.return_best else mean
        if kept is not None:  # the next replan's init is a shift of the returned plan
            self._memory[b] = (plan.clone(), kept.clone())
        self.last_info = {"best_cost": elite_costs[:, 0], "mean_cost": costs[:, 0], "best_seen_cost": best_cost,
                          "return_best": self.return_best, "iterations": self.iters, "model_evals": evals,
                          "population": population, "reused_elites": reused}
        return plan


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

    oracle = args.checkpoint == "oracle"
    # the oracle simulates on the CPU: planning there too spares copying every candidate off an accelerator
    device = torch.device("cpu") if oracle and args.device == "auto" else pick_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, ckpt = (None, {"extra": {}}) if oracle else load_checkpoint(
        args.checkpoint, map_location=device, model_script=args.model_script,
        search_dirs=[Path(__file__).resolve().parent.parent / "baselines", "baselines"],
        allow_script_change=args.allow_script_change)
    dataset = open_dataset(args.dataset) if args.dataset else None
    env_id = args.env_id or ckpt["extra"].get("env_id") or (dataset.metadata.get("env_id") if dataset else None)
    if env_id is None:
        raise SystemExit("cannot tell which env to plan in: pass --env-id")
    check_env(ckpt, env_id, args.checkpoint)
    shift = parse_shift(env_id, args.variation, args.wrapper)  # bad --variation/--wrapper fail here
    if oracle:
        model = OracleWorldModel(env_id, action_block=args.oracle_action_block,
                                 image_size=int((dataset.metadata.get("image_size") if dataset else None) or 64))
    image_size = int(getattr(model, "image_size", 0) or (dataset.metadata.get("image_size") if dataset else 64))
    world = World(env_id, num_envs=args.num_envs, image_size=image_size, max_episode_steps=args.eval_budget,
                  seed=args.seed, wrappers=shift.wrappers)
    solver = ICEMSolver(num_samples=args.num_samples, topk=args.topk, iters=args.iters,
                        init_std=args.init_std, min_std=args.min_std, noise_beta=args.noise_beta,
                        keep_elites=args.keep_elites, momentum=args.momentum,
                        population_decay=args.population_decay, block_noise=args.block_noise,
                        return_best=args.return_best, action_block=int(getattr(model, "action_block", None) or 1), seed=args.seed)
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
        rows = [summarize("icem", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"icem": result}
        if args.floors:
            for name, floor in (("no-op", NoOpPolicy()), ("random", RandomPolicy(seed=args.seed))):
                per_episode[name] = run(floor)
                rows.append(summarize(name, per_episode[name], 0.0))
        print_table(f"{protocol} protocol: {env_id}, {args.episodes} episodes, budget {args.eval_budget}"
                    + (f", shift: {shift.label}" if shift else "")
                    + (f", goal offset {args.goal_offset}" if protocol == "dataset" else "")
                    + (", the true simulator as the model" if oracle else ""), rows)
        results["tables"][protocol] = rows
        results[protocol] = {name: {**{k: np.asarray(v).tolist() for k, v in r.items() if k != "variations"},
                                    **shift.record(r)} for name, r in per_episode.items()}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
