"""Training throughput: images/s and peak GPU memory, fp32 eager vs the fast path.

    python benchmarks/train_speed.py              # GPU: paper-size CFMD-GAN, full Chrysos, 256x256, batch 8
    python benchmarks/train_speed.py --compile    # the fast path also torch.compile'd
    python benchmarks/train_speed.py --small      # tiny networks and crops: a CPU smoke test

Each model runs its real training step (the `pipeline.train` tasks: G and D updates, losses,
optimisers) on random images already on the device, so data loading is not measured. Fast
path = bf16 autocast + channels_last (+ torch.compile with --compile); fp32 = plain eager.
`--warmup` steps are excluded (cuDNN autotuning, compilation), then `--steps` are timed.
Ratios compare the two modes measured in the same run. Models: `cfmd` (generator base width
32, 8 ContAda blocks per level, U-Net discriminator 64/4, no LPIPS), `chrysos_hg` (2-stack
hourglass, width 64), `chrysos_gan` (full-width two-pathway generator and discriminator on
a frozen hourglass).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.models.cfmd.deform_conv import deform_conv_backend
from pipeline.models.chrysos.hourglass import StackedHourglass
from pipeline.models.cfmd.task import CFMDConfig, CFMDTask
from pipeline.models.chrysos.task import ChrysosGANConfig, ChrysosGANTask, HourglassConfig, HourglassTask
from pipeline.train.data import Batch
from pipeline.train.ddp import DistEnv
from pipeline.models.device import Runtime

FULL = {
    "cfmd": ({"generator": {"base_width": 32, "num_blocks": 8}, "discriminator": {"width": 64, "depth": 4}}, 256),
    "chrysos_hg": ({"hourglass": {"n_stacks": 2, "depth": 4, "width": 64}}, 256),
    "chrysos_gan": ({"generator": {"width_multiplier": 1.0}, "discriminator": {"width_multiplier": 1.0}}, 256),
}
SMALL = {
    "cfmd": ({"generator": {"base_width": 8, "num_blocks": 1}, "discriminator": {"width": 16, "depth": 3}}, 64),
    "chrysos_hg": ({"hourglass": {"n_stacks": 1, "depth": 3, "width": 16}}, 128),
    "chrysos_gan": ({"generator": {"width_multiplier": 1 / 16}, "discriminator": {"width_multiplier": 1 / 16}}, 128),
}


def build(name: str, section: dict, runtime: Runtime, hourglass_size: dict):
    env = DistEnv()
    if name == "cfmd":
        return CFMDTask(CFMDConfig.from_params({**section, "perceptual": "none"}), runtime, env, None)
    if name == "chrysos_hg":
        return HourglassTask(HourglassConfig.from_params(section), runtime, env)
    return ChrysosGANTask(ChrysosGANConfig.from_params(section), runtime, env, StackedHourglass(**hourglass_size))


def measure(name, section, size, batch_size, runtime, warmup, steps, hourglass_size) -> tuple[float, float | None]:
    """(images per second, peak GPU memory in MiB or None on CPU)."""
    torch.manual_seed(0)
    task = build(name, section, runtime, hourglass_size)
    dev = runtime.device
    images = [runtime.images(torch.rand(batch_size, 3, size, size, device=dev)) for _ in range(2)]
    u = torch.rand(batch_size, device=dev)
    batch = Batch(images[0], images[1], u, 1 - u)
    cuda = dev.type == "cuda"
    for _ in range(warmup):
        task.train_step(batch)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        task.train_step(batch)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    del task, batch, images
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return steps * batch_size / seconds, peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny networks and crops (CPU smoke test)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks on the fast path")
    p.add_argument("--batch-size", type=int, default=None, help="default 8 (2 with --small)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5, 1 with --small)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20, 2 with --small)")
    p.add_argument("--models", nargs="+", default=list(FULL), choices=list(FULL))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    configs = SMALL if args.small else FULL
    batch_size = args.batch_size or (2 if args.small else 8)
    warmup = args.warmup if args.warmup is not None else (1 if args.small else 5)
    steps = args.steps or (2 if args.small else 20)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fast = "bf16+channels_last" + ("+compile" if args.compile else "")
    modes = {"fp32 eager": Runtime(device, None, False, False),
             fast: Runtime(device, torch.bfloat16, True, args.compile)}
    name_dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name_dev}, torch {torch.__version__}, deform conv {deform_conv_backend()}, "
          f"batch {batch_size}, warm-up {warmup}, timed steps {steps}{', small networks' if args.small else ''}")
    hourglass_size = configs["chrysos_hg"][0]["hourglass"]
    for name in args.models:
        section, size = configs[name]
        results = {}
        for mode, runtime in modes.items():
            results[mode] = measure(name, section, size, batch_size, runtime, warmup, steps, hourglass_size)
            ips, peak = results[mode]
            mem = f"{peak:9.0f} MiB peak" if peak is not None else "  (no GPU memory on CPU)"
            print(f"{name:12s} {size}x{size}  {mode:28s} {ips:9.2f} images/s {mem}")
        (base_ips, base_mem), (fast_ips, fast_mem) = results.values()
        ratio = f"{name:12s} fast/fp32: speed x{fast_ips / base_ips:.2f}"
        if base_mem:
            ratio += f", memory x{fast_mem / base_mem:.2f}"
        print(ratio)


if __name__ == "__main__":
    main()
