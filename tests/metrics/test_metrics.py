"""Each evaluation metric against a known or independently computed value."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import GRID, TEST_DATA, read_frames, reference_ssim
from pipeline.metrics import fid as fid_metric
from pipeline.metrics import landmarks_error as lmk
from pipeline.metrics.face import FaceShapes, crop_policy_box
from pipeline.metrics.identity import FaceEmbedder, cosine_distance, identity_distance
from pipeline.metrics.lpips import resolve_lpips
from pipeline.metrics.pixel import psnr, ssim

RNG = np.random.default_rng(0)


def random_image(shape=(64, 64, 3), low=20, high=200) -> np.ndarray:
    return RNG.integers(low, high + 1, size=shape, dtype=np.uint8)


def face_crop_of(path_frames, size=256) -> np.ndarray:
    """A real face crop as the dataset makes it (dlib landmarks, widen 0.5, square, 256)."""
    from pipeline.dataset.crop import crop_resize, square_box, widened_boxes
    from pipeline.dataset.dlib_models import frontal_face_detector, shape_predictor_68

    rgb = cv2.cvtColor(path_frames, cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(path_frames, cv2.COLOR_BGR2GRAY)
    rect = max(frontal_face_detector()(grey, 1), key=lambda r: r.area())
    pts = np.array([(p.x, p.y) for p in shape_predictor_68()(grey, rect).parts()], np.float64)
    box, _ = square_box(widened_boxes(pts[None], 0.5)[0], rgb.shape[1], rgb.shape[0])
    return crop_resize(rgb, box, size)


@pytest.fixture(scope="module")
def faces():
    """Two real face crops of two different people."""
    grid = face_crop_of(read_frames(GRID / "bbaf2n.mpg", 1)[0])
    vw = face_crop_of(cv2.imread(str(TEST_DATA / "300vw-sample/001/imgs/000006.jpg")))
    return grid, vw


# ------------------------------------------------------------------------------ PSNR


def test_psnr_identical_is_inf():
    x = random_image()
    assert psnr(x, x)[0] == math.inf


def test_psnr_constant_offset():
    x = random_image()
    assert psnr(x + 10, x)[0] == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)  # 28.1308 dB


def test_psnr_gaussian_noise_matches_numpy():
    x = random_image((3, 48, 40, 3), 0, 255)
    noisy = np.clip(x + RNG.normal(0, 12, x.shape), 0, 255).round().astype(np.uint8)
    mse = ((noisy.astype(np.float64) - x) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(psnr(noisy, x), 10 * np.log10(255.0 ** 2 / mse), rtol=1e-12)


def test_psnr_rejects_float_and_mismatched_images():
    with pytest.raises(TypeError):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError):
        psnr(random_image((8, 8, 3)), random_image((8, 9, 3)))


# ------------------------------------------------------------------------------ SSIM


def test_ssim_identical_is_one():
    x = random_image((2, 40, 40, 3), 0, 255)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-6)
    flat = np.full((1, 32, 32, 3), 7, np.uint8)  # dark, flat: no epsilon may pull it below 1
    np.testing.assert_allclose(ssim(flat, flat), 1.0, atol=1e-6)


def test_ssim_of_constant_images_closed_form():
    a, b = 100, 140  # flat images: only the luminance term remains
    expect = (2 * (a / 255) * (b / 255) + 0.01 ** 2) / ((a / 255) ** 2 + (b / 255) ** 2 + 0.01 ** 2)
    got = ssim(np.full((32, 32, 3), a, np.uint8), np.full((32, 32, 3), b, np.uint8))[0]
    assert got == pytest.approx(expect, abs=1e-4)  # float32 variances of flat images: ~3e-5 off


def test_ssim_matches_an_independent_implementation(faces):
    sharp = faces[0][64:192, 64:192]
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    noisy = np.clip(sharp + RNG.normal(0, 10, sharp.shape), 0, 255).round().astype(np.uint8)
    for degraded in (blurred, noisy):
        assert ssim(degraded, sharp)[0] == pytest.approx(reference_ssim(degraded, sharp), abs=2e-5)
    assert ssim(blurred, sharp)[0] < 0.99


# ------------------------------------------------------------------------------ identity


def test_identity_distance_zero_for_identical_and_larger_for_another_person(faces):
    grid, vw = faces
    shapes, embedder = FaceShapes(), FaceEmbedder()
    box, source = shapes.face_box(grid)
    assert source == "detect"
    e1 = embedder.embed(grid, shapes.shape(grid, box))
    e2 = embedder.embed(grid.copy(), shapes.shape(grid.copy(), box))
    assert e1.shape == (128,)
    assert identity_distance(e1, e2) == 0.0 and cosine_distance(e1, e2) == pytest.approx(0.0, abs=1e-12)
    blurred = cv2.GaussianBlur(grid, (0, 0), 1.5)
    same_person = identity_distance(e1, embedder.embed(blurred, shapes.shape(blurred, box)))
    other = identity_distance(e1, embedder.embed_crop(vw, shapes))
    assert 0 < same_person < 0.6 < other  # dlib's same-person threshold


def test_identity_distance_by_hand():
    a, b = np.zeros(128), np.zeros(128)
    a[0], b[1] = 1.0, 1.0
    assert identity_distance(a, b) == pytest.approx(math.sqrt(2))
    assert cosine_distance(a, b) == pytest.approx(1.0)


def test_face_box_falls_back_to_the_crop_policy_box():
    blank = np.full((256, 256, 3), 128, np.uint8)
    box, source = FaceShapes(widen=0.5).face_box(blank)
    assert source == "crop_policy"
    np.testing.assert_allclose(box, [64, 64, 192, 192])  # the landmark box before widening by 0.5
    np.testing.assert_allclose(crop_policy_box(300, 1.0), [100, 100, 200, 200])


# ------------------------------------------------------------------------------ landmarks


def test_landmark_error_normalised_by_ground_truth_box_diagonal():
    truth = np.array([[0, 0], [30, 0], [0, 40], [30, 40]], np.float64)  # box 30 x 40: diagonal 50
    assert lmk.box_diagonal(truth) == 50
    assert lmk.diagonal_error(truth, truth) == 0
    assert lmk.diagonal_error(truth + [3, 4], truth) == pytest.approx(5 / 50)
    shifted = truth.copy()
    shifted[0] += [6, 8]  # one point off by 10, others exact: mean 2.5
    assert lmk.diagonal_error(shifted, truth) == pytest.approx(2.5 / 50)


def test_ced_auc_and_failure_rate_by_hand():
    errors = [0.0, 0.04, 0.1]
    # CED: 1/3 from 0, 2/3 from 0.04, never 1 below 0.1
    np.testing.assert_allclose(lmk.ced(errors, [0, 0.039, 0.04, 0.08, 0.1]), [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    # area up to 0.08 / 0.08: 1/3 * 1 + 1/3 * 0.5 + 1/3 * 0
    assert lmk.auc(errors) == pytest.approx(0.5)
    assert lmk.failure_rate(errors) == pytest.approx(1 / 3)
    # numerically integrated CED agrees with the closed form
    t = np.linspace(0, 0.08, 80001)
    assert np.trapezoid(lmk.ced(errors, t), t) / 0.08 == pytest.approx(0.5, abs=1e-4)
    assert lmk.failure_rate([0.01, float("nan")]) == 0.5  # a missing error is a failure


# ------------------------------------------------------------------------------ FID


def test_frechet_distance_of_few_images_equals_the_sqrtm_formula():
    a, b = RNG.normal(size=(6, 300)), RNG.normal(0.3, 1.4, size=(9, 300))
    direct = fid_metric.frechet_distance(*fid_metric.statistics(a), *fid_metric.statistics(b))
    assert fid_metric.frechet_distance_few(a, b) == pytest.approx(direct, rel=1e-6)
    # two Gaussians with known statistics: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    assert fid_metric.frechet_distance(np.zeros(2), s1, np.ones(2), s2) == pytest.approx(2 + 5 + 10 - 2 * (3 + 2))
    assert fid_metric.fid(a[:1], b, min_images=1) is None  # fewer than two images: never an FID
    assert fid_metric.fid(a, b) is None  # 6 and 9 images, below MIN_IMAGES (50): null
    assert fid_metric.fid(a, b, min_images=6) == pytest.approx(direct, rel=1e-6)


@pytest.fixture(scope="module")
def inception():
    try:
        fid_metric.weights_path()
    except fid_metric.FIDUnavailableError as e:
        pytest.skip(f"FID Inception unavailable: {e}")
    return fid_metric.InceptionFeatures("cpu", batch_size=8)


def test_fid_of_a_set_with_itself_is_zero_and_positive_for_another_set(inception, faces):
    grid, vw = faces
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in read_frames(GRID / "bbaf2n.mpg", 40)[::10]]
    real = np.stack([cv2.resize(f[:256, 40:296], (256, 256)) for f in frames] + [grid])
    feats = inception.features(real)
    assert feats.shape == (5, fid_metric.FEATURES)
    assert np.isfinite(feats).all() and feats.min() >= 0  # pool features after ReLU
    assert fid_metric.fid(feats, inception.features(real), min_images=5) == pytest.approx(0.0, abs=1e-3)
    blurred = np.stack([cv2.GaussianBlur(x, (0, 0), 4) for x in real])
    other = np.stack([vw, vw[:, ::-1], cv2.GaussianBlur(vw, (0, 0), 2), vw[::-1], 255 - vw])
    d_blur, d_other = (fid_metric.fid(feats, inception.features(x), min_images=5) for x in (blurred, other))
    assert 0 < d_blur and 0 < d_other


def test_fid_unavailable_is_reported_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv(fid_metric.WEIGHTS_ENV, str(tmp_path / "missing.pt"))
    choice = fid_metric.resolve_fid(True)
    assert choice.extractor is None and "missing.pt" in choice.reason
    assert choice.metadata()["available"] is False
    assert fid_metric.resolve_fid(False).reason == "FID disabled by configuration"


# ------------------------------------------------------------------------------ LPIPS


def test_lpips_unavailable_is_recorded_with_a_reason_not_a_number(monkeypatch, tmp_path):
    monkeypatch.setenv("LPIPS_BACKBONE_WEIGHTS", str(tmp_path / "no-alexnet.pth"))
    choice = resolve_lpips("auto")
    assert choice.model is None
    assert choice.metadata()["available"] is False and choice.reason
    assert ("lpips" in choice.reason.lower()) or ("no-alexnet.pth" in choice.reason)
    assert resolve_lpips("none").reason == "LPIPS disabled by configuration"
    with pytest.raises(ValueError):
        resolve_lpips("maybe")
