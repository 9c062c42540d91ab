"""params.yaml validation: every section a stage reads is checked before any work starts.

A bad value fails the stage with one line naming the key, the value and what is allowed::

    params.yaml: blur.gamma = 0: must be > 0

The data sections (compute, ingest, landmarks, crop, blur, manifest) are described by the
declarative schema below: types, ranges, choices, and no unknown keys. A missing key is allowed
(the parsers' defaults apply). The training and evaluation sections are checked by their own
parsers (`pipeline.train.config`, `pipeline.models.*.task`, `pipeline.eval.config`), so there is
one definition of what they accept; their errors are re-raised as `ParamError`.

`pipeline.stage.load_params` validates the sections a stage asks for; `validate_file` checks a
whole file (tests/test_params.py runs it on the repository's params.yaml).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml


class ParamError(ValueError):
    """An invalid params value; str() is one line: `key = value: what is allowed`."""


def show(value) -> str:
    """A value as it would be written in params.yaml (JSON flow style)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _fail(key: str, value, allowed: str):
    raise ParamError(f"{key} = {show(value)}: {allowed}")


# ------------------------------------------------------------------ the schema language


class Spec:
    def check(self, key: str, value) -> None:
        raise NotImplementedError


@dataclass
class Num(Spec):
    """An int (`integer=True`: bools and floats refused) or a finite number, within bounds."""

    integer: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    multiple_of: int | None = None

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bounds = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if b is not None]
        if self.ge is not None and self.le is not None:
            bounds = [f"in [{self.ge:g}, {self.le:g}]"]
        out = " ".join([kind, " and ".join(bounds)]).strip()
        return out + (f", a multiple of {self.multiple_of}" if self.multiple_of else "")

    def check(self, key, value):
        ok_type = isinstance(value, int) if self.integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            _fail(key, value, f"must be {self.describe()}")
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
                or (self.multiple_of and value % self.multiple_of)):
            _fail(key, value, f"must be {self.describe()}")


def Int(**bounds) -> Num:
    return Num(integer=True, **bounds)


def Float(**bounds) -> Num:
    return Num(integer=False, **bounds)


@dataclass
class Bool(Spec):
    def check(self, key, value):
        if not isinstance(value, bool):
            _fail(key, value, "must be true or false")


@dataclass
class Str(Spec):
    allow_int: bool = False  # ids written unquoted (e.g. 300VW's 114) read back as ints

    def check(self, key, value):
        if isinstance(value, bool) or not (isinstance(value, str) or (self.allow_int and isinstance(value, int))):
            _fail(key, value, "must be a string")
        if value == "":
            _fail(key, value, "must not be empty")


@dataclass
class Choice(Spec):
    options: tuple

    def __init__(self, *options):
        self.options = options

    def check(self, key, value):
        if isinstance(value, bool) or value not in self.options:
            _fail(key, value, f"must be one of {' | '.join(map(str, self.options))}")


@dataclass
class Removed(Spec):
    """A key that no longer exists: refused with what replaced it (never silently ignored)."""

    message: str

    def check(self, key, value):
        _fail(key, value, self.message)


@dataclass
class Nullable(Spec):
    inner: Spec

    def check(self, key, value):
        if value is not None:
            try:
                self.inner.check(key, value)
            except ParamError as e:
                raise ParamError(f"{e} (or null)") from None


@dataclass
class ListOf(Spec):
    item: Spec
    min_len: int = 0
    unique: bool = False

    def check(self, key, value):
        if not isinstance(value, list):
            _fail(key, value, f"must be a list (e.g. [5, 9]) of items that are {_what(self.item)}")
        if len(value) < self.min_len:
            _fail(key, value, f"must hold at least {self.min_len} item(s)")
        for i, v in enumerate(value):
            try:
                self.item.check(key, v)
            except ParamError as e:
                raise ParamError(f"{key}[{i}] = {show(v)}: {str(e).split(': ', 1)[1]}") from None
        if self.unique and len({show(v) for v in value}) < len(value):
            _fail(key, value, "must not repeat an item")


def _what(spec: Spec) -> str:
    return spec.describe() if isinstance(spec, Num) else "strings" if isinstance(spec, Str) else "valid"


