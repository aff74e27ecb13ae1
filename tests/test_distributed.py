"""Training beyond one process, and exact resume, for every baseline (issue 20).

End to end (subprocesses on tiny flags, one CPU thread each, a dataset of 80-136 windows (the goal-conditioned RL
baselines: single-step transitions), 9 steps, a checkpoint every 3, global batches of 32 windows so that epochs end
inside the run):

- Two processes under torchrun (gloo) with ``--batch-size 16`` each train like one process with ``--batch-size 32``:
  the loss of every step agrees to a relative 1e-5 (float32 sums in another order differ by ~1e-7) and so do the
  final weights, to an absolute 1e-4 (a tenth of one Adam step at lr 1e-3: Adam's normalised steps amplify the
  rounding differences; measured up to 2.3e-5; see INVARIANT for the few tensors Adam is free to move
  differently). Dropout is off in these runs: processes draw their own dropout masks. The goal-conditioned RL
  baselines (GCBC, GCIQL, GCIVL) draw their hindsight goals per global batch, so both see the same goals.
- A run started with 2 processes resumes with 1, and that one's checkpoint resumes with 2 (the same run, 3 + 3 + 3
  steps, against the uninterrupted one-process run; GCBC, GCIQL and GCIVL: 6 steps on 2 processes, then 3 on 1).
- A run killed with SIGKILL (tests/kill_at.py: at a step, or between writing the training state and model.pt) and
  resumed with ``--resume`` logs after the resume point exactly the losses of the uninterrupted run, and ends with
  bitwise the same weights and optimizer state.

Unit tests: ShardedBatches (the one-process order is the DataLoader's, the processes' slices partition each global
batch, positions survive a save), the training-state pair, the loss log, and GlobalBatchNorm / gather_batch /
average_gradients against one process in float64 (two gloo processes).
"""

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import test_dinowm
import test_gcrl
import test_lewm
import test_pldm
import test_tdmpc2
import torch
from torch import nn

from swm_core.checkpoint import read_checkpoint
from swm_core.data import WindowDataset
from swm_core.distributed import (
    GlobalBatchNorm,
    ShardedBatches,
    average_gradients,
    gather_batch,
    sync_batch_norm,
)
from swm_core.train_state import LossLog, load, read_loss_log, save, seed_step, state_path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
B, STEPS = 16, 9  # per-process batch of the two-process runs; the one-process runs use 2 * B


def without(flags, *names):
    """Tiny flags minus the given options and their values (this file sets them)."""
    out, skip = [], 0
    for f in flags:
        if skip:
            skip -= 1
        elif f in names:
            skip = 1
        else:
            out.append(f)
    return out


SET_HERE = ("--batch-size", "--num-workers", "--log-every", "--val-every", "--checkpoint-every")
COMMON = ["--num-workers", "0", "--log-every", "3", "--val-every", "3", "--checkpoint-every", "3"]
# baseline -> (dataset writer, flags, how the kill test stops the first run)
CASES = {
    "lewm": (test_lewm.write_dataset, [*without(test_lewm.TINY_FLAGS, *SET_HERE), "--dropout", "0"], ("save", 6)),
    "pldm": (test_pldm.write_dataset, without(test_pldm.TINY_FLAGS, *SET_HERE), ("step", 5)),
    "dinowm": (test_dinowm.write_dataset, [*without(test_dinowm.TINY_FLAGS, *SET_HERE), "--dropout", "0"], ("step", 7)),
    "tdmpc2": (test_tdmpc2.write_point_dataset,
               [*without(test_tdmpc2.TINY_FLAGS, *SET_HERE), "--q-dropout", "0", "--success-distance", "2.5"],
               ("save", 6)),
    "gcbc": (test_gcrl.write_two_room, without(test_gcrl.tiny("gcbc"), *SET_HERE), ("step", 5)),
    "gciql": (test_gcrl.write_two_room, without(test_gcrl.tiny("gciql"), *SET_HERE), ("save", 6)),
    "gcivl": (test_gcrl.write_two_room, without(test_gcrl.tiny("gcivl"), *SET_HERE), ("step", 7)),
}  # fmt: skip
# Tensors whose true gradient is zero: a bias followed (through linear maps only) by a normalization that removes
# any constant shift (LeWM: the encoder's first conv, each channel its own GroupNorm group; the linear layers and
# the LayerNorm bias before the BatchNorm projectors), and the BatchNorm running means that follow them. Their
# gradient is float rounding noise, which Adam's normalised step turns into moves of up to lr per step in either
# direction, so one and two processes move them differently; they are compared to 2 * lr * steps. GCRL: the biases
# of both conv layers of every network's encoder, each channel its own GroupNorm group at --conv-channels 4 8 (and
# the target networks' copies of them).
GCRL_NETS = {"gcbc": ("actor",), "gciql": ("actor", "value", "critic", "target_critic"),
             "gcivl": ("actor", "value", "target_value")}
