"""The ``swm`` command: ``swm envs``, ``swm fov ENV``, ``swm wrappers``, ``swm inspect DATASET``, ``swm preview ENV``,
``swm convert SRC DST``. Installed as a console script (``[project.scripts]``); also ``python -m swm_core.cli``.

Bad input (an unknown env, FoV key, wrapper or parameter; FoV on a black-box env) prints ``swm: error: ...`` and
exits with status 2.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

PREVIEW_FRAMES = 8


def _native_ids() -> list[str]:
    from swm_core.envs import ENV_IDS

    return list(ENV_IDS)


def _make(env_id: str, image_size: int = 32, wrappers=()):
    from swm_core.world import World

    return World(env_id, num_envs=1, image_size=image_size, wrappers=wrappers)


def envs() -> None:
    """List the native envs: id, action space and the number of FoV leaves."""
    for env_id in _native_ids():
        try:
            world = _make(env_id, image_size=16)
        except ValueError as err:  # an env whose optional extra is not installed: listed with the install line
            print(f"{env_id:<30} unavailable: {err}")
            continue
        print(f"{env_id:<30} action {world.action_space}  FoV leaves {len(world.variation_space.keys())}")
        world.close()
    print("(any other Gymnasium id with an rgb_array render runs as a black box: frames only, visual wrappers)")


def fov(env_id: Annotated[str, tyro.conf.Positional]) -> None:
    """Print an env's FoV tree: every leaf with its range and default value."""
    world = _make(env_id, image_size=16)
    space = world.variation_space
    if space is None:
        raise ValueError(f"env {env_id!r} is a black-box Gymnasium env with no factors of variation (FoV); visual "
                         "wrappers apply (swm wrappers)")
    defaults = getattr(world.envs[0].unwrapped, "default_variations", ())
    print(f"{env_id}: {len(space.keys())} leaves; sampled every episode by default: {list(defaults)}")
    for key, leaf in space.leaves.items():
        default = np.asarray(leaf.default)
        shown = default.tolist() if default.dtype.kind in "iub" else np.vectorize(lambda x: float(f"{x:.6g}"))(
            default.astype(np.float64)).tolist()  # float32 defaults without their binary noise (0.1, not 0.100000001)
        print(f"  {key:<28} {leaf.describe():<40} default {shown}")


WRAPPER_SYNTAX = """\
--wrapper NAME[:param=value,...] (solver mains, baselines' evaluation, success_table, swm preview): a value is a
number, a comma list (size=0.1,0.3  color=0,0,0), none, true/false, an image or .npy file (chroma_key's background)
or a schedule over env steps KIND(start,end,steps[,clock]), KIND one of constant linear cosine exponential
sinusoidal, clock 'total' (steps since the env was built, per env; default) or 'episode' (since the reset), e.g.
noise:std=linear(0,20,100). Every numeric parameter takes a schedule; integer ones read it rounded (kernels odd).
Wrappers rewrite the observations only, never the goal image."""


def wrappers() -> None:
    """List the visual wrappers and their parameters, and the --wrapper syntax (numbers may follow schedules)."""
    from swm_core.wrappers import WRAPPERS

    for name, cls in sorted(WRAPPERS.items()):
        params = [p.name + (" (required)" if p.default is inspect.Parameter.empty else f"={p.default!r}")
                  for p in inspect.signature(cls.__init__).parameters.values() if p.name not in ("self", "env")]
        print(f"{name:<14} {', '.join(params)}")
    print(WRAPPER_SYNTAX)


def inspect_dataset(dataset: Annotated[str, tyro.conf.Positional], verify: bool = False) -> None:
    """Describe a Lance dataset: version, episodes, rows, columns, the env and FoV it was recorded with.

    Args:
        dataset: the Lance dataset (a local path)
        verify: check every data file against the SHA-256 recorded at its commit
    """
    from swm_core.data import open_dataset

    ds = open_dataset(dataset)
    meta = ds.metadata
    print(f"{dataset}: version {ds.version}, {ds.num_episodes} episodes, {ds.num_rows} rows")
    print(f"env {meta.get('env_id')!r}, {meta.get('image_size')} px, encoding {meta.get('encoding')!r}, "
          f"control {meta.get('control_hz')} Hz")
    print(f"FoV recorded: {meta.get('fov_keys', [])}")
    for column, shape in meta.get("shapes", {}).items():
        print(f"  {column:<36} {tuple(shape)}")
    if verify:
        from swm_core.integrity import verify_dataset

        report = verify_dataset(dataset)
        print(json.dumps(report, default=str))