@dataclass
class Section(Spec):
    """A mapping with known keys (unknown keys refused), and optional cross-key checks
    `check(section) -> (key, message) | None`."""

    keys: dict[str, Spec]
    checks: tuple[Callable[[dict], tuple[str, str] | None], ...] = field(default_factory=tuple)

    def check(self, key, value):
        if value is None:
            return  # an empty section: every key at its default
        if not isinstance(value, Mapping):
            _fail(key, value, "must be a section (key: value lines)")
        prefix = f"{key}." if key else ""
        for k, v in value.items():
            if k not in self.keys:
                near = _near(str(k), self.keys)
                raise ParamError(f"{prefix}{k}: unknown key; allowed: {', '.join(self.keys)}"
                                 + (f" (did you mean {near}?)" if near else ""))
            self.keys[k].check(f"{prefix}{k}", v)
        for check in self.checks:
            problem = check(dict(value))
            if problem:
                sub, message = problem
                _fail(f"{prefix}{sub}", _get(value, sub), message)


def _get(section: Mapping, dotted: str):
    node = section
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _near(name: str, options) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.7)
    return close[0] if close else None


# ------------------------------------------------------------------ type checks from annotations
# The parsers of the training and evaluation sections keep their own definitions (dataclass
# fields); `check_types` checks a params mapping against those annotations, naming the key.


def _matches(hint, value) -> bool:
    """Does a params value fit an annotation (int, float, bool, str, tuple[...], X | None, Any)?"""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is dict or origin is dict:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(args[0], v) for v in value)
        return len(value) == len(args) and all(_matches(a, v) for a, v in zip(args, value))
    return True


def _describe(hint) -> str:
    import types
    import typing

    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).split(' ', 1)[-1]}s"
        return f"a list of {len(args)} {_describe(args[0]).split(' ', 1)[-1]}s"
    return str(hint)


def check_types(cls_or_hints, mapping: Mapping[str, Any], where: str) -> None:
    """ValueError `where.key = value: must be <type>` for a value of `mapping` that does not fit the
    annotations of a dataclass (or a {key: annotation} dict). Keys without an annotation pass."""
    import typing

    hints = cls_or_hints if isinstance(cls_or_hints, Mapping) else typing.get_type_hints(cls_or_hints)
    for key, value in mapping.items():
        if key in hints and not _matches(hints[key], value):
            raise ValueError(f"{where}.{key} = {show(value)}: must be {_describe(hints[key])}")


# ------------------------------------------------------------------ the data sections


def _vla_lengths(v: dict):
    lo, hi = v.get("min_len", 3), v.get("max_len", 21)
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        return "min_len", f"must be <= blur.vla.max_len ({hi})"
    return None


GATE_SWITCH = {"enabled": Bool()}


def _exposure_needs_interpolation(b: dict):
    e, k = b.get("exposure", 1.0), b.get("interpolate", 1)
    if isinstance(e, (int, float)) and e < 1 and k == 1:
        return "exposure", "an exposure below 1 needs interpolation (blur.interpolate >= 2)"
    return None

