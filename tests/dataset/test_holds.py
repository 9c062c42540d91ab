"""Held (repeated) frames (issue 23, section 1): detection, cadence, and `blur.units: pictures`.

The test that makes it real: a repeat-free talking clip, a copy of it with a 2:2 hold and one
with 3:2 pulldown (each frame repeated, the copies re-encoded). In `pictures` mode the copies give
the original's windows (the same pictures, the same blurry images); in `frames` mode their windows
average fewer pictures than frames, and metrics/blur_fixed.json says so (pictures_per_frame).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import GRID, MOTION, VIDEOS, annotated_sequence, dlib_points, read_frames, run_stages, write_clip
from pipeline.dataset.holds import (HoldMeter, HoldParams, cadence, pair_repeats, picture_view, pictures,
                                    repeat_free_videos, repeats)
from pipeline.manifest import load_sample, read_manifests

TALKING = VIDEOS / "talking"
# the repeat-free clips (issue 23): no pair of consecutive frames may be called a repeat
# the three talking clips added later hold a few frames of their own (../shared/REFERENCE.md section 6)
OWN_HOLDS = {"AmyKlobuchar_256": 3, "TedLieu_256": 4, "Reagan_address_256": 19}
REPEAT_FREE = sorted(GRID.glob("*.mpg")) + sorted(p for p in TALKING.glob("*.mp4") if p.stem not in OWN_HOLDS) + \
    [MOTION / "oval_office_address.mp4"]


def measure(path: Path, p: HoldParams = HoldParams()) -> tuple[np.ndarray, np.ndarray]:
    meter, diffs, blocks = HoldMeter(p), [], []
    for f in read_frames(path):
        d, b = meter.step(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
        diffs.append(d)
        blocks.append(b)
    return np.array(diffs), np.array(blocks)


# ------------------------------------------------------------------ the rule, on arrays


def test_repeats_absolute_relative_and_block_rules():
    p = HoldParams()
    d = np.array([np.nan, 5.0, 0.05, 4.0, 0.3, 6.0, 0.3, 0.6, 3.0])
    b = np.array([np.nan, 9.0, 0.5, 9.0, 1.0, 9.0, 7.0, 1.0, 9.0])
    r = repeats(d, b, p)
    # 0.05: below max_diff; 0.3 beside 4 and 6: below 0.08 x 6; 0.3 but a block moved 7: motion; 0.6: too large
    assert r.tolist() == [False, False, True, False, True, False, False, False, False]
    assert not repeats(d, b, p, cut=np.array([0, 0, 1, 0, 0, 0, 0, 0, 0], bool))[2]  # a cut is never a repeat
    assert pictures(r).tolist() == [0, 1, 1, 3, 3, 5, 6, 7, 8]


@pytest.mark.parametrize("holds,expected", [([1] * 12, "none"), ([2] * 12, "2:2"), ([3, 2] * 6, "3:2"),
                                            ([1, 1, 2, 1] * 5, "2:1:1:1"), ([2, 4, 1, 3, 1, 5, 2, 6, 1, 2], "irregular")])
def test_cadence_names_the_hold_pattern(holds, expected):
    r = np.concatenate([[False] + [True] * (h - 1) for h in holds])
    c = cadence(r)
    assert c["cadence"] == expected
    assert c["pictures"] == len(holds) and c["repeat_share"] == pytest.approx((len(r) - len(holds)) / (len(r) - 1), abs=1e-4)


def test_the_picture_view_takes_one_frame_per_picture_and_keeps_gaps():
    n = 8
    lm = {"has_face": np.ones(n, bool), "picture": np.array([0, 0, 2, 3, 3, 3, 6, 7]),
          "frame_number": np.array([1, 2, 3, 4, 5, 6, 8, 9]),  # a gap: number 7 is missing
          "points": np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 68, 2), np.float32),
          "cut": np.zeros(n, bool)}
    view, frames = picture_view(lm)
    assert frames.tolist() == [0, 2, 3, 6, 7]
    assert view["points"][:, 0, 0].tolist() == [0, 2, 3, 6, 7]
    assert np.diff(view["frame_number"]).tolist() == [1, 1, 2, 1]  # the gap before frame 6 stays a gap
    same, frames = picture_view({**lm, "picture": np.arange(n)})
    assert same is not None and frames.tolist() == list(range(n))


# ------------------------------------------------------------------ the sample clips


@pytest.mark.parametrize("path", REPEAT_FREE, ids=lambda p: p.stem)
def test_no_false_repeats_on_repeat_free_clips(path):
    d, b = measure(path)
    assert not repeats(d, b).any()
    # with margin: both thresholds 25% higher still find none
    p = HoldParams(max_diff=0.15, relative=0.1)
    assert not repeats(d, b, p).any(), np.nanmin(d)


@pytest.mark.parametrize("stem", sorted(OWN_HOLDS))
def test_the_new_talking_clips_hold_only_their_few_still_frames(stem):
    """Their own few holds, found by the pair rules, are all the detector finds: no cadence is read
    into their little motion."""
    d, b = measure(TALKING / f"{stem}.mp4")
    r = repeats(d, b)
    assert int(r.sum()) == OWN_HOLDS[stem] and np.array_equal(r, pair_repeats(d, b))
    assert cadence(r)["cadence"] == "irregular"


def test_held_clips_are_found_with_their_cadence():
    d, b = measure(MOTION / "obama_weekly_address.mp4")
    c = cadence(repeats(d, b))
    assert 0.6 <= c["repeat_share"] <= 0.7 and c["cadence"] == "irregular"  # holds of 2-6 frames
    d, b = measure(MOTION / "white_house_performance.mp4")
    c = cadence(repeats(d, b))
    assert c["cadence"] == "2:1:1:1" and 0.17 <= c["repeat_share"] <= 0.21  # 24 fps film in 30 fps video


# ------------------------------------------------------------------ 2:2 hold and 3:2 pulldown copies

ORIGINAL = TALKING / "WDA_KatieHill_000.mp4"  # 7.5 grey levels per frame of motion, no repeats
N_FRAMES = 42


def _held(frames: list[np.ndarray], pattern) -> list[np.ndarray]:
    out = []
    for k, f in enumerate(frames):
        out += [f] * pattern[k % len(pattern)]
    return out


def _talking_frames() -> list[np.ndarray]:
    return [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in read_frames(ORIGINAL, N_FRAMES)]


def test_held_copies_reencoded_with_an_inter_frame_codec_are_detected(tmp_path):
    """MPEG-4 (mp4v) codes a held frame as a P-frame: the copy differs from its picture by
    compression noise (up to 0.33 grey levels here). Every repeat found is a real copy; keyframes
    that re-code a copy inside a hold (a visible refresh, 1.8+ grey levels) count as a picture."""
    frames = _talking_frames()
    for pattern, cadence_name in (([1], "none"), ([2], "2:2"), ([3, 2], None)):
        copy = _held(frames, pattern)
        path = tmp_path / f"copy_{''.join(map(str, pattern))}.mp4"
        write_clip(path, copy, fourcc="mp4v")
        d, b = measure(path)
        truth = np.array([False] + [copy[i] is copy[i - 1] for i in range(1, len(copy))])
        found = repeats(d, b)
        assert not (found & ~truth).any()  # no false repeats
        assert found.sum() >= 0.85 * truth.sum()
        if cadence_name:
            assert cadence(found)["cadence"] == cadence_name


@pytest.mark.parametrize("clip,pattern,fourcc,ext", [
    (TALKING / "WDA_KatieHill_000.mp4", [3, 2], "mp4v", ".mp4"),  # clean, fast: keyframes refresh held copies
    (GRID / "bbaf2n.mpg", [2], "MPG2", ".mpg"),  # noisy MPEG-1 source, little motion, MPEG-2 copies
], ids=["clean-3:2-mp4v", "noisy-2:2-mpeg2"])
def test_held_copies_through_a_lossy_codec_are_found_by_their_cadence(tmp_path, clip, pattern, fourcc, ext):
    """The codec matrix's cases (benchmarks/holds.py --codecs): a held copy re-encoded by a lossy
    codec differs from its picture by as much as a real small change does (MPEG-2: up to 1.9 grey
    levels in one block, against 1.25 for the clip's smallest real change), so the pair rules alone
    find 138 of 150 (mp4v) and 38 of 75 (MPEG-2) held pairs; the cadence rule finds all of them,
    and still takes no real change of the original, re-encoded the same way, for a repeat."""
    frames = read_frames(clip, 100)
    for name, copy in (("original", frames), ("copy", _held(frames, pattern))):
        path = tmp_path / f"{name}{ext}"
        write_clip(path, copy, fourcc=fourcc)
        d, b = measure(path)
        truth = np.array([False] + [copy[i] is copy[i - 1] for i in range(1, len(copy))])[:len(d)]
        found = repeats(d, b)
        assert not (found & ~truth).any(), (name, np.flatnonzero(found & ~truth))
        assert found.sum() >= 0.98 * truth.sum(), (name, int(found.sum()), int(truth.sum()))
    if pattern == [2]:
        assert cadence(found)["cadence"] == "2:2"


def test_the_landmarks_stage_decides_holds_as_the_whole_video_rule_does(tmp_path):
    """The stage decides frame by frame while decoding (a window of pairs after each frame); its
    `picture` column is what `repeats` gives on the whole video's differences, cadence rule included."""
    from pipeline.dataset.landmarks import LandmarkParams, extract_video
    from pipeline.dataset.video import VideoSource

    path = tmp_path / "copy.mpg"
    write_clip(path, _held(read_frames(GRID / "bbaf2n.mpg", 60), [3, 2]), fourcc="MPG2")
    table = extract_video(VideoSource("copy", str(path), "video"), LandmarkParams(), 150)
    rows = {int(f): (p, d, bd, c) for f, p, d, bd, c in zip(*(table[k].to_pylist() for k in
                                                             ("frame", "picture", "frame_diff", "block_diff", "cut")))}
    n = max(rows) + 1
    d = np.array([np.nan if rows[i][1] is None else rows[i][1] for i in range(n)])
    b = np.array([np.nan if rows[i][2] is None else rows[i][2] for i in range(n)])
    cut = np.array([rows[i][3] for i in range(n)], bool)
    whole = pictures(repeats(d, b, cut=cut))
    assert [rows[i][0] for i in range(n)] == whole.tolist()
    assert not pictures(np.zeros(n, bool)).tolist() == whole.tolist()  # the copy's holds were found


def test_the_cadence_rule_needs_a_period_and_stops_at_cuts():
    """A held phase counts only where one period's phases split the block changes cleanly and
    inside one shot; irregular small changes (a still moment) are never a cadence."""
    rng = np.random.default_rng(0)
    n = 120
    b = np.where(np.arange(n) % 2 == 1, rng.uniform(0.8, 1.6, n), rng.uniform(2.0, 4.0, n))  # 2:2 behind noise
    d = b / 3
    d[0] = b[0] = np.nan
    r = repeats(d, b)
    assert r[1::2].all() and not r[2::2].any()
    assert not pair_repeats(d, b).any()  # no pair rule sees them
    assert not repeats(d, b, HoldParams(phase_window=0)).any()
    still = rng.uniform(0.8, 4.0, n)  # the same values in no order
    still[0] = np.nan
    assert not repeats(still / 3, still).any()
    cut = np.zeros(n, bool)
    cut[60] = True  # a cut: the phase flips after it
    b2 = np.r_[b[:60], b[59:119]]  # from frame 60 on, the even frames are the held ones
    r2 = repeats(b2 / 3, b2, cut=cut)
    assert not r2[60] and r2[1:60:2].all() and not r2[2:60:2].any()
    assert r2[62::2].all() and not r2[61::2].any()
    uncut = repeats(b2 / 3, b2)  # without the cut, windows across frame 60 mix both phases
    assert not np.array_equal(uncut, r2)


@pytest.fixture(scope="module")
def pulldown_runs(tmp_path_factory):
    """The original and its 2:2 / 3:2 copies as JPEG image sequences in the 300VW layout (each frame
    re-encoded on its own, so a held copy is the same picture; each frame's .pts holds its picture's
    landmarks, so the landmarks do not depend on a tracker's history), built in both modes."""
    frames = _talking_frames()
    points = dlib_points(frames)
    runs = {}
    for name, pattern in (("original", [1]), ("hold22", [2]), ("pulldown32", [3, 2])):
        src = tmp_path_factory.mktemp(f"{name}_src")
        annotated_sequence(src / name, _held(frames, pattern), _held(points, pattern), ext=".jpg")
        for units in ("pictures", "frames"):
            work = tmp_path_factory.mktemp(f"{name}_{units}")
            runs[name, units] = run_stages(work, src, {
                "blur": {"units": units, "fixed": {"windows": [5, 7], "stride": 5, "min_sharpness": 0}}},
                stages=("ingest", "landmarks", "blur_fixed", "manifest"))
    return runs


def _windows(root: Path) -> dict:
    rows = read_manifests(root, method="fixed").to_pylist()
    return {(r["n_frames"], k): r for k, r in enumerate(sorted(rows, key=lambda r: (r["n_frames"], r["start_frame"])))}


def test_pictures_windows_of_held_copies_are_the_originals(pulldown_runs):
    original = _windows(pulldown_runs["original", "pictures"])
    assert len(original) >= 12
    for copy in ("hold22", "pulldown32"):
        root = pulldown_runs[copy, "pictures"]
        windows = _windows(root)
        assert windows.keys() == original.keys(), copy
        for key, r in windows.items():
            o = original[key]
            assert r["n_frames"] == r["pictures"] == o["n_frames"]
            assert r["crop_box"] == o["crop_box"]
            blurry, sharp = load_sample(r, root)
            blurry_o, sharp_o = load_sample(o, pulldown_runs["original", "pictures"])
            np.testing.assert_array_equal(sharp, sharp_o)  # the same pictures
            np.testing.assert_array_equal(blurry, blurry_o)
        # the windows name one frame per picture: the first of each hold
        starts = {"hold22": 2, "pulldown32": None}[copy]
        if starts:
            assert all(f % starts == 0 for r in windows.values() for f in r["frame_indices"])


def test_frames_windows_of_held_copies_ghost_and_the_metrics_say_so(pulldown_runs):
    for copy, share in (("hold22", 0.5), ("pulldown32", 0.4)):
        frames_m = json.loads((pulldown_runs[copy, "frames"].parents[1] / "metrics/blur_fixed.json").read_text())
        pict_m = json.loads((pulldown_runs[copy, "pictures"].parents[1] / "metrics/blur_fixed.json").read_text())
        assert pict_m["blurry"]["pictures_per_frame"] == 1.0 and pict_m["blurry"]["held_frames"] == 0
        assert abs(frames_m["blurry"]["pictures_per_frame"] - share) < 0.12, frames_m["blurry"]
        # a frames window of 5 holds 2-3 pictures: the same span of time as the original's 2-3 frames,
        # not its 5; the pictures window covers the original's 5 pictures
        rows = read_manifests(pulldown_runs[copy, "frames"], method="fixed").to_pylist()
        assert all(r["pictures"] < r["n_frames"] for r in rows)
    original = json.loads((pulldown_runs["original", "frames"].parents[1] / "metrics/blur_fixed.json").read_text())
    assert original["blurry"]["pictures_per_frame"] == 1.0


def test_both_modes_give_the_same_bytes_on_repeat_free_footage(pulldown_runs):
    a, b = pulldown_runs["original", "pictures"], pulldown_runs["original", "frames"]
    for rel in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_repeat_free_videos_from_the_landmarks_report(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"videos": {"a": {"holds": {"cadence": "none"}}, "b": {"holds": {"cadence": "2:2"}},
                                             "c": {}}}))
    assert repeat_free_videos(report) == {"a"}
    assert repeat_free_videos(tmp_path / "missing.json") == set()
