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


def update(task, name: str, loss: torch.Tensor) -> None:
    """One optimiser step of task.modules[name] on `loss`."""
    opt = task.optimizers[name]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    ddp.average_gradients(task.modules[name], task.env)
    opt.step()


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)
