"""Learning against CPU minutes: CFMD-GAN, the Chrysos et al. model and a plain U-Net reference,
PSNR / SSIM gain over the blurry input (issue 22).

    python benchmarks/learning.py                                   # presets/cpu-proof.yaml; 10 30 60 min
    python benchmarks/learning.py --budgets 2 5 --models unet       # a quick look
    python benchmarks/learning.py --models cfmd unet_centre         # CFMD-GAN beside a U-Net on its own target
    python benchmarks/learning.py --preset none --paper-size --budgets 2.5   # the GPU check's paper size
    python benchmarks/learning.py --replot reports/learning         # redraw learning.png from learning.json
    python benchmarks/learning.py --budgets 10 --set 'train_*.colour=[0.7,1.0]' --set 'train_*.methods=[fixed,vla]'
                                                                    # params overrides after the preset
    python benchmarks/learning.py --budgets 10 --models cfmd --train-videos talking-TedLieu_256 ...
                                                                    # a subset of the training videos (people vs gain)
    python benchmarks/learning.py --models unet --budgets 2 4 8 --fit-ceiling talking-WDA_KatieHill_000
                                                                    # how far the budget fits one face (not a result)

Each model trains once, for the largest budget, with the params.yaml section of its stage (the
preset applied), the stage's task, augmentation and sampler, on the training items decoded once
into memory at the preset's resolution (`FaceDeblurDataset.preload`); the reference U-Net
(`pipeline.models.unet`) trains on the same items. The Chrysos model trains its hourglass for the
first half of the first budget, then its generator. One training video is held out
(`validation_video`): it is scored every `validate_every` steps and the best weights are kept
(`pipeline.train.loop.Validation`). At each budget mark the kept weights are scored:

- on the test split, each model against its target (CFMD-GAN: u = 0.5 against the centre FMR
  frame, `centre_fmr`; Chrysos and the U-Net: the temporal middle frame, `middle`; `unet_centre`,
  the U-Net trained without flips on the centre FMR frame: `centre_fmr`, CFMD-GAN's like for like), with the
  evaluation's scoreboard (`pipeline.eval.tables.scoreboard`): every test video's gain over all
  its windows and over its blurriest third, the whole split's share of windows made worse by more
  than 0.1 dB, SSIM beside the blurry input's;
- on training windows (up to --train-samples of them): the gain there, so fit and transfer show apart.

Prints a table per mark, writes learning.csv and learning.png (gain against minutes for the
repeat-free test videos, each model and the reference) to --out.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.dataset.holds import repeat_free_videos  # noqa: E402
from pipeline.dataset.manifest import centre_position, middle_position  # noqa: E402
from pipeline.eval.selection import load_for_eval, spread_over_n  # noqa: E402
from pipeline.eval.scoring import IDENTICAL_PSNR, SHARP_INPUT  # noqa: E402
from pipeline.eval.tables import scoreboard, sharp_input  # noqa: E402
from pipeline.metrics.pixel import psnr, ssim  # noqa: E402
from pipeline.models.common import to_float, to_uint8  # noqa: E402
from pipeline.models.device import resolve_runtime  # noqa: E402
from pipeline.params import dotted_settings  # noqa: E402
from pipeline.stage import load_params  # noqa: E402
from pipeline.train import checkpoint  # noqa: E402
from pipeline.train.augment import RandomScaleCrop  # noqa: E402
from pipeline.train.data import (AUGMENT, Batch, EpochSampler, FaceDeblurDataset, derive_seed, make_loader,  # noqa: E402
                                 training_and_validation_rows, training_rows)
from pipeline.train.ddp import DistEnv  # noqa: E402
from pipeline.train.loop import Validation  # noqa: E402
from pipeline.train.optim import step_schedulers  # noqa: E402

PAPER = {
    "train_cfmd": {"generator": {"base_width": 32, "num_blocks": 8}, "discriminator": {"width": 64, "depth": 4},
                   "crop_size": 256, "batch_size": 8, "resolution": None},
    "train_chrysos_hg": {"hourglass": {"n_stacks": 2, "depth": 4, "width": 64}, "crop_size": 256, "batch_size": 8,
                         "resolution": None},
    "train_chrysos_gan": {"generator": {"width_multiplier": 1.0, "levels": None}, "discriminator": {"width_multiplier": 1.0},
                          "crop_size": 256, "batch_size": 8, "resolution": None},
    "evaluate": {"resolution": None},
}
TARGET = {"cfmd": "centre_fmr", "chrysos": "middle", "unet": "middle", "unet_centre": "centre_fmr"}


def merged(section: dict, overlay: dict) -> dict:
    out = copy.deepcopy(section)
    for k, v in overlay.items():
        out[k] = merged(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


class Clock:
    """Seconds of training (validation and scoring excluded)."""

    def __init__(self):
        self.spent = 0.0


class Trainer:
    """One task's step loop, as `pipeline.train.loop.fit` runs it (sampler, augmentation, lr decay
    per epoch), timed, with validation every `validate_every` steps."""

    def __init__(self, task, loop, runtime, dataset: FaceDeblurDataset, validation: FaceDeblurDataset | None):
        self.task, self.loop, self.runtime = task, loop, runtime
        self.per_epoch = max(1, (loop.epoch_samples or len(dataset)) // loop.batch_size)
        self.sampler = EpochSampler(len(dataset), self.per_epoch * loop.batch_size, loop.seed)
        self.loader = make_loader(dataset, self.sampler, loop.batch_size, 0, loop.seed)
        self.augment = RandomScaleCrop(loop.crop_size, loop.scale, loop.flip, loop.colour)
        self.validator = Validation(task, validation, runtime) if validation is not None and len(validation) else None
        if self.validator is not None:
            self.validator.step(0)  # the start is a candidate, as in fit()
        self.validate_every = loop.validate_every or self.per_epoch
        self.step, self.waited = 0, 0.0
        self._batches = None

    def _next(self):
        while True:
            if self._batches is None:
                self.sampler.set_epoch(self.step // self.per_epoch)
                self._batches = iter(self.loader)
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = None

    def run(self, clock: Clock, until: float) -> None:
        """Train until the clock reaches `until` seconds of training."""
        while clock.spent < until:
            started = time.perf_counter()
            items = self._next()
            self.waited += time.perf_counter() - started
            batch = Batch.from_items(items, self.runtime.device)
            batch = self.augment(batch, torch.Generator().manual_seed(derive_seed(self.loop.seed, AUGMENT, 0, self.step)))
            batch = batch._replace(blurry=self.runtime.images(batch.blurry), sharp=self.runtime.images(batch.sharp))
            self.task.train_step(batch)
            self.step += 1
            if self.step % self.per_epoch == 0:
                step_schedulers(self.task)
            clock.spent += time.perf_counter() - started
            if self.validator is not None and self.step % self.validate_every == 0:
                self.validator.step(self.step)  # not on the clock: scoring, like the marks

    def best(self):
        """A context in which the task's networks hold the weights validation chose (if any)."""
        trainer = self

        class _Best:
            def __enter__(self):
                self.saved = {k: copy.deepcopy(m.state_dict()) for k, m in trainer.task.modules.items()}
                if trainer.validator is not None:
                    trainer.validator.restore_best()
                for m in trainer.task.modules.values():
                    m.eval()

            def __exit__(self, *exc):
                for k, m in trainer.task.modules.items():
                    m.load_state_dict(self.saved[k])
                    m.train()

        return _Best()


def pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="replicate")


def restorer(model: str, task, runtime):
    """blurry uint8 HxWx3 -> restored uint8, with the task's networks as they are now."""

    @torch.no_grad()
    def restore(blurry: np.ndarray) -> np.ndarray:
        x = runtime.images(to_float(blurry, runtime.device))
        h, w = x.shape[-2:]
        with runtime.autocast():
            if model == "cfmd":
                out = task.generator(pad_to(x, 4), torch.full((1,), 0.5, device=runtime.device))[-1]
            elif model == "chrysos":
                xp = pad_to(x, max(task.generator.size_multiple, 16))
                out = task.generator(xp, task.hourglass(xp)[-1])
            else:
                out = task.unet(pad_to(x, task.unet.multiple))
        return to_uint8(out.float()[0, :, :h, :w].clamp(0, 1))

    return restore


def score(restore, rows: list[dict], root: Path, target: str, resolution: int | None, name: str) -> dict:
    """The evaluation's scoreboard of `restore` against the blurry input on `rows`."""
    records, sharp_records = [], []
    for row in rows:
        position = centre_position(row) if target == "centre_fmr" else middle_position(row)
        mid = middle_position(row)
        blurry, sharp = load_for_eval(row, root, sorted({position, mid}), resolution)
        target_image = sharp[position][None]
        for system, image in ((name, restore(blurry)), ("blurry", blurry)):
            records.append({"sample_id": row["sample_id"], "video_id": row["video_id"], "target_position": position,
                            "system": system, "psnr": float(psnr(image[None], target_image)[0]),
                            "ssim": float(ssim(image[None], target_image)[0])})
        kept = restore(sharp[mid])[None]  # the no-harm row: the sharp middle frame as the input
        sharp_records.append({"table": SHARP_INPUT, "system": name, "ssim": float(ssim(kept, sharp[mid][None])[0]),
                              "psnr": min(float(psnr(kept, sharp[mid][None])[0]), IDENTICAL_PSNR)})
    return {**scoreboard(records, name), "sharp_input": sharp_input(sharp_records, name)}


