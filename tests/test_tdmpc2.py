"""TD-MPC2 baseline: two-hot/symlog/SimNorm math, Q targets, rho weighting, hindsight goals and rewards, the
planning cost, the MPPI solver, checkpoints and the training/evaluation script end to end."""

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
SCRIPT = ROOT / "baselines" / "tdmpc2_train.py"


@pytest.fixture(scope="module")
def td(load_script):
    """The training script's module, loaded through the shared conftest fixture."""
    return load_script("baselines/tdmpc2_train.py")

# 40 px frames: the encoder's convs give 8 channels x 1 x 1 = 8 latent features (one SimNorm group)
TINY = dict(action_dim=2, action_block=2, image_size=40, num_channels=8, mlp_dim=16, num_q=5, shift_pad=2)


def tiny_model(td, seed=0, **overrides):
    torch.manual_seed(seed)
    model = td.TDMPC2(**{**TINY, **overrides})
    with torch.no_grad():  # stand-in for training: the reward and Q output layers start at exactly zero
        for head in [model._reward, *model._qs]:
            head[-1].weight.normal_(0, 0.5)
        model._target_qs.load_state_dict(model._qs.state_dict())
    return model.eval()


def args_like(td, **overrides):
    return td.Args(**overrides)


def set_constant_head(td, head, value, num_bins=101):
    """Make an MLP head output (logits of) the two-hot of `value` whatever its input."""
    with torch.no_grad():
        head[-1].weight.zero_()
        head[-1].bias.copy_(torch.log(td.two_hot(torch.tensor(float(value)), num_bins) + 1e-12))


# ------------------------------------------------------------------------------------- small pieces


def test_symlog_symexp_are_inverse(td):
    x = torch.tensor([-1e4, -20.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 7.0, 1e4], dtype=torch.float64)
    assert torch.allclose(td.symexp(td.symlog(x)), x, rtol=1e-12, atol=0)
    assert td.symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)
    assert td.symlog(torch.tensor(-(math.e**2 - 1))).item() == pytest.approx(-2.0)
    assert td.symlog(torch.tensor(0.0)).item() == 0.0


def test_two_hot_exact_bin_weights(td):
    # symlog(e^0.55 - 1) = 0.55 lies between bins 52 (0.4) and 53 (0.6) of linspace(-10, 10, 101): weights 1/4, 3/4
    w = td.two_hot(torch.tensor(math.expm1(0.55), dtype=torch.float64))
    assert w.shape == (101,)
    assert w[52].item() == pytest.approx(0.25, abs=1e-9) and w[53].item() == pytest.approx(0.75, abs=1e-9)
    assert torch.count_nonzero(w) == 2
    # symlog(-(e^1.3 - 1)) = -1.3: halfway between bins 43 (-1.4) and 44 (-1.2)
    w = td.two_hot(torch.tensor(-math.expm1(1.3), dtype=torch.float64))
    assert w[43].item() == pytest.approx(0.5, abs=1e-9) and w[44].item() == pytest.approx(0.5, abs=1e-9)
    # exactly on a bin, and clamped beyond the range
    assert td.two_hot(torch.tensor(0.0))[50].item() == 1.0
    assert td.two_hot(torch.tensor(1e6))[100].item() == pytest.approx(1.0)
    assert td.two_hot(torch.tensor(-1e6))[0].item() == pytest.approx(1.0)


def test_two_hot_round_trip_through_logits(td):
    x = torch.tensor([[-40.0, -3.7, -1.0, 0.0], [0.25, 2.0, 19.0, 500.0]], dtype=torch.float64)
    w = td.two_hot(x)
    assert w.shape == (2, 4, 101)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, dtype=torch.float64))
    bins = torch.linspace(-10, 10, 101, dtype=torch.float64)
    assert torch.allclose((w * bins).sum(-1), td.symlog(x), atol=1e-12)
    decoded = td.two_hot_inv(torch.log(w + 1e-30))  # softmax(log w) = w
    assert torch.allclose(decoded, x, rtol=1e-9)
    # soft_ce is minimised by the two-hot logits themselves: its value there is the two-hot entropy
    ce = td.soft_ce(torch.log(w + 1e-30), x)
    entropy = -(w * torch.log(w + 1e-30)).sum(-1)
    assert torch.allclose(ce, entropy, atol=1e-9)
    assert (td.soft_ce(torch.zeros(2, 4, 101, dtype=torch.float64), x) > ce).all()


