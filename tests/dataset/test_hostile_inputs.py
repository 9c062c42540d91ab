"""Hostile inputs (issue 15): nothing lost, nothing silently wrong. docs/hostile-inputs.md.

1. An environment error (disk full, memory) or a bug fails the stage; the previous outputs stay.
3. Deblur never writes two photos into one folder.
4. A still image named .mp4/.avi/.mkv is rejected with a reason, the others are catalogued.
5. Dangling and looping symlinks are rejects; a missing source is one clear line, nothing lost.
6. A sequence with one bad frame is rejected at ingest naming the frame (not later, silently).
(2, params: tests/test_params.py.)
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import GRID, run_stages, write_clip, read_frames
from pipeline.dataset.ingest import build_catalog, list_source
from pipeline.dataset.video import VideoError, VideoSource, probe

FAST = {"blur": {"fixed": {"windows": [5], "stride": 10, "min_sharpness": 0}}}


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def one_clip_run(tmp_path_factory):
    """ingest, landmarks and blur_fixed on one GRID clip (the previous outputs of the tests below)."""
    src = tmp_path_factory.mktemp("one_clip")
    write_clip(src / "talk.avi", read_frames(GRID / "bbaf2n.mpg", 30))
    work = tmp_path_factory.mktemp("one_clip_run")
    run_stages(work, src, FAST, stages=("ingest", "landmarks", "blur_fixed"))
    return work, src


def _rerun(work, src, stages):
    run_stages(work, src, FAST, stages=stages)


# ------------------------------------------------------------------ 1. environment errors fail the stage


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), MemoryError(),
                                   TypeError("a bug")], ids=["ENOSPC", "MemoryError", "bug"])
def test_blur_stage_fails_on_environment_error_and_keeps_outputs(one_clip_run, monkeypatch, error):
    from pipeline.dataset import pngio

    work, src = one_clip_run
    before = tree_digest(work / "data")
    metrics = (work / "metrics/blur_fixed.json").read_text()

    def full_disk(self, path, img):
        raise error

    monkeypatch.setattr(pngio.PngEncoder, "write", full_disk)
    with pytest.raises(type(error)):
        _rerun(work, src, ("blur_fixed",))
    assert tree_digest(work / "data") == before  # every previous output, byte for byte
    assert (work / "metrics/blur_fixed.json").read_text() == metrics
    assert not list((work / "data/dataset").glob(".*"))  # no staging folder left behind


def test_landmarks_stage_fails_on_environment_error_and_keeps_outputs(one_clip_run, monkeypatch):
    from pipeline.dataset import landmarks

    work, src = one_clip_run
    before = tree_digest(work / "data/landmarks")

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
        yield  # a generator, like the real one

    monkeypatch.setattr(landmarks, "iter_landmarks", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _rerun(work, src, ("landmarks",))
    assert tree_digest(work / "data/landmarks") == before


def test_a_bad_input_is_still_skipped(one_clip_run, monkeypatch):
    """The contrast: a VideoError (the input's fault) skips the video with its reason, exit normal."""
    from pipeline.dataset import pngio

    work, src = one_clip_run
    saved = tree_digest(work / "data/dataset/fixed")

    def broken(self, path, img):
        raise VideoError("talk.avi: frame 7 does not decode")

    monkeypatch.setattr(pngio.PngEncoder, "write", broken)
    try:
        _rerun(work, src, ("blur_fixed",))
        skipped = json.loads((work / "data/dataset/fixed/skipped.json").read_text())
        assert [s["video_id"] for s in skipped] == ["talk"] and "frame 7" in skipped[0]["reason"]
    finally:
        monkeypatch.undo()
        _rerun(work, src, ("blur_fixed",))  # restore the module fixture's outputs
    assert tree_digest(work / "data/dataset/fixed") == saved


# ------------------------------------------------------------------ 3. deblur output names


def test_deblur_output_names_never_collide(tmp_path):
    from pipeline.deblur import DeblurError, Restored, output_names, write_result

    a, b, c = tmp_path / "face.jpg", tmp_path / "face.png", tmp_path / "other.jpg"
    names = output_names([a, b, c])
    assert names == {a: "face.jpg", b: "face.png", c: "other"}
    img = np.zeros((8, 8, 3), np.uint8)
    for path, value in ((a, 10), (b, 200)):
        r = Restored(path, img + value, [0, 0, 8, 8], np.zeros((1, 8, 8, 3), np.float32), np.ones((8, 8), np.float32),
                     [None], "none", "hog", info={"source": str(path)})
        write_result(tmp_path / "out", r, animation="none", name=names[path])
    for path, value in ((a, 10), (b, 200)):
        frame = cv2.imread(str(tmp_path / "out" / path.name / "frame_00.png"))
        assert frame is not None and frame.max() == value  # neither overwrote the other
    (tmp_path / "x").mkdir()
    with pytest.raises(DeblurError, match="would both write"):
        output_names([a, tmp_path / "x" / "face.jpg", b])


# ------------------------------------------------------------------ 4. still images named as videos


@pytest.mark.parametrize("fmt,ext", [(".png", ".mp4"), (".jpg", ".avi"), (".bmp", ".mkv")])
def test_still_image_with_video_extension_is_rejected(tmp_path, fmt, ext):
    frame = read_frames(GRID / "bbaf2n.mpg", 1)[0]
    ok, buf = cv2.imencode(fmt, frame)
    path = tmp_path / f"photo{ext}"
    path.write_bytes(buf.tobytes())
    with pytest.raises(VideoError, match="still .* image, not a video"):
        probe(VideoSource("photo", str(path), "video"))


def test_catalog_with_still_images_keeps_the_good_videos(tmp_path):
    frames = read_frames(GRID / "bbaf2n.mpg", 12)
    write_clip(tmp_path / "good.avi", frames)
    for fmt, ext in ((".png", ".mp4"), (".jpg", ".avi"), (".bmp", ".mkv")):
        (tmp_path / f"still{fmt[1:]}{ext}").write_bytes(cv2.imencode(fmt, frames[0])[1].tobytes())
    catalog, rejects = build_catalog(str(tmp_path), {}, 1)
    assert catalog["video_id"].to_pylist() == ["good"] and catalog["n_frames"].to_pylist() == [12]
    assert len(rejects) == 3 and all("not a video" in r["reason"] for r in rejects)


# ------------------------------------------------------------------ 5. symlinks and a missing source


def test_broken_symlinks_are_rejects_not_crashes(tmp_path):
    write_clip(tmp_path / "good.avi", read_frames(GRID / "bbaf2n.mpg", 12))
    os.symlink(tmp_path / "nowhere.mp4", tmp_path / "dangling.mp4")
    os.symlink("looping.avi", tmp_path / "looping.avi")
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, f in enumerate(read_frames(GRID / "bbaf2n.mpg", 3), start=1):
        cv2.imwrite(str(seq / f"{i:04d}.png"), f)
    os.symlink(seq / "gone.png", seq / "0004.png")
    catalog, rejects = build_catalog(str(tmp_path), {}, 1)
    assert catalog["video_id"].to_pylist() == ["good"]
    reasons = {Path(r["path"]).name: r["reason"] for r in rejects}
    assert "broken symbolic link" in reasons["dangling.mp4"]
    assert "broken symbolic link" in reasons["looping.avi"] and "symbolic links" in reasons["looping.avi"]
    assert "0004.png" in reasons["seq"] and "broken symbolic link" in reasons["seq"]
    listing = list_source(tmp_path)["entries"]  # what DVC hashes instead of the folder
    assert listing["dangling.mp4"].startswith("unreadable") and listing["looping.avi"].startswith("unreadable")
    assert listing["good.avi"][0] == (tmp_path / "good.avi").stat().st_size


def test_missing_source_is_one_line_and_loses_nothing(tmp_path):
    from stages import ingest

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
    out = tmp_path / "data/ingest"
    out.mkdir(parents=True)
    (out / "catalog.parquet").write_text("previous catalog")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for extra in ({}, {"list": "data/sources.json"}):
            with pytest.raises(SystemExit) as info:
                ingest.main(argparse.Namespace(source="no/such/folder", out="data/ingest",
                                               metrics="metrics/ingest.json", **extra))
            assert "no/such/folder: the video source folder does not exist" in str(info.value.code)
            assert "\n" not in str(info.value.code)
    finally:
        os.chdir(cwd)
    assert (out / "catalog.parquet").read_text() == "previous catalog"
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "data/sources.json").exists()


