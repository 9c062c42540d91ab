"""Fixed-window averaging (CFMD-style): N consecutive sharp frames -> one blurry image.

Windows of every N in `windows` start every `stride` frames (from frame 0; only full windows).
A window is kept only if it spans no shot cut (the landmarks stage's `cut`), each of its frames has a
face of the same track, the frames are consecutive in the source (image sequences may have gaps), and
every frame passes the sharpness gate. Every face track of a video gets its own windows (a window
never mixes tracks); all tracks render in one decode. Rendering (one
forward decode) is `pipeline.dataset.render`.

The sharpness gate (docs/protocol.md) is the variance of the Laplacian of a grey image, >= a
threshold, for every frame of the window:
- `sharpness_space: crop` (the authors): measured on each frame's crop with the window's box,
  resized to crop.size (256): the image the dataset stores. The same face gives about the same
  number at any source resolution; a face smaller than the crop is upscaled, which smooths it
  and lowers its sharpness (so small faces are dropped, as in the authors' data).
- `sharpness_space: source` (before issue 12): each frame's tight landmark box in source pixels
  (the landmarks stage's `sharpness` column): the number grows with the face's pixel size.
The threshold is `min_sharpness`, or, with `sharpness_percentile: p`, the video's p-th percentile
of per-frame sharpness (each frame's own box, in the gate's space): a relative gate for footage
whose absolute sharpness is low but usable (`min_sharpness` is then not used).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataclasses import replace

from pipeline.dataset.chunks import Chunk, merge_outputs
from pipeline.dataset.crop import CropParams, crop_resize, face_box, laplacian_variance
from pipeline.dataset.holds import picture_view, units_param
from pipeline.dataset.interpolate import InterpParams
from pipeline.dataset.pngio import PngEncoder
from pipeline.dataset.render import Renderer, Window, window_box
from pipeline.dataset.video import VideoError, iter_frames

SHARPNESS_SPACES = ("crop", "source")


@dataclass(frozen=True)
class FixedParams:
    windows: tuple[int, ...] = (5, 7, 9, 11, 13)
    stride: int = 5
    min_sharpness: float = 100.0
    gamma: float = 1.0
    sharpness_space: str = "crop"  # crop | source
    sharpness_percentile: float | None = None  # 0-100, or None: absolute gate (min_sharpness)
    rounding: str = "truncate"  # truncate | round (blur.rounding)
    units: str = "pictures"  # blur.units: frames (the authors) | pictures (held frames skipped)

    @classmethod
    def from_params(cls, blur: dict) -> "FixedParams":
        fixed = blur.get("fixed", {})
        windows = tuple(sorted({int(n) for n in fixed.get("windows", cls.windows)}))
        if any(n < 2 for n in windows):
            raise ValueError(f"blur.fixed.windows must be >= 2 frames, got {list(windows)}")
        stride = int(fixed.get("stride", 5))
        if stride < 1:
            raise ValueError(f"blur.fixed.stride must be >= 1, got {stride}")
        space = str(fixed.get("sharpness_space", cls.sharpness_space))
        if space not in SHARPNESS_SPACES:
            raise ValueError(f"blur.fixed.sharpness_space must be one of {SHARPNESS_SPACES}, got {space!r}")
        pct = fixed.get("sharpness_percentile")
        if pct is not None:
            pct = float(pct)
            if not 0.0 <= pct <= 100.0:
                raise ValueError(f"blur.fixed.sharpness_percentile must be in [0, 100] or null, got {pct}")
        rounding = str(blur.get("rounding", cls.rounding))
        if rounding not in ("truncate", "round"):
            raise ValueError(f"blur.rounding must be truncate or round, got {rounding!r}")
        return cls(windows, stride, float(fixed.get("min_sharpness", cls.min_sharpness)), float(blur.get("gamma", 1.0)),
                   space, pct, rounding, units_param(blur, cls.units))


@dataclass
class WindowStats:
    considered: int = 0
    kept: int = 0
    dropped_cut: int = 0  # the window spans a shot cut
    dropped_no_face: int = 0
    dropped_sharpness: int = 0
    dropped_gap: int = 0
    crop_shift: int = 0
    crop_pad: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def usable(lm: dict, min_sharpness: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: has a face; passes the source-pixel sharpness gate (all True when
    `min_sharpness` is None); continues the previous frame without a gap."""
    has = lm["has_face"]
    sharp = has if min_sharpness is None else has & (np.nan_to_num(lm["sharpness"], nan=0.0) >= min_sharpness)
    follows = np.ones(len(has), dtype=bool)
    follows[1:] = np.diff(lm["frame_number"]) == 1
    return has, sharp, follows


