"""Acrobot as a goal-reaching task: swing the tip of the two-link arm up to the goal height (a line in the frame).

Dynamics are gymnasium's Acrobot-v1 ("book" equations, one RK4 step of dt = 0.2 s, angles wrapped to [-pi, pi),
speeds clipped to 4 pi and 9 pi, both moments of inertia 1, centres of mass at half the link lengths) with the
torque on the second joint ``clip(a, -1, 1) * physics.max_torque`` (gymnasium's three actions are a = -1, 0, 1).
theta1 = 0 hangs down; the tip's height above the pivot is ``-l1 cos(theta1) - l2 cos(theta1 + theta2)``.

``state`` = ``sim_state`` = (theta1, theta2, dtheta1, dtheta2); ``proprio`` = (cos, sin of both angles, both
speeds), as gymnasium's observation. The goal is a tip height of ``goal.height`` x (l1 + l2) (gymnasium's line at 1 m
is the default 0.5 x 2 m); the goal state is the straight arm reaching it, at rest. Success: the tip at least as
high as the goal state's tip (gymnasium's termination rule, with the goal's height). Frames: 4.4 m across the image
around the pivot (gymnasium's view), drawn with OpenCV from the state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from swm_core.envs.classic import Canvas, ClassicEnv, ScriptedExpert, parse_vector, wrap_angle
from swm_core.spaces import RGB, Box, VariationSpace

DT = 0.2
MAX_SPEED = (4 * math.pi, 9 * math.pi)
LINK_MOI = 1.0
VIEW_WIDTH = 4.4


def _variation_space() -> VariationSpace:
    return VariationSpace({
        "physics": {
            "link_length_1": Box(0.6, 1.05, default=1.0),
            "link_length_2": Box(0.6, 1.05, default=1.0),
            "link_mass_1": Box(0.5, 2.0, default=1.0),
            "link_mass_2": Box(0.5, 2.0, default=1.0),
            "gravity": Box(4.9, 14.7, default=9.8),
            "max_torque": Box(0.5, 2.0, default=1.0),
        },
        "link": {"color": RGB((0, 204, 204)), "width": Box(0.1, 0.3, default=0.2)},
        "joint": {"color": RGB((204, 204, 0))},
        "line": {"color": RGB((0, 0, 0))},
        "background": {"color": RGB((255, 255, 255))},
        "goal": {"height": Box(0.25, 0.75, default=0.5)},
    })


def derivatives(v: Mapping, s, torque: float) -> np.ndarray:
    """d/dt of (theta1, theta2, dtheta1, dtheta2) under FoV values ``v`` (gymnasium's "book" equations)."""
    m1, m2 = float(v["physics.link_mass_1"]), float(v["physics.link_mass_2"])
    l1 = float(v["physics.link_length_1"])
    lc1, lc2 = l1 / 2, float(v["physics.link_length_2"]) / 2
    g = float(v["physics.gravity"])
    th1, th2, d1_, d2_ = s
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * math.cos(th2)) + 2 * LINK_MOI
    d2 = m2 * (lc2**2 + l1 * lc2 * math.cos(th2)) + LINK_MOI
    phi2 = m2 * lc2 * g * math.cos(th1 + th2 - math.pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * d2_**2 * math.sin(th2) - 2 * m2 * l1 * lc2 * d2_ * d1_ * math.sin(th2)
            + (m1 * lc1 + m2 * l1) * g * math.cos(th1 - math.pi / 2) + phi2)
    dd2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * d1_**2 * math.sin(th2) - phi2)
           / (m2 * lc2**2 + LINK_MOI - d2**2 / d1))
    dd1 = -(d2 * dd2 + phi1) / d1
    return np.array([d1_, d2_, dd1, dd2])


