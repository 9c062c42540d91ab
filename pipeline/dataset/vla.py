"""Variable-length averaging (VLA, Chrysos et al. 2019, section 3.4).

A window starts at a usable frame and grows one frame at a time; its blurry image is the mean of
its frames (same gamma and crop policy as fixed windows) and its ground truth the current middle
frame. The first `min_len` frames form the seed; after that, each frame about to be added is
checked against three conditions, each switchable and with its own thresholds
(`blur.vla.<condition>.*`). When one fails, the sample is the window before that frame and
`stop_reason` names the condition (checked in this order):

overlap  The first and the would-be last frame must still share the face: for each facial part
         (jaw, right brow, left brow, nose, right eye, left eye, mouth; 68-point index ranges in
         PARTS) the IoU of the part's landmark box in the two frames (source pixels) is computed;
         at least `min_parts` parts need IoU >= `min_iou`. Raising either shortens windows.
quality  The running average (with the new frame) must stay close to the new middle frame:
         SSIM (11x11 Gaussian window, `ssim_grey`) of the two as grey face crops of `analysis_size`
         pixels, cut with the window's first-frame box, must be >= `min_ssim`. Raising it
         shortens windows.
flow     Dense optical flow (OpenCV DIS) between the last frame and the new one on a grey face
         crop (the last frame's box); its mean vector over the landmark box, in output-crop
         pixels (crop.size grid), is this step's motion v. It fails on
         - flow failure: the new frame warped back by the flow still differs from the last one
           (mean absolute grey difference over the landmark box > `max_residual`, 0-255 scale),
           or v is not finite. DIS underestimates large jumps, so magnitude alone misses them;
         - too fast: |v| > `max_step`;
         - oscillation: v turns against the motion so far m (sum of the window's earlier steps),
           cos(v, m) < `reversal_cos`, counted only when |v| and |m| are >= `min_step`.
         Lowering `max_step` / `max_residual` or raising `reversal_cos` shortens windows.
max_len  The window reached `max_len` frames.
cut      The next frame starts a new shot (the landmarks stage's `cut`): no window spans a cut.
end      The next frame does not exist or is unusable: end of the video, no face, below the
         sharpness gate (`min_sharpness`), or a gap in an image sequence.

The sharpness gate measures each frame on its own box (a window's box is not known until the
window stops): `sharpness_space: crop` (default) crops the frame with its own box (crop policy of
one frame), resizes it to crop.size and takes the variance of the Laplacian of the grey crop, the
authors' measurement at the output scale, so the threshold means the same at every resolution
(faces smaller than the crop are upscaled and score lower). `sharpness_space: source` uses the
landmarks stage's source-pixel value (before issue 12).

Windows shorter than `min_len` are dropped and counted. The next window starts after the end of
the last one (`start: after_end`) or every `stride` frames (`start: stride`). With `reverse`,
the clip is also parsed backwards (as the paper does for more pairs), skipping windows whose
frames equal a forward window's.

Every face track of a video is parsed on its own (a window never mixes tracks). A single-track video
streams its windows to the renderer as they are decided; several tracks are planned track by track,
then rendered in one decode.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.dataset.crop import CropParams, crop_resize, face_box, laplacian_variance
from pipeline.dataset.manifest import STOP_REASONS
from pipeline.dataset.fixed import SHARPNESS_SPACES, as_tracks, sharpness_summary, track_tag, usable, write_gate_record
from pipeline.dataset.holds import picture_view, units_param
from pipeline.dataset.interpolate import InterpParams
from pipeline.dataset.landmarks import box_iou, points_box
from pipeline.dataset.pngio import PngEncoder
from pipeline.dataset.render import Renderer, Window, render, window_box
from pipeline.dataset.video import FrameReader

# Memory for decoded frames (bytes). VLA revisits the frames of the window being grown and renders
# a window from frames it has just decoded, so its frame cache holds at least max_len + 2 frames
# (fewer would re-decode from the start on every backward step) and at most 2 max_len + 2; within
# that range the budget decides, so a 4K video (25 MB a frame) keeps max_len + 2 frames (~570 MB
# at max_len 21) instead of 44 (1.1 GB). Grey copies of full frames (for the analysis crops) are
# cached within GREY_CACHE_BYTES.
FRAME_CACHE_BYTES = 256 * 2**20
GREY_CACHE_BYTES = 64 * 2**20


def frame_cache_frames(p: "VLAParams", width: int, height: int) -> int:
    """How many decoded frames VLA's reader keeps (see FRAME_CACHE_BYTES)."""
    return int(np.clip(FRAME_CACHE_BYTES // max(3 * width * height, 1), p.max_len + 2, 2 * p.max_len + 2))


PARTS = {
    "jaw": range(0, 17), "right_brow": range(17, 22), "left_brow": range(22, 27), "nose": range(27, 36),
    "right_eye": range(36, 42), "left_eye": range(42, 48), "mouth": range(48, 68),
}


@dataclass(frozen=True)
class VLAParams:
    min_len: int = 3
    max_len: int = 21
    start: str = "after_end"  # after_end | stride
    stride: int = 5
    reverse: bool = False
    min_sharpness: float = 50.0
    analysis_size: int = 128
    overlap: bool = True
    overlap_min_iou: float = 0.3
    overlap_min_parts: int = 4
    quality: bool = True
    quality_min_ssim: float = 0.93
    flow: bool = True
    flow_max_step: float = 8.0
    flow_reversal_cos: float = -0.5
    flow_min_step: float = 1.0
    flow_max_residual: float = 10.0
    gamma: float = 1.0
    sharpness_space: str = "crop"  # crop | source
    rounding: str = "truncate"  # blur.rounding
    units: str = "pictures"  # blur.units: frames | pictures (a window grows one picture at a time)

    @classmethod
    def from_params(cls, blur: dict) -> "VLAParams":
        v = dict(blur.get("vla", {}))
        flat = {k: v[k] for k in ("min_len", "max_len", "start", "stride", "reverse", "min_sharpness",
                                  "analysis_size", "sharpness_space") if k in v}
        for cond in ("overlap", "quality", "flow"):
            sub = v.get(cond, {}) or {}
            flat[cond] = bool(sub.get("enabled", True))
            flat.update({f"{cond}_{k}": sub[k] for k in sub if k != "enabled"})
        p = cls(**flat, gamma=float(blur.get("gamma", 1.0)), rounding=str(blur.get("rounding", cls.rounding)),
                units=units_param(blur, cls.units))
        if p.sharpness_space not in SHARPNESS_SPACES:
            raise ValueError(f"blur.vla.sharpness_space must be one of {SHARPNESS_SPACES}, got {p.sharpness_space!r}")
        if p.rounding not in ("truncate", "round"):
            raise ValueError(f"blur.rounding must be truncate or round, got {p.rounding!r}")
        if p.start not in ("after_end", "stride"):
            raise ValueError(f"blur.vla.start must be after_end or stride, got {p.start!r}")
        if p.stride < 1:
            raise ValueError(f"blur.vla.stride must be >= 1, got {p.stride}")
        if not 2 <= p.min_len <= p.max_len:
            raise ValueError(f"blur.vla needs 2 <= min_len <= max_len, got {p.min_len}, {p.max_len}")
        return p


def parts_overlapping(a: np.ndarray, b: np.ndarray, min_iou: float) -> int:
    """How many facial parts' landmark boxes overlap with IoU >= min_iou between two frames."""
    return sum(box_iou(points_box(a[list(r)]), points_box(b[list(r)])) >= min_iou for r in PARTS.values())


def _gauss(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT_101)


def ssim_grey(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey images (0-255 values): 11x11 Gaussian window, sigma 1.5, reflect padding.

    The definition of kornia.metrics.ssim(window_size=11) on [0, 1] images (tested to agree),
    computed with OpenCV: about 5x faster for one small image, and it keeps torch out of the
    data stages' worker processes (importing it cost each worker 1.5 s).
    """
    a = np.asarray(a, dtype=np.float32) * np.float32(1 / 255.0)
    b = np.asarray(b, dtype=np.float32) * np.float32(1 / 255.0)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _gauss(a), _gauss(b)
    mu_ab, mu_a2, mu_b2 = mu_a * mu_b, mu_a * mu_a, mu_b * mu_b
    var_a, var_b, cov = _gauss(a * a) - mu_a2, _gauss(b * b) - mu_b2, _gauss(a * b) - mu_ab
    num = (2 * mu_ab + c1) * (2 * cov + c2)
    den = (mu_a2 + mu_b2 + c1) * (var_a + var_b + c2) + 1e-12
    return float((num / den).mean())


class _PictureFrames:
    """A FrameReader seen one frame per picture: get(k) is the k-th picture's frame."""

    def __init__(self, reader: FrameReader, frames: np.ndarray):
        self.reader, self.frames = reader, frames

    def get(self, k: int) -> np.ndarray:
        return self.reader.get(int(self.frames[k]))


class _Analyzer:
    """Grey analysis crops and memoised flow steps for one video."""

    def __init__(self, reader: FrameReader, lm: dict, frame_w: int, frame_h: int, p: VLAParams, crop: CropParams):
        self.reader, self.lm, self.p, self.crop = reader, lm, p, crop
        self.w, self.h = frame_w, frame_h
        self._own: dict[int, np.ndarray] = {}
        self.sharpness: dict[int, float] = {}  # crop-space gate values of the frames measured
        self._grey: dict[int, np.ndarray] = {}
        self._flow: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        size = self.p.analysis_size
        self._grid = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
        self._grey_frames = max(2, min(4 * p.max_len, GREY_CACHE_BYTES // max(frame_w * frame_h, 1)))
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def grey(self, i: int) -> np.ndarray:
        g = self._grey.get(i)
        if g is None:
            if len(self._grey) >= self._grey_frames:
                self._grey.pop(next(iter(self._grey)))  # the oldest
            g = self._grey[i] = cv2.cvtColor(self.reader.get(i), cv2.COLOR_BGR2GRAY)
        return g

    def own_box(self, i: int) -> np.ndarray:
        b = self._own.get(i)
        if b is None:
            if len(self._own) > 8 * self.p.max_len:
                self._own.clear()
            b = self._own[i] = face_box(self.lm["points"][i:i + 1], self.w, self.h, self.crop)[0]
        return b

    def crop_sharpness(self, i: int) -> float:
        """Frame i's own box, cropped and resized to crop.size: variance of the Laplacian."""
        v = self.sharpness.get(i)
        if v is None:
            c = crop_resize(self.reader.get(i), self.own_box(i), self.crop.size, resize=self.crop.resize)
            v = self.sharpness[i] = laplacian_variance(c)
        return v

    def analysis_crop(self, i: int, box: np.ndarray) -> np.ndarray:
        return crop_resize(self.grey(i), box, self.p.analysis_size)

    def flow_step(self, a: int, b: int) -> tuple[np.ndarray, float]:
        """Mean flow a -> b over a's landmark box (output-crop pixels), and the warp residual."""
        key = (a, b)
        if key not in self._flow:
            box = self.own_box(a)
            fa, fb = self.analysis_crop(a, box), self.analysis_crop(b, box)
            flow = self._dis.calc(fa, fb, None)
            scale = self.p.analysis_size / float(box[2] - box[0])
            lb = (points_box(self.lm["points"][a]) - np.r_[box[:2], box[:2]]) * scale
            x0, y0 = max(int(lb[0]), 0), max(int(lb[1]), 0)
            x1, y1 = min(int(np.ceil(lb[2])) + 1, fa.shape[1]), min(int(np.ceil(lb[3])) + 1, fa.shape[0])
            if not (x1 > x0 and y1 > y0):
                x0, y0, x1, y1 = 0, 0, fa.shape[1], fa.shape[0]
            warped = cv2.remap(fb, self._grid[0] + flow[..., 0], self._grid[1] + flow[..., 1],
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            residual = float(np.abs(warped[y0:y1, x0:x1].astype(np.float32) - fa[y0:y1, x0:x1]).mean())
            v = flow[y0:y1, x0:x1].reshape(-1, 2).mean(0).astype(np.float64)
            self._flow[key] = (v * (self.crop.size / self.p.analysis_size), residual)
            if len(self._flow) > 8 * self.p.max_len:
                self._flow.pop(next(iter(self._flow)))
        return self._flow[key]


class _Usable:
    """Per frame: a face and the sharpness gate (crop space: measured when first asked)."""

    def __init__(self, an: _Analyzer, lm: dict, p: VLAParams):
        source = p.sharpness_space == "source"
        self.has, sharp, _ = usable(lm, p.min_sharpness if source else None)
        self.known = sharp if source else None
        self.an, self.gate = an, p.min_sharpness

    def __len__(self) -> int:
        return len(self.has)

    def __getitem__(self, t: int) -> bool:
        if self.known is not None:
            return bool(self.known[t])
        return bool(self.has[t]) and self.an.crop_sharpness(t) >= self.gate


def grow_window(an: _Analyzer, ok: np.ndarray, follows: np.ndarray, s: int, d: int, p: VLAParams):
    """Grow a window from frame s in direction d (+1 / -1); return (frames, stop_reason)."""
    pts = an.lm["points"]
    cut = an.lm.get("cut")
    n = len(ok)
    seq = [s]
    first_box = an.own_box(s)
    crops = [an.analysis_crop(s, first_box).astype(np.float64)]
    acc = crops[0].copy()
    motion = np.zeros(2)
    while True:
        if len(seq) == p.max_len:
            return seq, "max_len"
        last, t = seq[-1], seq[-1] + d
        if not 0 <= t < n:
            return seq, "end"
        if cut is not None and cut[max(last, t)]:
            return seq, "cut"
        if not ok[t] or not follows[max(last, t)]:
            return seq, "end"
        crop_t = an.analysis_crop(t, first_box).astype(np.float64)
        v, residual = an.flow_step(last, t) if p.flow else (np.zeros(2), 0.0)
        if len(seq) >= p.min_len:
            if p.overlap and parts_overlapping(pts[s], pts[t], p.overlap_min_iou) < p.overlap_min_parts:
                return seq, "overlap"
            if p.quality:
                mean = (acc + crop_t) / (len(seq) + 1)
                middle = (crops + [crop_t])[len(seq) // 2]
                if ssim_grey(mean, middle) < p.quality_min_ssim:
                    return seq, "quality"
            if p.flow:
                vn, mn = np.linalg.norm(v), np.linalg.norm(motion)
                if not np.isfinite(vn) or residual > p.flow_max_residual or vn > p.flow_max_step:
                    return seq, "flow"
                if vn >= p.flow_min_step and mn >= p.flow_min_step and v @ motion / (vn * mn) < p.flow_reversal_cos:
                    return seq, "flow"
        seq.append(t)
        crops.append(crop_t)
        acc += crop_t
        motion += v


def sample_id(video_id: str, frames, direction: str, track: int | None = None) -> str:
    """`<video>-vla-fAAAAAA-BBBBBB`; in a video of several face tracks `<video>-tTT-vla-...`."""
    tag = "f" if direction == "forward" else "r"
    return f"{video_id}{track_tag(track)}-vla-{tag}{min(frames):06d}-{max(frames):06d}"


def plan_windows(src, video: dict, lm: dict, p: VLAParams, crop: CropParams, renderer: Renderer | None = None,
                 track: int | None = None):
    """Decide every VLA window of a video (reads frames through a bounded cache).

    With a `renderer` and no reverse pass, each window is rendered as soon as it is decided,
    from the frames just decoded for the decision (one decode of the video instead of two), and
    the returned list is empty: the windows went to the renderer.

    `blur.units: pictures`: windows grow one picture (`holds.picture_view`) at a time, so held
    copies of a frame are neither averaged nor counted; the windows name the pictures' frames.
    """
    stream = renderer is not None and not p.reverse
    w_, h_ = int(video["width"]), int(video["height"])
    n_source = len(lm["has_face"])
    view, frames = picture_view(lm) if p.units == "pictures" else (lm, np.arange(n_source))
    source_reader = FrameReader(src, capacity=frame_cache_frames(p, w_, h_),
                                keep=None if len(frames) == n_source else set(frames.tolist()))
    reader = source_reader if len(frames) == n_source else _PictureFrames(source_reader, frames)
    lm = view  # below, frame indices are picture indices; `frames` maps them to the source
    _, _, follows = usable(lm, None)
    an = _Analyzer(reader, lm, w_, h_, p, crop)
    ok = _Usable(an, lm, p)
    stats = {"windows": 0, "dropped_short": 0, **{f"stop_{r}": 0 for r in STOP_REASONS}, "skipped_duplicate": 0}
    windows, seen = [], set()
    n = len(ok)
    passes = [("forward", 1)] + ([("reverse", -1)] if p.reverse else [])
    try:
        for direction, d in passes:
            s = 0 if d > 0 else n - 1
            while 0 <= s < n:
                if not ok[s]:
                    s += d if p.start == "after_end" else d * p.stride
                    continue
                seq, reason = grow_window(an, ok, follows, s, d, p)
                picked = tuple(sorted(seq))
                window_frames = tuple(int(frames[k]) for k in picked)
                if len(seq) < p.min_len:
                    stats["dropped_short"] += 1
                elif window_frames in seen:
                    stats["skipped_duplicate"] += 1
                else:
                    if p.reverse:
                        seen.add(window_frames)
                    box, adjust = window_box(lm, picked, w_, h_, crop)
                    window = Window(sample_id(video["video_id"], window_frames, direction, track), window_frames, box,
                                    adjust, reason, direction, track or 0)
                    stats["windows"] += 1
                    stats[f"stop_{reason}"] += 1
                    if stream:
                        renderer.add(window)  # rendered below and forgotten: memory stays bounded
                    else:
                        windows.append(window)
                s = seq[-1] + d if p.start == "after_end" else s + d * p.stride
                if stream:  # later windows start at s or after: frames before s are final
                    for i in renderer.pending(before=int(frames[s]) if s < n else n_source):
                        renderer.push(i, source_reader.get(i))
        if stream:
            for i in renderer.pending():
                renderer.push(i, source_reader.get(i))
    finally:
        source_reader.close()
    windows.sort(key=lambda w: (w.end, w.sample_id))
    if p.sharpness_space == "source":
        values = [float(v) for v in np.asarray(lm["sharpness"])[lm["has_face"]]]
    else:
        values = [an.sharpness[i] for i in sorted(an.sharpness)]
    stats["_sharpness"] = values
    return windows, stats


def build_video(src, video: dict, lm: dict, root, p: VLAParams, crop: CropParams, png: PngEncoder = PngEncoder(),
                interp: InterpParams = InterpParams()):
    """Write one video's VLA samples under `root`/vla; return (rows file | None, stats).
    `interp`: frame interpolation and exposure before averaging (the stop conditions see real frames)."""
    tracks = as_tracks(lm)
    if len(tracks) > 1:  # several face tracks: plan each, then render them all in one pass
        windows, stats = [], {}
        for t, tl in tracks.items():
            w_t, s_t = plan_windows(src, video, tl, p, crop, track=t)
            windows += w_t
            for k, v in s_t.items():
                stats[k] = stats.get(k, [] if k == "_sharpness" else 0) + v
        windows.sort(key=lambda w: (min(w.frames), w.track, w.sample_id))
        part = render(src, video, lm, root, "vla", windows, p.gamma, crop, png, p.rounding, interp, tracks=tracks)
    elif p.reverse:  # reverse windows can reach back to any frame: plan all, then render in one pass
        lm = tracks[next(iter(tracks))]
        windows, stats = plan_windows(src, video, lm, p, crop)
        part = render(src, video, lm, root, "vla", windows, p.gamma, crop, png, p.rounding, interp, tracks=tracks)
    else:
        lm = tracks[next(iter(tracks))]
        renderer = Renderer(src, video, lm, root, "vla", p.gamma, crop, png, p.rounding, interp=interp, tracks=tracks)
        _, stats = plan_windows(src, video, lm, p, crop, renderer)
        part = renderer.close()
    values = stats.pop("_sharpness")
    write_gate_record(root, "vla", video["video_id"], {
        "windows": dict(stats), "space": p.sharpness_space, "percentile": None,
        "measure": "sharpness of each frame examined" + (" (its own box, crop at output size)"
                                                        if p.sharpness_space == "crop" else " (source-pixel landmark box)"),
        "sharpness": sharpness_summary(values, p.min_sharpness)})
    return part, stats
