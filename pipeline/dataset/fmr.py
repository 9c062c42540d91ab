"""Facial-motion-based reordering (FMR, CFMD section 4.1) and the control factor u.

A sample's N sharp frames are sorted by a facial key point in crop pixels: x ascending, then y
ascending, then time ascending (ties broken by time keep the order stable and deterministic).
Defaults follow the authors' code: landmark 36 (outer corner of the eye on the image's left,
0-based 68-point indexing), rounded to whole pixels, and u = i / (N - 1) for the i-th reordered
frame (0-based), so u = 0 is the first, 1 the last and 0.5 the middle (`u_formula: authors`).
The paper's text writes u = (i - 1) / N with 1-based i, i.e. i / N 0-based (`u_formula: paper`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

U_FORMULAS = {"authors": "u = i / (N - 1)", "paper": "u = (i - 1) / N, i 1-based"}


@dataclass(frozen=True)
class FMRParams:
    keypoint: int = 36
    integer: bool = True
    u_formula: str = "authors"

    @classmethod
    def from_params(cls, p: dict) -> "FMRParams":
        out = cls(int(p.get("keypoint", 36)), bool(p.get("integer", True)), str(p.get("u_formula", "authors")))
        if out.u_formula not in U_FORMULAS:
            raise ValueError(f"manifest.fmr.u_formula must be one of {list(U_FORMULAS)}, got {out.u_formula!r}")
        if not 0 <= out.keypoint < 68:
            raise ValueError(f"manifest.fmr.keypoint must be a 0-based 68-point index, got {out.keypoint}")
        return out


def key_points(landmarks_crop: np.ndarray, p: FMRParams) -> np.ndarray:
    """(N, 68, 2) crop-pixel landmarks -> (N, 2) FMR key points (rounded half up when `integer`)."""
    k = landmarks_crop[:, p.keypoint, :].astype(np.float64)
    return np.floor(k + 0.5) if p.integer else k


def fmr_order(keys: np.ndarray) -> np.ndarray:
    """Permutation sorting frames by x, then y, then time (keys are in temporal order)."""
    t = np.arange(len(keys))
    return np.lexsort((t, keys[:, 1], keys[:, 0]))


def control_factors(n: int, formula: str = "authors") -> np.ndarray:
    """u of the i-th reordered frame, i = 0 .. n-1."""
    i = np.arange(n, dtype=np.float64)
    if formula == "authors":
        u = i / (n - 1) if n > 1 else np.full(1, 0.5)
    elif formula == "paper":  # (i-1)/N with 1-based i, written 0-based
        u = i / n
    else:
        raise ValueError(f"unknown u formula {formula!r}; one of {list(U_FORMULAS)}")
    return u.astype(np.float32)
