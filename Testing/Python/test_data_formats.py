"""Reading volumes, studies and masks in every supported format."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import box_mask, phantom, write_dicom_series, write_seg_nrrd
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.study import (
    parse_sequence_spec,
    read_mask,
    read_study,
    read_volume,
    study_from_images,
)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_volume_formats_read_as_3d_float32_with_geometry(tmp_path, suffix):
    image = phantom(origin=(5.0, -3.0, 12.0))
    path = tmp_path / f"t2{suffix}"
    sitk.WriteImage(image, str(path))
    volume = read_volume(path)
    assert volume.GetDimension() == 3
    assert volume.GetPixelID() == sitk.sitkFloat32
    assert volume.GetSize() == image.GetSize()
    np.testing.assert_allclose(volume.GetSpacing(), image.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(volume.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(volume), sitk.GetArrayFromImage(image), rtol=1e-5)


def test_dicom_folder_with_two_series_needs_a_uid(tmp_path):
    image = phantom(size_xyz=(12, 10, 4), origin=(1.0, 2.0, 3.0))
    folder = tmp_path / "dicom"
    write_dicom_series(image, folder, "1.2.826.0.1.3680043.2.1125.7.1")
    write_dicom_series(image * 2, folder, "1.2.826.0.1.3680043.2.1125.7.2")
    with pytest.raises(CaseInputError) as err:
        read_volume(folder)
    message = str(err.value)
    assert "1.2.826.0.1.3680043.2.1125.7.1" in message and "1.2.826.0.1.3680043.2.1125.7.2" in message
    assert "\n" not in message

    expected = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkInt16)).astype(np.float32)
    first = read_volume(folder, series_uid="1.2.826.0.1.3680043.2.1125.7.1")
    assert first.GetSize() == image.GetSize()
    np.testing.assert_allclose(first.GetOrigin(), image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(first.GetSpacing(), image.GetSpacing(), rtol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first), expected)
    second = read_volume(f"{folder}#series=1.2.826.0.1.3680043.2.1125.7.2")
    assert float(sitk.GetArrayFromImage(second).mean()) > 1.8 * float(expected.mean())
    with pytest.raises(CaseInputError, match="no DICOM series 9.9"):
        read_volume(folder, series_uid="9.9")


def test_single_dicom_series_needs_no_uid(tmp_path):
    image = phantom(size_xyz=(12, 10, 3))
    write_dicom_series(image, tmp_path / "one", "1.2.826.0.1.3680043.2.1125.8.1")
    assert read_volume(tmp_path / "one").GetSize() == (12, 10, 3)


def test_png_rgb_becomes_luminance_one_slice_unit_spacing(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[2:4, 3:6] = (10, 20, 250)
    picture = sitk.GetImageFromArray(rgb, isVector=True)
    picture.SetSpacing((0.3, 0.3))
    path = tmp_path / "us.png"
    sitk.WriteImage(picture, str(path))
    volume = read_volume(path)
    assert volume.GetSize() == (8, 6, 1)
    assert volume.GetSpacing() == (1.0, 1.0, 1.0)
    array = sitk.GetArrayFromImage(volume)
    assert array.shape == (1, 6, 8)
    assert array[0, 0, 0] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=1e-3)
    assert array[0, 2, 3] == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 250, abs=1e-3)


def test_jpg_grey_picture_reads(tmp_path):
    grey = np.tile(np.linspace(0, 250, 16, dtype=np.float32), (12, 1)).astype(np.uint8)
    path = tmp_path / "us.jpg"
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(path))
    array = sitk.GetArrayFromImage(read_volume(path))
    assert array.shape == (1, 12, 16)
    assert np.abs(array[0] - grey).mean() < 8  # lossy compression, same picture


def _write_4d(tmp_path):
    frames = [phantom(seed=i, scale=float(i + 1)) for i in range(3)]
    image = sitk.JoinSeries(frames)
    path = tmp_path / "dwi.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, frames


def test_4d_needs_a_frame_and_frame_selects_it(tmp_path):
    path, frames = _write_4d(tmp_path)
    with pytest.raises(CaseInputError, match="3 frames"):
        read_volume(path)
    second = read_volume(path, frame=1)
    assert second.GetSize() == frames[1].GetSize()
    np.testing.assert_allclose(sitk.GetArrayFromImage(second), sitk.GetArrayFromImage(frames[1]), rtol=1e-5)
    third = read_volume(f"{path}#frame=2")
    np.testing.assert_allclose(sitk.GetArrayFromImage(third), sitk.GetArrayFromImage(frames[2]), rtol=1e-5)
    with pytest.raises(CaseInputError, match="out of range"):
        read_volume(path, frame=3)


def test_study_resamples_sequences_onto_reference_by_physical_space(tmp_path):
    # A linear ramp along x is reproduced exactly by linear interpolation.
    t2 = sitk.GetImageFromArray(np.tile(np.arange(20, dtype=np.float32), (6, 16, 1)) + 1.0)
    t2.SetSpacing((1.0, 1.0, 2.0))
    x = np.arange(52, dtype=np.float32) * 0.5 - 4.0  # physical x of each T1 voxel (origin -4, spacing 0.5)
    t1 = sitk.GetImageFromArray(np.tile(x, (6, 16, 1)) * 3.0 + 3.0)
    t1.SetSpacing((0.5, 1.0, 2.0))
    t1.SetOrigin((-4.0, 0.0, 0.0))
    sitk.WriteImage(t2, str(tmp_path / "t2.nrrd"))
    sitk.WriteImage(t1, str(tmp_path / "t1.nii.gz"))
    study = read_study({"T1": tmp_path / "t1.nii.gz", "T2": tmp_path / "t2.nrrd"})
    assert study.reference == "T2"
    assert set(study.paths) == {"T1", "T2"}
    for image in study.sequences.values():
        assert image.GetSize() == t2.GetSize()
        np.testing.assert_allclose(image.GetSpacing(), t2.GetSpacing())
    t1_on_t2 = sitk.GetArrayFromImage(study.sequences["T1"])
    np.testing.assert_allclose(t1_on_t2, 3.0 * sitk.GetArrayFromImage(t2), rtol=1e-5)

    other = read_study({"T1": tmp_path / "t1.nii.gz", "T2": tmp_path / "t2.nrrd"}, reference="T1")
    assert other.sequences["T2"].GetSize() == t1.GetSize()
    no_t2 = read_study({"ADC": tmp_path / "t1.nii.gz", "T1": tmp_path / "t2.nrrd"})
    assert no_t2.reference == "ADC"


def test_parse_sequence_spec(tmp_path):
    assert parse_sequence_spec("a.png", tmp_path) == {"image": tmp_path / "a.png"}
    spec = parse_sequence_spec("T2=cases/a.nii.gz; T1=/abs/b.nrrd#frame=1", tmp_path)
    assert spec == {"T2": tmp_path / "cases/a.nii.gz", "T1": tmp_path.__class__("/abs/b.nrrd#frame=1")}
    with pytest.raises(CaseInputError):
        parse_sequence_spec("T2=a.nii.gz;T2=b.nii.gz", tmp_path)
    with pytest.raises(CaseInputError):
        parse_sequence_spec("", tmp_path)


def test_label_map_default_segment_value_and_resampling(tmp_path):
    image = phantom(size_xyz=(20, 20, 6), spacing=(1.0, 1.0, 2.0))
    labels = box_mask(image, (2, 2, 1), (5, 5, 2), value=2)
    array = sitk.GetArrayFromImage(labels)
    array[3:5, 10:15, 10:15] = 1
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))

    default = sitk.GetArrayFromImage(read_mask(tmp_path / "labels.nrrd", image))
    np.testing.assert_array_equal(default, (array == 1).astype(np.uint8))  # several labels -> label 1
    two = read_mask(tmp_path / "labels.nrrd", image, segment="2")
    assert two.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(two), (array == 2).astype(np.uint8))

    only = box_mask(image, (4, 4, 1), (8, 8, 3), value=255)  # one label (0/255) -> it
    sitk.WriteImage(only, str(tmp_path / "only.mha"))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(read_mask(tmp_path / "only.mha", image)), sitk.GetArrayFromImage(only) // 255
    )
    three_five = sitk.GetArrayFromImage(labels) * 0
    three_five[1, 1:3, 1:3], three_five[4, 6:9, 6:9] = 3, 5  # no label 1 -> any non-zero
    lm = sitk.GetImageFromArray(three_five)
    lm.CopyInformation(image)
    sitk.WriteImage(lm, str(tmp_path / "no1.nii.gz"))
    assert int(sitk.GetArrayFromImage(read_mask(tmp_path / "no1.nii.gz", image)).sum()) == 4 + 9

    # A mask on a finer grid covering the same physical space: refused unless asked to resample, then
    # nearest-neighbour onto the reference.
    fine = sitk.Resample(
        only,
        [40, 40, 12],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        image.GetOrigin(),
        (0.5, 0.5, 1.0),
        image.GetDirection(),
    )
    sitk.WriteImage(fine, str(tmp_path / "fine.nrrd"))
    with pytest.raises(CaseInputError, match="not on the image's grid: spacing"):
        read_mask(tmp_path / "fine.nrrd", image)
    resampled = read_mask(tmp_path / "fine.nrrd", image, resample=True)
    assert sitk.GetArrayFromImage(read_mask(f"{tmp_path / 'fine.nrrd'}#resample=1", image)).sum() == (
        sitk.GetArrayFromImage(resampled).sum()
    )
    assert resampled.GetSize() == image.GetSize()
    overlap = np.logical_and(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(only)).sum()
    assert overlap >= 0.8 * (sitk.GetArrayFromImage(only) > 0).sum()


def test_seg_nrrd_segments_by_name_value_and_layers(tmp_path):
    image = phantom(size_xyz=(16, 16, 6))
    lesion = np.zeros((6, 16, 16), bool)
    lesion[2:4, 4:8, 4:8] = True
    cyst = np.zeros_like(lesion)
    cyst[3:5, 6:12, 6:12] = True  # overlaps the lesion -> second layer
    path = write_seg_nrrd(tmp_path / "case.seg.nrrd", image, {"lesion": lesion, "cyst": cyst})
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path, image, "cyst")).astype(bool), cyst)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(read_mask(path, image, "Lesion")).astype(bool), lesion
    )
    with pytest.raises(CaseInputError, match="several segments"):
        read_mask(path, image, 1)  # label 1 in both layers: ambiguous

    single = write_seg_nrrd(tmp_path / "one.seg.nrrd", image, {"mass": lesion})
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(single, image)).astype(bool), lesion)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(single, image, 1)).astype(bool), lesion)


def test_study_from_images_makes_2d_a_one_slice_volume():
    picture = sitk.GetImageFromArray(np.arange(30, dtype=np.uint8).reshape(5, 6))
    study = study_from_images({"US": picture})
    assert study.reference == "US" and study.is_2d
    volume = study.sequences["US"]
    assert volume.GetSize() == (6, 5, 1) and volume.GetPixelID() == sitk.sitkFloat32


def test_multi_component_nrrd_is_frames(tmp_path):
    frames = [phantom(seed=i, scale=float(i + 1)) for i in range(3)]
    path = tmp_path / "dwi.nrrd"
    sitk.WriteImage(sitk.Compose(frames), str(path))
    with pytest.raises(CaseInputError, match="3 frames"):
        read_volume(path)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(read_volume(path, frame=2)), sitk.GetArrayFromImage(frames[2]), rtol=1e-5
    )


def test_segmentation_saved_as_plain_nrrd_is_recognised(tmp_path):
    image = phantom(size_xyz=(12, 12, 4))
    lesion = np.zeros((4, 12, 12), bool)
    lesion[1:3, 2:5, 2:5] = True
    cyst = np.zeros_like(lesion)
    cyst[1:3, 7:10, 7:10] = True
    path = write_seg_nrrd(tmp_path / "labels.nrrd", image, {"lesion": lesion, "cyst": cyst})
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path, image, "cyst")).astype(bool), cyst)