def test_simnorm_sums_to_one_per_group(td):
    x = torch.randn(3, 5, 32) * 4
    y = td.simnorm(x, 8)
    assert y.shape == x.shape and (y > 0).all()
    assert torch.allclose(y.reshape(3, 5, 4, 8).sum(-1), torch.ones(3, 5, 4), atol=1e-6)
    # each group is the softmax of its own 8 inputs only
    assert torch.allclose(y[0, 0, 8:16], torch.softmax(x[0, 0, 8:16], 0))
    with pytest.raises(ValueError, match="divisible by the group size 8, got 30"):
        td.simnorm(torch.randn(2, 30))
    model = tiny_model(td)
    z = model.encode(torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8))
    assert z.shape == (4, 8) and torch.allclose(z.sum(-1), torch.ones(4), atol=1e-6)


def test_encoder_latent_size_and_shift_augmentation(td):
    # 64 px: (64-7)//2+1 = 29 -> 13 -> 6 -> 4, so 32 channels give 512 features (TD-MPC2's latent)
    assert td.PixelEncoder(64, 32).latent_dim == 512
    with pytest.raises(ValueError, match="image_size 32 is too small"):
        td.PixelEncoder(32, 32)
    img = torch.arange(2 * 6 * 6 * 1, dtype=torch.uint8).reshape(2, 6, 6, 1)
    shifted = td.random_shift(img, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == img.shape and shifted.dtype == torch.uint8
    # every output row/column is an input row/column shifted by at most 2 with edge replication
    for n in range(2):
        rows = [int(shifted[n, i, 0, 0]) // 6 - 6 * n for i in range(6)]
        dy = rows[2] - 2
        assert abs(dy) <= 2 and rows == [min(max(i + dy, 0), 5) for i in range(6)]


def test_rho_weights_and_loss_weighting(td):
    assert td.rho_weights(4, 0.5).tolist() == [1.0, 0.5, 0.25, 0.125]
    # a reward head that always predicts -1: changing the target of step t changes the reward loss by rho^t * c / H
    model = tiny_model(td)
    set_constant_head(td, model._reward, -1.0)
    args = args_like(td, rho=0.5)
    B, H = 4, 3
    g = torch.Generator().manual_seed(0)
    batch = {
        "pixels": torch.randint(0, 256, (B, H + 1, 40, 40, 3), generator=g, dtype=torch.uint8),
        "goal": torch.randint(0, 256, (B, 40, 40, 3), generator=g, dtype=torch.uint8),
        "action": torch.rand(B, H + 1, 4, generator=g) * 2 - 1,
        "reward": -torch.ones(B, H), "done": torch.zeros(B, H),
    }  # fmt: skip
    base = td.model_losses(model, batch, args)[1]["reward"].item()
    c = (td.soft_ce(model.reward_logits(torch.zeros(8), torch.zeros(4), torch.zeros(8)), torch.tensor(0.0))
         - td.soft_ce(model.reward_logits(torch.zeros(8), torch.zeros(4), torch.zeros(8)), torch.tensor(-1.0))).item()  # fmt: skip
    assert c > 0.1
    for t in range(H):
        changed = {**batch, "reward": batch["reward"].clone()}
        changed["reward"][:, t] = 0.0
        delta = td.model_losses(model, changed, args)[1]["reward"].item() - base
        assert delta == pytest.approx(0.5**t * c / H, rel=1e-4)


# ------------------------------------------------------------------------------------------- Q values


def test_q_target_is_min_of_two_sampled_heads(td):
    model = tiny_model(td)
    values = [-3.0, -1.0, -6.0, -2.0, -4.5]
    for head, v in zip(model._target_qs, values):
        set_constant_head(td, head, v)
    z, a = torch.rand(7, 8), torch.rand(7, 4)
    seen = set()
    for seed in range(12):
        idx = td.sample_heads(5, torch.Generator().manual_seed(seed))
        assert len(set(idx)) == 2
        got = model.q(z, a, z, "min", target=True, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(got, torch.full((7,), min(values[i] for i in idx)), atol=1e-4)
        avg = model.q(z, a, z, "avg", target=True, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(avg, torch.full((7,), sum(values[i] for i in idx) / 2), atol=1e-4)
        seen.add(round(got[0].item(), 3))
    assert len(seen) > 1 and max(seen) > min(values)  # not the min over all 5 heads
    assert torch.allclose(model.q(z, a, z, "mean", target=True), torch.full((7,), sum(values) / 5), atol=1e-4)
    assert model.q(z, a, z, "all").shape == (5, 7, 101)
    # the online heads are different; tau = 1 copies them into the targets
    assert not torch.allclose(model.q(z, a, z, "mean"), model.q(z, a, z, "mean", target=True))
    model.soft_update_targets(1.0)
    assert torch.allclose(model.q(z, a, z, "mean"), model.q(z, a, z, "mean", target=True))
    with pytest.raises(ValueError, match="return_type must be"):
        model.q(z, a, z, "max")


def test_td_target_uses_min_of_two_target_heads_and_the_done_mask(td):
    model = tiny_model(td)
    values = [-3.0, -1.0, -6.0, -2.0, -4.5]
    for head, v in zip(model._target_qs, values):
        set_constant_head(td, head, v)
    B, H = 6, 2
    g = torch.Generator().manual_seed(1)
    reward = -torch.ones(B, H)
    done = torch.zeros(B, H)
    done[:3, 1], reward[:3, 1] = 1.0, 0.0
    batch = {
        "pixels": torch.randint(0, 256, (B, H + 1, 40, 40, 3), generator=g, dtype=torch.uint8),
        "goal": torch.randint(0, 256, (B, 40, 40, 3), generator=g, dtype=torch.uint8),
        "action": torch.rand(B, H + 1, 4, generator=g) * 2 - 1, "reward": reward, "done": done,
    }  # fmt: skip
    for seed in (0, 3):
        idx = td.sample_heads(5, torch.Generator().manual_seed(seed))
        q_next = min(values[i] for i in idx)
        parts = td.model_losses(model, batch, args_like(td), generator=torch.Generator().manual_seed(seed))[1]
        expected = (reward + model.discount * (1 - done) * q_next).mean()
        assert parts["td_target"].item() == pytest.approx(expected.item(), abs=1e-3)


# ----------------------------------------------------------------------------------- goals and rewards


def test_success_rules(td):
    two_room = td.SuccessRule("swm/TwoRoom-v1")
    s = np.array([[100.0, 50.0], [100.0, 50.0]])
    g = np.array([[115.9, 50.0], [100.0, 66.0]])
    assert two_room(s, g).tolist() == [True, False]  # distance < 16
    pusht = td.SuccessRule("swm/PushT-v1")
    goal = np.array([200.0, 200.0, 300.0, 300.0, 0.1, 0.0, 0.0])
    near = goal + np.array([10.0, 0, 0, 10.0, 0.3, 5.0, 5.0])  # L2 14.1 < 20, angle 0.3 < pi/9
    far = goal + np.array([15.0, 0, 0, 15.0, 0.0, 0, 0])  # L2 21.2
    turned = goal + np.array([0, 0, 0, 0, 0.4, 0, 0])  # angle 0.4 > pi/9
    wrapped = goal + np.array([0, 0, 0, 0, 2 * math.pi - 0.2, 0, 0])  # angle error 0.2 modulo 2 pi
    assert pusht(np.stack([near, far, turned, wrapped]), np.stack([goal] * 4)).tolist() == [True, False, False, True]
    custom = td.SuccessRule("swm/Point-v0", success_distance=1.0)
    assert custom(np.array([[0.0, 0.9], [0.0, 1.0]]), np.zeros((2, 2))).tolist() == [True, False]
    with pytest.raises(ValueError, match="no success rule for env 'swm/Point-v0': pass --success-distance"):
        td.SuccessRule("swm/Point-v0")
    states = np.array([[[0.0, 0], [3.0, 0], [5.0, 0]]])
    reward, done = td.goal_rewards(states, np.array([[5.5, 0.0]]), custom)
    assert reward.tolist() == [[-1.0, 0.0]] and done.tolist() == [[0.0, 1.0]]


def point_episode(ep, T, size=40, action_dim=2):
    """A 2-D point moving one unit per step along x; episode ep lives at y = 100 * ep. Frames encode the step."""
    steps = np.arange(T)
    pixels = np.zeros((T, size, size, 3), np.uint8)
    pixels[:] = ((steps + 7 * ep) % 256).astype(np.uint8)[:, None, None, None]
    action = np.tile(np.array([1.0, 0.0] + [0.0] * (action_dim - 2), np.float32), (T, 1))
    action[-1] = np.nan
    state = np.stack([steps.astype(np.float32), np.full(T, 100.0 * ep, np.float32)], 1)
    return {"pixels": pixels, "action": action, "state": state}


def write_point_dataset(path, episodes=6, T=30, with_state=True, env_id="swm/Point-v0"):
    with LanceWriter(path, env_id=env_id, image_size=40, encoding="raw", control_hz=10) as writer:
        for ep in range(episodes):
            data = point_episode(ep, T)
            if not with_state:
                del data["state"]
            writer.add_episode(data)
    return path


def test_goal_windows_relabel_goals_and_rewards(td, tmp_path):
    path = write_point_dataset(tmp_path / "p.lance")
    rule = td.SuccessRule("swm/Point-v0", success_distance=2.5)
    ds = td.GoalWindowDataset(path, num_steps=3, frameskip=2, success=rule, split="all", seed=0,
                              goal_probs=(0.2, 0.5, 0.3), goal_discount=0.8)  # fmt: skip
    assert len(ds) == 6 * (30 - 3 * 2)  # a window needs all its actions: t + 3 * 2 <= 29
    idx = list(range(0, len(ds), 3))
    items = ds.__getitems__(idx)
    kinds = np.array([int(s["goal_kind"]) for s in items])
    assert set(kinds.tolist()) == {0, 1, 2}
    for s, k in zip(items, kinds):
        start, ep = s["state"][0].numpy(), s["state"][0, 1].item() / 100
        goal_state = s["goal_state"].numpy()
        goal_step, goal_ep = goal_state[0], goal_state[1] / 100
        assert s["goal"].shape == (40, 40, 3) and s["goal"][0, 0, 0].item() == (goal_step + 7 * goal_ep) % 256
        if k == 0:
            assert np.array_equal(goal_state, start)
        if k == 1:
            assert goal_ep == ep and start[0] < goal_step <= 29
        frames = s["state"][1:, 0].numpy()
        close = (np.abs(frames - goal_step) < 2.5) & (goal_ep == ep)
        assert s["done"].tolist() == close.astype(np.float32).tolist()
        assert s["reward"].tolist() == (close.astype(np.float32) - 1).tolist()
    # seeded by (seed, indices): the same batch gets the same goals, another seed other goals
    again = ds.__getitems__(idx)
    assert all(torch.equal(a["goal_state"], b["goal_state"]) for a, b in zip(items, again))
    other = td.GoalWindowDataset(path, num_steps=3, frameskip=2, success=rule, split="all", seed=1,
                                 goal_discount=0.8).__getitems__(idx)  # fmt: skip
    assert not all(torch.equal(a["goal_state"], b["goal_state"]) for a, b in zip(items, other))
    # future-only goals at discount 0 are the very next row
    nxt = td.GoalWindowDataset(path, num_steps=3, frameskip=2, success=rule, split="all", goal_probs=(0, 1, 0),
                               goal_discount=0.0).__getitems__([0, 5])  # fmt: skip
    assert [s["goal_state"][0].item() - s["state"][0, 0].item() for s in nxt] == [1.0, 1.0]
    with pytest.raises(ValueError, match="must be 3 non-negative numbers summing to 1"):
        td.GoalWindowDataset(path, num_steps=3, frameskip=2, success=rule, goal_probs=(0.5, 0.5, 0.5))


def test_dataset_without_state_is_rejected(td, tmp_path):
    ds = open_dataset(write_point_dataset(tmp_path / "n.lance", episodes=2, with_state=False))
    with pytest.raises(ValueError, match="has no 'state' column, which TD-MPC2 training needs"):
        td.check_columns(ds)
    with pytest.raises(ValueError, match="'state'"):
        td.GoalWindowDataset(ds.path, num_steps=2, frameskip=2, success=td.SuccessRule(None, 1.0))
    with pytest.raises(ValueError, match="--eval-only needs --resume CKPT and --eval-dataset PATH"):
        td.check_eval_args(td.Args(eval_only=True, eval_dataset="x.lance"))


# ------------------------------------------------------------------------------------------- planning


def plan_infos(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pixels": torch.randint(0, 256, (B, 40, 40, 3), generator=g, dtype=torch.uint8),
            "goal": torch.randint(0, 256, (B, 40, 40, 3), generator=g, dtype=torch.uint8)}  # fmt: skip


def test_get_cost_shape_memo_differentiable_and_matches_one_step(td):
    model = tiny_model(td)
    infos = plan_infos()
    cand = (torch.rand(2, 6, 3, 4) * 2 - 1).requires_grad_(True)
    cost = model.get_cost(infos, cand)
    assert cost.shape == (2, 6) and "_z0" in infos and "_zg" in infos and model.last_plan_infos is infos
    cost.sum().backward()
    assert torch.isfinite(cand.grad).all() and cand.grad.abs().sum() > 0
    # H = 1 by hand: -(R(z0, a) + gamma Q_mean(d(z0, a), pi_mean(d(z0, a))))
    z0, zg = infos["_z0"], infos["_zg"]
    a = cand[:, :, 0].detach()
    z, g = z0[:, None].expand(2, 6, -1), zg[:, None].expand(2, 6, -1)
    z1 = model.next(z, a, g)
    expected = -(model.reward(z, a, g) + model.discount * model.q(z1, model.pi_mean(z1, g), g, "mean"))
    assert torch.allclose(model.get_cost(infos, cand[:, :, :1].detach()), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"action_block\*A = 4\), got shape \(2, 6, 3, 6\)"):
        model.get_cost(infos, torch.zeros(2, 6, 3, 6))
    with pytest.raises(ValueError, match="infos hold 2 envs but candidates have B = 3"):
        model.get_cost(infos, torch.zeros(3, 6, 3, 4))


def test_solver_returns_bounded_seeded_plans(td):
    model = tiny_model(td)
    low, high = torch.tensor([-0.5, -1.0, -0.2, 0.0]), torch.tensor([0.3, 1.0, 0.2, 0.4])
    kw = dict(iterations=3, num_samples=64, num_elites=8, num_pi_trajs=6)

    def plan(seed, infos_seed=0):
        infos = plan_infos(seed=infos_seed)
        return td.TDMPC2Solver(model, seed=seed, **kw)(lambda c: model.get_cost(infos, c), torch.zeros(2, 3, 4),
                                                        low, high)  # fmt: skip

    p = plan(0)
    assert p.shape == (2, 3, 4) and (p >= low).all() and (p <= high).all()
    assert torch.equal(p, plan(0)) and not torch.equal(p, plan(1))
    # actor only: the policy prior's deterministic rollout, clamped to the bounds
    infos = plan_infos()
    actor = td.TDMPC2Solver(model, iterations=0)(lambda c: model.get_cost(infos, c), torch.zeros(2, 3, 4), low, high)
    rollout = model.policy_candidates(infos, 1, 3, deterministic=True)[:, 0]
    assert torch.allclose(actor, torch.maximum(torch.minimum(rollout, high), low))
    # policy samples need the model's cost; a foreign cost function is refused
    with pytest.raises(ValueError, match="needs a cost_fn built from model.get_cost"):
        td.TDMPC2Solver(model, **kw)(lambda c: c.square().sum((-1, -2)), torch.zeros(2, 3, 4), low, high)


def test_solver_without_policy_samples_finds_a_known_optimum(td):
    target = torch.tensor([0.5, -0.25, 0.8, 0.0])
    solver = td.TDMPC2Solver(None, iterations=6, num_samples=512, num_elites=64, num_pi_trajs=0, seed=3)
    cost = lambda c: (c - target).square().sum((-1, -2)) * 10  # noqa: E731
    plan = solver(cost, torch.zeros(3, 2, 4), -torch.ones(4), torch.ones(4))
    assert (plan - target).abs().max() < 0.15
    assert cost(plan[:, None]).max() < 0.05 * cost(torch.zeros(3, 1, 2, 4)).min()


def test_solver_errors_name_the_solver(td):
    solver = td.TDMPC2Solver(None, iterations=1, num_samples=8, num_elites=2, num_pi_trajs=0)
    low, high = -torch.ones(4), torch.ones(4)
    with pytest.raises(ValueError, match=r"TDMPC2Solver: cost_fn must return \(B, S\) = \(3, \d+\), got \(3,\)"):
        solver(lambda c: c.sum((1, 2, 3)), torch.zeros(3, 2, 4), low, high)
    with pytest.raises(ValueError, match=r"TDMPC2Solver: cost_fn returned NaN for \d+ candidates"):
        solver(lambda c: torch.full(c.shape[:2], float("nan")), torch.zeros(3, 2, 4), low, high)
    with pytest.raises(ValueError, match=r"TDMPC2Solver: init must be a \(B, H, D\) tensor"):
        solver(lambda c: c.sum((-1, -2)), torch.zeros(2, 4), low, high)


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip_gives_identical_costs(td, tmp_path):
    model = tiny_model(td)
    model.q_scale.fill_(3.5)
    stats = {"action": {"mean": np.array([0.1, 0.2], np.float32), "std": np.array([0.9, 1.1], np.float32)}}
    model.set_stats(stats)
    save_checkpoint(tmp_path / "m.pt", model, config=TINY, stats=stats, step=3, env_id="swm/TwoRoom-v1")
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt", expected_class="TDMPC2")
    assert (loaded.action_dim, loaded.action_block, loaded.default_solver) == (2, 2, "tdmpc2")
    assert ckpt["extra"] == {"step": 3, "env_id": "swm/TwoRoom-v1"} and loaded.q_scale.item() == 3.5
    cand = torch.rand(2, 5, 3, 4) * 2 - 1
    assert torch.equal(loaded.get_cost(plan_infos(), cand), model.get_cost(plan_infos(), cand))
    z = torch.rand(3, 8)
    assert torch.equal(loaded.q(z, torch.zeros(3, 4), z, "mean", target=True),
                       model.q(z, torch.zeros(3, 4), z, "mean", target=True))  # fmt: skip
    with pytest.raises(ValueError, match="action stats have dim 3"):
        model.set_stats({"action": {"mean": np.zeros(3), "std": np.ones(3)}})


# --------------------------------------------------------------------------------------------- script

TINY_FLAGS = [
    "--image-size", "40", "--num-channels", "8", "--mlp-dim", "16", "--horizon", "2", "--frameskip", "2",
    "--batch-size", "8", "--num-workers", "0", "--val-fraction", "0.34", "--log-every", "2", "--val-every", "3",
    "--val-batches", "2", "--checkpoint-every", "3", "--device", "cpu", "--shift-pad", "2",
]  # fmt: skip


def run_script(*flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_script_trains_checkpoints_and_resumes(tmp_path):
    data = write_point_dataset(tmp_path / "p.lance")
    out = run_script("--dataset", str(data), "--total-steps", "6", "--success-distance", "2.5",
                     "--output", str(tmp_path / "a" / "model.pt"), *TINY_FLAGS).stdout  # fmt: skip
    losses = [float(x) for x in re.findall(r"losses/total=(\S+)", out)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert re.search(r"step 6: val/total=\S+ .*val/pi_nn_dist=\S+ .*val/data_nn_dist=\S+", out)
    ckpt = read_checkpoint(tmp_path / "a" / "model.pt")
    assert ckpt["extra"]["step"] == 6 and ckpt["extra"]["env_id"] == "swm/Point-v0"
    assert ckpt["config"]["action_dim"] == 2 and ckpt["config"]["action_block"] == 2
    assert set(ckpt["stats"]) == {"action", "state"} and (tmp_path / "a" / ckpt["extra"]["train_state"]).is_file()
    model, _ = load_checkpoint(tmp_path / "a" / "model.pt")
    assert model.get_cost(plan_infos(), torch.zeros(2, 3, 2, 4)).shape == (2, 3)

    out = run_script("--dataset", str(data), "--total-steps", "8", "--success-distance", "2.5",
                     "--resume", str(tmp_path / "a" / "model.pt"), "--output", str(tmp_path / "b" / "model.pt"),
                     *TINY_FLAGS).stdout  # fmt: skip
    assert re.findall(r"step (\d+): losses", out) == ["8"]
    resumed = read_checkpoint(tmp_path / "b" / "model.pt")
    assert resumed["extra"]["step"] == 8
    assert torch.equal(resumed["stats"]["state"]["mean"], ckpt["stats"]["state"]["mean"])


def test_script_evaluates_a_checkpoint_on_two_room(td, tmp_path):
    from swm_core import RandomPolicy, World

    with World("swm/TwoRoom-v1", num_envs=2, image_size=40, max_episode_steps=20, seed=0) as world:
        world.collect(tmp_path / "tr.lance", episodes=4, seed=0, policy=RandomPolicy(seed=0), progress=False)
    save_checkpoint(tmp_path / "m.pt", tiny_model(td), config=TINY, env_id="swm/TwoRoom-v1", step=0)
    out = run_script("--eval-only", "--resume", str(tmp_path / "m.pt"), "--eval-dataset", str(tmp_path / "tr.lance"),
                     "--eval-episodes", "2", "--goal-offset", "4", "--eval-budget", "6", "--eval-num-envs", "2",
                     "--plan-horizon", "2", "--num-samples", "16", "--num-elites", "4", "--num-pi-trajs", "2",
                     "--mppi-iterations", "2", "--device", "cpu").stdout  # fmt: skip
    assert "(step 0, env swm/TwoRoom-v1)" in out
    rows = {m.group(1).strip(): m.group(2) for m in re.finditer(r"^(.{28})\s*(\d+\.\d)%", out, re.M)}
    assert set(rows) == {"tdmpc2 (MPPI + pi)", "pi prior only", "no-op", "random"}, out
    assert all(float(v) in (0.0, 50.0, 100.0) for v in rows.values())  # 2 episodes each
    assert re.search(r"^dataset blocks \(held-out\)\s+-\s+-\s+-\s+\d+\.\d{3}", out, re.M), out


def test_tdmpc2_meets_the_world_model_contract(td):
    """What MPCPolicy and the solvers rely on (swm_core.world_model), checked on a built model."""
    from swm_core.world_model import LatentWorldModel, WorldModel

    model = tiny_model(td)
    assert isinstance(model, WorldModel) and type(model).default_solver == "tdmpc2"
    assert isinstance(model, LatentWorldModel) is False
