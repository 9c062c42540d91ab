"""Learning against wall-clock time: PSNR / SSIM gain over the blurry input on the test split.

    python benchmarks/learning.py                      # CPU: budgets 2 5 15 30 minutes, both models
    python benchmarks/learning.py --budgets 1 2        # shorter budgets (minutes)
    python benchmarks/learning.py --paper-size         # paper-size networks and 256 crops (GPU: 1 3 10)
    python benchmarks/learning.py --models cfmd --budgets 0.5 --samples 8   # a quick look

For each model and budget a fresh run trains with the params.yaml section (train_cfmd;
train_chrysos_hg then train_chrysos_gan, each half the budget) until the wall-clock budget is
spent (`steps` is ignored), then restores `--samples` test samples (spread over N) and scores
PSNR / SSIM against the blurry input: CFMD-GAN at u = 0.5 against the centre FMR frame
(`centre_fmr`), the Chrysos model against the temporal middle frame (`middle`). Prints one table
row per (model, budget) and writes a CSV and a PNG curve (gain against minutes) to --out.
Training runs in-process with the stage's task (`pipeline.models.*.task`), the stage's data
loader and augmentation, and no DVCLive log or checkpoints.
"""
from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.eval.selection import centre_position, load_for_eval, spread_over_n
from pipeline.metrics.pixel import psnr, ssim
from pipeline.models.common import to_float, to_uint8
from pipeline.models.device import resolve_runtime
from pipeline.stage import load_params
from pipeline.train import checkpoint
from pipeline.train.augment import RandomScaleCrop
from pipeline.train.data import (AUGMENT, Batch, EpochSampler, FaceDeblurDataset, derive_seed, make_loader,
                                 middle_position, training_rows)
from pipeline.train.ddp import DistEnv
from pipeline.train.optim import step_schedulers

PAPER = {
    "train_cfmd": {"generator": {"base_width": 32, "num_blocks": 8}, "discriminator": {"width": 64, "depth": 4},
                   "crop_size": 256, "batch_size": 8},
    "train_chrysos_hg": {"hourglass": {"n_stacks": 2, "depth": 4, "width": 64}, "crop_size": 256, "batch_size": 8},
    "train_chrysos_gan": {"generator": {"width_multiplier": 1.0}, "discriminator": {"width_multiplier": 1.0},
                          "crop_size": 256, "batch_size": 8},
}


def merged(section: dict, overlay: dict) -> dict:
    out = copy.deepcopy(section)
    for k, v in overlay.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out


