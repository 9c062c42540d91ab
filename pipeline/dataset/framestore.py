"""Per-video store of the source pixels behind a dataset's sharp frames.

Overlapping windows and several window lengths reuse the same source frames (a frame sits in
about nine fixed windows with the default settings), so instead of writing N sharp crops per
sample we store each used frame once: the part of the frame covered by every crop box that uses
it, PNG-encoded, appended to one `.bin` file per video, with a small parquet index (frame ->
byte range, region origin, frame size). Sharp crops are cut from it on read by the same
`crop_resize` that made the blurry image, so they are bit-identical to crops of the decoded
video. One video = two files, whatever its length.
"""
from __future__ import annotations

import functools
import os
import shutil
from array import array
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.pngio import PngEncoder

INDEX_SCHEMA = pa.schema([
    ("frame", pa.int32()),
    ("offset", pa.int64()),
    ("length", pa.int64()),
    ("x0", pa.int32()),
    ("y0", pa.int32()),
    ("frame_w", pa.int32()),
    ("frame_h", pa.int32()),
])


def index_path(store_path: str | Path) -> Path:
    return Path(str(store_path) + ".index.parquet")


class FrameStoreWriter:
    def __init__(self, path: str | Path, png: PngEncoder = PngEncoder()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self._png = png
        # 8 bytes per value (array, not lists of Python ints): the index of an hour of video is a few MB
        self._rows = {k: array("q") for k in INDEX_SCHEMA.names}
        self._offset = 0
        self._last = -1

    def add(self, frame: int, region: np.ndarray, origin: tuple[int, int], frame_size: tuple[int, int]) -> None:
        if frame <= self._last:
            raise ValueError(f"{self.path}: frame {frame} stored after frame {self._last} (frames come in order, once)")
        data = self._png.encode(region)
        self._f.write(data)
        for k, v in zip(INDEX_SCHEMA.names, (frame, self._offset, len(data), origin[0], origin[1], *frame_size)):
            self._rows[k].append(int(v))
        self._offset += len(data)
        self._last = frame

    def close(self) -> None:
        self._f.close()
        _write_index(self.path, {k: np.frombuffer(v, np.int64) for k, v in self._rows.items()})


def _read_index(store_path: Path) -> dict[str, np.ndarray]:
    """The store's index as int64 columns (INDEX_SCHEMA's names)."""
    t = pq.read_table(index_path(store_path))
    return {k: t[k].to_numpy().astype(np.int64) for k in INDEX_SCHEMA.names}


def _write_index(store_path: Path, cols: dict[str, np.ndarray]) -> None:
    """The store's index from int64 columns (INDEX_SCHEMA's names)."""
    table = {k: pa.array(np.asarray(cols[k], np.int64)).cast(INDEX_SCHEMA.field(k).type) for k in INDEX_SCHEMA.names}
    pq.write_table(pa.Table.from_pydict(table, schema=INDEX_SCHEMA), index_path(store_path))


def concatenate_stores(parts: list[Path], out: Path) -> None:
    """One store from stores of consecutive frame ranges, in order (each part's frames after the
    previous part's): the bytes appended, the offsets shifted. The parts are removed. The result
    is byte-identical to the store one writer would have written with all their frames."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in INDEX_SCHEMA.names}
    offset, last = 0, -1
    with open(out, "wb") as f:
        for part in parts:
            part_cols = _read_index(part)
            size = part.stat().st_size
            if len(part_cols["frame"]) and (part_cols["frame"][0] <= last or
                                            int(part_cols["length"].sum()) != size):
                raise ValueError(f"{part}: not the next frames of {out} ({part_cols['frame'][0]} after {last}), "
                                 f"or its index does not cover its {size} bytes")
            for k, v in part_cols.items():
                cols[k].append(v + offset if k == "offset" else v)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
            offset += size
            last = int(part_cols["frame"][-1]) if len(part_cols["frame"]) else last
    _write_index(out, {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in cols.items()})
    for part in parts:
        index_path(part).unlink()
        part.unlink()


def write_subset(src: str | Path, frames, dst: str | Path, encode=None) -> int:
    """A store holding only `frames` of the store at `src` (each must be in it), written to `dst`
    with its index, for carrying part of a dataset (benchmarks/gpu_pack.py packs a window subset of
    long clips). Without `encode` the encoded bytes are copied; with it (image -> bytes in any
    format cv2.imdecode reads, e.g. lossless WebP: half fpng's size) each region is re-encoded and
    decoded back, and a region that does not read back bit-identical is refused. Returns the bytes
    written (store + index)."""
    src, dst = Path(src), Path(dst)
    cols = _read_index(src)
    where = {int(f): i for i, f in enumerate(cols["frame"])}
    missing = sorted(int(f) for f in frames if int(f) not in where)
    if missing:
        raise KeyError(f"{src}: frames {missing[:5]} are not in this store")
    rows = np.array(sorted(where[int(f)] for f in set(frames)), np.int64)
    out = {k: v[rows] for k, v in cols.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    lengths = []
    with open(src, "rb") as f, open(dst, "wb") as g:
        for frame, offset, length in zip(out["frame"], out["offset"], out["length"]):
            f.seek(int(offset))
            data = f.read(int(length))
            if len(data) != int(length):
                raise IOError(f"{src}: frame {frame} cut short at offset {int(offset)} (store truncated)")
            if encode is not None:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                data = bytes(encode(image))
                if not np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), image):
                    raise ValueError(f"{src}: frame {frame} does not read back identical after re-encoding")
            g.write(data)
            lengths.append(len(data))
    out["length"] = np.asarray(lengths, np.int64)
    out["offset"] = np.cumsum(out["length"]) - out["length"]
    _write_index(dst, out)
    return dst.stat().st_size + index_path(dst).stat().st_size


class FrameStore:
    """Random access to a store's regions: `region(frame) -> (BGR image, origin, frame_size)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cols = _read_index(self.path)
        self._index = {int(f): i for i, f in enumerate(self._cols["frame"])}

    def __contains__(self, frame: int) -> bool:
        return int(frame) in self._index

    def nbytes(self, frame: int) -> int:
        """The encoded size of a frame's region in the store."""
        return int(self._cols["length"][self._index[int(frame)]])

    def region(self, frame: int):
        try:
            i = self._index[int(frame)]
        except KeyError:
            raise KeyError(f"{self.path}: frame {frame} is not in this store") from None
        c = self._cols
        with open(self.path, "rb") as f:
            f.seek(int(c["offset"][i]))
            data = f.read(int(c["length"][i]))
        if len(data) != int(c["length"][i]):
            raise IOError(f"{self.path}: frame {frame} is cut short ({len(data)} of {int(c['length'][i])} bytes at "
                          f"offset {int(c['offset'][i])}): the store is truncated; rebuild it (dvc repro -f <blur stage>)")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise IOError(f"{self.path}: frame {frame} does not decode (store corrupt?)")
        return img, (int(c["x0"][i]), int(c["y0"][i])), (int(c["frame_w"][i]), int(c["frame_h"][i]))


@functools.lru_cache(maxsize=64)
def _open_cached(path: str, mtime: float) -> FrameStore:
    return FrameStore(path)


def open_store(path: str | Path) -> FrameStore:
    """A cached reader (re-opened when the file changes)."""
    path = str(path)
    return _open_cached(path, os.path.getmtime(path))
