"""Chrysos, Favaro & Zafeiriou (2019) two-step training: networks, optimisers, steps, sheet.

Step 1 (`HourglassTask`): the stacked hourglass restores the blurry face, L1 to the sharp
temporal middle frame summed over the stacks. Step 2 (`ChrysosGANTask`): the hourglass is
frozen; per batch one discriminator step (blurry + sharp real, blurry + G_bl output fake),
then one generator step on L_cGAN + 100 L1 + 100 L1(gradients) + 8 L_projection
+ 100 L1(G_s(sharp), sharp) (`ChrysosLossWeights`, params). The paper gives neither the
optimiser nor the batch size: the defaults are pix2pix's (Adam, lr 2e-4, betas (0.5, 0.999),
constant lr), whose loss weights the paper follows; Adam with lr 2.5e-4 (Newell et al.'s
rate) for the hourglass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.models.chrysos.losses import ChrysosLossWeights, discriminator_loss, generator_loss, hourglass_loss
from pipeline.models.chrysos.gan import PAPER_LEVELS, ChrysosGenerator, PatchDiscriminator, levels_for
from pipeline.models.chrysos.hourglass import StackedHourglass

from pipeline.train import ddp
from pipeline.train.config import (LoopConfig, RuntimeConfig, check_loss_weights, check_optimiser, check_types,
                                   networks_of, split_section, take)
from pipeline.dataset.manifest import middle_position
from pipeline.dataset.manifest import load_at
from pipeline.train.data import Batch
from pipeline.models.device import Runtime
from pipeline.train.optim import add_adam, set_requires_grad, update
from pipeline.models.common import discriminator_accuracy, to_float, to_uint8
from pipeline.sheets import Cell

HG_KEYS = ("lr", "betas", "lr_decay", "hourglass", "sheet")
GAN_KEYS = ("lr", "betas", "lr_decay", "pixel_warmup", "generator", "discriminator", "loss", "sheet")


# ------------------------------------------------------------------ step 1: hourglass


@dataclass(frozen=True)
class HourglassConfig:
    loop: LoopConfig
    runtime: RuntimeConfig
    hourglass: dict  # StackedHourglass arguments
    lr: float = 2.5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay: float = 1.0
    sheet: dict | None = None

    @classmethod
    def from_params(cls, section: dict, name: str = "train_chrysos_hg") -> "HourglassConfig":
        loop, runtime, own = split_section(section, name, HG_KEYS)
        hourglass = networks_of(own, name, {"hourglass": "hourglass"})["hourglass"]
        check_types(cls, own, name)
        check_optimiser(own, name)
        return cls(loop, runtime, hourglass, **own)


class HourglassTask:
    loss_names = ("loss", "l1")  # loss: L1 summed over stacks; l1: the final stack's
    progress_keys = loss_names

    def __init__(self, cfg: HourglassConfig, runtime: Runtime, env: ddp.DistEnv):
        self.cfg, self.runtime, self.env = cfg, runtime, env
        self.hourglass = runtime.module(StackedHourglass(**cfg.hourglass))
        self.lr_warmup = cfg.loop.lr_warmup
        self.modules, self.optimizers, self.schedulers = {"hourglass": self.hourglass}, {}, {}
        add_adam(self, "hourglass", self.hourglass, cfg.lr, cfg.betas, cfg.lr_decay)
        self._hg = runtime.compiled(self.hourglass)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        with self.runtime.autocast():
            outputs = self._hg(batch.blurry)
        outputs = [o.float() for o in outputs]
        loss = hourglass_loss(outputs, batch.sharp)
        update(self, "hourglass", loss)
        return {"loss": loss.detach(), "l1": (outputs[-1] - batch.sharp).abs().mean().detach()}

    def predict(self, batch: Batch) -> torch.Tensor:
        """The last stack's restoration (validation; the caller sets eval mode)."""
        with self.runtime.autocast():
            return self.hourglass(batch.blurry)[-1]


def load_hourglass(path: str | Path, device: torch.device) -> tuple[StackedHourglass, dict]:
    """The step-1 weights file -> frozen hourglass on `device`, and its constructor arguments;
    ModelFileError naming the file when it is missing, of another kind or damaged."""
    from pipeline.models.weights import read_weights

    saved = read_weights(path, ("chrysos_hourglass",), "train it first: `dvc repro train_chrysos_hg`, or pass "
                         "--hourglass with the path of train_chrysos_hg's weights")
    config = saved["config"]["hourglass"]
    hourglass = StackedHourglass(**config)
    hourglass.load_state_dict(saved["state_dicts"]["hourglass"])
    return hourglass.to(device).freeze(), config


