"""The robustness studies end to end with their --smoke flags (subprocesses, as a user runs them), sharing one
trained smoke model through one --out-dir: benchmarks/fov_table.py, color_wheel.py and distractors.py run
benchmarks/success_table.py once per shift, the shift reaches the env (the plans' recorded FoV values), the records
have the expected rows and scripts/results_md.py renders them; bad input fails before anything runs; the
distractor curve fit against hand-computed least squares."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TWO_ROOM, PUSHT = "swm/TwoRoom-v1", "swm/PushT-v1"


def run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """fov_table --smoke in a fresh folder: it collects the data and trains the one smoke model that the other
    benchmarks' smoke runs reuse (same --out-dir)."""
    tmp = tmp_path_factory.mktemp("robustness")
    proc = run("benchmarks/fov_table.py", "--smoke", "--out-dir", tmp / "runs", "--results-dir", tmp / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc.stdout


def record_of(folder: Path, name: str) -> dict:
    record = json.loads((folder / name).read_text())
    assert record["schema"] == "swm-benchmark-record/1" and record["config"] == "smoke" and record["seeds"] == [0]
    assert record["failures"] == [] and record["quick"] is False and record["seconds"] > 0
    for tab in record["tables"]:
        assert all(len(row) == len(tab["columns"]) for row in tab["rows"])
    return record


def plans_under(runs: Path, variation: list[str]) -> list[dict]:
    """The planning JSONs (solver mains' --output-json) that ran under exactly this --variation."""
    plans = [json.loads(p.read_text()) for p in runs.glob("tworoom_smoke_plans*/*.json")]
    return [p for p in plans if (p.get("shift") or {}).get("variation", []) == variation]


def checkpoints(runs: Path) -> list[Path]:
    return sorted(p for p in runs.glob("tworoom_lewm_*_seed0") if (p / "model.pt").is_file())


def assert_success(value) -> None:
    assert value in (0.0, 50.0, 100.0)  # 2 start/goal pairs, 1 seed


def test_fov_table_smoke(smoke):
    tmp, out = smoke
    assert f"Success under single-factor FoV shifts, {TWO_ROOM}" in out
    record = record_of(tmp / "results", "fov_table-smoke.json")
    (table,) = record["tables"]
    assert table["columns"] == ["factor", "shift", "LeWM %", "LeWM ±", "no-op %", "random %"]
    assert [row[:2] for row in table["rows"]] == [["none", "-"], ["agent color", "agent.color=0,0,255"]]
    for row in table["rows"]:
        assert row[3] == 0.0  # one seed
        for value in (row[2], row[4], row[5]):
            assert_success(value)
    data = json.loads((tmp / "results" / "fov_table_smoke.json").read_text())
    assert [r["models"]["lewm"]["per_seed"] for r in data["envs"][TWO_ROOM]] == [[row[2]] for row in table["rows"]]
    assert (tmp / "results" / "fov_table_smoke.png").stat().st_size > 1000
    # the shift reached the env in planning (every episode's recorded agent color), not in training: one model
    (plan,) = plans_under(tmp / "runs", ["agent.color=0,0,255"])
    assert plan["dataset"]["cem"]["variations"]["agent.color"] == [[0, 0, 255]] * 2
    assert len(checkpoints(tmp / "runs")) == 1
    # scripts/results_md.py renders the record
    proc = run("scripts/results_md.py", "--results-dir", tmp / "results", "--output", tmp / "results.md")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp / "results.md").read_text()
    assert "## fov_table, smoke" in text and "| factor | shift | LeWM % | LeWM ± | no-op % | random % |" in text
    assert "| agent color | agent.color=0,0,255 |" in text


