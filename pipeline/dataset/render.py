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

from pipeline.dataset.averaging import RunningMean
from pipeline.dataset.crop import clip_box, crop_resize, square_box, to_crop_coords, widened_boxes
from pipeline.dataset.pngio import PngEncoder
from pipeline.dataset.samples import SampleWriter
from pipeline.dataset.video import VideoError, iter_frames


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


class Renderer:
    """Turns windows into one video's samples, frame by frame.

    Frames are pushed in increasing order; a window must be added before its first frame is
    pushed. A pushed frame is stored once (the union of its windows' boxes) and added to each
    of its windows' running means; a window is written when its last frame arrives. So a planner
    that decides windows in frame order (VLA's forward pass) can render them from the frames it
    has just decoded, instead of decoding the video a second time.
    """

    def __init__(self, src, video: dict, lm: dict, root, method: str, gamma: float, size: int,
                 png: PngEncoder = PngEncoder()):
        self.src, self.lm, self.gamma, self.size = src, lm, gamma, size
        self.w, self.h = int(video["width"]), int(video["height"])
        self.writer = SampleWriter(root, method, video, gamma, png)
        self._windows: dict[int, Window] = {}
        self._uses: dict[int, list[int]] = defaultdict(list)
        self._regions: dict[int, np.ndarray] = {}
        self._means: dict[int, RunningMean] = {}
        self._added = 0
        self.last_pushed = -1

    def add(self, w: Window) -> None:
        if min(w.frames) <= self.last_pushed:
            raise ValueError(f"{w.sample_id}: added after frame {self.last_pushed} was rendered")
        k = self._added
        self._added += 1
        self._windows[k] = w
        b = clip_box(w.box, self.w, self.h)
        for f in w.frames:
            self._uses[f].append(k)
            r = self._regions.get(f)
            self._regions[f] = b.copy() if r is None else np.array([min(r[0], b[0]), min(r[1], b[1]),
                                                                    max(r[2], b[2]), max(r[3], b[3])])

    def pending(self, before: int | None = None) -> list[int]:
        """Frames some added window still needs, in order (only those < `before` if given)."""
        return sorted(f for f in self._uses if before is None or f < before)

    @property
    def last_needed(self) -> int:
        return max(self._uses, default=-1)

    def push(self, i: int, frame: np.ndarray) -> None:
        self.last_pushed = i
        ks = self._uses.pop(i, None)
        if not ks:
            return
        if frame.shape[1] != self.w or frame.shape[0] != self.h:
            raise VideoError(f"{self.src.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"expected {self.w}x{self.h}")
        r = self._regions.pop(i)
        self.writer.store_frame(i, frame[r[1]:r[3], r[0]:r[2]], (int(r[0]), int(r[1])), (self.w, self.h))
        crops: dict[bytes, np.ndarray] = {}  # windows of several N often round to the same box
        for k in ks:
            w = self._windows[k]
            key = w.box.tobytes()
            crop = crops.get(key)
            if crop is None:
                crop = crops[key] = crop_resize(frame, w.box, self.size)
            acc = self._means.setdefault(k, RunningMean(self.gamma))
            acc.add(crop)
            if i == w.end:
                frames = sorted(w.frames)
                self.writer.add(w.sample_id, frames, w.box, w.adjust, acc.mean(),
                                to_crop_coords(self.lm["points"][frames], w.box, self.size), w.stop_reason,
                                w.direction)
                del self._means[k], self._windows[k]

    def close(self):
        """Finish the video's files; return its rows file (None: no samples)."""
        if self._uses:
            raise VideoError(f"{self.src.path}: video ended before frame {self.last_needed}; "
                             f"{len(self._windows)} windows incomplete")
        return self.writer.close()


def render(src, video: dict, lm: dict, root, method: str, windows: list[Window], gamma: float,
           size: int, png: PngEncoder = PngEncoder()):
    """Write `windows` as samples of `method` under `root` in one forward decode; return the rows file."""
    r = Renderer(src, video, lm, root, method, gamma, size, png)
    for w in windows:
        r.add(w)
    last = r.last_needed
    for i, frame in iter_frames(src, stop=last + 1):
        r.push(i, frame)
    return r.close()
