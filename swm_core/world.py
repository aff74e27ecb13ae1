"""World: N copies of an env behind one batched ``infos`` dict, with collection and the two evaluation protocols.

``reset()``/``step()`` return nothing; they update ``world.infos`` (numpy arrays, one row per env): ``pixels``,
``goal``, ``proprio``, ``goal_proprio``, ``state``, ``goal_state``, ``sim_state``, ``action``, ``reward``,
``terminated``, ``truncated``, ``success``, ``step_idx`` and ``variation.<key>`` for every FoV leaf.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import swm_core.envs  # noqa: F401  (registers the native envs)

RECORDED = ("pixels", "goal", "proprio", "goal_proprio", "state", "goal_state", "sim_state")


def _check_env_id(env_id: str) -> None:
    if env_id not in gym.registry and env_id.startswith("ALE/"):
        from swm_core.blackbox import register_optional

        register_optional(env_id)
    if env_id not in gym.registry:
        native = sorted(k for k in gym.registry if k.startswith("swm/"))
        raise ValueError(f"unknown env id {env_id!r}; World runs the native swm envs {native} and, as black boxes "
                         "(frames only, visual wrappers), any registered Gymnasium id with an rgb_array render")


def stack_infos(infos: Sequence[dict]) -> dict[str, np.ndarray]:
    """Single-env info dicts -> World's batched layout (``variation`` flattened to ``variation.<key>``)."""
    if not infos:
        raise ValueError("stack_infos needs at least one info dict")
    out = {}
    for key in infos[0]:
        if key == "variation":
            for vkey in infos[0]["variation"]:
                out["variation." + vkey] = np.stack([np.asarray(info["variation"][vkey]) for info in infos])
        else:
            out[key] = np.stack([np.asarray(info[key]) for info in infos])
    return out


def _check_count(name: str, value) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")


def evaluation_seeds(seed: int, episodes: int) -> list[int]:
    """The reset seeds of ``World.evaluate``'s episodes: derived from (seed, a tag), so they are not ``collect``'s
    ``seed + e`` (an evaluation would otherwise replay the training episodes' starts and goals)."""
    state = np.random.SeedSequence([int(seed), 0x5EED_E7A1]).generate_state(episodes, dtype=np.uint32)
    return [int(s) & 0x7FFFFFFF for s in state]


