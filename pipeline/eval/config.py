"""Evaluation settings (params `evaluate`) and the names of systems and tables."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from pipeline.dataset.manifest import METHODS
from pipeline.metrics import fid as fid_metric
from pipeline.metrics import landmarks_error as lmk
from pipeline.params import check_types


log = logging.getLogger("evaluate")


BASELINE = "blurry"
TABLES = {"cfmd": ("all_u", "centre_fmr", "centre_middle"), "chrysos": ("middle",)}
MAIN_TABLE = {"cfmd": "all_u", "chrysos": "middle"}



@dataclass(frozen=True)
class EvalConfig:
    split: str = "test"
    resolution: int | None = None  # images area-downscaled to this before scoring (None: the dataset's crop.size)
    methods: tuple[str, ...] = METHODS
    max_samples: Any = None  # per method: an int, {method: int}, or None (every sample)
    batch_size: int = 16  # restorations and FID images per forward pass
    fid: bool = True
    fid_min_images: int = fid_metric.MIN_IMAGES  # a cell with fewer images gets FID null (reason in metrics_info)
    identity: bool = True
    landmarks: bool = True
    landmark_threshold: float = lmk.THRESHOLD
    detect_upsample: int = 0  # dlib HOG upsampling when finding the face in a 256 crop
    lpips: str = "auto"  # auto | required | none
    lpips_net: str = "alex"
    crop_widen: float = 0.5  # the crop policy (crop.widen): fallback face box
    face_samples: Any = None  # per method: the dlib metrics run on this many scored samples (int, {method: int}, None: all)
    face_workers: Any = "auto"  # processes for the dlib metrics; auto: 0 on CPU, spare cores with CUDA
    prefetch: int = 2  # samples read ahead by background threads
    sheet_samples: int = 3
    sheet_u: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    device: str = "auto"
    amp: str = "auto"
    channels_last: Any = "auto"

    @classmethod
    def from_params(cls, section: Mapping[str, Any], crop: Mapping[str, Any] | None = None) -> "EvalConfig":
        """The params.yaml `evaluate` section (+ `crop.widen`) -> settings; unknown keys raise."""
        s = dict(section or {})
        known = {"split", "resolution", "methods", "max_samples", "batch_size", "fid", "fid_min_images", "identity", "landmarks",
                 "lpips", "lpips_net", "face_samples", "face_workers", "prefetch", "sheet", "runtime"}
        unknown = set(s) - known
        if unknown:
            raise ValueError(f"evaluate: unknown keys {sorted(unknown)}")
        lm = dict(s.pop("landmarks", {}) or {})
        sheet = dict(s.pop("sheet", {}) or {})
        rt = dict(s.pop("runtime", {}) or {})
        for where, block, keys in (("landmarks", lm, {"enabled", "threshold", "upsample"}),
                                   ("sheet", sheet, {"samples", "u"}),
                                   ("runtime", rt, {"device", "amp", "channels_last"})):
            if set(block) - keys:
                raise ValueError(f"evaluate.{where}: unknown keys {sorted(set(block) - keys)}")
        check_types(cls, {k: v for k, v in s.items() if k != "methods"}, "evaluate")
        check_types({"enabled": bool, "threshold": float, "upsample": int}, lm, "evaluate.landmarks")
        check_types({"samples": int, "u": tuple[float, ...]}, sheet, "evaluate.sheet")
        check_types({"device": str, "amp": str}, rt, "evaluate.runtime")
        methods = s.pop("methods", METHODS)
        methods = METHODS if methods == "both" else (methods,) if isinstance(methods, str) else tuple(methods)
        if not methods or set(methods) - set(METHODS):
            raise ValueError(f"evaluate.methods must be drawn from {METHODS}, got {methods!r}")
        cfg = cls(methods=methods, landmarks=bool(lm.get("enabled", True)),
                  landmark_threshold=float(lm.get("threshold", lmk.THRESHOLD)),
                  detect_upsample=int(lm.get("upsample", 0)),
                  sheet_samples=int(sheet.get("samples", 3)),
                  sheet_u=tuple(float(u) for u in sheet.get("u", cls.sheet_u)),
                  crop_widen=float((crop or {}).get("widen", 0.5)), **rt, **s)
        if cfg.batch_size < 1:
            raise ValueError(f"evaluate.batch_size = {cfg.batch_size}: must be >= 1")
        if cfg.resolution is not None and (cfg.resolution < 16 or cfg.resolution % 16):
            raise ValueError(f"evaluate.resolution = {cfg.resolution}: must be a multiple of 16, at least 16 (or null: "
                             "the dataset's crop.size)")
        if cfg.fid_min_images < 2:
            raise ValueError(f"evaluate.fid_min_images = {cfg.fid_min_images}: must be >= 2 (a covariance needs two)")
        if cfg.prefetch < 0:
            raise ValueError(f"evaluate.prefetch = {cfg.prefetch}: must be >= 0")
        return cfg

    def quota(self, method: str) -> int | None:
        """Samples of `method` scored (evaluate.max_samples); None: all."""
        return _per_method(self.max_samples, method, "max_samples")

    def face_quota(self, method: str) -> int | None:
        """Scored samples of `method` that also get the dlib metrics (evaluate.face_samples); None: all."""
        return _per_method(self.face_samples, method, "face_samples")

    def workers(self, device: torch.device) -> int:
        if self.face_workers == "auto":
            return min(max((os.cpu_count() or 1) - 2, 1), 8) if device.type == "cuda" else 0
        return int(self.face_workers)


def _per_method(value, method: str, key: str) -> int | None:
    """An int, a {method: int} mapping or None (no limit) -> the limit for `method`."""
    if isinstance(value, Mapping):
        value = value.get(method)
    if value is not None and int(value) < 0:
        raise ValueError(f"evaluate.{key} must be >= 0 or null, got {value}")
    return None if value is None else int(value)
