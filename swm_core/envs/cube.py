"""OGBench Cube (single cube) as a goal-reaching task: pick the cube up and place it on the target pose.

The scene, the UR5e arm with its Robotiq gripper, the action interface and the success rule are OGBench's
``visual-cube-single`` env (``ogbench.make_env_and_datasets(..., env_only=True)``, data-collection mode, the target
hidden in the frames): actions are 5 numbers in [-1, 1] (effector x, y, z and yaw moves, gripper opening change)
that OGBench turns into joint targets by inverse kinematics, then 25 physics steps of 2 ms. Success is OGBench's:
the cube's centre within 4 cm of the target's. Episodes start as OGBench's do (arm at a random effector pose, cube
and target at random positions and yaws on the table), drawn from the env's seed.

``state`` = (MuJoCo ``qpos`` (arm 6, gripper 8, cube position 3 and quaternion 4), target position 3 and quaternion
4), 28 numbers; ``proprio`` = (effector position 3, yaw 1, gripper opening 1, gripper contact 1), where the contact
is measured in the simulation for the current step and 0 for any other state (a goal); ``sim_state`` = MuJoCo's
full integration state (``mj_getState``, which includes the target's mocap pose). The goal state is the cube at the
target with the arm at another random pose, as OGBench's goals are.

Frames come from MuJoCo's renderer (``front_pixels`` camera, as OGBench's visual envs) with shadows, reflections and
multisampling off; ``MUJOCO_GL`` defaults to ``egl`` (headless) and must be chosen before MuJoCo is first imported.
Needs ``pip install -e '.[mujoco]'``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo reads it once, when first imported

import math  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402

from swm_core.envs.base import SWMEnv  # noqa: E402
from swm_core.envs.classic import parse_vector  # noqa: E402
from swm_core.spaces import RGB, Box, VariationSpace  # noqa: E402

SUCCESS_DISTANCE = 0.04
CUBE_QPOS = 14  # the cube's free joint in qpos (after the arm's 6 and the gripper's 8 joints)
ARM_BOUNDS = np.array([[0.25, -0.35, 0.20], [0.6, 0.35, 0.35]])  # OGBench's effector sampling box
OBJECT_BOUNDS = np.array([[0.3, -0.3], [0.55, 0.3]])  # OGBench's cube and target sampling area
CUBE_DENSITY = 1240.0
STATE_SIZE = 21 + 7
CAMERA = "front_pixels"
GRIPPER_MATERIALS = ("ur5e/robotiq/black", "ur5e/robotiq/pad_gray")


def _variation_space() -> VariationSpace:
    return VariationSpace({
        "cube": {"color": RGB((245, 66, 84)), "size": Box(0.015, 0.03, default=0.02)},
        "floor": {"color": RGB((255, 255, 255))},
        "gripper": {"color": RGB((156, 71, 209))},
        "light": {"diffuse": Box(0.2, 1.0, default=0.7), "ambient": Box(0.0, 0.5, default=0.1)},
    })


def preload_triton() -> None:
    """Load triton (torch's kernel compiler), if installed, before MuJoCo's EGL renderer starts: Mesa's software
    renderer (llvmpipe) and triton each carry their own LLVM, and importing triton after llvmpipe is loaded crashes
    the process (e.g. a later ``import timm`` or ``torchvision``); in the other order both work."""
    try:
        import triton  # noqa: F401
    except ImportError:
        pass


def load_ogbench():
    """The ``mujoco`` and ``ogbench`` modules, or a ValueError saying how to install them."""
    preload_triton()
    try:
        import mujoco
        import ogbench
    except ImportError as err:
        raise ValueError(f"swm/Cube-v1 needs MuJoCo and OGBench, which are not installed ({err}): "
                         "pip install -e '.[mujoco]'") from None
    return mujoco, ogbench


def yaw_of(quat) -> float:
    """Rotation about z of the unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(q) for q in quat)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def z_rotation(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


class CubeEnv(SWMEnv):
    """OGBench Cube (single). Action Box(-1, 1, (5,)); state (28,), proprio (6,)."""

    variation_space = _variation_space()
    default_variations = ()
    control_hz = 20.0
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        if render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self._mj, ogbench = load_ogbench()
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.declare_box_spaces(5, 6)
        n = self.image_size
        self.ogbench_env = ogbench.make_env_and_datasets(
            "visual-cube-single-play-v0", env_only=True, mode="data_collection", width=n, height=n,
            visualize_info=False, terminate_at_goal=False, disable_env_checker=True).unwrapped
        self.ogbench_env.reset(seed=0)  # compiles the scene
        self._bind()
        self._goal = np.zeros(STATE_SIZE, np.float32)

    def _bind(self) -> None:
        """Look up the scene's parts and set up the renderer (once)."""
        mj, u = self._mj, self.ogbench_env
        m = self.model = u.model
        self.data = u.data
        if m.jnt_qposadr[m.joint("object_joint_0").id] != CUBE_QPOS or m.nq + 7 != STATE_SIZE:
            raise ValueError(f"unexpected OGBench cube scene (nq {m.nq}); swm/Cube-v1 expects the single-cube scene")
        self._cube_geom, self._target_geom = m.geom("object_0").id, m.geom("target_object_0").id
        self._cube_body = m.body("object_0").id
        self._target_mocap = m.body("object_target_0").mocapid[0]
        self._pinch = m.site("ur5e/robotiq/pinch").id
        self._opening = m.jnt_qposadr[m.joint("ur5e/robotiq/right_driver_joint").id]
        self._pad = m.body("ur5e/robotiq/right_pad").id
        self._n_steps = round(u.control_timestep() / u.physics_timestep())
        self._spec = mj.mjtState.mjSTATE_INTEGRATION
        self._view = mj.MjData(m)  # scratch data for drawing states other than the current one
        m.vis.quality.offsamples = 0  # no multisampling: read when the renderer is made
        self._renderer = mj.Renderer(m, self.image_size, self.image_size)
        self._scene_option = mj.MjvOption()

    # --- FoV, reset, dynamics -------------------------------------------------------------------------------------
    def _apply_variation(self) -> None:
        """Write the FoV values into the compiled model: colours, lights, and the cube's size with its mass,
        inertia and collision bounds (density 1240, as OGBench's cube)."""
        mj, m, v = self._mj, self.model, self.variation
        h = float(v["cube.size"])
        for gid in (self._cube_geom, self._target_geom):
            m.geom_size[gid] = h
            m.geom_rbound[gid] = h * math.sqrt(3.0)
            m.geom_aabb[gid] = [0.0, 0.0, 0.0, h, h, h]
        mass = CUBE_DENSITY * (2 * h) ** 3
        m.body_mass[self._cube_body] = mass
        m.body_inertia[self._cube_body] = mass * (2 * h) ** 2 / 6
        mj.mj_setConst(m, self.data)
        m.geom_rgba[self._cube_geom] = [*(np.asarray(v["cube.color"]) / 255.0), 1.0]
        m.geom_rgba[self._target_geom, 3] = 0.0  # the target is hidden in the frames (the goal image shows it)
        m.mat_rgba[m.material("grid").id, :3] = np.asarray(v["floor.color"]) / 255.0
        for name in GRIPPER_MATERIALS:
            m.mat_rgba[m.material(name).id, :3] = np.asarray(v["gripper.color"]) / 255.0
        m.light_diffuse[m.light("global").id] = float(v["light.diffuse"])
        m.vis.headlight.ambient[:] = float(v["light.ambient"])

    def _place(self, rng: np.random.Generator, h: float) -> tuple[np.ndarray, np.ndarray]:
        """A random position (on the table, resting) and yaw quaternion, as OGBench samples cubes and targets."""
        xy = rng.uniform(OBJECT_BOUNDS[0], OBJECT_BOUNDS[1])
        return np.array([xy[0], xy[1], h]), z_rotation(rng.uniform(0.0, 2 * math.pi))

    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        mj, m, d, u = self._mj, self.model, self.data, self.ogbench_env
        self._apply_variation()
        mj.mj_resetData(m, d)
        u.np_random = np.random.default_rng(int(rng.integers(2**63)))  # OGBench's arm sampler draws from it
        u.initialize_arm()
        goal_arm = d.qpos[:CUBE_QPOS].copy()
        mj.mj_resetData(m, d)
        u.initialize_arm()
        h = float(self.variation["cube.size"])
        d.qpos[CUBE_QPOS:CUBE_QPOS + 3], d.qpos[CUBE_QPOS + 3:CUBE_QPOS + 7] = self._place(rng, h)
        target_pos, target_quat = self._place(rng, h)
        d.mocap_pos[self._target_mocap], d.mocap_quat[self._target_mocap] = target_pos, target_quat
        self._settle()
        self._goal = np.concatenate([goal_arm, target_pos, target_quat, target_pos, target_quat]).astype(np.float32)

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        return self._goal.copy()

    def _settle(self) -> None:
        """Derived quantities (positions, contact forces) of the current state, so a restored state continues
        exactly as the original."""
        self._mj.mj_forward(self.model, self.data)
        self._mj.mj_rnePostConstraint(self.model, self.data)

    def _step_sim(self, action: np.ndarray) -> None:
        self.ogbench_env.set_control(np.clip(action, -1.0, 1.0).astype(np.float64))
        self._mj.mj_step(self.model, self.data, nstep=self._n_steps)
        self._settle()

    def _success(self) -> bool:
        return self.is_success(self.get_state())

    @staticmethod
    def is_success(state) -> bool:
        """OGBench's rule: the cube's centre within ``SUCCESS_DISTANCE`` of the target's (``state`` layout above)."""
        s = np.asarray(state, np.float64)
        return float(np.linalg.norm(s[CUBE_QPOS:CUBE_QPOS + 3] - s[21:24])) <= SUCCESS_DISTANCE

    def get_state(self) -> np.ndarray:
        d, i = self.data, self._target_mocap
        return np.concatenate([d.qpos, d.mocap_pos[i], d.mocap_quat[i]]).astype(np.float32)

    def _effector(self, d) -> list[float]:
        xmat = d.site_xmat[self._pinch].reshape(3, 3)
        opening = min(max(float(d.qpos[self._opening]) / 0.8, 0.0), 1.0)
        return [*d.site_xpos[self._pinch], math.atan2(xmat[1, 0], xmat[0, 0]), opening]

    def get_proprio(self) -> np.ndarray:
        contact = min(max(float(np.linalg.norm(self.data.cfrc_ext[self._pad])) / 50.0, 0.0), 1.0)
        return np.array([*self._effector(self.data), contact], dtype=np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        self._pose_view(state)
        return np.array([*self._effector(self._view), 0.0], dtype=np.float32)

    def get_sim_state(self) -> np.ndarray:
        mj = self._mj
        out = np.empty(mj.mj_stateSize(self.model, self._spec))
        mj.mj_getState(self.model, self.data, out, self._spec)
        return out

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        size = self._mj.mj_stateSize(self.model, self._spec)
        s = parse_vector(sim_state, size, "Cube sim_state (MuJoCo's mjSTATE_INTEGRATION state)")
        self._mj.mj_setState(self.model, self.data, s, self._spec)
        self._settle()

    # --- rendering ------------------------------------------------------------------------------------------
    def _pose_view(self, state) -> None:
        """The scratch data posed at ``state`` (kinematics, cameras and lights only)."""
        v, i = self._view, self._target_mocap
        s = np.asarray(state, np.float64)
        v.qpos[:] = s[:21]
        v.mocap_pos[i], v.mocap_quat[i] = s[21:24], s[24:28]
        self._mj.mj_kinematics(self.model, v)
        self._mj.mj_camlight(self.model, v)

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        mj, r = self._mj, self._renderer
        self._pose_view(state)
        r.update_scene(self._view, camera=CAMERA, scene_option=self._scene_option)
        r.scene.flags[mj.mjtRndFlag.mjRND_SHADOW] = 0
        r.scene.flags[mj.mjtRndFlag.mjRND_REFLECTION] = 0
        return r.render().copy()

    def close(self) -> None:
        self._renderer.close()
        super().close()


# --- the package's own oracle ----------------------------------------------------------------------------------
class CubeExpert:
    """OGBench's Markovian cube oracle (``CubeMarkovOracle``, ``min_norm`` 0.4: its default), one per env, fed
    from World's infos. The oracle draws its final arm pose from NumPy's global generator: it is seeded from
    ``seed`` at every episode start and the global state restored. ``noise``: std of Gaussian noise added to the
    actions."""

    def __init__(self, seed: int = 0, noise: float = 0.0, min_norm: float = 0.4):
        if not noise >= 0:
            raise ValueError(f"noise must be a non-negative std, got {noise}")
        self.rng = np.random.default_rng(seed)
        self.noise, self.min_norm = float(noise), float(min_norm)
        self.oracles: list = []

    def reset(self, env_ids=None) -> None:
        ids = range(len(self.oracles)) if env_ids is None else env_ids
        for i in ids:
            if i < len(self.oracles):
                self._start(i)

    def _start(self, i: int) -> None:
        saved = np.random.get_state()
        np.random.seed(int(self.rng.integers(2**32)))
        try:
            self.oracles[i].reset(None, None)
        finally:
            np.random.set_state(saved)

    def get_actions(self, infos: Mapping) -> np.ndarray:
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

        state, proprio = np.asarray(infos["state"], np.float64), np.asarray(infos["proprio"], np.float64)
        if state.ndim != 2 or state.shape[1] != STATE_SIZE or proprio.shape[1:] != (6,):
            raise ValueError(f"CubeExpert needs swm/Cube-v1 infos (state (N, {STATE_SIZE}), proprio (N, 6)), got "
                             f"state {state.shape}, proprio {proprio.shape}")
        bounds = SimpleNamespace(unwrapped=SimpleNamespace(_arm_sampling_bounds=ARM_BOUNDS))  # all it reads
        while len(self.oracles) < len(state):
            self.oracles.append(CubeMarkovOracle(env=bounds, min_norm=self.min_norm))
            self._start(len(self.oracles) - 1)
        actions = np.stack([self.oracles[i].select_action(None, self._oracle_info(s, p))
                            for i, (s, p) in enumerate(zip(state, proprio))])
        if self.noise > 0:
            actions = actions + self.rng.normal(0.0, self.noise, size=actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _oracle_info(s: np.ndarray, p: np.ndarray) -> dict:
        """The oracle's inputs (OGBench's info keys) from a state and a proprio vector."""
        return {"proprio/effector_pos": p[:3], "proprio/effector_yaw": p[3:4], "proprio/gripper_opening": p[4:5],
                "proprio/gripper_contact": p[5:6], "privileged/target_block": 0,
                "privileged/block_0_pos": s[CUBE_QPOS:CUBE_QPOS + 3],
                "privileged/block_0_yaw": np.array([yaw_of(s[CUBE_QPOS + 3:CUBE_QPOS + 7])]),
                "privileged/target_block_pos": s[21:24], "privileged/target_block_yaw": np.array([yaw_of(s[24:28])])}
