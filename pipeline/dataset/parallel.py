"""Per-video parallelism through joblib, with a progress bar and a switchable backend.

The backend is one setting (`compute.backend` param or the DEBLUR_JOBLIB_BACKEND environment
variable): `loky` (local processes, default), `threading`, `sequential`, or `dask` to run the same
per-video tasks on a Dask cluster (DEBLUR_DASK_SCHEDULER=host:port, else a LocalCluster).
Results come back in input order, so outputs do not depend on the backend or on n_jobs.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Sequence

from joblib import Parallel, delayed, parallel_backend
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

BACKENDS = ("loky", "threading", "sequential", "dask")


def resolve(n_jobs: int | None = None, backend: str | None = None) -> tuple[int, str]:
    """Environment overrides params, so a user can move a run to a cluster without editing params."""
    raw = os.environ.get("DEBLUR_N_JOBS", n_jobs if n_jobs is not None else 1)
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise SystemExit(f"DEBLUR_N_JOBS / compute.n_jobs = {raw!r}: must be an integer >= 1")
    b = os.environ.get("DEBLUR_JOBLIB_BACKEND", backend or "loky")
    if b not in BACKENDS:
        raise SystemExit(f"DEBLUR_JOBLIB_BACKEND / compute.backend = {b!r}: must be one of {' | '.join(BACKENDS)}")
    return n, b


@contextlib.contextmanager
def _backend_context(backend: str, n_jobs: int):
    if backend != "dask":
        yield backend
        return
    from dask.distributed import Client, LocalCluster  # optional dependency: pip install distributed

    address = os.environ.get("DEBLUR_DASK_SCHEDULER")
    if address:
        client = Client(address)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=max(1, n_jobs), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        with parallel_backend("dask"):
            yield "dask"
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def map_videos(fn: Callable, items: Sequence, n_jobs: int | None = 1, backend: str | None = None,
               desc: str = "", **kwargs) -> list:
    """`[fn(item, **kwargs) for item in items]`, in parallel, in order, with a progress bar.

    Items that are catalog rows (dicts with `n_frames`), or (catalog row, chunk) tasks
    (`pipeline.dataset.chunks`), are dispatched longest first, so one long video does not start
    last and leave the other workers idle; results still come back in input order.
    """
    n_jobs, backend = resolve(n_jobs, backend)
    items = list(items)
    order = list(range(len(items)))
    lengths = [_frames_of(it) for it in items]
    if None not in lengths:
        order.sort(key=lambda i: -lengths[i])
    results = _run(fn, [items[i] for i in order], n_jobs, backend, desc, kwargs)
    out = [None] * len(items)
    for i, r in zip(order, results):
        out[i] = r
    return out


def _frames_of(item) -> int | None:
    """Frames a task decodes: a catalog row's, or a chunk's; None: not a video task."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], dict):
        video, chunk = item
        return int(video["n_frames"]) if chunk is None else chunk.stop - chunk.start
    return int(item["n_frames"]) if isinstance(item, dict) and "n_frames" in item else None


PARENT_POLL_SECONDS = 0.02
_watched_parent: int | None = None


def exit_with_parent(parent: int) -> None:
    """In a worker process: end this process as soon as `parent` (the stage) is gone.

    A stage killed outright (SIGKILL, an OOM kill) cannot stop its workers, and loky's would
    otherwise go on for minutes, writing into the dead run's staging folder. Workers are the
    stage's children, so a parent that dies re-parents them: a daemon thread polls getppid()
    every PARENT_POLL_SECONDS and kills the worker when it changes (at most one image is written
    meanwhile, into the staging folder the next run deletes first)."""
    global _watched_parent
    if _watched_parent == parent or os.getpid() == parent:  # already watching; or not a worker
        return
    _watched_parent = parent
    import signal
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)

    if os.getppid() != parent:  # the stage is already gone
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_FRAME_SIZED = 64 << 20  # bytes: a 4K frame is 25 MB


def serve_frames_from_the_heap() -> bool:
    """Undo Dask's MALLOC_TRIM_THRESHOLD_ in this worker; True when there was something to undo.

    Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536 (to return memory to the
    system sooner). Setting it also freezes glibc's mmap threshold at 128 KiB, so every frame,
    crop and temporary array above that size becomes a fresh mmap, page-faulted on first touch
    and unmapped when freed. That made blur_fixed and blur_vla about twice as slow on a
    LocalCluster as in loky workers (benchmarks/README.md). Arrays up to _FRAME_SIZED are served
    from the heap again, and the heap is trimmed above that size; an external cluster's workers
    get the same fix, since it runs inside the task."""
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: the variable means nothing there
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _FRAME_SIZED)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * _FRAME_SIZED))


class _OneThreadEach:
    """Runs `fn` with OpenCV single-threaded: the videos already use every core, and OpenCV's own
    pool (one thread per core in every worker) would only oversubscribe them. In a local worker
    process (loky), the worker also ends with the stage (`exit_with_parent`)."""

    def __init__(self, fn: Callable, watch_parent: bool = False):
        self.fn = fn
        self.parent = os.getpid() if watch_parent else None

    def __call__(self, *args, **kwargs):
        import cv2

        if self.parent is not None:
            exit_with_parent(self.parent)
        serve_frames_from_the_heap()
        cv2.setNumThreads(1)
        return self.fn(*args, **kwargs)


def _run(fn: Callable, items: list, n_jobs: int, backend: str, desc: str, kwargs: dict) -> list:
    bar = tqdm(total=len(items), desc=desc, unit="video", disable=None)
    out = []
    if n_jobs == 1 or len(items) <= 1 or backend == "sequential":
        for item in items:
            out.append(fn(item, **kwargs))
            bar.update()
        bar.close()
        return out
    with _backend_context(backend, n_jobs) as name:
        kw = {} if name == "dask" else {"backend": name}
        runner = Parallel(n_jobs=n_jobs, return_as="generator", **kw)
        # loky's workers are this process's children; Dask's belong to its nanny or cluster
        task = _OneThreadEach(fn, watch_parent=name == "loky")
        for result in runner(delayed(task)(item, **kwargs) for item in items):
            out.append(result)
            bar.update()
    bar.close()
    return out
