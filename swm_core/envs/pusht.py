"""Push-T: push a T-shaped block (or another shape) to a goal pose with a round kinematic pusher.

Physics (pymunk, docs/reference.md §2): a 512×512 world with no gravity and walls from 5 to 506; dt 0.01 with 10
substeps per control step (10 Hz). The agent is a kinematic body driven by a PD controller (k_p 100, k_v 20)
toward ``target = agent_pos + action·100``, computed once per control step. The block is a dynamic body of mass 1
with friction 1. Choices made here, each on purpose:

- ``space.damping = 0`` (as in the reference): pymunk's damping is the fraction of velocity a body keeps per
  second, so the block keeps no velocity of its own from one substep to the next: it moves only while it is pushed
  and comes to rest one substep (0.01 s) after contact ends (quasi-static pushing, no sliding away).
- Exact restore: pymunk keeps hidden solver state (cached contact impulses, bias velocities, broad-phase order)
  that no public API can read or set. Each control step therefore starts from a freshly built space holding only
  what ``sim_state`` stores, so a control step is a pure function of (``sim_state``, action, FoV values), and
  ``set_sim_state(get_sim_state())`` reproduces the future bit for bit.
- The PD target is clipped to the inside of the walls, so the kinematic agent (which walls cannot stop) never
  leaves the arena; actions are clipped to [-1, 1].
- The walls are solid boxes behind their inner faces (7 and 504, as the reference's radius-2 segments at 5 and
  506), so the agent cannot squeeze the block through a wall (through a thin segment it can).
- Block geometry is a union of axis-aligned rectangles (unit = ``block.scale``); the block position is the area
  centroid, which is also its centre of gravity (the T's moment of inertia is that of a uniform T of mass 1).
- The goal (success) state is drawn from the reset distribution, rejecting goals whose agent overlaps the goal
  block (those are unreachable); a reset start whose sampled agent overlaps the block is resampled the same way.

Rendering draws directly at ``image_size`` with OpenCV (anti-aliased polygons with sub-pixel coordinates); it
never draws a 512² canvas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import cv2
import gymnasium as gym
import numpy as np
import pymunk

from swm_core.envs.base import SWMEnv, distractor_leaves, draw_distractors
from swm_core.spaces import RGB, Box, Discrete, VariationSpace

WORLD_SIZE = 512.0
WALL_POSITION, WALL_RADIUS = 5.0, 2.0
ARENA_LOW, ARENA_HIGH = WALL_POSITION + WALL_RADIUS, 506.0 - WALL_RADIUS  # inner faces of the walls
WALL_THICKNESS = 200.0  # the walls are solid boxes behind their inner faces, not thin segments
DT, SUBSTEPS = 0.01, 10
K_P, K_V = 100.0, 20.0
ACTION_SCALE = 100.0
BLOCK_MASS, FRICTION = 1.0, 1.0
AGENT_RADIUS_PER_SCALE = 15.0 / 40.0  # agent.scale 40 -> radius 15
SUCCESS_DISTANCE, SUCCESS_ANGLE = 20.0, math.pi / 9
WALL_COLOR = (211, 211, 211)

# Block shapes as unions of disjoint axis-aligned rectangles (x0, y0, x1, y1) in units of the shape's scale, the
# outline of that union (for drawing and for the expert's contact points) and the rotational symmetry period.
_SHAPES: dict[str, tuple[list, list, float]] = {
    "T": ([(0, 0, 4, 1), (1.5, 1, 2.5, 4)],
          [(0, 0), (4, 0), (4, 1), (2.5, 1), (2.5, 4), (1.5, 4), (1.5, 1), (0, 1)], 2 * math.pi),
    "L": ([(0, 0, 1, 2), (0, 2, 2, 3)], [(0, 0), (1, 0), (1, 2), (2, 2), (2, 3), (0, 3)], 2 * math.pi),
    "Z": ([(0, 0, 2, 1), (1, 1, 3, 2)],
          [(0, 0), (2, 0), (2, 1), (3, 1), (3, 2), (1, 2), (1, 1), (0, 1)], math.pi),
    "square": ([(0, 0, 2, 2)], [(0, 0), (2, 0), (2, 2), (0, 2)], math.pi / 2),
    "I": ([(0, 0, 1, 4)], [(0, 0), (1, 0), (1, 4), (0, 4)], math.pi),
    "small_tee": ([(0, 0, 3, 1), (1, 1, 2, 2)],
                  [(0, 0), (3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 1), (0, 1)], 2 * math.pi),
    "plus": ([(1, 0, 2, 1), (0, 1, 3, 2), (1, 2, 2, 3)],
             [(1, 0), (2, 0), (2, 1), (3, 1), (3, 2), (2, 2), (2, 3), (1, 3), (1, 2), (0, 2), (0, 1), (1, 1)],
             math.pi / 2),
}
BLOCK_SHAPES = ("T", "L", "Z", "square", "I", "small_tee", "plus")
AGENT_SHAPES = ("circle",) + BLOCK_SHAPES
SYMMETRY = {name: period for name, (_, _, period) in _SHAPES.items()}


@lru_cache(maxsize=256)
def shape_geometry(name: str, unit: float):
    """(rects (k, 4) [x0, y0, x1, y1], outline (m, 2), area) of a block shape with cell size ``unit``, centred on
    its area centroid. The outline has a positive shoelace area, so edge a -> b has outward normal (dy, -dx)."""
    cells, outline, _ = _SHAPES[name]
    rects = np.asarray(cells, dtype=np.float64) * unit
    areas = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
    centers = np.stack([(rects[:, 0] + rects[:, 2]) / 2, (rects[:, 1] + rects[:, 3]) / 2], axis=1)
    centroid = (areas[:, None] * centers).sum(0) / areas.sum()
    rects = rects - np.tile(centroid, 2)
    outline = np.asarray(outline, dtype=np.float64) * unit - centroid
    if polygon_area(outline) < 0:
        outline = outline[::-1].copy()
    rects.setflags(write=False)
    outline.setflags(write=False)
    return rects, outline, float(areas.sum())


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def angle_error(angle, goal_angle, period: float = 2 * math.pi):
    """Absolute angle difference modulo ``period`` (the shape's rotational symmetry), in [0, period/2]."""
    diff = np.mod(np.asarray(angle, np.float64) - np.asarray(goal_angle, np.float64) + period / 2, period)
    return np.abs(diff - period / 2)


def pusht_success(state, goal_state, period: float = 2 * math.pi) -> bool:
    """Success: L2 over (agent xy, block xy) below 20 and block-angle error (modulo ``period``) below π/9."""
    state, goal_state = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
    position_error = np.linalg.norm(state[:4] - goal_state[:4])
    return bool(position_error < SUCCESS_DISTANCE and angle_error(state[4], goal_state[4], period) < SUCCESS_ANGLE)


def rotation(angle: float) -> np.ndarray:
    """2-D rotation matrix of ``angle`` radians (block frame -> world frame)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def block_distance(points, pose, rects) -> np.ndarray:
    """Signed distance (n,) from world ``points`` (n, 2) to a block at ``pose`` (x, y, angle) made of the
    axis-aligned ``rects`` of its own frame (negative inside)."""
    points = np.atleast_2d(np.asarray(points, np.float64))
    local = (points - np.asarray(pose[:2], np.float64)) @ rotation(float(pose[2]))  # world -> block frame
    q, lo, hi = local[:, None, :], rects[None, :, :2], rects[None, :, 2:]
    outside = np.linalg.norm(q - np.clip(q, lo, hi), axis=-1)  # (n, k)
    depth = np.min(np.concatenate([q - lo, hi - q], axis=-1), axis=-1)  # > 0 inside a rect
    return np.min(np.where(outside > 0, outside, -depth), axis=1)


class PushTScene:
    """Geometry, physics and drawing of Push-T for one set of FoV values (a ``variation`` dict of dot keys).

    ``step(sim_state, action)`` is a pure function: it builds a fresh pymunk space from ``sim_state`` and returns
    the next ``sim_state``. ``sim_state`` (float64, 10) = agent x, y, vx, vy, block x, y, angle, vx, vy, angular
    velocity (the FoV values, e.g. the agent's angle and shapes, complete it).
    """

    def __init__(self, variation: Mapping, image_size: int = 64):
        v = {k: np.asarray(val) for k, val in variation.items()}
        self.variation, self.image_size = v, int(image_size)
        self.agent_shape = AGENT_SHAPES[int(v["agent.shape"])]
        self.agent_radius = float(v["agent.scale"]) * AGENT_RADIUS_PER_SCALE
        self.agent_angle = float(v["agent.angle"])
        if self.agent_shape == "circle":
            self.agent_parts, self.agent_outline = None, None
        else:  # a polygon agent fits the circle it replaces: its farthest vertex lies at agent_radius
            unit = self.agent_radius / np.max(np.linalg.norm(shape_geometry(self.agent_shape, 1.0)[1], axis=1))
            self.agent_parts, self.agent_outline, _ = shape_geometry(self.agent_shape, float(unit))
        self.block_shape = BLOCK_SHAPES[int(v["block.shape"])]
        self.block_scale = float(v["block.scale"])
        self.block_rects, self.block_outline, area = shape_geometry(self.block_shape, self.block_scale)
        self.symmetry = SYMMETRY[self.block_shape]
        self.block_moment = 0.0
        for r in self.block_rects:
            mass = BLOCK_MASS * (r[2] - r[0]) * (r[3] - r[1]) / area
            self.block_moment += pymunk.moment_for_poly(mass, self._rect_vertices(r))
        self.block_radius = float(np.max(np.linalg.norm(self.block_outline, axis=1)))
        self.arena_low, self.arena_high = ARENA_LOW + self.agent_radius, ARENA_HIGH - self.agent_radius
        # drawing
        self.colors = {k: tuple(int(c) for c in v[f"{k}.color"]) for k in ("agent", "block", "goal", "background")}
        self.render_goal = bool(int(v["rendering.render_goal"]))
        goal_outline = shape_geometry(self.block_shape, float(v["goal.scale"]))[1]
        goal_pos = np.asarray(v["goal.position"], np.float64)
        self.goal_outline_world = goal_pos + goal_outline @ rotation(float(v["goal.angle"])).T
        self.agent_outline_world = (
            None if self.agent_outline is None else self.agent_outline @ rotation(self.agent_angle).T
        )
        self._canvas: np.ndarray | None = None

    @staticmethod
    def _rect_vertices(r) -> list[tuple[float, float]]:
        return [(r[0], r[1]), (r[2], r[1]), (r[2], r[3]), (r[0], r[3])]

    # --- physics --------------------------------------------------------------------------------------------
    _WALLS = (  # solid boxes behind the inner faces: left, right, top, bottom
        (-WALL_THICKNESS, -WALL_THICKNESS, ARENA_LOW, WORLD_SIZE + WALL_THICKNESS),
        (ARENA_HIGH, -WALL_THICKNESS, WORLD_SIZE + WALL_THICKNESS, WORLD_SIZE + WALL_THICKNESS),
        (-WALL_THICKNESS, -WALL_THICKNESS, WORLD_SIZE + WALL_THICKNESS, ARENA_LOW),
        (-WALL_THICKNESS, ARENA_HIGH, WORLD_SIZE + WALL_THICKNESS, WORLD_SIZE + WALL_THICKNESS),
    )

    def build_space(self, sim_state, wall_reach: float = 150.0) -> tuple[pymunk.Space, pymunk.Body, pymunk.Body]:
        """A fresh space at ``sim_state``. Only the walls the block could reach within ``wall_reach`` pixels are
        added (the agent never touches walls: kinematic bodies ignore static ones); which ones depends only on
        ``sim_state``, so stepping stays a pure function of it."""
        s = [float(x) for x in sim_state]
        space = pymunk.Space()
        space.damping = 0.0
        reach = self.block_radius + wall_reach
        near = (s[4] - reach < ARENA_LOW, s[4] + reach > ARENA_HIGH, s[5] - reach < ARENA_LOW,
                s[5] + reach > ARENA_HIGH)
        objects: list = [
            pymunk.Poly(space.static_body, self._rect_vertices(r)) for r, n in zip(self._WALLS, near) if n
        ]
        agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        agent.position = (s[0], s[1])
        agent.velocity = (s[2], s[3])
        if self.agent_angle != 0.0:
            agent.angle = self.agent_angle
        if self.agent_parts is None:
            agent_shapes = [pymunk.Circle(agent, self.agent_radius)]
        else:
            agent_shapes = [pymunk.Poly(agent, self._rect_vertices(r)) for r in self.agent_parts]
        block = pymunk.Body(BLOCK_MASS, self.block_moment)
        block.position = (s[4], s[5])
        block.angle = s[6]
        if s[7] != 0.0 or s[8] != 0.0:
            block.velocity = (s[7], s[8])
        if s[9] != 0.0:
            block.angular_velocity = s[9]
        block_shapes = [pymunk.Poly(block, self._rect_vertices(r)) for r in self.block_rects]
        for shape in agent_shapes + block_shapes:
            shape.friction = FRICTION
        space.add(*objects, agent, *agent_shapes, block, *block_shapes)
        return space, agent, block

    def substeps(self, space: pymunk.Space, agent: pymunk.Body, action) -> None:
        """One control step on an existing space: PD toward the (arena-clipped) target for 10 substeps.

        The kinematic agent's motion does not depend on contacts, so its position and velocity are tracked here
        with the same arithmetic pymunk uses (p += v·dt) instead of being read back every substep."""
        ax = min(max(float(action[0]), -1.0), 1.0)
        ay = min(max(float(action[1]), -1.0), 1.0)
        (px, py), (vx, vy) = agent.position, agent.velocity
        tx = min(max(px + ax * ACTION_SCALE, self.arena_low), self.arena_high)
        ty = min(max(py + ay * ACTION_SCALE, self.arena_low), self.arena_high)
        for _ in range(SUBSTEPS):
            vx = vx + (K_P * (tx - px) - K_V * vx) * DT
            vy = vy + (K_P * (ty - py) - K_V * vy) * DT
            agent.velocity = (vx, vy)
            space.step(DT)
            px, py = px + vx * DT, py + vy * DT

    @staticmethod
    def read(agent: pymunk.Body, block: pymunk.Body) -> np.ndarray:
        ap, av, bp, bv = agent.position, agent.velocity, block.position, block.velocity
        return np.array([ap.x, ap.y, av.x, av.y, bp.x, bp.y, block.angle, bv.x, bv.y, block.angular_velocity])

    def step(self, sim_state, action) -> np.ndarray:
        free = self.free_step(sim_state, action)
        if free is not None:
            return free
        space, agent, block = self.build_space(sim_state)
        self.substeps(space, agent, action)
        return self.read(agent, block)

    def free_step(self, sim_state, action, margin: float = 2.0) -> np.ndarray | None:
        """The control step without building a space when nothing can touch during it: the block at rest and
        ``margin`` clear of the walls and of every position the agent passes through; None otherwise. pymunk would
        then move the kinematic agent by p += v·dt, and leave the resting block in place with zero velocities
        (its position and angle plus 0), so the same arithmetic gives the same floats as ``build_space`` and
        ``substeps`` do."""
        s = [float(x) for x in sim_state]
        bx, by, reach = s[4], s[5], self.block_radius + margin
        if (s[7] != 0.0 or s[8] != 0.0 or s[9] != 0.0 or min(bx, by) - reach < ARENA_LOW
                or max(bx, by) + reach > ARENA_HIGH):
            return None
        px, py, vx, vy = s[:4]
        tx = min(max(px + min(max(float(action[0]), -1.0), 1.0) * ACTION_SCALE, self.arena_low), self.arena_high)
        ty = min(max(py + min(max(float(action[1]), -1.0), 1.0) * ACTION_SCALE, self.arena_low), self.arena_high)
        path = [(px, py)]
        for _ in range(SUBSTEPS):  # the arithmetic of ``substeps``
            vx = vx + (K_P * (tx - px) - K_V * vx) * DT
            vy = vy + (K_P * (ty - py) - K_V * vy) * DT
            px, py = px + vx * DT, py + vy * DT
            path.append((px, py))
        near = [p for p in path if (p[0] - bx) ** 2 + (p[1] - by) ** 2 < (reach + self.agent_radius) ** 2]
        if near and block_distance(near, (bx, by, s[6]), self.block_rects).min() < self.agent_radius + margin:
            return None
        return np.array([px, py, vx, vy, bx + 0.0, by + 0.0, s[6] + 0.0, 0.0, 0.0, 0.0])

    @staticmethod
    def state_of(sim_state) -> np.ndarray:
        """The env ``state`` (float32, 7) of a ``sim_state``."""
        s = sim_state
        return np.array([s[0], s[1], s[4], s[5], s[6] % (2 * math.pi), s[2], s[3]], dtype=np.float32)

    def agent_overlaps_block(self, agent_xy, block_pose, margin: float = 2.0) -> bool:
        d = block_distance(np.asarray(agent_xy, np.float64)[None], block_pose, self.block_rects)
        return bool(d[0] < self.agent_radius + margin)

    # --- drawing --------------------------------------------------------------------------------------------
    _SHIFT = 4

    def _to_pixels(self, points: np.ndarray) -> np.ndarray:
        f = self.image_size / WORLD_SIZE
        return np.round((points * f - 0.5) * (1 << self._SHIFT)).astype(np.int32)

    def _static_canvas(self) -> np.ndarray:
        """Background, walls and the goal target: what does not move during an episode (drawn once)."""
        if self._canvas is None:
            size, shift, aa = self.image_size, self._SHIFT, cv2.LINE_AA
            img = np.empty((size, size, 3), dtype=np.uint8)
            img[:] = self.colors["background"]
            draw_distractors(img, self.variation, WORLD_SIZE)
            outer, inner = WALL_POSITION - WALL_RADIUS, WALL_POSITION + WALL_RADIUS
            far_in, far_out = 506.0 - WALL_RADIUS, 506.0 + WALL_RADIUS
            walls = np.array(
                [
                    [(outer, outer), (far_out, outer), (far_out, inner), (outer, inner)],
                    [(outer, far_in), (far_out, far_in), (far_out, far_out), (outer, far_out)],
                    [(outer, inner), (inner, inner), (inner, far_in), (outer, far_in)],
                    [(far_in, inner), (far_out, inner), (far_out, far_in), (far_in, far_in)],
                ]
            )
            cv2.fillPoly(img, list(self._to_pixels(walls)), WALL_COLOR, aa, shift)
            if self.render_goal:
                cv2.fillPoly(img, [self._to_pixels(self.goal_outline_world)], self.colors["goal"], aa, shift)
            self._canvas = img
        return self._canvas

    def render(self, state) -> np.ndarray:
        """The frame (H, W, 3) uint8 with the agent and block at env ``state`` (agent xy, block xy, angle, ...)."""
        shift, aa = self._SHIFT, cv2.LINE_AA
        img = self._static_canvas().copy()
        x, y, bx, by, angle = (float(s) for s in state[:5])
        block = self.block_outline @ rotation(angle).T + (bx, by)
        cv2.fillPoly(img, [self._to_pixels(block)], self.colors["block"], aa, shift)
        if self.agent_outline_world is None:
            f = self.image_size / WORLD_SIZE * (1 << shift)
            center = (round((x * f) - (1 << (shift - 1))), round((y * f) - (1 << (shift - 1))))
            cv2.circle(img, center, round(self.agent_radius * f), self.colors["agent"], -1, aa, shift)
        else:
            agent = self._to_pixels(self.agent_outline_world + (x, y))
            cv2.fillPoly(img, [agent], self.colors["agent"], aa, shift)
        return img


class PushTEnv(SWMEnv):
    """Native Push-T (``swm/PushT-v1``). See the module docstring for the physics and rendering choices."""

    variation_space = VariationSpace(
        {
            "agent": {
                "color": RGB((65, 105, 225)),  # RoyalBlue
                "scale": Box(20, 60, default=40),
                "shape": Discrete(len(AGENT_SHAPES), default=0, names=AGENT_SHAPES),
                "angle": Box(-2 * math.pi, 2 * math.pi, default=0.0),
                "start_position": Box(50, 450, shape=(2,), default=(256, 400)),
                "velocity": Box(0, WORLD_SIZE, shape=(2,), default=(0, 0)),
            },
            "block": {
                "color": RGB((119, 136, 153)),  # LightSlateGray
                "scale": Box(20, 60, default=30),
                "shape": Discrete(len(BLOCK_SHAPES), default=0, names=BLOCK_SHAPES),
                "angle": Box(0, 2 * math.pi, default=0.0),
                "start_position": Box(100, 400, shape=(2,), default=(256, 300)),
            },
            "goal": {  # the green target drawn in every frame (not the success goal)
                "color": RGB((144, 238, 144)),  # LightGreen
                "scale": Box(20, 60, default=30),
                "angle": Box(-2 * math.pi, 2 * math.pi, default=math.pi / 4),
                "position": Box(50, 450, shape=(2,), default=(256, 256)),
            },
            "background": {"color": RGB((255, 255, 255))},
            "rendering": {"render_goal": Discrete(2, default=1)},
            "distractors": distractor_leaves(ARENA_LOW, ARENA_HIGH, (10.0, 80.0, 40.0)),
        }
    )
    default_variations = ("agent.start_position", "block.start_position", "block.angle")
    control_hz = 10.0

    def __init__(self, image_size: int = 64, render_mode: str | None = "rgb_array"):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' (or None), got {render_mode!r}")
        super().__init__(image_size=image_size, render_mode="rgb_array")
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (4,), dtype=np.float32),
            }
        )
        self.scene = PushTScene(self.variation, self.image_size)
        self._sim_state = np.zeros(10)

    # --- SWMEnv hooks ---------------------------------------------------------------------------------------
    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        self.scene = PushTScene(self.variation, self.image_size)
        v = self.variation
        block_pose = (*v["block.start_position"].astype(np.float64), float(v["block.angle"]))
        given = options.get("variation_values") or {}
        if "agent.start_position" not in given and options.get("sim_state") is None:
            leaf = self.variation_space["agent.start_position"]
            for _ in range(100):  # a start inside the block would fling it on the first step
                if not self.scene.agent_overlaps_block(v["agent.start_position"], block_pose):
                    break
                v["agent.start_position"] = leaf.sample(rng)
        agent_xy = v["agent.start_position"].astype(np.float64)
        agent_v = v["agent.velocity"].astype(np.float64)
        self._sim_state = np.array([*agent_xy, *agent_v, *block_pose, 0.0, 0.0, 0.0])

    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        space = self.variation_space
        for _ in range(100):  # reject goals whose agent overlaps the goal block: they cannot be reached
            agent = space["agent.start_position"].sample(rng).astype(np.float64)
            block = space["block.start_position"].sample(rng).astype(np.float64)
            angle = float(space["block.angle"].sample(rng)) % (2 * math.pi)
            if not self.scene.agent_overlaps_block(agent, (*block, angle)):
                break
        return np.array([*agent, *block, angle, 0.0, 0.0], dtype=np.float32)

    def _step_sim(self, action: np.ndarray) -> None:
        self._sim_state = self.scene.step(self._sim_state, action)

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        return self.scene.render(state)

    def _success(self) -> bool:
        return pusht_success(self.get_state(), self.goal_state, self.scene.symmetry)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state)
        return np.array([state[0], state[1], state[5], state[6]], dtype=np.float32)

    def get_state(self) -> np.ndarray:
        return PushTScene.state_of(self._sim_state)

    def get_sim_state(self) -> np.ndarray:
        return self._sim_state.copy()

    def sim_state_from_state(self, state: np.ndarray) -> np.ndarray:
        """From ``state`` (agent xy, block xy, block angle, agent velocity): the block's linear and angular
        velocities are not in it and are set to 0, exact whenever the block was at rest."""
        s = np.asarray(state, np.float64)
        return np.array([s[0], s[1], s[5], s[6], s[2], s[3], s[4], 0.0, 0.0, 0.0])

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        sim_state = np.asarray(sim_state, dtype=np.float64)
        if sim_state.shape != (10,) or not np.all(np.isfinite(sim_state)):
            raise ValueError(
                "sim_state must be 10 finite floats (agent x, y, vx, vy, block x, y, angle, vx, vy, angular "
                f"velocity), got shape {sim_state.shape}"
            )
        self._sim_state = sim_state.copy()
