"""One-file checkpoints: weights, constructor config, the defining script and class, normalization statistics.

A checkpoint records the file name, location and SHA-256 of the script whose class it holds, so a training script
copied anywhere (outside this repository, with only ``swm_core`` installed) checkpoints, resumes and is planned
with. Loading never unpickles code (``torch.load(weights_only=True)``); the code that rebuilds a model is only ever
a script the user runs (``model_class=``, when a training script resumes) or names (``model_script=``), or the
file recorded at training time, and a script whose source differs from the recorded hash is refused unless the
caller passes ``allow_script_change=True``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

FORMAT_VERSION = 2


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def script_of(cls: type) -> Path:
    """The Python file that defines ``cls`` (a script run as ``__main__`` or a file imported by path)."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if file is None or not str(file).endswith(".py"):
        raise ValueError(f"cannot checkpoint {cls.__name__}: its module {cls.__module__!r} has no .py file (define "
                         f"the model in a script, not in an interactive session)")
    return Path(file).resolve()


def import_script(path):
    """Import the Python file ``path`` as a module and return it (cached by location and content).

    Two different files, or two versions of one file, never share a module: the module name carries a hash of
    both, so classes from a copied or edited script are never confused with the original's.
    """
    path = Path(path).resolve()
    if path.suffix != ".py" or not path.is_file():
        raise ValueError(f"{str(path)!r} is not a Python script (expected an existing .py file)")
    key = hashlib.sha256(f"{path}\0{file_sha256(path)}".encode()).hexdigest()[:12]
    name = f"swm_script_{path.stem}_{key}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _tensors_only(stats):
    """Normalization statistics as nested dicts of tensors (numpy arrays and floats are converted)."""
    if stats is None:
        return {}
    out = {}
    for key, value in stats.items():
        out[key] = _tensors_only(value) if isinstance(value, dict) else torch.as_tensor(value).detach().cpu()
    return out


def atomic_save(obj, path) -> Path:
    """``torch.save(obj, path)`` through a temporary file and a rename: ``path`` is either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(path, model: nn.Module, config: dict, stats: dict | None = None, **extra) -> Path:
    """Write ``model`` to ``path`` atomically. ``type(model)(**config)`` must rebuild it; ``extra`` must be JSON-able.

    The model's class may live in any script; its name, absolute location and source hash are recorded.
    """
    try:
        config_json, extra_json = json.dumps(config), json.dumps(extra)
    except TypeError as err:
        raise ValueError(f"checkpoint config and extras must be JSON-serialisable: {err}") from None
    script = script_of(type(model))
    payload = {
        "format_version": FORMAT_VERSION,
        "script": script.name,
        "script_path": str(script),
        "script_sha256": file_sha256(script),
        "class_name": type(model).__name__,
        "default_solver": getattr(type(model), "default_solver", None),
        "config": config_json,
        "extra": extra_json,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "stats": _tensors_only(stats),
    }
    return atomic_save(payload, path)


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint's contents (config and extra decoded), without building the model or running any code."""
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
                         f"version {FORMAT_VERSION} (retrain, or load it with the swm release that wrote it)")
    ckpt["config"] = json.loads(ckpt["config"])
    ckpt["extra"] = json.loads(ckpt["extra"])
    return ckpt


def check_class(ckpt: dict, expected_class: str, path) -> None:
    """Raise ValueError unless the checkpoint ``ckpt`` (read from ``path``) holds an ``expected_class`` model."""
    if ckpt["class_name"] != expected_class:
        raise ValueError(f"{path} holds a {ckpt['class_name']} (from {ckpt['script']}), but this script trains "
                         f"{expected_class}; pass a {expected_class} checkpoint")


def find_model_script(ckpt: dict, path, model_script=None, search_dirs=(), allow_script_change=False) -> Path:
    """The script that rebuilds the checkpoint's model: ``model_script`` if given, else the location recorded at
    training time, else ``<dir>/<script name>`` for each of ``search_dirs``. Its source must hash to the recorded
    SHA-256 unless ``allow_script_change``."""
    if model_script is not None:
        found = Path(model_script)
        if not found.is_file():
            raise ValueError(f"--model-script {str(model_script)!r} does not exist")
    else:
        candidates = [Path(ckpt["script_path"])] + [Path(d) / ckpt["script"] for d in search_dirs]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ValueError(f"checkpoint {path} was written by {ckpt['script']}, which is in none of "
                             f"{[str(c) for c in candidates]}: pass the script with --model-script PATH")
    digest = file_sha256(found)
    if digest != ckpt["script_sha256"] and not allow_script_change:
        raise ValueError(
            f"checkpoint {path} was written by {ckpt['script_path']} (sha256 {ckpt['script_sha256'][:12]}), but "
            f"{found} has sha256 {digest[:12]}: its source changed since training. Pass the original script with "
            f"--model-script PATH, or --allow-script-change to build the model with {found} anyway")
    return found


def load_checkpoint(path, map_location="cpu", expected_class: str | None = None, model_class: type | None = None,
                    model_script=None, search_dirs=(), allow_script_change: bool = False):
    """Rebuild the model saved at ``path``. Returns ``(model, ckpt)``; ``ckpt['stats']`` holds the normalizers.

    ``model_class``: build with this class (a training script resuming its own model); otherwise the class is
    taken from the script :func:`find_model_script` picks (``model_script``, the recorded location, then
    ``search_dirs``), refused when its source differs from the recorded hash unless ``allow_script_change``.
    """
    ckpt = read_checkpoint(path, map_location)
    if expected_class is not None:
        check_class(ckpt, expected_class, path)
    if model_class is not None:
        if model_class.__name__ != ckpt["class_name"]:
            raise ValueError(f"{path} holds a {ckpt['class_name']}, not a {model_class.__name__}")
        cls = model_class
    else:
        script = find_model_script(ckpt, path, model_script, search_dirs, allow_script_change)
        module = import_script(script)
        cls = module.__dict__.get(ckpt["class_name"])
        if not (isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__):
            raise ValueError(f"{script} defines no nn.Module class named {ckpt['class_name']!r}")
    model = cls(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    if hasattr(model, "set_stats") and ckpt["stats"]:
        model.set_stats(ckpt["stats"])
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
