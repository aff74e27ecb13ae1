"""The design card's first use: copy a training script and a solver script into your own folder, change them, run
them with flags. Here the copies live outside the repository and import a copy of swm_core that has no
baselines/ or solvers/ beside it (as after a non-editable `pip install .`)."""

import os
import shutil
import subprocess
import sys

import pytest

from swm_core import RandomPolicy, World


@pytest.fixture(scope="module")
def lab(tmp_path_factory, root):
    """A user's folder with copied (and edited) scripts, a site folder holding only swm_core, and tiny datasets."""
    lab = tmp_path_factory.mktemp("my_lab")
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(root / "swm_core", site / "swm_core", ignore=shutil.ignore_patterns("__pycache__"))
    train = (root / "baselines" / "lewm_train.py").read_text()
    assert '    seed: int = 1\n' in train
    (lab / "my_lewm.py").write_text(train.replace('    seed: int = 1\n', '    seed: int = 3\n'))  # a user's edit
    shutil.copy(root / "solvers" / "cem_plan.py", lab / "my_cem.py")
    for name, episodes, seed in (("train.lance", 6, 0), ("eval.lance", 3, 100)):
        world = World("swm/TwoRoom-v1", num_envs=2, image_size=32, max_episode_steps=40, seed=seed)
        world.collect(str(lab / name), episodes=episodes, seed=seed, policy=RandomPolicy(seed=seed))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    return lab, site, env


def run(lab, env, *args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=lab, env=env, capture_output=True, text=True, timeout=timeout)


TRAIN = ["my_lewm.py", "--dataset", "train.lance", "--encoder", "conv", "--image-size", "32", "--conv-channels", "8",
         "16", "--latent-dim", "16", "--proj-hidden", "32", "--action-hidden", "16", "--pred-depth", "1",
         "--pred-heads", "2", "--pred-dim-head", "8", "--pred-mlp-dim", "32", "--history", "2", "--frameskip", "2",
         "--batch-size", "4", "--sigreg-num-proj", "16", "--val-fraction", "0.34", "--num-workers", "0",
         "--log-every", "1", "--val-every", "0", "--val-batches", "1", "--device", "cpu",
         "--output", "ckpt/model.pt"]
PLAN = ["my_cem.py", "--checkpoint", "ckpt/model.pt", "--dataset", "eval.lance", "--episodes", "2", "--num-envs",
        "2", "--num-samples", "8", "--topk", "2", "--iters", "1", "--horizon", "2", "--receding-horizon", "2",
        "--goal-offset", "6", "--eval-budget", "8", "--no-episodic"]


def test_copied_scripts_train_checkpoint_resume_and_plan(lab):
    lab, site, env = lab
    probe = run(lab, env, "-c", "import swm_core; print(swm_core.__file__)")
    assert probe.returncode == 0 and probe.stdout.strip().startswith(str(site)), probe.stdout + probe.stderr
    trained = run(lab, env, *TRAIN, "--total-steps", "2")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert (lab / "ckpt" / "model.pt").is_file()
    resumed = run(lab, env, *TRAIN, "--total-steps", "4", "--resume", "ckpt/model.pt")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    probe = run(lab, env, "-c", "from swm_core.checkpoint import read_checkpoint; c = read_checkpoint('ckpt/model.pt');"
                                "print(c['extra']['step'], c['script_path'], c['extra']['args']['seed'])")
    step, script_path, seed = probe.stdout.split()
    assert step == "4" and script_path == str((lab / "my_lewm.py").resolve()) and seed == "3", probe.stderr

    planned = run(lab, env, *PLAN)
    assert planned.returncode == 0, planned.stdout[-2000:] + planned.stderr[-3000:]
    table = planned.stdout.split("dataset protocol: swm/TwoRoom-v1, 2 episodes, budget 8, goal offset 6")[1]
    rows = [line.split()[0] for line in table.strip().splitlines()[1:]]
    assert rows == ["cem", "no-op", "random"], table

    # the model script changed after training: planning refuses, naming both files, unless told otherwise
    (lab / "my_lewm.py").write_text((lab / "my_lewm.py").read_text() + "\n# edited after training\n")
    refused = run(lab, env, *PLAN)
    assert refused.returncode != 0 and "source changed since training" in refused.stderr
    assert str((lab / "my_lewm.py").resolve()) in refused.stderr and "--allow-script-change" in refused.stderr
    allowed = run(lab, env, *PLAN, "--allow-script-change")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
