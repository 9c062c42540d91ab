"""CFMD-GAN training (Lee, Han & Heo 2022, section 4.4): networks, optimisers, one step, sheet.

Per batch: one discriminator step, L_D = L_enc + L_dec + 0.05 L_Q on (blurry, sharp) and
(blurry, restored), then one generator step, L_G = 0.05 L_ar + 0.1 L_adv + L_pix + 0.01 L_per
(`pipeline.models.cfmd.losses`; weights are params). The first `pixel_warmup` steps train G on
L_pix (+ L_per) alone, with no D step (issue 11; the paper's preset sets 0). Adam, lr 1e-4, betas (0.9, 0.999), lr x 0.99 per
epoch, for both networks. Images are in [0, 1] in training and at inference (the authors'
code mixed [-1, 1] and [0, 1]). L_per is LPIPS when `perceptual` resolves to it
(`pipeline.models.cfmd.losses.resolve_perceptual`); the choice and its reason go into the run metadata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.models.cfmd.losses import CFMDLossWeights, discriminator_loss, generator_loss
from pipeline.models.cfmd.generator import CFMDGenerator
from pipeline.models.cfmd.discriminator import DiscriminatorOutput, UNetDiscriminator

from pipeline.train import ddp
from pipeline.train.config import (LoopConfig, RuntimeConfig, check_loss_weights, check_optimiser, check_types,
                                   networks_of, split_section, take)
from pipeline.dataset.manifest import load_at
from pipeline.train.data import Batch
from pipeline.models.device import Runtime
from pipeline.train.optim import add_adam, set_requires_grad, update
from pipeline.models.common import discriminator_accuracy, to_float, to_uint8
from pipeline.sheets import Cell

OWN_KEYS = ("lr", "betas", "lr_decay", "pixel_warmup", "generator", "discriminator", "loss", "perceptual", "lpips_net", "sheet")


@dataclass(frozen=True)
class CFMDConfig:
    loop: LoopConfig
    runtime: RuntimeConfig
    generator: dict  # CFMDGenerator arguments
    discriminator: dict  # UNetDiscriminator arguments
    weights: CFMDLossWeights
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay: float = 0.99
    pixel_warmup: int = 0  # steps trained on L_pix (+ L_per) alone before D and the adversarial terms start
    perceptual: str = "auto"
    lpips_net: str = "alex"
    sheet: dict | None = None

    @classmethod
    def from_params(cls, section: dict, name: str = "train_cfmd") -> "CFMDConfig":
        loop, runtime, own = split_section(section, name, OWN_KEYS)
        weights = take(CFMDLossWeights, own.pop("loss", {}), f"{name}.loss")
        check_loss_weights(weights, f"{name}.loss")
        nets = networks_of(own, name, {"generator": "cfmd_generator", "discriminator": "cfmd_discriminator"})
        check_types(cls, own, name)
        check_optimiser(own, name)
        return cls(loop, runtime, nets["generator"], nets["discriminator"], weights, **own)

    def build_generator(self) -> CFMDGenerator:
        return CFMDGenerator(**self.generator)

    def build_discriminator(self) -> UNetDiscriminator:
        return UNetDiscriminator(in_channels=6, **self.discriminator)


def _float(out: DiscriminatorOutput) -> DiscriminatorOutput:
    return DiscriminatorOutput(*(t.float() for t in out))


class CFMDTask:
    loss_names = ("g_total", "g_pix", "g_adv", "g_ar", "g_per", "d_total", "d_enc", "d_dec", "d_q", "d_real_acc",
                  "d_fake_acc")
    progress_keys = ("g_pix", "g_total", "d_total")

    def __init__(self, cfg: CFMDConfig, runtime: Runtime, env: ddp.DistEnv, perceptual: nn.Module | None):
        self.cfg, self.runtime, self.env = cfg, runtime, env
        self.generator = runtime.module(cfg.build_generator())
        self.discriminator = runtime.module(cfg.build_discriminator())
        self.perceptual = perceptual.to(runtime.device) if perceptual is not None else None
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers, self.schedulers = {}, {}
        for name, module in self.modules.items():
            add_adam(self, name, module, cfg.lr, cfg.betas, cfg.lr_decay)
        self._g, self._d = runtime.compiled(self.generator), runtime.compiled(self.discriminator)
        self.step = 0  # steps taken (fit sets it on resume): the pixel warm-up's clock
        self.lr_warmup = cfg.loop.lr_warmup

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        w = self.cfg.weights
        with self.runtime.autocast():
            outputs = self._g(batch.blurry, batch.u)
        outputs = [o.float() for o in outputs]
        restored = outputs[-1]
        self.step += 1
        if self.step <= self.cfg.pixel_warmup:  # warm-up: G on L_pix (+ L_per), D untouched
            g_loss, g_parts = generator_loss(outputs, batch.sharp, batch.u, None, w, self.perceptual)
            update(self, "generator", g_loss)
            zero = g_loss.detach().new_zeros(())
            return {**g_parts, **dict.fromkeys(self.loss_names[5:], zero)}

        set_requires_grad(self.discriminator, True)
        with self.runtime.autocast():
            real = self._d(batch.blurry, batch.sharp)
            fake = self._d(batch.blurry, self.runtime.images(restored.detach()))
        d_loss, d_parts = discriminator_loss(_float(real), _float(fake), batch.u, w)
        d_parts.update(discriminator_accuracy(real.global_logit, fake.global_logit))
        update(self, "discriminator", d_loss)

        set_requires_grad(self.discriminator, False)
        with self.runtime.autocast():
            fake = self._d(batch.blurry, self.runtime.images(restored))
        g_loss, g_parts = generator_loss(outputs, batch.sharp, batch.u, _float(fake), w, self.perceptual)
        update(self, "generator", g_loss)
        set_requires_grad(self.discriminator, True)
        return {**g_parts, **d_parts}

    @property
    def adversarial(self) -> bool:
        """Past the pixel warm-up: D trains and the adversarial terms count."""
        return self.step > self.cfg.pixel_warmup

    def predict(self, batch: Batch) -> torch.Tensor:
        """The restored frames at each item's u (validation; the caller sets eval mode)."""
        x, (h, w) = batch.blurry, batch.blurry.shape[-2:]
        x = torch.nn.functional.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        with self.runtime.autocast():
            return self.generator(x, batch.u)[-1][..., :h, :w]


