# Env steps/s, bare and writing Lance (64 px, 4 envs), beside stable-worldmodel's: `python benchmarks/env_speed.py`.
"""Steps/s of ``World.collect`` (stepping, rendering, bookkeeping, JPEG encoding and Lance commits) beside the
bare env loop (reset + step + render, nothing recorded), measured in one run: collect/bare is what recording
costs. An env whose optional extra is not installed (swm/Reacher-v1 without ``.[mujoco]``) is listed as skipped,
with the install line.

With the ``peers`` extra installed (``pip install -e '.[peers]'``), the stable-worldmodel package's same env is
measured in the same run the same way: one env of its ``World`` stepped with uniform random actions (its frames
resized to the same size by its own wrapper), and its ``World.collect`` writing Lance with its random policy, the
same number of envs, episodes and steps. Its envs run in a child process (the package registers env ids of the
same names as swm_core's), and the repeats alternate swm, package, swm, package, so the shared machine's load
falls on both alike. The tables give swm's steps/s over the package's per env. The paper gives no per-env figure
to compare with."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import tyro

import swm_core.data  # noqa: F401  (imported up front: its import is not collection time)
from swm_core import RandomPolicy, World
from swm_core.checkpoint import import_script

common = import_script(Path(__file__).with_name("common.py"))


@dataclass
class Args:
    envs: tuple[str, ...] = ("swm/PushT-v1", "swm/TwoRoom-v1", "swm/Pendulum-v1", "swm/CartPole-v1",
                             "swm/MountainCar-v1", "swm/Acrobot-v1", "swm/Reacher-v1")
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
    peer: bool = True
    """measure the stable-worldmodel package's same envs beside swm's when it is installed (the peers extra)"""
    quick: bool = False
    """a smaller run (12 episodes, one repeat, unless given)"""
    out_dir: str = "benchmarks/results"
    """where env_speed.json and env_speed.png go, and the run's record env_speed-<config>.json"""


# swm env id -> the stable-worldmodel package's id of the same env and its make kwargs for frames of `size` px
# (where the env takes a render size; the others render at their own size and its World resizes)
PEER_ENVS = {
    "swm/PushT-v1": ("swm/PushT-v1", lambda size: {"resolution": size}),
    "swm/TwoRoom-v1": ("swm/TwoRoom-v1", lambda size: {}),
    "swm/Pendulum-v1": ("swm/PendulumControl-v1", lambda size: {}),
    "swm/CartPole-v1": ("swm/CartPoleControl-v1", lambda size: {}),
    "swm/MountainCar-v1": ("swm/MountainCarContinuousControl-v0", lambda size: {}),
    "swm/Acrobot-v1": ("swm/AcrobotControl-v1", lambda size: {}),
    "swm/Reacher-v1": ("swm/ReacherDMControl-v0", lambda size: {}),
    "swm/Cube-v1": ("swm/OGBCube-v0", lambda size: {"height": size, "width": size}),
}

# The child process that measures the package's envs: one JSON request a line on stdin, one JSON reply a line on
# its own stdout (the package's prints are sent to stderr). It imports stable_worldmodel and lance, nothing of swm.
PEER_WORKER = r'''
import json, os, shutil, sys, tempfile, time, traceback, warnings
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
warnings.filterwarnings("ignore")


def send(obj):
    reply.write(json.dumps(obj) + "\n")
    reply.flush()


try:
    import lance
    import numpy as np
    import stable_worldmodel as swm
    from stable_worldmodel.policy import RandomPolicy
except Exception as err:
    send({"error": f"{type(err).__name__}: {err}"})
    sys.exit(0)
try:
    from importlib.metadata import version
    send({"version": version("stable-worldmodel")})
except Exception:
    send({"version": "unknown"})


def sampler(space, rng):
    if hasattr(space, "nvec"):
        return lambda: space.start + rng.integers(space.nvec)
    if hasattr(space, "n"):
        return lambda: int(space.start + rng.integers(space.n))
    return lambda: rng.uniform(space.low, space.high).astype(space.dtype)


def make(req, num_envs):
    size = req["image_size"]
    return swm.World(req["env"], num_envs=num_envs, image_shape=(size, size),
                     max_episode_steps=req["max_episode_steps"], **req["kwargs"])


def bare(req):
    world = make(req, 1)
    env = world.envs.envs[0]
    action = sampler(env.action_space, np.random.default_rng(req["seed"]))
    t0 = time.perf_counter()
    env.reset(seed=req["seed"])
    for _ in range(req["steps"]):
        _, _, terminated, truncated, info = env.step(action())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - t0
    frame = list(info["pixels"].shape)
    world.close()
    return {"steps_per_s": req["steps"] / seconds, "frame": frame}


def collect(req):
    tmp = tempfile.mkdtemp(prefix="swm_env_speed_peer_")
    try:
        world = make(req, req["num_envs"])
        world.set_policy(RandomPolicy(seed=req["seed"]))
        path = os.path.join(tmp, "d.lance")
        t0 = time.perf_counter()
        world.collect(path, episodes=req["episodes"], seed=req["seed"], progress=False)
        seconds = time.perf_counter() - t0
        world.close()
        rows = lance.dataset(path).count_rows()  # one row per env step: its episodes hold no reset row
        return {"steps_per_s": rows / seconds, "rows": rows}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


for line in sys.stdin:
    req = json.loads(line)
    try:
        send(bare(req) if req["mode"] == "bare" else collect(req))
    except Exception as err:
        send({"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]})
'''


