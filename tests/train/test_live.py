"""The DVCLive training log (pipeline/train/log.py): a resumed log continues the interrupted one
with every step once, a fresh run starts clean, the sample sheet is an image, weights and
checkpoints are registered as artifacts, and dvc.yaml declares what the stages write."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import REPO
from pipeline.train.log import TrainLog, artifact_name, rewind

TRAIN_STAGES = ("train_cfmd", "train_chrysos_hg", "train_chrysos_gan")


def read_log(directory) -> dict:
    """{"plots": {metric: [(step, value), ...]}, "summary": metrics.json} of a DVCLive directory."""
    directory = Path(directory)
    plots = {}
    for path in sorted((directory / "plots/metrics").rglob("*.tsv")):
        lines = path.read_text().splitlines()
        assert lines[0].split("\t") == ["step", path.stem]
        plots[path.stem] = [(int(s), float(v)) for s, v in (line.split("\t") for line in lines[1:])]
    return {"plots": plots, "summary": json.loads((directory / "metrics.json").read_text())}


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # DVCLive records artifacts only inside a DVC repository


def log_rows(directory, steps, resume_step=0) -> TrainLog:
    live = TrainLog(directory).start(resume_step)
    for s in steps:
        live.write({"step": s, "epoch": (s - 1) // 4, "lr": 0.1 * s, "loss": 1 / s})
    return live


def test_a_resumed_log_holds_every_step_once(tmp_path):
    log_rows(tmp_path / "straight", range(1, 9)).end()
    # Checkpoint at step 4; steps 5 and 6 logged, then the process dies (no end()).
    log_rows(tmp_path / "resumed", range(1, 7))
    resumed = TrainLog(tmp_path / "resumed").start(resume_step=4)
    assert resumed.last == {"step": 4, "epoch": 0, "lr": 0.1 * 4, "loss": 1 / 4}
    assert resumed.live.step == 5
    for s in range(5, 9):
        resumed.write({"step": s, "epoch": (s - 1) // 4, "lr": 0.1 * s, "loss": 1 / s})
    resumed.end()
    log = read_log(tmp_path / "resumed")
    assert log == read_log(tmp_path / "straight")
    assert all([s for s, _ in rows] == list(range(1, 9)) for rows in log["plots"].values())
    assert log["summary"] == {"epoch": 1, "lr": 0.1 * 8, "loss": 1 / 8, "step": 8}


def test_a_fresh_run_starts_a_clean_log(tmp_path):
    old = log_rows(tmp_path, range(1, 7))
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    old.image("samples.png", tmp_path / "x.png")
    old.end()
    assert (tmp_path / "plots/images/samples.png").is_file()
    log_rows(tmp_path, range(1, 3)).end()
    log = read_log(tmp_path)
    assert all([s for s, _ in rows] == [1, 2] for rows in log["plots"].values())
    assert log["summary"]["step"] == 2 and not (tmp_path / "plots/images").exists()


def test_rewinding_a_missing_log_starts_it_at_the_checkpoint(tmp_path):
    assert rewind(tmp_path / "none", 3) == 0
    live = log_rows(tmp_path / "none", [4], resume_step=3)
    live.end()
    assert read_log(tmp_path / "none")["plots"]["loss"] == [(4, 0.25)]


def test_other_ranks_log_nothing(tmp_path):
    live = TrainLog(tmp_path / "rank1").start(0, enabled=False)
    live.write({"step": 1, "loss": 0.5})
    live.sheet([[(np.zeros((8, 8, 3), np.uint8), "x")]])
    live.artifact(tmp_path / "w.pt", type="model", name="m")
    live.end()
    assert live.last == {"step": 1, "loss": 0.5} and live.artifacts == {}
    assert not (tmp_path / "rank1").exists()


def test_the_sheet_is_an_image_and_weights_are_model_artifacts(tmp_path):
    live = log_rows(tmp_path / "live", [1])
    cell = np.full((40, 30, 3), 200, np.uint8)
    live.sheet([[(cell, "blurry"), (cell, "sharp")]])
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    live.artifact(weights, type="model", name="chrysos_gan", desc="final weights")
    live.artifact(tmp_path / "ckpt/last.pt", type="checkpoint", name="train_cfmd-checkpoint", step=3)
    live.end()
    image = cv2.imread(str(tmp_path / "live/plots/images/samples.png"))
    # a 40 x 30 cell (below SMALL_CELL) is enlarged 4x, pixel for pixel, so its caption leaves it legible
    assert image.shape[0] == 160 and image.shape[1] >= 240
    assert (image[-20:, 100:110] == 200).all()  # the enlarged cell itself, below its caption
    assert live.artifacts == {
        "chrysos-gan": {"path": str(weights), "type": "model", "desc": "final weights"},
        "train-cfmd-checkpoint": {"path": str(tmp_path / "ckpt/last.pt"), "type": "checkpoint", "meta": {"step": 3}},
    }
    assert not list(tmp_path.glob("**/*.dvc"))  # cache=False: registered, not `dvc add`ed
    assert artifact_name("train_chrysos_hg") == "train-chrysos-hg"


def test_dvc_yaml_declares_the_live_logs():
    from pipeline.models.cfmd.task import CFMDTask
    from pipeline.models.chrysos.task import ChrysosGANTask, HourglassTask

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    losses = {"train_cfmd": CFMDTask.loss_names, "train_chrysos_hg": HourglassTask.loss_names,
              "train_chrysos_gan": ChrysosGANTask.loss_names}
    outs = set()
    for name in TRAIN_STAGES:
        stage, live = dvc["stages"][name], f"dvclive/{name}"
        assert f"--live {live} " in stage["cmd"] and "_loss.csv" not in stage["cmd"]
        entries = {k: v for kind in ("outs", "metrics", "plots") for e in stage[kind]
                   for k, v in (e.items() if isinstance(e, dict) else [(e, {})])}
        outs |= set(entries)
        # the metrics and curves survive an interrupted run's rerun; DVC does not delete them first
        assert entries[f"{live}/metrics.json"] == {"cache": False, "persist": True}
        assert entries[f"{live}/plots/metrics"] == {"cache": False, "persist": True}
        assert f"{live}/plots/images" in entries
        curves = next(p[f"{name}_loss"] for p in dvc["plots"] if f"{name}_loss" in p)
        assert curves["x"] == "step"
        for path, column in curves["y"].items():
            assert path == f"{live}/plots/metrics/{column}.tsv" and column in losses[name]
    names = set()
    for stage in TRAIN_STAGES:
        names |= set(re.findall(r'type="model", name="([a-z-]+)"', (REPO / f"stages/{stage}.py").read_text()))
    assert set(dvc["artifacts"]) == names and len(names) == 3
    assert all(a["type"] == "model" and a["path"] in outs for a in dvc["artifacts"].values())
