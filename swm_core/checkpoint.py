"""One-file checkpoints: weights, constructor config, defining script and class, normalization statistics.

Loading never unpickles code (``torch.load(weights_only=True)``) and resolves the model class only from the
project's own ``baselines/*.py`` scripts, so a checkpoint from elsewhere cannot make us run arbitrary classes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCRIPT_DIRS = ("baselines",)
FORMAT_VERSION = 1


def _script_of(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if file is None:
        raise ValueError(f"cannot checkpoint {cls.__name__}: its module {cls.__module__!r} has no file")
    path = Path(file).resolve()
    try:
        rel = path.relative_to(PROJECT_ROOT)
    except ValueError:
        raise ValueError(f"cannot checkpoint {cls.__name__}: {path} is not inside the project {PROJECT_ROOT}") from None
    if rel.parts[0] not in SCRIPT_DIRS:
        raise ValueError(f"cannot checkpoint {cls.__name__}: {rel} is not in one of {SCRIPT_DIRS}")
    return rel.as_posix()


def _tensors_only(stats):
    """Normalization statistics as nested dicts of tensors (numpy arrays and floats are converted)."""
    if stats is None:
        return {}
    out = {}
    for key, value in stats.items():
        if isinstance(value, dict):
            out[key] = _tensors_only(value)
        else:
            out[key] = torch.as_tensor(value).detach().cpu()
    return out


def save_checkpoint(path, model: nn.Module, config: dict, stats: dict | None = None, **extra) -> Path:
    """Write ``model`` to ``path`` atomically. ``type(model)(**config)`` must rebuild it; ``extra`` must be JSON-able."""
    path = Path(path)
    try:
        config_json = json.dumps(config)
        extra_json = json.dumps(extra)
    except TypeError as err:
        raise ValueError(f"checkpoint config and extras must be JSON-serialisable: {err}") from None
    payload = {
        "format_version": FORMAT_VERSION,
        "script": _script_of(type(model)),
        "class_name": type(model).__name__,
        "config": config_json,
        "extra": extra_json,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "stats": _tensors_only(stats),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _import_script(script: str):
    rel = Path(script)
    if rel.is_absolute() or ".." in rel.parts or rel.parts[0] not in SCRIPT_DIRS or rel.suffix != ".py":
        raise ValueError(f"checkpoint names script {script!r}; only files in the project's {SCRIPT_DIRS} are allowed")
    file = PROJECT_ROOT / rel
    if not file.is_file():
        raise ValueError(f"checkpoint names script {script!r}, which does not exist in {PROJECT_ROOT}")
    name = "swm_scripts." + ".".join(rel.with_suffix("").parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint's contents (config and extra decoded), without building the model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable swm checkpoint: {err}") from None
    if not isinstance(ckpt, dict) or "class_name" not in ckpt:
        raise ValueError(f"{path} is not an swm checkpoint (no class_name entry)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format_version {ckpt.get('format_version')!r}; this swm reads "
                         f"version {FORMAT_VERSION}")
    ckpt["config"] = json.loads(ckpt["config"])
    ckpt["extra"] = json.loads(ckpt["extra"])
    return ckpt


def check_class(ckpt: dict, expected_class: str, path) -> None:
    """Raise ValueError unless the checkpoint ``ckpt`` (read from ``path``) holds an ``expected_class`` model."""
    if ckpt["class_name"] != expected_class:
        raise ValueError(
            f"{path} holds a {ckpt['class_name']} (from {ckpt['script']}), but this script trains "
            f"{expected_class}; pass a {expected_class} checkpoint"
        )


def load_checkpoint(path, map_location="cpu", expected_class: str | None = None):
    """Rebuild the model saved at ``path``. Returns ``(model, ckpt)``; ``ckpt['stats']`` holds the normalizers."""
    ckpt = read_checkpoint(path, map_location)
    if expected_class is not None:
        check_class(ckpt, expected_class, path)
    module = _import_script(ckpt["script"])
    cls = module.__dict__.get(ckpt["class_name"])
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__):
        raise ValueError(f"{ckpt['script']} defines no nn.Module class named {ckpt['class_name']!r}")
    model = cls(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    stats = ckpt["stats"]
    if hasattr(model, "set_stats") and stats:
        model.set_stats(stats)
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    model.eval()
    return model, ckpt


def check_env(ckpt: dict, env_id: str | None, path, what: str = "the env to plan in") -> None:
    """Raise ValueError when the checkpoint ``ckpt`` (read from ``path``) was trained on an env whose states,
    frames or dynamics differ from ``env_id`` (an env and its discrete-action variants share them)."""
    from swm_core.envs import same_dynamics

    trained = (ckpt.get("extra") or {}).get("env_id")
    if trained and env_id and not same_dynamics(trained, env_id):
        raise ValueError(f"checkpoint {path} was trained on {trained!r}, but {what} is {env_id!r}: pass a "
                         f"checkpoint trained on {env_id!r} (or on an env with the same dynamics)")
