"""LPIPS where it can be had offline, else unavailable with the reason: the one place LPIPS is built.

The `lpips` package ships only its linear heads; the AlexNet/VGG backbones come from torchvision's
download cache. `resolve_lpips` builds it only when the package imports and the backbone file is on
disk (the torch hub cache, or $LPIPS_BACKBONE_WEIGHTS); a random backbone is never used. The same
three modes serve evaluation (`evaluate.lpips`) and training (`train_cfmd.perceptual`, through
`pipeline.models.cfmd.losses.resolve_perceptual`):

- auto: LPIPS if possible, else unavailable with the reason (values null, the reason recorded);
- required: LPIPS or LPIPSUnavailableError with the reason;
- none: disabled.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MODES = ("auto", "required", "none")

LPIPS_WEIGHTS_ENV = "LPIPS_BACKBONE_WEIGHTS"
"""Environment variable: path to the torchvision ImageNet weights of the LPIPS backbone
(e.g. alexnet-owt-7be5be79.pth), used instead of the torch hub cache."""

LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


class LPIPSUnavailableError(RuntimeError):
    """LPIPS was required but cannot be used here; the message says why."""


@dataclass
class LPIPSChoice:
    model: torch.nn.Module | None  # lpips.LPIPS, eval mode, on the CPU
    net: str
    reason: str
    weights_path: str | None = None

    def metadata(self) -> dict:
        return {"available": self.model is not None, "net": self.net, "reason": self.reason}


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where the backbone weights must be: $LPIPS_BACKBONE_WEIGHTS, else the torch hub cache."""
    override = os.environ.get(LPIPS_WEIGHTS_ENV)
    if override:
        return Path(override)
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]


def _build(net: str) -> tuple[torch.nn.Module | None, str, str | None]:
    """(lpips.LPIPS or None, reason, weights path). Never downloads: the backbone is built random
    (pnet_rand) and then loaded from a file that must exist."""
    try:
        lpips = importlib.import_module("lpips")
    except Exception as error:  # noqa: BLE001 - lpips also fails when torchvision is broken
        return None, f"lpips package not importable ({type(error).__name__}: {error})", None
    path = lpips_backbone_path(net)
    if not path.is_file():
        return None, (f"LPIPS {net} backbone weights not found at {path} (downloads are disabled; "
                      f"put the file there or set {LPIPS_WEIGHTS_ENV})"), None
    try:
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        backbone = torch.load(path, map_location="cpu", weights_only=True)
        # lpips keeps torchvision's `features[i]` modules under names "slice<n>.<i>".
        state = {}
        for key in model.net.state_dict():
            _slice, index, param = key.split(".", 2)
            state[key] = backbone[f"features.{index}.{param}"]
        model.net.load_state_dict(state)
    except Exception as error:  # noqa: BLE001 - any failure means LPIPS is not usable
        return None, f"LPIPS could not be built from {path} ({type(error).__name__}: {error})", str(path)
    return model.eval(), f"lpips package and {net} backbone weights found at {path}", str(path)


def resolve_lpips(mode: str = "auto", net: str = "alex", device: str | torch.device = "cpu") -> LPIPSChoice:
    """LPIPS by `mode` (see the module doc), on `device`."""
    if mode not in MODES:
        raise ValueError(f"LPIPS mode must be one of {list(MODES)}, got {mode!r}")
    if net not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONE_FILES)}, got {net!r}")
    if mode == "none":
        return LPIPSChoice(None, net, "LPIPS disabled by configuration")
    model, reason, path = _build(net)
    if model is None and mode == "required":
        raise LPIPSUnavailableError(f"LPIPS required but unavailable: {reason}")
    return LPIPSChoice(model.to(device) if model is not None else None, net, reason, path)


@torch.no_grad()
def lpips_distance(model: torch.nn.Module, pred, target, device: str | torch.device = "cpu") -> np.ndarray:
    """Per-image LPIPS of uint8 RGB NxHxWx3 batches."""
    def prep(x):
        x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        x = x[None] if x.ndim == 3 else x
        return x.to(device).permute(0, 3, 1, 2).float() / 255.0

    return model(prep(pred), prep(target), normalize=True).reshape(-1).double().cpu().numpy()
