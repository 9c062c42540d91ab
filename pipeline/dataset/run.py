"""Running an averaging method over every video: per-video isolation, cleanup, statistics.

A video that is a bad *input* (decoder error mid-stream, no face anywhere, missing landmarks:
`pipeline.dataset.video.is_input_error`) is logged, its partial outputs removed, and listed as
skipped with the reason; the run goes on. Anything else (disk full, permissions, out of memory,
a bug) fails the stage, and the previous outputs stay in place (`pipeline.stage.replacing_dir`).
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.dataset.ingest import source_of, with_absolute_paths
from pipeline.dataset.landmarks import read_tracks
from pipeline.dataset import chunks
from pipeline.dataset.framestore import index_path
from pipeline.dataset.parallel import map_videos, resolve
from pipeline.dataset.counts import counts_by
from pipeline.dataset.samples import FLUSH_ROWS, SAMPLES_SCHEMA, part_path
from pipeline.dataset.video import is_input_error

log = logging.getLogger(__name__)


def landmarks_file(landmarks_dir: str | Path, video_id: str) -> Path:
    return Path(landmarks_dir) / f"{video_id}.parquet"


def _remove_partial(root: Path, method: str, video_id: str) -> None:
    shutil.rmtree(root / method / "blurry" / video_id, ignore_errors=True)
    store = root / method / "frames" / f"{video_id}.bin"
    part = part_path(root, method, video_id)
    chunk_files = [p for f in (store, part) for p in f.parent.glob(f"{glob.escape(f.name)}.c*")]
    for p in [store, index_path(store), part, *chunk_files]:
        p.unlink(missing_ok=True)  # chunks of a failed video may remove each other's files


def _one_task(task: tuple, build, method: str, landmarks_dir: str, root: str, min_frames: int = 1, **kwargs):
    """One video, or one chunk of it (`pipeline.dataset.chunks`): (video id, rows, stats, error)."""
    video, chunk = task
    if chunk is not None:
        kwargs["chunk"] = chunk
    vid = video["video_id"]
    if int(video["n_frames"]) < min_frames:
        return vid, None, {}, (f"{vid}: {video['n_frames']} frames, too few for any {method} window "
                               f"(the shortest is {min_frames} frames)")
    lm_path = landmarks_file(landmarks_dir, vid)
    if not lm_path.is_file():
        return vid, None, {}, f"{vid}: no landmarks file ({lm_path}); the landmarks stage skipped it"
    tracks = read_tracks(lm_path)  # {track: landmarks}; windows never mix tracks
    if not any(t["has_face"].any() for t in tracks.values()):
        return vid, None, {}, f"{vid}: no face in any frame"
    lm = tracks if len(tracks) > 1 else next(iter(tracks.values()))
    try:
        part, stats = build(source_of(video), video, lm, Path(root), **kwargs)
    except Exception as e:  # a bad input: report, clean up, go on; anything else fails the stage
        _remove_partial(Path(root), method, vid)
        if not is_input_error(e):
            raise
        return vid, None, {}, f"{video['path']}: {method} failed: {e}"
    stats = stats.as_dict() if hasattr(stats, "as_dict") else dict(stats)
    n = 0 if part is None else pq.ParquetFile(part).metadata.num_rows
    if chunk is None:
        log.info("%s: %d %s samples (%s)", vid, n, method,
                 ", ".join(f"{k}={v}" for k, v in sorted(stats.items()) if v))
    return vid, n, stats, None


def _merged(tasks: list, results: list, method: str, root, merge_chunks) -> list:
    """Per video, its chunks' results as one (in catalog order): outputs merged, stats summed."""
    out, i = [], 0
    while i < len(tasks):
        video, chunk = tasks[i]
        if chunk is None:
            out.append(results[i])
            i += 1
            continue
        group = results[i:i + chunk.count]
        chunks = [c for _, c in tasks[i:i + chunk.count]]
        i += chunk.count
        vid = video["video_id"]
        err = next((r[3] for r in group if r[3]), None)
        if err:  # the same input error in every chunk (they read one video)
            _remove_partial(Path(root), method, vid)
            out.append((vid, None, {}, err))
            continue
        part, stats = merge_chunks(root, vid, chunks, [r[2] for r in group])
        n = 0 if part is None else pq.ParquetFile(part).metadata.num_rows
        log.info("%s: %d %s samples in %d chunks (%s)", vid, n, method, len(chunks),
                 ", ".join(f"{k}={v}" for k, v in sorted(stats.items()) if v))
        out.append((vid, n, stats, None))
    return out


