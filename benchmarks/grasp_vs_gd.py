# GRASP vs gradient descent as the horizon grows: `python benchmarks/grasp_vs_gd.py [--quick]`. docs/reference.md §5
"""Where GRASP beats plain gradient descent: long horizons. An analytic problem with a known optimum (0):

    z_{t+1} = z_t + a_t + amp * sin(freq * z_t),   |a| <= 1,   cost = |z_H - g|^2,   g = z_0 + speed * H * dir

The ripple moves the state by at most ``amp`` per step, but its state Jacobian 1 + amp * freq * cos(freq * z)
swings in [1 - amp*freq, 1 + amp*freq] ([-2, 4] by default): backprop through H steps multiplies H - 1 such random
factors, so the gradient on the early actions has random sign and size. GRASP's gradients cross one step only
(they see dF/da = I). The straight line to the goal is a feasible trajectory, so the optimum is 0.

Both solvers get the same gradient steps (GRASP's relaxed + sync steps); GD optimizes 8 sequences per env (its
default), GRASP one. GRASP's three settings below were tuned on this problem, so GD gets a learning-rate sweep and
its best rate per horizon in hindsight (``gd_best``) as well. Printed: mean and max final true cost over 4 envs per
horizon. The paper gives no figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from swm_core.checkpoint import import_script

ROOT = Path(__file__).resolve().parents[1]
common = import_script(Path(__file__).with_name("common.py"))


@dataclass
class Args:
    horizons: tuple[int, ...] = (5, 10, 20, 40, 60, 80)
    """planning horizons (model steps)"""
    num_envs: int = 4
    """independent start/goal pairs per horizon"""
    amp: float = 0.01
    """ripple amplitude"""
    freq: float = 300.0
    """ripple frequency"""
    speed: float = 0.5
    """goal distance per step of horizon (the action bound is 1)"""
    grasp_lr_a: float = 0.1
    """GRASP action learning rate"""
    grasp_lr_s: float = 0.3
    """GRASP state learning rate (an absolute Adam step: the latents here span up to ~40 units)"""
    grasp_goal_weight: float = 0.01
    """GRASP goal-shaping weight"""
    gd_lrs: tuple[float, ...] = (3.0, 1.0, 0.3, 0.1, 0.03)
    """learning rates of the GD rows (1.0 is its default); gd_best is the best of them per horizon"""
    seed: int = 0
    """seed of the problems and the solvers"""
    quick: bool = False
    """horizons 5, 20, 60 only, unless --horizons is given (seconds)"""
    output_json: str = "benchmarks/results/grasp_vs_gd.json"
    """where to write the results (the run's record, grasp_vs_gd-<config>.json, goes beside it)"""
    output_png: str = "benchmarks/results/grasp_vs_gd.png"
    """where to write the plot"""


def load_solver(name: str):
    """solvers/<name>.py as a module (imported by its path)."""
    return import_script(ROOT / "solvers" / f"{name}.py")


def make_problem(args: Args, horizon: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(args.num_envs, 2, generator=gen)
    direction = torch.nn.functional.normalize(torch.randn(args.num_envs, 2, generator=gen), dim=-1)
    goal = x0 + args.speed * horizon * direction

    def step(z, a):
        return z + a + args.amp * torch.sin(args.freq * z)

    def cost(u):  # (B, S, H, 2) -> (B, S)
        z = x0[:, None].expand(-1, u.shape[1], -1)
        for t in range(u.shape[2]):
            z = step(z, u[:, :, t])
        return (z - goal[:, None]).pow(2).sum(-1)

    return x0, goal, step, cost


def record_table(args: Args, rows: list[dict], names: list[str]) -> dict:
    """The printed table for the run's record: per horizon, the mean and max final cost of each solver row."""
    columns = ["H", "steps", "zero plan"] + [f"{n} {stat}" for n in names for stat in ("mean", "max")] + ["gd_best lr"]
    cells = [[r["horizon"], r["gradient_steps"], r["zero_plan_cost"],
              *[f(r[n]) for n in names for f in (np.mean, np.max)], r["gd_best_lr"]] for r in rows]
    formats = {f"{n} {stat}": ".4g" for n in names for stat in ("mean", "max")}
    return common.table(
        f"final true cost |z_H - g|^2 (optimum 0) over {args.num_envs} envs; ripple amp {args.amp:g} freq "
        f"{args.freq:g}, goal {args.speed:g} x H away", columns, cells, formats={"zero plan": ".1f", **formats},
        notes=["the same gradient steps for both solvers; gd_best: GD's best learning rate per horizon, picked in "
               "hindsight; the paper gives no figure"])


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    config = common.config_name("quick" if args.quick else "full", args, Args())
    if args.quick and args.horizons == Args.horizons:
        args.horizons = (5, 20, 60)
    grasp_cls, gd_cls = load_solver("grasp_plan").GRASPSolver, load_solver("gd_plan").GDSolver
    low, high = -torch.ones(2), torch.ones(2)
    rows = []
    for horizon in args.horizons:
        x0, goal, step, cost = make_problem(args, horizon, args.seed + horizon)
        init = torch.zeros(args.num_envs, horizon, 2)
        t0 = time.perf_counter()
        grasp = grasp_cls(
            lr_a=args.grasp_lr_a, lr_s=args.grasp_lr_s, goal_weight=args.grasp_goal_weight, seed=args.seed
        )
        plan = grasp(cost, init, low, high, step_fn=step, start=x0, goal=goal)
        row = {
            "horizon": horizon,
            "zero_plan_cost": float(cost(init[:, None]).mean()),
            "gradient_steps": grasp.last_info["gradient_steps"],
            "grasp": cost(plan[:, None])[:, 0].tolist(),
            "grasp_s": time.perf_counter() - t0,
        }
        for lr in args.gd_lrs:
            t0 = time.perf_counter()
            gd = gd_cls(iters=grasp.last_info["gradient_steps"], lr=lr, seed=args.seed)
            row[f"gd_lr{lr:g}"] = cost(gd(cost, init, low, high)[:, None])[:, 0].tolist()
            row[f"gd_lr{lr:g}_s"] = time.perf_counter() - t0
        best = min(args.gd_lrs, key=lambda lr: np.mean(row[f"gd_lr{lr:g}"]))  # GD's best rate here, in hindsight
        row["gd_best"], row["gd_best_lr"] = row[f"gd_lr{best:g}"], best
        rows.append(row)
    names = ["grasp", "gd_best"] + [f"gd_lr{lr:g}" for lr in args.gd_lrs]
    command = common.command_line("benchmarks/grasp_vs_gd.py")
    print(
        f"\nGRASP vs GD: final true cost |z_H - g|^2 (optimum 0), mean / max over {args.num_envs} envs; ripple amp "
        f"{args.amp:g} freq {args.freq:g}, goal {args.speed:g} x H away\n{command}\n(the paper gives no figure)"
    )
    print(f"{'H':>4}{'steps':>7}{'zero plan':>11}" + "".join(f"{n:>22}" for n in names))
    for r in rows:
        cells = "".join(f"{np.mean(r[n]):>12.4f} /{np.max(r[n]):>8.3f}" for n in names)
        print(f"{r['horizon']:>4}{r['gradient_steps']:>7}{r['zero_plan_cost']:>11.1f}{cells}")
    results = {"args": asdict(args), "command": command, "rows": rows}
    for out in (args.output_json, args.output_png):
        (ROOT / out).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / args.output_json).write_text(json.dumps(results, indent=1))
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        ax.plot([r["horizon"] for r in rows], [max(np.mean(r[n]), 1e-6) for r in rows], marker="o", label=n)
    ax.set_yscale("log")
    ax.set_xlabel("horizon H (model steps)")
    ax.set_ylabel("mean final true cost (optimum 0)")
    ax.set_title("GRASP vs gradient descent, same gradient steps", fontsize=9)
    ax.legend()
    common.save_figure(fig, ROOT / args.output_png)
    results["record"] = str(common.write_record(
        (ROOT / args.output_json).parent, "grasp_vs_gd", config, title="GRASP vs gradient descent as the horizon grows",
        command=command, seeds=[args.seed], quick=args.quick, tables=[record_table(args, rows, names)],
        seconds=time.perf_counter() - t_start))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
