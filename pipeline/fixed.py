"""Fixed-window averaging (CFMD-style): N consecutive sharp frames -> one blurry image.

Windows of every N in `windows` start every `stride` frames. A window is kept only if each of
its frames has a face and passes the sharpness gate, and the frames are consecutive in the
source (image sequences may have gaps). The video is decoded once, front to back; each frame is
cropped for every window that contains it and added to that window's running mean, so memory
holds only the open windows, never the video.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .averaging import RunningMean
from .crop import clip_box, crop_resize, square_box, to_crop_coords, widened_boxes
from .samples import SampleWriter
from .video import VideoError, iter_frames


@dataclass(frozen=True)
class CropParams:
    widen: float = 0.5
    size: int = 256
    edge: str = "shift"

    @classmethod
    def from_params(cls, p: dict) -> "CropParams":
        return cls(float(p.get("widen", 0.5)), int(p.get("size", 256)), str(p.get("edge", "shift")))


@dataclass(frozen=True)
class FixedParams:
    windows: tuple[int, ...] = (5, 7, 9, 11, 13)
    stride: int = 5
    min_sharpness: float = 100.0
    gamma: float = 1.0

    @classmethod
    def from_params(cls, blur: dict) -> "FixedParams":
        fixed = blur.get("fixed", {})
        windows = tuple(sorted({int(n) for n in fixed.get("windows", cls.windows)}))
        if any(n < 2 for n in windows):
            raise ValueError(f"blur.fixed.windows must be >= 2 frames, got {list(windows)}")
        stride = int(fixed.get("stride", 5))
        if stride < 1:
            raise ValueError(f"blur.fixed.stride must be >= 1, got {stride}")
        return cls(windows, stride, float(blur.get("min_sharpness", 100.0)), float(blur.get("gamma", 1.0)))


@dataclass(frozen=True)
class Window:
    n: int
    start: int
    box: np.ndarray  # square integer crop box, source pixels
    adjust: str  # none | shift | pad

    @property
    def frames(self) -> range:
        return range(self.start, self.start + self.n)

    @property
    def end(self) -> int:
        return self.start + self.n - 1


@dataclass
class WindowStats:
    considered: int = 0
    kept: int = 0
    dropped_no_face: int = 0
    dropped_sharpness: int = 0
    dropped_gap: int = 0
    crop_shift: int = 0
    crop_pad: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d


def usable(lm: dict, min_sharpness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: has a face; passes the sharpness gate; continues the previous frame without a gap."""
    has = lm["has_face"]
    sharp = has & (np.nan_to_num(lm["sharpness"], nan=0.0) >= min_sharpness)
    follows = np.ones(len(has), dtype=bool)
    follows[1:] = np.diff(lm["frame_number"]) == 1
    return has, sharp, follows


def plan_windows(lm: dict, frame_w: int, frame_h: int, p: FixedParams, crop: CropParams):
    """All kept windows of a video, and why the others were dropped."""
    has, sharp, follows = usable(lm, p.min_sharpness)
    boxes = widened_boxes(lm["points"], crop.widen)
    n_frames = len(has)
    stats, windows = WindowStats(), []
    for n in p.windows:
        for s in range(0, n_frames - n + 1, p.stride):
            stats.considered += 1
            seg = slice(s, s + n)
            if not has[seg].all():
                stats.dropped_no_face += 1
            elif not sharp[seg].all():
                stats.dropped_sharpness += 1
            elif not follows[s + 1:s + n].all():
                stats.dropped_gap += 1
            else:
                box, adjust = square_box(boxes[seg].mean(0), frame_w, frame_h, crop.edge)
                windows.append(Window(n, s, box, adjust))
                stats.kept += 1
                stats.crop_shift += adjust == "shift"
                stats.crop_pad += adjust == "pad"
    return windows, stats


def frame_regions(windows: list, frame_w: int, frame_h: int) -> dict[int, np.ndarray]:
    """Per used frame, the union of the (in-frame parts of the) crop boxes that use it."""
    regions: dict[int, np.ndarray] = {}
    for w in windows:
        b = clip_box(w.box, frame_w, frame_h)
        for f in w.frames:
            r = regions.get(f)
            regions[f] = b.copy() if r is None else np.array([min(r[0], b[0]), min(r[1], b[1]),
                                                              max(r[2], b[2]), max(r[3], b[3])])
    return regions


def sample_id(video_id: str, n: int, start: int) -> str:
    return f"{video_id}-fixed-n{n:02d}-f{start:06d}"


def build_video(src, video: dict, lm: dict, root, p: FixedParams, crop: CropParams, png_level: int = 1):
    """Write one video's fixed-window samples under `root`/fixed; return (table, stats)."""
    w_, h_ = int(video["width"]), int(video["height"])
    windows, stats = plan_windows(lm, w_, h_, p, crop)
    if not windows:
        return None, stats
    uses: dict[int, list[int]] = defaultdict(list)
    for k, w in enumerate(windows):
        for f in w.frames:
            uses[f].append(k)
    regions = frame_regions(windows, w_, h_)
    writer = SampleWriter(root, "fixed", video, p.gamma, png_level)
    open_means: dict[int, RunningMean] = {}
    last = max(w.end for w in windows)
    for i, frame in iter_frames(src, stop=last + 1):
        if i not in uses:
            continue
        if frame.shape[1] != w_ or frame.shape[0] != h_:
            raise VideoError(f"{src.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"expected {w_}x{h_}")
        r = regions[i]
        writer.store_frame(i, frame[r[1]:r[3], r[0]:r[2]], (int(r[0]), int(r[1])), (w_, h_))
        for k in uses[i]:
            w = windows[k]
            acc = open_means.setdefault(k, RunningMean(p.gamma))
            acc.add(crop_resize(frame, w.box, crop.size))
            if i == w.end:
                frames = list(w.frames)
                writer.add(sample_id(video["video_id"], w.n, w.start), frames, w.box, w.adjust,
                           acc.mean(), to_crop_coords(lm["points"][frames], w.box, crop.size))
                del open_means[k]
    if open_means:
        raise VideoError(f"{src.path}: video ended before frame {last}; {len(open_means)} windows incomplete")
    return writer.close(), stats
