# TD-MPC2 baseline, offline and goal-conditioned. Settings: docs/reference.md §4; tests: tests/test_tdmpc2.py
"""Offline goal-conditioned TD-MPC2: a latent world model with reward, Q ensemble and policy prior, planned with MPPI.

Model (TD-MPC2 paper settings, pixel version). A conv encoder (k7s2, k5s2, k3s2, k3s1, 32 channels; 64 px ->
32x4x4 = 512 features) followed by SimNorm (softmax over groups of 8) gives z. The goal frame goes through the same
encoder (z_g). Heads are MLPs Linear -> LayerNorm -> Mish: latent dynamics d(z, a) (goal-free by default: the
transition does not depend on the goal; `--goal-in-dynamics` feeds z_g too), reward R(z, a, z_g), an ensemble of
5 Q(z, a, z_g) and a policy prior pi(z, z_g) (tanh-Gaussian). Reward and Q are distributions over 101 bins of
symlog values in [-10, 10] trained by two-hot cross-entropy. `a` is an action block: `action_block` (= frameskip,
5) env actions concatenated, so one model step is action_block env steps, as in the dataset-driven protocol.

Loss over a window of `horizon` (3) model steps, per-step weight rho^t (rho 0.5), as TD-MPC2's update:
    consistency = sum_t rho^t ||d(z_t, a_t) - sg(enc(o_{t+1}))||^2 / H     (z_{t+1} from the latent rollout)
    reward      = sum_t rho^t CE(R(z_t, a_t, z_g), r_t) / H
    value       = sum_t sum_q rho^t CE(Q_q(z_t, a_t, z_g), r_t + gamma (1 - done_t) min_{2 sampled target Q}(
                                     enc(o_{t+1}), pi(enc(o_{t+1}), z_g), z_g)) / (H num_q)
    loss = 20 consistency + 0.1 reward + 0.1 value;   Adam lr 3e-4 (encoder x0.3), grad clip 20
    policy: sum_t rho^t mean_b (alpha log pi - Q_avg2(z_t, pi(z_t), z_g) / scale), alpha 1e-4, on detached latents,
            scale = running (EMA 0.01) 95th - 5th percentile of Q (TD-MPC2's RunningScale); separate Adam
    target Q heads: EMA of the online heads with tau 0.01.

Offline goal-conditioned reward (hindsight relabelling, as docs/reference.md §4's GCRL goal sampling). Each training window
(frames o_0..o_H, frameskip env steps apart, with their `state`s) gets one goal row from the dataset:
    current (0.2): the window's first frame itself;
    future  (0.5): k ~ Geometric(1 - goal_discount) env steps after the first frame (goal_discount 0.99 per env
                   step = gamma 0.95 per model step; the CPU preset uses 0.95, goals ~20 env steps ahead), clipped
                   to the episode's last row;
    random  (0.3): a uniform row of any episode of the same split.
The goal frame (`pixels` of that row) is read with the window in the same DataLoader call (one extra sorted take
per batch). Reward of model step t: r_t = 0 and done_t = 1 if state_{t+1} reaches the goal state by the env's own
success rule, else r_t = -1 and done_t = 0 (so Q = -(model steps to reach the goal), bounded by -1/(1 - gamma)).
Success rules: swm/TwoRoom-v1: ||agent xy - goal xy|| < 16; swm/PushT-v1: L2 over (agent xy, block xy) < 20 and
block-angle error < pi/9 modulo 2 pi (the default T block's symmetry); other envs: `--success-distance D` (L2 over
the whole state). Success is checked at the frames only (every frameskip env steps), not in between.

Planning (TDMPC2Solver): MPPI over action blocks with 24 of 512 samples rolled out from the policy prior, 6
iterations, 64 elites, weights exp(temperature * (value - max value)) with temperature 0.5 (TD-MPC2's convention:
it multiplies), std clamped to [0.05, 2], plan = one elite drawn by its weight. value = -model.get_cost =
sum_t gamma^t R(z_t, a_t) + gamma^H Q_mean(z_H, pi_mean(z_H)).

Differences from the official code, all deliberate: the planning value uses the mean of all Q heads and tanh(mu)
at z_H (deterministic costs, so solvers are reproducible); shift augmentation (+-4 px) is applied in training only;
log pi is not rescaled by the action dimension.

Known behaviour, kept visible: offline, the actor (and the Q values it is trained to climb) drift off the data
manifold; the paper's Push-T result is 12%. Validation logs the policy's action blocks against the dataset's
(nearest-neighbour distance to dataset blocks, saturation, Q(pi) - Q(data)) and the latent spread z_std, and
evaluation prints the same for the action blocks the planner and the policy prior actually executed. At CPU
scale on Two-Room the actor drifts only for a while (the paper's offline collapse is not reproduced), and the
CPU preset's nearer future goals (goal_discount 0.95) are what lets reward and Q see the goal at all.
notes: docs/notes/tdmpc2.md

Run: python baselines/tdmpc2_train.py --preset cpu --dataset data/tr.lance --eval-dataset data/tr_val.lance
Evaluate a checkpoint: python baselines/tdmpc2_train.py --eval-only --resume runs/<run>/model.pt --eval-dataset ...
"""

import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from torch import nn

