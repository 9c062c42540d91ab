"""CFMD-GAN generator (Lee, Han & Heo 2022, section 4.2): a MIMO-UNet whose
residual blocks are control-adaptive (ContAda) blocks, steered by a moment
control factor u in [0, 1] through a small mapping network.

    outputs = CFMDGenerator()(blurry, u)   # [1/4 scale, 1/2 scale, full scale]

Layout follows MIMO-UNet (Cho et al. 2021): three encoder and three decoder
levels of widths w, 2w, 4w; shallow convolutional modules (SCM) feed the
downscaled input to levels 2 and 3; feature attention modules (FAM) merge them;
asymmetric feature fusion (AFF) mixes all encoder scales into the skips; each
decoder level predicts a residual that is added to the input at its scale.
Activations are LeakyReLU(0.2), as in the ContAda block and the authors' code.

Input height and width must be multiples of 4 (two 2x downsamplings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.cfmd.deform_conv import ModulatedDeformConv2d

NEGATIVE_SLOPE = 0.2


def conv_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (same padding) followed by LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.LeakyReLU(NEGATIVE_SLOPE),
    )


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """Conv with same padding and no activation."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def upsample_act(in_channels: int, out_channels: int) -> nn.Sequential:
    """2x transposed conv (kernel 4, stride 2: exact doubling) followed by LeakyReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1),
        nn.LeakyReLU(NEGATIVE_SLOPE),
    )


def downscale_half(image: Tensor) -> Tensor:
    """2x2 box average: the image pyramid fed to the SCMs and used for the
    multi-scale targets (equal to MIMO-UNet's bilinear 0.5 resize of targets)."""
    return F.interpolate(image, scale_factor=0.5, mode="area")


class MappingNetwork(nn.Module):
    """u -> per-level control features (paper eq. 8).

    u is broadcast to a 1-channel map and passed through `num_layers` 1x1 convs +
    LeakyReLU of width `width`; separate 1x1 heads project the result to the
    width of every encoder and decoder level. Every layer is 1x1 and the input is
    spatially constant, so the maps are computed on a 1x1 grid and broadcast to
    each level's size by the ContAda blocks: the same values as running on the
    full map, and as resizing it bilinearly, without the full-size compute.

    The shared layers use Kaiming initialisation for LeakyReLU: with PyTorch's
    default conv init the signal of a scalar input shrinks through eight layers
    and u would barely reach the deblurring network at the start of training.
    """

    def __init__(self, level_widths: tuple[int, ...], width: int = 32, num_layers: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layer = nn.Conv2d(1 if index == 0 else width, width, 1)
            nn.init.kaiming_normal_(layer.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)
            layers += [layer, nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.shared = nn.Sequential(*layers)
        self.encoder_heads = nn.ModuleList(nn.Conv2d(width, w, 1) for w in level_widths)
        self.decoder_heads = nn.ModuleList(nn.Conv2d(width, w, 1) for w in level_widths)

    def forward(self, u: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """u [B] -> (encoder controls, decoder controls), each a list over levels
        (finest first) of [B, C_level, 1, 1]."""
        u_map = u.reshape(-1, 1, 1, 1).to(self.encoder_heads[0].weight.dtype)
        shared = self.shared(u_map)
        return [head(shared) for head in self.encoder_heads], [head(shared) for head in self.decoder_heads]


class ControlChannelAttention(nn.Module):
    """CACA: channel weights in (0, 1) from the global average of F_u
    (squeeze-and-excitation with reduction `reduction`)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.squeeze_excite = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, fused: Tensor) -> Tensor:
        return self.squeeze_excite(fused)


class ContAdaBlock(nn.Module):
    """Control-adaptive residual block (paper section 4.2.2, Fig. 6).

    x -> 3x3 conv + LeakyReLU = F_o; concat(F_o, control broadcast to H x W) ->
    1x1 conv = F_u; CADC: modulated deformable 3x3 conv over F_u whose offsets
    and masks are predicted from F_u; CACA: channel weights from F_u multiply
    the CADC output; then add x. u thus steers where the block samples (CADC)
    and which channels it keeps (CACA).
    """

    def __init__(self, channels: int, control_channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.extract = conv_act(channels, channels, 3)
        self.fuse = nn.Conv2d(channels + control_channels, channels, 1)
        self.deform = ModulatedDeformConv2d(channels, channels, kernel_size=3)
        self.attention = ControlChannelAttention(channels, reduction)

    def forward(self, x: Tensor, control: Tensor) -> Tensor:
        features = self.extract(x)
        control_map = control.expand(-1, -1, *features.shape[-2:])
        fused = self.fuse(torch.cat([features, control_map], dim=1))
        return x + self.deform(fused) * self.attention(fused)


class ContAdaStack(nn.Module):
    """`num_blocks` ContAda blocks sharing one control feature (one encoder or decoder level)."""

    def __init__(self, channels: int, num_blocks: int, reduction: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ContAdaBlock(channels, channels, reduction) for _ in range(num_blocks))

    def forward(self, x: Tensor, control: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, control)
        return x


class ShallowConvModule(nn.Module):
    """SCM: features of the downscaled blurry image for a lower level;
    the image itself is concatenated back so no colour information is lost."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_act(3, out_channels // 4, 3),
            conv_act(out_channels // 4, out_channels // 2, 1),
            conv_act(out_channels // 2, out_channels // 2, 3),
            conv_act(out_channels // 2, out_channels - 3, 1),
        )
        self.merge = conv(out_channels, out_channels, 1)

    def forward(self, image: Tensor) -> Tensor:
        return self.merge(torch.cat([image, self.body(image)], dim=1))


class FeatureAttentionModule(nn.Module):
    """FAM: the SCM features gate the strided encoder features (x + conv(x * scm))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.merge = conv(channels, channels, 3)

    def forward(self, encoder_features: Tensor, scm_features: Tensor) -> Tensor:
        return encoder_features + self.merge(encoder_features * scm_features)


class AsymmetricFeatureFusion(nn.Module):
    """AFF: all encoder scales, resized to one level, fused into that level's skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(conv_act(in_channels, out_channels, 1), conv(out_channels, out_channels, 3))

    def forward(self, *features: Tensor) -> Tensor:
        return self.fuse(torch.cat(features, dim=1))


def resize_to(features: Tensor, reference: Tensor) -> Tensor:
    """Nearest resize of feature maps to another map's size (MIMO-UNet's AFF resizing)."""
    return F.interpolate(features, size=reference.shape[-2:], mode="nearest")


def identity_init(generator: nn.Module) -> None:
    """Initialise so that training starts from the identity and the image reaches the output convs.

    Every conv outside the mapping network (which has its own Kaiming init) and the deformable
    convs' offset/mask predictors (zero: no offset, masks 0.5) gets Kaiming-normal weights for
    LeakyReLU(0.2) and zero biases; the three output convs get zero weights and biases, so the
    untrained generator returns its blurry input at every scale.

    Why: with PyTorch's default conv init (gain 1/sqrt(3)) and its uniform biases, the image's
    spatial signal shrinks layer by layer while the biases add per-channel constants; at the
    last decoder level the spatial std of the features was ~12x below their constant part
    (width 16, 1 block), so the output convs could learn little but a colour shift (the cast)
    and learning was slow (issue 11). Not from the paper, which gives no initialisation.
    """
    outputs = {id(generator.to_image1), id(generator.to_image2), id(generator.to_image3)}
    skip = {id(m) for m in generator.mapping.modules()}
    for module in generator.modules():
        if id(module) in skip:
            continue
        if isinstance(module, ModulatedDeformConv2d):
            nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and not _is_offset_predictor(generator, module):
            if id(module) in outputs:
                nn.init.zeros_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _is_offset_predictor(generator: nn.Module, conv_module: nn.Module) -> bool:
    return any(isinstance(m, ModulatedDeformConv2d) and m.offset_mask is conv_module for m in generator.modules())


class CFMDGenerator(nn.Module):
    """G(b, u): the blurry image b and moment u -> restored images at 1/4, 1/2
    and full scale (each = blurry at that scale + predicted residual; not clamped,
    as in MIMO-UNet; clamp to [0, 1] for display and metrics).

    Paper configuration: base_width 32, num_blocks 8, mapping_width 32,
    mapping_layers 8.
    """

    def __init__(
        self,
        base_width: int = 32,
        num_blocks: int = 8,
        mapping_width: int = 32,
        mapping_layers: int = 8,
        attention_reduction: int = 4,
    ) -> None:
        super().__init__()
        if base_width % 4 != 0 or base_width < 8:
            raise ValueError("base_width must be a multiple of 4 and at least 8 (SCM splits it in quarters)")
        w1, w2, w4 = base_width, 2 * base_width, 4 * base_width
        self.mapping = MappingNetwork((w1, w2, w4), mapping_width, mapping_layers)

        self.stem = conv_act(3, w1, 3)
        self.down_1to2 = conv_act(w1, w2, 3, stride=2)
        self.down_2to3 = conv_act(w2, w4, 3, stride=2)
        self.scm2 = ShallowConvModule(w2)
        self.scm3 = ShallowConvModule(w4)
        self.fam2 = FeatureAttentionModule(w2)
        self.fam3 = FeatureAttentionModule(w4)
        self.encoders = nn.ModuleList(ContAdaStack(w, num_blocks, attention_reduction) for w in (w1, w2, w4))

        self.aff1 = AsymmetricFeatureFusion(w1 + w2 + w4, w1)
        self.aff2 = AsymmetricFeatureFusion(w1 + w2 + w4, w2)

        self.decoders = nn.ModuleList(ContAdaStack(w, num_blocks, attention_reduction) for w in (w1, w2, w4))
        self.up_3to2 = upsample_act(w4, w2)
        self.up_2to1 = upsample_act(w2, w1)
        self.merge_skip2 = conv_act(2 * w2, w2, 1)
        self.merge_skip1 = conv_act(2 * w1, w1, 1)
        self.to_image3 = conv(w4, 3, 3)
        self.to_image2 = conv(w2, 3, 3)
        self.to_image1 = conv(w1, 3, 3)
        identity_init(self)

    def forward(self, blurry: Tensor, u: Tensor) -> list[Tensor]:
        height, width = blurry.shape[-2:]
        if height % 4 or width % 4:
            raise ValueError(f"image size {height}x{width} must be a multiple of 4")
        u = torch.as_tensor(u, dtype=blurry.dtype, device=blurry.device).reshape(-1).expand(blurry.shape[0])
        enc_controls, dec_controls = self.mapping(u)

        blurry_2 = downscale_half(blurry)
        blurry_4 = downscale_half(blurry_2)

        skip1 = self.encoders[0](self.stem(blurry), enc_controls[0])
        skip2 = self.encoders[1](self.fam2(self.down_1to2(skip1), self.scm2(blurry_2)), enc_controls[1])
        bottom = self.encoders[2](self.fam3(self.down_2to3(skip2), self.scm3(blurry_4)), enc_controls[2])

        fused2 = self.aff2(resize_to(skip1, skip2), skip2, resize_to(bottom, skip2))
        fused1 = self.aff1(skip1, resize_to(skip2, skip1), resize_to(bottom, skip1))

        z = self.decoders[2](bottom, dec_controls[2])
        out_4 = self.to_image3(z) + blurry_4
        z = self.merge_skip2(torch.cat([self.up_3to2(z), fused2], dim=1))
        z = self.decoders[1](z, dec_controls[1])
        out_2 = self.to_image2(z) + blurry_2
        z = self.merge_skip1(torch.cat([self.up_2to1(z), fused1], dim=1))
        z = self.decoders[0](z, dec_controls[0])
        out_1 = self.to_image1(z) + blurry
        return [out_4, out_2, out_1]
