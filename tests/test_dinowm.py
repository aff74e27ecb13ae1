"""DINO-WM baseline: block-causal mask, token tiling, frozen encoder, planning cost, checkpoints, the script.

No hub is reachable here: every encoder in these tests is a randomly initialised (or self-made) frozen timm model,
never a downloaded one.
"""

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
SCRIPT = ROOT / "baselines" / "dinowm_train.py"


@pytest.fixture(scope="module")
def dinowm(load_script):
    """The training script's module, loaded through the shared conftest fixture."""
    return load_script("baselines/dinowm_train.py")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core machine (10x slower there)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# resnet10t's stride-8 stage (128 channels) at 32 px: a 4x4 grid pooled 2x2 -> 4 tokens per frame
TINY = dict(
    action_dim=2, action_block=2, history=3, proprio_dim=3, image_size=32, encoder="resnet10t", encoder_layer=2,
    token_pool=2, action_emb_dim=4, proprio_emb_dim=5, pred_depth=2, pred_heads=2, pred_dim_head=8,
    pred_mlp_dim=32, dropout=0.0,
)  # fmt: skip
E, P, PE, AE = 128, 4, 5, 4


def tiny_model(dinowm, seed=0, **overrides):
    torch.manual_seed(seed)
    return dinowm.DINOWM(**{**TINY, **overrides}).eval()


def plan_infos(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "pixels": torch.randint(0, 256, (B, 32, 32, 3), generator=g, dtype=torch.uint8),
        "goal": torch.randint(0, 256, (B, 32, 32, 3), generator=g, dtype=torch.uint8),
        "proprio": torch.randn(B, 3, generator=g),
        "goal_proprio": torch.randn(B, 3, generator=g),
    }


# ------------------------------------------------------------------------------------------- predictor


def test_block_causal_mask_by_hand(dinowm):
    expected = torch.tensor([
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ], dtype=torch.bool)  # fmt: skip
    assert torch.equal(dinowm.block_causal_mask(3, 2), expected)


def test_predictor_is_block_causal_over_frames(dinowm):
    model = tiny_model(dinowm)
    g = torch.Generator().manual_seed(1)
    z, pe, a = torch.randn(2, 3, P, E, generator=g), torch.randn(2, 3, PE, generator=g), torch.randn(2, 3, 4, generator=g)
    vis, pe_pred = model.predict(z, pe, a)
    assert vis.shape == (2, 3, P, E) and pe_pred.shape == (2, 3, PE)
    # changing frame 2 (its patches, proprio and action) leaves the outputs of frames 0 and 1 unchanged
    z2, pe2, a2 = z.clone(), pe.clone(), a.clone()
    z2[:, 2] += 1.0
    pe2[:, 2] -= 1.0
    a2[:, 2] += 2.0
    vis2, pe_pred2 = model.predict(z2, pe2, a2)
    assert torch.allclose(vis2[:, :2], vis[:, :2], atol=1e-6) and torch.allclose(pe_pred2[:, :2], pe_pred[:, :2], atol=1e-6)
    assert not torch.allclose(vis2[:, 2], vis[:, 2], atol=1e-3)
    # frame 1 sees frame 0 (not a per-frame mask), and one patch of frame 0 reaches every patch of frame 0
    z3 = z.clone()
    z3[:, 0, 0] += 1.0
    vis3, _ = model.predict(z3, pe, a)
    assert not torch.allclose(vis3[:, 1], vis[:, 1], atol=1e-3)
    assert not torch.allclose(vis3[:, 0, 1:], vis[:, 0, 1:], atol=1e-3)
    with pytest.raises(ValueError, match="up to 3 frames of 4 tokens, got 4 frames"):
        model.predict(torch.randn(1, 4, P, E), torch.randn(1, 4, PE), torch.randn(1, 4, 4))


