"""MRML nodes <-> SimpleITK (SimilarCaseRetrievalLib.mrml) on a real headless MRML scene (slicer-core)."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from SimilarCaseRetrievalLib import mrml  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402


@pytest.fixture(autouse=True)
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene


def oblique_image(shape=(6, 12, 16), seed=0) -> sitk.Image:
    """A float32 volume with anisotropic spacing, an offset origin and a rotated direction (LPS)."""
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 20, shape).astype(np.float32))
    image.SetSpacing((0.7, 0.9, 3.0))
    image.SetOrigin((12.5, -40.0, 7.0))
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    return image


def box_mask(reference: sitk.Image, box=(slice(2, 4), slice(3, 8), slice(5, 11))) -> sitk.Image:
    array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint8)
    array[box] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    return mask


def test_volume_round_trip_keeps_voxels_and_lps_geometry():
    image = oblique_image()
    node = mrml.volume_node_from_image(image, "T2")
    # MRML stores RAS: the first two axes of the origin are negated.
    assert np.allclose(node.GetOrigin(), (-12.5, 40.0, 7.0))
    back = mrml.image_from_volume_node(node)
    assert back.GetPixelID() == sitk.sitkFloat32
    assert np.allclose(back.GetOrigin(), image.GetOrigin())
    assert np.allclose(back.GetSpacing(), image.GetSpacing())
    assert np.allclose(back.GetDirection(), image.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_volume_under_linear_transform_is_read_in_world_coordinates():
    image = oblique_image()
    node = mrml.volume_node_from_image(image, "T2")
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    import vtk

    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # +5 mm towards Right = -5 mm in LPS x
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    back = mrml.image_from_volume_node(node)
    assert np.allclose(np.array(back.GetOrigin()) - np.array(image.GetOrigin()), (-5.0, 0.0, 0.0))


def test_mask_round_trip_through_a_segmentation_node():
    image = oblique_image()
    volume = mrml.volume_node_from_image(image, "T2")
    mask = box_mask(image)
    segmentation, segment_id = mrml.segmentation_from_mask(mask, "seg", reference_volume_node=volume)
    assert mrml.segment_ids(segmentation) == [segment_id]
    back = mrml.mask_from_segment(segmentation, segment_id, volume)
    assert back.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(mask))
    assert np.allclose(back.GetOrigin(), image.GetOrigin())
    # no temporary labelmap is left in the scene
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0


def test_segment_resolved_by_name_and_ambiguity_is_an_error():
    image = oblique_image()
    volume = mrml.volume_node_from_image(image, "T2")
    segmentation, first = mrml.segmentation_from_mask(
        box_mask(image), "seg", segment_name="mass", reference_volume_node=volume
    )
    second = segmentation.GetSegmentation().AddEmptySegment("ovary", "ovary")
    assert mrml.resolve_segment_id(segmentation, "mass") == first
    assert mrml.resolve_segment_id(segmentation, "ovary") == second
    with pytest.raises(CaseInputError, match="2 segments"):
        mrml.resolve_segment_id(segmentation, None)
    with pytest.raises(CaseInputError, match="no segment 'cyst'"):
        mrml.resolve_segment_id(segmentation, "cyst")


def test_empty_segment_is_a_one_line_error():
    image = oblique_image()
    volume = mrml.volume_node_from_image(image, "T2")
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    mrml.ensure_segmentation_support()
    segment_id = segmentation.GetSegmentation().AddEmptySegment("mass")
    with pytest.raises(CaseInputError) as caught:
        mrml.mask_from_segment(segmentation, segment_id, volume)
    message = str(caught.value)
    assert "seg" in message and "Fix:" in message and "\n" not in message


def test_segmentation_without_segments_and_volume_without_voxels_are_errors():
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing")
    with pytest.raises(CaseInputError, match="no segment"):
        mrml.resolve_segment_id(segmentation, None)
    empty_volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(CaseInputError, match="no image data"):
        mrml.image_from_volume_node(empty_volume)


def test_nan_voxels_and_vector_volumes_are_rejected():
    nan = np.ones((3, 4, 5), np.float32)
    nan[1, 1, 1] = np.nan
    node = slicer.util.addVolumeFromArray(nan, name="nan")
    with pytest.raises(CaseInputError, match="NaN"):
        mrml.image_from_volume_node(node)
    rgb = slicer.util.addVolumeFromArray(
        np.zeros((3, 4, 5, 3), np.uint8), name="rgb", nodeClassName="vtkMRMLVectorVolumeNode"
    )
    with pytest.raises(CaseInputError, match="scalar"):
        mrml.image_from_volume_node(rgb)


def test_mask_centre_and_extent_in_ras_millimetres():
    image = sitk.Image(20, 10, 5, sitk.sitkUInt8)
    image.SetSpacing((2.0, 1.0, 4.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    image[4:9, 2:5, 1:2] = 1  # x 4..8, y 2..4, z 1
    centre = mrml.mask_centre_ras(image)
    # LPS centre = origin + spacing * mean index = (10 + 2*6, 20 + 1*3, 30 + 4*1); RAS negates x and y.
    assert np.allclose(centre, (-22.0, -23.0, 34.0))
    assert mrml.mask_extent_mm(image) == pytest.approx(10.0)  # 5 voxels * 2 mm along x


def test_study_from_volume_nodes_resamples_onto_the_reference():
    t2 = oblique_image(seed=1)
    t1 = sitk.Resample(t2, [8, 8, 4], sitk.Transform(), sitk.sitkLinear, t2.GetOrigin(), (1.5, 1.5, 4.0))
    nodes = {
        "T2": mrml.volume_node_from_image(t2, "T2"),
        "T1": mrml.volume_node_from_image(t1, "T1"),
        "T1FS": None,
    }
    study = mrml.study_from_volume_nodes(nodes, reference="T2")
    assert study.reference == "T2"
    assert set(study.sequences) == {"T2", "T1"}
    assert study.sequences["T1"].GetSize() == t2.GetSize()
    with pytest.raises(CaseInputError, match="no volume"):
        mrml.study_from_volume_nodes({"T2": None})