def build(model: str, params: dict, runtime):
    """(task, loop settings, target, the Chrysos hourglass task or None) of `model`."""
    if model == "cfmd":
        from pipeline.models.cfmd.task import CFMDConfig, CFMDTask

        cfg = CFMDConfig.from_params({**params["train_cfmd"], "perceptual": "none"})
        checkpoint.seed_everything(cfg.loop.seed)
        return CFMDTask(cfg, runtime, DistEnv(), None), cfg.loop, "moment", None
    from pipeline.models.chrysos.task import HourglassConfig, HourglassTask

    hg_cfg = HourglassConfig.from_params(params["train_chrysos_hg"])
    checkpoint.seed_everything(hg_cfg.loop.seed)
    if model in ("unet", "unet_centre"):
        from pipeline.models.unet import ReferenceTask

        task = ReferenceTask(runtime, **params["_reference"], lr_warmup=hg_cfg.loop.lr_warmup)
        if model == "unet":
            return task, hg_cfg.loop, "middle", None
        # the centre FMR frame is not mirror-invariant (pipeline.train.data): no flips
        return task, dataclasses.replace(hg_cfg.loop, flip=False), "centre", None
    return None, hg_cfg.loop, "middle", HourglassTask(hg_cfg, runtime, DistEnv())


def datasets(root: Path, loop, target: str, ceiling: str | None = None,
             only: list[str] | None = None) -> tuple[FaceDeblurDataset, FaceDeblurDataset]:
    """The training items (preloaded) and the validation video's. With `ceiling`, a test video:
    its own windows train and nothing is held out, so the last weights are scored on the windows
    they were fitted to. That is a ceiling on what the budget can fit on one face, not a result.
    With `only`, the training videos are those (--train-videos: how the gain grows with people)."""
    if ceiling is None:
        rows, held = training_and_validation_rows(root, loop.methods, loop.validation_video)
        if only:
            missing = set(only) - {r["video_id"] for r in rows}
            if missing:
                raise SystemExit(f"--train-videos: not training videos of {root}: {sorted(missing)}")
            rows = [r for r in rows if r["video_id"] in set(only)]
    else:
        rows, held = [r for r in training_rows(root, loop.methods, split="test") if r["video_id"] == ceiling], []
        if not rows:
            raise SystemExit(f"--fit-ceiling {ceiling}: no windows of that video in the test split")
    train = FaceDeblurDataset(rows, root, target=target, degrade=loop.degrade, identity_share=loop.identity_share,
                              resolution=loop.resolution)
    return train.preload(progress=False), FaceDeblurDataset(held, root, target=target, resolution=loop.resolution)