# ------------------------------------------------------------------ step 2: cGAN


@dataclass(frozen=True)
class ChrysosGANConfig:
    loop: LoopConfig
    runtime: RuntimeConfig
    generator: dict  # ChrysosGenerator arguments
    discriminator: dict  # PatchDiscriminator arguments
    weights: ChrysosLossWeights
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay: float = 1.0
    pixel_warmup: int = 0  # steps without D, the adversarial and projection terms
    sheet: dict | None = None

    @classmethod
    def from_params(cls, section: dict, name: str = "train_chrysos_gan") -> "ChrysosGANConfig":
        loop, runtime, own = split_section(section, name, GAN_KEYS)
        weights = take(ChrysosLossWeights, own.pop("loss", {}), f"{name}.loss")
        check_loss_weights(weights, f"{name}.loss")
        nets = networks_of(own, name, {"generator": "chrysos_generator", "discriminator": "chrysos_discriminator"})
        check_types(cls, own, name)
        check_optimiser(own, name)
        generator = nets["generator"]
        levels = generator.get("levels")  # an integer in [2, 7] (the paper's seven at 256), or null: follow the resolution
        multiple = 2 ** (levels or (levels_for(loop.resolution) if loop.resolution else PAPER_LEVELS))
        if "crop_size" in section and loop.crop_size % multiple:
            raise ValueError(f"{name}.crop_size = {loop.crop_size}: must be a multiple of {multiple} (the generator's "
                             f"{int(np.log2(multiple))} stride-2 levels)")
        return cls(loop, runtime, generator, nets["discriminator"], weights, **own)

    def at_resolution(self, size: int) -> "ChrysosGANConfig":
        """This config with `generator.levels` set: as given, or (null) the levels that take a
        size x size image to a 2 x 2 bottleneck (seven at 256, the paper's; five at 64)."""
        if self.generator.get("levels") is not None:
            return self
        return replace(self, generator={**self.generator, "levels": levels_for(size)})

    def build_generator(self) -> ChrysosGenerator:
        return ChrysosGenerator(**self.generator)


def crop_size_warning(crop_size: int, image_size: int, levels: int = PAPER_LEVELS,
                      name: str = "train_chrysos_gan") -> str | None:
    """Why a training crop smaller than the images it will restore hurts this generator, or None
    (no warning once the deepest maps are 2x2 or larger, or when the images allow no larger crop).

    `levels` stride-2 layers take a 2**levels crop down to 1x1 maps (256 at seven levels: 2x2);
    the batch-norm statistics of those layers, gathered over a batch of single values in
    training, do not hold for the larger maps of a whole image at test time. Measured (issue 11):
    after 2.5 + 2.5 minutes of training at 128 on 256 images, G_bl scored -10.2 dB below the
    blurry input in eval mode."""
    multiple = 2 ** levels
    fits = image_size - image_size % multiple  # the largest crop the images allow
    if crop_size >= 2 * multiple or crop_size >= fits:  # deepest maps >= 2x2, or no larger crop fits
        return None
    return (f"{name}.crop_size = {crop_size} is below the {image_size}px training images: the generator's deepest "
            f"layers see {crop_size // multiple}x{crop_size // multiple} maps in training and "
            f"{-(-image_size // multiple)}x{-(-image_size // multiple)} on whole images, and their batch-norm "
            f"statistics do not carry over (G_bl fell 10 dB below its blurry input that way); set crop_size to {fits}")


