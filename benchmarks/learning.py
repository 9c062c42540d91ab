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
from pipeline.sheets import spread, write_sheet  # noqa: E402
from pipeline.train.ddp import DistEnv  # noqa: E402
from pipeline.train.guard import CollapseGuard, TrainingCollapsed, nonfinite_losses  # noqa: E402
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
        self.guard = CollapseGuard(loop.collapse, task, self.validator, "benchmark")
        self.validate_every = loop.validate_every or self.per_epoch
        self.step, self.waited = 0, 0.0
        self.stopped: str | None = None  # why the guard stopped this run (TrainingCollapsed); it trains no further
        self.discriminator: list[tuple[int, float, float]] = []  # (step, real accuracy, fake accuracy) per validation
        self.losses: list[tuple[int, dict]] = []  # (step, mean losses since the last validation)
        self._accuracy, self._loss_sums, self._batches = [], {}, None

    def _next(self):
        while True:
            if self._batches is None:  # mid-epoch after a fork: skip what this epoch has taken
                self.sampler.set_epoch(self.step // self.per_epoch, (self.step % self.per_epoch) * self.loop.batch_size)
                self._batches = iter(self.loader)
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = None

    def run(self, clock: Clock, until: float = float("inf"), steps: int | None = None) -> None:
        """Train until the clock reaches `until` seconds of training (or the step count `steps`). A
        stop of the collapse guard ends this run, not the benchmark: the weights validation kept are
        scored at every later mark, and the stop is in the row's `collapses`."""
        try:
            self._run(clock, until, steps)
        except TrainingCollapsed as e:
            self.stopped = str(e)
            print(f"{self.guard.desc}: {e}; the weights validation kept are scored from here on", flush=True)

    def _run(self, clock: Clock, until: float, steps: int | None) -> None:
        while self.stopped is None and clock.spent < until and (steps is None or self.step < steps):
            started = time.perf_counter()
            items = self._next()
            self.waited += time.perf_counter() - started
            batch = Batch.from_items(items, self.runtime.device)
            batch = self.augment(batch, torch.Generator().manual_seed(derive_seed(self.loop.seed, AUGMENT, 0, self.step)))
            batch = batch._replace(blurry=self.runtime.images(batch.blurry), sharp=self.runtime.images(batch.sharp))
            losses = self.task.train_step(batch)
            found = nonfinite_losses(losses)
            if found is not None:
                self.guard.act(self.step + 1, f"a non-finite loss ({found})")
                losses = {}
            self.guard.observe(losses)
            if "d_real_acc" in losses and getattr(self.task, "adversarial", False):
                self._accuracy.append((float(losses["d_real_acc"]), float(losses["d_fake_acc"])))
            for k, v in losses.items():
                self._loss_sums.setdefault(k, []).append(float(v))
            self.step += 1
            if self.step % self.per_epoch == 0:
                step_schedulers(self.task)
            clock.spent += time.perf_counter() - started
            if self.validator is not None and self.step % self.validate_every == 0:
                self.validator.validate(self.step, self.guard)  # not on the clock: scoring, like the marks
                if self._accuracy:
                    real, fake = np.mean(self._accuracy, axis=0)
                    self.discriminator.append((self.step, round(float(real), 3), round(float(fake), 3)))
                    self._accuracy = []
                self.losses.append((self.step, {k: float(np.mean(v)) for k, v in self._loss_sums.items()}))
                self._loss_sums = {}

    def snapshot(self, clock: Clock) -> dict:
        """Everything the run continues from (networks, optimisers, lr, step, validation, clock)."""
        return copy.deepcopy({"models": {k: m.state_dict() for k, m in self.task.modules.items()},
                              "optimizers": {k: o.state_dict() for k, o in self.task.optimizers.items()},
                              "schedulers": {k: s.state_dict() for k, s in self.task.schedulers.items()},
                              "step": self.step, "task_step": getattr(self.task, "step", None), "waited": self.waited,
                              "validation": self.validator.state() if self.validator else None,
                              "guard": self.guard.state(), "clock": clock.spent, "discriminator": self.discriminator,
                              "stopped": self.stopped})

    def restore(self, state: dict, clock: Clock) -> None:
        state = copy.deepcopy(state)
        for kind in ("models", "optimizers", "schedulers"):
            for k, obj in getattr(self.task, "modules" if kind == "models" else kind).items():
                obj.load_state_dict(state[kind][k])
        self.step, self.waited, clock.spent = state["step"], state["waited"], state["clock"]
        if state["task_step"] is not None:
            self.task.step = state["task_step"]
        if self.validator is not None:
            self.validator.load(state["validation"])
        self.guard.load(state["guard"])
        self.discriminator, self._accuracy, self._batches = state["discriminator"], [], None
        self.stopped = state["stopped"]

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


class Extras:
    """What the adversarial comparison adds to the scoreboard (issue 38): the sharpness ratio
    (`pipeline.metrics.pixel.sharpness_ratio`), KID from the FID Inception network that ships
    offline (`pipeline.metrics.fid`; x 1000, mean and spread over subsets), and dlib's identity
    distance and landmark error (`pipeline.eval.faces`, as the evaluation computes them) on
    `face_samples` windows spread over the split; each beside the blurry input's."""

    def __init__(self, kid: bool = True, face_samples: int = 60):
        from pipeline.metrics.fid import resolve_fid

        choice = resolve_fid(kid)
        self.inception, self.face_samples, self._features = choice.extractor, face_samples, {}
        print(f"KID: {'on' if self.inception is not None else 'off'} ({choice.reason})", flush=True)
        try:
            import dlib  # noqa: F401 - the identity and landmark errors need it (the GPU machine has none)
        except ImportError:
            self.face_samples = 0
            print("identity / landmark errors: off (dlib is not installed)", flush=True)

    def features(self, key, images) -> np.ndarray:
        if key is None or key not in self._features:
            value = self.inception.features(np.stack(images))
            if key is None:
                return value
            self._features[key] = value
        return self._features[key]

    def __call__(self, rows, restored, blurry, targets, target: str) -> dict:
        from pipeline.eval.faces import face_data
        from pipeline.metrics.fid import kid
        from pipeline.metrics.identity import identity_distance
        from pipeline.metrics.landmarks_error import diagonal_error
        from pipeline.metrics.pixel import sharpness_ratio

        ids = tuple(r["sample_id"] for r in rows)
        out = {"sharpness_ratio": sharpness_ratio(np.stack(restored), np.stack(targets)),
               "blurry_sharpness_ratio": sharpness_ratio(np.stack(blurry), np.stack(targets))}
        if self.inception is not None:
            reference = self.features((target, ids), targets)
            for key, images, cache in (("kid", restored, None), ("blurry_kid", blurry, ("blurry", ids))):
                mean, spread = kid(self.features(cache, images), reference)
                out[key], out[f"{key}_spread"] = 1000 * mean, 1000 * spread
        chosen = np.unique(np.linspace(0, len(rows) - 1, min(self.face_samples, len(rows))).round().astype(int)) \
            if self.face_samples else []
        faces = {"identity": [], "blurry_identity": [], "landmarks": [], "blurry_landmarks": []}
        for i in chosen:
            data = face_data({"sharp": targets[i], "restored": restored[i], "blurry": blurry[i]}, "sharp", 0, 0.5, True)
            for system, prefix in (("restored", ""), ("blurry", "blurry_")):
                faces[f"{prefix}identity"].append(identity_distance(data["embedding"][system], data["embedding"]["sharp"]))
                faces[f"{prefix}landmarks"].append(diagonal_error(data["points"][system], data["points"]["sharp"]))
        out.update({k: float(np.mean(v)) if v else None for k, v in faces.items()}, face_n=len(chosen))
        return out


def score(restore, rows: list[dict], root: Path, target: str, resolution: int | None, name: str,
          extras: Extras | None = None) -> dict:
    """The evaluation's scoreboard of `restore` against the blurry input on `rows` (with `extras`:
    sharpness ratio, KID, identity and landmark errors)."""
    records, sharp_records, images = [], [], {"restored": [], "blurry": [], "target": []}
    for row in rows:
        position = centre_position(row) if target == "centre_fmr" else middle_position(row)
        mid = middle_position(row)
        blurry, sharp = load_for_eval(row, root, sorted({position, mid}), resolution)
        target_image = sharp[position][None]
        restored = restore(blurry)
        for system, image in ((name, restored), ("blurry", blurry)):
            records.append({"sample_id": row["sample_id"], "video_id": row["video_id"], "target_position": position,
                            "system": system, "psnr": float(psnr(image[None], target_image)[0]),
                            "ssim": float(ssim(image[None], target_image)[0])})
        kept = restore(sharp[mid])[None]  # the no-harm row: the sharp middle frame as the input
        sharp_records.append({"table": SHARP_INPUT, "system": name, "ssim": float(ssim(kept, sharp[mid][None])[0]),
                              "psnr": min(float(psnr(kept, sharp[mid][None])[0]), IDENTICAL_PSNR)})
        if extras is not None:
            images["restored"].append(restored), images["blurry"].append(blurry), images["target"].append(sharp[position])
    out = {**scoreboard(records, name), "sharp_input": sharp_input(sharp_records, name)}
    if extras is not None:
        out["extras"] = extras(rows, images["restored"], images["blurry"], images["target"], target)
    return out


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


NEVER = 10 ** 9  # a pixel warm-up that never ends: the pixel-only branch


def run_model(model: str, params: dict, root: Path, budgets: list[float], runtime, test_rows, train_rows, resolution,
              ceiling: str | None = None, only: list[str] | None = None, adversarial: bool = False,
              extras: Extras | None = None, pictures: dict | None = None, adversarial_steps: list[int] | None = None):
    """Train `model` and score it at each budget mark. With `adversarial`, the run forks at the end
    of the preset's pixel warm-up: the pixel-only branch goes on to the marks (minutes), then the
    adversarial branch (`<model>+adv`: D and the adversarial terms on) continues from the same
    weights, optimisers and data position to the same step counts."""
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
    warmup = getattr(getattr(task, "cfg", None), "pixel_warmup", None)
    if adversarial:
        if warmup is None or warmup >= NEVER:
            raise SystemExit(f"--adversarial: {model} has no adversarial phase (pixel_warmup {warmup}); use a preset "
                             "that ends the warm-up, e.g. --preset presets/cpu-gan.yaml")
        task.cfg = dataclasses.replace(task.cfg, pixel_warmup=NEVER)
        trainer.run(clock, steps=warmup)
        fork = trainer.snapshot(clock)
        print(f"{model}: pixel warm-up done at step {warmup} ({clock.spent / 60:.1f} min); forked", flush=True)

    def scored(name: str, mark_minutes: float) -> dict:
        with trainer.best():
            restore = restorer(model, task, runtime)
            test = score(restore, test_rows, root, TARGET[model], resolution, name, extras)
            fit = score(restore, train_rows, root, TARGET[model], resolution, name)
            if pictures is not None and mark_minutes == marks[-1] / 60:  # the side-by-side sheet: the last mark
                pictures[(name, loop.seed)] = [restore(load_for_eval(row, root, [middle_position(row)], resolution)[0])
                                               for row in pictures["rows"]]
        v = trainer.validator
        result = {"model": name, "seed": loop.seed, "minutes": mark_minutes, "train_minutes": clock.spent / 60,
                  "steps": trainer.step, "data_wait_share": trainer.waited / max(clock.spent, 1e-9),
                  "chosen_step": v.best_step if v else trainer.step, "validation_gain": v.best_gain if v else None,
                  "collapses": list(trainer.guard.events), "stopped": trainer.stopped,
                  "discriminator": list(trainer.discriminator),
                  "losses": list(trainer.losses), "validation_history": list(v.history) if v else None,
                  "test": test, "train": fit["all"]}
        report(result)
        return result

    results = []
    if adversarial_steps:  # the pixel-only branch is known (same seed and data): the adversarial branch alone
        results = [{"steps": steps, "minutes": mark / 60} for steps, mark in zip(adversarial_steps, marks)]
    else:
        for mark in marks:
            trainer.run(clock, mark)
            results.append(scored(model, mark / 60))
    if adversarial:
        trainer.restore(fork, clock)
        task.cfg = dataclasses.replace(task.cfg, pixel_warmup=warmup)
        for pixel in list(results):
            trainer.run(clock, steps=pixel["steps"])
            results.append(scored(f"{model}+adv", pixel["minutes"]))
    return [r for r in results if "test" in r]


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
    x = t.get("extras")
    if x:
        kid = (f"; KID x1000 {x['kid']:.2f} +- {x['kid_spread']:.2f} (blurry {x['blurry_kid']:.2f})" if "kid" in x else "")
        faces = (f"; identity {x['identity']:.4f} (blurry {x['blurry_identity']:.4f}), landmarks {x['landmarks']:.4f} "
                 f"(blurry {x['blurry_landmarks']:.4f}) on {x['face_n']} windows" if x["face_n"] else "")
        print(f"  sharpness ratio {x['sharpness_ratio']:.3f} (blurry {x['blurry_sharpness_ratio']:.3f}){kid}{faces}",
              flush=True)
    if r.get("discriminator"):
        print("  D accuracy real / fake per validation: " + ", ".join(f"{s}: {a:.2f}/{b:.2f}"
                                                                     for s, a, b in r["discriminator"][-6:]), flush=True)
    for event in r.get("collapses") or []:
        print(f"  COLLAPSE at step {event['step']}: {event['reason']} -> {event['action']}", flush=True)


def plot(results: list[dict], videos: list[str], path: Path) -> None:
    """Gain against minutes, per model, on each of `videos` (all windows solid, blurriest third
    dashed), drawn with OpenCV (no matplotlib needed on the GPU machine)."""
    import cv2

    width, height, pad = 460, 320, 55
    image = np.full((height, width * len(videos), 3), 255, np.uint8)
    colours = {"cfmd": (200, 80, 0), "chrysos": (0, 120, 220), "unet": (60, 160, 60), "unet_centre": (150, 40, 150),
               "cfmd+adv": (90, 30, 0), "chrysos+adv": (0, 40, 120)}
    results = [r for r in results if r.get("seed", 0) == min(q.get("seed", 0) for q in results)]  # one seed drawn
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


def side_by_side(pictures: dict, root: Path, resolution) -> list[list]:
    """Sheet rows: per window, blurry | each (model, seed 0 or the first) restoration | sharp middle frame."""
    rows = pictures.pop("rows")
    first = {}
    for name, seed in pictures:
        first.setdefault(name, seed)
    sheet = []
    for i, row in enumerate(rows):
        blurry, sharp = load_for_eval(row, root, [middle_position(row)], resolution)
        cells = [(blurry, f"blurry N={row['n_frames']}")]
        cells += [(pictures[(name, seed)][i], name) for name, seed in first.items()]
        sheet.append(cells + [(sharp[middle_position(row)], "sharp (middle)")])
    return sheet


def flatten(results: list[dict]) -> list[dict]:
    """One CSV row per (model, seed, mark)."""
    flat = []
    for r in results:
        row = {k: r.get(k) for k in ("model", "seed", "minutes", "train_minutes", "steps", "chosen_step",
                                     "validation_gain", "data_wait_share")}
        row["collapses"] = len(r.get("collapses") or [])
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
        row.update({f"split.{k}": v for k, v in (r["test"].get("extras") or {}).items()})
        if r.get("discriminator"):
            row["d_real_acc"], row["d_fake_acc"] = r["discriminator"][-1][1:]
        flat.append(row)
    return flat


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
    p.add_argument("--adversarial", action="store_true",
                   help="fork each model at the end of its pixel warm-up into pixel-only and adversarial branches "
                        "(same steps, data, seed); scores both with the sharpness ratio, KID and the dlib errors "
                        "(use with --preset presets/cpu-gan.yaml)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="train each model once per seed (train_*.seed)")
    p.add_argument("--adversarial-steps", type=int, nargs="+", default=None, metavar="STEPS",
                   help="with --adversarial: skip the pixel-only branch (measured before, same seed and data) and run "
                        "the adversarial one to these step counts, one per budget (a variant of the adversarial half)")
    p.add_argument("--face-samples", type=int, default=60, help="windows the dlib identity / landmark errors use")
    p.add_argument("--no-kid", action="store_true", help="skip KID (the Inception features)")
    p.add_argument("--sheet-samples", type=int, default=6,
                   help="with --adversarial: repeat-free test windows in sheet.png (blurry | pixel-only | adversarial | sharp)")
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
    extras = Extras(not args.no_kid, args.face_samples) if args.adversarial else None
    pictures = {"rows": spread([r for r in test_rows if r["video_id"] in videos], args.sheet_samples)} \
        if args.adversarial and args.sheet_samples else None
    results, partial = [], out / "learning.partial.json"
    for seed in args.seeds or [None]:
        seeded = params if seed is None else merged(params, parse_override(f"train_*.seed={seed}", params))
        for model in args.models:
            results += run_model(model, seeded, root, args.budgets, runtime, test_rows, train_rows, resolution,
                                 args.fit_ceiling, args.train_videos, args.adversarial, extras, pictures,
                                 args.adversarial_steps)
            partial.write_text(json.dumps(results, indent=1, default=float) + "\n")  # what a crash would lose
    flat = flatten(results)
    if pictures:
        write_sheet(out / "sheet.png", side_by_side(pictures, root, resolution), tile=128,
                    title="blurry | restorations at the last mark (pixel-only, adversarial) | sharp middle frame")
    with open(out / "learning.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for row in flat for k in row}, key=lambda k: (k.count("."), k)))
        writer.writeheader()
        writer.writerows(flat)
    (out / "learning.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    partial.unlink(missing_ok=True)  # learning.json holds the same rows now
    plot(results, videos, out / "learning.png")
    print(f"\nwrote {out / 'learning.csv'}, {out / 'learning.json'} and {out / 'learning.png'}")


if __name__ == "__main__":
    main()