def test_proprio_and_action_embeddings_are_tiled_onto_every_patch(dinowm):
    model = tiny_model(dinowm)
    model.set_stats({"action": {"mean": torch.tensor([0.5, -1.0]), "std": torch.tensor([2.0, 0.5])}})
    z, pe, a = torch.randn(2, 3, P, E), torch.randn(2, 3, PE), torch.randn(2, 3, 4)
    tokens = model.tokens(z, pe, a)
    assert tokens.shape == (2, 3, P, E + PE + AE) and model.token_dim == E + PE + AE
    assert torch.equal(tokens[..., :E], z)
    ae = model.action_encoder(model.normalize_actions(a))
    norm = (a.reshape(2, 3, 2, 2) - torch.tensor([0.5, -1.0])) / torch.tensor([2.0, 0.5])
    assert torch.allclose(ae, model.action_encoder(norm.reshape(2, 3, 4)))
    for p in range(P):
        assert torch.equal(tokens[:, :, p, E : E + PE], pe)
        assert torch.equal(tokens[:, :, p, E + PE :], ae)
    no_proprio = tiny_model(dinowm, proprio_dim=0)
    assert no_proprio.tokens(z, None, a).shape == (2, 3, P, E + AE) and no_proprio.embed_proprio(None) is None


# ----------------------------------------------------------------------------------------- frozen encoder


def test_encoder_is_frozen_through_a_training_step(dinowm):
    model = tiny_model(dinowm).train()
    assert not model.encoder.training and model.predictor.training  # BatchNorm statistics stay fixed
    assert not any(p.requires_grad for p in model.encoder.parameters())
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    pred_before = model.predictor.blocks[0].attn.qkv.weight.clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (4, 4, 32, 32, 3), generator=g, dtype=torch.uint8)
    z = model.encode(pixels)
    assert not z.requires_grad
    loss, visual, proprio = dinowm.dinowm_loss(model, z, torch.randn(4, 4, 4), torch.randn(4, 4, 3), 0.5)
    assert torch.isclose(loss, visual + 0.5 * proprio) and proprio > 0
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    opt.step()
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running_mean/var, num_batches_tracked
    assert not torch.equal(pred_before, model.predictor.blocks[0].attn.qkv.weight)


def test_encoder_tokens_drop_prefix_tokens_and_use_cnn_positions(dinowm):
    torch.manual_seed(0)
    vit = dinowm.FrozenEncoder("vit_tiny_patch16_224", 32, patch_size=8)
    x = torch.rand(2, 3, 32, 32)
    full = vit.net.forward_features((x - vit.mean) / vit.std)  # (2, 1 + 16, 192): CLS first
    assert (vit.num_patches, vit.dim) == (16, 192) and torch.equal(vit(x), full[:, 1:])
    cnn = dinowm.FrozenEncoder("resnet10t", 64)  # final map 2x2 of 512 channels
    fmap = cnn.net.forward_features((x.repeat(1, 1, 2, 2) - cnn.mean) / cnn.std)
    assert torch.equal(cnn(x.repeat(1, 1, 2, 2)), fmap.flatten(2).transpose(1, 2))
    with pytest.raises(ValueError, match="'nope' is not a timm model name"):
        dinowm.FrozenEncoder("nope", 32)
    with pytest.raises(ValueError, match="--patch-size 8: encoder 'resnet10t' takes no patch size"):
        dinowm.FrozenEncoder("resnet10t", 32, patch_size=8)


def test_encoder_weights_file_by_name_and_renamed_in_order(dinowm, tmp_path):
    torch.manual_seed(3)
    source = dinowm.create_timm_encoder("resnet10t", 32)
    state = source.state_dict()
    torch.save(state, tmp_path / "timm.pth")  # timm's own names
    # other names, same tensors in the same order, plus a trailing head (as the efficientnet-lite0 wheel's file)
    renamed = {f"_layer{i}": v for i, v in enumerate(state.values())}
    renamed["_fc.weight"] = torch.zeros(10, 512)
    torch.save(renamed, tmp_path / "other.pth")
    for name in ("timm.pth", "other.pth"):
        torch.manual_seed(99)  # a different random init, overwritten by the file
        net = dinowm.create_timm_encoder("resnet10t", 32, layer=2, weights=tmp_path / name)
        loaded = net.state_dict()
        assert len(loaded) < len(state) and all(torch.equal(loaded[k], state[k]) for k in loaded)
    bad = dict(list(renamed.items())[:3] + [("x", torch.zeros(3))] + list(renamed.items())[4:])
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"tensor 3 does not fit: file 'x' \(3,\)"):
        dinowm.create_timm_encoder("resnet10t", 32, weights=tmp_path / "bad.pth")