def iter_windows(lm: dict, frame_w: int, frame_h: int, p: FixedParams, crop: CropParams, video_id: str = "",
                 stats: WindowStats | None = None, source_gate: float | None = None, track: int | None = None,
                 starts: range | None = None):
    """Windows of a video to render, in order of their first frame (then N), counting every
    decision in `stats`: a generator, so rendering can start before the whole video is planned.

    Windows across a shot cut, with a faceless frame or a gap are dropped here; so are windows below
    `source_gate` (a threshold on the landmarks' source-pixel sharpness). The crop-space gate is the
    renderer's. With `track` (a video of several tracks), only windows that overlap the track's
    frames are considered, and the sample ids name the track. `starts`: only
    windows whose first frame is in it.
    """
    has, sharp, follows = usable(lm, source_gate)
    cut = lm.get("cut")
    n_frames = len(has)
    stats = WindowStats() if stats is None else stats
    faces = np.flatnonzero(has)
    lo, hi = (int(faces[0]), int(faces[-1])) if track is not None and len(faces) else (0, n_frames)
    for s in range(0, n_frames, p.stride):
        if s > hi or (starts is not None and s >= starts.stop):
            break
        if starts is not None and s < starts.start:
            continue
        for n in p.windows:
            if s + n > n_frames or s + n <= lo:
                continue
            stats.considered += 1
            seg = slice(s, s + n)
            if cut is not None and cut[s + 1:s + n].any():
                stats.dropped_cut += 1
            elif not has[seg].all():
                stats.dropped_no_face += 1
            elif not follows[s + 1:s + n].all():
                stats.dropped_gap += 1
            elif not sharp[seg].all():
                stats.dropped_sharpness += 1
            else:
                frames = tuple(range(s, s + n))
                box, adjust = window_box(lm, frames, frame_w, frame_h, crop)
                yield Window(sample_id(video_id, n, s, track), frames, box, adjust, track=track or 0)


def plan_windows(lm: dict, frame_w: int, frame_h: int, p: FixedParams, crop: CropParams, video_id: str = ""):
    """The windows a video would render (before the crop-space gate), and why the others were dropped."""
    stats = WindowStats()
    source_gate = p.min_sharpness if p.sharpness_space == "source" and p.sharpness_percentile is None else None
    windows = list(iter_windows(lm, frame_w, frame_h, p, crop, video_id, stats, source_gate))
    return windows, stats


def frame_sharpness(src, lm: dict, frame_w: int, frame_h: int, crop: CropParams) -> np.ndarray:
    """Each frame's sharpness at the output scale: its own box (crop policy, one frame), cropped,
    resized to crop.size, variance of the Laplacian of the grey crop. NaN where no face."""
    out = np.full(len(lm["has_face"]), np.nan)
    faces = np.flatnonzero(lm["has_face"])
    if not len(faces):
        return out
    for i, frame in iter_frames(src, stop=int(faces[-1]) + 1):
        if lm["has_face"][i]:
            box, _ = face_box(lm["points"][i:i + 1], frame_w, frame_h, crop)
            out[i] = laplacian_variance(crop_resize(frame, box, crop.size, resize=crop.resize))
    return out


def gate_threshold(src, lm: dict, frame_w: int, frame_h: int, p: FixedParams, crop: CropParams,
                   frames: np.ndarray | None = None) -> float:
    """The video's sharpness threshold: min_sharpness, or its p-th percentile of per-frame sharpness
    (over `frames` only, when given: one frame per picture)."""
    if p.sharpness_percentile is None:
        return p.min_sharpness
    values = lm["sharpness"] if p.sharpness_space == "source" else frame_sharpness(src, lm, frame_w, frame_h, crop)
    keep = lm["has_face"] if frames is None else np.isin(np.arange(len(lm["has_face"])), frames) & lm["has_face"]
    values = np.asarray(values, np.float64)[keep]
    values = values[np.isfinite(values)]
    return float(np.percentile(values, p.sharpness_percentile)) if len(values) else float("inf")


QUANTILES = (5, 10, 25, 50, 75, 90, 95)


