"""U-Net discriminator with an auxiliary u regressor (CFMD-GAN section 4.2.3,
after Schonfeld, Schiele & Khoreva 2020, "A U-Net Based Discriminator for GANs").

Input: the blurry image concatenated with a sharp or restored image (6 channels),
so the discriminator judges whether the pair is consistent, not only whether the
face looks sharp. Outputs, all raw logits / values (no sigmoid; the losses use
BCE-with-logits):

- global_logit [B, 1]: real/fake for the whole image, from the encoder bottleneck;
- pixel_logits [B, 1, H, W]: real/fake per pixel, from the decoder;
- u_map [B, 1, H, W]: per-pixel estimate of the control factor u (regressor Q).

Every conv and linear layer is spectrally normalised, which bounds the
discriminator's Lipschitz constant and keeps GAN training stable. Blocks are
BigGAN-style residual blocks (average-pool downsampling, nearest upsampling),
as in Schonfeld et al.; the decoder concatenates the encoder features of the
same resolution (U-Net skips).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

NEGATIVE_SLOPE = 0.2


class DiscriminatorOutput(NamedTuple):
    global_logit: Tensor  # [B, 1]
    pixel_logits: Tensor  # [B, 1, H, W]
    u_map: Tensor  # [B, 1, H, W]


def sn_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """Spectrally normalised conv with same padding."""
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with LeakyReLU plus a 1x1 shortcut; optional 2x average-pool
    downsampling at the end. The first block of the network skips the leading
    activation so the raw image is not rectified."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, preactivate: bool = True) -> None:
        super().__init__()
        self.downsample = downsample
        self.preactivate = preactivate
        self.conv1 = sn_conv(in_channels, out_channels, 3)
        self.conv2 = sn_conv(out_channels, out_channels, 3)
        self.shortcut = sn_conv(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(x, NEGATIVE_SLOPE) if self.preactivate else x
        h = self.conv2(F.leaky_relu(self.conv1(h), NEGATIVE_SLOPE))
        out = h + self.shortcut(x)
        return F.avg_pool2d(out, 2) if self.downsample else out


class UNetDiscriminator(nn.Module):
    """U-Net discriminator: `depth` downsampling blocks (widths width * 2^i,
    capped at 8 * width), a global head on the bottleneck, and a mirrored
    decoder back to full resolution with per-pixel real/fake and u heads.

    Works for any input size of at least 2^depth (the decoder upsamples to the
    exact size of each skip).
    """

    def __init__(self, in_channels: int = 6, width: int = 64, depth: int = 4, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ValueError(f"pooling = {pooling!r}: must be mean or sum")
        self.pooling = pooling
        widths = [width * min(2**level, 8) for level in range(depth + 1)]
        self.stem = ResidualBlock(in_channels, widths[0], downsample=False, preactivate=False)
        self.down_blocks = nn.ModuleList(
            ResidualBlock(widths[level], widths[level + 1], downsample=True) for level in range(depth)
        )
        self.global_head = spectral_norm(nn.Linear(widths[-1], 1))
        # up_blocks[level] takes the decoder features from level + 1, upsampled, plus the skip at `level`.
        self.up_blocks = nn.ModuleList(
            ResidualBlock(widths[level + 1] + widths[level], widths[level], downsample=False)
            for level in range(depth)
        )
        self.pixel_head = sn_conv(widths[0], 1, 1)
        self.u_head = sn_conv(widths[0], 1, 1)

    def forward(self, blurry: Tensor, candidate: Tensor) -> DiscriminatorOutput:
        """blurry, candidate [B, 3, H, W] (candidate: sharp or restored image)."""
        x = torch.cat([blurry, candidate], dim=1)
        skips = [self.stem(x)]
        for block in self.down_blocks:
            skips.append(block(skips[-1]))

        bottleneck = F.leaky_relu(skips[-1], NEGATIVE_SLOPE)
        # BigGAN's (and Schonfeld et al.'s) sum pooling, or the mean: a logit scale that does not depend on
        # the crop size, but under spectral norm a range too narrow to tell a sharp face from a blurred one
        # (docs/training.md, "The adversarial half").
        pooled = bottleneck.sum(dim=(2, 3)) if self.pooling == "sum" else bottleneck.mean(dim=(2, 3))
        global_logit = self.global_head(pooled)

        h = skips[-1]
        for level in reversed(range(len(self.up_blocks))):
            skip = skips[level]
            upsampled = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = self.up_blocks[level](torch.cat([upsampled, skip], dim=1))
        h = F.leaky_relu(h, NEGATIVE_SLOPE)
        return DiscriminatorOutput(global_logit, self.pixel_head(h), self.u_head(h))