# ------------------------------------------------------------------------------------------------ planning


def test_get_cost_shape_memo_differentiable_and_matches_one_step(dinowm):
    model = tiny_model(dinowm)
    model.set_stats({"action": {"mean": np.zeros(2), "std": np.ones(2)},
                     "proprio": {"mean": np.array([1.0, 2.0, 3.0]), "std": np.array([2.0, 2.0, 2.0])}})  # fmt: skip
    infos = plan_infos()
    cand = torch.randn(2, 3, 4, 4, requires_grad=True)
    cost = model.get_cost(infos, cand)
    assert cost.shape == (2, 3) and "_z0" in infos and "_zg" in infos
    cost.sum().backward()
    assert torch.isfinite(cand.grad).all() and cand.grad.abs().sum() > 0
    # H = 1: one predictor step from the encoded start, compared with the encoded goal (visual + proprio term)
    z0, zg = model.plan_latents(infos)
    assert z0.shape == (2, P * E + PE)
    one = cand[:, :, :1].detach()
    nxt = model.step_latent(z0[:, None].expand(2, 3, -1), one[:, :, 0])
    vis, pe = model.split_latent(nxt)
    vis_g, pe_g = model.split_latent(zg)
    expected = (vis - vis_g[:, None]).square().mean((-1, -2)) + (pe - pe_g[:, None]).square().mean(-1)
    assert torch.allclose(model.get_cost(infos, one), expected, atol=1e-6)
    # the goal proprio embedding is the proprio encoder on the normalised goal proprio
    assert torch.allclose(pe_g, model.proprio_encoder((infos["goal_proprio"] - torch.tensor([1.0, 2, 3])) / 2))
    # the last step of an H = 2 rollout equals stepping the predictor by hand over the 2-frame history
    z0v, pe0 = model.split_latent(z0)
    a = cand[:, 0, :2].detach()
    v1, p1 = model.predict(z0v[:, None], pe0[:, None], a[:, :1])
    v2, p2 = model.predict(torch.stack([z0v, v1[:, 0]], 1), torch.stack([pe0, p1[:, 0]], 1), a)
    manual = (v2[:, -1] - vis_g).square().mean((-1, -2)) + (p2[:, -1] - pe_g).square().mean(-1)
    assert torch.allclose(model.get_cost(infos, cand[:, :1, :2].detach())[:, 0], manual, atol=1e-6)


def test_proprio_cost_weight_sum_steps_and_bad_inputs(dinowm):
    cand = torch.randn(2, 3, 3, 4)
    full = tiny_model(dinowm).get_cost(plan_infos(), cand)
    visual = tiny_model(dinowm, proprio_cost_weight=0.0).get_cost(plan_infos(), cand)
    double = tiny_model(dinowm, proprio_cost_weight=2.0).get_cost(plan_infos(), cand)
    assert (full > visual).all() and torch.allclose(double - visual, 2 * (full - visual), atol=1e-6)
    summed = tiny_model(dinowm, cost_sum_steps=True).get_cost(plan_infos(), cand)
    assert (summed > full).all()
    model = tiny_model(dinowm)
    with pytest.raises(ValueError, match=r"action_block\*action_dim = 2\*2, got 6"):
        model.get_cost(plan_infos(), torch.randn(2, 3, 3, 6))
    with pytest.raises(ValueError, match="infos hold 2 envs but candidates have B = 3"):
        model.get_cost(plan_infos(), torch.randn(3, 3, 3, 4))
    with pytest.raises(ValueError, match="must hold 'proprio' and 'goal_proprio'"):
        model.get_cost({k: v for k, v in plan_infos().items() if k != "goal_proprio"}, cand)
    no_proprio = tiny_model(dinowm, proprio_dim=0)
    assert no_proprio.get_cost({"pixels": plan_infos()["pixels"], "goal": plan_infos()["goal"]}, cand).shape == (2, 3)