class PeerError(RuntimeError):
    """The package could not be imported, or could not measure an env."""


class Peer:
    """The stable-worldmodel package, measuring its envs in a child process on request."""

    def __init__(self):
        env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        self.proc = subprocess.Popen([sys.executable, "-c", PEER_WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        first = self._read()
        if "error" in first:
            self.close()
            raise PeerError(first["error"])
        self.version = first["version"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"the stable-worldmodel worker exited (code {self.proc.wait()})")
        return json.loads(line)

    def measure(self, **request) -> dict:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError as err:  # the worker is gone
            raise PeerError(f"the stable-worldmodel worker exited (code {self.proc.wait()}): {err}") from err
        answer = self._read()
        if "error" in answer:
            raise PeerError(answer["error"])
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def start_peer(args: Args) -> tuple[Peer | None, str]:
    """The package's worker and a note on what was measured, or None and why not."""
    if not args.peer:
        return None, "stable-worldmodel not measured (--no-peer)"
    if importlib.util.find_spec("stable_worldmodel") is None:
        return None, ("stable-worldmodel is not installed (the peers extra: pip install -e '.[peers]'): swm's rows "
                      "only, nothing measured beside them")
    try:
        peer = Peer()
    except PeerError as err:
        return None, f"stable-worldmodel is installed but does not import ({err}): swm's rows only"
    return peer, (f"stable-worldmodel {peer.version} measured in the same run, repeats alternating with swm's; "
                  "swm/peer = swm's steps/s over the package's")


def sampler(space: gym.Space, rng: np.random.Generator):
    """Uniform random actions of ``space`` (the package's worker draws its actions the same way)."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return lambda: space.start + rng.integers(space.nvec)
    if isinstance(space, gym.spaces.Discrete):
        return lambda: int(space.start + rng.integers(space.n))
    return lambda: rng.uniform(space.low, space.high).astype(space.dtype)


def bare_loop(env_id: str, image_size: int, steps: int, max_episode_steps: int, seed: int = 0) -> float:
    world = World(env_id, num_envs=1, image_size=image_size)
    env = world.envs[0]
    action = sampler(env.action_space, np.random.default_rng(seed))
    t0 = time.perf_counter()
    env.reset(seed=seed)
    t = 0
    for _ in range(steps):
        _, _, terminated, _, _ = env.step(action())
        t += 1
        if terminated or t == max_episode_steps:  # episodes as long as World's (and the package's time limit)
            env.reset()
            t = 0
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


def measure_env(args: Args, env_id: str, peer: Peer | None) -> tuple[dict, list[str]]:
    """One row: swm's best bare and collect steps/s and, where the package has the env, its own, measured
    alternately with swm's. Returns the row and a note for each measurement the package failed (then left out)."""
    peer_id, peer_kwargs = PEER_ENVS.get(env_id, (None, None))
    request = {"env": peer_id, "kwargs": peer_kwargs(args.image_size) if peer_kwargs else {},
               "image_size": args.image_size, "max_episode_steps": args.max_episode_steps, "seed": 0}
    ours = {"bare": [], "collect": []}
    theirs = {"bare": [], "collect": []}
    failed: dict[str, str] = {}
    sizes = {"bare": {"steps": args.bare_steps}, "collect": {"num_envs": args.num_envs, "episodes": args.episodes}}
    for _ in range(args.repeats):
        for kind in ("bare", "collect"):
            ours[kind].append(bare_loop(env_id, args.image_size, args.bare_steps, args.max_episode_steps)
                              if kind == "bare" else collect_rate(args, env_id))
            if peer is not None and peer_id is not None and kind not in failed:
                try:
                    theirs[kind].append(peer.measure(mode=kind, **sizes[kind], **request)["steps_per_s"])
                except PeerError as err:
                    failed[kind] = " ".join(str(err).split())[:400]  # one line: errors may quote tracebacks
    bare, coll = max(ours["bare"]), max(ours["collect"])
    row = {"env_id": env_id, "bare_env_steps_per_s": bare, "collect_steps_per_s": coll,
           "collect_over_bare": coll / bare}
    if peer is not None:
        their_bare = max(theirs["bare"]) if theirs["bare"] else None
        their_coll = max(theirs["collect"]) if theirs["collect"] else None
        row.update({"peer_env_id": peer_id if their_bare or their_coll else None,
                    "peer_bare_steps_per_s": their_bare, "peer_collect_steps_per_s": their_coll,
                    "bare_over_peer": bare / their_bare if their_bare else None,
                    "collect_over_peer": coll / their_coll if their_coll else None})
    return row, [f"{env_id}: stable-worldmodel's {peer_id} failed ({kind}): {err}" for kind, err in failed.items()]


QUICK_SIZES = {"episodes": 12, "repeats": 1}  # --quick; flags given explicitly are kept
COLUMNS = {"env_id": ("env", None), "bare_env_steps_per_s": ("bare env steps/s", ",.0f"),
           "collect_steps_per_s": ("collect steps/s", ",.0f"), "collect_over_bare": ("collect/bare", ".2f"),
           "peer_env_id": ("stable-worldmodel env", None),
           "peer_bare_steps_per_s": ("its bare env steps/s", ",.0f"),
           "peer_collect_steps_per_s": ("its collect steps/s", ",.0f"),
           "bare_over_peer": ("bare swm/peer", ".1f"), "collect_over_peer": ("collect swm/peer", ".1f")}


def print_table(rows: list[dict], keys: list[str]) -> None:
    widths = [max(len(COLUMNS[k][0]), *(len(cell(r[k], COLUMNS[k][1])) for r in rows)) + 2 for k in keys]
    print("".join(f"{COLUMNS[k][0]:>{w}}" if i else f"{COLUMNS[k][0]:<{w}}" for i, (k, w) in
                  enumerate(zip(keys, widths))))
    for r in rows:
        print("".join(f"{cell(r[k], COLUMNS[k][1]):>{w}}" if i else f"{cell(r[k], COLUMNS[k][1]):<{w}}"
                      for i, (k, w) in enumerate(zip(keys, widths))))


def cell(value, fmt: str | None) -> str:
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def plot(rows: list[dict], peer: bool, path: Path) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 3.5))
    x = np.arange(len(rows))
    bars = [("bare_env_steps_per_s", "swm bare env loop"), ("collect_steps_per_s", "swm World.collect")]
    if peer:
        bars += [("peer_bare_steps_per_s", "stable-worldmodel bare env loop"),
                 ("peer_collect_steps_per_s", "stable-worldmodel World.collect")]
        ax.set_yscale("log")
    width = 0.8 / len(bars)
    for i, (key, label) in enumerate(bars):
        ax.bar(x - 0.4 + width * (i + 0.5), [r.get(key) or 0 for r in rows], width, label=label)
    ax.set_xticks(x, [r["env_id"] for r in rows], rotation=20, fontsize=7)
    ax.set_ylabel("env steps / s")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    common.save_figure(fig, path)


