"""Evaluation of trained deblurring models on the test split, and loading them for inference.

- `models`: `load_model(path)` -> a `DeblurModel` (CFMD-GAN or the Chrysos et al. two-step model)
  with one `restore(blurry, u)` call, batched, bf16 autocast on GPU;
- `core`: which test samples, which (output, target) pairs make each table, per-image scores
  (metric networks loaded once), and the aggregation into the papers' tables;
- `outputs`: the metrics JSON, per-sample parquet, `dvc plots` CSVs and the PNG sheet.

The stage is `stages/evaluate.py`; users' own photos go through `python -m pipeline.deblur`.
"""
