"""The module's Logic end to end on a real MRML scene: the Slicer self-test run under pytest, plus
the Qt-free session helpers (SimilarCaseRetrievalLib.slicer_logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("torch")

import slicer_stubs  # noqa: E402
from SimilarCaseRetrievalLib import slicer_logic  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402


@pytest.fixture(scope="module")
def scr():
    return slicer_stubs.import_module()


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory, scr):
    from SimilarCaseRetrievalLib.slicer_selftest import build_tiny_indexed_archive

    built = build_tiny_indexed_archive(tmp_path_factory.mktemp("selftest"))
    scr.SimilarCaseRetrievalTest.built = built
    return built


@pytest.fixture(autouse=True)
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene


def run_self_test(scr, name: str):
    test = scr.SimilarCaseRetrievalTest(name)
    test.setUp()
    getattr(test, name)()


def test_self_test_searches_from_scene_nodes_and_loads_the_top_case(scr, tiny_archive):
    run_self_test(scr, "test_SearchFromSegmentAndLoadTopCase")
    # the loaded case's nodes are in the scene
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2


def test_self_test_refines_and_lays_out_side_by_side(scr, tiny_archive):
    run_self_test(scr, "test_RefineAndSideBySide")
    layout = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    from SimilarCaseRetrievalLib import slicer_layout

    assert layout.GetViewArrangement() == slicer_layout.LAYOUT_ID


def test_self_test_bad_input(scr):
    run_self_test(scr, "test_BadInputIsOneLineError")


@pytest.fixture(autouse=True, scope="module")
def stop_worker_after(scr):
    yield
    scr.stopWorker()


def test_add_current_case_keeps_pixel_type_and_geometry_and_is_found_at_once(scr, tiny_archive, tmp_path):
    import shutil

    import numpy as np
    import SimpleITK as sitk
    from SimilarCaseRetrievalLib.store import CaseStore

    archive, model_dir = tiny_archive
    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, query_case = test._queryFromArchiveCase(logic, index=2)
    # a T1 as a scanner gives it: int16, on its own (coarser, shifted) grid
    t1 = sitk.Cast(sitk.Round(slicer_image(node.t1Volume)), sitk.sitkInt16)
    t1 = sitk.Resample(
        t1,
        [s // 2 for s in t1.GetSize()[:2]] + [t1.GetSize()[2]],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        t1.GetOrigin(),
        [sp * 2 for sp in t1.GetSpacing()[:2]] + [t1.GetSpacing()[2]],
        t1.GetDirection(),
    )
    from SimilarCaseRetrievalLib import mrml

    node.t1Volume = mrml.volume_node_from_image(t1, "scanner T1")
    node.archiveFolder = str(copy)
    node.newCaseId = "new-case-001"
    node.newCaseLabel = query_case.label
    node.newCaseTerms = ", ".join(query_case.terms)
    node.newCaseReport = "Added from Slicer."
    case = logic.addCurrentCase(node)
    assert case["case_id"] == "new-case-001"
    written = sitk.ReadImage(str(copy / "cases" / "new-case-001" / "T1.nrrd"))
    assert written.GetPixelID() == sitk.sitkInt16  # not resampled float32
    assert written.GetSize() == t1.GetSize() and np.allclose(written.GetSpacing(), t1.GetSpacing())
    node.textWeight = 0.0
    node.k = 2
    hits = [hit["case_id"] for hit in logic.search(node)["hits"]]
    assert "new-case-001" in hits
    with pytest.raises(ValueError, match="already"):
        logic.addCurrentCase(node)
    logic.close()
    store = CaseStore(copy, create=False)
    assert store.get("new-case-001").report == "Added from Slicer."
    store.close()


def slicer_image(volume_node):
    from SimilarCaseRetrievalLib import mrml

    return mrml.image_from_volume_node(volume_node)


def test_parse_terms_splits_on_commas_semicolons_and_lines():
    assert slicer_logic.parse_terms(" a, b ;c\n\n d ,") == ["a", "b", "c", "d"]
    assert slicer_logic.parse_terms("") == [] and slicer_logic.parse_terms(None) == []


def test_write_case_files_rejects_bad_ids_and_existing_folders(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5))
    mask = sitk.GetImageFromArray(np.ones((3, 4, 5), np.uint8))
    for bad in ("", "../escape", "a b", "x" * 70):
        with pytest.raises(CaseInputError):
            slicer_logic.write_case_files(tmp_path, bad, {"T2": image}, mask)
    sequences, mask_path = slicer_logic.write_case_files(tmp_path, "ok-1", {"T2": image}, mask)
    assert sequences == {"T2": "cases/ok-1/T2.nrrd"} and mask_path == "cases/ok-1/mask.nrrd"
    assert sitk.ReadImage(str(tmp_path / sequences["T2"])).GetPixelID() == sitk.sitkInt16
    with pytest.raises(CaseInputError, match="already holds files"):
        slicer_logic.write_case_files(tmp_path, "ok-1", {"T2": image}, mask)


def test_refine_before_any_search_is_an_error(scr):
    logic = scr.SimilarCaseRetrievalLogic()
    with pytest.raises(CaseInputError, match="run a search first"):
        logic.refine(["a"])
    logic.close()


def test_marks_are_exclusive_and_cycle():
    marks = [None]
    for _ in range(3):
        marks.append(slicer_logic.next_mark(marks[-1]))
    assert marks == [None, "relevant", "not relevant", None]
    rows = slicer_logic.hit_rows({"hits": [{"case_id": "a", "score": 0.5}]}, {"a": "relevant"})
    assert rows[0]["Mark"] == "relevant" and slicer_logic.RESULT_COLUMNS.index("Mark") < 3


def test_search_with_filters_and_report_lookup(scr, tiny_archive):
    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, query_case = test._queryFromArchiveCase(logic, index=0)
    node.labelFilter = query_case.label
    node.k = 50
    result = logic.search(node)
    assert result is logic.lastResult
    assert result["hits"] and all(hit["label"] == query_case.label for hit in result["hits"])
    assert query_case.case_id in [hit["case_id"] for hit in result["hits"]]
    assert not list(logic.session.scratch.rglob("*.nrrd"))  # the query's files are gone once answered
    assert logic.reportOf(query_case.case_id) == query_case.report
    assert logic.reportOf("no-such-case") == ""
    logic.close()


def test_scene_hygiene_previews_replaced_deleted_nodes_reloaded_original_loaded_layout_restored(
    scr, tiny_archive
):
    from SimilarCaseRetrievalLib import slicer_layout

    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, _ = test._queryFromArchiveCase(logic, index=1)
    node.k, node.viewerCount = 4, 3
    layout = slicer_layout.layout_node()
    layout.SetViewArrangement(3)  # the user's layout (e.g. four-up)
    volumes = lambda: slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")  # noqa: E731
    start = volumes()
    logic.search(node)
    views = logic.showSideBySide(node)
    assert volumes() - start == 3  # one shown sequence per hit, not every sequence
    assert layout.GetViewArrangement() == slicer_layout.LAYOUT_ID
    # a hit node deleted by the user: showing again loads it again instead of a blank viewer
    hit_view = views[slicer_layout.view_names(3)[1]]
    deleted = slicer.mrmlScene.GetNodeByID(slicer_layout.composite_node(hit_view).GetBackgroundVolumeID())
    slicer.mrmlScene.RemoveNode(deleted)
    views = logic.showSideBySide(node)
    shown = slicer_layout.composite_node(views[slicer_layout.view_names(3)[1]]).GetBackgroundVolumeID()
    assert slicer.mrmlScene.GetNodeByID(shown) is not None
    query_view_volume = slicer_layout.composite_node(views[slicer_layout.QUERY_VIEW]).GetBackgroundVolumeID()
    # Load selected case: the stored case, not the moved preview; the side-by-side views keep their volumes
    top = logic.lastResult["hits"][0]["case_id"]
    loaded = logic.loadCase(top, node)
    assert loaded.transform is None and loaded is not logic.session.previews[top]
    logic.showLoadedCase(loaded)
    assert layout.GetViewArrangement() == 3  # the user's layout is back
    assert (
        slicer_layout.composite_node(views[slicer_layout.QUERY_VIEW]).GetBackgroundVolumeID()
        == query_view_volume
    )
    # the next search removes the previous previews (the user's loaded case stays)
    logic.search(node)
    assert volumes() - start == len(loaded.volumes) == 3 and not logic.session.previews
    assert slicer.mrmlScene.IsNodePresent(loaded.reference_volume)
    logic.close()


def test_add_case_missing_a_model_sequence_writes_nothing(scr, tiny_archive, tmp_path):
    import shutil

    from SimilarCaseRetrievalLib.store import CaseStore

    archive, _ = tiny_archive
    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, _ = test._queryFromArchiveCase(logic, index=3)
    node.archiveFolder = str(copy)
    node.t1Volume = None  # the model needs T1
    node.newCaseId = "incomplete-1"
    with pytest.raises(ValueError, match="T1"):
        logic.addCurrentCase(node)
    logic.close()
    assert not (copy / "cases" / "incomplete-1").exists()
    store = CaseStore(copy, create=False)
    assert "incomplete-1" not in store
    store.close()


def test_demo_builds_indexes_shows_a_query_and_a_second_click_does_not_duplicate(scr, tiny_archive, tmp_path):
    _, model_dir = tiny_archive
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    demo = tmp_path / "demo"
    case = logic.loadDemo(node, archiveDir=demo, modelDir=model_dir, nCases=6, size="tiny")
    assert Path(node.archiveFolder) == demo and (demo / "cases.sqlite").is_file()
    assert node.t2Volume is not None and node.t1Volume is not None and node.t1fsVolume is not None
    assert node.segmentation.GetSegmentation().GetSegment(node.segmentId) is not None
    assert node.notes == case["notes"]
    node.textWeight = 0.0
    node.k = 1
    assert logic.search(node)["hits"][0]["case_id"] == case["case_id"]
    volumes = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    stamp = (demo / "cases.sqlite").stat().st_mtime_ns
    logic.loadDemo(node, archiveDir=demo, modelDir=model_dir, nCases=6, size="tiny")  # second click
    assert (demo / "cases.sqlite").stat().st_mtime_ns == stamp  # nothing rebuilt
    assert (
        slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes
    )  # replaced, not added
    logic.close()


# -- Annotate next ------------------------------------------------------------------------------------------
def test_annotate_next_loads_prefills_skip_moves_on_and_confirmed_labels_are_searched(
    scr, tiny_archive, tmp_path
):
    import dataclasses
    import shutil

    from SimilarCaseRetrievalLib.store import CaseStore

    source, model = tiny_archive
    archive = tmp_path / "archive"
    shutil.copytree(source, archive)
    with CaseStore(archive, create=False) as store:
        cases = store.list_cases()
        for case in cases[:3]:
            store.update(dataclasses.replace(case, label=None, terms=[]))
        unlabelled = {c.case_id: c for c in cases[:3]}
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    node.archiveFolder, node.modelFolder = str(archive), str(model)
    node.annotateStrategy = "uncertainty"

    task = logic.annotateNext(node)
    assert task["case_id"] in unlabelled and task["suggestion"]["reason"]
    shown = logic.session.annotation_case
    assert set(shown.volumes) == set(unlabelled[task["case_id"]].sequences) and shown.segmentation is not None
    prefill = task["prefill"]
    probabilities = [p for _, p in prefill["diagnosis"]]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-3
    choices = slicer_logic.annotation_choices(task)
    assert choices["diagnoses"][0][0] == prefill["label"] and task["case_id"] in choices["reason"]
    assert [name for name, _, checked in choices["terms"] if checked] == prefill["checked_terms"]
    assert slicer_logic.chosen_label(choices["diagnoses"][0][1], choices["diagnoses"]) == prefill["label"]
    assert slicer_logic.chosen_label(" typed diagnosis ", choices["diagnoses"]) == "typed diagnosis"

    skipped_nodes = shown.nodes()
    second = logic.annotateNext(node, skip=True)  # Skip: another case; the skipped one left the scene
    assert second["case_id"] in unlabelled and second["case_id"] != task["case_id"]
    assert all(n.GetScene() is None for n in skipped_nodes)

    # the annotator corrects the diagnosis to the least probable one and keeps one term
    label, term = second["prefill"]["diagnosis"][-1][0], second["prefill"]["terms"][0][0]
    stored = logic.confirmAnnotation(label, [term])
    assert (stored["case_id"], stored["label"], stored["terms"]) == (second["case_id"], label, [term])
    annotated = logic.session.annotation_case
    node.t2Volume, node.t1Volume, node.t1fsVolume = (annotated.volumes.get(s) for s in ("T2", "T1", "T1FS"))
    node.segmentation, node.segmentId = annotated.segmentation, annotated.segment_id
    node.labelFilter, node.k = label, 20
    hits = {hit["case_id"]: hit for hit in logic.search(node)["hits"]}
    assert hits[second["case_id"]]["label"] == label and term in hits[second["case_id"]]["terms"]

    third = logic.annotateNext(node)  # the confirmed case never comes again; the skipped one neither
    assert third is None or third["case_id"] not in (task["case_id"], second["case_id"])
    logic.close()


def test_confirm_without_a_case_on_screen_is_a_one_line_error(scr):
    logic = scr.SimilarCaseRetrievalLogic()
    with pytest.raises(CaseInputError, match="Next case"):
        logic.confirmAnnotation("cystadenoma", [])
    logic.close()


def test_pacs_connection_refuses_credentials_in_the_url(scr):
    from SimilarCaseRetrievalLib.worker.pacs_requests import check_pacs_spec

    assert check_pacs_spec(" https://pacs.example.org/dicom-web ") == "https://pacs.example.org/dicom-web"
    assert check_pacs_spec("dimse://ORTHANC@pacs:4242") == "dimse://ORTHANC@pacs:4242"
    with pytest.raises(CaseInputError, match="SIMILAR_CASES_PACS_PASSWORD"):
        check_pacs_spec("https://reader:secret@pacs.example.org/dicom-web")
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    node.pacsConnection = "https://reader:secret@pacs.example.org/dicom-web"
    with pytest.raises(ValueError, match="password"):
        logic.startPacsSearch(node)
    logic.close()


# -- similarity maps and the draft report (issue #14) ------------------------------------------------------
def test_similarity_maps_overlay_toggle_opacity_and_draft_report(scr, tiny_archive):
    from SimilarCaseRetrievalLib import slicer_layout

    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, _ = test._queryFromArchiveCase(logic, index=2)
    node.k, node.viewerCount = 4, 2
    result = logic.search(node)
    with pytest.raises(CaseInputError, match="Show side by side"):
        logic.similarityMaps(node)  # nothing is side by side yet
    views = logic.showSideBySide(node)
    maps = logic.similarityMaps(node)
    assert set(maps) == set(views) == set(slicer_layout.view_names(2))
    hits = [hit["case_id"] for hit in result["hits"][:2]]
    for name, case_id in zip(slicer_layout.view_names(2)[1:], hits, strict=True):
        transform = logic.session.previews[case_id].transform
        assert maps[name].GetTransformNodeID() == (transform.GetID() if transform is not None else None)
    for name, map_node in maps.items():
        values = slicer.util.arrayFromVolume(map_node)
        assert values.size and 0.0 <= values.min() and values.max() <= 1.0 + 1e-6 and values.max() > 0
        composite = slicer_layout.composite_node(views[name])
        assert composite.GetForegroundVolumeID() == map_node.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(node.mapOpacity)
    logic.showMaps(True, 0.8)
    assert all(
        slicer_layout.composite_node(v).GetForegroundOpacity() == pytest.approx(0.8) for v in views.values()
    )
    logic.showMaps(False)
    assert not any(slicer_layout.composite_node(v).GetForegroundVolumeID() for v in views.values())

    draft = logic.draftReport(node)
    assert "Findings" in draft and "Similar cases" in draft
    assert all(case_id in draft for case_id in [hit["case_id"] for hit in result["hits"]])

    logic.search(node)  # the next search's results take the previews and their maps out of the scene
    assert all(n.GetScene() is None for n in maps.values()) and not logic.session.map_nodes
    logic.close()
