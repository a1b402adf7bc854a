"""Handcrafted CBIR features: intensity-scale invariance, shape behaviour, index-fitted scaling."""

from __future__ import annotations

import numpy as np
import pytest
from SimilarCaseRetrievalLib.evaluation.features import (
    FeatureScaler,
    handcrafted_features,
    roi_feature_blocks,
    shape_features,
)


def _ellipsoid(shape=(12, 16, 16), radii=(4.0, 5.0, 5.0)) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    c = [(s - 1) / 2 for s in shape]
    return (
        ((zz - c[0]) / radii[0]) ** 2 + ((yy - c[1]) / radii[1]) ** 2 + ((xx - c[2]) / radii[2]) ** 2
    ) <= 1


def _roi(seed=0, scale=1.0, offset=0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = _ellipsoid()
    img = rng.gamma(2.0, 1.0, size=mask.shape).astype(np.float32) + 3 * mask
    return np.stack([img * scale + offset, mask.astype(np.float32)])


def test_features_do_not_change_with_intensity_scale():
    a = roi_feature_blocks(_roi(scale=1.0))
    b = roi_feature_blocks(_roi(scale=250.0))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-4, err_msg=name)


def test_intensity_features_do_change_with_the_content():
    a = roi_feature_blocks(_roi(seed=0))["intensity"]
    rng = np.random.default_rng(5)
    other = _roi(seed=0)
    other[0] = rng.uniform(size=other[0].shape)  # uniform noise, no lesion contrast
    assert np.abs(a - roi_feature_blocks(other)["intensity"]).max() > 0.05


def test_shape_features_sphere_rounder_than_rod_and_2d_works():
    sphere = shape_features(_ellipsoid((20, 20, 20), (7, 7, 7)))
    rod = shape_features(_ellipsoid((20, 20, 20), (9, 2, 2)))
    # [fraction, extent, elongation 2/1, elongation 3/1, sphericity, solidity]
    assert sphere[4] > rod[4]
    assert sphere[2] > 0.9 and rod[2] < 0.4
    disk = shape_features(_ellipsoid((1, 21, 21), (1, 8, 8)))
    assert 0.8 < disk[4] <= 1.0
    assert np.all(shape_features(np.zeros((4, 4, 4), bool)) == 0)


def test_scaler_is_fitted_on_index_and_rows_are_unit_length():
    rois = np.stack([_roi(seed=s) for s in range(6)])
    feats, layout = handcrafted_features(rois, progress=False)
    assert feats.shape[1] == sum(n for _, n in layout)
    scaler = FeatureScaler(layout).fit(feats[:4])
    out = scaler.transform(feats)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # z-scoring uses the index rows only: their mean is zero before the block weighting.
    np.testing.assert_allclose(((feats[:4] - scaler.mean) / scaler.std).mean(axis=0), 0.0, atol=1e-4)


def test_bad_roi_shape_raises():
    with pytest.raises(ValueError):
        roi_feature_blocks(np.zeros((16, 16), np.float32))