from swm_core import MPCPolicy, NoOpPolicy, RandomPolicy, World
from swm_core.checkpoint import check_class, check_env, load_checkpoint, read_checkpoint, save_checkpoint
from swm_core.data import WindowDataset, open_dataset
from swm_core.distributed import (
    ShardedBatches,
    average_gradients,
    gather_batch,
    mean_over_processes,
    setup,
    teardown,
)
from swm_core.envs import pusht, two_room
from swm_core.s3 import is_s3, s3_storage_options
from swm_core.shift import parse_shift
from swm_core.train_state import LossLog, seed_step
from swm_core.train_state import load as load_train_state
from swm_core.train_state import save as save_train_state


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch, goal sampling, data order, solver)"""
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
    """defaults to start from: `paper` (TD-MPC2 5M settings) or `cpu` (smaller MLPs and batch, a few CPU minutes)"""

    # data
    dataset: str = "data/two_room.lance"
    """path (or s3:// URI) of the Lance trajectory dataset (needs pixels, action, state)"""
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
    frameskip: int = 5
    """env steps per model step (the model's action_block)"""
    horizon: int = 3
    """model steps per training window (windows hold horizon + 1 frames)"""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation"""
    num_workers: int = 4
    """DataLoader worker processes"""

    # goals and reward
    goal_current: float = 0.2
    """probability that a window's goal is its own first frame"""
    goal_future: float = 0.5
    """probability that the goal is a later frame of the same episode (geometric offset)"""
    goal_random: float = 0.3
    """probability that the goal is a random frame of any episode of the split"""
    goal_discount: float = 0.99
    """future goals lie k ~ Geometric(1 - goal_discount) env steps after the window's first frame"""
    success_distance: float | None = None
    """if set, success = L2(state - goal state) < this; default: the env's own rule (Two-Room, Push-T)"""

    # model
    image_size: int = 64
    """encoder input resolution (frames are resized to it when the dataset differs)"""
    num_channels: int = 32
    """channels of every encoder conv"""
    simnorm_dim: int = 8
    """SimNorm group size"""
    mlp_dim: int = 512
    """hidden width of the dynamics, reward, Q and policy MLPs (two hidden layers each)"""
    num_q: int = 5
    """Q ensemble size (2 are sampled for targets)"""
    num_bins: int = 101
    """bins of the two-hot reward/Q distributions"""
    vmin: float = -10.0
    """lowest bin (symlog units)"""
    vmax: float = 10.0
    """highest bin (symlog units)"""
    q_dropout: float = 0.01
    """dropout after the first layer of every Q head"""
    shift_pad: int = 4
    """random-shift augmentation of training frames by up to this many pixels (0: off)"""
    goal_in_dynamics: bool = False
    """if toggled, the dynamics also see the goal latent (TD-MPC2 multitask style)"""
    discount: float = 0.95
    """gamma per model step"""

    # loss and optimisation
    consistency_coef: float = 20.0
    """weight of the latent consistency loss"""
    reward_coef: float = 0.1
    """weight of the reward loss"""
    value_coef: float = 0.1
    """weight of the value loss"""
    rho: float = 0.5
    """per-step loss weight rho^t over the window"""
    entropy_coef: float = 1e-4
    """alpha of the policy's max-entropy objective"""
    lr: float = 3e-4
    """Adam learning rate"""
    enc_lr_scale: float = 0.3
    """encoder learning rate = lr * this"""
    grad_clip: float = 20.0
    """max global gradient norm (model and policy separately)"""
    tau: float = 0.01
    """EMA rate of the target Q heads and of the Q scale"""
    batch_size: int = 256
    """windows per optimisation step and process (under torchrun the global batch is this times the processes)"""
    total_steps: int = 100_000
    """optimisation steps to train to (counted from 0 also when resuming)"""

    # logging, validation, checkpoints
    log_every: int = 100
    """steps between printed/logged training metrics"""
    val_every: int = 5_000
    """steps between validation passes (0: only at the end)"""
    val_batches: int = 10
    """batches per validation pass"""
    checkpoint_every: int = 10_000
    """steps between checkpoints (always one at the end)"""
    output: str | None = None
    """checkpoint path (default runs/<run_name>/model.pt); the training state (optimizers, data position) goes to
    <stem>.train-<step>.pt beside it"""
    resume: str | None = None
    """checkpoint to resume from exactly (model, optimizers, data position, step; its model config overrides the
    model flags); any number of processes"""
    loss_log: str | None = None
    """if set, append every step's losses to this JSON-lines file ({"step", "loss", ...}; on --resume the lines
    after the resume step are dropped first)"""

    # planning and evaluation
    eval_dataset: str | None = None
    """if set, after training run the dataset-driven evaluation on this (held-out) dataset"""
    eval_only: bool = False
    """skip training: evaluate the --resume checkpoint on --eval-dataset"""
    eval_episodes: int = 50
    """evaluation episodes per policy"""
    goal_offset: int = 25
    """goal = the recorded frame this many env steps after the start"""
    eval_budget: int = 50
    """env steps allowed per evaluation episode"""
    eval_num_envs: int = 5
    """envs stepped (and planned) together"""
    eval_seed: int = 0
    """seed of the (episode, start) draws and of the floors"""
    variation: tuple[str, ...] = ()
    """FoV shift of the evaluation (training data stays as recorded): 'KEY' samples that leaf every episode, 'KEY=VALUE'
    sets it (a number, a comma list such as agent.color=255,0,0, or a choice's name); observations and goal show it"""
    wrapper: tuple[str, ...] = ()
    """visual wrappers on the evaluation's observations, never the goal: 'NAME' or 'NAME:param=value,...', a number
    may be a schedule, e.g. noise:std=linear(0,20,100) (swm wrappers lists them)"""
    output_json: str | None = None
    """with --eval-dataset: also write the evaluation as JSON here, in the layout of the solver mains'
    --output-json ({"args", "env_id", "tables": {"dataset": rows}, "dataset": per-episode results})"""
    plan_horizon: int = 3
    """planning horizon in model steps"""
    receding_horizon: int = 1
    """model steps executed per plan (TD-MPC2 replans after every step)"""
    mppi_iterations: int = 6
    """MPPI iterations per plan"""
    num_samples: int = 512
    """action-block sequences per iteration (policy samples included)"""
    num_elites: int = 64
    """elites refitting the mean/std"""
    num_pi_trajs: int = 24
    """samples rolled out from the policy prior"""
    temperature: float = 0.5
    """elite weights exp(temperature * (value - max value))"""
    min_std: float = 0.05
    """lower clamp of the MPPI std"""
    max_std: float = 2.0
    """upper clamp (and initial value) of the MPPI std"""


# The CPU preset: Two-Room at 64 px in a few CPU minutes (python baselines/tdmpc2_train.py --preset cpu ...).
# goal_discount 0.95 (future goals ~20 env steps ahead, not ~100): with 0.99 the latents stay uniform and reward
# and Q ignore the goal at this scale. notes: docs/notes/tdmpc2.md
CPU_PRESET = dict(
    mlp_dim=256, batch_size=64, total_steps=3_000, num_workers=1, log_every=100, val_every=1_000, val_batches=5,
    checkpoint_every=1_000, eval_episodes=50, goal_discount=0.95,
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


# ------------------------------------------------------------------------------------------- small pieces


def symlog(x):
    """sign(x) log(1 + |x|): compresses large magnitudes, identity-like near 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x):
    """sign(x) (exp|x| - 1): the inverse of symlog."""
    return torch.sign(x) * torch.expm1(x.abs())


def simnorm(x, group: int = 8):
    """SimNorm: split the last dim into groups of `group` and softmax each (every group sums to 1)."""
    if x.shape[-1] % group:
        raise ValueError(f"SimNorm needs a last dim divisible by the group size {group}, got {x.shape[-1]}")
    return F.softmax(x.reshape(*x.shape[:-1], -1, group), dim=-1).reshape(x.shape)


class SimNorm(nn.Module):
    def __init__(self, group: int = 8):
        super().__init__()
        self.group = group

    def forward(self, x):
        return simnorm(x, self.group)


def two_hot(x, num_bins: int = 101, vmin: float = -10.0, vmax: float = 10.0):
    """Scalars x (...) -> (..., num_bins) two-hot of symlog(x) over linspace(vmin, vmax, num_bins).

    symlog(x) is clamped to [vmin, vmax]; it falls between bins i and i + 1 and their weights are the linear
    interpolation weights, so sum(weights * bins) = symlog(x) exactly."""
    if num_bins < 2:
        raise ValueError(f"two_hot needs num_bins >= 2, got {num_bins}")
    y = symlog(x).clamp(vmin, vmax)
    pos = (y - vmin) / ((vmax - vmin) / (num_bins - 1))
    # a NaN target (a diverged TD target) gets NaN weights at bin 0, so the loss turns NaN and training stops
    # naming the step, instead of scatter_ failing on a garbage index
    lower = torch.nan_to_num(pos.floor(), nan=0.0).clamp(0, num_bins - 2)
    upper_weight = (pos - lower).unsqueeze(-1)
    lower = lower.long().unsqueeze(-1)
    out = torch.zeros(*x.shape, num_bins, device=x.device, dtype=x.dtype)
    out.scatter_(-1, lower, 1.0 - upper_weight)
    return out.scatter_add_(-1, lower + 1, upper_weight)


def two_hot_inv(logits, vmin: float = -10.0, vmax: float = 10.0):
    """Logits (..., num_bins) -> scalars (...): symexp of the expected bin value under softmax(logits)."""
    bins = torch.linspace(vmin, vmax, logits.shape[-1], device=logits.device, dtype=logits.dtype)
    return symexp((F.softmax(logits, dim=-1) * bins).sum(-1))


def soft_ce(logits, target, vmin: float = -10.0, vmax: float = 10.0):
    """Cross-entropy (...) between logits (..., num_bins) and the two-hot encoding of scalar targets (...)."""
    return -(two_hot(target, logits.shape[-1], vmin, vmax) * F.log_softmax(logits, dim=-1)).sum(-1)


def rho_weights(steps: int, rho: float, device=None):
    """Per-step loss weights rho^t, t = 0..steps-1 (later steps of a latent rollout count less)."""
    return rho ** torch.arange(steps, dtype=torch.float32, device=device)


def sample_heads(num_q: int, generator=None, k: int = 2):
    """k distinct Q-head indices drawn uniformly (CPU generator; None uses torch's global RNG)."""
    return torch.randperm(num_q, generator=generator)[:k].tolist()


def mlp(in_dim: int, hidden: list[int], out_dim: int, out_act: nn.Module | None = None, dropout: float = 0.0):
    """Hidden layers Linear -> (Dropout on the first) -> LayerNorm -> Mish; output Linear (-> LayerNorm -> out_act)."""
    layers, d = [], in_dim
    for i, h in enumerate(hidden):
        layers += [nn.Linear(d, h)] + ([nn.Dropout(dropout)] if i == 0 and dropout > 0 else [])
        layers += [nn.LayerNorm(h), nn.Mish()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    if out_act is not None:
        layers += [nn.LayerNorm(out_dim), out_act]
    return nn.Sequential(*layers)


def shard_draw(draw, shape, shard=(0, 1)):
    """Random numbers of `shape` for this process's slice of a global batch: with shard = (rank, processes),
    `draw` makes processes * shape[0] rows and slice `rank` is kept, so the processes together draw exactly what
    one process with the whole batch draws from the same generator (the training step's)."""
    rank, world = shard
    n = shape[0]
    return draw((n * world, *shape[1:]))[rank * n : (rank + 1) * n]


def random_shift(images, pad: int, generator=None, shard=(0, 1)):
    """Shift each image (N, H, W, C) by an integer in [-pad, pad] per axis with edge replication (DrQ's pad-and-
    crop, done as one gather with clamped indices). The shifts are drawn for the global batch (`shard_draw`)."""
    n, h, w = images.shape[:3]
    draw = lambda shape: torch.randint(-pad, pad + 1, shape, generator=generator)  # noqa: E731
    dy = shard_draw(draw, (n, 1), shard).to(images.device)
    dx = shard_draw(draw, (n, 1), shard).to(images.device)
    rows = (dy + torch.arange(h, device=images.device)).clamp(0, h - 1)[:, :, None]  # (n, h, 1)
    cols = (dx + torch.arange(w, device=images.device)).clamp(0, w - 1)[:, None, :]  # (n, 1, w)
    return images[torch.arange(n, device=images.device)[:, None, None], rows, cols]


class PixelEncoder(nn.Module):
    """uint8 frames (..., H, W, 3) -> SimNorm latents: convs k7s2, k5s2, k3s2, k3s1 with ReLU between, flatten."""

    def __init__(self, image_size: int = 64, channels: int = 32, simnorm_dim: int = 8, shift_pad: int = 0):
        super().__init__()
        size = image_size
        for k, s in ((7, 2), (5, 2), (3, 2), (3, 1)):
            size = (size - k) // s + 1
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for the encoder's convs (needs >= 37)")
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 7, 2), nn.ReLU(True), nn.Conv2d(c, c, 5, 2), nn.ReLU(True), nn.Conv2d(c, c, 3, 2),
            nn.ReLU(True),
            nn.Conv2d(c, c, 3, 1), nn.Flatten(),
        )  # fmt: skip
        self.image_size, self.simnorm_dim, self.shift_pad = image_size, simnorm_dim, shift_pad
        self.latent_dim = c * size * size
        if self.latent_dim % simnorm_dim:
            raise ValueError(f"latent dim {self.latent_dim} is not divisible by simnorm_dim {simnorm_dim}")

    def forward(self, pixels, generator=None, shard=(0, 1)):
        lead = pixels.shape[:-3]
        x = pixels.reshape(-1, *pixels.shape[-3:])
        if self.training and self.shift_pad > 0:
            x = random_shift(x, self.shift_pad, generator, shard)
        x = x.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return simnorm(self.net(x), self.simnorm_dim).reshape(*lead, -1)


# ------------------------------------------------------------------------------------------------ model


class TDMPC2(nn.Module):
    """Goal-conditioned TD-MPC2 world model (see the module docstring). Built from plain JSON-able kwargs, so
    swm_core.checkpoint rebuilds it. Actions are raw env actions in [-1, 1], concatenated in blocks of
    action_block; latents z and goal latents z_g have `latent_dim` features."""

    default_solver = "tdmpc2"

    def __init__(
        self,
        action_dim: int,
        action_block: int = 5,
        image_size: int = 64,
        num_channels: int = 32,
        simnorm_dim: int = 8,
        mlp_dim: int = 512,
        num_q: int = 5,
        num_bins: int = 101,
        vmin: float = -10.0,
        vmax: float = 10.0,
        q_dropout: float = 0.01,
        log_std_min: float = -10.0,
        log_std_max: float = 2.0,
        discount: float = 0.95,
        shift_pad: int = 4,
        goal_in_dynamics: bool = False,
    ):
        super().__init__()
        if action_dim < 1 or action_block < 1:
            raise ValueError(f"action_dim and action_block must be >= 1, got {action_dim}, {action_block}")
        if num_q < 2:
            raise ValueError(f"num_q must be >= 2 (targets take the min of 2 heads), got {num_q}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.action_dim, self.action_block, self.image_size = action_dim, action_block, image_size
        self.num_q, self.num_bins, self.vmin, self.vmax = num_q, num_bins, vmin, vmax
        self.log_std_min, self.log_std_max, self.discount = log_std_min, log_std_max, discount
        self.goal_in_dynamics = goal_in_dynamics
        self.encoder = PixelEncoder(image_size, num_channels, simnorm_dim, shift_pad)
        L, D = self.encoder.latent_dim, action_block * action_dim
        self.latent_dim, self.block_dim = L, D
        hidden = [mlp_dim, mlp_dim]
        self._dynamics = mlp(L + D + (L if goal_in_dynamics else 0), hidden, L, out_act=SimNorm(simnorm_dim))
        self._reward = mlp(L + D + L, hidden, num_bins)
        self._pi = mlp(L + L, hidden, 2 * D)
        self._qs = nn.ModuleList(mlp(L + D + L, hidden, num_bins, dropout=q_dropout) for _ in range(num_q))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for head in [self._reward, *self._qs]:  # reward and Q start at exactly 0 (TD-MPC2)
            nn.init.zeros_(head[-1].weight)
        self._target_qs = copy.deepcopy(self._qs).requires_grad_(False)
        self.register_buffer("q_scale", torch.ones(()))
        self.stats: dict = {}
        self.env_id: str | None = None  # set by the script from the dataset (saved in the checkpoint's extras)
        self._last_plan_infos: dict | None = None

    # --- pieces ---------------------------------------------------------------------------------------------
    def set_stats(self, stats: dict):
        """Keep dataset statistics (stats['action'] mean/std per env step, (A,)); actions are not normalised:
        TD-MPC2's tanh policy and the planner's bounds work on raw actions in [-1, 1]."""
        if "action" in stats:
            mean = torch.as_tensor(stats["action"]["mean"]).reshape(-1)
            if mean.numel() != self.action_dim:
                raise ValueError(f"action stats have dim {mean.numel()}, the model's action_dim is {self.action_dim}")
        self.stats = stats

    def encode(self, pixels, generator=None, shard=(0, 1)):
        """uint8 frames (..., H, W, 3) -> z (..., latent_dim), every group of simnorm_dim summing to 1 (in train
        mode with shift augmentation drawn from `generator` for the global batch, see `shard_draw`)."""
        return self.encoder(pixels, generator, shard)

    def next(self, z, a, zg):
        """Latent dynamics: z (..., L), action blocks a (..., D), goal latents zg (..., L) -> next z (..., L)."""
        x = torch.cat([z, a, zg] if self.goal_in_dynamics else [z, a], dim=-1)
        return self._dynamics(x)

    def reward_logits(self, z, a, zg):
        """Reward distribution logits (..., num_bins)."""
        return self._reward(torch.cat([z, a, zg], dim=-1))

    def reward(self, z, a, zg):
        """Expected reward (...)."""
        return two_hot_inv(self.reward_logits(z, a, zg), self.vmin, self.vmax)

    def q(self, z, a, zg, return_type: str = "all", target: bool = False, generator=None, pick=None):
        """Q of the online (or target) heads. "all": logits (num_q, ..., num_bins); "min"/"avg": min/mean value of
        2 heads (`pick`, else drawn with `generator`); "mean": mean value over all heads (deterministic, used for
        planning)."""
        heads = self._target_qs if target else self._qs
        x = torch.cat([z, a, zg], dim=-1)
        if return_type == "all":
            return torch.stack([h(x) for h in heads])
        if return_type == "mean":
            return torch.stack([two_hot_inv(h(x), self.vmin, self.vmax) for h in heads]).mean(0)
        if return_type not in ("min", "avg"):
            raise ValueError(f"return_type must be 'all', 'min', 'avg' or 'mean', got {return_type!r}")
        pick = sample_heads(len(heads), generator) if pick is None else pick
        values = torch.stack([two_hot_inv(heads[i](x), self.vmin, self.vmax) for i in pick])
        return values.min(0).values if return_type == "min" else values.mean(0)

    def _pi_params(self, z, zg):
        mu, log_std = self._pi(torch.cat([z, zg], dim=-1)).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        return mu, log_std

    def pi(self, z, zg, generator=None, shard=(0, 1)):
        """Policy prior: (tanh(mu), a sampled tanh-Gaussian action block, its log-probability (..., 1)); the noise
        is drawn for the global batch (`shard_draw`; z's first dim is the batch)."""
        mu, log_std = self._pi_params(z, zg)
        device = generator.device if generator is not None else mu.device
        draw = lambda shape: torch.randn(shape, generator=generator, device=device, dtype=mu.dtype)  # noqa: E731
        eps = shard_draw(draw, mu.shape, shard).to(mu.device)
        log_prob = (-0.5 * eps.square() - log_std).sum(-1, keepdim=True) - 0.5 * math.log(2 * math.pi) * mu.shape[-1]
        action = torch.tanh(mu + eps * log_std.exp())
        log_prob = log_prob - torch.log(F.relu(1 - action.square()) + 1e-6).sum(-1, keepdim=True)
        return torch.tanh(mu), action, log_prob

    def pi_mean(self, z, zg):
        """The policy prior's deterministic action block tanh(mu)."""
        return torch.tanh(self._pi_params(z, zg)[0])

    def update_q_scale(self, q, tau: float):
        """EMA (rate tau) of the 5th-95th percentile range of Q, the scale dividing Q in the policy loss."""
        q = q.detach().float().reshape(-1)
        spread = torch.quantile(q, 0.95) - torch.quantile(q, 0.05)
        self.q_scale.lerp_(spread.to(self.q_scale), tau)

    @torch.no_grad()
    def soft_update_targets(self, tau: float):
        """target <- (1 - tau) target + tau online, for every Q-head parameter."""
        for t, p in zip(self._target_qs.parameters(), self._qs.parameters()):
            t.lerp_(p, tau)

    # --- planning contract ----------------------------------------------------------------------------------
    def plan_latents(self, infos):
        """(z0, zg), each (B, latent_dim), from infos['pixels'/'goal'], memoized in infos['_z0'/'_zg'].

        Also records `infos` as the current plan's (model.last_plan_infos), so that TDMPC2Solver, which only sees
        cost_fn, can roll the policy prior out from the same start and goal."""
        if "_z0" not in infos:
            with torch.no_grad():
                infos["_z0"] = self.encode(infos["pixels"])
                infos["_zg"] = self.encode(infos["goal"])
        self._last_plan_infos = infos
        return infos["_z0"], infos["_zg"]

    @property
    def last_plan_infos(self) -> dict | None:
        return self._last_plan_infos

    def get_cost(self, infos, candidates):
        """Planning cost (B, S) of action-block candidates (B, S, H, action_block*A); differentiable in them.

        cost = -(sum_t gamma^t R(z_t, a_t, z_g) + gamma^H Q_mean(z_H, pi_mean(z_H, z_g), z_g)), the latents rolled
        out with the dynamics from the encoded current frame (batched over B*S)."""
        if candidates.dim() != 4 or candidates.shape[-1] != self.block_dim:
            raise ValueError(f"candidates must be (B, S, H, action_block*A = {self.block_dim}), "
                             f"got shape {tuple(candidates.shape)}")  # fmt: skip
        B, S, H, _ = candidates.shape
        z0, zg = self.plan_latents(infos)
        if z0.shape[0] != B:
            raise ValueError(f"infos hold {z0.shape[0]} envs but candidates have B = {B}")
        z, g = z0[:, None].expand(B, S, -1), zg[:, None].expand(B, S, -1)
        value, discount = 0.0, 1.0
        for t in range(H):
            a = candidates[:, :, t]
            value = value + discount * self.reward(z, a, g)
            z = self.next(z, a, g)
            discount *= self.discount
        value = value + discount * self.q(z, self.pi_mean(z, g), g, "mean")
        return -value

    @torch.no_grad()
    def policy_candidates(self, infos, num: int, horizon: int, generator=None, deterministic: bool = False):
        """(B, num, horizon, D) action-block sequences from the policy prior rolled out through the dynamics from
        the plan's start and goal (sampled with `generator`, or tanh(mu) when deterministic)."""
        z0, zg = self.plan_latents(infos)
        z, g = z0[:, None].expand(-1, num, -1), zg[:, None].expand(-1, num, -1)
        actions = []
        for _ in range(horizon):
            a = self.pi_mean(z, g) if deterministic else self.pi(z, g, generator)[1]
            actions.append(a)
            z = self.next(z, a, g)
        return torch.stack(actions, dim=2)


# ------------------------------------------------------------------------------------------------- data


class SuccessRule:
    """success(states (..., S), goal_states (..., S)) -> bool (...), the env's goal test on state vectors."""

    def __init__(self, env_id: str | None, success_distance: float | None = None):
        if success_distance is not None:
            if success_distance <= 0:
                raise ValueError(f"--success-distance must be > 0, got {success_distance}")
            self.kind, self.distance = "distance", float(success_distance)
        elif env_id and "TwoRoom" in env_id:
            self.kind, self.distance = "two_room", two_room.SUCCESS_DISTANCE
        elif env_id and "PushT" in env_id:
            self.kind, self.distance = "pusht", pusht.SUCCESS_DISTANCE
        else:
            raise ValueError(f"no success rule for env {env_id!r}: pass --success-distance D (success = L2 over the "
                             f"state < D); built in: swm/TwoRoom-v1, swm/PushT-v1")  # fmt: skip
        self.env_id = env_id

    def __call__(self, states, goals):
        states, goals = np.asarray(states, np.float64), np.asarray(goals, np.float64)
        if self.kind == "distance":
            return np.linalg.norm(states - goals, axis=-1) < self.distance
        if self.kind == "two_room":
            return np.linalg.norm(states[..., :2] - goals[..., :2], axis=-1) < self.distance
        close = np.linalg.norm(states[..., :4] - goals[..., :4], axis=-1) < self.distance
        return close & (pusht.angle_error(states[..., 4], goals[..., 4]) < pusht.SUCCESS_ANGLE)


def goal_rewards(states, goal_states, success):
    """states (B, T, S) of a window's frames, goal_states (B, S) -> (reward, done), each (B, T - 1) float32:
    reward_t = 0 and done_t = 1 when frame t + 1 reaches the goal, else -1 and 0."""
    done = success(states[:, 1:], np.asarray(goal_states)[:, None]).astype(np.float32)
    return done - 1.0, done


class GoalWindowDataset(WindowDataset):
    """WindowDataset of (pixels, action, state) windows, each with a hindsight goal (see the module docstring):
    adds `goal` (H, W, 3) uint8, `goal_state` (S,), `goal_kind` (0 current, 1 future, 2 random), and `reward`,
    `done` (num_steps - 1,). Goals are drawn per batch from a generator seeded by (seed, the batch's indices), and
    read with one sorted take per batch."""

    def __init__(self, path, num_steps: int, frameskip: int, success: SuccessRule, split: str = "train",
                 val_fraction: float = 0.1, seed: int = 0, goal_probs=(0.2, 0.5, 0.3), goal_discount: float = 0.99,
                 storage_options=None, version=None):  # fmt: skip
        probs = np.asarray(goal_probs, dtype=np.float64)
        if probs.shape != (3,) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"goal probabilities (current, future, random) must be 3 non-negative numbers summing "
                             f"to 1, got {list(goal_probs)}")  # fmt: skip
        if not 0.0 <= goal_discount < 1.0:
            raise ValueError(f"goal_discount must be in [0, 1), got {goal_discount}")
        super().__init__(path, num_steps=num_steps, frameskip=frameskip, columns=("pixels", "action", "state"),
                         split=split, val_fraction=val_fraction, seed=seed, storage_options=storage_options,
                         version=version)  # fmt: skip
        td = open_dataset(self.path, self.storage_options, version=self.version)
        pos = {int(e): i for i, e in enumerate(td.episode_ids)}
        idx = np.array([pos[int(e)] for e in self.episode_ids], dtype=np.int64)
        offsets, lengths = td.episode_offsets[idx].astype(np.int64), td.episode_lengths[idx].astype(np.int64)
        self.window_last_row = np.repeat(offsets + lengths - 1, self.windows_per_episode)
        self.split_rows = np.concatenate([np.zeros(0, np.int64)] + [o + np.arange(n) for o, n in zip(offsets, lengths)])
        self.success, self.goal_probs, self.goal_discount = success, probs, float(goal_discount)
        self._td, self._td_pid = None, None

    def __getstate__(self):
        state = super().__getstate__()
        state["_td"], state["_td_pid"] = None, None
        return state

    def _trajectories(self):
        if self._td is None or self._td_pid != os.getpid():
            self._td = open_dataset(self.path, self.storage_options, version=self.version)
            self._td_pid = os.getpid()
        return self._td

    def sample_goal_rows(self, idx: np.ndarray, rng: np.random.Generator):
        """Goal rows (n,) and kinds (n,) for windows idx (current / future geometric / random rows)."""
        n = len(idx)
        kind = rng.choice(3, size=n, p=self.goal_probs)
        start, last = self.window_starts[idx], self.window_last_row[idx]
        future = np.minimum(start + rng.geometric(1.0 - self.goal_discount, size=n), last)
        anywhere = self.split_rows[rng.integers(0, len(self.split_rows), size=n)]
        return np.select([kind == 0, kind == 1], [start, future], anywhere), kind

    def __getitems__(self, indices):
        """Samples of windows `indices`, or of `(global batch indices, start, stop)` (ShardedBatches with
        with_global=True): the goals are drawn for the whole global batch, as one process would, and the windows
        start:stop read."""
        glob, lo, hi = indices if isinstance(indices, tuple) else (indices, 0, len(indices))
        samples = super().__getitems__(list(glob[lo:hi]))
        idx = np.asarray(glob, dtype=np.int64).reshape(-1) % len(self)
        rng = np.random.default_rng([self.seed, *idx.tolist()])
        rows, kind = self.sample_goal_rows(idx, rng)
        rows, kind = rows[lo:hi], kind[lo:hi]
        goals = self._trajectories().read_rows(rows, ["pixels", "state"])
        states = np.stack([s["state"].numpy() for s in samples])
        reward, done = goal_rewards(states, goals["state"], self.success)
        for i, s in enumerate(samples):
            s["goal"] = torch.from_numpy(np.ascontiguousarray(goals["pixels"][i]))
            s["goal_state"] = torch.from_numpy(np.asarray(goals["state"][i], dtype=np.float32))
            s["goal_kind"] = torch.tensor(int(kind[i]))
            s["reward"], s["done"] = torch.from_numpy(reward[i]), torch.from_numpy(done[i])
        return samples


# ----------------------------------------------------------------------------------------------- losses


def model_losses(model, batch, args, generator=None, shard=(0, 1)):
    """TD-MPC2's world-model loss on a batch of goal windows (pixels (B, H+1, ...), action (B, H+1, D), goal,
    reward/done (B, H)). Returns (total, parts dict, detached latents zs (B, H+1, L), detached zg (B, L)).
    Random draws come from `generator` (None: torch's global one): the 2 target Q heads first, then the shift
    augmentation and the policy noise of the TD target, drawn for the global batch of which this is slice
    shard = (rank, processes)."""
    pixels, goal = batch["pixels"], batch["goal"]
    H = pixels.shape[1] - 1
    actions, reward, done = batch["action"][:, :H].clamp(-1, 1), batch["reward"], batch["done"]
    B = pixels.shape[0]
    target_heads = sample_heads(model.num_q, generator)
    z0_zg = model.encode(torch.stack([pixels[:, 0], goal], dim=1), generator, shard)  # (B, 2, L)
    z0, zg = z0_zg[:, 0], z0_zg[:, 1]
    with torch.no_grad():
        next_z = model.encode(pixels[:, 1:], generator, shard)  # (B, H, L)
        g = zg.detach()[:, None].expand(B, H, -1)
        next_a = model.pi(next_z, g, generator, shard)[1]
        td_target = reward + model.discount * (1.0 - done) * model.q(next_z, next_a, g, "min", target=True,
                                                                      pick=target_heads)  # fmt: skip
    w = rho_weights(H, args.rho, pixels.device)
    zs, z, consistency = [z0], z0, 0.0
    gz = zg[:, None].expand(B, H, -1)
    for t in range(H):
        z = model.next(z, actions[:, t], gz[:, t])
        consistency = consistency + w[t] * F.mse_loss(z, next_z[:, t])
        zs.append(z)
    zs = torch.stack(zs, dim=1)
    consistency = consistency / H
    reward_loss = (soft_ce(model.reward_logits(zs[:, :-1], actions, gz), reward, model.vmin, model.vmax).mean(0)
                   * w).sum() / H  # fmt: skip
    q_logits = model.q(zs[:, :-1], actions, gz, "all")  # (num_q, B, H, bins)
    value_loss = (soft_ce(q_logits, td_target[None].expand(model.num_q, -1, -1), model.vmin, model.vmax).mean(1)
                  * w).sum() / (H * model.num_q)  # fmt: skip
    total = args.consistency_coef * consistency + args.reward_coef * reward_loss + args.value_coef * value_loss
    parts = {"consistency": consistency.detach(), "reward": reward_loss.detach(), "value": value_loss.detach(),
             "td_target": td_target.mean()}  # fmt: skip
    return total, parts, zs.detach(), zg.detach()


def policy_loss(model, zs, zg, args, generator=None, shard=(0, 1)):
    """Max-entropy policy loss on detached latents zs (B, T, L) with goal latents zg (B, L): rho^t-weighted
    mean of alpha log pi - Q_avg2(z, pi(z)) / scale; Q heads are frozen (only the policy gets gradients). The
    policy noise and the 2 Q heads come from `generator`; with several processes (shard = (rank, processes))
    the Q scale's percentiles are those of the global batch."""
    T = zs.shape[1]
    g = zg[:, None].expand(-1, T, -1)
    _, a, log_pi = model.pi(zs, g, generator, shard)
    model._qs.requires_grad_(False)
    try:
        q = model.q(zs, a, g, "avg", generator=generator)  # (B, T)
    finally:
        model._qs.requires_grad_(True)
    model.update_q_scale(gather_batch(q[:, 0].detach()) if shard[1] > 1 else q[:, 0], args.tau)
    q = q / model.q_scale.clamp(min=1e-3)
    w = rho_weights(T, args.rho, zs.device)
    return ((args.entropy_coef * log_pi.squeeze(-1) - q).mean(0) * w).mean(), log_pi.mean()


def check_finite(loss: float, step: int, last_checkpoint=None, name: str = "loss") -> float:
    """Stop training with an error naming the step if the loss is NaN or infinite."""
    if not math.isfinite(loss):
        kept = f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else "; no checkpoint was written"
        raise FloatingPointError(f"{name} became {loss} at step {step}{kept}")
    return loss


# --------------------------------------------------------------------------------------------- planning


class TDMPC2Solver:
    """TD-MPC2's MPPI with policy-prior samples: ``solver(cost_fn, init, low, high) -> (B, H, D)``.

    ``cost_fn`` must come from ``model.get_cost`` (as MPCPolicy builds it): the solver first scores ``init`` with
    it, which makes the model memoize the plan's start/goal latents and expose that plan's infos as
    ``model.last_plan_infos``; ``num_pi_trajs`` samples are then rolled out from the policy prior
    (``model.policy_candidates``) and kept in every iteration, the rest drawn around the mean. Each iteration keeps
    the ``num_elites`` best (highest value = -cost), weights them exp(temperature * (value - max)) and refits
    mean and std (std clamped to [min_std, max_std], starting at max_std). The plan is one elite drawn by its
    weight. ``iterations=0`` returns the policy prior's deterministic rollout (actor only, no search).
    Seeded by its own ``torch.Generator``. ``last_info``: ``best_value``, ``mean_std``, ``pi_elite_fraction``.
    """

    def __init__(self, model, iterations: int = 6, num_samples: int = 512, num_elites: int = 64,
                 num_pi_trajs: int = 24, temperature: float = 0.5, min_std: float = 0.05, max_std: float = 2.0,
                 seed: int = 0):  # fmt: skip
        if iterations < 0 or num_pi_trajs < 0:
            raise ValueError(f"iterations and num_pi_trajs must be >= 0, got {iterations}, {num_pi_trajs}")
        if iterations > 0 and not 1 <= num_elites <= num_samples:
            raise ValueError(f"num_elites must be in [1, num_samples={num_samples}], got {num_elites}")
        if iterations > 0 and num_pi_trajs >= num_samples:
            raise ValueError(f"num_pi_trajs ({num_pi_trajs}) must be < num_samples ({num_samples})")
        if temperature <= 0 or not 0 < min_std <= max_std:
            raise ValueError(f"need temperature > 0 and 0 < min_std <= max_std, got {temperature}, {min_std}, {max_std}")
        self.model, self.iterations, self.num_samples, self.num_elites = model, iterations, num_samples, num_elites
        self.num_pi_trajs, self.temperature, self.min_std, self.max_std = num_pi_trajs, temperature, min_std, max_std
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self.last_info: dict = {}

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def _costs(self, cost_fn, candidates):
        costs = cost_fn(candidates)
        if tuple(costs.shape) != tuple(candidates.shape[:2]):
            raise ValueError(f"TDMPC2Solver: cost_fn must return (B, S) = {tuple(candidates.shape[:2])}, "
                             f"got {tuple(costs.shape)}")
        if torch.isnan(costs).any():
            raise ValueError(f"TDMPC2Solver: cost_fn returned NaN for {int(torch.isnan(costs).sum())} candidates")
        return costs

    @torch.no_grad()
    def __call__(self, cost_fn, init, low, high):
        if not torch.is_tensor(init) or init.dim() != 3:
            raise ValueError(f"TDMPC2Solver: init must be a (B, H, D) tensor, got {getattr(init, 'shape', type(init))}")
        B, H, D = init.shape
        low = torch.as_tensor(low, dtype=init.dtype, device=init.device).expand(D)
        high = torch.as_tensor(high, dtype=init.dtype, device=init.device).expand(D)
        if (low > high).any():
            raise ValueError(f"low must be <= high in every dim, got low={low.tolist()} high={high.tolist()}")
        gen = self.generator(init.device)
        mean = torch.maximum(torch.minimum(init, high), low)
        if self.model is not None:
            self.model._last_plan_infos = None
        self._costs(cost_fn, mean[:, None])  # memoizes the plan latents, exposes the plan's infos
        infos = self.model.last_plan_infos if self.model is not None else None
        n_pi = self.num_pi_trajs if self.iterations > 0 else 1
        if n_pi > 0:
            if infos is None:
                raise ValueError("TDMPC2Solver needs a cost_fn built from model.get_cost (the model saw no plan "
                                 "infos); use num_pi_trajs=0 with other cost functions")  # fmt: skip
            pi_actions = self.model.policy_candidates(infos, n_pi, H, generator=gen,
                                                      deterministic=self.iterations == 0).to(init.dtype)
            pi_actions = torch.maximum(torch.minimum(pi_actions, high), low)
            if self.iterations == 0:
                self.last_info = {"best_value": None, "mean_std": 0.0, "pi_elite_fraction": 1.0}
                return pi_actions[:, 0]
        else:
            pi_actions = init.new_zeros(B, 0, H, D)
        std = torch.full_like(mean, self.max_std)
        S, K, rows = self.num_samples, self.num_elites, torch.arange(B, device=init.device)
        for _ in range(self.iterations):
            noise = torch.randn((B, S - n_pi, H, D), generator=gen, device=init.device, dtype=init.dtype)
            samples = torch.maximum(torch.minimum(mean[:, None] + std[:, None] * noise, high), low)
            candidates = torch.cat([pi_actions, samples], dim=1)
            value = -self._costs(cost_fn, candidates)
            elite_value, elite_idx = value.topk(K, dim=1)
            elites = candidates[rows[:, None], elite_idx]  # (B, K, H, D)
            score = torch.exp(self.temperature * (elite_value - elite_value[:, :1]))
            score = score / score.sum(1, keepdim=True)
            mean = torch.einsum("bk,bkhd->bhd", score, elites)
            var = torch.einsum("bk,bkhd->bhd", score, (elites - mean[:, None]).square())
            std = var.sqrt().clamp(self.min_std, self.max_std)
        choice = torch.multinomial(score, 1, generator=gen)[:, 0]
        self.last_info = {"best_value": elite_value[:, 0], "mean_std": float(std.mean()),
                          "pi_elite_fraction": float((elite_idx < n_pi).float().mean())}  # fmt: skip
        return elites[rows, choice]


# ------------------------------------------------------------------------------- off-manifold measures


def sample_action_blocks(dataset, episode_ids, block: int, n: int, rng: np.random.Generator):
    """n random action blocks (n, block * A): `block` consecutive real actions of one of the given episodes."""
    lengths = dict(zip(dataset.episode_ids.tolist(), dataset.episode_lengths.tolist()))
    offsets = dict(zip(dataset.episode_ids.tolist(), dataset.episode_offsets.tolist()))
    usable = [int(e) for e in episode_ids if lengths[int(e)] - 1 >= block]
    if not usable:
        raise ValueError(f"no episode of {dataset.path} has {block} actions")
    eps = rng.choice(usable, size=n)
    starts = np.array([offsets[e] + rng.integers(0, lengths[e] - block) for e in eps], dtype=np.int64)
    rows = (starts[:, None] + np.arange(block)).reshape(-1)
    actions = dataset.read_rows(rows, ["action"])["action"].astype(np.float32)
    return np.clip(actions.reshape(n, -1), -1.0, 1.0)


def nearest_distance(query, reference):
    """Mean over query rows (n, D) of the L2 distance to the nearest reference row (m, D)."""
    q = torch.as_tensor(np.asarray(query), dtype=torch.float32)
    r = torch.as_tensor(np.asarray(reference), dtype=torch.float32)
    return float(torch.cdist(q, r).min(dim=1).values.mean())


def action_block_stats(blocks, reference) -> dict:
    """How a set of action blocks (n, D) sits against dataset blocks: nearest-data distance, |a|, saturation."""
    blocks = np.asarray(blocks, dtype=np.float32)
    return {"nn_dist": nearest_distance(blocks, reference), "abs_mean": float(np.abs(blocks).mean()),
            "saturated": float((np.abs(blocks) > 0.99).mean())}  # fmt: skip


@torch.no_grad()
def validate(model, loader, args, max_batches, device, reference_blocks):
    """Mean validation losses, and the policy prior's action blocks against the data's on the same windows:
    nearest-dataset-block distance and saturation of pi_mean vs the windows' own action blocks, the Q gap
    Q_mean(z, pi_mean) - Q_mean(z, a_data) (positive: the actor climbs values the data never tested), and z_std,
    the mean over features of the batch std of z (near 0: the latents collapsed)."""
    was_training = model.training
    model.eval()
    sums, n, pi_blocks, data_blocks = {}, 0, [], []
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        total, parts, zs, zg = model_losses(model, batch, args)
        z0, a_data = zs[:, 0], batch["action"][:, 0].clamp(-1, 1)
        a_pi = model.pi_mean(z0, zg)
        gap = model.q(z0, a_pi, zg, "mean") - model.q(z0, a_data, zg, "mean")
        extra = {"q_gap": gap.mean(), "z_std": z0.std(0).mean()}  # z_std ~ 0: the latents collapsed
        for k, v in {"total": total, **parts, **extra}.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        pi_blocks.append(a_pi.cpu().numpy())
        data_blocks.append(a_data.cpu().numpy())
        n += 1
    model.train(was_training)
    out = {k: v / max(n, 1) for k, v in sums.items()}
    if n:
        pi_stats = action_block_stats(np.concatenate(pi_blocks), reference_blocks)
        data_stats = action_block_stats(np.concatenate(data_blocks), reference_blocks)
        out.update({f"pi_{k}": v for k, v in pi_stats.items()})
        out.update({f"data_{k}": v for k, v in data_stats.items()})
    return out


# ------------------------------------------------------------------------------------------- evaluation


class RecordingSolver:
    """Wraps a solver and keeps the first (executed) action block of every plan it returns."""

    def __init__(self, solver):
        self.solver, self.blocks = solver, []

    def __call__(self, cost_fn, init, low, high):
        plan = self.solver(cost_fn, init, low, high)
        self.blocks.append(plan[:, 0].detach().float().cpu().numpy())
        return plan


def summary_row(name: str, result: dict, seconds: float, plans: int | None = None) -> dict:
    """One row of the evaluation's JSON table, with the fields and units of the solver mains' rows
    (solvers/cem_plan.py's ``summarize``): success %, solved at start %, success % of the pairs not solved at the
    start, mean steps to success, ms per plan."""
    row = {"policy": name, "success_pct": 100 * result["success_rate"], "episodes": result["episodes"],
           "solved_at_start_pct": 100 * result["solved_at_start_rate"]}
    unsolved = ~np.asarray(result["solved_at_start"], bool)
    success = np.asarray(result["success"], bool)
    row["success_unsolved_pct"] = 100 * float(success[unsolved].mean()) if unsolved.any() else float("nan")
    steps = np.asarray(result["steps_to_success"])[success]
    row["mean_steps_to_success"] = float(steps.mean()) if len(steps) else float("nan")
    row["ms_per_plan"] = 1000 * seconds / plans if plans else float("nan")
    return row


# the JSON's policy names: the model's row first, named by its solver (as the solver mains name theirs), then floors
JSON_NAMES = {"tdmpc2 (MPPI + pi)": "tdmpc2", "pi prior only": "pi prior", "no-op": "no-op", "random": "random"}


def evaluate_policies(model, args, device) -> list[dict]:
    """The dataset-driven evaluation on args.eval_dataset: TD-MPC2 (MPPI + policy samples), the policy prior
    alone, and the no-op / random floors, on the same (episode, start) pairs; prints a table and, with
    args.output_json, writes it in the layout of the solver mains' --output-json (rows first TD-MPC2, named
    'tdmpc2', then 'pi prior', 'no-op', 'random'; per-episode results under "dataset"; the action-block
    statistics under "action_blocks")."""

    ds = open_dataset(args.eval_dataset)
    check_columns(ds, ("pixels", "action", "state", "sim_state"), what="evaluation")
    env_id = ds.metadata.get("env_id")
    model_env = getattr(model, "env_id", None)
    if model_env and env_id and model_env != env_id:
        raise ValueError(f"--eval-dataset {args.eval_dataset} was recorded on {env_id!r}, the model on {model_env!r}")
    # reference action blocks: half the held-out episodes; the other half gives the in-distribution baseline
    rng = np.random.default_rng(args.eval_seed)
    ids = rng.permutation(ds.episode_ids)
    half = max(1, len(ids) // 2)
    reference = sample_action_blocks(ds, ids[:half], model.action_block, 4096, rng)
    data_blocks = sample_action_blocks(ds, ids[half:] if len(ids) > 1 else ids, model.action_block, 512, rng)
    shift = parse_shift(env_id, args.variation, args.wrapper)
    world = World(env_id, num_envs=args.eval_num_envs, image_size=int(ds.metadata.get("image_size", 64)),
                  max_episode_steps=args.eval_budget, seed=args.eval_seed, wrappers=shift.wrappers)  # fmt: skip
    mppi = dict(iterations=args.mppi_iterations, num_samples=args.num_samples, num_elites=args.num_elites,
                num_pi_trajs=args.num_pi_trajs, temperature=args.temperature, min_std=args.min_std,
                max_std=args.max_std, seed=args.seed)  # fmt: skip
    recorders = {"tdmpc2 (MPPI + pi)": RecordingSolver(TDMPC2Solver(model, **mppi)),
                 "pi prior only": RecordingSolver(TDMPC2Solver(model, **{**mppi, "iterations": 0}))}  # fmt: skip
    policies = {name: MPCPolicy(model, rec, horizon=args.plan_horizon, receding_horizon=args.receding_horizon,
                                action_block=model.action_block, device=device)
                for name, rec in recorders.items()}  # fmt: skip
    policies["no-op"] = NoOpPolicy()
    policies["random"] = RandomPolicy(seed=args.eval_seed)
    rows, table, per_episode = [], [], {}
    for name, policy in policies.items():
        t0 = time.perf_counter()
        res = world.evaluate_from_dataset(ds, episodes=args.eval_episodes, goal_offset=args.goal_offset,
                                          eval_budget=args.eval_budget, seed=args.eval_seed, policy=policy,
                                          options=shift.options)  # fmt: skip
        seconds = time.perf_counter() - t0
        steps = res["steps_to_success"][res["success"]]
        row = {"policy": name, "success": res["success_rate"], "solved_at_start": res["solved_at_start_rate"],
               "mean_steps_to_success": float(steps.mean()) if len(steps) else float("nan"),
               "seconds": seconds}  # fmt: skip
        if name in recorders and recorders[name].blocks:
            row.update(action_block_stats(np.concatenate(recorders[name].blocks), reference))
        rows.append(row)
        table.append(summary_row(JSON_NAMES[name], res, seconds if name in recorders else 0.0,
                                 getattr(policy, "num_plans", None)))  # fmt: skip
        per_episode[JSON_NAMES[name]] = {**{k: np.asarray(v).tolist() for k, v in res.items() if k != "variations"},
                                         **shift.record(res)}  # fmt: skip
    rows.append({"policy": "dataset blocks (held-out)", **action_block_stats(data_blocks, reference)})
    world.close()
    print(f"\ndataset-driven evaluation on {args.eval_dataset} ({env_id}): {args.eval_episodes} episodes, "
          f"goal_offset {args.goal_offset}, eval_budget {args.eval_budget}, horizon {args.plan_horizon} x "
          f"action_block {model.action_block}, receding_horizon {args.receding_horizon}"
          + (f", shift: {shift.label}" if shift else ""))  # fmt: skip
    print(f"{'policy':<28}{'success':>9}{'at start':>9}{'steps':>7}{'nn_dist':>9}{'|a|':>7}{'sat':>7}{'sec':>7}")
    fmt = lambda r, k, f: format(r[k], f) if k in r else "-"  # noqa: E731
    for r in rows:
        print(f"{r['policy']:<28}{fmt(r, 'success', '.1%'):>9}{fmt(r, 'solved_at_start', '.1%'):>9}"
              f"{fmt(r, 'mean_steps_to_success', '.1f'):>7}{fmt(r, 'nn_dist', '.3f'):>9}{fmt(r, 'abs_mean', '.2f'):>7}"
              f"{fmt(r, 'saturated', '.1%'):>7}{fmt(r, 'seconds', '.0f'):>7}")  # fmt: skip
    print("nn_dist: mean L2 from each executed action block to the nearest of 4096 held-out dataset blocks; "
          "|a|: mean |action|; sat: fraction of |action| > 0.99")
    if args.output_json:
        blocks = {JSON_NAMES.get(r["policy"], r["policy"]): {k: v for k, v in r.items()
                                                              if k in ("nn_dist", "abs_mean", "saturated")}
                  for r in rows if "nn_dist" in r}  # fmt: skip
        output = {"args": public_args(args), "env_id": env_id, "shift": shift.describe(), "tables": {"dataset": table},
                  "dataset": per_episode, "action_blocks": blocks}  # fmt: skip
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output_json, "w") as f:
            json.dump(output, f, indent=1)
        print(f"wrote {args.output_json}")
    return rows


# ----------------------------------------------------------------------------------- training plumbing


def check_eval_args(args: Args):
    """--eval-only needs a checkpoint and a dataset to evaluate on; --variation/--wrapper are checked against the
    evaluation's env here, before any training."""
    if args.eval_only and not (args.resume and args.eval_dataset):
        raise ValueError(f"--eval-only needs --resume CKPT and --eval-dataset PATH, got --resume {args.resume} "
                         f"--eval-dataset {args.eval_dataset}")  # fmt: skip
    if args.variation or args.wrapper:
        if not args.eval_dataset:
            raise ValueError("--variation/--wrapper shift the evaluation: pass --eval-dataset PATH")
        parse_shift(open_dataset(args.eval_dataset).metadata.get("env_id"), args.variation, args.wrapper)


def check_columns(dataset, needed=("pixels", "action", "state"), what: str = "TD-MPC2 training"):
    """A clear error naming the first column this script needs that the dataset lacks."""
    for col in needed:
        if col not in dataset.columns:
            raise ValueError(f"dataset {dataset.path} has no {col!r} column, which {what} needs "
                             f"(state: to define the goal-reaching reward); its columns: {dataset.columns}")  # fmt: skip


def compute_stats(dataset, episode_ids) -> dict:
    """Per-dimension mean/std of `action` and `state` over the given (train) episodes' rows with finite values."""
    rows = np.concatenate([dataset.episode_rows(ep) for ep in episode_ids])
    data = dataset.read_rows(rows, ["action", "state"])
    stats = {}
    for col, values in data.items():
        values = np.asarray(values, dtype=np.float64).reshape(len(rows), -1)
        values = values[np.isfinite(values).all(axis=1)]
        stats[col] = {"mean": values.mean(0).astype(np.float32), "std": values.std(0).astype(np.float32)}
    return stats



def model_config(args: Args, action_dim: int) -> dict:
    return dict(
        action_dim=action_dim, action_block=args.frameskip, image_size=args.image_size,
        num_channels=args.num_channels, simnorm_dim=args.simnorm_dim, mlp_dim=args.mlp_dim, num_q=args.num_q,
        num_bins=args.num_bins, vmin=args.vmin, vmax=args.vmax, q_dropout=args.q_dropout, discount=args.discount,
        shift_pad=args.shift_pad, goal_in_dynamics=args.goal_in_dynamics,
    )  # fmt: skip


def make_optimizers(model, args):
    """Adam for encoder (lr x enc_lr_scale), dynamics, reward and Q; a separate Adam for the policy prior."""
    heads = [*model._dynamics.parameters(), *model._reward.parameters(), *model._qs.parameters()]
    optimizer = torch.optim.Adam([{"params": model.encoder.parameters(), "lr": args.lr * args.enc_lr_scale},
                                  {"params": heads, "lr": args.lr}], lr=args.lr)  # fmt: skip
    pi_optimizer = torch.optim.Adam(model._pi.parameters(), lr=args.lr, eps=1e-5)
    return optimizer, pi_optimizer


def public_args(args) -> dict:
    """The run's flags as saved in checkpoints and logged to wandb: without the S3 credentials."""
    return {k: v for k, v in vars(args).items() if k not in ("access_key_id", "secret_access_key")}


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of one training step's shift, policy-noise and Q-head draws (identical on every process
    and after a resume)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def save_training_state(path: Path, model, config, stats, optimizers, step, args, metrics, env_id, data=None):
    """model.pt via swm_core.checkpoint (env_id in its extras) and, written before it, the training state beside it
    (swm_core.train_state: both optimizers, data position), which model.pt names."""
    state = {"optimizer": optimizers[0].state_dict(), "pi_optimizer": optimizers[1].state_dict(), "data": data or {}}
    return save_train_state(path, step, state, lambda name: save_checkpoint(
        path, model, config=config, stats=stats, step=step, env_id=env_id,
        args=json.loads(json.dumps(public_args(args))), metrics=metrics, train_state=name))  # fmt: skip


if __name__ == "__main__":
    args = tyro.cli(Args, default=preset_defaults(sys.argv[1:]))

    check_eval_args(args)
    procs = setup(args.device)  # under torchrun: this process's rank and device, the process group joined
    log = print if procs.main else (lambda *a, **k: None)  # printing, wandb, checkpoints, evaluation: rank 0 only
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every process
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = procs.device

    if args.eval_only:
        teardown()  # evaluation runs on the main process alone
        if procs.main:
            model, ckpt = load_checkpoint(args.resume, map_location=device, expected_class="TDMPC2", model_class=TDMPC2)
            model.env_id = ckpt["extra"].get("env_id")
            print(f"TDMPC2 from {args.resume} (step {ckpt['extra'].get('step')}, env {model.env_id}) on {device}")
            evaluate_policies(model, args, device)
        sys.exit(0)

    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.dataset) else None)  # fmt: skip
    version = int(args.dataset_version) if str(args.dataset_version).isdigit() else args.dataset_version
    dataset = open_dataset(args.dataset, storage_options, version)
    check_columns(dataset)
    env_id = dataset.metadata.get("env_id")
    success = SuccessRule(env_id, args.success_distance)
    action_dim = dataset.shape_of("action")[0]
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

    # data: every process reads its own slice of each global batch (batch_size x processes windows); the goals
    # are drawn per global batch
    window = dict(num_steps=args.horizon + 1, frameskip=args.frameskip, success=success,
                  val_fraction=args.val_fraction, seed=args.seed, goal_discount=args.goal_discount,
                  goal_probs=(args.goal_current, args.goal_future, args.goal_random),
                  storage_options=storage_options, version=version)  # fmt: skip
    train_set = GoalWindowDataset(args.dataset, split="train", **window)
    val_set = GoalWindowDataset(args.dataset, split="val", **window)
    batches = ShardedBatches(len(train_set), args.batch_size, args.seed, procs.rank, procs.world_size,
                             with_global=True)  # fmt: skip
    # spawned workers: a forked child that reads Lance after the parent did can hang (lance is not fork-safe); the
    # loader's own generator only seeds its workers
    loader_kw = dict(num_workers=args.num_workers, pin_memory=device.type == "cuda",
                     persistent_workers=args.num_workers > 0,
                     multiprocessing_context="spawn" if args.num_workers > 0 else None)  # fmt: skip
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=batches, generator=torch.Generator(),
                                               **loader_kw)  # fmt: skip
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size, shuffle=False, **loader_kw)
    if len(batches) == 0:
        raise ValueError(f"{args.dataset}: {len(train_set)} train windows, fewer than --batch-size {args.batch_size}"
                         + (f" x {procs.world_size} processes" if procs.world_size > 1 else ""))  # fmt: skip
    reference_blocks = sample_action_blocks(dataset, train_set.episode_ids, args.frameskip, 4096,
                                            np.random.default_rng(args.seed))  # fmt: skip

    # model and optimizers
    start_step = 0
    if args.resume:
        resume_ckpt = read_checkpoint(args.resume)
        check_class(resume_ckpt, "TDMPC2", args.resume)
        check_env(resume_ckpt, env_id, args.resume, f"the env of --dataset {args.dataset}")
        config = resume_ckpt["config"]
        if config["action_dim"] != action_dim or config["action_block"] != args.frameskip:
            raise ValueError(f"--resume {args.resume} was trained with action_dim {config['action_dim']} and "
                             f"action_block {config['action_block']}, but the dataset gives action_dim {action_dim} "
                             f"with --frameskip {args.frameskip}")  # fmt: skip
        model, ckpt = load_checkpoint(args.resume, expected_class="TDMPC2", model_class=TDMPC2)
        stats, start_step = ckpt["stats"], int(ckpt["extra"].get("step", 0))
    else:
        config = model_config(args, action_dim)
        model = TDMPC2(**config)
        stats = compute_stats(dataset, train_set.episode_ids)
        model.set_stats(stats)
    model.env_id = env_id
    model.to(device).train()
    log(f"TDMPC2: {sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f}M trainable "
        f"parameters, latent {model.latent_dim}, on {device}")  # fmt: skip
    optimizers = make_optimizers(model, args)
    if args.resume:
        state = load_train_state(args.resume, ckpt, map_location=device)
        if state is None:
            log(f"warning: {args.resume} has no training state beside it; resuming with fresh optimizers and the "
                f"data order from its start (not an exact resume)")  # fmt: skip
        else:
            optimizers[0].load_state_dict(state["optimizer"])
            optimizers[1].load_state_dict(state["pi_optimizer"])
            batches.load_state_dict(state["data"])
    loss_log = LossLog(args.loss_log, start_step) if args.loss_log and procs.main else None
    model_params = [p for g in optimizers[0].param_groups for p in g["params"]]
    shard = (procs.rank, procs.world_size)

    # training loop
    step, last_ckpt, metrics = start_step, args.resume, {}
    data_iter = batches.stream(train_loader)
    loop_start, wait_time, window_start, window_steps = time.perf_counter(), 0.0, time.perf_counter(), 0
    while step < args.total_steps:
        seed_step(args.seed, step, procs.rank)  # global draws (dropout) depend on the step: resumes repeat them
        generator = step_generator(args.seed, step)  # shift, policy noise, Q heads: drawn for the global batch
        t0 = time.perf_counter()
        batch = next(data_iter)
        wait_time += time.perf_counter() - t0
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}

        loss, parts, zs, zg = model_losses(model, batch, args, generator, shard)
        values = mean_over_processes(torch.stack([loss, *parts.values(), batch["done"].mean()])).tolist()
        check_finite(values[0], step, last_ckpt)
        optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(model_params)
        grad_norm = nn.utils.clip_grad_norm_(model_params, args.grad_clip)
        check_finite(grad_norm.item(), step, last_ckpt, name="gradient norm")  # a NaN step would poison the weights
        optimizers[0].step()
        pi_loss, log_pi = policy_loss(model, zs, zg, args, generator, shard)
        pi_values = mean_over_processes(torch.stack([pi_loss, log_pi])).tolist()
        check_finite(pi_values[0], step, last_ckpt, name="policy loss")
        optimizers[1].zero_grad(set_to_none=True)
        pi_loss.backward()
        average_gradients(model._pi.parameters())
        pi_grad_norm = nn.utils.clip_grad_norm_(model._pi.parameters(), args.grad_clip)
        check_finite(pi_grad_norm.item(), step, last_ckpt, name="policy gradient norm")
        optimizers[1].step()
        model.soft_update_targets(args.tau)
        step += 1
        window_steps += 1
        global_parts = dict(zip(parts, values[1:-1]))
        if loss_log:
            loss_log.write(step, {"loss": values[0], **global_parts, "pi": pi_values[0], "grad_norm": grad_norm,
                                  "pi_grad_norm": pi_grad_norm, "q_scale": model.q_scale})  # fmt: skip

        if step % args.log_every == 0 or step == args.total_steps:
            now = time.perf_counter()
            metrics = {
                "losses/total": values[0], **{f"losses/{k}": v for k, v in global_parts.items()},
                "losses/pi": pi_values[0], "losses/log_pi": pi_values[1], "losses/grad_norm": grad_norm.item(),
                "losses/pi_grad_norm": pi_grad_norm.item(), "charts/q_scale": model.q_scale.item(),
                "charts/goal_reached_fraction": values[-1],
                "charts/SPS": window_steps / (now - window_start),
                "charts/data_wait_fraction": wait_time / (now - loop_start),
            }  # fmt: skip
            window_start, window_steps = now, 0
            log(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
            if args.track and procs.main:
                wandb.log(metrics, step=step)
        if procs.main and ((args.val_every and step % args.val_every == 0) or step == args.total_steps):
            val = validate(model, val_loader, args, args.val_batches, device, reference_blocks)
            metrics.update({f"val/{k}": v for k, v in val.items()})
            log(f"step {step}: " + " ".join(f"val/{k}={v:.4g}" for k, v in val.items()), flush=True)
            if args.track:
                wandb.log({f"val/{k}": v for k, v in val.items()}, step=step)
        if step % args.checkpoint_every == 0 or step == args.total_steps:
            if procs.main:
                save_training_state(out_path, model, config, stats, optimizers, step, args, metrics, env_id,
                                    batches.state_dict())  # fmt: skip
            last_ckpt = out_path
            log(f"step {step}: checkpoint {last_ckpt}", flush=True)

    loop_time = time.perf_counter() - loop_start
    log(f"done: {step - start_step} steps in {loop_time:.1f}s ({(step - start_step) / max(loop_time, 1e-9):.2f} "
        f"steps/s), data_wait_fraction={wait_time / max(loop_time, 1e-9):.3f}, checkpoint "
        f"{last_ckpt or args.resume}")  # fmt: skip
    teardown()  # evaluation runs on the main process alone
    if args.eval_dataset and procs.main:
        rows = evaluate_policies(model, args, device)
        if args.track:
            wandb.log({f"eval/{r['policy']}/success": r["success"] for r in rows if "success" in r}, step=step)
    if args.track and procs.main:
        wandb.finish()
