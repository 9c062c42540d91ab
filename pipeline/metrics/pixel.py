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


def mean_gradient(images) -> float:
    """Mean Sobel gradient magnitude of the grey images (uint8 NxHxWx3 or HxWx3, 0-255 scale): how
    much edge a set of images holds. Divided by the targets' (`sharpness_ratio`), 1.0 is as sharp
    as the targets; a blurry input or a smooth restoration is below 1, ringing or invented
    texture above."""
    import cv2

    images = np.asarray(images)
    images = images[None] if images.ndim == 3 else images
    total = 0.0
    for image in images:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
        total += float(np.sqrt(gx * gx + gy * gy).mean())
    return total / max(len(images), 1)


def sharpness_ratio(images, targets) -> float:
    """mean_gradient(images) / mean_gradient(targets): 1.0 = as sharp as the targets."""
    reference = mean_gradient(targets)
    return mean_gradient(images) / reference if reference > 0 else float("nan")
