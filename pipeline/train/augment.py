"""Batch augmentation on the device: random scale in [low, high], then a random crop (CFMD
paper: scale 1.0-1.5, crop 256), an optional horizontal flip, and an optional colour change.

Blurry and sharp images are stacked into one 6-channel tensor and resampled together, so
they get the same scale and crop: they stay pixel-aligned. One kornia `crop_and_resize`
does scale and crop at once: the crop of the scaled image is a box of side crop/scale in
the original image, resampled bilinearly. A flipped sample takes `u_flip` (the u of its
frame after FMR re-sorts the mirrored key points, see `data.flipped_position`).

The colour change (`colour: [low, high]`, issue 22) permutes each sample's RGB channels at random
and scales each by a gain drawn from [low, high] (at most 1: no clipping). A per-pixel linear map
commutes with averaging, so the blurry image stays the mean of its (changed) sharp frames, to
within the uint8 rounding they were stored with: a true blur pair of a face with other skin,
light and colour balance: a lever against the sample footage's few people. Off by default; what it
did in the CPU configuration is in docs/training.md, "Colour changes and VLA windows".

Random draws come from the generator the caller passes (the loop seeds one per step),
made on the CPU so a run draws the same numbers on any device.
"""
from __future__ import annotations

import torch
from kornia.geometry.transform import crop_and_resize

from pipeline.train.data import Batch


class RandomScaleCrop:
    def __init__(self, crop_size: int, scale: tuple[float, float] = (1.0, 1.5), flip: bool = False,
                 colour: tuple[float, float] | None = None):
        self.crop_size, self.scale, self.flip = int(crop_size), tuple(scale), bool(flip)
        self.colour = tuple(colour) if colour is not None else None

    def boxes(self, batch_size: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """B x 4 x 2 crop corners (tl, tr, br, bl; x, y) in input pixels, for kornia."""
        crop = self.crop_size
        if crop > min(height, width):
            raise ValueError(f"crop_size {crop} is larger than the {height}x{width} training images")
        low, high = self.scale
        s = low + (high - low) * torch.rand(batch_size, generator=generator, dtype=torch.float64)
        # Crop origin in the scaled image, then its first and last pixel centres mapped back.
        ox = torch.rand(batch_size, generator=generator, dtype=torch.float64) * (width * s - crop)
        oy = torch.rand(batch_size, generator=generator, dtype=torch.float64) * (height * s - crop)
        x0, x1 = (ox + 0.5) / s - 0.5, (ox + crop - 0.5) / s - 0.5
        y0, y1 = (oy + 0.5) / s - 0.5, (oy + crop - 0.5) / s - 0.5
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        return torch.stack([torch.stack(c, dim=-1) for c in corners], dim=1).float()

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        b, _, h, w = batch.blurry.shape
        boxes = self.boxes(b, h, w, generator).to(batch.blurry.device)
        both = torch.cat([batch.blurry, batch.sharp], dim=1)
        both = crop_and_resize(both, boxes, (self.crop_size, self.crop_size), mode="bilinear", align_corners=True)
        u, u_flip = batch.u, batch.u_flip
        if self.flip:
            flipped = (torch.rand(b, generator=generator) < 0.5).to(both.device)
            both = torch.where(flipped.view(-1, 1, 1, 1), both.flip(-1), both)
            u, u_flip = torch.where(flipped, u_flip, u), torch.where(flipped, u, u_flip)
        if self.colour is not None:  # drawn after the crop and flip: runs without it draw as before
            both = self.recolour(both, generator)
        blurry, sharp = both.split(3, dim=1)
        return Batch(blurry.contiguous(), sharp.contiguous(), u, u_flip)

    def recolour(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random channel permutation and RGB gains per sample, the same for all its images
        (B x 3k x H x W: the blurry image and its sharp frames, stacked on channels)."""
        b, c = images.shape[:2]
        low, high = self.colour
        order = torch.stack([torch.randperm(3, generator=generator) for _ in range(b)])
        gains = low + (high - low) * torch.rand(b, 3, generator=generator)
        order = (order.repeat(1, c // 3) + torch.arange(0, c, 3).repeat_interleave(3)).to(images.device)
        gains = gains.repeat(1, c // 3).to(images.device, images.dtype)
        picked = torch.gather(images, 1, order.view(b, c, 1, 1).expand_as(images))
        return picked * gains.view(b, c, 1, 1)
