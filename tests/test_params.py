"""params.yaml validation (pipeline/params.py): the whole file, and one bad value per rule.

Every stage validates the sections it reads before any work starts; the error is one line naming
the key, the value and what is allowed.
"""
from __future__ import annotations

import argparse
import copy
import os

import pytest
import yaml

from conftest import REPO, repo_params
from pipeline.params import ParamError, validate_all, validate_file
from pipeline.stage import load_params


def with_value(params: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(params)
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def test_repository_params_file_is_valid():
    """The whole params.yaml, every section (data, training, evaluation), and the presets."""
    validate_file(REPO / "params.yaml")
    for preset in sorted((REPO / "presets").glob("*.yaml")):
        overlay = yaml.safe_load(preset.read_text()) or {}
        merged = copy.deepcopy(repo_params())
        for section, values in overlay.items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        validate_all(merged)


# (key, value, words the one-line message must hold) -- the probe's findings and a few more
BAD = [
    ("blur.gamma", 0, "must be a number > 0"),
    ("blur.gamma", "x", "must be a number"),
    ("crop.size", 0, "integer in [32, 4096]"),
    ("crop.size", 7, "integer in [32, 4096]"),
    ("crop.widen", -1, "in [0, 5]"),
    ("crop.edge", "wrap", "shift | pad"),
    ("crop.square", "middle", "shorter | longer"),
    ("ingest.test_fraction", 1.5, "in [0, 1]"),
    ("ingest.image_fps", 0, "> 0"),
    ("landmarks.detect_every", 0, ">= 1"),
    ("landmarks.use_pts", "yes", "true or false"),
    ("blur.fixed.strde", 5, "unknown key"),
    ("blur.fixed.windows", ["a"], "windows[0]"),
    ("blur.fixed.windows", 5, "must be a list"),
    ("blur.fixed.windows", [1], "in [2, 1000]"),
    ("blur.fixed.sharpness_percentile", 101, "[0, 100] (or null)"),
    ("blur.vla.min_len", 30, "<= blur.vla.max_len"),
    ("blur.png.level", 10, "[0, 9]"),
    ("compute.n_jobs", 0, ">= 1"),
    ("compute.backend", "spark", "loky | threading"),
    ("manifest.fmr.rounding", "up", "truncate | round | none"),
    ("manifest.fmr.keypoint", 68, "[0, 67]"),
    ("train_cfmd.crop_size", 7, "multiple of 16"),
    ("train_chrysos_gan.crop_size", 48, "multiple of 32"),  # 5 levels at resolution 64: 2**5
    ("train_cfmd.steps", "x", "must be an integer"),
    ("train_cfmd.batch_size", 0, ">= 1"),
    ("train_cfmd.betas", [0.9], "a list of 2 numbers"),
    ("train_cfmd.runtime.device", "tpu", "auto | cpu | cuda"),
    ("train_chrysos_hg.stepz", 1, "unknown keys"),
    ("evaluate.batch_size", "x", "must be an integer"),
    ("evaluate.landmarks.threshold", "x", "must be a number"),
]


@pytest.mark.parametrize("key,value,words", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_bad_value_names_key_value_and_rule(key, value, words):
    with pytest.raises(ParamError) as info:
        validate_all(with_value(repo_params(), key, value))
    message = str(info.value)
    assert "\n" not in message
    assert key.split(".")[-1] in message and words in message, message
    if not key.endswith("strde") and not key.endswith("stepz"):
        assert yaml.safe_dump(value, default_flow_style=True).strip().split("\n")[0].strip("[]'\"") in message


def test_unknown_section_and_yaml_errors(tmp_path):
    with pytest.raises(ParamError, match="blurr: unknown section.*did you mean blur"):
        validate_all({**repo_params(), "blurr": {}})
    bad = tmp_path / "params.yaml"
    bad.write_text("blur: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        validate_file(bad)


def test_stage_stops_before_any_work_with_one_line(tmp_path):
    """A stage given a bad param exits (SystemExit with the message) before touching its outputs."""
    from stages import blur_fixed, landmarks

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(repo_params(), "blur.gamma", 0)))
    out = tmp_path / "data" / "dataset" / "fixed"
    out.mkdir(parents=True)
    (out / "samples.parquet").write_text("previous output")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as info:
            blur_fixed.main(argparse.Namespace(catalog="missing.parquet", landmarks="missing", root="data/dataset",
                                               metrics="metrics/blur_fixed.json"))
        assert str(info.value.code) == "params.yaml: blur.gamma = 0: must be a number > 0 and <= 10"
        assert (out / "samples.parquet").read_text() == "previous output"
        # the landmarks stage does not read blur: a bad blur value does not stop it at the params check
        with pytest.raises(SystemExit, match="landmarks.detect_every = 0"):
            (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value(repo_params(), "landmarks.detect_every", 0)))
            landmarks.main(argparse.Namespace(catalog="missing.parquet", out="data/landmarks",
                                              metrics="metrics/landmarks.json"))
    finally:
        os.chdir(cwd)


def test_load_params_names_a_missing_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"compute": {"n_jobs": 1}}))
    with pytest.raises(SystemExit, match="ingest: missing"):
        load_params("ingest", "compute", path=p)
    assert load_params("compute", path=p) == {"compute": {"n_jobs": 1}}


def test_dotted_settings_nest_and_read_values_as_yaml():
    from pipeline.params import dotted_settings

    assert dotted_settings(["blur.fixed.stride=3", "blur.gamma=2.2", "train_cfmd.colour=[0.7, 1.0]",
                            "crop.resize=opencv", "evaluate.resolution=null"]) == {
        "blur": {"fixed": {"stride": 3}, "gamma": 2.2}, "train_cfmd": {"colour": [0.7, 1.0]},
        "crop": {"resize": "opencv"}, "evaluate": {"resolution": None}}


def test_a_preset_that_is_missing_or_not_sections_is_one_line(tmp_path):
    from pipeline.train.presets import main as preset_main

    with pytest.raises(SystemExit, match=r"^presets: .*nope\.yaml: cannot read the preset \(No such file or directory\)$"):
        preset_main([str(tmp_path / "nope.yaml")])
    listed = tmp_path / "list.yaml"
    listed.write_text("- train_cfmd\n- steps: 5\n")
    with pytest.raises(SystemExit, match=r"^presets: .*list\.yaml: a preset holds params sections .* not a list$"):
        preset_main([str(listed)])
    broken = tmp_path / "broken.yaml"
    broken.write_text("train_cfmd: [unclosed\n")
    with pytest.raises(SystemExit, match=r"^presets: .*broken\.yaml: not valid YAML"):
        preset_main([str(broken)])


def test_a_data_preset_runs_the_whole_pipeline_and_a_training_preset_its_stages():
    from pipeline.train.presets import command

    data = command(str(REPO / "presets/300vw.yaml"), ["-S", "ingest.source=/data/300VW"], str(REPO / "dvc.yaml"))
    assert data[:3] == ["dvc", "exp", "run"] and data[-2:] == ["-S", "ingest.source=/data/300VW"]  # no stage target
    training = command(str(REPO / "presets/chrysos-paper.yaml"), None, str(REPO / "dvc.yaml"))
    assert training[-3:] == ["train_chrysos_hg", "train_chrysos_gan", "evaluate"]
