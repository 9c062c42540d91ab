"""The headline metrics (`metrics/summary.json`): the few numbers people compare first, under
short flat keys, so `dvc metrics show metrics/summary.json` (one column per key) fits a
160-column terminal. The detail stays in the stages' own JSON files, the per-N CSVs and plots
(docs/evaluation.md, docs/sweeps.md).

Keys (null where the source file or entry is missing, e.g. a method not evaluated):

  n.train, n.test       samples per split, fixed + VLA (metrics/dataset.json)
  cfmd.gain             CFMD-GAN's PSNR on its main table (every FMR frame at its u, all N) minus
                        the blurry input's PSNR on the same pairs, dB
  cfmd.third            the same gain on the blurriest third of those pairs (lowest blurry PSNR), dB
  cfmd.ssim             CFMD-GAN's SSIM on the main table
  cfmd.sharp            the no-harm row: given each test window's sharp middle frame, what the change it
                        makes would cost an input 40 dB from its target, dB (0: untouched; docs/evaluation.md)
  chrysos.gain, .third, .ssim, .sharp   the same for Chrysos et al. (step-2 GAN), on the middle frame

The absolute PSNRs, the per-N, per-band and per-video rows and the resolution scored are in
metrics/eval_<model>.json, training seconds in metrics/train_*.json (`dvc metrics show` lists them
too): with the no-harm row added, they no longer fit this one-row table.

Scores are the fixed-window test samples' (the VLA ones when no fixed sample was scored).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

# The main table of each model (pipeline/eval/config.py MAIN_TABLE; repeated here so this module
# stays torch-free, tests/eval/test_summary.py checks they agree) and the baseline system's name.
MAIN_TABLE = {"cfmd": "all_u", "chrysos": "middle"}
BASELINE = "blurry"
METHODS = ("fixed", "vla")  # the first one scored is reported
# the widest the one-row table of `dvc metrics show metrics/summary.json` may be
MAX_COLUMNS = 160


def _get(tree: Mapping | None, *path: str) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _round(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def model_scores(model: str, evaluation: Mapping | None) -> dict[str, float | None]:
    """{gain, third, ssim} of `model` on its main table, all N, from metrics/eval_<model>.json
    (third: the gain on the blurriest third of the pairs, from the table's scoreboard)."""
    table = MAIN_TABLE[model]
    for method in METHODS:
        ours = _get(evaluation, method, table, model, "all")
        base = _get(evaluation, method, table, BASELINE, "all")
        if ours and ours.get("psnr") is not None:
            gain = None if not base or base.get("psnr") is None else ours["psnr"] - base["psnr"]
            third = _get(evaluation, method, table, "scoreboard", "blurriest_third", "gain")
            sharp = _get(evaluation, "sharp_input", method, "change_at_40")
            return {"gain": _round(gain, 2), "third": _round(third, 2), "ssim": _round(ours.get("ssim"), 4),
                    "sharp": _round(sharp, 2)}
    return {"gain": None, "third": None, "ssim": None, "sharp": None}


def split_samples(dataset: Mapping | None, split: str) -> int | None:
    counts = _get(dataset, "samples", split)
    return None if not isinstance(counts, Mapping) else int(sum(counts.values()))


def build_summary(dataset: Mapping | None, evaluations: Mapping[str, Mapping | None]) -> dict:
    """The nested summary (DVC flattens it to `n.train`, `cfmd.gain`, ...). `evaluations`:
    {model: eval JSON}."""
    return {
        "n": {"train": split_samples(dataset, "train"), "test": split_samples(dataset, "test")},
        "cfmd": model_scores("cfmd", evaluations.get("cfmd")),
        "chrysos": model_scores("chrysos", evaluations.get("chrysos")),
    }


def read_json(path: str | Path | None) -> dict | None:
    """A metrics file's content, None when it does not exist (a stage not run yet)."""
    if path is None or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def show_width(summary: Mapping, path: str = "metrics/summary.json") -> int:
    """Width of the table `dvc metrics show <path>` prints for `summary` (DVC 3: a Path column,
    then one column per flattened key; columns 2 spaces apart, metric columns padded by 2 more;
    values to 5 significant digits, nulls as '-')."""
    widths = [max(len("Path"), len(path)) + 2]
    for key, value in flatten(summary).items():
        text = "-" if value is None else (f"{value:.5g}" if isinstance(value, float) else str(value))
        widths.append(max(len(key), len(text)) + 4)
    return sum(widths) - 4
