"""Hostile inputs to the training stages (issue 37, rows 2-5, 16-22): a checkpoint that would run
code, a rebuilt dataset under the same ids, a retrain that fails, diverges or is stopped, params out
of range, and inputs the stages cannot start with. Each test runs the real stages on the small REAL
dataset (`small_run`) with tiny networks."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import REPO, deep_update, repo_params
from test_live import read_log
from test_train import stage_args, tiny_params
from pipeline.params import ParamError, validate_all
from pipeline.train import checkpoint
from pipeline.train.data import FaceDeblurDataset, training_rows


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # DVCLive records artifacts only inside a DVC repository


@pytest.fixture
def dataset_copy(small_run, tmp_path) -> Path:
    """A private copy of the small dataset, to damage."""
    return Path(shutil.copytree(small_run, tmp_path / "dataset"))


def write_params(tmp_path: Path, changes: dict | None = None) -> dict:
    params = deep_update(tiny_params(), changes or {})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def run_cfmd(tmp_path, root, *extra):
    from stages import train_cfmd

    return train_cfmd.main(stage_args(train_cfmd, tmp_path, root, "--out", str(tmp_path / "models/cfmd.pt"), *extra))


def digests(tmp_path) -> dict[str, str]:
    """sha256 of every published output of train_cfmd (weights, metadata, metrics, DVCLive log)."""
    files = [tmp_path / "models/cfmd.pt", tmp_path / "models/train_cfmd.json", tmp_path / "metrics/train_cfmd.json",
             *sorted((tmp_path / "dvclive/train_cfmd").rglob("*"))]
    return {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


# ------------------------------------------------------------------ row 2: a checkpoint that runs code


class _Payload:
    """Unpickling this creates a folder: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_a_malicious_checkpoint_is_refused_and_never_run(small_run, tmp_path):
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "models/checkpoints/train_cfmd"
    ckpt.mkdir(parents=True)
    torch.save({"fingerprint": "x", "step": 1, "payload": _Payload(marker)}, ckpt / checkpoint.CHECKPOINT)
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint this project can load safely"):
        checkpoint.load(ckpt, "x")
    write_params(tmp_path)
    with pytest.raises(SystemExit, match=r"^train_cfmd: .*last\.pt: not a checkpoint this project can load safely"):
        run_cfmd(tmp_path, small_run)
    assert not marker.exists()
    assert not (tmp_path / "models/cfmd.pt").exists()


def test_our_own_checkpoints_load_with_weights_only_and_resume_the_rng(tmp_path):
    import random

    checkpoint.seed_everything(3)
    path = checkpoint.save(tmp_path, {"fingerprint": "fp", "step": 2, "params": {"lr": 1e-3, "betas": [0.9, 0.99]},
                                      "validation": {"history": [(0, 0.1)], "best_state": None}})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    torch.load(path, weights_only=True)  # no arbitrary types inside
    state = checkpoint.load(tmp_path, "fp")
    checkpoint.set_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


# ------------------------------------------------------------------ rows 3, 21: other data, other params


def test_a_rebuilt_dataset_with_the_same_ids_starts_afresh_and_keeps_the_old_checkpoint(dataset_copy, tmp_path):
    write_params(tmp_path)
    with pytest.raises(SystemExit, match="stopped at step 1"):
        run_cfmd(tmp_path, dataset_copy, "--stop-after", "1")
    ckpt = tmp_path / "models/checkpoints/train_cfmd"
    old = (ckpt / checkpoint.CHECKPOINT).read_bytes()
    # the same sample ids, other pixels: one blurry image brightened (as -S blur.gamma=2.2 would change them)
    row = training_rows(dataset_copy, ["fixed"])[0]
    png = dataset_copy / row["blurry_path"]
    cv2.imwrite(str(png), np.clip(cv2.imread(str(png)).astype(int) + 20, 0, 255).astype(np.uint8))
    run_cfmd(tmp_path, dataset_copy)
    meta = json.loads((tmp_path / "models/train_cfmd.json").read_text())
    assert meta["training"]["resumed_from"] == 0  # not mixed with the run on the old pixels
    stale = list(ckpt.glob("stale-*.pt"))
    assert len(stale) == 1 and stale[0].read_bytes() == old  # kept aside, not deleted


def test_a_checkpoint_of_other_params_is_kept_aside(tmp_path):
    checkpoint.save(tmp_path, {"fingerprint": "0123456789abcdef", "step": 3})
    assert checkpoint.load(tmp_path, "new") is None
    assert not (tmp_path / checkpoint.CHECKPOINT).exists()
    assert torch.load(tmp_path / "stale-0123456789ab.pt", weights_only=True)["step"] == 3


