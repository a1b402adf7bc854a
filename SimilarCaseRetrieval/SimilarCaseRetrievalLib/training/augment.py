"""Augmentations in tensor space (ROIs cached once): crop/scale/rotation, flips, intensity, bias field, noise,
mask jitter. Every random draw comes from an explicit ``torch.Generator`` (deterministic with a seed)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def spatial(rois: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random in-plane rotation (±15°), scale (0.85-1.15), shift (±8 %) and X/Y flips; mask included."""
    n = rois.shape[0]
    angle = _uniform(g, n, -15, 15) * strength * math.pi / 180
    scale = 1.0 + _uniform(g, n, -0.15, 0.15) * strength
    shift = _uniform(g, 3 * n, -0.08, 0.08).view(n, 3) * strength
    flip_x = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 3, 4)
    # grid_sample coordinates are (x, y, z) = (X, Y, Z) axes of the (Z, Y, X) volume
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip_x, -sin * flip_x
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip_y, cos * flip_y
    theta[:, 2, 2] = 1.0 / scale if rois.shape[2] > 1 else 1.0
    theta[:, :, 3] = shift
    if rois.shape[2] == 1:
        theta[:, 2, 3] = 0.0
    grid = F.affine_grid(theta, list(rois.shape), align_corners=False)
    return F.grid_sample(rois, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def intensity(rois: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Per sequence channel: affine change, smooth multiplicative bias field, Gaussian noise (mask untouched)."""
    n, c, z, y, x = rois.shape
    img = rois[:, :-1]
    scale = 1.0 + _uniform(g, n * (c - 1), -0.2, 0.2).view(n, c - 1, 1, 1, 1) * strength
    offset = _uniform(g, n * (c - 1), -0.1, 0.1).view(n, c - 1, 1, 1, 1) * strength
    # bias field: exp of a random linear + quadratic polynomial of the coordinates, up to ±25 %
    zz, yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, z), torch.linspace(-1, 1, y), torch.linspace(-1, 1, x), indexing="ij"
    )
    basis = torch.stack([xx, yy, zz, xx * yy, xx * xx - 0.33, yy * yy - 0.33])  # (6, z, y, x)
    coef = (torch.rand(n, c - 1, 6, generator=g) - 0.5) * 0.3 * strength
    field = torch.exp(torch.einsum("ncb,bzyx->nczyx", coef, basis))
    noise = torch.randn(img.shape, generator=g) * 0.03 * strength
    img = (img * field) * scale + offset + noise
    return torch.cat([img, rois[:, -1:]], dim=1)


def mask_jitter(rois: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Dilate or erode the mask channel by one voxel in-plane (segmentations differ between readers)."""
    n = rois.shape[0]
    draw = torch.rand(n, generator=g)
    mask = rois[:, -1:]
    kernel = (1, 3, 3)
    dil = F.max_pool3d(mask, kernel, stride=1, padding=(0, 1, 1))
    ero = -F.max_pool3d(-mask, kernel, stride=1, padding=(0, 1, 1))
    pick = draw.view(n, 1, 1, 1, 1)
    new = torch.where(pick < p / 2, dil, torch.where(pick < p, ero, mask))
    return torch.cat([rois[:, :-1], new], dim=1)


def augment(rois: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """One random view of each ROI in the batch."""
    out = spatial(rois, g, strength)
    out = intensity(out, g, strength)
    return mask_jitter(out, g)
