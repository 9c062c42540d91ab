"""Facial-motion-based reordering (FMR, CFMD section 4.1) and the control factor u.

A sample's N sharp frames are sorted by a facial key point: x ascending, then y ascending, then
time ascending (ties broken by time keep the order stable and deterministic, as the authors'
Python stable sort over time order does). Defaults follow the authors' code: landmark 36 (outer
corner of the eye on the image's left, 0-based 68-point indexing), in SOURCE-image pixels,
truncated to integers with int() (`space: source`, `rounding: truncate`), and u = i / (N - 1)
for the i-th reordered frame (0-based), so u = 0 is the first, 1 the last and 0.5 the middle
(`u_formula: authors`). The paper's text writes u = (i - 1) / N with 1-based i, i.e. i / N
0-based (`u_formula: paper`).

`space: crop` sorts on the key point in output-crop pixels instead; `rounding: round` rounds
halves up (this project before issue 12 used crop + round), `rounding: none` keeps floats.
Truncation and rounding create ties, which time order breaks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

U_FORMULAS = {"authors": "u = i / (N - 1)", "paper": "u = (i - 1) / N, i 1-based"}
SPACES = ("source", "crop")
ROUNDINGS = ("truncate", "round", "none")


@dataclass(frozen=True)
class FMRParams:
    keypoint: int = 36
    space: str = "source"  # source | crop
    rounding: str = "truncate"  # truncate | round | none
    u_formula: str = "authors"

    @classmethod
    def from_params(cls, p: dict) -> "FMRParams":
        if "integer" in p:
            raise ValueError("manifest.fmr.integer was replaced by manifest.fmr.rounding (truncate | round | none) "
                             "and manifest.fmr.space (source | crop); integer: true was space: crop, rounding: round")
        out = cls(int(p.get("keypoint", 36)), str(p.get("space", cls.space)), str(p.get("rounding", cls.rounding)),
                  str(p.get("u_formula", "authors")))
        if out.u_formula not in U_FORMULAS:
            raise ValueError(f"manifest.fmr.u_formula must be one of {list(U_FORMULAS)}, got {out.u_formula!r}")
        if not 0 <= out.keypoint < 68:
            raise ValueError(f"manifest.fmr.keypoint must be a 0-based 68-point index, got {out.keypoint}")
        if out.space not in SPACES:
            raise ValueError(f"manifest.fmr.space must be one of {SPACES}, got {out.space!r}")
        if out.rounding not in ROUNDINGS:
            raise ValueError(f"manifest.fmr.rounding must be one of {ROUNDINGS}, got {out.rounding!r}")
        return out


def round_keys(k: np.ndarray, rounding: str) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    if rounding == "truncate":
        return np.trunc(k)  # Python's int(): toward zero
    if rounding == "round":
        return np.floor(k + 0.5)
    if rounding == "none":
        return k
    raise ValueError(f"unknown FMR rounding {rounding!r}; one of {ROUNDINGS}")


def key_points(landmarks: np.ndarray, p: FMRParams) -> np.ndarray:
    """(N, 68, 2) landmarks (in the space `p.space` names) -> (N, 2) FMR keys, rounded by `p.rounding`."""
    return round_keys(landmarks[:, p.keypoint, :], p.rounding)


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
