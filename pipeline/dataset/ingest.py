"""Ingest: the catalog of usable videos, their train/test split, and the rejects with reasons."""
from __future__ import annotations

import hashlib
import math
import os
import logging
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.parallel import map_videos
from pipeline.dataset.video import (VideoError, VideoSource, discover, image_files, printable_path, probe,
                                    walk_source)

log = logging.getLogger(__name__)

CATALOG_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("kind", pa.string()),
    ("annot_dir", pa.string()),
    ("split", pa.string()),
    ("fps", pa.float32()),
    ("n_frames", pa.int32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("declared_frames", pa.int32()),
    ("truncated", pa.string()),  # why the usable part (n_frames) ends early: `truncated at frame K: ...`; null: whole
    ("input_sha256", pa.string()),  # the video's bytes (or its frames') and its .pts files: stages after ingest
])                                  # re-run when an input changes in place, though its listing may not


def split_hash(video_id: str, salt: str) -> float:
    """The video's position in [0, 1) of the hashed order (sha256 of `salt:video_id`)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{video_id}".encode()).digest()[:8], "big") / 2**64


def n_test_videos(n_videos: int, test_fraction: float) -> int:
    """How many of `n_videos` go to the test split: round(fraction x n), halves up, but at least
    one test and one train video whenever the fraction is strictly between 0 and 1 and there are
    two or more videos (17 videos at 0.2 -> 3; 3 at 0.2 -> 1; 1 at 0.2 -> 0)."""
    k = math.floor(test_fraction * n_videos + 0.5)
    if n_videos >= 2 and 0 < test_fraction < 1:
        k = min(max(k, 1), n_videos - 1)
    return max(0, min(k, n_videos))


def assign_splits(video_ids: list[str], test_videos: list[str], test_fraction: float,
                  salt: str) -> dict[str, str]:
    """{video_id: "train" | "test"}: the explicit test list when given (e.g. the 300VW 9-video
    list; it wins over the fraction), else the videos ranked by the hash of `salt:id` and the
    first n_test_videos(n, fraction) of them taken as test, so the fraction is exact even for a
    small folder (a per-video hash threshold gave 1 test video of 17 at 0.2).

    Hashing the id (not the position in the folder) keeps the order fixed when videos are added
    or removed: each addition moves at most the videos at the boundary of the ranking. A split is
    per video, so no video can span two splits.
    """
    if test_videos:
        explicit = set(map(str, test_videos))
        return {v: "test" if v in explicit else "train" for v in video_ids}
    ranked = sorted(video_ids, key=lambda v: (split_hash(v, salt), v))
    test = set(ranked[:n_test_videos(len(ranked), test_fraction)])
    return {v: "test" if v in test else "train" for v in video_ids}


def input_digest(src: VideoSource) -> str:
    """sha256 of what the later stages read of a video: its file's bytes (an image sequence: each
    frame's name and bytes) and its annotation files' names and bytes. In the catalog, so editing a
    `.pts` file or replacing a video in place re-runs the stages that read them."""
    h = hashlib.sha256(src.kind.encode())
    files = image_files(src.path) if src.kind == "images" else [Path(src.path)]
    if src.annot_dir:
        files += sorted(Path(src.annot_dir).glob("*.pts"))
    for f in files:
        h.update(f"\0{f.name}\0".encode("utf-8", "surrogateescape"))
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _probe_one(src: VideoSource, image_fps: float):
    try:
        info = probe(src, image_fps=image_fps)
        return src, (info, input_digest(src)), None
    except VideoError as e:
        return src, None, str(e)
    except Exception as e:  # a decoder crash on one file must not end a run over hundreds
        return src, None, f"{src.path}: unexpected error while probing: {e!r}"


def build_catalog(source: str, params: dict, n_jobs: int = 1, excluded=()) -> tuple[pa.Table, list[dict]]:
    """Probe every video under `source` (not searching the folders in `excluded`: the pipeline's
    outputs); return (catalog table, rejects [{path, reason}]). A video used only in part
    (`truncated`) is catalogued and listed in the rejects too, with the reason."""
    sources, dup_rejects = discover(source, excluded)
    rejects = [{"path": p, "reason": r if r.startswith(p) else f"{p}: {r}"} for p, r in dup_rejects]
    # probe through absolute paths (workers may run elsewhere); the catalog keeps the paths as found
    absolute = [VideoSource(s.video_id, os.path.abspath(s.path), s.kind,
                            os.path.abspath(s.annot_dir) if s.annot_dir else None) for s in sources]
    results = map_videos(_probe_one, absolute, n_jobs=n_jobs, desc="ingest",
                         image_fps=float(params.get("image_fps", 30.0)))
    rows = []
    test_videos = [str(v) for v in params.get("test_videos") or []]
    usable = []
    for src, (_, probed, err) in zip(sources, results):
        if err is not None:
            log.warning("rejected %s", err)
            rejects.append({"path": src.path, "reason": err})
            continue
        info, digest = probed
        if info.truncated:
            log.warning("%s: %s", src.path, info.truncated)
            rejects.append({"path": src.path, "reason": f"{src.path}: {info.truncated}"})
        usable.append((src, info, digest))
    ids = [src.video_id for src, _, _ in usable]
    if test_videos and not set(test_videos) & set(ids):
        # a list for another folder (params.yaml's names the embedded samples): no test split at all
        # would leave nothing to evaluate, so the hashed fraction applies
        log.warning("ingest.test_videos names none of the %d videos under %s: using the hashed "
                    "test_fraction instead (set test_videos: [] to silence this)", len(ids), source)
        test_videos = []
    # the split ranks the usable videos together (an exact fraction), so it is drawn after probing
    splits = assign_splits(ids, test_videos,
                           float(params.get("test_fraction", 0.2)), str(params.get("split_salt", "split-v1")))
    for src, info, digest in usable:
        split = splits[src.video_id]
        log.info("%s: %d frames %dx%d @ %.2f fps -> %s", src.video_id, info.n_frames,
                 info.width, info.height, info.fps, split)
        rows.append({**asdict(src), "split": split, **asdict(info), "input_sha256": digest})
    unknown = set(test_videos) - {r["video_id"] for r in rows}
    if unknown:
        log.warning("ingest.test_videos names ids not found under %s: %s", source, sorted(unknown))
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    return table, sorted(rejects, key=lambda r: r["path"])


def list_source(source: str | Path, excluded=()) -> dict:
    """A listing of everything under `source` for DVC to hash in place of the folder itself:
    {entries: {relative path: [size, mtime_ns] | "unreadable: <why>"}}. Folders are walked as
    ingest walks them (`walk_source`: links to folders followed, each folder once, the pipeline's
    outputs in `excluded` left out), so a change inside a linked folder re-runs ingest. Symbolic
    links to files are followed for their size and time; a dangling or looping one is listed, not
    fatal (ingest rejects it with its reason). VideoError if `source` is not a folder."""
    root = Path(source)
    if not root.is_dir():
        raise VideoError(f"{root}: the video source folder does not exist or is not a folder (set ingest.source); "
                         "nothing was changed")
    folders, problems = walk_source(root, excluded)
    entries = {}
    for here, _, filenames in folders:
        for name in filenames:
            path = here / name
            rel = os.path.relpath(path, root)
            try:
                st = os.stat(path)
                entries[rel] = [st.st_size, st.st_mtime_ns]
            except OSError as e:
                entries[rel] = f"unreadable: {e.strerror}"
    for path, reason in problems:
        entries[os.path.relpath(path, printable_path(root))] = f"unreadable: {reason}"
    return {"source": printable_path(source), "entries": entries}


def check_source(source: str | Path, outputs) -> None:
    """VideoError unless `source` lies apart from the pipeline's outputs (`outputs`: paths from
    dvc.yaml, `pipeline.stage.pipeline_outputs`): a source inside one would catalogue the
    pipeline's own images as videos, and one holding them (`data`, `.`) would too."""
    real = os.path.realpath(source)
    for out in outputs:
        o = os.path.realpath(out)
        if real == o or real.startswith(o + os.sep):
            raise VideoError(f"ingest.source = {source}: inside the pipeline's own outputs ({out}); point it at "
                             "a folder of videos (for example data/videos); nothing was changed")
        if o.startswith(real + os.sep):
            raise VideoError(f"ingest.source = {source}: holds the pipeline's own outputs ({out}); point it at "
                             "a folder of videos only (for example data/videos); nothing was changed")


def read_catalog(path: str | Path) -> list[dict]:
    """The catalog rows (video_id, path, kind, split, n_frames, ...) in catalog order."""
    return pq.read_table(path).to_pylist()


def with_absolute_paths(row: dict) -> dict:
    """A catalog row whose paths resolve anywhere: worker processes (loky reuses them, Dask runs
    them elsewhere) do not share the caller's working directory."""
    return {**row, "path": os.path.abspath(row["path"]),
            "annot_dir": os.path.abspath(row["annot_dir"]) if row.get("annot_dir") else row.get("annot_dir")}


def source_of(row: dict) -> VideoSource:
    return VideoSource(row["video_id"], row["path"], row["kind"], row["annot_dir"])
