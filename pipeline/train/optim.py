"""Optimiser plumbing shared by the tasks: Adam with per-epoch exponential lr decay, one
update (zero grad, backward, average over processes, step), and switching gradients off."""
from __future__ import annotations

import torch
from torch import nn

from pipeline.train import ddp


def add_adam(task, name: str, module: nn.Module, lr: float, betas, lr_decay: float) -> None:
    """task.optimizers[name] = Adam over `module`; task.schedulers[name] = lr x lr_decay per epoch."""
    task.optimizers[name] = torch.optim.Adam(module.parameters(), lr=lr, betas=tuple(betas))
    task.schedulers[name] = torch.optim.lr_scheduler.ExponentialLR(task.optimizers[name], gamma=lr_decay)


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
