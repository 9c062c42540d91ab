"""How the gain grows with the number of people in the training footage.

    python benchmarks/people.py                       # Chrysos, 2 / 4 / 7 talking people, 10 CPU minutes each
    python benchmarks/people.py --counts 4 7 --models unet --budgets 10
    python benchmarks/people.py --collect             # table and plot from runs already in --out

The CPU configuration (`benchmarks/learning.py`, presets/cpu-proof.yaml) trained on a subset of the
training videos: every training video that is not a talking head (GRID, webcam, the Oval Office
address) and the first k talking-head people of TALKING, everything else equal (steps per CPU
minute, validation video, seeds). Each subset is one `learning.py` run in `--out/<k>_people/`
(skipped when its learning.json exists; the largest subset may hold several budgets). Prints, per
subset and budget, the training windows and the gain over the blurry input on the repeat-free test
clip (all windows, blurriest third), the no-harm row, and draws `--out/people.png`: gain against
people.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import learning  # noqa: E402  (benchmarks/learning.py: the runs themselves)
from pipeline.train.data import training_rows  # noqa: E402

# the talking-head training people, in the order they join (the four of the first samples, then the
# clips added later); the validation video (Ed Markey) and the test clip (Katie Hill) are never here
TALKING = ("talking-RD_Radio2_000", "talking-WDA_BobMenendez_000", "talking-RD_Radio34_000",
           "talking-WDA_AlexandriaOcasioCortez_000", "talking-AmyKlobuchar_256", "talking-TedLieu_256",
           "talking-Reagan_address_256")
TEST_CLIP = "talking-WDA_KatieHill_000"


def subset(root: Path, k: int) -> list[str]:
    """The training videos of the k-people run: the non-talking ones and TALKING[:k]."""
    videos = sorted({r["video_id"] for r in training_rows(root, ["fixed"])})
    return [v for v in videos if not v.startswith("talking-")] + [v for v in TALKING[:k] if v in videos]


def collect(out: Path, counts: list[int], root: Path) -> list[dict]:
    rows = []
    videos = [r["video_id"] for r in training_rows(root, ["fixed"])]
    for k in counts:
        path = out / f"{k}_people" / "learning.json"
        if not path.exists():
            continue
        chosen = set(subset(root, k))
        windows = sum(v in chosen for v in videos)
        for r in json.loads(path.read_text()):
            clip = r["test"]["videos"].get(TEST_CLIP, {})
            sharp = r["test"].get("sharp_input") or {}
            rows.append({"people": k, "model": r["model"], "minutes": r["minutes"], "windows": windows,
                         "gain": clip.get("all", {}).get("gain"), "third": clip.get("blurriest_third", {}).get("gain"),
                         "split_gain": r["test"]["all"]["gain"], "band_40_up": r["test"]["bands"]["40_up"]["gain"],
                         "sharp_psnr": sharp.get("psnr"), "sharp_change_at_40": sharp.get("change_at_40"),
                         "chosen_step": r["chosen_step"], "steps": r["steps"]})
    return rows


def plot(rows: list[dict], path: Path, width: int = 640, height: int = 420) -> None:
    """Gain on the test clip against people: all windows solid, blurriest third dashed, one colour
    per model and budget (OpenCV: no matplotlib on the GPU machine)."""
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 50
    people = sorted({r["people"] for r in rows})
    values = [v for r in rows for v in (r["gain"], r["third"]) if v is not None] + [0.0]
    lo, hi = min(values) - 0.02, max(values) + 0.02

    def xy(p, v):
        x = left + (p - people[0]) / max(people[-1] - people[0], 1) * (width - left - right)
        return int(x), int(top + (hi - v) / (hi - lo) * (height - top - bottom))

    cv2.line(image, xy(people[0], 0), xy(people[-1], 0), (160, 160, 160), 1)
    for p in people:
        cv2.putText(image, str(p), (xy(p, lo)[0] - 5, height - bottom + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    for v in np.linspace(lo, hi, 5):
        cv2.putText(image, f"{v:+.2f}", (5, xy(people[0], v)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(image, "gain over the blurry input on the repeat-free test clip (dB) vs talking people in training",
                (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
    cv2.putText(image, "solid: all windows, dashed: blurriest third", (left, height - 8), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (0, 0, 0), 1)
    colours = [(200, 80, 0), (0, 120, 220), (0, 160, 0), (160, 0, 160)]
    series = sorted({(r["model"], r["minutes"]) for r in rows})
    for n, (model, minutes) in enumerate(series):
        colour = colours[n % len(colours)]
        sel = sorted((r for r in rows if (r["model"], r["minutes"]) == (model, minutes)), key=lambda r: r["people"])
        for key, dashed in (("gain", False), ("third", True)):
            pts = [xy(r["people"], r[key]) for r in sel if r[key] is not None]
            for a, b in zip(pts, pts[1:]):
                if dashed:
                    for t in np.arange(0, 1, 0.2):
                        p0 = tuple(int(a[i] + (b[i] - a[i]) * t) for i in range(2))
                        p1 = tuple(int(a[i] + (b[i] - a[i]) * (t + 0.1)) for i in range(2))
                        cv2.line(image, p0, p1, colour, 2)
                else:
                    cv2.line(image, a, b, colour, 2)
            for p in pts:
                cv2.circle(image, p, 4, colour, -1)
        cv2.putText(image, f"{model}, {minutes:g} min", (width - 170, top + 18 * (n + 1)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, colour, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[2, 4, 7], help="talking people per run (<= 7)")
    p.add_argument("--models", nargs="+", default=["chrysos"])
    p.add_argument("--budgets", type=float, nargs="+", default=[10])
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--out", default="reports/people")
    p.add_argument("--collect", action="store_true", help="only read the runs already in --out")
    args = p.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    if not args.collect:
        for k in args.counts:
            if (out / f"{k}_people" / "learning.json").exists():
                print(f"{k} people: {out / f'{k}_people'} exists, kept", flush=True)
                continue
            learning.main(["--models", *args.models, "--budgets", *map(str, args.budgets), "--root", str(root),
                           "--out", str(out / f"{k}_people"), "--train-videos", *subset(root, k)])
    rows = collect(out, args.counts, root)
    print(f"\n| talking people | training windows | model | minutes | {TEST_CLIP}: all / blurriest third | "
          "whole split: all | band >= 40 dB | sharp input: PSNR, at 40 dB | step kept / steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["model"], r["minutes"], r["people"])):
        sharp = (f"{r['sharp_psnr']:.1f} dB, {r['sharp_change_at_40']:+.3f}" if r["sharp_psnr"] is not None else "-")
        print(f"| {r['people']} | {r['windows']} | {r['model']} | {r['minutes']:g} | {r['gain']:+.3f} / {r['third']:+.3f} | "
              f"{r['split_gain']:+.3f} | {r['band_40_up']:+.3f} | {sharp} | {r['chosen_step']} / {r['steps']} |")
    (out / "people.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out / "people.png")
    print(f"\nwrote {out / 'people.json'} and {out / 'people.png'}")


if __name__ == "__main__":
    main()
