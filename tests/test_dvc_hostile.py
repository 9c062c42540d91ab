"""Hostile inputs through real DVC (issue 24, rows 1, 5, 11, 12).

1. No param value reaches a shell: a source path with `$(...)`, backticks, quotes, spaces or a
   leading dash is read from params.yaml by the stage, and no command in it runs.
5. Editing a `.pts` file (or replacing a video in place) re-runs the landmarks stage.
11. A stage that fails (a bad param) leaves its previous outputs in place, metrics too
    (`persist: true` on every data stage's outputs: DVC does not delete them first).
12. A failing `dvc repro` exits 255, as docs/hostile-inputs.md says.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import GRID, REPO, annotated_sequence, copy_pipeline, pts_text, read_frames, write_clip

FAST = {"blur": {"fixed": {"windows": [5], "stride": 5, "min_sharpness": 0}}}


def dvc(root: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DEBLUR_N_JOBS="1")
    return subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)


def _project(root: Path, source: str, changes: dict | None = None) -> Path:
    copy_pipeline(root, {"ingest": {"source": source, "test_videos": []}, **FAST, **(changes or {})})
    assert subprocess.run("git init -q && dvc init -q", shell=True, cwd=root).returncode == 0
    return root


def _set_params(root: Path, **changes) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize("folder", ['vids $(touch PWNED) `touch PWNED2` "q" \'s\' x', "-leading-dash"])
def test_a_source_path_never_reaches_a_shell(tmp_path, folder):
    root = _project(tmp_path, folder)
    videos = root / folder
    videos.mkdir()
    write_clip(videos / "talk.avi", read_frames(GRID / "bbaf2n.mpg", 12))
    r = dvc(root, "repro", "ingest")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()  # no command ran
    assert not list(root.rglob("PWNED*"))
    assert json.loads((root / "metrics/ingest.json").read_text())["videos"] == 1
    assert json.loads((root / "data/sources.json").read_text())["source"] == folder
    # and a source that is missing fails `sources` with one line, leaving its previous listing
    listing = (root / "data/sources.json").read_bytes()
    videos.rename(root / "moved")
    r = dvc(root, "repro", "ingest")
    assert r.returncode == 255 and "the video source folder does not exist" in r.stdout + r.stderr
    assert (root / "data/sources.json").read_bytes() == listing


def test_a_failed_stage_keeps_its_previous_outputs_and_metrics(tmp_path):
    root = _project(tmp_path, "videos")
    (root / "videos").mkdir()
    write_clip(root / "videos/talk.avi", read_frames(GRID / "bbaf2n.mpg", 20))
    r = dvc(root, "repro", "blur_fixed")
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = (root / "metrics/blur_fixed.json").read_bytes()
    images = sorted(p.relative_to(root) for p in (root / "data/dataset/fixed").rglob("*"))
    _set_params(root, **{"blur.gamma": 0})
    r = dvc(root, "repro", "blur_fixed")
    assert r.returncode == 255  # what docs/hostile-inputs.md says a failed repro exits with
    assert "blur.gamma = 0: must be a number > 0" in r.stdout + r.stderr
    assert (root / "metrics/blur_fixed.json").read_bytes() == metrics
    assert sorted(p.relative_to(root) for p in (root / "data/dataset/fixed").rglob("*")) == images
    assert "exits 255" in (REPO / "docs/hostile-inputs.md").read_text()


def test_editing_an_annotation_file_reruns_landmarks(tmp_path, pts_frames):
    frames, points = pts_frames
    root = _project(tmp_path, "videos")
    annotated_sequence(root / "videos/001", frames[:8], points[:8])
    r = dvc(root, "repro", "landmarks")
    assert r.returncode == 0, r.stdout + r.stderr
    before = (root / "data/landmarks/001.parquet").read_bytes()
    assert "Running stage 'landmarks'" not in dvc(root, "repro", "landmarks").stdout
    # a corrected annotation; before issue 24 ingest re-ran (the listing changed) but wrote the same
    # catalog, so DVC skipped landmarks and kept the old points
    (root / "videos/001/annot/000004.pts").write_text(pts_text(points[3] + 2.0))
    r = dvc(root, "repro", "landmarks")
    assert r.returncode == 0 and "Running stage 'landmarks'" in r.stdout, r.stdout + r.stderr
    assert (root / "data/landmarks/001.parquet").read_bytes() != before
