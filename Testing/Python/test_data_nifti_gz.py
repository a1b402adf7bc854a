"""The plain .nii.gz fast path reads exactly what ITK reads, and hands everything else to ITK."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.nifti_gz import read_nifti_gz
from SimilarCaseRetrievalLib.study import read_volume

OBLIQUE = (0.0, -1.0, 0.0, 0.8, 0.0, -0.6, 0.6, 0.0, 0.8)  # a rotation, as an oblique acquisition has


def _image(dtype: str, direction=OBLIQUE) -> sitk.Image:
    rng = np.random.default_rng(0)
    values = rng.normal(300, 120, size=(5, 9, 11))  # (Z, Y, X)
    if dtype == "uint8":
        values = np.clip(values / 4, 0, 255)
    image = sitk.GetImageFromArray(values.astype(dtype))
    image.SetSpacing((0.7, 0.9, 4.0))
    image.SetOrigin((-12.5, 30.25, 7.0))
    image.SetDirection(direction)
    return image


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32", "float64", "int32", "uint16"])
def test_fast_path_equals_itk_voxels_and_geometry(tmp_path, dtype):
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(_image(dtype), str(path), True)
    fast, itk = read_nifti_gz(path), sitk.ReadImage(str(path))
    assert fast is not None  # the plain case is taken
    assert fast.GetPixelID() == itk.GetPixelID() and fast.GetSize() == itk.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(fast), sitk.GetArrayFromImage(itk))
    assert fast.GetOrigin() == itk.GetOrigin() and fast.GetSpacing() == itk.GetSpacing()
    assert fast.GetDirection() == itk.GetDirection()


def _rewrite(path, edit) -> None:
    data = bytearray(gzip.decompress(path.read_bytes()))
    edit(data)
    path.write_bytes(gzip.compress(bytes(data)))


def test_scaled_4d_and_other_files_go_to_itk(tmp_path):
    scaled = tmp_path / "scaled.nii.gz"
    sitk.WriteImage(_image("int16"), str(scaled), True)
    _rewrite(scaled, lambda d: struct.pack_into("<2f", d, 112, 2.0, 10.0))  # scl_slope 2, scl_inter 10
    assert read_nifti_gz(scaled) is None
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scaled.nii.gz"))).astype(np.float64)
    expected = 2.0 * sitk.GetArrayFromImage(_image("int16")).astype(np.float64) + 10.0
    np.testing.assert_allclose(raw, expected)  # ITK applied the scaling; so does read_volume, through ITK
    np.testing.assert_allclose(sitk.GetArrayFromImage(read_volume(scaled)), expected, rtol=1e-6)

    four_d = sitk.JoinSeries([_image("float32", direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))] * 2)
    sitk.WriteImage(four_d, str(tmp_path / "dwi.nii.gz"), True)
    assert read_nifti_gz(tmp_path / "dwi.nii.gz") is None
    assert read_volume(f"{tmp_path / 'dwi.nii.gz'}#frame=1").GetSize() == (11, 9, 5)

    sitk.WriteImage(_image("int16"), str(tmp_path / "t2.nii"))  # uncompressed: ITK is fast already
    assert read_nifti_gz(tmp_path / "t2.nii") is None


def test_cut_short_files_are_a_one_line_error_not_zero_filled_voxels(tmp_path):
    """ITK itself zero-fills a .nii.gz whose gzip stream or voxel block ends early, without an error."""
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(_image("int16"), str(path), True)
    whole = gzip.decompress(path.read_bytes())
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(whole[: len(whole) - 100]))  # voxels cut short
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # gzip stream cut short (a copy)
    scaled = tmp_path / "scaled.nii.gz"  # not a plain file, still checked
    sitk.WriteImage(_image("int16"), str(scaled), True)
    _rewrite(scaled, lambda d: struct.pack_into("<f", d, 112, 2.0))
    scaled.write_bytes(gzip.compress(gzip.decompress(scaled.read_bytes())[:-10]))
    for bad, problem in ((truncated, "voxel data truncated"), (cut, "truncated gzip"), (scaled, "truncated")):
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(bad))).shape == (5, 9, 11)  # ITK: no error
        with pytest.raises(CaseInputError) as err:
            read_volume(bad)
        message = str(err.value)
        assert bad.name in message and problem in message and "\n" not in message
