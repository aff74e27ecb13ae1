# The README's main job: collect Two-Room data -> train LeWM -> plan with CEM on held-out episodes.
"""Runs the three scripts a user would run, in order, as subprocesses, then prints one line:

    success: X% (no-op floor: Y%, random floor: Z%; cross-room: W%)

X is CEM's dataset-driven success rate on held-out episodes (goal offset 25, budget 50); the floors are the same
start/goal pairs evaluated with a policy that does nothing and with a random policy; W is the success rate on the
pairs whose goal lies in the other room.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from swm_core.envs.two_room import TwoRoomEnv

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Args:
    out_dir: str = "runs/demo"
    """where the datasets, the checkpoint, the video and the results go"""
    train_episodes: int = 400
    """training episodes (100 steps each; a mix of door-crossing expert and random episodes)"""
    eval_episodes: int = 60
    """held-out episodes (another seed) that the start/goal pairs are drawn from"""
    expert_fraction: float = 0.7
    """fraction of episodes driven by the scripted expert (the rest are random walks)"""
    train_steps: int = 1000
    """LeWM gradient steps (CPU preset)"""
    batch_size: int = 32
    """LeWM batch size (windows)"""
    plan_episodes: int = 50
    """start/goal pairs planned"""
    num_samples: int = 300
    """CEM samples"""
    iters: int = 30
    """CEM iterations"""
    num_envs: int = 10
    """envs planned together"""
    seed: int = 0
    """seed of everything"""
    device: str = "auto"
    """torch device for training and planning"""
    threads: int = 1
    """OMP_NUM_THREADS of each step (0: inherit). One thread loses little on 2 idle cores, but two threads collapse
    (~40x slower training measured) as soon as another process shares the cores"""
    tiny: bool = False
    """a seconds-long smoke run of the whole pipeline (for tests): tiny data, model and budgets"""


def run(cmd: list[str], threads: int) -> None:
    print("$", " ".join(cmd), flush=True)
    env = dict(os.environ)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, env=env)


def cross_room(start_state: np.ndarray, goal_state: np.ndarray) -> np.ndarray:
    return np.array([TwoRoomEnv.room_of(s) != TwoRoomEnv.room_of(g) for s, g in zip(start_state, goal_state)])


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.tiny:
        args.train_episodes, args.eval_episodes, args.train_steps, args.batch_size = 8, 4, 3, 8
        args.plan_episodes, args.num_samples, args.iters, args.num_envs = 4, 16, 2, 4
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, held_out = out / "two_room_train.lance", out / "two_room_eval.lance"
    t0 = time.perf_counter()
    for path, episodes, seed in ((train, args.train_episodes, args.seed), (held_out, args.eval_episodes, args.seed + 10_000)):
        if not path.exists():
            run(["scripts/collect.py", "--env-id", "swm/TwoRoom-v1", "--output", str(path), "--episodes",
                 str(episodes), "--policy", "mix", "--expert-fraction", str(args.expert_fraction), "--seed", str(seed)], args.threads)
    ckpt = out / "lewm.pt"
    train_cmd = ["baselines/lewm_train.py", "--preset", "cpu", "--dataset", str(train), "--total-steps",
                 str(args.train_steps), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                 "--device", args.device, "--output", str(ckpt)]
    if args.tiny:
        train_cmd += ["--num-workers", "0"]
    run(train_cmd, args.threads)
    results_path = out / "cem_results.json"
    run(["solvers/cem_plan.py", "--checkpoint", str(ckpt), "--dataset", str(held_out), "--episodes",
         str(args.plan_episodes), "--num-samples", str(args.num_samples), "--topk", str(max(2, args.num_samples // 10)),
         "--iters", str(args.iters), "--num-envs", str(args.num_envs), "--no-episodic", "--seed", str(args.seed),
         "--device", args.device, "--video", str(out / "cem_plan.mp4"), "--output-json", str(results_path)], args.threads)
    results = json.loads(results_path.read_text())
    rows = {r["policy"]: r for r in results["tables"]["dataset"]}
    cem = results["dataset"]["cem"]
    crossing = cross_room(np.array(cem["start_state"]), np.array(cem["goal_state"]))
    success = np.array(cem["success"])
    cross_pct = f"{100 * success[crossing].mean():.0f}% of {crossing.sum()}" if crossing.any() else "n/a (no pair)"
    print(f"\nvideo: {out / 'cem_plan.mp4'}  results: {results_path}  total time: {time.perf_counter() - t0:.0f}s")
    print(f"on the pairs not already solved at the start: {rows['cem']['success_unsolved_pct']:.0f}% "
          f"({(~np.array(cem['solved_at_start'], bool)).sum()} of {len(success)} pairs)")
    print(f"success: {rows['cem']['success_pct']:.0f}% (no-op floor: {rows['no-op']['success_pct']:.0f}%, "
          f"random floor: {rows['random']['success_pct']:.0f}%; cross-room: {cross_pct})")
