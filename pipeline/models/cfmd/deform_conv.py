"""Modulated deformable convolution (DCNv2, Zhu et al. 2019).

torchvision ships a fast kernel (`torchvision.ops.deform_conv2d`), but there is
no torchvision build for the CPU torch used on the development machines. So this
module offers the same function twice:

- `deform_conv2d_torch`: pure PyTorch (bilinear sampling with `grid_sample`, then
  one matrix product), differentiable in every argument, runs anywhere;
- `deform_conv2d`: the dispatcher; torchvision's kernel when it imports and runs,
  else the pure version. Both take the same arguments and the same offset layout,
  so weights trained with one run under the other.

Offset layout (torchvision's): `offset` is [B, 2 * G * kh * kw, H_out, W_out]; for
offset group g and kernel tap k = i * kw + j, channel 2 * (g * K + k) is the
vertical shift (dy) and the next channel the horizontal shift (dx). `mask` is
[B, G * K, H_out, W_out]. Samples that fall outside the input read zeros.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IntPair = int | tuple[int, int]


def _pair(value: IntPair) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def deform_conv2d_torch(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: Tensor | None = None,
) -> Tensor:
    """Modulated deformable 2-D convolution in plain PyTorch.

    Same signature and semantics as `torchvision.ops.deform_conv2d`:
    out[b, o, y, x] = bias[o] + sum_{c, k} weight[o, c, k]
                      * mask[b, k, y, x] * input[b, c](p0 + p_k + offset_k)
    with bilinear interpolation and zeros outside the image. Grouped convolution
    is inferred from `weight.shape[1]`, offset groups from `offset.shape[1]`.

    Memory: it materialises the sampled columns ([B, C_in * K, H_out * W_out]),
    as torchvision's im2col kernel does.
    """
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dil_h, dil_w = _pair(dilation)
    batch, in_channels, height, width = input.shape
    out_channels, in_per_group, kernel_h, kernel_w = weight.shape
    taps = kernel_h * kernel_w

    if in_channels % in_per_group != 0:
        raise ValueError(f"input has {in_channels} channels, not a multiple of weight.shape[1]={in_per_group}")
    groups = in_channels // in_per_group
    if out_channels % groups != 0:
        raise ValueError(f"out_channels {out_channels} not divisible by groups {groups}")
    if offset.shape[1] % (2 * taps) != 0:
        raise ValueError(f"offset has {offset.shape[1]} channels, expected a multiple of 2*kh*kw={2 * taps}")
    offset_groups = offset.shape[1] // (2 * taps)
    if in_channels % offset_groups != 0:
        raise ValueError(f"input channels {in_channels} not divisible by offset groups {offset_groups}")

    out_h = (height + 2 * pad_h - (dil_h * (kernel_h - 1) + 1)) // stride_h + 1
    out_w = (width + 2 * pad_w - (dil_w * (kernel_w - 1) + 1)) // stride_w + 1
    if tuple(offset.shape) != (batch, 2 * offset_groups * taps, out_h, out_w):
        raise ValueError(f"offset shape {tuple(offset.shape)} does not match output size {(out_h, out_w)}")
    if mask is not None and tuple(mask.shape) != (batch, offset_groups * taps, out_h, out_w):
        raise ValueError(f"mask shape {tuple(mask.shape)}, expected {(batch, offset_groups * taps, out_h, out_w)}")

    # Undeformed sampling positions p0 + p_k, in input pixel coordinates.
    arange = functools.partial(torch.arange, device=input.device, dtype=input.dtype)
    tap_y = (arange(kernel_h) * dil_h).repeat_interleave(kernel_w)
    tap_x = (arange(kernel_w) * dil_w).repeat(kernel_h)
    base_y = tap_y.view(taps, 1, 1) + (arange(out_h) * stride_h - pad_h).view(1, out_h, 1)
    base_x = tap_x.view(taps, 1, 1) + (arange(out_w) * stride_w - pad_w).view(1, 1, out_w)

    offset = offset.view(batch, offset_groups, taps, 2, out_h, out_w)
    sample_y = base_y + offset[:, :, :, 0]  # [B, G, K, H_out, W_out]
    sample_x = base_x + offset[:, :, :, 1]
    # grid_sample with align_corners=False puts pixel i at normalised (2i + 1) / size - 1;
    # unlike align_corners=True this also works for a size-1 axis.
    grid = torch.stack(((2 * sample_x + 1) / width - 1, (2 * sample_y + 1) / height - 1), dim=-1)
    grid = grid.view(batch * offset_groups, taps * out_h, out_w, 2)

    channels_per_offset_group = in_channels // offset_groups
    sampled = F.grid_sample(
        input.reshape(batch * offset_groups, channels_per_offset_group, height, width),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    sampled = sampled.view(batch, offset_groups, channels_per_offset_group, taps, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask.view(batch, offset_groups, 1, taps, out_h, out_w)

    columns = sampled.reshape(batch, groups, in_per_group * taps, out_h * out_w)
    kernels = weight.reshape(groups, out_channels // groups, in_per_group * taps)
    out = torch.einsum("gok,bgkl->bgol", kernels, columns).reshape(batch, out_channels, out_h, out_w)
    if bias is not None:
        out = out + bias.view(1, out_channels, 1, 1)
    return out


@functools.lru_cache(maxsize=1)
def _torchvision_op() -> Callable[..., Tensor] | None:
    """torchvision's kernel if it imports and runs, else None (probed once).

    A torchvision wheel built for another torch can import yet fail when an op
    is called, or fail to import with an error other than ImportError; any
    failure means "not available".
    """
    try:
        from torchvision.ops import deform_conv2d as tv_deform_conv2d

        probe = torch.zeros(1, 1, 3, 3)
        tv_deform_conv2d(probe, torch.zeros(1, 18, 1, 1), torch.zeros(1, 1, 3, 3), mask=torch.ones(1, 9, 1, 1))
    except Exception:  # noqa: BLE001 - any failure means "use the pure version"
        return None
    return tv_deform_conv2d


def deform_conv_backend() -> str:
    """'torchvision' or 'torch': which implementation `deform_conv2d` uses (for run metadata)."""
    return "torchvision" if _torchvision_op() is not None else "torch"


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    mask: Tensor | None = None,
) -> Tensor:
    """Modulated deformable conv: torchvision's kernel where available, else `deform_conv2d_torch`."""
    op = _torchvision_op()
    if op is None:
        return deform_conv2d_torch(input, offset, weight, bias, stride, padding, dilation, mask)
    return op(
        input, offset, weight, bias,
        stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation), mask=mask,
    )


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer: a k x k conv whose taps move by predicted offsets and are
    scaled by predicted masks in [0, 1].

    Offsets and masks come from a plain conv over a *guide* feature map (the
    input itself unless another map is passed). That predictor starts at zero
    weights and bias, so at initialisation offsets are 0 and masks sigmoid(0) =
    0.5 (as in DCNv2 and the CFMD paper): the layer begins as half an ordinary
    conv and learns to deform from there.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = True,
        offset_groups: int = 1,
        guide_channels: int | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size // 2)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.offset_groups = offset_groups
        self.taps = kernel_size * kernel_size

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # Same initialisation as nn.Conv2d, so swapping a conv for this layer keeps the scale.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(in_channels * self.taps)
            nn.init.uniform_(self.bias, -bound, bound)

        self.offset_mask = nn.Conv2d(
            guide_channels if guide_channels is not None else in_channels,
            3 * offset_groups * self.taps,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=True,
        )
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def offsets_and_mask(self, guide: Tensor) -> tuple[Tensor, Tensor]:
        """Offsets [B, 2GK, H', W'] and masks in [0, 1] [B, GK, H', W'] predicted from `guide`."""
        prediction = self.offset_mask(guide)
        offset, mask_logits = prediction.split(
            [2 * self.offset_groups * self.taps, self.offset_groups * self.taps], dim=1
        )
        return offset, torch.sigmoid(mask_logits)

    def forward(self, x: Tensor, guide: Tensor | None = None) -> Tensor:
        offset, mask = self.offsets_and_mask(x if guide is None else guide)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)
