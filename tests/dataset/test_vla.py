"""Variable-length averaging: each stop condition triggered on its own, and the pixels it writes.

Every clip is synthetic but made of real pixels: one GRID frame (a real face, so dlib finds real
landmarks) translated horizontally by a chosen motion (cv2.warpAffine, border replicate) and
written as MJPG. The motion decides which condition must end a window:

- oscillation: right 4 px/frame, then back left        -> flow (reversal)
- a sudden jump after a still stretch                  -> flow (|v| > max_step)
- a steady 3 px/frame drift                            -> overlap (facial parts drift apart)
- a steady 1 px/frame drift                            -> quality (the mean blurs away from the middle)
- a still clip with tiny noise                         -> max_len / end; min_len, reverse, stride

Each test switches the other conditions off (or loosens them) so the one under test acts alone,
checks the recorded `stop_reason` and window bounds against the definition in pipeline/dataset/vla.py,
and checks the written blurry image is the rounded mean of exactly the recorded frames. One test
runs the real stages (`run_stages`) and checks the manifests through `load_sample`.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import GRID, read_frames, repo_params, run_stages, write_clip
from pipeline.dataset.crop import crop_resize, face_box, widened_boxes
from pipeline.dataset.crop import CropParams
from pipeline.dataset.landmarks import LandmarkParams, extract_video, read_landmarks
from pipeline.dataset.manifest import load_sample, read_manifests
from pipeline.dataset.video import VideoSource
from pipeline.dataset.render import render
from pipeline.dataset.vla import VLAParams, build_video, plan_windows, ssim_grey

SIZE = CropParams().size  # 256: output crops
# A condition under test acts alone: the others are switched off, no sharpness gate, and windows
# may grow past every clip's length unless a test sets max_len.
FLOW_ONLY = dict(overlap=False, quality=False, max_len=40, flow_max_step=100.0)
OVERLAP_ONLY = dict(flow=False, quality=False, max_len=40)
QUALITY_ONLY = dict(flow=False, overlap=False, max_len=40)
PARTS = [range(0, 17), range(17, 22), range(22, 27), range(27, 36), range(36, 42), range(42, 48), range(48, 68)]


# ------------------------------------------------------------------ clips


@dataclass
class Clip:
    name: str
    path: Path
    src: VideoSource
    video: dict
    lm: dict
    frames: list  # decoded BGR frames, exactly what the pipeline reads


def _shift(img: np.ndarray, dx: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def base_frame() -> np.ndarray:
    return read_frames(GRID / "bbaf2n.mpg", 1)[0]  # 360x288, a frontal face


@pytest.fixture(scope="module")
def make_clip(tmp_path_factory, base_frame):
    """make_clip(name, offsets, blur_at=()) -> Clip: base frame shifted by offsets[i] px in frame i,
    a little noise per frame, frames in `blur_at` Gaussian-blurred; landmarks by the real extractor."""
    root = tmp_path_factory.mktemp("vla_clips")
    cache: dict[str, Clip] = {}

    def make(name: str, offsets, blur_at=()) -> Clip:
        if name in cache:
            return cache[name]
        rng = np.random.default_rng(len(cache))
        frames = []
        for i, dx in enumerate(offsets):
            f = _shift(base_frame, dx).astype(np.int16) + rng.integers(-2, 3, base_frame.shape, dtype=np.int16)
            f = np.clip(f, 0, 255).astype(np.uint8)
            if i in blur_at:
                f = cv2.GaussianBlur(f, (0, 0), 3.0)
            frames.append(f)
        path = write_clip(root / f"{name}.avi", frames)
        src = VideoSource(name, str(path), "video")
        decoded = read_frames(path)
        assert len(decoded) == len(offsets)
        table = extract_video(src, LandmarkParams(), len(offsets))
        pq.write_table(table, root / f"{name}.parquet")
        lm = read_landmarks(root / f"{name}.parquet")
        assert lm["has_face"].all(), f"{name}: dlib lost the face"
        h, w = decoded[0].shape[:2]
        clip = cache[name] = Clip(name, path, src, {"video_id": name, "width": w, "height": h, "split": "train"},
                                  lm, decoded)
        return clip

    return make


def oscillating(n=31):  # right 4 px/frame up to frame 8, then left 4 px/frame
    return [4 * min(i, 8) - 4 * max(i - 8, 0) for i in range(n)]


@pytest.fixture(scope="module")
def osc_clip(make_clip):
    return make_clip("osc", oscillating())


@pytest.fixture(scope="module")
def static_clip(make_clip):
    return make_clip("static", [0] * 30)


def vla(**kw) -> VLAParams:
    # units: frames: the clips below are one frame shifted per frame plus fresh noise, so their
    # static stretches are held pictures; these tests are about the stop conditions on frames
    return VLAParams(**{"min_sharpness": 0.0, "units": "frames", **kw})


def plan(clip: Clip, **kw):
    return plan_windows(clip.src, clip.video, clip.lm, vla(**kw), CropParams())


def spans(windows, direction="forward"):
    return [(min(w.frames), max(w.frames), w.stop_reason) for w in windows if w.direction == direction]


def mean_len(windows) -> float:
    return float(np.mean([len(w.frames) for w in windows]))


def assert_blurry_is_mean(clip: Clip, p: VLAParams, root: Path) -> list[dict]:
    """Render with build_video; every blurry PNG must be the truncated mean (blur.rounding:
    truncate) of its recorded frames' crops, and the rows must be exactly the planned windows."""
    windows, _ = plan_windows(clip.src, clip.video, clip.lm, p, CropParams())
    part, _ = build_video(clip.src, clip.video, clip.lm, root, p, CropParams())
    table = pq.read_table(part)
    rows = table.to_pylist()
    assert sorted((tuple(r["frame_indices"]), r["stop_reason"], r["direction"]) for r in rows) == \
        sorted((tuple(w.frames), w.stop_reason, w.direction) for w in windows)
    for r in rows:
        box = np.rint(np.asarray(r["crop_box"])).astype(np.int64)
        crops = np.stack([crop_resize(clip.frames[i], box, SIZE, resize="pil")
                          for i in r["frame_indices"]]).astype(np.float64)
        expected = np.floor(crops.mean(0))
        blurry = cv2.imread(str(root / r["blurry_path"]), cv2.IMREAD_COLOR).astype(np.float64)
        np.testing.assert_array_equal(blurry, expected, err_msg=r["sample_id"])
        assert r["n_frames"] == len(r["frame_indices"]) and r["gamma"] == 1.0
    return rows


