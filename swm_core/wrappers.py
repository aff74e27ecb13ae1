"""Visual wrappers: rewrite the rendered frame, never the goal image or any state.

Each wrapper is a ``gymnasium.Wrapper`` that replaces ``obs["pixels"]`` and ``info["pixels"]`` (uint8
(H, W, 3)) by a transformed copy; ``info["goal"]``, proprio, state, sim_state, reward and the rest pass
through untouched.
Attribute access for the simulator (``set_sim_state`` ...) goes through ``env.unwrapped`` as usual.

Randomness comes from a ``numpy.random.Generator`` seeded on ``reset(seed=...)`` (a stream derived from the
seed and the wrapper's name, so it is not the env's own stream): same seed, same actions -> same frames.
``reset()`` without a seed continues the current stream. What is drawn when:

========================  =======================================================================
per call (every frame)    noise, cutout, random_shift
per reset (episode)       color_jitter, occlusion, random_conv, moving_patch (start, heading, color),
                          chroma_key (start frame of a background video)
deterministic             blur, grayscale, resolution
========================  =======================================================================

Every numeric parameter may follow a :class:`Schedule` over env steps, e.g.
``NoiseWrapper(env, std=Schedule("linear", start=0, end=30, steps=100))``; plain numbers are constant. An integer
parameter (``kernel``, ``pad``, ``num_patches``, ``tolerance``) takes the schedule's value rounded to the nearest
integer (a ``kernel`` to the nearest odd one, ties upward). A parameter is read when it is used: every frame, except
those of what is drawn per reset (occlusion's and moving_patch's ``num_patches`` and ``size``, random_conv's
``kernel``), which are read at the reset.

``make_wrapper("noise", env, std=10)`` builds one by name (``WRAPPERS`` lists the 11 names);
``apply_wrappers(env, specs)`` applies a list of them.
"""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma, as OpenCV/PIL


# --- schedules ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A parameter value as a function of the env step ``t``; ``p = min(t / steps, 1)``.

    - ``constant``: ``start``
    - ``linear``: ``start + (end - start) * p``
    - ``cosine``: ``start + (end - start) * (1 - cos(pi * p)) / 2`` (slow-fast-slow)
    - ``exponential``: ``start * (end / start) ** p`` (geometric; start and end nonzero, same sign)
    - ``sinusoidal``: ``start + (end - start) * (1 - cos(2 pi t / steps)) / 2`` (start -> end -> start, period
      ``steps``)

    ``clock="total"`` counts env steps since the wrapper was built (a curriculum across episodes);
    ``clock="episode"`` counts steps since the last reset.
    """

    kind: str = "constant"
    start: float = 0.0
    end: float | None = None
    steps: int = 1
    clock: str = "total"

    KINDS = ("constant", "linear", "cosine", "exponential", "sinusoidal")
    CLOCKS = ("total", "episode")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"Schedule kind {self.kind!r} is unknown; valid kinds: {list(self.KINDS)}")
        if self.clock not in self.CLOCKS:
            raise ValueError(f"Schedule clock {self.clock!r} is unknown; valid clocks: {list(self.CLOCKS)}")
        start = float(self.start)
        end = start if self.end is None else float(self.end)
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"Schedule start/end must be finite, got start={self.start}, end={self.end}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"Schedule steps must be an integer >= 1, got {self.steps!r}")
        if self.kind == "exponential" and (start == 0 or end == 0 or (start > 0) != (end > 0)):
            raise ValueError(
                "exponential Schedule needs nonzero start and end of the same sign, "
                f"got start={start}, end={end}"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "steps", int(self.steps))

    def __call__(self, t: int) -> float:
        t = max(int(t), 0)
        p = min(t / self.steps, 1.0)
        a, b = self.start, self.end
        if self.kind == "constant":
            return a
        if self.kind == "linear":
            return a + (b - a) * p
        if self.kind == "cosine":
            return a + (b - a) * (1.0 - math.cos(math.pi * p)) / 2.0
        if self.kind == "exponential":
            return a * (b / a) ** p
        return a + (b - a) * (1.0 - math.cos(2.0 * math.pi * t / self.steps)) / 2.0  # sinusoidal

    @property
    def bounds(self) -> tuple[float, float]:
        """Every kind stays between start and end."""
        return min(self.start, self.end), max(self.start, self.end)


def as_schedule(value) -> Schedule:
    """A number, a :class:`Schedule` or a dict of Schedule fields (e.g. from a JSON config)."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, Mapping):
        return Schedule(**value)
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return Schedule("constant", start=float(value))
    raise ValueError(f"expected a number, a Schedule or a dict of Schedule fields, got {value!r}")


