# LeWM (LeWorldModel) baseline: JEPA encoder + AdaLN-zero causal predictor, trained with MSE + SIGReg. docs/reference.md §4
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
    broadcast_module,
    mean_over_processes,
    setup,
    sum_over_processes,
    sync_batch_norm,
    teardown,
)
from swm_core.distributed import world_size as distributed_world_size
from swm_core.s3 import is_s3, s3_storage_options
from swm_core.train_state import LossLog, seed_step
from swm_core.train_state import load as load_train_state
from swm_core.train_state import save as save_train_state


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch, SIGReg directions, data order)"""
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
    """defaults to start from: `paper` (ViT-tiny, 224 px, GPU) or `cpu` (small conv net, 64 px, a few CPU minutes)"""

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
    history: int = 3
    """number of context frames the predictor sees (windows hold history + 1 frames)"""
    frameskip: int = 5
    """env steps per model step (the action block is frameskip * action_dim)"""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation"""
    num_workers: int = 4
    """DataLoader worker processes"""

    # model
    encoder: str = "vit_tiny_patch16_224"
    """`conv` (small strided conv net) or any timm ViT name (created with pretrained=False)"""
    image_size: int = 224
    """encoder input resolution (frames are resized to it when the dataset differs)"""
    patch_size: int = 14
    """ViT patch size (0 keeps the timm model's own); ignored by `conv`"""
    conv_channels: tuple[int, ...] = (32, 64, 128, 256)
    """channels of the `conv` encoder's stride-2 layers"""
    latent_dim: int = 192
    """embedding dimension z (projector output, predictor width)"""
    proj_hidden: int = 2048
    """hidden width of the BatchNorm projector MLPs"""
    action_hidden: int = 768
    """hidden width of the action encoder MLP"""
    pred_depth: int = 6
    """number of predictor transformer blocks"""
    pred_heads: int = 16
    """predictor attention heads"""
    pred_dim_head: int = 64
    """predictor width per attention head"""
    pred_mlp_dim: int = 2048
    """predictor MLP hidden width"""
    dropout: float = 0.1
    """predictor dropout"""

    # loss and optimisation
    sigreg_weight: float = 0.09
    """lambda: weight of SIGReg in the loss"""
    sigreg_num_proj: int = 1024
    """M: random unit directions drawn per step for SIGReg"""
    sigreg_knots: int = 17
    """knots t in linspace(0, 3) for the Epps-Pulley integral"""
    lr: float = 5e-5
    """AdamW learning rate"""
    weight_decay: float = 1e-3
    """AdamW weight decay"""
    batch_size: int = 128
    """windows per optimisation step and process (under torchrun the global batch is this times the processes)"""
    grad_clip: float = 1.0
    """max global gradient norm"""
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


# The CPU preset: Two-Room at 64 px in a few CPU minutes (python baselines/lewm_train.py --preset cpu ...).
# SIGReg weight 0.01, not the paper's 0.09: at this scale 0.09 saturates latent distances and flattens CEM's cost.
# notes: docs/notes/lewm.md
CPU_PRESET = dict(
    encoder="conv", image_size=64, conv_channels=(8, 16, 32, 64), latent_dim=64, proj_hidden=256,
    action_hidden=128, pred_depth=2, pred_heads=4, pred_dim_head=16, pred_mlp_dim=256, dropout=0.0,
    sigreg_num_proj=256, sigreg_weight=0.01, lr=1e-3, batch_size=32, total_steps=1_000, num_workers=1,
    log_every=50, val_every=500, val_batches=10, checkpoint_every=500,
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


def sigreg(z, num_proj=1024, knots=17, t_max=3.0, generator=None, directions=None, across_processes=True):
    """SIGReg: Epps-Pulley test of every 1-D projection of z against N(0, 1), averaged over directions and time.

    z: (T, B, D) embeddings. directions: optional (D, M) projections (normalised to unit columns here); otherwise
    M = num_proj Gaussian directions are drawn from `generator` (CPU) — pass a generator seeded per step so all
    processes draw the same ones. For each direction and time, with x the B projected values:
        err(t) = (mean_b cos(t x) - exp(-t^2/2))^2 + (mean_b sin(t x))^2
        statistic = B * sum_t w(t) err(t),   w(t) = trapezoid weight * exp(-t^2/2)
    The integrand is even in t, so the trapezoid rule over [-t_max, t_max] is folded onto the knots in
    [0, t_max]: weights dt at both ends and 2 dt inside. Under torch.distributed (and across_processes) the batch
    means are averaged over processes (differentiably) before squaring, and B is the global batch.
    """
    if z.dim() != 3:
        raise ValueError(f"sigreg expects z of shape (T, B, D), got {tuple(z.shape)}")
    B, D = z.shape[1], z.shape[2]
    if directions is None:
        directions = torch.randn(D, num_proj, generator=generator)
    directions = directions.to(device=z.device, dtype=z.dtype)
    directions = directions / directions.norm(dim=0, keepdim=True)
    t = torch.linspace(0.0, t_max, knots, device=z.device, dtype=z.dtype)
    phi = torch.exp(-0.5 * t.square())
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, device=z.device, dtype=z.dtype)
    weights[0] = weights[-1] = dt
    weights = weights * phi
    xt = (z @ directions).unsqueeze(-1) * t  # (T, B, M, K)
    cos_mean, sin_mean = xt.cos().mean(1), xt.sin().mean(1)  # (T, M, K)
    world = distributed_world_size() if across_processes else 1
    if world > 1:
        cos_mean = sum_over_processes(cos_mean) / world
        sin_mean = sum_over_processes(sin_mean) / world
        B = B * world
    err = (cos_mean - phi).square() + sin_mean.square()
    return ((err @ weights) * B).mean()


