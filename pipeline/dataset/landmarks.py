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

LANDMARKS_SCHEMA = pa.schema([
    ("frame", pa.int32()),
    ("frame_number", pa.int32()),
    ("has_face", pa.bool_()),
    ("source", pa.string()),  # pts | detect | track | none
    ("quality", pa.float32()),  # detect: HOG score; track: box IoU with the previous frame; pts: 1
    ("quality_ok", pa.bool_()),
    ("sharpness", pa.float32()),  # variance of the Laplacian of the grey face box, source pixels
    ("landmarks", pa.list_(pa.float32(), 2 * N_POINTS)),  # x0, y0, x1, y1, ... source pixels
])


@dataclass(frozen=True)
class LandmarkParams:
    detect_every: int = 10  # frames between scheduled detections
    detect_max_side: int = 640  # detection runs on a frame downscaled to at most this side
    upsample: int = 0  # dlib HOG upsampling on the (downscaled) detection frame
    min_track_iou: float = 0.5  # below this, tracking is degraded: re-detect now
    min_detect_score: float = 0.0  # HOG detections scoring below this count as no face
    use_pts: bool = True  # use .pts annotations where a frame has one

    @classmethod
    def from_params(cls, p: dict) -> "LandmarkParams":
        return cls(**{k: p[k] for k in cls.__dataclass_fields__ if k in p})


def points_box(pts: np.ndarray) -> np.ndarray:
    """Tight bounding box (x0, y0, x1, y1) of points (N, 2)."""
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float64)


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


class FaceTracker:
    """Detect-every-k + shape-predictor tracking of the largest face in a stream of frames."""

    def __init__(self, params: LandmarkParams):
        import dlib
        self._dlib = dlib
        self.p = params
        self.detector = frontal_face_detector()
        self.predictor = shape_predictor_68()
        self.prev: np.ndarray | None = None
        self.since_detect = 0
        # Where the detector's box sits relative to the landmarks' box (centre offset and size,
        # in landmark-box units): tracking rebuilds a detector-like box from the last landmarks,
        # because the predictor was trained on detector boxes, not landmark boxes.
        self.rect_rel = np.array([0.0, 0.0, 1.0])
        self.reference: np.ndarray | None = None  # appearance of the last detected face

    def _predict(self, gray: np.ndarray, rect) -> np.ndarray:
        shape = self.predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def detect(self, gray: np.ndarray) -> tuple[np.ndarray | None, float]:
        h, w = gray.shape
        scale = min(1.0, self.p.detect_max_side / max(h, w))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        rects, scores, _ = self.detector.run(small, self.p.upsample, self.p.min_detect_score)
        if len(rects) == 0:
            return None, 0.0
        areas = [r.width() * r.height() for r in rects]
        k = int(np.argmax(areas))  # the largest face is the subject
        r = rects[k]
        rect = self._dlib.rectangle(int(round(r.left() / scale)), int(round(r.top() / scale)),
                                    int(round(r.right() / scale)), int(round(r.bottom() / scale)))
        pts = self._predict(gray, rect)
        lb = points_box(pts)
        size = max(np.sqrt((lb[2] - lb[0]) * (lb[3] - lb[1])), 1.0)
        rc = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        lc = (lb[:2] + lb[2:]) / 2
        self.rect_rel = np.array([*(rc - lc) / size, rect.width() / size])
        self.reference = appearance(gray, pts)
        return pts, float(scores[k])

    def track(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        lb = points_box(self.prev)
        size = max(np.sqrt((lb[2] - lb[0]) * (lb[3] - lb[1])), 1.0)
        c = (lb[:2] + lb[2:]) / 2 + self.rect_rel[:2] * size
        half = self.rect_rel[2] * size / 2
        rect = self._dlib.rectangle(int(round(c[0] - half)), int(round(c[1] - half)),
                                    int(round(c[0] + half)), int(round(c[1] + half)))
        pts = self._predict(gray, rect)
        if self.reference is not None and float(appearance(gray, pts) @ self.reference) < MIN_APPEARANCE:
            return pts, 0.0  # the box no longer holds the face we were tracking
        return pts, box_iou(points_box(pts), lb)

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


BATCH_FRAMES = 4096  # landmark rows per written batch: memory does not grow with the video


def iter_landmarks(src: VideoSource, params: LandmarkParams, n_frames: int, batch: int = BATCH_FRAMES):
    """Landmarks for every frame of one video as tables of up to `batch` rows, streamed from the
    decoder (one frame in memory at a time)."""
    annots = annotations_by_number(src.annot_dir) if params.use_pts else {}
    numbers = frame_numbers(src, n_frames)
    tracker = FaceTracker(params)
    cols = {k: [] for k in LANDMARKS_SCHEMA.names}
    decoded = 0
    for i, frame in iter_frames(src):
        if i >= len(numbers):  # decoded more than probed: keep the catalog's count authoritative
            break
        decoded += 1
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        number = int(numbers[i])
        pts = None
        if number in annots:
            try:
                pts = read_pts(annots[number])
            except PtsError as e:
                log.warning("%s; falling back to dlib for that frame", e)
            if pts is not None and pts.shape != (N_POINTS, 2):
                log.warning("%s: %d points, expected 68; falling back to dlib", annots[number], len(pts))
                pts = None
        if pts is not None:
            tracker.reset(pts, gray)
            source, quality, ok = "pts", 1.0, True
        else:
            pts, source, quality, ok = tracker.step(gray)
        cols["frame"].append(i)
        cols["frame_number"].append(number)
        cols["has_face"].append(pts is not None)
        cols["source"].append(source)
        cols["quality"].append(quality)
        cols["quality_ok"].append(ok)
        cols["sharpness"].append(sharpness(gray, points_box(pts)) if pts is not None else float("nan"))
        cols["landmarks"].append(pts.reshape(-1).astype(np.float32) if pts is not None else None)
        if len(cols["frame"]) == batch:
            yield _table(cols)
            cols = {k: [] for k in LANDMARKS_SCHEMA.names}
    if not decoded:
        raise VideoError(f"{src.path}: no frame decoded during landmark extraction")
    if cols["frame"]:
        yield _table(cols)


def _table(cols: dict) -> pa.Table:
    points = cols.pop("landmarks")
    flat = np.stack([p if p is not None else np.zeros(2 * N_POINTS, np.float32) for p in points])
    missing = pa.array([p is None for p in points])
    cols["landmarks"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), 2 * N_POINTS, mask=missing)
    return pa.Table.from_pydict(cols, schema=LANDMARKS_SCHEMA)


