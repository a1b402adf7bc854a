"""Corrupt images and wrong geometry are refused with one line, never read silently wrong: a cut-short `.nii`,
a `.nii.gz` with one flipped byte, NaN/inf voxels in every format, all-NaN images; masks off their image's grid
(other spacing, an offset, a transposed direction); a 2D image for a 3D model."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import box_mask, phantom
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.roi import RoiConfig, extract_roi
from SimilarCaseRetrievalLib.study import read_mask, read_study, read_volume


def _one_line(err: pytest.ExceptionInfo, name: str) -> str:
    text = str(err.value)
    assert "\n" not in text and name in text and "Fix:" in text
    return text


def _image(shape_zyx=(6, 24, 20), seed=0) -> sitk.Image:
    array = np.random.default_rng(seed).random(shape_zyx).astype(np.float32) * 100 + 10
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.5, 2.5, 6.0))
    return image


def test_uncompressed_nii_cut_in_half(tmp_path):
    path = tmp_path / "half.nii"
    sitk.WriteImage(_image(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    assert "voxel data truncated" in _one_line(err, "half.nii")


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
def test_nii_gz_with_one_flipped_byte(tmp_path, where):
    path = tmp_path / "flip.nii.gz"
    sitk.WriteImage(_image(), str(path))
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    assert "corrupt gzip data" in _one_line(err, "flip.nii.gz")


def test_nii_gz_with_a_wrong_crc_and_a_multi_member_file(tmp_path):
    path = tmp_path / "crc.nii.gz"
    sitk.WriteImage(_image(), str(path))
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(CaseInputError, match="CRC"):
        read_volume(path)
    good = tmp_path / "two.nii.gz"
    sitk.WriteImage(_image(), str(tmp_path / "plain.nii"))
    whole = (tmp_path / "plain.nii").read_bytes()
    good.write_bytes(gzip.compress(whole[:1000]) + gzip.compress(whole[1000:]))  # two members: valid
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(read_volume(good)), sitk.GetArrayFromImage(read_volume(tmp_path / "plain.nii"))
    )


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_voxel_is_refused_in_every_format(tmp_path, suffix, value):
    array = sitk.GetArrayFromImage(_image())
    array[3, 10, 10] = value
    path = tmp_path / f"bad{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    assert "NaN or infinite voxel" in _one_line(err, path.name)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd"])
def test_an_all_nan_image_is_non_finite_not_constant(tmp_path, suffix):
    path = tmp_path / f"nan{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 8, 8), np.nan, np.float32)), str(path))
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    text = _one_line(err, path.name)
    assert "no finite voxel" in text and "constant" not in text


def test_float64_and_big_files_are_checked_across_pieces(tmp_path):
    array = np.random.default_rng(1).random((40, 128, 128))  # float64, 5 MiB: several 1 MiB pieces
    array[39, 127, 127] = np.nan  # the very last voxel
    path = tmp_path / "big.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(CaseInputError, match="1 NaN or infinite voxel"):
        read_volume(path)


# ---- geometry --------------------------------------------------------------------------------------------


def _lesion_case(tmp_path: Path) -> tuple[sitk.Image, sitk.Image]:
    image = phantom(size_xyz=(24, 24, 8), spacing=(2.5, 2.5, 6.0))
    sitk.WriteImage(image, str(tmp_path / "t2.nii.gz"))
    mask = box_mask(image, (8, 8, 2), (14, 14, 5))
    return image, mask


def _moved(mask: sitk.Image, how: str) -> sitk.Image:
    out = sitk.Image(mask)
    if how == "spacing":  # 1x1x3 instead of 2.5x2.5x6 (the same voxels, another header)
        out.SetSpacing((1.0, 1.0, 3.0))
    elif how == "offset":  # 20 mm shift
        out.SetOrigin(tuple(np.asarray(mask.GetOrigin()) + (20.0, 0.0, 0.0)))
    elif how == "direction":  # x and y swapped
        out.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    return out


@pytest.mark.parametrize("how", ["spacing", "offset", "direction"])
def test_a_mask_off_its_image_grid_is_refused_unless_asked(tmp_path, how, caplog):
    image, mask = _lesion_case(tmp_path)
    path = tmp_path / f"mask_{how}.nii.gz"
    sitk.WriteImage(_moved(mask, how), str(path))
    with pytest.raises(CaseInputError) as err:
        read_mask(path, image)
    text = _one_line(err, path.name)
    assert "not on the image's grid" in text and "--resample-mask" in text
    with caplog.at_level("WARNING"):
        resampled = read_mask(path, image, resample=True)
    assert resampled.GetSize() == image.GetSize() and "resampled onto the image's grid" in caplog.text
    assert sitk.GetArrayViewFromImage(read_mask(f"{path}#resample=1", image)).sum() == (
        sitk.GetArrayViewFromImage(resampled).sum()
    )


def test_a_cropped_mask_on_the_image_grid_is_accepted(tmp_path):
    image, mask = _lesion_case(tmp_path)
    cropped = sitk.RegionOfInterest(mask, (12, 12, 6), (6, 6, 1))  # Slicer-like: smaller extent, same grid
    path = tmp_path / "cropped.nrrd"
    sitk.WriteImage(cropped, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = read_mask(path, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(mask))


def test_a_2d_image_for_a_3d_model_is_refused(tmp_path):
    picture = sitk.GetImageFromArray(np.random.default_rng(0).random((32, 32)).astype(np.float32) * 100)
    sitk.WriteImage(picture, str(tmp_path / "t2_2d.nii.gz"))
    mask = sitk.GetImageFromArray(np.pad(np.ones((8, 8), np.uint8), 12))
    sitk.WriteImage(mask, str(tmp_path / "mask_2d.nii.gz"))
    study = read_study({"T2": tmp_path / "t2_2d.nii.gz"})
    m = read_mask(tmp_path / "mask_2d.nii.gz", study.reference_image)
    with pytest.raises(CaseInputError) as err:
        extract_roi(study, m, ["T2"], RoiConfig(grid=(16, 16, 4)))
    assert "2D image (one slice) for a 3D model" in _one_line(err, "t2_2d.nii.gz")
    assert extract_roi(study, m, ["T2"], RoiConfig(grid=(16, 16, 1))).shape == (2, 1, 16, 16)  # a 2D model


def test_a_2d_sequence_beside_a_3d_reference_is_refused(tmp_path):
    image, _ = _lesion_case(tmp_path)
    sitk.WriteImage(image[:, :, 3], str(tmp_path / "t1_2d.nii.gz"))
    with pytest.raises(CaseInputError) as err:
        read_study({"T2": tmp_path / "t2.nii.gz", "T1": tmp_path / "t1_2d.nii.gz"})
    assert "single slice" in _one_line(err, "t1_2d.nii.gz")