def positions_at(row: dict, u_values) -> list[int]:
    """FMR positions whose u is nearest to each value."""
    u = np.asarray(row["u"])
    return [int(np.abs(u - v).argmin()) for v in u_values]


@torch.no_grad()
def cfmd_sheet(generator: CFMDGenerator, rows: list[dict], root: str | Path, device: torch.device,
               u_values, resolution: int | None = None) -> list[list[Cell]]:
    """Per sample two sheet rows: blurry + restorations at each u; the ground truth below them
    (at the training `resolution`)."""
    was_training = generator.training
    generator.eval()
    sheet = []
    for row in rows:
        positions = positions_at(row, u_values)
        blurry, sharp = load_at(row, positions, root, resolution)
        u = torch.tensor(list(u_values), dtype=torch.float32, device=device)
        restored = generator(to_float(blurry, device).expand(len(u), -1, -1, -1).contiguous(), u)[-1]
        sheet.append([(blurry, f"blurry N={row['n_frames']}")]
                     + [(to_uint8(r), f"u={v:g}") for r, v in zip(restored, u_values)])
        sheet.append([None] + [(s, f"GT u={row['u'][p]:.2f}") for s, p in zip(sharp, positions)])
    generator.train(was_training)
    return sheet


def config_record(cfg: CFMDConfig) -> dict:
    """JSON-friendly constructor arguments and loss weights (weights file and metadata)."""
    return {"generator": cfg.generator, "discriminator": cfg.discriminator, "loss_weights": asdict(cfg.weights)}
