"""Shared test helpers: the scripts (baselines/, solvers/, benchmarks/, scripts/) are loaded through one fixture."""

from pathlib import Path

import pytest

from swm_core.checkpoint import import_script
from swm_core.envs.cube import preload_triton

# the MuJoCo tests render through Mesa's llvmpipe (EGL); triton must be loaded before it (see preload_triton)
preload_triton()

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository's root folder."""
    return ROOT


@pytest.fixture(scope="session")
def load_script():
    """``load_script("baselines/lewm_train.py")`` -> the script's module (imported once, by its path, the same
    way swm_core.checkpoint imports a model script)."""

    def load(relative_path: str):
        return import_script(ROOT / relative_path)

    return load
