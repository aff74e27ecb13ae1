"""DMC Reacher as a goal-reaching task: move the two-link planar arm's fingertip onto the target.

Physics is MuJoCo with the model of dm_control's ``reacher`` domain rebuilt from the FoV values (two hinge joints
about z, the wrist limited to +-160 deg, capsule links 1 cm thick, a 1 cm fingertip sphere, joint damping, motors
with ``ctrl`` in [-1, 1] times ``physics.max_torque`` (dm_control's gear 0.05), contacts off, one 0.02 s step per
action). Under the default FoV values it is dm_control's model. Episodes start as dm_control's do: the shoulder
uniform in [-pi, pi], the wrist uniform in its range, at rest, the target at a uniform angle and a radius uniform
in [0.05, 0.20] m (narrowed to what the FoV link lengths reach comfortably).

``state`` = (shoulder wrapped to [-pi, pi), wrist, their speeds, target x, y); ``proprio`` = (cos, sin of both
joints, their speeds); ``sim_state`` = (qpos, qvel, target x, y, MuJoCo's ``qacc_warmstart``) float64, 8 numbers.
The goal state is the arm at rest with its fingertip on the target (inverse kinematics, elbow on the side of the
start's wrist angle). Success is dm_control's reward rule: the fingertip's centre within ``target.size`` + the
fingertip radius of the target's centre.

Frames are drawn with OpenCV from the state as seen by dm_control's ``fixed`` camera (0.75 m above the origin,
looking down, 45 deg field of view): x right, y up, bodies 1 cm above the floor enlarged by that camera's
perspective. MuJoCo is needed (``pip install -e '.[mujoco]'``); no OpenGL context is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from swm_core.envs.base import SWMEnv
from swm_core.envs.classic import Canvas, ScriptedExpert, parse_vector, wrap_angle
from swm_core.spaces import RGB, Box, VariationSpace

DT = 0.02
WRIST_LIMIT = math.radians(160.0)
LINK_RADIUS = 0.01
FINGER_RADIUS = 0.01
ROOT_RADIUS = 0.011
FINGER_MASS = 1000.0 * 4.0 / 3.0 * math.pi * FINGER_RADIUS**3  # MuJoCo's default density
ARENA_HALF = 0.3  # the walls' planes
CAMERA_HEIGHT = 0.75
VIEW_WIDTH = 2 * CAMERA_HEIGHT * math.tan(math.radians(22.5))  # floor width seen by the fixed camera
ARM_SCALE = CAMERA_HEIGHT / (CAMERA_HEIGHT - 0.01)  # perspective enlargement of bodies 1 cm above the floor
ROOT_SCALE = CAMERA_HEIGHT / (CAMERA_HEIGHT - 0.02)  # the root cylinder's top face
TARGET_RADII = (0.05, 0.20)
AA_GROWTH = 0.5  # pixels: OpenCV's anti-aliased fills cover about this much beyond their nominal edge


def capsule_mass(length: float, density: float = 1000.0) -> float:
    """Mass of a capsule of ``length`` between its end centres and radius ``LINK_RADIUS`` (MuJoCo's default
    density): what dm_control's model gets from its geometry."""
    return density * math.pi * LINK_RADIUS**2 * (length + 4.0 / 3.0 * LINK_RADIUS)


def _variation_space() -> VariationSpace:
    return VariationSpace({
        "physics": {
            "arm_length": Box(0.08, 0.16, default=0.12),
            "hand_length": Box(0.08, 0.16, default=0.12),
            "arm_mass": Box(0.02, 0.08, default=capsule_mass(0.12)),
            "hand_mass": Box(0.018, 0.072, default=capsule_mass(0.10)),
            "damping": Box(0.0, 0.04, default=0.01),
            "max_torque": Box(0.025, 0.1, default=0.05),
        },
        "target": {"size": Box(0.015, 0.05, default=0.05), "color": RGB((220, 100, 100))},
        "arm": {"color": RGB((235, 205, 140))},
        "finger": {"color": RGB((240, 140, 60))},
        "root": {"color": RGB((120, 190, 230))},
        "floor": {"color": RGB((38, 77, 114))},
        "wall": {"color": RGB((41, 68, 94))},
    })