INVARIANT = {
    "lewm": {"encoder.net.0.bias", "encoder.net.7.bias", "projector.net.0.bias", "projector.net.1.running_mean",
             "predictor.norm.bias", "predictor.proj.net.0.bias", "predictor.proj.net.1.running_mean"},
    **{algo: {f"{net}.encoder.net.{i}.bias" for net in nets for i in (0, 3)} for algo, nets in GCRL_NETS.items()},
}  # fmt: skip
LR = {"lewm": 1e-3, "gcbc": 1e-3, "gciql": 1e-3, "gcivl": 1e-3}
# (processes, last step) of the pieces of the run compared with the uninterrupted one: by default steps 1-3 on two
# processes, 4-6 on one, 7-9 on two again; the GCRL baselines, whose steps take little beside the start of a process,
# run 1-6 on two and 7-9 on one (one torchrun run fewer)
SEGMENTS = {algo: ((2, 6), (1, 9)) for algo in GCRL_NETS}


def run(*cmd, expect=0):
    proc = subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=600)  # fmt: skip
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def train(algo, data, out: Path, batch: int, steps: int = STEPS, processes: int = 1, resume=None, kill=None):
    """One training run writing out/model.pt and out/loss.jsonl; `kill` = (where, at) for tests/kill_at.py."""
    script = ROOT / "baselines" / f"{algo}_train.py"
    flags = [*CASES[algo][1], *COMMON, "--dataset", data, "--batch-size", batch, "--total-steps", steps,
             "--output", out / "model.pt", "--loss-log", out / "loss.jsonl", *(["--resume", resume] if resume else [])]  # fmt: skip
    if kill:
        return run(ROOT / "tests" / "kill_at.py", *kill, script, *flags, expect=-signal.SIGKILL)
    if processes > 1:
        return run("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", script, *flags)
    return run(script, *flags)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """algo -> (dataset, folder of the uninterrupted one-process run with batch 2B), made once per module."""
    made = {}

    def get(algo):
        if algo not in made:
            root = tmp_path_factory.mktemp(algo)
            data = CASES[algo][0](root / "d.lance")
            train(algo, data, root / "ref", 2 * B)
            made[algo] = (data, root / "ref")
        return made[algo]

    return get


def weights(folder: Path) -> dict:
    return read_checkpoint(folder / "model.pt")["state_dict"]


def assert_close_weights(algo, got: dict, want: dict):
    assert got.keys() == want.keys()
    loose = INVARIANT.get(algo, set())
    for name, w in want.items():
        if not w.is_floating_point():
            assert torch.equal(got[name], w), name
            continue
        atol = 2 * LR.get(algo, 0) * STEPS if name in loose else 1e-4
        diff = (got[name].double() - w.double()).abs().max().item()
        assert diff <= atol, f"{algo}: {name} differs by {diff:.3g} (> {atol:.3g})"


@pytest.mark.parametrize("algo", list(CASES))
def test_two_processes_train_like_one_and_resume_across_process_counts(algo, reference, tmp_path):
    data, ref = reference(algo)
    out = tmp_path / "run"
    for i, (processes, steps) in enumerate(SEGMENTS.get(algo, ((2, 3), (1, 6), (2, 9)))):
        train(algo, data, out, 2 * B // processes, steps=steps, processes=processes,
              resume=out / "model.pt" if i else None)  # fmt: skip
        assert read_checkpoint(out / "model.pt")["extra"]["step"] == steps
    got, want = read_loss_log(out / "loss.jsonl"), read_loss_log(ref / "loss.jsonl")
    assert [e["step"] for e in got] == [e["step"] for e in want] == list(range(1, STEPS + 1))
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-5), (g["step"], g["loss"], w["loss"])
    assert_close_weights(algo, weights(out), weights(ref))
    # one process's files: the checkpoint names its training state, which is the only one left
    ckpt = read_checkpoint(out / "model.pt")
    assert ckpt["extra"]["train_state"] == "model.train-00000009.pt"
    assert sorted(p.name for p in out.glob("model.train-*.pt")) == ["model.train-00000009.pt"]