def main(args: Args) -> dict:
    t_start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    config = common.config_name(mode, args, Args())
    if args.quick:
        for field, value in QUICK_SIZES.items():
            if getattr(args, field) == getattr(Args(), field):
                setattr(args, field, value)
    command = common.command_line("benchmarks/env_speed.py")
    rows, notes = [], []
    peer, peer_note = start_peer(args)
    notes.append(peer_note)
    print(peer_note)
    try:
        for env_id in args.envs:
            try:
                World(env_id, image_size=8).close()
            except ValueError as err:
                if "pip install" not in str(err):  # an unknown id or a bad option: not a missing extra
                    raise
                notes.append(f"{env_id} skipped: {err}")
                print(notes[-1])
                continue
            row, failures = measure_env(args, env_id, peer)
            rows.append(row)
            for note in failures:
                notes.append(note)
                print(note)
            if peer is not None and env_id not in PEER_ENVS:
                notes.append(f"{env_id}: the stable-worldmodel package has no counterpart")
                print(notes[-1])
    finally:
        if peer is not None:
            peer.close()
    keys = list(COLUMNS)[:4] + (list(COLUMNS)[4:] if peer is not None else [])
    title = (f"World.collect at {args.image_size} px, {args.num_envs} envs, {args.encoding}, {args.episodes} episodes "
             f"of {args.max_episode_steps} steps, random policy, best of {args.repeats}")
    print(f"\n{title} (command: {command})")
    print_table(rows, keys)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args), "command": command, "rows": rows, "notes": notes}
    (out / "env_speed.json").write_text(json.dumps(results, indent=2))
    plot(rows, peer is not None, out / "env_speed.png")
    print(f"wrote {out / 'env_speed.json'} and {out / 'env_speed.png'}")
    table = common.table(title, [COLUMNS[k][0] for k in keys], [[r[k] for k in keys] for r in rows],
                         formats={COLUMNS[k][0]: COLUMNS[k][1] for k in keys if COLUMNS[k][1]}, notes=notes)
    results["record"] = str(common.write_record(
        out, "env_speed", config, title="Env throughput of World.collect", command=command, seeds=[0],
        quick=args.quick, tables=[table], seconds=time.perf_counter() - t_start))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
