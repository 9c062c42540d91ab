"""Writing one video's blurry samples: blurry PNGs, the frame store, and the sample rows.

Both averaging methods (fixed windows, VLA) produce samples through `SampleWriter`, into
`<dataset>/<method>/`: `blurry/<video_id>/<sample_id>.png`, `frames/<video_id>.bin` (+ index)
and rows of SAMPLES_SCHEMA in temporal order, streamed to `samples/<video_id>.parquet` every
FLUSH_ROWS rows so memory does not grow with the length of the video. The `manifest` stage turns those rows into the
FMR-ordered public manifests, so changing FMR settings never re-runs the averaging.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.framestore import FrameStoreWriter
from pipeline.dataset.interpolate import gradient_energy
from pipeline.dataset.pngio import PngEncoder

SAMPLES_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("video_id", pa.string()),
    ("track_id", pa.int32()),  # face track of the video (landmarks stage); 0 in a single-track video
    ("split", pa.string()),
    ("method", pa.string()),
    ("direction", pa.string()),  # forward | reverse (VLA's reverse pass)
    ("n_frames", pa.int32()),
    ("pictures", pa.int32()),  # distinct pictures among the frames (held frames repeat one): n_frames unless
    ("start_frame", pa.int32()),  # blur.units: frames averages repeats
    ("end_frame", pa.int32()),
    ("stop_reason", pa.string()),
    ("gamma", pa.float32()),
    ("crop_box", pa.list_(pa.float32(), 4)),
    ("crop_adjust", pa.string()),  # none | shift | pad
    ("crop_resize", pa.string()),  # pil | opencv: how the crops were resized (crop.resize)
    ("blurry_path", pa.string()),  # relative to the dataset root
    ("sharp_store", pa.string()),  # relative to the dataset root
    ("frame_indices", pa.list_(pa.int32())),  # temporal order
    ("landmarks", pa.list_(pa.list_(pa.float32(), 136))),  # per frame, crop pixels, temporal order
    ("landmarks_source", pa.list_(pa.list_(pa.float32(), 136))),  # per frame, source pixels, temporal order
    ("sharpness", pa.float32()),  # lowest variance of Laplacian of the window's crops (output size); null: not measured
    ("motion", pa.float32()),  # mean landmark path length over the window, crop pixels
    ("interpolation", pa.int32()),  # blur.interpolate: k (1: real frames only)
    ("exposure", pa.float32()),  # blur.exposure: shutter duty cycle (1: open the whole interval)
    ("gradient_energy", pa.float32()),  # ghosting measure of the blurry image (interpolate.gradient_energy)
])


FLUSH_ROWS = 256


def part_path(root: str | Path, method: str, video_id: str) -> Path:
    """One video's sample rows, merged into `<method>/samples.parquet` by the stage."""
    return Path(root) / method / "samples" / f"{video_id}.parquet"


def landmark_motion(landmarks_crop: np.ndarray) -> float:
    """Mean distance the 68 landmarks travel across the window (crop pixels): a blur-strength measure."""
    if len(landmarks_crop) < 2:
        return 0.0
    steps = np.linalg.norm(np.diff(landmarks_crop, axis=0), axis=-1)  # (N-1, 68)
    return float(steps.sum(0).mean())


class SampleWriter:
    def __init__(self, root: str | Path, method: str, video: dict, gamma: float, png: PngEncoder = PngEncoder(),
                 resize: str = "pil", interpolation: int = 1, exposure: float = 1.0, suffix: str = ""):
        # suffix: a chunk of the video (pipeline.dataset.chunks) writes its frame store and rows to
        # files named with it, merged later; the rows name the merged files
        self.root = Path(root)
        self.interpolation, self.exposure = int(interpolation), float(exposure)
        self.resize = resize
        self.method, self.video, self.gamma = method, video, float(gamma)
        vid = video["video_id"]
        self.store_rel = f"{method}/frames/{vid}.bin"
        self.blurry_rel = f"{method}/blurry/{vid}"
        self.store: FrameStoreWriter | None = None  # opened with the first frame: no files for no samples
        self._png = png
        self.rows: list[dict] = []
        self.count = 0
        self.part = Path(f"{part_path(self.root, method, vid)}{suffix}")
        self._suffix = suffix
        self._parquet: pq.ParquetWriter | None = None

    def store_frame(self, frame: int, region: np.ndarray, origin, frame_size) -> None:
        if self.store is None:
            self.store = FrameStoreWriter(f"{self.root / self.store_rel}{self._suffix}", self._png)
            (self.root / self.blurry_rel).mkdir(parents=True, exist_ok=True)
        self.store.add(frame, region, origin, frame_size)

    def add(self, sample_id: str, frames: list[int], box: np.ndarray, adjust: str, blurry: np.ndarray,
            landmarks_crop: np.ndarray, stop_reason: str | None = None, direction: str = "forward",
            landmarks_source: np.ndarray | None = None, sharpness: float = float("nan"), track_id: int = 0,
            pictures: int | None = None) -> None:
        rel = f"{self.blurry_rel}/{sample_id}.png"
        if not self.count and not self.rows:  # the first sample (its frames are stored once decided)
            (self.root / self.blurry_rel).mkdir(parents=True, exist_ok=True)
        self._png.write(self.root / rel, blurry)
        self.rows.append({
            "sample_id": sample_id,
            "video_id": self.video["video_id"],
            "track_id": int(track_id),
            "split": self.video["split"],
            "method": self.method,
            "direction": direction,
            "n_frames": len(frames),
            "pictures": len(frames) if pictures is None else int(pictures),
            "start_frame": int(min(frames)),
            "end_frame": int(max(frames)),
            "stop_reason": stop_reason,
            "gamma": self.gamma,
            "crop_box": [float(v) for v in box],
            "crop_adjust": adjust,
            "crop_resize": self.resize,
            "blurry_path": rel,
            "sharp_store": self.store_rel,
            "frame_indices": [int(f) for f in frames],
            "landmarks": landmarks_crop.reshape(len(frames), -1).tolist(),
            "landmarks_source": None if landmarks_source is None
            else np.asarray(landmarks_source, np.float32).reshape(len(frames), -1).tolist(),
            "sharpness": None if not np.isfinite(sharpness) else float(sharpness),
            "motion": landmark_motion(landmarks_crop),
            "interpolation": self.interpolation,
            "exposure": self.exposure,
            "gradient_energy": gradient_energy(blurry),
        })
        self.count += 1
        if len(self.rows) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        if self._parquet is None:
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self._parquet = pq.ParquetWriter(self.part, SAMPLES_SCHEMA, compression="zstd")
        self._parquet.write_table(pa.Table.from_pylist(self.rows, schema=SAMPLES_SCHEMA))
        self.rows = []

    def close(self) -> Path | None:
        """Finish the frame store and the rows file; return the rows file (None: no samples)."""
        if self.store is not None:
            self.store.close()
        self._flush()
        if self._parquet is not None:
            self._parquet.close()
        return self.part if self.count else None