def sharpness_summary(values, threshold: float) -> dict:
    """Distribution of a video's gate values (NaN ignored) against its threshold."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    out = {"threshold": round(float(threshold), 4), "n": int(len(v)), "below": int((v < threshold).sum())}
    if len(v):
        q = np.percentile(v, QUANTILES)
        out.update({"min": round(float(v.min()), 4), "max": round(float(v.max()), 4),
                    **{f"p{k}": round(float(x), 4) for k, x in zip(QUANTILES, q)}})
    return out


def gate_dir(root, method: str) -> Path:
    """Per-video gate records, merged into `<method>/videos.json` by the stage."""
    return Path(root) / method / "gate"


def write_gate_record(root, method: str, video_id: str, record: dict) -> None:
    d = gate_dir(root, method)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{video_id}.json").write_text(json.dumps(record, sort_keys=True))


def merge_gate_records(root, method: str, catalog: list[dict], skipped: list[dict]) -> Path:
    """`<root>/<method>/videos.json`: one record per catalog video (catalog order): its window
    counts, sharpness distribution and threshold, or why it was skipped."""
    import shutil

    from pipeline.stage import write_json

    d = gate_dir(root, method)
    reasons = {s["video_id"]: s["reason"] for s in skipped}
    out = []
    for v in catalog:
        vid = v["video_id"]
        f = d / f"{vid}.json"
        rec = json.loads(f.read_text()) if f.is_file() else {}
        if vid in reasons:
            rec = {**rec, "skipped": reasons[vid]}
        out.append({"video_id": vid, **rec})
    shutil.rmtree(d, ignore_errors=True)
    path = Path(root) / method / "videos.json"
    write_json(path, out)
    return path


def sample_id(video_id: str, n: int, start: int, track: int | None = None) -> str:
    """`<video>-fixed-nNN-fSSSSSS`; in a video of several face tracks `<video>-tTT-fixed-...`."""
    return f"{video_id}{track_tag(track)}-fixed-n{n:02d}-f{start:06d}"


def track_tag(track: int | None) -> str:
    """The sample-id part naming a face track: empty for a single-track video (ids as before tracks)."""
    return "" if track is None else f"-t{track:02d}"


def as_tracks(lm: dict) -> dict[int, dict]:
    """A landmarks dict of one track, or {track: dict} of several (read_tracks), as {track: dict}."""
    return {0: lm} if "points" in lm else lm


def build_video(src, video: dict, lm: dict, root, p: FixedParams, crop: CropParams, png: PngEncoder = PngEncoder(),
                interp: InterpParams = InterpParams(), chunk: Chunk | None = None):
    """Write one video's fixed-window samples under `root`/fixed; return (rows file | None, stats).
    `interp`: frame interpolation and exposure before averaging (pipeline.dataset.interpolate).
    `chunk`: only the windows starting in the chunk, into its own files (`pipeline.dataset.chunks`;
    `merge_chunks` joins them).

    Windows are planned as the decoder reaches their first frame, so memory holds the open
    windows, not a plan of the whole video. The crop-space gate is decided on the crops being
    averaged (no second decode); a percentile gate in crop space first measures every frame."""
    import heapq

    w_, h_ = int(video["width"]), int(video["height"])
    tracks = as_tracks(lm)
    multi = len(tracks) > 1
    # blur.units: pictures: windows of consecutive pictures, one frame each (the view); frames: as is
    views = {t: picture_view(tl) if p.units == "pictures" else (tl, None) for t, tl in tracks.items()}
    if multi and p.sharpness_percentile is not None:  # one video threshold: every track's frames pooled
        pooled = {k: np.concatenate([view[k] for view, _ in views.values()]) for k in ("has_face", "sharpness")}
        if p.sharpness_space != "source":
            pooled["sharpness"] = np.concatenate([frame_sharpness(src, tl, w_, h_, crop)[_all(views[t][1], tl)]
                                                  for t, tl in tracks.items()])
        threshold = float(np.percentile(v, p.sharpness_percentile)) if len(
            v := pooled["sharpness"][pooled["has_face"] & np.isfinite(pooled["sharpness"])]) else float("inf")
    else:
        t0 = next(iter(tracks))
        threshold = gate_threshold(src, tracks[t0], w_, h_, p, crop, views[t0][1])
    source = p.sharpness_space == "source"
    stats = WindowStats()

    def planned_windows(starts, counts: WindowStats, shadow: bool = False):
        """Every track's windows (first frames in `starts(view frames)`), in order of their first frame."""
        return heapq.merge(*(_in_source(iter_windows(view, w_, h_, p, crop, video["video_id"], counts,
                                                     threshold if source else None, t if multi else None,
                                                     starts(frames)), frames, video["video_id"],
                                        t if multi else None, shadow)
                             for t, (view, frames) in views.items()), key=lambda w: w.frames[0])

    if chunk is None:
        planned = planned_windows(lambda frames: None, stats)
    else:  # the previous chunk's windows that reach into this one decide its frames' regions too
        ahead = planned_windows(lambda frames: _view_range(frames, chunk.start, chunk.stop), stats)
        behind = planned_windows(lambda frames: _view_range(frames, chunk.start, chunk.start, max(p.windows) - 1),
                                 WindowStats(), shadow=True)
        planned = heapq.merge((w for w in behind if w.end >= chunk.start), ahead, key=lambda w: w.frames[0])
    renderer = Renderer(src, video, lm, root, "fixed", p.gamma, crop, png, p.rounding,
                        gate=None if source else threshold, measure=True, interp=interp, tracks=tracks,
                        store=None if chunk is None else (chunk.start, chunk.stop),
                        suffix="" if chunk is None else chunk.suffix)
    nxt = next(planned, None)
    if nxt is not None:
        for i, frame in iter_frames(src, start=nxt.frames[0]):
            while nxt is not None and nxt.frames[0] <= i:
                renderer.add(nxt)
                nxt = next(planned, None)
            if nxt is None and i > renderer.last_needed:
                break
            renderer.push(i, frame)
        if nxt is not None:
            raise VideoError(f"{src.path}: video ended before frame {nxt.frames[0]} "
                             f"(catalog: {len(next(iter(tracks.values()))['has_face'])} frames)")
    part = renderer.close()
    stats.kept = renderer.kept
    stats.dropped_sharpness += renderer.dropped_sharpness
    stats.crop_shift, stats.crop_pad = renderer.crop_adjust["shift"], renderer.crop_adjust["pad"]
    values = renderer.window_sharpness if not source else [
        float(np.nanmin(view["sharpness"][list(w)])) for view, frames in views.values()
        for w in _source_windows(view, p, None if chunk is None else _view_range(frames, chunk.start, chunk.stop))]
    if chunk is None:
        write_gate_record(root, "fixed", video["video_id"], gate_record(stats.as_dict(), p, values, threshold))
    else:  # raw, for merge_chunks
        write_gate_record(root, "fixed", f"{video['video_id']}{chunk.suffix}",
                          {"values": [float(v) for v in values], "threshold": threshold})
    return part, stats


