"""Aggregating per-pair records into the papers' tables, the summary, and the per-pair table."""
from __future__ import annotations

import logging
import math
from collections import defaultdict

import numpy as np
import pyarrow as pa

from pipeline.metrics import fid as fid_metric
from pipeline.metrics import landmarks_error as lmk
from pipeline.eval.config import BASELINE, TABLES, EvalConfig
from pipeline.eval.scoring import SHARP_INPUT, Evaluation


log = logging.getLogger("evaluate")

def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    m = float(np.mean(v))
    return m if math.isfinite(m) else None


def _round(v, digits: int = 5):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def cell(records: list[dict], ev: Evaluation, cfg: EvalConfig) -> dict:
    """One table cell: n images and every metric over them (None where unavailable). The dlib metrics
    (identity, landmarks) cover the `n_face` images of the samples in evaluate.face_samples."""
    faced = [r for r in records if r.get("face_scored")]
    out = {"n": len(records), "n_face": len(faced),
           "psnr": _round(_mean(r["psnr"] for r in records), 4),
           "ssim": _round(_mean(r["ssim"] for r in records)),
           "lpips": _round(_mean(r["lpips"] for r in records)),
           "identity_dist": _round(_mean(r["identity_dist"] for r in faced)),
           "identity_cos": _round(_mean(r["identity_cos"] for r in faced))}
    if cfg.landmarks and faced:
        errors = [r["landmark_error"] for r in faced]
        out.update(landmark_error=_round(_mean(errors)),
                   landmark_auc=_round(lmk.auc(errors, cfg.landmark_threshold)),
                   landmark_failure=_round(lmk.failure_rate(errors, cfg.landmark_threshold)))
    else:
        out.update(landmark_error=None, landmark_auc=None, landmark_failure=None)
    fid_value = None
    if records and all(r["_pred_feature"] is not None and r["_target_feature"] is not None for r in records):
        pred = np.stack([ev.features[r["_pred_feature"]] for r in records]).astype(np.float64)
        target = np.stack([ev.features[r["_target_feature"]] for r in records]).astype(np.float64)
        fid_value = fid_metric.fid(pred, target, cfg.fid_min_images)  # None below fid_min_images images
    out["fid"] = _round(fid_value, 4)
    return out


def n_key(n: int) -> str:
    return f"N{int(n):02d}"


# The scoreboard (issue 22): where the blur is. Bands of the blurry input's PSNR against the target
# (dB; a band holds [low, high)), a pair "made worse" when the model loses more than WORSE_DB there.
BANDS = (("below_30", None, 30.0), ("30_35", 30.0, 35.0), ("35_40", 35.0, 40.0), ("40_up", 40.0, None))
WORSE_DB = 0.1


def _pairs(records: list[dict], model_name: str) -> list[tuple[dict, dict]]:
    """(model record, blurry-input record) of each pair with the same sample and target."""
    base = {(r["sample_id"], r["target_position"]): r for r in records if r["system"] == BASELINE}
    return [(r, base[(r["sample_id"], r["target_position"])]) for r in records
            if r["system"] == model_name and (r["sample_id"], r["target_position"]) in base]


def _gain_cell(pairs: list[tuple[dict, dict]]) -> dict:
    """n, the model's and the blurry input's mean PSNR / SSIM on those pairs, the gains, and the
    share of pairs the model made worse by more than WORSE_DB."""
    if not pairs:
        return {"n": 0, "psnr": None, "blurry_psnr": None, "gain": None, "ssim": None, "blurry_ssim": None,
                "ssim_gain": None, "worse_share": None}
    m, b = np.array([p[0]["psnr"] for p in pairs]), np.array([p[1]["psnr"] for p in pairs])
    ms, bs = np.array([p[0]["ssim"] for p in pairs]), np.array([p[1]["ssim"] for p in pairs])
    return {"n": len(pairs), "psnr": _round(m.mean(), 4), "blurry_psnr": _round(b.mean(), 4),
            "gain": _round((m - b).mean(), 4), "ssim": _round(ms.mean()), "blurry_ssim": _round(bs.mean()),
            "ssim_gain": _round((ms - bs).mean()), "worse_share": _round(float(np.mean(m < b - WORSE_DB)), 4)}


def scoreboard(records: list[dict], model_name: str) -> dict:
    """Where a model gains or loses, on one table's pairs (model and blurry input on the same
    targets): all pairs, each blur band of the blurry input's PSNR (< 30, 30-35, 35-40, >= 40 dB),
    the blurriest third (the third of pairs with the lowest blurry PSNR), and each test video."""
    pairs = _pairs(records, model_name)
    bands = {name: _gain_cell([p for p in pairs if (lo is None or p[1]["psnr"] >= lo) and (hi is None or p[1]["psnr"] < hi)])
             for name, lo, hi in BANDS}
    videos = sorted({p[0]["video_id"] for p in pairs})
    return {"all": _gain_cell(pairs), "blurriest_third": _gain_cell(_blurriest_third(pairs)), "bands": bands,
            "videos": {v: {"all": _gain_cell(vp := [p for p in pairs if p[0]["video_id"] == v]),
                           "blurriest_third": _gain_cell(_blurriest_third(vp))}
                       for v in videos}}


