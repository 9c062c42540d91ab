"""Step 2 of Chrysos, Favaro & Zafeiriou (2019): two-pathway generator and its discriminator.

The generator has two pathways with the same layer-wise architecture (paper section
3.3, Table 3):
- G_bl: encoder of the blurry image concatenated with the hourglass output (6 channels)
  followed by the decoder. This is the only pathway used at test time.
- G_s: encoder of the sharp image (3 channels) followed by the SAME decoder object, so
  the two decoders share every weight (and batch-norm statistics). G_s is trained as an
  auto-encoder; sharing the decoder pushes the latent codes of blurry and sharp faces
  to be similar, which restricts G_bl's outputs to the manifold of sharp faces.

Encoder (Table 3a), 256x256 input: seven 4x4 stride-2 convs with 64, 128, 256, 512,
512, 512, 512 filters (256 -> 2x2), then a 1x1 conv with 256 filters.
Decoder (Table 3b): a 1x1 transposed conv with 1024 filters, then seven 4x4 stride-2
transposed convs with 512, 512, 512, 256, 128, 64, 3 filters (2x2 -> 256).
Every layer is conv -> batch norm -> ReLU, except that the first encoder layer has no
batch norm and the last decoder layer has neither batch norm nor ReLU (Table 3's BN
column; the paper says ReLU, so the encoder does not use LeakyReLU).

Interpretation choices (the paper leaves these open):
- Residual skips "after the first, the third and the fifth layer of the encoder [that]
  skip two layers each": the output of encoder layer k (k = 1, 3, 5) is added to the
  output of layer k + 2. Those differ by 4x in size and in width, so the shortcut is a
  parameter-light projection: 4x4 average pooling then a 1x1 conv (He et al.'s
  projection shortcut, with pooling instead of a strided 1x1 conv so no pixel is
  dropped). Likewise decoder layer j (j = 1, 3) is added to the output of layer j + 2
  through nearest 4x upsampling and a 1x1 conv.
- The two U-Net skips concatenate an encoder output to the input of the decoder layer
  of the same spatial size (encoder layer k feeds decoder layer 9 - k). The paper does
  not say which two; the default is encoder layers 5 and 6 (8x8 and 4x4 at 256 input),
  feeding decoder layers 4 and 3. Keeping them deep stops the G_s auto-encoder from
  copying its input through a high-resolution bypass, which would make its
  reconstruction loss trivial and the decoder sharing meaningless. Other levels can be
  chosen with `unet_skip_layers`.
- Dropout is mentioned in Table 3's caption but its values did not survive; none is used.
- Output is linear by default (images in whatever range the trainer uses); pass
  `output_tanh=True` for data scaled to [-1, 1].

Depth (`levels`, issue 22): the paper's seven stride-2 levels suit 256 x 256 faces (a 2 x 2
bottleneck). At a smaller training resolution the generator keeps the paper's design with fewer
levels: the encoder's first `levels` layers (64, 128, 256, 512, ...), the decoder's last `levels`
(..., 256, 128, 64, 3), so the bottleneck stays 2 x 2 (`levels_for(size)` = log2(size) - 1: 5 at
64, 6 at 128, 7 at 256). The residual skips go from encoder layers 1, 3, 5 and decoder layers 1,
3 where the layer two further exists; the two U-Net skips default to the two deepest encoder
layers before the bottleneck's 2 x 2 (5 and 6 at seven levels, as before).

Input height and width must be multiples of 2**levels (128 at seven levels); the bottleneck is
1x1 at 2**levels, 2x2 at twice that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

ENCODER_WIDTHS = (64, 128, 256, 512, 512, 512, 512)
BOTTLENECK_WIDTH = 256
DECODER_WIDTHS = (1024, 512, 512, 512, 256, 128, 64)
RESIDUAL_FROM_ENCODER_LAYERS = (1, 3, 5)
RESIDUAL_FROM_DECODER_LAYERS = (1, 3)
DEFAULT_UNET_SKIP_LAYERS = (5, 6)
PAPER_LEVELS = len(ENCODER_WIDTHS)
SIZE_MULTIPLE = 2 ** PAPER_LEVELS  # at the paper's seven levels


def levels_for(size: int) -> int:
    """Stride-2 levels that take a size x size image to a 2 x 2 bottleneck, as the paper's seven do
    at 256 (at most seven, at least two)."""
    return int(min(PAPER_LEVELS, max(2, round(float(np.log2(size))) - 1)))


def default_unet_skips(levels: int) -> tuple[int, ...]:
    return tuple(k for k in (levels - 2, levels - 1) if k >= 1)


def scaled_width(channels: int, width_multiplier: float) -> int:
    """Channel count after applying the width multiplier (at least 1)."""
    return max(1, int(round(channels * width_multiplier)))


def check_input_size(x: torch.Tensor, levels: int = PAPER_LEVELS) -> None:
    height, width = x.shape[-2:]
    multiple = 2 ** levels
    if height % multiple or width % multiple or height == 0 or width == 0:
        raise ValueError(
            f"input size {height}x{width} is not supported: height and width must be "
            f"positive multiples of {multiple} ({levels} stride-2 layers; the paper uses seven at 256)"
        )


def conv_bn_relu(conv: nn.Module, out_channels: int, batch_norm: bool) -> nn.Sequential:
    layers = [conv]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Table 3a encoder; returns the 1x1-conv bottleneck code and every layer's output."""

    def __init__(self, in_channels: int, width_multiplier: float = 1.0, levels: int = PAPER_LEVELS) -> None:
        super().__init__()
        widths = [scaled_width(c, width_multiplier) for c in ENCODER_WIDTHS[:levels]]
        self.widths, self.levels = widths, levels
        layers = []
        previous = in_channels
        for index, width in enumerate(widths):
            conv = nn.Conv2d(previous, width, 4, stride=2, padding=1, bias=index == 0)
            layers.append(conv_bn_relu(conv, width, batch_norm=index > 0))
            previous = width
        bottleneck = scaled_width(BOTTLENECK_WIDTH, width_multiplier)
        layers.append(conv_bn_relu(nn.Conv2d(previous, bottleneck, 1, bias=False), bottleneck, True))
        self.layers = nn.ModuleList(layers)
        # Keys are 1-based layer numbers as in the paper: shortcut k goes from layer k to k + 2.
        self.shortcuts = nn.ModuleDict(
            {
                str(k): nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(widths[k - 1], widths[k + 1], 1))
                for k in RESIDUAL_FROM_ENCODER_LAYERS if k + 2 <= levels
            }
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        check_input_size(x, self.levels)
        outputs: list[torch.Tensor] = []
        h = x
        for number, layer in enumerate(self.layers, start=1):
            h = layer(h)
            source = str(number - 2)
            if source in self.shortcuts:
                h = h + self.shortcuts[source](outputs[number - 3])
            outputs.append(h)
        return h, outputs


