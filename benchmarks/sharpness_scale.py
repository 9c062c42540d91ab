"""The sharpness gate across resolutions, and fixed-window samples per video before/after issue 12.

    python benchmarks/sharpness_scale.py [--videos data/videos] [--work /tmp/sharpness_scale]

1. One face (GRID bbaf2n, frame 0, dlib landmarks) resized to several scales: the gate value
   in crop space (the default: the window box's crop resized to 256, PIL bicubic) and in source
   space (the old gate: tight landmark box in source pixels).
2. The sample videos plus resized copies of one clip (x0.5, x2, x3): fixed-window samples per
   video with the old params (source-space gate, longer square, OpenCV resize, shift, round) and
   the new defaults (the authors' protocol), and each video's median gate value.
Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import deep_update, read_frames, run_stages  # noqa: E402  (the tests' helpers: one definition)

OLD = {"crop": {"square": "longer", "resize": "opencv", "edge": "shift"},
       "blur": {"rounding": "round", "fixed": {"sharpness_space": "source"}}}
SCALES = (0.5, 1.0, 2.0, 3.0)


def face_at_scales(grid_clip: Path) -> list[tuple]:
    from pipeline.dataset.crop import CropParams, crop_resize, face_box, laplacian_variance
    from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68
    from pipeline.dataset.landmarks import points_box, sharpness

    cap = cv2.VideoCapture(str(grid_clip))
    _, frame = cap.read()
    cap.release()
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    rows = []
    for s in SCALES:
        f = frame if s == 1 else cv2.resize(frame, None, fx=s, fy=s,
                                            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        gs = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        rect = frontal_face_detector()(gs, 1 if s < 1 else 0)[0]
        pts = np.array([(p.x, p.y) for p in shape_predictor_68()(gs, rect).parts()], dtype=np.float32)
        box, _ = face_box(pts[None], f.shape[1], f.shape[0], CropParams())
        crop = laplacian_variance(crop_resize(f, box, 256, resize="pil"))
        crop_cv = laplacian_variance(crop_resize(f, box, 256, resize="opencv"))
        src = sharpness(gs, points_box(pts))
        rows.append((s, f"{f.shape[1]}x{f.shape[0]}", int(np.ptp(pts[:, 0])), int(box[2] - box[0]), crop, crop_cv, src))
    del g
    return rows


def make_sources(videos: Path, work: Path) -> Path:
    src = work / "videos"
    if src.exists():
        return src
    shutil.copytree(videos, src, ignore=shutil.ignore_patterns("*.md"))
    clip = videos / "grid" / "bbaf2n.mpg"
    frames = read_frames(clip)
    (src / "scaled").mkdir()
    for s in (0.5, 2.0, 3.0):
        out = [cv2.resize(f, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC) for f in frames]
        h, w = out[0].shape[:2]
        wr = cv2.VideoWriter(str(src / "scaled" / f"bbaf2n_x{s:g}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
        for f in out:
            wr.write(f)
        wr.release()
    return src


def run(work: Path, source: Path, overrides: dict, stages: tuple[str, ...], tag: str) -> dict:
    """The data stages (`run_stages`) with landmarks at upsample 1, fixed windows into data/<tag>;
    the per-video gate record of that run."""
    base = {"landmarks": {"upsample": 1}, "compute": {"n_jobs": 2}}
    root = run_stages(work, source, deep_update(base, overrides), stages, dataset=f"data/{tag}")
    return {r["video_id"]: r for r in json.loads((root / "fixed" / "videos.json").read_text())}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--videos", type=Path, default=REPO / "data" / "videos")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sharpness_scale"))
    args = ap.parse_args()

    print("## One face at several resolutions (GRID bbaf2n frame 0)\n")
    print("| scale | frame | face width px | crop box px | gate, crop space (PIL) | crop space (OpenCV resize) | old gate, source space |")
    print("|---|---|---|---|---|---|---|")
    for s, size, fw, bw, c, ccv, src in face_at_scales(args.videos / "grid" / "bbaf2n.mpg"):
        print(f"| x{s:g} | {size} | {fw} | {bw} | {c:.1f} | {ccv:.1f} | {src:.1f} |")

    args.work.mkdir(parents=True, exist_ok=True)
    source = make_sources(args.videos, args.work)
    new = run(args.work, source, {}, ("ingest", "landmarks", "blur_fixed"), "new")
    old = run(args.work, source, OLD, ("blur_fixed",), "old")
    rel = run(args.work, source, {"blur": {"fixed": {"sharpness_percentile": 25}}}, ("blur_fixed",), "p25")
    print("\n## Fixed-window samples per video: old params vs the authors' protocol (defaults)\n")
    print("| video | windows | old: kept | old: median gate (source px) | new: kept | new: median gate (crop) | "
          "new: no samples because | relative gate p25: kept (threshold) |")
    print("|---|---|---|---|---|---|---|---|")
    from pipeline.dataset.report import no_sample_reason

    for vid, n in new.items():
        o = old[vid]
        f = lambda r: r.get("sharpness", {}).get("p50")
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        print(f"| {vid} | {n['windows']['considered']} | {o['windows']['kept']} | {fmt(f(o))} | {n['windows']['kept']} | "
              f"{fmt(f(n))} | {no_sample_reason(n, 'fixed') or ''} | {rel[vid]['windows']['kept']} "
              f"({rel[vid]['sharpness']['threshold']:.1f}) |")
    tot = lambda d: sum(r["windows"]["kept"] for r in d.values())
    print(f"\nTotal kept: old {tot(old)}, new {tot(new)}, relative p25 {tot(rel)}; videos without samples: old "
          f"{sum(1 for r in old.values() if not r['windows']['kept'])}, new {sum(1 for r in new.values() if not r['windows']['kept'])} "
          f"of {len(new)}.")


if __name__ == "__main__":
    main()
