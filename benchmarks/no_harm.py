"""What the trained models change in a face that needs no deblurring (issue "no harm").

    python benchmarks/no_harm.py [--weights models/cfmd.pt models/chrysos_gan.pt] [--root data/dataset]

For every fixed test window, the model is given (a) the window's sharp middle frame itself and
(b) the window's blurry image, at the evaluation's resolution (CFMD-GAN at u = 0.5, against the
middle frame for both). Each change the model makes, d = restoration - input (float, 0-255), is
split into parts whose energies add up:

- colour: the per-channel mean of d (a global colour or brightness shift);
- contrast: what an affine map of the input per channel (gain and offset, least squares) explains
  beyond that;
- smooth: the rest, low-passed (Gaussian, sigma 2 px at 64 px): shading, soft shape changes;
- texture: the rest of the rest (fine detail, edges, noise).

Printed per model and input: PSNR of the restoration against its input, each part's share of the
change's energy, the sharpness ratio (variance of the Laplacian of the restoration / of the input;
1 = as sharp), and for (b) the PSNR gain over the blurry input against the middle frame, in the
evaluation's blur bands (< 35, 35-40, >= 40 dB). Rows in reports/no_harm/no_harm.json.

`--scales 0.25 0.5 0.75 1` measures a lever that needs no training: the restoration's change
scaled down, input + s (restoration - input), in float before rounding. For each s: the
evaluation's no-harm row (`pipeline.eval.tables.sharp_input`: a sharp input's PSNR to itself and
what that change costs a 40 dB input) and its scoreboard (`pipeline.eval.tables.scoreboard`: the
gain over the blurry input on the whole split, each repeat-free test video and its blurriest
third, the 35-40 and >= 40 dB bands). Rows in reports/no_harm/scales.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from learning import repeat_free_test_videos  # noqa: E402  (benchmarks/learning.py)
from pipeline.dataset.manifest import CENTRE_U, middle_position  # noqa: E402
from pipeline.eval.config import BASELINE  # noqa: E402
from pipeline.eval.scoring import IDENTICAL_PSNR, SHARP_INPUT  # noqa: E402
from pipeline.eval.tables import scoreboard, sharp_input  # noqa: E402
from pipeline.metrics.pixel import ssim  # noqa: E402
from pipeline.models.common import to_float, to_uint8  # noqa: E402
from pipeline.eval.selection import load_for_eval  # noqa: E402
from pipeline.models.inference import load_model, restore_many  # noqa: E402
from pipeline.stage import load_params  # noqa: E402
from pipeline.train.data import training_rows  # noqa: E402

PARTS = ("colour", "contrast", "smooth", "texture")
BANDS = (("below_35", None, 35.0), ("35_40", 35.0, 40.0), ("40_up", 40.0, None))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def parts(inp: np.ndarray, out: np.ndarray, sigma: float) -> dict[str, float]:
    """Energy (mean square, 0-255 units) of each part of out - inp (module doc)."""
    x, y = inp.astype(np.float64), out.astype(np.float64)
    d = y - x
    colour = d.mean(axis=(0, 1), keepdims=True) * np.ones_like(d)
    affine = np.empty_like(d)
    for c in range(3):  # y ~ a x + b per channel
        xc, yc = x[..., c].ravel(), y[..., c].ravel()
        a, b = np.polyfit(xc, yc, 1) if xc.std() > 0 else (1.0, float((yc - xc).mean()))
        affine[..., c] = a * x[..., c] + b - x[..., c]
    contrast = affine - colour
    rest = d - affine
    smooth = cv2.GaussianBlur(rest, (0, 0), sigma)
    texture = rest - smooth
    return {name: float((p ** 2).mean()) for name, p in zip(PARTS, (colour, contrast, smooth, texture))}


def scaled(model, image: np.ndarray, u, scales: list[float]) -> list[np.ndarray]:
    """input + s (restoration - input) for each s, rounded to uint8 as a restoration is."""
    x = to_float(image, model.device)
    with torch.inference_mode():
        y = model.restore(x, u)
    return [to_uint8(x + s * (y - x))[0] for s in scales]


def scale_sweep(model, rows, root: Path, resolution, scales: list[float], clips: list[str]) -> list[dict]:
    """The no-harm row and the scoreboard of each scaled change (module doc), on every fixed test
    window; `clips`: the repeat-free test videos, each reported on all its windows and its blurriest third."""
    u = CENTRE_U if model.multi_output else None
    records: dict[float, list[dict]] = {s: [] for s in scales}
    for row in rows:
        mid = middle_position(row)
        blurry, sharp = load_for_eval(row, root, [mid], resolution)
        frame = sharp[mid]
        base = {"sample_id": row["sample_id"], "video_id": row["video_id"], "target_position": mid}
        blurry_rec = {**base, "table": "pixel", "system": BASELINE, "psnr": psnr(blurry, frame),
                      "ssim": float(ssim(blurry, frame[None])[0])}
        for s, out_b, out_s in zip(scales, scaled(model, blurry, u, scales), scaled(model, frame, u, scales)):
            records[s] += [blurry_rec,
                           {**base, "table": "pixel", "system": model.name, "psnr": psnr(out_b, frame),
                            "ssim": float(ssim(out_b, frame[None])[0])},
                           {**base, "table": SHARP_INPUT, "system": model.name,
                            "psnr": min(psnr(out_s, frame), IDENTICAL_PSNR), "ssim": float(ssim(out_s, frame[None])[0])}]
    out = []
    for s in scales:
        board = scoreboard([r for r in records[s] if r["table"] == "pixel"], model.name)
        out.append({"model": model.name, "scale": s, "sharp_input": sharp_input(records[s], model.name),
                    "split": board["all"]["gain"],
                    "clips": {v: {"all": board["videos"][v]["all"]["gain"],
                                  "third": board["videos"][v]["blurriest_third"]["gain"]} for v in clips},
                    "band_35_40": board["bands"]["35_40"], "band_40_up": board["bands"]["40_up"]})
    return out


def print_sweep(rows: list[dict]) -> None:
    clips = list(rows[0]["clips"]) if rows else []
    print("\n| model | scale | sharp input: PSNR to itself, cost at 40 dB | split gain | "
          + "".join(f"{v}: all / blurriest third | " for v in clips) + "band 35-40 (n) | band >= 40 (n, worse) |")
    print("|---" * (6 + len(clips)) + "|")
    for r in rows:
        b1, b2, si = r["band_35_40"], r["band_40_up"], r["sharp_input"]
        print(f"| {r['model']} | {r['scale']:g} | {si['psnr']:.1f} dB, {si['change_at_40']:+.3f} | {r['split']:+.3f} | "
              + "".join(f"{c['all']:+.3f} / {c['third']:+.3f} | " for c in r["clips"].values())
              + f"{b1['gain']:+.3f} ({b1['n']}) | {b2['gain']:+.3f} ({b2['n']}, {100 * b2['worse_share']:.0f}%) |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["models/cfmd.pt", "models/chrysos_gan.pt"])
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="reports/no_harm")
    p.add_argument("--scales", nargs="+", type=float, help="measure the scaled change instead (module doc)")
    p.add_argument("--landmarks-report", default="data/landmarks/report.json",
                   help="with --scales: where the repeat-free test videos are read from")
    args = p.parse_args(argv)
    resolution = load_params("evaluate", path=args.params)["evaluate"].get("resolution")
    rows = training_rows(Path(args.root), ["fixed"], split="test")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.scales:
        clips = repeat_free_test_videos(rows, Path(args.landmarks_report))
        sweep = [r for w in args.weights for r in scale_sweep(load_model(w, "cpu"), rows, Path(args.root), resolution,
                                                               args.scales, clips)]
        print_sweep(sweep)
        (out / "scales.json").write_text(json.dumps(sweep, indent=1) + "\n")
        return
    results = []
    for weights in args.weights:
        model = load_model(weights, "cpu")
        u = CENTRE_U if model.multi_output else None
        acc = {"sharp": [], "blurry": []}
        for row in rows:
            mid = middle_position(row)
            blurry, sharp = load_for_eval(row, Path(args.root), [mid], resolution)
            frame = sharp[mid]
            for name, inp in (("sharp", frame), ("blurry", blurry)):
                out = restore_many(model, inp, [u], 1)[0]
                e = parts(inp, out, sigma=2.0 * inp.shape[0] / 64)
                acc[name].append({"video": row["video_id"], "psnr_to_input": psnr(out, inp), **e,
                                  "sharpness_ratio": sharpness(out) / max(sharpness(inp), 1e-9),
                                  "blurry_psnr": psnr(blurry, frame), "gain": psnr(out, frame) - psnr(blurry, frame)})
        for name, recs in acc.items():
            energy = {k: float(np.mean([r[k] for r in recs])) for k in PARTS}
            total = sum(energy.values())
            row = {"model": model.name, "input": name, "n": len(recs),
                   "psnr_to_input": float(np.mean([r["psnr_to_input"] for r in recs])),
                   "shares": {k: v / total if total else 0.0 for k, v in energy.items()},
                   "sharpness_ratio": float(np.median([r["sharpness_ratio"] for r in recs]))}
            if name == "blurry":
                row["bands"] = {}
                for band, lo, hi in BANDS:
                    sel = [r for r in recs if (lo is None or r["blurry_psnr"] >= lo) and (hi is None or r["blurry_psnr"] < hi)]
                    row["bands"][band] = {"n": len(sel), "gain": float(np.mean([r["gain"] for r in sel])) if sel else None}
            results.append(row)
    print(f"\n{len(rows)} fixed test windows at {resolution} px\n")
    print("| model | input | PSNR of the restoration to its input | colour | contrast | smooth | texture | "
          "sharpness ratio | gain < 35 / 35-40 / >= 40 dB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        bands = " / ".join(f"{c['gain']:+.3f} (n {c['n']})" if c["n"] else "-" for c in r["bands"].values()) \
            if "bands" in r else "-"
        print(f"| {r['model']} | {r['input']} | {r['psnr_to_input']:.2f} dB | "
              + " | ".join(f"{100 * r['shares'][k]:.0f}%" for k in PARTS)
              + f" | {r['sharpness_ratio']:.3f} | {bands} |")
    (out / "no_harm.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