# --- the base wrapper ---------------------------------------------------------------------------------------


class VisualWrapper(gym.Wrapper):
    """Rewrites the frame at every reset and step; subclasses implement ``_transform`` (and ``_on_reset``)."""

    name = "visual"

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._schedules: dict[str, Schedule] = {}
        self._odd: dict[str, bool] = {}  # integer parameters: whether read as odd integers
        self.total_steps = 0  # env steps through this wrapper since it was built
        self.episode_steps = 0  # env steps since the last reset
        self._rng: np.random.Generator | None = None
        self._last_frame: np.ndarray | None = None
        # stacked wrappers of the same kind get different streams
        inner, self._stream_index = env, 0
        while isinstance(inner, gym.Wrapper):
            self._stream_index += type(inner) is type(self)
            inner = inner.env

    # parameters ---------------------------------------------------------------------------------------------
    def _error(self, msg: str) -> ValueError:
        return ValueError(f"{type(self).__name__}: {msg}")

    def _schedule(self, name: str, value, low: float | None = None, high: float | None = None) -> Schedule:
        try:
            sched = as_schedule(value)
        except (ValueError, TypeError) as e:
            raise self._error(f"{name}: {e}") from None
        lo, hi = sched.bounds
        if (low is not None and lo < low) or (high is not None and hi > high):
            allowed = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise self._error(f"{name} must be in {allowed}, got {value!r}")
        self._schedules[name] = sched
        return sched

    def _count(self, name: str, value, low: int, high: int | None = None, odd: bool = False) -> None:
        """An integer parameter: an int, or a Schedule (or dict of its fields) read rounded (see :meth:`count`)."""
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        what = f"{'an odd' if odd else 'an'} integer {bounds}"
        if isinstance(value, (Schedule, Mapping)):
            try:
                self._schedule(name, value, low=low, high=high)
            except ValueError as e:
                raise self._error(f"{name} must be {what} or a Schedule within those bounds ({e})") from None
        else:
            is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if not is_int or value < low or (high is not None and value > high) or (odd and value % 2 == 0):
                raise self._error(f"{name} must be {what}, got {value!r} (or a Schedule, read rounded)")
            self._schedules[name] = Schedule("constant", start=int(value))
        self._odd[name] = odd

    def count(self, name: str) -> int:
        """The current value of an integer parameter: the schedule's value rounded to the nearest integer (to the
        nearest odd integer for a kernel), ties upward."""
        v = self.value(name)
        return 2 * math.floor((v - 1) / 2 + 0.5) + 1 if self._odd[name] else math.floor(v + 0.5)

    def _color(self, name: str, value) -> np.ndarray | None:
        if value is None:
            return None
        arr = np.asarray(value)
        if arr.shape != (3,) or not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 255):
            raise self._error(f"{name} must be an RGB triple in [0, 255] or None, got {value!r}")
        return arr.astype(np.uint8)

    def _fractions(self, name: str, value) -> None:
        """A fraction of the image side in (0, 1] or a (min, max) pair of them; each may be a Schedule (a
        scheduled pair is read as (smaller, larger) at every use)."""
        try:
            single = isinstance(value, (Schedule, Mapping, str)) or np.ndim(value) == 0
            parts = (value, value) if single else tuple(value)
            lo, hi = (as_schedule(p) for p in parts) if len(parts) == 2 else (None, None)
        except (TypeError, ValueError):
            lo = hi = None
        ok = lo is not None and 0 < min(lo.bounds[0], hi.bounds[0]) and max(lo.bounds[1], hi.bounds[1]) <= 1
        if not ok or (lo.kind == hi.kind == "constant" and lo.start > hi.start):
            raise self._error(
                f"{name} must be a fraction of the image side in (0, 1] or a (min, max) pair "
                f"with 0 < min <= max <= 1 (each may be a Schedule), got {value!r}"
            )
        self._schedules[name + "_min"], self._schedules[name + "_max"] = lo, hi

    def fractions(self, name: str) -> tuple[float, float]:
        """The current (min, max) of a fraction parameter set with :meth:`_fractions`."""
        a, b = self.value(name + "_min"), self.value(name + "_max")
        return min(a, b), max(a, b)

    def value(self, name: str) -> float:
        """The current value of a (possibly scheduled) parameter."""
        sched = self._schedules[name]
        return sched(self.total_steps if sched.clock == "total" else self.episode_steps)

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng()
        return self._rng

    # gymnasium API ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng([int(seed), zlib.crc32(self.name.encode()), self._stream_index])
        self.episode_steps = 0
        frame = self._frame(obs, info)
        self._on_reset(frame)
        return self._emit(frame, obs, info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total_steps += 1
        self.episode_steps += 1
        frame = self._frame(obs, info)
        obs, info = self._emit(frame, obs, info)
        return obs, reward, terminated, truncated, info

    def render(self):
        """The last frame this wrapper emitted (what the agent saw), else the inner env's render."""
        return self.env.render() if self._last_frame is None else self._last_frame.copy()

    # plumbing -----------------------------------------------------------------------------------------------
    def _frame(self, obs, info) -> np.ndarray:
        frame = info.get("pixels") if isinstance(info, Mapping) and "pixels" in info else None
        if frame is None:
            frame = obs.get("pixels") if isinstance(obs, Mapping) else obs
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(
                f"{type(self).__name__} needs uint8 (H, W, 3) frames in obs/info['pixels'], "
                f"got {frame.dtype} {frame.shape}"
            )
        return frame

    def _emit(self, frame: np.ndarray, obs, info):
        out = self._transform(frame)
        if out.dtype != np.uint8:
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        self._last_frame = out
        if isinstance(obs, Mapping):
            obs = {**obs, "pixels": out} if "pixels" in obs else obs
        elif isinstance(obs, np.ndarray) and obs.shape == frame.shape:
            obs = out
        if isinstance(info, Mapping) and "pixels" in info:
            info = {**info, "pixels": out}
        return obs, info

    def _on_reset(self, frame: np.ndarray) -> None:
        """Draw the per-episode randomness (the frame gives the image size)."""

    def _transform(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# --- the 11 wrappers ----------------------------------------------------------------------------------------


class NoiseWrapper(VisualWrapper):
    """Additive Gaussian pixel noise with standard deviation ``std`` (0-255 units), fresh every frame."""

    name = "noise"

    def __init__(self, env: gym.Env, std: float | Schedule = 10.0):
        super().__init__(env)
        self._schedule("std", std, low=0.0)

    def _transform(self, frame):
        std = self.value("std")
        if std == 0:
            return frame.copy()
        noise = self.rng.standard_normal(frame.shape, dtype=np.float32)
        return frame.astype(np.float32) + noise * np.float32(std)


class BlurWrapper(VisualWrapper):
    """Gaussian blur with an odd ``kernel`` (pixels) and ``sigma`` (pixels; 0 means no blur)."""

    name = "blur"

    def __init__(self, env: gym.Env, kernel: int | Schedule = 5, sigma: float | Schedule = 1.0):
        super().__init__(env)
        self._count("kernel", kernel, low=1, odd=True)
        self._schedule("sigma", sigma, low=0.0)

    @property
    def kernel(self) -> int:
        return self.count("kernel")

    def _transform(self, frame):
        sigma, k = self.value("sigma"), self.kernel
        if sigma == 0 or k == 1:
            return frame.copy()
        return cv2.GaussianBlur(frame, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


class ColorJitterWrapper(VisualWrapper):
    """Brightness, contrast, saturation and hue jitter, drawn once per episode.

    At reset each factor draws ``u ~ U[-1, 1]``; the frame then uses brightness ``max(0, 1 + u*brightness)``
    (multiply), contrast ``max(0, 1 + u*contrast)`` (blend with the mean gray level), saturation
    ``max(0, 1 + u*saturation)`` (blend with the gray image) and a hue rotation of ``u*hue`` turns
    (hue <= 0.5), applied in that order with clipping after each, as torchvision's ColorJitter does (but in a
    fixed order). Scheduled magnitudes scale the episode's draw.
    """

    name = "color_jitter"

    def __init__(self, env: gym.Env, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1):
        super().__init__(env)
        for key, val in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            self._schedule(key, val, low=0.0)
        self._schedule("hue", hue, low=0.0, high=0.5)
        self.draws = np.zeros(4)

    def _on_reset(self, frame):
        self.draws = self.rng.uniform(-1.0, 1.0, size=4)

    def factors(self) -> tuple[float, float, float, float]:
        """(brightness, contrast, saturation, hue shift in turns) in force now."""
        ub, uc, us, uh = (float(u) for u in self.draws)
        return (
            max(0.0, 1 + ub * self.value("brightness")),
            max(0.0, 1 + uc * self.value("contrast")),
            max(0.0, 1 + us * self.value("saturation")),
            uh * self.value("hue"),
        )

    def _transform(self, frame):
        fb, fc, fs, hue = self.factors()
        x = frame.astype(np.float32)
        if fb != 1:
            x = np.clip(x * fb, 0, 255)
        if fc != 1:
            mean = float((x @ _GRAY).mean())
            x = np.clip((x - mean) * fc + mean, 0, 255)
        if fs != 1:
            gray = (x @ _GRAY)[..., None]
            x = np.clip(gray + (x - gray) * fs, 0, 255)
        if hue != 0:
            hsv = cv2.cvtColor(
                (x / 255.0).astype(np.float32), cv2.COLOR_RGB2HSV
            )  # float: H in degrees [0, 360)
            hsv[..., 0] = (hsv[..., 0] + hue * 360.0) % 360.0
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        return x


class GrayscaleWrapper(VisualWrapper):
    """Luma (0.299 R + 0.587 G + 0.114 B) in all three channels; ``amount`` < 1 blends with the color
    frame."""

    name = "grayscale"

    def __init__(self, env: gym.Env, amount: float | Schedule = 1.0):
        super().__init__(env)
        self._schedule("amount", amount, low=0.0, high=1.0)

    def _transform(self, frame):
        x = frame.astype(np.float32)
        gray = (x @ _GRAY)[..., None]
        amount = np.float32(self.value("amount"))
        return np.broadcast_to(gray, x.shape) if amount == 1 else x + (gray - x) * amount


class OcclusionWrapper(VisualWrapper):
    """``num_patches`` square patches of ``color`` (None: a random color per patch), side drawn uniformly in
    ``size`` (fractions of the shorter image side), placed fully inside the frame; fixed for the episode."""

    name = "occlusion"
    per_call = False

    def __init__(self, env: gym.Env, num_patches: int | Schedule = 1, size=(0.1, 0.3), color=(0, 0, 0)):
        super().__init__(env)
        self._count("num_patches", num_patches, low=0)
        self._fractions("size", size)
        self.color = self._color("color", color)
        self.patches = np.zeros((0, 3), dtype=np.int64)  # rows (top, left, side)
        self.colors = np.zeros((0, 3), dtype=np.uint8)

    @property
    def num_patches(self) -> int:
        return self.count("num_patches")

    @property
    def size(self) -> tuple[float, float]:
        return self.fractions("size")

    def _draw_patches(self, frame):
        h, w = frame.shape[:2]
        n, (lo, hi) = self.num_patches, self.size
        sides_frac = self.rng.uniform(lo, hi, size=n)
        sides = np.clip(np.rint(sides_frac * min(h, w)), 1, min(h, w)).astype(np.int64)
        tops = self.rng.integers(0, h - sides + 1)
        lefts = self.rng.integers(0, w - sides + 1)
        self.patches = np.stack([tops, lefts, sides], axis=1) if n else np.zeros((0, 3), dtype=np.int64)
        if self.color is None:
            self.colors = self.rng.integers(0, 256, size=(n, 3)).astype(np.uint8)
        else:
            self.colors = np.tile(self.color, (n, 1))

    def _on_reset(self, frame):
        if not self.per_call:
            self._draw_patches(frame)

    def _transform(self, frame):
        if self.per_call:
            self._draw_patches(frame)
        out = frame.copy()
        for (top, left, side), color in zip(self.patches, self.colors):
            out[top : top + side, left : left + side] = color
        return out


class CutoutWrapper(OcclusionWrapper):
    """Occlusion patches redrawn on every frame (Cutout); same parameters as :class:`OcclusionWrapper`."""

    name = "cutout"
    per_call = True


class RandomConvWrapper(VisualWrapper):
    """A random ``kernel`` x ``kernel`` convolution mixing the 3 channels, weights ~ N(0, 1/(3 k^2)) drawn
    per episode, applied to the frame (in [0, 1]) centred at 0.5 with reflect borders:
    ``out = clip(conv(x - 0.5) + 0.5, 0, 1)``."""

    name = "random_conv"

    def __init__(self, env: gym.Env, kernel: int | Schedule = 3):
        super().__init__(env)
        self._count("kernel", kernel, low=1, odd=True)
        k = self.kernel
        self.weights = np.zeros((k, k, 3, 3), dtype=np.float32)  # (dy, dx, in, out)

    @property
    def kernel(self) -> int:
        """The kernel size in force now; the episode's weights were drawn at the reset with the size then."""
        return self.count("kernel")

    def _on_reset(self, frame):
        k = self.kernel
        std = 1.0 / math.sqrt(3 * k * k)
        self.weights = (self.rng.standard_normal((k, k, 3, 3)) * std).astype(np.float32)

    def _transform(self, frame):
        channels = cv2.split(frame.astype(np.float32) / 255.0 - 0.5)
        out = [
            sum(
                cv2.filter2D(channels[c], -1, self.weights[:, :, c, o], borderType=cv2.BORDER_REFLECT_101)
                for c in range(3)
            )
            for o in range(3)
        ]
        return np.clip(cv2.merge(out) + 0.5, 0.0, 1.0) * 255.0


class ResolutionWrapper(VisualWrapper):
    """Down-sample by ``scale`` (area averaging) then up-sample back (nearest): blocky, less detail."""

    name = "resolution"

    def __init__(self, env: gym.Env, scale: float | Schedule = 0.25):
        super().__init__(env)
        sched = self._schedule("scale", scale, low=0.0, high=1.0)
        if sched.bounds[0] <= 0:
            raise self._error(f"scale must be in (0, 1], got {scale!r}")

    def _transform(self, frame):
        h, w = frame.shape[:2]
        scale = self.value("scale")
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        if (sh, sw) == (h, w):
            return frame.copy()
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


class RandomShiftWrapper(VisualWrapper):
    """DrQ random shift: pad by ``pad`` (edge replicate) and crop back at a random offset; content moves by at
    most ``pad`` pixels on each axis, redrawn every frame."""

    name = "random_shift"

    def __init__(self, env: gym.Env, pad: int | Schedule = 4):
        super().__init__(env)
        self._count("pad", pad, low=0)
        self.shift = (0, 0)  # (dy, dx) of the last frame: content pixel (y, x) moved to (y + dy, x + dx)

    @property
    def pad(self) -> int:
        return self.count("pad")

    def _transform(self, frame):
        p = self.pad
        if p == 0:
            return frame.copy()
        h, w = frame.shape[:2]
        oy, ox = (int(v) for v in self.rng.integers(0, 2 * p + 1, size=2))
        self.shift = (p - oy, p - ox)
        padded = np.pad(frame, ((p, p), (p, p), (0, 0)), mode="edge")
        return padded[oy : oy + h, ox : ox + w].copy()


class MovingPatchWrapper(VisualWrapper):
    """``num_patches`` square patches (side ``size`` of the shorter image side) that move ``speed`` pixels per
    env step in a straight line and bounce off the frame edges. Start, heading and color (if None) are drawn
    per episode."""

    name = "moving_patch"

    def __init__(
        self,
        env: gym.Env,
        num_patches: int | Schedule = 1,
        size: float | Schedule = 0.15,
        speed: float | Schedule = 2.0,
        color=None,
    ):
        super().__init__(env)
        self._count("num_patches", num_patches, low=0)
        self._fractions("size", size)
        self._schedule("speed", speed, low=0.0)
        self.color = self._color("color", color)
        self._coord = np.zeros((0, 2))  # unfolded (y, x): the displayed position reflects it into the frame
        self._heading = np.zeros((0, 2))
        self.side = 1
        self.colors = np.zeros((0, 3), dtype=np.uint8)
        self._limit = np.zeros(2)
        self._last_step = 0

    @property
    def num_patches(self) -> int:
        return self.count("num_patches")

    @property
    def size(self) -> float:
        return self.fractions("size")[0]

    def _on_reset(self, frame):
        h, w = frame.shape[:2]
        n = self.num_patches
        self.side = int(np.clip(round(self.size * min(h, w)), 1, min(h, w)))
        self._limit = np.array([h - self.side, w - self.side], dtype=np.float64)
        self._coord = self.rng.uniform(0, 1, size=(n, 2)) * self._limit
        angle = self.rng.uniform(0, 2 * np.pi, size=n)
        self._heading = np.stack([np.sin(angle), np.cos(angle)], axis=1)
        self.colors = (
            self.rng.integers(0, 256, size=(n, 3)).astype(np.uint8)
            if self.color is None
            else np.tile(self.color, (n, 1))
        )
        self._last_step = self.total_steps

    @property
    def positions(self) -> np.ndarray:
        """(num_patches, 2) top-left (y, x) of each patch in the frame (floats before rounding)."""
        limit = self._limit
        period = np.where(limit > 0, 2 * limit, 1.0)
        folded = np.mod(self._coord, period)
        return np.where(limit > 0, limit - np.abs(folded - limit), 0.0)

    def _transform(self, frame):
        if self.total_steps != self._last_step:  # a step happened: advance
            self._coord = self._coord + self._heading * self.value("speed")
            self._last_step = self.total_steps
        out = frame.copy()
        s = self.side
        for (top, left), color in zip(np.rint(self.positions).astype(np.int64), self.colors):
            out[top : top + s, left : left + s] = color
        return out


class ChromaKeyWrapper(VisualWrapper):
    """Replace every pixel within ``tolerance`` (per channel, L-inf) of ``key_color`` by the matching pixel of
    ``background``: an image (h, w, 3) or a video (T, h, w, 3) uint8, resized to the frame. A video advances
    one frame per env step, starting at a random frame each episode (``random_start``) or at frame 0."""

    name = "chroma_key"

    def __init__(
        self,
        env: gym.Env,
        background,
        key_color=(255, 255, 255),
        tolerance: int | Schedule = 0,
        random_start: bool = True,
    ):
        super().__init__(env)
        bg = np.asarray(background)
        if bg.dtype != np.uint8 or bg.ndim not in (3, 4) or bg.shape[-1] != 3 or 0 in bg.shape:
            raise self._error(
                f"background must be a uint8 image (h, w, 3) or video (T, h, w, 3), got {bg.dtype} {bg.shape}"
            )
        self.background = bg[None] if bg.ndim == 3 else bg
        self.key_color = self._color("key_color", key_color)
        if self.key_color is None:
            raise self._error("key_color must be an RGB triple in [0, 255], got None")
        self._count("tolerance", tolerance, low=0, high=255)
        self.random_start = bool(random_start)
        self.start_frame = 0
        self._resized: dict[tuple[int, int], np.ndarray] = {}

    def _frames_for(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._resized:
            bg = self.background
            self._resized[(h, w)] = (
                bg
                if bg.shape[1:3] == (h, w)
                else np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in bg])
            )
        return self._resized[(h, w)]

    @property
    def tolerance(self) -> int:
        return self.count("tolerance")

    def _on_reset(self, frame):
        n = len(self.background)
        self.start_frame = int(self.rng.integers(0, n)) if self.random_start and n > 1 else 0

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) bool: the key-colored pixels."""
        key, tol = self.key_color.astype(np.int64), self.tolerance
        low, high = np.clip(key - tol, 0, 255), np.clip(key + tol, 0, 255)
        return cv2.inRange(frame, tuple(map(float, low)), tuple(map(float, high))).astype(bool)

    def _transform(self, frame):
        frames = self._frames_for(*frame.shape[:2])
        bg = frames[(self.start_frame + self.episode_steps) % len(frames)]
        out = frame.copy()
        np.copyto(out, bg, where=self.mask(frame)[..., None])
        return out


# --- registry -----------------------------------------------------------------------------------------------

WRAPPERS: dict[str, type[VisualWrapper]] = {
    cls.name: cls
    for cls in (
        NoiseWrapper,
        BlurWrapper,
        ColorJitterWrapper,
        GrayscaleWrapper,
        OcclusionWrapper,
        CutoutWrapper,
        RandomConvWrapper,
        ResolutionWrapper,
        RandomShiftWrapper,
        MovingPatchWrapper,
        ChromaKeyWrapper,
    )
}


def make_wrapper(name: str, env: gym.Env, **kwargs) -> VisualWrapper:
    """Wrap ``env`` with the visual wrapper called ``name`` (one of ``WRAPPERS``)."""
    if name not in WRAPPERS:
        raise ValueError(f"unknown visual wrapper {name!r}; valid names: {sorted(WRAPPERS)}")
    cls = WRAPPERS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "env")]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"visual wrapper {name!r} got unknown parameter(s) {unknown}; valid: {params}")
    return cls(env, **kwargs)


WrapperSpec = str | tuple[str, Mapping[str, Any]] | Mapping[str, Any] | Callable[[gym.Env], gym.Env]


def apply_wrappers(env: gym.Env, specs: Iterable[WrapperSpec]) -> gym.Env:
    """Apply wrappers innermost first. A spec is a name (``"grayscale"``), ``(name, kwargs)``, a dict
    ``{"name": ..., **kwargs}`` or a callable ``env -> env``."""
    for spec in specs:
        if callable(spec):
            env = spec(env)
        elif isinstance(spec, str):
            env = make_wrapper(spec, env)
        elif isinstance(spec, Mapping):
            kwargs = dict(spec)
            if "name" not in kwargs:
                raise ValueError(f"a wrapper spec dict needs a 'name' key, got {spec!r}")
            env = make_wrapper(kwargs.pop("name"), env, **kwargs)
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            env = make_wrapper(spec[0], env, **dict(spec[1]))
        else:
            raise ValueError(
                f"bad wrapper spec {spec!r}: use a name, (name, kwargs), {{'name': ..., **kwargs}} "
                "or a callable"
            )
    return env
