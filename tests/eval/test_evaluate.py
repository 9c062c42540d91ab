"""The evaluate stage on a small REAL dataset (the `small_run` fixture) with models trained by the
real training stages (a few steps: the numbers are poor, the bookkeeping is what is tested)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import deep_update, reference_ssim, repo_params
from pipeline.eval.config import BASELINE, EvalConfig
from pipeline.eval.scoring import evaluate
from pipeline.eval.selection import Pair, plan, spread_over_n
from pipeline.eval.tables import summary
from pipeline.dataset.manifest import centre_position, load_sample, middle_position, read_manifests

TINY = {
    "train_cfmd": {"generator": {"base_width": 8, "num_blocks": 1, "mapping_width": 8, "mapping_layers": 2},
                   "discriminator": {"width": 8, "depth": 2}, "perceptual": "none", "crop_size": 32,
                   "sheet": {"samples": 1, "u": [0.5]}},
    "train_chrysos_hg": {"hourglass": {"n_stacks": 1, "depth": 2, "width": 8}, "sheet": {"samples": 1}},
    "train_chrysos_gan": {"generator": {"width_multiplier": 1 / 16}, "discriminator": {"width_multiplier": 1 / 16},
                          "sheet": {"samples": 1}},
}
COMMON = {"steps": 2, "batch_size": 2, "epoch_samples": 4,
          "runtime": {"device": "cpu", "amp": "auto", "channels_last": "auto", "compile": False, "num_workers": 0}}
EVAL = {"max_samples": {"fixed": 2, "vla": 1}, "face_workers": 0, "prefetch": 1, "fid_min_images": 2,
        "sheet": {"samples": 2, "u": [0.0, 0.5, 1.0]}, "runtime": {"device": "cpu"}}


@pytest.fixture(scope="module")
def project(small_run, tmp_path_factory) -> Path:
    """A folder with params.yaml and models/{cfmd,chrysos_gan}.pt from the real training stages."""
    from stages import train_cfmd, train_chrysos_gan, train_chrysos_hg

    root = tmp_path_factory.mktemp("evalproject")
    params = repo_params()
    for name, tiny in TINY.items():
        params[name] = deep_update(params[name], {**COMMON, **tiny})
    params["evaluate"] = deep_update(params["evaluate"], EVAL)
    (root / "params.yaml").write_text(yaml.safe_dump(params))

    def args(module, out, *extra):
        """The stage's own command line (so the test follows its options), outputs under `root`."""
        name = module.SECTION
        return module.get_args_parser().parse_args([
            "--params", str(root / "params.yaml"), "--root", str(small_run), "--out", str(root / out),
            "--metadata", str(root / f"models/{name}.json"), "--metrics", str(root / f"metrics/{name}.json"),
            "--live", str(root / f"dvclive/{name}"), "--checkpoints", str(root / f"ckpt/{name}"), *extra])

    train_cfmd.main(args(train_cfmd, "models/cfmd.pt"))
    train_chrysos_hg.main(args(train_chrysos_hg, "models/chrysos_hourglass.pt"))
    train_chrysos_gan.main(args(train_chrysos_gan, "models/chrysos_gan.pt",
                                "--hourglass", str(root / "models/chrysos_hourglass.pt")))
    return root


def run_stage(project: Path, small_run: Path, model: str) -> dict:
    from stages import evaluate as stage

    weights = {"cfmd": "cfmd.pt", "chrysos": "chrysos_gan.pt"}[model]
    stage.main(stage.get_args_parser().parse_args([
        "--model", model, "--weights", str(project / "models" / weights), "--params", str(project / "params.yaml"),
        "--root", str(small_run), "--metrics", str(project / f"metrics/eval_{model}.json"),
        "--results", str(project / f"results/eval_{model}.parquet"), "--plots", str(project / "reports/eval"),
        "--sheet", str(project / f"reports/eval/{model}_examples.png")]))
    return json.loads((project / f"metrics/eval_{model}.json").read_text())


@pytest.fixture(scope="module")
def evaluated(project, small_run) -> dict:
    return {model: run_stage(project, small_run, model) for model in ("cfmd", "chrysos")}


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ the stage end to end


