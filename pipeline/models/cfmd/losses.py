"""Training losses for CFMD-GAN (Lee, Han & Heo 2022, section 4.3).

    L_D = L_enc + L_dec + 0.05 L_Q
    L_G = 0.05 L_ar + 0.1 L_adv + 1 L_pix + 0.01 L_per

Adversarial terms take the discriminator's raw logits and use BCE-with-logits
(the authors' code applied a sigmoid before BCEWithLogitsLoss, i.e. twice).
They are the standard non-saturating GAN losses that the paper's eqs. 11 and 15
abbreviate: D pushes real pairs to 1 and restored pairs to 0, G pushes restored
pairs to 1, for both the global (encoder) and per-pixel (decoder) heads.

The perceptual term is LPIPS, but LPIPS needs ImageNet backbone weights that
cannot be downloaded offline; `resolve_perceptual` decides whether it can be used
and records why, so a run never silently trains with a random backbone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.metrics.lpips import resolve_lpips

CHARBONNIER_EPS = 1e-3


# ---------------------------------------------------------------- pixel loss


def charbonnier(prediction: Tensor, target: Tensor, eps: float = CHARBONNIER_EPS) -> Tensor:
    """Mean of sqrt((x - y)^2 + eps^2) over all elements: a smooth L1."""
    diff = prediction - target
    return torch.sqrt(diff * diff + eps * eps).mean()


def resize_target(target: Tensor, size: Sequence[int]) -> Tensor:
    """Target at an output's scale by area averaging (2x2 box mean per halving,
    the same pyramid the generator adds its residuals to)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target, size=tuple(size), mode="area")


def multiscale_charbonnier(outputs: Sequence[Tensor], target: Tensor, eps: float = CHARBONNIER_EPS) -> Tensor:
    """L_pix (eq. 16): Charbonnier summed over the generator's output scales,
    the full-resolution target downscaled to each."""
    return sum(charbonnier(output, resize_target(target, output.shape[-2:]), eps) for output in outputs)


# ---------------------------------------------------------- adversarial terms


def bce_logits(logits: Tensor, is_real: bool) -> Tensor:
    """Mean binary cross-entropy of raw logits against an all-real or all-fake label."""
    labels = torch.ones_like(logits) if is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


def u_map_target(u: Tensor, like: Tensor) -> Tensor:
    """u [B] broadcast to the regressor's map shape [B, 1, H, W] (u_2D in eq. 12)."""
    return u.to(like.dtype).reshape(-1, 1, 1, 1).expand_as(like)


def u_regression(u_map: Tensor, u: Tensor) -> Tensor:
    """Mean squared error of the per-pixel u estimate against the true u."""
    return F.mse_loss(u_map, u_map_target(u, u_map))


# ------------------------------------------------------------------ weights


@dataclass(frozen=True)
class CFMDLossWeights:
    """Loss weights; defaults are the paper's (section 4.3). The authors' code
    used L1 instead of Charbonnier and 0.01 for the adversarial weight."""

    enc: float = 1.0  # D: global real/fake
    dec: float = 1.0  # D: per-pixel real/fake
    q: float = 0.05  # D: u regression on real and restored pairs
    ar: float = 0.05  # G: u regression on restored pairs
    adv: float = 0.1  # G: fool both heads
    pix: float = 1.0  # G: multi-scale Charbonnier
    per: float = 0.01  # G: LPIPS (ignored when perceptual loss is unavailable)
    charbonnier_eps: float = CHARBONNIER_EPS


