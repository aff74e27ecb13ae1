"""CartPole as a goal-reaching task: carry the balanced pole to a target cart position and stop there.

Dynamics are gymnasium's CartPole-v1 (Euler, tau 0.02 s, theta = 0 upright, positive leaning right) with the
force ``F = clip(a, -1, 1) * physics.force_mag - physics.cart_friction * xdot`` (a continuous action; gymnasium's
two actions are a = +-1) and a viscous joint term ``thetaacc -= physics.pole_damping * thetadot``; the pole's
half-length is ``physics.pole_length / 2``. The pole turns freely (no termination: it may fall and hang); the cart
stops at the track ends |x| = 2.4 m (its speed zeroed there).

``state`` = ``proprio`` = (x, xdot, theta wrapped to [-pi, pi), thetadot); ``sim_state`` = (x, xdot, theta,
thetadot) float64. The goal is the cart at ``goal.position`` (sampled in [-1.5, 1.5] m, at least 0.5 m from the
start) with the pole upright and everything still. Success: ``|x - goal x| < 0.1``, ``|xdot - goal xdot| < 0.3``,
``|wrap(theta - goal theta)| < 0.1``, ``|thetadot - goal thetadot| < 0.5``. Frames: 4.8 m across the image (the
track's length, as gymnasium's), the track a third up from the bottom, drawn with OpenCV from the state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from swm_core.envs.classic import Canvas, ClassicEnv, ScriptedExpert, parse_vector, wrap_angle
from swm_core.spaces import RGB, Box, VariationSpace

TAU = 0.02
X_LIMIT = 2.4
TOLERANCES = (0.1, 0.3, 0.1, 0.5)  # |x|, |xdot|, |theta|, |thetadot| errors allowed for success
MIN_START_DISTANCE = 0.5
VIEW_WIDTH = 4.8


def _variation_space() -> VariationSpace:
    return VariationSpace({
        "physics": {
            "gravity": Box(4.9, 14.7, default=9.8),
            "cart_mass": Box(0.5, 2.0, default=1.0),
            "pole_mass": Box(0.05, 0.5, default=0.1),
            "pole_length": Box(0.5, 2.0, default=1.0),
            "force_mag": Box(5.0, 20.0, default=10.0),
            "cart_friction": Box(0.0, 1.0, default=0.0),
            "pole_damping": Box(0.0, 1.0, default=0.0),
        },
        "cart": {"color": RGB((0, 0, 0)), "width": Box(0.2, 0.6, default=0.4), "height": Box(0.12, 0.36, default=0.24)},
        "pole": {"color": RGB((202, 152, 101)), "width": Box(0.04, 0.16, default=0.08)},
        "axle": {"color": RGB((129, 132, 203))},
        "track": {"color": RGB((0, 0, 0))},
        "background": {"color": RGB((255, 255, 255))},
        "goal": {"position": Box(-1.5, 1.5, default=0.0)},
    })


def accelerations(v: Mapping, s, force: float) -> tuple[float, float]:
    """(xacc, thetaacc) at state ``s`` = (x, xdot, theta, thetadot) under FoV values ``v`` and cart ``force``."""
    g, mc, mp = float(v["physics.gravity"]), float(v["physics.cart_mass"]), float(v["physics.pole_mass"])
    half = float(v["physics.pole_length"]) / 2
    total = mc + mp
    sin, cos = math.sin(s[2]), math.cos(s[2])
    temp = (force + mp * half * s[3] ** 2 * sin) / total
    thetaacc = (g * sin - cos * temp) / (half * (4.0 / 3.0 - mp * cos**2 / total))
    xacc = temp - mp * half * thetaacc * cos / total
    return xacc, thetaacc - float(v["physics.pole_damping"]) * s[3]


class CartPoleEnv(ClassicEnv):
    """CartPole. Action Box(-1, 1, (1,)) (fraction of physics.force_mag); state = proprio (4,)."""

    variation_space = _variation_space()
    default_variations = ("goal.position",)
    control_hz = 1 / TAU
    proprio_dim = 4
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        super().__init__(image_size=image_size, render_mode=render_mode)
        n = self.image_size
        self._canvas = Canvas(n, VIEW_WIDTH, origin=(0.0, VIEW_WIDTH / 2 - VIEW_WIDTH / 3))
        self._s = [0.0, 0.0, 0.0, 0.0]
        self._static = self._draw_static()

    # --- reset / dynamics ---------------------------------------------------------------------------------------
    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        """Start as gymnasium (every coordinate in [-0.05, 0.05]) but with the cart uniform in [-1.5, 1.5] m, at
        least ``MIN_START_DISTANCE`` from the goal position."""
        goal = float(self.variation["goal.position"])
        x = goal
        while abs(x - goal) < MIN_START_DISTANCE:
            x = float(rng.uniform(-1.5, 1.5))
        self._s = [x, *(float(u) for u in rng.uniform(-0.05, 0.05, 3))]
        self._static = self._draw_static()

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([float(self.variation["goal.position"]), 0.0, 0.0, 0.0], dtype=np.float32)

    def _step_sim(self, action: np.ndarray) -> None:
        v, s = self.variation, self._s
        force = min(max(float(action[0]), -1.0), 1.0) * float(v["physics.force_mag"])
        force -= float(v["physics.cart_friction"]) * s[1]
        xacc, thetaacc = accelerations(v, s, force)
        x, xdot = s[0] + TAU * s[1], s[1] + TAU * xacc
        if abs(x) > X_LIMIT:
            x, xdot = math.copysign(X_LIMIT, x), 0.0
        self._s = [x, xdot, s[2] + TAU * s[3], s[3] + TAU * thetaacc]

    def _success(self) -> bool:
        return self.is_success(self.get_state(), self.goal_state)

    @staticmethod
    def is_success(state, goal_state) -> bool:
        err = [float(a) - float(b) for a, b in zip(state, goal_state)]
        err[2] = wrap_angle(err[2])
        return all(abs(e) < tol for e, tol in zip(err, TOLERANCES))

    def get_state(self) -> np.ndarray:
        s = self._s
        return np.array([s[0], s[1], wrap_angle(s[2]), s[3]], dtype=np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(state, dtype=np.float32).copy()

    def get_sim_state(self) -> np.ndarray:
        return np.array(self._s, dtype=np.float64)

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        s = parse_vector(sim_state, 4, "CartPole sim_state (x, xdot, theta, thetadot)")
        self._s = [float(min(max(s[0], -X_LIMIT), X_LIMIT)), *(float(u) for u in s[1:])]

    # --- rendering ------------------------------------------------------------------------------------------
    def _draw_static(self) -> np.ndarray:
        """Background and track: fixed for an episode (drawn again at each reset)."""
        v, c = self.variation, self._canvas
        img = c.blank(v["background.color"])
        half_view = VIEW_WIDTH / 2
        c.bar(img, -half_view - 1, 0.0, half_view + 1, 0.0, 1.0 / c.scale, v["track.color"], round_ends=False)
        return img

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        v, c = self.variation, self._canvas
        img = self._static.copy()
        x, th = float(state[0]), float(state[2])
        cart_h = float(v["cart.height"])
        c.rect(img, x, 0.0, float(v["cart.width"]), cart_h, v["cart.color"])
        ax, ay = x, cart_h / 4  # the axle, a quarter of the cart's height above its centre (as gymnasium)
        w, length = float(v["pole.width"]), float(v["physics.pole_length"])
        dx, dy = math.sin(th), math.cos(th)
        c.bar(img, ax - dx * w / 2, ay - dy * w / 2, ax + dx * (length - w / 2), ay + dy * (length - w / 2), w,
              v["pole.color"], round_ends=False)
        c.disc(img, ax, ay, w / 2, v["axle.color"])
        return img


# --- scripted expert -----------------------------------------------------------------------------------------
_FOV_KEYS = ("physics.gravity", "physics.cart_mass", "physics.pole_mass", "physics.pole_length",
             "physics.force_mag", "physics.cart_friction", "physics.pole_damping")


def lqr_gain(v: Mapping, q=(10.0, 1.0, 10.0, 1.0), r: float = 0.01, iterations: int = 400) -> np.ndarray:
    """The discrete LQR gain (1, 4) of the Euler-discretised dynamics linearised upright, in force units."""
    eps = 1e-5
    a_c = np.zeros((4, 4))
    a_c[0, 1] = a_c[2, 3] = 1.0
    b_c = np.array(accelerations(v, [0.0] * 4, 1.0))  # response to a unit force (linear in the force)
    for j in range(4):
        d = [0.0] * 4
        d[j] = eps
        a_c[[1, 3], j] = np.array(accelerations(v, d, 0.0)) / eps
    a_c[[1, 3], 1] -= float(v["physics.cart_friction"]) * b_c  # friction is a force -c xdot
    a_d = np.eye(4) + TAU * a_c
    b_d = np.zeros((4, 1))
    b_d[[1, 3], 0] = TAU * b_c
    qm, p = np.diag(q), np.diag(q)
    for _ in range(iterations):
        k = np.linalg.solve(r + b_d.T @ p @ b_d, b_d.T @ p @ a_d)
        p = qm + a_d.T @ p @ (a_d - b_d @ k)
    return k


class CartPoleExpert(ScriptedExpert):
    """LQR toward the goal (gain recomputed for each episode's FoV values), position error clipped to
    ``max_offset`` metres so the cart never pushes hard enough to drop the pole. ``noise``: std of Gaussian noise
    added to the normalised actions."""

    def __init__(self, seed: int = 0, noise: float = 0.0, max_offset: float = 1.0):
        super().__init__(seed, noise)
        self.max_offset = float(max_offset)
        self._gains: dict[tuple, np.ndarray] = {}

    def get_actions(self, infos: Mapping) -> np.ndarray:
        keys = ["state", "goal_state", *("variation." + k for k in _FOV_KEYS)]
        missing = [k for k in keys if k not in infos]
        if missing:
            raise ValueError(f"CartPoleExpert needs infos keys {missing} (World exposes FoV as 'variation.<key>')")
        s, goal = np.asarray(infos["state"], np.float64), np.asarray(infos["goal_state"], np.float64)
        actions = np.zeros((len(s), 1))
        for i in range(len(s)):
            fov = tuple(float(np.asarray(infos["variation." + k][i])) for k in _FOV_KEYS)
            if fov[4] <= 0:  # a World slot that holds no episode (all values 0): nothing to control
                continue
            if fov not in self._gains:
                self._gains[fov] = lqr_gain(dict(zip(_FOV_KEYS, fov)))
            err = s[i] - goal[i]
            err[0] = np.clip(err[0], -self.max_offset, self.max_offset)
            err[2] = wrap_angle(err[2])
            actions[i, 0] = -(self._gains[fov] @ err)[0] / fov[4]
        return self.noisy(actions)
