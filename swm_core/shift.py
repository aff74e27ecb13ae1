"""Distribution shifts at evaluation from command-line strings: ``--variation KEY[=VALUE] ...`` (factors of
variation, FoV) and ``--wrapper NAME[:param=value,...] ...`` (visual wrappers), turned into World arguments.

``parse_shift(env_id, variation, wrapper)`` checks everything against the env (unknown keys, values out of range,
unknown wrappers or parameters, bad parameter values raise ``ValueError`` naming what is allowed) and returns a
:class:`Shift`: ``World(..., wrappers=shift.wrappers)`` and ``world.evaluate(..., options=shift.options)`` /
``world.evaluate_from_dataset(..., options=shift.options)`` apply it.

Syntax (docs/notes/robustness.md):

- ``KEY`` samples that FoV leaf every episode from its range (a parent key samples its whole subtree, ``all``
  every leaf); ``KEY=VALUE`` sets it: a number, a comma list for a vector (``agent.color=255,0,0``) or a
  choice's name for a named discrete leaf (``agent.shape=L``). ``swm fov ENV`` lists the leaves and ranges.
- ``NAME`` or ``NAME:param=value,param=value`` for a visual wrapper (``swm wrappers`` lists them). A value is a
  number, a comma list (``size=0.1,0.3``, ``color=0,0,0``), ``none``, ``true``/``false``, an image or video file
  (chroma_key's ``background``: .png/.jpg or a .npy array) or a schedule over env steps
  ``KIND(start,end,steps[,clock])`` with KIND one of constant, linear, cosine, exponential, sinusoidal and clock
  ``total`` (default: steps since the env was built, counted per env) or ``episode`` (steps since the reset),
  e.g. ``noise:std=linear(0,20,100)``.

What each kind of shift touches: a FoV shift changes the env itself, so the observations *and* the goal image
show it (the goal is rendered under the shifted values, in both protocols); a physical leaf (a size, a speed)
changes the dynamics too. A visual wrapper rewrites the observed frames only, never the goal image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_SCHEDULE = re.compile(r"^([a-z_]+)\((.*)\)$")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Shift:
    """A distribution shift: FoV leaves sampled every episode (``sample``) or set (``values``), and visual
    wrappers (``wrappers``: ``(name, kwargs)`` specs). ``variation``/``wrapper`` keep the strings as given."""

    sample: tuple[str, ...] = ()
    values: dict = field(default_factory=dict)
    wrappers: tuple = ()
    variation: tuple[str, ...] = ()
    wrapper: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sample or self.values or self.wrappers)

    @property
    def options(self) -> dict | None:
        """Reset options of the FoV shift (None when there is none), for World.evaluate / evaluate_from_dataset."""
        if not (self.sample or self.values):
            return None
        return {"variation": list(self.sample), "variation_values": dict(self.values)}

    @property
    def label(self) -> str:
        """One line for tables and notes, e.g. 'agent.color=255,0,0; noise:std=20' ('none' without a shift)."""
        return "; ".join([*self.variation, *self.wrapper]) or "none"

    def describe(self) -> dict:
        """JSON-able record: the strings given, the leaves sampled and the values set."""
        return {"variation": list(self.variation), "wrapper": list(self.wrapper), "sampled": list(self.sample),
                "set": {k: np.asarray(v).tolist() for k, v in self.values.items()}}

    def record(self, result: Mapping) -> dict:
        """``{"variations": {leaf: [value per episode]}}`` of the shifted leaves from an evaluation's result
        (``{}`` without a FoV shift): what each episode really ran with."""
        keys = [*self.sample, *(k for k in self.values if k not in self.sample)]
        if not keys:
            return {}
        return {"variations": {k: [np.asarray(v[k]).tolist() for v in result["variations"]] for k in keys}}


def parse_shift(env_id: str, variation: Sequence[str] = (), wrapper: Sequence[str] = ()) -> Shift:
    """Parse and check ``--variation`` and ``--wrapper`` strings against ``env_id`` (one small env is built to
    read its FoV space and to construct the wrappers once), so bad input fails before any training or planning."""
    from swm_core.world import World
    from swm_core.wrappers import apply_wrappers

    variation, wrapper = _strings("--variation", variation), _strings("--wrapper", wrapper)
    if not (variation or wrapper):
        return Shift()
    specs = tuple(parse_wrapper(w) for w in wrapper)
    with World(env_id, num_envs=1, image_size=16) as world:
        space = world.variation_space
        for text, spec in zip(wrapper, specs):  # the wrappers check their values when built
            try:
                apply_wrappers(world.envs[0], [spec])
            except ValueError as e:
                raise ValueError(f"--wrapper {text!r}: {e}") from None
    if variation and space is None:
        raise ValueError(f"env {env_id!r} has no factors of variation (a black-box Gymnasium env): --variation "
                         f"{list(variation)} cannot apply; visual wrappers (--wrapper) can")
    sample, values = parse_variations(variation, space) if variation else ((), {})
    return Shift(tuple(sample), values, specs, variation, wrapper)


def _strings(flag: str, items) -> tuple[str, ...]:
    if isinstance(items, str):
        items = (items,)
    bad = [x for x in items if not isinstance(x, str) or not x.strip()]
    if bad:
        raise ValueError(f"{flag} takes non-empty strings, got {bad!r}")
    return tuple(x.strip() for x in items)


def parse_variations(specs: Sequence[str], space) -> tuple[list[str], dict[str, np.ndarray]]:
    """``KEY`` / ``KEY=VALUE`` strings -> (leaves sampled, {leaf: value}) checked by ``space`` (a VariationSpace)."""
    to_sample, values = [], {}
    for spec in specs:
        key, sep, text = (part.strip() for part in spec.partition("="))
        if not sep:
            to_sample.append(key)
            continue
        if not key or not text:
            raise ValueError(f"--variation {spec!r}: expected KEY or KEY=VALUE (e.g. agent.color=255,0,0)")
        if key in values:
            raise ValueError(f"--variation sets {key!r} twice")
        values[key] = _variation_value(key, text, space)
    sampled = space.resolve(to_sample)
    values = space.validate(values)
    both = [k for k in values if k in sampled]
    if both:
        raise ValueError(f"--variation both samples and sets {both}: give each leaf once")
    return sampled, values


def _variation_value(key: str, text: str, space):
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [int(p) if _INT.match(p) else float(p) for p in parts]
    except ValueError:
        numbers = None
    if numbers is not None:
        return numbers[0] if len(numbers) == 1 else numbers
    if key not in space:
        space.validate({key: text})  # the space's own error, naming the valid keys
    leaf = space[key]
    if getattr(leaf, "names", None) and len(parts) == 1:
        return text  # a choice's name: the leaf checks it
    names = f" or one of {list(leaf.names)}" if getattr(leaf, "names", None) else ""
    raise ValueError(f"variation {key!r}: {text!r} is not a number or a comma list of numbers{names}; "
                     f"allowed: {leaf.describe()}")


def parse_wrapper(spec: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME:param=value,...`` -> ``(name, kwargs)``, checked against the wrapper's parameters."""
    import inspect

    from swm_core.wrappers import WRAPPERS

    name, _, params = (part.strip() for part in spec.partition(":"))
    if name not in WRAPPERS:
        raise ValueError(f"--wrapper {spec!r}: unknown visual wrapper {name!r}; valid names: {sorted(WRAPPERS)}")
    allowed = [p for p in inspect.signature(WRAPPERS[name].__init__).parameters if p not in ("self", "env")]
    kwargs: dict[str, list[str]] = {}
    last = None
    for token in _split_top_level(params) if params else []:
        key, sep, text = (part.strip() for part in token.partition("="))
        if not sep or not key.isidentifier():  # a comma list continues the previous parameter's value
            if last is None:
                raise ValueError(f"--wrapper {spec!r}: {token!r} is not param=value")
            kwargs[last].append(token)
            continue
        if key not in allowed:  # worded as swm_core.wrappers.make_wrapper words it
            raise ValueError(f"--wrapper {spec!r}: visual wrapper {name!r} got unknown parameter(s) {[key]}; "
                             f"valid: {allowed}")
        if key in kwargs:
            raise ValueError(f"--wrapper {spec!r}: parameter {key!r} given twice")
        kwargs[key], last = [text], key
    try:
        return name, {k: _wrapper_value(k, v) for k, v in kwargs.items()}
    except ValueError as e:
        raise ValueError(f"--wrapper {spec!r}: {e}") from None


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside parentheses (a schedule's own commas stay inside it)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise ValueError(f"unbalanced parentheses in {text!r}")
        if ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced parentheses in {text!r}")
    return [t for t in [*out, text[start:].strip()] if t]


def _wrapper_value(key: str, parts: list[str]):
    if key == "background":
        return _load_background("".join(parts))
    values = [_scalar(p) for p in parts]
    return values[0] if len(values) == 1 else tuple(values)


def _scalar(text: str):
    """One parameter value: none, true/false, an integer, a float or a schedule KIND(start,end,steps[,clock])."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    match = _SCHEDULE.match(text.replace(" ", ""))
    if match:
        return parse_schedule(text)
    raise ValueError(f"{text!r} is not a number, none, true/false or a schedule KIND(start,end,steps[,clock])")


def parse_schedule(text: str):
    """``KIND(start[,end[,steps[,clock]]])`` (also ``name=value`` inside) -> a :class:`swm_core.wrappers.Schedule`."""
    from swm_core.wrappers import Schedule

    match = _SCHEDULE.match(text.replace(" ", ""))
    if not match:
        raise ValueError(f"{text!r} is not a schedule KIND(start,end,steps[,clock])")
    kind, args = match.group(1), [a for a in match.group(2).split(",") if a]
    if kind not in Schedule.KINDS:
        raise ValueError(f"schedule {text!r}: kind {kind!r} is unknown; valid kinds: {list(Schedule.KINDS)}")
    names, fields = ["start", "end", "steps", "clock"], {}
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        name, value = (name, value) if sep else (names[i] if i < len(names) else "?", arg)
        if name not in names or name in fields:
            raise ValueError(f"schedule {text!r}: takes start, end, steps, clock once each, got {arg!r}")
        try:
            fields[name] = value if name == "clock" else int(value) if name == "steps" else float(value)
        except ValueError:
            raise ValueError(f"schedule {text!r}: {name} must be {'an integer' if name == 'steps' else 'a number'}, "
                             f"got {value!r}") from None
    if "start" not in fields:
        raise ValueError(f"schedule {text!r}: needs at least a start value")
    try:
        return Schedule(kind, **fields)
    except ValueError as e:
        raise ValueError(f"schedule {text!r}: {e}") from None


def _load_background(path: str) -> np.ndarray:
    """chroma_key's background from a file: an image (.png, .jpg ...; RGB) or a .npy uint8 (h, w, 3) / (T, h, w, 3)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"background {path!r} is not a file (an image, or a .npy array of frames)")
    if file.suffix == ".npy":
        return np.load(file, allow_pickle=False)
    import cv2

    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"background {path!r} could not be read as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
