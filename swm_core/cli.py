"""The ``swm`` command: ``swm envs``, ``swm fov ENV``, ``swm wrappers``, ``swm inspect DATASET``, ``swm preview ENV``,
``swm convert SRC DST``. Installed as a console script (``[project.scripts]``); also ``python -m swm_core.cli``.

Bad input (an unknown env, FoV key, wrapper or parameter; FoV on a black-box env) prints ``swm: error: ...`` and
exits with status 2.
"""

from __future__ import annotations

import inspect
import json
import sys
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
        world = _make(env_id, image_size=16)
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


def wrappers() -> None:
    """List the visual wrappers and their parameters (floats may follow a Schedule over env steps)."""
    from swm_core.wrappers import WRAPPERS

    for name, cls in sorted(WRAPPERS.items()):
        params = [p.name + (" (required)" if p.default is inspect.Parameter.empty else f"={p.default!r}")
                  for p in inspect.signature(cls.__init__).parameters.values() if p.name not in ("self", "env")]
        print(f"{name:<14} {', '.join(params)}")


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


def _parse_wrapper(spec: str):
    """``name`` or ``name:key=value,key=value`` (numbers as floats)."""
    name, _, params = spec.partition(":")
    kwargs = {}
    for item in filter(None, params.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"wrapper parameter {item!r} in {spec!r} must be key=value")
        try:
            kwargs[key] = float(value)
        except ValueError:
            kwargs[key] = value
    return name, kwargs


def preview(env_id: Annotated[str, tyro.conf.Positional], variation: tuple[str, ...] = (),
            wrapper: tuple[str, ...] = (), frames: int = PREVIEW_FRAMES, image_size: int = 64, seed: int = 0,
            out: str = "preview.png") -> None:
    """Save a PNG grid: the first frame (top row) and the goal (bottom row) of ``frames`` episodes under sampled
    FoV values.

    Args:
        env_id: the env id
        variation: FoV keys to sample (leaves, parents or 'all'), on top of the env's defaults
        wrapper: visual wrappers, each 'name' or 'name:key=value,...'
        frames: episodes shown
        image_size: frame size in pixels
        seed: episode i resets with seed + i
        out: the PNG written
    """
    import cv2

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    world = _make(env_id, image_size=image_size, wrappers=[_parse_wrapper(w) for w in wrapper])
    tops, bottoms = [], []
    for i in range(frames):
        world.reset(seed=seed + i, options={"variation": list(variation)} if variation else None)
        tops.append(world.infos["pixels"][0].copy())  # World's buffers are rewritten by the next reset
        bottoms.append(world.infos["goal"][0].copy())
    grid = np.concatenate([np.concatenate(tops, 1), np.concatenate(bottoms, 1)], 0)
    if not cv2.imwrite(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"could not write the PNG {out!r}")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]}: {frames} episodes, frames above, goals below)")


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