def test_grasp_solver_plans_with_the_flattened_latents(dinowm, load_script):
    grasp = load_script("solvers/grasp_plan.py")
    model = tiny_model(dinowm).requires_grad_(False)  # as MPCPolicy leaves it: gradients flow to the actions only
    infos = plan_infos()
    solver = grasp.GRASPSolver(iters=4, sync_every=2, sync_steps=1, seed=0)
    kwargs = solver.model_kwargs(model, infos)
    assert kwargs["start"].shape == kwargs["goal"].shape == (2, P * E + PE)
    plan = solver(lambda c: model.get_cost(infos, c), torch.zeros(2, 3, 4), -torch.ones(4), torch.ones(4), **kwargs)
    assert plan.shape == (2, 3, 4) and torch.isfinite(solver.last_info["best_cost"]).all()


def test_same_seed_same_model_and_costs(dinowm):
    cand = torch.randn(2, 4, 3, 4)
    assert torch.equal(tiny_model(dinowm, seed=5).get_cost(plan_infos(), cand), tiny_model(dinowm, seed=5).get_cost(plan_infos(), cand))
    assert not torch.equal(tiny_model(dinowm, seed=5).get_cost(plan_infos(), cand), tiny_model(dinowm, seed=6).get_cost(plan_infos(), cand))


def test_checkpoint_round_trip_is_self_contained(dinowm, tmp_path, monkeypatch):
    model = tiny_model(dinowm, seed=4)
    with torch.no_grad():  # stand-in for pretrained weights: nothing a fresh random init could reproduce
        for p in model.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    stats = {"action": {"mean": np.array([0.1, 0.2], np.float32), "std": np.array([0.9, 1.1], np.float32)},
             "proprio": {"mean": np.array([1.0, 2.0, 3.0], np.float32), "std": np.array([2.0, 1.0, 0.5], np.float32)}}  # fmt: skip
    model.set_stats(stats)
    config = {**TINY, "encoder_pretrained": "file:made-up.pth"}
    save_checkpoint(tmp_path / "m.pt", model, config=config, stats=stats, env_id="swm/TwoRoom-v1", step=3)
    assert any(k.startswith("encoder.net.") for k in read_checkpoint(tmp_path / "m.pt")["state_dict"])

    import timm.models._builder as builder

    def no_hub(*args, **kwargs):
        raise AssertionError("the checkpoint tried to load pretrained weights")

    monkeypatch.setattr(builder, "load_pretrained", no_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt", expected_class="DINOWM")
    assert (loaded.action_dim, loaded.action_block, loaded.image_size) == (2, 2, 32)
    assert ckpt["extra"]["env_id"] == "swm/TwoRoom-v1" and loaded.encoder_pretrained == "file:made-up.pth"
    assert loaded.default_solver == "cem"
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[k], v)
    cand = torch.randn(2, 5, 3, 4)
    assert torch.equal(loaded.get_cost(plan_infos(), cand), model.get_cost(plan_infos(), cand))


def test_loading_another_class_is_refused(tmp_path, load_script):
    lewm = load_script("baselines/lewm_train.py")
    config = dict(action_dim=2, action_block=2, history=2, image_size=32, encoder="conv", conv_channels=[4, 8],
                  latent_dim=8, proj_hidden=16, action_hidden=8, pred_depth=1, pred_heads=1, pred_dim_head=8,
                  pred_mlp_dim=16, dropout=0.0)  # fmt: skip
    save_checkpoint(tmp_path / "lewm.pt", lewm.LeWM(**config), config=config)
    with pytest.raises(ValueError, match=r"holds a LeWM \(from lewm_train.py\).*pass a DINOWM checkpoint"):
        load_checkpoint(tmp_path / "lewm.pt", expected_class="DINOWM")


# ---------------------------------------------------------------------------------------- training checks


