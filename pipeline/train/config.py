"""A training stage's params section -> typed settings.

Every training section of params.yaml holds the loop keys below, a `runtime` block, and the
model's own keys. Unknown keys raise, so a typo in `dvc exp run -S` fails instead of being ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from pipeline.dataset.manifest import METHODS
from pipeline.params import check_network, check_types


class TrainingSetupError(ValueError):
    """What a training stage cannot start with (no training rows, too few for a batch, a test video
    held out for validation, crop_size above the images, a missing or wrong input weights file): the
    stage exits with this one line, naming the param or the file."""


def take(cls, mapping: Mapping[str, Any] | None, where: str):
    """cls(**mapping), naming the unknown keys of `mapping`, or the bad key, in the error."""
    mapping = dict(mapping or {})
    unknown = set(mapping) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    check_types(cls, mapping, where)
    try:
        return cls(**mapping)
    except ValueError as e:
        head = str(e).split(" ")[0].split(".")[0].rstrip(":")  # the key the message starts with, if any
        raise ValueError(f"{where}.{e}" if head in mapping else f"{where}: {e}") from None


def check_optimiser(own: Mapping[str, Any], name: str) -> None:
    """Range checks of the optimiser keys a model section holds (types are checked by check_types):
    lr > 0, betas in [0, 1), lr_decay in (0, 1], pixel_warmup >= 0. A negative lr or decay would
    run gradient ascent and report success."""
    if "lr" in own and not own["lr"] > 0:
        raise ValueError(f"{name}.lr = {own['lr']}: must be > 0")
    if "betas" in own and not all(0 <= b < 1 for b in own["betas"]):
        raise ValueError(f"{name}.betas = {list(own['betas'])}: must be two numbers in [0, 1)")
    if "lr_decay" in own and not 0 < own["lr_decay"] <= 1:
        raise ValueError(f"{name}.lr_decay = {own['lr_decay']}: must be in (0, 1] (the lr is multiplied by it once "
                         "per epoch; 1: constant)")
    if own.get("pixel_warmup", 0) < 0:
        raise ValueError(f"{name}.pixel_warmup = {own['pixel_warmup']}: must be >= 0 (steps)")


def check_loss_weights(weights, name: str) -> None:
    """Every loss weight >= 0 (a negative one maximises its error) and every epsilon > 0."""
    for f in fields(weights):
        value = getattr(weights, f.name)
        if f.name.endswith("eps") and not value > 0:
            raise ValueError(f"{name}.{f.name} = {value}: must be > 0")
        if not value >= 0:
            raise ValueError(f"{name}.{f.name} = {value}: must be >= 0 (0: the term is off)")


def networks_of(own: dict, name: str, networks: Mapping[str, str]) -> dict[str, dict]:
    """The network blocks of a section ({key: NETWORKS name}), each checked by pipeline.params's
    schema (widths, depths, levels) and popped from `own`."""
    return {key: check_network(network, own.pop(key, None) or {}, f"{name}.{key}") for key, network in networks.items()}


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
    resolution: int | None = None  # images area-downscaled to this on load (None: the dataset's crop.size)
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = False
    colour: Any = None  # [low, high]: random channel order and RGB gains per sample (pipeline.train.augment); null: off
    log_every: int = 1
    checkpoint_every: int = 0  # 0: only when interrupted
    degrade: Any = None  # sensor realism of the blurry input (pipeline.train.degrade); null: off
    identity_share: float = 0.0  # share of items whose input is the sharp target itself (no harm to sharp faces)
    lr_warmup: int = 0  # each optimiser's first steps at a linearly rising share of its lr (pipeline.train.optim.update)
    validation_video: str | None = None  # a training video held out: scored during training, best steps kept
    validate_every: int = 0  # steps between validations (0: once per epoch)
    collapse: Any = None  # the collapse guard's settings (pipeline.train.guard.CollapseSettings); null: defaults

    def __post_init__(self):
        from pipeline.train.degrade import Degrade
        from pipeline.train.guard import CollapseSettings

        object.__setattr__(self, "collapse", CollapseSettings.from_params(self.collapse))

        object.__setattr__(self, "methods", methods_of(self.methods))
        if not isinstance(self.degrade, Degrade):
            object.__setattr__(self, "degrade", Degrade.from_params(self.degrade))
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        if self.colour is not None:
            try:
                low, high = (float(g) for g in self.colour)
            except (TypeError, ValueError):
                raise ValueError(f"colour = {self.colour!r}: must be [low, high] gains (or null: off)") from None
            if not 0 < low <= high <= 1:
                raise ValueError(f"colour = {list(self.colour)}: must be [low, high] with 0 < low <= high <= 1")
            object.__setattr__(self, "colour", (low, high))
        for key in ("steps", "epochs", "batch_size", "log_every", "epoch_samples"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} = {getattr(self, key)}: must be >= 1"
                                 + (" (or null)" if key in ("epochs", "epoch_samples") else ""))
        if not 0 <= float(self.identity_share) < 1:
            raise ValueError(f"identity_share = {self.identity_share}: must be in [0, 1) (0: off)")
        if self.lr_warmup < 0:
            raise ValueError(f"lr_warmup = {self.lr_warmup}: must be >= 0 (steps; 0: none)")
        if self.validate_every < 0:
            raise ValueError(f"validate_every = {self.validate_every}: must be >= 0 (0: once per epoch)")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every = {self.checkpoint_every}: must be >= 0 (0: only when interrupted)")
        if self.crop_size < 16 or self.crop_size % 16:
            raise ValueError(f"crop_size = {self.crop_size}: must be a multiple of 16, at least 16 "
                             "(the networks halve it several times)")
        if self.resolution is not None and (self.resolution < 16 or self.resolution % 16):
            raise ValueError(f"resolution = {self.resolution}: must be a multiple of 16, at least 16 (or null: the "
                             "dataset's crop.size)")
        if self.resolution is not None and self.crop_size > self.resolution:
            raise ValueError(f"crop_size = {self.crop_size}: must be at most resolution ({self.resolution}), the size "
                             "of the images it is cut from")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale = {list(self.scale)}: must be [low, high] with 0 < low <= high")

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
    preload: Any = "auto"  # decode every training item once into memory: auto (when it fits PRELOAD_BYTES) | true | false

    def __post_init__(self):
        for key, allowed in (("device", ("auto", "cpu", "cuda")), ("amp", ("auto", "bf16", "none")),
                             ("channels_last", ("auto", True, False)), ("preload", ("auto", True, False))):
            value = getattr(self, key)
            if value not in allowed:
                raise ValueError(f"{key} = {value!r}: must be one of {' | '.join(map(str, allowed))}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers = {self.num_workers}: must be >= 0")


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