# ------------------------------------------------------------------ 6. one bad frame in a sequence


def test_sequence_with_one_bad_frame_is_rejected_naming_it(tmp_path):
    seq = tmp_path / "clip"
    seq.mkdir()
    frames = read_frames(GRID / "bbaf2n.mpg", 6)
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(str(seq / f"{i:04d}.jpg"), f)
    (seq / "0004.jpg").write_bytes(b"\xff\xd8\xff garbage")  # JPEG magic, no image
    cv2.imwrite(str(seq / "0006.jpg"), frames[5][:100, :100])  # a frame of another size
    with pytest.raises(VideoError) as info:
        probe(VideoSource("clip", str(seq), "images"))
    msg = str(info.value)
    assert "2 of 6 frames" in msg and "0004.jpg (unreadable image)" in msg and "0006.jpg (100x100" in msg


# ------------------------------------------------------------------ 5. through real DVC


def test_dvc_source_listing_survives_broken_links_and_a_missing_folder(tmp_path):
    """`ingest` depends on stage `sources`' listing: a dangling link is an ingest reject (DVC would
    abort hashing the folder), a missing folder fails `sources` and leaves data/ingest in place."""
    import subprocess
    import sys

    from conftest import copy_pipeline

    copy_pipeline(tmp_path, {"ingest": {"source": "videos"}})
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "good.avi", read_frames(GRID / "bbaf2n.mpg", 12))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DEBLUR_N_JOBS="1")

    def dvc(*args):
        return subprocess.run(["dvc", *args], cwd=tmp_path, env=env, capture_output=True, text=True)

    assert subprocess.run("git init -q && dvc init -q", shell=True, cwd=tmp_path, env=env).returncode == 0
    r = dvc("repro", "ingest")
    assert r.returncode == 0, r.stdout + r.stderr
    r = dvc("repro", "ingest")
    assert "Running stage 'ingest'" not in r.stdout  # the listing is unchanged: ingest is not re-run

    os.symlink(videos / "nowhere.mp4", videos / "dangling.mp4")
    r = dvc("repro", "ingest")
    assert r.returncode == 0 and "Running stage 'ingest'" in r.stdout, r.stdout + r.stderr
    rejects = json.loads((tmp_path / "data/ingest/rejects.json").read_text())
    assert [Path(x["path"]).name for x in rejects] == ["dangling.mp4"]
    catalog = (tmp_path / "data/ingest/catalog.parquet").read_bytes()

    videos.rename(tmp_path / "moved")
    r = dvc("repro", "ingest")
    assert r.returncode != 0
    assert "videos: the video source folder does not exist" in r.stdout + r.stderr
    assert (tmp_path / "data/ingest/catalog.parquet").read_bytes() == catalog  # nothing lost