def preview(env_id: Annotated[str, tyro.conf.Positional], variation: tuple[str, ...] = (),
            wrapper: tuple[str, ...] = (), frames: int = PREVIEW_FRAMES, image_size: int = 64, seed: int = 0,
            out: str = "preview.png", gif: str = "", gif_steps: int = 16) -> None:
    """Save a PNG grid: the first frame (top row) and the goal (bottom row) of ``frames`` episodes under sampled
    FoV values; and a GIF of the same episodes played side by side for ``gif_steps`` random actions, their goals
    below (an episode that ends holds its last frame).

    Args:
        env_id: the env id
        variation: FoV leaves: 'KEY' samples it (a parent: its subtree; 'all'), on top of the env's defaults;
            'KEY=VALUE' sets it (a number, a comma list such as agent.color=255,0,0, or a choice's name)
        wrapper: visual wrappers, each 'NAME' or 'NAME:param=value,...' (swm wrappers shows the syntax)
        frames: episodes shown
        image_size: frame size in pixels
        seed: episode i resets with seed + i; the random actions are seeded with seed
        out: the PNG written
        gif: the GIF written ('' = out with the suffix .gif)
        gif_steps: random-action steps shown in the GIF (0 = no GIF)
    """
    import cv2

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if gif_steps < 0:
        raise ValueError(f"gif_steps must be >= 0 (0 = no GIF), got {gif_steps}")
    from swm_core.shift import parse_shift

    shift = parse_shift(env_id, variation, wrapper)
    world = _make(env_id, image_size=image_size, wrappers=shift.wrappers)
    world.action_space.seed(seed)
    tops, bottoms, clips = [], [], []
    for i in range(frames):
        world.reset(seed=seed + i, options=shift.options)
        tops.append(world.infos["pixels"][0].copy())  # World's buffers are rewritten by the next reset
        bottoms.append(world.infos["goal"][0].copy())
        clips.append([tops[-1]])
        for _ in range(gif_steps):
            if not (world.infos["terminated"][0] or world.infos["truncated"][0]):  # World would start a new one
                world.step(np.asarray([world.action_space.sample()]))
            clips[-1].append(world.infos["pixels"][0].copy())
    grid = np.concatenate([np.concatenate(tops, 1), np.concatenate(bottoms, 1)], 0)
    if not cv2.imwrite(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"could not write the PNG {out!r}")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]}: {frames} episodes, frames above, goals below)")
    if gif_steps:
        from PIL import Image

        gif = gif or str(Path(out).with_suffix(".gif"))
        goals = np.concatenate(bottoms, 1)
        images = [Image.fromarray(np.concatenate([np.concatenate([c[t] for c in clips], 1), goals], 0))
                  for t in range(gif_steps + 1)]
        ms = max(20, round(1000 / float(world.control_hz or 10)))  # GIF delays under 20 ms are shown slower
        try:
            images[0].save(gif, save_all=True, append_images=images[1:], duration=ms, loop=0)
        except (OSError, ValueError) as err:
            raise ValueError(f"could not write the GIF {gif!r}: {err}") from None
        print(f"wrote {gif} ({gif_steps + 1} frames of {goals.shape[1]}x{2 * goals.shape[0]}, {ms} ms each: "
              "random actions above, goals below)")


def convert(src: Annotated[str, tyro.conf.Positional], dst: Annotated[str, tyro.conf.Positional],
            encoding: str = "auto") -> None:
    """Convert a dataset between Lance, HDF5, MP4 folders (and from LeRobot folders); formats from the names.
    scripts/convert.py has every option (S3, versions, tags, codecs).

    Args:
        src: the source dataset
        dst: the destination (*.lance, *.h5, *.mp4 folder)
        encoding: image encoding of a Lance/HDF5 destination: 'jpeg', 'raw' or 'auto' (as in the source)
    """
    from swm_core.convert import convert as run_convert

    summary = run_convert(src, dst, encoding=None if encoding == "auto" else encoding)
    print(f"converted {summary['episodes']} episodes ({summary['rows']} rows) {summary['src_format']} -> "
          f"{summary['dst_format']}")


COMMANDS = {"envs": envs, "fov": fov, "wrappers": wrappers, "inspect": inspect_dataset, "preview": preview,
            "convert": convert}


def main(argv: list[str] | None = None) -> int:
    try:
        tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="swm")
    except (ValueError, FileNotFoundError) as err:
        print(f"swm: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
