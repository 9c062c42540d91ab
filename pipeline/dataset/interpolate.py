"""Frame interpolation before averaging, and the shutter's exposure (`blur.interpolate`, `blur.exposure`).

Averaging N frames of 25-30 fps video ghosts when the face moves fast: each frame leaves its own
copy of the eyes. A shutter integrates continuously, so REDS and RSBlur synthesise frames between
the real ones before averaging. Here, with `blur.interpolate: k` (1 = off, the papers), k - 1
frames are synthesised between each pair of consecutive real frames of a window, from their
crops (the window's box, so both crops show the same region):

- dense optical flow in both directions (OpenCV DIS, medium preset), computed ONCE per pair of
  real frames of a face track, on the pair's canvas (`SharedFlow`: the two frames' landmark box
  grown by a quarter on every side, 256 x 256 grey), with each frame's visibility, and mapped
  into every window's crop that uses the pair (an affine resampling of the fields). A frame
  belongs to ~9 windows of several N with as many boxes; the flow used to be computed on each;
- where a flow is shorter than `STILL` px (crop pixels), it is scaled towards zero: the
  synthesised pixel becomes a cross-fade of the two real crops (no resampling), which is closer
  to real blur than the flow's small errors where the face barely moves (docs/dataset.md);
- the flow from time t to each real frame, from the two flows (linear motion, as in Super SloMo:
  F_t0 = -(1-t) t F01 + t^2 F10, F_t1 = (1-t)^2 F01 - t (1-t) F10);
- backward warping of both real frames to t, blended with weights (1-t) and t, each multiplied by
  the frame's visibility: the forward-backward consistency of its flow, warped to t (a pixel
  whose flow does not come back is occluded in the other frame, so it is taken from the frame
  that sees it).

Time: the window's real frames sit at 0, 1, ..., N-1 (frame intervals); interpolation samples
the span [0, N-1] every 1/k. `blur.exposure: e` in (0, 1] is the share of each frame interval
the shutter is open, centred on each real frame: a sample at t is kept if it lies within e/2 of
a real frame's time. e = 1 keeps every sample (a continuous smear over the window); smaller e
leaves gaps in the smear (short exposures, as in bright light). Exposure is realised on the 1/k
grid: the kept sub-frames per interval are those j/k with min(j/k, 1 - j/k) <= e/2, so e < 2/k
keeps only the real frames (use k >= 2/e). It has no meaning without interpolation; e < 1
with k = 1 is a params error.

The blurry image is the mean (gamma, rounding: `pipeline.dataset.averaging`) of the real and the
kept synthesised frames. The sharp targets, the gate, the landmarks and `n_frames` stay those of
the real frames only. So the rule "blurry = mean of load_sample's sharp frames" holds at k = 1;
with k > 1, blurry = `blur_frames(sharp frames in time order, k, e, gamma, rounding, gaps, motions)`,
which synthesises the same frames again (DIS is deterministic) given each pair's motion
`SharedFlow.window_motions(source frames, their landmarks, crop box, size)`; `gaps` are the differences of the
sorted frame_indices: 1 between consecutive frames, the hold's length where a window of pictures
(`blur.units: pictures`) skips held frames, whose time is filled with gap x k - 1 synthesised
frames. Memory: the renderer keeps one
previous crop per open window and one grey canvas per pair of frames in flight; nothing else grows.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.dataset.averaging import RunningMean

EPS = 1e-9


@dataclass(frozen=True)
class InterpParams:
    factor: int = 1  # blur.interpolate: k; k - 1 synthesised frames between consecutive real frames
    exposure: float = 1.0  # blur.exposure: duty cycle in (0, 1]

    @classmethod
    def from_params(cls, blur: dict) -> "InterpParams":
        k, e = blur.get("interpolate", 1), blur.get("exposure", 1.0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"blur.interpolate must be an integer >= 1 (1: off), got {k!r}")
        e = float(e)
        if not 0.0 < e <= 1.0:
            raise ValueError(f"blur.exposure must be in (0, 1], got {e}")
        if e < 1.0 and k == 1:
            raise ValueError(f"blur.exposure = {e}: an exposure below 1 needs interpolation (blur.interpolate >= 2)")
        return cls(k, e)

    @property
    def enabled(self) -> bool:
        return self.factor > 1

    def sub_times(self, gap: int = 1) -> tuple[float, ...]:
        """Times (fractions of the span between two real frames `gap` frame intervals apart: a
        picture held for `gap` frames, `blur.units: pictures`) of the synthesised frames kept
        between them: every 1/k of a frame interval, within exposure/2 of a frame time. With
        gap > 1 the frame times inside the span (the held copies' times, whose true pictures
        the video lost) are synthesised too."""
        k, steps = self.factor, self.factor * gap
        return tuple(j / steps for j in range(1, steps) if min(j % k, k - j % k) / k <= self.exposure / 2 + EPS)


def _grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


STILL = (1.0, 3.0)  # measured (docs/dataset.md): flow shorter than STILL[0] px counts as none, ramping to full at STILL[1] (`_deadzone`)
FLOWS = ("dis_medium", "dis_fast", "dis_ultrafast", "farneback", "zero")  # dis_medium: the pipeline's


class Interpolator:
    """Synthesises the kept intermediate frames between two same-sized images (uint8, HxW or HxWx3).

    `flow` and `occlusion` exist for benchmarks/interpolation.py's candidates; the pipeline uses the
    defaults (DIS medium, the occlusion-weighted blend). `zero` flow makes every synthesised frame a
    cross-fade of its two real frames: the weighting of interpolation without any motion."""

    def __init__(self, p: InterpParams, flow: str = "dis_medium", occlusion: bool = True,
                 still: tuple[float, float] | None = None):
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
        self.p = p
        self.times = p.sub_times()  # between frames one interval apart
        self.flow, self.occlusion, self.still = flow, occlusion, STILL if still is None else still
        self._dis = (cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{flow[4:].upper()}"))
                     if flow.startswith("dis_") else None)
        self._grids: dict[tuple, np.ndarray] = {}  # pixel grids by shape (warps add the flow to them)

    def flows(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F01, F10): a(x) ~ b(x + F01(x)) and b(x) ~ a(x + F10(x)), float32 HxWx2."""
        ga, gb = _grey(a), _grey(b)
        if self._dis is not None:
            return self._dis.calc(ga, gb, None), self._dis.calc(gb, ga, None)
        if self.flow == "zero":
            z = np.zeros(ga.shape + (2,), np.float32)
            return z, z.copy()
        fb = lambda x, y: cv2.calcOpticalFlowFarneback(x, y, None, 0.5, 4, 15, 3, 5, 1.2, 0)
        return fb(ga, gb), fb(gb, ga)

    def fields(self, a: np.ndarray, b: np.ndarray, flows=None) -> "Fields":
        """The motion between a (t = 0) and b (t = 1): both flows, and each frame's visibility (the
        forward-backward consistency of its flow at its source pixel: a pixel whose flow does not
        come back is occluded in the other frame, so it is taken from the frame that sees it)."""
        f01, f10 = self.flows(a, b) if flows is None else flows
        flow = np.ascontiguousarray(np.dstack([f01, f10]), dtype=np.float32)
        if not self.occlusion:  # the plain (1 - t, t) blend of both warped frames
            one = np.ones(f01.shape[:2], np.float32)
            return Fields(flow, one, one.copy())
        grid = self._grid_for(f01.shape[:2])
        e0 = np.linalg.norm(f01 + _warp(f10, f01, grid), axis=-1)
        e1 = np.linalg.norm(f10 + _warp(f01, f10, grid), axis=-1)
        scale = 0.01 * (np.linalg.norm(f01, axis=-1).mean() + np.linalg.norm(f10, axis=-1).mean()) + 0.5
        return Fields(flow, (1.0 / (1.0 + (e0 / scale) ** 2)).astype(np.float32),
                      (1.0 / (1.0 + (e1 / scale) ** 2)).astype(np.float32))

    def _grid_for(self, hw) -> np.ndarray:
        hw = tuple(hw)
        if hw not in self._grids:
            xs, ys = np.meshgrid(np.arange(hw[1], dtype=np.float32), np.arange(hw[0], dtype=np.float32))
            self._grids[hw] = np.dstack([xs, ys])
        return self._grids[hw]

    def between(self, a: np.ndarray, b: np.ndarray, gap: int = 1, flows=None, fields: "Fields | None" = None
                ) -> list[np.ndarray]:
        """The synthesised frames between a (t = 0) and b (t = 1), `gap` frame intervals apart
        (`InterpParams.sub_times`), uint8. The motion: `fields` (`SharedFlow.fields_in`: the
        pipeline's), or `fields(a, b, flows)` with `flows` (F01, F10) computed elsewhere, or the
        flow of a and b themselves. Flow shorter than `still` pixels counts as none (module doc)."""
        times = self.times if gap == 1 else self.p.sub_times(gap)
        if not times:
            return []
        fl = self.fields(a, b, flows) if fields is None else fields
        gx, gy = cv2.split(self._grid_for(a.shape[:2]))
        x01, y01, x10, y10 = _deadzone(cv2.split(fl.flow), self.still)
        out = []
        for t in times:
            # backward warps of both frames to t (F_t0, F_t1 from F01, F10: module doc), blended with
            # weights (1 - t) x a's visibility and t x b's; planes and cv2 calls: this is the hot loop
            c = ((-(1 - t) * t, t * t), ((1 - t) * (1 - t), -t * (1 - t)))
            maps = [(cv2.addWeighted(x01, c0, x10, c1, 0.0) + gx, cv2.addWeighted(y01, c0, y10, c1, 0.0) + gy)
                    for c0, c1 in c]
            w0 = _remap(fl.v0, *maps[0]) * (1 - t) + 1e-3 * (1 - t)
            w1 = _remap(fl.v1, *maps[1]) * t + 1e-3 * t
            out.append(cv2.blendLinear(_remap(a, *maps[0]), _remap(b, *maps[1]), w0, w1))
        return out


