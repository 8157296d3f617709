"""Batched data augmentation that runs on the training device (no per-sample Python loop)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  scale: tuple[float, float] = (0.9, 1.1), shift_px: float = 2.0,
                  shear_deg: float = 5.0) -> torch.Tensor:
    """Small random rotation, scale, shear and shift of [N, 1, 28, 28] images in [0, 1].

    Digits keep their identity under these (a 6 never becomes a 9), and zero padding matches
    MNIST's black background because normalization happens afterwards.
    """
    n, device = x.shape[0], x.device
    u = torch.rand(n, 4, generator=generator, device=device) * 2 - 1      # uniform in [-1, 1]
    shift = (torch.rand(n, 2, generator=generator, device=device) * 2 - 1) * (2 * shift_px / x.shape[-1])
    angle = u[:, 0] * math.radians(degrees)
    shear = u[:, 1] * math.radians(shear_deg)
    zoom = scale[0] + (u[:, 2] + 1) / 2 * (scale[1] - scale[0])
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin + torch.tan(shear) * cos, shift[:, 0]], dim=1),
        torch.stack([sin, cos, shift[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