def test_the_data_digest_covers_pixels_not_only_ids(dataset_copy):
    rows = training_rows(dataset_copy, ["fixed"])
    before = checkpoint.data_digest(dataset_copy, rows)
    assert checkpoint.data_digest(dataset_copy, rows) == before
    store = dataset_copy / rows[-1]["sharp_store"]
    store.write_bytes(store.read_bytes() + b"\0")
    assert checkpoint.data_digest(dataset_copy, rows) != before


# ------------------------------------------------------------------ rows 4, 22: a retrain that fails or is stopped


def test_an_interrupted_or_failed_retrain_keeps_the_previous_outputs_and_their_log(small_run, tmp_path):
    write_params(tmp_path)
    run_cfmd(tmp_path, small_run)
    finished = digests(tmp_path)
    assert len(read_log(tmp_path / "dvclive/train_cfmd")["plots"]["g_pix"]) == 3
    # a retrain with other params stopped after one step (Ctrl-C, SIGTERM, kill -9 all leave this state)
    write_params(tmp_path, {"train_cfmd": {"lr": 2e-3}})
    with pytest.raises(SystemExit, match="stopped at step 1"):
        run_cfmd(tmp_path, small_run, "--stop-after", "1")
    assert digests(tmp_path) == finished  # weights, metadata, metrics and the log that describes them
    staged = read_log(tmp_path / "models/checkpoints/train_cfmd/live")  # the run in progress logs beside its checkpoint
    assert [s for s, _ in staged["plots"]["g_pix"]] == [1]
    # a retrain that fails after training (the sample sheet cannot be written): nothing is replaced
    write_params(tmp_path, {"train_cfmd": {"lr": 3e-3, "sheet": {"samples": 1, "u": [0.0, 0.5, 1.0]}}})
    from stages import train_cfmd

    original = train_cfmd.cfmd_sheet
    try:
        train_cfmd.cfmd_sheet = lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        with pytest.raises(OSError, match="No space left"):
            run_cfmd(tmp_path, small_run)
    finally:
        train_cfmd.cfmd_sheet = original
    assert digests(tmp_path) == finished
    assert not list((tmp_path / "models").glob(".*partial*"))
    # the resumed retrain completes: everything is replaced together, the log is the new run's
    run_cfmd(tmp_path, small_run)
    assert digests(tmp_path) != finished
    log = read_log(tmp_path / "dvclive/train_cfmd")
    assert log["summary"]["lr"] == pytest.approx(3e-3) and len(log["plots"]["g_pix"]) == 3


def test_dvc_keeps_training_outputs_until_the_stage_replaces_them():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("train_cfmd", "train_chrysos_hg", "train_chrysos_gan"):
        for key in ("outs", "metrics", "plots"):
            for entry in stages[name].get(key, []):
                path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                assert (opts or {}).get("persist") is True, f"{name}: {path} is deleted by DVC before the stage runs"


# ------------------------------------------------------------------ row 5: divergence, missing validation video


def test_a_diverging_run_stops_and_writes_no_weights(small_run, tmp_path):
    write_params(tmp_path, {"train_cfmd": {"lr": 1.0e6, "lr_warmup": 0, "steps": 6}})
    with pytest.raises(SystemExit, match=r"^train_cfmd: the training diverged at step \d+: .*= (nan|inf)"):
        run_cfmd(tmp_path, small_run)
    assert not (tmp_path / "models/cfmd.pt").exists() and not (tmp_path / "metrics/train_cfmd.json").exists()
    assert not (tmp_path / "models/checkpoints/train_cfmd/last.pt").exists()


def test_a_missing_validation_video_is_said_and_recorded(small_run, tmp_path, caplog):
    write_params(tmp_path, {"train_cfmd": {"validation_video": "talking-nobody"}})
    run_cfmd(tmp_path, small_run)
    metrics = json.loads((tmp_path / "metrics/train_cfmd.json").read_text())
    assert "talking-nobody is not a video of the training split" in metrics["validation"]["skipped"]
    assert caplog.text.count("trained WITHOUT validation") >= 2  # at the start and at the end


# ------------------------------------------------------------------ rows 16, 17: params out of range


