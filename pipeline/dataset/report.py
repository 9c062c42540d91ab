"""The dataset report: summary metrics, DVC plot tables, and contact sheets to look at."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset.counts import counts_by
from pipeline.dataset.manifest import METHODS, STOP_REASONS, load_sample
from pipeline.sheets import Cell, spread, write_sheet
from pipeline.stage import write_csv

TILE = 112


def summary(table: pa.Table, ingest: dict, landmarks: dict) -> dict:
    """Numbers for `dvc metrics show/diff`: counts, VLA lengths, stop reasons, rejects, faceless frames."""
    out = {
        "samples": {"total": table.num_rows, **counts_by(table, "split", "method")},
        "by_n": counts_by(table, "method", "n_frames"),
        "videos": {"used": int(ingest.get("videos", 0)), "rejected": int(ingest.get("videos_rejected", 0)),
                   "without_face": int(landmarks.get("videos_without_face", 0))},
        "frames": {"total": int(landmarks.get("frames", 0)), "without_face": int(landmarks.get("frames_no_face", 0))},
    }
    vla = table.filter(pc.equal(table["method"], "vla"))
    lengths = vla["n_frames"].to_numpy()
    if len(lengths):
        q = np.percentile(lengths, [25, 50, 75])
        out["vla_length"] = {"min": int(lengths.min()), "p25": float(q[0]), "median": float(q[1]),
                             "mean": round(float(lengths.mean()), 3), "p75": float(q[2]), "max": int(lengths.max())}
    reasons = vla["stop_reason"].to_pylist()
    out["stop_reasons"] = {r: reasons.count(r) for r in STOP_REASONS}
    motion = table["motion"].to_numpy()
    if len(motion):
        out["motion_px"] = {m: round(float(np.mean(motion[np.asarray(table["method"].to_pylist()) == m])), 3)
                            for m in METHODS if m in set(table["method"].to_pylist())}
    return out


def write_plots(table: pa.Table, out_dir: Path) -> None:
    """CSV tables that dvc.yaml declares as plots (histograms, stop reasons, blur strength)."""
    rows = table.select(["sample_id", "method", "n_frames", "stop_reason", "motion"]).to_pylist()
    for m in METHODS:
        counts: dict[int, int] = {}
        for r in rows:
            if r["method"] == m:
                counts[r["n_frames"]] = counts.get(r["n_frames"], 0) + 1
        write_csv(out_dir / f"n_frames_{m}.csv", ["n_frames", "samples"], sorted(counts.items()))
    reasons = [r["stop_reason"] for r in rows if r["method"] == "vla"]
    write_csv(out_dir / "stop_reasons.csv", ["stop_reason", "samples"], [(s, reasons.count(s)) for s in STOP_REASONS])
    write_csv(out_dir / "blur_strength.csv", ["sample_id", "method", "n_frames", "motion"],
               [(r["sample_id"], r["method"], r["n_frames"], round(r["motion"], 4)) for r in rows])


def contact_sheet(rows: list[dict], root) -> list[list[Cell]]:
    """Per sample two rows: blurry + sharp frames in FMR order (u printed), then in temporal order."""
    cells = []
    for r in rows:
        blurry, sharp = load_sample(r, root)
        start = r["start_frame"]
        cells.append([(blurry, f"blurry N={r['n_frames']}")]
                     + [(s, f"u={u:.2f} t={f - start}") for s, u, f in zip(sharp, r["u"], r["frame_indices"])])
        order = np.argsort(r["frame_indices"], kind="stable")
        cells.append([(np.zeros_like(blurry), r["stop_reason"] or "temporal")]
                     + [(sharp[k], f"t={r['frame_indices'][k] - start}") for k in order])
    return cells


def pick_examples(table: pa.Table, method: str, k: int = 4) -> list[dict]:
    """A deterministic spread: the samples at evenly spaced ranks of blur strength (motion)."""
    rows = sorted((r for r in table.to_pylist() if r["method"] == method), key=lambda r: (r["motion"], r["sample_id"]))
    return spread(rows, k)


def write_sheets(table: pa.Table, root, out_dir: Path, k: int = 4) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for m in METHODS:
        rows = pick_examples(table, m, k)
        if rows:
            written.append(write_sheet(out_dir / f"{m}.png", contact_sheet(rows, root), tile=TILE,
                                       title=f"{m}: blurry, sharp frames in FMR order (u, time), then temporal "
                                             "order; low to high motion"))
    return written
