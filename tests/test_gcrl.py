"""Goal-conditioned RL baselines (GCBC, GCIQL, GCIVL) and their goal sampler (swm_core.goals): goal proportions,
goals as a function of the global batch (two processes' slices = one process's batch), expectile loss and AWR weights by hand, a value function that orders states by their distance
to the goal, the frozen timm encoder's weights flag, and each script end to end (train, checkpoint, resume,
evaluate through FeedForwardPolicy, NaN gradients)."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swm_core.checkpoint import load_checkpoint, read_checkpoint
from swm_core.distributed import ShardedBatches
from swm_core.goals import GoalDataset, GoalSampler
from swm_core.lance_writer import LanceWriter

ROOT = Path(__file__).resolve().parent.parent
ALGOS = ("gcbc", "gciql", "gcivl")


@pytest.fixture(scope="module")
def scripts(load_script):
    return {a: load_script(f"baselines/{a}_train.py") for a in ALGOS}


# ------------------------------------------------------------------------------------------- goal sampler


def test_goal_sampler_proportions_and_where_goals_fall():
    offsets, lengths = np.array([0, 50, 120]), np.array([50, 70, 30])
    sampler = GoalSampler(offsets, lengths, p_current=0.2, p_future=0.5, p_random=0.3, discount=0.9)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 150, size=40_000)
    goals, kinds = sampler.sample(rows, rng)
    np.testing.assert_allclose(np.bincount(kinds, minlength=3) / len(kinds), [0.2, 0.5, 0.3], atol=0.01)
    ep, goal_ep = sampler.episode_of(rows), sampler.episode_of(goals)
    last = offsets[ep] + lengths[ep] - 1
    assert (goals[kinds == 0] == rows[kinds == 0]).all()
    fut = kinds == 1
    assert (goal_ep[fut] == ep[fut]).all()
    assert ((goals[fut] > rows[fut]) | ((goals[fut] == last[fut]) & (rows[fut] == last[fut]))).all()
    assert (goal_ep[kinds == 2] != ep[kinds == 2]).all()  # another episode, always
    # far from the episode's end the offset is Geometric(1 - 0.9): mean 10
    far = fut & (last - rows >= 50)
    assert far.sum() > 1000 and abs((goals[far] - rows[far]).mean() - 10.0) < 0.6
    # every other episode is drawn in proportion to its length
    others = np.bincount(goal_ep[(kinds == 2) & (ep == 0)], minlength=3)
    np.testing.assert_allclose(others[1:] / others.sum(), [70 / 100, 30 / 100], atol=0.03)


def test_goal_sampler_uniform_future_single_episode_and_errors():
    sampler = GoalSampler([10], [21], p_current=0.0, p_future=0.5, p_random=0.5, geometric=False)
    rng = np.random.default_rng(1)
    goals, kinds = sampler.sample(np.full(20_000, 10), rng)
    fut = goals[kinds == 1]
    assert fut.min() == 11 and fut.max() == 30 and abs(fut.mean() - 20.5) < 0.2  # uniform over rows 11..30
    assert ((goals[kinds == 2] >= 10) & (goals[kinds == 2] <= 30)).all()  # one episode: its own rows
    goals, kinds = sampler.sample(np.full(100, 30), rng)  # the last row: its future is itself
    assert (goals[kinds == 1] == 30).all()
    with pytest.raises(ValueError, match=r"sum to 1, got \(0.2, 0.5, 0.5\)"):
        GoalSampler([0], [5], 0.2, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"must be non-negative"):
        GoalSampler([0], [5], -0.1, 0.6, 0.5)
    with pytest.raises(ValueError, match=r"discount must be in \[0, 1\), got 1.0"):
        GoalSampler([0], [5], discount=1.0)
    with pytest.raises(ValueError, match="row 7 is in none of the sampler's 1 episodes"):
        GoalSampler([0], [5]).sample([7], rng)


def write_two_room(path, episodes=6, steps=20, image_size=32, seed=0):
    from swm_core import RandomPolicy, World

    with World("swm/TwoRoom-v1", num_envs=2, image_size=image_size, max_episode_steps=steps, seed=seed) as world:
        world.collect(path, episodes=episodes, seed=seed, policy=RandomPolicy(seed=seed), progress=False)
    return path


@pytest.fixture(scope="module")
def two_room(tmp_path_factory):
    return write_two_room(tmp_path_factory.mktemp("gcrl") / "tr.lance")


def test_goal_dataset_batches(two_room):
    from swm_core.data import open_dataset

    spec = dict(p_current=0.3, p_future=0.4, p_random=0.3)
    ds = GoalDataset(two_room, value_goals=spec, actor_goals=dict(p_current=0, p_future=1, p_random=0),
                     next_obs=True, split="all", seed=0)  # fmt: skip
    td = open_dataset(two_room)
    assert len(ds) == td.num_rows - td.num_episodes  # every transition with a real action
    b = ds.batch(np.arange(len(ds)))
    rows = b["row"].numpy()
    now, after = td.read_rows(rows, ["pixels", "episode_idx"]), td.read_rows(rows + 1, ["pixels", "episode_idx"])
    assert torch.equal(b["pixels"], torch.from_numpy(now["pixels"]))
    assert torch.equal(b["next_pixels"], torch.from_numpy(after["pixels"]))
    assert (now["episode_idx"] == after["episode_idx"]).all()  # the next frame is in the same episode
    assert np.isfinite(b["action"].numpy()).all()
    current = b["value_goal_kind"].numpy() == 0
    assert current.any() and (~current).any()
    np.testing.assert_array_equal(b["reward"].numpy(), np.where(current, 0.0, -1.0))
    np.testing.assert_array_equal(b["mask"].numpy(), np.where(current, 0.0, 1.0))
    assert torch.equal(b["value_goal"][current], b["pixels"][current])
    assert torch.equal(b["value_goal_proprio"][current], b["proprio"][current])
    assert (b["actor_goal_kind"] == 1).all()


def test_goals_are_a_function_of_the_global_batch(two_room):
    """Two processes reading their slices of each global batch (one in a DataLoader worker) get exactly the
    (transition, goal) pairs of one process reading the whole batches: goals depend on (seed, stream, batch) only."""
    spec = dict(value_goals=dict(p_current=0.2, p_future=0.5, p_random=0.3), next_obs=True, split="all", seed=0,
                actor_goals=dict(p_current=0.0, p_future=1.0, p_random=0.0, geometric=False))  # fmt: skip
    ds = GoalDataset(two_room, **spec)
    n = len(ds)
    one = [ds.batch(idx) for idx in ShardedBatches(n, 16, seed=3)]
    rank0 = [ds[item] for item in ShardedBatches(n, 8, seed=3, rank=0, world_size=2, with_global=True)]
    worker = torch.utils.data.DataLoader(ds, sampler=ShardedBatches(n, 8, seed=3, rank=1, world_size=2,
                                                                    with_global=True),
                                         batch_size=None, num_workers=1,
                                         multiprocessing_context=torch.multiprocessing.get_context("forkserver"))
    rank1 = list(worker)
    assert len(one) == len(rank0) == len(rank1) == n // 16 >= 3
    for whole, a, b in zip(one, rank0, rank1, strict=True):
        assert set(whole) == set(a) == set(b)
        for key in whole:
            assert torch.equal(whole[key], torch.cat([a[key], b[key]])), key
    kinds = torch.cat([b["value_goal_kind"] for b in one])
    assert set(kinds.tolist()) == {0, 1, 2}
    # the same batch gives the same goals again; another batch or stream gives others
    idx = list(range(16))
    first = ds.batch(idx)["value_goal"]
    assert torch.equal(ds.batch(idx)["value_goal"], first)
    assert not torch.equal(ds.batch(idx[::-1])["value_goal"].flip(0), first)
    assert not torch.equal(GoalDataset(two_room, stream=1, **spec).batch(idx)["value_goal"], first)
    with pytest.raises(ValueError, match=r"part \(4, 20\) is not a slice lo:hi with 0 <= lo <= hi <= 16"):
        ds.batch(idx, part=(4, 20))
    with pytest.raises(IndexError, match=f"window {n} is out of range for {n} windows"):
        ds.batch([0, n])


# ------------------------------------------------------------------------------------------ losses by hand


@pytest.mark.parametrize("algo", ["gciql", "gcivl"])
def test_expectile_loss_and_awr_weights_by_hand(scripts, algo):
    m = scripts[algo]
    adv = torch.tensor([1.0, -1.0, 0.0, -0.5])
    diff = torch.tensor([2.0, 3.0, -1.0, 0.5])
    # weights 0.9 where adv >= 0, else 0.1: 0.9*4, 0.1*9, 0.9*1, 0.1*0.25
    torch.testing.assert_close(m.expectile_loss(adv, diff, 0.9), torch.tensor([3.6, 0.9, 0.9, 0.025]))
    w = m.awr_weights(torch.tensor([0.0, 0.1, -1.0, 1.0]), 10.0, 100.0)
    torch.testing.assert_close(w, torch.tensor([1.0, math.e, math.exp(-10.0), 100.0]))  # e^10 clipped at 100


class Fixed(torch.nn.Module):
    """Stands in for a GoalNet: fixed outputs (heads, N, 1) for inputs of batch size N, whatever the frames."""

    def __init__(self, by_size):
        super().__init__()
        self.by_size = {n: torch.as_tensor(v, dtype=torch.float32)[..., None] for n, v in by_size.items()}

    def forward(self, inputs, extra=None):
        return self.by_size[len(inputs[0])]


def test_gcivl_loss_by_hand(scripts):
    m = scripts["gcivl"]
    model = m.GCIVL(action_dim=1, image_size=8, conv_channels=(4,), feature_dim=4, hidden_dims=(4,))
    # the target heads on [s (B=2), s'] and the online heads on s: values chosen by hand
    model.target_value = Fixed({4: [[-2.0, -1.0, -3.0, -5.0], [-4.0, -1.0, -1.0, -6.0]]})
    # online heads on s (B = 2: the value loss) and on [s, s'] with the actor goal (4: the actor's advantage)
    model.value = Fixed({2: [[-2.5, -0.5], [-3.0, -2.0]], 4: [[-3.0, -1.0, -2.0, -1.0], [-1.0, -1.0, -2.0, 0.0]]})
    frames = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    batch = {"pixels": frames, "next_pixels": frames, "value_goal": frames, "actor_goal": frames,
             "action": torch.zeros(2, 1), "reward": torch.tensor([-1.0, 0.0]), "mask": torch.tensor([1.0, 0.0])}
    args = m.Args(discount=0.5, expectile=0.9, alpha=1.0)
    _, metrics = m.losses(model, batch, args)
    # q_i = r + 0.5 mask V'_i(s'): head 1 [-2.5, 0], head 2 [-1.5, 0]
    # adv = r + 0.5 mask min_i V'_i(s') - mean_i V'_i(s) = [-1 - 1.5 + 3, 0 + 1] = [0.5, 1] (weights 0.9)
    # head 1: 0.9 (-2.5 + 2.5)^2, 0.9 (0 + 0.5)^2 -> mean 0.1125; head 2: 0.9 (1.5)^2, 0.9 (2)^2 -> mean 2.8125
    assert metrics["value_loss"].item() == pytest.approx(0.1125 + 2.8125)
    # actor: mean over heads V(s) = [-2, -1], V(s') = [-2, -0.5]: advantages [0, 0.5], weights [1, e^0.5]
    assert metrics["adv_mean"].item() == pytest.approx(0.25)
    assert metrics["awr_weight_mean"].item() == pytest.approx((1 + math.exp(0.5)) / 2)
    # log pi(0 | mean) with the untrained actor's mean: -(w * log pi).mean() by hand
    with torch.no_grad():
        mean = model.actor(model.inputs(frames, frames))[0]
    log_pi = -0.5 * (mean[:, 0] ** 2 + math.log(2 * math.pi))
    expected = -(torch.tensor([1.0, math.exp(0.5)]) * log_pi).mean()
    assert metrics["actor_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------------------- value orders by distance


def chain_batches(n_cells=8, episodes=40, steps=40, seed=0):
    """Random walks on a line of n_cells, drawn as 16 x 16 frames with a white column at the agent's cell."""
    rng = np.random.default_rng(seed)
    cells = [np.clip(np.cumsum(np.r_[rng.integers(0, n_cells), rng.choice([-1, 1], steps - 1)]), 0, n_cells - 1)
             for _ in range(episodes)]
    cells = np.concatenate(cells)
    frames = np.zeros((len(cells), 16, 16, 3), np.uint8)
    frames[np.arange(len(cells)), :, 2 * cells] = 255
    return cells, frames, np.arange(episodes) * steps, np.full(episodes, steps)


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("algo", ["gcivl", "gciql"])
def test_learned_value_orders_states_by_distance_to_goal(scripts, algo, one_thread):
    m = scripts[algo]
    torch.manual_seed(0)
    cells, frames, offsets, lengths = chain_batches()
    value_goals = GoalSampler(offsets, lengths, 0.2, 0.5, 0.3, discount=0.9)
    rng = np.random.default_rng(0)
    last = np.repeat(offsets + lengths - 1, lengths)
    starts = np.flatnonzero(np.arange(len(cells)) < last)  # rows with a next row in the episode
    model = m.__dict__[algo.upper()](action_dim=1, image_size=16, conv_channels=(8, 16), feature_dim=32,
                                     hidden_dims=(32,), value_hidden_dims=(64, 64))  # fmt: skip
    args = m.Args(discount=0.9, lr=1e-3)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    px = torch.from_numpy(frames)
    for _ in range(300):
        rows = rng.choice(starts, 64)
        goals, _ = value_goals.sample(rows, rng)
        reached = (goals == rows).astype(np.float32)
        batch = {"pixels": px[rows], "next_pixels": px[rows + 1], "value_goal": px[goals], "actor_goal": px[goals],
                 "action": torch.from_numpy(np.sign(cells[rows + 1] - cells[rows]).astype(np.float32)[:, None]),
                 "reward": torch.from_numpy(reached - 1), "mask": torch.from_numpy(1 - reached)}  # fmt: skip
        loss, _ = m.losses(model, batch, args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_target(0.05)
    image = lambda c: torch.from_numpy(frames[np.flatnonzero(cells == c)[0]])  # noqa: E731
    with torch.no_grad():
        for goal in (0, 7, 3):
            states = torch.stack([image(c) for c in range(8)])
            v = model.values(states, image(goal)[None].expand(8, -1, -1, -1)).numpy()
            dist = np.abs(np.arange(8) - goal)
            rho = np.corrcoef(np.argsort(np.argsort(v)), np.argsort(np.argsort(-dist)))[0, 1]  # Spearman
            assert rho > 0.9, (goal, v.round(2).tolist())


# ------------------------------------------------------------------------------------------ frozen encoder


def test_frozen_timm_encoder_weights_flag(scripts, tmp_path):
    import timm

    m = scripts["gcbc"]
    torch.manual_seed(5)
    source = timm.create_model("test_efficientnet", num_classes=0)
    torch.save(source.state_dict(), tmp_path / "enc.pth")
    args = m.Args(encoder="test_efficientnet", encoder_weights=str(tmp_path / "enc.pth"), image_size=32)
    assert m.encoder_source(args) == "file:enc.pth"
    model = m.GCBC(action_dim=2, proprio_dim=2, image_size=32, encoder="test_efficientnet", feature_dim=8,
                   hidden_dims=(8,), encoder_pretrained=m.encoder_source(args))  # fmt: skip
    m.load_pretrained_encoder(model, args)
    for k, v in source.state_dict().items():
        assert torch.equal(model.frozen.net.state_dict()[k], v), k
    before = {k: v.clone() for k, v in model.frozen.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(not p.requires_grad for p in model.frozen.parameters())
    opt = torch.optim.Adam(trainable, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    batch = {"pixels": torch.randint(0, 256, (4, 40, 40, 3), generator=g, dtype=torch.uint8),
             "actor_goal": torch.randint(0, 256, (4, 40, 40, 3), generator=g, dtype=torch.uint8),
             "proprio": torch.randn(4, 2), "actor_goal_proprio": torch.randn(4, 2), "action": torch.rand(4, 2)}
    model.train()
    for _ in range(2):
        loss, _ = m.losses(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.frozen.state_dict().items():  # weights and BatchNorm statistics untouched
        assert torch.equal(v, before[k]), k
    grid = m.FrozenFeatures("test_efficientnet", 32, feature_grid=2)
    assert grid(batch["pixels"]).shape == (4, grid.dim) and grid.dim % 4 == 0
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit 'test_efficientnet'"):
        m.create_timm_encoder("test_efficientnet", 32, weights=tmp_path / "other.pth")
    with pytest.raises(ValueError, match="contradicts --no-pretrained"):
        m.encoder_source(m.Args(encoder="test_efficientnet", encoder_weights="x.pth", pretrained=False))


def test_feedforward_policy_checks_the_action_space(scripts):
    import gymnasium as gym

    from swm_core.policy import FeedForwardPolicy

    model = scripts["gcbc"].GCBC(action_dim=2, image_size=8, conv_channels=(4,), feature_dim=4, hidden_dims=(4,))
    policy = FeedForwardPolicy(model)
    with pytest.raises(RuntimeError, match="no action space"):
        policy.get_actions({"pixels": np.zeros((1, 8, 8, 3), np.uint8), "goal": np.zeros((1, 8, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match="outputs actions of size 2, but the env's action space"):
        policy.set_action_space(gym.spaces.Box(-1, 1, (3,)))
    with pytest.raises(ValueError, match="continuous actions"):
        policy.set_action_space(gym.spaces.Discrete(4))
    policy.set_action_space(gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match=r"needs infos\['goal'\]"):
        model.get_action({"pixels": torch.zeros(1, 8, 8, 3, dtype=torch.uint8)})


def test_success_table_runs_them_through_their_own_evaluation(load_script):
    st = load_script("benchmarks/success_table.py")
    for algo in ALGOS:
        assert algo in st.BASELINES
        solver, how, _ = st.planner_of(algo, ROOT / st.BASELINES[algo])
        assert (solver, how) == ("policy", "own")
    args = st.Args()
    flags = st.own_eval_flags(args, "smoke", Path("d.lance"), 3, "gcbc")
    assert flags[flags.index("--eval-seed") + 1] == "3" and "--num-samples" not in flags
    assert "--num-samples" in st.own_eval_flags(args, "smoke", Path("d.lance"), 3, "tdmpc2")


# ------------------------------------------------------------------------------------------ end to end

TINY = ["--preset", "cpu", "--image-size", "32", "--conv-channels", "4", "8", "--feature-dim", "16", "--hidden-dims",
        "16", "--batch-size", "8", "--num-workers", "0", "--val-fraction", "0.34", "--log-every", "2",
        "--val-every", "2", "--val-batches", "1", "--checkpoint-every", "2", "--device", "cpu", "--lr", "1e-3"]
EVAL = ["--eval-episodes", "2", "--goal-offset", "4", "--eval-budget", "6", "--eval-num-envs", "2", "--eval-seed", "1"]


def tiny(algo):
    return TINY + ([] if algo == "gcbc" else ["--value-hidden-dims", "16"])


def run(*cmd, ok=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize("algo", ALGOS)
def test_script_trains_resumes_and_evaluates(two_room, tmp_path, algo, load_script):
    script = ROOT / "baselines" / f"{algo}_train.py"
    a = tmp_path / "a"
    out = run(script, "--dataset", two_room, "--total-steps", 4, "--output", a / "model.pt", *tiny(algo),
              "--eval-dataset", two_room, "--episodic", *EVAL, "--output-json", a / "eval.json").stdout
    losses = [float(x) for x in re.findall(r"losses/total=(\S+)", out)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert re.search(r"step 4: val/.*val/bc_mse=\S+", out)
    ckpt = read_checkpoint(a / "model.pt")
    assert ckpt["class_name"] == algo.upper() and ckpt["default_solver"] == "policy"
    assert ckpt["extra"]["step"] == 4 and ckpt["extra"]["env_id"] == "swm/TwoRoom-v1"
    assert ckpt["config"]["proprio_dim"] == 2 and set(ckpt["stats"]) == {"proprio"}
    assert "encoder_pretrained" not in ckpt["config"]  # a conv encoder is trained, not a frozen pretrained one
    model, _ = load_checkpoint(a / "model.pt")
    assert model.action_dim == 2 and model.action_block == 1
    trained = json.loads((a / "eval.json").read_text())
    for protocol in ("dataset", "episodic"):
        assert [r["policy"] for r in trained["tables"][protocol]] == [algo, "no-op", "random"]
    assert f"{algo:<10}" in out and "no-op" in out and "ms/plan" in out

    # resume to step 6: the checkpoint's stats and config are kept
    out = run(script, "--dataset", two_room, "--total-steps", 6, "--resume", a / "model.pt", "--output",
              tmp_path / "b" / "model.pt", *tiny(algo)).stdout  # fmt: skip
    assert re.findall(r"step (\d+): losses", out) == ["6"]
    resumed = read_checkpoint(tmp_path / "b" / "model.pt")
    assert resumed["extra"]["step"] == 6
    assert torch.equal(resumed["stats"]["proprio"]["mean"], ckpt["stats"]["proprio"]["mean"])

    # --eval-only on the first checkpoint: the same pairs, the same numbers, in the solver mains' JSON layout
    run(script, "--preset", "cpu", "--eval-only", "--resume", a / "model.pt", "--eval-dataset", two_room, *EVAL,
        "--device", "cpu", "--output-json", a / "again.json")  # fmt: skip
    again = json.loads((a / "again.json").read_text())
    assert set(again) == {"args", "env_id", "shift", "tables", "dataset"} and again["env_id"] == "swm/TwoRoom-v1"
    pct = lambda rows: [(r["policy"], r["success_pct"], r["solved_at_start_pct"]) for r in rows]  # noqa: E731
    assert pct(again["tables"]["dataset"]) == pct(trained["tables"]["dataset"])
    for name in (algo, "no-op", "random"):
        assert again["dataset"][name]["success"] == trained["dataset"][name]["success"]
        assert again["dataset"][name]["episode_length"] == trained["dataset"][name]["episode_length"]
    common = load_script("benchmarks/common.py")
    plan = common.read_plan(a / "again.json")
    assert plan["model"]["policy"] == algo and set(plan["rows"]) == {algo, "no-op", "random"}


@pytest.mark.parametrize("algo", ALGOS)
def test_nan_gradients_stop_training_and_bad_flags_are_named(two_room, tmp_path, algo):
    script = ROOT / "baselines" / f"{algo}_train.py"
    ckpt_path = tmp_path / "a" / "model.pt"
    proc = run(ROOT / "tests" / "poison_grads.py", 3, script, "--dataset", two_room, "--total-steps", 6,
               "--output", ckpt_path, *tiny(algo), ok=False)  # fmt: skip
    assert proc.returncode != 0
    assert f"gradient norm became nan at step 2; the last good checkpoint is {ckpt_path}" in proc.stderr, proc.stderr
    ckpt = read_checkpoint(ckpt_path)
    assert ckpt["extra"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    proc = run(script, "--eval-only", "--preset", "cpu", ok=False)
    assert "--eval-only needs --resume CKPT and --eval-dataset PATH" in proc.stderr


def test_resume_on_another_envs_data_is_refused(two_room, tmp_path):
    script = ROOT / "baselines" / "gcbc_train.py"
    run(script, "--dataset", two_room, "--total-steps", 2, "--output", tmp_path / "a" / "model.pt", *tiny("gcbc"))
    other = tmp_path / "other.lance"
    rng = np.random.default_rng(0)
    with LanceWriter(other, env_id="swm/Other-v0", image_size=32, control_hz=10) as writer:
        for _ in range(4):
            ep = {"pixels": rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
                  "action": rng.uniform(-1, 1, (12, 2)).astype(np.float32),
                  "proprio": rng.normal(size=(12, 2)).astype(np.float32)}
            ep["action"][-1] = np.nan
            writer.add_episode(ep)
    proc = run(script, "--dataset", other, "--total-steps", 4, "--resume", tmp_path / "a" / "model.pt", "--output",
               tmp_path / "b" / "model.pt", *tiny("gcbc"), ok=False)  # fmt: skip
    assert proc.returncode != 0
    assert f"was trained on 'swm/TwoRoom-v1', but the env of --dataset {other} is 'swm/Other-v0'" in proc.stderr
