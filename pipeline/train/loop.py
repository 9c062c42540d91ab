"""`fit`: the step loop shared by every training stage.

A task (`TrainTask`) owns its networks, optimisers and schedulers and knows how to take one
optimisation step on a batch; `fit` does the rest: resume, seeded epochs over the training
items, augmentation on the device, lr decay once per epoch, the DVCLive log (`TrainLog`, rank
0 only, continued on resume) and progress bar, periodic checkpoints (registered as artifacts),
and a clean stop (checkpoint, then return) on SIGINT / SIGTERM or after `stop_after` steps.
The signal may come to the whole process group (Ctrl-C, `timeout`, a scheduler, `dvc repro`'s
group): the DataLoader workers ignore it (`data.start_workers`), the main process finishes the
step in progress, saves, and the stage exits with `stopped_exit` (128 + the signal number).
`live` is a `TrainLog` the caller ends (to log the sample sheet and weights after training) or a
directory for a log that `fit` opens and ends itself.

Determinism: model init follows `seed_everything(seed)`; item choice follows (seed, epoch,
position); the augmentation draws from a generator seeded by (seed, rank, step). A resumed
run therefore repeats the uninterrupted run step for step (bit for bit on CPU; on GPU up
to the nondeterminism of some CUDA kernels).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import numpy as np
from torch import nn
from tqdm import tqdm

from pipeline.train import checkpoint

from pipeline.train import ddp
from pipeline.train.augment import RandomScaleCrop
from pipeline.train.config import LoopConfig, RuntimeConfig, TrainingSetupError
from pipeline.train.guard import CollapseGuard, TrainingCollapsed, TrainingDiverged, nonfinite_losses  # noqa: F401
from pipeline.train.data import (AUGMENT, Batch, EpochSampler, FaceDeblurDataset, derive_seed, make_loader,
                                 start_workers)
from pipeline.models.device import Runtime
from pipeline.train.log import TrainLog
from pipeline.train.optim import step_schedulers

log = logging.getLogger(__name__)


class TrainTask(Protocol):
    modules: dict[str, nn.Module]  # trained networks (saved in checkpoints)
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]  # stepped once per epoch
    loss_names: tuple[str, ...]

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar losses keyed by `loss_names`."""

    def predict(self, batch: Batch) -> torch.Tensor:
        """The restored images of a batch (the network in eval mode; validation)."""


PRELOAD_BYTES = 3 * 2**30  # runtime.preload: auto decodes the training items into memory up to this size


def preload_dataset(dataset: FaceDeblurDataset, setting, device: str) -> bool:
    """Decode every training item once into memory when `setting` (runtime.preload) says so: true,
    or auto and the items fit PRELOAD_BYTES. At the CPU configuration's sizes reading PNGs costs
    more than a training step (issue 22); the bytes that reach the model are the same."""
    if setting is False or len(dataset) == 0:
        return False
    blurry, _ = dataset.load(0, [0])
    per_image = blurry.nbytes
    estimate = sum((1 + len(dataset.positions(r))) * per_image for r in dataset.rows)
    if setting == "auto" and estimate > PRELOAD_BYTES:
        log.info("not preloading: the training items would take %.1f GiB (more than %.1f GiB; runtime.preload)",
                 estimate / 2**30, PRELOAD_BYTES / 2**30)
        return False
    started = time.perf_counter()
    dataset.preload()
    log.info("preloaded %d training samples (%.0f MiB) in %.1f s", len(dataset), dataset.preloaded_bytes / 2**20,
             time.perf_counter() - started)
    return True


VALIDATION_ITEMS = 64  # validation items scored each time (the first ones of the held-out video's rows)