def test_evaluate_stage_writes_tables_for_both_models_and_the_baseline(project, evaluated, small_run):
    test_rows = read_manifests(small_run, split="test").to_pylist()
    for model, tables in (("cfmd", ("all_u", "centre_fmr", "centre_middle")), ("chrysos", ("middle",))):
        m = evaluated[model]
        assert m["model"]["name"] == model and m["model"]["parameters"] > 0
        assert m["samples"]["evaluated"] == {"fixed": 2, "vla": 1}
        assert m["samples"]["available"]["fixed"] == sum(r["method"] == "fixed" for r in test_rows)
        for method in ("fixed", "vla"):
            assert set(m[method]) == set(tables)
            for table in tables:
                assert set(m[method][table]) == {model, BASELINE, "scoreboard"}
                board = m[method][table]["scoreboard"]  # the same pairs: n and gain agree with the cells
                ours, base = m[method][table][model]["all"], m[method][table][BASELINE]["all"]
                assert board["all"]["n"] == ours["n"] == sum(c["n"] for c in board["bands"].values())
                assert board["all"]["gain"] == pytest.approx(ours["psnr"] - base["psnr"], abs=2e-4)
                assert set(board["videos"]) == {r["video_id"] for r in test_rows if r["method"] == method} & set(
                    board["videos"])
                for system, cells in ((k, v) for k, v in m[method][table].items() if k != "scoreboard"):
                    assert "all" in cells and any(k.startswith("N") for k in cells)
                    assert cells["all"]["n"] == sum(c["n"] for k, c in cells.items() if k != "all")
                    c = cells["all"]
                    assert 0 < c["psnr"] < 100 and 0 < c["ssim"] <= 1
                    assert c["identity_dist"] >= 0 and 0 <= c["landmark_auc"] <= 1 and 0 <= c["landmark_failure"] <= 1
                    assert c["lpips"] is None or c["lpips"] >= 0
                    assert c["fid"] is None or c["fid"] >= 0
        info = m["metrics_info"]
        assert info["lpips"]["available"] or info["lpips"]["reason"]  # never a silent zero
        assert info["fid"]["available"] or info["fid"]["reason"]

    cfmd = evaluated["cfmd"]["fixed"]
    # all u: one pair per FMR frame; the centre tables: one per sample
    assert cfmd["all_u"]["cfmd"]["all"]["n"] == 5 + 9  # one N=5 and one N=9 sample (spread over N)
    assert cfmd["centre_fmr"]["cfmd"]["all"]["n"] == 2
    assert cfmd["centre_fmr"]["cfmd"]["N05"]["fid"] is None  # one image, below fid_min_images: recorded as null
    if evaluated["cfmd"]["metrics_info"]["fid"]["available"]:
        assert cfmd["all_u"]["cfmd"]["all"]["fid"] > 0
    # the single-output model and CFMD's centre output share the middle-frame target and baseline
    assert evaluated["chrysos"]["fixed"]["middle"][BASELINE] == cfmd["centre_middle"][BASELINE]

    records = pq.read_table(project / "results/eval_cfmd.parquet").to_pylist()
    n_vla = evaluated["cfmd"]["vla"]["all_u"]["cfmd"]["all"]["n"]  # the VLA sample's N
    assert n_vla > 2
    # (model + baseline) x (all u, 2 centre), and one no-harm record per sample
    assert len(records) == 2 * (14 + 2 + 2) + 2 * (n_vla + 1 + 1) + 3
    assert {r["face_box"] for r in records if r["table"] != "sharp_input"} <= {"detect", "crop_policy"}
    assert all(r["target_is_middle"] for r in records if r["table"] == "centre_middle")
    assert all(abs(r["input_u"] - r["target_u"]) < 1e-6 for r in records if r["table"] == "all_u" and r["system"] == "cfmd")

    for model in ("cfmd", "chrysos"):
        vs_n = read_csv(project / f"reports/eval/{model}_fixed_vs_n.csv")
        assert [int(r["n_frames"]) for r in vs_n] == [5, 9]
        assert set(vs_n[0]) == {"n_frames", "images", f"{model}_psnr", "blurry_psnr", f"{model}_ssim", "blurry_ssim"}
        ced = read_csv(project / f"reports/eval/{model}_ced.csv")
        assert float(ced[0]["threshold"]) == 0 and float(ced[-1]["threshold"]) == pytest.approx(0.1)
        for col in (f"{model}_fixed", "blurry_fixed", f"{model}_vla", "blurry_vla"):
            values = [float(r[col]) for r in ced]
            assert values == sorted(values) and 0 <= values[0] and values[-1] <= 1  # a CDF
        assert (project / f"reports/eval/{model}_examples.png").stat().st_size > 10_000
    fixed_vs_n = read_csv(project / "reports/eval/cfmd_fixed_vs_n.csv")
    assert float(fixed_vs_n[0]["cfmd_psnr"]) == pytest.approx(cfmd["all_u"]["cfmd"]["N05"]["psnr"], abs=1e-3)