def test_color_wheel_smoke(smoke, load_script):
    tmp, _ = smoke
    proc = run("benchmarks/color_wheel.py", "--smoke", "--out-dir", tmp / "runs", "--results-dir", tmp / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = record_of(tmp / "results", "color_wheel-smoke.json")
    (table,) = record["tables"]
    assert table["columns"][:5] == ["hue °", "saturation", "RGB", "LeWM %", "LeWM ±"]
    # the centre (white: the training background, the unshifted run) then hue 0 at saturation 1
    assert [row[:3] for row in table["rows"]] == [[None, 0.0, "255,255,255"], [0.0, 1.0, "255,0,0"]]
    for row in table["rows"]:
        assert_success(row[3])
    (plan,) = plans_under(tmp / "runs", ["background.color=255,0,0"])
    assert plan["dataset"]["cem"]["variations"]["background.color"] == [[255, 0, 0]] * 2
    assert len(checkpoints(tmp / "runs")) == 1  # the fov_table run's model, reused
    assert (tmp / "results" / "color_wheel_smoke.png").stat().st_size > 1000
    wheel = load_script("benchmarks/color_wheel.py")
    assert wheel.hsv_rgb(120, 1.0, 1.0) == (0, 255, 0) and wheel.hsv_rgb(240, 0.5, 1.0) == (128, 128, 255)
    assert wheel.hsv_rgb(300, 1.0, 0.5) == (128, 0, 128)


def test_distractors_smoke(smoke):
    tmp, _ = smoke
    proc = run("benchmarks/distractors.py", "--smoke", "--out-dir", tmp / "runs", "--results-dir", tmp / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = record_of(tmp / "results", "distractors-smoke.json")
    success, fits = record["tables"]
    assert success["columns"] == ["distractors", "LeWM %", "LeWM ±", "no-op %", "random %"]
    assert [row[0] for row in success["rows"]] == [0, 2]
    for row in success["rows"]:
        assert_success(row[1])
    # one point per count, two counts: no quadratic, the line through both points, no comparison
    ((model, a, b, c, adj_quad, line_a, line_b, adj_line, better),) = fits["rows"]
    assert model == "LeWM" and [a, b, c, adj_quad, adj_line] == [None] * 5 and better == "undetermined"
    at_0, at_2 = (row[1] for row in success["rows"])
    assert line_a == pytest.approx(at_0) and line_b == pytest.approx((at_2 - at_0) / 2)
    (plan,) = plans_under(tmp / "runs", ["distractors.count=2", "distractors.position"])
    recorded = plan["dataset"]["cem"]["variations"]
    assert recorded["distractors.count"] == [2, 2]
    first, second = np.asarray(recorded["distractors.position"])  # drawn per episode, inside the arena
    assert not np.array_equal(first, second) and np.all((first >= 14) & (first <= 210))
    assert len(checkpoints(tmp / "runs")) == 1
    assert (tmp / "results" / "distractors_smoke.png").stat().st_size > 1000


@pytest.mark.parametrize("script, args, message", [
    ("fov_table", dict(factors=("agent hue",)), "--factors \\['agent hue'\\] unknown for swm/TwoRoom-v1"),
    ("fov_table", dict(envs=(PUSHT,), factors=("wall color",)), "allowed: \\['agent color'"),
    ("fov_table", dict(baselines=("lewm", "hiql")), "unknown \\['hiql'\\]"),
    ("color_wheel", dict(saturations=(0.5, 1.5)), "each must be in \\(0, 1\\]"),
    ("color_wheel", dict(baselines=("tdmpc3",)), "unknown \\['tdmpc3'\\]"),
    ("distractors", dict(counts=(0, 9)), "distractors.count.*outside the allowed range \\[0.0, 8.0\\]"),
    ("distractors", dict(counts=(0, 2), color=(0, 0, 300)), "distractors.color.*outside the allowed range"),
])
def test_bad_input_fails_before_anything_runs(tmp_path, load_script, script, args, message):
    bench = load_script(f"benchmarks/{script}.py")
    with pytest.raises(ValueError, match=message):
        bench.main(bench.Args(smoke=True, out_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"),
                              **args))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_fov_table_puts_the_papers_numbers_beside_ours(load_script):
    fov = load_script("benchmarks/fov_table.py")
    rows = [{"factor": f, "shift": "-", "models": {"lewm": {"mean": 40.0, "std": 2.0}}, "floors": {"no-op": [4.0]}}
            for f in ("none", "agent color", "anchor position")]
    table = fov.record_table(PUSHT, rows, ("lewm",), "50")
    assert table["columns"][-3:] == ["paper LeWM", "paper PLDM", "paper DINO-WM"]
    assert [row[-3:] for row in table["rows"]] == [[50.8, 50.8, 20.0], [12, 8, 18], [32, 18, 4]]
    assert table["rows"][0][2:6] == [40.0, 2.0, 4.0, None]


def test_curve_fit_matches_hand_computed_least_squares(load_script):
    fit = load_script("benchmarks/distractors.py")
    # y = 1, 2, 2, 0 at n = 0..3; with the orthogonal polynomials 1, n - 1.5, (n - 1.5)^2 - 1.25 the least-squares
    # quadratic is 0.95 + 1.95 n - 0.75 n^2 (residuals .05, -.15, .15, -.05: SSE 0.05) and the line 1.7 - 0.3 n
    # (SSE 2.3); SST 2.75, so adjusted R² = 1 - 0.05 / 2.75 * 3 / 1 and 1 - 2.3 / 2.75 * 3 / 2
    result = fit.compare_fits([0, 1, 2, 3], [1, 2, 2, 0])
    quad, lin = result["quadratic"], result["linear"]
    np.testing.assert_allclose(quad["coef"], [0.95, 1.95, -0.75], atol=1e-12)
    np.testing.assert_allclose(lin["coef"], [1.7, -0.3], atol=1e-12)
    assert quad["sse"] == pytest.approx(0.05) and lin["sse"] == pytest.approx(2.3)
    assert quad["r2"] == pytest.approx(1 - 0.05 / 2.75) and lin["r2"] == pytest.approx(1 - 2.3 / 2.75)
    assert quad["adj_r2"] == pytest.approx(1 - 0.05 / 2.75 * 3) and lin["adj_r2"] == pytest.approx(1 - 2.3 / 2.75 * 1.5)
    assert result["better"] == "quadratic"
    # repeated seeds at each n: the same coefficients as the means
    np.testing.assert_allclose(fit.fit_polynomial([0, 0, 1, 1, 2, 2, 3, 3], [0, 2, 2, 2, 1, 3, 0, 0], 2)["coef"],
                               [0.95, 1.95, -0.75], atol=1e-12)
    # an exact line: both fits are perfect, the tie goes to the line; the quadratic's c is 0
    line = fit.compare_fits([0, 1, 2, 3, 4], [100, 90, 80, 70, 60])
    assert line["better"] == "linear" and line["quadratic"]["coef"][2] == pytest.approx(0, abs=1e-9)
    # too few distinct counts for a quadratic, or no variation in success: nothing to compare
    assert fit.compare_fits([0, 2], [50, 0])["better"] == "undetermined"
    assert fit.fit_polynomial([0, 2], [50, 0], 2)["coef"] is None
    assert fit.compare_fits([0, 1, 2, 3], [0, 0, 0, 0])["better"] == "undetermined"
