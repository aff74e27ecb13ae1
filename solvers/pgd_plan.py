# Projected-gradient planning over discrete actions. Docs: docs/reference.md §5; tests: tests/test_solvers.py
"""Projected gradient descent (PGD) over a continuous relaxation of discrete actions.

Each plan slot (model step t, sub-step k of the action block) holds a probability vector over the ``n`` rows of an
``action_table`` (n, A); the world model sees the expected action probs @ action_table (so D = K * A). The
relaxation is solved by projected gradient descent: steps along the gradient followed by the exact Euclidean
projection onto the probability simplex (the sort-based algorithm of Duchi et al. 2008), with Barzilai-Borwein
step sizes checked by an Armijo line search, so every accepted step lowers the relaxed cost. ``num_samples``
relaxations are optimized in parallel: sample 0 starts at the table rows nearest to ``init`` (the warm start), the
others at random action sequences. At the end each is decoded by its argmax, by the rows nearest to its expected
actions and by sequences drawn from it; the best decoded sequence is returned, its indices in
``solver.last_indices`` / ``last_info["indices"]``.
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
    bins: int = 3
    """values per action dim of the discretized Box action space (bins**A table rows)"""
    num_samples: int = 16
    """relaxations optimized in parallel per env"""
    iters: int = 100
    """cost evaluations per relaxation and plan (start point + projected-gradient trial steps)"""
    lr: float = 0.1
    """size of the first step, as the largest change of a probability (later: Barzilai-Borwein steps)"""
    decode_samples: int = 16
    """decodings scored per relaxation (argmax + draws)"""
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


def check_action_table(name: str, action_table, device=None) -> torch.Tensor:
    """A discrete solver's ``action_table``: a float tensor (n >= 2, A) whose row i is the action of index i."""
    if isinstance(action_table, gym.Space) or not (torch.is_tensor(action_table) or hasattr(action_table, "shape")):
        raise ValueError(f"{name} plans discrete actions: expected an action_table (n, A) tensor mapping action "
                         f"indices to the model's continuous actions, got {_describe(action_table)}")
    table = torch.as_tensor(action_table, dtype=torch.float32, device=device)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 1:
        raise ValueError(f"{name}: action_table must have shape (n >= 2, A >= 1), got {tuple(table.shape)}")
    if not torch.isfinite(table).all():
        raise ValueError(f"{name}: action_table must be finite")
    return table


def check_discrete_space(name: str, space, n: int) -> None:
    """Raise unless ``space`` is a Discrete space with as many actions as the table has rows, or a MultiDiscrete
    one with as many combinations (the table then lists them in ``np.ravel_multi_index`` order)."""
    if isinstance(space, gym.spaces.Discrete):
        count = int(space.n)
    elif isinstance(space, gym.spaces.MultiDiscrete):
        count = int(np.prod(space.nvec))
    else:
        raise ValueError(f"{name} plans discrete actions: expected a Discrete({n}) or MultiDiscrete action space "
                         f"with {n} combinations, got {space}; use a continuous solver (cem, icem, mppi, ...) for "
                         f"Box actions, or give this one a grid of the Box as its action_table")
    if count != n:
        raise ValueError(f"{name}: the action_table has {n} rows but the action space {space} has {count} actions")


