"""The two study benchmarks: benchmarks/mse_vs_success.py (prediction error vs planning success, with a rank-based
ROC AUC) and benchmarks/robustness_study.py (shifts x envs x models x seeds, sharded and merged). Their --smoke
runs end to end in subprocesses, sharing one --out-dir so that one smoke-trained LeWM serves both; the AUC against
hand-computed values; the open-loop error against a model whose latents are known; the shard partition."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TWO_ROOM = "swm/TwoRoom-v1"


def run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def mse(load_script):
    return load_script("benchmarks/mse_vs_success.py")


@pytest.fixture(scope="module")
def study(load_script):
    return load_script("benchmarks/robustness_study.py")


# ------------------------------------------------------------------------------------------------ the AUC


def test_auc_matches_hand_computed_values(mse):
    auc = mse.roc_auc
    assert auc([3, 4, 1, 2], [True, True, False, False]) == 1.0  # every failure above every success
    assert auc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    # failures {2, 3}, successes {2, 1}: pairs (2,2) tie = 1/2, (2,1) = 1, (3,2) = 1, (3,1) = 1 -> 3.5 / 4
    assert auc([2, 3, 2, 1], [True, True, False, False]) == 0.875
    # failures {1, 3}, successes {2}: (1,2) = 0, (3,2) = 1 -> 1/2
    assert auc([1, 3, 2], [True, True, False]) == 0.5
    # failures {5, 5, 1}, successes {5, 0}: 5 vs 5 twice = 1/2 + 1/2, 5 vs 0 twice = 2, 1 vs 5 = 0, 1 vs 0 = 1 -> 4 / 6
    assert auc([5, 5, 1, 5, 0], [True, True, True, False, False]) == pytest.approx(4 / 6)
    assert auc([7, 7, 7, 7], [True, False, True, False]) == 0.5  # all equal: no information
    assert np.isnan(auc([1, 2], [True, True])) and np.isnan(auc([1, 2], [False, False]))
    np.testing.assert_array_equal(mse.average_ranks([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4])
    with pytest.raises(ValueError, match="differ in length"):
        auc([1, 2, 3], [True, False])
    # against the pairwise definition on integer scores with many ties
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 4, 40), rng.random(40) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auc(scores, labels) == pytest.approx(pairwise, abs=1e-12)


class ToyModel:
    """Latent = the top-left pixel's RGB; each model step adds the sum of its action block to every dim."""

    action_block = 2

    def encode(self, pixels):
        return pixels[..., 0, 0, :].float()

    def rollout(self, z0, blocks):
        return z0[:, None] + torch.cumsum(blocks.sum(-1, keepdim=True), dim=1).expand(-1, -1, z0.shape[-1])


def test_open_loop_errors_compare_predictions_with_frames_a_block_apart(mse):
    frames = np.zeros((6, 2, 2, 3), dtype=np.uint8)  # 6 frames, block 2 -> predictions for frames 2 and 4
    frames[:, 0, 0, 0] = [10, 0, 13, 0, 20, 0]  # dim 0 of the latents at rows 0, 2, 4: 10, 13, 20
    actions = np.ones((6, 1), dtype=np.float32)  # each block adds 2: predictions 12, 14 (dims 1, 2: 2, 4)
    goal = np.zeros((2, 2, 3), dtype=np.uint8)
    goal[0, 0] = [30, 0, 0]
    err = mse.open_loop_errors(ToyModel(), frames, actions, goal, "cpu")
    # errors (12-13, 2, 2) and (14-20, 4, 4): MSE (1 + 4 + 4) / 3 = 3 and (36 + 16 + 16) / 3
    np.testing.assert_allclose(err["mse"], [3.0, 68 / 3], rtol=1e-6)
    # goal direction from the actual latents (13, 0, 0) and (20, 0, 0) toward (30, 0, 0): the +x axis
    np.testing.assert_allclose(err["goal_dir"], [-1.0, -6.0])
    assert mse.open_loop_errors(ToyModel(), frames[:2], actions[:2], goal, "cpu") is None  # no full block
    summary = mse.summarize_episode(err, cap=1)
    assert summary["mse"] == 3.0 and summary["mse_episode"] == pytest.approx((3 + 68 / 3) / 2)
    assert summary["goal_dir_sq"] == 1.0 and summary["goal_dir"] == -1.0


