"""Optimiser plumbing shared by the tasks: Adam with per-epoch exponential lr decay (stepped by
`step_schedulers`), one update (zero grad, backward, average over processes, step), and switching gradients off."""
from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from pipeline.train import ddp


def add_adam(task, name: str, module: nn.Module, lr: float, betas, lr_decay: float) -> None:
    """task.optimizers[name] = Adam over `module`; task.schedulers[name] = lr x lr_decay per epoch."""
    task.optimizers[name] = torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(betas))
    task.schedulers[name] = torch.optim.lr_scheduler.ExponentialLR(task.optimizers[name], gamma=lr_decay)


def step_schedulers(task) -> None:
    """One epoch of lr decay for every network. A network whose optimiser has not stepped yet (the
    discriminator during a pixel warm-up) decays too, so every lr follows the epoch count; PyTorch
    warns about that order, and the warning is silenced here because the order is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"),
                                category=UserWarning)
        for scheduler in task.schedulers.values():
            scheduler.step()


def update(task, name: str, loss: torch.Tensor, clip: float | None = None) -> None:
    """One optimiser step of task.modules[name] on `loss` (gradients clipped to norm `clip` if given).

    With `task.lr_warmup` = W > 0 the k-th step of each optimiser (k = 1, 2, ...) is taken at
    min(1, k / W) times its lr (the per-epoch decay applies on top): Adam's first steps move every
    weight by about lr whatever its gradient, and from an identity start (zero output convs) that
    throws the output far off (issue 22: CFMD-GAN's pixel loss jumped 13x on the second step)."""
    opt = task.optimizers[name]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    ddp.average_gradients(task.modules[name], task.env)
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(task.modules[name].parameters(), clip)
    warmup = getattr(task, "lr_warmup", 0)
    if not warmup:
        opt.step()
        return
    factor = min(1.0, (_steps_taken(opt) + 1) / warmup)
    lrs = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] *= factor
    opt.step()
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr


def _steps_taken(opt: torch.optim.Optimizer) -> int:
    """Steps an Adam optimiser has taken, from its state (so a resumed run continues the warm-up)."""
    for state in opt.state.values():
        if "step" in state:
            return int(state["step"])
    return 0


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)