class ChrysosGANTask:
    loss_names = ("g_total", "g_adversarial", "g_l1", "g_gradient", "g_projection", "g_reconstruction",
                  "d_total", "d_real", "d_fake", "d_real_acc", "d_fake_acc")
    progress_keys = ("g_l1", "g_total", "d_total")

    def __init__(self, cfg: ChrysosGANConfig, runtime: Runtime, env: ddp.DistEnv, hourglass: StackedHourglass):
        self.cfg, self.runtime, self.env = cfg, runtime, env
        self.hourglass = runtime.module(hourglass.freeze())
        self.generator = runtime.module(cfg.build_generator())
        self.discriminator = runtime.module(PatchDiscriminator(in_channels=6, **cfg.discriminator))
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers, self.schedulers = {}, {}
        for name, module in self.modules.items():
            add_adam(self, name, module, cfg.lr, cfg.betas, cfg.lr_decay)
        self._hg, self._g, self._d = (runtime.compiled(m) for m in (self.hourglass, self.generator, self.discriminator))
        self.step = 0  # steps taken (fit sets it on resume): the pixel warm-up's clock
        self.lr_warmup = cfg.loop.lr_warmup

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = self.runtime.images
        with torch.no_grad(), self.runtime.autocast():
            coarse = self._hg(batch.blurry)[-1]
        with self.runtime.autocast():
            restored = self._g(batch.blurry, coarse)  # forward = G_bl
            reconstruction = self.generator.forward_sharp(batch.sharp)
        restored, reconstruction = restored.float(), reconstruction.float()
        self.step += 1
        if self.step <= self.cfg.pixel_warmup:  # warm-up: no D step, no adversarial / projection terms
            g_loss, g_parts = generator_loss(restored, batch.sharp, reconstruction, None, None, None,
                                             self.cfg.weights)
            update(self, "generator", g_loss)
            zero = g_loss.detach().new_zeros(())
            return {**{f"g_{k}": v for k, v in g_parts.items()}, **dict.fromkeys(self.loss_names[6:], zero)}

        set_requires_grad(self.discriminator, True)
        with self.runtime.autocast():
            real_logits, _ = self._d(batch.blurry, batch.sharp)
            fake_logits, _ = self._d(batch.blurry, images(restored.detach()))
        d_loss, d_parts = discriminator_loss(real_logits.float(), fake_logits.float())
        accuracy = discriminator_accuracy(real_logits, fake_logits)
        update(self, "discriminator", d_loss)

        set_requires_grad(self.discriminator, False)
        with self.runtime.autocast():
            fake_logits, fake_features = self._d(batch.blurry, images(restored))
            with torch.no_grad():
                _, real_features = self._d(batch.blurry, batch.sharp)
        g_loss, g_parts = generator_loss(restored, batch.sharp, reconstruction, fake_logits.float(),
                                         fake_features.float(), real_features.float(), self.cfg.weights)
        update(self, "generator", g_loss)
        set_requires_grad(self.discriminator, True)
        return {**{f"g_{k}": v for k, v in g_parts.items()}, **{f"d_{k}": v for k, v in d_parts.items()}, **accuracy}

    @property
    def adversarial(self) -> bool:
        """Past the pixel warm-up: D trains and the adversarial and projection terms count."""
        return self.step > self.cfg.pixel_warmup

    def predict(self, batch: Batch) -> torch.Tensor:
        """G_bl's restoration (validation; the caller sets eval mode)."""
        with self.runtime.autocast():
            return self.generator(batch.blurry, self.hourglass(batch.blurry)[-1])


@torch.no_grad()
def chrysos_sheet(hourglass: StackedHourglass, generator: ChrysosGenerator | None, rows: list[dict],
                  root: str | Path, device: torch.device, resolution: int | None = None) -> list[list[Cell]]:
    """One sheet row per sample: blurry | hourglass output | G_bl output (step 2) | sharp middle
    (at the training `resolution`)."""
    was_training = generator.training if generator is not None else False
    hg_training = hourglass.training
    hourglass.eval()
    if generator is not None:
        generator.eval()
    sheet = []
    for row in rows:
        blurry, sharp = load_at(row, [middle_position(row)], root, resolution)
        sharp = sharp[0]
        b = to_float(blurry, device)
        coarse = hourglass(b)[-1]
        cells = [(blurry, f"blurry N={row['n_frames']}"), (to_uint8(coarse[0]), "hourglass")]
        if generator is not None:
            cells.append((to_uint8(generator.forward_blurry(b, coarse)[0]), "G_bl"))
        sheet.append(cells + [(sharp, "sharp (middle)")])
    hourglass.train(hg_training)
    if generator is not None:
        generator.train(was_training)
    return sheet


def loss_weights_record(cfg: ChrysosGANConfig) -> dict:
    return asdict(cfg.weights)
