# GCIVL baseline: goal-conditioned implicit V-learning with an AWR actor, from pixels (OGBench recipe). docs/reference.md §4
"""Goal-conditioned implicit V-learning (GCIVL) as one script: V(s, g) by expectile regression toward its own TD
target (no Q), and an actor extracted by advantage-weighted regression with the advantage V(s', g) - V(s, g).

Model. The observation frame and the goal frame (and, where the dataset has it, the normalised proprio vector of
each, `--use-proprio`) go into every network. Two image encoders:
- `--encoder conv` (the CPU preset), trained end to end: the two frames are stacked channel-wise (6 channels) and
  go through a stride-2 conv stack (k4 s2 p1, GroupNorm, GELU), flattened, Linear -> feature_dim: OGBench's early
  fusion of pixel goals. The value and the actor each have their own encoder (as OGBench's modules do).
- any timm model name: one frozen pretrained encoder shared by all networks (`--encoder-weights PATH`, the same
  loader as DINO-WM's: timm's own, else tensors renamed in order; timm's hub without a file; random with
  `--no-pretrained`). Each frame is encoded on its own (timm's pooled features, or with `--feature-grid K` the
  feature map average-pooled to K x K), never trained; each network maps the pair with its own Linear.
The value network has two heads (MLP, GELU, LayerNorm) on its encoder, and an EMA target copy (rate
`--target-tau` 0.005). The actor is an MLP to the mean of a Gaussian with a constant unit std (OGBench).

Loss (OGBench's GCIVL; rewards and goals from swm_core.goals): reward -1 and mask 1, or 0 and 0 when the goal is
the current frame; gamma 0.99 per env step.
    q_i = r + gamma mask V'_i(s', g);   adv = r + gamma mask min_i V'_i(s', g) - mean_i V'_i(s, g)
    value = sum_i mean |tau - 1(adv < 0)| (q_i - V_i(s, g))^2,  tau = --expectile 0.9
    actor = -mean min(exp(alpha (V(s', g_a) - V(s, g_a))), 100) log pi(a | s, g_a),  alpha 10
Value goals: current 0.2 / geometric future 0.5 / another episode 0.3; actor goals: a uniform later frame of the
same episode. Adam, lr 3e-4, one optimizer over value and actor (the actor's weights are computed without grad).
Acting: the actor's mean, clipped to the action space, one env step per call (swm_core.policy.FeedForwardPolicy
calls `model.get_action(infos)`).

Evaluation (`--eval-dataset`, after training or with `--eval-only --resume CKPT`): the dataset-driven protocol
(and the episodic one with `--episodic`) with the policy, a no-op and a random policy on the same starts and
goals; prints the solver mains' table and writes their --output-json layout (the policy's row is 'gcivl').
What differs from OGBench's implementation and why: docs/notes/gcrl.md.

Run: python baselines/gcivl_train.py --preset cpu --dataset data/tr.lance --eval-dataset data/tr_val.lance
"""

import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from torch import nn

from swm_core.checkpoint import check_class, check_env, load_checkpoint, read_checkpoint, save_checkpoint
from swm_core.data import open_dataset
from swm_core.distributed import (
    ShardedBatches,
    average_gradients,
    broadcast_module,
    mean_over_processes,
    setup,
    teardown,
)
from swm_core.goals import GoalDataset
from swm_core.policy import FeedForwardPolicy, NoOpPolicy, RandomPolicy
from swm_core.s3 import is_s3, s3_storage_options
from swm_core.shift import parse_shift
from swm_core.train_state import LossLog, seed_step
from swm_core.train_state import load as load_train_state
from swm_core.train_state import save as save_train_state
from swm_core.world import World

