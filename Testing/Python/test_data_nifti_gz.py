"""A .nii.gz that ends early is a one-line error (ITK alone zero-fills it); whole files read as before."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.nifti_gz import check_nifti_gz
from SimilarCaseRetrievalLib.study import read_volume


def _image(dtype: str = "int16") -> sitk.Image:
    values = np.random.default_rng(0).normal(300, 120, size=(5, 9, 11))  # (Z, Y, X)
    image = sitk.GetImageFromArray(values.astype(dtype))
    image.SetSpacing((0.7, 0.9, 4.0))
    image.SetDirection((0.0, -1.0, 0.0, 0.8, 0.0, -0.6, 0.6, 0.0, 0.8))
    return image


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32", "float64"])
def test_whole_files_pass_the_check_and_read_as_itk_reads_them(tmp_path, dtype):
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(_image(dtype), str(path), True)
    check_nifti_gz(path)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(path)), expected)
    # a multi-member gzip (its trailer describes the last member only) is whole too
    raw = gzip.decompress(path.read_bytes())
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(multi)), expected)


def test_cut_short_files_are_a_one_line_error_not_zero_filled_voxels(tmp_path):
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(_image(), str(path), True)
    whole = gzip.decompress(path.read_bytes())
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(whole[: len(whole) - 100]))  # voxels cut short, gzip intact
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # gzip stream cut short (a copy)
    four_d = tmp_path / "dwi.nii.gz"  # any NIfTI-1 layout is sized: a 4D file cut short
    sitk.WriteImage(sitk.JoinSeries([_image("float32")] * 2), str(four_d), True)
    four_d.write_bytes(gzip.compress(gzip.decompress(four_d.read_bytes())[:-10]))
    big = tmp_path / "big.nii.gz"  # larger than the head the check reads: the trailer comes from a seek
    sitk.WriteImage(
        sitk.GetImageFromArray(np.random.default_rng(1).normal(size=(40, 64, 64))), str(big), True
    )
    check_nifti_gz(big)
    big_cut = tmp_path / "big_cut.nii.gz"
    big_cut.write_bytes(big.read_bytes()[:-5000])
    cases = ((truncated, "voxel data truncated"), (cut, "truncated gzip"), (four_d, "truncated"))
    for bad, problem in (*cases, (big_cut, "truncated gzip")):
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(bad))).size > 0  # ITK alone: no error
        with pytest.raises(CaseInputError) as err:
            read_volume(bad if bad is not four_d else f"{bad}#frame=0")
        message = str(err.value)
        assert bad.name in message and problem in message and "\n" not in message


def test_files_the_check_cannot_size_are_left_to_itk(tmp_path):
    plain = tmp_path / "t2.nii"  # not gzipped: nothing to check
    sitk.WriteImage(_image(), str(plain))
    check_nifti_gz(plain)
    odd = tmp_path / "t2.nii.gz"  # gzip of something that is not a NIfTI-1 header
    odd.write_bytes(gzip.compress(b"not a nifti header" * 40))
    check_nifti_gz(odd)  # no opinion; ITK reports it
    with pytest.raises(CaseInputError, match="cannot read"):
        read_volume(odd)
    header = bytearray(plain.read_bytes())
    struct.pack_into("<f", header, 108, 0.0)  # a nonsense voxel offset: not sized, ITK decides
    weird = tmp_path / "weird.nii.gz"
    weird.write_bytes(gzip.compress(bytes(header)))
    check_nifti_gz(weird)