SCHEMA: dict[str, Section] = {
    "compute": Section({
        "n_jobs": Int(ge=1),
        "backend": Choice("loky", "threading", "sequential", "dask"),
        "chunk_frames": Nullable(Int(ge=0)),
    }),
    "ingest": Section({
        "source": Str(),
        "test_videos": ListOf(Str(allow_int=True), unique=True),
        "test_fraction": Float(ge=0, le=1),
        "split_salt": Str(allow_int=True),
        "image_fps": Float(gt=0),
    }),
    "landmarks": Section({
        "use_pts": Bool(),
        "detect_every": Int(ge=1),
        "detect_max_side": Int(ge=32),
        "upsample": Int(ge=0, le=4),
        "min_track_iou": Float(ge=0, le=1),
        "min_detect_score": Float(),
        "faces": Choice("all", "largest"),
        "min_face": Float(ge=0),
        "min_track_frames": Int(ge=1),
        "cut_threshold": Nullable(Float(gt=0, le=2)),
        "cut_ratio": Float(ge=0),
        "holds": Section({  # held (repeated) frames: pipeline/dataset/holds.py
            "max_diff": Float(ge=0, le=255),
            "relative": Float(ge=0, le=1),
            "max_relative_diff": Float(ge=0, le=255),
            "context": Int(ge=1, le=30),
            "max_block_diff": Float(gt=0, le=255),
            "max_side": Int(ge=16),
            "phase_window": Int(ge=0, le=1000),
            "phase_agreement": Float(gt=0.5, le=1),
            "phase_max_period": Int(ge=2, le=12),
            "phase_min_periods": Int(ge=2, le=100),
            "phase_contrast": Float(ge=1, le=1000),
        }),
    }),
    "crop": Section({
        "widen": Float(ge=0, le=5),
        "size": Int(ge=32, le=4096),
        "edge": Choice("shift", "pad"),
        "square": Choice("shorter", "longer"),
        "resize": Choice("pil", "opencv"),
    }),
    "blur": Section({
        "gamma": Float(gt=0, le=10),
        "rounding": Choice("truncate", "round"),
        "interpolate": Int(ge=1, le=64),
        "exposure": Float(gt=0, le=1),
        "units": Choice("frames", "pictures"),
        "png": Section({
            "encoder": Choice("fpng", "opencv"),
            "level": Int(ge=0, le=9),
        }),
        "fixed": Section({
            "windows": ListOf(Int(ge=2, le=1000), min_len=1, unique=True),
            "stride": Int(ge=1),
            "min_sharpness": Float(ge=0),
            "sharpness_space": Choice("crop", "source"),
            "sharpness_percentile": Nullable(Float(ge=0, le=100)),
        }),
        "vla": Section({
            "min_len": Int(ge=2, le=1000),
            "max_len": Int(ge=2, le=1000),
            "start": Choice("after_end", "stride"),
            "stride": Int(ge=1),
            "reverse": Bool(),
            "min_sharpness": Float(ge=0),
            "analysis_size": Int(ge=16, le=1024),
            "sharpness_space": Choice("crop", "source"),
            "overlap": Section({**GATE_SWITCH, "min_iou": Float(ge=0, le=1), "min_parts": Int(ge=0, le=7)}),
            "quality": Section({**GATE_SWITCH, "min_ssim": Float(ge=-1, le=1)}),
            "flow": Section({**GATE_SWITCH, "max_step": Float(gt=0), "reversal_cos": Float(ge=-1, le=1),
                             "min_step": Float(ge=0), "max_residual": Float(gt=0)}),
        }, checks=(_vla_lengths,)),
    }, checks=(_exposure_needs_interpolation,)),
    "manifest": Section({
        "fmr": Section({
            "keypoint": Int(ge=0, le=67),
            "integer": Removed("replaced by manifest.fmr.rounding (truncate | round | none) and "
                               "manifest.fmr.space (source | crop); integer: true was space: crop, rounding: round"),
            "rounding": Choice("truncate", "round", "none"),
            "space": Choice("source", "crop"),
            "u_formula": Choice("authors", "paper"),
        }),
    }),
}


# ------------------------------------------------------------------ network arguments
# The constructor arguments of every network, as the training sections give them (`train_cfmd.generator`,
# `train_chrysos_hg.hourglass`, ...) and as a weights file records them (`config.generator`, ...).
# One schema for both: a bad param is refused when params.yaml is loaded, and a weights file whose
# recorded config is out of range (resolution 40000, widths of "64" or -8) is refused before a
# network is built from it. The upper bounds are far above the papers' sizes; they keep a damaged
# or hostile file from asking for tens of gigabytes.

TRAINING_RESOLUTION = Nullable(Int(ge=16, le=4096, multiple_of=16))
NETWORKS: dict[str, Section] = {
    "cfmd_generator": Section({
        "base_width": Int(ge=8, le=256, multiple_of=4),  # SCM splits it in quarters
        "num_blocks": Int(ge=1, le=64),
        "mapping_width": Int(ge=1, le=1024),
        "mapping_layers": Int(ge=1, le=64),
        "attention_reduction": Int(ge=1, le=64),
    }),
    "cfmd_discriminator": Section({"width": Int(ge=1, le=512), "depth": Int(ge=1, le=8),
                                   "pooling": Choice("mean", "sum")}),
    "hourglass": Section({
        "n_stacks": Int(ge=1, le=16),
        "depth": Int(ge=1, le=8),
        "width": Int(ge=1, le=1024),
        "in_channels": Choice(3),
        "out_channels": Choice(3),
        "residual": Bool(),
    }),
    "chrysos_generator": Section({
        "width_multiplier": Float(gt=0, le=4),
        "unet_skip_layers": Nullable(ListOf(Int(ge=1, le=7), unique=True)),
        "output_tanh": Bool(),
        "residual": Bool(),
        "levels": Nullable(Int(ge=2, le=7)),
        "sharp_skip": Bool(),
        "residual_base": Choice("blurry", "hourglass"),
    }),
    "chrysos_discriminator": Section({"width_multiplier": Float(gt=0, le=4)}),
}


