"""The README's examples run as written (a README that crashes is the most reported bug of its predecessor)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_python_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 2
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "no-op floor:" in out.stdout
    assert "torch.Size([16, 4, 64, 64, 3]) torch.Size([16, 4, 10])" in out.stdout


def test_readme_commands_are_the_ci_and_demo_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev,mujoco]' && .venv/bin/python -m pytest -q"
    assert test_cmd in README
    assert test_cmd in ci
    assert ".venv/bin/python scripts/demo.py" in README


def test_readme_main_job_runs_tiny(tmp_path):
    """The README's main job, end to end, with --tiny settings (the full run is ~15 minutes)."""
    out = subprocess.run([sys.executable, "scripts/demo.py", "--tiny", "--out-dir", str(tmp_path / "demo")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"success: \d+% \(no-op floor: \d+%, random floor: \d+%; cross-room: .+\)", last), last
    assert (tmp_path / "demo" / "cem_plan.mp4").stat().st_size > 0
    assert (tmp_path / "demo" / "lewm.pt").exists()
