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
        "frames": {"total": int(landmarks.get("frames", 0)), "without_face": int(landmarks.get("frames_no_face", 0)),
                   "repeated": int(landmarks.get("frames_repeated", 0))},  # held frames (pipeline/dataset/holds.py)
        "tracks": {"total": int(landmarks.get("tracks", 0)), "cuts": int(landmarks.get("cuts", 0)),
                   "with_samples": len(track_counts(table))},
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


def track_counts(table: pa.Table) -> dict[tuple[str, int], dict[str, int]]:
    """Samples per face track: {(video_id, track_id): {method: count}}, in video then track order."""
    out: dict[tuple[str, int], dict[str, int]] = {}
    cols = table.select(["video_id", "track_id", "method"]).to_pydict() if table.num_rows else {}
    for v, t, m in zip(cols.get("video_id", []), cols.get("track_id", []), cols.get("method", [])):
        c = out.setdefault((v, int(t)), dict.fromkeys(METHODS, 0))
        c[m] = c.get(m, 0) + 1
    return dict(sorted(out.items()))


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
    # samples per face track (a video's tracks: landmarks stage; track 0 only in single-face videos)
    write_csv(out_dir / "tracks.csv", ["track", "video_id", "track_id", *METHODS],
              [(f"{v}/t{t:02d}", v, t, *(c[m] for m in METHODS)) for (v, t), c in track_counts(table).items()])
    write_csv(out_dir / "blur_strength.csv", ["sample_id", "method", "n_frames", "motion"],
               [(r["sample_id"], r["method"], r["n_frames"], round(r["motion"], 4)) for r in rows])


def contact_sheet(rows: list[dict], root) -> list[list[Cell]]:
    """Per sample two rows: blurry + sharp frames in FMR order (u printed), then in temporal order."""
    cells = []
    for r in rows:
        blurry, sharp = load_sample(r, root)
        start = r["start_frame"]
        track = f" track {r['track_id']}" if r.get("track_id") else ""
        cells.append([(blurry, f"blurry N={r['n_frames']}{track}")]
                     + [(s, f"u={u:.2f} t={f - start}") for s, u, f in zip(sharp, r["u"], r["frame_indices"])])
        order = np.argsort(r["frame_indices"], kind="stable")
        cells.append([(np.zeros_like(blurry), r["stop_reason"] or "temporal")]
                     + [(sharp[k], f"t={r['frame_indices'][k] - start}") for k in order])
    return cells


def pick_examples(table: pa.Table, method: str, k: int = 4) -> list[dict]:
    """A deterministic spread: the samples at evenly spaced ranks of blur strength (motion). With
    several face tracks, the sheet shows as many tracks as it has rows: each track's spread is
    taken in turn (round robin), then ordered by motion."""
    rows = sorted((r for r in table.to_pylist() if r["method"] == method), key=lambda r: (r["motion"], r["sample_id"]))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["video_id"], r.get("track_id", 0)), []).append(r)
    if not any(t for _, t in groups):  # one track per video: as before tracks
        return spread(rows, k)
    picks = [spread(g, k) for g in groups.values()]
    chosen = []
    for i in range(k):
        for g in picks:
            if i < len(g) and len(chosen) < k:
                chosen.append(g[i])
    return sorted(chosen, key=lambda r: (r["motion"], r["sample_id"]))


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


# ------------------------------------------------------------------ per video: the sharpness gate


def read_video_records(root, method: str) -> list[dict]:
    """`<root>/<method>/videos.json` (written by the averaging stage), or [] when absent."""
    import json

    path = Path(root) / method / "videos.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def no_sample_reason(record: dict, method: str) -> str | None:
    """Why a video gave no samples of `method` (None when it gave some), in words, e.g.
    'all 14 windows below the sharpness gate (median 4, threshold 100)'."""
    if record.get("skipped"):
        return f"skipped: {record['skipped']}"
    w, s = record.get("windows", {}), record.get("sharpness", {})
    gate = f"(median {_fmt(s.get('p50'))}, threshold {_fmt(s.get('threshold'))}, {record.get('space', '?')} space)"
    if method == "fixed":
        if w.get("kept", 0):
            return None
        considered = w.get("considered", 0)
        if not considered:
            return "shorter than the shortest window"
        if w.get("dropped_sharpness", 0) == considered:
            return f"all {considered} windows below the sharpness gate {gate}"
        parts = [f"{w[k]} {label}" for k, label in (("dropped_sharpness", "below the sharpness gate"),
                                                    ("dropped_no_face", "with a faceless frame"),
                                                    ("dropped_gap", "across a gap")) if w.get(k)]
        return f"all {considered} windows dropped: {', '.join(parts)} {gate if w.get('dropped_sharpness') else ''}".strip()
    if w.get("windows", 0):
        return None
    if s.get("n") and s.get("below") == s.get("n"):
        return f"all {s['n']} frames examined below the sharpness gate {gate}"
    return f"no window of min_len frames ({w.get('dropped_short', 0)} too short) {gate}"