def extract_video(src: VideoSource, params: LandmarkParams, n_frames: int) -> pa.Table:
    """Landmarks for every frame of one video, as one table."""
    return pa.concat_tables(iter_landmarks(src, params, n_frames))


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """A landmarks file as arrays: points (F, 68, 2) float32 with NaN where no face, plus columns.

    Read row group by row group into preallocated arrays, so loading a long video's landmarks
    costs their final size (0.6 KB per frame), not several copies of them."""
    f = pq.ParquetFile(path)
    n = f.metadata.num_rows
    out = {"frame": np.empty(n, np.int32), "frame_number": np.empty(n, np.int32),
           "has_face": np.empty(n, bool), "source": np.empty(n, "<U6"), "quality_ok": np.empty(n, bool),
           "sharpness": np.empty(n, np.float32), "points": np.full((n, N_POINTS, 2), np.nan, np.float32)}
    a = 0
    for g in range(f.num_row_groups):
        t = f.read_row_group(g)
        b = a + t.num_rows
        for k in ("frame", "frame_number", "has_face", "quality_ok", "sharpness"):
            out[k][a:b] = t[k].to_numpy(zero_copy_only=False)
        out["source"][a:b] = t["source"].to_pylist()
        o = a  # first frame of the chunk
        for chunk in t["landmarks"].chunks:  # null slots hold zeros: copy only frames with a face
            m = len(chunk)
            vals = chunk.values.to_numpy(zero_copy_only=False).reshape(-1, N_POINTS, 2)[chunk.offset:chunk.offset + m]
            rows = out["has_face"][o:o + m]
            out["points"][o:o + m][rows] = vals[rows]
            o += m
        a = b
    return out


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
    try:
        with pq.ParquetWriter(tmp, LANDMARKS_SCHEMA, compression="zstd") as writer:
            for table in iter_landmarks(source_of(video), params, int(video["n_frames"])):
                writer.write_table(table)
                for s in table["source"].to_pylist():
                    counts[s] += 1
    except Exception as e:  # one broken video must not end a run over hundreds...
        tmp.unlink(missing_ok=True)
        if not is_input_error(e):  # ...but a full disk, a permission or memory error, a bug must
            raise
        return {"video_id": vid, "error": f"{video['path']}: landmark extraction failed: {e}"}
    tmp.replace(path)
    frames = sum(counts.values())
    stats = {"video_id": vid, "error": None, "frames": frames, "frames_no_face": counts["none"]}
    stats.update({f"frames_{s}": counts[s] for s in SOURCES if s != "none"})
    log.info("%s: %d frames, %d without a face (%s)", vid, frames, counts["none"],
             ", ".join(f"{s}={n}" for s, n in counts.items() if n))
    return stats
