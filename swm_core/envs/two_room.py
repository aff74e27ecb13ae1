"""Two-Room: a disc agent in a square arena split by a wall with door(s) (PLDM's task, swm v1 geometry).

World units are pixels of the official 224x224 canvas: the arena is [14, 210]^2 (border 14) and the wall is a band
of ``wall.thickness`` centred on 112, vertical (``wall.axis`` 1, default) or horizontal (0). Doors are openings
``[position - size, position + size]`` along the wall (``size`` is a half-extent, as in the official env).
Frames are drawn directly at ``image_size`` with OpenCV (world coordinates scaled by image_size / 224).

Physics, one rule: ``pos += clip(a, -1, 1) * speed``, moving along the wall first, then across it, so that the
agent's disc never overlaps the border or the wall. The agent's centre may enter the wall band
``|u - 112| < thickness / 2 + radius`` only inside a *passage* — the along-wall interval where the disc fits
between a door's jambs — and the across-wall move is clamped to the band's edge when it would enter the band
outside a passage. The clamp depends on the side the agent starts from, not on where the step ends, so nothing
tunnels through the wall at any speed. Collisions slide: the along-wall part of a blocked move is kept.

``state`` = ``proprio`` = agent xy; ``goal_state`` = target xy; ``sim_state`` = agent xy (float64; the rest of
the dynamics is fixed by the FoV values). Success: agent-target distance < 16.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np
from gymnasium import spaces as gspaces

from swm_core.envs.base import SWMEnv, distractor_leaves, draw_distractors
from swm_core.spaces import RGB, Box, Discrete, VariationSpace

WORLD_SIZE = 224.0
BORDER = 14.0
WALL_CENTER = 112.0
SUCCESS_DISTANCE = 16.0
MAX_DOORS = 3
MIN_PASSAGE = 1.0  # sampled door layouts leave the agent's centre at least this much room in some door
_AA_SHIFT = 4  # sub-pixel bits for cv2.circle


# --- geometry (shared by the env and the expert) ------------------------------------------------------------
class TwoRoomGeometry:
    """Collision geometry of one episode: which coordinate the wall blocks and the door passages."""

    __slots__ = ("k", "j", "radius", "thickness", "half_band", "low", "high", "passages")

    def __init__(self, axis, thickness, door_number, door_position, door_size, radius):
        self.k = 0 if int(axis) == 1 else 1  # coordinate the wall blocks: x for a vertical wall
        self.j = 1 - self.k  # coordinate along the wall
        self.radius = float(radius)
        self.thickness = float(thickness)
        self.half_band = self.thickness / 2 + self.radius
        self.low, self.high = BORDER + self.radius, WORLD_SIZE - BORDER - self.radius
        n = int(door_number)
        openings = sorted(
            (max(float(c) - float(s), BORDER), min(float(c) + float(s), WORLD_SIZE - BORDER))
            for c, s in zip(np.ravel(door_position)[:n], np.ravel(door_size)[:n])
        )
        merged: list[list[float]] = []
        for lo, hi in openings:
            if hi <= lo:
                continue
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        r = self.radius
        self.passages = [(lo + r, hi - r) for lo, hi in merged if hi - lo >= 2 * r]

    @classmethod
    def from_variation(cls, v: Mapping) -> TwoRoomGeometry:
        return cls(
            v["wall.axis"],
            v["wall.thickness"],
            v["door.number"],
            v["door.position"],
            v["door.size"],
            v["agent.radius"],
        )

    def passage_of(self, u: float):
        for lo, hi in self.passages:
            if lo <= u <= hi:
                return lo, hi
        return None

    def in_band(self, p) -> bool:
        return abs(p[self.k] - WALL_CENTER) < self.half_band

    def is_free(self, p) -> bool:
        """The disc at ``p`` overlaps neither the border nor the wall."""
        inside = self.low <= p[0] <= self.high and self.low <= p[1] <= self.high
        return inside and (not self.in_band(p) or self.passage_of(p[self.j]) is not None)

    def move(self, p, d) -> list[float]:
        """One step from the free position ``p`` by displacement ``d`` (see the module docstring)."""
        k, j, hb = self.k, self.j, self.half_band
        pk, pj = p[k], p[j]
        nj = min(max(pj + d[j], self.low), self.high)
        if abs(pk - WALL_CENTER) < hb:
            passage = self.passage_of(pj)
            if passage is not None:
                nj = min(max(nj, passage[0]), passage[1])
        nk = min(max(pk + d[k], self.low), self.high)
        if self.passage_of(nj) is None:
            if pk <= WALL_CENTER - hb:
                nk = min(nk, WALL_CENTER - hb)
            elif pk >= WALL_CENTER + hb:
                nk = max(nk, WALL_CENTER + hb)
        out = [0.0, 0.0]
        out[k], out[j] = nk, nj
        return out

    def project(self, p) -> list[float]:
        """The free position nearest ``p`` along the blocked axis (identity on free positions)."""
        q = [min(max(float(p[0]), self.low), self.high), min(max(float(p[1]), self.low), self.high)]
        if self.in_band(q) and self.passage_of(q[self.j]) is None:
            q[self.k] = WALL_CENTER + (self.half_band if q[self.k] > WALL_CENTER else -self.half_band)
        return q

    def room_point_ok(self, p, margin: float) -> bool:
        """``p`` lies in one of the two rooms, ``margin`` away from the border and the wall band."""
        lo, hi = BORDER + margin, WORLD_SIZE - BORDER - margin
        return (
            lo <= p[0] <= hi
            and lo <= p[1] <= hi
            and abs(p[self.k] - WALL_CENTER) >= self.thickness / 2 + margin
        )

    def sample_room_point(
        self, rng: np.random.Generator, margin: float, first=None, avoid=None
    ) -> np.ndarray:
        """Uniform over both rooms (rejection from the arena), at least ``SUCCESS_DISTANCE`` from ``avoid``."""
        cand = None if first is None else np.asarray(first, dtype=np.float32)
        for _ in range(100_000):
            if cand is not None and self.room_point_ok(cand.astype(np.float64), margin):
                if avoid is None or math.dist(cand, avoid) >= SUCCESS_DISTANCE:
                    return cand
            cand = rng.uniform(BORDER, WORLD_SIZE - BORDER, size=2).astype(np.float32)
        raise RuntimeError("no free position found in the Two-Room arena")


# --- the env ----------------------------------------------------------------------------------------------------
def _variation_space() -> VariationSpace:
    lo, hi = BORDER, WORLD_SIZE - BORDER
    return VariationSpace(
        {
            "agent": {
                "color": RGB((255, 0, 0)),
                "radius": Box(7.0, 14.0, default=7.0),
                "position": Box(lo, hi, shape=(2,), default=(63.0, 112.0)),
                "speed": Box(1.75, 10.5, default=5.0),
            },
            "target": {
                "color": RGB((0, 200, 0)),
                "radius": Box(7.0, 14.0, default=7.0),
                "position": Box(lo, hi, shape=(2,), default=(161.0, 112.0)),
            },
            "wall": {
                "color": RGB((0, 0, 0)),
                "border_color": RGB((0, 0, 0)),
                "thickness": Box(7, 41, default=10, dtype=np.int64),
                "axis": Discrete(2, default=1, names=("horizontal", "vertical")),
            },
            "door": {
                "color": RGB((255, 255, 255)),
                "number": Box(1, MAX_DOORS, default=1, dtype=np.int64),
                "size": Box(1.0, 21.0, shape=(MAX_DOORS,), default=(16.0, 16.0, 16.0)),
                "position": Box(lo, hi, shape=(MAX_DOORS,), default=(49.0, 112.0, 175.0)),
            },
            "background": {"color": RGB((255, 255, 255))},
            "rendering": {"render_target": Discrete(2, default=0, names=("off", "on"))},
            "distractors": distractor_leaves(lo, hi, (4.0, 40.0, 14.0)),
        }
    )


class TwoRoomEnv(SWMEnv):
    """Two-Room v1. Action Box(-1, 1, (2,)); state/proprio/goal_state (2,) world units; success distance < 16."""

    variation_space = _variation_space()
    default_variations = ("agent.position", "target.position")
    control_hz = 10.0
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        if render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        super().__init__(image_size=image_size, render_mode=render_mode)
        n = self.image_size
        self._scale = n / WORLD_SIZE
        self.action_space = gspaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gspaces.Dict(
            {
                "pixels": gspaces.Box(0, 255, shape=(n, n, 3), dtype=np.uint8),
                "proprio": gspaces.Box(0.0, WORLD_SIZE, shape=(2,), dtype=np.float32),
            }
        )
        self._apply_variation()
        self._pos = [float(u) for u in self.variation["agent.position"]]

    @staticmethod
    def room_of(xy, axis: int = 1) -> int:
        """Which room a point lies in: 0 left/top of the wall centre, 1 right/bottom (``axis`` = wall.axis:
        1 vertical wall, the default; 0 horizontal). A point on the centre line counts as room 1."""
        return int(float(np.asarray(xy).ravel()[0 if int(axis) == 1 else 1]) >= WALL_CENTER)

    # --- reset ------------------------------------------------------------------------------------------------
    def _sampled_keys(self, options: dict) -> set[str]:
        """The leaves this episode drew at random (not fixed by ``variation_values``)."""
        keys = set(self.variation_space.sampled_keys(self.default_variations, options))
        return keys - set(options.get("variation_values") or {})

    def _reset_sim(self, rng: np.random.Generator, options: dict) -> None:
        """Sample the positions (uniform over both rooms) after making sure a door fits the agent. A
        ``sim_state`` / ``goal_state`` option replaces agent.position / target.position, so that the FoV record
        says where the episode really started and what it aimed for."""
        v, sampled = self.variation, self._sampled_keys(options)
        geom = self._passable_geometry(rng, sampled)
        r_agent = float(v["agent.radius"])
        if options.get("sim_state") is not None:
            v["agent.position"] = np.asarray(
                geom.project(self._parse_sim_state(options["sim_state"])), np.float32
            )
        elif "agent.position" in sampled:
            v["agent.position"] = geom.sample_room_point(rng, r_agent, first=v["agent.position"])
        elif not geom.is_free(v["agent.position"].astype(np.float64)):
            raise ValueError(self._blocked_message("agent.position", v["agent.position"], geom))
        if options.get("goal_state") is not None:
            v["target.position"] = np.asarray(options["goal_state"], dtype=np.float32).ravel()[:2].copy()
        elif "target.position" in sampled:
            margin = max(r_agent, float(v["target.radius"]))
            v["target.position"] = geom.sample_room_point(
                rng, margin, first=v["target.position"], avoid=v["agent.position"]
            )
        elif not geom.is_free(v["target.position"].astype(np.float64)):
            raise ValueError(self._blocked_message("target.position", v["target.position"], geom))
        self._apply_variation()
        self._pos = [float(u) for u in v["agent.position"]]

    def _passable_geometry(self, rng: np.random.Generator, sampled: set[str]) -> TwoRoomGeometry:
        """Resample the sampled door/radius leaves until some door lets the agent through (explicit layouts,
        closed doors included, are kept as given)."""
        v = self.variation
        keys = [k for k in ("door.number", "door.size", "door.position", "agent.radius") if k in sampled]
        for _ in range(1000):
            geom = TwoRoomGeometry.from_variation(v)
            if not keys or any(hi - lo >= MIN_PASSAGE for lo, hi in geom.passages):
                return geom
            for key in keys:
                v[key] = self.variation_space[key].sample(rng)
        raise ValueError(f"no sampled door layout lets an agent of radius {v['agent.radius']} through")

    @staticmethod
    def _blocked_message(key: str, value, geom: TwoRoomGeometry) -> str:
        axis = "x" if geom.k == 0 else "y"
        return (
            f"variation {key!r}: {np.asarray(value).tolist()} overlaps the border or the wall for an agent of "
            f"radius {geom.radius}; allowed: both coordinates in [{geom.low}, {geom.high}] and "
            f"|{axis} - {WALL_CENTER}| >= {geom.half_band} unless inside a door passage {geom.passages}"
        )

    def _apply_variation(self) -> None:
        v = self.variation
        self._geom = TwoRoomGeometry.from_variation(v)
        self._speed = float(v["agent.speed"])
        self._agent_color = tuple(int(c) for c in v["agent.color"])
        self._agent_radius = float(v["agent.radius"])
        self._target_color = tuple(int(c) for c in v["target.color"])
        self._target_radius = float(v["target.radius"])
        self._render_target = int(v["rendering.render_target"]) == 1
        self._static = self._draw_static()

    # --- dynamics -------------------------------------------------------------------------------------------
    def _sample_goal_state(self, rng: np.random.Generator) -> np.ndarray:
        return self.variation["target.position"].astype(np.float32).copy()

    def _step_sim(self, action: np.ndarray) -> None:
        ax = min(max(float(action[0]), -1.0), 1.0)
        ay = min(max(float(action[1]), -1.0), 1.0)
        self._pos = self._geom.move(self._pos, (ax * self._speed, ay * self._speed))

    def _success(self) -> bool:
        g = self.goal_state
        return math.hypot(self._pos[0] - float(g[0]), self._pos[1] - float(g[1])) < SUCCESS_DISTANCE

    def get_state(self) -> np.ndarray:
        return np.array(self._pos, dtype=np.float32)

    def _proprio_of(self, state: np.ndarray) -> np.ndarray:
        return np.array(state[:2], dtype=np.float32)

    def get_sim_state(self) -> np.ndarray:
        return np.array(self._pos, dtype=np.float64)

    def sim_state_from_state(self, state: np.ndarray) -> np.ndarray:
        """The state is the agent's position, the whole simulator state."""
        return np.asarray(state, np.float64)[:2].copy()

    def set_sim_state(self, sim_state: np.ndarray) -> None:
        """Place the agent; a position inside the border or the wall is moved to the nearest free one."""
        self._pos = self._geom.project(self._parse_sim_state(sim_state))

    @staticmethod
    def _parse_sim_state(sim_state) -> np.ndarray:
        s = np.asarray(sim_state, dtype=np.float64).ravel()
        if s.shape != (2,) or not np.all(np.isfinite(s)):
            raise ValueError(
                f"sim_state must be 2 finite numbers (agent x, y), got {np.asarray(sim_state)!r}"
            )
        return s

    # --- rendering ------------------------------------------------------------------------------------------
    def _px_range(self, lo: float, hi: float, at_least_one: bool = False) -> tuple[int, int]:
        """Pixels whose centres lie in the world interval [lo, hi] (inclusive bounds)."""
        s = self._scale
        a, b = math.ceil(lo * s - 0.5), math.floor(hi * s - 0.5)
        if at_least_one and b < a:
            a = b = round((lo + hi) / 2 * s - 0.5)
        n = self.image_size - 1
        return max(a, 0), min(b, n)

    def _draw_static(self) -> np.ndarray:
        v = self.variation
        img = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        img[:] = v["background.color"]
        draw_distractors(img, v, WORLD_SIZE)
        i0, i1 = self._px_range(BORDER, WORLD_SIZE - BORDER)
        border = v["wall.border_color"]
        img[:i0], img[i1 + 1 :], img[:, :i0], img[:, i1 + 1 :] = border, border, border, border
        half = float(v["wall.thickness"]) / 2
        a0, a1 = self._px_range(WALL_CENTER - half, WALL_CENTER + half, at_least_one=True)
        vertical = int(v["wall.axis"]) == 1

        def fill(b0, b1, color):  # along-wall pixel range [b0, b1] of the wall band
            if vertical:
                img[b0 : b1 + 1, a0 : a1 + 1] = color
            else:
                img[a0 : a1 + 1, b0 : b1 + 1] = color

        fill(i0, i1, v["wall.color"])
        n = int(v["door.number"])
        for c, size in zip(v["door.position"][:n], v["door.size"][:n]):
            b0, b1 = self._px_range(max(float(c - size), BORDER), min(float(c + size), WORLD_SIZE - BORDER))
            if b0 <= b1:
                fill(b0, b1, v["door.color"])
        return img

    def _disc(self, img: np.ndarray, xy, radius: float, color) -> None:
        f, s = 1 << _AA_SHIFT, self._scale
        center = (int(round((float(xy[0]) * s - 0.5) * f)), int(round((float(xy[1]) * s - 0.5) * f)))
        cv2.circle(img, center, max(1, int(round(radius * s * f))), color, -1, cv2.LINE_AA, _AA_SHIFT)

    def _render_state(self, state: np.ndarray) -> np.ndarray:
        img = self._static.copy()
        if self._render_target and self.goal_state is not None:
            self._disc(img, self.goal_state, self._target_radius, self._target_color)
        self._disc(img, state, self._agent_radius, self._agent_color)
        return img


