"""68-point landmarks for every frame: `.pts` where a source has them, else dlib, fast.

dlib's HOG detector is the expensive part (tens of ms per frame when upsampled); its 68-point
shape predictor is cheap (< 1 ms). So we detect on a downscaled frame every `detect_every` frames
and in between run only the shape predictor, seeded with a box derived from the previous frame's
landmarks (tracking). Tracking that degrades (the new landmarks' box jumps away from the last
one) triggers an immediate re-detection. Every frame records where its landmarks came from and a
quality flag; faceless frames are kept, flagged, never dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68
from pipeline.dataset.holds import HoldMeter, HoldParams, cadence, in_held_phase, pair_repeats
from pipeline.dataset.pts import PtsError, annotations_by_number, read_pts
from pipeline.dataset.video import VideoError, VideoSource, frame_numbers, is_input_error, iter_frames

log = logging.getLogger(__name__)

N_POINTS = 68
# `quality_ok` marks landmarks we would trust without looking: a clear detection (HOG score) or a
# smooth track (landmark box overlapping the previous frame's this much).
CONFIDENT_SCORE = 0.5
CONFIDENT_IOU = 0.8
# The shape predictor returns a face-shaped set of points in any box, face or not; tracking also
# requires the face to still look like the last detected one (normalised correlation of a small
# grey patch of the landmark box).
MIN_APPEARANCE = 0.5
APPEARANCE_SIZE = 32
SOURCES = ("pts", "detect", "track", "none")
FACES = ("all", "largest")
# Track association (faces: all)
ASSOC_IOU = 0.3  # a detection continues a track whose last landmark box it overlaps this much
REID_APPEARANCE = 0.6  # ...or, for a track lost within this shot, whose appearance it matches this well
LOST_FRAMES = 30  # a lost track can be revived for this many frames, then it ends
# Shot cuts
CUT_THUMB = (32, 24)
CUT_HISTORY = 15

LANDMARKS_SCHEMA = pa.schema([
    ("frame", pa.int32()),
    ("frame_number", pa.int32()),
    ("track", pa.int32()),  # face track (0, 1, ...); null: no face in this frame
    ("cut", pa.bool_()),  # a shot cut falls right before this frame (it starts a new shot)
    ("has_face", pa.bool_()),
    ("source", pa.string()),  # pts | detect | track | none
    ("quality", pa.float32()),  # detect: HOG score; track: box IoU with the previous frame; pts: 1
    ("quality_ok", pa.bool_()),
    ("sharpness", pa.float32()),  # variance of the Laplacian of the grey face box, source pixels
    ("landmarks", pa.list_(pa.float32(), 2 * N_POINTS)),  # x0, y0, x1, y1, ... source pixels
    # held frames (pipeline/dataset/holds.py): the frame's difference to the previous one, and the
    # picture it shows (the first frame of its hold; the frame itself when it is no repeat)
    ("frame_diff", pa.float32()),  # mean |grey difference| to the previous frame, 0-255; null: frame 0
    ("block_diff", pa.float32()),  # the largest of the 8 x 8 blocks' mean |difference|
    ("picture", pa.int32()),
])


@dataclass(frozen=True)
class LandmarkParams:
    detect_every: int = 10  # frames between scheduled detections
    detect_max_side: int = 640  # detection runs on a frame downscaled to at most this side
    upsample: int = 0  # dlib HOG upsampling on the (downscaled) detection frame
    min_track_iou: float = 0.5  # below this, tracking is degraded: re-detect now
    min_detect_score: float = 0.0  # HOG detections scoring below this count as no face
    use_pts: bool = True  # use .pts annotations where a frame has one
    faces: str = "all"  # all: every face is a track | largest: only the largest face (before issue 16)
    min_face: float = 0.0  # faces: all: ignore detections smaller than this (sqrt of box area, source px)
    min_track_frames: int = 3  # faces: all: a track needs this many frames with a face to be kept
    cut_threshold: float | None = 0.5  # shot cut measure (1 - thumbnail correlation) at least this; None: off
    cut_ratio: float = 3.0  # ...and at least this times the median measure of the previous frames
    holds: HoldParams = HoldParams()  # held-frame detection (landmarks.holds)

    @classmethod
    def from_params(cls, p: dict) -> "LandmarkParams":
        values = {k: p[k] for k in cls.__dataclass_fields__ if k in p and k != "holds"}
        return cls(**values, holds=HoldParams.from_params(p.get("holds")))


def points_box(pts: np.ndarray) -> np.ndarray:
    """Tight bounding box (x0, y0, x1, y1) of points (N, 2)."""
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float64)


# Annotation points we do not trust (a `.pts` file that is corrupt, shifted or from another clip):
# points this far outside the frame (share of its width / height), a box this small (px), or a
# face whose box centre moves more than JUMP_SIZES of its size, or whose size changes by more than
# JUMP_SCALE x, from the previous frame's landmarks (a real face moves a fraction of its size
# from one frame to the next).
FRAME_MARGIN = 0.25
MIN_BOX = 4.0
JUMP_SIZES = 1.0
JUMP_SCALE = 2.0


def untrusted_points(pts: np.ndarray, frame_w: int, frame_h: int, prev: np.ndarray | None = None) -> str | None:
    """Why the annotated points of one frame cannot be trusted, or None. `prev`: the previous
    frame's landmarks in the same shot (None: no jump test)."""
    if pts.shape != (N_POINTS, 2):
        return f"{len(pts)} points, expected {N_POINTS}"
    if not np.isfinite(pts).all():
        return "non-finite coordinates"
    x0, y0, x1, y1 = points_box(pts)
    mx, my = FRAME_MARGIN * frame_w, FRAME_MARGIN * frame_h
    if x0 < -mx or y0 < -my or x1 > frame_w + mx or y1 > frame_h + my:
        return (f"points leave the {frame_w}x{frame_h} frame (x {x0:.6g} to {x1:.6g}, y {y0:.6g} to {y1:.6g})")
    if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
        return f"the points collapse to a {x1 - x0:.3g} x {y1 - y0:.3g} px box"
    if prev is not None:
        b = points_box(prev)
        size, new_size = np.sqrt((b[2] - b[0]) * (b[3] - b[1])), np.sqrt((x1 - x0) * (y1 - y0))
        moved = float(np.hypot((x0 + x1 - b[0] - b[2]) / 2, (y0 + y1 - b[1] - b[3]) / 2))
        ratio = new_size / max(size, 1e-6)
        if moved > JUMP_SIZES * size or not 1 / JUMP_SCALE <= ratio <= JUMP_SCALE:
            return (f"the face jumps from the previous frame's (centre moved {moved:.0f} px, size x{ratio:.2f}, "
                    f"face size {size:.0f} px)")
    return None


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def appearance(gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Zero-mean unit-norm grey patch of the landmark box: a cheap 'is it still that face' signature."""
    h, w = gray.shape
    b = points_box(pts)
    x0, y0 = int(np.clip(np.floor(b[0]), 0, w - 1)), int(np.clip(np.floor(b[1]), 0, h - 1))
    x1, y1 = int(np.clip(np.ceil(b[2]) + 1, x0 + 1, w)), int(np.clip(np.ceil(b[3]) + 1, y0 + 1, h))
    v = cv2.resize(gray[y0:y1, x0:x1], (APPEARANCE_SIZE, APPEARANCE_SIZE), interpolation=cv2.INTER_AREA)
    v = v.astype(np.float32).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else v


def sharpness(gray: np.ndarray, box: np.ndarray) -> float:
    """Variance of the Laplacian over the face's box: the blur gate of CFMD-style datasets."""
    h, w = gray.shape
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])) + 1, w), min(int(np.ceil(box[3])) + 1, h)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    return float(cv2.Laplacian(gray[y0:y1, x0:x1], cv2.CV_64F).var())