class Validation:
    """Scores the model on a held-out training video during training and keeps the best weights.

    The score is the mean PSNR gain over the blurry input, on fixed items (keys (i, i)) at the
    training resolution, whole images, the networks in eval mode. The untrained (or resumed)
    weights are scored first, then every `validate_every` steps; the weights of the best score
    are kept in memory (and in checkpoints) and loaded back when training ends, so the stage
    writes the checkpoint the validation chose, never one that scores below the start.

    Phases: when an adversarial task leaves its pixel warm-up (`new_phase`), the choice starts again
    among the adversarial steps (else a user who turns the adversarial terms on would be given the
    warm-up's pixel-only weights whenever they score a little higher), but only among those within
    `collapse.keep_within` dB of the best gain seen: an adversarial model that restores worse than the
    warm-up did is never written; the warm-up's best stays until one qualifies (`kept` says which).
    `peak_gain` is the best over all phases: the collapse guard measures falls from it
    (pipeline.train.guard)."""

    def __init__(self, task, dataset: FaceDeblurDataset, runtime, batch_size: int = 16):
        self.task, self.runtime, self.batch_size = task, runtime, batch_size
        keys = [(i, i) for i in range(min(len(dataset), VALIDATION_ITEMS))]
        self.items = [dataset[k] for k in keys]
        self.best_gain, self.best_step, self.best_state = -float("inf"), 0, None
        self.peak_gain, self.peak_step, self.phase_start = -float("inf"), 0, 0
        self.history: list[tuple[int, float]] = []

    @torch.no_grad()
    def score(self) -> float:
        from torch.utils.data import default_collate

        from pipeline.metrics.pixel import psnr

        modes = {k: m.training for k, m in self.task.modules.items()}
        for m in self.task.modules.values():
            m.eval()
        gains = []
        try:
            for i in range(0, len(self.items), self.batch_size):
                batch = Batch.from_items(default_collate(self.items[i:i + self.batch_size]), self.runtime.device)
                restored = self.task.predict(batch._replace(blurry=self.runtime.images(batch.blurry))).float().clamp(0, 1)
                to_uint8 = lambda t: (t * 255 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
                target = to_uint8(batch.sharp)
                gains += list(psnr(to_uint8(restored), target) - psnr(to_uint8(batch.blurry), target))
        finally:
            for k, m in self.task.modules.items():
                m.train(modes[k])
        return float(np.mean(gains))

    def step(self, step: int) -> float:
        return self.note(step, self.score())

    def note(self, step: int, gain: float, eligible: bool = True, keep: bool = True) -> float:
        """Record `gain` at `step`; keep the weights if they are the best of the phase (`eligible`:
        the guard found no collapse; `keep`: and they may be kept)."""
        self.history.append((step, round(gain, 4)))
        first_of_phase = self.phase_start and self.best_step < self.phase_start  # an adversarial step replaces the warm-up's
        if eligible and keep and (first_of_phase or gain > self.best_gain):
            self.best_gain, self.best_step = gain, step
            self.best_state = {k: {n: t.detach().clone() for n, t in m.state_dict().items()}
                               for k, m in self.task.modules.items()}
        if eligible and gain > self.peak_gain:
            self.peak_gain, self.peak_step = gain, step
        return gain

    def new_phase(self, step: int) -> None:
        """The choice starts again from `step` (the adversarial phase); the kept weights stay until replaced."""
        self.phase_start = step

    def validate(self, step: int, guard) -> float:
        """Score at `step` under the collapse guard: a new adversarial phase starts the choice again;
        a collapse is recorded (not kept) and acted on (`guard.act`: best weights back, or stop)."""
        if getattr(self.task, "adversarial", False) and self.phase_start == 0 and step > 0:
            self.new_phase(step)
        gain = self.score()
        reason = guard.validated(step, gain)
        keep = not self.phase_start or gain >= self.peak_gain - guard.settings.keep_within
        self.note(step, gain, eligible=reason is None, keep=keep)
        if reason is not None:
            guard.act(step, reason)
        return gain

    @property
    def kept(self) -> str | None:
        """Which phase the kept weights come from, once an adversarial phase has started."""
        return None if not self.phase_start else "adversarial" if self.best_step >= self.phase_start else "warm-up"

    def restore_best(self) -> None:
        if self.best_state is not None:
            for k, m in self.task.modules.items():
                m.load_state_dict(self.best_state[k])

    def state(self) -> dict:
        return {"best_gain": self.best_gain, "best_step": self.best_step, "best_state": self.best_state,
                "history": self.history, "peak_gain": self.peak_gain, "peak_step": self.peak_step,
                "phase_start": self.phase_start}

    def load(self, state: dict | None) -> None:
        if state:
            self.best_gain, self.best_step = state["best_gain"], state["best_step"]
            self.best_state, self.history = state["best_state"], [tuple(h) for h in state["history"]]
            self.peak_gain = state.get("peak_gain", self.best_gain)
            self.peak_step, self.phase_start = state.get("peak_step", self.best_step), state.get("phase_start", 0)

    def record(self) -> dict:
        return {"best_step": self.best_step, "best_gain": round(self.best_gain, 4),
                "last_gain": self.history[-1][1] if self.history else None, "items": len(self.items),
                "peak_step": self.peak_step, "peak_gain": round(self.peak_gain, 4), "phase_start": self.phase_start,
                "kept": self.kept, "history": self.history}


@dataclass
class FitResult:
    completed: bool
    step: int
    epoch: int
    steps_per_epoch: int
    resumed_from: int
    losses: dict = field(default_factory=dict)  # the last log row's mean losses
    seconds: float = 0.0  # this process's training time (excludes a resumed run's earlier part)
    images_per_s: float = 0.0  # training images per second over all processes
    signal: int | None = None  # the signal (SIGINT / SIGTERM) that stopped the run, if one did
    data_wait_share: float = 0.0  # share of the training time spent waiting for the next batch
    preloaded: bool = False  # the training items were decoded into memory first (runtime.preload)
    validation: dict | None = None  # Validation.record(): the step chosen, its gain, the history
    collapses: list = field(default_factory=list)  # the collapse guard's records (pipeline.train.guard)

    def metadata(self) -> dict:
        return dict(self.__dict__)


def check_finite(losses: dict[str, torch.Tensor], modules: dict[str, nn.Module] | None, step: int, lr: float,
                 desc: str, env: ddp.DistEnv | None = None) -> None:
    """TrainingDiverged naming the non-finite losses (or network) at `step`, on every process when
    one process's losses are not finite (so none waits for the others). Losses are checked every
    step (one scalar sync); weights before anything is saved."""
    if losses:
        found = nonfinite_losses(losses)
        device = next(iter(losses.values())).device
        if ddp.any_rank(found is not None, env, device) if env is not None else found is not None:
            found = found or "on another process"
            raise TrainingDiverged.at(found,
                f"the training diverged at step {step}: {found} (lr {lr:g}); nothing was saved and the previous "
                f"outputs are untouched. Lower {desc}.lr (or the loss weights) and rerun")
    for name, module in (modules or {}).items():
        bad = [n for n, t in module.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise TrainingDiverged(f"the {name}'s weights are non-finite at step {step} ({bad[0]}, {len(bad)} tensor(s)); "
                                   "nothing was saved and the previous outputs are untouched")


class _StopRequest:
    """SIGINT / SIGTERM set a flag; the loop stops after the step in progress."""

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        log.warning("signal %s: stopping after this step and saving a checkpoint", signum)
        self.requested = True
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stopped_exit(stage: str, result: FitResult, checkpoint_dir) -> SystemExit:
    """What a stage raises when `fit` stopped early (checkpoint saved): a SystemExit whose status
    is 128 + the signal number after SIGINT / SIGTERM (130 / 143, as a shell reports a process
    killed by it), else 1 with the message; never 0, so DVC does not record the stage as done."""
    message = f"{stage}: stopped at step {result.step}; checkpoint in {checkpoint_dir}, rerun to resume"
    if result.signal is None:
        return SystemExit(message)
    log.error("%s (signal %d)", message, result.signal)
    return SystemExit(128 + result.signal)


def _quietly(call, *args, **kwargs) -> None:
    """A progress-bar call that cannot stop training: when the terminal's reader is gone (a pipe
    whose other end died with the group, e.g. `dvc repro | tee`), the bar goes silent instead."""
    try:
        call(*args, **kwargs)
    except OSError:
        bar = getattr(call, "__self__", None)
        if bar is not None:
            bar.disable = True


def steps_per_epoch(loop: LoopConfig, n_items: int, world_size: int, desc: str = "train") -> int:
    samples = loop.epoch_samples or n_items
    steps = samples // (loop.batch_size * world_size)
    if steps < 1:
        raise TrainingSetupError(f"an epoch of {samples} training samples holds no batch of {loop.batch_size} x "
                                 f"{world_size} process(es): lower {desc}.batch_size or add footage")
    return steps


def check_crop_size(loop: LoopConfig, dataset: FaceDeblurDataset, desc: str) -> None:
    """The training crop must fit in the images it is cut from (known once the dataset is read)."""
    if len(dataset) and loop.crop_size > dataset.image_size:
        raise TrainingSetupError(f"{desc}.crop_size = {loop.crop_size}: above the {dataset.image_size}px training "
                                 f"images ({desc}.resolution, or the dataset's crop.size); set it to at most "
                                 f"{dataset.image_size}")


def fit(task: TrainTask, dataset: FaceDeblurDataset, loop: LoopConfig, runtime: Runtime, env: ddp.DistEnv, *,
        workers: RuntimeConfig, checkpoint_dir: str | Path, live: TrainLog | str | Path, params: dict,
        fingerprint: str, extra_state: dict | None = None, stop_after: int | None = None,
        desc: str = "train", validation: FaceDeblurDataset | None = None) -> FitResult:
    per_epoch = steps_per_epoch(loop, len(dataset), env.world_size, desc)
    check_crop_size(loop, dataset, desc)
    total = loop.total_steps(per_epoch)
    state = checkpoint.load(checkpoint_dir, fingerprint, keep_aside=env.is_main)
    start, sums, count = 0, {}, 0  # sums / count: losses of the steps since the last log row
    if state is not None:
        for name, module in task.modules.items():
            module.load_state_dict(state["models"][name])
        for name, opt in task.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in task.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        checkpoint.set_rng_state(state["rng"])
        start, sums, count = state["step"], state["log_window"]["sums"], state["log_window"]["count"]
        log.info("resuming from %s at step %d", checkpoint_dir, start)
    if hasattr(task, "step"):  # the task's own step clock (e.g. a pixel warm-up) follows a resume
        task.step = start
    validator = Validation(task, validation, runtime) if validation is not None and len(validation) else None
    skipped = None
    if validator is None and loop.validation_video is not None:  # said at the start, at the end and in the metrics
        skipped = (f"{desc}.validation_video = {loop.validation_video} is not a video of the training split: trained "
                   "WITHOUT validation, the last step's weights are kept (name one of your training videos, or null)")
        log.warning("%s", skipped)
    if validator is not None:
        validator.load(state.get("validation") if state is not None else None)
        if not validator.history:  # the start is a candidate too: training never leaves a worse checkpoint
            validator.step(start)
    guard = CollapseGuard(loop.collapse, task, validator, desc)
    guard.load(state.get("guard") if state is not None else None)
    validate_every = loop.validate_every or per_epoch
    for module in task.modules.values():
        ddp.broadcast_module(module, env)

    preloaded = preload_dataset(dataset, workers.preload, runtime.device.type)
    sampler = EpochSampler(len(dataset), per_epoch * loop.batch_size, loop.seed, env.rank, env.world_size)
    # items in memory are an array copy away: worker processes would only add their start-up
    loader = make_loader(dataset, sampler, loop.batch_size, 0 if preloaded else workers.num_workers, loop.seed,
                         pin_memory=runtime.device.type == "cuda")
    augment = RandomScaleCrop(loop.crop_size, loop.scale, loop.flip, loop.colour)
    own_log = not isinstance(live, TrainLog)  # given a directory: open and end the log here
    trainlog = (TrainLog(live) if own_log else live).start(start, enabled=env.is_main)
    bar = tqdm(total=total, initial=start, desc=desc, disable=not env.is_main, dynamic_ncols=True)
    shown = getattr(task, "progress_keys", task.loss_names)
    first_opt = next(iter(task.optimizers.values()))

    def save(step: int) -> None:
        check_finite({}, task.modules, step, first_opt.param_groups[0]["lr"], desc)
        if env.is_main:
            path = checkpoint.save(checkpoint_dir, {
                "step": step, "epoch": step // per_epoch, "fingerprint": fingerprint, "params": params,
                "models": {k: m.state_dict() for k, m in task.modules.items()},
                "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in task.schedulers.items()},
                "log_window": {"sums": {k: float(v) for k, v in sums.items()}, "count": count},
                "validation": validator.state() if validator is not None else None,
                "guard": guard.state(),
                **(extra_state or {}),
            })
            trainlog.artifact(path, type="checkpoint", name=f"{desc}-checkpoint", step=step)
        ddp.barrier(env)

    step, stopped = start, False
    started = time.perf_counter()
    waited = 0.0  # seconds spent waiting for batches
    with _StopRequest() as stop:
        while step < total and not stopped:
            epoch, within = divmod(step, per_epoch)
            sampler.set_epoch(epoch, within * loop.batch_size)
            batches = start_workers(loader)
            while True:
                asked = time.perf_counter()
                try:
                    items = next(batches)
                except StopIteration:
                    break
                except RuntimeError as e:  # a DataLoader worker died
                    if not (stop.requested and not env.active):
                        raise
                    # Nothing of the next step has run: the state is step `step`'s; keep it.
                    log.warning("data loader failed after the stop signal (%s); saving step %d", e, step)
                    stopped = True
                    save(step)
                    break
                finally:
                    waited += time.perf_counter() - asked
                batch = Batch.from_items(items, runtime.device)
                generator = torch.Generator().manual_seed(derive_seed(loop.seed, AUGMENT, env.rank, step))
                batch = augment(batch, generator)
                batch = batch._replace(blurry=runtime.images(batch.blurry), sharp=runtime.images(batch.sharp))
                losses = task.train_step(batch)
                try:
                    check_finite(losses, None, step + 1, first_opt.param_groups[0]["lr"], desc, env)
                except TrainingDiverged as e:
                    if not guard.can_recover:
                        raise
                    guard.act(step + 1, f"a non-finite loss ({e.found})")
                    losses = {}  # this step's losses are not averaged into the log
                guard.observe(losses)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                count += 1 if losses else 0
                step += 1
                if step % per_epoch == 0:
                    step_schedulers(task)
                val_gain = None
                if validator is not None and (step % validate_every == 0 or step == total):
                    val_gain = validator.validate(step, guard)
                if step % loop.log_every == 0 or step == total:
                    means = ddp.mean_over_ranks({k: v / max(count, 1) for k, v in sums.items()}, env)
                    row = {k: float(v) for k, v in means.items()}
                    row["collapses"] = len(guard.events)
                    if validator is not None and validator.history:
                        row["val_gain"] = val_gain if val_gain is not None else validator.history[-1][1]
                    lr = first_opt.param_groups[0]["lr"]
                    trainlog.write({"step": step, "epoch": (step - 1) // per_epoch, "lr": lr, **row})
                    _quietly(bar.set_postfix, {k: f"{row[k]:.4g}" for k in shown if k in row}, refresh=False)
                    sums, count = {}, 0
                _quietly(bar.update, 1)
                done = step >= total
                stopped = not done and ddp.any_rank(stop.requested or (stop_after is not None and step >= stop_after),
                                                    env, runtime.device)
                if stopped or (not done and loop.checkpoint_every and step % loop.checkpoint_every == 0):
                    save(step)
                if done or stopped:
                    break
    _quietly(bar.close)
    if own_log:
        trainlog.end()
    seconds = time.perf_counter() - started
    completed = step >= total
    if completed and validator is not None:
        log.info("%s: validation chose step %d (gain %+.3f dB over the blurry input; last %+.3f dB)", desc,
                 validator.best_step, validator.best_gain, validator.history[-1][1])
        if validator.kept == "warm-up":
            log.warning("%s: no adversarial step came within collapse.keep_within = %g dB of the best validation gain "
                        "(%+.3f dB at step %d): the pixel warm-up's weights are kept", desc, loop.collapse.keep_within,
                        validator.peak_gain, validator.peak_step)
        validator.restore_best()
    if completed:
        check_finite({}, task.modules, step, first_opt.param_groups[0]["lr"], desc)
    if completed and env.is_main:
        checkpoint.clear(checkpoint_dir)
    ddp.barrier(env)
    trained = step - start
    wait_share = waited / seconds if seconds > 0 else 0.0
    log.info("%s: %d steps in %.1f s, %.1f%% of it waiting for data", desc, trained, seconds, 100 * wait_share)
    if skipped:
        log.warning("%s", skipped)
    return FitResult(completed, step, step // per_epoch, per_epoch, start, dict(trainlog.last), seconds,
                     trained * loop.batch_size * env.world_size / seconds if seconds > 0 else 0.0,
                     signal=None if completed else stop.signum, data_wait_share=round(wait_share, 4),
                     preloaded=preloaded, collapses=guard.events,
                     validation=validator.record() if validator is not None else {"skipped": skipped} if skipped else None)