def check_finite(value: float, step: int, last_checkpoint=None, what: str = "loss") -> float:
    """Stop training with an error naming the step if the loss (or gradient norm) is NaN or infinite."""
    if not math.isfinite(value):
        kept = f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else "; no checkpoint was written"
        raise FloatingPointError(f"{what} became {value} at step {step}{kept}")
    return value


class ConvEncoder(nn.Module):
    """Stride-2 conv stack (k4 s2 p1, GroupNorm, GELU), flattened so positions stay in the features."""

    def __init__(self, image_size, channels, out_dim):
        super().__init__()
        layers, c_in, size = [], 3, image_size
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.GroupNorm(min(8, c), c), nn.GELU()]
            c_in, size = c, size // 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} stride-2 conv layers")
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, out_dim))
        self.num_features = out_dim

    def forward(self, x):
        return self.net(x)


class Projector(nn.Module):
    """MLP dim -> hidden -> out with BatchNorm (over all leading dims flattened)."""

    def __init__(self, dim, hidden, out):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x):
        return self.net(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


class ActionEncoder(nn.Module):
    """MLP on the (normalised) frameskip * A action block."""

    def __init__(self, in_dim, hidden, out):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, out))

    def forward(self, a):
        return self.net(a)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads, dim_head, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x):
        N, T, _ = x.shape
        q, k, v = self.qkv(x).view(N, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(N, T, -1))


