"""Run a training script and kill it with SIGKILL (kill -9: no cleanup, no flushing) at a chosen point.

Usage (the tests run it as a subprocess):
    python tests/kill_at.py step K baselines/<algo>_train.py [flags...]   dies as step K + 1 starts (K steps done)
    python tests/kill_at.py save K baselines/<algo>_train.py [flags...]   dies while checkpointing step K: after
                                                                          the training state, before model.pt
The scripts call swm_core.train_state.seed_step(seed, step, rank) as every step starts and
swm_core.checkpoint.save_checkpoint after writing the training state; both are wrapped before the script runs.
"""

import os
import runpy
import signal
import sys

import swm_core.checkpoint
import swm_core.train_state

where, at, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if where not in ("step", "save"):
    sys.exit(f"kill_at.py: where must be 'step' or 'save', got {where!r}")
real_seed_step, real_save_checkpoint = swm_core.train_state.seed_step, swm_core.checkpoint.save_checkpoint


def seed_step(seed, step, rank=0):
    if where == "step" and step == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_seed_step(seed, step, rank)


def save_checkpoint(path, model, config, stats=None, **extra):
    if where == "save" and extra.get("step") == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save_checkpoint(path, model, config, stats, **extra)


swm_core.train_state.seed_step = seed_step
swm_core.checkpoint.save_checkpoint = save_checkpoint
sys.argv = [script, *sys.argv[4:]]
runpy.run_path(script, run_name="__main__")
