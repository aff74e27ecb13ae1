"""Run a training script with NaN gradients at one optimisation step while its loss stays finite.

Usage (the tests run it as a subprocess): python tests/poison_grads.py K baselines/<algo>_train.py [flags...]
fills every gradient with NaN at the K-th call of ``torch.nn.utils.clip_grad_norm_`` (1-based), then runs the
script as ``__main__``. A script must stop there, naming the step, and keep its last checkpoint finite.
"""

import runpy
import sys

import torch

call_to_poison, script = int(sys.argv[1]), sys.argv[2]
real_clip = torch.nn.utils.clip_grad_norm_
calls = 0


def poisoned_clip(parameters, *args, **kwargs):
    global calls
    parameters = list(parameters)
    calls += 1
    if calls == call_to_poison:
        for p in parameters:
            if p.grad is not None:
                p.grad.fill_(float("nan"))
    return real_clip(parameters, *args, **kwargs)


torch.nn.utils.clip_grad_norm_ = poisoned_clip
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
