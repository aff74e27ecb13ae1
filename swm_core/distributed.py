"""Data-parallel training under torchrun, for the training scripts (``swm_core`` does not import this module).

torchrun starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`setup` reads them and joins the process group (NCCL on CUDA, gloo on CPU). Plain
``python script.py`` is one process and joins nothing. Every process holds the whole model; with W processes of
``--batch-size`` B each:

- :class:`ShardedBatches` draws global batches of B * W windows and hands process r the r-th slice of B, so the
  processes read disjoint windows and together see exactly what one process with batch B * W sees;
- :func:`average_gradients` averages the gradients over processes after ``backward()``, so every process clips
  and applies the same update and the weights stay identical (the data-parallel rule of DDP, done explicitly
  because the baselines call model methods rather than ``forward`` and TD-MPC2 steps two optimizers);
- statistics over the batch that a loss needs come from the global batch: :func:`sum_over_processes` and
  :func:`gather_batch` (differentiable all-reduce and all-gather) for SIGReg- and VICReg-style terms,
  :class:`GlobalBatchNorm` (:func:`sync_batch_norm`) for BatchNorm layers;
- :func:`mean_over_processes` averages logged values, so every process sees the same loss (a NaN stops all).

Gradients of the all-reduces: each process's loss contains the global statistic, and the backward of an
all-reduce sums the gradients of all processes; averaging the parameter gradients afterwards gives exactly the
gradient of the global-batch loss (see tests/test_distributed.py).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

ORDERS = ("dataloader", "randperm")


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None


def pick_device(name: str = "auto", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``auto``: cuda if available, else mps, else cpu. Under several processes a CUDA device without an index
    becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif world_size == 1 and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a torch device (use auto, cpu, cuda, cuda:N or mps): {err}") from None
    if world_size > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if world_size > 1 and device.type not in ("cuda", "cpu"):
        raise ValueError(f"--device {name!r}: several processes train on cuda (NCCL) or cpu (gloo) only")
    return device


def setup(device: str = "auto") -> Processes:
    """This process's rank, world size, local rank (from torchrun's environment; 0, 1, 0 without it) and device;
    joins the process group when there are several processes (NCCL for CUDA devices, gloo for CPU)."""
    world_size, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}: need WORLD_SIZE >= 1, "
                         f"0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")  # fmt: skip
    dev = pick_device(device, local_rank, world_size)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Processes(rank, world_size, local_rank, dev)


def teardown() -> None:
    """Leave the process group (after every process got here), if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world_size() -> int:
    """The number of training processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over processes (a detached copy; the values themselves with one process)."""
    values = values.detach().clone()
    if world_size() > 1:
        dist.all_reduce(values)
        values /= world_size()
    return values


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace every gradient by its mean over processes (one all-reduce per dtype and device). Parameters without a
    gradient are skipped: every process ran the same graph, so they are the same on all. Nothing happens with one
    process."""
    W = world_size()
    if W == 1:
        return
    groups: dict[tuple, list[nn.Parameter]] = {}
    for p in parameters:
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for params in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= W
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (they start identical; this makes sure)."""
    if world_size() > 1:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, 0)


