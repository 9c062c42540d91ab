"""Why the paper-size CFMD-GAN run on a GPU collapsed (-15.7 dB in 306 steps), measured on this CPU (issue 38).

    python benchmarks/gan_collapse.py                       # all arms, 200 steps each
    python benchmarks/gan_collapse.py --arms gpu-run guarded --steps 300 --size 128

The GPU run trained CFMD-GAN with the paper's objective from the first step (pixel_warmup 0), the
paper's loss weights, params.yaml's lr of the time (1e-3) and no lr warm-up, at 256 x 256, batch 8.
Each arm here repeats that at a size this CPU runs for a few hundred steps in minutes (64 x 64, batch
8, the generator at half the paper's width and a quarter of its blocks, params.yaml's discriminator:
on this 2-core machine the U-Net discriminator alone takes 0.6 s a step at 64 x 64, so 128 x 128 with
the paper's widths would take hours), from the same seed and data, changing one thing:

- gpu-run:        the GPU run's settings, the collapse guard off (only a non-finite loss stops it);
- no-adversarial: the same with the discriminator and the adversarial terms off (pixel warm-up for ever);
- no-ar:          the adversarial term on, the u-regression term L_ar off;
- lr-warmup:      the same as gpu-run with the lr warm-up of today's params (lr_warmup 200);
- guarded:        gpu-run with the collapse guard on (collapse.max_drop 1 dB, retry at lr x 0.1).

Every `--validate-every` steps: the held-out video's PSNR gain over the blurry input, the mean of
each loss term since the last check, the discriminator's accuracy on real and restored pairs, and
what the guard did. Prints a table per arm; writes collapse.json and collapse.png (validation gain
against steps, one line per arm) to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.learning import Clock, Trainer, build, datasets, merged, parse_override  # noqa: E402
from pipeline.models.device import resolve_runtime  # noqa: E402
from pipeline.stage import load_params  # noqa: E402
from pipeline.train.guard import TrainingCollapsed  # noqa: E402

OFF = {"max_drop": 1.0e9, "action": "stop"}  # no guard: only a non-finite loss ends the arm
ARMS = {
    "gpu-run": {"collapse": OFF},
    "no-adversarial": {"collapse": OFF, "pixel_warmup": 10 ** 9},
    "no-ar": {"collapse": OFF, "loss": {"ar": 0.0}},
    "lr-warmup": {"collapse": OFF, "lr_warmup": 200},
    "guarded": {"collapse": {"max_drop": 1.0, "action": "retry", "lr_factor": 0.1, "retries": 2}},
}
TERMS = ("g_pix", "g_adv", "g_ar", "d_enc", "d_dec", "d_q")


def arm_params(params: dict, arm: str, args) -> dict:
    section = {"resolution": args.size, "crop_size": args.size, "batch_size": 8, "scale": [1.0, 1.0],
               "lr": 1.0e-3, "lr_warmup": 0, "pixel_warmup": 0, "validate_every": args.validate_every,
               "generator": {"base_width": args.width, "num_blocks": args.blocks},
               "discriminator": {"width": args.d_width, "depth": args.d_depth},
               "loss": {"enc": 1.0, "dec": 1.0, "q": 0.05, "ar": 0.05, "adv": 0.1, "pix": 1.0},
               "seed": args.seed}
    out = merged(params, {"train_cfmd": merged(section, ARMS[arm])})
    for override in args.set:
        out = merged(out, parse_override(override, out))
    return out


def run_arm(arm: str, params: dict, root: Path, runtime, steps: int, train=None, held=None) -> dict:
    task, loop, target, _ = build("cfmd", params, runtime)
    if train is None:
        train, held = datasets(root, loop, target)
    trainer, clock = Trainer(task, loop, runtime, train, held), Clock()
    stopped = None
    started = time.perf_counter()
    try:
        trainer.run(clock, steps=steps)
    except TrainingCollapsed as e:
        stopped = str(e)
    return {"arm": arm, "steps": trainer.step, "seconds": round(time.perf_counter() - started, 1),
            "validation": trainer.validator.history, "losses": trainer.losses, "discriminator": trainer.discriminator,
            "collapses": trainer.guard.events, "stopped": stopped, "train": train, "held": held}


def report(r: dict) -> None:
    print(f"\n{r['arm']}: {r['steps']} steps in {r['seconds']:.0f} s" + (f"; STOPPED: {r['stopped']}" if r["stopped"] else ""))
    print(f"  {'step':>5s} {'val gain':>9s} " + " ".join(f"{t:>8s}" for t in TERMS) + f" {'D real':>7s} {'D fake':>7s}")
    losses, accuracy = dict(r["losses"]), {s: (a, b) for s, a, b in r["discriminator"]}
    for step, gain in r["validation"]:
        terms = losses.get(step, {})
        a, b = accuracy.get(step, (float("nan"), float("nan")))
        print(f"  {step:5d} {gain:+9.2f} " + " ".join(f"{terms.get(t, float('nan')):8.4f}" for t in TERMS)
              + f" {a:7.2f} {b:7.2f}")
    for e in r["collapses"]:
        print(f"  guard at step {e['step']}: {e['reason']} -> {e['action']} (restored step {e['restored_step']}, "
              f"lr {e['lr']})")


def plot(results: list[dict], path: Path) -> None:
    import cv2

    w, h, pad = 720, 380, 60
    image = np.full((h, w, 3), 255, np.uint8)
    gains = [g for r in results for _, g in r["validation"]] + [0.0]
    low, high = max(min(gains), -20.0), max(gains) + 0.5
    x_max = max(max(s for s, _ in r["validation"]) for r in results) or 1

    def px(s, g):
        g = min(max(g, low), high)
        return int(pad + (w - 2 * pad) * s / x_max), int(h - pad - (h - 2 * pad) * (g - low) / (high - low))

    cv2.rectangle(image, (pad, pad), (w - pad, h - pad), (0, 0, 0), 1)
    cv2.line(image, px(0, 0), px(x_max, 0), (160, 160, 160), 1)
    cv2.putText(image, "CFMD-GAN, paper objective from step 0: validation PSNR gain (dB) against steps", (8, 24),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    for value in (high, 0.0, low):
        cv2.putText(image, f"{value:+.1f}", (8, px(0, value)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    cv2.putText(image, f"{x_max}", (w - pad - 20, h - pad + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    colours = [(200, 80, 0), (0, 150, 0), (150, 40, 150), (0, 120, 220), (0, 0, 200)]
    for i, r in enumerate(results):
        colour = colours[i % len(colours)]
        points = [px(s, g) for s, g in r["validation"]]
        for a, b in zip(points, points[1:]):
            cv2.line(image, a, b, colour, 2)
        for e in r["collapses"]:
            cv2.drawMarker(image, px(e["step"], low + 0.05 * (high - low)), colour, cv2.MARKER_TRIANGLE_UP, 10, 2)
        cv2.putText(image, r["arm"], (pad + 10 + 130 * i, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    cv2.imwrite(str(path), image)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=64, help="images and crops (the GPU run: 256)")
    p.add_argument("--width", type=int, default=16, help="generator base_width (paper 32)")
    p.add_argument("--blocks", type=int, default=2, help="generator num_blocks (paper 8)")
    p.add_argument("--d-width", type=int, default=16, help="discriminator width (Schonfeld et al. 64)")
    p.add_argument("--d-depth", type=int, default=3, help="(Schonfeld et al. 4)")
    p.add_argument("--validate-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--out", default="reports/adversarial/collapse")
    args = p.parse_args(argv)
    params, runtime = load_params(path=args.params), resolve_runtime("cpu", "none", False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, train, held = [], None, None
    for arm in args.arms:
        r = run_arm(arm, arm_params(params, arm, args), Path(args.root), runtime, args.steps, train, held)
        train, held = r.pop("train"), r.pop("held")  # the same preloaded items for every arm
        report(r)
        results.append(r)
        (out / "collapse.json").write_text(json.dumps({"args": vars(args), "arms": results}, indent=1, default=float) + "\n")
    plot(results, out / "collapse.png")
    print(f"\nwrote {out / 'collapse.json'} and {out / 'collapse.png'}")


if __name__ == "__main__":
    main()