# ------------------------------------------------------------------ flow


def test_flow_oscillation_stops_at_the_reversal(osc_clip, tmp_path):
    n = len(osc_clip.frames)
    windows, stats = plan(osc_clip, **FLOW_ONLY)
    # Frames 0..8 move right; frame 9 moves back left: cos(v, m) ~ -1 < -0.5 refuses it.
    assert spans(windows) == [(0, 8, "flow"), (9, n - 1, "end")]
    assert stats["stop_flow"] == 1 and stats["stop_end"] == 1 and stats["dropped_short"] == 0

    # The same window without the flow check (or with oscillation made impossible) runs to the end.
    for off in (dict(flow=False), dict(flow_reversal_cos=-1.0), dict(flow_min_step=50.0)):
        longer, st = plan(osc_clip, **{**FLOW_ONLY, **off})
        assert spans(longer) == [(0, n - 1, "end")], off
        assert st["stop_flow"] == 0
    assert len(longer[0].frames) > len(windows[0].frames)

    rows = assert_blurry_is_mean(osc_clip, vla(**FLOW_ONLY), tmp_path)
    first = next(r for r in rows if r["start_frame"] == 0)
    assert first["stop_reason"] == "flow" and first["frame_indices"] == list(range(9))
    # a real average of moving frames, not a copy of one of them
    box = np.asarray(first["crop_box"]).astype(np.int64)
    blurry = cv2.imread(str(tmp_path / first["blurry_path"])).astype(np.float64)
    assert np.abs(blurry - crop_resize(osc_clip.frames[4], box, SIZE)).mean() > 2


def test_flow_magnitude_stops_at_a_jump(make_clip, tmp_path):
    # Still for 10 frames, then a 12 px jump (~14 crop px: the face box is ~222 px -> 256 px).
    clip = make_clip("jump12", [0] * 10 + [12] * 20)
    windows, _ = plan(clip, **{**FLOW_ONLY, "flow_max_step": 8.0})
    assert spans(windows) == [(0, 9, "flow"), (10, 29, "end")]
    # Motion so far is ~0 (< min_step), so this cannot be oscillation: it is the magnitude.
    for off in (dict(flow=False), dict(flow_max_step=20.0)):
        assert spans(plan(clip, **{**FLOW_ONLY, **off})[0]) == [(0, 29, "end")], off
    assert_blurry_is_mean(clip, vla(**{**FLOW_ONLY, "flow_max_step": 8.0}), tmp_path)


