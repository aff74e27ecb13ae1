"""MountainCar as a goal-reaching task: drive the under-powered car to a flagged position on the track.

Dynamics are gymnasium's MountainCarContinuous-v0: ``v += clip(a, -1, 1) * physics.power - physics.gravity *
cos(3 x)``, ``v`` clipped to ``physics.max_speed``, ``x += v``, ``x`` clipped to [-1.2, 0.6] with the speed zeroed
against the left wall. The track's height is ``0.45 sin(3 x) + 0.55``.

``state`` = ``proprio`` = ``sim_state`` = (x, v) (float32; float64 for sim_state). The goal is the car at
``goal.position`` (sampled in [-1.1, 0.55], at least 0.3 from the start, which is uniform in [-0.6, -0.4] at rest
as gymnasium's), marked by a flag drawn in every frame. Success: ``|x - goal x| < 0.05`` (reaching the flag, at any
speed: the car cannot stop on most slopes). Frames: the track's 1.8 units across the image, drawn with OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from swm_core.envs.classic import Canvas, ClassicEnv, ScriptedExpert, parse_vector
from swm_core.spaces import RGB, Box, VariationSpace

X_MIN, X_MAX = -1.2, 0.6
POSITION_TOLERANCE = 0.05
MIN_START_DISTANCE = 0.3
CLEARANCE = 0.03  # the car body floats this far above the track, as in gymnasium's drawing
FLAG_HEIGHT = 0.15


def height(x):
    return np.sin(3 * np.asarray(x, dtype=np.float64)) * 0.45 + 0.55


def _variation_space() -> VariationSpace:
    return VariationSpace({
        "physics": {
            "power": Box(0.001, 0.002, default=0.0015),
            "gravity": Box(0.0015, 0.0035, default=0.0025),
            "max_speed": Box(0.05, 0.09, default=0.07),
        },
        "car": {"color": RGB((0, 0, 0)), "width": Box(0.08, 0.16, default=0.12), "height": Box(0.04, 0.08, default=0.06)},
        "wheel": {"color": RGB((128, 128, 128))},
        "track": {"color": RGB((0, 0, 0)), "width": Box(0.005, 0.03, default=0.01)},
        "flag": {"color": RGB((204, 204, 0))},
        "background": {"color": RGB((255, 255, 255))},
        "goal": {"position": Box(-1.1, 0.55, default=0.45)},
    })


class MountainCarEnv(ClassicEnv):
    """MountainCar. Action Box(-1, 1, (1,)) (fraction of physics.power); state = proprio (2,)."""

    variation_space = _variation_space()
    default_variations = ("goal.position",)
    control_hz = 30.0
    proprio_dim = 2
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        super().__init__(image_size=image_size, render_mode=render_mode)
        n = self.image_size
        self._canvas = Canvas(n, X_MAX - X_MIN, origin=((X_MIN + X_MAX) / 2, (X_MAX - X_MIN) / 2))
        xs = np.linspace(X_MIN, X_MAX, 100)
        self._track = list(zip(xs.tolist(), height(xs).tolist()))
        self._x, self._v = -0.5, 0.0
        self._static = self._draw_static()

    # --- reset / dynamics ---------------------------------------------------------------------------------------
    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        self._x, self._v = float(rng.uniform(-0.6, -0.4)), 0.0
        v = self.variation
        sampled = set(self.variation_space.sampled_keys(self.default_variations, options))
        if "goal.position" in sampled and "goal.position" not in (options.get("variation_values") or {}):
            while abs(float(v["goal.position"]) - self._x) < MIN_START_DISTANCE:
                v["goal.position"] = self.variation_space["goal.position"].sample(rng)
        self._static = self._draw_static()

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([float(self.variation["goal.position"]), 0.0], dtype=np.float32)

    def _step_sim(self, action: np.ndarray) -> None:
        v = self.variation
        force = min(max(float(action[0]), -1.0), 1.0)
        max_speed = float(v["physics.max_speed"])
        speed = self._v + force * float(v["physics.power"]) - float(v["physics.gravity"]) * math.cos(3 * self._x)
        speed = min(max(speed, -max_speed), max_speed)
        x = min(max(self._x + speed, X_MIN), X_MAX)
        if x == X_MIN and speed < 0:
            speed = 0.0
        self._x, self._v = x, speed

    def _success(self) -> bool:
        return self.is_success(self.get_state(), self.goal_state)

    @staticmethod
    def is_success(state, goal_state) -> bool:
        return abs(float(state[0]) - float(goal_state[0])) < POSITION_TOLERANCE

    def get_state(self) -> np.ndarray:
        return np.array([self._x, self._v], dtype=np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(state, dtype=np.float32).copy()

    def get_sim_state(self) -> np.ndarray:
        return np.array([self._x, self._v], dtype=np.float64)

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        x, speed = parse_vector(sim_state, 2, "MountainCar sim_state (x, v)")
        self._x, self._v = float(min(max(x, X_MIN), X_MAX)), float(speed)

    # --- rendering ------------------------------------------------------------------------------------------
    def _draw_static(self) -> np.ndarray:
        """Background, track and flag: fixed for an episode (drawn again at each reset)."""
        v, c = self.variation, self._canvas
        img = c.blank(v["background.color"])
        tw = float(v["track.width"])
        c.polyline(img, self._track, tw, v["track.color"])
        gx = float(v["goal.position"])
        gy = float(height(gx))
        c.bar(img, gx, gy, gx, gy + FLAG_HEIGHT, tw, v["track.color"], round_ends=False)
        c.polygon(img, [(gx, gy + FLAG_HEIGHT), (gx, gy + FLAG_HEIGHT - 0.03), (gx + 0.075, gy + FLAG_HEIGHT - 0.015)],
                  v["flag.color"])
        return img

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        v, c = self.variation, self._canvas
        img = self._static.copy()
        x = float(state[0])
        ang = math.cos(3 * x)  # gymnasium tilts the car by cos(3 x) radians
        ca, sa = math.cos(ang), math.sin(ang)
        bx, by = x, float(height(x)) + CLEARANCE

        def at(u, w):  # car-frame point (along, up) -> world
            return bx + u * ca - w * sa, by + u * sa + w * ca

        cw, ch = float(v["car.width"]), float(v["car.height"])
        c.polygon(img, [at(-cw / 2, 0), at(-cw / 2, ch), at(cw / 2, ch), at(cw / 2, 0)], v["car.color"])
        for u in (cw / 4, -cw / 4):
            c.disc(img, *at(u, 0), ch / 2.5, v["wheel.color"])
        return img


# --- scripted expert -----------------------------------------------------------------------------------------
class MountainCarExpert(ScriptedExpert):
    """Energy pumping: push along the velocity (toward the goal when at rest), which swings the car ever higher
    until it passes the flag. ``noise``: std of Gaussian noise added to the actions."""

    def __init__(self, seed: int = 0, noise: float = 0.0):
        super().__init__(seed, noise)

    def get_actions(self, infos: Mapping) -> np.ndarray:
        missing = [k for k in ("state", "goal_state") if k not in infos]
        if missing:
            raise ValueError(f"MountainCarExpert needs infos keys {missing}")
        s, goal = np.asarray(infos["state"], np.float64), np.asarray(infos["goal_state"], np.float64)
        toward = np.sign(goal[:, 0] - s[:, 0])
        actions = np.where(np.abs(s[:, 1]) > 1e-9, np.sign(s[:, 1]), toward)[:, None]
        return self.noisy(actions)