class World:
    """A batch of ``num_envs`` envs of ``env_id`` stepped together by one policy.

    ``wrappers``: visual wrappers applied to every env, each ``"name"``, ``(name, kwargs)`` or a callable
    ``env -> env`` (see :mod:`swm_core.wrappers`); each env gets its own instances. They rewrite the observed
    ``pixels`` only, never the goal (docs/notes/robustness.md)."""

    def __init__(self, env_id: str, num_envs: int = 1, image_size: int = 64, max_episode_steps: int = 100,
                 seed: int = 0, wrappers: Sequence = (), env_kwargs: dict | None = None):
        _check_env_id(env_id)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.env_id, self.num_envs, self.image_size = env_id, num_envs, image_size
        self.max_episode_steps, self.seed = max_episode_steps, seed
        self.wrapped = bool(wrappers)  # collect() then also records the frames before the wrappers (pixels_clean)
        self.envs = [self._make_env(env_id, image_size, wrappers, env_kwargs or {}) for _ in range(num_envs)]
        self.action_space = self.envs[0].action_space
        self.variation_space = getattr(self.envs[0].unwrapped, "variation_space", None)
        self.control_hz = getattr(self.envs[0].unwrapped, "control_hz", None)
        self._ends_on_done = bool(getattr(self.envs[0].unwrapped, "ends_on_done", False))  # black-box envs
        self.policy = None
        self.infos: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(seed)
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._options: list[dict | None] = [None] * num_envs  # the last reset()'s options per env

    @staticmethod
    def _make_env(env_id, image_size, wrappers, env_kwargs):
        from swm_core.envs.base import SWMEnv

        def apply_wrappers(env, specs):  # the wrappers module is imported only when wrappers are asked for
            from swm_core.wrappers import apply_wrappers as apply

            return apply(env, specs)

        def native() -> list[str]:
            return sorted(k for k in gym.registry if k.startswith("swm/"))

        creator = gym.registry[env_id].entry_point
        if isinstance(creator, str):
            creator = gym.envs.registration.load_env_creator(creator)
        if not (isinstance(creator, type) and issubclass(creator, SWMEnv)):  # any other Gymnasium env: frames only
            from swm_core.blackbox import BlackBoxEnv

            env = BlackBoxEnv(env_id, image_size=image_size, **env_kwargs)
            return apply_wrappers(env, wrappers) if wrappers else env
        try:
            env = gym.make(env_id, image_size=image_size, disable_env_checker=True, **env_kwargs).unwrapped
        except TypeError as err:
            raise ValueError(f"env {env_id!r} cannot be made as a swm env ({err}); World runs swm envs (states, "
                             f"goals and FoV values), e.g. the native {native()}") from None
        if not isinstance(env, SWMEnv):
            raise ValueError(f"env {env_id!r} is a {type(env).__name__}, not a swm env (SWMEnv: states, goals and "
                             f"FoV values); native swm envs: {native()}")
        return apply_wrappers(env, wrappers) if wrappers else env

    # --- batched infos ------------------------------------------------------------------------------------------
    def _write(self, i: int, info: dict, action=None, reward=0.0, terminated=False, truncated=False, step=0):
        if not self.infos:
            self._allocate(info)
        infos = self.infos
        for key in RECORDED:
            infos[key][i] = info[key]
        if action is None:  # FoV values are held for the whole episode: written at reset only
            for key, value in info["variation"].items():
                infos["variation." + key][i] = value
        infos["success"][i] = info["success"]
        infos["reward"][i] = reward
        infos["terminated"][i] = terminated
        infos["truncated"][i] = truncated
        infos["step_idx"][i] = step
        if action is not None:
            infos["action"][i] = action

    def _allocate(self, info: dict) -> None:
        n = self.num_envs
        for key in RECORDED:
            value = np.asarray(info[key])
            self.infos[key] = np.zeros((n, *value.shape), dtype=value.dtype)
        for key, value in info["variation"].items():
            value = np.asarray(value)
            self.infos["variation." + key] = np.zeros((n, *value.shape), dtype=value.dtype)
        space = self.action_space
        self.infos["action"] = np.full((n, *space.shape), np.nan if space.dtype.kind == "f" else 0, dtype=space.dtype)
        self.infos["success"] = np.zeros(n, dtype=bool)
        self.infos["reward"] = np.zeros(n, dtype=np.float32)
        self.infos["terminated"] = np.zeros(n, dtype=bool)
        self.infos["truncated"] = np.zeros(n, dtype=bool)
        self.infos["step_idx"] = np.zeros(n, dtype=np.int64)
        self.infos["active"] = np.ones(n, dtype=bool)

    def _reset_env(self, i: int, seed: int | None, options: dict | None) -> None:
        _, info = self.envs[i].reset(seed=seed, options=options)
        self._write(i, info)
        self.infos["active"][i] = True  # an evaluation's idle slots were marked inactive; a reset slot acts again
        self._needs_reset[i] = False

    def _budget(self, name: str, value: int | None) -> int:
        """Steps allowed per episode: ``value``, or the World's max_episode_steps when None; must be >= 1."""
        if value is None:
            return self.max_episode_steps
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1 env steps, got {value!r}")
        return int(value)

    # --- Gym-like control -----------------------------------------------------------------------------------------
    def set_policy(self, policy) -> None:
        if hasattr(policy, "set_action_space"):
            policy.set_action_space(self.action_space)
        self.policy = policy

    def reset(self, seed: int | None = None, options: dict | Sequence[dict] | None = None) -> None:
        """Reset every env; env ``i`` gets seed ``seed + i`` (or a seed drawn from the world's generator)."""
        base = int(self._rng.integers(2**31)) if seed is None else int(seed)
        per_env = options if isinstance(options, (list, tuple)) else [options] * self.num_envs
        if len(per_env) != self.num_envs:
            raise ValueError(f"options is a list of {len(per_env)} dicts, but the World has {self.num_envs} envs: "
                             "pass one dict for all envs or one per env")
        self._options = list(per_env)  # step()'s automatic resets keep them
        for i in range(self.num_envs):
            self._reset_env(i, base + i, per_env[i])
        if self.policy is not None and hasattr(self.policy, "reset"):
            self.policy.reset(np.arange(self.num_envs))

    def step(self, actions: np.ndarray | None = None) -> None:
        """Step every env with ``actions`` or the attached policy's; an env whose episode ended is reset instead."""
        if not self.infos:
            self.reset(seed=self.seed)
        if actions is None:
            if self.policy is None:
                raise RuntimeError("World.step() needs actions or a policy attached with set_policy()")
            actions = self.policy.get_actions(self.infos)
        actions = self._check_actions(actions)
        restarted = []
        for i in range(self.num_envs):
            if self._needs_reset[i]:
                self._reset_env(i, int(self._rng.integers(2**31)), self._options[i])
                restarted.append(i)
            else:
                self._step_env(i, actions[i])
        if restarted and self.policy is not None and hasattr(self.policy, "reset"):
            self.policy.reset(np.asarray(restarted))

    def _step_env(self, i: int, action, budget: int | None = None) -> bool:
        """Step env ``i``; ``truncated`` marks the last step the budget allows (default: max_episode_steps)."""
        _, reward, terminated, truncated, info = self.envs[i].step(action)
        step = int(self.infos["step_idx"][i]) + 1
        truncated = truncated or step >= (self.max_episode_steps if budget is None else budget)
        self._write(i, info, action, reward, terminated, truncated, step)
        done = terminated or truncated
        self._needs_reset[i] = done
        return done

    def _check_actions(self, actions) -> np.ndarray:
        actions = np.asarray(actions)
        expected = (self.num_envs, *self.action_space.shape)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected} for {self.num_envs} envs of "
                             f"{self.action_space}, got {actions.shape}")
        return actions

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- episodic loops -----------------------------------------------------------------------------------------
    def _run_episodes(self, policy, starts: list[dict], budget: int, stop_on_success: bool,
                      on_step=None, on_end=None, desc: str | None = None) -> dict:
        """Run ``len(starts)`` episodes, assigned to env slots up front (episode e -> slot e % N), so that
        quick successes cannot crowd out slow failures. ``starts[e]`` holds ``seed`` and ``options``
        Returns per-episode results."""
        n_ep = len(starts)
        if n_ep < 1:
            raise ValueError(f"episodes must be >= 1, got {n_ep}")
        policy = policy if policy is not None else self.policy
        if policy is None:
            raise ValueError("no policy: pass one or attach it with set_policy()")
        if hasattr(policy, "set_action_space"):
            policy.set_action_space(self.action_space)
        queues = [list(range(i, n_ep, self.num_envs)) for i in range(self.num_envs)]
        current = np.full(self.num_envs, -1)
        success = np.zeros(n_ep, dtype=bool)
        solved_at_start = np.zeros(n_ep, dtype=bool)
        steps_to_success = np.full(n_ep, -1, dtype=np.int64)
        lengths = np.zeros(n_ep, dtype=np.int64)
        variations: list[dict] = [{} for _ in range(n_ep)]

        def start(slot: int) -> bool:
            if not queues[slot]:
                current[slot] = -1
                self.infos["active"][slot] = False
                return False
            e = queues[slot].pop(0)
            current[slot] = e
            self._reset_env(slot, starts[e]["seed"], starts[e].get("options"))
            self.infos["active"][slot] = True
            solved_at_start[e] = self.infos["success"][slot]
            variations[e] = {k[len("variation."):]: self.infos[k][slot].copy()
                             for k in self.infos if k.startswith("variation.")}
            if on_step is not None:
                on_step(slot, e, None)
            return True

        for slot in range(self.num_envs):
            if self.infos:
                self.infos["active"][slot] = False
            start(slot)
        if hasattr(policy, "reset"):
            policy.reset(np.flatnonzero(current >= 0))
        bar = tqdm(total=n_ep, desc=desc, disable=desc is None, leave=False)
        while (current >= 0).any():
            actions = self._check_actions(policy.get_actions(self.infos))
            restarted = []
            for slot in np.flatnonzero(current >= 0):
                e = current[slot]
                self._step_env(slot, actions[slot], budget)
                if on_step is not None:
                    on_step(slot, e, actions[slot])
                step = int(self.infos["step_idx"][slot])
                if self.infos["success"][slot] and not success[e]:
                    success[e], steps_to_success[e] = True, step
                ended = self._ends_on_done and (self.infos["terminated"][slot] or self.infos["truncated"][slot])
                if step >= budget or (stop_on_success and success[e]) or ended:
                    lengths[e] = step
                    if on_end is not None:
                        on_end(slot, e)
                    bar.update(1)
                    if start(slot):
                        restarted.append(slot)
            if restarted and hasattr(policy, "reset"):
                policy.reset(np.asarray(restarted))
        bar.close()
        self._needs_reset[:] = True
        return {
            "episodes": n_ep,
            "success_rate": float(success.mean()),
            "success": success,
            "steps_to_success": steps_to_success,
            "solved_at_start": solved_at_start,
            "solved_at_start_rate": float(solved_at_start.mean()),
            "episode_length": lengths,
            "seeds": np.array([s["seed"] for s in starts]),
            "variations": variations,
        }

    def evaluate(self, policy=None, episodes: int = 10, seed: int = 0, options: dict | None = None,
                 max_episode_steps: int | None = None, video: str | Path | None = None,
                 video_episodes: int = 4) -> dict:
        """Episodic evaluation: each episode resets the env, which defines the goal; an episode ends at its first
        success or after ``max_episode_steps``. Returns success rate, per-episode success, steps to success, seeds,
        the FoV values used and the fraction already solved at the start.

        Episode e resets with the seed ``evaluation_seeds(seed, episodes)[e]``, derived from ``seed`` and unlike
        ``collect``'s ``seed + e``: an evaluation with the seed a dataset was collected with does not replay the
        dataset's starts and goals. ``options`` go to every reset: a FoV shift (``variation`` keys sampled,
        ``variation_values`` set) holds for the whole episode and the env renders the goal under it too."""
        _check_count("episodes", episodes)
        budget = self._budget("max_episode_steps", max_episode_steps)
        starts = [{"seed": s, "options": options} for s in evaluation_seeds(seed, episodes)]
        recorder = _VideoRecorder(self, video, video_episodes)
        result = self._run_episodes(policy, starts, budget, True, on_step=recorder.on_step if video else None)
        recorder.save()
        return result

    def evaluate_from_dataset(self, dataset, episodes: int = 50, goal_offset: int = 25, eval_budget: int = 50,
                              seed: int = 0, policy=None, episode_ids: Sequence[int] | None = None,
                              video: str | Path | None = None, video_episodes: int = 4,
                              storage_options: dict | None = None, options: dict | None = None) -> dict:
        """The dataset-driven protocol: start at a recorded step t (full simulator state and FoV values
        restored; data without a ``sim_state`` column: the simulator state the env derives from the recorded
        ``state``, see ``SWMEnv.sim_state_from_state``), goal = the recorded frame ``goal_offset`` steps later in the same episode, at most
        ``eval_budget`` env steps. ``episode_ids`` restricts the recorded episodes used (e.g. a held-out split).
        ``options``: a FoV shift applied on top of the restored values (see :meth:`dataset_starts`)."""
        eval_budget = self._budget("eval_budget", eval_budget)
        starts, pairs = self.dataset_starts(dataset, episodes, goal_offset, seed, episode_ids, storage_options,
                                            options)
        recorder = _VideoRecorder(self, video, video_episodes)
        result = self._run_episodes(policy, starts, eval_budget, True, on_step=recorder.on_step if video else None)
        recorder.save()
        result.update(pairs)
        return result

    def dataset_starts(self, dataset, episodes: int, goal_offset: int, seed: int = 0,
                       episode_ids: Sequence[int] | None = None, storage_options: dict | None = None,
                       options: dict | None = None):
        """Draw ``episodes`` (episode, t) pairs with t + goal_offset inside the episode; return the reset specs
        (simulator state, FoV values, goal state and goal frame) and the pairs drawn.

        The goal frame is the recorded clean frame (``pixels_clean`` when the dataset was collected under visual
        wrappers, else ``pixels``). A FoV shift in ``options`` (``variation``: keys sampled every episode,
        ``variation_values``: values set) replaces those leaves of the recorded values; the env then renders the
        goal from the recorded goal state under the shifted values instead."""
        from swm_core.data import TrajectoryDataset, open_dataset

        _check_count("episodes", episodes)
        if not getattr(self.envs[0].unwrapped, "restorable", True):
            raise ValueError(f"{self.env_id!r} runs as a black-box Gymnasium env: its simulator state cannot be saved "
                             "or restored, so the dataset-driven evaluation (start at a recorded state, reach a "
                             "recorded goal) is not available for it; use World.evaluate or a native swm env")
        if int(goal_offset) < 1:
            raise ValueError(f"goal_offset must be >= 1 env steps (the goal is that many steps after the start), "
                             f"got {goal_offset!r}")
        shift = self._fov_shift(options)
        ds = dataset if isinstance(dataset, TrajectoryDataset) else open_dataset(dataset, storage_options)
        env_id, size = ds.metadata.get("env_id"), ds.metadata.get("image_size")
        if env_id is not None and not swm_core.envs.same_dynamics(env_id, self.env_id):
            raise ValueError(f"dataset {ds.path} was recorded on {env_id!r}, but this World runs {self.env_id!r}")
        if size is not None and int(size) != self.image_size:
            raise ValueError(f"dataset {ds.path} holds {size}px frames, but this World renders {self.image_size}px; "
                             f"use World(..., image_size={size})")
        for column in ("state", "pixels"):
            if column not in ds.columns:
                raise ValueError(f"dataset {ds.path} lacks column {column!r} needed to restore episodes; "
                                 f"columns: {sorted(ds.columns)}")
        from_state = "sim_state" not in ds.columns  # e.g. recorded by the stable-worldmodel package
        env = self.envs[0].unwrapped
        if from_state:
            try:
                env.sim_state_from_state(np.asarray(ds.read_rows(np.array([0]), ["state"])["state"][0]))
            except ValueError as err:
                raise ValueError(f"dataset {ds.path} has no 'sim_state' column and {err}") from None
        ids = np.asarray(ds.episode_ids if episode_ids is None else episode_ids)
        lengths = dict(zip(ds.episode_ids.tolist(), ds.episode_lengths.tolist()))
        offsets = dict(zip(ds.episode_ids.tolist(), ds.episode_offsets.tolist()))
        unknown = [int(e) for e in ids if int(e) not in lengths]
        if unknown:
            raise ValueError(f"episode ids {unknown[:5]} are not in dataset {ds.path}")
        usable = np.array([e for e in ids if lengths[int(e)] > goal_offset])
        if len(usable) == 0:
            raise ValueError(f"no episode of {ds.path} is longer than goal_offset={goal_offset} steps")
        rng = np.random.default_rng(seed)
        chosen = rng.choice(usable, size=episodes, replace=len(usable) < episodes)
        t0 = np.array([rng.integers(0, lengths[int(e)] - goal_offset) for e in chosen])
        rows = np.array([offsets[int(e)] for e in chosen]) + t0
        fov_columns = [c for c in ds.columns if c.startswith("variation__")]
        start_rows = ds.read_rows(rows, ["state", *fov_columns] + ([] if from_state else ["sim_state"]))
        if from_state:
            start_rows["sim_state"] = [env.sim_state_from_state(s) for s in start_rows["state"]]
        clean = "pixels_clean" if "pixels_clean" in ds.columns else "pixels"
        goal_rows = ds.read_rows(rows + goal_offset, ["state"] + ([] if shift else [clean]))
        starts = []
        for k in range(episodes):
            values = {c[len("variation__"):].replace("__", "."): start_rows[c][k] for c in fov_columns}
            reset = {"sim_state": start_rows["sim_state"][k], "goal_state": goal_rows["state"][k],
                     "variation_values": values}
            if shift is None:
                reset["goal_pixels"] = goal_rows[clean][k]
            else:  # sampled leaves are drawn by the env's reset; the goal is rendered under the shifted values
                values = {key: v for key, v in values.items() if key not in shift[0]}
                reset.update(variation=shift[0], variation_values={**values, **shift[1]})
            starts.append({"seed": seed + k, "options": reset})
        pairs = {"episode_idx": chosen.astype(np.int64), "start_step": t0.astype(np.int64),
                 "start_state": start_rows["state"], "goal_state": goal_rows["state"],
                 "restored_from_state": np.full(episodes, from_state)}
        return starts, pairs

    def _fov_shift(self, options: dict | None) -> tuple[list[str], dict] | None:
        """(leaves sampled, values set) of a dataset-driven evaluation's FoV shift, validated against the env's
        space; None when ``options`` shift nothing."""
        extra = sorted(set(options or {}) - {"variation", "variation_values"})
        if extra:
            raise ValueError(f"the dataset-driven protocol takes the options 'variation' and 'variation_values' (a "
                             f"FoV shift; starts, goals and FoV values come from the dataset), got {extra}")
        if not options or not (options.get("variation") or options.get("variation_values")):
            return None
        space = self.variation_space
        return space.sampled_keys((), options), space.validate(options.get("variation_values") or {})

    def collect(self, path, episodes: int, seed: int = 0, options: dict | None = None, policy=None,
                encoding: str = "jpeg", max_episode_steps: int | None = None, stop_on_success: bool = False,
                commit_every: int = 50, storage_options: dict | None = None, progress: bool = True,
                jpeg_subsampling: str = "444") -> dict:
        """Record ``episodes`` episodes to the Lance dataset at ``path`` (appending if it exists). Every
        ``commit_every`` finished episodes are committed as one atomic Lance version, so an interrupted run
        leaves the last commit readable and a rerun adds to it. ``jpeg_subsampling``: see LanceWriter. Under visual
        wrappers ``pixels`` holds the wrapped frames and ``pixels_clean`` the env's own (goals stay clean)."""
        from swm_core.jpeg import check_jpeg_subsampling
        from swm_core.lance_writer import LanceWriter

        jpeg_subsampling = check_jpeg_subsampling(jpeg_subsampling)  # before any episode runs
        _check_count("episodes", episodes)
        _check_count("commit_every", commit_every)
        budget = self._budget("max_episode_steps", max_episode_steps)
        starts = [{"seed": seed + e, "options": options} for e in range(episodes)]
        buffers: list[dict[str, list]] = [dict() for _ in range(self.num_envs)]
        held: list[dict[str, np.ndarray]] = [dict() for _ in range(self.num_envs)]
        per_step = [*RECORDED, "action", "reward", "terminated", "truncated", "success", "step_idx"]
        # the action after an episode's last observation does not exist: NaN for continuous actions; discrete ones
        # are stored as the integers they are (int64), with -1 there (never a valid index)
        discrete = self.action_space.dtype.kind in "iu"
        action_dtype, no_action = (np.int64, -1) if discrete else (np.float32, np.nan)
        writer = None

        def on_step(slot, e, action):
            nonlocal writer
            if writer is None:
                writer = LanceWriter(path, env_id=self.env_id, image_size=self.image_size, encoding=encoding,
                                     jpeg_subsampling=jpeg_subsampling, control_hz=self.control_hz,
                                     storage_options=storage_options,
                                     fov_keys=[k[len("variation."):] for k in self.infos if k.startswith("variation.")])
            buf = buffers[slot]
            if action is None:  # a fresh episode: record observation 0 and the FoV values held for it
                buf.clear()
                held[slot] = {k: v[slot].copy() for k, v in self.infos.items() if k.startswith("variation.")}
            else:  # the action taken after the previous observation
                buf["action"][-1] = np.asarray(action, dtype=action_dtype)
            for key in per_step:
                buf.setdefault(key, []).append(self.infos[key][slot].copy())
            if self.wrapped:
                buf.setdefault("pixels_clean", []).append(np.asarray(self.envs[slot].unwrapped.render()))
            buf["action"][-1] = np.full(self.action_space.shape, no_action, dtype=action_dtype)

        done = 0

        def on_end(slot, e):  # episodes are written as they finish (with num_envs > 1 not always in seed order)
            nonlocal done
            episode = {k: np.stack(v) for k, v in buffers[slot].items()}
            length = len(episode["action"])
            episode.update({k: np.repeat(v[None], length, axis=0) for k, v in held[slot].items()})
            writer.add_episode(episode)
            done += 1
            if done % commit_every == 0:
                writer.commit()

        result = self._run_episodes(policy, starts, budget, stop_on_success, on_step=on_step, on_end=on_end,
                                    desc=f"collect {self.env_id}" if progress else None)
        writer.commit()
        result["path"] = str(path)
        return result


class _VideoRecorder:
    """Side-by-side (agent | goal) video of the first ``episodes`` episodes, one after another."""

    def __init__(self, world: World, path, episodes: int):
        self.world, self.path, self.episodes = world, path, episodes
        self.frames: dict[int, list[np.ndarray]] = {}

    def on_step(self, slot, e, action):
        if e < self.episodes:
            infos = self.world.infos
            self.frames.setdefault(e, []).append(np.concatenate([infos["pixels"][slot], infos["goal"][slot]], 1))

    def save(self) -> None:
        if not self.path or not self.frames:
            return
        from swm_core.video import write_video

        frames = [f for e in sorted(self.frames) for f in self.frames[e]]
        write_video(self.path, frames, fps=int(self.world.control_hz or 10))