def gate_record(windows: dict, p: FixedParams, values, threshold: float) -> dict:
    """A video's gate record: its window counts and sharpness distribution against the threshold."""
    source = p.sharpness_space == "source"
    return {"windows": windows, "space": p.sharpness_space, "percentile": p.sharpness_percentile,
            "measure": "lowest frame sharpness of each window" + (" (crop at output size, window's box)"
                                                                   if not source else " (source-pixel landmark box)"),
            "sharpness": sharpness_summary(values, threshold)}


def merge_chunks(root, video_id: str, chunks: list[Chunk], stats: list[dict], p: FixedParams):
    """A chunked video's files and gate record, as one sequential run writes them (`run.run_method`)."""
    part = merge_outputs(root, "fixed", video_id, chunks)
    totals = {k: sum(s.get(k, 0) for s in stats) for k in WindowStats().as_dict()}
    values, threshold = [], None
    for c in chunks:
        f = gate_dir(root, "fixed") / f"{video_id}{c.suffix}.json"
        rec = json.loads(f.read_text())
        f.unlink()
        values += rec["values"]
        threshold = rec["threshold"]
    write_gate_record(root, "fixed", video_id, gate_record(totals, p, values, threshold))
    return part, totals


def chunk_merger(p: FixedParams):
    """The stage's `merge_chunks`, or None (no chunks) where chunks would repeat the costliest
    part: a crop-space percentile gate measures every frame of the video before any window."""
    if p.sharpness_percentile is not None and p.sharpness_space == "crop":
        return None
    return functools.partial(merge_chunks, p=p)


def _view_range(frames: np.ndarray | None, start: int, stop: int, before: int = 0) -> range:
    """The view indices (`holds.picture_view`; None: the frames themselves) of source frames
    [start, stop), extended by `before` indices back."""
    lo, hi = (start, stop) if frames is None else (int(np.searchsorted(frames, start)), int(np.searchsorted(frames, stop)))
    return range(max(lo - before, 0), hi)


def _all(frames: np.ndarray | None, lm: dict) -> np.ndarray:
    """`frames`, or every frame of the landmarks when None."""
    return np.arange(len(lm["has_face"])) if frames is None else frames


def _in_source(windows, frames: np.ndarray | None, video_id: str, track: int | None, shadow: bool = False):
    """Windows planned on a picture view (`holds.picture_view`) named by their source frames; the
    sample id by the first frame, as a window of frames is. Unchanged when the view is the
    landmarks themselves (no held frames, or blur.units: frames). `shadow`: marked as a chunk's
    shadow windows (`render.Window.shadow`)."""
    same = frames is None or (len(frames) and frames[-1] == len(frames) - 1)
    for w in windows:
        if not same:
            source = tuple(int(frames[k]) for k in w.frames)
            w = replace(w, sample_id=sample_id(video_id, len(source), source[0], track), frames=source)
        yield replace(w, shadow=True) if shadow else w


def _source_windows(lm: dict, p: FixedParams, starts: range | None = None):
    """Frame ranges of the windows whose frames all have a face (source-space gate values);
    `starts`: only those whose first frame is in it."""
    has, cut = lm["has_face"], lm.get("cut")
    for s in range(0, len(has), p.stride):
        if starts is not None and s not in starts:
            continue
        for n in p.windows:
            if s + n <= len(has) and has[s:s + n].all() and (cut is None or not cut[s + 1:s + n].any()):
                yield range(s, s + n)
