"""The front page's picture (README.md): what the pipeline makes and what the models do with it.

One row per test window: the blurry image the data stages made, three of its sharp frames in FMR
order (u = 0, 0.5, 1), CFMD-GAN's restoration at u = 0.5 and the Chrysos model's, as
`pipeline.deblur --output crop` restores a face (the model's correction at its training size
added to the 256-px crop), each captioned with its PSNR against the frame it is scored on (the
centre FMR frame for CFMD-GAN, the temporal middle frame for the Chrysos model) beside the
blurry input's. One window of nine frames per test video, at the upper quartile of its landmark
motion (a clearly moving face); the choice is deterministic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.dataset.manifest import centre_position, load_sample, middle_position, sample_rows
from pipeline.sheets import Cell, write_sheet

TILE = 160  # px per cell: a 6-column strip about 970 px wide


def pick_rows(root: str | Path, count: int, n_frames: int = 9, quantile: float = 0.75) -> list[dict]:
    """Per test video (sorted, at most `count`), its fixed window of `n_frames` frames at the
    `quantile` of its landmark motion: a clearly moving face, not the most extreme ghosting."""
    rows = [r for r in sample_rows(root, ["fixed"], "test") if r["n_frames"] == n_frames]
    chosen = []
    for video in sorted({r["video_id"] for r in rows})[:count]:
        mine = sorted((r for r in rows if r["video_id"] == video), key=lambda r: (r.get("motion") or 0.0, r["sample_id"]))
        chosen.append(mine[int(quantile * (len(mine) - 1))])
    return chosen


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    from pipeline.metrics.pixel import psnr as batch_psnr

    return float(batch_psnr(a[None], b[None])[0])


def figure_rows(root: str | Path, models: dict, count: int = 3) -> list[list[Cell]]:
    """Sheet rows (see the module doc); `models`: {"cfmd": DeblurModel, "chrysos": DeblurModel}."""
    from pipeline.deblur import restore_crop

    sheet = []
    for row in pick_rows(root, count):
        blurry, sharp = load_sample(row, root)
        n = row["n_frames"]
        u = np.asarray(row["u"])
        cells: list[Cell] = [(blurry, f"blurry N={n}")]
        for target in (0.0, 0.5, 1.0):
            k = int(np.abs(u - target).argmin())
            cells.append((sharp[k], f"sharp u={u[k]:.2f}"))
        centre, middle = sharp[centre_position(row)], sharp[middle_position(row)]
        if "cfmd" in models:
            out = restore_crop(models["cfmd"], blurry, [0.5])[0]
            cells.append((out, f"CFMD {psnr(out, centre):.2f} ({psnr(blurry, centre):.2f})"))
        if "chrysos" in models:
            out = restore_crop(models["chrysos"], blurry, [None])[0]
            cells.append((out, f"Chrysos {psnr(out, middle):.2f} ({psnr(blurry, middle):.2f})"))
        sheet.append(cells)
    return sheet


def write_figure(path: str | Path, root: str | Path, models: dict, count: int = 3) -> Path:
    return write_sheet(path, figure_rows(root, models, count), tile=TILE,
                       title="blurry | sharp frames in FMR order | restorations: PSNR dB (blurry input's)")
