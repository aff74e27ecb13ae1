# PLDM (Planning with Latent Dynamics Models): IMPALA encoder, GRU predictor, VICReg + IDM. docs/reference.md §4
"""The original PLDM recipe (Sobal et al., 2025) as one script.

Model. An IMPALA conv encoder (stacks of conv 3x3 -> max-pool 3/2 -> residual blocks, then a linear layer
and a LayerNorm) maps a frame to a vector latent z. A one-step predictor z_{t+1} = f(z_t, a_t) is
conditioned on the (normalised) action block a_t: `gru` (the original Two-Room choice: a GRU cell whose
hidden state is the latent and whose input is the action) or `mlp` (residual MLP on [z_t, a_t]). The
predictor's output goes through the encoder's own final LayerNorm (tied, as in the original), so
predictions live where encodings live.

Training. Encoder and predictor are trained jointly from raw frames. A window of T frames is encoded into
z_0..z_{T-1}; the predictor is rolled out open-loop from the first frame only: p_0 = z_0,
p_{t+1} = f(p_t, a_t). Loss (each term has its own function below):

    sim   * mean_{t>=1} |p_t - z_t|^2                        prediction
    std   * variance hinge of z_0 over the batch             VICReg variance, first frame only
    cov   * off-diagonal covariance^2 of z_0 over the batch  VICReg covariance, first frame only
    std_t * variance hinge of z_1..z_{T-1} over time, per trajectory (averaged over the batch)
    cov_t * off-diagonal covariance^2 of z_1..z_{T-1} over time, per trajectory
    sim_t * mean |z_{t+1} - z_t|^2                           temporal smoothness of the encodings
    idm   * mean |g(z_t, z_{t+1}) - a_t|^2                   inverse dynamics (normalised action block)

No stop-gradient, no EMA target, no projector (the original's `projector: id`). Two-Room coefficients:
sim 1, std 3.98, cov 6.92, std_t 0.245, cov_t 0, sim_t 0.742, idm 1.07; the original's small-data set
(~5k trajectories): std 2.2, cov 13, std_t 0.19, sim_t 0.5, idm 2 (`--coeffs small_data`).

Planning. `get_cost` encodes the current and goal frames once per plan, rolls the predictor out over the
candidate action blocks and returns the squared Euclidean distance |p_H - z_goal|^2 (summed over the D latent
dims) of the last (or, with `cost_sum_steps`, every) predicted latent to the goal latent. The original plans
with MPPI (`default_solver`). The cost is a sum, not a mean over dims, because MPPI's softmax weights
exp(-cost / lambda) are not scale-free: with the mean the solvers' default lambda 0.5 weights the candidates
almost uniformly (CEM, rank-based, is unaffected). notes: docs/notes/pldm.md

Choices, against the original Two-Room config (IMPALA backbone, final LayerNorm, `rnnV2` GRU predictor with
512 units and the LayerNorm tied to the backbone's, IDM MLP with 512 hidden units, Adam lr 1e-3, batch 64,
17-frame windows): frames here are RGB (the original has 2 channels, dot and wall); the latent is a vector
(the IMPALA features flattened through a linear layer, as the original's `impala` backbone), not a spatial
map; one model step is `frameskip` env steps (the original steps every env step), so the predictor and the
IDM see action blocks.
"""

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
from swm_core.s3 import is_s3, s3_storage_options
from swm_core.train_state import LossLog, seed_step
from swm_core.train_state import load as load_train_state
from swm_core.train_state import save as save_train_state


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch, data order)"""
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
    """defaults to start from: `paper` (original PLDM Two-Room sizes, GPU) or `cpu` (a few CPU minutes)"""

    # data
    dataset: str = "data/two_room.lance"
    """path (or s3:// URI) of the Lance trajectory dataset (needs `pixels` and `action` columns)"""
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
    num_steps: int = 17
    """frames per training window T; the predictor is rolled out T - 1 steps from the first frame"""
    frameskip: int = 5
    """env steps per model step (the action block is frameskip * action_dim)"""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation"""
    num_workers: int = 4
    """DataLoader worker processes"""

    # model
    image_size: int = 64
    """encoder input resolution (frames are resized to it when the dataset differs)"""
    impala_channels: tuple[int, ...] = (16, 32, 32)
    """channels of the IMPALA stacks (each: conv 3x3, max-pool 3/2, residual blocks)"""
    res_blocks: int = 2
    """residual blocks per IMPALA stack"""
    latent_dim: int = 512
    """latent dimension D (the encoder's linear output, the GRU hidden size)"""
    predictor: Literal["gru", "mlp"] = "gru"
    """one-step predictor: `gru` (original Two-Room) or `mlp` (residual MLP on [z, a])"""
    pred_hidden: int = 512
    """hidden width of the `mlp` predictor (ignored by `gru`)"""
    idm_hidden: int = 512
    """hidden width of the inverse-dynamics MLP"""

    # loss
    coeffs: Literal["two_room", "small_data"] = "two_room"
    """loss-coefficient set: the original Two-Room one, or its small-data one (~5k trajectories)"""
    sim: float | None = None
    """weight of the prediction MSE (None: from --coeffs)"""
    std: float | None = None
    """weight of the VICReg variance hinge over the batch at the first frame (None: from --coeffs)"""
    cov: float | None = None
    """weight of the VICReg covariance term over the batch at the first frame (None: from --coeffs)"""
    std_t: float | None = None
    """weight of the variance hinge over time within each trajectory (None: from --coeffs)"""
    cov_t: float | None = None
    """weight of the covariance term over time within each trajectory (None: from --coeffs)"""
    sim_t: float | None = None
    """weight of the temporal smoothness |z_{t+1} - z_t|^2 (None: from --coeffs)"""
    idm: float | None = None
    """weight of the inverse-dynamics action MSE (None: from --coeffs)"""

    # optimisation
    lr: float = 1e-3
    """Adam learning rate (the original's base_lr)"""
    weight_decay: float = 0.0
    """AdamW weight decay (0: plain Adam, as the original)"""
    batch_size: int = 64
    """windows per optimisation step and process (under torchrun the global batch is this times the processes)"""
    grad_clip: float = 0.0
    """max global gradient norm (0: no clipping, as the original)"""
    total_steps: int = 50_000
    """optimisation steps to train to (counted from 0 also when resuming)"""

    # logging, evaluation, checkpoints
    log_every: int = 100
    """steps between printed/logged training metrics"""
    val_every: int = 2_000
    """steps between validation passes (0: only at the end)"""
    val_batches: int = 20
    """batches per validation pass"""
    checkpoint_every: int = 5_000
    """steps between checkpoints (always one at the end)"""
    output: str | None = None
    """checkpoint path (default runs/<run_name>/model.pt); the training state (optimizer, data position) goes to
    <stem>.train-<step>.pt beside it"""
    resume: str | None = None
    """checkpoint to resume from exactly (model, optimizer, data position, step; its model config overrides the
    model flags); any number of processes"""
    loss_log: str | None = None
    """if set, append every step's losses to this JSON-lines file ({"step", "loss", ...}; on --resume the lines
    after the resume step are dropped first)"""


# Loss coefficients of the original PLDM Two-Room configs (docs/reference.md §4).
COEFFS = {
    "two_room": dict(sim=1.0, std=3.98, cov=6.92, std_t=0.245, cov_t=0.0, sim_t=0.742, idm=1.07),
    "small_data": dict(sim=1.0, std=2.2, cov=13.0, std_t=0.19, cov_t=0.0, sim_t=0.5, idm=2.0),
}

# The CPU preset: Two-Room at 64 px in a few CPU minutes (python baselines/pldm_train.py --preset cpu ...).
# Narrower IMPALA, D = 128, 6-frame windows (the planning horizon), the small-data coefficients (a few hundred
# episodes is small data for PLDM). notes: docs/notes/pldm.md
CPU_PRESET = dict(
    num_steps=6, impala_channels=(8, 16, 32), res_blocks=1, latent_dim=128, pred_hidden=256, idm_hidden=256,
    coeffs="small_data", lr=1e-3, batch_size=32, total_steps=1_500, num_workers=1,
    log_every=50, val_every=500, val_batches=10, checkpoint_every=250,
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


def loss_coeffs(args: Args) -> dict:
    """The coefficient set named by --coeffs, with any explicitly given term weights overriding it."""
    if args.coeffs not in COEFFS:
        raise ValueError(f"--coeffs {args.coeffs!r} is unknown; allowed: {sorted(COEFFS)}")
    coeffs = dict(COEFFS[args.coeffs])
    for key in coeffs:
        value = getattr(args, key)
        if value is not None:
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"--{key.replace('_', '-')} must be a finite weight >= 0, got {value}")
            coeffs[key] = float(value)
    return coeffs


# ------------------------------------------------------------------------------------------------ losses


def prediction_loss(pred, z):
    """sim term: mean over t >= 1, batch and features of (p_t - z_t)^2.

    pred, z: (B, T, D); pred[:, 0] is z[:, 0] (the rollout starts from the first encoding), so it is skipped.
    """
    return (pred[:, 1:] - z[:, 1:]).square().mean()


def variance_loss(x, margin=1.0, eps=1e-4):
    """VICReg variance hinge over the samples axis -2 of x (..., N, D), averaged over features and leading
    dims:

        mean_d relu(margin - sqrt(Var_n(x[..., n, d]) + eps)),   Var unbiased (divides by N - 1).

    std term: x = z[:, 0] (B, D), variance over the batch at the first frame. std_t term: x = z[:, 1:]
    (B, T-1, D), variance over time within each trajectory, then averaged over the batch.
    """
    if x.shape[-2] < 2:
        raise ValueError(f"variance_loss needs at least 2 samples along axis -2, got shape {tuple(x.shape)}")
    std = torch.sqrt(x.var(dim=-2) + eps)
    return F.relu(margin - std).mean()


def covariance_loss(x):
    """VICReg covariance term over the samples axis -2 of x (..., N, D), averaged over leading dims:

        C = (x - mean_n x)^T (x - mean_n x) / (N - 1),    sum_{i != j} C_ij^2 / (D (D - 1)).

    cov term: x = z[:, 0] (B, D) over the batch; cov_t term: x = z[:, 1:] (B, T-1, D) over time, per
    trajectory.
    """
    n, d = x.shape[-2], x.shape[-1]
    if n < 2 or d < 2:
        raise ValueError(f"covariance_loss needs >= 2 samples and >= 2 features, got shape {tuple(x.shape)}")
    x = x - x.mean(dim=-2, keepdim=True)
    cov = x.transpose(-1, -2) @ x / (n - 1)  # (..., D, D)
    off_diagonal = cov.square().sum(dim=(-1, -2)) - torch.diagonal(cov, dim1=-2, dim2=-1).square().sum(-1)
    return (off_diagonal / (d * (d - 1))).mean()


def smoothness_loss(z):
    """sim_t term: mean over t, batch and features of (z_{t+1} - z_t)^2, for encodings z (B, T, D)."""
    return (z[:, 1:] - z[:, :-1]).square().mean()


def idm_loss(action_pred, action_target):
    """idm term: mean of (g(z_t, z_{t+1}) - a_t)^2 over transitions and (normalised) action-block dims."""
    return F.mse_loss(action_pred, action_target)


# ------------------------------------------------------------------------------------------------ model


class ResidualBlock(nn.Module):
    """relu(x + conv3x3(relu(conv3x3(x)))) (IMPALA)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class ImpalaEncoder(nn.Module):
    """IMPALA conv net: per stack conv 3x3 -> max-pool 3/2 -> residual blocks; relu, flatten, linear -> D."""

    def __init__(self, image_size, channels, res_blocks, out_dim):
        super().__init__()
        layers, c_in, size = [], 3, image_size
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1)]
            layers += [ResidualBlock(c) for _ in range(res_blocks)]
            c_in, size = c, (size + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * size * size, out_dim)

    def forward(self, x):
        return self.fc(F.relu(self.convs(x)).flatten(1))


class GRUPredictor(nn.Module):
    """z_{t+1} = GRUCell(input = a_t, hidden = z_t): the latent is the recurrent state (original Two-Room)."""

    def __init__(self, dim, action_dim, hidden=None):
        super().__init__()
        self.cell = nn.GRUCell(action_dim, dim)

    def forward(self, z, a):
        lead = z.shape[:-1]
        return self.cell(a.reshape(-1, a.shape[-1]), z.reshape(-1, z.shape[-1])).reshape(*lead, -1)


class MLPPredictor(nn.Module):
    """z_{t+1} = z_t + MLP([z_t, a_t]) with LayerNorm + Mish hidden layers."""

    def __init__(self, dim, action_dim, hidden):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + action_dim, hidden), nn.LayerNorm(hidden), nn.Mish(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.Mish(), nn.Linear(hidden, dim),
        )  # fmt: skip

    def forward(self, z, a):
        return z + self.net(torch.cat([z, a], dim=-1))


class PLDM(nn.Module):
    """PLDM world model: pixels -> IMPALA encoder -> LayerNorm -> z; z_{t+1} = LayerNorm(f(z_t, a_t)).

    Constructed from plain JSON-able kwargs, so swm_core.checkpoint rebuilds it. Actions given to the public
    methods are raw env action blocks (..., action_block * action_dim); they are normalised per env step with
    the statistics from `set_stats`. The inverse-dynamics head `idm` is part of the model (trained with it).
    """

    default_solver = "mppi"

    def __init__(
        self,
        action_dim: int,
        action_block: int = 5,
        image_size: int = 64,
        impala_channels=(16, 32, 32),
        res_blocks: int = 2,
        latent_dim: int = 512,
        predictor: str = "gru",
        pred_hidden: int = 512,
        idm_hidden: int = 512,
        cost_sum_steps: bool = False,
    ):
        super().__init__()
        if action_dim < 1 or action_block < 1:
            raise ValueError(f"action_dim and action_block must be >= 1, got {action_dim}, {action_block}")
        if predictor not in ("gru", "mlp"):
            raise ValueError(f"predictor {predictor!r} is unknown; allowed: 'gru', 'mlp'")
        if image_size < 1 or not impala_channels or res_blocks < 0 or latent_dim < 2:
            raise ValueError(
                f"bad encoder sizes: image_size {image_size}, impala_channels {impala_channels}, "
                f"res_blocks {res_blocks}, latent_dim {latent_dim} (latent_dim must be >= 2)"
            )
        self.action_dim, self.action_block = int(action_dim), int(action_block)
        self.image_size, self.latent_dim = int(image_size), int(latent_dim)
        self.cost_sum_steps = bool(cost_sum_steps)
        block_dim = self.action_block * self.action_dim
        self.encoder = ImpalaEncoder(image_size, list(impala_channels), res_blocks, latent_dim)
        self.norm = nn.LayerNorm(latent_dim)  # final LayerNorm of the encoder, tied to the predictor's output
        predictor_cls = GRUPredictor if predictor == "gru" else MLPPredictor
        self.predictor = predictor_cls(latent_dim, block_dim, pred_hidden)
        self.idm = nn.Sequential(
            nn.Linear(2 * latent_dim, idm_hidden), nn.ReLU(), nn.Linear(idm_hidden, block_dim)
        )
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))
        self.stats: dict = {}

    def set_stats(self, stats: dict):
        """Normalise actions with stats['action']['mean'/'std'] (per env step, (A,)); keep the rest."""
        self.stats = stats
        if "action" in stats:
            mean = torch.as_tensor(stats["action"]["mean"], dtype=torch.float32).reshape(-1)
            std = torch.as_tensor(stats["action"]["std"], dtype=torch.float32).reshape(-1)
            if mean.numel() != self.action_dim or std.numel() != self.action_dim:
                raise ValueError(
                    f"action stats have dim {mean.numel()}, the model's action_dim is {self.action_dim}"
                )
            self.action_mean.copy_(mean)
            self.action_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def normalize_actions(self, a):
        """Raw action blocks (..., action_block*A) -> normalised with the per-env-step mean/std."""
        if a.shape[-1] != self.action_block * self.action_dim:
            raise ValueError(
                f"action blocks must have last dim action_block*action_dim = "
                f"{self.action_block}*{self.action_dim}, got {a.shape[-1]}"
            )
        blocks = a.reshape(*a.shape[:-1], self.action_block, self.action_dim)
        return ((blocks - self.action_mean) / self.action_std).reshape(a.shape)

    def encode(self, pixels):
        """uint8 frames (..., H, W, 3) -> z (..., latent_dim)."""
        lead = pixels.shape[:-3]
        x = pixels.reshape(-1, *pixels.shape[-3:]).permute(0, 3, 1, 2).float().div(255.0).sub(0.5).div(0.5)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return self.norm(self.encoder(x)).reshape(*lead, -1)

    def step_latent(self, z, a):
        """One predictor step: z (..., D), raw action blocks a (..., action_block*A) -> z_next (..., D)."""
        return self.norm(self.predictor(z, self.normalize_actions(a)))

    def rollout(self, z0, actions):
        """Open-loop rollout from z0 (N, D) over raw action blocks (N, H, ·) -> predictions (N, H, D)."""
        a = self.normalize_actions(actions)
        z, preds = z0, []
        for h in range(a.shape[1]):
            z = self.norm(self.predictor(z, a[:, h]))
            preds.append(z)
        return torch.stack(preds, dim=1)

    def inverse_dynamics(self, z, z_next):
        """Predicted normalised action block (..., action_block*A) from consecutive latents (..., D)."""
        return self.idm(torch.cat([z, z_next], dim=-1))

    def plan_latents(self, infos):
        """(z0, zg), each (B, latent_dim): encoded current and goal frames, memoized in infos['_z0'/'_zg']."""
        if "_z0" not in infos:
            with torch.no_grad():
                infos["_z0"] = self.encode(infos["pixels"])
                infos["_zg"] = self.encode(infos["goal"])
        return infos["_z0"], infos["_zg"]

    def get_cost(self, infos, candidates):
        """Planning cost (B, S) of raw action-block candidates (B, S, H, action_block*A), differentiable.

        cost = |p_H - z_goal|^2 (summed over latent dims) for the last predicted latent p_H (with
        cost_sum_steps: the sum of that error over all H predicted latents). The rollout is batched over B*S.
        """
        if candidates.dim() != 4:
            raise ValueError(
                f"candidates must be (B, S, H, action_block*A), got shape {tuple(candidates.shape)}"
            )
        B, S, H, Da = candidates.shape
        z0, zg = self.plan_latents(infos)
        if z0.shape[0] != B:
            raise ValueError(f"infos hold {z0.shape[0]} envs but candidates have B = {B}")
        z = z0[:, None].expand(B, S, -1).reshape(B * S, -1)
        preds = self.rollout(z, candidates.reshape(B * S, H, Da)).reshape(B, S, H, -1)
        err = (preds - zg[:, None, None]).square().sum(-1)  # (B, S, H)
        return err.sum(-1) if self.cost_sum_steps else err[..., -1]


def pldm_loss(model, pixels, actions, coeffs, across_processes=True):
    """pixels (B, T, H, W, 3) uint8, raw action blocks (B, T, ·) -> (total, {term: value}).

    Encodes all T frames, rolls the predictor out from the first one over the first T-1 action blocks, and
    sums the weighted terms (see the module docstring). std_t and cov_t are computed only when their weight is
    non-zero (reported as 0 otherwise). Under torchrun the batch terms std and cov are those of the global batch
    (across_processes=False: of this process's batch); the others are means, averaged with the gradients.
    """
    if pixels.shape[1] < 2:
        raise ValueError(f"PLDM windows need at least 2 frames, got {pixels.shape[1]}")
    z = model.encode(pixels)  # (B, T, D)
    pred = torch.cat([z[:, :1], model.rollout(z[:, 0], actions[:, :-1])], dim=1)  # p_0 = z_0, then T-1 steps
    zero = z.new_zeros(())
    first = lambda: gather_batch(z[:, 0]) if across_processes else z[:, 0]  # noqa: E731 - the (global) batch's z_0
    terms = {
        "sim": prediction_loss(pred, z),
        "std": variance_loss(first()),
        "cov": covariance_loss(first()),
        "std_t": variance_loss(z[:, 1:]) if coeffs["std_t"] else zero,
        "cov_t": covariance_loss(z[:, 1:]) if coeffs["cov_t"] else zero,
        "sim_t": smoothness_loss(z),
        "idm": idm_loss(
            model.inverse_dynamics(z[:, :-1], z[:, 1:]), model.normalize_actions(actions[:, :-1])
        ),
    }
    total = sum(coeffs[k] * v for k, v in terms.items())
    return total, terms


# ------------------------------------------------------------------------------------------ training helpers


def check_finite(value: float, step: int, last_checkpoint=None, what: str = "loss") -> float:
    """Stop training with an error naming the step if the loss (or gradient norm) is NaN or infinite."""
    if not math.isfinite(value):
        kept = (
            f"; the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "; no checkpoint was written"
        )
        raise FloatingPointError(f"{what} became {value} at step {step}{kept}")
    return value


def check_window(num_steps: int, coeffs: dict):
    """The rollout needs >= 2 frames; the over-time terms need >= 2 frames after the first (>= 3 in all)."""
    if num_steps < 2:
        raise ValueError(f"--num-steps must be >= 2 (one frame plus at least one predicted), got {num_steps}")
    if num_steps < 3 and (coeffs["std_t"] or coeffs["cov_t"]):
        raise ValueError(
            f"--num-steps {num_steps} leaves one frame after the first, too few for the over-time "
            f"terms std_t/cov_t: use --num-steps >= 3 or set --std-t 0 --cov-t 0"
        )


def check_columns(dataset, needed=("pixels", "action")):
    """A clear error naming the first column this script needs that the dataset lacks."""
    for col in needed:
        if col not in dataset.columns:
            raise ValueError(f"dataset {dataset.path} has no {col!r} column, which PLDM training needs; "
                             f"its columns: {dataset.columns}")  # fmt: skip


def check_resume_compatible(config: dict, action_dim: int, frameskip: int, resume: str):
    """The dataset's action dim and --frameskip must match the checkpoint being resumed."""
    if config["action_dim"] != action_dim or config["action_block"] != frameskip:
        raise ValueError(
            f"--resume {resume} was trained with action_dim {config['action_dim']} and action_block "
            f"{config['action_block']}, but the dataset gives action_dim {action_dim} "
            f"with --frameskip {frameskip}"
        )


def compute_stats(dataset, episode_ids) -> dict:
    """Per-dimension mean/std of `action` over the given (train) episodes' rows (non-finite rows skipped)."""
    rows = np.concatenate([dataset.episode_rows(ep) for ep in episode_ids])
    values = np.asarray(dataset.read_rows(rows, ["action"])["action"], dtype=np.float64).reshape(
        len(rows), -1
    )
    values = values[np.isfinite(values).all(axis=1)]
    if len(values) == 0:
        raise ValueError(f"column 'action' has no finite rows in the train episodes of {dataset.path}")
    return {"action": {"mean": values.mean(0).astype(np.float32), "std": values.std(0).astype(np.float32)}}


def evaluate(model, loader, coeffs, max_batches, device):
    """Mean total loss and terms over up to max_batches validation batches, on this process alone (the main one,
    under torchrun)."""
    was_training = model.training
    model.eval()
    sums, n = {}, 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            total, terms = pldm_loss(model, batch["pixels"].to(device), batch["action"].to(device), coeffs,
                                     across_processes=False)  # fmt: skip
            for k, v in {"total": total, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}



def model_config(args: Args, action_dim: int) -> dict:
    return dict(
        action_dim=action_dim, action_block=args.frameskip, image_size=args.image_size,
        impala_channels=list(args.impala_channels), res_blocks=args.res_blocks, latent_dim=args.latent_dim,
        predictor=args.predictor, pred_hidden=args.pred_hidden, idm_hidden=args.idm_hidden,
    )  # fmt: skip


def public_args(args) -> dict:
    """The run's flags as saved in checkpoints and logged to wandb: without the S3 credentials."""
    return {k: v for k, v in vars(args).items() if k not in ("access_key_id", "secret_access_key")}


def save_training_state(path: Path, model, config, stats, optimizer, step, args, metrics, env_id, data=None):
    """model.pt via swm_core.checkpoint (with env_id for the planners) and, written before it, the training state
    beside it (swm_core.train_state: optimizer, data position), which model.pt names."""
    state = {"optimizer": optimizer.state_dict(), "data": data or {}}
    return save_train_state(path, step, state, lambda name: save_checkpoint(
        path, model, config=config, stats=stats, env_id=env_id, step=step,
        args=json.loads(json.dumps(public_args(args))), metrics=metrics, train_state=name))  # fmt: skip


if __name__ == "__main__":
    args = tyro.cli(Args, default=preset_defaults(sys.argv[1:]))
    procs = setup(args.device)  # under torchrun: this process's rank and device, the process group joined
    log = print if procs.main else (lambda *a, **k: None)  # printing, wandb and checkpoints: rank 0 only

    coeffs = loss_coeffs(args)
    check_window(args.num_steps, coeffs)
    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.dataset) else None)  # fmt: skip
    version = int(args.dataset_version) if str(args.dataset_version).isdigit() else args.dataset_version
    dataset = open_dataset(args.dataset, storage_options, version)
    check_columns(dataset)
    action_dim = dataset.shape_of("action")[0]
    env_id = dataset.metadata.get("env_id")
    env_name = str(env_id or Path(args.dataset).stem).replace("/", "-")
    run_name = f"{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
    out_path = Path(args.output) if args.output else Path("runs") / run_name / "model.pt"
    log(f"run {run_name}: checkpoints -> {out_path}; loss coefficients {coeffs}"
        + (f"; {procs.world_size} processes" if procs.world_size > 1 else ""))  # fmt: skip
    if args.track and procs.main:
        if not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
        import wandb

        wandb.init(project=args.wandb_project, entity=args.wandb_entity, name=run_name, config=public_args(args),
                   dir=str(out_path.parent))  # fmt: skip

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every process
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = procs.device

    # data: every process reads its own slice of each global batch (batch_size x processes windows)
    window = dict(num_steps=args.num_steps, frameskip=args.frameskip, columns=("pixels", "action"),
                  val_fraction=args.val_fraction, seed=args.seed,
                  storage_options=storage_options, version=version)  # fmt: skip
    train_set = WindowDataset(args.dataset, split="train", **window)
    val_set = WindowDataset(args.dataset, split="val", **window)
    batches = ShardedBatches(len(train_set), args.batch_size, args.seed, procs.rank, procs.world_size)
    # Lance is not fork-safe once the parent has read from it (compute_stats does): workers are spawned.
    loader_kw = dict(
        num_workers=args.num_workers, pin_memory=device.type == "cuda", persistent_workers=args.num_workers > 0,
        multiprocessing_context="spawn" if args.num_workers > 0 else None,
    )  # fmt: skip
    # whole batches (WindowDataset[index list]); the loader's own generator only seeds its workers
    train_loader = torch.utils.data.DataLoader(train_set, sampler=batches, batch_size=None,
                                               generator=torch.Generator(), **loader_kw)  # fmt: skip
    # validation batches: the same seeded random windows every pass (the batch statistics of VICReg need
    # windows from many episodes, which consecutive windows are not)
    val_generator = torch.Generator()
    val_sampler = torch.utils.data.RandomSampler(val_set, generator=val_generator)
    val_loader = torch.utils.data.DataLoader(val_set, sampler=val_sampler, batch_size=args.batch_size, **loader_kw)
    if len(batches) == 0:
        raise ValueError(f"{args.dataset}: {len(train_set)} train windows of {args.num_steps} frames x frameskip "
                         f"{args.frameskip}, fewer than --batch-size {args.batch_size}"
                         + (f" x {procs.world_size} processes" if procs.world_size > 1 else ""))  # fmt: skip

    # model
    start_step = 0
    if args.resume:
        resume_ckpt = read_checkpoint(args.resume)
        check_class(resume_ckpt, "PLDM", args.resume)
        check_env(resume_ckpt, env_id, args.resume, f"the env of --dataset {args.dataset}")
        check_resume_compatible(resume_ckpt["config"], action_dim, args.frameskip, args.resume)
        model, ckpt = load_checkpoint(args.resume, expected_class="PLDM", model_class=PLDM)
        config, stats = ckpt["config"], ckpt["stats"]
        start_step = int(ckpt["extra"].get("step", 0))
    else:
        config = model_config(args, action_dim)
        model = PLDM(**config)
        stats = compute_stats(dataset, train_set.episode_ids)
        model.set_stats(stats)
    model.to(device).train()
    log(f"PLDM: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters on {device}")

    # optimizer, and what a resumed run continues from (optimizer, data position)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    if args.resume:
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
        seed_step(args.seed, step, procs.rank)  # global random draws depend on the step: resumes repeat them
        t0 = time.perf_counter()
        batch = next(data_iter)
        wait_time += time.perf_counter() - t0
        pixels = batch["pixels"].to(device, non_blocking=True)
        actions = batch["action"].to(device, non_blocking=True)

        loss, terms = pldm_loss(model, pixels, actions, coeffs)
        names = ["total", *terms]
        values = dict(zip(names, mean_over_processes(torch.stack([loss, *terms.values()])).tolist()))  # global
        check_finite(values["total"], step, last_ckpt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(model.parameters())
        grad_norm = nn.utils.clip_grad_norm_(
            model.parameters(), args.grad_clip if args.grad_clip > 0 else math.inf
        )
        check_finite(grad_norm.item(), step, last_ckpt, "gradient norm")  # a NaN step would poison the weights
        optimizer.step()
        step += 1
        window_steps += 1
        if loss_log:
            loss_log.write(step, {"loss": values["total"], **{k: values[k] for k in terms}, "grad_norm": grad_norm})

        if step % args.log_every == 0 or step == args.total_steps:
            now = time.perf_counter()
            metrics = {**{f"losses/{k}": v for k, v in values.items()}, "losses/grad_norm": float(grad_norm),
                       "charts/SPS": window_steps / (now - window_start),
                       "charts/data_wait_fraction": wait_time / (now - loop_start)}  # fmt: skip
            window_start, window_steps = now, 0
            log(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
            if args.track and procs.main:
                wandb.log(metrics, step=step)
        if procs.main and ((args.val_every and step % args.val_every == 0) or step == args.total_steps):
            val_generator.manual_seed(args.seed)
            val = evaluate(model, val_loader, coeffs, args.val_batches, device)
            metrics.update({f"val/{k}": v for k, v in val.items()})
            log(f"step {step}: " + " ".join(f"val/{k}={v:.4g}" for k, v in val.items()), flush=True)
            if args.track:
                wandb.log({k: v for k, v in metrics.items() if k.startswith("val/")}, step=step)
        if step % args.checkpoint_every == 0 or step == args.total_steps:
            if procs.main:
                save_training_state(out_path, model, config, stats, optimizer, step, args, metrics, env_id,
                                    batches.state_dict())  # fmt: skip
            last_ckpt = out_path
            log(f"step {step}: checkpoint {last_ckpt}", flush=True)

    loop_time = time.perf_counter() - loop_start
    steps_done = step - start_step
    log(f"done: {steps_done} steps in {loop_time:.1f}s ({steps_done / max(loop_time, 1e-9):.2f} steps/s), "
        f"data_wait_fraction={wait_time / max(loop_time, 1e-9):.3f}, "
        f"checkpoint {last_ckpt or args.resume}")  # fmt: skip
    if args.track and procs.main:
        wandb.finish()
    teardown()
