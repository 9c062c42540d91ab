"""The train/test split: an exact hashed fraction for small folders, deterministic, explicit list wins;
the embedded samples' default list puts the strong-motion clips in the test split."""
import pytest

from conftest import VIDEOS, repo_params
from pipeline.dataset.ingest import assign_splits, build_catalog, n_test_videos, split_hash

IDS = [f"video{i:02d}" for i in range(17)]


def _test(splits):
    return sorted(v for v, s in splits.items() if s == "test")


@pytest.mark.parametrize("n, fraction, expected", [
    (17, 0.2, 3), (16, 0.2, 3), (10, 0.2, 2), (13, 0.5, 7),  # round(), halves up
    (3, 0.2, 1), (2, 0.1, 1), (2, 0.9, 1),                    # at least one test and one train video
    (1, 0.2, 0), (1, 1.0, 1), (5, 0.0, 0), (5, 1.0, 5), (0, 0.2, 0),
])
def test_test_count_is_the_rounded_fraction(n, fraction, expected):
    assert n_test_videos(n, fraction) == expected


def test_hashed_split_is_exact_and_deterministic():
    splits = assign_splits(IDS, [], 0.2, "split-v1")
    assert len(_test(splits)) == 3 and set(splits) == set(IDS)  # the per-video threshold gave 1 of 17
    # the lowest hashes are the test videos, whatever the order the videos are listed in
    assert _test(splits) == sorted(sorted(IDS, key=lambda v: split_hash(v, "split-v1"))[:3])
    assert assign_splits(list(reversed(IDS)), [], 0.2, "split-v1") == splits
    assert _test(assign_splits(IDS, [], 0.2, "another-salt")) != _test(splits)
    # adding a video keeps the hashed order of the others
    more = assign_splits(IDS + ["video17", "video18", "video19"], [], 0.2, "split-v1")
    assert len(_test(more)) == 4 and len(set(_test(splits)) & set(_test(more))) >= 2


def test_explicit_list_wins_over_the_fraction():
    splits = assign_splits(IDS, ["video05", "missing"], 0.9, "split-v1")
    assert _test(splits) == ["video05"]


def test_a_list_naming_none_of_the_videos_falls_back_to_the_fraction(tmp_path):
    from conftest import GRID
    table, _ = build_catalog(str(GRID), {"test_videos": ["motion-elsewhere"], "test_fraction": 0.2, "split_salt": "s"})
    assert table["split"].to_pylist().count("test") == n_test_videos(table.num_rows, 0.2) == 2


def test_embedded_samples_put_strong_motion_in_test():
    params = repo_params()["ingest"]
    table, rejects = build_catalog(str(VIDEOS), params)
    assert not rejects
    split = dict(zip(table["video_id"].to_pylist(), table["split"].to_pylist()))
    test = sorted(v for v, s in split.items() if s == "test")
    assert test == sorted(params["test_videos"]) == [
        "motion-obama_weekly_address", "motion-white_house_performance", "talking-WDA_KatieHill_000"]
    # strong motion trains too: the oval office address and five of the six repeat-free talking clips
    assert split["motion-oval_office_address"] == "train"
    assert sorted(v for v, s in split.items() if v.startswith("talking-") and s == "train") == [
        "talking-AmyKlobuchar_256", "talking-RD_Radio2_000", "talking-RD_Radio34_000", "talking-Reagan_address_256",
        "talking-TedLieu_256", "talking-WDA_AlexandriaOcasioCortez_000", "talking-WDA_BobMenendez_000",
        "talking-WDA_EdMarkey0_000"]