def check_network(network: str, arguments, where: str) -> dict:
    """`arguments` (a mapping) checked against NETWORKS[network]; ParamError naming `where.key`."""
    if not isinstance(arguments, Mapping):
        _fail(where, arguments, "must be a section (key: value lines)")
    NETWORKS[network].check(where, arguments)
    return dict(arguments)


# ------------------------------------------------------------------ sections with their own parsers


# "module:Class" whose `from_params(section)` parses the section. Named by string and imported
# only when that section is checked: a stage that reads `train_cfmd` already imports its parser,
# and the data stages (torch-free) and evaluation (no training code) must not reach them.
PARSERS: dict[str, str] = {
    "train_cfmd": "pipeline.models.cfmd.task:CFMDConfig",
    "train_chrysos_hg": "pipeline.models.chrysos.task:HourglassConfig",
    "train_chrysos_gan": "pipeline.models.chrysos.task:ChrysosGANConfig",
    "evaluate": "pipeline.eval.config:EvalConfig",
}


def _parse(section_name: str, section: dict) -> None:
    import importlib

    module, cls = PARSERS[section_name].split(":")
    getattr(importlib.import_module(module), cls).from_params(section)


SECTIONS = tuple(SCHEMA) + tuple(PARSERS)


def _spec_at(dotted: str) -> Spec | None:
    parts = dotted.split(".")
    spec: Spec | None = SCHEMA.get(parts[0])
    for p in parts[1:]:
        spec = spec.keys.get(p) if isinstance(spec, Section) else None
    return spec


def validate_key(dotted: str, value) -> None:
    """Check one params entry (a section such as `blur`, or a nested key such as `manifest.fmr`)."""
    top = dotted.split(".")[0]
    if top in PARSERS:
        if dotted != top:
            return  # a part of a parsed section: checked with the whole section
        if not isinstance(value, Mapping):
            _fail(top, value, "must be a section (key: value lines)")
        try:
            _parse(top, dict(value))
        except ParamError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            message = str(e).strip("'\"") if isinstance(e, KeyError) else str(e)
            if not message.startswith(top):
                message = f"{top}: {message}"
            raise ParamError(message.splitlines()[0]) from None
        return
    spec = _spec_at(dotted)
    if spec is not None:
        spec.check(dotted, value)


def validate(params: Mapping, keys: Iterable[str]) -> None:
    """Check the given entries of a loaded params file; ParamError on the first problem."""
    for key in keys:
        node: Any = params
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        validate_key(key, node)


def validate_all(params: Mapping) -> None:
    """Every section of a params file, and no unknown top-level sections."""
    if not isinstance(params, Mapping):
        raise ParamError(f"the file must hold sections (key: value lines), got {show(params)}")
    for key in params:
        if key not in SECTIONS:
            near = _near(str(key), SECTIONS)
            raise ParamError(f"{key}: unknown section; allowed: {', '.join(SECTIONS)}"
                             + (f" (did you mean {near}?)" if near else ""))
    validate(params, [k for k in SECTIONS if k in params])


def validate_file(path: str | Path = "params.yaml") -> dict:
    """Load and check a whole params file; returns it. ParamError (message prefixed with the file)."""
    params = load_yaml(path)
    try:
        validate_all(params)
    except ParamError as e:
        raise ParamError(f"{path}: {e}") from None
    return params


def load_yaml(path: str | Path) -> dict:
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None


def main(argv=None) -> int:
    """`python -m pipeline.params [params.yaml]`: check a whole file, exit 1 with the message if bad."""
    import sys

    path = (argv if argv is not None else sys.argv[1:]) or ["params.yaml"]
    try:
        validate_file(path[0])
    except ParamError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{path[0]}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def dotted_settings(settings: Iterable[str]) -> dict:
    """`["crop.resize=opencv", "blur.fixed.stride=3"]` (as `dvc exp run -S`: values read as YAML)
    as one nested params dict."""
    out: dict = {}
    for item in settings:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        d = out
        for k in path:
            d = d.setdefault(k, {})
        d[last] = yaml.safe_load(value)
    return out
