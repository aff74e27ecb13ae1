"""Every baseline's training under failure (subprocesses, tiny flags): NaN gradients stop training naming the step
and keep the last good checkpoint finite; a checkpoint resumed on another env's data is refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_dinowm
import test_lewm
import test_pldm
import test_tdmpc2
import torch

from swm_core.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# baseline -> (dataset writer, tiny flags, extra flags, clip_grad_norm_ call at step 3: TD-MPC2 clips twice a step)
CASES = {
    "lewm": (test_lewm.write_dataset, test_lewm.TINY_FLAGS, [], 4),
    "pldm": (test_pldm.write_dataset, test_pldm.TINY_FLAGS, [], 4),
    "dinowm": (test_dinowm.write_dataset, test_dinowm.TINY_FLAGS, [], 4),
    "tdmpc2": (test_tdmpc2.write_point_dataset, test_tdmpc2.TINY_FLAGS, ["--success-distance", "2.5"], 7),
}


def run(*cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize("algo", list(CASES))
def test_nan_gradients_stop_training_and_other_env_data_is_refused(tmp_path, algo):
    write, tiny, extra, call = CASES[algo]
    script = ROOT / "baselines" / f"{algo}_train.py"
    data = write(tmp_path / "d.lance")
    ckpt_path = tmp_path / "a" / "model.pt"
    proc = run(ROOT / "tests" / "poison_grads.py", call, script, "--dataset", data, "--total-steps", 6, "--output",
               ckpt_path, *tiny, *extra)  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert f"gradient norm became nan at step 3; the last good checkpoint is {ckpt_path}" in proc.stderr, proc.stderr
    ckpt = read_checkpoint(ckpt_path)  # the step-3 checkpoint, written before the poisoned update
    assert ckpt["extra"]["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())

    trained_on = ckpt["extra"]["env_id"]
    other = write(tmp_path / "other.lance", env_id="swm/Other-v0")
    proc = run(script, "--dataset", other, "--total-steps", 6, "--resume", ckpt_path, "--output",
               tmp_path / "b" / "model.pt", *tiny, *extra)  # fmt: skip
    assert proc.returncode != 0
    assert f"was trained on {trained_on!r}, but the env of --dataset {other} is 'swm/Other-v0'" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_track_without_an_api_key_logs_offline(tmp_path):
    write, tiny, extra, _ = CASES["lewm"]
    data = write(tmp_path / "d.lance")
    out = tmp_path / "run" / "model.pt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no key, no mode: as a new user
    env.update(OMP_NUM_THREADS="1", WANDB_SILENT="true")
    proc = subprocess.run([sys.executable, str(ROOT / "baselines" / "lewm_train.py"), "--dataset", str(data),
                           "--total-steps", "2", "--track", "--output", str(out), *tiny, *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), proc.stderr

