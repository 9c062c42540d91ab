"""Evaluate a deblurring model on the test split: samples, (output, target) pairs, scores, tables.

Tables (the papers' shape), per method (`fixed` and `vla` test samples separately), each per N
and over all N, each with the blurry input itself as a baseline row (system `blurry`: the same
targets, the blurry image as the "restoration"), so every number has a floor:

- CFMD-GAN, `all_u` (CFMD Table 4): the restoration at every FMR frame's u against that frame;
- CFMD-GAN, `centre_fmr` (Table 2): the centre output, u = 0.5, against its FMR target (the frame
  whose u is nearest 0.5: exactly 0.5 for odd N with the authors' u formula);
- CFMD-GAN, `centre_middle`: the same centre output against the temporal middle frame, the target
  of the single-output models;
- Chrysos et al., `middle`: its one output against the temporal middle frame.

Scores per pair: PSNR, SSIM, LPIPS (when available), identity distance (dlib embeddings,
Euclidean and cosine) and landmark error (dlib 68 points, normalised by the ground-truth box
diagonal); per cell of a table: their means, the landmark AUC up to the threshold and failure
rate, and FID between the cell's outputs and its targets (with n, the number of images).

All images of one sample are landmarked in one face box: dlib's detection on the temporal middle
sharp frame, else the box the crop policy implies (recorded per pair as `face_box`), as Chrysos
et al. initialise landmark localisation with the ground-truth box. Restorations are quantised to
uint8 before scoring.
"""
from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipeline.dataset.manifest import METHODS, _read_rgb, load_sharp, read_manifests
from pipeline.metrics import fid as fid_metric
from pipeline.metrics import landmarks_error as lmk
from pipeline.metrics.identity import cosine_distance, identity_distance
from pipeline.metrics.lpips import lpips_distance, resolve_lpips
from pipeline.metrics.pixel import psnr, ssim
from pipeline.train.data import middle_position

from pipeline.models.inference import DeblurModel

log = logging.getLogger("evaluate")

BASELINE = "blurry"
TABLES = {"cfmd": ("all_u", "centre_fmr", "centre_middle"), "chrysos": ("middle",)}
MAIN_TABLE = {"cfmd": "all_u", "chrysos": "middle"}
CENTRE_U = 0.5


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class EvalConfig:
    split: str = "test"
    methods: tuple[str, ...] = METHODS
    max_samples: Any = None  # per method: an int, {method: int}, or None (every sample)
    batch_size: int = 16  # restorations and FID images per forward pass
    fid: bool = True
    identity: bool = True
    landmarks: bool = True
    landmark_threshold: float = lmk.THRESHOLD
    detect_upsample: int = 0  # dlib HOG upsampling when finding the face in a 256 crop
    lpips: str = "auto"  # auto | required | none
    lpips_net: str = "alex"
    crop_widen: float = 0.5  # the crop policy (crop.widen): fallback face box
    face_workers: Any = "auto"  # processes for the dlib metrics; auto: 0 on CPU, spare cores with CUDA
    prefetch: int = 2  # samples read ahead by background threads
    sheet_samples: int = 3
    sheet_u: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    device: str = "auto"
    amp: str = "auto"
    channels_last: Any = "auto"

    @classmethod
    def from_params(cls, section: Mapping[str, Any], crop: Mapping[str, Any] | None = None) -> "EvalConfig":
        """The params.yaml `evaluate` section (+ `crop.widen`) -> settings; unknown keys raise."""
        s = dict(section or {})
        known = {"split", "methods", "max_samples", "batch_size", "fid", "identity", "landmarks", "lpips",
                 "lpips_net", "face_workers", "prefetch", "sheet", "runtime"}
        unknown = set(s) - known
        if unknown:
            raise ValueError(f"evaluate: unknown keys {sorted(unknown)}")
        lm = dict(s.pop("landmarks", {}) or {})
        sheet = dict(s.pop("sheet", {}) or {})
        rt = dict(s.pop("runtime", {}) or {})
        for where, block, keys in (("landmarks", lm, {"enabled", "threshold", "upsample"}),
                                   ("sheet", sheet, {"samples", "u"}),
                                   ("runtime", rt, {"device", "amp", "channels_last"})):
            if set(block) - keys:
                raise ValueError(f"evaluate.{where}: unknown keys {sorted(set(block) - keys)}")
        methods = s.pop("methods", METHODS)
        methods = METHODS if methods == "both" else (methods,) if isinstance(methods, str) else tuple(methods)
        if not methods or set(methods) - set(METHODS):
            raise ValueError(f"evaluate.methods must be drawn from {METHODS}, got {methods!r}")
        cfg = cls(methods=methods, landmarks=bool(lm.get("enabled", True)),
                  landmark_threshold=float(lm.get("threshold", lmk.THRESHOLD)),
                  detect_upsample=int(lm.get("upsample", 0)),
                  sheet_samples=int(sheet.get("samples", 3)),
                  sheet_u=tuple(float(u) for u in sheet.get("u", cls.sheet_u)),
                  crop_widen=float((crop or {}).get("widen", 0.5)), **rt, **s)
        if cfg.batch_size < 1:
            raise ValueError("evaluate.batch_size must be >= 1")
        return cfg

    def quota(self, method: str) -> int | None:
        m = self.max_samples
        if isinstance(m, Mapping):
            m = m.get(method)
        if m is not None and int(m) < 0:
            raise ValueError(f"evaluate.max_samples must be >= 0 or null, got {m}")
        return None if m is None else int(m)

    def workers(self, device: torch.device) -> int:
        if self.face_workers == "auto":
            return min(max((os.cpu_count() or 1) - 2, 1), 8) if device.type == "cuda" else 0
        return int(self.face_workers)


