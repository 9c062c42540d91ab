"""`python -m pipeline.deblur` under hostile but fair use (issue 37, rows 1, 6-15, 26): names that
would write outside `--out`, non-finite or out-of-range weights files, odd photos among good ones,
out-of-range options, and the restoration that must never make a photo's face softer than it was.

The networks are real (CFMD-GAN's and the Chrysos model's) in the training stages' weights format:
one with random output convolutions (a model that changes the face a lot), and one as the training
stages start every model (the identity start: it returns its input)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import GRID, REPO, TEST_DATA, read_frames
from test_deblur import NOTE, PHOTO, grid_photo, weights  # noqa: F401 (fixtures)
from pipeline import deblur
from pipeline.deblur import main, sharpness
from pipeline.models.cfmd.generator import CFMDGenerator
from pipeline.train.artifacts import save_weights

TINY_G = {"base_width": 8, "num_blocks": 1, "mapping_width": 8, "mapping_layers": 2}


def cfmd_weights(path: Path, resolution: int | None = 64, poison: bool = False, **config) -> Path:
    """Real CFMD-GAN weights as train_cfmd writes them, at the identity start (optionally NaN)."""
    torch.manual_seed(0)
    generator = CFMDGenerator(**TINY_G)
    if poison:
        with torch.no_grad():
            generator.to_image3.weight.fill_(float("nan"))
    return save_weights(path, "cfmd_gan", {"generator": TINY_G, "resolution": resolution, **config},
                        {"generator": generator}, note=NOTE)


def face_region(image: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[max(y0, 0):y1, max(x0, 0):x1]


# ------------------------------------------------------------------ rows 1, 26: names that leave --out


def test_dot_names_and_control_characters_never_write_outside_out(weights, tmp_path):  # noqa: F811
    parent = tmp_path / "parent"
    out = parent / "out"
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("...jpg", "..jpg", "new\nline.jpg"):
        shutil.copy(PHOTO, photos / name)
    out.mkdir(parents=True)
    (parent / "keep.txt").write_text("a file beside --out")
    (out / "frame_00.png").write_bytes(b"a file of the user's inside --out")
    assert main([str(photos), "--weights", str(weights["cfmd"]), "--frames", "2", "--out", str(out),
                 "--animation", "none"]) == 0
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt", "out"]  # nothing written beside --out
    assert (parent / "keep.txt").read_text() == "a file beside --out"
    assert (out / "frame_00.png").read_bytes() == b"a file of the user's inside --out"  # nothing removed in --out
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["_.", "_..", "new_line"]
    for folder in folders:
        assert [p.name for p in sorted((out / folder).glob("frame_*.png"))] == ["frame_00.png", "frame_01.png"]


# ------------------------------------------------------------------ rows 6, 9: weights files


def test_non_finite_weights_are_refused_by_name(tmp_path):
    nan = cfmd_weights(tmp_path / "nan.pt", poison=True)
    with pytest.raises(SystemExit, match=r"nan\.pt: the generator's weights are not finite"):
        main([str(PHOTO), "--weights", str(nan), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / PHOTO.stem).exists()


@pytest.mark.parametrize("resolution, message", [
    (40000, "config.resolution = 40000: must be an integer in [16, 4096], a multiple of 16 (or null)"),
    ("64", "config.resolution = \"64\": must be an integer"),
    (-8, "config.resolution = -8: must be an integer"),
])
def test_a_weights_config_out_of_range_is_refused_before_any_network_is_built(tmp_path, resolution, message):
    path = cfmd_weights(tmp_path / "odd.pt", resolution=resolution)
    with pytest.raises(SystemExit) as e:
        main([str(PHOTO), "--weights", str(path), "--out", str(tmp_path / "out")])
    assert str(e.value).startswith(f"deblur: {path}: {message}")


def test_out_of_range_network_arguments_in_a_weights_file_are_refused(tmp_path):
    from pipeline.models.inference import ModelFileError, load_model

    torch.manual_seed(0)
    path = save_weights(tmp_path / "wide.pt", "cfmd_gan", {"generator": {**TINY_G, "base_width": 40000}},
                        {"generator": CFMDGenerator(**TINY_G)})
    with pytest.raises(ModelFileError, match=r"wide\.pt: config\.generator\.base_width = 40000: must be an integer"):
        load_model(path)


# ------------------------------------------------------------------ row 7: never softer than the photo


@pytest.mark.parametrize("model", ["identity", "random"])
def test_the_restored_face_keeps_the_photos_detail(weights, tmp_path, model):  # noqa: F811
    """A 512-px real photo (a talking-clip frame) and the 1280 x 720 300VW frame: with a model trained
    at 64 px, the face pasted back is at least as sharp (variance of the Laplacian) as the photo's,
    whether the model changes nothing (the identity start every training begins from) or a lot (random
    output convolutions); the old paste of the 64-px restoration was about ten times softer."""
    frame = read_frames(REPO / "data/videos/talking/WDA_KatieHill_000.mp4", 1)[0]  # 512 x 512
    photo512 = tmp_path / "talking.png"
    cv2.imwrite(str(photo512), frame)
    if model == "identity":
        path = cfmd_weights(tmp_path / "identity.pt")
    else:
        saved = torch.load(weights["cfmd"], weights_only=True)
        path = save_weights(tmp_path / "random64.pt", "cfmd_gan", {**saved["config"], "resolution": 64},
                            {"generator": _generator_from(saved)})
    for photo in (photo512, PHOTO):
        out = tmp_path / f"out-{photo.stem}"
        assert main([str(photo), "--weights", str(path), "--frames", "3", "--out", str(out), "--animation", "none"]) == 0
        info = json.loads((out / photo.stem / "info.json").read_text())
        original = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
        before = sharpness(original, info["face_box"])
        assert info["sharpness"]["input"] == pytest.approx(before, abs=0.01)
        for i in range(3):
            restored = cv2.cvtColor(cv2.imread(str(out / photo.stem / f"frame_{i:02d}.png")), cv2.COLOR_BGR2RGB)
            after = sharpness(restored, info["face_box"])
            assert after >= before, (photo.name, i, before, after)
            assert info["sharpness"]["output"][i] == pytest.approx(after, abs=0.01)
            if model == "identity":  # a model that changes nothing leaves the photo as it was
                assert np.abs(restored.astype(int) - original.astype(int)).max() <= 1


def _generator_from(saved: dict) -> CFMDGenerator:
    generator = CFMDGenerator(**saved["config"]["generator"])
    generator.load_state_dict(saved["state_dicts"]["generator"])
    return generator


def test_padding_past_the_photos_edge_is_never_pasted_back(weights, tmp_path):  # noqa: F811
    """A face at the photo's edge with crop.edge: pad: the crop holds black padding, which the
    correction neither comes from nor goes to; the photo's own border pixels stay bright."""
    frame = read_frames(GRID / "bbaf2n.mpg", 1)[0]
    h, w = frame.shape[:2]
    cut = frame[:, w // 2 - 40:]  # the face near the left edge: its widened box leaves the photo
    photo = tmp_path / "edge.png"
    cv2.imwrite(str(photo), cut)
    params = REPO / "params.yaml"  # crop.edge: pad, the authors' policy and the default
    saved = torch.load(weights["cfmd"], weights_only=True)
    model = save_weights(tmp_path / "random64.pt", "cfmd_gan", {**saved["config"], "resolution": 64},
                         {"generator": _generator_from(saved)})
    out = tmp_path / "out"
    assert main([str(photo), "--weights", str(model), "--frames", "2", "--out", str(out),
                 "--params", str(params), "--animation", "none"]) == 0
    info = json.loads((out / "edge" / "info.json").read_text())
    assert info["edge"] == "pad" and info["face_box"][0] < 0 and info["padding_px"] > 0
    restored = cv2.imread(str(out / "edge/frame_00.png")).astype(int)
    y0, y1 = max(info["face_box"][1], 0), min(info["face_box"][3], cut.shape[0])
    # the photo's first columns are unchanged: no correction within two model pixels (about 6 photo
    # pixels here) of the black padding, where the model sees it
    assert np.array_equal(restored[y0:y1, :4], cut[y0:y1, :4].astype(int))
    assert not np.array_equal(restored[y0:y1, 20:], cut[y0:y1, 20:].astype(int))  # further in, it restores


# ------------------------------------------------------------------ row 8: memory bounds


def test_frames_are_capped_and_very_large_photos_warned_about(weights, tmp_path, monkeypatch, caplog):  # noqa: F811
    with pytest.raises(SystemExit) as e:
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--frames", "1000", "--out", str(tmp_path)])
    assert e.value.code == 2
    monkeypatch.setattr(deblur, "LARGE_PIXELS", 100_000)
    monkeypatch.setattr(deblur, "ANIMATION_MAX_SIDE", 320)
    assert main([str(PHOTO), "--weights", str(weights["cfmd"]), "--frames", "2", "--out", str(tmp_path)]) == 0
    assert "a very large photo (1280 x 720" in caplog.text
    ok, anim = cv2.imreadanimation(str(tmp_path / PHOTO.stem / "sequence.gif"))
    assert ok and max(anim.frames[0].shape[:2]) == 320  # the animation is bounded, the PNGs are full size
    assert cv2.imread(str(tmp_path / PHOTO.stem / "frame_00.png")).shape[:2] == (720, 1280)


# ------------------------------------------------------------------ rows 10, 11: errors per photo, --out checked first


def test_an_odd_photo_fails_alone(weights, tmp_path, caplog):  # noqa: F811
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "thin.png"), np.full((1, 3000, 3), 128, np.uint8))
    shutil.copy(PHOTO, folder / PHOTO.name)
    out = tmp_path / "out"
    assert main([str(folder), "--weights", str(weights["cfmd"]), "--frames", "2", "--out", str(out)]) == 1
    assert "thin.png: 3000 x 1 pixels, too small to hold a face" in caplog.text
    assert len(list((out / PHOTO.stem).glob("frame_*.png"))) == 2


