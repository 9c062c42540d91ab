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
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.dataset.manifest import CENTRE_U, middle_position  # noqa: E402
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["models/cfmd.pt", "models/chrysos_gan.pt"])
    p.add_argument("--root", default="data/dataset")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="reports/no_harm")
    args = p.parse_args(argv)
    resolution = load_params("evaluate", path=args.params)["evaluate"].get("resolution")
    rows = training_rows(Path(args.root), ["fixed"], split="test")
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "no_harm.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
