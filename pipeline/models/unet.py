"""A plain residual U-Net: the reference for what minutes of training can teach (issue 22).

Not one of the papers' models. `benchmarks/learning.py` trains it beside CFMD-GAN and the
Chrysos et al. model on the same data and budget, so a reader can tell "the data teaches little
in this time" from "our model learns less than it could". Output = input + a correction (the
last conv starts at zero: the untrained network is the identity, like both models' defaults).

Levels: `depth` 3x3-conv blocks (two convs + ReLU each) with 2x2 max pooling between them,
widths `width * 2**level`; bilinear upsampling, concatenation with the encoder block of the same
size, two convs; a 1x1 conv to the RGB correction. Input sides must be multiples of 2**(depth-1).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.train.optim import update


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class ResidualUNet(nn.Module):
    def __init__(self, width: int = 16, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth = {depth}: must be >= 1")
        widths = [width * 2 ** k for k in range(depth)]
        self.multiple = 2 ** (depth - 1)
        self.down = nn.ModuleList([_block(3 if k == 0 else widths[k - 1], w) for k, w in enumerate(widths)])
        self.up = nn.ModuleList([_block(widths[k] + widths[k + 1], widths[k]) for k in range(depth - 1)])
        self.out = nn.Conv2d(widths[0], 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise ValueError(f"input {tuple(x.shape[-2:])}: sides must be multiples of {self.multiple}")
        skips, h = [], x
        for k, block in enumerate(self.down):
            h = block(h if k == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for k in reversed(range(len(self.up))):
            h = F.interpolate(h, size=skips[k].shape[-2:], mode="bilinear", align_corners=False)
            h = self.up[k](torch.cat([h, skips[k]], dim=1))
        return x + self.out(h)


class ReferenceTask:
    """The U-Net as a training task (`pipeline.train.loop.TrainTask`): L1 (or MSE) to the target
    frame, Adam (with the tasks' lr warm-up), gradients clipped at norm 1 (an MSE recipe diverged
    without it, issue 22)."""

    loss_names = ("loss",)

    def __init__(self, runtime, width: int = 16, depth: int = 3, lr: float = 5e-4, loss: str = "l1",
                 lr_warmup: int = 0):
        from pipeline.train.ddp import DistEnv

        if loss not in ("l1", "mse"):
            raise ValueError(f"loss = {loss!r}: must be l1 or mse")
        self.runtime, self.loss, self.lr_warmup, self.env = runtime, loss, lr_warmup, DistEnv()
        self.unet = runtime.module(ResidualUNet(width, depth))
        self.modules = {"unet": self.unet}
        self.optimizers = {"unet": torch.optim.Adam(self.unet.parameters(), lr=lr)}
        self.schedulers = {}

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        with self.runtime.autocast():
            out = self.unet(batch.blurry)
        diff = out.float() - batch.sharp
        loss = (diff * diff).mean() if self.loss == "mse" else diff.abs().mean()
        update(self, "unet", loss, clip=1.0)
        return {"loss": loss.detach()}

    def predict(self, batch) -> torch.Tensor:
        with self.runtime.autocast():
            return self.unet(batch.blurry)