class TwoRoomDiscreteEnv(TwoRoomEnv):
    """Two-Room with Discrete(9) actions: stay, then 8 compass directions at full speed (unit vectors,
    counter-clockwise from east; image y points down, so north is -y)."""

    _c = math.sqrt(0.5)
    action_table = np.array(
        [[0, 0], [1, 0], [_c, -_c], [0, -1], [-_c, -_c], [-1, 0], [-_c, _c], [0, 1], [_c, _c]],
        dtype=np.float32,
    )
    action_names = ("stay", "E", "NE", "N", "NW", "W", "SW", "S", "SE")

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.action_space = gspaces.Discrete(len(self.action_table))

    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action)
        if a.size != 1 or not (np.issubdtype(a.dtype, np.integer) or float(a.ravel()[0]).is_integer()):
            raise ValueError(
                f"action must be one integer in [0, {len(self.action_table) - 1}], got {action!r}"
            )
        idx = int(a.ravel()[0])
        if not 0 <= idx < len(self.action_table):
            raise ValueError(f"action must be one integer in [0, {len(self.action_table) - 1}], got {idx}")
        return self.action_table[idx]


class TwoRoomMultiDiscreteEnv(TwoRoomEnv):
    """Two-Room with MultiDiscrete([5, 5]) actions: one index per axis into ``action_values`` (velocities 0, -1,
    -0.5, 0.5, 1 of full speed; index 0 is 0, so the all-zero action stays put, as in TwoRoomDiscrete).
    ``action_table`` lists the 25 joint actions in ``np.ravel_multi_index(action, (5, 5))`` order, the joint index
    that discrete solvers plan over."""

    action_values = np.array([0.0, -1.0, -0.5, 0.5, 1.0], dtype=np.float32)
    action_table = np.stack(np.meshgrid(action_values, action_values, indexing="ij"), -1).reshape(-1, 2)

    def __init__(self, image_size: int = 64, render_mode: str = "rgb_array"):
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.action_space = gspaces.MultiDiscrete([len(self.action_values)] * 2)

    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action)
        n = len(self.action_values)
        integral = a.size == 2 and (np.issubdtype(a.dtype, np.integer) or np.all(np.mod(a, 1) == 0))
        if not integral or not ((0 <= a) & (a < n)).all():
            raise ValueError(f"action must be two integers in [0, {n - 1}] (one per axis), got {action!r}")
        return self.action_values[a.reshape(2).astype(np.int64)]


