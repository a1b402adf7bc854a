"""The region of interest: shape, mask channel, determinism, normalisation, aspect, orientation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import box_mask, phantom
from SimilarCaseRetrievalLib.roi import RoiConfig, extract_roi
from SimilarCaseRetrievalLib.study import study_from_images

GRID = (16, 16, 8)


def _study(scale: float = 1.0, offset: float = 0.0):
    t2 = phantom(size_xyz=(40, 36, 10), spacing=(0.8, 0.8, 3.0), seed=1)
    t1 = phantom(size_xyz=(40, 36, 10), spacing=(0.8, 0.8, 3.0), seed=2)
    study = study_from_images({"T2": t2 * scale + offset, "T1": t1})
    mask = box_mask(t2, (14, 12, 3), (25, 23, 6))
    return study, mask


def _extent(channel: np.ndarray, axis: int) -> int:
    other = tuple(a for a in range(channel.ndim) if a != axis)
    return int(np.count_nonzero(channel.max(axis=other) > 0.5))


def test_shape_dtype_and_mask_channel():
    study, mask = _study()
    roi = extract_roi(study, mask, ["T2", "T1"], RoiConfig(grid=GRID))
    assert roi.shape == (3, 8, 16, 16)  # (C, Z, Y, X)
    assert roi.dtype == np.float32
    lesion = roi[-1]
    assert lesion.min() >= 0.0 and lesion.max() <= 1.0
    assert lesion[4, 8, 8] == pytest.approx(1.0)  # centred on the lesion
    assert lesion[:, 0, :].max() < 0.5 and lesion[:, :, 0].max() < 0.5  # the margin around it is background
    assert np.isfinite(roi).all()


def test_channels_follow_the_requested_sequence_order():
    study, mask = _study()
    a = extract_roi(study, mask, ["T2", "T1"], RoiConfig(grid=GRID))
    b = extract_roi(study, mask, ["T1", "T2"], RoiConfig(grid=GRID))
    np.testing.assert_array_equal(a[0], b[1])
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.allclose(a[0], a[1])


def test_deterministic():
    study, mask = _study()
    first = extract_roi(study, mask, ["T2", "T1"], RoiConfig(grid=GRID))
    again = extract_roi(_study()[0], mask, ["T2", "T1"], RoiConfig(grid=GRID))
    np.testing.assert_array_equal(first, again)


def test_normalisation_ignores_intensity_scale_and_offset():
    study, mask = _study()
    scaled, _ = _study(scale=37.5, offset=1200.0)
    base = extract_roi(study, mask, ["T2"], RoiConfig(grid=GRID))
    other = extract_roi(scaled, mask, ["T2"], RoiConfig(grid=GRID))
    np.testing.assert_allclose(base, other, atol=1e-4)
    body = base[0][base[-1] > 0.5]
    assert 0.5 < float(np.median(body)) < 2.0  # bright lesion ~ top of the body range


def test_normalisation_uses_the_whole_volume_not_only_the_roi():
    study, mask = _study()
    # Brighten a region far from the lesion: the ROI's values change because the range is global.
    t2 = sitk.GetArrayFromImage(study.sequences["T2"])
    t2[:, :3, :] = 5000.0
    t2[:, -3:, :] = 5000.0
    t2[:, :, :3] = 5000.0
    brighter = sitk.GetImageFromArray(t2)
    brighter.CopyInformation(study.sequences["T2"])
    other = study_from_images({"T2": brighter})
    cfg = RoiConfig(grid=GRID, margin_mm=0.0)  # the ROI is the lesion's box, far from the bright border
    base = extract_roi(study, mask, ["T2"], cfg)
    changed = extract_roi(other, mask, ["T2"], cfg)
    assert float(changed[0].mean()) < float(base[0].mean()) - 0.05


def test_in_plane_aspect_is_kept():
    image = phantom(size_xyz=(60, 60, 8), spacing=(1.0, 1.0, 3.0))
    study = study_from_images({"T2": image})
    wide = box_mask(image, (10, 25, 3), (49, 34, 4))  # 40 mm x 10 mm
    roi = extract_roi(study, wide, ["T2"], RoiConfig(grid=(32, 32, 4), margin_mm=0.0))
    x_extent, y_extent = _extent(roi[-1], 2), _extent(roi[-1], 1)
    assert x_extent == 32
    assert 7 <= y_extent <= 9  # one physical scale: 10 mm of 40 mm -> a quarter of the grid


def test_z_isotropic_when_it_fits_and_compressed_when_tall():
    image = phantom(size_xyz=(40, 40, 30), spacing=(1.0, 1.0, 2.0))
    study = study_from_images({"T2": image})
    cfg = RoiConfig(grid=(16, 16, 8), margin_mm=0.0)
    flat = box_mask(image, (12, 12, 14), (27, 27, 15))  # 16 x 16 x 4 mm: isotropic 1 mm per voxel
    roi = extract_roi(study, flat, ["T2"], cfg)
    assert _extent(roi[-1], 2) == 16
    assert 3 <= _extent(roi[-1], 0) <= 5
    tall = box_mask(image, (12, 12, 0), (27, 27, 29))  # 60 mm tall: Z scale coarsened to fit all of it
    roi = extract_roi(study, tall, ["T2"], cfg)
    assert _extent(roi[-1], 0) == 8 and _extent(roi[-1], 2) == 16


def test_flipped_axis_storage_gives_the_same_roi():
    image = phantom(size_xyz=(30, 28, 6), spacing=(1.0, 1.0, 3.0), seed=4)
    array = sitk.GetArrayFromImage(image)
    array[:, :, :10] += 40.0  # asymmetric content along x
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 3.0))
    mask = box_mask(image, (8, 8, 2), (20, 18, 3))
    # The same physical content stored with the x axis reversed (direction -1 along x).
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array[:, :, ::-1]))
    flipped.SetSpacing((1.0, 1.0, 3.0))
    flipped.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    flipped.SetOrigin((29.0, 0.0, 0.0))
    flipped_mask = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayFromImage(mask)[:, :, ::-1]))
    flipped_mask.CopyInformation(flipped)
    cfg = RoiConfig(grid=(12, 12, 4))
    a = extract_roi(study_from_images({"T2": image}), mask, ["T2"], cfg)
    b = extract_roi(study_from_images({"T2": flipped}), flipped_mask, ["T2"], cfg)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_outside_the_volume_reads_as_background():
    image = phantom(size_xyz=(30, 30, 6), spacing=(1.0, 1.0, 3.0))
    study = study_from_images({"T2": image})
    corner = box_mask(image, (0, 10, 2), (5, 19, 3))  # lesion touching the x = 0 border
    roi = extract_roi(study, corner, ["T2"], RoiConfig(grid=(16, 16, 4), margin_mm=10.0))
    assert np.all(roi[:, :, :, 0] == 0.0)  # left of the volume: zeros in every channel
    assert roi[0, :, :, -1].std() > 0  # inside the volume: image content


def test_2d_picture_grid_and_mask_on_another_grid():
    rng = np.random.default_rng(3)
    picture = sitk.GetImageFromArray(rng.uniform(0, 255, (50, 70)).astype(np.float32))
    study = study_from_images({"image": picture})
    array = np.zeros((1, 50, 70), np.uint8)
    array[0, 10:30, 20:50] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(study.reference_image)
    roi = extract_roi(study, mask, ["image"], RoiConfig(grid=(24, 24, 1), margin_mm=2.0))
    assert roi.shape == (2, 1, 24, 24)
    assert roi[-1].max() == pytest.approx(1.0)
    # The same lesion given on a half-resolution grid is resampled onto the study grid first.
    coarse = sitk.Resample(
        mask, [35, 25, 1], sitk.Transform(), sitk.sitkNearestNeighbor, (0.5, 0.5, 0.0), (2.0, 2.0, 1.0)
    )
    roi_coarse = extract_roi(study, coarse, ["image"], RoiConfig(grid=(24, 24, 1), margin_mm=2.0))
    assert np.abs(roi_coarse[-1] - roi[-1]).mean() < 0.1


def test_config_round_trip_and_validation():
    cfg = RoiConfig(grid=(96, 96, 1), margin_mm=5.0, percentiles=(1.0, 99.0))
    assert RoiConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.shape == (1, 96, 96)
    assert RoiConfig.from_dict({}) == RoiConfig()
    with pytest.raises(ValueError):
        RoiConfig(grid=(0, 4, 4))
    with pytest.raises(ValueError):
        RoiConfig(percentiles=(99.0, 1.0))