def test_recording_policy_keeps_each_episode_in_its_slot(mse):
    from swm_core import RandomPolicy, World
    from swm_core.world import evaluation_seeds

    world = World(TWO_ROOM, num_envs=2, image_size=32, max_episode_steps=4)
    policy = mse.RecordingPolicy(RandomPolicy(seed=0), num_envs=2)
    result = world.evaluate(policy, episodes=5, seed=3)
    assert sorted(policy.frames) == list(range(5))
    for e, seed in enumerate(evaluation_seeds(3, 5)):  # episode e's first frame is its own reset's
        assert len(policy.frames[e]) == len(policy.actions[e]) == result["episode_length"][e]
        with World(TWO_ROOM, num_envs=1, image_size=32) as fresh:
            fresh.reset(seed=seed)
            np.testing.assert_array_equal(policy.frames[e][0], fresh.infos["pixels"][0])
            np.testing.assert_array_equal(policy.goals[e], fresh.infos["goal"][0])


# --------------------------------------------------------------------------------------------- sharding


def test_shards_partition_the_job_list(study):
    args = study.Args(envs=study.ENVS[:3], shifts=study.SHIFTS, models=("lewm", "pldm", "gcbc"), seeds=3)
    jobs = study.job_list(args)
    assert len(jobs) == 3 * 6 * 3 * 3 and len({tuple(j.values()) for j in jobs}) == len(jobs)
    groups = {study.group_of(j) for j in jobs}
    for count in (1, 2, 5, 26, 27, 28, 100, len(jobs)):
        shards = [study.shard_jobs(jobs, i, count) for i in range(count)]
        assert [j for shard in shards for j in shard] == jobs  # complete, disjoint, in order
        assert shards == [study.shard_jobs(study.job_list(args), i, count) for i in range(count)]  # deterministic
        assert all(shards)
        if count <= len(groups):  # whole (env, model, seed) groups: no checkpoint trained by two shards
            owner = {}
            for i, shard in enumerate(shards):
                for j in shard:
                    assert owner.setdefault(study.group_of(j), i) == i
            sizes = [len(s) for s in shards]
            assert max(sizes) - min(sizes) <= 6  # within one group's jobs
    assert study.parse_shard("3/8") == (3, 8) and study.parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("8/8", "-1/2", "a/b", "1/0", "2", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            study.parse_shard(bad)
    with pytest.raises(ValueError, match="only 162 jobs"):
        study.shard_jobs(jobs, 0, 163)


def test_bad_input_fails_before_anything_runs(study, mse, tmp_path):
    out = tmp_path / "runs"
    cases = [(dict(envs=("swm/Nope-v1",)), "--envs.*allowed: swm/TwoRoom-v1"),
             (dict(shifts=("none", "fog")), "--shifts.*'fog'.*allowed: none, agent_color"),
             (dict(models=("hiql",)), "--models.*'hiql'.*allowed: lewm"),
             (dict(seeds=0), "--seeds must be >= 1"),
             (dict(shard="2/2"), "--shard '2/2'"),
             (dict(shard="0/2", merge=str(tmp_path)), "give one of them")]
    for fields, message in cases:
        with pytest.raises(ValueError, match=message):
            study.main(study.Args(smoke=True, out_dir=str(out), results_dir=str(tmp_path / "res"), **fields))
    with pytest.raises(ValueError, match="no robustness_study"):
        study.main(study.Args(merge=str(tmp_path), results_dir=str(tmp_path / "res")))
    for fields, message in [(dict(models=("dinowm",)), "--models.*allowed: lewm, pldm"),
                            (dict(regimes=("expert",)), "--regimes.*allowed: train, held_out"),
                            (dict(env_id="swm/Nope-v1"), "Nope"),
                            (dict(rollout_steps=0), "--rollout-steps")]:
        with pytest.raises(ValueError, match=message):
            mse.main(mse.Args(smoke=True, out_dir=str(out), results_dir=str(tmp_path / "res"), **fields))
    assert not out.exists() and not (tmp_path / "res").exists()  # nothing collected, trained or written


# ------------------------------------------------------------------------------------- smoke, end to end


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory, study):
    """robustness_study --smoke as two shards and their merge (in process; the jobs are success_table
    subprocesses), then unsharded from the command line; one --out-dir (the cache) for all."""
    tmp = tmp_path_factory.mktemp("studies")
    for i in range(2):
        shard = study.main(study.Args(smoke=True, out_dir=str(tmp / "runs"), shard=f"{i}/2",
                                      results_dir=str(tmp / "shards")))
        assert [j["status"] for j in shard["jobs"]] == ["ok"]
    study.main(study.Args(merge=str(tmp / "shards"), results_dir=str(tmp / "merged")))
    whole = run("benchmarks/robustness_study.py", "--smoke", "--out-dir", str(tmp / "runs"), "--results-dir",
                str(tmp / "whole"))
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    return tmp, whole.stdout


def render(results_dir: Path, load_script) -> str:
    """docs/results.md's text from the records in ``results_dir`` (scripts/results_md.py)."""
    results_md = load_script("scripts/results_md.py")
    return results_md.render(results_md.load_records(results_dir))


