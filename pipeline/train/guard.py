"""The collapse guard: what stops an adversarial (or any) training run from ending worse than it was.

A run has collapsed when (`CollapseSettings`, params `train_*.collapse`):

- a loss is non-finite (the step's update has already spoiled the weights and Adam's moments);
- the validation gain falls more than `max_drop` dB below the best gain seen (the paper-size
  CFMD-GAN run on a GPU went from the blurry input to -15.7 dB in 306 steps);
- past the pixel warm-up, the discriminator's accuracy (the mean of its real and fake shares,
  `pipeline.models.common.discriminator_accuracy`) stays at or above `1 - d_margin` or at or below
  `d_margin` over `d_pinned` validations in a row: it wins or loses outright, and the generator's
  adversarial term no longer carries information (0: this check is off).

Past the pixel warm-up, validation keeps an adversarial step's weights only when its gain is within
`keep_within` dB of the best seen (pipeline.train.loop.Validation): measured, the Chrysos cGAN's
adversarial phase on this CPU sharpened (sharpness ratio 0.918 -> 0.938) and lost 2.6 dB on the test
clip, with every validation above the collapse threshold.

On a collapse the guard restores the best weights validation kept, clears every optimiser's
moments (Adam restarts, the lr warm-up with it), multiplies every lr by `lr_factor`, and the run
goes on (`action: retry`), at most `retries` times; after that, or with `action: stop`, it raises
`TrainingCollapsed`: the stage exits 1 with the reason and writes nothing, so the previous
weights stay. Each collapse is a record (step, reason, action, lr after) in the model's json
(`training.collapses`) and a `collapses` column in the DVCLive log. Without a validation video
there are no best weights to go back to: a non-finite loss stops the run (`TrainingDiverged`), as
before, and the other checks are off. The thresholds were chosen by measurement: docs/training.md,
"The adversarial half".
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

log = logging.getLogger(__name__)

ACTIONS = ("retry", "stop")


@dataclass(frozen=True)
class CollapseSettings:
    max_drop: float = 1.0  # dB below the best validation gain that counts as a collapse
    d_pinned: int = 0  # validations in a row with the discriminator's accuracy pinned (0: off)
    d_margin: float = 0.02  # pinned: accuracy >= 1 - d_margin or <= d_margin
    action: str = "retry"  # retry: best weights back, lr x lr_factor, go on | stop: exit 1, nothing written
    lr_factor: float = 0.1
    retries: int = 2  # collapses survived before the run stops anyway
    keep_within: float = 0.1  # dB: an adversarial step's weights are kept only this close to the best gain seen

    @classmethod
    def from_params(cls, value) -> "CollapseSettings":
        if isinstance(value, cls):
            return value
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"collapse = {value!r}: must be a mapping of {sorted(asdict(cls()))} (or omitted)")
        value = dict(value or {})
        unknown = set(value) - set(asdict(cls()))
        if unknown:
            raise ValueError(f"collapse: unknown keys {sorted(unknown)}; known: {sorted(asdict(cls()))}")
        try:
            settings = cls(**{k: type(getattr(cls(), k))(v) for k, v in value.items()})
        except (TypeError, ValueError) as e:
            raise ValueError(f"collapse: {e}") from None
        if settings.action not in ACTIONS:
            raise ValueError(f"collapse.action = {settings.action!r}: must be one of {' | '.join(ACTIONS)}")
        if not settings.max_drop > 0:
            raise ValueError(f"collapse.max_drop = {settings.max_drop}: must be > 0 (dB)")
        if not 0 < settings.lr_factor < 1:
            raise ValueError(f"collapse.lr_factor = {settings.lr_factor}: must be in (0, 1)")
        if settings.retries < 0 or settings.d_pinned < 0:
            raise ValueError("collapse.retries and collapse.d_pinned must be >= 0")
        if not settings.keep_within >= 0:
            raise ValueError(f"collapse.keep_within = {settings.keep_within}: must be >= 0 (dB)")
        if not 0 <= settings.d_margin < 0.5:
            raise ValueError(f"collapse.d_margin = {settings.d_margin}: must be in [0, 0.5)")
        return settings


class TrainingDiverged(RuntimeError):
    """A loss or a weight became non-finite: the run stops; no checkpoint or weights are written."""

    found: str | None = None  # the non-finite losses, `name = value, ...`

    @classmethod
    def at(cls, found: str, message: str) -> "TrainingDiverged":
        error = cls(message)
        error.found = found
        return error


class TrainingCollapsed(TrainingDiverged):
    """The collapse guard stopped the run (`action: stop`, or more collapses than `retries`)."""


def nonfinite_losses(losses: dict[str, torch.Tensor]) -> str | None:
    """`name = value` of every non-finite loss, or None when all are finite."""
    if not losses:
        return None
    values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
    if bool(torch.isfinite(values).all()):
        return None
    return ", ".join(f"{k} = {float(v)}" for k, v in losses.items() if not bool(torch.isfinite(v.detach().float())))


class CollapseGuard:
    """Watches one run (`fit`, or benchmarks/learning.py's trainer) and acts on a collapse.

    `observe(losses)` after every step (accumulates the discriminator's accuracy), `validated(step,
    gain)` after every validation; each returns the reason of a collapse or None; `act(step, reason)`
    restores and lowers the lr, or raises TrainingCollapsed."""

    def __init__(self, settings: CollapseSettings, task, validator, desc: str = "train"):
        self.settings, self.task, self.validator, self.desc = settings, task, validator, desc
        self.events: list[dict] = []
        self._acc_sum, self._acc_count, self._pinned = 0.0, 0, 0

    @property
    def can_recover(self) -> bool:
        return self.validator is not None and self.validator.best_state is not None

    def observe(self, losses: dict[str, torch.Tensor]) -> None:
        if "d_real_acc" in losses and getattr(self.task, "adversarial", False):
            self._acc_sum += float(losses["d_real_acc"] + losses["d_fake_acc"]) / 2
            self._acc_count += 1

    def validated(self, step: int, gain: float) -> str | None:
        s, v = self.settings, self.validator
        accuracy = self._acc_sum / self._acc_count if self._acc_count else None
        self._acc_sum, self._acc_count = 0.0, 0
        if not math.isfinite(gain):
            return f"the validation gain is {gain}"
        if gain < v.peak_gain - s.max_drop:
            return (f"the validation gain fell to {gain:+.2f} dB, {v.peak_gain - gain:.2f} dB below the best "
                    f"({v.peak_gain:+.2f} dB at step {v.peak_step}; collapse.max_drop {s.max_drop:g})")
        pinned = accuracy is not None and (accuracy >= 1 - s.d_margin or accuracy <= s.d_margin)
        self._pinned = self._pinned + 1 if pinned else 0
        if s.d_pinned and self._pinned >= s.d_pinned:
            self._pinned = 0
            return (f"the discriminator's accuracy has been pinned at {accuracy:.3f} for {s.d_pinned} validations "
                    f"(collapse.d_pinned)")
        return None

    def act(self, step: int, reason: str) -> None:
        """Best weights back and every lr x lr_factor (retry), or TrainingCollapsed (stop)."""
        s = self.settings
        stop = s.action == "stop" or len(self.events) >= s.retries or not self.can_recover
        lrs = {}
        if not stop:
            self.validator.restore_best()
            for name, opt in self.task.optimizers.items():
                opt.state.clear()  # the moments came from the collapsing run; the lr warm-up restarts
                for group in opt.param_groups:
                    group["lr"] *= s.lr_factor
                lrs[name] = opt.param_groups[0]["lr"]
            for sched in self.task.schedulers.values():
                sched.base_lrs = [lr * s.lr_factor for lr in sched.base_lrs]
        event = {"step": step, "reason": reason, "action": "stop" if stop else "retry",
                 "restored_step": self.validator.best_step if self.validator is not None else None, "lr": lrs}
        self.events.append(event)
        if stop:
            why = ("collapse.action is stop" if s.action == "stop" else "no validation video, so no best weights to "
                   "restore" if not self.can_recover else f"{len(self.events)} collapses (collapse.retries {s.retries})")
            raise TrainingCollapsed(f"the training collapsed at step {step}: {reason}; stopped ({why}); nothing was "
                                    f"saved and the previous outputs are untouched. Lower {self.desc}.lr or the "
                                    "adversarial weights, or lengthen pixel_warmup, and rerun")
        log.warning("%s: collapse at step %d: %s; restored step %d's weights, lr x %g (%s), going on", self.desc, step,
                    reason, event["restored_step"], s.lr_factor, ", ".join(f"{k} {v:.3g}" for k, v in lrs.items()))

    def state(self) -> dict:
        return {"events": self.events, "pinned": self._pinned}

    def load(self, state: dict | None) -> None:
        if state:
            self.events, self._pinned = list(state["events"]), state["pinned"]
