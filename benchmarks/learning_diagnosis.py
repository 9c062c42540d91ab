"""Why training on the embedded data gains so little on its test split: four measurements.

    python benchmarks/learning_diagnosis.py              # about 10 minutes on 2 CPU cores
    python benchmarks/learning_diagnosis.py --samples 60 --steps 300 --train-seconds 0   # 1-3 only

1. Optimisation. One fixed batch of four 64x64 crops from strong-motion training windows (u = 0.5,
   the centre FMR frame as target) is overfitted for --steps steps, pixel loss only, Adam lr 1e-3:
   the CFMD-GAN generator of params.yaml (identity start) against a plain 4-layer residual CNN of
   width 32. If the generator climbs at least as fast as the plain CNN, nothing in our network,
   initialisation or loss slows learning down.
2. What a linear filter can do. A 7x7 filter (shared by the three channels) is fitted by least
   squares from blurry to centre-FMR target: on the training windows and applied to the test
   windows; on the test windows themselves (pooled, an oracle); and per test image (an oracle
   that knows each target). The per-image oracle bounds what one spatially uniform sharpening
   per image could gain; the pooled fits show how much of it is common to all images.
3. Where the error is. The share of the blurry image's squared error against its target that lies
   in the 10% of pixels where it is largest: a gain must come from there.
4. What a network learns from this data in minutes. The plain residual CNN (6 layers, width 32,
   identity start) is trained for --train-seconds on random 64x64 crops (batch 8, Adam lr 1e-3,
   Charbonnier loss) of the training windows, and again of the test windows that are not scored
   (an oracle: the same videos and people, overlapping frames), towards the centre FMR frame
   (CFMD-GAN's table) and towards the temporal middle frame (Chrysos et al.'s). The oracle bounds
   what more or better training data of this kind could add in that time; the gap between the two
   targets is what FMR's ordering by the eye corner's x costs when the head moves up and down.
   `--crops error` draws the crops where the blurry input differs from its target (training where
   the motion is) instead of uniformly.

Prints one block per measurement; no files written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.dataset.manifest import _read_rgb, centre_position, load_sharp, middle_position
from pipeline.eval.selection import spread_over_n
from pipeline.metrics.pixel import psnr
from pipeline.models.cfmd.generator import CFMDGenerator
from pipeline.models.cfmd.losses import charbonnier, multiscale_charbonnier
from pipeline.models.common import to_float, to_uint8
from pipeline.stage import load_params
from pipeline.train.data import training_rows

KERNEL = 7


def target_pairs(rows: list[dict], root: Path, position=centre_position) -> list[tuple[np.ndarray, np.ndarray]]:
    """(blurry, target) uint8 RGB of each row; the target is frame `position(row)` (default: the centre FMR frame)."""
    out = []
    for row in rows:
        blurry = _read_rgb(root / row["blurry_path"])
        out.append((blurry, load_sharp(row, [position(row)], blurry.shape[0], root)[0]))
    return out


class PlainResidualCNN(nn.Module):
    """conv-LReLU x (layers - 1) + conv, added to the input: the simplest deblurring network.
    `identity_start` zeroes the last conv, so the untrained network returns its input."""

    def __init__(self, width: int = 32, layers: int = 4, identity_start: bool = False):
        super().__init__()
        body: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(layers - 2):
            body += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*body, nn.Conv2d(width, 3, 3, padding=1))
        if identity_start:
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    def forward(self, x, u):
        return [x + self.body(x)]


def overfit(model: nn.Module, blurry: torch.Tensor, sharp: torch.Tensor, steps: int, eps: float) -> list[float]:
    """PSNR (dB) of the batch after each of the checkpoints steps // 6, steps // 2, steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    u = torch.full((len(blurry),), 0.5)
    marks, out = {steps // 6, steps // 2, steps}, []
    for step in range(1, steps + 1):
        outputs = model(blurry, u)
        loss = multiscale_charbonnier(outputs, sharp, eps) if len(outputs) > 1 else charbonnier(outputs[-1], sharp, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in marks:
            with torch.no_grad():
                mse = (model(blurry, u)[-1].clamp(0, 1) - sharp).pow(2).mean()
            out.append(float(-10 * torch.log10(mse)))
    return out


def filter_features(image: np.ndarray) -> np.ndarray:
    """(H*W*3, K*K): each pixel's KxK neighbourhood in its own channel, edge padded."""
    r = KERNEL // 2
    padded = np.pad(image.astype(np.float32), ((r, r), (r, r), (0, 0)), mode="edge")
    return sliding_window_view(padded, (KERNEL, KERNEL), axis=(0, 1)).reshape(-1, KERNEL * KERNEL)


def fit_filter(pairs, stride: int = 4) -> np.ndarray:
    """Least-squares KxK filter from blurry to target over every `stride`-th pixel of the pairs."""
    gram, rhs = np.zeros((KERNEL ** 2, KERNEL ** 2)), np.zeros(KERNEL ** 2)
    for blurry, sharp in pairs:
        # float64: the sums of squares over a 256x256 image overflow float32's precision
        f, y = filter_features(blurry)[::stride].astype(np.float64), sharp.astype(np.float64).reshape(-1)[::stride]
        gram += f.T @ f
        rhs += f.T @ y
    return np.linalg.solve(gram + 1e-3 * np.eye(KERNEL ** 2), rhs)


def apply_filter(weights: np.ndarray, image: np.ndarray) -> np.ndarray:
    return np.clip(filter_features(image) @ weights, 0, 255).round().astype(np.uint8).reshape(image.shape)


def mean_gain(restore, pairs) -> float:
    """Mean PSNR gain over the blurry input of `restore(blurry, target)` (a uint8 image) on the pairs."""
    gains = [psnr(restore(b, s)[None], s[None])[0] - psnr(b[None], s[None])[0] for b, s in pairs]
    return float(np.mean(gains))


def as_tensors(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.cat([to_float(b, "cpu") for b, _ in pairs]), torch.cat([to_float(s, "cpu") for _, s in pairs]))


class CropSampler:
    """(image, y, x) of random 64x64 crops: uniform, or with `crops == "error"` drawn with probability
    proportional to the blurry input's squared error in the crop (origins on an 8-pixel lattice):
    training where the motion is."""

    SIZE, GRID = 64, 8

    def __init__(self, blurry: torch.Tensor, sharp: torch.Tensor, crops: str, generator: torch.Generator):
        self.shape, self.crops, self.generator = blurry.shape, crops, generator
        if crops == "error":
            self.error = torch.nn.functional.avg_pool2d((blurry - sharp).pow(2).sum(1, keepdim=True), self.SIZE,
                                                        stride=self.GRID)
            self.weights = self.error.flatten().double() + 1e-12

    def __call__(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, _, h, w = self.shape
        if self.crops == "uniform":
            return (torch.randint(n, (count,), generator=self.generator),
                    torch.randint(h - self.SIZE + 1, (count,), generator=self.generator),
                    torch.randint(w - self.SIZE + 1, (count,), generator=self.generator))
        cells = torch.multinomial(self.weights, count, replacement=True, generator=self.generator)
        per_image = self.error[0].numel()
        rest = cells % per_image
        return cells // per_image, rest // self.error.shape[-1] * self.GRID, rest % self.error.shape[-1] * self.GRID


def train_plain(train_pairs, test_pairs, seconds: float, seed: int, crops: str = "uniform") -> tuple[float, int]:
    """Train a fresh `PlainResidualCNN` for `seconds` on random 64x64 crops (`CropSampler`) of
    `train_pairs`; returns (mean PSNR gain over the blurry input on `test_pairs`, steps taken)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = PlainResidualCNN(width=32, layers=6, identity_start=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    blurry, sharp = as_tensors(train_pairs)
    sample = CropSampler(blurry, sharp, crops, generator)
    u = torch.full((8,), 0.5)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        i, y, x = sample(8)
        b = torch.stack([blurry[k, :, r:r + 64, c:c + 64] for k, r, c in zip(i, y, x)])
        s = torch.stack([sharp[k, :, r:r + 64, c:c + 64] for k, r, c in zip(i, y, x)])
        loss = charbonnier(model(b, u)[-1], s, 1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    with torch.no_grad():
        return mean_gain(lambda b, s: to_uint8(model(to_float(b, "cpu"), u[:1])[-1][0]), test_pairs), steps


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--samples", type=int, default=60, help="test windows (spread over N; 60 as evaluate.max_samples.fixed)")
    p.add_argument("--steps", type=int, default=300, help="overfitting steps")
    p.add_argument("--train-seconds", type=float, default=120, help="each training of measurement 4 (0: skip it)")
    p.add_argument("--crops", choices=["uniform", "error"], default="uniform",
                   help="measurement 4's training crops: uniform, or where the blurry input's error is")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    root = Path(args.root)
    section = load_params("train_cfmd", path=args.params)["train_cfmd"]
    methods = ["fixed"]
    train_rows = training_rows(root, methods)
    test_rows = spread_over_n(training_rows(root, methods, split="test"), args.samples)
    motion = sorted(train_rows, key=lambda r: -(r.get("motion") or 0.0))[: max(4, len(train_rows) // 10)]

    print("1. overfitting one batch of four 64x64 crops (strongest-motion training windows), u = 0.5")
    batch = target_pairs([motion[i] for i in rng.choice(len(motion), 4, replace=False)], root)
    y0, x0 = (batch[0][0].shape[0] - 64) // 2, (batch[0][0].shape[1] - 64) // 2
    crops = [(b[y0:y0 + 64, x0:x0 + 64], s[y0:y0 + 64, x0:x0 + 64]) for b, s in batch]
    blurry, sharp = as_tensors(crops)
    start_db = float(-10 * torch.log10((blurry - sharp).pow(2).mean()))
    eps = section.get("loss", {}).get("charbonnier_eps", 1e-3)
    print(f"   blurry input {start_db:.2f} dB; PSNR after {args.steps // 6} / {args.steps // 2} / {args.steps} steps:")
    for name, model in (("CFMD-GAN generator (params.yaml)", CFMDGenerator(**section.get("generator", {}))),
                        ("plain residual CNN, 4 layers, width 32", PlainResidualCNN())):
        t0 = time.perf_counter()
        curve = overfit(model, blurry, sharp, args.steps, eps)
        print(f"   {name:40s} " + " / ".join(f"{v:.2f}" for v in curve) + f" dB  ({time.perf_counter() - t0:.0f} s)")

    print(f"\n2. a {KERNEL}x{KERNEL} linear filter, PSNR gain over the blurry input on {len(test_rows)} test windows")
    test = target_pairs(test_rows, root)
    train = target_pairs(train_rows[::3], root)
    fitted_train = fit_filter(train)
    fitted_test = fit_filter(test)
    for label, restore in (("fitted on the training windows:", lambda b, s: apply_filter(fitted_train, b)),
                           ("fitted on the test windows (pooled):", lambda b, s: apply_filter(fitted_test, b)),
                           ("fitted per test image (oracle):", lambda b, s: apply_filter(fit_filter([(b, s)], 1), b))):
        print(f"   {label:41s}{mean_gain(restore, test):+.3f} dB")

    print("\n3. where the blurry input's error is (test windows)")
    shares = []
    for b, s in test:
        err = ((b.astype(np.float64) - s) ** 2).sum(axis=2).ravel()
        top = np.sort(err)[::-1][: max(1, err.size // 10)]
        shares.append(top.sum() / max(err.sum(), 1e-12))
    blurry_db = [psnr(b[None], s[None])[0] for b, s in test]
    print(f"   blurry PSNR {np.mean(blurry_db):.2f} dB (min {np.min(blurry_db):.2f}); the 10% worst pixels hold "
          f"{100 * np.mean(shares):.0f}% of the squared error (median image {100 * np.median(shares):.0f}%)")

    if args.train_seconds <= 0:
        return
    scored = {r["sample_id"] for r in test_rows}
    oracle_rows = [r for r in training_rows(root, methods, split="test") if r["sample_id"] not in scored]
    print(f"\n4. a plain residual CNN trained {args.train_seconds:g} s ({args.crops} crops), PSNR gain on the "
          f"{len(test_rows)} test windows")
    for target, position in (("centre FMR", centre_position), ("middle", middle_position)):
        test = target_pairs(test_rows, root, position)
        for source, rows in (("training windows", train_rows), ("other test windows (oracle)", oracle_rows)):
            gain, steps = train_plain(target_pairs(rows, root, position), test, args.train_seconds, args.seed,
                                      args.crops)
            print(f"   target {target:10s} trained on {len(rows):4d} {source:28s} {gain:+.3f} dB  ({steps} steps)",
                  flush=True)


if __name__ == "__main__":
    main()
