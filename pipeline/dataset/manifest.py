"""The dataset's public contract: FMR-ordered parquet manifests and `load_sample`.

Manifests live in `<dataset>/manifests/<method>-<split>.parquet` and read as one table with
`pyarrow.dataset.dataset("data/dataset/manifests")`. One row per blurry sample; paths are relative
to the dataset root. The required columns (docs/manifest.md) come first, with exactly these types;
extra columns follow. Every write is validated, and the bytes depend only on the inputs and
params (rows in the averaging stages' order: videos in catalog order, each video's samples in
the order its windows completed; fixed writer options), so reruns give identical files. The manifest stage streams: memory holds a batch of rows and one
video's samples, never the dataset.

Two points of the contract worth stating (docs/protocol.md):
- `crop_box` is the integer pixel box the sharp frames were cropped with, in source pixels
  (x1, y1 exclusive). With `crop.edge: pad` (default, the authors) it can extend outside the
  frame: the part outside is black in the crops. With `crop.square: shorter` (default, the
  authors' PIL rounding) its width and height can differ by one pixel.
- `left_eye_xy` is always the FMR key point in crop pixels. The order may be decided on other
  keys (default: landmark 36 truncated to integer SOURCE pixels, as the authors); the extra
  column `fmr_key` holds the keys actually sorted on, in FMR order, so the order can be
  reproduced from the manifest: sorting `fmr_key` by (x, y, time) gives `frame_indices`.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.dataset.crop import crop_resize
from pipeline.dataset.fmr import FMRParams, control_factors, fmr_order, round_keys
from pipeline.dataset.framestore import open_store

DATASET_ROOT = "data/dataset"
METHODS = ("fixed", "vla")
SPLITS = ("train", "test")
STOP_REASONS = ("overlap", "quality", "flow", "max_len", "end", "cut")  # cut: the next frame starts a new shot

REQUIRED = pa.schema([
    ("sample_id", pa.string()),
    ("video_id", pa.string()),
    ("track_id", pa.int32()),  # the face track within the video (0 in a single-track video); no sample mixes tracks
    ("split", pa.string()),
    ("method", pa.string()),
    ("n_frames", pa.int32()),
    ("start_frame", pa.int32()),
    ("end_frame", pa.int32()),
    ("stop_reason", pa.string()),
    ("gamma", pa.float32()),
    ("crop_box", pa.list_(pa.float32(), 4)),
    ("blurry_path", pa.string()),
    ("frame_indices", pa.list_(pa.int32())),
    ("u", pa.list_(pa.float32())),
    ("left_eye_xy", pa.list_(pa.list_(pa.float32(), 2))),
])
EXTRA = pa.schema([
    ("direction", pa.string()),  # forward | reverse (VLA's reverse pass)
    ("crop_adjust", pa.string()),  # none | shift | pad: what the crop did at the frame edge
    ("sharp_store", pa.string()),  # frame store holding the sharp frames' source pixels
    ("motion", pa.float32()),  # mean landmark path length across the window, crop pixels
    ("fmr_key", pa.list_(pa.list_(pa.float32(), 2))),  # the keys FMR sorted on (manifest.fmr), FMR order
    ("crop_resize", pa.string()),  # pil | opencv: the resampler of the crops (load_sample uses it)
    ("sharpness", pa.float32()),  # lowest crop sharpness of the window's frames (variance of Laplacian); null: not measured
    ("interpolation", pa.int32()),  # blur.interpolate: k - 1 synthesised frames between real ones (1: none)
    ("exposure", pa.float32()),  # blur.exposure: shutter duty cycle of the blur (1: always open)
    ("pictures", pa.int32()),  # distinct pictures among the frames: n_frames, unless blur.units: frames averaged held frames
])
MANIFEST_SCHEMA = pa.schema(list(REQUIRED) + list(EXTRA))
ROW_GROUP = 1 << 14


class ManifestError(ValueError):
    pass


def _list_parts(arr) -> tuple[np.ndarray, pa.Array]:
    """(offsets from 0, values) of a list array, correct for sliced arrays too."""
    offsets = arr.offsets.to_numpy()
    return offsets - offsets[0], arr.flatten()


def fmr_batch(batch: pa.RecordBatch | pa.Table, p: FMRParams) -> pa.Table:
    """Averaging-stage sample rows (temporal order) -> manifest rows (FMR order, with u).

    Works column-wise on one batch, so memory is bounded by the batch, not the dataset.
    """
    batch = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    lm_off, lm_vals = _list_parts(batch.column("landmarks").combine_chunks())
    eye_crop = lm_vals.flatten().to_numpy().reshape(-1, 68, 2)[:, p.keypoint, :].astype(np.float64)
    if p.space == "crop":
        keys_all = round_keys(eye_crop, p.rounding)
        eye_crop = keys_all  # left_eye_xy is the key itself, as before
    else:
        src_off, src_vals = _list_parts(batch.column("landmarks_source").combine_chunks())
        if not np.array_equal(src_off, lm_off):
            raise ManifestError("samples table: landmarks_source and landmarks disagree in length")
        keys_all = round_keys(src_vals.flatten().to_numpy().reshape(-1, 68, 2)[:, p.keypoint, :], p.rounding)
    fi_off, fi_vals = _list_parts(batch.column("frame_indices").combine_chunks())
    fi_vals = fi_vals.to_numpy()
    if not np.array_equal(lm_off, fi_off):
        raise ManifestError("samples table: landmarks and frame_indices disagree in length")
    frames, us, eyes, keys_out = [], [], [], []
    for a, b in zip(fi_off[:-1], fi_off[1:]):
        keys = keys_all[a:b]
        order = fmr_order(keys)
        frames.append(fi_vals[a:b][order])
        us.append(control_factors(b - a, p.u_formula))
        eyes.append(eye_crop[a:b][order])
        keys_out.append(keys[order])
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt)) if frames else (lambda xs, dt: np.zeros((0,), dt))
    off = pa.array(fi_off, pa.int32())
    columns = {name: batch.column(name) for name in MANIFEST_SCHEMA.names if name in batch.column_names
               and name != "frame_indices"}
    columns["frame_indices"] = pa.ListArray.from_arrays(off, pa.array(cat(frames, np.int32)))
    columns["u"] = pa.ListArray.from_arrays(off, pa.array(cat(us, np.float32)))
    eye_flat = pa.array(np.concatenate(eyes).astype(np.float32).ravel() if eyes else np.zeros(0, np.float32))
    columns["left_eye_xy"] = pa.ListArray.from_arrays(off, pa.FixedSizeListArray.from_arrays(eye_flat, 2))
    key_flat = pa.array(np.concatenate(keys_out).astype(np.float32).ravel() if keys_out else np.zeros(0, np.float32))
    columns["fmr_key"] = pa.ListArray.from_arrays(off, pa.FixedSizeListArray.from_arrays(key_flat, 2))
    return pa.table({f.name: columns[f.name] for f in MANIFEST_SCHEMA}).cast(MANIFEST_SCHEMA)


def iter_fmr(samples_path: str | Path, p: FMRParams, batch_size: int = 1024):
    """FMR manifest rows of an averaging stage's samples.parquet, batch by batch."""
    for b in pq.ParquetFile(samples_path).iter_batches(batch_size=batch_size):
        yield fmr_batch(b, p)


