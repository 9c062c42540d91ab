"""The face crop shared by every averaging method and the deblur command (docs/protocol.md).

Defaults reproduce the CFMD authors' `prepareDataset/genBlurDataset.py` (REFERENCE §2):

1. each frame's tight landmark box is widened by `widen` x its width/height on every side, with
   the new left/top rounded down and right/bottom rounded up to whole pixels (`frame_boxes`);
2. the window's box is the float mean of its frames' boxes;
3. `square: shorter` (authors): the mean box is cropped the way PIL's `Image.crop` crops a float
   box (each coordinate through Python's `round`, halves to even), then centre-cropped to its
   shorter side s (left = (w - s) / 2, top = (h - s) / 2, right/bottom = left/top + s, again
   rounded each by `round`). The result can be one pixel longer or shorter than s along the
   longer side (when s is odd and w - s is odd): the crop box is then 1 px off square, and the
   resize to size x size stretches it by that pixel, as the authors' crops do.
   `square: longer` (this project before issue 12): a square of the box's longer side around its
   centre, snapped to whole pixels: always exactly square, and the whole widened box is inside.
4. resize to size x size: `resize: pil` (authors) is PIL's BICUBIC, which widens its kernel
   (antialiases) when shrinking; `resize: opencv` is cv2.INTER_CUBIC, which does not (aliases
   when shrinking, identical support when enlarging).

The crop box is computed by `face_box` and the pixels by `crop_resize`, from either a whole frame
or a stored region of it, so the dataset's sharp frames and blurry images are the same pixels
whichever way they are read back.

A box that leaves the frame is handled by the `edge` policy and recorded per sample:
- "pad" (authors; PIL's crop fills the outside with black): keep the box where it is and fill
  what lies outside the frame with black. The crop box then extends outside the frame.
- "shift": move the box inside the frame (it keeps its size); when it is larger than the frame,
  pad instead. Recorded as "shift" (or "pad").
Boxes inside the frame are recorded as "none".
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EDGE_POLICIES = ("pad", "shift")
SQUARE_POLICIES = ("shorter", "longer")
RESIZE_METHODS = ("pil", "opencv")


@dataclass(frozen=True)
class CropParams:
    """The crop policy (params `crop`), read once here for every stage and the deblur command."""

    widen: float = 0.5
    size: int = 256
    edge: str = "pad"  # pad | shift
    square: str = "shorter"  # shorter | longer
    resize: str = "pil"  # pil | opencv

    def __post_init__(self):
        if self.edge not in EDGE_POLICIES:
            raise ValueError(f"crop.edge must be one of {EDGE_POLICIES}, got {self.edge!r}")
        if self.square not in SQUARE_POLICIES:
            raise ValueError(f"crop.square must be one of {SQUARE_POLICIES}, got {self.square!r}")
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"crop.resize must be one of {RESIZE_METHODS}, got {self.resize!r}")
        if self.size < 1:
            raise ValueError(f"crop.size must be >= 1, got {self.size}")

    @classmethod
    def from_params(cls, p: dict) -> "CropParams":
        return cls(float(p.get("widen", cls.widen)), int(p.get("size", cls.size)), str(p.get("edge", cls.edge)),
                   str(p.get("square", cls.square)), str(p.get("resize", cls.resize)))


def _as_written(points: np.ndarray) -> np.ndarray:
    """float32 landmarks as float64 values of their shortest decimal form.

    Landmarks are stored as float32; a .pts file holds decimals like 743.224, which the authors
    parse to float64. float32(743.224) is 743.22399902..., and widening in that value could put
    a box edge that is a whole number in decimal arithmetic on the other side of floor/ceil.
    The shortest decimal that round-trips a float32 is the one written (up to 7 digits), so this
    gives back the authors' float64 inputs. Integer points (dlib) are unchanged.
    """
    pts = np.asarray(points)
    if pts.dtype != np.float32:
        return pts.astype(np.float64)
    return pts.astype(str).astype(np.float64)  # numpy prints a float32 as its shortest round-trip decimal


def frame_boxes(points: np.ndarray, widen: float) -> np.ndarray:
    """Per-frame landmark boxes widened by `widen` x size on every side, left/top floored and
    right/bottom ceiled to whole pixels (authors' step 2): (F, 68, 2) -> (F, 4) float64.

    A frame without a face (all points NaN) gets a NaN box."""
    pts = np.asarray(points)
    lo, hi = _as_written(pts.min(axis=1)), _as_written(pts.max(axis=1))  # min/max are exact in float32
    size = hi - lo
    return np.concatenate([np.floor(lo - widen * size), np.ceil(hi + widen * size)], axis=1)


widened_boxes = frame_boxes  # the name used before issue 12


def _round_half_even(v: float) -> int:
    return int(round(float(v)))  # Python's round, as PIL's Image.crop uses


def square_box(box: np.ndarray, frame_w: int, frame_h: int, edge: str = "pad",
               square: str = "shorter") -> tuple[np.ndarray, str]:
    """Integer crop box (x0, y0, x1, y1; x1/y1 exclusive) made from the float `box`, and the edge
    action (none | shift | pad). See the module doc for `square`; `shorter` can return a box one
    pixel off square (the authors' rounding)."""
    if edge not in EDGE_POLICIES:
        raise ValueError(f"crop.edge must be one of {EDGE_POLICIES}, got {edge!r}")
    if square == "shorter":
        bx0, by0, bx1, by1 = (_round_half_even(v) for v in box)  # PIL: Image.crop(box)
        w, h = bx1 - bx0, by1 - by0
        s = max(min(w, h), 1)
        left, top = (w - s) / 2, (h - s) / 2  # centre crop to the shorter side, Image.crop again
        x0, y0 = bx0 + _round_half_even(left), by0 + _round_half_even(top)
        x1, y1 = bx0 + _round_half_even(left + s), by0 + _round_half_even(top + s)
    elif square == "longer":
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(int(round(max(box[2] - box[0], box[3] - box[1]))), 1)
        x0, y0 = int(np.floor(cx - side / 2 + 0.5)), int(np.floor(cy - side / 2 + 0.5))
        x1, y1 = x0 + side, y0 + side
    else:
        raise ValueError(f"crop.square must be one of {SQUARE_POLICIES}, got {square!r}")
    bw, bh = x1 - x0, y1 - y0
    inside = x0 >= 0 and y0 >= 0 and x1 <= frame_w and y1 <= frame_h
    if inside:
        action = "none"
    elif edge == "shift" and bw <= frame_w and bh <= frame_h:
        x0 = min(max(x0, 0), frame_w - bw)
        y0 = min(max(y0, 0), frame_h - bh)
        action = "shift"
    else:
        action = "pad"
    return np.array([x0, y0, x0 + bw, y0 + bh], dtype=np.int64), action


def face_box(points: np.ndarray, frame_w: int, frame_h: int, crop: CropParams) -> tuple[np.ndarray, str]:
    """The crop box of one window (or one face): points (F, 68, 2) of its frames -> integer box
    and edge action. One frame (F = 1) gives that frame's own box (VLA's gate, the deblur command)."""
    boxes = frame_boxes(points, crop.widen)
    return square_box(boxes.mean(0), frame_w, frame_h, crop.edge, crop.square)


def clip_box(box: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
    """The part of an integer box that lies inside the frame (may be empty)."""
    return np.array([max(box[0], 0), max(box[1], 0), min(box[2], frame_w), min(box[3], frame_h)],
                    dtype=np.int64)


def resize_to(patch: np.ndarray, size: int, resize: str = "opencv") -> np.ndarray:
    """A patch (H x W or H x W x 3, uint8) resized to size x size, bicubic (see module doc)."""
    if resize == "opencv":
        return cv2.resize(patch, (size, size), interpolation=cv2.INTER_CUBIC)
    if resize == "pil":
        from PIL import Image

        if patch.ndim == 3 and patch.shape[2] != 3:
            raise ValueError(f"PIL resize takes grey or 3-channel images, got {patch.shape}")
        # PIL filters each band alike, so BGR in gives the same BGR out as RGB would
        return np.array(Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.BICUBIC))
    raise ValueError(f"crop.resize must be one of {RESIZE_METHODS}, got {resize!r}")


def crop_resize(src: np.ndarray, box: np.ndarray, size: int, origin=(0, 0),
                frame_size: tuple[int, int] | None = None, resize: str = "opencv") -> np.ndarray:
    """Crop the integer `box` (source-frame pixels; black outside the frame) and resize it to
    size x size, bicubic with `resize` (pil | opencv).

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
    return resize_to(patch, size, resize)


def laplacian_variance(crop_bgr: np.ndarray) -> float:
    """The authors' sharpness of a crop: variance of cv2.Laplacian (CV_64F) of its grey image
    (their RGB -> BGR -> GRAY equals BGR -> GRAY on our BGR crops)."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def to_crop_coords(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Map source-pixel points into the resized crop's pixel grid (pixel centres at integers, as
    both OpenCV's and PIL's resize sample them), per axis (a PIL-rounded box may be 1 px off square)."""
    box = np.asarray(box, dtype=np.float64)
    scale = size / np.array([box[2] - box[0], box[3] - box[1]])
    return ((points - box[:2] + 0.5) * scale - 0.5).astype(np.float32)