ALGO = "gcivl"


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch, data order, goal draws)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    device: str = "auto"
    """torch device: `auto` picks cuda if available, else mps, else cpu (under torchrun: cuda:LOCAL_RANK or cpu)"""
    track: bool = False
    """if toggled, log to Weights and Biases (offline automatically when WANDB_API_KEY is unset)"""
    wandb_project: str = "swm"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    preset: Literal["paper", "cpu"] = "paper"
    """defaults to start from: `paper` (OGBench's sizes on frozen DINOv2 features, GPU) or `cpu` (small conv net
    trained end to end at 64 px, a few CPU minutes)"""

    # data
    dataset: str = "data/two_room.lance"
    """path (or s3:// URI) of the Lance trajectory dataset"""
    dataset_version: str | None = None
    """version number or tag of --dataset to train on (default: its latest version)"""
    endpoint: str | None = None
    """S3 endpoint URL for an s3:// --dataset (default: $AWS_ENDPOINT_URL), e.g. http://127.0.0.1:9000"""
    access_key_id: str | None = None
    """S3 access key (default: $AWS_ACCESS_KEY_ID)"""
    secret_access_key: str | None = None
    """S3 secret key (default: $AWS_SECRET_ACCESS_KEY)"""
    region: str | None = None
    """S3 region (default: $AWS_REGION)"""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation"""
    num_workers: int = 4
    """DataLoader worker processes (each draws goals from its own random stream)"""
    use_proprio: bool = True
    """condition on the proprio vectors of the observation and the goal too, when the dataset has `proprio`"""
    discount: float = 0.99
    """gamma per env step: the parameter of geometric goal offsets (Geometric(1 - discount))"""
    actor_p_current: float = 0.0
    """probability that the actor's goal is the current frame"""
    actor_p_future: float = 1.0
    """probability that the actor's goal is a later frame of the same episode"""
    actor_p_random: float = 0.0
    """probability that the actor's goal is a frame of another episode"""
    actor_geometric: bool = False
    """geometric future offsets for the actor's goals (default: uniform over the rest of the episode)"""
    value_p_current: float = 0.2
    """probability that the value's goal is the current frame (reward 0, mask 0)"""
    value_p_future: float = 0.5
    """probability that the value's goal is a later frame of the same episode"""
    value_p_random: float = 0.3
    """probability that the value's goal is a frame of another episode"""
    value_geometric: bool = True
    """geometric future offsets (Geometric(1 - discount)) for the value's goals (else uniform)"""
    expectile: float = 0.9
    """tau of the expectile regression of V"""
    alpha: float = 10.0
    """AWR inverse temperature: actor weights min(exp(alpha * advantage), max_weight)"""
    max_weight: float = 100.0
    """upper clip of the AWR weights"""
    target_tau: float = 0.005
    """target network update rate (EMA) per step"""

    # model
    encoder: str = "vit_small_patch14_dinov2.lvd142m"
    """`conv` (trained end to end, early fusion of the two frames) or a timm model name (frozen, late fusion)"""
    pretrained: bool = True
    """frozen timm encoder: load pretrained weights (from --encoder-weights if given, else timm's hub)"""
    encoder_weights: str | None = None
    """local weights file (.pth/.pt/.bin/.safetensors) for the timm encoder: timm format, or same shapes in order"""
    image_size: int = 224
    """encoder input resolution (frames are resized to it when the dataset differs)"""
    patch_size: int = 0
    """ViT patch size (0 keeps the timm model's own); must be 0 for CNNs"""
    feature_grid: int = 0
    """frozen encoder: 0 uses timm's pooled features; K > 0 pools the feature map to K x K and flattens it"""
    conv_channels: tuple[int, ...] = (32, 64, 128, 256)
    """channels of the `conv` encoder's stride-2 layers"""
    feature_dim: int = 512
    """output width of the encoder (conv: its last Linear; frozen: the trainable projection of the pair)"""
    hidden_dims: tuple[int, ...] = (512, 512, 512)
    """hidden widths of the actor MLP"""
    value_hidden_dims: tuple[int, ...] = (512, 512, 512)
    """hidden widths of the value MLPs (each Linear -> GELU -> LayerNorm)"""

    # optimisation
    lr: float = 3e-4
    """Adam learning rate"""
    batch_size: int = 256
    """transitions per optimisation step and process (under torchrun the global batch is this times the processes)"""
    grad_clip: float = 10.0
    """max global gradient norm"""
    total_steps: int = 500_000
    """optimisation steps to train to (counted from 0 also when resuming)"""

    # logging, checkpoints
    log_every: int = 1_000
    """steps between printed/logged training metrics"""
    val_every: int = 10_000
    """steps between validation passes (0: only at the end)"""
    val_batches: int = 10
    """batches per validation pass (the same transitions and goals every pass)"""
    checkpoint_every: int = 50_000
    """steps between checkpoints (always one at the end)"""
    output: str | None = None
    """checkpoint path (default runs/<run_name>/model.pt); the training state (optimizer, data position) goes to
    <stem>.train-<step>.pt beside it"""
    resume: str | None = None
    """checkpoint to resume from exactly (weights, target networks, optimizer, data position, step; its model config
    overrides the model flags), with any number of processes; or the checkpoint --eval-only evaluates"""
    loss_log: str | None = None
    """if set, append every step's losses to this JSON-lines file ({"step", "loss", ...}; on --resume the lines
    after the resume step are dropped first)"""

    # evaluation
    eval_dataset: str | None = None
    """if set, after training run the dataset-driven evaluation on this (held-out) dataset"""
    eval_only: bool = False
    """skip training: evaluate the --resume checkpoint (--eval-dataset and/or --episodic)"""
    episodic: bool = False
    """also run the episodic protocol (env resets, the env draws the goal)"""
    floors: bool = True
    """also evaluate a no-op and a random policy on the same starts and goals"""
    eval_episodes: int = 50
    """evaluation episodes per protocol and policy"""
    goal_offset: int = 25
    """dataset-driven protocol: the goal is the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per evaluation episode"""
    eval_num_envs: int = 10
    """envs stepped together"""
    eval_seed: int = 0
    """seed of the start/goal draws, the episodic resets and the random floor"""
    variation: tuple[str, ...] = ()
    """FoV shift of the evaluation (training data stays as recorded): 'KEY' samples that leaf every episode, 'KEY=VALUE'
    sets it (a number, a comma list such as agent.color=255,0,0, or a choice's name); observations and goal show it"""
    wrapper: tuple[str, ...] = ()
    """visual wrappers on the evaluation's observations, never the goal: 'NAME' or 'NAME:param=value,...', a number
    may be a schedule, e.g. noise:std=linear(0,20,100) (swm wrappers lists them)"""
    output_json: str | None = None
    """write the evaluation as JSON here, in the layout of the solver mains' --output-json"""


# The CPU preset: Two-Room at 64 px in a few CPU minutes (python baselines/gcbc_train.py --preset cpu ...).
# notes: docs/notes/gcrl.md
CPU_PRESET = dict(
    encoder="conv", pretrained=False, image_size=64, conv_channels=(16, 32, 64, 128), feature_dim=256,
    hidden_dims=(256, 256), value_hidden_dims=(256, 256), batch_size=64, total_steps=3_000, num_workers=1, log_every=100, val_every=1_000,
    val_batches=5, checkpoint_every=1_000,
)  # fmt: skip


def preset_defaults(argv: list[str]) -> Args:
    """The Args defaults for the `--preset` named on the command line (explicit flags still override them)."""
    name = "paper"
    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--preset="):
            name = arg.split("=", 1)[1]
    if name == "paper":
        return Args()
    if name == "cpu":
        return replace(Args(), preset="cpu", **CPU_PRESET)
    raise ValueError(f"--preset {name!r} is unknown; allowed: 'paper', 'cpu'")


def check_finite(value: float, step: int, last_checkpoint=None, what: str = "loss") -> float:
    """Stop training with an error naming the step if the loss (or gradient norm) is NaN or infinite."""
    if not math.isfinite(value):
        kept = f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else "; no checkpoint was written"
        raise FloatingPointError(f"{what} became {value} at step {step}{kept}")
    return value


# ------------------------------------------------------------------------------------------ frozen encoder