class AdaLNBlock(nn.Module):
    """Transformer block whose LayerNorm scale/shift and residual gates come from the action embedding.

    The modulation layer starts at zero (AdaLN-zero): every gate is 0, so at init the block is the identity and
    the predictor ignores the actions until training moves the gates.
    """

    def __init__(self, dim, heads, dim_head, mlp_dim, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = CausalSelfAttention(dim, heads, dim_head, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class Predictor(nn.Module):
    """Causal transformer over (z_1..z_T) conditioned on (a_1..a_T): output t predicts z_{t+1}."""

    def __init__(self, dim, history, depth, heads, dim_head, mlp_dim, dropout, proj_hidden):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, history, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(AdaLNBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj = Projector(dim, proj_hidden, dim)

    def forward(self, z, c):
        if z.shape[1] > self.pos.shape[1]:
            raise ValueError(f"predictor history is {self.pos.shape[1]} frames, got {z.shape[1]}")
        x = self.drop(z + self.pos[:, : z.shape[1]])
        for block in self.blocks:
            x = block(x, c)
        return self.proj(self.norm(x))


class LeWM(nn.Module):
    """LeWorldModel: pixels -> encoder -> BatchNorm projector -> z; predictor(z history, action blocks) -> next z.

    Constructed from plain JSON-able kwargs, so swm_core.checkpoint rebuilds it. Actions given to the public
    methods are raw env actions; they are normalised with the statistics from `set_stats`.
    """

    default_solver = "cem"

    def __init__(
        self,
        action_dim: int,
        action_block: int = 5,
        history: int = 3,
        image_size: int = 224,
        encoder: str = "vit_tiny_patch16_224",
        patch_size: int = 14,
        conv_channels=(32, 64, 128, 256),
        latent_dim: int = 192,
        proj_hidden: int = 2048,
        action_hidden: int = 768,
        pred_depth: int = 6,
        pred_heads: int = 16,
        pred_dim_head: int = 64,
        pred_mlp_dim: int = 2048,
        dropout: float = 0.1,
        cost_sum_steps: bool = False,
    ):
        super().__init__()
        if action_dim < 1 or action_block < 1 or history < 1:
            raise ValueError(f"action_dim, action_block and history must be >= 1, got {action_dim}, {action_block}, {history}")
        self.action_dim, self.action_block, self.history = action_dim, action_block, history
        self.image_size, self.cost_sum_steps = image_size, cost_sum_steps
        if encoder == "conv":
            self.encoder = ConvEncoder(image_size, list(conv_channels), latent_dim)
        else:
            import timm

            kwargs = dict(pretrained=False, img_size=image_size, num_classes=0)
            if patch_size:
                kwargs["patch_size"] = patch_size
            try:
                self.encoder = timm.create_model(encoder, **kwargs)
            except RuntimeError as err:
                raise ValueError(f"--encoder {encoder!r}: use 'conv' or a timm model name ({err})") from None
        self.projector = Projector(self.encoder.num_features, proj_hidden, latent_dim)
        self.action_encoder = ActionEncoder(action_block * action_dim, action_hidden, latent_dim)
        self.predictor = Predictor(
            latent_dim, history, pred_depth, pred_heads, pred_dim_head, pred_mlp_dim, dropout, proj_hidden
        )
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))

    def set_stats(self, stats: dict):
        """Use stats['action']['mean'/'std'] (per env step, (A,)) to normalise actions; other entries are kept."""
        self.stats = stats
        if "action" in stats:
            mean = torch.as_tensor(stats["action"]["mean"], dtype=torch.float32).reshape(-1)
            std = torch.as_tensor(stats["action"]["std"], dtype=torch.float32).reshape(-1)
            if mean.numel() != self.action_dim or std.numel() != self.action_dim:
                raise ValueError(f"action stats have dim {mean.numel()}, the model's action_dim is {self.action_dim}")
            self.action_mean.copy_(mean)
            self.action_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def normalize_actions(self, a):
        """Raw action blocks (..., action_block*A) -> normalised with the per-env-step mean/std."""
        if a.shape[-1] != self.action_block * self.action_dim:
            raise ValueError(
                f"action blocks must have last dim action_block*action_dim = {self.action_block}*{self.action_dim}, "
                f"got {a.shape[-1]}"
            )
        blocks = a.reshape(*a.shape[:-1], self.action_block, self.action_dim)
        return ((blocks - self.action_mean) / self.action_std).reshape(a.shape)

    def encode(self, pixels):
        """uint8 frames (..., H, W, 3) -> z (..., latent_dim)."""
        lead = pixels.shape[:-3]
        x = pixels.reshape(-1, *pixels.shape[-3:]).permute(0, 3, 1, 2).float().div(255.0).sub(0.5).div(0.5)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return self.projector(self.encoder(x)).reshape(*lead, -1)

    def predict(self, z_hist, a_hist):
        """z_hist (N, T, D), raw action blocks a_hist (N, T, action_block*A) -> (N, T, D); [:, t] predicts z_{t+1}.

        Causal: output t depends only on frames and actions up to t, so [:, -1] is the next latent.
        """
        return self.predictor(z_hist, self.action_encoder(self.normalize_actions(a_hist)))

    def rollout(self, z0, actions):
        """Autoregressive rollout from z0 (N, D) over raw action blocks (N, H, ·) -> predicted latents (N, H, D)."""
        z_hist, preds = z0[:, None], []
        for h in range(actions.shape[1]):
            lo = max(0, h + 1 - self.history)
            z_next = self.predict(z_hist[:, lo:], actions[:, lo : h + 1])[:, -1]
            preds.append(z_next)
            z_hist = torch.cat([z_hist, z_next[:, None]], dim=1)
        return torch.stack(preds, dim=1)

    def plan_latents(self, infos):
        """(z0, zg), each (B, latent_dim): the encoded current and goal frames, memoized in infos['_z0'/'_zg']."""
        if "_z0" not in infos:
            with torch.no_grad():
                infos["_z0"] = self.encode(infos["pixels"])
                infos["_zg"] = self.encode(infos["goal"])
        return infos["_z0"], infos["_zg"]

    def step_latent(self, z, a):
        """One predictor step from a single-frame history: z (B, K, D), raw action blocks a (B, K, ·) -> (B, K, D)."""
        B, K, D = z.shape
        return self.predict(z.reshape(B * K, 1, D), a.reshape(B * K, 1, a.shape[-1]))[:, -1].reshape(B, K, D)

    def get_cost(self, infos, candidates):
        """Planning cost (B, S) of raw action-block candidates (B, S, H, action_block*A); differentiable in them.

        The predictor is rolled out autoregressively over H from the encoded current frame (batched over B*S);
        cost = mean squared error between the last predicted latent and the goal latent (or, with
        cost_sum_steps, the sum over all H predicted latents of that error).
        """
        if candidates.dim() != 4:
            raise ValueError(f"candidates must be (B, S, H, action_block*A), got shape {tuple(candidates.shape)}")
        B, S, H, Da = candidates.shape
        z0, zg = self.plan_latents(infos)
        if z0.shape[0] != B:
            raise ValueError(f"infos hold {z0.shape[0]} envs but candidates have B = {B}")
        z = z0[:, None].expand(B, S, -1).reshape(B * S, -1)
        preds = self.rollout(z, candidates.reshape(B * S, H, Da)).reshape(B, S, H, -1)
        err = (preds - zg[:, None, None]).square().mean(-1)  # (B, S, H)
        return err.sum(-1) if self.cost_sum_steps else err[..., -1]


def lewm_loss(model, pixels, actions, sigreg_weight, generator=None, num_proj=1024, knots=17, across_processes=True):
    """pixels (B, T, H, W, 3) uint8, raw actions (B, T, ·): (total, prediction MSE, SIGReg). Under torchrun SIGReg
    is that of the global batch (across_processes=False: of this process's batch)."""
    z = model.encode(pixels)  # (B, T, D)
    pred = model.predict(z[:, :-1], actions[:, :-1])
    pred_loss = F.mse_loss(pred, z[:, 1:])
    reg = sigreg(z.transpose(0, 1), num_proj=num_proj, knots=knots, generator=generator,
                 across_processes=across_processes)  # fmt: skip
    return pred_loss + sigreg_weight * reg, pred_loss, reg


def step_generator(seed: int, step: int) -> torch.Generator:
    """A fresh CPU generator for this step's SIGReg directions (identical on every process and after a resume)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def compute_stats(dataset, episode_ids) -> dict:
    """Per-dimension mean/std of `action` (and `proprio` when present) over the given (train) episodes' rows.

    dataset: a swm_core.data.TrajectoryDataset. Rows with a non-finite action (each episode's last) are skipped.
    """
    stats = {}
    for col in ("action", "proprio"):
        if col not in dataset.columns:
            continue
        rows = np.concatenate([dataset.episode_rows(ep) for ep in episode_ids])
        values = np.asarray(dataset.read_rows(rows, [col])[col], dtype=np.float64).reshape(len(rows), -1)
        values = values[np.isfinite(values).all(axis=1)]
        if len(values) == 0:
            raise ValueError(f"column {col!r} has no finite rows in the train episodes of {dataset.path}")
        stats[col] = {"mean": values.mean(0).astype(np.float32), "std": values.std(0).astype(np.float32)}
    return stats


def check_columns(dataset, needed=("pixels", "action")):
    """A clear error naming the first column this script needs that the dataset lacks."""
    for col in needed:
        if col not in dataset.columns:
            raise ValueError(f"dataset {dataset.path} has no {col!r} column, which LeWM training needs; "
                             f"its columns: {dataset.columns}")  # fmt: skip


def check_resume_compatible(config: dict, action_dim: int, frameskip: int, resume: str):
    """The dataset's action dim and --frameskip must match the checkpoint being resumed."""
    if config["action_dim"] != action_dim or config["action_block"] != frameskip:
        raise ValueError(
            f"--resume {resume} was trained with action_dim {config['action_dim']} and action_block "
            f"{config['action_block']}, but the dataset gives action_dim {action_dim} with --frameskip {frameskip}"
        )


def evaluate(model, loader, args, max_batches, device):
    """Mean (total, prediction, SIGReg) losses over up to max_batches validation batches (fixed directions), on
    this process alone (the main one, under torchrun)."""
    was_training = model.training
    model.eval()
    totals, n = np.zeros(3), 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            losses = lewm_loss(
                model, batch["pixels"].to(device), batch["action"].to(device), args.sigreg_weight,
                step_generator(args.seed, -1 - i), args.sigreg_num_proj, args.sigreg_knots, across_processes=False,
            )  # fmt: skip
            totals += [x.item() for x in losses]
            n += 1
    model.train(was_training)
    return totals / max(n, 1)


def model_config(args: Args, action_dim: int) -> dict:
    return dict(
        action_dim=action_dim, action_block=args.frameskip, history=args.history, image_size=args.image_size,
        encoder=args.encoder, patch_size=args.patch_size, conv_channels=list(args.conv_channels),
        latent_dim=args.latent_dim, proj_hidden=args.proj_hidden, action_hidden=args.action_hidden,
        pred_depth=args.pred_depth, pred_heads=args.pred_heads, pred_dim_head=args.pred_dim_head,
        pred_mlp_dim=args.pred_mlp_dim, dropout=args.dropout,
    )  # fmt: skip


def public_args(args) -> dict:
    """The run's flags as saved in checkpoints and logged to wandb: without the S3 credentials."""
    return {k: v for k, v in vars(args).items() if k not in ("access_key_id", "secret_access_key")}


def save_training_state(path: Path, model, config, stats, optimizer, step, args, metrics, env_id=None, data=None):
    """model.pt via swm_core.checkpoint (env_id in its extras, for the planners) and, written before it, the
    training state beside it (swm_core.train_state: optimizer, data position), which model.pt names."""
    state = {"optimizer": optimizer.state_dict(), "data": data or {}}
    return save_train_state(path, step, state, lambda name: save_checkpoint(
        path, model, config=config, stats=stats, env_id=env_id, step=step,
        args=json.loads(json.dumps(public_args(args))), metrics=metrics, train_state=name))  # fmt: skip


if __name__ == "__main__":
    args = tyro.cli(Args, default=preset_defaults(sys.argv[1:]))
    procs = setup(args.device)  # under torchrun: this process's rank and device, the process group joined
    log = print if procs.main else (lambda *a, **k: None)  # printing, wandb and checkpoints: rank 0 only

    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.dataset) else None)  # fmt: skip
    version = int(args.dataset_version) if str(args.dataset_version).isdigit() else args.dataset_version
    dataset = open_dataset(args.dataset, storage_options, version)
    check_columns(dataset)
    action_dim = dataset.shape_of("action")[0]
    if args.resume:  # the checkpoint's model settings win over the model flags
        resume_ckpt = read_checkpoint(args.resume)
        check_class(resume_ckpt, "LeWM", args.resume)
        check_env(resume_ckpt, dataset.metadata.get("env_id"), args.resume, f"the env of --dataset {args.dataset}")
        resume_config = resume_ckpt["config"]
        check_resume_compatible(resume_config, action_dim, args.frameskip, args.resume)
        args = replace(args, **{k: v for k, v in resume_config.items() if k in Args.__dataclass_fields__})
        args.conv_channels = tuple(args.conv_channels)
    env_name = str(dataset.metadata.get("env_id") or Path(args.dataset).stem).replace("/", "-")
    run_name = f"{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
    out_path = Path(args.output) if args.output else Path("runs") / run_name / "model.pt"
    log(f"run {run_name}: checkpoints -> {out_path}" + (f"; {procs.world_size} processes" if procs.world_size > 1 else ""))
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
    window = dict(num_steps=args.history + 1, frameskip=args.frameskip, columns=("pixels", "action"),
                  val_fraction=args.val_fraction, seed=args.seed,
                  storage_options=storage_options, version=version)  # fmt: skip
    train_set = WindowDataset(args.dataset, split="train", **window)
    val_set = WindowDataset(args.dataset, split="val", **window)
    batches = ShardedBatches(len(train_set), args.batch_size, args.seed, procs.rank, procs.world_size)
    # whole batches (WindowDataset[index list]); Lance is not fork-safe once the parent has used it, so workers
    # are spawned; the loader's own generator only seeds its workers
    train_loader = torch.utils.data.DataLoader(
        train_set, sampler=batches, batch_size=None, num_workers=args.num_workers, generator=torch.Generator(),
        persistent_workers=args.num_workers > 0, pin_memory=device.type == "cuda",
        multiprocessing_context="spawn" if args.num_workers > 0 else None,
    )  # fmt: skip
    val_windows = torch.randperm(len(val_set), generator=torch.Generator().manual_seed(args.seed))
    val_subset = torch.utils.data.Subset(val_set, val_windows[: args.val_batches * args.batch_size].tolist())
    val_loader = torch.utils.data.DataLoader(val_subset, batch_size=args.batch_size)  # same windows every pass
    if len(val_set) == 0:
        log(f"warning: no validation windows (--val-fraction {args.val_fraction}); validation is skipped")
    if len(batches) == 0:
        raise ValueError(f"{args.dataset}: {len(train_set)} train windows, fewer than --batch-size {args.batch_size}"
                         + (f" x {procs.world_size} processes" if procs.world_size > 1 else ""))  # fmt: skip

    # model
    start_step = 0
    if args.resume:
        model, ckpt = load_checkpoint(args.resume, expected_class="LeWM", model_class=LeWM)
        config, stats = ckpt["config"], ckpt["stats"]
        start_step = int(ckpt["extra"].get("step", 0))
    else:
        config = model_config(args, action_dim)
        model = LeWM(**config)
        stats = compute_stats(dataset, train_set.episode_ids)
        model.set_stats(stats)
    model.to(device).train()
    if procs.world_size > 1:
        sync_batch_norm(model)  # the projectors' BatchNorm statistics over the global batch
        broadcast_module(model)
    log(f"LeWM: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters on {device}")

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
        seed_step(args.seed, step, procs.rank)  # global draws (dropout) depend on the step: resumes repeat them
        t0 = time.perf_counter()
        batch = next(data_iter)
        wait_time += time.perf_counter() - t0
        pixels = batch["pixels"].to(device, non_blocking=True)
        actions = batch["action"].to(device, non_blocking=True)

        loss, pred_loss, reg = lewm_loss(model, pixels, actions, args.sigreg_weight, step_generator(args.seed, step),
                                         args.sigreg_num_proj, args.sigreg_knots)  # fmt: skip
        losses = mean_over_processes(torch.stack([loss, pred_loss, reg])).tolist()  # the global batch's
        check_finite(losses[0], step, last_ckpt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(model.parameters())
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        check_finite(grad_norm.item(), step, last_ckpt, "gradient norm")
        optimizer.step()
        step += 1
        window_steps += 1
        if loss_log:
            loss_log.write(step, {"loss": losses[0], "pred": losses[1], "sigreg": losses[2], "grad_norm": grad_norm})

        if step % args.log_every == 0 or step == args.total_steps:
            now = time.perf_counter()
            metrics = {
                "losses/total": losses[0], "losses/pred": losses[1], "losses/sigreg": losses[2],
                "losses/grad_norm": grad_norm.item(), "charts/SPS": window_steps / (now - window_start),
                "charts/data_wait_fraction": wait_time / (now - loop_start),
            }  # fmt: skip
            window_start, window_steps = now, 0
            log(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
            if args.track and procs.main:
                wandb.log(metrics, step=step)
        validate = len(val_set) and ((args.val_every and step % args.val_every == 0) or step == args.total_steps)
        if validate and procs.main:
            val = evaluate(model, val_loader, args, args.val_batches, device)
            metrics.update({"val/total": val[0], "val/pred": val[1], "val/sigreg": val[2]})
            log(f"step {step}: val/total={val[0]:.4g} val/pred={val[1]:.4g} val/sigreg={val[2]:.4g}", flush=True)
            if args.track:
                wandb.log({k: v for k, v in metrics.items() if k.startswith("val/")}, step=step)
        if step % args.checkpoint_every == 0 or step == args.total_steps:
            if procs.main:
                save_training_state(out_path, model, config, stats, optimizer, step, args, metrics,
                                    dataset.metadata.get("env_id"), batches.state_dict())  # fmt: skip
            last_ckpt = out_path
            log(f"step {step}: checkpoint {last_ckpt}", flush=True)

    loop_time = time.perf_counter() - loop_start
    log(f"done: {step - start_step} steps in {loop_time:.1f}s ({(step - start_step) / max(loop_time, 1e-9):.2f} steps/s), "
        f"data_wait_fraction={wait_time / max(loop_time, 1e-9):.3f}, checkpoint {last_ckpt or args.resume}")  # fmt: skip
    if args.track and procs.main:
        wandb.finish()
    teardown()
