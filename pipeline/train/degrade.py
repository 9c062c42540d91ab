"""Sensor realism for the blurry training input: saturation clipping, Poisson-Gaussian noise, JPEG.

Synthetic blur is a clean average; a camera's blurry photo is also clipped where bright parts
saturate, noisy, and compressed (RSBlur, Rim et al. 2022). Each train_* section's `degrade`
block (all off by default) applies, in this order, to the BLURRY input only (the sharp target
stays clean), on the 8-bit RGB image of each item before augmentation:

saturation  {gain: [lo, hi]}: in linear light (sRGB 2.2), the image is multiplied by a gain
            drawn in [lo, hi] (>= 1: over-exposure) and clipped at 1: bright regions
            saturate as a sensor's do, then re-encoded. null: off.
noise       {shot: [lo, hi], read: [lo, hi]}: Poisson-Gaussian noise in linear light, variance
            shot * x + read^2 (x in [0, 1]); shot and read drawn per item. null: off.
jpeg        {quality: [lo, hi]}: JPEG round trip (OpenCV) at an integer quality drawn in [lo, hi]. null: off.

Every draw comes from a generator seeded by the item's seed (`data.item_seed`: run seed, epoch,
position), so an item is degraded the same way on any machine, worker count or resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

GAMMA = 2.2


def _range(section: dict, key: str, where: str, lo: float, hi: float | None = None) -> tuple[float, float]:
    v = section.get(key)
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        raise ValueError(f"{where}.{key} = {v!r}: must be [low, high]")
    a, b = float(v[0]), float(v[1])
    if not (lo <= a <= b and (hi is None or b <= hi)):
        raise ValueError(f"{where}.{key} = {list(v)}: must be [low, high] with {lo:g} <= low <= high"
                         + (f" <= {hi:g}" if hi is not None else ""))
    return a, b


def _block(value, name: str, keys: tuple[str, ...]) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"degrade.{name} = {value!r}: must be a section ({', '.join(keys)}) or null")
    unknown = set(value) - set(keys)
    if unknown:
        raise ValueError(f"degrade.{name}: unknown keys {sorted(unknown)}; allowed: {', '.join(keys)}")
    missing = set(keys) - set(value)
    if missing:
        raise ValueError(f"degrade.{name}: missing keys {sorted(missing)}")
    return value


@dataclass(frozen=True)
class Degrade:
    saturation: tuple[float, float] | None = None  # gain range in linear light
    shot: tuple[float, float] | None = None  # Poisson part: variance shot * x
    read: tuple[float, float] | None = None  # Gaussian part: std read
    jpeg: tuple[int, int] | None = None  # quality range

    @classmethod
    def from_params(cls, section: Any) -> "Degrade":
        """The `degrade` block of a train_* section (null or {}: all off)."""
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ValueError(f"degrade = {section!r}: must be a section (saturation, noise, jpeg)")
        unknown = set(section) - {"saturation", "noise", "jpeg"}
        if unknown:
            raise ValueError(f"degrade: unknown keys {sorted(unknown)}; allowed: saturation, noise, jpeg")
        sat = _block(section.get("saturation"), "saturation", ("gain",))
        noise = _block(section.get("noise"), "noise", ("shot", "read"))
        jpeg = _block(section.get("jpeg"), "jpeg", ("quality",))
        q = _range(jpeg, "quality", "degrade.jpeg", 1, 100) if jpeg else None
        return cls(_range(sat, "gain", "degrade.saturation", 1.0) if sat else None,
                   _range(noise, "shot", "degrade.noise", 0.0, 1.0) if noise else None,
                   _range(noise, "read", "degrade.noise", 0.0, 1.0) if noise else None,
                   (int(q[0]), int(q[1])) if q else None)

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.saturation, self.shot, self.jpeg))

    def __call__(self, img: np.ndarray, seed: int) -> np.ndarray:
        """Degraded copy of an 8-bit HxWx3 image (RGB); the same (img, seed) gives the same bytes."""
        if not self.enabled:
            return img
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xDE6])
        out = img
        if self.saturation is not None or self.shot is not None:
            x = (img.astype(np.float32) * np.float32(1 / 255.0)) ** np.float32(GAMMA)
            if self.saturation is not None:
                x = np.minimum(x * np.float32(rng.uniform(*self.saturation)), 1.0)
            if self.shot is not None:
                shot, read = rng.uniform(*self.shot), rng.uniform(*self.read)
                std = np.sqrt(np.maximum(x, 0) * shot + read * read).astype(np.float32)
                x = x + std * rng.standard_normal(x.shape, dtype=np.float32)
            x = np.clip(x, 0.0, 1.0) ** np.float32(1 / GAMMA)
            out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if self.jpeg is not None:
            quality = int(rng.integers(self.jpeg[0], self.jpeg[1] + 1))
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(out[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
        return out