@dataclass(frozen=True)
class Fields:
    """Motion between two frames on one pixel grid: `flow` HxWx4 float32 (F01 x, y, F10 x, y) and
    the visibilities V0, V1 (HxW)."""
    flow: np.ndarray
    v0: np.ndarray
    v1: np.ndarray


def _remap(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """img sampled (bilinear) at the float32 positions (xs, ys); the border repeats."""
    return cv2.remap(img, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _warp(img: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    m = grid + flow
    return _remap(img, m[..., 0], m[..., 1])


def _deadzone(planes, still: tuple[float, float]):
    """Flow planes (x01, y01, x10, y10) scaled down to zero where a flow is shorter than still[0]
    px, ramping up to full length at still[1] px: where a face barely moves, the flow's own error
    (and the bilinear warp's resampling) cost more than the motion it restores, and zero flow is
    an exact cross-fade."""
    lo, hi = still
    if hi <= 0:
        return planes
    out = []
    for x, y in (planes[:2], planes[2:]):
        alpha = np.clip((cv2.magnitude(x, y) - lo) / max(hi - lo, EPS), 0.0, 1.0)
        out += [x * alpha, y * alpha]
    return out


class SharedFlow:
    """One flow computation per pair of real frames of a face track, shared by every window.

    Windows of several N overlap, and each has its own box, so computing the flow on each window's
    crop computes the same motion up to ~9 times (`blur_fixed` at k = 4: 42 -> 2.5 frames/s).
    Instead the pair's motion is computed once, on its canvas: the two frames' landmark box
    (`crop.widen`, a square of its longer side) grown by `margin` on every side, resized to
    `side` x `side` grey. `fields_in` maps it into a window's crop (an affine resampling of the
    fields; flow vectors rescaled): what lies outside the canvas gets no motion (a cross-fade).
    The synthesised frames themselves are still warped from the window's own crops, so real and
    synthesised pixels come from the same crop."""

    def __init__(self, interp: Interpolator, crop, frame_w: int, frame_h: int, margin: float = 0.25,
                 side: int | None = None):
        from pipeline.dataset.crop import CropParams

        self.interp, self.w, self.h, self.margin = interp, frame_w, frame_h, margin
        self.side = int(side or crop.size)
        self._box_policy = CropParams(widen=crop.widen, size=self.side, edge="pad", square="longer")

    def canvas_box(self, points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
        from pipeline.dataset.crop import face_box

        box, _ = face_box(np.stack([points_a, points_b]), self.w, self.h, self._box_policy)
        grow = int(np.ceil(self.margin * (box[2] - box[0])))
        return np.array([box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow], dtype=np.int64)

    def canvas(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        from pipeline.dataset.crop import crop_resize

        return _grey(crop_resize(frame, box, self.side, resize="opencv"))

    def crop_to_canvas(self, canvas_box: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
        """The affine map (2x3) from the size x size crop of the integer `box` to the canvas of
        `canvas_box` (pixel centres at integers on both grids)."""
        cw, ch = canvas_box[2] - canvas_box[0], canvas_box[3] - canvas_box[1]
        bw, bh = box[2] - box[0], box[3] - box[1]
        ax, ay = bw * self.side / (size * cw), bh * self.side / (size * ch)  # crop px -> canvas px
        bx = ((box[0] - canvas_box[0]) + 0.5 * bw / size) * self.side / cw - 0.5
        by = ((box[1] - canvas_box[1]) + 0.5 * bh / size) * self.side / ch - 0.5
        return np.array([[ax, 0, bx], [0, ay, by]], np.float64)

    def fields_in(self, fields: Fields, canvas_box: np.ndarray, box: np.ndarray, size: int) -> Fields:
        """`fields` (on the canvas of `canvas_box`) on the size x size crop of the integer `box`."""
        m = self.crop_to_canvas(canvas_box, box, size)
        ax, ay = m[0, 0], m[1, 1]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

        def resample(x, outside):
            return cv2.warpAffine(x, m, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=outside)

        flow = cv2.multiply(resample(fields.flow, 0), (1 / ax, 1 / ay, 1 / ax, 1 / ay))  # canvas px -> crop px
        return Fields(flow, resample(fields.v0, 1), resample(fields.v1, 1))

    def window_motions(self, frames, points, box, size: int) -> list[Fields]:
        """The motion of each consecutive pair of a window's real `frames` (source frames, time
        order; `points` their landmarks) on the size x size crop of `box`, as the renderer computes
        it once per pair and maps per window: with `blur_frames(crops, ..., motions=...)` it gives a
        sample's blurry image back from the source video (docs/manifest.md)."""
        out = []
        for fa, fb, pa, pb in zip(frames, frames[1:], points, points[1:]):
            cbox = self.canvas_box(pa, pb)
            out.append(self.fields_in(self.interp.fields(self.canvas(fa, cbox), self.canvas(fb, cbox)), cbox, box, size))
        return out


def iter_frames(frames, p: InterpParams, interp: Interpolator | None = None, gaps=None, motions=None):
    """Real frames (time order) with the kept synthesised frames between them, in time order;
    `gaps`: frame intervals between consecutive real frames (held pictures), default all 1;
    `motions`: each consecutive pair's `Fields` on these frames' grid (the renderer's: `SharedFlow`),
    default the flow of the frames themselves."""
    interp = interp if interp is not None or not p.enabled else Interpolator(p)
    prev = None
    for k, f in enumerate(frames):
        if prev is not None and interp is not None:
            yield from interp.between(prev, f, 1 if gaps is None else int(gaps[k - 1]),
                                      fields=None if motions is None else motions[k - 1])
        yield f
        prev = f


def blur_frames(frames, p: InterpParams, gamma: float = 1.0, rounding: str = "truncate",
                interp: Interpolator | None = None, gaps=None, motions=None) -> np.ndarray:
    """The blurry image of real frames in time order, with interpolation and exposure `p`
    (`gaps`, `motions`: as `iter_frames`)."""
    acc = RunningMean(gamma, rounding)
    for f in iter_frames(frames, p, interp, gaps, motions):
        acc.add(f)
    return acc.mean()


def gradient_energy(img: np.ndarray) -> float:
    """Mean squared Sobel gradient magnitude of the grey image (0-255 scale): a ghosting measure.

    Ghost copies keep sharp edges at reduced contrast; a continuous smear spreads them out. So,
    for the same motion, a lower value means less ghosting (interpolation lowers it; at k = 1 it
    only depends on the frames)."""
    g = _grey(img).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return float((gx * gx + gy * gy).mean())
