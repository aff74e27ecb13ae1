"""Shared pieces of the classic-control envs: their base class, angle wrapping, state parsing, OpenCV drawing.

Drawing works in world metres mapped to pixels by a ``Canvas`` (origin, metres per image width, y up), with
sub-pixel anti-aliased polygons and discs, so frames are exact functions of the state at any ``image_size``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from swm_core.envs.base import SWMEnv


class ClassicEnv(SWMEnv):
    """Base of the classic-control envs: one action in [-1, 1] (a fraction of the force or torque limit, so the
    action space is the same for every FoV value) and pixels + ``proprio_dim`` proprio observations."""

    proprio_dim = 0
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        if render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.declare_box_spaces(1, self.proprio_dim)

    def sim_state_from_state(self, state: np.ndarray) -> np.ndarray:
        """The classic-control state is the simulator state (angles wrapped, which the dynamics do not see)."""
        return np.asarray(state, np.float64).copy()



class ScriptedExpert:
    """Base of the scripted experts: ``noise`` (std of Gaussian noise added to the normalised actions) drawn from
    a stream seeded by ``seed``; ``noisy(actions)`` adds it and clips to [-1, 1]."""

    def __init__(self, seed: int = 0, noise: float = 0.0):
        if not noise >= 0:
            raise ValueError(f"noise must be a non-negative std, got {noise}")
        self.rng = np.random.default_rng(seed)
        self.noise = float(noise)

    def reset(self, env_ids=None) -> None:
        pass

    def noisy(self, actions: np.ndarray) -> np.ndarray:
        if self.noise > 0:
            actions = actions + self.rng.normal(0.0, self.noise, size=actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def wrap_angle(theta: float) -> float:
    """``theta`` mapped to [-pi, pi)."""
    return (float(theta) + math.pi) % (2 * math.pi) - math.pi


def parse_vector(value, size: int, what: str) -> np.ndarray:
    """``value`` as ``size`` finite float64 numbers, or a ValueError naming the bad value and what is allowed."""
    s = np.asarray(value, dtype=np.float64).ravel()
    if s.shape != (size,) or not np.all(np.isfinite(s)):
        raise ValueError(f"{what} must be {size} finite numbers, got {np.asarray(value)!r}")
    return s


class Canvas:
    """World (metres, y up) to pixel mapping: ``width_m`` metres span the image, ``origin`` = world point of the
    image centre."""

    def __init__(self, image_size: int, width_m: float, origin=(0.0, 0.0)):
        self.n = int(image_size)
        self.scale = self.n / float(width_m)
        self.ox, self.oy = float(origin[0]), float(origin[1])

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Pixel coordinates (pixel centres at integers) of the world point (x, y)."""
        return (self.n / 2 + (x - self.ox) * self.scale - 0.5, self.n / 2 - (y - self.oy) * self.scale - 0.5)

    def blank(self, color) -> np.ndarray:
        """A fresh image filled with ``color`` (a copy of a cached fill: filling each frame costs more)."""
        key = _color(color)
        if getattr(self, "_blank_key", None) != key:
            self._blank = np.empty((self.n, self.n, 3), dtype=np.uint8)
            self._blank[:] = key
            self._blank_key = key
        return self._blank.copy()

    def disc(self, img: np.ndarray, x: float, y: float, radius: float, color) -> None:
        u, v = self.px(x, y)
        r = max(1, int(round(radius * self.scale * _ONE)))
        cv2.circle(img, (int(round(u * _ONE)), int(round(v * _ONE))), r, _color(color), -1, cv2.LINE_AA, _SHIFT)

    def polygon(self, img: np.ndarray, points, color) -> None:
        pts = np.array([[round(c * _ONE) for c in self.px(x, y)] for x, y in points], dtype=np.int32)
        cv2.fillConvexPoly(img, pts, _color(color), cv2.LINE_AA, _SHIFT)

    def polyline(self, img: np.ndarray, points, width: float, color) -> None:
        pts = np.array([[round(c * _ONE) for c in self.px(x, y)] for x, y in points], dtype=np.int32)
        thickness = max(1, int(round(width * self.scale)))
        cv2.polylines(img, [pts], False, _color(color), thickness, cv2.LINE_AA, _SHIFT)

    def bar(self, img: np.ndarray, x0: float, y0: float, x1: float, y1: float, width: float, color,
            round_ends: bool = True) -> None:
        """A bar of ``width`` metres from (x0, y0) to (x1, y1), with round ends when asked."""
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy) or 1e-9
        nx, ny = -dy / length * width / 2, dx / length * width / 2
        self.polygon(img, [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)], color)
        if round_ends:
            self.disc(img, x0, y0, width / 2, color)
            self.disc(img, x1, y1, width / 2, color)

    def rect(self, img: np.ndarray, cx: float, cy: float, w: float, h: float, color) -> None:
        self.polygon(img, [(cx - w / 2, cy - h / 2), (cx - w / 2, cy + h / 2), (cx + w / 2, cy + h / 2),
                           (cx + w / 2, cy - h / 2)], color)


def _color(color) -> tuple[int, int, int]:
    c = np.asarray(color).ravel()
    return int(c[0]), int(c[1]), int(c[2])