def test_an_unusable_out_is_one_line_before_any_work(weights, tmp_path):  # noqa: F811
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SystemExit, match=r"^deblur: --out .*afile: exists and is not a folder$"):
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--out", str(afile)])
    with pytest.raises(SystemExit, match=r"^deblur: --out .*afile/sub: cannot write there"):
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--out", str(afile / "sub")])


# ------------------------------------------------------------------ rows 12-15: options and --params


@pytest.mark.parametrize("option", [["--frames", "0"], ["--frames", "-1"], ["--fps", "0"], ["--fps", "-5"],
                                    ["--max-side", "0"], ["--upsample", "-1"], ["--upsample", "7"],
                                    ["--frames", "two"]])
def test_options_out_of_range_are_refused_by_argparse(weights, tmp_path, capsys, option):  # noqa: F811
    with pytest.raises(SystemExit) as e:
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--out", str(tmp_path), *option])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"argument {option[0]}" in err[-1] and ("out of range" in err[-1] or "is not an integer" in err[-1])
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(weights, tmp_path):  # noqa: F811
    with pytest.raises(SystemExit, match="^deblur: device cuda: no CUDA device is available"):
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--out", str(tmp_path), "--device", "cuda"])


def test_a_failed_rerun_keeps_the_previous_result(weights, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "out"
    assert main([str(PHOTO), "--weights", str(weights["cfmd"]), "--frames", "3", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in (out / PHOTO.stem).iterdir()}

    def broken(path, frames, fps):
        raise deblur.DeblurError(f"{path}: cannot write the animation")

    monkeypatch.setattr(deblur, "write_animation", broken)
    assert main([str(PHOTO), "--weights", str(weights["cfmd"]), "--frames", "5", "--out", str(out)]) == 1
    assert {p.name: p.read_bytes() for p in (out / PHOTO.stem).iterdir()} == before
    assert [p.name for p in out.iterdir()] == [PHOTO.stem]  # no staging folder left behind


def test_params_are_validated_with_the_stages_checker(weights, tmp_path):  # noqa: F811
    params = tmp_path / "params.yaml"
    params.write_text("crop:\n  widen: -0.9\n")
    with pytest.raises(SystemExit, match=r"^deblur: .*params\.yaml: crop\.widen = -0\.9: must be a number in \[0, 5\]"):
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--out", str(tmp_path / "out"), "--params", str(params)])
    with pytest.raises(SystemExit, match=r"^deblur: --params .*missing\.yaml: no such file"):
        main([str(PHOTO), "--weights", str(weights["cfmd"]), "--out", str(tmp_path / "out"),
              "--params", str(tmp_path / "missing.yaml")])