def train_for(task, cfg, root: Path, target: str, seconds: float, runtime, methods) -> int:
    """Train `task` until `seconds` of wall-clock pass; returns the steps taken."""
    loop = cfg.loop
    rows = training_rows(root, methods)
    dataset = FaceDeblurDataset(rows, root, target=target, degrade=loop.degrade)
    per_epoch = max(1, (loop.epoch_samples or len(dataset)) // loop.batch_size)
    sampler = EpochSampler(len(dataset), per_epoch * loop.batch_size, loop.seed)
    loader = make_loader(dataset, sampler, loop.batch_size, cfg.runtime.num_workers, loop.seed,
                         pin_memory=runtime.device.type == "cuda")
    augment = RandomScaleCrop(loop.crop_size, loop.scale, loop.flip)
    step, start = 0, time.perf_counter()
    next_report = start + 60
    while True:
        sampler.set_epoch(step // per_epoch)
        for items in loader:
            batch = Batch.from_items(items, runtime.device)
            batch = augment(batch, torch.Generator().manual_seed(derive_seed(loop.seed, AUGMENT, 0, step)))
            batch = batch._replace(blurry=runtime.images(batch.blurry), sharp=runtime.images(batch.sharp))
            task.train_step(batch)
            step += 1
            if step % per_epoch == 0:
                step_schedulers(task)
            now = time.perf_counter()
            if now >= next_report:  # progress: a long budget shows its pace
                print(f"  ... {(now - start) / 60:.1f} of {seconds / 60:g} min, {step} steps", flush=True)
                next_report += 60
            if now - start >= seconds:
                if runtime.device.type == "cuda":
                    torch.cuda.synchronize()
                return step


@torch.no_grad()
def score(restore, rows: list[dict], root: Path, table: str) -> dict:
    """Mean PSNR / SSIM of the restorations and of the blurry input against each row's target."""
    out = {"psnr": [], "ssim": [], "blurry_psnr": [], "blurry_ssim": []}
    for row in rows:
        position = centre_position(row) if table == "centre_fmr" else middle_position(row)
        blurry, sharp = load_for_eval(row, root, [position])
        restored = restore(blurry)
        target = sharp[position][None]
        out["psnr"].append(psnr(restored[None], target)[0])
        out["ssim"].append(ssim(restored[None], target)[0])
        out["blurry_psnr"].append(psnr(blurry[None], target)[0])
        out["blurry_ssim"].append(ssim(blurry[None], target)[0])
    return {k: float(np.mean(v)) for k, v in out.items()}


def run_cfmd(params: dict, root: Path, minutes: float, runtime, rows) -> tuple[int, dict]:
    from pipeline.models.cfmd.task import CFMDConfig, CFMDTask

    cfg = CFMDConfig.from_params({**params["train_cfmd"], "perceptual": "none"})
    checkpoint.seed_everything(cfg.loop.seed)
    task = CFMDTask(cfg, runtime, DistEnv(), None)
    steps = train_for(task, cfg, root, "moment", 60 * minutes, runtime, cfg.loop.methods)
    generator = task.generator.eval()

    def restore(blurry):
        x = runtime.images(to_float(blurry, runtime.device))
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        with runtime.autocast():
            out = generator(x, torch.full((1,), 0.5, device=runtime.device))[-1]
        return to_uint8(out.float()[0, :, :h, :w].clamp(0, 1))

    return steps, score(restore, rows, root, "centre_fmr")


def run_chrysos(params: dict, root: Path, minutes: float, runtime, rows) -> tuple[int, dict]:
    from pipeline.models.chrysos.gan import SIZE_MULTIPLE
    from pipeline.models.chrysos.task import ChrysosGANConfig, ChrysosGANTask, HourglassConfig, HourglassTask

    hg_cfg = HourglassConfig.from_params(params["train_chrysos_hg"])
    checkpoint.seed_everything(hg_cfg.loop.seed)
    hg_task = HourglassTask(hg_cfg, runtime, DistEnv())
    steps = train_for(hg_task, hg_cfg, root, "middle", 30 * minutes, runtime, hg_cfg.loop.methods)
    gan_cfg = ChrysosGANConfig.from_params(params["train_chrysos_gan"])
    gan_task = ChrysosGANTask(gan_cfg, runtime, DistEnv(), hg_task.hourglass)
    steps += train_for(gan_task, gan_cfg, root, "middle", 30 * minutes, runtime, gan_cfg.loop.methods)
    hourglass, generator = hg_task.hourglass.eval(), gan_task.generator.eval()
    multiple = max(SIZE_MULTIPLE, 2 ** int(hg_cfg.hourglass.get("depth", 4)))

    def restore(blurry):
        x = runtime.images(to_float(blurry, runtime.device))
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="replicate")
        with runtime.autocast():
            out = generator(x, hourglass(x)[-1])
        return to_uint8(out.float()[0, :, :h, :w].clamp(0, 1))

    return steps, score(restore, rows, root, "middle")


def plot(results: list[dict], path: Path) -> None:
    """Gain against minutes, one colour per model, PSNR left and SSIM right (drawn with OpenCV:
    no matplotlib needed on the GPU machine)."""
    import cv2

    width, height, pad = 420, 300, 50
    image = np.full((height, 2 * width, 3), 255, np.uint8)
    colours = {"cfmd": (200, 80, 0), "chrysos": (0, 120, 220)}
    minutes = [r["minutes"] for r in results]
    x_max = max(minutes) * 1.1 or 1.0
    for panel, (key, label) in enumerate((("psnr_gain", "PSNR gain (dB)"), ("ssim_gain", "SSIM gain"))):
        values = [r[key] for r in results] + [0.0]
        low, high = min(values), max(values)
        span = (high - low) or 1e-3
        low, high = low - 0.1 * span, high + 0.1 * span
        ox = panel * width

        def to_px(m, v):
            return (int(ox + pad + (width - 2 * pad) * m / x_max),
                    int(height - pad - (height - 2 * pad) * (v - low) / (high - low)))

        cv2.rectangle(image, (ox + pad, pad), (ox + width - pad, height - pad), (0, 0, 0), 1)
        cv2.line(image, to_px(0, 0), to_px(x_max, 0), (160, 160, 160), 1)
        cv2.putText(image, label, (ox + pad, pad - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        cv2.putText(image, "minutes", (ox + width // 2 - 25, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        cv2.putText(image, f"{high:+.3g}", (ox + 2, pad + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(image, f"{low:+.3g}", (ox + 2, height - pad), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        for i, model in enumerate(sorted({r["model"] for r in results})):
            rs = sorted((r for r in results if r["model"] == model), key=lambda r: r["minutes"])
            points = [to_px(r["minutes"], r[key]) for r in rs]
            colour = colours.get(model, (0, 0, 0))
            for a, b in zip(points, points[1:]):
                cv2.line(image, a, b, colour, 2)
            for pt, r in zip(points, rs):
                cv2.circle(image, pt, 4, colour, -1)
                cv2.putText(image, f"{r['minutes']:g}", (pt[0] + 4, pt[1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1)
            cv2.putText(image, model, (ox + width - pad - 70, pad + 18 * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        colour, 1)
    cv2.imwrite(str(path), image)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=float, nargs="+", default=None,
                   help="training minutes per run (default: CPU 2 5 15 30; GPU 1 3 10)")
    p.add_argument("--models", nargs="+", default=["cfmd", "chrysos"], choices=["cfmd", "chrysos"])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--samples", type=int, default=30, help="test samples scored (spread over N)")
    p.add_argument("--paper-size", action="store_true", help="paper-size networks, 256 crops, batch 8")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="reports/learning")
    args = p.parse_args(argv)

    params = load_params(path=args.params)
    if args.paper_size:
        params = {k: merged(v, PAPER.get(k, {})) for k, v in params.items()}
    sections = ("train_cfmd", "train_chrysos_hg", "train_chrysos_gan")
    runtime_cfg = params["train_cfmd"].get("runtime", {})
    runtime = resolve_runtime(args.device, runtime_cfg.get("amp", "auto"), runtime_cfg.get("channels_last", "auto"))
    budgets = args.budgets or ([1, 3, 10] if runtime.device.type == "cuda" else [2, 5, 15, 30])
    root = Path(args.root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"device {runtime.device}; budgets {budgets} min; sections {sections}", flush=True)
    print(f"{'model':8s} {'min':>5s} {'steps':>6s} {'PSNR':>7s} {'blurry':>7s} {'gain':>7s} {'SSIM':>6s} "
          f"{'blurry':>6s} {'gain':>7s}", flush=True)
    for model in args.models:
        methods = params["train_cfmd" if model == "cfmd" else "train_chrysos_gan"].get("methods", ["fixed"])
        methods = [methods] if isinstance(methods, str) else list(methods)
        rows = [r for m in methods for r in spread_over_n(training_rows(root, [m], split=args.split),
                                                            args.samples // len(methods))]
        for minutes in budgets:
            started = time.perf_counter()
            steps, s = (run_cfmd if model == "cfmd" else run_chrysos)(params, root, minutes, runtime, rows)
            r = {"model": model, "minutes": minutes, "steps": steps, "samples": len(rows), **s,
                 "psnr_gain": s["psnr"] - s["blurry_psnr"], "ssim_gain": s["ssim"] - s["blurry_ssim"],
                 "seconds_total": time.perf_counter() - started}
            results.append(r)
            print(f"{model:8s} {minutes:5g} {steps:6d} {r['psnr']:7.3f} {r['blurry_psnr']:7.3f} {r['psnr_gain']:+7.3f} "
                  f"{r['ssim']:6.4f} {r['blurry_ssim']:6.4f} {r['ssim_gain']:+7.4f}", flush=True)
    with open(out / "learning.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    plot(results, out / "learning.png")
    print(f"wrote {out / 'learning.csv'} and {out / 'learning.png'}")


if __name__ == "__main__":
    main()
