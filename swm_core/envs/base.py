"""The contract every native swm env follows, so that World, the data layer and the evaluators need nothing else.

A native env is a ``gymnasium.Env`` whose ``reset``/``step`` return ``(obs, info)`` / ``(obs, reward, terminated,
truncated, info)`` where ``obs = {"pixels", "proprio"}`` and ``info`` holds at least:

- ``pixels`` (H, W, 3) uint8, ``goal`` (H, W, 3) uint8 — the goal rendered under the same FoV values;
- ``proprio``, ``state``, ``goal_state``, ``goal_proprio`` float32 vectors; ``sim_state`` float64, the *full* simulator state
  (``set_sim_state`` of it reproduces the future exactly);
- ``success`` bool; ``variation`` dict ``{dot key: value}`` of every FoV leaf in force.

``reset(options=...)`` understands ``variation`` (keys to sample, added to ``default_variations``),
``variation_values`` (exact values), ``sim_state`` (start there), ``goal_state`` (use this goal) and
``goal_pixels`` (show this goal image instead of rendering ``goal_state``, e.g. a recorded frame).
Subclasses implement ``_reset_sim``, ``_sample_goal_state``, ``_step_sim``, ``_render_state``, ``_success``,
``_proprio_of``, ``get_state``, ``get_sim_state`` and ``set_sim_state``; nothing else.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from swm_core.spaces import RGB, Box, Discrete, VariationSpace

# what ``reset(options=...)`` takes: FoV keys to sample, fixed FoV values, a simulator state to restore, a goal
RESET_OPTIONS = frozenset({"variation", "variation_values", "sim_state", "goal_state", "goal_pixels"})
MAX_DISTRACTORS = 8


def distractor_leaves(low: float, high: float, size: tuple[float, float, float]) -> dict:
    """The ``distractors`` FoV group: up to MAX_DISTRACTORS filled squares drawn on the floor of every frame (the
    goal image too), with no physics. ``count`` (0, the default, draws none), ``position`` (the centres, in world
    units inside [low, high]; the first ``count`` are drawn; sampling the leaf draws new ones every episode),
    ``size`` (the side, (low, high, default)) and ``color``."""
    ring = np.linspace(0.0, 2 * np.pi, MAX_DISTRACTORS, endpoint=False)
    centre, radius = (low + high) / 2, 0.35 * (high - low)
    default = np.stack([centre + radius * np.cos(ring), centre + radius * np.sin(ring)], axis=1)
    return {"count": Discrete(MAX_DISTRACTORS + 1, default=0),
            "position": Box(low, high, shape=(MAX_DISTRACTORS, 2), default=default),
            "size": Box(size[0], size[1], default=size[2]), "color": RGB((128, 0, 128))}


def draw_distractors(img: np.ndarray, variation, world_size: float) -> None:
    """Fill the first ``distractors.count`` squares of ``variation`` into ``img`` (world units scaled by
    image size / ``world_size``): the pixels whose centres lie inside a square, at least one per square."""
    n = int(variation.get("distractors.count", 0))
    if n == 0:
        return
    s, half, last = img.shape[0] / world_size, float(variation["distractors.size"]) / 2, img.shape[0] - 1
    for centre in np.asarray(variation["distractors.position"], np.float64)[:n]:
        lo = np.ceil((centre - half) * s - 0.5).astype(int)
        hi = np.maximum(np.floor((centre + half) * s - 0.5).astype(int), lo)
        (x0, y0), (x1, y1) = np.clip(lo, 0, last), np.clip(hi, 0, last)
        img[y0:y1 + 1, x0:x1 + 1] = variation["distractors.color"]


class SWMEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    variation_space: VariationSpace
    default_variations: tuple[str, ...] = ()
    control_hz: float = 10.0

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        if int(image_size) < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.variation: dict[str, np.ndarray] = self.variation_space.defaults()
        self._goal_pixels: np.ndarray | None = None
        self.goal_state: np.ndarray | None = None

    # --- to implement -------------------------------------------------------------------------------------
    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        """Build the scene from ``self.variation`` and place bodies (``options['sim_state']`` overrides)."""
        raise NotImplementedError

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _step_sim(self, action: np.ndarray) -> None:
        raise NotImplementedError

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        """Draw the scene with the bodies at ``state`` (an env ``state`` vector)."""
        raise NotImplementedError

    def _success(self) -> bool:
        raise NotImplementedError

    def get_state(self) -> np.ndarray:
        raise NotImplementedError

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        """The proprio vector (float32) of an env ``state`` vector."""
        raise NotImplementedError

    def get_sim_state(self) -> np.ndarray:
        raise NotImplementedError

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        raise NotImplementedError

    def declare_box_spaces(self, action_dim: int, proprio_dim: int) -> None:
        """Actions Box(-1, 1, (action_dim,)); observations pixels (image_size² RGB) and proprio (proprio_dim,)."""
        n, spaces = self.image_size, gym.spaces
        self.action_space = spaces.Box(-1.0, 1.0, shape=(action_dim,), dtype=np.float32)
        self.observation_space = spaces.Dict({
            "pixels": spaces.Box(0, 255, shape=(n, n, 3), dtype=np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, shape=(proprio_dim,), dtype=np.float32),
        })

    def sim_state_from_state(self, state: np.ndarray) -> np.ndarray:
        """The simulator state to restore for a recorded ``state`` alone (data recorded without ``sim_state``,
        e.g. by the stable-worldmodel package). Envs whose ``state`` determines their simulator override it."""
        raise ValueError(f"{type(self).__name__} cannot restore its simulator from a recorded state alone: the "
                         f"dataset-driven evaluation needs a 'sim_state' column for it")

    # --- shared ---------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: {sorted(RESET_OPTIONS)}")
        self.variation = self.variation_space.values_for_episode(self.default_variations, options, self.np_random)
        self._reset_sim(self.np_random, options)
        if options.get("sim_state") is not None:
            self.set_sim_state(np.asarray(options["sim_state"], dtype=np.float64))
        goal_state = options.get("goal_state")
        if goal_state is not None:
            goal_state = np.asarray(goal_state, np.float32)
            expected = self.get_state().shape
            if goal_state.shape != expected or not np.all(np.isfinite(goal_state)):
                raise ValueError(f"options['goal_state'] must be finite with the state's shape {expected}, got "
                                 f"shape {goal_state.shape}: {goal_state.tolist()}")
        self.goal_state = self._sample_goal_state(self.np_random) if goal_state is None else goal_state
        goal_pixels = options.get("goal_pixels")
        frame = self._render_state(self.goal_state)
        if goal_pixels is not None and np.shape(goal_pixels) != frame.shape:
            raise ValueError(f"options['goal_pixels'] must be a {frame.shape} frame, got shape {np.shape(goal_pixels)}")
        self._goal_pixels = frame if goal_pixels is None else np.asarray(goal_pixels)
        info = self._info()
        return self._obs(info), info

    def _check_action(self, action) -> np.ndarray:
        """The action as the float32 vector ``_step_sim`` takes; a discrete variant maps indices here."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite with shape {self.action_space.shape}, got {action!r}")
        return action

    def step(self, action):
        self._step_sim(self._check_action(action))
        info = self._info()
        reward = -float(np.linalg.norm(self.goal_state - info["state"]))
        return self._obs(info), reward, bool(info["success"]), False, info

    def simulate(self, action) -> np.ndarray:
        """One control step of the dynamics alone (no frame drawn, no info built); returns the new state. What
        ``step`` does to the simulator, for planners that roll the true env (swm_core/oracle.py)."""
        self._step_sim(self._check_action(action))
        return self.get_state()

    def get_proprio(self) -> np.ndarray:
        return self._proprio_of(self.get_state())

    def render(self) -> np.ndarray:
        return self._render_state(self.get_state())

    @staticmethod
    def _obs(info: dict) -> dict[str, Any]:
        return {"pixels": info["pixels"], "proprio": info["proprio"]}

    def _info(self) -> dict[str, Any]:
        state = self.get_state()
        return {
            "pixels": self._render_state(state),
            "goal": self._goal_pixels.copy(),
            "proprio": self.get_proprio(),
            "state": state,
            "goal_state": self.goal_state.astype(np.float32),
            "goal_proprio": self._proprio_of(self.goal_state),
            "sim_state": self.get_sim_state(),
            "success": bool(self._success()),
            "variation": {k: np.array(v) for k, v in self.variation.items()},  # copies: callers may edit them
        }
