"""Frame interpolation before averaging, and the shutter's exposure (`blur.interpolate`, `blur.exposure`).

Averaging N frames of 25-30 fps video ghosts when the face moves fast: each frame leaves its own
copy of the eyes. A shutter integrates continuously, so REDS and RSBlur synthesise frames between
the real ones before averaging. Here, with `blur.interpolate: k` (1 = off, the papers), k - 1
frames are synthesised between each pair of consecutive real frames of a window, from their
crops (the window's box, so both crops show the same region):

- dense optical flow in both directions (OpenCV DIS, medium preset, on the grey crops);
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
with k > 1, blurry = `blur_frames(sharp frames in time order, k, e, gamma, rounding, gaps)`, which
synthesises the same frames again (DIS is deterministic); `gaps` are the differences of the
sorted frame_indices: 1 between consecutive frames, the hold's length where a window of pictures
(`blur.units: pictures`) skips held frames, whose time is filled with gap x k - 1 synthesised
frames. Memory: the renderer keeps one
previous crop per open window; nothing else grows.
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


FLOWS = ("dis_medium", "dis_fast", "dis_ultrafast", "farneback", "zero")  # dis_medium: the pipeline's


class Interpolator:
    """Synthesises the kept intermediate frames between two same-sized images (uint8, HxW or HxWx3).

    `flow` and `occlusion` exist for benchmarks/interpolation.py's candidates; the pipeline uses the
    defaults (DIS medium, the occlusion-weighted blend). `zero` flow makes every synthesised frame a
    cross-fade of its two real frames: the weighting of interpolation without any motion."""

    def __init__(self, p: InterpParams, flow: str = "dis_medium", occlusion: bool = True):
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
        self.p = p
        self.times = p.sub_times()  # between frames one interval apart
        self.flow, self.occlusion = flow, occlusion
        self._dis = (cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{flow[4:].upper()}"))
                     if flow.startswith("dis_") else None)
        self._grid: np.ndarray | None = None

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

    def _warp(self, img: np.ndarray, flow: np.ndarray) -> np.ndarray:
        m = self._grid + flow
        return cv2.remap(img, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def between(self, a: np.ndarray, b: np.ndarray, gap: int = 1, flows=None) -> list[np.ndarray]:
        """The synthesised frames between a (t = 0) and b (t = 1), `gap` frame intervals apart
        (`InterpParams.sub_times`), uint8; `flows`: (F01, F10) computed elsewhere (for example at
        the source's scale), else `self.flows(a, b)`."""
        times = self.times if gap == 1 else self.p.sub_times(gap)
        if not times:
            return []
        h, w = a.shape[:2]
        if self._grid is None or self._grid.shape[:2] != (h, w):
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grid = np.dstack([xs, ys])
        f01, f10 = self.flows(a, b) if flows is None else flows
        # visibility: forward-backward consistency of each flow at its source pixel
        e0 = np.linalg.norm(f01 + self._warp(f10, f01), axis=-1)
        e1 = np.linalg.norm(f10 + self._warp(f01, f10), axis=-1)
        scale = 0.01 * (np.linalg.norm(f01, axis=-1).mean() + np.linalg.norm(f10, axis=-1).mean()) + 0.5
        v0 = 1.0 / (1.0 + (e0 / scale) ** 2)
        v1 = 1.0 / (1.0 + (e1 / scale) ** 2)
        if not self.occlusion:  # the plain (1 - t, t) blend of both warped frames
            v0, v1 = np.ones_like(v0), np.ones_like(v1)
        fa, fb = a.astype(np.float32), b.astype(np.float32)
        out = []
        for t in times:
            ft0 = -(1 - t) * t * f01 + t * t * f10
            ft1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
            w0 = (1 - t) * self._warp(v0, ft0) + 1e-3 * (1 - t)
            w1 = t * self._warp(v1, ft1) + 1e-3 * t
            i0, i1 = self._warp(fa, ft0), self._warp(fb, ft1)
            if i0.ndim == 3:
                w0, w1 = w0[..., None], w1[..., None]
            mid = (w0 * i0 + w1 * i1) / (w0 + w1)
            out.append(np.clip(mid + 0.5, 0, 255).astype(np.uint8))
        return out


def iter_frames(frames, p: InterpParams, interp: Interpolator | None = None, gaps=None):
    """Real frames (time order) with the kept synthesised frames between them, in time order;
    `gaps`: frame intervals between consecutive real frames (held pictures), default all 1."""
    interp = interp if interp is not None or not p.enabled else Interpolator(p)
    prev = None
    for k, f in enumerate(frames):
        if prev is not None and interp is not None:
            yield from interp.between(prev, f, 1 if gaps is None else int(gaps[k - 1]))
        yield f
        prev = f


def blur_frames(frames, p: InterpParams, gamma: float = 1.0, rounding: str = "truncate",
                interp: Interpolator | None = None, gaps=None) -> np.ndarray:
    """The blurry image of real frames in time order, with interpolation and exposure `p`
    (`gaps`: frame intervals between them, as `iter_frames`)."""
    acc = RunningMean(gamma, rounding)
    for f in iter_frames(frames, p, interp, gaps):
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