class Decoder(nn.Module):
    """Table 3b decoder, shared by both generator pathways.

    `unet_skip_layers` are encoder layer numbers; encoder layer k's output is
    concatenated to the input of decoder layer 9 - k.
    """

    def __init__(
        self,
        width_multiplier: float = 1.0,
        out_channels: int = 3,
        unet_skip_layers: Sequence[int] | None = None,
        output_tanh: bool = False,
        levels: int = PAPER_LEVELS,
    ) -> None:
        super().__init__()
        encoder_widths = [scaled_width(c, width_multiplier) for c in ENCODER_WIDTHS[:levels]]
        # the 1x1 layer, then the last `levels - 1` stride-2 layers of the paper's decoder, then RGB
        decoder_widths = DECODER_WIDTHS[:1] + DECODER_WIDTHS[len(DECODER_WIDTHS) - levels + 1:]
        widths = [scaled_width(c, width_multiplier) for c in decoder_widths] + [out_channels]
        n_layers = len(widths)
        self.skip_source_for_layer: dict[int, int] = {}
        for k in default_unet_skips(levels) if unet_skip_layers is None else unet_skip_layers:
            if not 1 <= k <= levels:
                raise ValueError(f"U-Net skip source must be an encoder layer 1..{levels}, got {k}")
            self.skip_source_for_layer[n_layers + 1 - k] = k

        layers = []
        previous = scaled_width(BOTTLENECK_WIDTH, width_multiplier)
        for number, width in enumerate(widths, start=1):
            in_channels = previous
            if number in self.skip_source_for_layer:
                in_channels += encoder_widths[self.skip_source_for_layer[number] - 1]
            if number == 1:
                conv = nn.ConvTranspose2d(in_channels, width, 1, bias=False)
            else:
                conv = nn.ConvTranspose2d(
                    in_channels, width, 4, stride=2, padding=1, bias=number == n_layers
                )
            if number == n_layers:
                layers.append(nn.Sequential(conv, nn.Tanh()) if output_tanh else conv)
            else:
                layers.append(conv_bn_relu(conv, width, batch_norm=True))
            previous = width
        self.layers = nn.ModuleList(layers)
        self.shortcuts = nn.ModuleDict(
            {
                str(j): nn.Sequential(
                    nn.Upsample(scale_factor=4, mode="nearest"),
                    nn.Conv2d(widths[j - 1], widths[j + 1], 1),
                )
                for j in RESIDUAL_FROM_DECODER_LAYERS if j + 2 < n_layers
            }
        )

    def forward(self, code: torch.Tensor, encoder_outputs: list[torch.Tensor]) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        h = code
        for number, layer in enumerate(self.layers, start=1):
            if number in self.skip_source_for_layer:
                h = torch.cat([h, encoder_outputs[self.skip_source_for_layer[number] - 1]], dim=1)
            h = layer(h)
            source = str(number - 2)
            if source in self.shortcuts:
                h = h + self.shortcuts[source](outputs[number - 3])
            outputs.append(h)
        return h


