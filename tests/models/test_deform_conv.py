"""Modulated deformable convolution: the pure-PyTorch version against a direct
loop-and-bilinear reference, ordinary conv2d, autograd, and torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.cfmd.deform_conv import (
    ModulatedDeformConv2d,
    deform_conv2d,
    deform_conv2d_torch,
    deform_conv_backend,
)


def bilinear(image: list[list[float]], y: float, x: float) -> float:
    """Bilinear sample of a 2-D list at (y, x); pixels outside the image are 0."""
    height, width = len(image), len(image[0])
    y0, x0 = math.floor(y), math.floor(x)
    value = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * image[yy][xx]
    return value


def reference_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask):
    """DCNv2 written out: for every output pixel and kernel tap, move the tap by
    its offset, sample bilinearly, scale by the mask, weight and sum."""
    batch, in_channels, height, width = input.shape
    out_channels, in_per_group, kh, kw = weight.shape
    taps = kh * kw
    groups = in_channels // in_per_group
    offset_groups = offset.shape[1] // (2 * taps)
    out_h = (height + 2 * padding - (dilation * (kh - 1) + 1)) // stride + 1
    out_w = (width + 2 * padding - (dilation * (kw - 1) + 1)) // stride + 1
    images, offsets, weights = input.tolist(), offset.tolist(), weight.tolist()
    masks = mask.tolist() if mask is not None else None
    out = torch.zeros(batch, out_channels, out_h, out_w, dtype=torch.float64)
    for b in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                # columns[c][k]: modulated sample of channel c at tap k
                columns = [[0.0] * taps for _ in range(in_channels)]
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        for c in range(in_channels):
                            g = c // (in_channels // offset_groups)
                            dy = offsets[b][2 * (g * taps + k)][oy][ox]
                            dx = offsets[b][2 * (g * taps + k) + 1][oy][ox]
                            y = oy * stride - padding + i * dilation + dy
                            x = ox * stride - padding + j * dilation + dx
                            m = masks[b][g * taps + k][oy][ox] if masks is not None else 1.0
                            columns[c][k] = m * bilinear(images[b][c], y, x)
                for o in range(out_channels):
                    group = o // (out_channels // groups)
                    total = float(bias[o]) if bias is not None else 0.0
                    for ci in range(in_per_group):
                        c = group * in_per_group + ci
                        for k in range(taps):
                            total += weights[o][ci][k // kw][k % kw] * columns[c][k]
                    out[b, o, oy, ox] = total
    return out


def random_case(seed, batch=2, in_channels=4, out_channels=4, size=(5, 6), kernel=3, stride=1, padding=1,
                dilation=1, groups=1, offset_groups=1, offset_scale=1.5, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    out_h = (height + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    out_w = (width + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    taps = kernel * kernel
    return dict(
        input=torch.randn(batch, in_channels, height, width, generator=generator, dtype=dtype),
        offset=offset_scale * torch.randn(batch, 2 * offset_groups * taps, out_h, out_w, generator=generator,
                                          dtype=dtype),
        weight=torch.randn(out_channels, in_channels // groups, kernel, kernel, generator=generator, dtype=dtype),
        bias=torch.randn(out_channels, generator=generator, dtype=dtype),
        mask=torch.rand(batch, offset_groups * taps, out_h, out_w, generator=generator, dtype=dtype),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(stride=2, padding=0, offset_scale=2.5),
        dict(dilation=2, padding=2, offset_groups=2),
        dict(groups=2, out_channels=6, offset_groups=4),
    ],
    ids=["plain", "stride2-pad0-big-offsets", "dilation2-offset-groups", "grouped"],
)
def test_pure_matches_loop_reference(options):
    case = random_case(seed=1, **options)
    expected = reference_deform_conv2d(**case)
    got = deform_conv2d_torch(**case)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_no_mask_means_mask_one():
    case = random_case(seed=2)
    without_mask = deform_conv2d_torch(**{**case, "mask": None})
    unit_mask = deform_conv2d_torch(**{**case, "mask": torch.ones_like(case["mask"])})
    torch.testing.assert_close(without_mask, unit_mask)
    torch.testing.assert_close(without_mask, reference_deform_conv2d(**{**case, "mask": None}))


@pytest.mark.parametrize(
    "stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (1, 0, 1, 2)]
)
def test_zero_offset_unit_mask_is_conv2d(stride, padding, dilation, groups):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 9, 8, generator=generator)
    weight = torch.randn(6, 4 // groups, 3, 3, generator=generator)
    bias = torch.randn(6, generator=generator)
    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    offset = torch.zeros(2, 18, *expected.shape[-2:])
    mask = torch.ones(2, 9, *expected.shape[-2:])
    got = deform_conv2d_torch(x, offset, weight, bias, stride, padding, dilation, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_integer_offsets_shift_the_sampling_grid():
    """An offset of (0, +1) everywhere reads one pixel to the right: a conv of the
    zero-padded image shifted one column left."""
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 6, 7, generator=generator)
    weight = torch.randn(3, 2, 3, 3, generator=generator)
    offset = torch.zeros(1, 18, 6, 7)
    offset[:, 1::2] = 1.0  # dx = +1 for every tap
    shifted = F.pad(x, (1, 2, 1, 1))[..., 1:]  # padded by 1, then moved left by 1
    torch.testing.assert_close(deform_conv2d_torch(x, offset, weight, padding=1), F.conv2d(shifted, weight))


def test_gradcheck_float64():
    generator = torch.Generator().manual_seed(5)
    batch, channels, size, taps = 1, 2, 4, 9
    x = torch.randn(batch, channels, size, size, generator=generator, dtype=torch.float64)
    # Integer part plus a fraction in [0.2, 0.8]: sampling points stay off the
    # pixel grid, where bilinear interpolation has kinks and no derivative.
    whole = torch.randint(-2, 3, (batch, 2 * taps, size, size), generator=generator).to(torch.float64)
    offset = whole + 0.2 + 0.6 * torch.rand(batch, 2 * taps, size, size, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, channels, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    mask = torch.rand(batch, taps, size, size, generator=generator, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, offset, weight, bias, mask)]

    def function(x, offset, weight, bias, mask):
        return deform_conv2d_torch(x, offset, weight, bias, stride=1, padding=1, dilation=1, mask=mask)

    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-6)


def test_gradients_match_loop_reference():
    """Gradients of sum(output) w.r.t. input, weight and mask equal the loop
    reference's differences: the output is linear in each of them (offsets
    fixed), so a unit step gives the exact partial derivative."""
    case = random_case(seed=6, batch=1, in_channels=2, out_channels=2, size=(4, 4))
    leaves = {name: case[name].clone().requires_grad_() for name in ("input", "weight", "mask")}
    deform_conv2d_torch(**{**case, **leaves}).sum().backward()

    base = reference_deform_conv2d(**case).sum()
    for name, leaf in leaves.items():
        flat = case[name].reshape(-1)
        numeric = torch.zeros_like(flat)
        for index in range(flat.numel()):
            bumped = flat.clone()
            bumped[index] += 1.0
            numeric[index] = reference_deform_conv2d(**{**case, name: bumped.view_as(case[name])}).sum() - base
        torch.testing.assert_close(leaf.grad.reshape(-1), numeric, rtol=1e-8, atol=1e-8)


def test_dispatcher_agrees_with_pure():
    case = random_case(seed=7, dtype=torch.float32)
    torch.testing.assert_close(deform_conv2d(**case), deform_conv2d_torch(**case), rtol=1e-4, atol=1e-4)
    assert deform_conv_backend() in {"torch", "torchvision"}


def test_agrees_with_torchvision_forward_and_backward():
    tv_ops = pytest.importorskip("torchvision.ops")
    if deform_conv_backend() != "torchvision":
        pytest.skip("torchvision imports but its deform_conv2d kernel does not run")
    variants = [dict(), dict(stride=2, padding=0), dict(dilation=2, padding=2, offset_groups=2)]
    for seed, options in enumerate(variants):
        case = random_case(seed=10 + seed, **options)
        names = ("input", "offset", "weight", "bias", "mask")
        ours = {n: case[n].clone().requires_grad_() for n in names}
        theirs = {n: case[n].clone().requires_grad_() for n in names}
        out_ours = deform_conv2d_torch(**{**case, **ours})
        out_theirs = tv_ops.deform_conv2d(
            theirs["input"], theirs["offset"], theirs["weight"], theirs["bias"],
            stride=case["stride"], padding=case["padding"], dilation=case["dilation"], mask=theirs["mask"],
        )
        torch.testing.assert_close(out_ours, out_theirs, rtol=1e-7, atol=1e-7)
        grad_out = torch.randn_like(out_ours)
        out_ours.backward(grad_out)
        out_theirs.backward(grad_out)
        for n in names:
            torch.testing.assert_close(ours[n].grad, theirs[n].grad, rtol=1e-6, atol=1e-6, msg=f"grad of {n}")


def test_layer_starts_with_zero_offsets_and_half_masks():
    torch.manual_seed(8)
    layer = ModulatedDeformConv2d(4, 5, kernel_size=3)
    x = torch.randn(2, 4, 8, 8)
    offset, mask = layer.offsets_and_mask(x)
    assert offset.shape == (2, 18, 8, 8) and mask.shape == (2, 9, 8, 8)
    assert torch.all(offset == 0)
    assert torch.all(mask == 0.5)
    expected = 0.5 * F.conv2d(x, layer.weight, padding=1) + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_layer_predicts_offsets_from_guide_and_learns_them():
    torch.manual_seed(9)
    layer = ModulatedDeformConv2d(4, 4, kernel_size=3, guide_channels=6)
    x, guide = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 8, 8)
    layer(x, guide).square().mean().backward()
    # Zero-initialised predictor still receives a gradient, so offsets and masks can be learned.
    assert layer.offset_mask.weight.grad.abs().sum() > 0
    assert layer.offset_mask.bias.grad[:18].abs().sum() > 0  # offsets
    assert layer.offset_mask.bias.grad[18:].abs().sum() > 0  # masks