def table_slots(name: str, table: torch.Tensor, init: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> int:
    """Number K of table actions per model step (D = K * A); checks the table lies inside the bounds."""
    a, d = table.shape[1], init.shape[-1]
    if d % a:
        raise ValueError(f"{name}: action dim D={d} of init is not a multiple of the action_table's A={a}")
    k = d // a
    lo, hi = low.view(k, a).to(table), high.view(k, a).to(table)
    if ((table[None] < lo[:, None] - 1e-6) | (table[None] > hi[:, None] + 1e-6)).any():
        raise ValueError(f"{name}: action_table rows {table.tolist()} fall outside the bounds low={low.tolist()} "
                         f"high={high.tolist()}")
    return k


def nearest_rows(table: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Index of the table row nearest (L2) to each action: (..., A) -> (...)."""
    return torch.cdist(actions.reshape(-1, table.shape[1]), table.to(actions)).argmin(-1).view(actions.shape[:-1])


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of every vector along the last axis onto {p : p >= 0, sum p = 1} (Duchi et al. 2008)."""
    n = v.shape[-1]
    u = torch.sort(v, dim=-1, descending=True).values
    css = u.cumsum(-1) - 1
    ks = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    rho = ((u - css / ks) > 0).sum(-1, keepdim=True)  # the condition holds exactly for the first rho entries
    theta = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return torch.clamp_min(v - theta, 0.0)


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    """Sum over every dim after the leading (B, S): one value per relaxation."""
    return x.flatten(2).sum(-1)


def _centered(grad: torch.Tensor) -> torch.Tensor:
    """The gradient with its mean over the n table rows removed: the part that moves a point inside the simplex
    (P(p - a g) = P(p - a (g - c)) for any constant c per slot), free of the large common component that would
    cost precision in the projection."""
    return grad - grad.mean(-1, keepdim=True)


class PGDSolver:
    """PGD over discrete actions: ``solver(cost_fn, init, low, high) -> (B, H, D)``; ``cost_fn`` differentiable.

    The relaxation is solved by projected gradient descent with exact Euclidean projections onto the simplices
    (``project_simplex``) and an Armijo line search along the projection arc: a trial p' = P(p - a g) is accepted
    only if f(p') <= f(p) + sigma <g, p' - p> (sigma = ``armijo``), so every accepted step strictly decreases each
    relaxation's cost (<g, p' - p> <= -|p' - p|^2 / a < 0 whenever p' != p). The trial step a is the
    Barzilai-Borwein (spectral) step of the last accepted move, s.s / s.y, and is cut by safeguarded quadratic
    interpolation (to 0.1-0.5 of itself) after a rejected trial. Each (env, sample) has its own step, so the
    relaxations never interact. Every iteration is one cost evaluation (with its gradient) of all trials.

    Args:
        action_table: (n, A) tensor, row i = the continuous action the world model sees for discrete action i.
        num_samples: relaxations optimized in parallel per env (S).
        iters: cost evaluations per relaxation (each with its gradient): the start point, then one per trial step.
            The loop stops early once no relaxation can move (every one is a fixed point of its projected step).
        lr: size of the first trial step, as about the largest change of a probability it makes (0.1: 10 points).
        decode_samples: decodings scored per relaxation: its argmax plus ``decode_samples - 1`` sequences drawn
            from it (Gumbel-max). A relaxed optimum is often a blend (e.g. "move" with p 3/8 at every step), which
            argmax alone decodes to "never move"; draws from the blend recover the right counts.
        armijo: sufficient-decrease constant sigma of the line search, in (0, 1).
        seed: seed of the solver's own ``torch.Generator``.
        device: where to plan; ``None`` plans on the device of ``init``.

    NaN costs raise a ValueError. ``last_info``: ``indices`` (B, H, K) int64 of the returned plan (also
    ``last_indices``), ``best_cost`` (B,) its cost, ``relaxed_cost`` (B,) the lowest relaxed cost reached (the
    final cost of the best relaxation: the descent is monotone), ``probs`` (B, H, K, n) the relaxation the plan was
    decoded from, ``iterations`` (cost evaluations of the relaxations, <= ``iters``), ``accepted`` (B, S) accepted
    steps per relaxation, ``model_evals``.
    """

    action_kind = "discrete"

    def __init__(self, action_table, num_samples: int = 16, iters: int = 100, lr: float = 0.1,
                 decode_samples: int = 16, armijo: float = 1e-4, seed: int = 0,
                 device: str | torch.device | None = None):
        name = type(self).__name__
        self.action_table = check_action_table(name, action_table)
        if num_samples < 1 or iters < 1 or lr <= 0 or decode_samples < 1 or not 0 < armijo < 1:
            raise ValueError(f"{name}: need num_samples >= 1, iters >= 1, lr > 0, decode_samples >= 1, armijo in "
                             f"(0, 1); got {num_samples}, {iters}, {lr}, {decode_samples}, {armijo}")
        self.decode_samples, self.armijo = int(decode_samples), float(armijo)
        self.num_samples, self.iters, self.lr = int(num_samples), int(iters), float(lr)
        self.seed, self.device = int(seed), device
        self._generator: torch.Generator | None = None
        self.last_info: dict = {}
        self.last_indices: torch.Tensor | None = None

    def check_action_space(self, space) -> None:
        check_discrete_space(type(self).__name__, space, self.action_table.shape[0])

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def __call__(self, cost_fn, init, low, high) -> torch.Tensor:
        name = type(self).__name__
        init, low, high = check_problem(name, init, low, high, self.device)
        table = self.action_table.to(device=init.device, dtype=init.dtype)
        k = table_slots(name, table, init, low, high)
        gen = self.generator(init.device)
        (b, h, d), s, n = init.shape, self.num_samples, table.shape[0]
        # every relaxation starts at a vertex: sample 0 at the warm start (the table rows nearest to init), the
        # others at uniformly random action sequences. The cost sees only the expected action probs @ table, so the
        # part of probs that leaves it unchanged (e.g. mass on two opposite moves) gets no gradient: from a vertex,
        # mass only ever flows to rows the gradient favours, and the relaxed optimum reached stays easy to decode
        start = torch.randint(0, n, (b, s, h, k), generator=gen, device=init.device)
        start[:, 0] = nearest_rows(table, init.view(b, h, k, -1))
        probs = torch.nn.functional.one_hot(start, n).to(init.dtype)

        def cost_and_grad(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = p.detach().requires_grad_(True)
            with torch.enable_grad():
                costs = evaluate_costs(name, cost_fn, (p @ table).reshape(b, s, h, d))
                grad, = torch.autograd.grad(costs.sum(), p)
            if not torch.isfinite(grad).all():
                raise ValueError(f"{name}: the gradient of the cost w.r.t. the action probabilities is not finite")
            return costs.detach(), _centered(grad)

        def clip_step(step: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
            # no trial moves a probability by more than 10 (any vertex is reached by far less): bounds the values
            # the projection sorts, so it keeps its float precision
            return torch.minimum(step, 10.0 / grad.flatten(2).abs().amax(-1).clamp_min(1e-30))

        def expand(v: torch.Tensor) -> torch.Tensor:  # (B, S) -> broadcastable against (B, S, H, K, n)
            return v[:, :, None, None, None]

        cost, grad = cost_and_grad(probs)
        evals, accepted = 1, torch.zeros((b, s), dtype=torch.long, device=init.device)
        # done: the last accepted trial did not move (a fixed point of the projected step), or a trial failed
        # while the decrease it promised was below the float resolution of the cost (no smaller step can show a
        # decrease either); a done relaxation is no longer moved, and the loop ends once all are done
        resolution = 16 * torch.finfo(init.dtype).eps
        done = torch.zeros((b, s), dtype=torch.bool, device=init.device)
        # first step: the largest probability change of the unit projected step, scaled to lr
        unit = (project_simplex(probs - grad) - probs).flatten(2).abs().amax(-1)
        step = clip_step(self.lr / unit.clamp_min(1e-30), grad)
        while evals < self.iters:
            trial = torch.where(expand(done), probs, project_simplex(probs - expand(step) * grad))
            if torch.equal(trial, probs):  # every relaxation is a fixed point: no step can lower its cost
                break
            trial_cost, trial_grad = cost_and_grad(trial)
            evals += 1
            move = trial - probs
            slope = _per_sample(grad * move)  # <= 0: the projected step is a descent direction
            ok = trial_cost <= cost + self.armijo * slope
            # accepted: next step = Barzilai-Borwein s.s / s.y (the largest allowed where the curvature is <= 0)
            sy, ss = _per_sample(move * (trial_grad - grad)), _per_sample(move * move)
            spectral = clip_step(torch.where(sy > 0, ss / sy.clamp_min(1e-30), torch.inf), trial_grad)
            # rejected: minimizer of the quadratic through cost, slope and trial_cost, kept within [0.1, 0.5] x
            curvature = trial_cost - cost - slope
            cut = (-slope / (2 * curvature)).nan_to_num(0.5).clamp(0.1, 0.5)
            step = torch.where(ok, spectral, step * cut)
            probs = torch.where(expand(ok), trial, probs)
            cost = torch.where(ok, trial_cost, cost)
            grad = torch.where(expand(ok), trial_grad, grad)
            accepted += ok & ~done
            done |= torch.where(ok, ss == 0, -slope <= resolution * cost.abs())
        relaxed_best = cost.min(1).values
        with torch.no_grad():
            m = self.decode_samples
            u = torch.rand((b, s, m, h, k, n), generator=gen, device=init.device, dtype=init.dtype)
            gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
            idx = (probs.clamp_min(1e-30).log()[:, :, None] + gumbel).argmax(-1)  # (B, S, M, H, K)
            idx[:, :, 0] = probs.argmax(-1)
            if m > 1:  # the table row nearest to the expected action the model saw
                idx[:, :, 1] = nearest_rows(table, (probs @ table))
            idx = idx.reshape(b, s * m, h, k)
            costs = evaluate_costs(name, cost_fn, table[idx].reshape(b, s * m, h, d))
            best_cost, pick = costs.min(1)
            rows = torch.arange(b, device=init.device)
            best_idx = idx[rows, pick]
            self.last_indices = best_idx
            self.last_info = {"indices": best_idx, "best_cost": best_cost, "relaxed_cost": relaxed_best,
                              "probs": probs[rows, pick // m], "iterations": evals, "accepted": accepted,
                              "model_evals": evals * b * s + b * s * m}
        return table[best_idx].reshape(b, h, d)


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


def env_action_table(env, space, bins: int) -> torch.Tensor:
    """The table of actions to plan over: a discrete env's own ``action_table`` (Discrete: one row per action;
    MultiDiscrete: one per combination), or for a Box env a grid of ``bins`` values per dim inside it."""
    if isinstance(space, gym.spaces.Box):
        return grid_action_table(space, bins)
    table = getattr(env.unwrapped, "action_table", None)
    if table is None:
        raise SystemExit(f"the env's action space is {space} but the env has no action_table (the continuous "
                         f"action of each discrete action) to plan with")
    return torch.as_tensor(np.asarray(table), dtype=torch.float32)


def grid_action_table(space: gym.spaces.Box, bins: int) -> torch.Tensor:
    """Discretize a Box action space: every combination of ``bins`` evenly spaced values per dim (bins**A rows)."""
    if bins < 2:
        raise SystemExit(f"--bins must be >= 2, got {bins}")
    axes = [np.linspace(lo, hi, bins) for lo, hi in zip(space.low.reshape(-1), space.high.reshape(-1))]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    return torch.as_tensor(grid, dtype=torch.float32)


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
    table = env_action_table(world.envs[0], world.action_space, args.bins)
    solver = PGDSolver(table, num_samples=args.num_samples, iters=args.iters, lr=args.lr,
                       decode_samples=args.decode_samples, seed=args.seed)
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
        rows = [summarize("pgd", result, time.perf_counter() - t0, policy.num_plans)]
        per_episode = {"pgd": result}
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
