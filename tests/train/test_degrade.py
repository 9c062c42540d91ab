"""Sensor degradations of the blurry training input (train_*.degrade): deterministic per item seed,
off by default, blurry only."""
import numpy as np
import pytest

from pipeline.train.config import LoopConfig
from pipeline.train.degrade import Degrade

ALL = {"saturation": {"gain": [1.5, 2.0]}, "noise": {"shot": [0.005, 0.01], "read": [0.002, 0.004]},
       "jpeg": {"quality": [40, 60]}}


def _img(seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(128, 60, (64, 64, 3)), 0, 255).astype(np.uint8)


def test_off_by_default_and_identity():
    d = LoopConfig().degrade
    assert isinstance(d, Degrade) and not d.enabled
    img = _img()
    assert d(img, 3) is img


def test_deterministic_per_seed_and_different_across_seeds():
    d = LoopConfig(degrade=ALL).degrade
    img = _img()
    a, b, c = d(img, 7), d(img, 7), d(img, 8)
    assert a.dtype == np.uint8 and a.shape == img.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, img)


def test_each_degradation_does_what_it_says():
    img = _img()
    sat = Degrade.from_params({"saturation": {"gain": [3.0, 3.0]}})(img, 0)
    assert (sat == 255).mean() > (img == 255).mean() + 0.2 and (sat >= img).all()  # clipped highlights
    noisy = Degrade.from_params({"noise": {"shot": [0.01, 0.01], "read": [0.01, 0.01]}})(img, 0).astype(int)
    assert 1 < np.abs(noisy - img).mean() < 30
    jpeg = Degrade.from_params({"jpeg": {"quality": [10, 10]}})(img, 0).astype(int)
    assert np.abs(jpeg - img).mean() > 1


@pytest.mark.parametrize("bad", [{"blur": 1}, {"jpeg": {"quality": [0, 50]}}, {"jpeg": {"quality": 50}},
                                 {"noise": {"shot": [0.1, 0.2]}}, {"saturation": {"gain": [0.5, 1.0]}},
                                 {"jpeg": {"quality": [50, 60], "x": 1}}])
def test_bad_params_are_refused(bad):
    with pytest.raises(ValueError):
        LoopConfig(degrade=bad)


def test_params_sections_accept_degrade():
    from pipeline.params import validate_key
    from conftest import repo_params

    params = repo_params()
    for name in ("train_cfmd", "train_chrysos_hg", "train_chrysos_gan"):
        validate_key(name, {**params[name], "degrade": ALL})


def test_dataset_degrades_only_the_blurry_input(small_run):
    from pipeline.train.data import FaceDeblurDataset, training_rows

    rows = training_rows(small_run, ["fixed"])[:2]
    clean = FaceDeblurDataset(rows, small_run, "middle")
    dirty = FaceDeblurDataset(rows, small_run, "middle", degrade=LoopConfig(degrade=ALL).degrade)
    for i in range(len(rows)):
        a, b = clean[(i, 11)], dirty[(i, 11)]
        assert np.array_equal(a["sharp"].numpy(), b["sharp"].numpy())
        assert not np.array_equal(a["blurry"].numpy(), b["blurry"].numpy())
        assert np.array_equal(b["blurry"].numpy(), dirty[(i, 11)]["blurry"].numpy())
