"""The Push-T scripted expert: a contact-point pusher that plans each push on a copy of the simulator.

Imported lazily by :func:`swm_core.policy.expert_policy` (``expert_policy("swm/PushT-v1")``); see
:class:`PushTExpert`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from swm_core.envs.pusht import (
    ACTION_SCALE,
    ARENA_HIGH,
    ARENA_LOW,
    WORLD_SIZE,
    PushTEnv,
    PushTScene,
    angle_error,
    block_distance,
    rotation,
)

GRID_CELL = 8.0  # the expert's path-planning grid: 64 x 64 cells over the world
_GRID_CENTERS = (np.arange(int(WORLD_SIZE / GRID_CELL)) + 0.5) * GRID_CELL


def _free_cells(scene: PushTScene, pose) -> np.ndarray:
    """(64, 64) bool [row = y, col = x]: cells whose centre the agent can occupy without touching the block."""
    xs, ys = np.meshgrid(_GRID_CENTERS, _GRID_CENTERS)
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    dist = block_distance(points, pose, scene.block_rects)
    low, high = scene.arena_low - GRID_CELL / 2, scene.arena_high + GRID_CELL / 2
    inside = np.all((points >= low) & (points <= high), axis=1)
    return (inside & (dist >= scene.agent_radius + 4.0)).reshape(xs.shape)


def _wavefront(free: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """8-connected breadth-first distances (in cells) from ``start`` over ``free`` cells; -1 where unreachable."""
    dist = np.full(free.shape, -1, dtype=np.int32)
    frontier = np.zeros(free.shape, dtype=bool)
    frontier[start] = True
    dist[start] = 0
    step = 0
    while frontier.any():
        step += 1
        grown = frontier.copy()
        grown[1:] |= frontier[:-1]
        grown[:-1] |= frontier[1:]
        row = grown.copy()
        grown[:, 1:] |= row[:, :-1]
        grown[:, :-1] |= row[:, 1:]
        frontier = grown & free & (dist < 0)
        dist[frontier] = step
    return dist


def _cell_of(point) -> tuple[int, int]:
    n = len(_GRID_CENTERS)
    col = min(max(int(point[0] // GRID_CELL), 0), n - 1)
    row = min(max(int(point[1] // GRID_CELL), 0), n - 1)
    return row, col


def _nearest_cell(point, mask: np.ndarray, reach: int = 3) -> tuple[int, int] | None:
    """The cell of ``mask`` nearest to ``point`` within ``reach`` cells of the point's own cell."""
    row, col = _cell_of(point)
    r0, r1 = max(row - reach, 0), min(row + reach + 1, mask.shape[0])
    c0, c1 = max(col - reach, 0), min(col + reach + 1, mask.shape[1])
    rows, cols = np.nonzero(mask[r0:r1, c0:c1])
    if len(rows) == 0:
        return None
    d = (_GRID_CENTERS[cols + c0] - point[0]) ** 2 + (_GRID_CENTERS[rows + r0] - point[1]) ** 2
    k = int(np.argmin(d))
    return int(rows[k] + r0), int(cols[k] + c0)


def _trace_path(dist: np.ndarray, goal: tuple[int, int]) -> list[np.ndarray]:
    """Cell centres from the wavefront's start to ``goal`` (which must be reachable)."""
    path = [goal]
    row, col = goal
    while dist[row, col] > 0:
        best = None
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                if 0 <= r < dist.shape[0] and 0 <= c < dist.shape[1] and dist[r, c] == dist[row, col] - 1:
                    if best is None or abs(dr) + abs(dc) < best[0]:  # prefer straight moves
                        best = (abs(dr) + abs(dc), r, c)
        _, row, col = best
        path.append((row, col))
    return [np.array([_GRID_CENTERS[c], _GRID_CENTERS[r]]) for r, c in reversed(path)]