def load_mujoco():
    """The ``mujoco`` module, or a ValueError saying how to install it."""
    try:
        import mujoco
    except ImportError as err:
        raise ValueError(f"swm/Reacher-v1 needs MuJoCo, which is not installed ({err}): "
                         "pip install -e '.[mujoco]'") from None
    return mujoco


def model_xml(v: Mapping) -> str:
    """The MJCF of dm_control's reacher arm with the physics FoV values ``v`` (the target is drawn, not simulated:
    with contacts off it does not touch the dynamics)."""
    l1, l2 = float(v["physics.arm_length"]), float(v["physics.hand_length"])
    return f"""<mujoco model="swm reacher">
  <option timestep="{DT!r}"><flag contact="disable"/></option>
  <default>
    <joint type="hinge" axis="0 0 1" damping="{float(v['physics.damping'])!r}"/>
    <motor gear="{float(v['physics.max_torque'])!r}" ctrlrange="-1 1" ctrllimited="true"/>
  </default>
  <worldbody>
    <body name="arm" pos="0 0 .01">
      <geom name="arm" type="capsule" fromto="0 0 0 {l1!r} 0 0" size="{LINK_RADIUS}"
            mass="{float(v['physics.arm_mass'])!r}"/>
      <joint name="shoulder"/>
      <body name="hand" pos="{l1!r} 0 0">
        <geom name="hand" type="capsule" fromto="0 0 0 {l2 - 0.02!r} 0 0" size="{LINK_RADIUS}"
              mass="{float(v['physics.hand_mass'])!r}"/>
        <joint name="wrist" limited="true" range="-160 160"/>
        <body name="finger" pos="{l2!r} 0 0"><geom name="finger" type="sphere" size="{FINGER_RADIUS}"/></body>
      </body>
    </body>
  </worldbody>
  <actuator><motor name="shoulder" joint="shoulder"/><motor name="wrist" joint="wrist"/></actuator>
</mujoco>"""


def fingertip(state, arm_length: float, hand_length: float) -> tuple[float, float]:
    """World (x, y) of the fingertip's centre for the joint angles ``state[:2]``."""
    q1, q12 = float(state[0]), float(state[0]) + float(state[1])
    return (arm_length * math.cos(q1) + hand_length * math.cos(q12),
            arm_length * math.sin(q1) + hand_length * math.sin(q12))


def reach_angles(x: float, y: float, arm_length: float, hand_length: float, elbow: float = 1.0):
    """Joint angles (shoulder, wrist) putting the fingertip at (x, y) (clamped to the reachable annulus and the
    wrist's range); ``elbow`` > 0 picks the positive-wrist solution."""
    r2 = x * x + y * y
    cos_wrist = (r2 - arm_length**2 - hand_length**2) / (2 * arm_length * hand_length)
    wrist = math.copysign(min(math.acos(min(max(cos_wrist, -1.0), 1.0)), WRIST_LIMIT), elbow)
    shoulder = math.atan2(y, x) - math.atan2(hand_length * math.sin(wrist), arm_length + hand_length * math.cos(wrist))
    return wrap_angle(shoulder), wrist


def target_radii(arm_length: float, hand_length: float) -> tuple[float, float]:
    """The range of target radii sampled: dm_control's [0.05, 0.20] m, kept inside what the arm reaches with
    margin (its nearest reach with the wrist at its limit x 1.2, its farthest x 0.85)."""
    nearest = math.sqrt(arm_length**2 + hand_length**2 + 2 * arm_length * hand_length * math.cos(WRIST_LIMIT))
    return max(TARGET_RADII[0], 1.2 * nearest), min(TARGET_RADII[1], 0.85 * (arm_length + hand_length))


