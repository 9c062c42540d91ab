"""SIGTERM to the whole process group (what `timeout`, schedulers and a terminal send, and what
`dvc repro`'s group receives): a real training stage with DataLoader workers saves a checkpoint,
exits 143, and the rerun resumes it to the same result as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from test_live import read_log
from test_train import tiny_params

STEPS = 10


def stage_command(tmp: Path, root: Path, out: str) -> list[str]:
    return [sys.executable, "-m", "stages.train_cfmd", "--params", str(tmp / "params.yaml"), "--root", str(root),
            "--out", f"{out}/cfmd.pt", "--metadata", f"{out}/train_cfmd.json", "--metrics", f"{out}/metrics.json",
            "--live", f"{out}/live", "--checkpoints", f"{out}/checkpoints"]


def logged_steps(live: Path) -> int:
    tsv = live / "plots/metrics/lr.tsv"
    lines = tsv.read_text().splitlines() if tsv.is_file() else []
    return int(lines[-1].split("\t")[0]) if len(lines) > 1 else 0


@pytest.mark.skipif(os.name != "posix", reason="process groups and SIGTERM are POSIX")
def test_sigterm_to_the_process_group_checkpoints_and_resumes(small_run, tmp_path):
    params = tiny_params()
    params["train_cfmd"].update(steps=STEPS, log_every=1)
    params["train_cfmd"]["runtime"]["num_workers"] = 2  # workers share the group, so they get the signal too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = stage_command(tmp_path, small_run, "a")
    live, checkpoints = tmp_path / "a/live", tmp_path / "a/checkpoints"
    staged = checkpoints / "live"  # a run in progress logs beside its checkpoint; `live` gets it when complete

    with open(tmp_path / "interrupted.log", "w") as output:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while logged_steps(staged) < 1 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert logged_steps(staged) >= 1, "training did not start"
            os.killpg(proc.pid, signal.SIGTERM)  # the stage, its DataLoader workers, all of the group
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = (tmp_path / "interrupted.log").read_text()
    assert code == 128 + signal.SIGTERM, text[-3000:]  # non-zero: DVC does not record the stage as done
    assert "killed by signal" not in text and "exited unexpectedly" not in text, text[-3000:]
    saved = torch.load(checkpoints / "last.pt", map_location="cpu", weights_only=True)["step"]
    assert 1 <= saved < STEPS and logged_steps(staged) >= saved
    assert not live.exists()  # nothing published by a run that did not complete
    before = read_log(staged)["plots"]

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from a/checkpoints at step {saved}" in done.stderr
    meta = json.loads((tmp_path / "a/train_cfmd.json").read_text())
    assert meta["training"]["resumed_from"] == saved and meta["training"]["step"] == STEPS
    assert not (checkpoints / "last.pt").exists() and not staged.exists()
    log = read_log(live)
    assert all([s for s, _ in rows] == list(range(1, STEPS + 1)) for rows in log["plots"].values())
    assert all(rows[:saved] == before[name][:saved] for name, rows in log["plots"].items())

    # The same as a run nobody interrupted: weights and log.
    straight = subprocess.run(stage_command(tmp_path, small_run, "b"), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert straight.returncode == 0, straight.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"{d}/cfmd.pt", weights_only=True)["state_dicts"] for d in "ab")
    assert all(torch.equal(a[m][k], b[m][k]) for m in a for k in a[m])
    assert log == read_log(tmp_path / "b/live")


class _Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, key):
        return torch.tensor(key[0])


def _wait_dead(process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process.is_alive()


def test_a_worker_outlives_sigterm_from_outside_but_not_from_its_parent():
    """A signal to the process group must not kill a DataLoader worker (the main process saves a
    checkpoint first); `terminate()` from the main process must (the DataLoader's shutdown and
    Python's exit handler call it and then wait: an immortal worker hung the test run at exit)."""
    from pipeline.train.data import EpochSampler, make_loader, start_workers

    loader = make_loader(_Numbers(), EpochSampler(8, 8, seed=0), batch_size=2, num_workers=2, seed=0)
    batches = start_workers(loader)
    next(batches)
    first, second = batches._workers
    subprocess.run(["kill", "-TERM", str(first.pid)], check=True)  # sent by another process
    subprocess.run(["kill", "-INT", str(first.pid)], check=True)
    time.sleep(1.0)
    assert first.is_alive()
    assert len(list(batches)) == 3  # the epoch goes on
    second.terminate()  # SIGTERM from the parent
    assert _wait_dead(second, 10.0)
    first.terminate()
    assert _wait_dead(first, 10.0)
    batches._shutdown_workers()
