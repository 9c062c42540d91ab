"""The scoreboard (issue 22, section 6): gains by blur band, on the blurriest third, per test video,
and the share of windows made worse, from per-pair records."""
from __future__ import annotations

import pytest

from pipeline.eval.tables import BANDS, WORSE_DB, scoreboard


def _records(pairs):
    """pairs: (video, sample, blurry psnr, model psnr) -> model and blurry records on one target."""
    out = []
    for video, sample, blurry, model in pairs:
        for system, value in (("m", model), ("blurry", blurry)):
            out.append({"sample_id": sample, "video_id": video, "target_position": 0, "system": system,
                        "psnr": value, "ssim": value / 100})
    return out


PAIRS = [("a", "a1", 25.0, 25.5), ("a", "a2", 28.0, 28.2), ("a", "a3", 33.0, 33.0),
         ("b", "b1", 36.0, 35.85), ("b", "b2", 41.0, 41.05), ("b", "b3", 44.0, 43.0)]


def test_bands_third_videos_and_worse_share():
    board = scoreboard(_records(PAIRS), "m")
    assert [name for name, _, _ in BANDS] == list(board["bands"]) == ["below_30", "30_35", "35_40", "40_up"]
    assert [board["bands"][b]["n"] for b in board["bands"]] == [2, 1, 1, 2]
    assert board["bands"]["below_30"]["gain"] == pytest.approx(0.35, abs=1e-4)
    assert board["bands"]["40_up"]["gain"] == pytest.approx((0.05 - 1.0) / 2, abs=1e-4)
    assert board["all"]["n"] == 6 and board["all"]["gain"] == pytest.approx((0.5 + 0.2 + 0 - 0.15 + 0.05 - 1.0) / 6, abs=1e-4)
    # the blurriest third: the 2 pairs of lowest blurry PSNR
    assert board["blurriest_third"]["n"] == 2 and board["blurriest_third"]["gain"] == pytest.approx(0.35, abs=1e-4)
    # worse by more than 0.1 dB: b1 (-0.15) and b3 (-1.0); a3 (0) is not
    assert WORSE_DB == 0.1 and board["all"]["worse_share"] == pytest.approx(2 / 6, abs=1e-4)
    assert board["videos"]["a"]["all"]["gain"] == pytest.approx(0.7 / 3, abs=1e-4)
    b_third = board["videos"]["b"]["blurriest_third"]
    assert b_third["n"] == 1 and b_third["gain"] == pytest.approx(-0.15, abs=1e-4)
    assert board["all"]["ssim_gain"] == pytest.approx(board["all"]["gain"] / 100, abs=1e-5)


def test_pairs_without_a_blurry_record_are_left_out_and_empty_cells_are_null():
    records = _records(PAIRS[:1]) + [{"sample_id": "x", "video_id": "c", "target_position": 0, "system": "m",
                                      "psnr": 30.0, "ssim": 0.3}]
    board = scoreboard(records, "m")
    assert board["all"]["n"] == 1 and set(board["videos"]) == {"a"}
    assert board["bands"]["40_up"] == {"n": 0, "psnr": None, "blurry_psnr": None, "gain": None, "ssim": None,
                                       "blurry_ssim": None, "ssim_gain": None, "worse_share": None}