class ReacherEnv(SWMEnv):
    """DMC Reacher. Action Box(-1, 1, (2,)) (fractions of the torque limit); state (6,), proprio (6,)."""

    variation_space = _variation_space()
    default_variations = ()
    control_hz = 1 / DT
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        if render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self._mj = load_mujoco()
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.declare_box_spaces(2, 6)
        n = self.image_size
        self._canvas = Canvas(n, VIEW_WIDTH)
        self._models: dict[str, object] = {}  # compiled models by MJCF text (FoV values repeat across episodes)
        self.model = self.data = None
        self._target = np.zeros(2)
        self._build(self.variation)
        self._prepare_drawing()

    def _build(self, v: Mapping) -> None:
        xml = model_xml(v)
        if xml not in self._models:
            if len(self._models) > 64:
                self._models.clear()
            self._models[xml] = self._mj.MjModel.from_xml_string(xml)
        if self.model is not self._models[xml]:
            self.model = self._models[xml]
            self.data = self._mj.MjData(self.model)
        self._mj.mj_resetData(self.model, self.data)

    # --- reset / dynamics ---------------------------------------------------------------------------------------
    def _lengths(self, v: Mapping | None = None) -> tuple[float, float]:
        v = self.variation if v is None else v
        return float(v["physics.arm_length"]), float(v["physics.hand_length"])

    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        """Compile the arm for the FoV values; shoulder, wrist, target angle and radius drawn as dm_control does."""
        self._build(self.variation)
        self._prepare_drawing()
        self.data.qpos[:] = (rng.uniform(-math.pi, math.pi), rng.uniform(-WRIST_LIMIT, WRIST_LIMIT))
        angle = rng.uniform(0.0, 2 * math.pi)
        radius = rng.uniform(*target_radii(*self._lengths()))
        self._target = np.array([radius * math.sin(angle), radius * math.cos(angle)])

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        tx, ty = (float(t) for t in self._target)
        elbow = 1.0 if self.data.qpos[1] >= 0 else -1.0
        q1, q2 = reach_angles(tx, ty, *self._lengths(), elbow=elbow)
        return np.array([q1, q2, 0.0, 0.0, tx, ty], dtype=np.float32)

    def _step_sim(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = np.clip(action, -1.0, 1.0)
        self._mj.mj_step(self.model, self.data)

    def _success(self) -> bool:
        return self.is_success(self.get_sim_state()[:6], self.variation)

    @staticmethod
    def is_success(state, variation: Mapping) -> bool:
        """The fingertip's centre within ``target.size`` + ``FINGER_RADIUS`` of the target's centre (``state``:
        shoulder, wrist, ..., target x, y at indices 4, 5)."""
        fx, fy = fingertip(state, float(variation["physics.arm_length"]), float(variation["physics.hand_length"]))
        dist = math.hypot(fx - float(state[4]), fy - float(state[5]))
        return dist <= float(variation["target.size"]) + FINGER_RADIUS

    def get_state(self) -> np.ndarray:
        q, qd = self.data.qpos, self.data.qvel
        return np.array([wrap_angle(q[0]), q[1], qd[0], qd[1], *self._target], dtype=np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        q1, q2 = float(state[0]), float(state[1])
        return np.array([math.cos(q1), math.sin(q1), math.cos(q2), math.sin(q2), state[2], state[3]], dtype=np.float32)

    def get_sim_state(self) -> np.ndarray:
        d = self.data
        return np.concatenate([d.qpos, d.qvel, self._target, d.qacc_warmstart]).astype(np.float64)

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        s = parse_vector(sim_state, 8, "Reacher sim_state (qpos 2, qvel 2, target x y, qacc_warmstart 2)")
        self.data.qpos[:], self.data.qvel[:] = s[0:2], s[2:4]
        self._target = s[4:6].copy()
        self.data.qacc_warmstart[:] = s[6:8]

    # --- rendering ------------------------------------------------------------------------------------------
    def _prepare_drawing(self) -> None:
        """What every frame under this episode's FoV values shares: the floor and walls, the colours, and the
        sizes in pixels less what OpenCV's anti-aliased fills add (``AA_GROWTH``)."""
        v, c = self.variation, self._canvas
        background = c.blank(v["wall.color"])  # beyond the floor: the walls' inner faces
        c.rect(background, 0.0, 0.0, 2 * ARENA_HALF, 2 * ARENA_HALF, v["floor.color"])
        scale = c.scale * ARM_SCALE
        self._drawing = {
            "background": background,
            "colors": {k: tuple(int(x) for x in v[f"{k}.color"]) for k in ("arm", "finger", "root", "target")},
            "half_width": max(0.5, LINK_RADIUS * scale - AA_GROWTH),
            "finger": max(0.5, FINGER_RADIUS * scale - AA_GROWTH),
            "root": max(0.5, ROOT_RADIUS * c.scale * ROOT_SCALE - AA_GROWTH),
            "target": max(0.5, float(v["target.size"]) * scale - AA_GROWTH),
        }

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        d = self._drawing
        scale, mid = self._canvas.scale * ARM_SCALE, self.image_size / 2 - 0.5
        l1, l2 = self._lengths()
        q1, q12 = float(state[0]), float(state[0]) + float(state[1])
        wx, wy = l1 * math.cos(q1), l1 * math.sin(q1)
        root, wrist = (mid, mid), (mid + wx * scale, mid - wy * scale)  # pixels: x right, y up
        hand = (wrist[0] + (l2 - 0.02) * math.cos(q12) * scale, wrist[1] - (l2 - 0.02) * math.sin(q12) * scale)
        tip = (wrist[0] + l2 * math.cos(q12) * scale, wrist[1] - l2 * math.sin(q12) * scale)
        target = (mid + float(state[4]) * scale, mid - float(state[5]) * scale)
        img, colors, hw = d["background"].copy(), d["colors"], d["half_width"]
        for (u0, v0), (u1, v1) in ((root, wrist), (wrist, hand)):  # the links: capsules seen from above
            length = math.hypot(u1 - u0, v1 - v0) or 1e-9
            nu, nv = -(v1 - v0) / length * hw, (u1 - u0) / length * hw
            corners = [(u0 + nu, v0 + nv), (u1 + nu, v1 + nv), (u1 - nu, v1 - nv), (u0 - nu, v0 - nv)]
            cv2.fillConvexPoly(img, np.array([_fixed(p) for p in corners], np.int32), colors["arm"], cv2.LINE_AA,
                               _SHIFT)
        for point, radius, color in ((wrist, hw, colors["arm"]), (hand, hw, colors["arm"]),
                                     (tip, d["finger"], colors["finger"]), (root, d["root"], colors["root"]),
                                     (target, d["target"], colors["target"])):
            # the target sphere rises above the arm (its top is 1 cm + its radius high): drawn last, as seen
            cv2.circle(img, _fixed(point), round(radius * _ONE), color, -1, cv2.LINE_AA, _SHIFT)
        return img


_SHIFT = 4  # sub-pixel bits of OpenCV's drawing
_ONE = 1 << _SHIFT


def _fixed(point) -> tuple[int, int]:
    return round(point[0] * _ONE), round(point[1] * _ONE)


# --- scripted expert -----------------------------------------------------------------------------------------
_EXPERT_KEYS = ("state", "goal_state", "variation.physics.arm_length", "variation.physics.hand_length",
                "variation.physics.arm_mass", "variation.physics.hand_mass", "variation.physics.damping",
                "variation.physics.max_torque")


class ReacherExpert(ScriptedExpert):
    """Joint-space PD toward the goal state's joint angles (the fingertip on the target), through a diagonal
    inertia estimate from the FoV values so the gains hold for every arm, with the joint damping cancelled:
    torque = I (kp e - kd qdot) + b qdot, as a fraction of the torque limit. ``noise``: std of Gaussian noise added to the normalised actions."""

    def __init__(self, seed: int = 0, noise: float = 0.0, kp: float = 100.0, kd: float = 20.0):
        super().__init__(seed, noise)
        self.kp, self.kd = float(kp), float(kd)

    def get_actions(self, infos: Mapping) -> np.ndarray:
        missing = [k for k in _EXPERT_KEYS if k not in infos]
        if missing:
            raise ValueError(f"ReacherExpert needs infos keys {missing} (World exposes FoV as 'variation.<key>')")
        s, goal = np.asarray(infos["state"], np.float64), np.asarray(infos["goal_state"], np.float64)
        l1, l2, m1, m2, damping, tmax = (np.asarray(infos[k], np.float64).reshape(-1) for k in _EXPERT_KEYS[2:])
        hand_inertia = m2 * l2**2 / 3 + FINGER_MASS * l2**2
        inertia = np.stack([m1 * l1**2 / 3 + (m2 + FINGER_MASS) * l1**2 + hand_inertia, hand_inertia], axis=1)
        err = goal[:, :2] - s[:, :2]
        err[:, 0] = (err[:, 0] + np.pi) % (2 * np.pi) - np.pi
        torque = inertia * (self.kp * err - self.kd * s[:, 2:4]) + damping[:, None] * s[:, 2:4]
        actions = torque / tmax[:, None]
        return self.noisy(actions)