# --- scripted expert -----------------------------------------------------------------------------------------
_EXPERT_KEYS = (
    "variation.wall.axis",
    "variation.wall.thickness",
    "variation.door.number",
    "variation.door.position",
    "variation.door.size",
    "variation.agent.radius",
    "variation.agent.speed",
)
_DOOR_MARGIN = 2.0  # aim this far inside a passage when there is room
_ENTRY_TOLERANCE = 0.5  # "at the door" when this close to the band's edge


def route_waypoint(geom: TwoRoomGeometry, p, g) -> list[float]:
    """The next point to head for on the way from ``p`` to ``g``: ``g`` itself when in the same room, else the
    entry of the cheapest door passage, then straight across the band (so the move never grazes a jamb)."""
    k, j, hb = geom.k, geom.j, geom.half_band
    g_side = 1.0 if g[k] >= WALL_CENTER else -1.0
    if geom.in_band(p):
        if geom.passage_of(p[j]) is None or geom.in_band(g):
            return [float(g[0]), float(g[1])]
        w = [0.0, 0.0]
        w[k], w[j] = WALL_CENTER + g_side * hb, float(p[j])
        return w
    p_side = 1.0 if p[k] > WALL_CENTER else -1.0
    if p_side == g_side or not geom.passages:
        return [float(g[0]), float(g[1])]
    near, far = WALL_CENTER + p_side * hb, WALL_CENTER - p_side * hb
    w = [0.0, 0.0]
    if abs(p[k] - near) <= _ENTRY_TOLERANCE and geom.passage_of(p[j]) is not None:
        w[k], w[j] = far, float(p[j])  # at a door: cross it
        return w
    t = (WALL_CENTER - p[k]) / (g[k] - p[k])
    j_line = p[j] + t * (g[j] - p[j])
    best, best_len = None, math.inf
    for lo, hi in geom.passages:
        m = min(_DOOR_MARGIN, (hi - lo) / 2)
        jc = min(max(j_line, lo + m), hi - m)
        length = math.hypot(p[k] - near, p[j] - jc) + abs(far - near) + math.hypot(g[k] - far, g[j] - jc)
        if length < best_len:
            best, best_len = jc, length
    w[k], w[j] = near, best
    return w


