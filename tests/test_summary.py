"""The headline metrics file (stage `summary`): short keys, built from the stages' metrics JSONs, and
`dvc metrics show` / `dvc metrics diff` of it fit a 160-column terminal."""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.summary import MAX_COLUMNS, MAIN_TABLE, build_summary, flatten, show_width
from stages import summary as stage

KEYS = {"n.train", "n.test", "cfmd.gain", "cfmd.third", "cfmd.ssim", "cfmd.sharp", "chrysos.gain", "chrysos.third",
        "chrysos.ssim", "chrysos.sharp"}


def _row(psnr, ssim):
    return {"all": {"psnr": psnr, "ssim": ssim, "n": 90}, "N05": {"psnr": psnr + 1, "ssim": ssim}}


def _write_inputs(folder: Path, cfmd_psnr=32.40912) -> dict:
    files = {
        "dataset": {"samples": {"total": 1061, "train": {"fixed": 670, "vla": 71}, "test": {"fixed": 262, "vla": 58}},
                    "sharp_frames": 9709},
        "eval_cfmd": {"fixed": {"all_u": {"cfmd": _row(cfmd_psnr, 0.951664), "blurry": _row(35.1, 0.97),
                                          "scoreboard": {"blurriest_third": {"gain": 0.1234}}},
                                "centre_fmr": {"cfmd": _row(1.0, 0.1), "blurry": _row(2.0, 0.2)}},
                      "vla": {"all_u": {"cfmd": _row(30.0, 0.9), "blurry": _row(31.0, 0.95)}},
                      "samples": {"evaluated": {"fixed": 10}}, "resolution": 64,
                      "sharp_input": {"fixed": {"n": 10, "psnr": 52.1, "change_at_40": -0.2712}}},
        "eval_chrysos": {"vla": {"middle": {"chrysos": _row(28.0, 0.9), "blurry": _row(27.5, 0.93)}}},  # no fixed
    }
    for name, data in files.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    return files


def _run_stage(folder: Path, out: Path):
    stage.main(argparse.Namespace(dataset=str(folder / "dataset.json"),
                                  eval=[str(folder / "eval_cfmd.json"), str(folder / "eval_chrysos.json")],
                                  out=str(out)))
    return json.loads(out.read_text())


def test_summary_keys_and_values(tmp_path):
    _write_inputs(tmp_path)
    summary = flatten(_run_stage(tmp_path, tmp_path / "metrics" / "summary.json"))
    assert set(summary) == KEYS
    assert summary["n.train"] == 741 and summary["n.test"] == 320
    assert summary["cfmd.ssim"] == 0.9517 and summary["cfmd.gain"] == -2.69 and summary["cfmd.third"] == 0.12
    assert summary["cfmd.sharp"] == -0.27  # the no-harm row of the method scored
    # no fixed samples scored: the VLA ones
    assert summary["chrysos.gain"] == 0.5 and summary["chrysos.third"] is None and summary["chrysos.sharp"] is None


def test_missing_inputs_give_nulls():
    summary = flatten(build_summary(None, {}))
    assert set(summary) == KEYS and all(v is None for v in summary.values())


def test_main_tables_agree_with_the_evaluation():
    from pipeline.eval.config import BASELINE, MAIN_TABLE as EVAL_MAIN
    from pipeline.summary import BASELINE as OURS
    assert MAIN_TABLE == EVAL_MAIN and OURS == BASELINE


def test_widest_summary_fits_160_columns():
    wide = build_summary({"samples": {"train": {"fixed": 10**6}, "test": {"fixed": 10**5}}},
                         {m: {"fixed": {MAIN_TABLE[m]: {m: {"all": {"psnr": -12.3456, "ssim": 0.123456}},
                                                        "blurry": {"all": {"psnr": 44.4444}},
                                                        "scoreboard": {"blurriest_third": {"gain": -55.5555}}}},
                              "resolution": 1024, "sharp_input": {"fixed": {"change_at_40": -12.3456}}}
                          for m in MAIN_TABLE})
    assert show_width(wide) <= MAX_COLUMNS


@pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None, reason="dvc not installed")
def test_real_dvc_metrics_show_and_diff_fit(tmp_path):
    """A tiny git + DVC project declaring only metrics/summary.json: `dvc metrics show` and
    `dvc metrics diff` lines are at most 160 characters."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               COLUMNS="160")

    def run(cmd):
        out = subprocess.run(cmd, cwd=tmp_path, env=env, shell=True, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _write_inputs(inputs)
    _run_stage(inputs, tmp_path / "metrics" / "summary.json")
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics/summary.json\n")
    run("git init -q && dvc init -q && git add -A && git commit -qm base")
    shown = run("dvc metrics show metrics/summary.json")
    assert "cfmd.third" in shown and max(map(len, shown.splitlines())) <= MAX_COLUMNS
    _write_inputs(inputs, cfmd_psnr=33.0)
    _run_stage(inputs, tmp_path / "metrics" / "summary.json")
    diff = run("dvc metrics diff --targets metrics/summary.json")
    assert "cfmd.gain" in diff and max(map(len, diff.splitlines())) <= MAX_COLUMNS