def test_flow_stops_at_a_jump_beyond_the_flow_range(make_clip):
    clip = make_clip("jump40", [0] * 10 + [40] * 20)
    moved = np.nanmean(clip.lm["points"][10, :, 0]) - np.nanmean(clip.lm["points"][9, :, 0])
    assert 35 < moved < 45  # the landmarks do see the jump
    windows, _ = plan(clip, **{**FLOW_ONLY, "flow_max_step": 8.0})
    assert spans(windows)[0] == (0, 9, "flow")


# ------------------------------------------------------------------ overlap


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    (ax0, ay0), (ax1, ay1) = a.min(0), a.max(0)
    (bx0, by0), (bx1, by1) = b.min(0), b.max(0)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union


def _parts_kept(pts: np.ndarray, s: int, t: int, min_iou: float) -> int:
    return sum(_iou(pts[s][list(r)], pts[t][list(r)]) >= min_iou for r in PARTS)


@pytest.fixture(scope="module")
def drift3(make_clip):
    return make_clip("drift3", [-45 + 3 * i for i in range(31)])


def test_overlap_stops_when_facial_parts_drift_apart(drift3, tmp_path):
    pts, n = drift3.lm["points"], len(drift3.frames)
    windows, stats = plan(drift3, **OVERLAP_ONLY)
    reasons = [r for _, _, r in spans(windows)]
    assert reasons.count("overlap") >= 3 and set(reasons) <= {"overlap", "end"}
    assert stats["stop_overlap"] == reasons.count("overlap")
    for s, e, reason in spans(windows):
        assert e - s + 1 >= 3
        # the recorded last frame still shares >= 4 parts with the first (or is in the seed) ...
        assert e - s + 1 <= 3 or _parts_kept(pts, s, e, 0.3) >= 4
        if reason == "overlap":  # ... and the refused next frame does not
            assert _parts_kept(pts, s, e + 1, 0.3) < 4, (s, e)
    # switched off, the same drift gives one window to the end
    assert spans(plan(drift3, **{**OVERLAP_ONLY, "overlap": False})[0]) == [(0, n - 1, "end")]
    assert_blurry_is_mean(drift3, vla(**OVERLAP_ONLY), tmp_path)


def test_overlap_stricter_thresholds_shorten_windows(drift3):
    by_iou = [mean_len(plan(drift3, **OVERLAP_ONLY, overlap_min_iou=t)[0]) for t in (0.1, 0.2, 0.3, 0.5, 0.7)]
    assert all(b <= a for a, b in zip(by_iou, by_iou[1:])), by_iou
    assert by_iou[0] > by_iou[-1] + 3, by_iou
    by_parts = [mean_len(plan(drift3, **OVERLAP_ONLY, overlap_min_parts=k)[0]) for k in (1, 4, 7)]
    assert all(b <= a for a, b in zip(by_parts, by_parts[1:])), by_parts
    assert by_parts[0] > by_parts[-1], by_parts


# ------------------------------------------------------------------ quality


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    import torch
    from kornia.metrics import ssim

    ta, tb = (torch.from_numpy(x.astype(np.float32) / 255.0)[None, None] for x in (a, b))
    return float(ssim(ta, tb, 11).mean())


@pytest.fixture(scope="module")
def drift1(make_clip):
    return make_clip("drift1", [-15 + i for i in range(31)])


