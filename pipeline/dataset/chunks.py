"""Parallel inside a video: a long video's fixed windows rendered in chunks, merged into the files
one sequential run writes, byte for byte.

Parallelism is by video (`pipeline.dataset.parallel`); with fewer long videos than cores, one core
would do most of the work. A chunk is a range of source frames [start, stop): its task renders the
windows whose *first* frame lies in it (to their end, past `stop`) and stores the frames that lie
in it. A frame's stored region is the union of the boxes of the windows that were written with it,
and windows of the previous chunk reach into this one, so the chunk also decides those windows
(`render.Window.shadow`: the sharpness gate only, no averaging, nothing written) and decodes from
the first frame of the earliest one. The merge then appends the chunks' frame stores (offsets
shifted) and rows in order, and the gate records are summed (`fixed.merge_chunk_gate_records`).

VLA is not chunked: where a VLA window starts depends on where the previous one stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.dataset.framestore import concatenate_stores
from pipeline.dataset.samples import SAMPLES_SCHEMA, part_path

# Below this a chunk's overhead shows: it decodes (grabs) the video up to its start, and with the
# crop-space gate it crops the previous chunk's last windows again (about 10 windows with N 5-13,
# stride 5). At 250 frames that is a few percent of the chunk's own work.
MIN_CHUNK_FRAMES = 250


@dataclass(frozen=True)
class Chunk:
    index: int
    count: int
    start: int  # source frames [start, stop): windows starting here are rendered, frames here stored
    stop: int

    @property
    def suffix(self) -> str:
        """Names the chunk's own files (`<video>.bin.c0001`, `<video>.parquet.c0001`) until the merge."""
        return f".c{self.index:04d}"


def chunk_length(total_frames: int, n_jobs: int, chunk_frames: int | None) -> int | None:
    """Frames per chunk (None: no chunks). `compute.chunk_frames`: N > 0 chunks every video longer
    than N frames; 0 never chunks; null (auto) chunks only with several workers, a video longer
    than one worker's share of the run (total / n_jobs, at least MIN_CHUNK_FRAMES) into chunks of
    that share. So a run of many videos is not chunked, one long video is split in n_jobs, and
    1,000 + 125 frames on 2 workers become 563 | 437 + 125. Fewer, longer chunks: every chunk
    decodes the video from its first frame (seeking is not frame-exact for every codec)."""
    if chunk_frames is not None and chunk_frames > 0:
        return int(chunk_frames)
    if chunk_frames == 0 or n_jobs < 2:
        return None
    return max(MIN_CHUNK_FRAMES, math.ceil(total_frames / n_jobs))


def split(n_frames: int, length: int | None) -> list[Chunk] | None:
    """The chunks of a video of `n_frames` frames (None: one task, no chunks)."""
    if length is None or n_frames <= length:
        return None
    count = math.ceil(n_frames / length)
    return [Chunk(i, count, i * length, min((i + 1) * length, n_frames)) for i in range(count)]


def plan(catalog: list[dict], n_jobs: int, chunk_frames: int | None) -> list[tuple[dict, Chunk | None]]:
    """One task per video, or per chunk of a video that is long against the whole run."""
    length = chunk_length(sum(int(v["n_frames"]) for v in catalog), n_jobs, chunk_frames)
    tasks = []
    for v in catalog:
        chunks = split(int(v["n_frames"]), length)
        tasks += [(v, c) for c in chunks] if chunks else [(v, None)]
    return tasks


def merge_outputs(root: str | Path, method: str, video_id: str, chunks: list[Chunk]) -> Path | None:
    """The video's frame store and rows file from its chunks' (removed); the rows file, or None
    when no chunk wrote a sample."""
    root = Path(root)
    store = root / method / "frames" / f"{video_id}.bin"
    stores = [p for c in chunks if (p := Path(f"{store}{c.suffix}")).is_file()]
    if stores:
        concatenate_stores(stores, store)
    part = part_path(root, method, video_id)
    parts = [p for c in chunks if (p := Path(f"{part}{c.suffix}")).is_file()]
    if not parts:
        return None
    with pq.ParquetWriter(part, SAMPLES_SCHEMA, compression="zstd") as writer:
        for p in parts:
            for batch in pq.ParquetFile(p).iter_batches():
                writer.write_batch(batch)
    for p in parts:
        p.unlink()
    return part