def read_weights_file(path) -> dict:
    """A state dict from a .safetensors file or a torch file (tensors only; {'state_dict'/'model': ...} unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--encoder-weights {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"--encoder-weights {path} holds no state dict of tensors")
    return state


def rename_in_order(source: dict, target: dict) -> dict:
    """Source tensors renamed to target's keys by position (extra source tensors at the end are dropped); every
    pair must have the same shape, else ValueError naming the first pair that does not fit."""
    src, tgt = list(source.items()), list(target.items())
    if len(src) < len(tgt):
        raise ValueError(f"the weights file has {len(src)} tensors, the model needs {len(tgt)}")
    out = {}
    for i, ((t_key, t_val), (s_key, s_val)) in enumerate(zip(tgt, src)):
        if tuple(s_val.shape) != tuple(t_val.shape):
            raise ValueError(f"tensor {i} does not fit: file {s_key!r} {tuple(s_val.shape)} vs model {t_key!r} "
                             f"{tuple(t_val.shape)}")  # fmt: skip
        out[t_key] = s_val.to(t_val.dtype)
    return out


def create_timm_encoder(name, image_size, patch_size=0, pretrained=False, weights=None):
    """A timm model without classifier: pretrained from `weights` (a file), from timm's hub, or random."""
    import timm

    if not timm.is_model(name):
        raise ValueError(f"--encoder {name!r} is neither 'conv' nor a timm model name (see timm.list_models())")
    size_kwargs = {"img_size": image_size, **({"patch_size": patch_size} if patch_size else {})}

    def make(load):
        overlay = {"file": str(weights), "num_classes": 0} if (load and weights) else None
        try:
            return timm.create_model(name, pretrained=load, pretrained_cfg_overlay=overlay, num_classes=0,
                                     **size_kwargs)  # fmt: skip
        except TypeError as err:
            if "img_size" not in str(err) and "patch_size" not in str(err):
                raise
            if patch_size:
                raise ValueError(f"--patch-size {patch_size}: encoder {name!r} takes no patch size (not a ViT); "
                                 f"pass --patch-size 0") from None  # fmt: skip
            return timm.create_model(name, pretrained=load, pretrained_cfg_overlay=overlay, num_classes=0)

    if weights is not None:
        try:
            return make(True)  # timm's loader: its own key mapping and position-embedding resizing
        except Exception as timm_err:  # noqa: BLE001 - any failure: match by name, then in order
            net = make(False)
            source, target = read_weights_file(weights), net.state_dict()
            by_name = {k: source[k] for k in target if k in source and source[k].shape == target[k].shape}
            try:
                net.load_state_dict(by_name if len(by_name) == len(target) else rename_in_order(source, target))
            except ValueError as err:
                raise ValueError(f"--encoder-weights {weights} does not fit {name!r}: timm's loader said "
                                 f"{str(timm_err)[:300]!r}; renaming in order: {err}") from None  # fmt: skip
            return net
    if pretrained:
        try:
            return make(True)
        except Exception as err:  # noqa: BLE001 - hub errors come in many types
            raise RuntimeError(f"could not load pretrained weights for {name!r} from timm's hub ({err}); offline, "
                               f"pass --encoder-weights PATH or --no-pretrained") from None  # fmt: skip
    return make(False)


class FrozenFeatures(nn.Module):
    """Frozen timm encoder: uint8 frames (N, H, W, 3) -> features (N, F), never trained (eval mode throughout)."""

    def __init__(self, name, image_size, patch_size=0, feature_grid=0):
        super().__init__()
        import timm

        if feature_grid < 0:
            raise ValueError(f"feature_grid must be >= 0, got {feature_grid}")
        self.image_size, self.feature_grid = int(image_size), int(feature_grid)
        self.net = create_timm_encoder(name, image_size, patch_size)
        cfg = timm.data.resolve_model_data_config(self.net)
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"], dtype=torch.float32).reshape(1, 3, 1, 1))
        self.net.requires_grad_(False)
        self.eval()
        self.dim = self(torch.zeros(1, image_size, image_size, 3, dtype=torch.uint8)).shape[1]

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: BatchNorm statistics and dropout stay in eval mode

    @torch.no_grad()
    def forward(self, frames):
        x = to_float(frames, self.image_size).mul(0.5).add(0.5)  # [0, 1]
        x = (x - self.mean) / self.std
        if self.feature_grid == 0:
            return self.net(x)
        f = self.net.forward_features(x)
        if f.ndim == 3:  # ViT tokens (N, prefix + P, C): drop CLS/register tokens, back to a square grid
            f = f[:, getattr(self.net, "num_prefix_tokens", 0) :]
            side = math.isqrt(f.shape[1])
            if side * side != f.shape[1]:
                raise ValueError(f"--feature-grid needs a square token grid, got {f.shape[1]} tokens")
            f = f.transpose(1, 2).reshape(f.shape[0], f.shape[2], side, side)
        elif getattr(self.net, "output_fmt", "NCHW") == "NHWC":
            f = f.permute(0, 3, 1, 2)
        return nn.functional.adaptive_avg_pool2d(f, self.feature_grid).flatten(1)


def load_pretrained_encoder(model, args: Args) -> None:
    """Copy pretrained weights (from --encoder-weights or timm's hub) into the model's frozen encoder."""
    if model.frozen is None or not (args.pretrained or args.encoder_weights):
        return
    net = create_timm_encoder(args.encoder, args.image_size, args.patch_size, True, args.encoder_weights)
    model.frozen.net.load_state_dict(net.state_dict())


def encoder_source(args: Args) -> str:
    """Where the encoder's weights come from, as recorded in the checkpoint config."""
    if args.encoder == "conv":
        return "trained"
    if args.encoder_weights:
        if not args.pretrained:
            raise ValueError(f"--encoder-weights {args.encoder_weights} contradicts --no-pretrained; pass one")
        return f"file:{Path(args.encoder_weights).name}"
    return "timm-hub" if args.pretrained else "none"


# ------------------------------------------------------------------------------------------------- model


def to_float(frames, image_size):
    """uint8 frames (N, H, W, C) -> float (N, C, S, S) in [-1, 1], resized to image_size when they differ."""
    x = frames.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if x.shape[-2:] != (image_size, image_size):
        x = nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    return x


