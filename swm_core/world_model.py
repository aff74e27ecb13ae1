"""The world-model contract: what a model must provide for ``MPCPolicy``, the solvers and the checkpoints.

A new world model is an ``nn.Module`` in its own script with the attributes and methods below; nothing else in
swm needs to know about it. ``WorldModel`` covers what every solver relies on; ``LatentWorldModel`` adds what the
latent-space solvers (GRASP) need, and ``ConstrainedWorldModel`` what the augmented Lagrangian reads when present.

Shapes: ``B`` envs planned together, ``S`` candidates per env, ``H`` model steps, ``A`` the env's action size.
Each model step covers ``action_block`` env steps, so a candidate's last dim is ``action_block * A``: the block's
actions concatenated, env step first. ``infos`` is the batch of :attr:`swm_core.world.World.infos` entries the
planner needs (``pixels``, ``goal``, ``proprio``, ``goal_proprio``, ``state``, ``goal_state``: those present, plus
the keys a model names in an optional ``plan_keys`` attribute, e.g. ``sim_state``), as tensors on the planning
device, one row per env.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class WorldModel(Protocol):
    """What every solver and ``MPCPolicy`` rely on."""

    action_dim: int
    """A: the env's action size per env step (``MPCPolicy`` checks it against the env's action space)"""
    action_block: int
    """env steps per model step (the paper's frameskip); candidates hold ``action_block * action_dim`` numbers"""
    image_size: int
    """frame resolution the model was trained on; the solver mains render the env at this size"""
    default_solver: str
    """the solver its paper plans with: a ``solvers/<name>_plan.py`` name (``"cem"``, ``"mppi"``) or the model
    script's own planner (TD-MPC2: ``"tdmpc2"``)"""

    def get_cost(self, infos: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """Planning cost of action sequences: candidates (B, S, H, action_block * A) -> costs (B, S), lower is
        better. Must be differentiable in ``candidates`` for the gradient-based solvers (GD, GRASP, Lagrangian)."""
        ...

    def set_stats(self, stats: dict) -> None:
        """Receive the normalization statistics saved with the checkpoint (e.g. action and proprio mean/std);
        ``load_checkpoint`` calls it, so the model normalizes raw env actions itself."""
        ...


@runtime_checkable
class LatentWorldModel(WorldModel, Protocol):
    """Adds the latent-space access that GRASP plans with (optimizing actions and intermediate latents)."""

    def plan_latents(self, infos: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(z0, zg): the encoded current observation and goal, each (B, *Z)."""
        ...

    def step_latent(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """One model step: latents z (B, N, *Z) and raw action blocks a (B, N, action_block * A) -> (B, N, *Z)."""
        ...


@runtime_checkable
class ConstrainedWorldModel(WorldModel, Protocol):
    """Adds inequality constraints g(candidates) <= 0 for the augmented-Lagrangian solver."""

    def get_constraints(self, infos: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """Constraint values (B, S, C) of candidates (B, S, H, action_block * A); feasible where every value <= 0."""
        ...