@pytest.mark.parametrize("algo", list(CASES))
def test_killed_run_resumes_exactly(algo, reference, tmp_path):
    data, ref = reference(algo)
    where, at = CASES[algo][2]
    out = tmp_path / "run"
    train(algo, data, out, 2 * B, kill=(where, at))
    ckpt = read_checkpoint(out / "model.pt")
    last = at - 3 if where == "save" else at // 3 * 3  # the last complete checkpoint; the pair it names is whole
    assert ckpt["extra"]["step"] == last
    assert (out / ckpt["extra"]["train_state"]).is_file()
    if where == "save":  # killed after the training state of step 6 was written, before model.pt
        assert (out / "model.train-00000006.pt").is_file()
    assert len(read_loss_log(out / "loss.jsonl")) == at  # logged past the checkpoint, then killed
    train(algo, data, out, 2 * B, resume=out / "model.pt")
    assert read_loss_log(out / "loss.jsonl") == read_loss_log(ref / "loss.jsonl")  # bitwise: same floats
    got, want = weights(out), weights(ref)
    assert all(torch.equal(got[k], want[k]) for k in want)
    got_state, want_state = (torch.load(state_path(d / "model.pt", STEPS), weights_only=True) for d in (out, ref))
    assert got_state["data"] == want_state["data"]
    for key in [k for k in ("optimizer", "pi_optimizer") if k in want_state]:
        got_t, want_t = ([t for st in s[key]["state"].values() for t in st.values()] for s in (got_state, want_state))
        assert all(torch.equal(a, b) for a, b in zip(got_t, want_t, strict=True)), key


# --------------------------------------------------------------------------------------------- unit tests