def fmr_table(samples_path: str | Path, p: FMRParams, batch_size: int = 4096) -> pa.Table:
    """All FMR manifest rows of a samples.parquet as one table (small datasets, tests)."""
    parts = list(iter_fmr(samples_path, p, batch_size))
    return pa.concat_tables(parts) if parts else MANIFEST_SCHEMA.empty_table()


class _Seen:
    """What validation must remember across batches: sample ids and each video's split."""

    def __init__(self):
        self.ids: set[str] = set()
        self.split_of: dict[str, str] = {}


def validate(table: pa.Table, root: str | Path | None = None, seen: _Seen | None = None) -> None:
    """Raise ManifestError naming the samples that break the contract.

    `seen` carries sample ids and splits over the batches of one streamed manifest."""
    seen = _Seen() if seen is None else seen
    missing = [f.name for f in REQUIRED if f.name not in table.schema.names]
    if missing:
        raise ManifestError(f"manifest lacks required columns {missing}")
    wrong = [f"{f.name}: {table.schema.field(f.name).type} (want {f.type})" for f in REQUIRED
             if table.schema.field(f.name).type != f.type]
    if wrong:
        raise ManifestError(f"manifest column types differ from the contract: {wrong}")
    problems = []
    ids = [i for i in table["sample_id"].to_pylist() if i is not None]
    if len(set(ids)) != len(ids) or not seen.ids.isdisjoint(ids):
        problems.append("sample_id values are not unique")
    seen.ids.update(ids)
    split_of = seen.split_of
    for r in (row for b in table.select(REQUIRED.names).to_batches(4096) for row in b.to_pylist()):
        sid, n = r["sample_id"], r["n_frames"]
        fi, u, eye = r["frame_indices"], r["u"], r["left_eye_xy"]
        if sid is None:
            problems.append("a row has no sample_id")
            continue
        if r["split"] not in SPLITS:
            problems.append(f"{sid}: split {r['split']!r} not in {SPLITS}")
        if split_of.setdefault(r["video_id"], r["split"]) != r["split"]:
            problems.append(f"{sid}: video {r['video_id']} appears in two splits")
        if r["method"] not in METHODS:
            problems.append(f"{sid}: method {r['method']!r} not in {METHODS}")
        if r["track_id"] is None or r["track_id"] < 0:
            problems.append(f"{sid}: track_id must be a track number >= 0")
        if n is None or n < 2 or not (len(fi) == len(u) == len(eye) == n):
            problems.append(f"{sid}: n_frames={n} but {len(fi)} frames, {len(u)} u, {len(eye)} key points")
            continue
        if r["start_frame"] != min(fi) or r["end_frame"] != max(fi):
            problems.append(f"{sid}: start/end frame do not match frame_indices")
        if len(set(fi)) != n:
            problems.append(f"{sid}: repeated frame indices")
        if any(not 0.0 <= x <= 1.0 for x in u) or any(b < a for a, b in zip(u, u[1:])):
            problems.append(f"{sid}: u must rise within [0, 1]")
        if (r["method"] == "fixed") != (r["stop_reason"] is None):
            problems.append(f"{sid}: stop_reason must be null exactly for fixed samples")
        if r["method"] == "vla" and r["stop_reason"] not in STOP_REASONS:
            problems.append(f"{sid}: stop_reason {r['stop_reason']!r} not in {STOP_REASONS}")
        if not r["gamma"] or r["gamma"] <= 0:
            problems.append(f"{sid}: gamma must be positive")
        x0, y0, x1, y1 = r["crop_box"]
        if not (x1 > x0 and y1 > y0 and abs((x1 - x0) - (y1 - y0)) <= 1 and all(v == int(v) for v in r["crop_box"])):
            problems.append(f"{sid}: crop_box {r['crop_box']} is not an integer box square to within one pixel")
        if root is not None and not (Path(root) / r["blurry_path"]).is_file():
            problems.append(f"{sid}: blurry image {r['blurry_path']} does not exist under {root}")
        if len(problems) > 20:
            break
    if problems:
        raise ManifestError("invalid manifest:\n  " + "\n  ".join(problems[:20]))