# ------------------------------------------------------------------------------ samples


def spread(rows: list[dict], k: int | None) -> list[dict]:
    """`k` rows spread over the N values (round robin over N, evenly spaced within each N)."""
    if k is None or k >= len(rows):
        return rows
    groups: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["n_frames"]].append(r)
    ns, quota = sorted(groups), defaultdict(int)
    assigned = 0
    while assigned < k:
        for n in ns:
            if assigned < k and quota[n] < len(groups[n]):
                quota[n] += 1
                assigned += 1
    out = []
    for n in ns:
        g = groups[n]
        out += [g[i] for i in np.linspace(0, len(g) - 1, quota[n]).round().astype(int)] if quota[n] else []
    return sorted(out, key=lambda r: (r["n_frames"], r["sample_id"]))


def select_rows(root: str | Path, cfg: EvalConfig) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """{method: rows to evaluate}, {method: rows available} for the configured split."""
    table = read_manifests(root, split=cfg.split)
    chosen, available = {}, {}
    for method in cfg.methods:
        part = table.filter(pc.equal(table["method"], method))
        rows = sorted(part.to_pylist(), key=lambda r: r["sample_id"])
        available[method] = len(rows)
        chosen[method] = spread(rows, cfg.quota(method))
    return chosen, available


def centre_position(row: dict) -> int:
    """FMR position whose u is nearest 0.5 (the first of two equally near, to 1e-6)."""
    return int(np.round(np.abs(np.asarray(row["u"], np.float64) - CENTRE_U), 6).argmin())


@dataclass(frozen=True)
class Pair:
    table: str
    system: str  # the model's name or BASELINE
    input_u: float | None  # u fed to CFMD-GAN; None for the Chrysos model and the baseline
    target: int  # FMR position of the ground-truth frame


def plan(model_name: str, row: dict) -> list[Pair]:
    """Every (output, target) pair one sample contributes to the model's tables."""
    mid = middle_position(row)
    pairs = []
    if model_name == "cfmd":
        for k, u in enumerate(row["u"]):
            pairs += [Pair("all_u", "cfmd", float(u), k), Pair("all_u", BASELINE, None, k)]
        for table, target in (("centre_fmr", centre_position(row)), ("centre_middle", mid)):
            pairs += [Pair(table, "cfmd", CENTRE_U, target), Pair(table, BASELINE, None, target)]
    elif model_name == "chrysos":
        pairs += [Pair("middle", "chrysos", None, mid), Pair("middle", BASELINE, None, mid)]
    else:
        raise ValueError(f"unknown model {model_name!r}")
    return pairs