class _SumOverProcesses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over processes, differentiably: the backward sums every process's gradient too (each
    process's loss holds the global statistic; averaging the parameter gradients afterwards gives the gradient of
    the global-batch loss). ``x`` itself with one process."""
    return _SumOverProcesses.apply(x) if world_size() > 1 else x


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """The global batch: every process's ``x`` (same shape on all) concatenated along dim 0 in rank order,
    differentiably (the backward gives each process the summed gradient of its own slice). ``x`` with one process."""
    W = world_size()
    if W == 1:
        return x
    rank = dist.get_rank()
    return sum_over_processes(torch.cat([x if r == rank else torch.zeros_like(x) for r in range(W)]))


class GlobalBatchNorm(nn.BatchNorm1d):
    """BatchNorm whose training statistics are those of the global batch: the mean and the (biased) variance are
    summed over processes, differentiably, and the running statistics follow them. Same parameters and buffers as
    ``nn.BatchNorm1d/2d/3d`` (checkpoints do not change); in eval mode, or with one process, it is the plain layer.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C, ...) input, got shape {tuple(input.shape)}")

    def forward(self, x):
        if not self.training or world_size() == 1:
            return super().forward(x)
        dims, shape = [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)
        count = mean_over_processes(torch.tensor(float(x.numel() // x.shape[1]), device=x.device)) * world_size()
        mean = sum_over_processes(x.sum(dims)) / count
        var = sum_over_processes((x - mean.view(shape)).square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean), momentum)
                unbiased = var.detach() * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var), momentum)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` (in place) by a :class:`GlobalBatchNorm` holding the same
    parameter and buffer tensors (an optimizer built before still updates them). Returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)  # fmt: skip
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batch_norm(child)
    return module


class ShardedBatches:
    """Batches of window indices for one process: global batches of ``batch_size * world_size`` windows (an
    epoch's incomplete last one dropped), of which process ``rank`` gets slice ``rank`` (``batch_size`` windows).
    Use it as a DataLoader's ``sampler`` with ``batch_size=None`` (``WindowDataset[list]`` reads a whole batch) or
    as its ``batch_sampler``. With ``with_global=True`` it yields ``(global indices, start, stop)`` instead, for a
    dataset whose per-batch random draws cover the whole global batch.

    Order (``shuffle``): a ``torch.Generator`` seeded with ``seed`` draws, per epoch, a permutation of the windows.
    ``order="dataloader"``: one int64 first, then two permutations per epoch of which the first is used — the order
    of one process's ``WindowDataset.loader(shuffle=True, drop_last=True, seed=seed)`` (and of a DataLoader with
    ``shuffle=True, generator=Generator().manual_seed(seed), drop_last=True``) with persistent workers, which the
    baselines used before; ``order="randperm"``: one permutation per epoch.

    Position: iterating starts at ``(epoch, batch)`` and covers that epoch; :meth:`stream` runs over epochs and
    counts the batches the caller consumed, :meth:`state_dict` / :meth:`load_state_dict` save and restore it.
    """

    def __init__(self, num_windows: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, order: str = "dataloader", with_global: bool = False):  # fmt: skip
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is unknown; allowed: {', '.join(map(repr, ORDERS))}")
        if int(num_windows) < 0:
            raise ValueError(f"num_windows must be >= 0, got {num_windows!r}")
        self.num_windows, self.batch_size, self.seed = int(num_windows), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle, self.order = int(rank), int(world_size), shuffle, order
        self.with_global = with_global
        self.global_batch = self.batch_size * self.world_size
        self.epoch, self.batch = 0, 0
        self._gen: torch.Generator | None = None
        self._gen_epoch = -1  # the last epoch whose permutations self._gen has drawn
        self._perm: torch.Tensor | None = None

    def __len__(self) -> int:
        """Global batches per epoch (= this process's batches per epoch)."""
        return self.num_windows // self.global_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        """The window order of ``epoch`` (0-based)."""
        if not self.shuffle:
            return torch.arange(self.num_windows)
        if self._gen is None or epoch < self._gen_epoch:
            self._gen = torch.Generator().manual_seed(self.seed)
            self._gen_epoch = -1
            if self.order == "dataloader":
                torch.empty((), dtype=torch.int64).random_(generator=self._gen)  # the DataLoader's worker base seed
        while self._gen_epoch < epoch:
            self._perm = torch.randperm(self.num_windows, generator=self._gen)
            if self.order == "dataloader":  # RandomSampler draws an empty tail permutation at each epoch's end
                torch.randperm(self.num_windows, generator=self._gen)
            self._gen_epoch += 1
        return self._perm

    def __iter__(self) -> Iterator:
        perm, B, G = self.permutation(self.epoch), self.batch_size, self.global_batch
        for b in range(self.batch, len(self)):
            glob = perm[b * G : (b + 1) * G].tolist()
            lo, hi = self.rank * B, (self.rank + 1) * B
            yield (glob, lo, hi) if self.with_global else glob[lo:hi]

    def stream(self, loader: Iterable | None = None) -> Iterator:
        """Endless batches of ``loader`` (a DataLoader over this sampler; default: the index lists themselves),
        epoch after epoch from the current position, which counts each batch handed out."""
        if len(self) == 0:
            raise ValueError(f"{self.num_windows} windows make no global batch of {self.global_batch} "
                             f"({self.world_size} processes x batch {self.batch_size})")  # fmt: skip
        while True:
            for item in self if loader is None else loader:
                self.batch += 1
                yield item
            self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "global_batch": self.global_batch,
                "num_windows": self.num_windows, "seed": self.seed}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position. A different global batch size continues after the same number of
        windows (rounded down to whole batches); a different window count or seed gives other orders (warned)."""
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if int(state["global_batch"]) != self.global_batch:
            windows = batch * int(state["global_batch"])
            warnings.warn(f"the global batch was {state['global_batch']} windows, now {self.global_batch}: "
                          f"continuing epoch {epoch} after {windows} windows, at batch {windows // self.global_batch}",
                          stacklevel=2)  # fmt: skip
            batch = windows // self.global_batch
        if int(state["num_windows"]) != self.num_windows or int(state["seed"]) != self.seed:
            warnings.warn(f"the data had {state['num_windows']} windows (seed {state['seed']}), now "
                          f"{self.num_windows} (seed {self.seed}): the data order after the resume differs",
                          stacklevel=2)  # fmt: skip
        self.epoch, self.batch = epoch, batch
