"""PLDM baseline: each loss term by hand, the rollout, the planning cost, checkpoints, the training script."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swm_core.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from swm_core.data import open_dataset
from swm_core.lance_writer import LanceWriter

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "baselines" / "pldm_train.py"


@pytest.fixture(scope="module")
def pldm(load_script):
    """The training script's module, loaded through the shared conftest fixture."""
    return load_script("baselines/pldm_train.py")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids the cost of oversubscribing a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(action_dim=2, action_block=2, image_size=32, impala_channels=[4, 8], res_blocks=1, latent_dim=16,
            predictor="gru", pred_hidden=32, idm_hidden=32)  # fmt: skip


def tiny_model(pldm, seed=0, **overrides):
    torch.manual_seed(seed)
    return pldm.PLDM(**{**TINY, **overrides}).eval()


# ------------------------------------------------------------------------------------------------ losses


def test_variance_hinge_zero_for_unit_variance_positive_for_collapse(pldm):
    # 4 samples, 2 features, each feature has unbiased variance exactly 1: sqrt(1 + 1e-4) > 1 -> hinge 0
    x = torch.tensor([[1.0, 0.5], [-1.0, -0.5], [1.0, -1.5], [-1.0, 1.5]], dtype=torch.float64)
    assert torch.allclose(x.var(0), torch.tensor([4 / 3, 5 / 3], dtype=torch.float64))  # >= 1 by construction
    assert pldm.variance_loss(x).item() == 0.0
    collapsed = torch.full((8, 3), 0.7, dtype=torch.float64)
    assert pldm.variance_loss(collapsed).item() == pytest.approx(1 - math.sqrt(1e-4), abs=1e-12)
    # by hand: feature 0 = (0, 1) -> var 0.5; feature 1 = (0, 4) -> var 8 (hinge 0); mean over the 2 features
    x = torch.tensor([[0.0, 0.0], [1.0, 4.0]], dtype=torch.float64)
    assert pldm.variance_loss(x).item() == pytest.approx((1 - math.sqrt(0.5 + 1e-4)) / 2, rel=1e-12)


def test_variance_over_time_is_per_trajectory(pldm):
    # (B=2, T=3, D=1): trajectory 0 constant (hinge 0.99), trajectory 1 = (0, 2, 4) (var 4, hinge 0)
    z = torch.tensor([[[5.0], [5.0], [5.0]], [[0.0], [2.0], [4.0]]], dtype=torch.float64)
    assert pldm.variance_loss(z).item() == pytest.approx((1 - math.sqrt(1e-4)) / 2, rel=1e-12)
    # pooled over the batch the same values have plenty of variance: the axis matters
    assert pldm.variance_loss(z.reshape(6, 1)).item() == 0.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        pldm.variance_loss(torch.zeros(1, 4))


def test_covariance_zero_for_decorrelated_and_exact_for_a_correlated_pair(pldm):
    decorrelated = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert pldm.covariance_loss(decorrelated).item() == 0.0
    # features 0 and 1 equal, feature 2 independent of both: x0 = x1 = (1, -1, 1, -1), x2 = (1, 1, -1, -1)
    x = torch.tensor(
        [[1.0, 1.0, 1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]], dtype=torch.float64
    )
    # C01 = C10 = sum(x0 * x1) / (N - 1) = 4 / 3, all other off-diagonals 0 -> 2 * (4/3)^2 / (D (D - 1) = 6)
    assert pldm.covariance_loss(x).item() == pytest.approx(2 * (4 / 3) ** 2 / 6, rel=1e-12)
    # scaling a feature by s scales its covariances by s (the squares by s^2); a shift changes nothing
    scaled = x * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64) + 3.0
    assert pldm.covariance_loss(scaled).item() == pytest.approx(2 * (8 / 3) ** 2 / 6, rel=1e-12)
    # leading dims (over time, per trajectory): x and 2x -> covariances x4, squares x16, mean of the two
    both = torch.stack([x, 2 * x])
    assert pldm.covariance_loss(both).item() == pytest.approx((1 + 16) / 2 * 2 * (4 / 3) ** 2 / 6, rel=1e-12)


