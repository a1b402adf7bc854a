"""Side-by-side layout (SimilarCaseRetrievalLib.slicer_layout) on a real headless MRML scene."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from SimilarCaseRetrievalLib import mrml, slicer_layout  # noqa: E402


@pytest.fixture(autouse=True)
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    logic = slicer.vtkMRMLLayoutLogic()  # what Slicer's layout manager uses to create view nodes
    logic.SetMRMLScene(scene)
    scene._layout_logic = logic  # keep alive
    return scene


def make_case(case_id: str, centre_index, origin=(0.0, 0.0, 0.0), seed=0) -> mrml.LoadedCase:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(50, 5, (10, 24, 24)).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin(origin)
    array = np.zeros((10, 24, 24), np.uint8)
    z, y, x = centre_index
    array[z - 1 : z + 2, y - 2 : y + 3, x - 3 : x + 4] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    volume = mrml.volume_node_from_image(image, f"{case_id} T2")
    segmentation, segment_id = mrml.segmentation_from_mask(
        mask, f"{case_id} seg", reference_volume_node=volume
    )
    return mrml.LoadedCase(
        case_id=case_id,
        volumes={"T2": volume},
        segmentation=segmentation,
        segment_id=segment_id,
        reference="T2",
        centre_ras=mrml.mask_centre_ras(mask),
        extent_mm=mrml.mask_extent_mm(mask),
    )


def test_layout_description_is_a_grid_of_named_slice_views():
    names = slicer_layout.view_names(4)
    assert names[0] == slicer_layout.QUERY_VIEW and len(set(names)) == 5
    root = ET.fromstring(slicer_layout.layout_description(names))
    views = root.findall(".//view")
    assert [v.get("singletontag") for v in views] == names
    assert all(v.get("class") == "vtkMRMLSliceNode" for v in views)
    rows = root.findall("./item/layout")
    assert len(rows) == slicer_layout.grid_shape(5)[0] == 2
    assert len(rows[0].findall("./item")) == 3


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9])
def test_grid_holds_every_view(n):
    rows, columns = slicer_layout.grid_shape(n)
    assert rows * columns >= n and (rows - 1) * columns < n and columns >= rows


def test_side_by_side_shows_each_case_in_its_own_linked_view_centred_on_the_segment(scene):
    query = make_case("query", (5, 12, 12), seed=1)
    hits = [
        make_case("case-a", (3, 6, 8), origin=(40.0, -10.0, 5.0), seed=2),
        make_case("case-b", (7, 18, 15), origin=(-25.0, 30.0, -12.0), seed=3),
    ]
    slice_nodes = slicer_layout.show_side_by_side(query, hits)

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == slicer_layout.LAYOUT_ID
    assert list(slice_nodes) == slicer_layout.view_names(2)
    for name, case in zip(slice_nodes, [query, *hits], strict=True):
        slice_node = slice_nodes[name]
        assert slice_node.GetLayoutName() == name
        composite = slicer.vtkMRMLSliceLogic.GetSliceCompositeNode(slice_node)
        assert composite.GetBackgroundVolumeID() == case.reference_volume.GetID()
        assert composite.GetLinkedControl()
        # each hit's segmentation is drawn only in its view; the query's also in the usual views
        display = case.segmentation.GetDisplayNode()
        shown_in = set(display.GetViewNodeIDs())
        assert slice_node.GetID() in shown_in
        others = {n.GetID() for k, n in slice_nodes.items() if k != name}
        assert not shown_in & others
        if case is query:
            red = scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
            assert red.GetID() in shown_in
        else:
            assert shown_in == {slice_node.GetID()}
        # the view is centred on the query's segment centre...
        slice_to_ras = slice_node.GetSliceToRAS()
        centre = [slice_to_ras.GetElement(i, 3) for i in range(3)]
        assert np.allclose(centre, query.centre_ras, atol=1e-6)

    # ...and each hit is moved so that its own segment centre lands there.
    for hit in hits:
        assert hit.transform is not None
        for node in (hit.reference_volume, hit.segmentation):
            assert node.GetTransformNodeID() == hit.transform.GetID()
        import vtk

        matrix = vtk.vtkMatrix4x4()
        hit.transform.GetMatrixTransformToParent(matrix)
        moved = np.array(hit.centre_ras) + [matrix.GetElement(i, 3) for i in range(3)]
        assert np.allclose(moved, query.centre_ras)
    assert query.transform is None


def test_showing_fewer_hits_again_reuses_the_layout(scene):
    query = make_case("query", (5, 12, 12))
    hits = [make_case(f"c{i}", (5, 10 + i, 10)) for i in range(3)]
    slicer_layout.show_side_by_side(query, hits)
    slice_nodes = slicer_layout.show_side_by_side(query, hits[:1])
    assert list(slice_nodes) == slicer_layout.view_names(1)
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    description = layout.GetLayoutDescription(slicer_layout.LAYOUT_ID)
    assert "SCRHit2" not in description and "SCRHit1" in description