def test_check_finite_and_presets(dinowm):
    assert dinowm.check_finite(0.5, 3) == 0.5
    with pytest.raises(FloatingPointError, match="loss became nan at step 17; the last good checkpoint is ck.pt"):
        dinowm.check_finite(float("nan"), 17, "ck.pt")
    paper = dinowm.preset_defaults([])
    assert (paper.encoder, paper.batch_size, paper.lr, paper.history, paper.frameskip) == (
        "vit_small_patch14_dinov2.lvd142m", 32, 5e-4, 3, 5)
    assert (paper.action_emb_dim, paper.proprio_emb_dim, paper.pred_depth, paper.pred_heads) == (10, 10, 6, 16)
    cpu = dinowm.preset_defaults(["--preset", "cpu"])
    assert cpu.preset == "cpu" and cpu.image_size == 64 and not cpu.pretrained and cpu.batch_size == 32
    with pytest.raises(ValueError, match="'gpu' is unknown"):
        dinowm.preset_defaults(["--preset=gpu"])
    with pytest.raises(ValueError, match="contradicts --no-pretrained"):
        dinowm.encoder_source(dinowm.Args(pretrained=False, encoder_weights="w.pth"))


def test_loss_decreases_on_a_fixed_batch(dinowm):
    model = tiny_model(dinowm).train()
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (8, 4, 32, 32, 3), generator=g, dtype=torch.uint8)
    actions, proprio = torch.randn(8, 4, 4, generator=g), torch.randn(8, 4, 3, generator=g)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(15):
        loss = dinowm.dinowm_loss(model, model.encode(pixels), actions, proprio)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def write_dataset(path, episodes=6, steps=30, columns=("pixels", "action", "proprio"), seed=0, env_id="swm/Tiny-v0"):
    rng = np.random.default_rng(seed)
    with LanceWriter(path, env_id=env_id, image_size=32, control_hz=10) as writer:
        for _ in range(episodes):
            ep = {
                "pixels": rng.integers(0, 256, (steps, 32, 32, 3), dtype=np.uint8),
                "action": rng.normal(1.0, 2.0, (steps, 2)).astype(np.float32),
                "proprio": rng.normal(-3.0, 0.5, (steps, 3)).astype(np.float32),
            }
            ep["action"][-1] = np.nan
            writer.add_episode({k: v for k, v in ep.items() if k in columns})
    return path


def test_feature_cache_gives_the_window_dataset_batches(dinowm, tmp_path):
    from swm_core.data import WindowDataset

    data = write_dataset(tmp_path / "d.lance", episodes=4, steps=20)
    windows = WindowDataset(data, num_steps=3, frameskip=2, columns=("pixels", "action", "proprio"), split="train",
                            val_fraction=0.25, seed=0)  # fmt: skip
    model = tiny_model(dinowm, feature_norm=True)
    cache = dinowm.FeatureCache(model, windows, "cpu", chunk=7)  # chunks that straddle episodes
    assert len(cache) == len(windows) == 3 * (20 - 6) and len(cache.z) == 3 * 20
    idx = [0, 5, 13, 14, 40, len(windows) - 1]
    got = cache.batch(idx)
    items = [windows[i] for i in idx]
    pixels = torch.stack([it["pixels"] for it in items])
    assert torch.allclose(got["z"], model.encode(pixels), atol=1e-5)
    assert torch.equal(got["action"], torch.stack([it["action"] for it in items]))
    assert torch.equal(got["proprio"], torch.stack([it["proprio"] for it in items]))
    # feature_norm: every frozen token has zero mean and unit variance over its channels
    assert torch.allclose(got["z"].mean(-1), torch.zeros(6, 3, P), atol=1e-5)
    assert torch.allclose(got["z"].var(-1, unbiased=False), torch.ones(6, 3, P), atol=1e-3)
    first = next(dinowm.cached_batches(cache, 4, seed=0))
    assert first["z"].shape == (4, 3, P, E) and first["action"].shape == (4, 3, 4)
    assert torch.equal(first["action"], next(dinowm.cached_batches(cache, 4, seed=0))["action"])  # seeded


