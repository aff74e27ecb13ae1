"""LeWM baseline: SIGReg values, AdaLN-zero, causality, the planning cost, checkpoints, the training script."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swm_core.checkpoint import import_script, load_checkpoint, read_checkpoint, save_checkpoint
from swm_core.data import open_dataset
from swm_core.lance_writer import LanceWriter

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "baselines" / "lewm_train.py"


@pytest.fixture(scope="module")
def lewm(load_script):
    """The training script's module, loaded through the shared conftest fixture."""
    return load_script("baselines/lewm_train.py")


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

TINY = dict(
    action_dim=2, action_block=2, history=3, image_size=32, encoder="conv", conv_channels=[8, 16],
    latent_dim=16, proj_hidden=32, action_hidden=16, pred_depth=2, pred_heads=2, pred_dim_head=8,
    pred_mlp_dim=32, dropout=0.0,
)  # fmt: skip


def tiny_model(lewm, seed=0, move_gates=False, **overrides):
    torch.manual_seed(seed)
    model = lewm.LeWM(**{**TINY, **overrides})
    if move_gates:  # stand-in for trained AdaLN gates
        with torch.no_grad():
            for block in model.predictor.blocks:
                block.modulation[1].weight.normal_(0, 0.3)
                block.modulation[1].bias.normal_(0, 0.3)
    return model.eval()


# ------------------------------------------------------------------------------------------------ SIGReg


def test_sigreg_small_case_by_hand(lewm):
    # one time step, B = 2, D = 2; directions (3, 4) -> (0.6, 0.8) after normalisation, and (1, 0)
    z = torch.tensor([[[1.0, 2.0], [-0.5, 0.25]]], dtype=torch.float64)
    directions = torch.tensor([[3.0, 1.0], [4.0, 0.0]], dtype=torch.float64)
    got = lewm.sigreg(z, knots=3, t_max=2.0, directions=directions).item()
    # knots t = 0, 1, 2 (dt = 1): trapezoid over [-2, 2] folded -> weights 1, 2, 1, times exp(-t^2/2)
    weights = [1.0, 2.0 * math.exp(-0.5), math.exp(-2.0)]
    per_direction = []
    for xs in ([0.6 * 1 + 0.8 * 2, 0.6 * -0.5 + 0.8 * 0.25], [1.0, -0.5]):
        stat = 0.0
        for t, w in zip([0.0, 1.0, 2.0], weights):
            c = (math.cos(t * xs[0]) + math.cos(t * xs[1])) / 2
            s = (math.sin(t * xs[0]) + math.sin(t * xs[1])) / 2
            stat += w * ((c - math.exp(-t * t / 2)) ** 2 + s**2)
        per_direction.append(2 * stat)  # times B
    assert got == pytest.approx(sum(per_direction) / 2, rel=1e-12)


def test_sigreg_normal_low_collapsed_high_and_seeded(lewm):
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(2, 1024, 16, generator=g)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    low = lewm.sigreg(normal, num_proj=64, generator=gen()).item()
    assert low == lewm.sigreg(normal, num_proj=64, generator=gen()).item()  # same directions, same value
    collapsed = lewm.sigreg(torch.full((2, 1024, 16), 0.3), num_proj=64, generator=gen()).item()
    scaled = lewm.sigreg(normal * 3.0, num_proj=64, generator=gen()).item()
    # a N(0, I) sample is ~O(1) (the statistic of a true sample does not grow with B); wrong shapes grow with B
    assert low < 2.0  # E = sum_t w(t) (1 - exp(-t^2)) ~ 1.06
    assert collapsed > 100 * low and scaled > 20 * low


