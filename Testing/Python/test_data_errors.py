"""Bad input raises a one-line CaseInputError naming the file and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import box_mask, phantom, write_seg_nrrd
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.roi import RoiConfig, extract_roi
from SimilarCaseRetrievalLib.study import read_mask, read_study, read_volume, study_from_images


def _one_line(err: pytest.ExceptionInfo, name: str) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert name in message, message
    assert "Fix:" in message
    return message


def _write(image: sitk.Image, path):
    sitk.WriteImage(image, str(path))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(CaseInputError) as err:
        read_volume(tmp_path / "absent.nii.gz")
    assert "not found" in _one_line(err, "absent.nii.gz")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("not an image", encoding="utf-8")
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    assert "unsupported" in _one_line(err, "report.txt")


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b garbage that is not a NIfTI file" * 10)
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    assert "cannot read" in _one_line(err, "broken.nii.gz")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseInputError) as err:
        read_volume(tmp_path / "empty")
    assert "no DICOM series" in _one_line(err, "empty")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_image(tmp_path, bad):
    array = sitk.GetArrayFromImage(phantom())
    array[1, 2, 3] = bad
    with pytest.raises(CaseInputError) as err:
        read_volume(_write(sitk.GetImageFromArray(array), tmp_path / "nan.nrrd"))
    assert "NaN or infinite" in _one_line(err, "nan.nrrd")


def test_constant_image(tmp_path):
    flat = sitk.GetImageFromArray(np.full((4, 5, 6), 7.0, np.float32))
    with pytest.raises(CaseInputError) as err:
        read_volume(_write(flat, tmp_path / "flat.mha"))
    assert "constant" in _one_line(err, "flat.mha")


def test_4d_without_frame(tmp_path):
    path = _write(sitk.JoinSeries([phantom(seed=1), phantom(seed=2)]), tmp_path / "dwi.nii.gz")
    with pytest.raises(CaseInputError) as err:
        read_volume(path)
    assert "frame" in _one_line(err, "dwi.nii.gz")


def test_empty_segment_and_absent_label(tmp_path):
    image = phantom()
    empty = _write(box_mask(image, (0, 0, 0), (0, 0, 0), value=0), tmp_path / "empty.nrrd")
    with pytest.raises(CaseInputError) as err:
        read_mask(empty, image)
    assert "empty" in _one_line(err, "empty.nrrd")
    labels = _write(box_mask(image, (2, 2, 1), (5, 5, 2), value=1), tmp_path / "labels.nrrd")
    with pytest.raises(CaseInputError) as err:
        read_mask(labels, image, segment=4)
    assert "label 4" in _one_line(err, "labels.nrrd")


def test_empty_segment_in_seg_nrrd(tmp_path):
    image = phantom(size_xyz=(12, 12, 4))
    lesion = np.zeros((4, 12, 12), bool)
    lesion[1:3, 3:6, 3:6] = True
    path = write_seg_nrrd(
        tmp_path / "s.seg.nrrd", image, {"lesion": lesion, "nothing": np.zeros_like(lesion)}
    )
    with pytest.raises(CaseInputError) as err:
        read_mask(path, image, "nothing")
    assert "empty" in _one_line(err, "s.seg.nrrd")


def test_unknown_segment_name(tmp_path):
    image = phantom(size_xyz=(12, 12, 4))
    lesion = np.zeros((4, 12, 12), bool)
    lesion[1:3, 3:6, 3:6] = True
    path = write_seg_nrrd(tmp_path / "s.seg.nrrd", image, {"lesion": lesion})
    with pytest.raises(CaseInputError) as err:
        read_mask(path, image, "tumour")
    message = _one_line(err, "s.seg.nrrd")
    assert "tumour" in message and "lesion" in message  # names the available segments
    labels = _write(box_mask(image, (2, 2, 1), (5, 5, 2)), tmp_path / "labels.nii.gz")
    with pytest.raises(CaseInputError) as err:
        read_mask(labels, image, "tumour")
    assert "label value" in _one_line(err, "labels.nii.gz")


def test_mask_not_overlapping_the_volume(tmp_path):
    image = phantom()
    mask = box_mask(image, (2, 2, 1), (5, 5, 2))
    mask.SetOrigin((500.0, 500.0, 500.0))
    with pytest.raises(CaseInputError) as err:
        read_mask(_write(mask, tmp_path / "far.nrrd"), image)
    assert "do not overlap" in _one_line(err, "far.nrrd")


def test_segment_outside_the_volume(tmp_path):
    image = phantom(size_xyz=(20, 20, 6), spacing=(1.0, 1.0, 2.0))
    # A larger mask grid that overlaps the volume, with the segment only where the volume is not.
    big = sitk.Image(60, 60, 6, sitk.sitkUInt8)
    big.SetSpacing((1.0, 1.0, 2.0))
    big.SetOrigin((-20.0, -20.0, 0.0))
    array = np.zeros((6, 60, 60), np.uint8)
    array[2:4, 50:55, 50:55] = 1
    outside = sitk.GetImageFromArray(array)
    outside.CopyInformation(big)
    with pytest.raises(CaseInputError) as err:
        read_mask(_write(outside, tmp_path / "outside.nrrd"), image)
    assert "outside" in _one_line(err, "outside.nrrd")


def test_2d_mask_for_3d_volume(tmp_path):
    image = phantom()
    png = np.zeros((20, 24), np.uint8)
    png[5:9, 5:9] = 255
    with pytest.raises(CaseInputError) as err:
        read_mask(_write(sitk.GetImageFromArray(png), tmp_path / "mask.png"), image)
    assert "2D mask" in _one_line(err, "mask.png")


def test_sequence_not_overlapping_reference(tmp_path):
    t2 = _write(phantom(), tmp_path / "t2.nrrd")
    t1 = _write(phantom(origin=(900.0, 0.0, 0.0)), tmp_path / "t1.nrrd")
    with pytest.raises(CaseInputError) as err:
        read_study({"T2": t2, "T1": t1})
    assert "does not overlap" in _one_line(err, "t1.nrrd")


def test_missing_sequence_for_the_model():
    image = phantom()
    study = study_from_images({"T2": image, "T1": image})
    mask = box_mask(image, (8, 6, 2), (14, 12, 5))
    with pytest.raises(CaseInputError) as err:
        extract_roi(study, mask, ["T2", "T1FS"], RoiConfig(grid=(8, 8, 4)))
    message = _one_line(err, "T1FS")
    assert "T2" in message and "T1" in message  # names what the study has


def test_empty_in_memory_mask():
    image = phantom()
    study = study_from_images({"T2": image})
    with pytest.raises(CaseInputError, match="empty"):
        extract_roi(study, box_mask(image, (0, 0, 0), (0, 0, 0), value=0), ["T2"], RoiConfig(grid=(8, 8, 4)))