def test_the_no_harm_row_restores_each_sharp_middle_frame(project, evaluated, small_run):
    """The sharp-input row: each test window's sharp middle frame given to the model as its input
    (CFMD-GAN at u = 0.5), scored against itself, recomputed here with the inference API; the
    40-dB figure is the loss that change would cost an input 40 dB from its target."""
    import cv2

    from pipeline.models.inference import load_model, restore_many

    res = evaluated["cfmd"]["resolution"]
    records = [r for r in pq.read_table(project / "results/eval_cfmd.parquet").to_pylist() if r["table"] == "sharp_input"]
    assert len(records) == 3 and all(r["system"] == "cfmd" and r["input_u"] == 0.5 and r["target_is_middle"]
                                     for r in records)
    rows = {r["sample_id"]: r for r in read_manifests(small_run, split="test").to_pylist()}
    model = load_model(project / "models/cfmd.pt", "cpu")
    for rec in records:
        _, sharp = load_sample(rows[rec["sample_id"]], small_run)
        frame = cv2.resize(sharp[middle_position(rows[rec["sample_id"]])], (res, res), interpolation=cv2.INTER_AREA)
        out = restore_many(model, frame, [0.5], 1)[0].astype(np.float64)
        mse = ((out - frame) ** 2).mean()
        assert rec["psnr"] == pytest.approx(min(10 * np.log10(255 ** 2 / mse), 100.0) if mse else 100.0, abs=0.05)
    for method in ("fixed", "vla"):
        p = np.array([r["psnr"] for r in records if r["method"] == method])
        cell = evaluated["cfmd"]["sharp_input"][method]
        assert cell["n"] == len(p) and cell["psnr"] == pytest.approx(p.mean(), abs=1e-3)
        assert cell["change_at_40"] == pytest.approx(-np.mean(10 * np.log10(1 + 10 ** ((40 - p) / 10))), abs=1e-3)
        assert cell["change_at_40"] <= 0 and 0 <= cell["worse_share"] <= 1
    assert evaluated["chrysos"]["sharp_input"]["fixed"]["n"] == 2


