"""Similarity-map overlay nodes on a real headless MRML scene (slicer-core): geometry, threshold, toggle."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("torch")

from SimilarCaseRetrievalLib import mrml, slicer_layout  # noqa: E402
from SimilarCaseRetrievalLib.encoders import CaseEncoder  # noqa: E402
from SimilarCaseRetrievalLib.explain.pair import explain_case  # noqa: E402
from SimilarCaseRetrievalLib.explain.slicer_maps import MAP_FLOOR, add_map_node, show_map  # noqa: E402
from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config  # noqa: E402
from SimilarCaseRetrievalLib.store import CaseStore  # noqa: E402


@pytest.fixture(autouse=True)
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene


def test_map_nodes_sit_on_each_volume_and_toggle(tiny_archive):
    import SimpleITK as sitk

    store = CaseStore(tiny_archive, create=False)
    encoder = CaseEncoder.create(tiny_model_config(), seed=0)
    query = store.list_cases()[0]
    q_study = store.load_study(query)
    q_mask = store.load_mask(query, q_study)
    maps, h_study, h_mask = explain_case(encoder, store, q_study, q_mask, store.ids()[3], "gradcam")

    loaded = mrml.add_case_nodes(store.get(store.ids()[3]), h_study, h_mask)
    transform = mrml.translate_to(loaded, (0.0, 0.0, 0.0))
    q_node = add_map_node(maps.query, q_study.reference_image, "query map")
    h_node = add_map_node(maps.hit, h_study.reference_image, "hit map", transform=transform)

    # read back: the node's voxels and geometry are the map's box in the query's space
    back = mrml.image_from_volume_node(q_node)
    assert np.allclose(sitk.GetArrayViewFromImage(back), maps.query.values, atol=1e-6)
    expected = maps.query.to_image(q_study.reference_image)
    assert np.allclose(back.GetOrigin(), expected.GetOrigin(), atol=1e-4)
    assert h_node.GetTransformNodeID() == transform.GetID()
    display = q_node.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(MAP_FLOOR)

    views = slicer_layout.apply_layout(["SCR_Query", "SCR_Hit1"])
    show_map(views["SCR_Query"], q_node, 0.6)
    composite = slicer_layout.composite_node(views["SCR_Query"])
    assert composite.GetForegroundVolumeID() == q_node.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(0.6)
    show_map(views["SCR_Query"], None)
    assert not composite.GetForegroundVolumeID() and composite.GetForegroundOpacity() == 0.0
