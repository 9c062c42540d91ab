"""Worker processes die with their stage (issue 24, row 10).

`kill -9` of a blur stage must not leave its joblib (loky) workers running: they would go on
writing into the dead run's staging folder for minutes. pipeline.dataset.parallel.exit_with_parent.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from conftest import GRID, run_stages

SLOW = {"blur": {"interpolate": 3, "fixed": {"windows": [5, 7, 9, 11, 13], "stride": 2, "min_sharpness": 0}},
        "compute": {"n_jobs": 2, "backend": "loky"}}


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_killing_the_stage_outright_ends_its_workers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("bbaf2n.mpg", "lbax4n.mpg", "swiz3n.mpg"):
        shutil.copy(GRID / name, src / name)
    work = tmp_path / "work"
    run_stages(work, src, SLOW, stages=("ingest", "landmarks"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["compute"] = SLOW["compute"]  # run_stages runs in-process with one job; the stage below uses two
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(os.getcwd()), *sys.path]))
    env.pop("DEBLUR_N_JOBS", None)
    stage = subprocess.Popen([sys.executable, "-m", "stages.blur_fixed"], cwd=work, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = work / "data/dataset/.fixed.partial"
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    try:
        while time.monotonic() < deadline:  # until the workers write
            workers |= {c.pid for c in psutil.Process(stage.pid).children(recursive=True)}
            if len(list(partial.rglob("*.png"))) >= 3:
                break
            assert stage.poll() is None, "the stage finished before it could be killed: make SLOW slower"
            time.sleep(0.05)
        else:
            pytest.fail("the stage wrote nothing in 120 s")
        workers |= {c.pid for c in psutil.Process(stage.pid).children(recursive=True)}
        stage.send_signal(signal.SIGKILL)
        stage.wait()
        time.sleep(1.0)
        assert _alive(workers) == [], "workers outlived their stage"
        written = len(list(partial.rglob("*")))
        time.sleep(1.5)
        assert len(list(partial.rglob("*"))) == written  # nothing written after the stage died
    finally:
        for pid in _alive(workers):
            os.kill(pid, signal.SIGKILL)
