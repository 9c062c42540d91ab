"""Hostile annotation files (issue 24, rows 3 and 4): `.pts` points that are absurd, leave the
frame or jump from the previous frame are not trusted. That frame falls back to dlib (as for a
malformed file), and the file is named with the reason in the log and in
data/landmarks/report.json (`pts_rejected`); the averaging stages run as on clean annotations.
(Row 5, an annotation edited after a run, is tests/test_dvc_hostile.py.)
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import annotated_sequence, pts_text, run_stages
from pipeline.dataset.landmarks import read_landmarks, untrusted_points
from pipeline.manifest import read_manifests

FAST = {"blur": {"fixed": {"windows": [5], "stride": 5, "min_sharpness": 0}}}
W, H = 360, 288  # GRID frames


def _run(tmp_path, frames, points, edits: dict):
    src = tmp_path / "src"
    annotated_sequence(src / "001", frames, points)
    for k, pts in edits.items():  # frame index -> points written to its .pts file
        (src / "001" / "annot" / f"{k + 1:06d}.pts").write_text(pts_text(pts))
    work = tmp_path / "work"
    run_stages(work, src, FAST)
    return work


@pytest.mark.parametrize("kind", ["times_1e30", "shifted_5000", "negated", "jump_in_frame"])
def test_absurd_or_jumping_points_fall_back_to_dlib_and_are_named(tmp_path, caplog, pts_frames, kind):
    frames, points = pts_frames
    k = 7
    bad = {"times_1e30": points[k] * 1e30, "shifted_5000": points[k] + 5000, "negated": -points[k],
           # inside the frame, but the face moved by more than its size since the frame before
           "jump_in_frame": points[k] + np.float32([150, 0]) * np.sign(W / 2 - points[k][:, 0].mean())}[kind]
    work = _run(tmp_path, frames, points, {k: bad})
    lm = read_landmarks(work / "data/landmarks/001.parquet")
    assert lm["source"][k] in ("detect", "track")
    assert np.abs(lm["points"][k] - points[k]).max() < 15  # dlib's points, not the file's
    assert all(lm["source"][i] == "pts" for i in range(15) if i != k)
    report = json.loads((work / "data/landmarks/report.json").read_text())
    [rejected] = report["pts_rejected"]
    assert rejected["path"].endswith("001/annot/000008.pts") and rejected["frame"] == k
    words = "jumps from the previous frame" if kind == "jump_in_frame" else "points leave the 360x288 frame"
    assert words in rejected["reason"]
    assert "000008.pts" in caplog.text and words in caplog.text
    assert json.loads((work / "metrics/landmarks.json").read_text())["pts_rejected"] == 1
    # the averaging stages ran (no OverflowError in the crop), every window centred on the face
    rows = read_manifests(work / "data/dataset", method="fixed").to_pylist()
    assert sorted(r["start_frame"] for r in rows) == [0, 5, 10]
    for r in rows:
        x0, y0, x1, y1 = r["crop_box"]
        assert 0 <= x0 and x1 <= W and y1 - y0 < H


def test_clean_annotations_are_all_trusted(tmp_path, pts_frames):
    frames, points = pts_frames
    work = _run(tmp_path, frames, points, {})
    assert json.loads((work / "data/landmarks/report.json").read_text())["pts_rejected"] == []
    assert set(read_landmarks(work / "data/landmarks/001.parquet")["source"]) == {"pts"}


def test_the_trust_rules_one_by_one(pts_frames):
    _, points = pts_frames
    p = points[0]
    assert untrusted_points(p, W, H) is None and untrusted_points(p, W, H, prev=points[1]) is None
    assert "points leave" in untrusted_points(p + np.float32([W, 0]), W, H)
    assert untrusted_points(p + np.float32([0.2 * W, 0]), W, H) is None  # a face at the border
    assert "collapse" in untrusted_points(np.full_like(p, 100.0), W, H)
    assert "jumps" in untrusted_points(p, W, H, prev=(p - p.mean(0)) * 2.5 + p.mean(0))  # size x0.4
    assert "68" in untrusted_points(p[:60], W, H)