class Pathway(nn.Module):
    """One generator pathway: an encoder and a (possibly shared) decoder."""

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code, encoder_outputs = self.encoder(x)
        return self.decoder(code, encoder_outputs)


def zero_decoder_output(decoder: "Decoder") -> None:
    """Zero the decoder's last conv and the shortcut into it: the decoder starts at 0, so a
    residual generator starts as the identity on its image input."""
    last = len(decoder.layers)
    final = decoder.layers[-1]
    conv = final[0] if isinstance(final, nn.Sequential) else final
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    shortcut = decoder.shortcuts[str(last - 2)] if str(last - 2) in decoder.shortcuts else None
    if shortcut is not None:
        nn.init.zeros_(shortcut[1].weight)
        nn.init.zeros_(shortcut[1].bias)


class ChrysosGenerator(nn.Module):
    """Two-pathway generator: `blurry_pathway` (G_bl) and `sharp_pathway` (G_s), one decoder.

    With `residual` (our default; Table 3 has no global skip) G_bl predicts a correction:
    G_bl = base + decoder(...), the decoder's last conv zero at the start, so the untrained
    generator returns its base: the blurry input (`residual_base: blurry`, issue 11), or the
    hourglass's restoration (`hourglass`, issue 22: step 2 then starts where step 1 ended). G_s keeps the paper's form, a plain
    auto-encoder G_s = decoder(encoder(sharp)) (issue 22): with a global skip on G_s too, its
    reconstruction term (weight 100) was met exactly by a zero decoder, and the decoder G_bl
    shares stayed pinned at zero, so the model never left the identity.

    `blurry_pathway.decoder is sharp_pathway.decoder`; `parameters()` lists the shared
    decoder once. The state dict stores it under both pathway prefixes, which load
    back into the one module.
    """

    def __init__(
        self,
        width_multiplier: float = 1.0,
        unet_skip_layers: Sequence[int] | None = None,
        output_tanh: bool = False,
        residual: bool = True,
        levels: int = PAPER_LEVELS,
        sharp_skip: bool = False,
        residual_base: str = "blurry",
    ) -> None:
        super().__init__()
        if residual and output_tanh:
            raise ValueError("residual and output_tanh exclude each other (the residual is added after the decoder)")
        if not 2 <= levels <= PAPER_LEVELS:
            raise ValueError(f"levels = {levels}: must be in [2, {PAPER_LEVELS}] (the paper's seven at 256)")
        if residual_base not in ("blurry", "hourglass"):
            raise ValueError(f"residual_base = {residual_base!r}: must be blurry or hourglass")
        self.residual, self.levels, self.sharp_skip = residual, levels, residual and sharp_skip
        self.residual_base = residual_base
        self.size_multiple = 2 ** levels
        shared_decoder = Decoder(width_multiplier, 3, unet_skip_layers, output_tanh, levels)
        self.blurry_pathway = Pathway(Encoder(6, width_multiplier, levels), shared_decoder)
        self.sharp_pathway = Pathway(Encoder(3, width_multiplier, levels), shared_decoder)
        if residual:
            zero_decoder_output(shared_decoder)

    @property
    def decoder(self) -> Decoder:
        return self.blurry_pathway.decoder

    def forward_blurry(self, blurry: torch.Tensor, hourglass_out: torch.Tensor) -> torch.Tensor:
        """G_bl: restore from the blurry image and the (frozen) hourglass output."""
        if blurry.shape != hourglass_out.shape:
            raise ValueError(
                f"blurry {tuple(blurry.shape)} and hourglass output "
                f"{tuple(hourglass_out.shape)} must have the same shape"
            )
        out = self.blurry_pathway(torch.cat([blurry, hourglass_out], dim=1))
        if not self.residual:
            return out
        return (hourglass_out if self.residual_base == "hourglass" else blurry) + out

    def forward_sharp(self, sharp: torch.Tensor) -> torch.Tensor:
        """G_s: auto-encode the sharp image (training-time regulariser only); with `sharp_skip`
        (and `residual`) as a correction added to its input, as before issue 22 (see the class doc)."""
        out = self.sharp_pathway(sharp)
        return sharp + out if self.sharp_skip else out

    def forward(self, blurry: torch.Tensor, hourglass_out: torch.Tensor) -> torch.Tensor:
        """Test-time path: G_bl only."""
        return self.forward_blurry(blurry, hourglass_out)


