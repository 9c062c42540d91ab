"""The dask backend (a distributed LocalCluster started by pipeline.dataset.parallel) and the threading backend give the same data as loky."""
from __future__ import annotations

import json
import os

import pytest

from conftest import SMALL_OVERRIDES, deep_update, run_stages
from pipeline.dataset.parallel import map_videos

pytest.importorskip("distributed")


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def _metrics(workdir):
    return {p.name: json.loads(p.read_text()) for p in sorted((workdir / "metrics").glob("*.json"))}


def test_dask_env_switch_runs_in_worker_processes_in_order(monkeypatch):
    monkeypatch.setenv("DEBLUR_JOBLIB_BACKEND", "dask")
    monkeypatch.delenv("DEBLUR_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("DEBLUR_N_JOBS", raising=False)
    items = list(range(12))
    # backend="loky" in the call: the environment must win
    out = map_videos(_pid_and_square, items, n_jobs=2, backend="loky", desc="dask-env")
    assert [sq for _, sq in out] == [x * x for x in items]
    pids = {pid for pid, _ in out}
    assert os.getpid() not in pids


@pytest.mark.parametrize("other", ["dask", "threading"])
def test_other_backends_give_data_identical_to_loky(tmp_path, small_source, monkeypatch, other):
    """dask: a LocalCluster; threading: one process, where dlib's models must not be shared
    between threads (they crashed the interpreter when they were)."""
    for var in ("DEBLUR_JOBLIB_BACKEND", "DEBLUR_N_JOBS", "DEBLUR_DASK_SCHEDULER"):
        monkeypatch.delenv(var, raising=False)
    runs = {}
    for backend in ("loky", other):
        overrides = deep_update(SMALL_OVERRIDES, {"compute": {"n_jobs": 2, "backend": backend}})
        runs[backend] = run_stages(tmp_path / backend, small_source, overrides)
    loky, run = runs["loky"], runs[other]
    names = sorted(p.name for p in (loky / "manifests").iterdir())
    assert names and names == sorted(p.name for p in (run / "manifests").iterdir())
    for name in names:
        assert (loky / "manifests" / name).read_bytes() == (run / "manifests" / name).read_bytes(), name
    assert _metrics(tmp_path / "loky") == _metrics(tmp_path / other)


def _page_faults_of_frame_sized_arrays(_item) -> int:
    """Minor page faults while 50 frame-sized (1 MiB) arrays are made, filled and freed in turn."""
    import resource

    import numpy as np

    np.ones(1 << 20, np.uint8)  # warm the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        np.ones(1 << 20, np.uint8)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_dask_workers_reuse_heap_memory_for_frames(monkeypatch):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which makes every array above 128 KiB a fresh mmap
    (256 page faults per MiB): blur_fixed ran twice as slow on a LocalCluster. The task wrapper
    undoes it (parallel.serve_frames_from_the_heap), so a worker reuses freed frames' memory."""
    for var in ("DEBLUR_JOBLIB_BACKEND", "DEBLUR_N_JOBS", "DEBLUR_DASK_SCHEDULER"):
        monkeypatch.delenv(var, raising=False)
    faults = map_videos(_page_faults_of_frame_sized_arrays, [0, 1], n_jobs=2, backend="dask")
    assert max(faults) < 50 * 256 // 4, faults  # with mmap per array: >= 50 x 256