class PushTExpert:
    """A scripted contact-point pusher that drives the block to the goal pose, then parks the agent on the goal.

    Each push is chosen by trying candidate contact points on the block's outline (pushing along the inward
    normal) on a copy of the simulator (``PushTScene``: the same physics, started with the agent at the
    pre-contact point) and keeping the one whose best prefix brings the block closest to the goal
    (``|Δxy| + angle_weight·|Δangle|``, plus ``travel_weight`` per pixel of the agent's path to the contact point).
    The agent then goes to the pre-contact point along a grid path that keeps clear of the block and inside the
    walls, pushes, and replans. Once the block is in place it parks on the goal's agent position.

    Batched: ``get_actions(infos) -> (N, 2)`` float32 reads ``state`` and ``goal_state`` (plus ``sim_state``,
    ``step_idx`` and the FoV values ``variation.<key>`` / ``variation`` when present). It keeps one plan per env
    index; ``reset(env_ids)`` drops them (a new goal or ``step_idx == 0`` also does).
    """

    def __init__(
        self,
        seed: int = 0,
        push_speed: float = 0.5,
        min_push_speed: float = 0.1,
        push_steps: int = 8,
        angle_weight: float = 50.0,
        travel_weight: float = 0.05,
        noise_std: float = 0.0,
    ):
        if not 0 < min_push_speed <= push_speed <= 1:
            raise ValueError(f"need 0 < min_push_speed <= push_speed <= 1, got {min_push_speed}, {push_speed}")
        if push_steps < 1:
            raise ValueError(f"push_steps must be >= 1, got {push_steps}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.push_speed, self.min_push_speed, self.push_steps = push_speed, min_push_speed, int(push_steps)
        self.angle_weight, self.travel_weight, self.noise_std = angle_weight, travel_weight, noise_std
        self.rng = np.random.default_rng(seed)
        self._plans: dict[int, dict] = {}
        self._scenes: dict[tuple, PushTScene] = {}

    def reset(self, env_ids=None) -> None:
        if env_ids is None:
            self._plans.clear()
            return
        for i in np.atleast_1d(env_ids):
            self._plans.pop(int(i), None)

    # --- inputs ---------------------------------------------------------------------------------------------
    _PHYSICS_KEYS = ("agent.shape", "agent.scale", "agent.angle", "block.shape", "block.scale")

    def _scene(self, infos: Mapping, i: int, n: int) -> PushTScene:
        space = PushTEnv.variation_space
        values = space.defaults()
        nested = infos.get("variation")
        for key in self._PHYSICS_KEYS:
            if f"variation.{key}" in infos:
                arr = np.asarray(infos[f"variation.{key}"])
                values[key] = arr[i] if arr.ndim > len(space[key].shape) else arr
            elif isinstance(nested, Mapping) and key in nested:
                values[key] = np.asarray(nested[key])
            elif isinstance(nested, (list, tuple)) and len(nested) == n:
                values[key] = np.asarray(nested[i][key])
        cache_key = tuple(float(values[k]) for k in self._PHYSICS_KEYS)
        if cache_key not in self._scenes:
            self._scenes[cache_key] = PushTScene(values)
        return self._scenes[cache_key]

    def _cost(self, pose, goal, scene: PushTScene) -> float:
        return float(
            math.hypot(pose[0] - goal[2], pose[1] - goal[3])
            + self.angle_weight * angle_error(pose[2], goal[4], scene.symmetry)
        )

    # --- acting ---------------------------------------------------------------------------------------------
    def get_actions(self, infos: Mapping) -> np.ndarray:
        states = np.atleast_2d(np.asarray(infos["state"], np.float64))
        goals = np.atleast_2d(np.asarray(infos["goal_state"], np.float64))
        n = len(states)
        sims = infos.get("sim_state")
        sims = None if sims is None else np.atleast_2d(np.asarray(sims, np.float64))
        step_idx = infos.get("step_idx")
        step_idx = None if step_idx is None else np.atleast_1d(step_idx)
        actions = np.zeros((n, 2), dtype=np.float32)
        for i in range(n):
            plan = self._plans.get(i)
            new_episode = step_idx is not None and int(step_idx[i]) == 0
            if plan is None or new_episode or not np.array_equal(plan["goal"], goals[i]):
                plan = self._plans[i] = {"goal": goals[i].copy(), "mode": "push", "push": None, "route": None,
                                         "failed": []}
            s = states[i]
            sim = sims[i] if sims is not None else np.array([s[0], s[1], s[5], s[6], s[2], s[3], s[4], 0, 0, 0])
            actions[i] = self._act(self._scene(infos, i, n), sim, goals[i], plan)
        if self.noise_std > 0:
            actions += self.rng.normal(0.0, self.noise_std, actions.shape).astype(np.float32)
        return np.clip(actions, -1.0, 1.0)

    def _act(self, scene: PushTScene, sim: np.ndarray, goal: np.ndarray, plan: dict) -> np.ndarray:
        pose, agent = sim[4:7], sim[:2]
        position_error = math.hypot(pose[0] - goal[2], pose[1] - goal[3])
        angle_err = float(angle_error(pose[2], goal[4], scene.symmetry))
        if plan["mode"] == "park" and (position_error > 12 or angle_err > 0.2):
            plan["mode"], plan["push"] = "push", None
        if plan["mode"] == "push" and position_error < 6 and angle_err < 0.1:
            plan["mode"] = "park"
        push = plan["push"]
        if plan["mode"] == "push" and push is not None and push["phase"] == "approach" and push["age"] > 40:
            plan["failed"].append(push["start"])  # could not get there: try another contact point
            push = None
        if plan["mode"] == "push" and push is None:
            push = plan["push"] = self._plan_push(scene, sim, goal, plan["failed"])
            if push is None:  # no push improves the block pose any more: park
                plan["mode"] = "park"
        if plan["mode"] == "park":
            return self._navigate(scene, agent, goal[:2], pose, plan)
        push["age"] += 1
        if push["phase"] == "approach":
            if np.abs(push["pose"] - pose).max() > 1.0:  # the block was bumped: the contact point moved
                push = plan["push"] = self._plan_push(scene, sim, goal, plan["failed"])
                if push is None:
                    plan["mode"] = "park"
                    return self._navigate(scene, agent, goal[:2], pose, plan)
            if math.hypot(*(push["start"] - agent)) >= 4.0:
                return self._navigate(scene, agent, push["start"], pose, plan)
            push["phase"] = "push"
        push["done"] += 1
        if push["done"] >= push["steps"]:
            plan["push"], plan["failed"] = None, []
        return push["action"]

    def _candidates(self, scene: PushTScene, pose) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pre-contact agent positions and push directions (world frame) around the block's outline."""
        outline, unit = scene.block_outline, scene.block_scale
        rot = rotation(float(pose[2]))
        gap = scene.agent_radius + 3.0
        starts, directions = [], []
        for a, b in zip(outline, np.roll(outline, -1, axis=0)):
            edge = b - a
            length = float(np.linalg.norm(edge))
            normal = np.array([edge[1], -edge[0]]) / length
            count = max(2, int(round(length / unit)) + 1)
            for frac in (np.arange(count) + 0.5) / count:
                starts.append((a + frac * edge + gap * normal) @ rot.T + pose[:2])
                directions.append(-(normal @ rot.T))
        dist = block_distance(np.array(starts), pose, scene.block_rects)
        keep = []
        for start, direction, d in zip(starts, directions, dist):
            inside = np.all(start >= scene.arena_low) and np.all(start <= scene.arena_high)
            if inside and d >= gap - 0.5:
                keep.append((start, direction))
        return keep

    def _plan_push(self, scene: PushTScene, sim: np.ndarray, goal: np.ndarray, failed=()) -> dict | None:
        pose, agent = sim[4:7], sim[:2]
        free = _free_cells(scene, pose)
        start_cell = _nearest_cell(agent, free)
        if start_cell is None:
            return None
        reach = _wavefront(free, start_cell)
        candidates = []
        for start, direction in self._candidates(scene, pose):
            if any(math.hypot(*(start - f)) < 10.0 for f in failed):
                continue
            cell = _nearest_cell(start, reach >= 0, reach=2)
            if cell is not None:
                candidates.append((start, direction, reach[cell] * GRID_CELL))
        if not candidates:
            return None
        cost_now = self._cost(pose, goal, scene)
        speed = float(np.clip(cost_now / 100.0, self.min_push_speed, self.push_speed))
        while True:
            best = None
            for start, direction, travel in candidates:
                action = direction * speed
                for k, block_pose in enumerate(self._rollout(scene, start, pose, action), start=1):
                    cost = self._cost(block_pose, goal, scene)
                    score = cost + self.travel_weight * travel
                    if cost < cost_now - 0.5 and (best is None or score < best[0]):
                        best = (score, start, action, k)
            if best is not None or speed <= self.min_push_speed:
                break
            speed = max(self.min_push_speed, speed / 2)
        if best is None:
            # A local minimum (often a block pinned against a wall): push it away from the walls if some push
            # does, else make a random push; the greedy search resumes from wherever the block ends up.
            clearance_now = self._wall_clearance(scene, pose)
            scored = []
            for start, direction, _ in candidates:
                action = direction * self.push_speed
                final = self._rollout(scene, start, pose, action)[-1]
                scored.append((self._wall_clearance(scene, final), start, action, self.push_steps))
            clearance, start, action, k = max(scored, key=lambda item: item[0])
            if clearance < clearance_now + 2.0:
                _, start, action, k = scored[int(self.rng.integers(len(scored)))]
            best = (0.0, start, action, k)
        _, start, action, k = best
        return {"phase": "approach", "start": start, "action": action.astype(np.float32), "steps": k,
                "done": 0, "age": 0, "pose": np.array(pose)}

    def _rollout(self, scene: PushTScene, start, pose, action) -> list[tuple[float, float, float]]:
        """Block poses after each of ``push_steps`` steps of ``action`` with the agent starting still at ``start``."""
        space, body, block = scene.build_space([*start, 0.0, 0.0, *pose, 0.0, 0.0, 0.0],
                                               wall_reach=30.0 * self.push_steps)
        poses = []
        for _ in range(self.push_steps):
            scene.substeps(space, body, action)
            poses.append((block.position.x, block.position.y, block.angle))
        return poses

    @staticmethod
    def _wall_clearance(scene: PushTScene, pose) -> float:
        corners = pose[:2] + scene.block_outline @ rotation(float(pose[2])).T
        return float(min((corners - ARENA_LOW).min(), (ARENA_HIGH - corners).min()))

    def _route(self, scene: PushTScene, agent, target, pose) -> list[np.ndarray] | None:
        """Waypoints from the agent to ``target`` that keep clear of the block (None if there is no way)."""
        free = _free_cells(scene, pose)
        start = _nearest_cell(agent, free)
        if start is None:
            return None
        reach = _wavefront(free, start)
        end = _nearest_cell(target, reach >= 0, reach=2)
        if end is None:
            return None
        return _trace_path(reach, end) + [np.asarray(target, np.float64)]

    def _navigate(self, scene: PushTScene, agent, target, pose, plan: dict) -> np.ndarray:
        """One action toward ``target``: straight when the way is clear, else along a grid route around the block."""
        target = np.clip(np.asarray(target, np.float64), scene.arena_low, scene.arena_high)
        route = plan["route"]
        stale = (
            route is None
            or not np.array_equal(route["target"], target)
            or np.abs(route["pose"] - pose).max() > 1.0
            or route["age"] > 30
        )
        if stale:
            waypoints = self._route(scene, agent, target, pose)
            route = plan["route"] = {"target": target, "pose": np.array(pose), "age": 0,
                                     "waypoints": waypoints if waypoints is not None else [target]}
        route["age"] += 1
        waypoints = route["waypoints"]
        # aim at the farthest of the next waypoints in straight sight (the first one is where the route starts)
        ahead = waypoints[: min(len(waypoints), 12)]
        chosen = min(1, len(ahead) - 1)  # nothing in sight (e.g. grazing the block): follow the grid
        for j in range(len(ahead) - 1, 0, -1):
            delta = ahead[j] - agent
            samples = agent + np.linspace(0.0, 1.0, max(2, int(math.hypot(*delta) / 4.0) + 1))[1:, None] * delta
            dist = block_distance(samples, pose, scene.block_rects)
            if np.all(dist >= scene.agent_radius + 2.0):
                chosen = j
                break
        aim = ahead[chosen]
        route["waypoints"] = waypoints[chosen:]
        return np.clip((aim - agent) / ACTION_SCALE, -1.0, 1.0)