@pytest.mark.parametrize("section, change, message", [
    ("train_cfmd", {"lr_decay": -0.5}, "train_cfmd.lr_decay = -0.5: must be in (0, 1]"),
    ("train_chrysos_hg", {"identity_share": 1.5}, "train_chrysos_hg.identity_share = 1.5: must be in [0, 1)"),
    ("train_cfmd", {"loss": {"pix": -1}}, "train_cfmd.loss.pix = -1: must be >= 0"),
    ("train_cfmd", {"loss": {"charbonnier_eps": -1}}, "train_cfmd.loss.charbonnier_eps = -1: must be > 0"),
    ("train_cfmd", {"lr": -1}, "train_cfmd.lr = -1: must be > 0"),
    ("train_cfmd", {"betas": [2, 3]}, "train_cfmd.betas = [2, 3]: must be two numbers in [0, 1)"),
    ("train_cfmd", {"generator": {"base_width": 0}}, "train_cfmd.generator.base_width = 0: must be an integer"),
    ("train_chrysos_hg", {"hourglass": {"depth": 0}}, "train_chrysos_hg.hourglass.depth = 0: must be an integer"),
    ("train_chrysos_hg", {"hourglass": {"width": -4}}, "train_chrysos_hg.hourglass.width = -4: must be an integer"),
    ("train_chrysos_gan", {"loss": {"l1": -100}}, "train_chrysos_gan.loss.l1 = -100: must be >= 0"),
    ("train_chrysos_gan", {"generator": {"width_multiplier": 0}},
     "train_chrysos_gan.generator.width_multiplier = 0: must be a number > 0"),
    ("train_chrysos_gan", {"discriminator": {"width_multiplier": "wide"}},
     "train_chrysos_gan.discriminator.width_multiplier = \"wide\": must be a number"),
])
def test_training_params_out_of_range_are_refused_by_name(section, change, message):
    with pytest.raises(ParamError) as e:
        validate_all(deep_update(repo_params(), {section: change}))
    assert str(e.value).startswith(message)


def test_crop_size_above_the_images_is_one_line(small_run, tmp_path):
    write_params(tmp_path, {"train_cfmd": {"resolution": None, "crop_size": 512}})
    with pytest.raises(SystemExit, match=r"^train_cfmd: train_cfmd.crop_size = 512: above the 256px training images"):
        run_cfmd(tmp_path, small_run)


# ------------------------------------------------------------------ rows 18, 19: what a stage cannot start with


def test_inputs_a_stage_cannot_start_with_are_one_line(small_run, tmp_path):
    test_video = pq.read_table(small_run / "manifests").filter(
        pq.read_table(small_run / "manifests")["split"].to_numpy(zero_copy_only=False) == "test")["video_id"][0].as_py()
    write_params(tmp_path, {"train_cfmd": {"validation_video": test_video}})
    with pytest.raises(SystemExit, match=rf"^train_cfmd: validation_video = {test_video}: a test video"):
        run_cfmd(tmp_path, small_run)
    write_params(tmp_path, {"train_cfmd": {"batch_size": 100000, "epoch_samples": None}})
    with pytest.raises(SystemExit, match=r"^train_cfmd: an epoch of \d+ training samples holds no batch of 100000"):
        run_cfmd(tmp_path, small_run)
    # a dataset without training rows (only its test split)
    empty = tmp_path / "test_only"
    (empty / "manifests").mkdir(parents=True)
    table = pq.read_table(small_run / "manifests")
    pq.write_table(table.filter(table["split"].to_numpy(zero_copy_only=False) == "test"), empty / "manifests/m.parquet")
    write_params(tmp_path)
    with pytest.raises(SystemExit, match=r"^train_cfmd: .*no train samples made by \['fixed'\].*nothing to train on"):
        run_cfmd(tmp_path, empty)


def test_a_missing_or_wrong_hourglass_is_one_line(small_run, tmp_path):
    from stages import train_chrysos_gan

    write_params(tmp_path)

    def run(hourglass):
        return train_chrysos_gan.main(stage_args(train_chrysos_gan, tmp_path, small_run, "--hourglass", str(hourglass),
                                                 "--out", str(tmp_path / "models/chrysos_gan.pt")))

    with pytest.raises(SystemExit, match=r"^train_chrysos_gan: .*nothing\.pt: model weights not found \(train it first"):
        run(tmp_path / "nothing.pt")
    run_cfmd(tmp_path, small_run)
    with pytest.raises(SystemExit, match=r"^train_chrysos_gan: .*cfmd\.pt: holds a 'cfmd_gan' model, not 'chrysos_hourglass'"):
        run(tmp_path / "models/cfmd.pt")


# ------------------------------------------------------------------ row 20: a sample of another size or bit depth


def test_a_sample_of_another_size_or_bit_depth_is_refused_by_name(dataset_copy):
    rows = training_rows(dataset_copy, ["fixed"])
    dataset = FaceDeblurDataset(rows, dataset_copy, "middle")
    png = dataset_copy / rows[1]["blurry_path"]
    image = cv2.imread(str(png))
    cv2.imwrite(str(png), cv2.resize(image, (128, 128)))
    from pipeline.dataset.manifest import SampleReadError

    with pytest.raises(SampleReadError, match=rf"{png.name}: 128 x 128 pixels; the dataset's images are 8-bit RGB, 256 x 256"):
        dataset[1]
    cv2.imwrite(str(png), image.astype(np.uint16) * 257)
    with pytest.raises(SampleReadError, match=rf"{png.name}: 16-bit samples"):
        dataset[1]
    cv2.imwrite(str(png), image[..., 0])
    with pytest.raises(SampleReadError, match=rf"{png.name}: 1 channel"):
        dataset[1]
    assert dataset[0]["blurry"].shape == (3, 256, 256)  # the others still load
