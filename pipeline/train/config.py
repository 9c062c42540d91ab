"""A training stage's params section -> typed settings.

Every training section of params.yaml holds the loop keys below, a `runtime` block, and the
model's own keys. Unknown keys raise, so a typo in `dvc exp run -S` fails instead of being ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from pipeline.dataset.manifest import METHODS


def take(cls, mapping: Mapping[str, Any] | None, where: str):
    """cls(**mapping), naming the unknown keys of `mapping` in the error."""
    mapping = dict(mapping or {})
    unknown = set(mapping) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    return cls(**mapping)


def methods_of(value) -> tuple[str, ...]:
    """`fixed`, `vla`, `both`, or a list of methods -> tuple of methods."""
    methods = METHODS if value == "both" else (value,) if isinstance(value, str) else tuple(value)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods must be drawn from {METHODS} (or 'both'), got {value!r}")
    return tuple(methods)


@dataclass(frozen=True)
class LoopConfig:
    """What the step loop needs. `steps` are global steps (each one batch per process), or
    `epochs` (when set) epochs of `epoch_samples` samples (null: the training set's size);
    the lr decays once per epoch."""

    methods: Any = ("fixed",)
    seed: int = 0
    steps: int = 40
    epochs: int | None = None  # when set, replaces steps: epochs x steps per epoch
    batch_size: int = 4
    epoch_samples: int | None = None
    crop_size: int = 64
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = False
    log_every: int = 1
    checkpoint_every: int = 0  # 0: only when interrupted

    def __post_init__(self):
        object.__setattr__(self, "methods", methods_of(self.methods))
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        if min(self.steps, self.epochs or 1, self.batch_size, self.log_every) < 1 or self.checkpoint_every < 0:
            raise ValueError("steps, epochs, batch_size, log_every must be >= 1 and checkpoint_every >= 0")
        if self.epoch_samples is not None and self.epoch_samples < 1:
            raise ValueError("epoch_samples must be >= 1 (or null: the training set's size)")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, got {self.scale}")

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.epochs * steps_per_epoch if self.epochs is not None else self.steps


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how fast: see `pipeline.models.device.resolve_runtime`."""

    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on GPU) | bf16 | none
    channels_last: Any = "auto"  # auto (on GPU) | true | false
    compile: bool = False
    num_workers: int = 2


LOOP_KEYS = frozenset(f.name for f in fields(LoopConfig))
# Keys that do not change what a run computes: a checkpoint made under other values still resumes.
RESUMABLE_ACROSS = frozenset({"steps", "epochs", "log_every", "checkpoint_every", "runtime", "sheet"})


def split_section(section: Mapping[str, Any], name: str, own_keys) -> tuple[LoopConfig, RuntimeConfig, dict]:
    """(loop settings, runtime settings, the model's own keys) of a params section."""
    unknown = set(section) - LOOP_KEYS - {"runtime"} - set(own_keys)
    if unknown:
        raise ValueError(f"params section {name}: unknown keys {sorted(unknown)}")
    loop = take(LoopConfig, {k: v for k, v in section.items() if k in LOOP_KEYS}, name)
    runtime = take(RuntimeConfig, section.get("runtime"), f"{name}.runtime")
    return loop, runtime, {k: section[k] for k in own_keys if k in section}
