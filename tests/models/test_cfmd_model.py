"""CFMD-GAN generator, U-Net discriminator and losses, on tiny configurations."""

from __future__ import annotations

import sys

import pytest
import torch
from torch.nn.utils import parametrize

from pipeline.models.cfmd.losses import (
    CFMDLossWeights,
    bce_logits,
    charbonnier,
    discriminator_loss,
    generator_loss,
    multiscale_charbonnier,
    resolve_perceptual,
)
from pipeline.models.cfmd.generator import CFMDGenerator, ContAdaBlock
from pipeline.models.common import count_parameters
from pipeline.metrics.lpips import LPIPSUnavailableError
from pipeline.models.cfmd.discriminator import UNetDiscriminator


def tiny_generator(seed: int = 0, identity: bool = False) -> CFMDGenerator:
    """A small generator; unless `identity`, its output convs (zero at init: the untrained
    generator returns its input, tests/models/test_identity_start.py) get small random
    weights, as after some training, so u and the gradients reach the output."""
    torch.manual_seed(seed)
    generator = CFMDGenerator(base_width=8, num_blocks=1)
    if not identity:
        with torch.no_grad():
            for conv in (generator.to_image1, generator.to_image2, generator.to_image3):
                conv.weight.normal_(0.0, 0.05)
    return generator


# ------------------------------------------------------------------ generator


