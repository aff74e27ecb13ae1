"""Any Gymnasium env with an ``rgb_array`` render, run by World as a black box (imported only for such ids).

``BlackBoxEnv(env_id, image_size)`` follows the native env contract of :mod:`swm_core.envs.base` as far as a
black box allows: ``pixels`` is the env's render resized to ``image_size`` (OpenCV, area interpolation); ``goal``
is a black frame (no goal); ``proprio`` = ``state`` is the env's observation when it is a flat numeric Box of at
most 64 numbers (CartPole-v1, Pendulum-v1), else one zero; ``goal_state``/``goal_proprio`` are zeros;
``sim_state`` is one NaN (the simulator state is not reachable, so nothing can be restored); ``success`` is False;
``variation`` is empty. Visual wrappers (:mod:`swm_core.wrappers`) apply as to any env; FoV options, a
``sim_state`` or a goal are clear errors. Episodes end when the env terminates or truncates.
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

MAX_STATE_SIZE = 64  # a flat observation up to this size is recorded as the state


def register_optional(env_id: str) -> None:
    """Register the ids of optional packages (``ALE/...`` from ale-py) on demand, or say how to install them."""
    if env_id.startswith("ALE/") and env_id not in gym.registry:
        try:
            import ale_py
        except ImportError:
            raise ValueError(f"env {env_id!r} needs the ale-py package: pip install -e '.[atari]'") from None
        gym.register_envs(ale_py)


class BlackBoxEnv(gym.Env):
    """A Gymnasium env id behind the swm info contract (see the module docstring)."""

    restorable = False  # World refuses the dataset-driven protocol, which restores recorded states
    ends_on_done = True  # World ends an episode when the env terminates or truncates

    def __init__(self, env_id: str, image_size: int = 64, **env_kwargs):
        if int(image_size) < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
        if "render_mode" in env_kwargs:
            raise ValueError(f"env_kwargs render_mode={env_kwargs['render_mode']!r}: a black-box env is always "
                             "made with render_mode='rgb_array'")
        self.env_id, self.image_size = env_id, int(image_size)
        creator = gym.registry[env_id].entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        modes = list(getattr(creator, "metadata", {}).get("render_modes", ["rgb_array"]))  # a factory: try it
        if "rgb_array" not in modes:
            raise ValueError(f"env {env_id!r} has no 'rgb_array' render (render modes: {modes}); World needs frames")
        self.env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
        self.action_space = self.env.action_space
        space = self.env.observation_space
        flat = isinstance(space, gym.spaces.Box) and space.dtype.kind == "f" and len(space.shape) == 1
        self._state_size = int(np.prod(space.shape)) if flat and np.prod(space.shape) <= MAX_STATE_SIZE else 0
        n = self.image_size
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, shape=(n, n, 3), dtype=np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, shape=(max(self._state_size, 1),), dtype=np.float32),
        })
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self.env.metadata.get("render_fps", 30)}
        self.control_hz = float(self.metadata["render_fps"])
        self.variation_space = None
        self.render_mode = "rgb_array"
        self._obs = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        fov = sorted(k for k in options if k in ("variation", "variation_values"))
        if fov:
            raise ValueError(f"env {self.env_id!r} is a black-box Gymnasium env with no factors of variation (FoV), "
                             f"so reset option(s) {fov} cannot apply; visual wrappers do (World(..., wrappers=[...]), "
                             "see swm_core.wrappers)")
        restore = sorted(k for k in options if k in ("sim_state", "goal_state", "goal_pixels"))
        if restore:
            raise ValueError(f"env {self.env_id!r} is a black-box Gymnasium env: its state cannot be restored and it "
                             f"has no goal, so reset option(s) {restore} cannot apply")
        self._obs, _ = self.env.reset(seed=seed, options=options or None)
        info = self._info()
        return {"pixels": info["pixels"], "proprio": info["proprio"]}, info

    def step(self, action):
        self._obs, reward, terminated, truncated, _ = self.env.step(action)
        info = self._info()
        obs = {"pixels": info["pixels"], "proprio": info["proprio"]}
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray:
        frame = np.asarray(self.env.render())
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"env {self.env_id!r} rendered shape {frame.shape}; World needs (H, W, 3) RGB frames")
        n = self.image_size
        return cv2.resize(frame.astype(np.uint8), (n, n), interpolation=cv2.INTER_AREA)

    def _info(self) -> dict[str, Any]:
        if self._state_size:
            state = np.asarray(self._obs, dtype=np.float32).reshape(-1)
        else:
            state = np.zeros(1, np.float32)
        n = self.image_size
        return {
            "pixels": self.render(),
            "goal": np.zeros((n, n, 3), np.uint8),
            "proprio": state,
            "state": state,
            "goal_state": np.zeros_like(state),
            "goal_proprio": np.zeros_like(state),
            "sim_state": np.full(1, np.nan),
            "success": False,
            "variation": {},
        }

    def close(self) -> None:
        self.env.close()