class TwoRoomExpert:
    """Scripted Two-Room policy: straight to the target in the same room, through the cheapest door otherwise.

    ``keep_moving``: after reaching the target (within ``reach_tolerance``), head for fresh random points of
    either room, so long episodes keep moving. ``noise``: std of Gaussian noise added to the actions (then
    clipped). Reads ``state``, ``goal_state`` and the ``variation.*`` door/wall/agent leaves of a World-style
    batched ``infos`` (``swm_core.world.stack_infos`` builds them from raw envs' infos).
    """

    def __init__(
        self, seed: int = 0, noise: float = 0.0, keep_moving: bool = False, reach_tolerance: float = 1.0
    ):
        if not noise >= 0:
            raise ValueError(f"noise must be a non-negative std, got {noise}")
        self.rng = np.random.default_rng(seed)
        self.noise = float(noise)
        self.keep_moving = bool(keep_moving)
        self.reach_tolerance = float(reach_tolerance)
        self._dest: np.ndarray | None = None  # (N, 2) current waypoint of keep_moving; NaN = the goal
        self._goal: np.ndarray | None = None

    def reset(self, env_ids=None) -> None:
        if self._dest is not None:
            self._dest[slice(None) if env_ids is None else np.asarray(env_ids)] = np.nan

    def get_actions(self, infos: Mapping) -> np.ndarray:
        missing = [key for key in ("state", "goal_state", *_EXPERT_KEYS) if key not in infos]
        if missing:
            raise ValueError(
                f"TwoRoomExpert needs infos keys {missing} (World exposes FoV as 'variation.<key>')"
            )
        state = np.asarray(infos["state"], dtype=np.float64)[:, :2]
        goal = np.asarray(infos["goal_state"], dtype=np.float64)[:, :2]
        n = len(state)
        if self._dest is None or len(self._dest) != n:
            self._dest, self._goal = np.full((n, 2), np.nan), goal.copy()
        new_episode = np.any(self._goal != goal, axis=1)
        if "step_idx" in infos:
            new_episode |= np.asarray(infos["step_idx"]).reshape(n) == 0
        self._dest[new_episode] = np.nan
        self._goal = goal.copy()
        cols = [np.asarray(infos[key]) for key in _EXPERT_KEYS]
        speed = np.asarray(infos["variation.agent.speed"], dtype=np.float64).reshape(n)
        actions = np.zeros((n, 2))
        for i in range(n):
            geom = TwoRoomGeometry(*(c[i] for c in cols[:6]))
            dest = goal[i] if np.isnan(self._dest[i, 0]) else self._dest[i]
            if self.keep_moving and math.dist(state[i], dest) < self.reach_tolerance:
                dest = self._dest[i] = geom.sample_room_point(self.rng, geom.radius)
            w = route_waypoint(geom, state[i], dest)
            a = (np.asarray(w) - state[i]) / speed[i]
            actions[i] = a / max(1.0, float(np.abs(a).max()))
        if self.noise > 0:
            actions += self.rng.normal(0.0, self.noise, size=actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)
