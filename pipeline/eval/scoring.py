"""The evaluation loop: restore each sample, score its pairs, collect per-pair records."""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.dataset.manifest import CENTRE_U, middle_position
from pipeline.dataset.parallel import exit_with_parent
from pipeline.metrics import fid as fid_metric
from pipeline.metrics import landmarks_error as lmk
from pipeline.metrics.identity import cosine_distance, identity_distance
from pipeline.metrics.lpips import lpips_distance, resolve_lpips
from pipeline.metrics.pixel import psnr, ssim

from pipeline.eval.config import BASELINE, EvalConfig
from pipeline.eval.faces import face_data, face_tools
from pipeline.eval.selection import Pair, load_for_eval, plan, prefetched, select_rows, spread_over_n
from pipeline.models.inference import DeblurModel, restore_many

log = logging.getLogger("evaluate")

@dataclass
class Evaluation:
    """Per-pair records (one dict each), the FID features they refer to, and what was used."""

    model: dict
    records: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)  # float32 (2048,) per unique image
    available: dict[str, int] = field(default_factory=dict)
    evaluated: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    rows: dict[str, list[dict]] = field(default_factory=dict)  # the manifest rows evaluated, per method
    seconds: float = 0.0
    resolution: int | None = None  # the side of the images scored


class _Inline:
    """A Future-like wrapper for work done at once (no worker processes)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class Scorer:
    """The metric networks, loaded once: FID Inception and LPIPS on the device; dlib on the CPU
    (in `workers` processes when > 0)."""

    def __init__(self, cfg: EvalConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.fid = fid_metric.resolve_fid(cfg.fid, device, cfg.batch_size)
        self.lpips = resolve_lpips(cfg.lpips, cfg.lpips_net, device)
        self.face = cfg.landmarks or cfg.identity
        self.workers = cfg.workers(device) if self.face else 0
        # spawn: the workers only run dlib, and must not inherit a CUDA context; they end with the
        # stage even when it is killed outright (exit_with_parent)
        self.pool = (ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=exit_with_parent, initargs=(os.getpid(),))
                     if self.workers > 0 else None)
        if self.face and self.pool is None:
            face_tools(cfg.detect_upsample, cfg.crop_widen, cfg.identity)  # load dlib once, fail early

    def info(self) -> dict:
        """What each metric used, or why it is unavailable (kept short: DVC shows it as columns)."""
        subset = {"face_samples": self.cfg.face_samples}  # the dlib metrics' stated subset (null: every sample)
        return {"fid": self.fid.metadata(self.cfg.fid_min_images), "lpips": self.lpips.metadata(),
                "identity": {"available": self.cfg.identity, **subset},
                "landmarks": {"available": self.cfg.landmarks, "threshold": self.cfg.landmark_threshold, **subset}}

    def submit_faces(self, images: dict, box_key):
        args = (images, box_key, self.cfg.detect_upsample, self.cfg.crop_widen, self.cfg.identity)
        if not self.face:
            return None
        if self.pool is None:
            return _Inline(face_data(*args))
        return self.pool.submit(face_data, *args)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


def evaluate(model: DeblurModel, root: str | Path, cfg: EvalConfig, progress_every: float = 10.0) -> Evaluation:
    """Score `model` on the configured test samples (see the module doc)."""
    root = Path(root)
    t0 = time.time()
    chosen, available = select_rows(root, cfg)
    with_faces = {r["sample_id"] for m, rows in chosen.items() for r in spread_over_n(rows, cfg.face_quota(m))}
    scorer = Scorer(cfg, model.device)
    ev = Evaluation(model=model.metadata(), available=available,
                    evaluated={m: len(r) for m, r in chosen.items()}, info=scorer.info(), rows=chosen)
    total = sum(ev.evaluated.values())
    if total == 0:
        scorer.close()
        raise ValueError(f"{root}: no {cfg.split} samples made by {list(cfg.methods)} in the manifests "
                         f"(max_samples {cfg.max_samples})")
    log.info("evaluating %s (%s) on %s samples (%s available) of the %s split; FID %s; LPIPS %s; dlib workers %d",
             model.name, model.path, ev.evaluated, available, cfg.split,
             "on" if scorer.fid.extractor else f"off ({scorer.fid.reason})",
             "on" if scorer.lpips.model else f"off ({scorer.lpips.reason})", scorer.workers)
    feature_index: dict[tuple, int] = {}
    pending: list[tuple[list[dict], Any]] = []  # scored samples waiting for their dlib results
    done, last_report = 0, time.time()
    try:
        work = [(m, r) for m in cfg.methods for r in chosen[m]]

        def load(item):
            method, row = item
            pairs = plan(model.name, row)
            positions = sorted({p.target for p in pairs} | {middle_position(row)})
            return pairs, load_for_eval(row, root, positions, cfg.resolution)

        for (method, row), (pairs, (blurry, sharp)) in prefetched(load, work, cfg.prefetch):
            ev.resolution = int(blurry.shape[0])
            pending.append(_score_sample(model, scorer, cfg, row, pairs, blurry, sharp, ev, feature_index,
                                         with_faces=row["sample_id"] in with_faces))
            done += 1
            if len(pending) > 2 * max(scorer.workers, 1):
                _finish(pending.pop(0), cfg, ev)
            if time.time() - last_report >= progress_every or done == total:
                last_report = time.time()
                log.info("%s: %d/%d samples, %d pairs, %.1f s", model.name, done, total,
                         len(ev.records) + sum(len(p[0]) for p in pending), time.time() - t0)
        while pending:
            _finish(pending.pop(0), cfg, ev)
    finally:
        scorer.close()
    ev.seconds = time.time() - t0
    return ev


def _score_sample(model, scorer: Scorer, cfg: EvalConfig, row, pairs: list[Pair], blurry, sharp, ev: Evaluation,
                  feature_index: dict, with_faces: bool = True):
    sid = row["sample_id"]
    us = sorted({p.input_u for p in pairs if p.system != BASELINE}, key=lambda u: -1 if u is None else u)
    outputs = dict(zip(us, restore_many(model, blurry, us, cfg.batch_size)))

    # every distinct image of the sample, by key
    images = {("blurry",): blurry, **{("gt", k): img for k, img in sharp.items()},
              **{("out", u): img for u, img in outputs.items()}}

    def pred_key(p: Pair):
        return ("blurry",) if p.system == BASELINE else ("out", p.input_u)

    # pixel metrics, batched over distinct (prediction, target) pairs
    pair_keys = list(dict.fromkeys((pred_key(p), ("gt", p.target)) for p in pairs))
    preds = np.stack([images[a] for a, _ in pair_keys])
    targets = np.stack([images[b] for _, b in pair_keys])
    scores = {"psnr": psnr(preds, targets, model.device), "ssim": ssim(preds, targets, model.device)}
    if scorer.lpips.model is not None:
        scores["lpips"] = np.concatenate([
            lpips_distance(scorer.lpips.model, preds[i:i + cfg.batch_size], targets[i:i + cfg.batch_size], model.device)
            for i in range(0, len(preds), cfg.batch_size)])
    pair_scores = {pk: {name: float(v[i]) for name, v in scores.items()} for i, pk in enumerate(pair_keys)}

    # FID features of the images not seen before (targets are shared by several rows)
    if scorer.fid.extractor is not None:
        new = [k for k in images if (sid, *k) not in feature_index]
        if new:
            feats = scorer.fid.extractor.features(np.stack([images[k] for k in new]))
            for k, f in zip(new, feats):
                feature_index[(sid, *k)] = len(ev.features)
                ev.features.append(f.astype(np.float32))

    mid = middle_position(row)
    faces = scorer.submit_faces(images, ("gt", mid)) if with_faces else None
    records = [_sharp_input_record(model, row, sharp[mid], mid, cfg.batch_size)]
    for p in pairs:
        pk = (pred_key(p), ("gt", p.target))
        rec = {
            "sample_id": sid, "video_id": row["video_id"], "method": row["method"], "n_frames": row["n_frames"],
            "stop_reason": row["stop_reason"], "motion": row.get("motion"),
            "table": p.table, "system": p.system, "input_u": p.input_u,
            "target_position": p.target, "target_frame": row["frame_indices"][p.target],
            "target_u": float(row["u"][p.target]), "target_is_middle": p.target == mid,
            "psnr": pair_scores[pk]["psnr"], "ssim": pair_scores[pk]["ssim"],
            "lpips": pair_scores[pk].get("lpips"),
            "_pred_feature": feature_index.get((sid, *pk[0])), "_target_feature": feature_index.get((sid, *pk[1])),
            "_keys": pk,
        }
        records.append(rec)
    return records, faces


SHARP_INPUT = "sharp_input"  # the no-harm row's table: the model given the sharp frame itself
IDENTICAL_PSNR = 100.0  # dB recorded where the restoration of a sharp frame is that frame, bit for bit


def _sharp_input_record(model, row, frame: np.ndarray, position: int, batch_size: int) -> dict:
    """The no-harm row (docs/evaluation.md): the model given the window's sharp middle frame as its
    input (the N = 1 case; CFMD-GAN at u = 0.5), scored against that frame: how far a restoration
    moves a face that needs none."""
    u = CENTRE_U if model.multi_output else None
    out = restore_many(model, frame, [u], batch_size)
    p = min(float(psnr(out, frame[None], model.device)[0]), IDENTICAL_PSNR)
    return {"sample_id": row["sample_id"], "video_id": row["video_id"], "method": row["method"],
            "n_frames": row["n_frames"], "stop_reason": row["stop_reason"], "motion": row.get("motion"),
            "table": SHARP_INPUT, "system": model.name, "input_u": u, "target_position": position,
            "target_frame": row["frame_indices"][position], "target_u": float(row["u"][position]),
            "target_is_middle": True, "psnr": p, "ssim": float(ssim(out, frame[None], model.device)[0]),
            "lpips": None, "_pred_feature": None, "_target_feature": None, "_keys": None}


def _finish(item, cfg: EvalConfig, ev: Evaluation) -> None:
    records, faces = item
    data = faces.result() if faces is not None else None
    for rec in records:
        keys = rec.pop("_keys")
        if data is None or keys is None:
            rec.update(face_scored=False, identity_dist=None, identity_cos=None, landmark_error=None, face_box=None)
            ev.records.append(rec)
            continue
        pred, target = keys
        rec["face_scored"], rec["face_box"] = True, data["box_source"]
        if cfg.identity:
            a, b = data["embedding"][pred], data["embedding"][target]
            rec["identity_dist"], rec["identity_cos"] = identity_distance(a, b), cosine_distance(a, b)
        else:
            rec["identity_dist"] = rec["identity_cos"] = None
        rec["landmark_error"] = (lmk.diagonal_error(data["points"][pred], data["points"][target])
                                 if cfg.landmarks else None)
        ev.records.append(rec)


