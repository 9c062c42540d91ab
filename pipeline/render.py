"""Rendering planned windows into samples: one forward decode, bounded memory.

Averaging methods decide *which* frames form each sample (`Window`); this module turns windows
into pixels. Each frame is decoded once, cropped for every window that contains it with that
window's box, and added to the window's running mean; its source region (the union of those
boxes) goes to the frame store once. Memory holds the open windows, never the video.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .averaging import RunningMean
from .crop import clip_box, crop_resize, square_box, to_crop_coords, widened_boxes
from .samples import SampleWriter
from .video import VideoError, iter_frames


@dataclass(frozen=True)
class Window:
    sample_id: str
    frames: tuple[int, ...]  # source frame indices, temporal order
    box: np.ndarray  # square integer crop box, source pixels
    adjust: str  # none | shift | pad
    stop_reason: str | None = None
    direction: str = "forward"

    @property
    def end(self) -> int:
        return max(self.frames)


def window_box(lm: dict, frames, frame_w: int, frame_h: int, crop) -> tuple[np.ndarray, str]:
    """The crop policy: per-frame widened landmark boxes, averaged, squared, edge-handled."""
    boxes = widened_boxes(lm["points"][list(frames)], crop.widen)
    return square_box(boxes.mean(0), frame_w, frame_h, crop.edge)


def frame_regions(windows: list[Window], frame_w: int, frame_h: int) -> dict[int, np.ndarray]:
    """Per used frame, the union of the (in-frame parts of the) crop boxes that use it."""
    regions: dict[int, np.ndarray] = {}
    for w in windows:
        b = clip_box(w.box, frame_w, frame_h)
        for f in w.frames:
            r = regions.get(f)
            regions[f] = b.copy() if r is None else np.array([min(r[0], b[0]), min(r[1], b[1]),
                                                              max(r[2], b[2]), max(r[3], b[3])])
    return regions


def render(src, video: dict, lm: dict, root, method: str, windows: list[Window], gamma: float,
           size: int, png_level: int = 1):
    """Write `windows` as samples of `method` under `root`; return the video's rows file."""
    w_, h_ = int(video["width"]), int(video["height"])
    uses: dict[int, list[int]] = defaultdict(list)
    for k, w in enumerate(windows):
        for f in w.frames:
            uses[f].append(k)
    regions = frame_regions(windows, w_, h_)
    writer = SampleWriter(root, method, video, gamma, png_level)
    open_means: dict[int, RunningMean] = {}
    last = max(w.end for w in windows)
    for i, frame in iter_frames(src, stop=last + 1):
        if i not in uses:
            continue
        if frame.shape[1] != w_ or frame.shape[0] != h_:
            raise VideoError(f"{src.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, expected {w_}x{h_}")
        r = regions[i]
        writer.store_frame(i, frame[r[1]:r[3], r[0]:r[2]], (int(r[0]), int(r[1])), (w_, h_))
        for k in uses[i]:
            w = windows[k]
            acc = open_means.setdefault(k, RunningMean(gamma))
            acc.add(crop_resize(frame, w.box, size))
            if i == w.end:
                frames = sorted(w.frames)
                writer.add(w.sample_id, frames, w.box, w.adjust, acc.mean(),
                           to_crop_coords(lm["points"][frames], w.box, size), w.stop_reason, w.direction)
                del open_means[k]
    if open_means:
        raise VideoError(f"{src.path}: video ended before frame {last}; {len(open_means)} windows incomplete")
    return writer.close()
