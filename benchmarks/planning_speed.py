# Planning speed of the nine solvers. Docs: docs/reference.md §5; solvers in solvers/*_plan.py
"""Milliseconds per plan of every solver on one small MLP world model, beside the floor: the time of the pure
model forward passes over exactly the candidates (and one-step transitions) that solver evaluated.

Setting (paper's planning setting): 8 envs planned in one batched call, 300 samples, 30 iterations, horizon 5 model
steps of action_block 5 env steps. Solvers without a sample population use 300 parallel sequences and 30 gradient
steps. The paper reports no per-solver timings; this table is ours only.

When the existing ``stable-worldmodel`` package is importable, its ``CEMSolver`` plans the same problem in the same
run, on the same model (behind a thin adapter presenting the interface it expects: ``get_cost`` on infos expanded
to (B, S, ...)), at its default ``batch_size=1`` (one env per solver pass) and at ``batch_size=8``. Its rows carry
their own floor (the model forwards over exactly its calls). ``x floor`` compares every row with the floor of our
batched CEM (the same candidates in B-batched calls); ``vs swm b1`` is how many times faster than its default.
``solver ms`` times each sampling solver again on a free stand-in cost (no model): its own sampling, ranking and
refitting. ``1+s/floor`` = 1 + that / its own floor is the plan/floor ratio without the noise of subtracting two
wall-clock timings, which on a shared 2-core machine moved the floor itself by up to 30% between runs.
Issue targets: every sampling solver <= 1.05x the floor and >= 1.5x faster than its CEM at its default.

The sampling solvers' own time is a fixed ~12 ms per plan on a CPU, mostly random numbers, so the two targets pull
apart with model size. notes: docs/notes/solvers.md

    python benchmarks/planning_speed.py            # full setting
    python benchmarks/planning_speed.py --quick    # seconds, for tests
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
import tyro

from swm_core.checkpoint import import_script

ROOT = Path(__file__).resolve().parents[1]
common = import_script(Path(__file__).with_name("common.py"))


@dataclass
class Args:
    num_envs: int = 8
    """envs planned together (B)"""
    num_samples: int = 300
    """candidates per env (S): samples of the sampling solvers, parallel sequences of the gradient solvers"""
    iters: int = 30
    """iterations (sampling) or gradient steps (gradient solvers)"""
    horizon: int = 5
    """planning horizon in model steps"""
    action_block: int = 5
    """env steps per model step"""
    action_dim: int = 2
    """action size per env step (A)"""
    latent_dim: int = 64
    """latent size of the MLP world model"""
    hidden: int = 256
    """hidden width of the MLP world model"""
    repeats: int = 3
    """timed rounds (each times every solver once, then its floor; medians are reported), after a warm-up round"""
    solvers: tuple[str, ...] = ("cem", "icem", "mppi", "predictive_sampling", "categorical_cem", "gd", "pgd",
                                "lagrangian", "grasp")
    """solvers to time"""
    device: str = "auto"
    """torch device: auto (cuda, then cpu), cpu, cuda, ..."""
    threads: int = 0
    """torch CPU threads (0 = torch's default); 1 gives steadier CPU timings on a shared machine"""
    seed: int = 0
    """seed of the model weights, the problems and the solvers"""
    block_noise: bool = False
    """sampling solvers that have it (CEM, iCEM, MPPI, predictive sampling) draw one noise vector per model step,
    held over its action_block env steps (--block-noise of their mains): action_block times fewer random numbers,
    though on CPU the copy to full width cost about what that saved (CEM's own time 26-27 ms either way)"""
    peer: bool = True
    """also time stable-worldmodel's CEM (batch 1 and 8) on the same model, when the package is importable"""
    peer_batch_sizes: tuple[int, ...] = (1, 8)
    """batch_size values of stable-worldmodel's CEMSolver to time (1 is its default)"""
    quick: bool = False
    """tiny setting (S 32, 3 iterations, 1 repeat) that runs in seconds"""
    output_json: str = "benchmarks/results/planning_speed.json"
    """where to write the results (the run's record, planning_speed-<config>.json, goes beside it)"""
    output_png: str = "benchmarks/results/planning_speed.png"
    """where to write the bar chart"""


class MLPWorldModel(torch.nn.Module):
    """z' = z + MLP([z, a_block]); cost = mean squared distance of the last predicted latent to the goal latent."""

    def __init__(self, latent_dim: int, action_dim: int, action_block: int, hidden: int):
        super().__init__()
        self.action_dim, self.action_block = action_dim, action_block
        self.net = torch.nn.Sequential(
            torch.nn.Linear(latent_dim + action_dim * action_block, hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, latent_dim),
        )

    def step_latent(self, z, a):
        return z + 0.1 * self.net(torch.cat([z, a], dim=-1))

    def get_cost(self, infos, candidates):
        b, s, h, _ = candidates.shape
        z = infos["z0"][:, None].expand(b, s, -1)
        for t in range(h):
            z = self.step_latent(z, candidates[:, :, t])
        return (z - infos["zg"][:, None]).pow(2).mean(-1)


def load_solver_module(name: str):
    """solvers/<name>.py as a module (imported by its path)."""
    return import_script(ROOT / "solvers" / f"{name}.py")


def make_solver(name: str, args: Args, table: torch.Tensor):
    s, it, seed = args.num_samples, args.iters, args.seed
    module = load_solver_module(f"{name}_plan")
    held = {"block_noise": True, "action_block": args.action_block} if args.block_noise else {}
    if name == "cem":
        return module.CEMSolver(num_samples=s, topk=max(1, s // 10), iters=it, seed=seed, **held)
    if name == "icem":
        return module.ICEMSolver(num_samples=s, topk=max(1, s // 10), iters=it, seed=seed, **held)
    if name == "mppi":
        return module.MPPISolver(num_samples=s, iters=it, seed=seed, **held)
    if name == "predictive_sampling":
        return module.PredictiveSamplingSolver(num_samples=s, iters=it, seed=seed, **held)
    if name == "categorical_cem":
        return module.CategoricalCEMSolver(table, num_samples=s, topk=max(1, s // 10), iters=it, seed=seed)
    if name == "gd":
        return module.GDSolver(num_samples=s, iters=it, seed=seed)
    if name == "pgd":
        return module.PGDSolver(table, num_samples=s, iters=it, decode_samples=1, seed=seed)
    if name == "lagrangian":  # 30 gradient steps as 5 outer x 6 inner; a constraint |a| <= 0.8 per env step
        return module.LagrangianSolver(num_samples=s, outer_steps=5, inner_iters=max(1, it // 5), seed=seed)
    if name == "grasp":  # 30 parallel one-step iterations, then one true rollout and one scoring pass
        return module.GRASPSolver(num_samples=s, iters=it, sync_every=0, sync_steps=0, seed=seed)
    raise ValueError(f"unknown solver {name!r}; choose from {Args.solvers}")


SAMPLING = ("cem", "icem", "mppi", "predictive_sampling", "categorical_cem")


class PeerCostAdapter(torch.nn.Module):
    """Presents our world model to stable-worldmodel's solvers: they call ``get_cost(infos, candidates)`` with every
    info tensor expanded to (B, S, ...); our model takes (B, ...). Records each call's candidate shape."""

    def __init__(self, model: torch.nn.Module, calls: list):
        super().__init__()
        self.model, self.calls = model, calls

    def get_cost(self, infos, candidates):
        self.calls.append(("cost", tuple(candidates.shape)))
        return self.model.get_cost({k: v[:, 0] for k, v in infos.items()}, candidates)


def peer_cem(batch_size: int, args: Args, model, device, calls: list):
    """stable-worldmodel's CEMSolver (None when the package is not installed), configured for this problem."""
    registry = dict(gym.envs.registry)
    try:
        from stable_worldmodel.solver import CEMSolver as PeerCEM
    except ImportError:
        return None
    finally:  # importing the package registers its own swm/* envs under our ids: restore the registry as it was
        for env_id in set(gym.envs.registry) - set(registry):
            del gym.envs.registry[env_id]
        gym.envs.registry.update(registry)
    solver = PeerCEM(PeerCostAdapter(model, calls), batch_size=batch_size, num_samples=args.num_samples,
                     n_steps=args.iters, topk=max(1, args.num_samples // 10), device=device, seed=args.seed)
    space = gym.spaces.Box(-1.0, 1.0, (args.num_envs, args.action_dim))
    solver.configure(action_space=space, n_envs=args.num_envs,
                     config=SimpleNamespace(horizon=args.horizon, action_block=args.action_block))
    return solver


def peer_planner(batch_size: int, args: Args, model, infos, device):
    """``plan_once() -> (ms, floor ms, calls)`` for stable-worldmodel's CEM, or None if it is not installed."""
    calls: list = []
    solver = peer_cem(batch_size, args, model, device, calls)
    if solver is None:
        return None

    def plan_once():
        calls.clear()
        synchronize(device)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its solve time on every call
            t0 = time.perf_counter()
            solver.solve(infos)
            synchronize(device)
            plan = 1000 * (time.perf_counter() - t0)
        return plan, replay_forward(calls, model, infos, device), list(calls)

    return plan_once


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solver_planner(name, solver, model, infos, args, device):
    """``plan_once() -> (ms, floor ms, calls)``: one timed plan, then the model forwards over its calls alone."""
    b, h, d = args.num_envs, args.horizon, args.action_dim * args.action_block
    low = -torch.ones(d, device=device)
    high = torch.ones(d, device=device)
    calls = []

    def cost_fn(candidates):
        calls.append(("cost", tuple(candidates.shape)))
        return model.get_cost(infos, candidates)

    def step_fn(z, a):
        calls.append(("step", tuple(z.shape), tuple(a.shape)))
        return model.step_latent(z, a)

    extra = {}
    if name == "grasp":
        extra = {"step_fn": step_fn, "start": infos["z0"], "goal": infos["zg"]}
    if name == "lagrangian":
        extra = {"constraint_fn": lambda c: c.reshape(*c.shape[:2], -1, args.action_dim).norm(dim=-1) - 0.8}
    init = torch.zeros(b, h, d, device=device)

    def plan_once():
        calls.clear()
        synchronize(device)
        t0 = time.perf_counter()
        solver(cost_fn, init, low, high, **extra)
        synchronize(device)
        plan = 1000 * (time.perf_counter() - t0)
        return plan, replay_forward(calls, model, infos, device), list(calls)

    return plan_once


def overhead_planner(solver, args, device):
    """``plan_once() -> ms`` of a sampling solver on a free stand-in cost (the sum of each candidate's entries): its
    own sampling, ranking and refitting time, without the model. Unlike plan minus floor, this is not the small
    difference of two noisy timings."""
    b, h, d = args.num_envs, args.horizon, args.action_dim * args.action_block
    init, low, high = (torch.zeros(b, h, d, device=device), -torch.ones(d, device=device), torch.ones(d, device=device))

    def plan_once():
        synchronize(device)
        t0 = time.perf_counter()
        solver(lambda candidates: candidates.sum((-2, -1)), init, low, high)
        synchronize(device)
        return 1000 * (time.perf_counter() - t0)

    return plan_once


@torch.no_grad()
def replay_forward(calls, model, infos, device) -> float:
    """Time the model forward passes alone (no autograd) on inputs of the recorded shapes, in ms."""
    inputs = []
    for call in calls:
        if call[0] == "cost":
            inputs.append(("cost", torch.rand(call[1], device=device) * 2 - 1))
        else:
            inputs.append(("step", torch.randn(call[1], device=device), torch.rand(call[2], device=device)))
    synchronize(device)
    t0 = time.perf_counter()
    for item in inputs:
        if item[0] == "cost":  # a solver that plans fewer envs per call (swm's batch_size) gets that many infos
            model.get_cost({k: v[: item[1].shape[0]] for k, v in infos.items()}, item[1])
        else:
            model.step_latent(item[1], item[2])
    synchronize(device)
    return 1000 * (time.perf_counter() - t0)


def plot(rows, path: Path, title: str) -> None:
    plt = common.pyplot()
    names = [r["solver"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(x - 0.2, [r["ms_per_plan"] for r in rows], 0.4, label="solver (ms / plan)")
    ax.bar(x + 0.2, [r["floor_ms"] for r in rows], 0.4, label="model forward floor (ms)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds per plan")
    ax.set_title(title, fontsize=9)
    ax.legend()
    common.save_figure(fig, path)


def record_table(rows: list[dict], title: str, cem_floor: float) -> dict:
    """The printed table for the run's record."""
    columns = ["solver", "ms / plan", "own floor ms", "ratio", "x floor", "vs swm b1", "solver ms", "1+s/floor",
               "cost calls", "candidates", "best cost"]
    keys = ["solver", "ms_per_plan", "floor_ms", "ratio", "x_cem_floor", "speedup_vs_peer_default", "solver_own_ms",
            "floor_plus_own", "cost_calls", "candidates", "final_cost"]
    return common.table(
        title, columns, [[r[k] for k in keys] for r in rows],
        formats={"ms / plan": ".1f", "own floor ms": ".1f", "ratio": ".2f", "x floor": ".2f", "vs swm b1": ".2f",
                 "solver ms": ".1f", "1+s/floor": ".3f", "best cost": ".4f"},
        notes=[f"ratio: plan / own floor; x floor: plan / floor of our batched CEM ({cem_floor:.1f} ms); vs swm b1: "
               "stable-worldmodel's CEM at its default batch 1 / this row; solver ms: the same plan on a free "
               "stand-in cost; 1+s/floor: 1 + solver ms / own floor (medians of per-round ratios); the paper reports "
               "no per-solver timings"])


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    config = common.config_name("quick" if args.quick else "full", args, Args())
    if args.quick:
        args.num_samples, args.iters, args.repeats = 32, 3, 1
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = MLPWorldModel(args.latent_dim, args.action_dim, args.action_block, args.hidden).to(device).eval()
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(args.seed)
    infos = {"z0": torch.randn(args.num_envs, args.latent_dim, generator=gen).to(device),
             "zg": torch.randn(args.num_envs, args.latent_dim, generator=gen).to(device)}
    axes = [torch.tensor([-1.0, 0.0, 1.0])] * args.action_dim  # 3 values per action dim for the discrete solvers
    table = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, args.action_dim)
    unknown = [n for n in args.solvers if n not in Args.solvers]
    if unknown:  # before any solver script is loaded
        raise ValueError(f"unknown solver(s) {unknown}; choose from {list(Args.solvers)}")
    planners, solvers = {}, {}
    for name in args.solvers:
        solvers[name] = make_solver(name, args, table)
        planners[name] = solver_planner(name, solvers[name], model, infos, args, device)
    # a second instance of each sampling solver (warm-start memory stays apart) for its model-free time
    overheads = {name: overhead_planner(make_solver(name, args, table), args, device)
                 for name in args.solvers if name in SAMPLING}
    peers_missing = False
    for bs in args.peer_batch_sizes if args.peer else ():
        planner = peer_planner(bs, args, model, infos, device)
        if planner is None:
            peers_missing = True
            break
        planners[f"swm_cem_b{bs}"] = planner
    # round robin: every repeat times each solver and then its floor, back to back, so a load change on a shared
    # machine hits all rows alike; ratios are taken within a repeat and their median reported
    plan_ms = {name: [] for name in planners}
    floor_ms = {name: [] for name in planners}
    own_ms = {name: [] for name in overheads}
    calls = {}
    for rep in range(args.repeats + 1):
        for name, plan_once in planners.items():
            plan, floor, calls[name] = plan_once()
            own = overheads[name]() if name in overheads else None
            if rep > 0:  # the first round is a warm-up
                plan_ms[name].append(plan)
                floor_ms[name].append(floor)
                if own is not None:
                    own_ms[name].append(own)
    ref = "cem" if "cem" in planners else None
    peer_ref = "swm_cem_b1"  # stable-worldmodel's CEM at its default batch size (1), whatever else was timed
    rows = []
    for name in planners:
        plans, floors = np.asarray(plan_ms[name]), np.asarray(floor_ms[name])
        cost_calls = [c for c in calls[name] if c[0] == "cost"]
        row = {"solver": name, "ms_per_plan": float(np.median(plans)), "floor_ms": float(np.median(floors)),
               "ratio": float(np.median(plans / floors)), "cost_calls": len(cost_calls),
               "step_calls": len(calls[name]) - len(cost_calls),
               "candidates": int(sum(np.prod(c[1][:2]) for c in cost_calls)),
               "final_cost": float(solvers[name].last_info["best_cost"].mean()) if name in solvers else float("nan"),
               "x_cem_floor": float(np.median(plans / np.asarray(floor_ms[ref]))) if ref else float("nan"),
               "speedup_vs_peer_default": (float(np.median(np.asarray(plan_ms[peer_ref]) / plans))
                                           if peer_ref in plan_ms else float("nan")),
               # model-free solver time, and floor + that time over the floor (the solver's share, noise-robust)
               "solver_own_ms": float(np.median(own_ms[name])) if name in own_ms else float("nan"),
               "floor_plus_own": (float(np.median(1 + np.asarray(own_ms[name]) / floors)) if name in own_ms
                                  else float("nan"))}
        if name not in solvers:
            row["peer"] = True
        rows.append(row)
    cem_floor = rows[list(planners).index(ref)]["floor_ms"] if ref else float("nan")
    peer_default = float("nan") if peer_ref not in plan_ms else float(np.median(plan_ms[peer_ref]))
    command = common.command_line("benchmarks/planning_speed.py")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    title = (f"{args.num_envs} envs, S {args.num_samples}, {args.iters} iters, horizon {args.horizon}, "
             f"action_block {args.action_block}, MLP {args.latent_dim}/{args.hidden}, {device.type} ({device_name})"
             + (", block noise" if args.block_noise else ""))
    print(f"\nplanning speed: {title}\n{command}\n(the paper reports no per-solver timings)")
    print(f"{'solver':<22}{'ms / plan':>11}{'own floor ms':>14}{'ratio':>8}{'x floor':>9}{'vs swm b1':>11}"
          f"{'solver ms':>11}{'1+s/floor':>11}{'cost calls':>12}{'candidates':>12}{'best cost':>11}")
    for r in rows:
        print(f"{r['solver']:<22}{r['ms_per_plan']:>11.1f}{r['floor_ms']:>14.1f}{r['ratio']:>8.2f}"
              f"{r['x_cem_floor']:>9.2f}{r['speedup_vs_peer_default']:>10.2f}x{r['solver_own_ms']:>11.1f}"
              f"{r['floor_plus_own']:>11.3f}{r['cost_calls']:>12d}{r['candidates']:>12d}{r['final_cost']:>11.4f}")
    print(f"ratio: plan / own floor; x floor: plan / floor of our batched CEM ({cem_floor:.1f} ms, the same "
          f"candidates); vs swm b1: stable-worldmodel CEM at its default batch 1 / this row; solver ms: the same "
          f"plan on a free stand-in cost (no model); 1+s/floor: 1 + solver ms / own floor (medians over the "
          f"{args.repeats} rounds of per-round ratios)"
          + ("; stable-worldmodel is not installed: no peer rows" if peers_missing else ""))
    sampling = [r for r in rows if r["solver"] in SAMPLING]
    targets = {"floor_1.05x": all(r["x_cem_floor"] <= 1.05 for r in sampling),
               "own_floor_1.05x": all(r["ratio"] <= 1.05 for r in sampling),
               "floor_plus_own_1.05x": all(r["floor_plus_own"] <= 1.05 for r in sampling),
               "vs_peer_1.5x": (all(r["speedup_vs_peer_default"] >= 1.5 for r in sampling)
                                if not math.isnan(peer_default) else None)}
    print(f"targets (sampling solvers): <= 1.05x floor: x floor {targets['floor_1.05x']}, own floor "
          f"{targets['own_floor_1.05x']}, 1+s/floor {targets['floor_plus_own_1.05x']}; >= 1.5x faster than swm CEM "
          f"batch 1: {targets['vs_peer_1.5x']}")
    results = {"args": asdict(args), "command": command, "device": f"{device.type} ({device_name})",
               "torch": torch.__version__, "rows": rows, "targets": targets}
    for out in (args.output_json, args.output_png):
        (ROOT / out).parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / args.output_json, "w") as f:
        json.dump(results, f, indent=1)
    plot(rows, ROOT / args.output_png, title)
    results["record"] = str(common.write_record(
        (ROOT / args.output_json).parent, "planning_speed", config, title="Planning speed of the solvers",
        command=command, seeds=[args.seed], quick=args.quick, tables=[record_table(rows, title, cem_floor)],
        seconds=time.perf_counter() - t_start, extra={"device": results["device"], "targets": targets}))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