def mlp(in_dim, hidden_dims, out_dim, layer_norm=False):
    """Linear -> GELU (-> LayerNorm) per hidden width, then a Linear to out_dim."""
    layers = []
    for h in hidden_dims:
        layers += [nn.Linear(in_dim, h), nn.GELU()] + ([nn.LayerNorm(h)] if layer_norm else [])
        in_dim = h
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class ConvPair(nn.Module):
    """Early fusion: observation and goal frames stacked channel-wise -> stride-2 conv stack -> Linear."""

    def __init__(self, image_size, channels, out_dim):
        super().__init__()
        layers, c_in, size = [], 6, image_size
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.GroupNorm(min(8, c), c), nn.GELU()]
            c_in, size = c, size // 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} stride-2 conv layers")
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, out_dim))

    def forward(self, obs, goal):
        return self.net(torch.cat([obs, goal], dim=1))


class GoalNet(nn.Module):
    """One network of (observation, goal[, proprio pair][, action]) -> `heads` outputs of out_dim each: its own
    encoder (conv: early fusion of the frames; frozen: a Linear on the pair of frozen features), then MLP heads."""

    def __init__(self, kind, image_size, conv_channels, frozen_dim, feature_dim, proprio_dim, extra_dim,
                 hidden_dims, out_dim, layer_norm=False, heads=1):
        super().__init__()
        self.encoder = (ConvPair(image_size, conv_channels, feature_dim) if kind == "conv"
                        else nn.Linear(2 * frozen_dim, feature_dim))  # fmt: skip
        in_dim = feature_dim + 2 * proprio_dim + extra_dim
        self.heads = nn.ModuleList(mlp(in_dim, hidden_dims, out_dim, layer_norm) for _ in range(heads))

    def forward(self, inputs, extra=None):
        """inputs: (obs, goal, proprio pair or None) as GoalConditioned.inputs gives; -> (heads, B, out_dim)."""
        obs, goal, proprio = inputs
        h = self.encoder(obs, goal) if isinstance(self.encoder, ConvPair) else self.encoder(torch.cat([obs, goal], 1))
        h = torch.cat([h] + ([proprio] if proprio is not None else []) + ([extra] if extra is not None else []), 1)
        return torch.stack([head(h) for head in self.heads])


class GoalConditioned(nn.Module):
    """What every network of this script shares: frame preprocessing (or the one frozen encoder), proprio
    normalisation, and the contract the evaluation relies on (action_dim, action_block 1, image_size)."""

    default_solver = "policy"  # acts through its own policy: benchmarks run the script's --eval-only mode

    def __init__(self, action_dim: int, proprio_dim: int = 0, image_size: int = 64, encoder: str = "conv",
                 encoder_pretrained: str = "trained", patch_size: int = 0, feature_grid: int = 0,
                 conv_channels=(16, 32, 64, 128), feature_dim: int = 256, hidden_dims=(256, 256)):
        super().__init__()
        if action_dim < 1 or proprio_dim < 0 or image_size < 1:
            raise ValueError(f"need action_dim >= 1, proprio_dim >= 0, image_size >= 1; got {action_dim}, "
                             f"{proprio_dim}, {image_size}")
        self.action_dim, self.action_block, self.proprio_dim = action_dim, 1, proprio_dim
        self.image_size, self.encoder_pretrained = image_size, encoder_pretrained
        self.frozen = None if encoder == "conv" else FrozenFeatures(encoder, image_size, patch_size, feature_grid)
        self.kind = "conv" if encoder == "conv" else "frozen"
        self.net_kwargs = dict(kind=self.kind, image_size=image_size, conv_channels=tuple(conv_channels),
                               frozen_dim=self.frozen.dim if self.frozen is not None else 0,
                               feature_dim=feature_dim, proprio_dim=proprio_dim, hidden_dims=tuple(hidden_dims))
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))

    def set_stats(self, stats: dict) -> None:
        """Proprio mean/std (per dimension) from the training episodes."""
        if self.proprio_dim and "proprio" in stats:
            mean = torch.as_tensor(stats["proprio"]["mean"], dtype=torch.float32).reshape(-1)
            std = torch.as_tensor(stats["proprio"]["std"], dtype=torch.float32).reshape(-1)
            if mean.numel() != self.proprio_dim:
                raise ValueError(f"proprio stats have dim {mean.numel()}, the model's proprio_dim is {self.proprio_dim}")
            self.proprio_mean.copy_(mean)
            self.proprio_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def inputs(self, pixels, goal, proprio=None, goal_proprio=None):
        """uint8 frames (B, H, W, 3) of observation and goal (+ raw proprio vectors) -> what GoalNet takes."""
        if self.frozen is not None:
            obs, g = self.frozen(pixels), self.frozen(goal)
        else:
            obs, g = to_float(pixels, self.image_size), to_float(goal, self.image_size)
        p = None
        if self.proprio_dim:
            if proprio is None or goal_proprio is None:
                raise ValueError(f"this model conditions on proprio (proprio_dim {self.proprio_dim}): pass proprio "
                                 f"and goal_proprio")  # fmt: skip
            norm = lambda v: (v.float().reshape(len(v), -1) - self.proprio_mean) / self.proprio_std  # noqa: E731
            p = torch.cat([norm(proprio), norm(goal_proprio)], 1)
        return obs, g, p

    def get_action(self, infos):
        """Deterministic action (B, action_dim): the actor's mean for infos' pixels and goal (and proprio)."""
        for key in ("pixels", "goal"):
            if key not in infos:
                raise ValueError(f"{type(self).__name__}.get_action needs infos[{key!r}]; got {sorted(infos)}")
        x = self.inputs(infos["pixels"], infos["goal"], infos.get("proprio"), infos.get("goal_proprio"))
        return self.actor(x)[0]


