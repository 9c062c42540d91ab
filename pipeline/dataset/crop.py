"""The face crop shared by every averaging method (docs/dataset.md).

Each frame's landmark box is widened by `widen` x its width/height on every side, the boxes are
averaged over the window, made square around their centre, snapped to whole pixels and resized
to `size` (bicubic). The crop is computed by one function, `crop_resize`, from either a whole
frame or a stored region of it, so the dataset's sharp frames and blurry images are the same
pixels whichever way they are read back.

A box that leaves the frame is handled by the `edge` policy and recorded per sample:
- "shift": move the box inside the frame (it keeps its size); when it is larger than the frame,
  pad instead. Recorded as "shift" (or "pad").
- "pad": keep the box where it is and fill what lies outside the frame with black.
Boxes inside the frame are recorded as "none".
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EDGE_POLICIES = ("shift", "pad")


@dataclass(frozen=True)
class CropParams:
    """The crop policy (params `crop`), read once here for every stage and the deblur command."""

    widen: float = 0.5
    size: int = 256
    edge: str = "shift"

    @classmethod
    def from_params(cls, p: dict) -> "CropParams":
        return cls(float(p.get("widen", cls.widen)), int(p.get("size", cls.size)), str(p.get("edge", cls.edge)))


def widened_boxes(points: np.ndarray, widen: float) -> np.ndarray:
    """Per-frame landmark boxes widened by `widen` x size on every side: (F, 68, 2) -> (F, 4).

    A frame without a face (all points NaN) gets a NaN box."""
    lo, hi = points.min(axis=1), points.max(axis=1)
    size = hi - lo
    return np.concatenate([lo - widen * size, hi + widen * size], axis=1).astype(np.float64)


def square_box(box: np.ndarray, frame_w: int, frame_h: int, edge: str = "shift") -> tuple[np.ndarray, str]:
    """Square integer box (x0, y0, x1, y1; x1/y1 exclusive) around `box`'s centre, and the edge action."""
    if edge not in EDGE_POLICIES:
        raise ValueError(f"crop.edge must be one of {EDGE_POLICIES}, got {edge!r}")
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(int(round(max(box[2] - box[0], box[3] - box[1]))), 1)
    x0, y0 = int(np.floor(cx - side / 2 + 0.5)), int(np.floor(cy - side / 2 + 0.5))
    inside = x0 >= 0 and y0 >= 0 and x0 + side <= frame_w and y0 + side <= frame_h
    if inside:
        action = "none"
    elif edge == "shift" and side <= frame_w and side <= frame_h:
        x0 = min(max(x0, 0), frame_w - side)
        y0 = min(max(y0, 0), frame_h - side)
        action = "shift"
    else:
        action = "pad"
    return np.array([x0, y0, x0 + side, y0 + side], dtype=np.int64), action


def clip_box(box: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
    """The part of an integer box that lies inside the frame (may be empty)."""
    return np.array([max(box[0], 0), max(box[1], 0), min(box[2], frame_w), min(box[3], frame_h)],
                    dtype=np.int64)


def crop_resize(src: np.ndarray, box: np.ndarray, size: int, origin=(0, 0),
                frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Crop the square integer `box` (source-frame pixels) and resize it to size x size, bicubic.

    `src` is the whole frame (origin (0, 0)) or a stored region of it whose top-left corner is at
    `origin` in frame pixels; `frame_size` (w, h) is the frame's size, needed when `src` is a
    region, so pixels outside the frame are padded black the same way in both cases.
    """
    fw, fh = frame_size if frame_size is not None else (src.shape[1], src.shape[0])
    ox, oy = origin
    x0, y0, x1, y1 = (int(v) for v in box)
    cx0, cy0, cx1, cy1 = clip_box(np.array([x0, y0, x1, y1]), fw, fh)
    if cx0 == x0 and cy0 == y0 and cx1 == x1 and cy1 == y1:
        patch = src[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    else:
        patch = np.zeros((y1 - y0, x1 - x0) + src.shape[2:], dtype=src.dtype)
        if cx1 > cx0 and cy1 > cy0:
            patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = src[cy0 - oy:cy1 - oy, cx0 - ox:cx1 - ox]
    if patch.shape[0] != y1 - y0 or patch.shape[1] != x1 - x0:
        raise ValueError(f"stored region at {origin} does not cover crop box {box.tolist()}")
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_CUBIC)


def to_crop_coords(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Map source-pixel points into the resized crop's pixel grid (pixel centres at integers,
    as OpenCV's resize samples them)."""
    scale = size / float(box[2] - box[0])
    return ((points - np.asarray(box[:2], dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
