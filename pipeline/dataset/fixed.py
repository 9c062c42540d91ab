"""Fixed-window averaging (CFMD-style): N consecutive sharp frames -> one blurry image.

Windows of every N in `windows` start every `stride` frames. A window is kept only if each of
its frames has a face and passes the sharpness gate, and the frames are consecutive in the
source (image sequences may have gaps). Rendering (one forward decode) is `pipeline.dataset.render`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.dataset.crop import CropParams
from pipeline.dataset.pngio import PngEncoder
from pipeline.dataset.render import Renderer, Window, window_box
from pipeline.dataset.video import VideoError, iter_frames


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
        return cls(windows, stride, float(fixed.get("min_sharpness", cls.min_sharpness)), float(blur.get("gamma", 1.0)))


@dataclass
class WindowStats:
    considered: int = 0
    kept: int = 0
    dropped_no_face: int = 0
    dropped_sharpness: int = 0
    dropped_gap: int = 0
    crop_shift: int = 0
    crop_pad: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def usable(lm: dict, min_sharpness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: has a face; passes the sharpness gate; continues the previous frame without a gap."""
    has = lm["has_face"]
    sharp = has & (np.nan_to_num(lm["sharpness"], nan=0.0) >= min_sharpness)
    follows = np.ones(len(has), dtype=bool)
    follows[1:] = np.diff(lm["frame_number"]) == 1
    return has, sharp, follows


def iter_windows(lm: dict, frame_w: int, frame_h: int, p: FixedParams, crop: CropParams, video_id: str = "",
                 stats: WindowStats | None = None):
    """Kept windows of a video in order of their first frame (then N), counting every decision
    in `stats`: a generator, so rendering can start before the whole video is planned."""
    has, sharp, follows = usable(lm, p.min_sharpness)
    n_frames = len(has)
    stats = WindowStats() if stats is None else stats
    for s in range(0, n_frames, p.stride):
        for n in p.windows:
            if s + n > n_frames:
                continue
            stats.considered += 1
            seg = slice(s, s + n)
            if not has[seg].all():
                stats.dropped_no_face += 1
            elif not sharp[seg].all():
                stats.dropped_sharpness += 1
            elif not follows[s + 1:s + n].all():
                stats.dropped_gap += 1
            else:
                frames = tuple(range(s, s + n))
                box, adjust = window_box(lm, frames, frame_w, frame_h, crop)
                stats.kept += 1
                stats.crop_shift += adjust == "shift"
                stats.crop_pad += adjust == "pad"
                yield Window(sample_id(video_id, n, s), frames, box, adjust)


def plan_windows(lm: dict, frame_w: int, frame_h: int, p: FixedParams, crop: CropParams, video_id: str = ""):
    """All kept windows of a video, and why the others were dropped."""
    stats = WindowStats()
    windows = list(iter_windows(lm, frame_w, frame_h, p, crop, video_id, stats))
    return windows, stats


def sample_id(video_id: str, n: int, start: int) -> str:
    return f"{video_id}-fixed-n{n:02d}-f{start:06d}"


def build_video(src, video: dict, lm: dict, root, p: FixedParams, crop: CropParams, png: PngEncoder = PngEncoder()):
    """Write one video's fixed-window samples under `root`/fixed; return (rows file | None, stats).

    Windows are planned as the decoder reaches their first frame, so memory holds the open
    windows, not a plan of the whole video."""
    stats = WindowStats()
    planned = iter_windows(lm, int(video["width"]), int(video["height"]), p, crop, video["video_id"], stats)
    nxt = next(planned, None)
    if nxt is None:
        return None, stats
    renderer = Renderer(src, video, lm, root, "fixed", p.gamma, crop.size, png)
    for i, frame in iter_frames(src):
        while nxt is not None and nxt.frames[0] <= i:
            renderer.add(nxt)
            nxt = next(planned, None)
        if nxt is None and i > renderer.last_needed:
            break
        renderer.push(i, frame)
    if nxt is not None:
        raise VideoError(f"{src.path}: video ended before frame {nxt.frames[0]} (catalog: {len(lm['has_face'])} frames)")
    return renderer.close(), stats