def _blurriest_third(pairs: list[tuple[dict, dict]]) -> list[tuple[dict, dict]]:
    """The third of pairs with the lowest blurry-input PSNR (ties by sample and target)."""
    ranked = sorted(pairs, key=lambda p: (p[1]["psnr"], p[0]["sample_id"], p[0]["target_position"]))
    return ranked[:len(ranked) // 3]


def sharp_input(records: list[dict], model_name: str, at_db: float = 40.0) -> dict:
    """The no-harm row (docs/evaluation.md): the model given each test window's sharp middle frame.
    `psnr`: the restoration against that frame (IDENTICAL_PSNR where untouched); `change_at_40`: what
    adding the same change costs an input `at_db` dB from its target, 10 log10(1 + 10^((at_db - psnr)
    / 10)) (the change and the input's own error independent), mean over windows; `worse_share`:
    the share of windows where that loss is more than WORSE_DB."""
    chosen = [r for r in records if r["table"] == SHARP_INPUT and r["system"] == model_name]
    if not chosen:
        return {"n": 0, "psnr": None, "ssim": None, "change_at_40": None, "worse_share": None}
    p = np.array([r["psnr"] for r in chosen])
    loss = 10 * np.log10(1 + 10 ** ((at_db - p) / 10))
    return {"n": len(p), "psnr": _round(p.mean(), 4), "ssim": _round(float(np.mean([r["ssim"] for r in chosen]))),
            "change_at_40": _round(-loss.mean(), 4), "worse_share": _round(float(np.mean(loss > WORSE_DB)), 4)}


def tables(ev: Evaluation, cfg: EvalConfig, model_name: str) -> dict:
    """{method: {table: {system: {"all": cell, "N05": cell, ...}, "scoreboard": scoreboard(...)}}}:
    the papers' cells per system, and the scoreboard of gains by blur band and video."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for r in ev.records:
        grouped[(r["method"], r["table"], r["system"])].append(r)
    out: dict = {}
    for method in cfg.methods:
        if not ev.evaluated.get(method):
            continue
        out[method] = {}
        for table in TABLES[model_name]:
            out[method][table] = {}
            for system in (model_name, BASELINE):
                recs = grouped.get((method, table, system), [])
                by_n: dict[int, list[dict]] = defaultdict(list)
                for r in recs:
                    by_n[r["n_frames"]].append(r)
                out[method][table][system] = {"all": cell(recs, ev, cfg),
                                              **{n_key(n): cell(by_n[n], ev, cfg) for n in sorted(by_n)}}
            out[method][table]["scoreboard"] = scoreboard(
                [r for r in ev.records if r["method"] == method and r["table"] == table], model_name)
    return out


def summary(ev: Evaluation, cfg: EvalConfig, model_name: str) -> dict:
    """The metrics JSON: model, samples, the tables per method, and what each metric used."""
    return {
        "model": {k: v for k, v in ev.model.items() if k in ("name", "kind", "parameters", "dtype", "trained_at")},
        "samples": {"evaluated": ev.evaluated, "available": ev.available, "split": cfg.split},
        "resolution": ev.resolution,  # the image size scored (evaluate.resolution, or the dataset's)
        **tables(ev, cfg, model_name),
        SHARP_INPUT: {method: sharp_input([r for r in ev.records if r["method"] == method], model_name)
                      for method in cfg.methods if ev.evaluated.get(method)},
        "metrics_info": ev.info,
    }


RECORD_COLUMNS = pa.schema([
    ("sample_id", pa.string()), ("video_id", pa.string()), ("method", pa.string()), ("n_frames", pa.int32()),
    ("stop_reason", pa.string()), ("motion", pa.float32()), ("table", pa.string()), ("system", pa.string()),
    ("input_u", pa.float32()), ("target_position", pa.int32()), ("target_frame", pa.int32()),
    ("target_u", pa.float32()), ("target_is_middle", pa.bool_()), ("psnr", pa.float64()), ("ssim", pa.float64()),
    ("lpips", pa.float64()), ("identity_dist", pa.float64()), ("identity_cos", pa.float64()),
    ("face_scored", pa.bool_()), ("landmark_error", pa.float64()), ("face_box", pa.string()),
])


def records_table(ev: Evaluation) -> pa.Table:
    rows = [{k: r.get(k) for k in RECORD_COLUMNS.names} for r in ev.records]
    return pa.Table.from_pylist(rows, schema=RECORD_COLUMNS)
