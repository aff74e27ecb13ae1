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
    assert (tmp / "runs" / "tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_bs8" / "model.pt").is_file()


def test_success_table_smoke(solver_run):
    tmp, _ = solver_run
    runs = tmp / "runs"
    # the solver table's LeWM has exactly the settings of this run's seed-0 LeWM: put it in the cache to reuse
    cached = tmp / "success" / "tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_seed0"
    cached.mkdir(parents=True)
    shutil.copy(runs / "tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_bs8" / "model.pt", cached / "model.pt")
    proc = run("benchmarks/success_table.py", "--smoke", "--train-dataset", str(runs / "tworoom_train_4ep_x0.7_s0.lance"),
               "--dataset", str(runs / "tworoom_eval_2ep_s10000.lance"), "--out-dir", str(tmp / "success"),
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


def test_failed_runs_are_reported_not_hidden(solver_run, tmp_path, monkeypatch):
    tmp, _ = solver_run
    bench = load("solver_table")

    def failing_run(cmd, log, threads):  # a solver script that crashes
        raise bench.RunFailed(f"{cmd[0]} exited with 1 (log {log}):\nValueError: boom")

    monkeypatch.setattr(bench, "run", failing_run)
    args = bench.Args(smoke=True, solvers=("cem", "icem"), checkpoint=str(tmp / "runs" / "unused.pt"),
                      dataset=str(tmp / "runs" / "tworoom_eval_2ep_s10000.lance"), out_dir=str(tmp_path / "runs"),
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
    assert args.episodes == 30 and args.train_steps == 300 and args.eval_episodes == 20
    args = success_table.Args(smoke=True, baselines=("pldm",))
    success_table.apply_mode(args, "smoke")
    assert args.baselines == ("pldm",) and args.seeds == 2 and args.train_steps == 2