class PatchDiscriminator(nn.Module):
    """Five-layer conditional PatchGAN (pix2pix's 70x70 design): input blurry ⊕ candidate.

    Layers: 4x4 convs with 64, 128, 256 filters at stride 2, 512 at stride 1, then a
    1-channel stride-1 conv giving a map of real/fake LOGITS (no sigmoid; use
    BCE-with-logits). Batch norm on all but the first and last layers, LeakyReLU(0.2)
    (the paper gives only the layer count). The penultimate (512-filter) layer's
    activations are returned as the projection features pi(.) of the projection loss.
    At 256x256 input the logits are 30x30 and the features 31x31.
    """

    def __init__(self, in_channels: int = 6, width_multiplier: float = 1.0) -> None:
        super().__init__()
        widths = [scaled_width(c, width_multiplier) for c in (64, 128, 256, 512)]
        strides = (2, 2, 2, 1)
        layers = []
        previous = in_channels
        for index, (width, stride) in enumerate(zip(widths, strides)):
            block = [nn.Conv2d(previous, width, 4, stride=stride, padding=1, bias=index == 0)]
            if index > 0:
                block.append(nn.BatchNorm2d(width))
            block.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Sequential(*block))
            previous = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(previous, 1, 4, stride=1, padding=1)

    def forward(
        self, blurry: torch.Tensor, candidate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logits, penultimate features) for the pair (blurry, sharp-or-restored)."""
        features = self.features(torch.cat([blurry, candidate], dim=1))
        return self.classifier(features), features