def load_for_eval(row: dict, root: Path, positions: list[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    blurry = _read_rgb(root / row["blurry_path"])
    sharp = load_sharp(row, positions, blurry.shape[0], root)
    return blurry, dict(zip(positions, sharp))


def prefetched(fn, items: list, ahead: int) -> Iterable:
    """fn(item) for each item, computed up to `ahead` items in advance on background threads."""
    if ahead <= 0:
        for it in items:
            yield it, fn(it)
        return
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        queue = [pool.submit(fn, it) for it in items[:ahead]]
        for i, it in enumerate(items):
            result = queue[i].result()
            if i + ahead < len(items):
                queue.append(pool.submit(fn, items[i + ahead]))
            queue[i] = None
            yield it, result


# ------------------------------------------------------------------------------ restoration


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Bx3xHxW float in [0, 1] -> BxHxWx3 uint8 (rounded)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def restore_many(model: DeblurModel, blurry: np.ndarray, us: list[float | None], batch_size: int) -> np.ndarray:
    """The blurry uint8 image restored at each u (one image for the Chrysos model): NxHxWx3 uint8."""
    x = torch.from_numpy(blurry).permute(2, 0, 1).float().div(255)[None].to(model.device)
    out = []
    for i in range(0, len(us), batch_size):
        chunk = us[i:i + batch_size]
        u = torch.tensor(chunk, dtype=torch.float32) if model.multi_output else None
        out.append(to_uint8(model.restore(x.expand(len(chunk), -1, -1, -1), u)))
    return np.concatenate(out)


# ------------------------------------------------------------------------------ face metrics (dlib)


@functools.lru_cache(maxsize=4)
def _face_tools(upsample: int, widen: float, identity: bool):
    from pipeline.metrics.face import FaceShapes
    from pipeline.metrics.identity import FaceEmbedder

    return FaceShapes(upsample, widen), (FaceEmbedder() if identity else None)


def face_data(images: dict, box_image_key, upsample: int, widen: float, identity: bool) -> dict:
    """dlib on one sample's images (run in a worker process or inline): the face box found on
    `images[box_image_key]` (the temporal middle sharp frame), then per image its 68 points and
    (when `identity`) its 128-d embedding, all in that box."""
    shapes, embedder = _face_tools(upsample, widen, identity)
    box, source = shapes.face_box(images[box_image_key])
    out = {"box": box, "box_source": source, "points": {}, "embedding": {}}
    for key, image in images.items():
        shape = shapes.shape(image, box)
        out["points"][key] = shapes.points(shape)
        if embedder is not None:
            out["embedding"][key] = embedder.embed(image, shape)
    return out


class _Inline:
    """A Future-like wrapper for work done at once (no worker processes)."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


# ------------------------------------------------------------------------------ the evaluation


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


class Scorer:
    """The metric networks, loaded once: FID Inception and LPIPS on the device; dlib on the CPU
    (in `workers` processes when > 0)."""

    def __init__(self, cfg: EvalConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.fid = fid_metric.resolve_fid(cfg.fid, device, cfg.batch_size)
        self.lpips = resolve_lpips(cfg.lpips, cfg.lpips_net, device)
        self.face = cfg.landmarks or cfg.identity
        self.workers = cfg.workers(device) if self.face else 0
        # spawn: the workers only run dlib, and must not inherit a CUDA context
        self.pool = (ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
                     if self.workers > 0 else None)
        if self.face and self.pool is None:
            _face_tools(cfg.detect_upsample, cfg.crop_widen, cfg.identity)  # load dlib once, fail early

    def info(self) -> dict:
        """What each metric used, or why it is unavailable (kept short: DVC shows it as columns)."""
        return {"fid": self.fid.metadata(), "lpips": self.lpips.metadata(),
                "identity": {"available": self.cfg.identity}, "landmarks": {"available": self.cfg.landmarks,
                                                                            "threshold": self.cfg.landmark_threshold}}

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
            return pairs, load_for_eval(row, root, positions)

        for (method, row), (pairs, (blurry, sharp)) in prefetched(load, work, cfg.prefetch):
            pending.append(_score_sample(model, scorer, cfg, row, pairs, blurry, sharp, ev, feature_index))
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
                  feature_index: dict):
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
    faces = scorer.submit_faces(images, ("gt", mid))
    records = []
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


def _finish(item, cfg: EvalConfig, ev: Evaluation) -> None:
    records, faces = item
    data = faces.result() if faces is not None else None
    for rec in records:
        pred, target = rec.pop("_keys")
        if data is None:
            rec.update(identity_dist=None, identity_cos=None, landmark_error=None, face_box=None)
            ev.records.append(rec)
            continue
        rec["face_box"] = data["box_source"]
        if cfg.identity:
            a, b = data["embedding"][pred], data["embedding"][target]
            rec["identity_dist"], rec["identity_cos"] = identity_distance(a, b), cosine_distance(a, b)
        else:
            rec["identity_dist"] = rec["identity_cos"] = None
        rec["landmark_error"] = (lmk.normalised_error(data["points"][pred], data["points"][target])
                                 if cfg.landmarks else None)
        ev.records.append(rec)


# ------------------------------------------------------------------------------ tables


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    m = float(np.mean(v))
    return m if math.isfinite(m) else None


def _round(v, digits: int = 5):
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


def cell(records: list[dict], ev: Evaluation, cfg: EvalConfig) -> dict:
    """One table cell: n images and every metric over them (None where unavailable)."""
    out = {"n": len(records),
           "psnr": _round(_mean(r["psnr"] for r in records), 4),
           "ssim": _round(_mean(r["ssim"] for r in records)),
           "lpips": _round(_mean(r["lpips"] for r in records)),
           "identity_dist": _round(_mean(r["identity_dist"] for r in records)),
           "identity_cos": _round(_mean(r["identity_cos"] for r in records))}
    if cfg.landmarks:
        errors = [r["landmark_error"] for r in records]
        out.update(landmark_error=_round(_mean(errors)),
                   landmark_auc=_round(lmk.auc(errors, cfg.landmark_threshold)),
                   landmark_failure=_round(lmk.failure_rate(errors, cfg.landmark_threshold)))
    else:
        out.update(landmark_error=None, landmark_auc=None, landmark_failure=None)
    fid_value = None
    if records and all(r["_pred_feature"] is not None and r["_target_feature"] is not None for r in records):
        pred = np.stack([ev.features[r["_pred_feature"]] for r in records]).astype(np.float64)
        target = np.stack([ev.features[r["_target_feature"]] for r in records]).astype(np.float64)
        fid_value = fid_metric.fid(pred, target)  # None below two images
    out["fid"] = _round(fid_value, 4)
    return out


def n_key(n: int) -> str:
    return f"N{int(n):02d}"


def tables(ev: Evaluation, cfg: EvalConfig, model_name: str) -> dict:
    """{method: {table: {system: {"all": cell, "N05": cell, ...}}}}."""
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
    return out


def summary(ev: Evaluation, cfg: EvalConfig, model_name: str) -> dict:
    """The metrics JSON: model, samples, the tables per method, and what each metric used."""
    return {
        "model": {k: v for k, v in ev.model.items() if k in ("name", "kind", "parameters", "dtype")},
        "samples": {"evaluated": ev.evaluated, "available": ev.available, "split": cfg.split},
        **tables(ev, cfg, model_name),
        "metrics_info": ev.info,
    }


RECORD_COLUMNS = pa.schema([
    ("sample_id", pa.string()), ("video_id", pa.string()), ("method", pa.string()), ("n_frames", pa.int32()),
    ("stop_reason", pa.string()), ("motion", pa.float32()), ("table", pa.string()), ("system", pa.string()),
    ("input_u", pa.float32()), ("target_position", pa.int32()), ("target_frame", pa.int32()),
    ("target_u", pa.float32()), ("target_is_middle", pa.bool_()), ("psnr", pa.float64()), ("ssim", pa.float64()),
    ("lpips", pa.float64()), ("identity_dist", pa.float64()), ("identity_cos", pa.float64()),
    ("landmark_error", pa.float64()), ("face_box", pa.string()),
])


def records_table(ev: Evaluation) -> pa.Table:
    rows = [{k: r.get(k) for k in RECORD_COLUMNS.names} for r in ev.records]
    return pa.Table.from_pylist(rows, schema=RECORD_COLUMNS)
