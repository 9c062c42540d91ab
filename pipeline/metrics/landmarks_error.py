"""Landmark localisation error on restored faces, as in Chrysos, Favaro & Zafeiriou (2019).

dlib's 68 points are found on the restored image and on its ground-truth frame (in the same face
box, see `face.FaceShapes`); the error of an image is the mean point-to-point distance divided by
the diagonal of the ground-truth points' bounding box. Over a set of images: the cumulative error
distribution (CED: share of images with error <= t), its area up to t = 0.08 normalised to [0, 1]
(AUC: exactly mean(max(0, 1 - e / 0.08))), and the failure rate (share with error > 0.08).
A missing error (NaN) counts as a failure.
"""
from __future__ import annotations

import numpy as np

THRESHOLD = 0.08


def box_diagonal(points: np.ndarray) -> float:
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))


def diagonal_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point distance / ground-truth box diagonal; pred and truth are (K, 2)."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"point sets differ in shape: {pred.shape} vs {truth.shape}")
    diag = box_diagonal(truth)
    if diag <= 0:
        return float("nan")
    return float(np.linalg.norm(pred - truth, axis=1).mean() / diag)


def _errors(errors) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64).ravel()
    return np.where(np.isnan(e), np.inf, e)


def ced(errors, thresholds) -> np.ndarray:
    """Share of images whose error is <= each threshold."""
    e = _errors(errors)
    if e.size == 0:
        return np.full(len(thresholds), np.nan)
    return (e[None, :] <= np.asarray(thresholds, np.float64)[:, None]).mean(axis=1)


def auc(errors, threshold: float = THRESHOLD) -> float:
    """Area under the CED curve from 0 to `threshold`, divided by `threshold` (1 = all perfect)."""
    e = _errors(errors)
    return float(np.clip(1.0 - e / threshold, 0.0, 1.0).mean()) if e.size else float("nan")


def failure_rate(errors, threshold: float = THRESHOLD) -> float:
    e = _errors(errors)
    return float((e > threshold).mean()) if e.size else float("nan")