def test_robustness_study_smoke_and_shards_merge_to_the_same_table(study_runs, load_script):
    tmp, out = study_runs
    assert "swm/TwoRoom-v1: success %" in out and "--variation agent.color" in out
    whole = json.loads((tmp / "whole" / "robustness_study_smoke.json").read_text())
    assert whole["failures"] == [] and [j["shift"] for j in whole["jobs"]] == ["none", "agent_color"]
    for job in whole["jobs"]:
        assert job["status"] == "ok" and job["solver"] == "cem" and job["success"] in (0.0, 50.0, 100.0)
        assert "--data-seed 0" in job["command"] and "--smoke" in job["command"]
    assert whole["jobs"][1]["variation"] == ["agent.color"] and "--variation agent.color" in whole["jobs"][1]["command"]
    rows = whole["envs"][TWO_ROOM]
    assert [r["models"]["lewm"]["per_seed"] for r in rows] == [[j["success"]] for j in whole["jobs"]]
    shard_files = sorted(p.name for p in (tmp / "shards").glob("*.json"))
    assert shard_files == ["robustness_study_smoke_shard-0-of-2.json", "robustness_study_smoke_shard-1-of-2.json"]
    records = [json.loads((tmp / d / "robustness_study-smoke.json").read_text()) for d in ("whole", "merged")]
    assert records[0]["tables"] == records[1]["tables"]  # 2 shards + merge == one unsharded run
    assert records[0]["command"] == (f"python benchmarks/robustness_study.py --smoke --out-dir {tmp / 'runs'} "
                                     f"--results-dir {tmp / 'whole'}")
    assert len(records[1]["shards"]) == 2 and records[0]["seeds"] == [0] and records[0]["quick"] is False
    assert (tmp / "merged" / "robustness_study_smoke.png").stat().st_size > 1000
    table = records[0]["tables"][0]
    assert table["columns"][:4] == ["shift", "flags", "lewm %", "lewm ± std"]
    assert "Robustness across environments" in render(tmp / "merged", load_script)


def test_mse_vs_success_smoke_reuses_the_studys_model(study_runs, mse, load_script):
    tmp, _ = study_runs
    proc = run("benchmarks/mse_vs_success.py", "--smoke", "--out-dir", str(tmp / "runs"), "--results-dir",
               str(tmp / "mse"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = next((tmp / "runs" / "logs").glob("mse_vs_success_tworoom_smoke.log")).read_text()
    # the study's data, LeWM and its unshifted plan of the same pairs, none made again
    assert "lewm_train.py" not in log and "cem_plan.py" not in log and "collect.py" not in log
    assert log.count("reusing") == 4
    data = json.loads((tmp / "mse" / "mse_vs_success_smoke.json").read_text())
    assert [(r["regime"], r["model"]) for r in data["rows"]] == [(g, "lewm") for g in mse.REGIMES]
    assert {Path(p).name for p in data["datasets"].values()} >= {"tworoom_random_2ep_s20000.lance",
                                                                   "tworoom_random_fovall_2ep_s30000.lance"}
    for run_ in data["runs"]:
        assert run_["rollout_steps"] == 5 and run_["solver"]["solver"] == "cem"
        assert run_["success_pct"] == 100 * np.mean([e["success"] for e in run_["episodes"]])
        for e in run_["episodes"]:
            assert len(e["steps_mse"]) == (e["steps"] - 1) // 5  # LeWM's frameskip 5
            if e["steps_mse"]:
                assert e["mse"] == pytest.approx(np.mean(e["steps_mse"][:5]))
                assert e["goal_dir_sq"] == pytest.approx(np.mean(np.square(e["steps_goal_dir"][:5])))
            else:
                assert e["mse"] is None
    for row in data["rows"]:  # the table's AUC is the one the episodes give
        (run_,) = [r for r in data["runs"] if r["regime"] == row["regime"]]
        eps = [e for e in run_["episodes"] if e["mse"] is not None]
        expected = mse.roc_auc([e["mse"] for e in eps], [not e["success"] for e in eps]) if eps else float("nan")
        assert (row["auc_mse"] is None and np.isnan(expected)) or row["auc_mse"] == pytest.approx(expected)
    assert (tmp / "mse" / "mse_vs_success_smoke.png").stat().st_size > 1000
    record = json.loads((tmp / "mse" / "mse_vs_success-smoke.json").read_text())
    assert record["benchmark"] == "mse_vs_success" and record["seeds"] == [0]
    assert [row[:2] for row in record["tables"][0]["rows"]] == [[g, "lewm"] for g in mse.REGIMES]
    assert "Prediction error along planned trajectories" in render(tmp / "mse", load_script)
    # the recording wrapper changes nothing: the held-out pairs succeed as success_table's own plan of them did
    (held_out,) = [r for r in data["runs"] if r["regime"] == "held_out"]
    assert held_out["success_pct"] == data["success_table"]["lewm_seed0"]