def gate_rows(records: list[dict], method: str) -> list[tuple]:
    """One CSV row per video: its gate-value distribution against the threshold, and its windows."""
    rows = []
    for r in records:
        s, w = r.get("sharpness", {}), r.get("windows", {})
        kept = w.get("kept", 0) if method == "fixed" else w.get("windows", 0)
        dropped = w.get("dropped_sharpness") if method == "fixed" else s.get("below")
        rows.append((r["video_id"], s.get("n", 0), s.get("p10"), s.get("p25"), s.get("p50"), s.get("p75"), s.get("p90"),
                     s.get("threshold"), kept, dropped, w.get("dropped_no_face"), w.get("dropped_gap"),
                     no_sample_reason(r, method) or ""))
    return rows


GATE_HEADER = ["video_id", "values", "p10", "p25", "median", "p75", "p90", "threshold", "kept",
               "below_gate", "dropped_no_face", "dropped_gap", "no_samples_because"]


def gate_summary(records_by_method: dict[str, list[dict]]) -> dict:
    """For the metrics: per method, samples per video and the videos without samples (and why)."""
    out = {}
    for method, records in records_by_method.items():
        if not records:
            continue
        kept = {r["video_id"]: (r.get("windows", {}).get("kept" if method == "fixed" else "windows", 0)
                                if not r.get("skipped") else 0) for r in records}
        reasons = {r["video_id"]: no_sample_reason(r, method) for r in records}
        out[method] = {"samples_per_video": kept,
                       "videos_without_samples": {v: why for v, why in reasons.items() if why}}
    return out


def draw_gate_plot(records_by_method: dict[str, list[dict]], path: Path, width: int = 900) -> Path | None:
    """PNG: per video and method, a box of its gate values (p25-p75, whiskers p10-p90, median
    tick) on a log axis, the threshold as a red mark, and kept / examined counts."""
    import cv2

    lines = [(m, r) for m, recs in records_by_method.items() for r in recs]
    if not lines:
        return None
    row_h, left, right, top = 22, 260, 150, 40
    img = np.full((top + row_h * len(lines) + 30, width, 3), 255, np.uint8)
    lo, hi = 1.0, 10000.0
    x_of = lambda v: int(left + (np.log10(min(max(v, lo), hi)) - np.log10(lo)) / (np.log10(hi) - np.log10(lo))
                         * (width - left - right))
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "sharpness gate per video (variance of Laplacian, log axis); red: threshold", (8, 18), font, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    for v in (1, 10, 100, 1000, 10000):
        cv2.line(img, (x_of(v), top - 8), (x_of(v), img.shape[0] - 24), (220, 220, 220), 1)
        cv2.putText(img, str(v), (x_of(v) - 10, img.shape[0] - 8), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (method, r) in enumerate(lines):
        y = top + i * row_h + row_h // 2
        s, w = r.get("sharpness", {}), r.get("windows", {})
        kept = w.get("kept", 0) if method == "fixed" else w.get("windows", 0)
        cv2.putText(img, f"{method} {r['video_id']}"[:34], (8, y + 4), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        if s.get("n"):
            colour = (60, 140, 60) if kept else (40, 40, 200)
            cv2.line(img, (x_of(s["p10"]), y), (x_of(s["p90"]), y), colour, 1)
            cv2.rectangle(img, (x_of(s["p25"]), y - 6), (x_of(s["p75"]), y + 6), colour, -1)
            cv2.line(img, (x_of(s["p50"]), y - 8), (x_of(s["p50"]), y + 8), (0, 0, 0), 2)
        if s.get("threshold") is not None:
            cv2.line(img, (x_of(s["threshold"]), y - 9), (x_of(s["threshold"]), y + 9), (0, 0, 255), 2)
        label = "skipped" if r.get("skipped") else f"kept {kept} / {w.get('considered', s.get('n', 0))}"
        cv2.putText(img, label, (width - right + 8, y + 4), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)  # colours above are BGR, as OpenCV writes them
    return path


def write_gate_report(root, plots_dir: Path, sheets_dir: Path) -> dict:
    """Per-video gate CSVs (DVC plots), the gate PNG (with the sheets) and the metrics part."""
    records = {m: read_video_records(root, m) for m in METHODS}
    for m, recs in records.items():
        if recs:
            write_csv(plots_dir / f"sharpness_{m}.csv", GATE_HEADER, gate_rows(recs, m))
    draw_gate_plot(records, sheets_dir / "sharpness_gate.png")
    return gate_summary(records)


HOLDS_HEADER = ["video_id", "repeat_share", "mean_hold", "pictures", "cadence"]


def hold_records(landmarks_report: dict) -> dict[str, dict]:
    """Per video, the held-frame record of the landmarks stage (repeat share, mean hold, pictures,
    cadence), in video order; videos measured before held-frame detection are left out."""
    videos = landmarks_report.get("videos", {})
    return {v: videos[v]["holds"] for v in sorted(videos) if "holds" in videos[v]}


def write_hold_plot(records: dict[str, dict], out_dir: Path) -> Path:
    """reports/plots/holds.csv: each video's share of repeated frames and its cadence (a DVC plot)."""
    return write_csv(out_dir / "holds.csv", HOLDS_HEADER,
                     [[v, r["repeat_share"], r["mean_hold"], r["pictures"], r["cadence"]] for v, r in records.items()])