def test_quality_stops_when_the_mean_drifts_from_the_middle(drift1, tmp_path):
    n, min_ssim = len(drift1.frames), 0.93
    windows, stats = plan(drift1, **QUALITY_ONLY, quality_min_ssim=min_ssim)
    reasons = [r for _, _, r in spans(windows)]
    assert reasons.count("quality") >= 3 and set(reasons) <= {"quality", "end"}
    assert stats["stop_quality"] == reasons.count("quality")

    # Recompute the definition: grey crops (analysis_size) of the first frame's box; SSIM of the
    # running mean and the middle frame; >= min_ssim for the kept window, < for one frame more.
    w_, h_ = drift1.video["width"], drift1.video["height"]
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in drift1.frames]

    def score(s: int, e: int) -> float:
        box = face_box(drift1.lm["points"][s:s + 1], w_, h_, CropParams())[0]  # the first frame's own box
        crops = [crop_resize(grey[i], box, 128).astype(np.float64) for i in range(s, e + 1)]
        return _ssim(np.mean(crops, 0), crops[(len(crops) - 1) // 2])

    for s, e, reason in spans(windows):
        if e - s + 1 > 3:
            assert score(s, e) >= min_ssim, (s, e)
        if reason == "quality":
            assert score(s, e + 1) < min_ssim, (s, e)
    assert spans(plan(drift1, **{**QUALITY_ONLY, "quality": False})[0]) == [(0, n - 1, "end")]
    assert_blurry_is_mean(drift1, vla(**QUALITY_ONLY, quality_min_ssim=min_ssim), tmp_path)


def test_quality_raising_min_ssim_shortens_windows(drift1):
    lens = [mean_len(plan(drift1, **QUALITY_ONLY, quality_min_ssim=t)[0]) for t in (0.8, 0.9, 0.93, 0.96, 0.98)]
    assert all(b <= a for a, b in zip(lens, lens[1:])), lens
    assert lens[0] > lens[-1] + 3, lens


def test_ssim_grey_agrees_with_kornia(drift1):
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in drift1.frames]
    box = np.rint(widened_boxes(drift1.lm["points"][:1], CropParams().widen)[0]).astype(np.int64)
    crops = [crop_resize(g, box, 128) for g in grey]
    mean = np.mean(np.stack(crops[:9]).astype(np.float64), 0)
    pairs = [(crops[0], crops[0]), (crops[0], crops[3]), (crops[0], crops[20]), (mean, crops[4]),
             (np.zeros((64, 64)), np.full((64, 64), 255.0))]
    for a, b in pairs:
        assert ssim_grey(a, b) == pytest.approx(_ssim(a, b), abs=1e-5)
    assert ssim_grey(crops[0], crops[0]) == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------ max_len, end, min_len


def test_still_clip_stops_at_max_len_and_at_the_end(static_clip, tmp_path):
    # All three conditions on, with their default thresholds: a still face passes them all.
    windows, stats = plan(static_clip, max_len=8)
    assert spans(windows) == [(0, 7, "max_len"), (8, 15, "max_len"), (16, 23, "max_len"), (24, 29, "end")]
    assert [len(w.frames) for w in windows if w.stop_reason == "max_len"] == [8, 8, 8]
    assert stats["stop_max_len"] == 3 and stats["stop_end"] == 1 and stats["dropped_short"] == 0
    for k in ("stop_overlap", "stop_quality", "stop_flow"):
        assert stats[k] == 0
    assert_blurry_is_mean(static_clip, vla(max_len=8), tmp_path)

    # max_len 7 leaves 2 frames at the end: shorter than min_len 3, dropped and counted
    windows, stats = plan(static_clip, max_len=7)
    assert spans(windows) == [(0, 6, "max_len"), (7, 13, "max_len"), (14, 20, "max_len"), (21, 27, "max_len")]
    assert stats["dropped_short"] == 1 and stats["windows"] == 4


@pytest.mark.parametrize("space", ["crop", "source"])
def test_unusable_frames_and_gaps_end_windows_and_min_len_drops_short_ones(make_clip, space):
    clip = make_clip("blur12", [0] * 30, blur_at=(12,))
    if space == "source":  # the landmarks stage's value: tight landmark box, source pixels
        sharp = clip.lm["sharpness"]
    else:  # recomputed: each frame's own box, PIL crop resized to 256, variance of the Laplacian
        w_, h_ = clip.video["width"], clip.video["height"]
        sharp = np.array([cv2.Laplacian(cv2.cvtColor(crop_resize(
            f, face_box(clip.lm["points"][i:i + 1], w_, h_, CropParams())[0], SIZE, resize="pil"),
            cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for i, f in enumerate(clip.frames)])
    gate = 0.5 * (sharp[12] + np.delete(sharp, 12).min())
    assert sharp[12] < gate < np.delete(sharp, 12).min()  # only frame 12 fails the gate

    windows, stats = plan(clip, max_len=8, min_sharpness=gate, sharpness_space=space)
    # frame 12 ends the window (end), is skipped, the next starts at 13; frame 29 alone is dropped
    assert spans(windows) == [(0, 7, "max_len"), (8, 11, "end"), (13, 20, "max_len"), (21, 28, "max_len")]
    assert stats["dropped_short"] == 1
    assert all(12 not in w.frames for w in windows)

    windows, stats = plan(clip, max_len=8, min_len=5, min_sharpness=gate, sharpness_space=space)
    assert spans(windows) == [(0, 7, "max_len"), (13, 20, "max_len"), (21, 28, "max_len")]
    assert stats["dropped_short"] == 2 and min(len(w.frames) for w in windows) >= 5

    # without the gate frame 12 is usable again
    assert spans(plan(clip, max_len=8)[0])[:2] == [(0, 7, "max_len"), (8, 15, "max_len")]

    # a gap in the frame numbers (an image sequence missing a file) between 14 and 15
    lm = dict(clip.lm, frame_number=clip.lm["frame_number"] + (np.arange(30) >= 15))
    windows, _ = plan_windows(clip.src, clip.video, lm, vla(max_len=8), CropParams())
    assert spans(windows) == [(0, 7, "max_len"), (8, 14, "end"), (15, 22, "max_len"), (23, 29, "end")]


# ------------------------------------------------------------------ reverse pass, stride


def test_reverse_pass_adds_windows_none_equal_to_forward(static_clip, osc_clip, tmp_path):
    windows, stats = plan(static_clip, max_len=8, reverse=True)
    forward = {w.frames for w in windows if w.direction == "forward"}
    reverse = [w for w in windows if w.direction == "reverse"]
    assert spans(windows) == [(0, 7, "max_len"), (8, 15, "max_len"), (16, 23, "max_len"), (24, 29, "end")]
    assert sorted(spans(windows, "reverse")) == [(0, 5, "end"), (6, 13, "max_len"), (14, 21, "max_len"),
                                                 (22, 29, "max_len")]
    assert not forward & {w.frames for w in reverse}
    assert all(w.sample_id.split("-vla-")[1].startswith("r") for w in reverse)
    assert stats["windows"] == 8 and stats["skipped_duplicate"] == 0

    # max_len 10 tiles 30 frames exactly: every reverse window equals a forward one -> skipped
    windows, stats = plan(static_clip, max_len=10, reverse=True)
    assert spans(windows) == [(0, 9, "max_len"), (10, 19, "max_len"), (20, 29, "max_len")]
    assert spans(windows, "reverse") == [] and stats["skipped_duplicate"] == 3

    # backwards through the oscillation, the reversal is at frame 8 again (now moving 8 -> 7)
    windows, _ = plan(osc_clip, **FLOW_ONLY, reverse=True)
    assert sorted(spans(windows, "reverse")) == [(0, 7, "end"), (8, 30, "flow")]
    assert not {w.frames for w in windows if w.direction == "forward"} & \
        {w.frames for w in windows if w.direction == "reverse"}
    rows = assert_blurry_is_mean(osc_clip, vla(**FLOW_ONLY, reverse=True), tmp_path)
    assert {r["direction"] for r in rows} == {"forward", "reverse"}


def test_stride_start_gives_overlapping_windows(static_clip):
    windows, _ = plan(static_clip, max_len=6, start="stride", stride=3)
    assert [s for s, _, _ in spans(windows)] == list(range(0, 30, 3))
    assert spans(windows)[-2:] == [(24, 29, "max_len"), (27, 29, "end")]
    assert all(len(w.frames) == 6 for w in windows[:-1])
    assert all(set(a.frames) & set(b.frames) for a, b in zip(windows, windows[1:]))  # overlapping
    after_end, _ = plan(static_clip, max_len=6)
    assert [s for s, _, _ in spans(after_end)] == [0, 6, 12, 18, 24]


@pytest.mark.parametrize("kw", [dict(), dict(start="stride", stride=3, max_len=6)])
def test_rendering_while_planning_equals_planning_then_rendering(osc_clip, tmp_path, kw):
    """build_video renders each window from the frames just decoded to decide it (one decode);
    the result must be byte-identical to planning every window first and rendering them after."""
    p = vla(**{**FLOW_ONLY, **kw})
    one = tmp_path / "one_pass"
    part, _ = build_video(osc_clip.src, osc_clip.video, osc_clip.lm, one, p, CropParams())
    windows, _ = plan_windows(osc_clip.src, osc_clip.video, osc_clip.lm, p, CropParams())
    two = tmp_path / "two_pass"
    part2 = render(osc_clip.src, osc_clip.video, osc_clip.lm, two, "vla", windows, p.gamma, CropParams(),
                   rounding=p.rounding)
    assert pq.read_table(part).equals(pq.read_table(part2))
    # the rendered files (build_video also writes the video's gate record, gate/<video>.json)
    files = sorted(f.relative_to(one) for f in one.rglob("*") if f.is_file() and f.suffix not in (".parquet", ".json"))
    assert files == sorted(f.relative_to(two) for f in two.rglob("*") if f.is_file() and f.suffix not in (".parquet", ".json"))
    assert len(files) > len(windows)  # every blurry image and the frame store
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f


# ------------------------------------------------------------------ params


def test_params_from_yaml():
    blur = repo_params()["blur"]
    assert VLAParams.from_params(blur) == VLAParams(gamma=float(blur["gamma"]))
    p = VLAParams.from_params({"vla": {"overlap": {"enabled": False, "min_iou": 0.6, "min_parts": 6},
                                       "quality": {"min_ssim": 0.5}, "flow": {"max_step": 3.0},
                                       "start": "stride", "stride": 2}, "gamma": 2.2})
    assert (p.overlap, p.overlap_min_iou, p.overlap_min_parts) == (False, 0.6, 6)
    assert (p.quality, p.quality_min_ssim, p.flow, p.flow_max_step) == (True, 0.5, True, 3.0)
    assert (p.start, p.stride, p.gamma) == ("stride", 2, 2.2)
    for bad in ({"start": "middle"}, {"min_len": 1}, {"min_len": 9, "max_len": 8}):
        with pytest.raises(ValueError):
            VLAParams.from_params({"vla": bad})


def test_stride_below_one_is_rejected():
    with pytest.raises(ValueError):
        VLAParams.from_params({"vla": {"start": "stride", "stride": 0}})


# ------------------------------------------------------------------ the real stages


def test_stages_write_vla_samples_whose_blurry_is_the_mean(osc_clip, tmp_path):
    source = tmp_path / "videos"
    source.mkdir()
    shutil.copy(osc_clip.path, source / "osc.avi")
    vla_over = {"min_sharpness": 0, "max_len": 40, "reverse": True, "overlap": {"enabled": False},
                "quality": {"enabled": False}, "flow": {"max_step": 100.0}}
    overrides = {"blur": {"fixed": {"windows": [5], "stride": 5, "min_sharpness": 0}, "vla": vla_over}}
    work = tmp_path / "run"
    root = run_stages(work, source, overrides)

    rows = read_manifests(root, method="vla").to_pylist()
    got = sorted((r["start_frame"], r["end_frame"], r["stop_reason"], r["direction"]) for r in rows)
    assert got == [(0, 7, "end", "reverse"), (0, 8, "flow", "forward"), (8, 30, "flow", "reverse"),
                   (9, 30, "end", "forward")]
    # ... and exactly what plan_windows decides on the stage's own landmarks and params
    params = VLAParams.from_params(yaml_params(work)["blur"])
    lm = read_landmarks(work / "data" / "landmarks" / "osc.parquet")
    planned, _ = plan_windows(osc_clip.src, osc_clip.video, lm, params, CropParams())
    assert got == sorted((min(w.frames), max(w.frames), w.stop_reason, w.direction) for w in planned)
    stats = json.loads((work / "metrics" / "blur_vla.json").read_text())["windows"]
    assert stats["stop_flow"] == 2 and stats["stop_end"] == 2 and stats["windows"] == 4

    for r in rows:
        blurry, sharp = load_sample(r, root)
        assert sharp.shape[0] == r["n_frames"] == r["end_frame"] - r["start_frame"] + 1
        np.testing.assert_array_equal(blurry, np.floor(sharp.astype(np.float64).mean(0)).astype(np.uint8),
                                      err_msg=r["sample_id"])
        assert np.abs(blurry.astype(np.float64) - sharp[0]).mean() > 2  # frames moved: really blurred


def yaml_params(work: Path) -> dict:
    import yaml

    return yaml.safe_load((work / "params.yaml").read_text())
