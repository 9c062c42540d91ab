"""Averaging sharp frames into a blurry image, in stored sRGB values or in linear light.

gamma = 1.0 averages the stored 8-bit values directly (the CFMD authors' code); gamma = 2.2
averages (v/255)**2.2 and re-encodes, approximating a camera integrating light (GoPro, REDS).
Both round to the nearest 8-bit value, so a test can recompute the blurry image from the sharp
frames exactly.
"""
from __future__ import annotations

import numpy as np


class RunningMean:
    """Mean of images added one at a time; readable at any point (VLA grows windows frame by frame)."""

    def __init__(self, gamma: float = 1.0):
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.gamma = float(gamma)
        # float64 sums of 8-bit values are exact, so the result cannot depend on summation order
        self._lut = (np.arange(256, dtype=np.float64) / 255.0) ** self.gamma if gamma != 1.0 else None
        self.sum: np.ndarray | None = None
        self.count = 0

    def add(self, img: np.ndarray) -> None:
        x = img.astype(np.float64) if self._lut is None else self._lut[img]
        if self.sum is None:
            self.sum = x
        else:
            self.sum += x
        self.count += 1

    def mean(self) -> np.ndarray:
        if not self.count:
            raise ValueError("mean of no images")
        m = self.sum / self.count
        if self._lut is not None:
            m = 255.0 * m ** (1.0 / self.gamma)
        return np.clip(np.floor(m + 0.5), 0, 255).astype(np.uint8)


def average(images, gamma: float = 1.0) -> np.ndarray:
    """Blurry image of a stack of uint8 images (N, H, W, C)."""
    acc = RunningMean(gamma)
    for img in images:
        acc.add(img)
    return acc.mean()