def discriminator_loss(
    real: tuple[Tensor, Tensor, Tensor],
    fake: tuple[Tensor, Tensor, Tensor],
    u: Tensor,
    weights: CFMDLossWeights = CFMDLossWeights(),
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_D (eq. 13) from the discriminator outputs on (blurry, sharp) and on
    (blurry, restored.detach()), each (global_logit, pixel_logits, u_map).

    Returns the total and detached components: d_enc, d_dec, d_q, d_total.
    """
    real_global, real_pixels, real_u = real
    fake_global, fake_pixels, fake_u = fake
    enc = bce_logits(real_global, True) + bce_logits(fake_global, False)
    dec = bce_logits(real_pixels, True) + bce_logits(fake_pixels, False)
    q = u_regression(real_u, u) + u_regression(fake_u, u)
    total = weights.enc * enc + weights.dec * dec + weights.q * q
    components = {"d_enc": enc, "d_dec": dec, "d_q": q, "d_total": total}
    return total, {name: value.detach() for name, value in components.items()}


def generator_loss(
    outputs: Sequence[Tensor],
    sharp: Tensor,
    u: Tensor,
    fake: tuple[Tensor, Tensor, Tensor] | None,
    weights: CFMDLossWeights = CFMDLossWeights(),
    perceptual: nn.Module | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_G (eq. 18).

    outputs: the generator's images, small to full scale; sharp: the target at
    full scale; fake: the discriminator's outputs on (blurry, outputs[-1]), or
    None to train the generator alone (pixel and perceptual terms only, e.g. a
    warm-up); perceptual: a module (restored, sharp) -> scalar, or None.

    Returns the total and detached components g_pix, g_adv, g_ar, g_per,
    g_total; terms that are switched off are reported as 0.
    """
    zero = outputs[-1].new_zeros(())
    pix = multiscale_charbonnier(outputs, sharp, weights.charbonnier_eps)
    if fake is not None:
        fake_global, fake_pixels, fake_u = fake
        adv = bce_logits(fake_global, True) + bce_logits(fake_pixels, True)
        ar = u_regression(fake_u, u)
    else:
        adv = ar = zero
    per = perceptual(outputs[-1], sharp) if perceptual is not None else zero
    total = weights.pix * pix + weights.adv * adv + weights.ar * ar + weights.per * per
    components = {"g_pix": pix, "g_adv": adv, "g_ar": ar, "g_per": per, "g_total": total}
    return total, {name: value.detach() for name, value in components.items()}


# --------------------------------------------------------- perceptual (LPIPS)


@dataclass(frozen=True)
class PerceptualChoice:
    """What `resolve_perceptual` decided: the loss module (None when disabled),
    the mode asked for, what is used ("lpips-alex", "none", ...), why, and the
    backbone weights file when LPIPS is used."""

    loss: nn.Module | None
    requested: str
    used: str
    reason: str
    weights_path: str | None = None

    def metadata(self) -> dict[str, str | None]:
        """JSON-friendly record for run metadata and logs."""
        record = asdict(self)
        record.pop("loss")
        return record


class LPIPSLoss(nn.Module):
    """Frozen LPIPS distance for images in [0, 1], averaged over the batch."""

    def __init__(self, lpips_model: nn.Module) -> None:
        super().__init__()
        self.lpips = lpips_model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "LPIPSLoss":
        # The metric network stays in eval mode whatever the surrounding model does.
        super().train(mode)
        self.lpips.eval()
        return self

    def forward(self, restored: Tensor, sharp: Tensor) -> Tensor:
        return self.lpips(restored, sharp, normalize=True).mean()


def resolve_perceptual(mode: str = "auto", net: str = "alex") -> PerceptualChoice:
    """Decide the perceptual loss (modes as `pipeline.metrics.lpips.MODES`): "auto": LPIPS when it
    can be built offline, else no perceptual loss with the reason; "required": LPIPS or
    LPIPSUnavailableError; "none": no perceptual loss."""
    lpips = resolve_lpips(mode, net)
    if lpips.model is None:
        reason = lpips.reason if mode == "none" else f"LPIPS unavailable, training without L_per: {lpips.reason}"
        return PerceptualChoice(None, mode, "none", reason, lpips.weights_path)
    return PerceptualChoice(LPIPSLoss(lpips.model), mode, f"lpips-{net}", lpips.reason, lpips.weights_path)
