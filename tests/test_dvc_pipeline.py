"""End to end through real DVC: repro, no-op repro, and a param sweep re-running only what depends on it."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GRID, copy_pipeline

DATA_TARGET = "manifest"  # the data half of the pipeline
STAGES = ("ingest", "landmarks", "blur_fixed", "blur_vla", "manifest")


def ran_stages(log: str) -> set:
    return {s for s in STAGES if f"Running stage '{s}'" in log}


def _run(cmd, cwd):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DEBLUR_N_JOBS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh git + DVC project holding this repo's pipeline and two sample videos."""
    root = tmp_path_factory.mktemp("project")
    copy_pipeline(root, {"ingest": {"source": "videos", "test_videos": ["bbaf2n"]}, "blur": {"fixed": {"windows": [5, 9]}}})
    videos = root / "videos"
    videos.mkdir()
    for name in ("bbaf2n.mpg", "lbax4n.mpg"):
        shutil.copy(GRID / name, videos / name)
    _run("git init -q && dvc init -q", root)
    return root


def test_repro_then_noop_then_sweep(project):
    log = _run(["dvc", "repro", DATA_TARGET], project)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log
    assert {"fixed-test.parquet", "fixed-train.parquet", "vla-train.parquet"} <= \
        {p.name for p in (project / "data/dataset/manifests").iterdir()}
    before = json.loads((project / "metrics/dataset_by_n.json").read_text())
    assert before["by_n"]["train"]["fixed"]["N09"] > 0

    log = _run(["dvc", "repro", DATA_TARGET], project)
    assert ran_stages(log) == set()  # only stage `sources` (always_changed: it re-lists the source folder)

    _run("git add -A && git commit -qm base", project)
    log = _run(["dvc", "exp", "run", DATA_TARGET, "-S", "blur.fixed.windows=[5]"], project)
    assert ran_stages(log) == {"blur_fixed", "manifest"}
    after = json.loads((project / "metrics/dataset_by_n.json").read_text())
    assert "N09" not in after["by_n"]["train"]["fixed"]
    assert after["by_n"]["train"]["fixed"]["N05"] == before["by_n"]["train"]["fixed"]["N05"]
    diff = _run(["dvc", "metrics", "diff", "--json"], project)
    assert "samples.total" in diff

    # FMR settings re-run only the manifest
    log = _run(["dvc", "exp", "run", DATA_TARGET, "-S", "manifest.fmr.u_formula=paper"], project)
    assert ran_stages(log) == {"manifest"}


def test_queued_grid_then_exp_show(project):
    """A sweep the DVC way: queue a grid with `dvc exp run --queue -S`, run it with `dvc queue start`,
    compare with `dvc exp show` (docs/sweeps.md)."""
    _run("git add -A && git commit -qm 'before the sweep' --allow-empty", project)
    _run(["dvc", "exp", "run", DATA_TARGET, "--queue", "-S", "blur.fixed.stride=5,10"], project)
    assert _run(["dvc", "queue", "status"], project).count("Queued") == 2
    _run(["dvc", "queue", "start", "--jobs", "1"], project)
    deadline = time.monotonic() + 600
    while True:
        status = _run(["dvc", "queue", "status"], project)
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(2)
    assert status.count("Success") == 2, status
    _run(["dvc", "queue", "stop", "--kill"], project)
    table = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    totals = {}
    for commit in table:
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                stride = data["params"]["params.yaml"]["data"]["blur"]["fixed"]["stride"]
                totals[stride] = data["metrics"]["metrics/dataset.json"]["data"]["samples"]["total"]
    assert set(totals) == {5, 10} and totals[10] < totals[5], totals