def test_missing_columns_and_resume_checks(dinowm, tmp_path):
    full = open_dataset(write_dataset(tmp_path / "d.lance", episodes=2))
    dinowm.check_columns(full, proprio=True)
    stats = dinowm.compute_stats(full, [0])
    act = full.read_episode(0, ["action"])["action"][:-1]
    np.testing.assert_allclose(stats["action"]["std"], act.std(0), rtol=1e-5)
    assert stats["proprio"]["mean"].shape == (3,)
    no_proprio = open_dataset(write_dataset(tmp_path / "n.lance", episodes=1, columns=("pixels", "action")))
    with pytest.raises(ValueError, match="has no 'proprio' column, which DINO-WM training needs; train without it "
                                         "with --no-proprio"):  # fmt: skip
        dinowm.check_columns(no_proprio, proprio=True)
    dinowm.check_columns(no_proprio, proprio=False)
    with pytest.raises(ValueError, match=r"\(action_dim, action_block, proprio_dim\) \(2, 2, 3\), but the dataset and "
                                         r"flags give \(2, 2, 0\)"):  # fmt: skip
        dinowm.check_resume_compatible(TINY, 2, 2, 0, "ck.pt")


TINY_FLAGS = [
    "--encoder", "vit_tiny_patch16_224", "--no-pretrained", "--image-size", "32", "--patch-size", "8",
    "--encoder-layer", "1", "--action-emb-dim", "4", "--proprio-emb-dim", "4", "--pred-depth", "1",
    "--pred-heads", "2", "--pred-dim-head", "8", "--pred-mlp-dim", "32", "--history", "2", "--frameskip", "2",
    "--batch-size", "8", "--val-fraction", "0.34", "--log-every", "2", "--val-every", "3", "--val-batches", "2",
    "--checkpoint-every", "3", "--device", "cpu", "--num-workers", "0",
]  # fmt: skip


def run_script(*flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_script_trains_checkpoints_and_resumes(tmp_path):
    data = write_dataset(tmp_path / "d.lance")
    out = run_script("--dataset", str(data), "--total-steps", "4", "--output", str(tmp_path / "a" / "model.pt"),
                     *TINY_FLAGS)  # fmt: skip
    losses = [float(x) for x in re.findall(r"losses/total=(\S+)", out)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert re.search(r"step 3: val/total=\S+", out) and "16 tokens x 192" in out
    ckpt = read_checkpoint(tmp_path / "a" / "model.pt")
    assert ckpt["extra"]["step"] == 4 and ckpt["extra"]["env_id"] == "swm/Tiny-v0"
    assert (tmp_path / "a" / ckpt["extra"]["train_state"]).is_file() and set(ckpt["stats"]) == {"action", "proprio"}
    cfg = ckpt["config"]
    assert (cfg["encoder"], cfg["encoder_pretrained"], cfg["proprio_dim"], cfg["action_block"]) == (
        "vit_tiny_patch16_224", "none", 3, 2)
    model, _ = load_checkpoint(tmp_path / "a" / "model.pt", expected_class="DINOWM")
    assert len(model.encoder.net.blocks) == 2  # pruned after block 1
    assert model.get_cost(plan_infos(), torch.zeros(2, 3, 2, 4)).shape == (2, 3)

    out = run_script("--dataset", str(data), "--total-steps", "6", "--resume", str(tmp_path / "a" / "model.pt"),
                     "--output", str(tmp_path / "b" / "model.pt"), "--cache-features", *TINY_FLAGS)  # fmt: skip
    assert re.findall(r"step (\d+): losses", out) == ["6"] and "cached frozen features of 120 frames" in out
    resumed = read_checkpoint(tmp_path / "b" / "model.pt")
    assert resumed["extra"]["step"] == 6
    enc = [k for k in ckpt["state_dict"] if k.startswith("encoder.")]
    assert enc and all(torch.equal(resumed["state_dict"][k], ckpt["state_dict"][k]) for k in enc)  # frozen


def test_dinowm_meets_the_world_model_contract(dinowm):
    """What MPCPolicy and the solvers rely on (swm_core.world_model), checked on a built model."""
    from swm_core.world_model import LatentWorldModel, WorldModel

    model = tiny_model(dinowm)
    assert isinstance(model, WorldModel) and type(model).default_solver == "cem"
    assert isinstance(model, LatentWorldModel) is True