class _DlibFaces:
    """What both trackers share: dlib's detector and 68-point predictor, detection at a capped
    resolution, and the detector-like box that tracking rebuilds from the last landmarks.

    rect_rel: where the detector's box sits relative to the landmarks' box (centre offset and
    size, in landmark-box units). Tracking rebuilds a detector-like box from the last landmarks
    with it, because the predictor was trained on detector boxes, not landmark boxes."""

    def __init__(self, params: LandmarkParams):
        import dlib
        self._dlib = dlib
        self.p = params
        self.detector = frontal_face_detector()
        self.predictor = shape_predictor_68()
        self.since_detect = 0

    def _predict(self, gray: np.ndarray, rect) -> np.ndarray:
        shape = self.predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _detections(self, gray: np.ndarray) -> list[tuple]:
        """Every detected face as (full-resolution dlib rectangle, score), largest first (ties in
        detector order)."""
        h, w = gray.shape
        scale = min(1.0, self.p.detect_max_side / max(h, w))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        rects, scores, _ = self.detector.run(small, self.p.upsample, self.p.min_detect_score)
        order = sorted(range(len(rects)), key=lambda k: (-rects[k].width() * rects[k].height(), k))
        return [(self._dlib.rectangle(int(round(rects[k].left() / scale)), int(round(rects[k].top() / scale)),
                                      int(round(rects[k].right() / scale)), int(round(rects[k].bottom() / scale))),
                 float(scores[k])) for k in order]

    def _fit(self, gray: np.ndarray, rect) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks in a detector box, and that box's rect_rel."""
        pts = self._predict(gray, rect)
        lb = points_box(pts)
        size = max(np.sqrt((lb[2] - lb[0]) * (lb[3] - lb[1])), 1.0)
        rc = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        lc = (lb[:2] + lb[2:]) / 2
        return pts, np.array([*(rc - lc) / size, rect.width() / size])

    def _follow(self, gray: np.ndarray, prev: np.ndarray, rect_rel: np.ndarray,
                reference: np.ndarray | None) -> tuple[np.ndarray, float]:
        """Landmarks in the box rebuilt from `prev`, and the tracking quality: the IoU of the new
        and old landmark boxes, 0 when the box no longer holds the face we were tracking."""
        lb = points_box(prev)
        size = max(np.sqrt((lb[2] - lb[0]) * (lb[3] - lb[1])), 1.0)
        c = (lb[:2] + lb[2:]) / 2 + rect_rel[:2] * size
        half = rect_rel[2] * size / 2
        rect = self._dlib.rectangle(int(round(c[0] - half)), int(round(c[1] - half)),
                                    int(round(c[0] + half)), int(round(c[1] + half)))
        pts = self._predict(gray, rect)
        if reference is not None and float(appearance(gray, pts) @ reference) < MIN_APPEARANCE:
            return pts, 0.0
        return pts, box_iou(points_box(pts), lb)