class AcrobotEnv(ClassicEnv):
    """Acrobot. Action Box(-1, 1, (1,)) (fraction of physics.max_torque); state (4,), proprio (6,)."""

    variation_space = _variation_space()
    default_variations = ("goal.height",)
    control_hz = 1 / DT
    proprio_dim = 6
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        super().__init__(image_size=image_size, render_mode=render_mode)
        n = self.image_size
        self._canvas = Canvas(n, VIEW_WIDTH)
        self._s = np.zeros(4)

    # --- reset / dynamics ---------------------------------------------------------------------------------------
    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        self._s = rng.uniform(-0.1, 0.1, size=4)  # as gymnasium

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([math.acos(-float(self.variation["goal.height"])), 0.0, 0.0, 0.0], dtype=np.float32)

    def _step_sim(self, action: np.ndarray) -> None:
        v = self.variation
        torque = min(max(float(action[0]), -1.0), 1.0) * float(v["physics.max_torque"])
        s = self._s
        k1 = derivatives(v, s, torque)
        k2 = derivatives(v, s + DT / 2 * k1, torque)
        k3 = derivatives(v, s + DT / 2 * k2, torque)
        k4 = derivatives(v, s + DT * k3, torque)
        s = s + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        self._s = np.array([wrap_angle(s[0]), wrap_angle(s[1]), min(max(s[2], -MAX_SPEED[0]), MAX_SPEED[0]),
                            min(max(s[3], -MAX_SPEED[1]), MAX_SPEED[1])])

    def tip_height(self, state) -> float:
        v = self.variation
        return (-float(v["physics.link_length_1"]) * math.cos(float(state[0]))
                - float(v["physics.link_length_2"]) * math.cos(float(state[0]) + float(state[1])))

    def _success(self) -> bool:
        return self.tip_height(self._s) >= self.tip_height(self.goal_state) - 1e-6

    def get_state(self) -> np.ndarray:
        return self._s.astype(np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        th1, th2 = float(state[0]), float(state[1])
        return np.array([math.cos(th1), math.sin(th1), math.cos(th2), math.sin(th2), state[2], state[3]], np.float32)

    def get_sim_state(self) -> np.ndarray:
        return self._s.astype(np.float64)

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        self._s = parse_vector(sim_state, 4, "Acrobot sim_state (theta1, theta2, dtheta1, dtheta2)").copy()

    # --- rendering ------------------------------------------------------------------------------------------
    def _render_state(self, state: np.ndarray) -> np.ndarray:
        v, c = self.variation, self._canvas
        img = c.blank(v["background.color"])
        l1, l2 = float(v["physics.link_length_1"]), float(v["physics.link_length_2"])
        h = float(v["goal.height"]) * (l1 + l2)
        c.bar(img, -VIEW_WIDTH, h, VIEW_WIDTH, h, 1.0 / c.scale, v["line.color"], round_ends=False)
        th1, th2 = float(state[0]), float(state[1])
        x1, y1 = l1 * math.sin(th1), -l1 * math.cos(th1)
        x2, y2 = x1 + l2 * math.sin(th1 + th2), y1 - l2 * math.cos(th1 + th2)
        w = float(v["link.width"])
        for (xa, ya), (xb, yb) in (((0.0, 0.0), (x1, y1)), ((x1, y1), (x2, y2))):
            c.bar(img, xa, ya, xb, yb, w, v["link.color"], round_ends=False)
            c.disc(img, xa, ya, w / 2, v["joint.color"])
        return img


# --- scripted expert -----------------------------------------------------------------------------------------
class AcrobotExpert(ScriptedExpert):
    """Energy pumping: full torque along the second joint's speed, which swings the tip higher each pass until it
    crosses the goal line. ``noise``: std of Gaussian noise added to the actions."""

    def __init__(self, seed: int = 0, noise: float = 0.0):
        super().__init__(seed, noise)

    def get_actions(self, infos: Mapping) -> np.ndarray:
        if "state" not in infos:
            raise ValueError("AcrobotExpert needs infos key 'state'")
        s = np.asarray(infos["state"], np.float64)
        actions = np.where(s[:, 3] >= 0, 1.0, -1.0)[:, None]
        return self.noisy(actions)