def run_model(model: str, params: dict, root: Path, budgets: list[float], runtime, test_rows, train_rows, resolution,
              ceiling: str | None = None, only: list[str] | None = None):
    task, loop, target, hourglass = build(model, params, runtime)
    started = time.perf_counter()
    train, held = datasets(root, loop, target, ceiling, only)
    print(f"{model}: {len(train)} training items preloaded ({train.preloaded_bytes / 2**20:.0f} MiB) in "
          f"{time.perf_counter() - started:.0f} s; " + (f"fit ceiling: training on the test video {ceiling}, no validation"
          if ceiling else f"validation video {loop.validation_video} ({len(held)} windows)"),
          flush=True)
    clock, marks = Clock(), [60 * b for b in sorted(budgets)]
    if hourglass is not None:  # Chrysos: the hourglass for half the first budget, then the generator
        from pipeline.models.chrysos.task import ChrysosGANConfig, ChrysosGANTask

        hg_trainer = Trainer(hourglass, loop, runtime, train, held)
        hg_trainer.run(clock, marks[0] / 2)
        if hg_trainer.validator is not None:
            hg_trainer.validator.restore_best()
        gan_cfg = ChrysosGANConfig.from_params(params["train_chrysos_gan"]).at_resolution(train.image_size)
        task = ChrysosGANTask(gan_cfg, runtime, DistEnv(), hourglass.hourglass)
        same_data = all(getattr(gan_cfg.loop, k) == getattr(loop, k)
                        for k in ("methods", "validation_video", "degrade", "resolution"))
        loop = gan_cfg.loop
        if not same_data:  # the generator's section reads other windows or sizes: its own items
            train, held = datasets(root, loop, target, ceiling, only)
    trainer = Trainer(task, loop, runtime, train, held)
    results = []
    for mark in marks:
        trainer.run(clock, mark)
        with trainer.best():
            restore = restorer(model, task, runtime)
            test = score(restore, test_rows, root, TARGET[model], resolution, model)
            fit = score(restore, train_rows, root, TARGET[model], resolution, model)
        v = trainer.validator
        results.append({"model": model, "minutes": mark / 60, "steps": trainer.step,
                        "data_wait_share": trainer.waited / max(clock.spent, 1e-9),
                        "chosen_step": v.best_step if v else trainer.step,
                        "validation_gain": v.best_gain if v else None, "test": test, "train": fit["all"]})
        report(results[-1])
    return results


def report(r: dict) -> None:
    t = r["test"]
    print(f"\n{r['model']} at {r['minutes']:g} min: {r['steps']} steps (chosen {r['chosen_step']}, validation "
          f"{r['validation_gain'] if r['validation_gain'] is None else round(r['validation_gain'], 3)} dB), "
          f"waiting for data {100 * r['data_wait_share']:.1f}%", flush=True)
    print(f"  {'rows':36s} {'n':>4s} {'gain':>7s} {'third':>7s} {'PSNR':>7s} {'blurry':>7s} {'SSIM':>6s} {'blurry':>6s} {'worse':>6s}")
    rows = [("test split", t["all"], t["blurriest_third"])] + \
           [(f"  {v}", c["all"], c["blurriest_third"]) for v, c in t["videos"].items()] + \
           [("training windows", r["train"], None)]
    for name, c, third in rows:
        print(f"  {name:36s} {c['n']:4d} {c['gain']:+7.3f} {format(third['gain'], '+7.3f') if third else '      -'} "
              f"{c['psnr']:7.2f} {c['blurry_psnr']:7.2f} {c['ssim']:6.4f} {c['blurry_ssim']:6.4f} "
              f"{100 * c['worse_share']:5.1f}%", flush=True)
    bands, sharp = t.get("bands", {}), t.get("sharp_input") or {}
    parts = [f"band {k} {c['gain']:+.3f} dB (n {c['n']}, worse {100 * c['worse_share']:.0f}%)"
             for k, c in bands.items() if k in ("35_40", "40_up") and c["n"]]
    if sharp.get("n"):
        parts.append(f"sharp input {sharp['psnr']:.1f} dB from itself, {sharp['change_at_40']:+.3f} dB at 40 dB")
    print("  no harm: " + "; ".join(parts), flush=True)


