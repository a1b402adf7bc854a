"""Small array helpers shared by the loaders: ROI crop/resample like `roi.extract_roi`, distance maps."""

from __future__ import annotations

import numpy as np


def normalise_percentiles(
    image: np.ndarray, mask_region: np.ndarray | None = None, p=(0.5, 99.5)
) -> np.ndarray:
    """Rescale to [0, 1] by percentiles of the patch (as `roi.extract_roi` does)."""
    vals = image[mask_region] if mask_region is not None and mask_region.any() else image
    lo, hi = np.percentile(vals, p)
    if hi - lo < 1e-6:
        return np.zeros_like(image, dtype=np.float32)
    return np.clip((image - lo) / (hi - lo), 0, 1).astype(np.float32)


def crop_2d_roi(image: np.ndarray, mask: np.ndarray, grid: int = 64, margin: float = 10.0) -> np.ndarray:
    """(2, 1, grid, grid) float32 ROI of a 2D image around its mask: square box + margin, resampled."""
    from skimage.transform import resize

    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("empty mask")
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + margin
    y0, y1 = int(np.floor(cy - half)), int(np.ceil(cy + half)) + 1
    x0, x1 = int(np.floor(cx - half)), int(np.ceil(cx + half)) + 1
    pad = max(0, -y0, -x0, y1 - image.shape[0], x1 - image.shape[1])
    img = np.pad(image, pad, mode="constant")
    msk = np.pad(mask, pad, mode="constant")
    img = img[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    msk = msk[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    img = resize(img.astype(np.float32), (grid, grid), order=1, anti_aliasing=True, preserve_range=True)
    msk = (
        resize(msk.astype(np.float32), (grid, grid), order=0, anti_aliasing=False, preserve_range=True) > 0.5
    )
    return np.stack([normalise_percentiles(img), msk.astype(np.float32)])[:, None]


def signed_distance(mask: np.ndarray, spacing=1.0, scale: float = 5.0) -> np.ndarray:
    """tanh(signed distance / scale): positive inside the mask, negative outside, in [-1, 1]."""
    from scipy.ndimage import distance_transform_edt

    m = mask.astype(bool)
    if not m.any():
        return -np.ones(m.shape, dtype=np.float32)
    inside = distance_transform_edt(m, sampling=spacing)
    outside = distance_transform_edt(~m, sampling=spacing)
    return np.tanh((inside - outside) / scale).astype(np.float32)