def _sigreg_ddp_worker(rank, init_file, z, directions, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        half = z[:, rank * 8 : (rank + 1) * 8].clone().requires_grad_(True)
        stat = import_script(SCRIPT).sigreg(half, directions=directions)  # a fresh process: load by path
        stat.backward()
        out[rank] = torch.cat([stat.detach().reshape(1), half.grad.reshape(-1)])
        dist.barrier()  # neither process tears gloo down while the other is still in a collective
    finally:
        dist.destroy_process_group()


def test_sigreg_all_reduces_batch_means_across_processes(lewm, tmp_path):
    torch.manual_seed(0)
    z = torch.randn(2, 16, 4, dtype=torch.float64)
    directions = torch.randn(4, 32, dtype=torch.float64)
    full = z.clone().requires_grad_(True)
    expected = lewm.sigreg(full, directions=directions)
    expected.backward()
    out = torch.zeros(2, 1 + 2 * 8 * 4, dtype=torch.float64).share_memory_()
    torch.multiprocessing.spawn(
        _sigreg_ddp_worker, args=(str(tmp_path / "init"), z, directions, out), nprocs=2, join=True
    )
    # both processes see the global statistic; each gets the gradient of its own half of the batch
    assert out[0, 0].item() == pytest.approx(expected.item(), rel=1e-10)
    assert out[1, 0].item() == pytest.approx(expected.item(), rel=1e-10)
    # DDP averages gradients over 2 processes, so each process's local gradient is 2x the global one
    grads = torch.cat([out[0, 1:].reshape(2, 8, 4), out[1, 1:].reshape(2, 8, 4)], dim=1) / 2
    assert torch.allclose(grads, full.grad, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------- predictor


def test_adaln_zero_blocks_are_identity_and_ignore_actions_at_init(lewm):
    model = tiny_model(lewm)
    block = model.predictor.blocks[0]
    x, c = torch.randn(4, 3, 16), torch.randn(4, 3, 16)
    assert torch.equal(block(x, c), x)
    z = torch.randn(4, 3, 16)
    a1, a2 = torch.randn(4, 3, 4), torch.randn(4, 3, 4)
    assert torch.equal(model.predict(z, a1), model.predict(z, a2))
    moved = tiny_model(lewm, move_gates=True)
    assert not torch.allclose(moved.predict(z, a1), moved.predict(z, a2), atol=1e-4)


def test_adaln_gates_receive_gradient_from_zero(lewm):
    model = tiny_model(lewm).train()
    z, a = torch.randn(8, 3, 16), torch.randn(8, 3, 4)
    model.predict(z, a).square().mean().backward()
    grad = model.predictor.blocks[0].modulation[1].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_predictor_is_causal(lewm):
    model = tiny_model(lewm, move_gates=True)
    z, a = torch.randn(5, 3, 16), torch.randn(5, 3, 4)
    z2, a2 = z.clone(), a.clone()
    z2[:, 2] += 1.0
    a2[:, 2] -= 1.0
    out, out2 = model.predict(z, a), model.predict(z2, a2)
    assert torch.allclose(out[:, :2], out2[:, :2], atol=1e-6)
    assert not torch.allclose(out[:, 2], out2[:, 2], atol=1e-3)
    with pytest.raises(ValueError, match="history is 3 frames, got 4"):
        model.predict(torch.randn(1, 4, 16), torch.randn(1, 4, 4))


# ------------------------------------------------------------------------------------------ planning


def plan_infos(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "pixels": torch.randint(0, 256, (B, 32, 32, 3), generator=g, dtype=torch.uint8),
        "goal": torch.randint(0, 256, (B, 32, 32, 3), generator=g, dtype=torch.uint8),
    }


def test_get_cost_shape_memo_differentiable_and_matches_one_step(lewm):
    model = tiny_model(lewm, move_gates=True)
    model.set_stats({"action": {"mean": torch.tensor([0.5, -0.5]), "std": torch.tensor([2.0, 0.5])}})
    infos = plan_infos()
    cand = torch.randn(2, 3, 4, 4, requires_grad=True)
    cost = model.get_cost(infos, cand)
    assert cost.shape == (2, 3) and "_z0" in infos and "_zg" in infos
    cost.sum().backward()
    assert torch.isfinite(cand.grad).all() and cand.grad.abs().sum() > 0
    # H = 1: the cost is the MSE between one predictor step from z0 and the goal latent
    z0, zg = model.plan_latents(infos)
    one = cand[:, :, :1].detach()
    step = model.step_latent(z0[:, None].expand(2, 3, -1), one[:, :, 0])
    assert torch.allclose(model.get_cost(infos, one), (step - zg[:, None]).square().mean(-1), atol=1e-6)
    # the last step of an H-step rollout equals stepping the predictor by hand over the history
    z1 = model.predict(z0[:, None], cand[:, :1, :1, :].detach().reshape(2, 1, 4))[:, -1]
    z2 = model.predict(torch.stack([z0, z1], 1), cand[:, 0, :2].detach())[:, -1]
    assert torch.allclose(model.get_cost(infos, cand[:, :1, :2].detach())[:, 0], (z2 - zg).square().mean(-1), atol=1e-6)
    # actions are normalised with the stats: shifting the stats and the actions together changes nothing
    other = tiny_model(lewm, move_gates=True)
    other.set_stats({"action": {"mean": torch.tensor([1.5, 0.5]), "std": torch.tensor([2.0, 0.5])}})
    shifted = cand.detach().clone().reshape(2, 3, 4, 2, 2) + torch.tensor([1.0, 1.0])
    assert torch.allclose(other.get_cost(plan_infos(), shifted.reshape(2, 3, 4, 4)), cost.detach(), atol=1e-5)


def test_get_cost_sum_over_steps_and_bad_shapes(lewm):
    model = tiny_model(lewm, move_gates=True, cost_sum_steps=True)
    last = tiny_model(lewm, move_gates=True)
    cand = torch.randn(2, 3, 3, 4)
    total = model.get_cost(plan_infos(), cand)
    assert (total > last.get_cost(plan_infos(), cand)).all()
    with pytest.raises(ValueError, match=r"action_block\*action_dim = 2\*2, got 6"):
        model.get_cost(plan_infos(), torch.randn(2, 3, 3, 6))
    with pytest.raises(ValueError, match="infos hold 2 envs but candidates have B = 3"):
        model.get_cost(plan_infos(), torch.randn(3, 3, 3, 4))


def test_checkpoint_round_trip_gives_identical_costs(lewm, tmp_path):
    model = tiny_model(lewm, move_gates=True)
    stats = {"action": {"mean": np.array([0.1, 0.2], np.float32), "std": np.array([0.9, 1.1], np.float32)}}
    model.set_stats(stats)
    save_checkpoint(tmp_path / "m.pt", model, config=TINY, stats=stats, step=3)
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt", expected_class="LeWM")
    assert (loaded.action_dim, loaded.action_block) == (2, 2) and ckpt["extra"]["step"] == 3
    cand = torch.randn(2, 5, 3, 4)
    assert torch.equal(loaded.get_cost(plan_infos(), cand), model.get_cost(plan_infos(), cand))


# ------------------------------------------------------------------------------------- training checks


def test_check_finite_names_the_step(lewm):
    assert lewm.check_finite(0.5, 3) == 0.5
    with pytest.raises(FloatingPointError, match="loss became nan at step 17; the last good checkpoint is ck.pt"):
        lewm.check_finite(float("nan"), 17, "ck.pt")
    with pytest.raises(FloatingPointError, match="inf at step 2; no checkpoint"):
        lewm.check_finite(float("inf"), 2)


def test_loss_decreases_on_a_fixed_batch(lewm):
    model = tiny_model(lewm).train()
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (16, 4, 32, 32, 3), generator=g, dtype=torch.uint8)
    actions = torch.randn(16, 4, 4, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(15):
        loss, pred, reg = lewm.lewm_loss(model, pixels, actions, 0.09, lewm.step_generator(0, step), 64)
        assert torch.isclose(loss, pred + 0.09 * reg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def write_dataset(path, episodes=6, steps=40, action_dim=2, columns=("pixels", "action", "proprio"), seed=0, env_id="swm/Tiny-v0"):
    rng = np.random.default_rng(seed)
    with LanceWriter(path, env_id=env_id, image_size=32, control_hz=10) as writer:
        for _ in range(episodes):
            ep = {
                "pixels": rng.integers(0, 256, (steps, 32, 32, 3), dtype=np.uint8),
                "action": rng.normal(1.0, 2.0, (steps, action_dim)).astype(np.float32),
                "proprio": rng.normal(-3.0, 0.5, (steps, 4)).astype(np.float32),
            }
            ep["action"][-1] = np.nan
            writer.add_episode({k: v for k, v in ep.items() if k in columns})
    return path


def test_stats_columns_and_resume_checks(lewm, tmp_path):
    ds = open_dataset(write_dataset(tmp_path / "d.lance"))
    stats = lewm.compute_stats(ds, [0, 2])
    rows = np.concatenate([ds.episode_rows(0), ds.episode_rows(2)])
    act = ds.read_rows(rows, ["action"])["action"]
    act = act[np.isfinite(act).all(1)]
    assert len(act) == 78
    np.testing.assert_allclose(stats["action"]["mean"], act.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], act.std(0), rtol=1e-5)
    assert stats["proprio"]["mean"].shape == (4,)
    lewm.check_columns(ds)
    no_action = open_dataset(write_dataset(tmp_path / "n.lance", episodes=2, columns=("pixels",)))
    with pytest.raises(ValueError, match="no 'action' column"):
        lewm.check_columns(no_action)
    with pytest.raises(ValueError, match="action_dim 2 .* but the dataset gives action_dim 3"):
        lewm.check_resume_compatible({"action_dim": 2, "action_block": 2}, 3, 2, "ck.pt")


def test_preset_defaults(lewm):
    assert lewm.preset_defaults([]).encoder == "vit_tiny_patch16_224"
    cpu = lewm.preset_defaults(["--lr", "1", "--preset", "cpu"])
    assert cpu.encoder == "conv" and cpu.image_size == 64 and cpu.preset == "cpu"
    assert lewm.preset_defaults(["--preset=cpu"]).latent_dim == 64
    with pytest.raises(ValueError, match="'gpu' is unknown"):
        lewm.preset_defaults(["--preset", "gpu"])


TINY_FLAGS = [
    "--encoder", "conv", "--image-size", "32", "--conv-channels", "8", "16", "--latent-dim", "16",
    "--proj-hidden", "32", "--action-hidden", "16", "--pred-depth", "1", "--pred-heads", "2",
    "--pred-dim-head", "8", "--pred-mlp-dim", "32", "--history", "2", "--frameskip", "2", "--batch-size", "8",
    "--sigreg-num-proj", "16", "--val-fraction", "0.34", "--log-every", "2",
    "--val-every", "3", "--val-batches", "2", "--checkpoint-every", "3", "--device", "cpu", "--lr", "1e-3",
]  # fmt: skip


def run_script(*flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_script_trains_checkpoints_and_resumes(tmp_path):
    data = write_dataset(tmp_path / "d.lance")
    # one (spawned) DataLoader worker: Lance must not be used across a fork
    out = run_script("--dataset", str(data), "--total-steps", "6", "--output", str(tmp_path / "a" / "model.pt"),
                     "--num-workers", "1", *TINY_FLAGS)  # fmt: skip
    losses = [float(x) for x in re.findall(r"losses/total=(\S+)", out)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert re.search(r"step 6: val/total=\S+", out) and "data_wait_fraction=" in out
    ckpt = read_checkpoint(tmp_path / "a" / "model.pt")
    assert ckpt["extra"]["step"] == 6 and (tmp_path / "a" / ckpt["extra"]["train_state"]).is_file()
    assert ckpt["config"]["action_dim"] == 2 and ckpt["config"]["action_block"] == 2
    assert set(ckpt["stats"]) == {"action", "proprio"}
    model, _ = load_checkpoint(tmp_path / "a" / "model.pt")
    assert model.get_cost(plan_infos(), torch.zeros(2, 3, 2, 4)).shape == (2, 3)

    out = run_script("--dataset", str(data), "--total-steps", "8", "--resume", str(tmp_path / "a" / "model.pt"),
                     "--output", str(tmp_path / "b" / "model.pt"), "--num-workers", "0", *TINY_FLAGS)  # fmt: skip
    assert re.findall(r"step (\d+): losses", out) == ["8"]
    resumed = read_checkpoint(tmp_path / "b" / "model.pt")
    assert resumed["extra"]["step"] == 8
    for key in ("action", "proprio"):  # the statistics carry over unchanged
        assert torch.equal(resumed["stats"][key]["mean"], ckpt["stats"][key]["mean"])


def test_timm_vit_encoder_uses_cls_token(lewm):
    model = lewm.LeWM(action_dim=2, encoder="vit_tiny_patch16_224", image_size=32, patch_size=8, latent_dim=32,
                      proj_hidden=64, pred_depth=1).eval()  # fmt: skip
    assert model.encoder.global_pool == "token" and model.encoder.patch_embed.grid_size == (4, 4)
    assert model.encode(torch.zeros(2, 3, 32, 32, 3, dtype=torch.uint8)).shape == (2, 3, 32)
    with pytest.raises(ValueError, match="'nope': use 'conv' or a timm model name"):
        lewm.LeWM(action_dim=2, encoder="nope")


def test_lewm_meets_the_world_model_contract(lewm):
    """What MPCPolicy and the solvers rely on (swm_core.world_model), checked on a built model."""
    from swm_core.world_model import LatentWorldModel, WorldModel

    model = tiny_model(lewm)
    assert isinstance(model, WorldModel) and type(model).default_solver == "cem"
    assert isinstance(model, LatentWorldModel) is True
