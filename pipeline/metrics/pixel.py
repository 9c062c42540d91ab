"""PSNR and SSIM of uint8 RGB images, per image.

PSNR = 10 log10(255^2 / MSE), MSE over all pixels and the three channels, in float64; identical
images give +inf. SSIM is kornia's (Wang et al. 2004: Gaussian window 11x11, sigma 1.5,
K1 = 0.01, K2 = 0.03; no extra epsilon, so identical images score exactly 1) on RGB in [0, 1], averaged over the channels and the 'valid' window
positions (no padded borders, as in the reference MATLAB code), in float32 (about 10x faster than
float64 on CPU; within 1e-4 of a float64 computation, flat regions being the worst case).
"""
from __future__ import annotations

import numpy as np
import torch

SSIM_WINDOW = 11


def as_batch(images) -> torch.Tensor:
    """uint8 HxWx3 / NxHxWx3 (numpy or torch) -> float64 Nx3xHxW tensor in [0, 255]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8:
        raise TypeError(f"metrics take uint8 images, got {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected HxWx3 or NxHxWx3 RGB images, got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).double()


def _pair(pred, target, device) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = as_batch(pred).to(device), as_batch(target).to(device)
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    return p, t


def psnr(pred, target, device: str | torch.device = "cpu") -> np.ndarray:
    """Per-image PSNR in dB (inf where the images are identical)."""
    p, t = _pair(pred, target, device)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0 ** 2 / mse.cpu().numpy())


def ssim(pred, target, device: str | torch.device = "cpu") -> np.ndarray:
    """Per-image SSIM (1 where the images are identical)."""
    import kornia

    p, t = _pair(pred, target, device)
    p, t = (p / 255.0).float().contiguous(), (t / 255.0).float().contiguous()  # float32: oneDNN fast path
    smap = kornia.metrics.ssim(p, t, SSIM_WINDOW, max_val=1.0, eps=0.0, padding="valid")
    return smap.mean(dim=(1, 2, 3)).cpu().numpy()
