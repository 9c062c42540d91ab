"""Reading 68-point `.pts` annotation files (iBUG 300-W / 300VW format)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class PtsError(ValueError):
    """A malformed .pts file; the message names the file and what is wrong."""


def read_pts(path: str | Path) -> np.ndarray:
    """Return the points of a .pts file as float32 (n_points, 2) x, y in image pixels.

    Coordinates are kept as written (300-W files use the image's pixel grid; no 1-based shift is
    applied: at face scale the half-pixel question is far below annotation noise).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PtsError(f"{path}: cannot read ({e})") from e
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    header = {}
    i = 0
    while i < len(lines) and lines[i] != "{":
        key, _, value = lines[i].partition(":")
        header[key.strip()] = value.strip()
        i += 1
    if i == len(lines) or "}" not in lines:
        raise PtsError(f"{path}: no '{{ ... }}' point block")
    end = lines.index("}")
    try:
        n = int(header["n_points"])
    except (KeyError, ValueError) as e:
        raise PtsError(f"{path}: missing or invalid 'n_points' header") from e
    body = lines[i + 1:end]
    if len(body) != n:
        raise PtsError(f"{path}: header says {n} points, block holds {len(body)}")
    rows = [ln.split() for ln in body]
    bad = next((ln for ln, r in zip(body, rows) if len(r) != 2), None)
    if bad is not None:
        raise PtsError(f"{path}: every point needs exactly two coordinates, got {bad!r}")
    try:
        pts = np.array([[float(v) for v in r] for r in rows], dtype=np.float32)
    except ValueError as e:
        raise PtsError(f"{path}: non-numeric coordinate ({e})") from e
    if pts.shape != (n, 2):
        raise PtsError(f"{path}: every point needs exactly two coordinates")
    if not np.isfinite(pts).all():
        raise PtsError(f"{path}: non-finite coordinate (nan or inf)")
    return pts


def annotations_by_number(annot_dir: str | Path | None) -> dict[int, Path]:
    """Map frame number (from the file name, 1-based in 300VW) to its .pts file."""
    if not annot_dir:
        return {}
    from pipeline.dataset.video import frame_number_of  # one rule for frame numbers in file names

    return {frame_number_of(p, -1): p for p in sorted(Path(annot_dir).glob("*.pts"))
            if frame_number_of(p, -1) >= 0}
