"""Issue 11: the untrained networks start at the identity on the blurry input (CFMD always;
Chrysos with `residual`), the residual option, and the pixel-only warm-up."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.cfmd.generator import CFMDGenerator
from pipeline.models.chrysos.gan import ChrysosGenerator
from pipeline.models.chrysos.hourglass import StackedHourglass


def pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    half = F.interpolate(x, scale_factor=0.5, mode="area")
    return [F.interpolate(half, scale_factor=0.5, mode="area"), half, x]


def test_untrained_cfmd_generator_returns_its_input_at_every_scale():
    torch.manual_seed(0)
    generator = CFMDGenerator(base_width=8, num_blocks=1, mapping_width=8, mapping_layers=2)
    blurry = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        outputs = generator(blurry, torch.tensor([0.0, 1.0]))
    for output, expected in zip(outputs, pyramid(blurry), strict=True):
        torch.testing.assert_close(output, expected, rtol=0, atol=0)


def test_cfmd_image_signal_reaches_the_output_convs():
    """Kaiming init, zero biases: the features entering the output conv vary over the image
    (with PyTorch's default init their spatial part was ~12x below their constant part)."""
    torch.manual_seed(0)
    generator = CFMDGenerator(base_width=8, num_blocks=1, mapping_width=8, mapping_layers=2)
    seen = {}
    generator.to_image1.register_forward_hook(lambda m, inp, out: seen.update(z=inp[0]))
    with torch.no_grad():
        generator(torch.rand(2, 3, 32, 32), torch.tensor([0.5, 0.5]))
    z = seen["z"]
    spatial = z.std(dim=(-2, -1)).mean()
    constant = z.mean(dim=(-2, -1)).abs().mean()
    assert spatial > 0.5 * constant


@pytest.mark.parametrize("n_stacks", [1, 2])
def test_residual_hourglass_starts_at_the_identity(n_stacks):
    hourglass = StackedHourglass(n_stacks=n_stacks, depth=2, width=8, residual=True).eval()
    blurry = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        for prediction in hourglass(blurry):
            torch.testing.assert_close(prediction, blurry, rtol=0, atol=0)


def test_residual_option_off_is_the_papers_plain_output():
    torch.manual_seed(0)
    hourglass = StackedHourglass(n_stacks=1, depth=2, width=8, residual=False).eval()
    blurry = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (hourglass(blurry)[-1] - blurry).abs().mean() > 0.05
    generator = ChrysosGenerator(width_multiplier=0.0625, residual=False).eval()
    with torch.no_grad():
        assert (generator(torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))).abs().mean() > 0


def test_residual_chrysos_generator_starts_at_the_identity_and_learns():
    torch.manual_seed(0)
    generator = ChrysosGenerator(width_multiplier=0.0625, residual=True)
    blurry, coarse = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(generator(blurry, coarse), blurry, rtol=0, atol=0)
        # G_s has no global skip (issue 22): it starts at zero and must learn to reconstruct, so its
        # loss moves the decoder G_bl shares (with a skip, a zero decoder met it exactly)
        assert generator.forward_sharp(coarse).abs().max() == 0
    generator.train()
    target = blurry.roll(1, dims=-1)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    first = None
    for _ in range(3):
        loss = F.l1_loss(generator(blurry, coarse), target)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first


def _batch(size: int):
    from pipeline.train.data import Batch

    torch.manual_seed(0)
    return Batch(torch.rand(2, 3, size, size), torch.rand(2, 3, size, size), torch.tensor([0.2, 0.8]),
                 torch.tensor([0.8, 0.2]))


def _cfmd_task(pixel_warmup: int):
    from pipeline.models.cfmd.task import CFMDConfig, CFMDTask
    from pipeline.models.device import resolve_runtime
    from pipeline.train import ddp

    cfg = CFMDConfig.from_params({
        "steps": 3, "batch_size": 2, "crop_size": 32, "pixel_warmup": pixel_warmup,
        "generator": {"base_width": 8, "num_blocks": 1, "mapping_width": 8, "mapping_layers": 2},
        "discriminator": {"width": 8, "depth": 2}, "perceptual": "none", "runtime": {"device": "cpu"},
    })
    return CFMDTask(cfg, resolve_runtime(device="cpu"), ddp.DistEnv(), None)


def test_cfmd_pixel_warmup_has_no_adversarial_term_and_leaves_d_alone():
    task = _cfmd_task(pixel_warmup=2)
    batch = _batch(32)
    d_before = {k: v.clone() for k, v in task.discriminator.state_dict().items()}
    for _ in range(2):
        losses = task.train_step(batch)
        assert losses["g_adv"] == 0 and losses["g_ar"] == 0 and losses["d_total"] == 0
        assert losses["g_total"] == losses["g_pix"]
    for k, v in task.discriminator.state_dict().items():
        torch.testing.assert_close(v, d_before[k], rtol=0, atol=0)
    losses = task.train_step(batch)  # step 3: the adversarial terms start
    assert losses["g_adv"] > 0 and losses["d_total"] > 0


def test_chrysos_pixel_warmup_has_no_adversarial_term():
    from pipeline.models.chrysos.task import ChrysosGANConfig, ChrysosGANTask
    from pipeline.models.device import resolve_runtime
    from pipeline.train import ddp

    cfg = ChrysosGANConfig.from_params({
        "steps": 2, "batch_size": 2, "crop_size": 128, "pixel_warmup": 1,
        "generator": {"width_multiplier": 0.0625}, "discriminator": {"width_multiplier": 0.0625},
        "runtime": {"device": "cpu"},
    })
    hourglass = StackedHourglass(n_stacks=1, depth=2, width=8)
    task = ChrysosGANTask(cfg, resolve_runtime(device="cpu"), ddp.DistEnv(), hourglass)
    batch = _batch(128)
    losses = task.train_step(batch)
    assert losses["g_adversarial"] == 0 and losses["g_projection"] == 0 and losses["d_total"] == 0
    losses = task.train_step(batch)
    assert losses["g_adversarial"] > 0 and losses["d_total"] > 0


def test_paper_presets_set_the_new_options_explicitly():
    """A preset never silently inherits our deviations (residual, warm-up, lr, Charbonnier eps)."""
    from pathlib import Path

    import yaml

    presets = Path(__file__).resolve().parents[2] / "presets"
    cfmd = yaml.safe_load((presets / "cfmd-paper.yaml").read_text())["train_cfmd"]
    assert cfmd["pixel_warmup"] == 0 and cfmd["lr"] == 1e-4 and cfmd["lr_decay"] == 0.99
    assert cfmd["loss"]["charbonnier_eps"] == 1e-3
    chrysos = yaml.safe_load((presets / "chrysos-paper.yaml").read_text())
    assert chrysos["train_chrysos_hg"]["hourglass"]["residual"] is False
    assert chrysos["train_chrysos_gan"]["generator"]["residual"] is False
    assert chrysos["train_chrysos_gan"]["pixel_warmup"] == 0
    for section in ("train_chrysos_hg", "train_chrysos_gan"):
        assert "lr" in chrysos[section] and "lr_decay" in chrysos[section]
