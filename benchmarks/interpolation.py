"""Interpolation against real blur: does `blur.interpolate` bring synthetic blur closer to real blur?

    .venv/bin/python benchmarks/interpolation.py                  # every repeat-free sample clip, the pipeline's interpolation
    .venv/bin/python benchmarks/interpolation.py --candidates     # + each candidate cause of a loss, measured
    .venv/bin/python benchmarks/interpolation.py data/videos/talking/*.mp4 --frames 100

"Real" blur is the average of ALL frames of a window at the clip's full rate (25-30 fps: itself
sampled, so the claim is relative). A low-rate copy keeps every `step`-th frame (step 2 or 3);
its blurry image is built (a) by averaging the kept frames (the papers, blur.interpolate 1) and
(b) with interpolation restoring the dropped rate (blur.interpolate = step). Every window's crop
is the pipeline's: the window's mean landmark box (crop policy defaults), 256 x 256. PSNR and
SSIM (grey, 11x11 Gaussian) of (a) and (b) against the real blur, per clip family, clip and N
(real frames of the low-rate window), over all windows and the fastest third ranked by landmark
motion.

The default clips are the repeat-free ones (no held frames: averaging a low-rate copy of a clip
that holds its pictures compares held copies with held copies): the GRID clips, the oval-office
address and the four talking clips. `--pictures` keeps each clip's distinct pictures only (the
landmarks stage's repeat test), which is how `blur.units: pictures` sees a clip that holds frames:

    .venv/bin/python benchmarks/interpolation.py --pictures data/videos/motion/obama_weekly_address.mp4 \
        data/videos/motion/white_house_performance.mp4 data/videos/webcam/*.mp4 `--candidates` also builds (b) with each candidate cause of a
loss changed, on the same windows (`CANDIDATES`): DIS presets and Farneback flow, flow computed
on the source's pixels (the crop box at the source's scale) rather than on the 256 crop, the
blend without its occlusion weights, and zero flow (a cross-fade: interpolation's weighting of the
real frames with no motion at all). Each window's landmark motion is split into its head motion
(a similarity transform fitted to the 68 points between consecutive low-rate frames) and the
non-rigid rest on the eyes and mouth, to see which kind of motion the losses follow.
tests/dataset/test_interpolate.py runs `measure` on a short segment and checks (b) - (a) >= 1 dB.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

VIDEOS = REPO / "data/videos"
REPEAT_FREE = (sorted(str(p) for p in (VIDEOS / "grid").glob("*.mpg")) + [str(VIDEOS / "motion/oval_office_address.mp4")]
               + sorted(str(p) for p in (VIDEOS / "talking").glob("*.mp4")))
WINDOWS = (5, 7, 9)
STEPS = (2, 3)
# name -> (Interpolator flow, occlusion blend, where the flow is computed, still deadzone px or None).
# "b" is the pipeline's: the flow of each pair of real frames computed once on the pair's canvas
# and mapped into the window's crop (SharedFlow); "window_flow" computes it on each window's crop
# (the pipeline before the flow was shared); "source_flow" on the crop box at the source's scale.
CANDIDATES = {"b": ("dis_medium", True, "shared", None), "window_flow": ("dis_medium", True, "crop", None),
              "dis_fast": ("dis_fast", True, "crop", None), "dis_ultrafast": ("dis_ultrafast", True, "crop", None),
              "farneback": ("farneback", True, "crop", None), "source_flow": ("dis_medium", True, "source", None),
              "no_occlusion": ("dis_medium", False, "crop", None), "crossfade": ("zero", True, "crop", None),
              "still_0.5_1.5": ("dis_medium", True, "shared", (0.5, 1.5)),
              "still_1_3": ("dis_medium", True, "shared", (1.0, 3.0)),
              "canvas_synth": ("dis_medium", True, "canvas_synth", None)}
# canvas_synth: the synthesised frames made once per pair, in colour on the pair's canvas (at
# CANVAS_SIDE, the face at about the crop's scale), then resampled into each window's crop
# (cubic): one synthesis per pair instead of one per window and pair, at the price of resampling twice.
CANVAS_SIDE = 384


def family(clip: str) -> str:
    return Path(clip).parent.name if Path(clip).parent.name != "motion" else Path(clip).stem


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def clip_landmarks(path: str, frames: int | None = None, pictures: bool = False) -> tuple[list[np.ndarray], dict]:
    """Decoded BGR frames (first `frames`) and their 68 landmarks (the landmarks stage's dlib
    detect-and-track, default params, no .pts). `pictures`: only the first frame of each hold (the
    landmarks stage's repeat test, `pipeline.dataset.holds`): the clip as `blur.units: pictures`
    sees it."""
    import cv2

    from pipeline.dataset.holds import HoldMeter, repeats
    from pipeline.dataset.landmarks import FaceTracker, LandmarkParams
    from pipeline.dataset.video import VideoSource, iter_frames

    src = VideoSource(Path(path).stem, str(path), "video")
    tracker, meter = FaceTracker(LandmarkParams(use_pts=False)), HoldMeter()
    imgs, pts, has, diffs = [], [], [], []
    for _, f in iter_frames(src, stop=frames):
        grey = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        diffs.append(meter.step(grey))
        p = tracker.step(grey)[0]
        imgs.append(f)
        has.append(p is not None)
        pts.append(np.full((68, 2), np.nan, np.float32) if p is None else np.asarray(p, np.float32))
    keep = np.arange(len(imgs))
    if pictures and imgs:
        frame_diff, block_diff = np.array(diffs).T
        keep = np.flatnonzero(~repeats(frame_diff, block_diff))
    return [imgs[i] for i in keep], {"points": np.stack(pts)[keep], "has_face": np.array(has)[keep]}


def motion_parts(points: np.ndarray) -> tuple[float, float]:
    """(head, non-rigid) motion of landmarks over consecutive frames (crop pixels, summed over the
    window's steps, mean over points): head = how far a similarity transform fitted to all 68
    points moves them; non-rigid = what is left on the eyes and mouth (points 36-67)."""
    import cv2

    head = rest = 0.0
    for p, q in zip(points[:-1], points[1:]):
        m, _ = cv2.estimateAffinePartial2D(p.astype(np.float32), q.astype(np.float32), method=cv2.LMEDS)
        t = p @ m[:, :2].T + m[:, 2]
        head += float(np.linalg.norm(t - p, axis=1).mean())
        rest += float(np.linalg.norm(q[36:] - t[36:], axis=1).mean())
    return head, rest


def source_flows(interp, imgs: list[np.ndarray], box: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Flow pairs between consecutive `imgs`, computed on the crop box at the source's own scale
    and resampled to the size x size crop (vectors scaled by size / box side)."""
    import cv2

    from pipeline.dataset.crop import crop_resize

    side = int(box[2] - box[0])
    native = [crop_resize(f, box, side) for f in imgs]
    out = []
    for a, b in zip(native[:-1], native[1:]):
        pair = interp.flows(a, b)
        out.append(tuple(cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) * (size / side) for f in pair))
    return out


def canvas_mids(flow, interp, fa, fb, pa, pb, box, size: int) -> list[np.ndarray]:
    """canvas_synth: the pair's synthesised frames made on its colour canvas, resampled into the crop of `box`."""
    import cv2

    from pipeline.dataset.crop import crop_resize

    cbox = flow.canvas_box(pa, pb)
    ca, cb = (crop_resize(f, cbox, flow.side, resize="opencv") for f in (fa, fb))
    mids = interp.between(ca, cb, fields=interp.fields(ca, cb))
    m = flow.crop_to_canvas(cbox, box, size)
    return [cv2.warpAffine(x, m, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE) for x in mids]


def measure(imgs: list[np.ndarray], lm: dict, windows=WINDOWS, steps=STEPS, stride: int = 5, clip: str = "",
            keep_images: bool = False, candidates=("b",)) -> list[dict]:
    """One row per (window, step): PSNR/SSIM of (a) and of each candidate build of (b) (`psnr_b`:
    the pipeline's) against the full-rate average, the window's motion and its parts."""
    import cv2

    from pipeline.dataset.averaging import average
    from pipeline.dataset.crop import CropParams, crop_resize, face_box, to_crop_coords
    from pipeline.dataset.interpolate import InterpParams, Interpolator, RunningMean, SharedFlow
    from pipeline.dataset.samples import landmark_motion
    from pipeline.dataset.vla import ssim_grey

    g = lambda x: cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)
    crop = CropParams()
    h, w = imgs[0].shape[:2]
    rows = []
    for s in steps:
        interps = {c: Interpolator(InterpParams(s), *CANDIDATES[c][:2], still=CANDIDATES[c][3]) for c in candidates}
        shared = SharedFlow(Interpolator(InterpParams(s)), crop, w, h)
        colour = SharedFlow(Interpolator(InterpParams(s)), crop, w, h, side=CANVAS_SIDE)
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
                pts = to_crop_coords(lm["points"][idx[::s]], box, crop.size)
                head, rest = motion_parts(pts)
                row = {"clip": Path(clip).stem, "family": family(clip), "step": s, "n": n, "start": start, "motion": landmark_motion(pts), "head": head, "nonrigid": rest,
                       "psnr_a": psnr(a, real), "ssim_a": ssim_grey(g(a), g(real))}
                motions = None
                for c in candidates:
                    interp, where = interps[c], CANDIDATES[c][2]
                    flows = source_flows(interp, [imgs[i] for i in idx[::s]], box, crop.size) if where == "source" else None
                    if where == "shared" and motions is None:
                        motions = shared.window_motions([imgs[i] for i in idx[::s]], lm["points"][idx[::s]],
                                                        box, crop.size)
                    acc = RunningMean(1.0, "truncate")
                    if where == "canvas_synth":
                        srcs, pts_s = [imgs[i] for i in idx[::s]], lm["points"][idx[::s]]
                        for k, f in enumerate(low):
                            if k:
                                for mid in canvas_mids(colour, interp, srcs[k - 1], srcs[k], pts_s[k - 1], pts_s[k],
                                                       box, crop.size):
                                    acc.add(mid)
                            acc.add(f)
                        b = acc.mean()
                        row[f"psnr_{c}"], row[f"ssim_{c}"] = psnr(b, real), ssim_grey(g(b), g(real))
                        continue
                    for k, f in enumerate(low):
                        if k:
                            for mid in interp.between(low[k - 1], f, flows=None if flows is None else flows[k - 1],
                                                      fields=motions[k - 1] if where == "shared" else None):
                                acc.add(mid)
                        acc.add(f)
                    b = acc.mean()
                    row[f"psnr_{c}"], row[f"ssim_{c}"] = psnr(b, real), ssim_grey(g(b), g(real))
                    if c == "b" and keep_images:
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