class GCIVL(GoalConditioned):
    """Goal-conditioned implicit V-learning: V(s, g) with two heads on one encoder, its EMA target copy, and an
    AWR actor."""

    def __init__(self, action_dim: int, value_hidden_dims=(256, 256), **kwargs):
        super().__init__(action_dim, **kwargs)
        value_kwargs = {**self.net_kwargs, "hidden_dims": tuple(value_hidden_dims)}
        self.value = GoalNet(**value_kwargs, extra_dim=0, out_dim=1, layer_norm=True, heads=2)
        self.target_value = copy.deepcopy(self.value).requires_grad_(False)
        self.actor = GoalNet(**self.net_kwargs, extra_dim=0, out_dim=action_dim)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """target <- tau * online + (1 - tau) * target."""
        for p, t in zip(self.value.parameters(), self.target_value.parameters()):
            t.lerp_(p, tau)

    def values(self, pixels, goal, proprio=None, goal_proprio=None):
        """V(s, g) (B,): the mean of the two online heads (what the actor's advantages use)."""
        return self.value(self.inputs(pixels, goal, proprio, goal_proprio))[..., 0].mean(0)


def gaussian_log_prob(mean, actions):
    """log N(actions; mean, I) summed over the action dims (OGBench's constant unit std): (B,)."""
    return -0.5 * ((actions - mean).square() + math.log(2 * math.pi)).sum(-1)


def expectile_loss(adv, diff, expectile):
    """Elementwise |expectile - 1(adv < 0)| * diff^2 (OGBench's form: the sign of adv picks the weight)."""
    weight = torch.where(adv >= 0, torch.full_like(adv, expectile), torch.full_like(adv, 1.0 - expectile))
    return weight * diff.square()


def awr_weights(adv, alpha, max_weight=100.0):
    """Advantage-weighted regression weights min(exp(alpha * adv), max_weight)."""
    return torch.exp(alpha * adv).clamp(max=max_weight)


def cat_inputs(a, b):
    """Two GoalNet input tuples (obs, goal, proprio pair or None) stacked along the batch."""
    return tuple(None if x is None else torch.cat([x, y]) for x, y in zip(a, b))


def losses(model, batch, args):
    """GCIVL's loss on a batch (swm_core.goals.GoalDataset with next frames, value and actor goals), as OGBench:

        q_i = r + gamma * mask * V'_i(s', g)                 (V' the target heads; r = -1, mask = 0 at the goal)
        adv = r + gamma * mask * min_i V'_i(s', g) - mean_i V'_i(s, g)
        value = sum_i mean expectile_loss(adv, q_i - V_i(s, g), expectile)
        actor = -mean min(exp(alpha * (V(s', g_a) - V(s, g_a))), max_weight) * log pi(a | s, g_a)

    Returns (value + actor, metrics dict)."""
    B, gamma = len(batch["action"]), args.discount
    xg = model.inputs(batch["pixels"], batch["value_goal"], batch.get("proprio"), batch.get("value_goal_proprio"))
    xg_next = model.inputs(batch["next_pixels"], batch["value_goal"], batch.get("next_proprio"),
                           batch.get("value_goal_proprio"))  # fmt: skip
    r, m = batch["reward"], batch["mask"]
    with torch.no_grad():
        tv = model.target_value(cat_inputs(xg, xg_next))[..., 0]  # (2, 2B)
        v_t, next_v_t = tv[:, :B], tv[:, B:]
        q = r + gamma * m * next_v_t  # (2, B)
        adv = r + gamma * m * next_v_t.min(0).values - v_t.mean(0)
    v = model.value(xg)[..., 0]
    value_loss = expectile_loss(adv, q - v, args.expectile).mean(1).sum()

    xa = model.inputs(batch["pixels"], batch["actor_goal"], batch.get("proprio"), batch.get("actor_goal_proprio"))
    xa_next = model.inputs(batch["next_pixels"], batch["actor_goal"], batch.get("next_proprio"),
                           batch.get("actor_goal_proprio"))  # fmt: skip
    with torch.no_grad():
        va = model.value(cat_inputs(xa, xa_next))[..., 0].mean(0)
        actor_adv = va[B:] - va[:B]
        weights = awr_weights(actor_adv, args.alpha, args.max_weight)
    mean = model.actor(xa)[0]
    actor_loss = -(weights * gaussian_log_prob(mean, batch["action"])).mean()
    metrics = {"value_loss": value_loss.detach(), "actor_loss": actor_loss.detach(), "v_mean": v.mean().detach(),
               "adv_mean": actor_adv.mean(), "awr_weight_mean": weights.mean(),
               "awr_clipped_fraction": (weights >= args.max_weight).float().mean(),
               "bc_mse": (mean - batch["action"]).square().mean().detach()}  # fmt: skip
    return value_loss + actor_loss, metrics


# -------------------------------------------------------------------------------------- evaluation


class TimedPolicy(FeedForwardPolicy):
    """FeedForwardPolicy that counts its calls and the seconds spent in them (for the table's ms/plan)."""

    calls, seconds = 0, 0.0

    def get_actions(self, infos):
        t0 = time.perf_counter()
        actions = super().get_actions(infos)
        self.calls, self.seconds = self.calls + 1, self.seconds + time.perf_counter() - t0
        return actions


def summarize(name: str, result: dict, seconds: float, plans: int | None = None) -> dict:
    """One table row, with the fields and units of the solver mains' rows (solvers/cem_plan.py)."""
    row = {"policy": name, "success_pct": 100 * result["success_rate"], "episodes": result["episodes"],
           "solved_at_start_pct": 100 * result["solved_at_start_rate"]}
    unsolved = ~np.asarray(result["solved_at_start"], bool)
    success = np.asarray(result["success"], bool)
    row["success_unsolved_pct"] = 100 * float(success[unsolved].mean()) if unsolved.any() else float("nan")
    steps = np.asarray(result["steps_to_success"])[success]
    row["mean_steps_to_success"] = float(steps.mean()) if len(steps) else float("nan")
    row["ms_per_plan"] = 1000 * seconds / plans if plans else float("nan")
    return row


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'policy':<10}{'success %':>10}{'solved at start %':>19}{'success % (unsolved)':>22}"
          f"{'steps to success':>18}{'ms/plan':>9}")
    for r in rows:
        print(f"{r['policy']:<10}{r['success_pct']:>10.1f}{r['solved_at_start_pct']:>19.1f}"
              f"{r['success_unsolved_pct']:>22.1f}{r['mean_steps_to_success']:>18.1f}{r['ms_per_plan']:>9.0f}")


