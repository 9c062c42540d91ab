"""Can the discriminators tell a sharp face from a blurred one? (issue 38)

    python benchmarks/discriminator.py                      # 400 steps per discriminator, 64 x 64
    python benchmarks/discriminator.py --steps 200 --variants cfmd-mean cfmd-sum

The adversarial terms help the generator only if D separates real pairs (blurry, sharp) from
restored ones. Here D alone trains against the restoration of an untrained, identity generator
(the blurry image itself: what both generators return at their start, and within 0.05 dB of what
they return after 10 CPU minutes), with the training stage's own loss, optimiser settings and data
(the CPU configuration's items, 64 x 64, batch 16, Adam at the preset's lr with its warm-up). Every
`--every` steps it is scored on the held-out validation video: the share of real and of fake pairs
it classifies right (global logit for CFMD-GAN's U-Net D, the mean patch logit for Chrysos' PatchGAN)
and the mean logit gap real - fake. Variants:

- cfmd-mean: CFMD-GAN's U-Net discriminator as params.yaml builds it (global logit from the mean of
  the bottleneck features);
- cfmd-sum:  the same with BigGAN's / Schonfeld et al.'s sum pooling;
- chrysos:   Chrysos et al.'s patch discriminator at the CPU width (0.25).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.learning import merged  # noqa: E402
from pipeline.models.cfmd.discriminator import UNetDiscriminator  # noqa: E402
from pipeline.models.cfmd.losses import CFMDLossWeights, discriminator_loss as cfmd_d_loss  # noqa: E402
from pipeline.models.chrysos.gan import PatchDiscriminator  # noqa: E402
from pipeline.models.chrysos.losses import discriminator_loss as chrysos_d_loss  # noqa: E402
from pipeline.stage import load_params  # noqa: E402
from pipeline.train.augment import RandomScaleCrop  # noqa: E402
from pipeline.train.config import LoopConfig  # noqa: E402
from pipeline.train.data import (AUGMENT, Batch, EpochSampler, FaceDeblurDataset, derive_seed, make_loader,  # noqa: E402
                                 training_and_validation_rows)
from pipeline.train.ddp import DistEnv  # noqa: E402
from pipeline.train.optim import update  # noqa: E402

VARIANTS = ("cfmd-mean", "cfmd-sum", "chrysos")


class DiscriminatorOnly:
    """One discriminator and its Adam, trained on (blurry, sharp) real / (blurry, blurry) fake pairs."""

    def __init__(self, variant: str, lr: float, lr_warmup: int, width: int, depth: int):
        if variant == "chrysos":
            self.net = PatchDiscriminator(in_channels=6, width_multiplier=0.25)
        else:
            self.net = UNetDiscriminator(6, width, depth, pooling=variant.split("-")[1])
        self.variant, self.env, self.lr_warmup = variant, DistEnv(), lr_warmup
        self.modules = {"discriminator": self.net}
        self.optimizers = {"discriminator": torch.optim.Adam(self.net.parameters(), lr=lr, betas=(0.9, 0.999))}

    def logits(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        real, fake = self.net(batch.blurry, batch.sharp), self.net(batch.blurry, batch.blurry)
        if self.variant == "chrysos":
            return real[0].mean(dim=(1, 2, 3)), fake[0].mean(dim=(1, 2, 3))
        return real.global_logit.flatten(), fake.global_logit.flatten()

    def step(self, batch: Batch) -> None:
        real, fake = self.net(batch.blurry, batch.sharp), self.net(batch.blurry, batch.blurry)
        if self.variant == "chrysos":
            loss, _ = chrysos_d_loss(real[0], fake[0])
        else:
            loss, _ = cfmd_d_loss(real, fake, batch.u, CFMDLossWeights())
        update(self, "discriminator", loss)

    @torch.no_grad()
    def score(self, batches: list[Batch]) -> dict:
        self.net.eval()
        real, fake = zip(*(self.logits(b) for b in batches))
        self.net.train()
        real, fake = torch.cat(real), torch.cat(fake)
        return {"real_acc": float((real > 0).float().mean()), "fake_acc": float((fake < 0).float().mean()),
                "gap": float(real.mean() - fake.mean())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--preset", default="presets/cpu-gan.yaml")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--out", default="reports/adversarial/discriminator.json")
    args = p.parse_args(argv)
    import yaml

    params = merged(load_params(path="params.yaml"), yaml.safe_load(Path(args.preset).read_text()))
    section = params["train_cfmd"]
    loop = LoopConfig(**{k: v for k, v in section.items() if k in LoopConfig.__dataclass_fields__})
    rows, held = training_and_validation_rows(Path(args.root), loop.methods, loop.validation_video)
    train = FaceDeblurDataset(rows, Path(args.root), target="middle", resolution=loop.resolution).preload(progress=False)
    valid = FaceDeblurDataset(held, Path(args.root), target="middle", resolution=loop.resolution)
    from torch.utils.data import default_collate

    items = [valid[(i, i)] for i in range(min(len(valid), 128))]
    valid_batches = [Batch.from_items(default_collate(items[i:i + 32]), torch.device("cpu")) for i in range(0, len(items), 32)]
    per_epoch = len(train) // loop.batch_size
    augment = RandomScaleCrop(loop.crop_size, loop.scale, loop.flip, loop.colour)
    results = {}
    for variant in args.variants:
        torch.manual_seed(0)
        d = DiscriminatorOnly(variant, section["lr"], section["lr_warmup"], section["discriminator"]["width"],
                              section["discriminator"]["depth"])
        sampler = EpochSampler(len(train), per_epoch * loop.batch_size, loop.seed)
        loader = make_loader(train, sampler, loop.batch_size, 0, loop.seed)
        history, step, started = [(0, d.score(valid_batches))], 0, time.perf_counter()
        while step < args.steps:
            sampler.set_epoch(step // per_epoch)
            for items_ in loader:
                batch = Batch.from_items(items_, torch.device("cpu"))
                d.step(augment(batch, torch.Generator().manual_seed(derive_seed(loop.seed, AUGMENT, 0, step))))
                step += 1
                if step % args.every == 0:
                    history.append((step, d.score(valid_batches)))
                if step >= args.steps:
                    break
        results[variant] = history
        print(f"\n{variant}: {args.steps} steps in {time.perf_counter() - started:.0f} s "
              f"(real acc / fake acc / logit gap on {len(items)} validation pairs)")
        for s, r in history:
            print(f"  {s:5d}  {r['real_acc']:.2f} / {r['fake_acc']:.2f} / {r['gap']:+.4f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out}; mean accuracy at the end: "
          + ", ".join(f"{v} {np.mean([h[-1][1]['real_acc'], h[-1][1]['fake_acc']]):.2f}" for v, h in results.items()))


if __name__ == "__main__":
    main()
