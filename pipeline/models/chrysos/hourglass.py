"""Stacked hourglass network (Newell et al. 2016) used as an image-to-image restorer.

Step 1 of Chrysos, Favaro & Zafeiriou (2019): the hourglass takes the blurry face
and is trained with an L1 loss to restore its low and mid frequencies; it is then
frozen and its output becomes an extra input of the step-2 conditional GAN.

Differences from the pose-estimation original, and why:
- No 4x downsampling stem (7x7 stride-2 conv + max pool). Newell et al. predict
  heat maps at a quarter of the input size; here the prediction is the image itself,
  so everything runs at full resolution and the hourglass's own `depth` poolings
  provide the multi-scale context.
- The per-stack head predicts 3 image channels instead of one heat map per joint.
Kept from the original: pre-activation bottleneck residual modules (the paper's
"resnet block of three resnet layers", each conv + batch norm + ReLU), the recursive
pool / process / upsample / add structure with a residual block on every lateral
connection, and intermediate supervision with the prediction re-injected into the
features passed to the next stack.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BottleneckResidual(nn.Module):
    """Pre-activation bottleneck: (BN-ReLU-conv) x 3 with 1x1, 3x3, 1x1 kernels, plus a skip.

    The skip is the identity when the channel counts match, otherwise a 1x1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = max(1, out_channels // 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1),
        )
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass: `depth` nested levels of (max pool -> process -> upsample) plus lateral branches.

    At each level the lateral (upper) branch keeps the current resolution through a
    residual block; the lower branch halves the resolution, recurses, and is upsampled
    (nearest) and added back, so features from every scale are combined.
    """

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"hourglass depth must be >= 1, got {depth}")
        self.lateral = BottleneckResidual(width, width)
        self.down = BottleneckResidual(width, width)
        self.inner = Hourglass(depth - 1, width) if depth > 1 else BottleneckResidual(width, width)
        self.up = BottleneckResidual(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lateral = self.lateral(x)
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return lateral + F.interpolate(low, scale_factor=2, mode="nearest")


class StackedHourglass(nn.Module):
    """`n_stacks` hourglasses in sequence; returns one 3-channel image per stack (final last).

    With `residual` (our default; the paper has no global skip) every stack predicts a
    correction added to the input image, its head zero at the start: the untrained network is
    the identity (issue 11). Every stack's prediction is supervised (intermediate supervision), see
    `pipeline.models.chrysos.losses.hourglass_loss`. Input height and width must be divisible
    by 2**depth. Use `freeze()` after step-1 training: step 2 treats the hourglass as
    a fixed function of the blurry image.
    """

    def __init__(
        self,
        n_stacks: int = 2,
        depth: int = 4,
        width: int = 64,
        in_channels: int = 3,
        out_channels: int = 3,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.frozen = False
        if residual and in_channels != out_channels:
            raise ValueError("residual needs in_channels == out_channels")
        self.residual = residual
        if n_stacks < 1:
            raise ValueError(f"n_stacks must be >= 1, got {n_stacks}")
        self.depth = depth
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            BottleneckResidual(width, width),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, width) for _ in range(n_stacks))
        self.post = nn.ModuleList(
            nn.Sequential(
                BottleneckResidual(width, width),
                nn.Conv2d(width, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
            for _ in range(n_stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(width, out_channels, 1) for _ in range(n_stacks))
        if residual:  # every stack predicts a correction of the input, zero at the start
            for head in self.heads:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        # Re-injection into the next stack: features and prediction mapped back to `width`.
        self.feature_remaps = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(n_stacks - 1))
        self.prediction_remaps = nn.ModuleList(
            nn.Conv2d(out_channels, width, 1) for _ in range(n_stacks - 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        divisor = 2**self.depth
        if x.shape[-2] % divisor or x.shape[-1] % divisor:
            raise ValueError(
                f"input size {tuple(x.shape[-2:])} must be divisible by 2**depth = {divisor}"
            )
        features = self.stem(x)
        predictions: list[torch.Tensor] = []
        for i, (hourglass, post, head) in enumerate(zip(self.hourglasses, self.post, self.heads)):
            stack_features = post(hourglass(features))
            prediction = head(stack_features) + x if self.residual else head(stack_features)
            predictions.append(prediction)
            if i < len(self.feature_remaps):
                features = (
                    features
                    + self.feature_remaps[i](stack_features)
                    + self.prediction_remaps[i](prediction)
                )
        return predictions

    def restore(self, blurry: torch.Tensor) -> torch.Tensor:
        """The final stack's prediction: what step 2 consumes."""
        return self.forward(blurry)[-1]

    def freeze(self) -> "StackedHourglass":
        """Fix the weights and batch-norm statistics (eval mode, no gradients); returns self."""
        self.frozen = True
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "StackedHourglass":
        # A frozen hourglass stays in eval mode even if a parent module calls .train().
        return super().train(mode and not self.frozen)