def run_method(method: str, build, catalog: list[dict], landmarks_dir, root, n_jobs=1, backend=None,
               min_frames: int = 1, chunk_frames: int | None = 0, merge_chunks=None,
               **kwargs) -> tuple[Path, dict, list[dict]]:
    """Apply `build(src, video, landmarks, root, **kwargs) -> (rows file | None, stats)` to every
    video with at least `min_frames` frames (the shortest window; shorter videos are skipped with
    that reason), then merge the per-video rows into `<root>/<method>/samples.parquet`, batch by batch and
    in catalog order (so the result does not depend on n_jobs or the backend).

    With `merge_chunks` (fixed windows), long videos are split into chunks
    (`chunks.plan(catalog, n_jobs, chunk_frames)`), `build(..., chunk=c)` renders each, and
    `merge_chunks(root, video_id, chunks, their stats) -> (rows file | None, stats)` joins them
    into the files of a sequential run.

    Returns (samples.parquet, summed stats, skipped [{video_id, reason}]).
    """
    videos = [with_absolute_paths(v) for v in catalog]
    n_workers, _ = resolve(n_jobs, backend)
    tasks = chunks.plan(videos, n_workers, chunk_frames) if merge_chunks else [(v, None) for v in videos]
    results = map_videos(_one_task, tasks, n_jobs=n_jobs, backend=backend, desc=method, build=build,
                         method=method, landmarks_dir=os.path.abspath(landmarks_dir),
                         root=os.path.abspath(root), min_frames=min_frames, **kwargs)
    results = _merged(tasks, results, method, os.path.abspath(root), merge_chunks)
    totals, skipped, parts = {}, [], []
    for vid, n, stats, err in results:
        if err:
            log.warning("skipped %s", err)
            skipped.append({"video_id": vid, "reason": err})
            continue
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
        if n:
            parts.append(part_path(root, method, vid))
    out = Path(root) / method / "samples.parquet"
    with pq.ParquetWriter(out, SAMPLES_SCHEMA, compression="zstd") as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=FLUSH_ROWS):
                writer.write_batch(batch)
    shutil.rmtree(Path(root) / method / "samples", ignore_errors=True)
    return out, totals, skipped


def build_stage(method: str, build, catalog_path, landmarks_dir, root, metrics_path, compute: dict,
                min_frames: int = 1, merge_chunks=None, **kwargs) -> Path:
    """A whole averaging stage: fresh `<root>/<method>/`, samples.parquet, skipped.json, metrics."""
    from pipeline.dataset.ingest import read_catalog
    from pipeline.stage import replacing_dir, write_json

    out = Path(root) / method
    catalog = read_catalog(catalog_path)
    with replacing_dir(out) as work:  # the previous <root>/<method> survives a failed run
        path, stats, skipped = run_method(method, build, catalog, landmarks_dir, work.parent,
                                          n_jobs=compute["n_jobs"], backend=compute.get("backend"),
                                          min_frames=min_frames, chunk_frames=compute.get("chunk_frames"),
                                          merge_chunks=merge_chunks, **kwargs)
        samples = pq.read_table(path, columns=["split", "n_frames", "pictures", "gradient_energy"])
        write_json(work / "skipped.json", skipped)
    path = out / path.name
    lengths = samples["n_frames"].to_numpy()
    pictures = samples["pictures"].to_numpy()
    energy = samples["gradient_energy"].to_numpy()
    write_json(metrics_path, {
        "windows": stats, "videos_skipped": len(skipped),
        "samples": {"total": samples.num_rows, **counts_by(samples, "split", "n_frames")},
        "length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 3), "max": int(lengths.max())}
        if len(lengths) else {},
        # ghosting measures: gradient_energy (pipeline.dataset.interpolate; blur.interpolate lowers it), and
        # the share of averaged frames that are distinct pictures (below 1: held frames averaged, discrete
        # ghosts; blur.units: pictures gives 1)
        "blurry": {"gradient_energy": round(float(energy.mean()), 3),
                   "pictures_per_frame": round(float(pictures.sum() / lengths.sum()), 4),
                   "held_frames": int(lengths.sum() - pictures.sum())} if len(energy) else {},
    })
    print(f"{method}: {samples.num_rows} samples, {len(skipped)} videos skipped -> {out}")
    return path