def evaluate_policy(model, args: Args, device, env_id: str | None, frame_size: int | None = None) -> dict:
    """The policy (through FeedForwardPolicy) and the no-op / random floors on the same starts and goals, in the
    dataset-driven protocol (--eval-dataset) and with --episodic the episodic one; prints the solver mains'
    table and, with --output-json, writes their JSON layout ({"args", "env_id", "tables", protocol: ...})."""
    dataset = open_dataset(args.eval_dataset) if args.eval_dataset else None
    data_env = dataset.metadata.get("env_id") if dataset is not None else None
    env_id = env_id or data_env
    if env_id is None:
        raise ValueError("cannot tell which env to evaluate in: the checkpoint and --eval-dataset name none")
    if data_env and data_env != env_id:
        raise ValueError(f"--eval-dataset {args.eval_dataset} was recorded on {data_env!r}, the model on {env_id!r}")
    size = int((dataset.metadata.get("image_size") if dataset is not None else None) or frame_size or model.image_size)
    shift = parse_shift(env_id, args.variation, args.wrapper)
    world = World(env_id, num_envs=args.eval_num_envs, image_size=size, max_episode_steps=args.eval_budget,
                  seed=args.eval_seed, wrappers=shift.wrappers)  # fmt: skip
    protocols = []
    if dataset is not None:
        protocols.append(("dataset", lambda p: world.evaluate_from_dataset(
            dataset, episodes=args.eval_episodes, goal_offset=args.goal_offset, eval_budget=args.eval_budget,
            seed=args.eval_seed, policy=p, options=shift.options)))  # fmt: skip
    if args.episodic:
        protocols.append(("episodic", lambda p: world.evaluate(
            p, episodes=args.eval_episodes, seed=args.eval_seed, max_episode_steps=args.eval_budget,
            options=shift.options)))  # fmt: skip
    results = {"args": public_args(args), "env_id": env_id, "shift": shift.describe(), "tables": {}}
    for protocol, run in protocols:
        policy = TimedPolicy(model, device)
        per_episode = {ALGO: run(policy)}
        rows = [summarize(ALGO, per_episode[ALGO], policy.seconds, policy.calls)]
        if args.floors:
            for name, floor in (("no-op", NoOpPolicy()), ("random", RandomPolicy(seed=args.eval_seed))):
                per_episode[name] = run(floor)
                rows.append(summarize(name, per_episode[name], 0.0))
        print_table(f"{protocol} protocol: {env_id}, {args.eval_episodes} episodes, budget {args.eval_budget}"
                    + (f", shift: {shift.label}" if shift else "")
                    + (f", goal offset {args.goal_offset}" if protocol == "dataset" else ""), rows)
        results["tables"][protocol] = rows
        results[protocol] = {name: {**{k: np.asarray(v).tolist() for k, v in r.items() if k != "variations"},
                                    **shift.record(r)} for name, r in per_episode.items()}  # fmt: skip
    world.close()
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output_json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.output_json}")
    return results


def check_shift(args: Args) -> None:
    """--variation/--wrapper against the evaluation's env (--eval-dataset's, else the checkpoint's, else the training
    data's), before any training."""
    if not (args.variation or args.wrapper):
        return
    if not (args.eval_dataset or args.episodic):
        raise ValueError("--variation/--wrapper shift the evaluation: pass --eval-dataset PATH and/or --episodic")
    env_id = open_dataset(args.eval_dataset).metadata.get("env_id") if args.eval_dataset else None
    if env_id is None and args.resume:
        env_id = read_checkpoint(args.resume)["extra"].get("env_id")
    parse_shift(env_id or open_dataset(args.dataset).metadata.get("env_id"), args.variation, args.wrapper)


# ----------------------------------------------------------------------------------- training plumbing


