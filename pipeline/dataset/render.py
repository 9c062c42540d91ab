"""Rendering planned windows into samples: one forward decode, bounded memory.

Averaging methods decide *which* frames form each sample (`Window`); this module turns windows
into pixels. Each frame is decoded once, cropped for every window that contains it with that
window's box, and added to the window's running mean; its source region (the union of those
boxes) goes to the frame store once. Memory holds the open windows, never the video.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import numpy as np

from pipeline.dataset.averaging import RunningMean
from pipeline.dataset.crop import CropParams, clip_box, crop_resize, face_box, laplacian_variance, to_crop_coords
from pipeline.dataset.holds import distinct_pictures
from pipeline.dataset.interpolate import Fields, InterpParams, Interpolator, SharedFlow
from pipeline.dataset.pngio import PngEncoder
from pipeline.dataset.samples import SampleWriter
from pipeline.dataset.video import VideoError, iter_frames


@dataclass(frozen=True)
class Window:
    sample_id: str
    frames: tuple[int, ...]  # source frame indices, temporal order
    box: np.ndarray  # integer crop box, source pixels (square, or 1 px off with crop.square: shorter)
    adjust: str  # none | shift | pad
    stop_reason: str | None = None
    direction: str = "forward"
    track: int = 0  # the face track whose landmarks made the window (a window never mixes tracks)
    shadow: bool = False  # only decides (gate) which boxes its frames' stored regions need (a chunk's renderer)

    @property
    def end(self) -> int:
        return max(self.frames)


def window_box(lm: dict, frames, frame_w: int, frame_h: int, crop: CropParams) -> tuple[np.ndarray, str]:
    """The crop policy: per-frame widened landmark boxes, averaged, squared, edge-handled."""
    return face_box(lm["points"][list(frames)], frame_w, frame_h, crop)


class Renderer:
    """Turns windows into one video's samples, frame by frame.

    Frames are pushed in increasing order; a window must be added before its first frame is
    pushed. A pushed frame is cropped with each of its windows' boxes and added to their running
    means; a window is written when its last frame arrives. So a planner that decides windows in
    frame order (VLA's forward pass) can render them from the frames it has just decoded, instead
    of decoding the video a second time.

    With `gate` (a variance-of-Laplacian threshold), each crop is also the sharpness gate's
    measurement (the authors' gate: every frame's crop with the window's box, at the output size):
    a window with a crop below `gate` is dropped as soon as that crop is seen. A frame's source
    region (the union of the boxes of the windows that were written with it) goes to the frame
    store once every window that uses it is decided, so dropped windows store nothing.
    `window_sharpness` lists, per decided window, the lowest crop sharpness of its frames (what
    the gate compares; NaN when the window was not measured to its end).

    With interpolation (`interp`, `pipeline.dataset.interpolate`), each window keeps its previous
    crop, and the frames synthesised between it and the new crop join the running mean too (shared
    by windows with the same box). The motion between two frames is computed once per pair of
    frames of a track (`SharedFlow`: frame i's grey canvas is kept until the pair's second frame
    arrives) and mapped into each window's crop. A window of pictures (`blur.units: pictures`) skips held frames:
    the frames synthesised between two of its frames fill the whole time between them (more for a
    longer hold). The gate, the landmarks and the stored frames stay the real ones.

    Rendering one chunk of a video (`pipeline.dataset.chunks`): `store` = (start, stop) stores only
    the frames in that range, and a `shadow` window (one of the previous chunk's, reaching into
    this one) is gated but not averaged or written: it only decides, as in a sequential run,
    whether its box joins the stored regions of this chunk's frames.
    """

    def __init__(self, src, video: dict, lm: dict, root, method: str, gamma: float, crop: CropParams,
                 png: PngEncoder = PngEncoder(), rounding: str = "truncate", gate: float | None = None,
                 measure: bool = False, interp: InterpParams = InterpParams(), tracks: dict | None = None,
                 store: tuple[int, int] | None = None, suffix: str = ""):
        # `tracks`: {track: landmarks} of a video with several face tracks (each window's `track`)
        self.tracks = tracks if tracks is not None else {0: lm}
        self.src, self.lm, self.gamma, self.crop, self.rounding = src, lm, gamma, crop, rounding
        self.size = crop.size
        self.gate, self.measure = gate, measure or gate is not None
        self.w, self.h = int(video["width"]), int(video["height"])
        self.writer = SampleWriter(root, method, video, gamma, png, crop.resize, interp.factor, interp.exposure,
                                   suffix=suffix)
        self.store_range = store  # (start, stop): the frames this renderer stores; None: all
        self._interp = Interpolator(interp) if interp.enabled else None
        self._flow = SharedFlow(self._interp, crop, self.w, self.h) if interp.enabled else None
        self._prev: dict[int, tuple[int, np.ndarray]] = {}  # interpolation: each open window's last (frame, crop)
        self._canvases: dict[tuple, tuple] = {}  # (track, frame, next frame) -> (canvas box, grey canvas)
        self._windows: dict[int, Window] = {}
        self._uses: dict[int, list[int]] = defaultdict(list)
        self._regions: dict[int, np.ndarray] = {}
        self._means: dict[int, RunningMean] = {}
        self._sharp: dict[int, float] = {}
        self._written: set[int] = set()
        self._boxes: dict[int, np.ndarray] = {}  # box of each window until its frames are stored
        self._held: OrderedDict[int, tuple] = OrderedDict()  # frame -> (region, origin, its windows)
        self._added = 0
        self.last_pushed = -1
        self.kept = 0
        self.dropped_sharpness = 0
        self.crop_adjust: dict[str, int] = {"none": 0, "shift": 0, "pad": 0}
        self.window_sharpness: list[float] = []

    def add(self, w: Window) -> None:
        if min(w.frames) <= self.last_pushed:
            raise ValueError(f"{w.sample_id}: added after frame {self.last_pushed} was rendered")
        k = self._added
        self._added += 1
        self._windows[k] = w
        self._boxes[k] = w.box
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

    def _drop(self, k: int) -> None:
        w = self._windows.pop(k)
        self._means.pop(k, None)
        self._prev.pop(k, None)
        sharp = self._sharp.pop(k, float("nan"))
        if not w.shadow:  # a shadow window is counted by the chunk that renders it
            self.window_sharpness.append(sharp)
            self.dropped_sharpness += 1
        for f in w.frames:
            ks = self._uses.get(f)
            if ks is not None and k in ks:
                ks.remove(k)
                if not ks:
                    del self._uses[f], self._regions[f]

    def push(self, i: int, frame: np.ndarray) -> None:
        self.last_pushed = i
        ks = self._uses.pop(i, None)
        if ks:
            if frame.shape[1] != self.w or frame.shape[0] != self.h:
                raise VideoError(f"{self.src.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"expected {self.w}x{self.h}")
            r = self._regions.pop(i)
            region = frame[r[1]:r[3], r[0]:r[2]].copy() if self._stores(i) else None
            self._held[i] = (region, (int(r[0]), int(r[1])), list(ks))
            crops: dict[bytes, tuple] = {}  # windows of several N often round to the same box
            mids: dict[tuple, list] = {}  # interpolation: synthesised frames per (pair of frames, box)
            fields: dict[tuple, Fields] = {}  # interpolation: each pair's motion on its canvas, computed once
            for k in ks:
                w = self._windows[k]
                if w.shadow and (self.gate is None or self.gate <= 0):  # any crop passes: written, as sequentially
                    if i == w.end:
                        self._decided_shadow(k)
                    continue
                key = w.box.tobytes()
                hit = crops.get(key)
                if hit is None:
                    c = crop_resize(frame, w.box, self.size, resize=self.crop.resize)
                    hit = crops[key] = (c, laplacian_variance(c) if self.measure else float("nan"))
                crop, sharp = hit
                if self.measure:
                    self._sharp[k] = min(self._sharp.get(k, np.inf), sharp)
                if self.gate is not None and not sharp >= self.gate:
                    self._drop(k)
                    continue
                if w.shadow:
                    if i == w.end:
                        self._decided_shadow(k)
                    continue
                acc = self._means.setdefault(k, RunningMean(self.gamma, self.rounding))
                if self._interp is not None:
                    prev = self._prev.get(k)
                    if prev is not None:
                        pair = (w.track, prev[0], i)
                        if (pair, key) not in mids:
                            mids[pair, key] = self._synthesise(pair, frame, prev[1], crop, w.box, fields)
                        for m in mids[pair, key]:
                            acc.add(m)
                    self._prev[k] = (i, crop)
                    if i != w.end:
                        self._open_canvas(w, i, frame)
                acc.add(crop)
                if i == w.end:
                    frames = sorted(w.frames)
                    pts = self.tracks[w.track]["points"][frames]
                    sharp_min = self._sharp.pop(k, float("nan"))
                    self.writer.add(w.sample_id, frames, w.box, w.adjust, acc.mean(),
                                    to_crop_coords(pts, w.box, self.size), w.stop_reason, w.direction,
                                    landmarks_source=pts, sharpness=sharp_min, track_id=w.track,
                                    pictures=distinct_pictures(self.tracks[w.track], frames))
                    self.window_sharpness.append(sharp_min)
                    self.kept += 1
                    self.crop_adjust[w.adjust] = self.crop_adjust.get(w.adjust, 0) + 1
                    self._written.add(k)
                    del self._means[k], self._windows[k]
                    self._prev.pop(k, None)
            for pair in [p for p in self._canvases if p[2] == i]:  # every window has passed the pair
                del self._canvases[pair]
        self._store_decided()

    def _decided_shadow(self, k: int) -> None:
        """A shadow window passed the gate: its box joins its frames' regions, nothing is written."""
        self._sharp.pop(k, None)
        self._written.add(k)
        del self._windows[k]

    def _stores(self, frame: int) -> bool:
        return self.store_range is None or self.store_range[0] <= frame < self.store_range[1]

    def _open_canvas(self, w: Window, i: int, frame: np.ndarray) -> None:
        """Keep frame i's grey canvas for the pair (i, the window's next frame): the pair's motion
        is computed when that frame arrives (`SharedFlow`), once for every window with the pair."""
        nxt = min(f for f in w.frames if f > i)
        pair = (w.track, i, nxt)
        if pair not in self._canvases:
            pts = self.tracks[w.track]["points"]
            box = self._flow.canvas_box(pts[i], pts[nxt])
            self._canvases[pair] = (box, self._flow.canvas(frame, box))

    def _synthesise(self, pair: tuple, frame: np.ndarray, prev_crop, crop, box, fields: dict) -> list:
        """The synthesised frames of `pair` on the crop of `box`, from the pair's shared motion."""
        cbox, canvas_a = self._canvases[pair]
        if pair not in fields:
            fields[pair] = self._interp.fields(canvas_a, self._flow.canvas(frame, cbox))
        motion = self._flow.fields_in(fields[pair], cbox, box, self.size)
        return self._interp.between(prev_crop, crop, pair[2] - pair[1], fields=motion)

    def _store_decided(self) -> None:
        """Store (or forget) held frames, in order, once all their windows are written or dropped."""
        while self._held:
            f, (region, origin, ks) = next(iter(self._held.items()))
            if any(k in self._windows for k in ks):
                return
            del self._held[f]
            written = [k for k in ks if k in self._written]
            if written and region is not None:
                boxes = [clip_box(self._boxes[k], self.w, self.h) for k in written]
                x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
                x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
                ox, oy = origin
                self.writer.store_frame(f, region[y0 - oy:y1 - oy, x0 - ox:x1 - ox], (int(x0), int(y0)),
                                        (self.w, self.h))
            self._forget(ks)

    def _forget(self, ks) -> None:
        for k in ks:  # a written window's box is needed until its last held frame is stored
            if k in self._boxes and not any(k in h[2] for h in self._held.values()):
                del self._boxes[k]
                self._written.discard(k)

    def close(self):
        """Finish the video's files; return its rows file (None: no samples)."""
        if self._uses:
            raise VideoError(f"{self.src.path}: video ended before frame {self.last_needed}; "
                             f"{len(self._windows)} windows incomplete")
        self._store_decided()
        return self.writer.close()


def render(src, video: dict, lm: dict, root, method: str, windows: list[Window], gamma: float,
           crop: CropParams, png: PngEncoder = PngEncoder(), rounding: str = "truncate",
           interp: InterpParams = InterpParams(), tracks: dict | None = None):
    """Write `windows` as samples of `method` under `root` in one forward decode; return the rows file."""
    r = Renderer(src, video, lm, root, method, gamma, crop, png, rounding, interp=interp, tracks=tracks)
    for w in windows:
        r.add(w)
    last = r.last_needed
    for i, frame in iter_frames(src, stop=last + 1):
        r.push(i, frame)
    return r.close()
