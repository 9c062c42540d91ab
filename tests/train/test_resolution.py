"""Training and evaluating at a chosen resolution, from memory (issue 22, sections 2 and 3).

- Below the dataset's crop size, the blurry image and its sharp frames are area-downscaled on
  load; averaging commutes with area downscaling, so that is the same blur synthesised at the
  smaller size, to within rounding. Checked on real samples.
- The resolution keys are validated, naming the key.
- Preloading (every item decoded once into memory) gives the model the loader's bytes, for the
  same keys (index, seed), so resumed and multi-worker runs stay exact.
- The Chrysos generator's depth follows the resolution (the paper's seven levels at 256).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.dataset.manifest import load_sample
from pipeline.eval.config import EvalConfig
from pipeline.models.chrysos.gan import ChrysosGenerator, levels_for
from pipeline.models.chrysos.task import ChrysosGANConfig
from pipeline.train.config import LoopConfig
from pipeline.dataset.manifest import downscale
from pipeline.train.data import FaceDeblurDataset, training_rows


@pytest.fixture(scope="module")
def rows(small_run):
    return training_rows(small_run, ["fixed"])


@pytest.mark.parametrize("resolution", [128, 64, 32])
def test_area_downscaling_commutes_with_averaging(small_run, rows, resolution):
    """The mean of the downscaled sharp frames against the downscaled blurry image: both differ
    from the exact float result (the area average of the float mean) by uint8 roundings only: the
    blurry image's truncation (below 1 level) and its resize's rounding (0.5) on one side, the
    frames' resize roundings (0.5 at most in their mean) on the other, so the difference stays
    below 2 levels, and about 0.5 on average (the truncation's bias)."""
    worst, mean = [], []
    for row in rows[::max(1, len(rows) // 12)]:
        blurry, sharp = load_sample(row, small_run)
        small_blurry = downscale(blurry, resolution).astype(np.float64)
        small_mean = np.mean([downscale(f, resolution).astype(np.float64) for f in sharp], axis=0)
        diff = np.abs(small_blurry - small_mean)
        worst.append(diff.max())
        mean.append(diff.mean())
    assert max(worst) < 2.0, max(worst)
    assert np.mean(mean) < 0.6, np.mean(mean)


def test_downscale_refuses_to_upscale():
    image = np.zeros((64, 64, 3), np.uint8)
    assert downscale(image, None) is image and downscale(image, 64) is image
    assert downscale(image, 32).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="resolution 128 is above the dataset's 64px images"):
        downscale(image, 128)


@pytest.mark.parametrize("section,words", [
    ({"resolution": 50}, "resolution = 50: must be a multiple of 16"),
    ({"resolution": 64, "crop_size": 96}, "crop_size = 96: must be at most resolution (64)"),
])
def test_training_resolution_is_validated(section, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        LoopConfig(**section)


def test_evaluation_resolution_is_validated():
    assert EvalConfig.from_params({"resolution": 64}).resolution == 64
    with pytest.raises(ValueError, match="evaluate.resolution = 40: must be a multiple of 16"):
        EvalConfig.from_params({"resolution": 40})


@pytest.mark.parametrize("target", ["moment", "middle", "centre"])
@pytest.mark.parametrize("resolution", [None, 64])
def test_preloaded_items_are_the_loaders_bytes(small_run, rows, target, resolution):
    plain = FaceDeblurDataset(rows, small_run, target, resolution=resolution)
    loaded = FaceDeblurDataset(rows, small_run, target, resolution=resolution).preload(progress=False)
    assert loaded.preloaded_bytes > 0
    for index in range(0, len(rows), 7):
        for seed in (0, 11, 12345):
            a, b = plain[(index, seed)], loaded[(index, seed)]
            assert a.keys() == b.keys()
            for key in a:
                if torch.is_tensor(a[key]):
                    assert torch.equal(a[key], b[key]), (index, seed, key)
                else:
                    assert a[key] == b[key]
    side = resolution or 256
    assert loaded[(0, 0)]["blurry"].shape == (3, side, side)


@pytest.mark.parametrize("size,levels", [(256, 7), (128, 6), (64, 5), (32, 4)])
def test_chrysos_depth_follows_the_resolution(size, levels):
    assert levels_for(size) == levels
    generator = ChrysosGenerator(width_multiplier=1 / 16, levels=levels).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        out = generator(x, x)
        code, _ = generator.blurry_pathway.encoder(torch.cat([x, x], 1))
    assert out.shape == x.shape and code.shape[-1] == 2  # a 2 x 2 bottleneck at every size, as at 256
    assert torch.equal(out, x)  # residual start: the identity on the blurry input
    assert generator.forward_sharp(x).abs().max() == 0  # G_s has no global skip: a zero decoder gives 0


def test_chrysos_config_takes_the_levels_from_the_resolution():
    cfg = ChrysosGANConfig.from_params({"resolution": 64, "crop_size": 64})
    assert cfg.generator.get("levels") is None and cfg.at_resolution(64).generator["levels"] == 5
    assert ChrysosGANConfig.from_params({"generator": {"levels": 4}}).at_resolution(256).generator["levels"] == 4
    with pytest.raises(ValueError, match="crop_size = 48: must be a multiple of 32"):
        ChrysosGANConfig.from_params({"resolution": 64, "crop_size": 48})
    with pytest.raises(ValueError, match="generator.levels = 9: must be an integer in"):
        ChrysosGANConfig.from_params({"generator": {"levels": 9}})
