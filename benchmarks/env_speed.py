# Env throughput of World.collect (Push-T, Two-Room, Reacher, 64 px, 4 envs): `python benchmarks/env_speed.py [--quick]`.
"""Steps/s of ``World.collect`` (stepping, rendering, bookkeeping, JPEG encoding and Lance commits) beside the
bare env loop (reset + step + render, nothing recorded), measured in one run: collect/bare is what recording
costs. An env whose optional extra is not installed (swm/Reacher-v1 without ``.[mujoco]``) is listed as skipped,
with the install line. The paper gives no per-env figure to compare with."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

import swm_core.data  # noqa: F401  (imported up front: its import is not collection time)
from swm_core import RandomPolicy, World
from swm_core.checkpoint import import_script

common = import_script(Path(__file__).with_name("common.py"))



@dataclass
class Args:
    envs: tuple[str, ...] = ("swm/PushT-v1", "swm/TwoRoom-v1", "swm/Reacher-v1")
    """env ids to measure"""
    num_envs: int = 4
    """envs per World"""
    image_size: int = 64
    """frame size"""
    episodes: int = 40
    """episodes collected per env id"""
    max_episode_steps: int = 100
    """steps per episode"""
    encoding: str = "jpeg"
    """image encoding of the recorded dataset"""
    repeats: int = 3
    """measurements per row (the best is reported: the machine is shared and noisy)"""
    bare_steps: int = 2000
    """steps of the bare env loop per measurement (swm/Cube-v1 renders ~10 frames/s: give it ~100)"""
    quick: bool = False
    """a smaller run (12 episodes, one repeat, unless given)"""
    out_dir: str = "benchmarks/results"
    """where env_speed.json and env_speed.png go, and the run's record env_speed-<config>.json"""


def bare_loop(env_id: str, image_size: int, steps: int, seed: int = 0) -> float:
    world = World(env_id, num_envs=1, image_size=image_size)
    env, rng = world.envs[0], np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high  # a Box: the env's own action size
    t0 = time.perf_counter()
    env.reset(seed=seed)
    for _ in range(steps):
        env.step(rng.uniform(low, high).astype(np.float32))
    return steps / (time.perf_counter() - t0)


def collect_rate(args: Args, env_id: str) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="swm_env_speed_"))
    try:
        world = World(env_id, num_envs=args.num_envs, image_size=args.image_size,
                      max_episode_steps=args.max_episode_steps)
        t0 = time.perf_counter()
        world.collect(tmp / "d.lance", episodes=args.episodes, policy=RandomPolicy(seed=0), encoding=args.encoding,
                      progress=False)
        seconds = time.perf_counter() - t0
        ds = swm_core.data.open_dataset(tmp / "d.lance")
        return (ds.num_rows - ds.num_episodes) / seconds  # env steps: an episode's rows are its steps + 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


QUICK_SIZES = {"episodes": 12, "repeats": 1}  # --quick; flags given explicitly are kept


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())
    if args.quick:
        for field, value in QUICK_SIZES.items():
            if getattr(args, field) == getattr(Args(), field):
                setattr(args, field, value)
    command = common.command_line("benchmarks/env_speed.py")
    rows, skipped = [], []
    for env_id in args.envs:
        try:
            World(env_id, image_size=8).close()
        except ValueError as err:
            if "pip install" not in str(err):  # an unknown id or a bad option: not a missing extra
                raise
            skipped.append(f"{env_id} skipped: {err}")
            print(skipped[-1])
            continue
        bare = max(bare_loop(env_id, args.image_size, args.bare_steps) for _ in range(args.repeats))
        coll = max(collect_rate(args, env_id) for _ in range(args.repeats))
        rows.append({"env_id": env_id, "bare_env_steps_per_s": bare, "collect_steps_per_s": coll,
                     "collect_over_bare": coll / bare})
    print(f"\nWorld.collect at {args.image_size} px, {args.num_envs} envs, {args.encoding}, best of {args.repeats} "
          f"(command: {command})")
    print(f"{'env':<20}{'bare env steps/s':>18}{'collect steps/s':>17}{'collect/bare':>14}")
    for r in rows:
        print(f"{r['env_id']:<20}{r['bare_env_steps_per_s']:>18,.0f}{r['collect_steps_per_s']:>17,.0f}"
              f"{r['collect_over_bare']:>14.2f}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args), "command": command, "rows": rows, "skipped": skipped}
    (out / "env_speed.json").write_text(json.dumps(results, indent=2))
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["bare_env_steps_per_s"] for r in rows], 0.4, label="bare env loop")
    ax.bar(x + 0.2, [r["collect_steps_per_s"] for r in rows], 0.4, label="swm World.collect")
    ax.set_xticks(x, [r["env_id"] for r in rows])
    ax.set_ylabel("env steps / s")
    ax.legend()
    common.save_figure(fig, out / "env_speed.png")
    print(f"wrote {out / 'env_speed.json'} and {out / 'env_speed.png'}")
    keys = ["env_id", "bare_env_steps_per_s", "collect_steps_per_s", "collect_over_bare"]
    table = common.table(
        f"World.collect at {args.image_size} px, {args.num_envs} envs, {args.encoding}, {args.episodes} episodes of "
        f"{args.max_episode_steps} steps, best of {args.repeats}",
        ["env", "bare env steps/s", "collect steps/s", "collect/bare"],
        [[r[k] for k in keys] for r in rows],
        formats={"bare env steps/s": ",.0f", "collect steps/s": ",.0f", "collect/bare": ".2f"}, notes=skipped)
    results["record"] = str(common.write_record(
        out, "env_speed", config, title="Env throughput of World.collect", command=command, seeds=[0],
        quick=args.quick, tables=[table], seconds=time.perf_counter() - t_start))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