def test_smoothness_prediction_and_idm_by_hand(pldm):
    z = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [3.0, 0.0]]], dtype=torch.float64)  # (B=1, T=3, D=2)
    # differences (1, 0), (2, -1): squares 1, 0, 4, 1 -> mean 1.5
    assert pldm.smoothness_loss(z).item() == pytest.approx(1.5, rel=1e-12)
    pred = z.clone()
    pred[:, 0] += 100.0  # the first prediction is the first encoding by construction: never compared
    pred[:, 2] += torch.tensor([1.0, -3.0], dtype=torch.float64)
    assert pldm.prediction_loss(pred, z).item() == pytest.approx((1 + 9) / 4, rel=1e-12)
    a_pred, a_true = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert pldm.idm_loss(a_pred, a_true).item() == pytest.approx((1 + 4 + 4) / 4, rel=1e-6)


def test_pldm_loss_combines_the_terms_over_an_open_loop_rollout(pldm):
    model = tiny_model(pldm).train()
    stats = {"action": {"mean": torch.tensor([0.5, -0.5]), "std": torch.tensor([2.0, 0.5])}}
    model.set_stats(stats)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (6, 4, 32, 32, 3), generator=g, dtype=torch.uint8)
    actions = torch.randn(6, 4, 4, generator=g)
    coeffs = dict(sim=1.0, std=3.98, cov=6.92, std_t=0.245, cov_t=0.5, sim_t=0.742, idm=1.07)
    total, terms = pldm.pldm_loss(model, pixels, actions, coeffs)
    assert total.item() == pytest.approx(sum(coeffs[k] * terms[k].item() for k in coeffs), rel=1e-5)
    z = model.encode(pixels)
    # the predictor is rolled out from the first frame only (open loop), over the first T - 1 action blocks
    p1 = model.step_latent(z[:, 0], actions[:, 0])
    p2 = model.step_latent(p1, actions[:, 1])
    p3 = model.step_latent(p2, actions[:, 2])
    pred = torch.stack([z[:, 0], p1, p2, p3], 1)
    assert terms["sim"].item() == pytest.approx((pred[:, 1:] - z[:, 1:]).square().mean().item(), rel=1e-5)
    assert terms["std"].item() == pytest.approx(pldm.variance_loss(z[:, 0]).item(), rel=1e-5)
    assert terms["cov"].item() == pytest.approx(pldm.covariance_loss(z[:, 0]).item(), rel=1e-5)
    assert terms["std_t"].item() == pytest.approx(pldm.variance_loss(z[:, 1:]).item(), rel=1e-5)
    assert terms["cov_t"].item() == pytest.approx(pldm.covariance_loss(z[:, 1:]).item(), rel=1e-5)
    # the IDM target is the normalised action block: (a - mean) / std per env step
    norm = (
        (actions[:, :3].reshape(6, 3, 2, 2) - torch.tensor([0.5, -0.5])) / torch.tensor([2.0, 0.5])
    ).reshape(6, 3, 4)
    idm = (model.inverse_dynamics(z[:, :-1], z[:, 1:]) - norm).square().mean()
    assert terms["idm"].item() == pytest.approx(idm.item(), rel=1e-5)
    # a zero weight skips the over-time covariance; every parameter group gets gradient
    _, skipped = pldm.pldm_loss(model, pixels, actions, {**coeffs, "cov_t": 0.0})
    assert skipped["cov_t"].item() == 0.0
    total.backward()
    for name in ("encoder", "norm", "predictor", "idm"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(gr is not None for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0, name


def test_loss_decreases_on_a_fixed_batch(pldm):
    model = tiny_model(pldm).train()
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (8, 4, 32, 32, 3), generator=g, dtype=torch.uint8)
    actions = torch.randn(8, 4, 4, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss, _ = pldm.pldm_loss(model, pixels, actions, pldm.COEFFS["two_room"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_coefficient_sets_overrides_and_window_checks(pldm):
    args = pldm.preset_defaults([])
    assert pldm.loss_coeffs(args) == dict(
        sim=1.0, std=3.98, cov=6.92, std_t=0.245, cov_t=0.0, sim_t=0.742, idm=1.07
    )
    small = pldm.loss_coeffs(pldm.Args(coeffs="small_data", idm=0.5))
    assert small == dict(sim=1.0, std=2.2, cov=13.0, std_t=0.19, cov_t=0.0, sim_t=0.5, idm=0.5)
    with pytest.raises(ValueError, match="--std-t must be a finite weight >= 0, got -1"):
        pldm.loss_coeffs(pldm.Args(std_t=-1.0))
    pldm.check_window(3, small)
    pldm.check_window(2, {**small, "std_t": 0.0})
    with pytest.raises(ValueError, match="--num-steps 2 leaves one frame after the first"):
        pldm.check_window(2, small)
    with pytest.raises(ValueError, match="--num-steps must be >= 2"):
        pldm.check_window(1, {**small, "std_t": 0.0})


def test_preset_defaults(pldm):
    paper = pldm.preset_defaults([])
    assert (paper.latent_dim, paper.num_steps, paper.predictor, paper.coeffs) == (512, 17, "gru", "two_room")
    cpu = pldm.preset_defaults(["--lr", "1", "--preset", "cpu"])
    assert cpu.preset == "cpu" and cpu.image_size == 64 and cpu.coeffs == "small_data"
    assert pldm.preset_defaults(["--preset=cpu"]).latent_dim == pldm.CPU_PRESET["latent_dim"]
    with pytest.raises(ValueError, match="'gpu' is unknown"):
        pldm.preset_defaults(["--preset", "gpu"])


# ------------------------------------------------------------------------------------------ planning


def plan_infos(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "pixels": torch.randint(0, 256, (B, 32, 32, 3), generator=g, dtype=torch.uint8),
        "goal": torch.randint(0, 256, (B, 32, 32, 3), generator=g, dtype=torch.uint8),
    }


@pytest.mark.parametrize("predictor", ["gru", "mlp"])
def test_get_cost_shape_memo_differentiable_and_matches_stepping(pldm, predictor):
    model = tiny_model(pldm, predictor=predictor)
    assert (model.action_dim, model.action_block, model.image_size, model.default_solver) == (
        2,
        2,
        32,
        "mppi",
    )
    model.set_stats({"action": {"mean": torch.tensor([0.5, -0.5]), "std": torch.tensor([2.0, 0.5])}})
    infos = plan_infos()
    cand = torch.randn(2, 3, 4, 4, requires_grad=True)
    cost = model.get_cost(infos, cand)
    assert cost.shape == (2, 3) and "_z0" in infos and "_zg" in infos
    cost.sum().backward()
    assert torch.isfinite(cand.grad).all() and cand.grad.abs().sum() > 0
    # plan_latents / step_latent (the GRASP interface) reproduce the cost: step H times, squared L2 to the goal
    z0, zg = model.plan_latents(infos)
    assert z0.shape == zg.shape == (2, 16)
    z = z0[:, None].expand(2, 3, -1)
    for h in range(4):
        z = model.step_latent(z, cand[:, :, h].detach())
    assert torch.allclose(
        model.get_cost(infos, cand.detach()), (z - zg[:, None]).square().sum(-1), atol=1e-5
    )
    # memoized: a changed frame in the same infos dict is not re-encoded (callers give fresh infos per plan)
    infos["pixels"] = torch.zeros_like(infos["pixels"])
    assert torch.equal(model.get_cost(infos, cand.detach()), cost.detach())
    # the actions are normalised with the stats: shifting the stats and the actions together changes nothing
    other = tiny_model(pldm, predictor=predictor)
    other.set_stats({"action": {"mean": torch.tensor([1.5, 0.5]), "std": torch.tensor([2.0, 0.5])}})
    shifted = (cand.detach().reshape(2, 3, 4, 2, 2) + torch.tensor([1.0, 1.0])).reshape(2, 3, 4, 4)
    assert torch.allclose(other.get_cost(plan_infos(), shifted), cost.detach(), atol=1e-5)


def test_get_cost_sum_over_steps_and_bad_shapes(pldm):
    summed = tiny_model(pldm, cost_sum_steps=True)
    last = tiny_model(pldm)
    cand = torch.randn(2, 3, 3, 4)
    assert (summed.get_cost(plan_infos(), cand) > last.get_cost(plan_infos(), cand)).all()
    with pytest.raises(ValueError, match=r"action_block\*action_dim = 2\*2, got 6"):
        last.get_cost(plan_infos(), torch.randn(2, 3, 3, 6))
    with pytest.raises(ValueError, match="infos hold 2 envs but candidates have B = 3"):
        last.get_cost(plan_infos(), torch.randn(3, 3, 3, 4))
    with pytest.raises(ValueError, match=r"candidates must be \(B, S, H"):
        last.get_cost(plan_infos(), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="predictor 'rnn' is unknown"):
        pldm.PLDM(action_dim=2, predictor="rnn")


def test_checkpoint_round_trip_gives_identical_costs(pldm, tmp_path):
    model = tiny_model(pldm, predictor="mlp")
    stats = {"action": {"mean": np.array([0.1, 0.2], np.float32), "std": np.array([0.9, 1.1], np.float32)}}
    model.set_stats(stats)
    config = {**TINY, "predictor": "mlp"}
    save_checkpoint(tmp_path / "m.pt", model, config=config, stats=stats, env_id="swm/TwoRoom-v1", step=3)
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt", expected_class="PLDM")
    assert type(loaded).__name__ == "PLDM" and ckpt["extra"]["env_id"] == "swm/TwoRoom-v1"
    assert (loaded.action_dim, loaded.action_block) == (2, 2)
    assert torch.equal(loaded.action_std, torch.tensor([0.9, 1.1]))
    cand = torch.randn(2, 5, 3, 4)
    assert torch.equal(loaded.get_cost(plan_infos(), cand), model.get_cost(plan_infos(), cand))


def test_loading_a_lewm_checkpoint_as_pldm_fails_clearly(tmp_path, load_script):
    lewm = load_script("baselines/lewm_train.py")
    config = dict(action_dim=2, action_block=2, history=2, image_size=32, encoder="conv",
                  conv_channels=[4, 8], latent_dim=8, proj_hidden=16, action_hidden=8, pred_depth=1,
                  pred_heads=2, pred_dim_head=4, pred_mlp_dim=16, dropout=0.0)  # fmt: skip
    save_checkpoint(tmp_path / "lewm.pt", lewm.LeWM(**config), config=config)
    with pytest.raises(
        ValueError, match=r"holds a LeWM \(from lewm_train.py\).*pass a PLDM checkpoint"
    ):
        load_checkpoint(tmp_path / "lewm.pt", expected_class="PLDM")


# ------------------------------------------------------------------------------------- training script


def write_dataset(path, episodes=6, steps=30, columns=("pixels", "action"), seed=0, env_id="swm/Tiny-v0"):
    rng = np.random.default_rng(seed)
    with LanceWriter(path, env_id=env_id, image_size=32, control_hz=10) as writer:
        for _ in range(episodes):
            ep = {
                "pixels": rng.integers(0, 256, (steps, 32, 32, 3), dtype=np.uint8),
                "action": rng.normal(1.0, 2.0, (steps, 2)).astype(np.float32),
            }
            ep["action"][-1] = np.nan
            writer.add_episode({k: v for k, v in ep.items() if k in columns})
    return path


def test_stats_and_dataset_checks(pldm, tmp_path):
    ds = open_dataset(write_dataset(tmp_path / "d.lance"))
    stats = pldm.compute_stats(ds, [0, 2])
    rows = np.concatenate([ds.episode_rows(0), ds.episode_rows(2)])
    act = ds.read_rows(rows, ["action"])["action"]
    act = act[np.isfinite(act).all(1)]
    assert len(act) == 58
    np.testing.assert_allclose(stats["action"]["mean"], act.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], act.std(0), rtol=1e-5)
    pldm.check_columns(ds)
    no_action = open_dataset(write_dataset(tmp_path / "n.lance", episodes=2, columns=("pixels",)))
    with pytest.raises(ValueError, match="has no 'action' column, which PLDM training needs"):
        pldm.check_columns(no_action)
    with pytest.raises(ValueError, match="action_dim 2 .* but the dataset gives action_dim 3"):
        pldm.check_resume_compatible({"action_dim": 2, "action_block": 2}, 3, 2, "ck.pt")


def test_check_finite_names_the_step(pldm):
    assert pldm.check_finite(0.5, 3) == 0.5
    with pytest.raises(
        FloatingPointError, match="loss became nan at step 17; the last good checkpoint is ck.pt"
    ):
        pldm.check_finite(float("nan"), 17, "ck.pt")


TINY_FLAGS = [
    "--image-size", "32", "--impala-channels", "4", "8", "--res-blocks", "1", "--latent-dim", "16",
    "--idm-hidden", "16", "--num-steps", "3", "--frameskip", "2", "--batch-size", "8", "--num-workers", "0",
    "--val-fraction", "0.34", "--log-every", "2", "--val-every", "3", "--val-batches", "2",
    "--checkpoint-every", "3", "--device", "cpu",
]  # fmt: skip


def run_script(*flags, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_script_trains_checkpoints_and_resumes(tmp_path):
    data = write_dataset(tmp_path / "d.lance")
    first = tmp_path / "a" / "model.pt"
    out = run_script("--dataset", str(data), "--total-steps", "6", "--output", str(first), *TINY_FLAGS).stdout
    losses = [float(x) for x in re.findall(r"losses/total=(\S+)", out)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert re.search(r"step 6: val/total=\S+ val/sim=\S+", out) and "losses/idm=" in out
    ckpt = read_checkpoint(tmp_path / "a" / "model.pt")
    assert (
        ckpt["class_name"] == "PLDM"
        and ckpt["extra"]["step"] == 6
        and (tmp_path / "a" / ckpt["extra"]["train_state"]).is_file()
    )
    assert ckpt["extra"]["env_id"] == "swm/Tiny-v0"
    assert ckpt["config"]["action_dim"] == 2 and ckpt["config"]["action_block"] == 2
    model, _ = load_checkpoint(tmp_path / "a" / "model.pt", expected_class="PLDM")
    assert model.get_cost(plan_infos(), torch.zeros(2, 3, 2, 4)).shape == (2, 3)

    out = run_script("--dataset", str(data), "--total-steps", "8", "--resume", str(first),
                     "--output", str(tmp_path / "b" / "model.pt"), *TINY_FLAGS).stdout  # fmt: skip
    assert re.findall(r"step (\d+): losses", out) == ["8"]
    resumed = read_checkpoint(tmp_path / "b" / "model.pt")
    assert resumed["extra"]["step"] == 8
    assert torch.equal(resumed["stats"]["action"]["mean"], ckpt["stats"]["action"]["mean"])


def test_script_rejects_a_dataset_without_actions(tmp_path):
    data = write_dataset(tmp_path / "n.lance", episodes=2, columns=("pixels",))
    proc = run_script("--dataset", str(data), "--total-steps", "2", *TINY_FLAGS, check=False)
    assert proc.returncode != 0
    assert "has no 'action' column, which PLDM training needs" in proc.stderr


def test_pldm_meets_the_world_model_contract(pldm):
    """What MPCPolicy and the solvers rely on (swm_core.world_model), checked on a built model."""
    from swm_core.world_model import LatentWorldModel, WorldModel

    model = tiny_model(pldm)
    assert isinstance(model, WorldModel) and type(model).default_solver == "mppi"
    assert isinstance(model, LatentWorldModel) is True