def check_args(args: Args) -> None:
    """Flag combinations that cannot work, before any work."""
    if args.eval_only and not (args.resume and (args.eval_dataset or args.episodic)):
        raise ValueError(f"--eval-only needs --resume CKPT and --eval-dataset PATH (or --episodic), got --resume "
                         f"{args.resume} --eval-dataset {args.eval_dataset}")  # fmt: skip
    for name in ("batch_size", "total_steps", "log_every", "checkpoint_every", "eval_episodes", "eval_num_envs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 < args.expectile < 1.0 or args.alpha < 0 or args.max_weight <= 0 or not 0.0 < args.target_tau <= 1.0:
        raise ValueError(f"need 0 < --expectile < 1, --alpha >= 0, --max-weight > 0 and 0 < --target-tau <= 1; got "
                         f"{args.expectile}, {args.alpha}, {args.max_weight}, {args.target_tau}")
    if args.encoder == "conv" and args.encoder_weights:
        raise ValueError(f"--encoder-weights {args.encoder_weights} is for a frozen timm encoder, not --encoder conv")
    encoder_source(args)
    check_shift(args)


def goal_specs(args: Args) -> dict:
    """GoalDataset options: the value's and the actor's goal distributions, and the next frames."""
    return dict(next_obs=True,
                value_goals=dict(p_current=args.value_p_current, p_future=args.value_p_future,
                                 p_random=args.value_p_random, discount=args.discount,
                                 geometric=args.value_geometric),
                actor_goals=dict(p_current=args.actor_p_current, p_future=args.actor_p_future,
                                 p_random=args.actor_p_random, discount=args.discount,
                                 geometric=args.actor_geometric))  # fmt: skip


def compute_stats(dataset, episode_ids) -> dict:
    """Per-dimension mean/std of `proprio` over the given (train) episodes' rows (empty without the column)."""
    if "proprio" not in dataset.columns:
        return {}
    rows = np.concatenate([dataset.episode_rows(ep) for ep in episode_ids])
    values = np.asarray(dataset.read_rows(rows, ["proprio"])["proprio"], dtype=np.float64).reshape(len(rows), -1)
    values = values[np.isfinite(values).all(axis=1)]
    return {"proprio": {"mean": values.mean(0).astype(np.float32), "std": values.std(0).astype(np.float32)}}


def check_columns(dataset):
    """A clear error naming the first column this script needs that the dataset lacks."""
    for col in ("pixels", "action"):
        if col not in dataset.columns:
            raise ValueError(f"dataset {dataset.path} has no {col!r} column, which {ALGO.upper()} training needs; "
                             f"its columns: {dataset.columns}")  # fmt: skip


def model_config(args: Args, action_dim: int, proprio_dim: int) -> dict:
    # encoder_pretrained only for a frozen encoder (benchmarks/success_table.py's note names frozen encoders by it)
    frozen = {} if args.encoder == "conv" else {"encoder_pretrained": encoder_source(args)}
    return dict(action_dim=action_dim, proprio_dim=proprio_dim, image_size=args.image_size, encoder=args.encoder,
                **frozen, patch_size=args.patch_size, feature_grid=args.feature_grid,
                conv_channels=list(args.conv_channels), feature_dim=args.feature_dim,
                hidden_dims=list(args.hidden_dims), value_hidden_dims=list(args.value_hidden_dims))  # fmt: skip


def public_args(args) -> dict:
    """The run's flags as saved in checkpoints and logged to wandb: without the S3 credentials."""
    return {k: v for k, v in asdict(args).items() if k not in ("access_key_id", "secret_access_key")}


def save_training_state(path: Path, model, config, stats, optimizer, step, args, metrics, env_id, frame_size,
                        data=None):
    """model.pt via swm_core.checkpoint (all weights, target networks included; env_id and the dataset's frame size
    in its extras) and, written before it, the training state beside it (swm_core.train_state: optimizer, data
    position), which model.pt names."""
    state = {"optimizer": optimizer.state_dict(), "data": data or {}}
    return save_train_state(path, step, state, lambda name: save_checkpoint(
        path, model, config=config, stats=stats, env_id=env_id, frame_size=frame_size, step=step,
        args=json.loads(json.dumps(public_args(args))), metrics=metrics, train_state=name))  # fmt: skip


def validate(model, val_set, args, device) -> dict:
    """Mean losses over the same args.val_batches batches (and goals) of the validation split every pass."""
    rng = np.random.default_rng([args.seed, 7])
    order = rng.permutation(len(val_set))
    was_training = model.training
    model.eval()
    sums, n = {}, 0
    with torch.no_grad():
        for i in range(min(args.val_batches, len(order) // args.batch_size)):
            batch = val_set.batch(order[i * args.batch_size : (i + 1) * args.batch_size], rng=rng)
            _, metrics = losses(model, {k: v.to(device) for k, v in batch.items()}, args)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
    model.train(was_training)
    return {f"val/{k}": v / n for k, v in sums.items()} if n else {}


if __name__ == "__main__":
    args = tyro.cli(Args, default=preset_defaults(sys.argv[1:]))
    check_args(args)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    procs = setup(args.device)  # under torchrun: this process's rank and device, the process group joined
    log = print if procs.main else (lambda *a, **k: None)  # printing, wandb, checkpoints, evaluation: rank 0 only
    device = procs.device

    if args.eval_only:
        teardown()  # evaluation runs on the main process alone
        if not procs.main:
            sys.exit(0)
        model, ckpt = load_checkpoint(args.resume, map_location=device, expected_class=ALGO.upper(),
                                      model_class=GCIVL)  # fmt: skip
        extra = ckpt["extra"]
        print(f"{ALGO.upper()} from {args.resume} (step {extra.get('step')}, env {extra.get('env_id')}) on {device}")
        evaluate_policy(model, args, device, extra.get("env_id"), extra.get("frame_size"))
        sys.exit(0)

    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.dataset) else None)  # fmt: skip
    version = int(args.dataset_version) if str(args.dataset_version).isdigit() else args.dataset_version
    dataset = open_dataset(args.dataset, storage_options, version)
    check_columns(dataset)
    env_id, frame_size = dataset.metadata.get("env_id"), dataset.metadata.get("image_size")
    action_dim = dataset.shape_of("action")[0]
    proprio_dim = dataset.shape_of("proprio")[0] if args.use_proprio and "proprio" in dataset.columns else 0
    if args.resume:  # the checkpoint's model settings win over the model flags
        resume_ckpt = read_checkpoint(args.resume)
        check_class(resume_ckpt, ALGO.upper(), args.resume)
        check_env(resume_ckpt, env_id, args.resume, f"the env of --dataset {args.dataset}")
        rc = resume_ckpt["config"]
        if rc["action_dim"] != action_dim or rc["proprio_dim"] != proprio_dim:
            raise ValueError(f"--resume {args.resume} was trained with action_dim {rc['action_dim']} and proprio_dim "
                             f"{rc['proprio_dim']}, but --dataset {args.dataset} (with --use-proprio "
                             f"{args.use_proprio}) gives {action_dim} and {proprio_dim}")  # fmt: skip
        args = replace(args, **{k: v for k, v in rc.items() if k in Args.__dataclass_fields__})
        args.conv_channels, args.hidden_dims = tuple(args.conv_channels), tuple(args.hidden_dims)
        args.value_hidden_dims = tuple(args.value_hidden_dims)
    env_name = str(env_id or Path(args.dataset).stem).replace("/", "-")
    run_name = f"{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
    out_path = Path(args.output) if args.output else Path("runs") / run_name / "model.pt"
    log(f"run {run_name}: checkpoints -> {out_path}" + (f"; {procs.world_size} processes" if procs.world_size > 1 else ""))
    if args.track and procs.main:
        if not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
        import wandb

        wandb.init(project=args.wandb_project, entity=args.wandb_entity, name=run_name, config=public_args(args),
                   dir=str(out_path.parent))  # fmt: skip

    # data: single-step transitions with hindsight goals (swm_core.goals); every process reads its slice of each
    # global batch (batch_size x processes transitions), with the goals drawn for the whole global batch
    common = dict(proprio=proprio_dim > 0, val_fraction=args.val_fraction, seed=args.seed,
                  storage_options=storage_options, version=version, **goal_specs(args))  # fmt: skip
    train_set = GoalDataset(args.dataset, split="train", **common)
    val_set = GoalDataset(args.dataset, split="val", stream=1, **common)
    batches = ShardedBatches(len(train_set), args.batch_size, args.seed, procs.rank, procs.world_size,
                             with_global=True)  # fmt: skip
    # whole batches (GoalDataset[(global indices, lo, hi)]); Lance is not fork-safe once the parent has used it, so
    # workers are spawned; the loader's own generator only seeds its workers
    train_loader = torch.utils.data.DataLoader(
        train_set, sampler=batches, batch_size=None, num_workers=args.num_workers, generator=torch.Generator(),
        persistent_workers=args.num_workers > 0, pin_memory=device.type == "cuda",
        multiprocessing_context="spawn" if args.num_workers > 0 else None,
    )  # fmt: skip
    if len(batches) == 0:
        raise ValueError(f"{args.dataset}: {len(train_set)} train transitions, fewer than --batch-size {args.batch_size}"
                         + (f" x {procs.world_size} processes" if procs.world_size > 1 else ""))  # fmt: skip

    # model
    start_step = 0
    if args.resume:
        model, ckpt = load_checkpoint(args.resume, expected_class=ALGO.upper(), model_class=GCIVL)
        config, stats = ckpt["config"], ckpt["stats"]
        start_step = int(ckpt["extra"].get("step", 0))
    else:
        config = model_config(args, action_dim, proprio_dim)
        model = GCIVL(**config)
        load_pretrained_encoder(model, args)
        stats = compute_stats(dataset, train_set.episode_ids) if proprio_dim else {}
        model.set_stats(stats)
    model.to(device).train()
    if procs.world_size > 1:
        broadcast_module(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    log(f"{ALGO.upper()}: {sum(p.numel() for p in trainable) / 1e6:.2f}M trainable parameters on {device}")

    optimizer = torch.optim.Adam(trainable, lr=args.lr)
    if args.resume:  # the optimizer and the data position (the weights, target networks included, came above)
        state = load_train_state(args.resume, ckpt, map_location=device)
        if state is None:
            log(f"warning: {args.resume} has no training state beside it; resuming with a fresh optimizer and the "
                f"data order from its start (not an exact resume)")  # fmt: skip
        else:
            optimizer.load_state_dict(state["optimizer"])
            batches.load_state_dict(state["data"])
        for group in optimizer.param_groups:
            group["lr"] = args.lr
    loss_log = LossLog(args.loss_log, start_step) if args.loss_log and procs.main else None

    # training loop
    step, last_ckpt, metrics = start_step, args.resume, {}
    data_iter = batches.stream(train_loader)
    loop_start, wait_time, window_start, window_steps = time.perf_counter(), 0.0, time.perf_counter(), 0
    while step < args.total_steps:
        seed_step(args.seed, step, procs.rank)  # global draws depend on the step: resumes repeat them
        t0 = time.perf_counter()
        batch = next(data_iter)
        wait_time += time.perf_counter() - t0
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss, parts = losses(model, batch, args)
        # every loss term is a mean over the batch: the mean over processes is the global batch's
        mean = mean_over_processes(torch.stack([loss.detach(), *parts.values()])).tolist()
        values = dict(zip(["loss", *parts], mean))
        check_finite(values["loss"], step, last_ckpt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(trainable)
        grad_norm = nn.utils.clip_grad_norm_(trainable, args.grad_clip)
        check_finite(grad_norm.item(), step, last_ckpt, "gradient norm")
        optimizer.step()
        model.update_target(args.target_tau)
        step += 1
        window_steps += 1
        if loss_log:
            loss_log.write(step, {**values, "grad_norm": grad_norm})

        if step % args.log_every == 0 or step == args.total_steps:
            now = time.perf_counter()
            metrics = {"losses/total": values["loss"], **{f"losses/{k}": values[k] for k in parts},
                       "losses/grad_norm": grad_norm.item(), "charts/SPS": window_steps / (now - window_start),
                       "charts/data_wait_fraction": wait_time / (now - loop_start)}  # fmt: skip
            window_start, window_steps = now, 0
            log(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
            if args.track and procs.main:
                wandb.log(metrics, step=step)
        validating = len(val_set) and ((args.val_every and step % args.val_every == 0) or step == args.total_steps)
        if validating and procs.main:
            val = validate(model, val_set, args, device)
            metrics.update(val)
            log(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in val.items()), flush=True)
            if args.track:
                wandb.log(val, step=step)
        if step % args.checkpoint_every == 0 or step == args.total_steps:
            if procs.main:
                save_training_state(out_path, model, config, stats, optimizer, step, args, metrics, env_id,
                                    frame_size, batches.state_dict())  # fmt: skip
            last_ckpt = out_path
            log(f"step {step}: checkpoint {last_ckpt}", flush=True)

    loop_time = time.perf_counter() - loop_start
    log(f"done: {step - start_step} steps in {loop_time:.1f}s ({(step - start_step) / max(loop_time, 1e-9):.2f} "
        f"steps/s), data_wait_fraction={wait_time / max(loop_time, 1e-9):.3f}, checkpoint {last_ckpt or args.resume}")
    teardown()  # evaluation runs on the main process alone
    if procs.main and (args.eval_dataset or args.episodic):
        results = evaluate_policy(model.eval(), args, device, env_id, frame_size)
        if args.track:
            wandb.log({f"eval/{p}/{r['policy']}/success_pct": r["success_pct"]
                       for p, rows in results["tables"].items() for r in rows}, step=step)  # fmt: skip
    if args.track and procs.main:
        wandb.finish()