def test_sharded_batches_keep_the_one_process_order_and_split_it(tmp_path):
    data = test_pldm.write_dataset(tmp_path / "d.lance")
    windows = WindowDataset(data, num_steps=3, frameskip=2, columns=("action",), split="train", val_fraction=0.34)
    n = len(windows)
    one = ShardedBatches(n, 8, seed=3)
    # epoch 0 is WindowDataset.loader()'s; later epochs are those of a DataLoader with persistent workers
    first = [b["action"] for b in windows.loader(batch_size=8, shuffle=True, seed=3, drop_last=True)]
    assert all(torch.equal(a, windows[idx]["action"]) for a, idx in zip(first, one, strict=True))
    loader = torch.utils.data.DataLoader(range(n), batch_size=8, shuffle=True, drop_last=True, num_workers=1,
                                         persistent_workers=True, generator=torch.Generator().manual_seed(3),
                                         multiprocessing_context="spawn")  # fmt: skip
    stream = one.stream()
    for epoch in range(3):
        assert [b.tolist() for b in loader] == [next(stream) for _ in range(len(one))], epoch
    # two processes: each global batch of 2 x 4 windows is batch of 8 of one process, split in order, no overlap
    ranks = [ShardedBatches(n, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for full, a, b in zip(ShardedBatches(n, 8, seed=3), *ranks, strict=True):
        assert a + b == full and not set(a) & set(b)
    # "randperm": one permutation per epoch (the DINO-WM feature cache's order)
    plain = ShardedBatches(n, 8, seed=3, order="randperm").stream()
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        perm = torch.randperm(n, generator=g).tolist()
        assert [next(plain) for _ in range(n // 8)] == [perm[i : i + 8] for i in range(0, n - 7, 8)]


def test_sharded_batches_resume_from_a_saved_position():
    full = ShardedBatches(50, 4, seed=0, rank=1, world_size=2)  # 6 global batches of 8 per epoch
    stream = full.stream()
    seen = [next(stream) for _ in range(9)]
    state = full.state_dict()
    assert state == {"epoch": 1, "batch": 3, "global_batch": 8, "num_windows": 50, "seed": 0}
    again = ShardedBatches(50, 4, seed=0, rank=1, world_size=2)
    again.load_state_dict(state)
    later = again.stream()
    assert [next(later) for _ in range(8)] == [next(stream) for _ in range(8)]
    assert seen[0] != seen[6]  # the second epoch is another permutation
    # the same position with one process of batch 8: the same windows next (both slices of the global batch)
    one = ShardedBatches(50, 8, seed=0)
    one.load_state_dict(state)
    halves = [ShardedBatches(50, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    for h in halves:
        h.load_state_dict(state)
    assert next(one.stream()) == next(halves[0].stream()) + next(halves[1].stream())
    # another global batch size continues after the same number of windows, with a warning
    other = ShardedBatches(50, 12, seed=0)
    with pytest.warns(UserWarning, match="the global batch was 8 windows, now 12: continuing epoch 1 after 24 windows"):
        other.load_state_dict(state)
    assert (other.epoch, other.batch) == (1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ShardedBatches(50, 4, seed=0, rank=0, world_size=2).load_state_dict(state)  # same setting: silent


def test_sharded_batches_reject_bad_settings():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        ShardedBatches(10, 0)
    with pytest.raises(ValueError, match="0 <= rank < world_size, got rank 2, world_size 2"):
        ShardedBatches(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="order 'sorted' is unknown; allowed: 'dataloader', 'randperm'"):
        ShardedBatches(10, 2, order="sorted")
    with pytest.raises(ValueError, match="10 windows make no global batch of 12 \\(2 processes x batch 6\\)"):
        next(ShardedBatches(10, 6, world_size=2).stream())


def test_training_state_pair_survives_a_kill_between_the_writes(tmp_path):
    ckpt_path = tmp_path / "model.pt"

    def write(step):
        def checkpoint(name):
            torch.save({"extra": {"step": step, "train_state": name}}, ckpt_path)

        return checkpoint

    def read():
        return torch.load(ckpt_path, weights_only=True)

    save(ckpt_path, 3, {"optimizer": {"x": torch.tensor([3.0])}}, write(3))
    assert load(ckpt_path, read())["optimizer"]["x"].item() == 3.0

    def killed(name):
        raise KeyboardInterrupt("killed between the training state and the checkpoint")

    with pytest.raises(KeyboardInterrupt):
        save(ckpt_path, 6, {"optimizer": {"x": torch.tensor([6.0])}}, killed)
    state = load(ckpt_path, read())  # the old checkpoint and the training state it names, untouched
    assert state["step"] == 3 and state["optimizer"]["x"].item() == 3.0
    save(ckpt_path, 9, {"optimizer": {"x": torch.tensor([9.0])}}, write(9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.train-00000009.pt"]
    # a checkpoint copied alone has no training state; a mismatched one is refused
    assert load(tmp_path / "copied" / "model.pt", read()) is None
    assert load(ckpt_path, {"extra": {"step": 9}}) is None
    with pytest.raises(ValueError, match="holds the training state of step 9, but .*model.pt is at step 8"):
        load(ckpt_path, {"extra": {"step": 8, "train_state": "model.train-00000009.pt"}})


def test_seed_step_and_loss_log(tmp_path):
    seed_step(1, 5, 0)
    a = (torch.rand(3), np.random.rand(), __import__("random").random())
    torch.rand(10)
    seed_step(1, 5, 0)
    b = (torch.rand(3), np.random.rand(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert seed_step(1, 5, 0) != seed_step(1, 5, 1) != seed_step(1, 6, 0)

    path = tmp_path / "loss.jsonl"
    log = LossLog(path)
    for step in range(1, 6):
        log.write(step, {"loss": 1 / 3 + step, "grad_norm": torch.tensor(0.5)})
    log.close()
    with path.open("a") as f:
        f.write('{"step": 6, "lo')  # a torn last line, as a kill leaves it
    assert [e["step"] for e in read_loss_log(path)] == [1, 2, 3, 4, 5]
    assert read_loss_log(path)[2]["loss"] == 1 / 3 + 3  # exact floats
    LossLog(path, start_step=3).close()  # a resume from step 3 drops what came after
    assert [e["step"] for e in read_loss_log(path)] == [1, 2, 3]


def _global_stats_worker(rank, init_file, x, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = sync_batch_norm(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))).double()
        assert isinstance(model[1], GlobalBatchNorm)
        half = x[rank * 5 : (rank + 1) * 5]
        y = model(half)
        z = gather_batch(y)  # the whole batch's outputs, on both processes
        loss = y.square().mean() + z.var(0).sum()
        loss.backward()
        average_gradients(model.parameters())
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        out[rank] = torch.cat([grads, model[1].running_mean, model[1].running_var, z.detach().reshape(-1)])
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_global_batch_norm_and_gathered_statistics_match_one_process(tmp_path):
    x = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    y = model(x)
    (y.square().mean() + y.var(0).sum()).backward()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    want = torch.cat([grads, model[1].running_mean, model[1].running_var, y.detach().reshape(-1)])
    out = torch.zeros(2, len(want), dtype=torch.float64).share_memory_()
    torch.multiprocessing.spawn(_global_stats_worker, args=(str(tmp_path / "init"), x, out), nprocs=2, join=True)
    for rank in range(2):  # gradients, running statistics and the gathered batch of both processes
        assert torch.allclose(out[rank], want, rtol=1e-10, atol=1e-12), (rank, out[rank] - want)
    with pytest.raises(ValueError, match="GlobalBatchNorm expects \\(N, C, ...\\) input, got shape \\(4,\\)"):
        GlobalBatchNorm(4)(torch.zeros(4))