def test_baseline_row_equals_metrics_of_the_blurry_input(project, evaluated, small_run):
    """The blurry row, recomputed here from load_sample with numpy PSNR and a float64 SSIM, at the
    evaluation's resolution (OpenCV's area resize, applied here independently)."""
    import cv2

    res = evaluated["cfmd"]["resolution"]
    assert res == repo_params()["evaluate"]["resolution"] == evaluated["chrysos"]["resolution"]

    def at_res(image):
        return cv2.resize(image, (res, res), interpolation=cv2.INTER_AREA) if image.shape[0] != res else image

    records = pq.read_table(project / "results/eval_cfmd.parquet").to_pylist()
    rows = {r["sample_id"]: r for r in read_manifests(small_run, split="test").to_pylist()}
    for method in ("fixed", "vla"):
        ids = sorted({r["sample_id"] for r in records if r["method"] == method})
        psnrs, ssims, middle_psnrs = [], [], []
        for sid in ids:
            blurry, sharp = load_sample(rows[sid], small_run)
            blurry, sharp = at_res(blurry), [at_res(f) for f in sharp]
            for k in range(len(sharp)):
                mse = ((blurry.astype(np.float64) - sharp[k]) ** 2).mean()
                psnrs.append(10 * np.log10(255 ** 2 / mse))
                ssims.append(reference_ssim(blurry, sharp[k]))
            mid = sharp[middle_position(rows[sid])]
            middle_psnrs.append(10 * np.log10(255 ** 2 / ((blurry.astype(np.float64) - mid) ** 2).mean()))
        base = evaluated["cfmd"][method]["all_u"][BASELINE]["all"]
        assert base["n"] == len(psnrs)
        assert base["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-4)
        assert base["ssim"] == pytest.approx(np.mean(ssims), abs=1e-4)
        assert evaluated["chrysos"][method]["middle"][BASELINE]["all"]["psnr"] == pytest.approx(np.mean(middle_psnrs),
                                                                                                 abs=1e-4)


class IdentityModel:
    """A 'restoration' that returns the blurry input: it must score exactly like the baseline."""

    name, kind, multi_output, path = "cfmd", "identity-test-stub", True, Path("identity")
    device = torch.device("cpu")

    def metadata(self):
        return {"name": self.name, "kind": self.kind, "parameters": 0, "dtype": "float32"}

    def restore(self, blurry, u=None):
        return blurry.clone()


def test_an_identity_restoration_scores_exactly_like_the_baseline(small_run):
    cfg = EvalConfig.from_params({**EVAL, "max_samples": {"fixed": 2, "vla": 1}})
    ev = evaluate(IdentityModel(), small_run, cfg)
    result = summary(ev, cfg, "cfmd")
    for method in ("fixed", "vla"):
        for table in ("all_u", "centre_fmr", "centre_middle"):
            assert result[method][table]["cfmd"] == result[method][table][BASELINE], (method, table)
    assert result["fixed"]["all_u"]["cfmd"]["all"]["n"] == 5 + 9


def test_the_dlib_metrics_run_on_the_stated_subset_and_fid_is_null_below_its_minimum(small_run):
    cfg = EvalConfig.from_params({**EVAL, "face_samples": {"fixed": 1, "vla": 0}, "fid_min_images": 50})
    ev = evaluate(IdentityModel(), small_run, cfg)
    result = summary(ev, cfg, "cfmd")
    scored = {r["sample_id"] for r in ev.records if r["face_scored"]}
    assert len(scored) == 1 and all(r["method"] == "fixed" for r in ev.records if r["face_scored"])
    assert all(r["identity_dist"] is None and r["landmark_error"] is None for r in ev.records if not r["face_scored"])
    fixed, vla = result["fixed"]["all_u"]["cfmd"], result["vla"]["all_u"]["cfmd"]
    assert fixed["all"]["n"] == 5 + 9 and fixed["all"]["n_face"] == 5  # the N=5 sample (spread over N)
    assert fixed["N05"]["landmark_failure"] is not None and fixed["N09"]["landmark_failure"] is None
    assert fixed["all"]["landmark_failure"] == fixed["N05"]["landmark_failure"]  # not counted as failures
    assert vla["all"]["n_face"] == 0 and vla["all"]["identity_dist"] is None and vla["all"]["landmark_auc"] is None
    assert fixed["all"]["fid"] is None  # 14 images < 50
    assert result["metrics_info"]["fid"]["null_when"] == "fewer than 50 images enter a cell"
    assert result["metrics_info"]["identity"]["face_samples"] == {"fixed": 1, "vla": 0}
    with pytest.raises(ValueError, match="fid_min_images"):
        EvalConfig.from_params({"fid_min_images": 1})


# ------------------------------------------------------------------------------ pieces


def test_spread_takes_samples_across_n_evenly():
    rows = [{"n_frames": n, "sample_id": f"{n}-{i}"} for n in (5, 7, 9) for i in range(4)] + \
           [{"n_frames": 11, "sample_id": "11-0"}]
    picked = spread_over_n(rows, 6)
    counts = {n: sum(r["n_frames"] == n for r in picked) for n in (5, 7, 9, 11)}
    assert sum(counts.values()) == 6 and counts[11] == 1 and min(counts.values()) >= 1
    assert spread_over_n(rows, None) == rows and spread_over_n(rows, 100) == rows
    assert [r["sample_id"] for r in spread_over_n(rows, 3)] == ["5-0", "7-0", "9-0"]


def test_plan_pairs_every_u_the_centre_and_the_middle():
    odd = {"n_frames": 5, "u": [0, 0.25, 0.5, 0.75, 1], "method": "fixed", "start_frame": 10,
           "frame_indices": [12, 10, 11, 14, 13]}
    pairs = plan("cfmd", odd)
    assert sum(p.table == "all_u" and p.system == "cfmd" for p in pairs) == 5
    assert Pair("centre_fmr", "cfmd", 0.5, 2) in pairs  # u = 0.5 exactly
    assert Pair("centre_middle", "cfmd", 0.5, 0) in pairs  # frame 12 = start + (5 - 1) // 2, FMR position 0
    assert all(any(q.system == BASELINE and q.table == p.table and q.target == p.target for q in pairs)
               for p in pairs)
    even = {"n_frames": 4, "u": [0, 1 / 3, 2 / 3, 1], "method": "fixed", "start_frame": 0, "frame_indices": [0, 1, 2, 3]}
    assert centre_position(even) == 1  # the first of the two nearest 0.5
    assert plan("chrysos", even) == [Pair("middle", "chrysos", None, 1), Pair("middle", BASELINE, None, 1)]


def test_unknown_evaluate_keys_are_errors():
    with pytest.raises(ValueError, match="unknown keys"):
        EvalConfig.from_params({"max_sample": 3})
    with pytest.raises(ValueError, match="unknown keys"):
        EvalConfig.from_params({"landmarks": {"treshold": 0.1}})
    with pytest.raises(ValueError):
        EvalConfig.from_params({"methods": ["blurry"]})
    cfg = EvalConfig.from_params(repo_params()["evaluate"], repo_params()["crop"])
    assert cfg.quota("fixed") == repo_params()["evaluate"]["max_samples"]["fixed"]


def test_missing_model_file_is_a_clear_error(tmp_path):
    from pipeline.models.inference import ModelFileError, load_model

    with pytest.raises(ModelFileError, match="nope.pt: model weights not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ModelFileError, match="bad.pt: not a readable model weights file"):
        load_model(bad)
    hg = tmp_path / "hg.pt"
    torch.save({"kind": "chrysos_hourglass", "config": {}, "state_dicts": {}}, hg)
    with pytest.raises(ModelFileError, match="holds a 'chrysos_hourglass' model"):
        load_model(hg)


# ------------------------------------------------------------------ hostile inputs (issue 37, rows 6, 23, 24)


def _evaluate_args(project: Path, small_run: Path, model: str, weights: Path, params: Path | None = None, **paths):
    """The stage's command line, writing under `project` (params: `project`'s unless given)."""
    from stages import evaluate as stage

    out = {"metrics": project / f"metrics/eval_{model}.json", "results": project / f"results/eval_{model}.parquet",
           "plots": project / "reports/eval", "sheet": project / f"reports/eval/{model}_examples.png", **paths}
    return stage, stage.get_args_parser().parse_args([
        "--model", model, "--weights", str(weights), "--params", str(params or project / "params.yaml"),
        "--root", str(small_run),
        *[x for k, v in out.items() for x in (f"--{k}", str(v))]])


def _outputs(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for d in ("metrics", "results", "reports")
            for p in sorted((project / d).rglob("*")) if p.is_file()}


def test_evaluate_failing_part_way_replaces_nothing(project, evaluated, small_run, tmp_path):
    before = _outputs(project)
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the sheet's folder should be")
    params = yaml.safe_load((project / "params.yaml").read_text())  # another run: other results, plots, metrics
    params["evaluate"]["max_samples"] = {"fixed": 1, "vla": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage, args = _evaluate_args(project, small_run, "cfmd", project / "models/cfmd.pt", params=tmp_path / "params.yaml",
                                 sheet=blocker / "cfmd_examples.png")
    with pytest.raises((OSError, SystemExit)):
        stage.main(args)
    assert _outputs(project) == before  # results parquet, plot CSVs and metrics: all the previous run's


def test_evaluate_refuses_non_finite_weights_and_missing_samples_in_one_line(project, small_run, tmp_path):
    saved = torch.load(project / "models/cfmd.pt", weights_only=True)
    saved["state_dicts"]["generator"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                         for k, v in saved["state_dicts"]["generator"].items()}
    nan = tmp_path / "nan.pt"
    torch.save(saved, nan)
    stage, args = _evaluate_args(tmp_path, small_run, "cfmd", nan, params=project / "params.yaml")
    with pytest.raises(SystemExit, match=r"^evaluate: .*nan\.pt: the generator's weights are not finite"):
        stage.main(args)
    # a dataset whose test PNGs are gone
    broken = Path(shutil.copytree(small_run, tmp_path / "dataset"))
    shutil.rmtree(broken / "fixed/blurry")
    stage, args = _evaluate_args(tmp_path, broken, "chrysos", project / "models/chrysos_gan.pt",
                                 params=project / "params.yaml")
    with pytest.raises(SystemExit, match=r"^evaluate: .*\.png: blurry image missing or unreadable"):
        stage.main(args)
    assert not (tmp_path / "metrics").exists()
