"""What the evaluate stage writes besides the metrics JSON: per-pair parquet, `dvc plots` CSVs and
a PNG sheet of restored examples.

- `<plots>/<model>_<method>_vs_n.csv`: one row per N of the model's main table (CFMD-GAN: every
  FMR frame; Chrysos: the middle frame): n_frames, images, `<model>_psnr`, `blurry_psnr`,
  `<model>_ssim`, `blurry_ssim` (the blurry input's scores on the same targets);
- `<plots>/<model>_ced.csv`: the cumulative landmark-error distribution of the main table, one row
  per threshold (0 to 1.25 x the AUC threshold), a column per system and method
  (`<model>_fixed`, `blurry_fixed`, ...);
- the sheet: per sample, the blurry input, restorations (CFMD-GAN: at several u) and the ground
  truth they are compared with.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.dataset.manifest import middle_position
from pipeline.metrics import landmarks_error as lmk
from pipeline.sheets import spread, write_sheet
from pipeline.stage import write_csv

from pipeline.eval.config import BASELINE, MAIN_TABLE, EvalConfig
from pipeline.eval.scoring import Evaluation
from pipeline.eval.selection import load_for_eval
from pipeline.eval.tables import records_table
from pipeline.models.inference import DeblurModel, restore_many

CED_STEPS = 50


def write_records(path: str | Path, ev: Evaluation) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(records_table(ev), tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def plot_paths(plots_dir: str | Path, model_name: str, methods) -> dict[str, Path]:
    d = Path(plots_dir)
    return {**{f"vs_n_{m}": d / f"{model_name}_{m}_vs_n.csv" for m in methods}, "ced": d / f"{model_name}_ced.csv"}


def write_plots(plots: str | Path | dict[str, Path], summary: dict, ev: Evaluation, cfg: EvalConfig,
                model_name: str) -> list[Path]:
    """The CSVs of `plot_paths` in the folder `plots`, or at the paths of a dict keyed like it."""
    table = MAIN_TABLE[model_name]
    paths = plots if isinstance(plots, dict) else plot_paths(plots, model_name, cfg.methods)
    written = []
    for method in cfg.methods:
        cells = summary.get(method, {}).get(table, {})
        model_cells, base_cells = cells.get(model_name, {}), cells.get(BASELINE, {})
        rows = []
        for key in sorted(k for k in model_cells if k != "all"):
            m, b = model_cells[key], base_cells.get(key, {})
            rows.append([int(key[1:]), m["n"], m["psnr"], b.get("psnr"), m["ssim"], b.get("ssim")])
        written.append(write_csv(paths[f"vs_n_{method}"],
                                  ["n_frames", "images", f"{model_name}_psnr", f"{BASELINE}_psnr",
                                   f"{model_name}_ssim", f"{BASELINE}_ssim"], rows))
    thresholds = np.linspace(0.0, 1.25 * cfg.landmark_threshold, CED_STEPS + 1)
    columns, curves = [], []
    for method in cfg.methods:
        for system in (model_name, BASELINE):
            errors = [r["landmark_error"] for r in ev.records
                      if r["method"] == method and r["table"] == table and r["system"] == system]
            if errors and all(e is not None for e in errors):
                columns.append(f"{system}_{method}")
                curves.append(lmk.ced(errors, thresholds))
    rows = [[round(float(t), 6), *[float(c[i]) for c in curves]] for i, t in enumerate(thresholds)]
    written.append(write_csv(paths["ced"], ["threshold", *columns], rows))
    return written


def example_rows(ev_rows: dict[str, list[dict]], count: int) -> list[dict]:
    """`count` of the evaluated rows (all methods), evenly spread, for the example sheet."""
    return spread([r for method_rows in ev_rows.values() for r in method_rows], count)


def write_examples(path: str | Path, model: DeblurModel, rows: list[dict], root: str | Path, cfg: EvalConfig) -> Path | None:
    """PNG sheet: per sample, blurry | restorations | ground truth (see module doc)."""
    root = Path(root)
    cells = []
    for row in rows:
        title = f"blurry {row['method']} N={row['n_frames']}"
        if model.multi_output:
            u_values = list(cfg.sheet_u)
            positions = [int(np.abs(np.asarray(row["u"]) - u).argmin()) for u in u_values]
            blurry, sharp = load_for_eval(row, root, positions, cfg.resolution)
            restored = restore_many(model, blurry, u_values, cfg.batch_size)
            cells.append([(blurry, title)] + [(r, f"{model.name} u={u:g}") for r, u in zip(restored, u_values)])
            cells.append([None] + [(sharp[p], f"GT u={row['u'][p]:.2f}") for p in positions])
        else:
            blurry, sharp = load_for_eval(row, root, [middle_position(row)], cfg.resolution)
            restored = restore_many(model, blurry, [None], 1)[0]
            cells.append([(blurry, title), (restored, model.name), (sharp[middle_position(row)], "GT middle frame")])
    if not cells:
        return None
    return write_sheet(path, cells)
