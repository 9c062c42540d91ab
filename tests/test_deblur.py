"""`python -m pipeline.deblur` on real face photos, and its errors on bad inputs.

The weights are tiny, randomly initialised networks written in the training stages' format and
labelled as such (`note`): the command's plumbing is tested, not the restoration quality."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import GRID, REPO, TEST_DATA, read_frames
from pipeline.dataset.crop import CropParams
from pipeline.deblur import DeblurError, face_crop, find_face, main, paste, read_image
from pipeline.models.cfmd.generator import CFMDGenerator
from pipeline.models.chrysos.gan import ChrysosGenerator
from pipeline.models.chrysos.hourglass import StackedHourglass
from pipeline.train.artifacts import save_weights

PHOTO = TEST_DATA / "300vw-sample/001/imgs/000006.jpg"  # 1280 x 720, one face
NOTE = "random initialisation, for tests only"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    g = {"base_width": 8, "num_blocks": 1, "mapping_width": 8, "mapping_layers": 2}
    generator = CFMDGenerator(**g)
    with torch.no_grad():  # untrained, it returns its input at every u: give its output convs weights
        for conv in (generator.to_image1, generator.to_image2, generator.to_image3):
            conv.weight.normal_(0.0, 0.05)
    cfmd = save_weights(d / "cfmd.pt", "cfmd_gan", {"generator": g}, {"generator": generator}, note=NOTE)
    hg, gen = {"n_stacks": 1, "depth": 2, "width": 8}, {"width_multiplier": 1 / 16}
    chrysos = save_weights(d / "chrysos_gan.pt", "chrysos_gan", {"generator": gen, "hourglass": hg},
                           {"generator": ChrysosGenerator(**gen), "hourglass": StackedHourglass(**hg)}, note=NOTE)
    return {"cfmd": cfmd, "chrysos": chrysos}


@pytest.fixture(scope="module")
def grid_photo(tmp_path_factory) -> Path:
    """A frame of the GRID sample video (360 x 288), saved as a PNG photo."""
    path = tmp_path_factory.mktemp("photos") / "grid_bbaf2n.png"
    cv2.imwrite(str(path), read_frames(GRID / "bbaf2n.mpg", 1)[0])
    return path


def test_cfmd_writes_n_pasted_frames_and_a_gif(weights, tmp_path):
    assert main([str(PHOTO), "--weights", str(weights["cfmd"]), "--frames", "5", "--out", str(tmp_path),
                 "--params", str(REPO / "params.yaml")]) == 0
    folder = tmp_path / PHOTO.stem
    frames = sorted(folder.glob("frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:02d}.png" for i in range(5)]
    photo = cv2.imread(str(PHOTO))
    info = json.loads((folder / "info.json").read_text())
    assert info["u"] == [0.0, 0.25, 0.5, 0.75, 1.0] and info["model"] == "cfmd" and info["detector"] == "hog"
    x0, y0, x1, y1 = info["face_box"]
    assert x1 - x0 == y1 - y0 > 100  # square crop box around the face
    outside = np.ones(photo.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    restored = [cv2.imread(str(f)) for f in frames]
    for r in restored:
        assert r.shape == photo.shape
        assert np.array_equal(r[outside], photo[outside])  # only the face box changes
    assert not np.array_equal(restored[0], restored[-1])  # different moments u
    ok, anim = cv2.imreadanimation(str(folder / "sequence.gif"))
    assert ok and len(anim.frames) == 5 and anim.frames[0].shape[:2] == photo.shape[:2]


def test_crops_as_mp4_and_the_crop_matches_the_dataset_policy(weights, grid_photo, tmp_path):
    assert main([str(grid_photo), "--weights", str(weights["cfmd"]), "--frames", "3", "--out", str(tmp_path),
                 "--output", "crop", "--animation", "mp4"]) == 0
    folder = tmp_path / grid_photo.stem
    crops = [cv2.imread(str(folder / f"frame_{i:02d}.png")) for i in range(3)]
    assert all(c.shape == (256, 256, 3) for c in crops)
    cap = cv2.VideoCapture(str(folder / "sequence.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
    # the crop is the dataset's: landmark box widened by 0.5, centre crop to its shorter side (the
    # authors' default, crop.square: shorter), 256 (pipeline.dataset.crop)
    image = read_image(grid_photo)
    points, _ = find_face(image, "hog")
    crop, box, edge = face_crop(image, points, CropParams())
    lo, hi = points.min(0), points.max(0)
    side = min(hi - lo) * 2  # widen 0.5 on every side doubles each dimension
    assert box[2] - box[0] == pytest.approx(side, abs=2) and crop.shape == (256, 256, 3)
    assert abs((box[2] - box[0]) - (box[3] - box[1])) <= 1
    # the old policy stays available: a square of the longer side
    _, box, _ = face_crop(image, points, CropParams(square="longer", resize="opencv", edge="shift"))
    assert box[2] - box[0] == box[3] - box[1] == pytest.approx(max(hi - lo) * 2, abs=2)


def test_chrysos_writes_the_middle_frame_and_a_before_after_animation(weights, grid_photo, tmp_path):
    assert main([str(grid_photo), "--model", "chrysos", "--weights", str(weights["chrysos"]),
                 "--out", str(tmp_path)]) == 0
    folder = tmp_path / grid_photo.stem
    assert [f.name for f in folder.glob("frame_*.png")] == ["frame_00.png"]
    ok, anim = cv2.imreadanimation(str(folder / "sequence.gif"))
    assert ok and len(anim.frames) == 2
    assert json.loads((folder / "info.json").read_text())["u"] == [None]


def test_paste_blends_only_inside_the_box():
    photo = np.zeros((50, 60, 3), np.uint8)
    crop = np.full((16, 16, 3), 200, np.uint8)
    out = paste(photo, crop, np.array([-10, 20, 30, 60]))  # partly outside the photo
    assert out[:20].max() == 0 and out[:, 30:].max() == 0
    assert out[40, 10].tolist() == [200, 200, 200]  # centre: the restored face
    assert 0 < out[21, 10, 0] < 200  # border: feathered


def test_bad_inputs_give_clear_errors_naming_the_file(weights, tmp_path, caplog):
    blank = tmp_path / "no_face.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 90, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    with pytest.raises(DeblurError, match="no_face.png: no face found"):
        find_face(read_image(blank), "auto", name=str(blank))
    with pytest.raises(DeblurError, match="broken.jpg: cannot read it as an image"):
        read_image(broken)

    # a folder: the good photo is still deblurred, the bad ones listed, exit status 1
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in (blank, broken, PHOTO):
        shutil.copy(p, folder / p.name)
    (folder / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    assert main([str(folder), "--weights", str(weights["cfmd"]), "--frames", "2", "--out", str(out),
                 "--detector", "hog"]) == 1
    assert len(list((out / PHOTO.stem).glob("frame_*.png"))) == 2
    assert not (out / "no_face").exists() and not (out / "broken").exists()
    assert "2 of 3 photo(s) failed" in caplog.text
    assert "no_face.png: no face found" in caplog.text and "broken.jpg: cannot read it as an image" in caplog.text

    with pytest.raises(SystemExit, match=r"missing\.pt: model weights not found"):
        main([str(PHOTO), "--weights", str(tmp_path / "missing.pt"), "--out", str(out)])
    with pytest.raises(SystemExit, match=r"nothere\.jpg: no such file or folder"):
        main([str(tmp_path / "nothere.jpg"), "--weights", str(weights["cfmd"]), "--out", str(out)])
    with pytest.raises(SystemExit, match="holds a chrysos_gan model, not --model cfmd"):
        main([str(PHOTO), "--weights", str(weights["chrysos"]), "--out", str(out)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="empty: no images"):
        main([str(empty), "--weights", str(weights["cfmd"]), "--out", str(out)])


def test_command_line_entry_point(weights, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline.deblur", str(TEST_DATA / "nothing.png"),
                           "--weights", str(weights["cfmd"]), "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "nothing.png: no such file or folder" in done.stderr


def test_a_model_trained_at_64_restores_the_face_at_64(tmp_path, grid_photo):
    """The weights record the training resolution (issue 22): the face crop is area-downscaled to it,
    and the model's correction at 64 is added to the dataset's 256-px crop (no detail thrown away)."""
    torch.manual_seed(0)
    hg, gen = {"n_stacks": 1, "depth": 2, "width": 8}, {"width_multiplier": 1 / 16, "levels": 5}
    weights = save_weights(tmp_path / "chrysos_64.pt", "chrysos_gan", {"generator": gen, "hourglass": hg, "resolution": 64},
                           {"generator": ChrysosGenerator(**gen), "hourglass": StackedHourglass(**hg)}, note=NOTE)
    assert main([str(grid_photo), "--model", "chrysos", "--weights", str(weights), "--out", str(tmp_path / "out"),
                 "--output", "crop"]) == 0
    folder = tmp_path / "out" / grid_photo.stem
    assert cv2.imread(str(folder / "frame_00.png")).shape == (256, 256, 3)
    info = json.loads((folder / "info.json").read_text())
    assert info["restored_at"] == 64 and info["output_size"] == [256, 256]
