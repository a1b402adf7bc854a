"""Handcrafted (classic CBIR) features of a ROI: intensity histogram, texture (GLCM, LBP), shape.

Input ROIs are (C, Z, Y, X) float32 with the mask as last channel (`roi.extract_roi`). Intensities are
rescaled by percentiles of the whole ROI patch, so the features do not change when a sequence's
intensities are multiplied by a constant (MRI intensities have no absolute scale). Features are
z-scored on the index set and each block (histogram, texture, shape) is weighted so that it counts
equally in the cosine similarity, whatever its length.
"""

from __future__ import annotations

import numpy as np

HIST_BINS = 16
GLCM_LEVELS = 16
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
LBP_POINTS = 8


def _normalise(channel: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(channel, [1.0, 99.0])
    if hi - lo < 1e-6 * max(abs(hi), abs(lo), 1e-12):
        return np.zeros_like(channel, dtype=np.float32)
    return np.clip((channel - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _mask_slices(mask: np.ndarray, n: int = 3) -> list[int]:
    area = mask.reshape(mask.shape[0], -1).sum(axis=1)
    nz = np.flatnonzero(area)
    if len(nz) == 0:
        return [mask.shape[0] // 2]
    picks = np.linspace(nz[0], nz[-1], num=min(n, len(nz))).round().astype(int)
    return sorted(set(picks.tolist()))


def intensity_features(channel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Histogram (HIST_BINS) + mean, std, skewness, kurtosis of the rescaled intensities in the mask."""
    x = _normalise(channel)
    vals = x[mask] if mask.any() else x.ravel()
    hist, _ = np.histogram(vals, bins=HIST_BINS, range=(0.0, 1.0))
    hist = hist / max(hist.sum(), 1)
    mean, std = float(vals.mean()), float(vals.std())
    z = (vals - mean) / std if std > 1e-8 else np.zeros_like(vals)
    return np.concatenate([hist, [mean, std, float((z**3).mean()), float((z**4).mean())]]).astype(np.float32)


def texture_features(channel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """GLCM properties (distances 1, 2; 4 angles, averaged) and uniform-LBP histogram, in the mask slices."""
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    x = _normalise(channel)
    q = np.minimum((x * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)
    glcm_rows, lbp_hist = [], np.zeros(LBP_POINTS + 2, dtype=np.float64)
    for z in _mask_slices(mask):
        sl, m = q[z], mask[z]
        if min(sl.shape) < 3:
            continue
        # Voxels outside the mask get an extra grey level that is dropped from the matrix.
        coded = np.where(m, sl, GLCM_LEVELS).astype(np.uint8) if m.any() else sl
        P = graycomatrix(coded, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=GLCM_LEVELS + 1)
        P = P[:GLCM_LEVELS, :GLCM_LEVELS].astype(np.float64)
        if P.sum() == 0:
            continue
        glcm_rows.append([graycoprops(P, p).mean() for p in GLCM_PROPS])
        lbp = local_binary_pattern((x[z] * 255).astype(np.uint8), LBP_POINTS, 1, method="uniform")
        vals = lbp[m] if m.any() else lbp.ravel()
        lbp_hist += np.bincount(vals.astype(int), minlength=LBP_POINTS + 2)[: LBP_POINTS + 2]
    glcm = np.nanmean(np.array(glcm_rows), axis=0) if glcm_rows else np.zeros(len(GLCM_PROPS))
    lbp_hist = lbp_hist / max(lbp_hist.sum(), 1)
    return np.nan_to_num(np.concatenate([glcm, lbp_hist])).astype(np.float32)


def shape_features(mask: np.ndarray) -> np.ndarray:
    """Volume fraction, extent, two elongation ratios, sphericity (or circularity in 2D), solidity."""
    from skimage import measure

    m = mask.astype(bool)
    n = int(m.sum())
    if n == 0:
        return np.zeros(6, dtype=np.float32)
    coords = np.argwhere(m).astype(np.float64)
    span = coords.max(axis=0) - coords.min(axis=0) + 1
    extent = n / float(np.prod(span))
    eig = np.sort(np.linalg.eigvalsh(np.cov(coords.T) + 1e-6 * np.eye(coords.shape[1])))[::-1]
    eig = np.sqrt(np.maximum(eig, 1e-12))
    elong = [eig[1] / eig[0], eig[-1] / eig[0]]
    flat = m.shape[0] == 1 or span[0] == 1
    if flat:
        region = m[int(coords[0, 0])] if m.shape[0] > 1 else m[0]
        props = measure.regionprops(region.astype(np.uint8))[0]
        perim = max(props.perimeter, 1.0)
        roundness = min(4 * np.pi * props.area / perim**2, 1.0)
        solidity = props.solidity
    else:
        padded = np.pad(m, 1).astype(np.float32)
        verts, faces, _, _ = measure.marching_cubes(padded, 0.5)
        area = max(measure.mesh_surface_area(verts, faces), 1e-6)
        roundness = min(np.pi ** (1 / 3) * (6 * n) ** (2 / 3) / area, 1.0)
        try:
            solidity = measure.regionprops(m.astype(np.uint8))[0].solidity
        except Exception:  # degenerate (flat) hull
            solidity = 1.0
    return np.array([n / m.size, extent, *elong, roundness, solidity], dtype=np.float32)


def roi_feature_blocks(roi: np.ndarray) -> dict[str, np.ndarray]:
    """The feature blocks of one (C, Z, Y, X) ROI (last channel = mask)."""
    roi = np.asarray(roi, dtype=np.float32)
    if roi.ndim != 4 or roi.shape[0] < 1:
        raise ValueError(f"ROI must be (C, Z, Y, X) with the mask last, got shape {roi.shape}")
    mask = roi[-1] > 0.5
    images = roi[:-1]
    blocks = {
        "intensity": np.concatenate([intensity_features(c, mask) for c in images])
        if len(images)
        else np.zeros(0),
        "texture": np.concatenate([texture_features(c, mask) for c in images])
        if len(images)
        else np.zeros(0),
        "shape": shape_features(mask),
    }
    return {k: v.astype(np.float32) for k, v in blocks.items()}


def handcrafted_features(rois: np.ndarray, progress: bool = True) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """(N, F) raw features and the block layout [(name, length), ...]."""
    from tqdm import tqdm

    rows, layout = [], None
    for roi in tqdm(rois, desc="handcrafted features", disable=not progress or len(rois) < 50, leave=False):
        blocks = roi_feature_blocks(roi)
        layout = layout or [(k, len(v)) for k, v in blocks.items()]
        rows.append(np.concatenate(list(blocks.values())))
    return np.nan_to_num(np.stack(rows)).astype(np.float32), layout or []


class FeatureScaler:
    """z-score fitted on the index set, each block scaled to equal weight, rows L2-normalised."""

    def __init__(self, layout: list[tuple[str, int]]):
        self.layout = layout
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, features: np.ndarray) -> FeatureScaler:
        self.mean = features.mean(axis=0)
        std = features.std(axis=0)
        self.std = np.where(std > 1e-8, std, np.inf)  # constant features contribute 0
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        assert self.mean is not None and self.std is not None, "fit first"
        z = (features - self.mean) / self.std
        start = 0
        for _, length in self.layout:
            if length:
                z[:, start : start + length] /= np.sqrt(length)
            start += length
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        return (z / np.maximum(norm, 1e-12)).astype(np.float32)
