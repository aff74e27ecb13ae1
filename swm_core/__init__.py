"""swm_core: the small shared core of swm — World, policies, FoV spaces, native envs, data, checkpoints."""

from swm_core.checkpoint import load_checkpoint, save_checkpoint
from swm_core.policy import (
    FeedForwardPolicy,
    MixturePolicy,
    MPCPolicy,
    NoOpPolicy,
    RandomPolicy,
    expert_policy,
)
from swm_core.spaces import RGB, Box, Discrete, VariationSpace
from swm_core.world import World
from swm_core.world_model import WorldModel

__all__ = [
    "World", "RandomPolicy", "NoOpPolicy", "MixturePolicy", "FeedForwardPolicy", "MPCPolicy", "expert_policy",
    "VariationSpace", "Box", "RGB", "Discrete", "save_checkpoint", "load_checkpoint", "WorldModel",
]