class FaceTracker(_DlibFaces):
    """Detect-every-k + shape-predictor tracking of the largest face in a stream of frames."""

    def __init__(self, params: LandmarkParams):
        super().__init__(params)
        self.prev: np.ndarray | None = None
        self.rect_rel = np.array([0.0, 0.0, 1.0])
        self.reference: np.ndarray | None = None  # appearance of the last detected face

    def detect(self, gray: np.ndarray) -> tuple[np.ndarray | None, float]:
        faces = self._detections(gray)
        if not faces:
            return None, 0.0
        rect, score = faces[0]  # the largest face is the subject
        pts, self.rect_rel = self._fit(gray, rect)
        self.reference = appearance(gray, pts)
        return pts, score

    def track(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        return self._follow(gray, self.prev, self.rect_rel, self.reference)

    def step(self, gray: np.ndarray) -> tuple[np.ndarray | None, str, float, bool]:
        """Landmarks for the next frame: (points or None, source, quality, quality_ok)."""
        if self.prev is not None and self.since_detect < self.p.detect_every:
            pts, iou = self.track(gray)
            if iou >= self.p.min_track_iou:
                self.prev, self.since_detect = pts, self.since_detect + 1
                return pts, "track", iou, iou >= CONFIDENT_IOU
        pts, score = self.detect(gray)
        if pts is None and self.prev is not None:
            # The detector misses turned or blurred faces that tracking still holds: keep the
            # tracked points if they are consistent, flagged by their source.
            tracked, iou = self.track(gray)
            if iou >= self.p.min_track_iou:
                self.prev, self.since_detect = tracked, 0
                return tracked, "track", iou, iou >= CONFIDENT_IOU
        self.prev, self.since_detect = pts, 0
        if pts is None:
            return None, "none", 0.0, False
        return pts, "detect", score, score >= CONFIDENT_SCORE

    def reset(self, pts: np.ndarray | None, gray: np.ndarray | None = None) -> None:
        """Seed tracking from trusted points (e.g. a .pts annotation)."""
        self.prev = pts
        self.since_detect = 0
        if pts is not None and gray is not None:
            self.reference = appearance(gray, pts)


class CutDetector:
    """Shot cuts, frame by frame: 1 - correlation of zero-mean unit-norm grey thumbnails, against
    an absolute threshold and a multiple of the recent median (module docstring)."""

    def __init__(self, threshold: float | None, ratio: float):
        self.threshold, self.ratio = threshold, ratio
        self.prev: np.ndarray | None = None
        self.history: list[float] = []
        self.measure = float("nan")  # the last frame's measure

    @staticmethod
    def thumbnail(gray: np.ndarray) -> np.ndarray:
        v = cv2.resize(gray, CUT_THUMB, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        v -= v.mean()
        n = float(np.linalg.norm(v))
        return v / n if n > 1e-3 else np.zeros_like(v)  # a flat (black) frame correlates with nothing

    def step(self, gray: np.ndarray) -> bool:
        if self.threshold is None:
            return False
        t = self.thumbnail(gray)
        prev, self.prev = self.prev, t
        if prev is None:
            return False
        flat = not prev.any() and not t.any()  # two flat (e.g. black) frames are the same picture
        d = self.measure = 0.0 if flat else 1.0 - float(prev @ t)
        floor = self.ratio * float(np.median(self.history)) if self.history else 0.0
        self.history = (self.history + [d])[-CUT_HISTORY:]
        return d >= self.threshold and d >= floor


class _Track:
    def __init__(self, pid: int):
        self.pid = pid  # provisional id, birth order
        self.tid: int | None = None  # final id once confirmed
        self.dropped = False
        self.prev: np.ndarray | None = None  # last landmarks; None while lost
        self.last: np.ndarray | None = None  # last landmarks seen
        self.rect_rel = np.array([0.0, 0.0, 1.0])
        self.reference: np.ndarray | None = None
        self.faces = 0
        self.lost = 0


class MultiFaceTracker(_DlibFaces):
    """Detect-every-k + shape-predictor tracking of every face (faces: all).

    Per track the arithmetic is FaceTracker's (same detector box model, same tracking box, same
    appearance check), so a video with one face gets the same landmarks as `faces: largest`.
    A detection step runs every `detect_every` frames, whenever a track's tracking degrades, and
    on every frame while no track is open (as FaceTracker does without a subject)."""

    def __init__(self, params: LandmarkParams):
        super().__init__(params)
        self.tracks: list[_Track] = []  # open tracks (active or lost)
        self._pids = 0
        self._tids = 0

    def detect_all(self, gray: np.ndarray) -> list[tuple]:
        """Every face: (points, score, rect_rel, appearance), largest first."""
        out = []
        for rect, score in self._detections(gray):
            if self.p.min_face and np.sqrt(max(rect.width() * rect.height(), 0)) < self.p.min_face:
                continue
            pts, rect_rel = self._fit(gray, rect)
            out.append((pts, score, rect_rel, appearance(gray, pts)))
        return out

    def _track(self, gray: np.ndarray, t: _Track) -> tuple[np.ndarray, float]:
        return self._follow(gray, t.prev, t.rect_rel, t.reference)

    def end_all(self) -> None:
        """A shot cut (or the end of the video): every track ends; unconfirmed ones are dropped."""
        for t in self.tracks:
            if t.tid is None:
                t.dropped = True
        self.tracks = []

    def step(self, gray: np.ndarray) -> list[tuple]:
        """One frame: [(track, points, source, quality, quality_ok)] for the tracks with a face."""
        active = [t for t in self.tracks if t.prev is not None]
        results: dict[int, tuple] = {}
        detect = not active or self.since_detect >= self.p.detect_every
        if not detect:
            for t in active:
                pts, iou = self._track(gray, t)
                if iou < self.p.min_track_iou:
                    detect = True  # degraded: re-detect now (every track, this frame)
                    break
                results[t.pid] = (t, pts, "track", iou, iou >= CONFIDENT_IOU)
        if detect:
            results = {}
            dets = self.detect_all(gray)
            pairs = []
            for ti, t in enumerate(self.tracks):
                tb = points_box(t.last)
                for di, (pts, _, _, ref) in enumerate(dets):
                    iou = box_iou(points_box(pts), tb)
                    sim = float(ref @ t.reference) if t.reference is not None else 0.0
                    if iou >= ASSOC_IOU or (t.prev is None and sim >= REID_APPEARANCE):
                        pairs.append((-(iou + sim), ti, di))
            used_t, used_d = set(), set()
            for _, ti, di in sorted(pairs):
                if ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                t = self.tracks[ti]
                pts, score, t.rect_rel, t.reference = dets[di]
                results[t.pid] = (t, pts, "detect", score, score >= CONFIDENT_SCORE)
            for ti, t in enumerate(self.tracks):
                if ti not in used_t and t.prev is not None:
                    # the detector misses turned or blurred faces that tracking still holds
                    pts, iou = self._track(gray, t)
                    if iou >= self.p.min_track_iou:
                        results[t.pid] = (t, pts, "track", iou, iou >= CONFIDENT_IOU)
            for di, (pts, score, rel, ref) in enumerate(dets):
                if di not in used_d:
                    t = _Track(self._pids)
                    self._pids += 1
                    t.rect_rel, t.reference = rel, ref
                    self.tracks.append(t)
                    results[t.pid] = (t, pts, "detect", score, score >= CONFIDENT_SCORE)
            self.since_detect = 0
        else:
            self.since_detect += 1
        kept = []
        for t in self.tracks:
            r = results.get(t.pid)
            if r is not None:
                t.prev = t.last = r[1]
                t.faces += 1
                t.lost = 0
                if t.tid is None and t.faces >= self.p.min_track_frames:
                    t.tid = self._tids
                    self._tids += 1
            else:
                t.prev = None
                t.lost += 1
                if t.tid is None:
                    t.dropped = True  # an unconfirmed track that loses its face was a false start
                    continue
                if t.lost > LOST_FRAMES:
                    continue
            kept.append(t)
        self.tracks = kept
        return [results[k] for k in sorted(results)]


BATCH_FRAMES = 4096  # landmark rows per written batch: memory does not grow with the video


def iter_landmarks(src: VideoSource, params: LandmarkParams, n_frames: int, batch: int = BATCH_FRAMES,
                   info: dict | None = None):
    """Landmarks for every frame of one video as tables of up to `batch` rows, streamed from the
    decoder (one frame in memory at a time, plus the few frames an unconfirmed track holds back).

    `info`, if given, receives the video's totals: frames, frames_no_face, tracks, cuts (frame list),
    pts_rejected ([{path, frame, reason}]: annotation files not trusted, `untrusted_points`), holds
    (`pipeline.dataset.holds.cadence`: repeat share, mean hold, cadence).

    Every frame's difference to the previous one is measured as it is decoded (HoldMeter); whether
    it repeats the previous picture needs `holds.context` frames after it, and the cadence rule up
    to `2 x holds.phase_window + 1` (fewer at a cut), so a frame is written once those are decoded
    (landmark rows only: a few hundred bytes a frame)."""
    annots = annotations_by_number(src.annot_dir) if params.use_pts else {}
    numbers = frame_numbers(src, n_frames)
    single = params.faces == "largest" or bool(annots)  # .pts sources keep their single annotated track
    tracker = FaceTracker(params) if single else MultiFaceTracker(params)
    cuts = CutDetector(params.cut_threshold, params.cut_ratio)
    info = {} if info is None else info
    info.update(frames=0, frames_no_face=0, tracks=0, cuts=[], pts_rejected=[])
    meter, hp = HoldMeter(params.holds), params.holds
    diffs: list[float] = []  # per frame: frame_diff, block_diff, cut (for the repeat decision)
    blocks: list[float] = []
    cut_flags: list[bool] = []
    repeat_flags: list[bool] = []
    picture = 0
    cols = {k: [] for k in LANDMARKS_SCHEMA.names}
    pending: list[list] = []  # frames not yet written: [frame, number, cut, [(track, pts, source, quality, ok, sharp)]]
    decoded = 0
    previous_number = None

    def release(final: bool = False):
        """Write held frames, in order, once every track they mention is confirmed or dropped and
        the frames the repeat decision looks at are decoded."""
        nonlocal picture
        while pending:
            i, number, cut, rows = pending[0]
            if not final and any(r[0] is not None and r[0].tid is None and not r[0].dropped for r in rows):
                return
            if not final and len(diffs) <= i + hp.context:
                return
            lo, hi = max(0, i - hp.context), i + hp.context + 1
            repeat = bool(pair_repeats(diffs[lo:hi], blocks[lo:hi], hp, cut_flags[lo:hi])[i - lo]) if i else False
            if not repeat and i:
                # the cadence rule looks at most 2 x phase_window + 1 pairs from i: pass only those
                w0 = max(0, i - 2 * hp.phase_window - 2)
                w1 = i + 2 * hp.phase_window + 2
                phase = in_held_phase(blocks[w0:w1], cut_flags[w0:w1], i - w0, hp, complete=final)
                if phase is None:
                    return
                repeat = phase
            pending.pop(0)
            repeat_flags.append(repeat)
            picture = picture if repeat else i
            rows = [r for r in rows if r[0] is None or r[0].tid is not None]
            if not rows or all(r[1] is None for r in rows):
                rows = [(None, None, rows[0][2] if rows else "none", 0.0, False, float("nan"))]
                info["frames_no_face"] += 1
            for t, pts, source, quality, ok, sharp in sorted(rows, key=lambda r: -1 if r[0] is None else r[0].tid):
                cols["frame"].append(i)
                cols["frame_number"].append(number)
                cols["track"].append(None if t is None else t.tid)
                cols["cut"].append(cut)
                cols["has_face"].append(pts is not None)
                cols["source"].append(source)
                cols["quality"].append(quality)
                cols["quality_ok"].append(ok)
                cols["sharpness"].append(sharp)
                cols["landmarks"].append(pts.reshape(-1).astype(np.float32) if pts is not None else None)
                cols["frame_diff"].append(diffs[i] if np.isfinite(diffs[i]) else None)
                cols["block_diff"].append(blocks[i] if np.isfinite(blocks[i]) else None)
                cols["picture"].append(picture)

    for i, frame in iter_frames(src):
        if i >= len(numbers):  # decoded more than probed: keep the catalog's count authoritative
            break
        decoded += 1
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        number = int(numbers[i])
        cut = cuts.step(gray)
        if cut:
            info["cuts"].append(i)
        d, b = meter.step(gray)
        diffs.append(d)
        blocks.append(b)
        cut_flags.append(cut)
        if single:
            if cut:
                tracker.reset(None)  # the subject's track ends at a cut: find it again
            pts = None
            if number in annots:
                # the previous frame's landmarks (any source) when it is the frame just before, same shot
                prev = tracker.prev if not cut and previous_number == number - 1 else None
                try:
                    pts = read_pts(annots[number])
                    why = untrusted_points(pts, gray.shape[1], gray.shape[0], prev)
                except PtsError as e:
                    why = str(e).split(": ", 1)[-1]
                if why is not None:
                    log.warning("%s: %s; falling back to dlib for frame %d", annots[number], why, i)
                    info["pts_rejected"].append({"path": str(annots[number]), "frame": i, "reason": why})
                    pts = None
            previous_number = number
            if pts is not None:
                tracker.reset(pts, gray)
                source, quality, ok = "pts", 1.0, True
            else:
                pts, source, quality, ok = tracker.step(gray)
            if pts is None:
                rows = [(None, None, source, quality, ok, float("nan"))]
            else:
                rows = [(_SUBJECT, pts, source, quality, ok, sharpness(gray, points_box(pts)))]
        else:
            if cut:
                tracker.end_all()
            rows = [(t, pts, source, quality, ok, sharpness(gray, points_box(pts)))
                    for t, pts, source, quality, ok in tracker.step(gray)]
        pending.append([i, number, cut, rows])
        release()
        if len(cols["frame"]) >= batch:
            yield from _batches(cols, batch)
    if not decoded:
        raise VideoError(f"{src.path}: no frame decoded during landmark extraction")
    if not single:
        tracker.end_all()
    release(final=True)
    info["frames"] = decoded
    info["holds"] = cadence(np.array(repeat_flags, bool))
    info["tracks"] = 1 if single and info["frames_no_face"] < decoded else (0 if single else tracker._tids)
    if cols["frame"]:
        yield from _batches(cols, batch, final=True)


class _Subject:
    tid, dropped = 0, False


_SUBJECT = _Subject()  # faces: largest (and .pts sources): the one track


def _batches(cols: dict, batch: int, final: bool = False):
    while len(cols["frame"]) >= batch or (final and cols["frame"]):
        part = {k: v[:batch] for k, v in cols.items()}
        for v in cols.values():
            del v[:batch]
        yield _table(part)


def _table(cols: dict) -> pa.Table:
    points = cols.pop("landmarks")
    flat = np.stack([p if p is not None else np.zeros(2 * N_POINTS, np.float32) for p in points])
    missing = pa.array([p is None for p in points])
    cols["landmarks"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), 2 * N_POINTS, mask=missing)
    return pa.Table.from_pydict(cols, schema=LANDMARKS_SCHEMA)


def extract_video(src: VideoSource, params: LandmarkParams, n_frames: int) -> pa.Table:
    """Landmarks for every frame of one video, as one table."""
    return pa.concat_tables(iter_landmarks(src, params, n_frames))


def read_tracks(path: str | Path) -> dict[int, dict[str, np.ndarray]]:
    """A landmarks file as one dict of arrays per face track, every array over all F frames of the
    video: points (F, 68, 2) float32 with NaN where the track has no face, has_face, source
    ("none" outside the track), quality_ok, sharpness, frame, frame_number, and, the same in every
    track, `cut` (the video's shot cuts), `picture` (the first frame of each frame's hold) and
    `frame_diff` (its difference to the previous frame). A video without faces gives one faceless track 0.
    Files written before tracks (no `track` column) read as track 0 without cuts.

    Read row group by row group into preallocated arrays, so loading a long video's landmarks
    costs their final size (0.6 KB per frame and track), not several copies of them."""
    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    small = f.read(columns=[c for c in ("frame", "track") if c in names])
    frame_col = small["frame"].to_numpy(zero_copy_only=False)
    n = int(frame_col.max()) + 1 if len(frame_col) else 0
    if "track" in names:
        track_col = small["track"].to_numpy(zero_copy_only=False)  # float with NaN for null
        ids = sorted({int(t) for t in track_col[np.isfinite(track_col)]}) if len(track_col) else []
    else:
        ids = [0]
    ids = ids or [0]
    frame_number = np.full(n, -1, np.int32)
    cut = np.zeros(n, bool)
    picture = np.arange(n, dtype=np.int32)  # files written before held-frame detection: no repeats
    frame_diff = np.full(n, np.nan, np.float32)
    tracks = {}
    for t in ids:
        tracks[t] = {"frame": np.arange(n, dtype=np.int32), "frame_number": frame_number, "cut": cut,
                     "picture": picture, "frame_diff": frame_diff,
                     "has_face": np.zeros(n, bool), "source": np.full(n, "none", "<U6"),
                     "quality_ok": np.zeros(n, bool), "sharpness": np.full(n, np.nan, np.float32),
                     "points": np.full((n, N_POINTS, 2), np.nan, np.float32)}
    for g in range(f.num_row_groups):
        tab = f.read_row_group(g)
        fr = tab["frame"].to_numpy(zero_copy_only=False).astype(np.int64)
        frame_number[fr] = tab["frame_number"].to_numpy(zero_copy_only=False)
        if "cut" in names:
            cut[fr] |= tab["cut"].to_numpy(zero_copy_only=False).astype(bool)
        if "picture" in names:
            picture[fr] = tab["picture"].to_numpy(zero_copy_only=False)
            frame_diff[fr] = tab["frame_diff"].to_numpy(zero_copy_only=False)
        if "track" in names:
            tr = tab["track"].to_numpy(zero_copy_only=False)
            tr = np.where(np.isfinite(tr), tr, -1).astype(np.int64)
        else:
            tr = np.zeros(len(fr), np.int64)
        has = tab["has_face"].to_numpy(zero_copy_only=False).astype(bool)
        source = np.asarray(tab["source"].to_pylist(), dtype="<U6")
        ok = tab["quality_ok"].to_numpy(zero_copy_only=False).astype(bool)
        sharp = tab["sharpness"].to_numpy(zero_copy_only=False).astype(np.float32)
        pts = tab["landmarks"].combine_chunks()
        vals = pts.values.to_numpy(zero_copy_only=False).reshape(-1, N_POINTS, 2)[pts.offset:pts.offset + len(pts)]
        for t, lm in tracks.items():
            m = tr == t
            if not m.any():
                continue
            rows = fr[m]
            lm["has_face"][rows] = has[m]
            lm["source"][rows] = source[m]
            lm["quality_ok"][rows] = ok[m]
            lm["sharpness"][rows] = sharp[m]
            face = m & has
            lm["points"][fr[face]] = vals[face]
    return tracks


def read_landmarks(path: str | Path, track: int | None = None) -> dict[str, np.ndarray]:
    """One track of a landmarks file (read_tracks): `track`, or the only one (an error if several)."""
    tracks = read_tracks(path)
    if track is None:
        if len(tracks) > 1:
            raise ValueError(f"{path}: {len(tracks)} face tracks; name one (read_tracks reads all)")
        track = next(iter(tracks))
    return tracks[track]


def interocular_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point-to-point error over the inter-ocular distance (outer eye corners 36 and 45)."""
    iod = float(np.linalg.norm(truth[36] - truth[45]))
    return float(np.linalg.norm(pred - truth, axis=1).mean() / iod)


def landmarks_for_video(video: dict, out_dir: str, params: LandmarkParams) -> dict:
    """Extract and write one video's landmarks; a bad input is returned as `error`, anything else raises."""
    from pipeline.dataset.ingest import source_of

    vid = video["video_id"]
    path = Path(out_dir) / f"{vid}.parquet"
    tmp = path.with_suffix(".tmp")
    counts = dict.fromkeys(SOURCES, 0)
    info: dict = {}
    try:
        with pq.ParquetWriter(tmp, LANDMARKS_SCHEMA, compression="zstd") as writer:
            for table in iter_landmarks(source_of(video), params, int(video["n_frames"]), info=info):
                writer.write_table(table)
                for s in table["source"].to_pylist():
                    counts[s] += 1
    except Exception as e:  # one broken video must not end a run over hundreds...
        tmp.unlink(missing_ok=True)
        if not is_input_error(e):  # ...but a full disk, a permission or memory error, a bug must
            raise
        return {"video_id": vid, "error": f"{video['path']}: landmark extraction failed: {e}"}
    tmp.replace(path)
    frames = info["frames"]
    stats = {"video_id": vid, "error": None, "frames": frames, "frames_no_face": info["frames_no_face"],
             "tracks": info["tracks"], "cuts": len(info["cuts"]), "cut_frames": info["cuts"],
             "pts_rejected": info["pts_rejected"], "holds": info["holds"],
             "frames_repeated": frames - info["holds"]["pictures"]}
    # frames_<source>: (frame, track) rows with landmarks from that source
    stats.update({f"frames_{s}": counts[s] for s in SOURCES if s != "none"})
    log.info("%s: %d frames, %d without a face, %d tracks, cuts at %s, %d repeated frames (cadence %s) (%s)", vid,
             frames, info["frames_no_face"], info["tracks"], info["cuts"], stats["frames_repeated"],
             info["holds"]["cadence"], ", ".join(f"{s}={n}" for s, n in counts.items() if n))
    return stats
