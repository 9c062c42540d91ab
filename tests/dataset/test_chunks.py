"""Parallel inside a video (pipeline.dataset.chunks): fixed windows rendered in chunks of a video
give byte-identical files to one sequential run, including where the gate drops windows that
cross a chunk's start, on held frames (blur.units: pictures) and with interpolation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import SMALL_OVERRIDES, VIDEOS, annotated_sequence, deep_update, dlib_points, read_frames, run_stages
from pipeline.dataset.chunks import Chunk, chunk_length, plan, split


def _files(workdir: Path, dataset: str) -> dict[str, bytes]:
    root = workdir / dataset / "fixed"
    out = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    out["metrics/blur_fixed.json"] = (workdir / "metrics" / "blur_fixed.json").read_bytes()
    return out


def _sequential_and_chunked(workdir: Path, source: Path, overrides: dict, chunk_frames: int) -> tuple[dict, dict]:
    """blur_fixed twice on one ingest + landmarks: one process and no chunks; two workers and
    chunks of `chunk_frames`."""
    runs = {}
    for name, compute in (("sequential", {"n_jobs": 1, "chunk_frames": 0}),
                          ("chunked", {"n_jobs": 2, "chunk_frames": chunk_frames})):
        stages = ("blur_fixed",) if runs else ("ingest", "landmarks", "blur_fixed")
        run_stages(workdir, source, deep_update(overrides, {"compute": compute}), stages=stages,
                   dataset=f"data/{name}")
        runs[name] = _files(workdir, f"data/{name}")
    return runs["sequential"], runs["chunked"]


def _assert_identical(seq: dict, chunked: dict) -> None:
    assert sorted(seq) == sorted(chunked)  # no chunk files left behind
    different = [name for name in seq if seq[name] != chunked[name]]
    assert not different, different[:5]


def test_chunked_videos_give_the_sequential_runs_bytes_where_the_gate_drops_windows(tmp_path, small_source):
    """Chunks of 23 frames (not a multiple of the stride) cut through windows of 5 and 9 frames;
    a crop-space gate of 21.5 drops about half the webcam windows, among them windows reaching across a
    chunk's start, so a chunk's stored regions depend on its shadow windows."""
    overrides = deep_update(SMALL_OVERRIDES, {"blur": {"fixed": {"min_sharpness": 21.5}}})
    seq, chunked = _sequential_and_chunked(tmp_path, small_source, overrides, chunk_frames=23)
    _assert_identical(seq, chunked)
    rows = pq.read_table(tmp_path / "data/sequential/fixed/samples.parquet").to_pylist()
    metrics = __import__("json").loads(seq["metrics/blur_fixed.json"])
    assert metrics["windows"]["dropped_sharpness"] > 0 and len(rows) > 0  # the gate decided both ways
    webcam = [r for r in rows if r["video_id"].startswith("webcam")]
    starts = {r["start_frame"] for r in webcam}
    # windows written on both sides of chunk starts (23, 46, ...), and some crossing one
    assert any(s < c <= s + r["n_frames"] - 1 for r in webcam for c in range(23, 120, 23) for s in [r["start_frame"]])
    assert len(starts) > 5


def test_chunks_of_held_frames_with_interpolation_give_the_sequential_runs_bytes(tmp_path):
    """A 2:2 held copy of a talking clip as an image sequence with .pts landmarks: pictures
    windows (each spanning twice its frames) and interpolation across the holds, chunks of 11."""
    frames = [f for f in read_frames(VIDEOS / "talking" / "WDA_KatieHill_000.mp4", 24)]
    frames = [np.ascontiguousarray(f[::2, ::2]) for f in frames]  # 256 x 256: quicker, same motion
    points = dlib_points(frames)
    src = tmp_path / "src"
    annotated_sequence(src / "held", [f for f in frames for _ in range(2)], [p for p in points for _ in range(2)],
                       ext=".png")
    overrides = {"blur": {"units": "pictures", "interpolate": 2,
                          "fixed": {"windows": [5, 7], "stride": 5, "min_sharpness": 0}}}
    seq, chunked = _sequential_and_chunked(tmp_path, src, overrides, chunk_frames=11)
    _assert_identical(seq, chunked)
    rows = pq.read_table(tmp_path / "data/sequential/fixed/samples.parquet").to_pylist()
    assert rows and all(r["end_frame"] - r["start_frame"] >= 2 * (r["n_frames"] - 1) for r in rows)


def test_chunks_split_only_long_videos_and_cover_them():
    assert split(100, None) is None and split(100, 100) is None
    chunks = split(1000, 300)
    assert [(c.start, c.stop) for c in chunks] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    assert all(c.count == 4 for c in chunks) and chunks[1].suffix == ".c0001"
    # auto: one worker never chunks; 300VW-like runs (many videos) are not chunked either
    assert chunk_length(10_000, 1, None) is None and chunk_length(10_000, 2, 0) is None
    many = [{"video_id": f"v{i}", "n_frames": 1900} for i in range(100)]
    assert all(c is None for _, c in plan(many, 2, None))
    few = [{"video_id": "long", "n_frames": 1008}, {"video_id": "short", "n_frames": 125}]
    tasks = plan(few, 2, None)
    long = [(c.start, c.stop) for v, c in tasks if v["video_id"] == "long"]
    assert long == [(0, 567), (567, 1008)]  # one worker's share of 1,133 frames, then the rest beside the short one
    assert [(c.start, c.stop) for _, c in plan([few[0]], 4, None)] == [(0, 252), (252, 504), (504, 756), (756, 1008)]
    assert [c for v, c in tasks if v["video_id"] == "short"] == [None]
    assert isinstance(tasks[0][1], Chunk)
