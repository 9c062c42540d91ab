"""What every model module shares: uint8 RGB images <-> float tensors, and parameter counts."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_float(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """HxWx3 uint8 RGB -> 1x3xHxW float in [0, 1] on `device` (a network's input)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float in [0, 1] (clamped, rounded) -> uint8 RGB: 3xHxW -> HxWx3, Bx3xHxW -> BxHxWx3."""
    out = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return out.movedim(-3, -1).cpu().numpy()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements; a parameter shared by several layers counts once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The share of real logits above 0 and of fake logits below 0 (detached): how well the
    discriminator tells the pairs apart (0.5 each at the equilibrium; 1 and 1: it wins outright, and
    the generator's adversarial gradient vanishes). The collapse guard watches them
    (pipeline.train.guard)."""
    return {"d_real_acc": (real_logits.detach() > 0).float().mean(),
            "d_fake_acc": (fake_logits.detach() < 0).float().mean()}