@pytest.mark.parametrize("height, width", [(64, 64), (96, 96), (128, 128), (64, 96)])
def test_generator_output_scales(height, width):
    generator = tiny_generator()
    blurry = torch.rand(2, 3, height, width)
    with torch.no_grad():
        outputs = generator(blurry, torch.tensor([0.0, 1.0]))
    assert [tuple(o.shape) for o in outputs] == [
        (2, 3, height // 4, width // 4),
        (2, 3, height // 2, width // 2),
        (2, 3, height, width),
    ]
    assert all(torch.isfinite(o).all() for o in outputs)


def test_generator_rejects_size_not_multiple_of_4():
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_generator()(torch.rand(1, 3, 66, 64), torch.tensor([0.5]))


def test_generator_accepts_scalar_u():
    generator = tiny_generator()
    blurry = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        scalar = generator(blurry, 0.25)[-1]
        per_sample = generator(blurry, torch.tensor([0.25, 0.25]))[-1]
    torch.testing.assert_close(scalar, per_sample)


def max_output_change(generator: CFMDGenerator, blurry: torch.Tensor) -> float:
    """Largest change of the full-scale output between u = 0.1 and u = 0.9."""
    with torch.no_grad():
        low = generator(blurry, torch.full((blurry.shape[0],), 0.1))[-1]
        high = generator(blurry, torch.full((blurry.shape[0],), 0.9))[-1]
    return (low - high).abs().max().item()


def test_u_changes_output_at_initialisation():
    """Offsets start at 0 and masks at 0.5, but u still enters through the concat
    that forms F_u and through CACA, so different moments give different images."""
    generator = tiny_generator().eval()
    blurry = torch.rand(2, 3, 32, 32)
    assert max_output_change(generator, blurry) > 1e-3
    # Each sample follows its own u: same image, same u -> same output.
    with torch.no_grad():
        pair = generator(blurry[:1].expand(2, -1, -1, -1), torch.tensor([0.3, 0.3]))[-1]
    torch.testing.assert_close(pair[0], pair[1])


def test_u_changes_output_with_active_deformation():
    """With non-zero offset predictors (as after training), u moves the sampling
    grid too; the output must still depend on u and stay finite."""
    generator = tiny_generator()
    torch.manual_seed(1)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, ContAdaBlock):
                module.deform.offset_mask.weight.normal_(0.0, 0.1)
                module.deform.offset_mask.bias.normal_(0.0, 0.5)
    blurry = torch.rand(2, 3, 32, 32)
    assert max_output_change(generator, blurry) > 1e-3
    with torch.no_grad():
        assert torch.isfinite(generator(blurry, torch.tensor([0.0, 1.0]))[-1]).all()


def test_u_reaches_every_control_path_in_backward():
    """The loss gradient reaches the mapping network and the offset/mask predictors,
    so training can teach the generator to use u."""
    generator = tiny_generator()
    outputs = generator(torch.rand(2, 3, 32, 32), torch.tensor([0.2, 0.7]))
    multiscale_charbonnier(outputs, torch.rand(2, 3, 32, 32)).backward()
    assert generator.mapping.shared[0].weight.grad.abs().sum() > 0
    for stack in (*generator.encoders, *generator.decoders):
        for block in stack.blocks:
            assert block.deform.offset_mask.weight.grad.abs().sum() > 0
            assert block.attention.squeeze_excite[1].weight.grad.abs().sum() > 0


def test_paper_configuration_size():
    """Base width 32, 8 blocks: MIMO-UNet (~6.8M) plus the ContAda extras."""
    count = count_parameters(CFMDGenerator(base_width=32, num_blocks=8), trainable_only=True)
    assert 8_000_000 < count < 9_500_000, count


def test_adam_steps_reduce_charbonnier():
    generator = tiny_generator(seed=2)
    torch.manual_seed(3)
    blurry = torch.rand(2, 3, 32, 32)
    sharp = (0.8 * blurry + 0.15).clamp(0, 1)  # a learnable residual: contrast and brightness
    u = torch.tensor([0.1, 0.8])
    optimiser = torch.optim.Adam(generator.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = multiscale_charbonnier(generator(blurry, u), sharp)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# -------------------------------------------------------------- discriminator


@pytest.mark.parametrize("size", [(64, 64), (96, 80)])
def test_discriminator_output_shapes(size):
    torch.manual_seed(0)
    discriminator = UNetDiscriminator(width=8, depth=3)
    blurry, candidate = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    global_logit, pixel_logits, u_map = discriminator(blurry, candidate)
    assert global_logit.shape == (2, 1)
    assert pixel_logits.shape == (2, 1, *size)
    assert u_map.shape == (2, 1, *size)


def test_discriminator_is_spectrally_normalised():
    discriminator = UNetDiscriminator(width=8, depth=2)
    weighted = [m for m in discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)


# --------------------------------------------------------------------- losses


def test_charbonnier_is_eps_at_zero_error_and_sums_scales():
    image = torch.rand(1, 3, 16, 16)
    assert charbonnier(image, image).item() == pytest.approx(1e-3)
    outputs = [torch.nn.functional.avg_pool2d(image, 4), torch.nn.functional.avg_pool2d(image, 2), image]
    # Targets are downscaled the same way, so each scale contributes exactly eps.
    assert multiscale_charbonnier(outputs, image).item() == pytest.approx(3e-3, rel=1e-4)


def test_bce_on_logits_not_probabilities():
    # logit 0 is p = 0.5: log 2 whatever the label.
    assert bce_logits(torch.zeros(4), True).item() == pytest.approx(0.6931, abs=1e-4)
    # Perfectly confident and right: ~0. Had a sigmoid been applied first, the
    # loss could not go below log(1 + e^-1) ~ 0.31.
    assert bce_logits(torch.full((4,), 40.0), True).item() < 1e-6
    assert bce_logits(torch.full((4,), -40.0), False).item() < 1e-6
    assert bce_logits(torch.full((4,), -40.0), True).item() == pytest.approx(40.0, rel=1e-4)


def confident_outputs(sign: float, u_value: float, batch: int = 2, size: int = 8):
    return (
        torch.full((batch, 1), 40.0 * sign),
        torch.full((batch, 1, size, size), 40.0 * sign),
        torch.full((batch, 1, size, size), u_value),
    )


def test_discriminator_loss_confident_and_correct_is_zero():
    u = torch.tensor([0.25, 0.75])
    real = confident_outputs(+1, 0.0)
    fake = confident_outputs(-1, 0.0)
    real[2][:] = u.view(-1, 1, 1, 1)
    fake[2][:] = u.view(-1, 1, 1, 1)
    total, parts = discriminator_loss(real, fake, u)
    assert total.item() < 1e-6
    assert set(parts) == {"d_enc", "d_dec", "d_q", "d_total"}


def test_loss_totals_are_weighted_sums_of_components():
    torch.manual_seed(0)
    u = torch.tensor([0.25, 0.75])
    real = tuple(t.normal_() for t in confident_outputs(1, 0.0))
    fake = tuple(t.normal_() for t in confident_outputs(1, 0.0))
    weights = CFMDLossWeights()
    total, parts = discriminator_loss(real, fake, u, weights)
    expected = parts["d_enc"] + parts["d_dec"] + 0.05 * parts["d_q"]
    torch.testing.assert_close(total.detach(), expected)
    assert parts["d_q"].item() > 0

    outputs = [torch.rand(2, 3, 2, 2, requires_grad=True), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8)]
    total, parts = generator_loss(outputs, torch.rand(2, 3, 8, 8), u, fake, weights, perceptual=None)
    expected = 0.05 * parts["g_ar"] + 0.1 * parts["g_adv"] + parts["g_pix"]
    torch.testing.assert_close(total.detach(), expected)
    assert parts["g_per"].item() == 0.0
    assert all(not value.requires_grad for value in parts.values())
    assert total.requires_grad


def test_paper_loss_weights():
    weights = CFMDLossWeights()
    assert (weights.enc, weights.dec, weights.q) == (1.0, 1.0, 0.05)
    assert (weights.ar, weights.adv, weights.pix, weights.per) == (0.05, 0.1, 1.0, 0.01)
    assert weights.charbonnier_eps == 1e-3


def test_one_gan_step_runs_end_to_end():
    """One alternating D/G step on a tiny batch: every network gets gradients."""
    generator = tiny_generator()
    discriminator = UNetDiscriminator(width=8, depth=2)
    blurry, sharp, u = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.tensor([0.0, 1.0])
    outputs = generator(blurry, u)

    d_total, _ = discriminator_loss(discriminator(blurry, sharp), discriminator(blurry, outputs[-1].detach()), u)
    d_total.backward()
    assert all(p.grad is not None for p in discriminator.parameters())
    discriminator.zero_grad()

    g_total, parts = generator_loss(outputs, sharp, u, discriminator(blurry, outputs[-1]))
    g_total.backward()
    assert generator.stem[0].weight.grad.abs().sum() > 0
    assert parts["g_adv"].item() > 0 and parts["g_ar"].item() > 0


# ------------------------------------------------------------ perceptual loss


def test_perceptual_auto_falls_back_with_reason(monkeypatch, tmp_path):
    # Point the backbone at a missing file so the outcome does not depend on what
    # happens to be installed or cached on this machine.
    monkeypatch.setenv("LPIPS_BACKBONE_WEIGHTS", str(tmp_path / "missing.pth"))
    choice = resolve_perceptual("auto")
    assert choice.loss is None
    assert choice.used == "none"
    assert "LPIPS" in choice.reason or "lpips" in choice.reason
    assert choice.metadata()["requested"] == "auto" and "loss" not in choice.metadata()


def test_perceptual_auto_without_lpips_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # makes `import lpips` raise ImportError
    choice = resolve_perceptual("auto")
    assert choice.loss is None and "not importable" in choice.reason


def test_perceptual_required_mode_raises_when_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("LPIPS_BACKBONE_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(LPIPSUnavailableError, match="LPIPS required"):
        resolve_perceptual("required")


def test_perceptual_none_and_bad_mode():
    choice = resolve_perceptual("none")
    assert choice.loss is None and choice.used == "none" and "disabled" in choice.reason
    with pytest.raises(ValueError):
        resolve_perceptual("vgg-please")
