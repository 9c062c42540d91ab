"""Losses of Chrysos, Favaro & Zafeiriou (2019), sections 3.1 and 3.3, weights from 5.1.

Step 1 (hourglass): L1 to the sharp image, summed over the stacks' intermediate outputs.
Step 2 (cGAN), generator side:
    L = L_adv + l_ci * L1(G_bl, sharp) + l_cg * L1(grad G_bl, grad sharp)
          + l_p * L1(pi(G_bl), pi(sharp)) + l_r * L1(G_s(sharp), sharp)
with l_ci = l_cg = l_r = 100 and l_p = 8, pi being the discriminator's penultimate
features. Every L1 is a mean over elements, as in pix2pix whose weight of 100 the paper's
values follow. The adversarial terms take discriminator LOGITS and use BCE-with-logits
(numerically stable; the networks contain no sigmoid); the generator uses the
non-saturating form (restored labelled real).

Loss functions return (total, components): `components` holds detached scalar tensors
keyed by name, for logging without keeping the graph alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class ChrysosLossWeights:
    """Loss weights of the generator objective (paper section 5.1)."""

    adversarial: float = 1.0
    l1: float = 100.0
    gradient: float = 100.0
    projection: float = 8.0
    reconstruction: float = 100.0


def image_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward finite differences (d/dx, d/dy) of an N x C x H x W batch.

    d/dx is N x C x H x (W-1), d/dy is N x C x (H-1) x W: no padding, so image borders
    create no artificial edges.
    """
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return dx, dy


def gradient_l1(restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """Mean |d/dx difference| plus mean |d/dy difference| (the paper's L1 of gradients)."""
    restored_dx, restored_dy = image_gradients(restored)
    sharp_dx, sharp_dy = image_gradients(sharp)
    return F.l1_loss(restored_dx, sharp_dx) + F.l1_loss(restored_dy, sharp_dy)


def projection_loss(restored_features: torch.Tensor, sharp_features: torch.Tensor) -> torch.Tensor:
    """L1 between discriminator penultimate features of restored and sharp images.

    The sharp features are a fixed target (detached): this term trains the generator only.
    """
    return F.l1_loss(restored_features, sharp_features.detach())


def adversarial_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """BCE-with-logits of a (patch) logit map against an all-real or all-fake label."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def hourglass_loss(outputs: Sequence[torch.Tensor], sharp: torch.Tensor) -> torch.Tensor:
    """Step-1 loss: L1 to the sharp image summed over all stacks (intermediate supervision)."""
    if len(outputs) == 0:
        raise ValueError("hourglass_loss needs at least one output")
    return torch.stack([F.l1_loss(output, sharp) for output in outputs]).sum()


def generator_loss(
    restored: torch.Tensor,
    sharp: torch.Tensor,
    sharp_reconstruction: torch.Tensor,
    restored_logits: torch.Tensor,
    restored_features: torch.Tensor,
    sharp_features: torch.Tensor,
    weights: ChrysosLossWeights = ChrysosLossWeights(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Step-2 generator objective.

    restored: G_bl(blurry, hourglass_out); sharp_reconstruction: G_s(sharp);
    restored_logits / restored_features: discriminator on (blurry, restored);
    sharp_features: discriminator features on (blurry, sharp). With restored_logits None
    (the pixel warm-up) the adversarial and projection terms are 0.
    """
    zero = restored.new_zeros(())
    unweighted = {
        "adversarial": zero if restored_logits is None else adversarial_loss(restored_logits, target_is_real=True),
        "l1": F.l1_loss(restored, sharp),
        "gradient": gradient_l1(restored, sharp),
        "projection": zero if restored_logits is None else projection_loss(restored_features, sharp_features),
        "reconstruction": F.l1_loss(sharp_reconstruction, sharp),
    }
    total = sum(getattr(weights, name) * value for name, value in unweighted.items())
    components = {name: value.detach() for name, value in unweighted.items()}
    components["total"] = total.detach()
    return total, components


def discriminator_loss(
    sharp_logits: torch.Tensor, restored_logits: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Discriminator objective: (blurry, sharp) is real, (blurry, restored) is fake.

    The caller must compute `restored_logits` from a detached restored image so this
    loss does not reach the generator.
    """
    real = adversarial_loss(sharp_logits, target_is_real=True)
    fake = adversarial_loss(restored_logits, target_is_real=False)
    total = real + fake
    return total, {"real": real.detach(), "fake": fake.detach(), "total": total.detach()}
