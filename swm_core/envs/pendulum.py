"""Pendulum as a goal-reaching task: swing the pole to a target angle and hold it there (still).

Dynamics are gymnasium's Pendulum-v1 (semi-implicit Euler, dt 0.05 s, theta = 0 upright, counter-clockwise
positive): ``thdot += (3 g / (2 l) sin(th) + 3 / (m l^2) (u - b thdot)) dt``, ``thdot`` clipped to
``physics.max_speed``, ``th += thdot dt``, with the torque ``u = clip(a, -1, 1) * physics.max_torque`` (actions are
normalised so one action space serves every FoV value) and ``b = physics.damping`` (0 in gymnasium).

``state`` = (theta wrapped to [-pi, pi), thdot); ``proprio`` = (cos theta, sin theta, thdot); ``sim_state`` =
(theta, thdot) float64. The goal is ``goal.angle`` (sampled in [-0.3, 0.3] rad by default, moved inside what
``physics.max_torque`` can hold against gravity) at rest. Success: ``|wrap(theta - goal theta)| < 0.1`` rad and
``|thdot - goal thdot| < 0.5`` rad/s. Frames: the pole from the pivot at the image centre, 4.4 m across the image
(gymnasium's 2 x 2.2 bound), drawn with OpenCV from the state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from swm_core.envs.classic import Canvas, ClassicEnv, ScriptedExpert, parse_vector, wrap_angle
from swm_core.spaces import RGB, Box, VariationSpace

DT = 0.05
ANGLE_TOLERANCE = 0.1
SPEED_TOLERANCE = 0.5
HOLDABLE = 0.8  # sampled goals need at most this fraction of the torque limit to hold
VIEW_WIDTH = 4.4


def _variation_space() -> VariationSpace:
    return VariationSpace({
        "physics": {
            "gravity": Box(5.0, 15.0, default=10.0),
            "mass": Box(0.5, 2.0, default=1.0),
            "length": Box(0.5, 1.5, default=1.0),
            "damping": Box(0.0, 0.2, default=0.0),
            "max_torque": Box(1.0, 3.0, default=2.0),
            "max_speed": Box(6.0, 12.0, default=8.0),
        },
        "pole": {"color": RGB((204, 77, 77)), "width": Box(0.1, 0.4, default=0.2)},
        "pivot": {"color": RGB((0, 0, 0)), "radius": Box(0.02, 0.1, default=0.05)},
        "background": {"color": RGB((255, 255, 255))},
        "goal": {"angle": Box(-0.3, 0.3, default=0.0)},
    })


def holding_torque(v: Mapping, theta: float) -> float:
    """The torque that keeps the pole still at ``theta`` under the FoV values ``v``."""
    return -float(v["physics.mass"]) * float(v["physics.gravity"]) * float(v["physics.length"]) / 2 * math.sin(theta)


class PendulumEnv(ClassicEnv):
    """Pendulum. Action Box(-1, 1, (1,)) (fraction of the torque limit); state (2,), proprio (3,)."""

    variation_space = _variation_space()
    default_variations = ("goal.angle",)
    control_hz = 1 / DT
    proprio_dim = 3
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        super().__init__(image_size=image_size, render_mode=render_mode)
        n = self.image_size
        self._canvas = Canvas(n, VIEW_WIDTH)
        self._th, self._thdot = math.pi, 0.0

    # --- reset / dynamics ---------------------------------------------------------------------------------------
    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        """Start anywhere (theta uniform in [-pi, pi], thdot in [-1, 1], as gymnasium); a sampled goal angle the
        torque limit cannot hold is moved to the nearest one it can (and recorded so)."""
        v = self.variation
        sampled = set(self.variation_space.sampled_keys(self.default_variations, options))
        if "goal.angle" in sampled and "goal.angle" not in (options.get("variation_values") or {}):
            ratio = HOLDABLE * float(v["physics.max_torque"]) / abs(holding_torque(v, math.pi / 2))
            limit = math.asin(min(1.0, ratio))
            v["goal.angle"] = np.float32(np.clip(float(v["goal.angle"]), -limit, limit))
        self._th = float(rng.uniform(-math.pi, math.pi))
        self._thdot = float(rng.uniform(-1.0, 1.0))

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([float(self.variation["goal.angle"]), 0.0], dtype=np.float32)

    def _step_sim(self, action: np.ndarray) -> None:
        v = self.variation
        g, m, length = float(v["physics.gravity"]), float(v["physics.mass"]), float(v["physics.length"])
        u = min(max(float(action[0]), -1.0), 1.0) * float(v["physics.max_torque"])
        acc = 3 * g / (2 * length) * math.sin(self._th) + 3.0 / (m * length**2) * (u - float(v["physics.damping"])
                                                                                  * self._thdot)
        max_speed = float(v["physics.max_speed"])
        self._thdot = min(max(self._thdot + acc * DT, -max_speed), max_speed)
        self._th = self._th + self._thdot * DT

    def _success(self) -> bool:
        return self.is_success(self.get_state(), self.goal_state)

    @staticmethod
    def is_success(state, goal_state) -> bool:
        """Within ``ANGLE_TOLERANCE`` of the goal angle and ``SPEED_TOLERANCE`` of its angular speed."""
        return (abs(wrap_angle(float(state[0]) - float(goal_state[0]))) < ANGLE_TOLERANCE
                and abs(float(state[1]) - float(goal_state[1])) < SPEED_TOLERANCE)

    def get_state(self) -> np.ndarray:
        return np.array([wrap_angle(self._th), self._thdot], dtype=np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        th = float(state[0])
        return np.array([math.cos(th), math.sin(th), float(state[1])], dtype=np.float32)

    def get_sim_state(self) -> np.ndarray:
        return np.array([self._th, self._thdot], dtype=np.float64)

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        self._th, self._thdot = (float(s) for s in parse_vector(sim_state, 2, "Pendulum sim_state (theta, thdot)"))

    # --- rendering ------------------------------------------------------------------------------------------
    def _render_state(self, state: np.ndarray) -> np.ndarray:
        v, c = self.variation, self._canvas
        img = c.blank(v["background.color"])
        th, length = float(state[0]), float(v["physics.length"])
        c.bar(img, 0.0, 0.0, -length * math.sin(th), length * math.cos(th), float(v["pole.width"]), v["pole.color"])
        c.disc(img, 0.0, 0.0, float(v["pivot.radius"]), v["pivot.color"])
        return img


# --- scripted expert -----------------------------------------------------------------------------------------
_EXPERT_KEYS = ("state", "goal_state", "variation.physics.gravity", "variation.physics.mass",
                "variation.physics.length", "variation.physics.damping", "variation.physics.max_torque")


class PendulumExpert(ScriptedExpert):
    """Energy-pumping swing-up, then a PD controller with gravity compensation near the goal.

    Far from the goal the torque pushes the energy ``thdot^2 / 2 + a cos(theta)`` (``a = 3 g / 2 l``) toward the
    goal's; within ``catch_angle`` of the goal it commands ``thddot = -kp e - kd (thdot - goal thdot)`` through the
    model (exact for these dynamics). ``noise``: std of Gaussian noise added to the normalised actions."""

    def __init__(self, seed: int = 0, noise: float = 0.0, kp: float = 30.0, kd: float = 8.0,
                 pump_gain: float = 0.5, catch_angle: float = 0.6):
        super().__init__(seed, noise)
        self.kp, self.kd = float(kp), float(kd)
        self.pump_gain, self.catch_angle = float(pump_gain), float(catch_angle)

    def get_actions(self, infos: Mapping) -> np.ndarray:
        missing = [k for k in _EXPERT_KEYS if k not in infos]
        if missing:
            raise ValueError(f"PendulumExpert needs infos keys {missing} (World exposes FoV as 'variation.<key>')")
        s, goal = np.asarray(infos["state"], np.float64), np.asarray(infos["goal_state"], np.float64)
        g, m, length, b, tmax = (np.asarray(infos[k], np.float64).reshape(-1) for k in _EXPERT_KEYS[2:])
        a = 3 * g / (2 * length)
        inertia = m * length**2 / 3
        err = (s[:, 0] - goal[:, 0] + np.pi) % (2 * np.pi) - np.pi
        pd_acc = -self.kp * err - self.kd * (s[:, 1] - goal[:, 1])
        pd_torque = inertia * (pd_acc - a * np.sin(s[:, 0])) + b * s[:, 1]
        energy = s[:, 1] ** 2 / 2 + a * np.cos(s[:, 0])
        target = goal[:, 1] ** 2 / 2 + a * np.cos(goal[:, 0])
        pump = self.pump_gain * (target - energy) * np.sign(s[:, 1] + 1e-6) * tmax + b * s[:, 1]
        torque = np.where(np.abs(err) < self.catch_angle, pd_torque, pump)
        actions = (torque / tmax)[:, None]
        return self.noisy(actions)
