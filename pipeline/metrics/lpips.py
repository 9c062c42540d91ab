"""LPIPS where it can be had offline, else unavailable with the reason.

The `lpips` package ships only its linear heads; the AlexNet/VGG backbones come from torchvision's
download cache. `pipeline.models.cfmd.losses.resolve_perceptual` (the training loss's resolver) decides: the
package must import and the backbone file must be on disk (or at $LPIPS_BACKBONE_WEIGHTS); a
random backbone is never used. When unavailable, LPIPS values are null and the reason is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.models.cfmd.losses import PerceptualUnavailableError, resolve_perceptual  # noqa: F401 (re-exported)

MODES = ("auto", "required", "none")


@dataclass
class LPIPSChoice:
    model: torch.nn.Module | None  # lpips.LPIPS, eval mode
    net: str
    reason: str

    def metadata(self) -> dict:
        return {"available": self.model is not None, "net": self.net, "reason": self.reason}


def resolve_lpips(mode: str = "auto", net: str = "alex", device: str | torch.device = "cpu") -> LPIPSChoice:
    """mode auto: LPIPS if possible, else unavailable with the reason; required: LPIPS or an
    error; none: unavailable (disabled)."""
    if mode not in MODES:
        raise ValueError(f"evaluate lpips must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return LPIPSChoice(None, net, "LPIPS disabled by configuration")
    # required: PerceptualUnavailableError (with the reason) when it cannot be built
    choice = resolve_perceptual("lpips" if mode == "required" else "auto", net)
    if choice.loss is None:
        return LPIPSChoice(None, net, choice.reason.replace("training without L_per: ", ""))
    return LPIPSChoice(choice.loss.lpips.to(device).eval(), net, choice.reason)


@torch.no_grad()
def lpips_distance(model: torch.nn.Module, pred, target, device: str | torch.device = "cpu") -> np.ndarray:
    """Per-image LPIPS of uint8 RGB NxHxWx3 batches."""
    def prep(x):
        x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        x = x[None] if x.ndim == 3 else x
        return x.to(device).permute(0, 3, 1, 2).float() / 255.0

    return model(prep(pred), prep(target), normalize=True).reshape(-1).double().cpu().numpy()