def gains(rs: list[dict], c: str = "b") -> tuple[float, float]:
    """Mean (b_c) - (a) PSNR over `rs` and over their fastest third."""
    if not rs:
        return float("nan"), float("nan")
    d = lambda q: float(np.mean([r[f"psnr_{c}"] - r["psnr_a"] for r in q]))
    return d(rs), d(fastest_third(rs))


def grouped_table(rows: list[dict], by: tuple[str, ...], candidates=("b",)) -> str:
    """Gain of each candidate over (a), all windows / fastest third, per group of `by` keys (and
    'all' steps pooled per group)."""
    head = "| " + " | ".join(by) + " | windows | motion px | PSNR (a) | " + " | ".join(
        f"{c}: all / fastest third dB" for c in candidates) + " |"
    lines = [head, "|" + "---|" * (len(by) + 3 + len(candidates))]
    for key in sorted({tuple(r[k] for k in by) for r in rows}, key=str):
        rs = [r for r in rows if tuple(r[k] for k in by) == key]
        cells = [f"{gains(rs, c)[0]:+.2f} / {gains(rs, c)[1]:+.2f}" for c in candidates]
        lines.append("| " + " | ".join(map(str, key)) + f" | {len(rs)} | {np.mean([r['motion'] for r in rs]):.1f} | "
                     f"{np.mean([r['psnr_a'] for r in rs]):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def motion_table(rows: list[dict], candidates=("b",)) -> str:
    """Gains by tercile of head motion and of the non-rigid share of motion (within each step)."""
    lines = ["| step | split by | tercile | windows | head px | non-rigid px | PSNR (a) | "
             + " | ".join(f"{c} dB" for c in candidates) + " |", "|" + "---|" * (7 + len(candidates))]
    for s in sorted({r["step"] for r in rows}):
        rs = [r for r in rows if r["step"] == s]
        for name, key in (("head motion", lambda r: r["head"]),
                          ("non-rigid share", lambda r: r["nonrigid"] / max(r["head"] + r["nonrigid"], 1e-6))):
            order = sorted(rs, key=key)
            for t, part in enumerate(np.array_split(np.arange(len(order)), 3)):
                q = [order[i] for i in part]
                if not q:
                    continue
                lines.append(f"| {s} | {name} | {('low', 'middle', 'high')[t]} | {len(q)} | "
                             f"{np.mean([r['head'] for r in q]):.1f} | {np.mean([r['nonrigid'] for r in q]):.1f} | "
                             f"{np.mean([r['psnr_a'] for r in q]):.2f} | "
                             + " | ".join(f"{gains(q, c)[0]:+.2f}" for c in candidates) + " |")
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
    ap.add_argument("clips", nargs="*", default=list(REPEAT_FREE))
    ap.add_argument("--frames", type=int, default=None, help="use only each clip's first frames")
    ap.add_argument("--stride", type=int, default=5, help="frames between window starts")
    ap.add_argument("--pictures", action="store_true",
                    help="each clip's distinct pictures only (held frames dropped): for clips that hold frames")
    ap.add_argument("--candidates", nargs="*", default=None, metavar="NAME",
                    help="also measure candidate builds of (b) (CANDIDATES; no names: all of them)")
    ap.add_argument("--out", default=str(REPO / "reports/interpolation"), help="windows.csv and fastest.png")
    args = ap.parse_args()
    candidates = ("b",) if args.candidates is None else ("b",) + tuple(c for c in (args.candidates or CANDIDATES) if c != "b")
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    rows = []
    for clip in args.clips:
        imgs, lm = clip_landmarks(clip, args.frames, args.pictures)
        rs = measure(imgs, lm, stride=args.stride, clip=clip, keep_images=True, candidates=candidates)
        fastest = max(rs, key=lambda x: x["motion"], default=None)
        for r in rs:  # keep only the images of each clip's fastest window (memory)
            if r is not fastest:
                r.pop("images", None)
        print(f"{clip}: {len(imgs)} frames, {len(rs)} windows", file=sys.stderr, flush=True)
        rows += rs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "windows.csv", "w", newline="") as f:
        fields = [k for k in rows[0] if k != "images"]
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print("Per step and N, every clip:\n" + table(rows))
    print("\nPer clip family and step (gain = interpolated - plain, PSNR against the real blur):\n"
          + grouped_table(rows, ("family", "step"), candidates))
    print("\nPer family and N:\n" + grouped_table(rows, ("family", "n"), candidates))
    print("\nPer clip:\n" + grouped_table(rows, ("clip",), candidates))
    print("\nBy kind of motion:\n" + motion_table(rows, candidates))
    best = max((r for r in rows if "images" in r), key=lambda r: r["motion"])
    contact_sheet(best, out / "fastest.png")
    print(f"\nfastest window: {best['clip']} step {best['step']} N {best['n']} start {best['start']} "
          f"motion {best['motion']:.1f} px -> {out / 'fastest.png'}; every window: {out / 'windows.csv'}")


if __name__ == "__main__":
    main()
