"""CPU tests of the Chrysos et al. two-step model: hourglass, two-pathway generator,
discriminator and losses. Networks are shrunk (width multiplier, small inputs) to run fast."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.chrysos.losses import (
    ChrysosLossWeights,
    discriminator_loss,
    generator_loss,
    gradient_l1,
    hourglass_loss,
    image_gradients,
    projection_loss,
)
from pipeline.models.chrysos.gan import ChrysosGenerator, PatchDiscriminator
from pipeline.models.common import count_parameters
from pipeline.models.chrysos.hourglass import StackedHourglass

TINY = 1 / 16  # width multiplier for the generator and discriminator in tests


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_generator(residual: bool = False) -> ChrysosGenerator:
    """The paper's plain generator (no global skip) unless `residual` (our default,
    tests/models/test_identity_start.py)."""
    return ChrysosGenerator(width_multiplier=TINY, residual=residual)


# --- generator -----------------------------------------------------------------------


def test_generator_pathways_give_image_sized_outputs():
    generator = tiny_generator()
    blurry = torch.rand(2, 3, 128, 128)
    hourglass_out = torch.rand(2, 3, 128, 128)
    assert generator.forward_blurry(blurry, hourglass_out).shape == (2, 3, 128, 128)
    assert generator.forward_sharp(torch.rand(2, 3, 128, 128)).shape == (2, 3, 128, 128)
    assert generator(blurry, hourglass_out).shape == (2, 3, 128, 128)


def test_generator_encoder_widths_and_bottleneck_size():
    generator = ChrysosGenerator(width_multiplier=1.0)
    encoder = generator.blurry_pathway.encoder
    assert encoder.widths == [64, 128, 256, 512, 512, 512, 512]
    assert encoder.layers[0][0].in_channels == 6
    assert generator.sharp_pathway.encoder.layers[0][0].in_channels == 3
    # 256 input -> 7 stride-2 layers -> 2x2 bottleneck with 256 channels.
    with torch.no_grad():
        code, outputs = generator.eval().blurry_pathway.encoder(torch.zeros(1, 6, 256, 256))
    assert code.shape == (1, 256, 2, 2)
    assert [o.shape[-1] for o in outputs] == [128, 64, 32, 16, 8, 4, 2, 2]


def test_generator_rejects_sizes_not_multiple_of_128():
    generator = tiny_generator()
    with pytest.raises(ValueError, match="multiples of 128"):
        generator.forward_sharp(torch.rand(2, 3, 96, 96))
    with pytest.raises(ValueError, match="same shape"):
        generator.forward_blurry(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 256, 256))


def test_decoders_are_one_shared_module():
    generator = tiny_generator()
    blurry_decoder = generator.blurry_pathway.decoder
    sharp_decoder = generator.sharp_pathway.decoder
    assert blurry_decoder is sharp_decoder
    blurry_params = list(blurry_decoder.parameters())
    sharp_params = list(sharp_decoder.parameters())
    assert len(blurry_params) > 0
    assert all(a is b for a, b in zip(blurry_params, sharp_params, strict=True))
    # The encoders are distinct, and the generator counts the shared decoder once.
    assert generator.blurry_pathway.encoder is not generator.sharp_pathway.encoder
    assert count_parameters(generator) == (
        count_parameters(generator.blurry_pathway.encoder)
        + count_parameters(generator.sharp_pathway.encoder)
        + count_parameters(blurry_decoder)
    )


def test_training_the_blurry_pathway_changes_the_sharp_pathway_output():
    generator = tiny_generator().eval()  # eval: fixed BN statistics, so only weights change
    blurry, hourglass_out, sharp = (torch.rand(2, 3, 128, 128) for _ in range(3))
    sharp_encoder_before = [p.clone() for p in generator.sharp_pathway.encoder.parameters()]
    with torch.no_grad():
        sharp_out_before = generator.forward_sharp(sharp)

    optimizer = torch.optim.SGD(generator.blurry_pathway.parameters(), lr=0.1)
    loss = (generator.forward_blurry(blurry, hourglass_out) - sharp).abs().mean()
    loss.backward()
    optimizer.step()

    with torch.no_grad():
        sharp_out_after = generator.forward_sharp(sharp)
    for before, after in zip(sharp_encoder_before, generator.sharp_pathway.encoder.parameters()):
        assert torch.equal(before, after)
    assert not torch.allclose(sharp_out_before, sharp_out_after)


def test_unet_skip_layers_configurable_and_validated():
    generator = ChrysosGenerator(width_multiplier=TINY, unet_skip_layers=(1, 2))
    assert generator.decoder.skip_source_for_layer == {8: 1, 7: 2}
    assert generator.forward_sharp(torch.rand(2, 3, 128, 128)).shape == (2, 3, 128, 128)
    with pytest.raises(ValueError):
        ChrysosGenerator(width_multiplier=TINY, unet_skip_layers=(8,))


def test_adam_steps_reduce_blurry_pathway_l1():
    generator = tiny_generator().train()
    blurry, hourglass_out, sharp = (torch.rand(4, 3, 128, 128) for _ in range(3))
    optimizer = torch.optim.Adam(generator.blurry_pathway.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = (generator.forward_blurry(blurry, hourglass_out) - sharp).abs().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# --- discriminator ---------------------------------------------------------------------


def test_discriminator_returns_patch_logits_and_penultimate_features():
    discriminator = PatchDiscriminator(width_multiplier=TINY)
    logits, features = discriminator(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128))
    # 128 -> 64 -> 32 -> 16 (stride 2) -> 15 (stride 1, penultimate) -> 14 (logits)
    assert logits.shape == (2, 1, 14, 14)
    assert features.shape == (2, 32, 15, 15)
    assert features.requires_grad and logits.requires_grad
    # 5 conv layers, the first takes blurry + candidate (6 channels).
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    assert convs[0].in_channels == 6


# --- hourglass -------------------------------------------------------------------------


def test_hourglass_returns_one_image_per_stack():
    hourglass = StackedHourglass(n_stacks=3, depth=3, width=8)
    outputs = hourglass(torch.rand(2, 3, 32, 32))
    assert isinstance(outputs, list) and len(outputs) == 3
    assert all(o.shape == (2, 3, 32, 32) for o in outputs)
    assert torch.equal(hourglass.eval().restore(torch.zeros(1, 3, 32, 32)),
                       hourglass(torch.zeros(1, 3, 32, 32))[-1])


def test_hourglass_rejects_size_not_divisible_by_2_to_depth():
    with pytest.raises(ValueError, match="divisible"):
        StackedHourglass(n_stacks=1, depth=3, width=8)(torch.rand(1, 3, 20, 20))


def test_hourglass_freeze_fixes_weights_and_stays_in_eval():
    hourglass = StackedHourglass(n_stacks=1, depth=2, width=8).freeze()
    assert all(not p.requires_grad for p in hourglass.parameters())
    hourglass.train()
    assert not hourglass.training


def test_adam_steps_reduce_hourglass_loss():
    hourglass = StackedHourglass(n_stacks=2, depth=3, width=16, residual=False).train()
    blurry, sharp = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    optimizer = torch.optim.Adam(hourglass.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = hourglass_loss(hourglass(blurry), sharp)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# --- losses ----------------------------------------------------------------------------


def test_loss_weights_match_the_paper():
    weights = ChrysosLossWeights()
    assert (weights.adversarial, weights.l1, weights.gradient) == (1.0, 100.0, 100.0)
    assert (weights.projection, weights.reconstruction) == (8.0, 100.0)


def test_gradient_l1_of_a_horizontal_ramp():
    # Ramp 0, 0.1, 0.2, ... along x: d/dx is 0.1 everywhere, d/dy is 0.
    ramp = (0.1 * torch.arange(8.0)).expand(1, 3, 5, 8).contiguous()
    dx, dy = image_gradients(ramp)
    assert dx.shape == (1, 3, 5, 7) and dy.shape == (1, 3, 4, 8)
    assert torch.allclose(dx, torch.full_like(dx, 0.1))
    assert torch.equal(dy, torch.zeros_like(dy))
    # Against a flat image: mean |0.1 - 0| + mean |0 - 0| = 0.1.
    assert gradient_l1(ramp, torch.zeros_like(ramp)).item() == pytest.approx(0.1)
    # Against a vertical ramp of slope 0.2: |0.1 - 0| in x plus |0 - 0.2| in y = 0.3.
    vertical = (0.2 * torch.arange(5.0)).view(1, 1, 5, 1).expand(1, 3, 5, 8)
    assert gradient_l1(ramp, vertical).item() == pytest.approx(0.3)
    # A constant offset has no gradient.
    assert gradient_l1(ramp + 3.0, ramp).item() == pytest.approx(0.0, abs=1e-6)


def test_hourglass_loss_sums_l1_over_stacks():
    sharp = torch.zeros(1, 3, 4, 4)
    outputs = [torch.full_like(sharp, 0.5), torch.full_like(sharp, 0.25)]
    assert hourglass_loss(outputs, sharp).item() == pytest.approx(0.75)


def test_generator_loss_combines_weighted_components():
    sharp = torch.zeros(1, 3, 4, 4)
    restored = torch.full_like(sharp, 0.5)  # L1 0.5, no gradients
    reconstruction = torch.full_like(sharp, 0.25)  # L1 0.25
    logits = torch.zeros(1, 1, 2, 2)  # BCE(0, real) = log 2
    restored_features = torch.ones(1, 4, 2, 2)
    sharp_features = torch.zeros(1, 4, 2, 2)  # projection L1 = 1
    total, parts = generator_loss(
        restored, sharp, reconstruction, logits, restored_features, sharp_features
    )
    log2 = torch.log(torch.tensor(2.0)).item()
    assert parts["adversarial"].item() == pytest.approx(log2)
    assert parts["l1"].item() == pytest.approx(0.5)
    assert parts["gradient"].item() == pytest.approx(0.0)
    assert parts["projection"].item() == pytest.approx(1.0)
    assert parts["reconstruction"].item() == pytest.approx(0.25)
    expected = log2 + 100 * 0.5 + 8 * 1.0 + 100 * 0.25
    assert total.item() == pytest.approx(expected)
    assert parts["total"].item() == pytest.approx(expected)
    assert all(not v.requires_grad for v in parts.values())


def test_projection_loss_does_not_train_towards_moving_sharp_features():
    restored_features = torch.ones(1, 2, 2, 2, requires_grad=True)
    sharp_features = torch.zeros(1, 2, 2, 2, requires_grad=True)
    projection_loss(restored_features, sharp_features).backward()
    assert restored_features.grad is not None
    assert sharp_features.grad is None


def test_discriminator_loss_uses_logits():
    confident_real = torch.full((2, 1, 3, 3), 20.0)
    confident_fake = torch.full((2, 1, 3, 3), -20.0)
    total, parts = discriminator_loss(confident_real, confident_fake)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    total, parts = discriminator_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    log2 = torch.log(torch.tensor(2.0)).item()
    assert parts["real"].item() == pytest.approx(log2)
    assert parts["fake"].item() == pytest.approx(log2)
    assert total.item() == pytest.approx(2 * log2)


def test_one_full_training_iteration_runs():
    """Step 1 frozen hourglass -> G_bl / G_s -> D, both losses backpropagate."""
    hourglass = StackedHourglass(n_stacks=1, depth=2, width=8).freeze()
    generator = tiny_generator().train()
    discriminator = PatchDiscriminator(width_multiplier=TINY).train()
    blurry, sharp = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)

    with torch.no_grad():
        hourglass_out = hourglass.restore(blurry)
    restored = generator.forward_blurry(blurry, hourglass_out)

    sharp_logits, _ = discriminator(blurry, sharp)
    fake_logits, _ = discriminator(blurry, restored.detach())
    d_total, _ = discriminator_loss(sharp_logits, fake_logits)
    d_total.backward()
    assert all(p.grad is not None for p in discriminator.parameters())
    assert all(p.grad is None for p in generator.parameters())

    discriminator.zero_grad(set_to_none=True)
    restored_logits, restored_features = discriminator(blurry, restored)
    _, sharp_features = discriminator(blurry, sharp)
    g_total, parts = generator_loss(
        restored,
        sharp,
        generator.forward_sharp(sharp),
        restored_logits,
        restored_features,
        sharp_features,
    )
    g_total.backward()
    assert set(parts) == {"adversarial", "l1", "gradient", "projection", "reconstruction", "total"}
    assert all(p.grad is not None for p in generator.parameters())
    assert all(p.grad is None for p in hourglass.parameters())


# --- training crop size ----------------------------------------------------------------


def test_a_training_crop_below_the_image_size_is_warned_about_with_the_param_and_the_fix():
    from pipeline.models.chrysos.task import crop_size_warning

    assert crop_size_warning(256, 256) is None
    assert crop_size_warning(384, 256) is None
    message = crop_size_warning(128, 256)
    assert "train_chrysos_gan.crop_size = 128" in message and "1x1" in message and "2x2" in message
    assert message.endswith("set crop_size to 256")
    assert crop_size_warning(128, 300).endswith("set crop_size to 256")  # the largest multiple of 128 that fits
    assert crop_size_warning(128, 200) is None  # no larger crop fits
    assert crop_size_warning(256, 512) is None  # 2x2 maps: batch norm sees four values per image


def test_the_default_gan_training_crop_is_the_image_size():
    """params.yaml trains G_bl on whole images (issue 11: at 128 on 256 images its batch-norm
    statistics did not carry over and it fell 10 dB below the blurry input)."""
    from pathlib import Path

    from pipeline.models.chrysos.task import crop_size_warning
    from pipeline.stage import load_params

    from pipeline.models.chrysos.gan import levels_for

    params = load_params("crop", "train_chrysos_gan", path=Path(__file__).resolve().parents[2] / "params.yaml")
    section = params["train_chrysos_gan"]
    images = section.get("resolution") or params["crop"]["size"]  # the size the images are trained at
    assert section["crop_size"] == images
    assert crop_size_warning(section["crop_size"], images, levels_for(images)) is None