def plot(results: list[dict], videos: list[str], path: Path) -> None:
    """Gain against minutes, per model, on each of `videos` (all windows solid, blurriest third
    dashed), drawn with OpenCV (no matplotlib needed on the GPU machine)."""
    import cv2

    width, height, pad = 460, 320, 55
    image = np.full((height, width * len(videos), 3), 255, np.uint8)
    colours = {"cfmd": (200, 80, 0), "chrysos": (0, 120, 220), "unet": (60, 160, 60), "unet_centre": (150, 40, 150)}
    x_max = max(r["minutes"] for r in results) * 1.1
    for panel, video in enumerate(videos):
        series = {(r["model"], key): [] for r in results for key in ("all", "blurriest_third")}
        for r in results:
            cell = r["test"]["videos"].get(video)
            if cell:
                for key in ("all", "blurriest_third"):
                    series[(r["model"], key)].append((r["minutes"], cell[key]["gain"]))
        values = [g for pts in series.values() for _, g in pts if g is not None] + [0.0]
        low, high = min(values), max(values)
        span = (high - low) or 0.1
        low, high = low - 0.1 * span, high + 0.1 * span
        ox = panel * width

        def px(m, v):
            return (int(ox + pad + (width - 2 * pad) * m / x_max),
                    int(height - pad - (height - 2 * pad) * (v - low) / (high - low)))

        cv2.rectangle(image, (ox + pad, pad), (ox + width - pad, height - pad), (0, 0, 0), 1)
        cv2.line(image, px(0, 0), px(x_max, 0), (160, 160, 160), 1)
        cv2.putText(image, "0", (ox + pad - 14, px(0, 0)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        for m in sorted({r["minutes"] for r in results}):  # a tick and its label at each budget
            x = px(m, low)[0]
            cv2.line(image, (x, height - pad), (x, height - pad + 5), (0, 0, 0), 1)
            cv2.putText(image, f"{m:g}", (x - 8, height - pad + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
        cv2.putText(image, f"{video}: PSNR gain (dB)", (ox + 8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
        cv2.putText(image, "CPU minutes (solid: all windows, dashed: blurriest third)", (ox + 8, height - 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1)
        cv2.putText(image, f"{high:+.3f}", (ox + 4, pad + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(image, f"{low:+.3f}", (ox + 4, height - pad), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        legend_x = ox + pad
        for model in sorted({r["model"] for r in results}):
            colour = colours.get(model, (0, 0, 0))
            for key in ("all", "blurriest_third"):
                points = [px(m, g) for m, g in series[(model, key)] if g is not None]
                for a, b in zip(points, points[1:]):
                    if key == "all":
                        cv2.line(image, a, b, colour, 2)
                    else:  # dashed
                        for t in np.linspace(0, 1, 12)[::2]:
                            p0 = (int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t))
                            p1 = (int(a[0] + (b[0] - a[0]) * (t + 1 / 11)), int(a[1] + (b[1] - a[1]) * (t + 1 / 11)))
                            cv2.line(image, p0, p1, colour, 1)
                for p in points:
                    cv2.circle(image, p, 3, colour, -1)
            cv2.putText(image, model, (legend_x, pad - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1)  # above the box
            legend_x += cv2.getTextSize(model, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0] + 16
    cv2.imwrite(str(path), image)


def repeat_free_test_videos(rows: list[dict], landmarks_report: Path) -> list[str]:
    """Test videos without held frames (the landmarks stage's cadence `none`)."""
    free = repeat_free_videos(landmarks_report)
    return sorted({r["video_id"] for r in rows if r["video_id"] in free})


def parse_override(text: str, params: dict) -> dict:
    """`section.key.subkey=VALUE` (VALUE as YAML; the section an fnmatch pattern) as a nested overlay."""
    import fnmatch

    path, sep, _ = text.partition("=")
    keys = path.split(".")
    sections = fnmatch.filter(params, keys[0])
    if not sep or len(keys) < 2 or not sections:
        raise SystemExit(f"--set {text}: expected SECTION.KEY=VALUE with SECTION one of the params sections")
    overlay = dotted_settings([text])[keys[0]]
    return {section: overlay for section in sections}


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["--replot"]:  # redraw learning.png from a run's learning.json
        out = Path(sys.argv[2] if len(sys.argv) > 2 else "reports/learning")
        results = json.loads((out / "learning.json").read_text())
        videos = sorted({v for r in results for v in r["test"]["videos"] if v.startswith("talking-")})
        plot(results, videos or sorted(results[0]["test"]["videos"]), out / "learning.png")
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=float, nargs="+", default=[10, 30, 60], help="CPU minutes at which to score")
    p.add_argument("--models", nargs="+", default=["cfmd", "chrysos", "unet"], choices=list(TARGET),
                   help="unet_centre: the reference U-Net trained and scored on CFMD-GAN's target, the centre FMR frame "
                        "(without flips)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--preset", default="presets/cpu-proof.yaml", help="overrides applied to params ('none': none)")
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--landmarks-report", default="data/landmarks/report.json")
    p.add_argument("--test-samples", type=int, default=None, help="test windows scored (spread over N; default all)")
    p.add_argument("--train-samples", type=int, default=120, help="training windows scored for the fit")
    p.add_argument("--paper-size", action="store_true", help="paper-size networks, 256 images and crops, batch 8")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a params override after the preset, as dvc exp run -S (VALUE is YAML; SECTION may be a "
                        "pattern: train_*.colour=[0.7,1.0]); repeatable")
    p.add_argument("--unet", default="width=16,depth=3,lr=5e-4,loss=mse",
                   help="the reference U-Net's settings (MSE: the loss the README table was measured with)")
    p.add_argument("--fit-ceiling", metavar="VIDEO", default=None,
                   help="train on this test video's own windows, no validation: how far the budget can fit one face")
    p.add_argument("--train-videos", nargs="+", default=None, metavar="VIDEO_ID",
                   help="train on these training videos only (the validation video stays held out)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="reports/learning")
    args = p.parse_args(argv)

    import yaml

    params = load_params(path=args.params)
    if args.preset != "none":
        params = merged(params, yaml.safe_load(Path(args.preset).read_text()) or {})
    if args.paper_size:
        params = merged(params, PAPER)
    for override in args.set:
        params = merged(params, parse_override(override, params))
    unet = dict(kv.split("=") for kv in args.unet.split(","))
    params["_reference"] = {"width": int(unet["width"]), "depth": int(unet["depth"]), "lr": float(unet["lr"]),
                            "loss": unet["loss"]}
    runtime_cfg = params["train_cfmd"].get("runtime", {})
    runtime = resolve_runtime(args.device, runtime_cfg.get("amp", "auto"), runtime_cfg.get("channels_last", "auto"))
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resolution = params["evaluate"].get("resolution")
    test_rows = spread_over_n(training_rows(root, ["fixed"], split="test"), args.test_samples)
    loop_methods = params["train_chrysos_hg"].get("methods", ["fixed"])
    train_rows = [r for r in training_rows(root, [loop_methods] if isinstance(loop_methods, str) else loop_methods)
                  if not args.train_videos or r["video_id"] in set(args.train_videos)]
    train_rows = spread_over_n(train_rows, args.train_samples)
    videos = repeat_free_test_videos(test_rows, Path(args.landmarks_report))
    label = "repeat-free" if videos else "no repeat-free test video; plotted"
    videos = videos or sorted({r["video_id"] for r in test_rows})
    print(f"device {runtime.device}; budgets {args.budgets} min; {len(test_rows)} test windows ({label}: "
          f"{', '.join(videos)}), {len(train_rows)} training windows; resolution {resolution}", flush=True)
    results = []
    for model in args.models:
        results += run_model(model, params, root, args.budgets, runtime, test_rows, train_rows, resolution,
                             args.fit_ceiling, args.train_videos)
    flat = []
    for r in results:
        row = {k: r[k] for k in ("model", "minutes", "steps", "chosen_step", "validation_gain", "data_wait_share")}
        for video, cell in [("split", r["test"])] + list(r["test"]["videos"].items()):
            for key in ("all", "blurriest_third"):
                c = cell[key]
                row.update({f"{video}.{key}.gain": c["gain"], f"{video}.{key}.ssim_gain": c["ssim_gain"],
                            f"{video}.{key}.worse_share": c["worse_share"], f"{video}.{key}.n": c["n"]})
        row.update({"train.gain": r["train"]["gain"], "train.n": r["train"]["n"]})
        for band in ("35_40", "40_up"):
            row[f"split.band_{band}.gain"] = r["test"]["bands"][band]["gain"]
        row.update({"split.sharp_input.psnr": r["test"]["sharp_input"]["psnr"],
                    "split.sharp_input.change_at_40": r["test"]["sharp_input"]["change_at_40"]})
        flat.append(row)
    with open(out / "learning.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for row in flat for k in row}, key=lambda k: (k.count("."), k)))
        writer.writeheader()
        writer.writerows(flat)
    (out / "learning.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    plot(results, videos, out / "learning.png")
    print(f"\nwrote {out / 'learning.csv'}, {out / 'learning.json'} and {out / 'learning.png'}")


if __name__ == "__main__":
    main()