class ManifestWriter:
    """Validates manifest rows and writes one parquet file per (method, split), batch by batch.

    Memory holds one batch and at most ROW_GROUP buffered rows per file, never the dataset (only
    the sample ids, for the uniqueness check). Files are written under temporary names and replace
    the old manifests only when `close` succeeds, so a failed run leaves the previous ones intact.
    """

    def __init__(self, out_dir: str | Path, root: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.glob("*.parquet.tmp"):  # left by a run that failed
            stale.unlink()
        self.root = root
        self._seen = _Seen()
        self._buffers: dict[tuple[str, str], list[pa.Table]] = {}
        self._writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        table = table.cast(MANIFEST_SCHEMA)
        validate(table, self.root, self._seen)
        for method in METHODS:
            for split in SPLITS:
                part = table.filter((pc.field("method") == method) & (pc.field("split") == split))
                if part.num_rows:
                    self._buffer((method, split), part)

    def _buffer(self, key: tuple[str, str], part: pa.Table) -> None:
        buf = self._buffers.setdefault(key, [])
        buf.append(part)
        self.rows += part.num_rows
        if sum(t.num_rows for t in buf) >= ROW_GROUP:
            self._flush(key)

    def _flush(self, key: tuple[str, str], last: bool = False) -> None:
        """Write whole row groups of ROW_GROUP rows (and the rest if `last`), so the files do not
        depend on how the rows were batched."""
        table = pa.concat_tables(self._buffers.pop(key, []))
        n = table.num_rows if last else table.num_rows - table.num_rows % ROW_GROUP
        if n < table.num_rows:
            self._buffers[key] = [table.slice(n)]
        if n == 0:
            return
        if key not in self._writers:
            self._writers[key] = pq.ParquetWriter(self._tmp(key), MANIFEST_SCHEMA, compression="zstd",
                                                  write_statistics=True, store_schema=True)
        self._writers[key].write_table(table.slice(0, n).combine_chunks(), row_group_size=ROW_GROUP)

    def _tmp(self, key: tuple[str, str]) -> Path:
        return self.out_dir / f"{key[0]}-{key[1]}.parquet.tmp"

    def close(self) -> list[Path]:
        """Write what is left and replace the previous manifests; return the paths written."""
        for key in list(self._buffers):
            self._flush(key, last=True)
        for w in self._writers.values():
            w.close()
        renames = {self._tmp(k): self._tmp(k).with_suffix("") for k in sorted(self._writers)}
        if not renames:  # an empty dataset still reads as a (zero-row) table with the contract's schema
            empty = self.out_dir / "empty.parquet.tmp"
            pq.write_table(MANIFEST_SCHEMA.empty_table(), empty, compression="zstd", store_schema=True)
            renames[empty] = empty.with_suffix("")
        for old in self.out_dir.glob("*.parquet"):
            old.unlink()
        for tmp, final in renames.items():
            os.replace(tmp, final)
        return list(renames.values())


def write_manifests(table: pa.Table, out_dir: str | Path, root: str | Path | None = None) -> list[Path]:
    """Validate and write one parquet file per (method, split) from one table; return the paths."""
    writer = ManifestWriter(out_dir, root)
    writer.write(table)
    return writer.close()


def read_manifests(root: str | Path = DATASET_ROOT, **filters) -> pa.Table:
    """All manifests as one table; `filters` are column == value (e.g. split="train")."""
    table = ds.dataset(str(Path(root) / "manifests"), format="parquet", schema=MANIFEST_SCHEMA).to_table()
    for k, v in filters.items():
        table = table.filter(pc.field(k) == v)
    return table


def sample_rows(root: str | Path, methods, split: str = "train") -> list[dict]:
    """Manifest rows of `split` made by `methods`, sorted by sample_id (stable across reruns);
    ValueError naming the dataset when there are none."""
    table = read_manifests(root, split=split)
    table = table.filter(pc.is_in(table["method"], value_set=pa.array(list(methods))))
    if table.num_rows == 0:
        raise ValueError(f"{root}: no {split} samples made by {list(methods)} in the manifests")
    return sorted(table.to_pylist(), key=lambda r: r["sample_id"])


CENTRE_U = 0.5  # CFMD-GAN's centre frame: the FMR frame whose u is nearest 0.5 (its Table 2)


def centre_position(row: dict) -> int:
    """FMR position whose u is nearest 0.5 (the first of two equally near, to 1e-6)."""
    return int(np.round(np.abs(np.asarray(row["u"], np.float64) - CENTRE_U), 6).argmin())


def middle_position(row: dict) -> int:
    """FMR position of the temporal middle frame, the ((N - 1) // 2)-th of the frame_indices in
    time order: start_frame + (N - 1) // 2 for a fixed window of consecutive frames; for a window
    of pictures (`blur.units: pictures`) or a VLA window, whose frames may skip held frames or
    gaps, the middle picture."""
    n, frames = row["n_frames"], row["frame_indices"]
    return frames.index(sorted(frames)[(n - 1) // 2])


def _read_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """A dataset image as RGB uint8, checked as the data stages write it: 8-bit, three channels,
    square, and `size` x `size` when given. A file of another bit depth, channel count or size
    (copied in by hand, another dataset's) is refused by name, never squashed to fit."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SampleReadError(f"{path}: blurry image missing or unreadable")
    channels = 1 if img.ndim == 2 else img.shape[2]
    problem = (f"{img.dtype.itemsize * 8}-bit samples" if img.dtype != np.uint8 else
               f"{channels} channel(s)" if channels != 3 else
               f"{img.shape[1]} x {img.shape[0]} pixels" if img.shape[0] != img.shape[1] or
               (size is not None and img.shape[0] != size) else None)
    if problem:
        raise SampleReadError(f"{path}: {problem}; the dataset's images are 8-bit RGB, "
                              f"{f'{size} x {size}' if size else 'square'} (rebuild the dataset, or remove the file)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class SampleReadError(OSError):
    """A sample's files are missing or damaged; the message names the sample and the file."""


def load_sharp(row: dict, positions, size: int, root: str | Path = DATASET_ROOT) -> np.ndarray:
    """Only the sharp frames at `positions` (FMR order) of a row: (len, size, size, 3) uint8 RGB.
    SampleReadError naming the row and the store when the store is missing, cut short or corrupt."""
    path = Path(root) / row["sharp_store"]
    box = np.rint(np.asarray(row["crop_box"], dtype=np.float64)).astype(np.int64)
    resize = row.get("crop_resize") or "opencv"  # manifests written before the column: OpenCV
    out = []
    try:
        store = open_store(path)
        for k in positions:
            region, origin, frame_size = store.region(row["frame_indices"][k])
            out.append(cv2.cvtColor(crop_resize(region, box, size, origin, frame_size, resize), cv2.COLOR_BGR2RGB))
    except (OSError, KeyError, ValueError, cv2.error) as e:
        raise SampleReadError(f"sample {row['sample_id']}: cannot read its sharp frames from {path}: "
                              f"{str(e).strip() or type(e).__name__}") from e
    return np.stack(out)


def downscale(image: np.ndarray, resolution: int | None) -> np.ndarray:
    """A square uint8 image area-downscaled to resolution x resolution (unchanged at its own size
    or when None). Upscaling is refused: the dataset holds no more detail than its crop size.
    Averaging commutes with area downscaling, so a blurry image and its sharp frames downscaled
    alike are the same blur at the smaller size, to within rounding (issue 22)."""
    if resolution is None or resolution == image.shape[0]:
        return image
    if resolution > image.shape[0]:
        raise ValueError(f"resolution {resolution} is above the dataset's {image.shape[0]}px images (crop.size): "
                         "train and evaluate at most at the size the dataset was built at")
    return cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA)


def load_at(row: dict, positions, root: str | Path = DATASET_ROOT,
            resolution: int | None = None, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A row's blurry image and its sharp frames at FMR `positions`, area-downscaled to
    `resolution` (None: the dataset's size): what training and evaluation read. `size`: the
    dataset's image size, checked (SampleReadError naming the file when it differs)."""
    blurry = _read_rgb(Path(root) / row["blurry_path"], size)
    sharp = load_sharp(row, positions, blurry.shape[0], root)
    return downscale(blurry, resolution), np.stack([downscale(f, resolution) for f in sharp])


def load_sample(row: dict, root: str | Path = DATASET_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """(blurry HxWx3 uint8 RGB, sharp NxHxWx3 uint8 RGB in FMR order) of one manifest row."""
    blurry = _read_rgb(Path(root) / row["blurry_path"])
    return blurry, load_sharp(row, range(row["n_frames"]), blurry.shape[0], root)
