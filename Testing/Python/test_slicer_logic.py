"""The module's Logic end to end on a real MRML scene: the Slicer self-test run under pytest, plus
the Qt-free session helpers (SimilarCaseRetrievalLib.slicer_logic)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("torch")

import slicer_stubs  # noqa: E402
from SimilarCaseRetrievalLib import slicer_logic  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parents[2] / "SimilarCaseRetrieval"


@pytest.fixture(scope="module")
def scr():
    slicer_stubs.install()
    sys.path.insert(0, str(MODULE_DIR))
    try:
        import SimilarCaseRetrieval
    finally:
        sys.path.remove(str(MODULE_DIR))
    return SimilarCaseRetrieval


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


def test_add_current_case_writes_files_and_is_found_at_once(scr, tiny_archive, tmp_path):
    import shutil

    from SimilarCaseRetrievalLib.store import CaseStore

    archive, model_dir = tiny_archive
    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, query_case = test._queryFromArchiveCase(logic, index=2)
    node.archiveFolder = copy
    node.newCaseId = "new-case-001"
    node.newCaseLabel = query_case.label
    node.newCaseTerms = ", ".join(query_case.terms)
    node.newCaseReport = "Added from Slicer."
    case = logic.addCurrentCase(node)
    assert case.case_id == "new-case-001"
    assert (copy / case.mask).is_file() and all((copy / p).is_file() for p in case.sequences.values())
    node.textWeight = 0.0
    node.k = 2
    hits = [hit.case_id for hit in logic.search(node).hits]
    assert set(hits) == {"new-case-001", query_case.case_id}  # same images: both at the top
    with pytest.raises(CaseInputError, match="already"):
        logic.addCurrentCase(node)
    logic.close()
    store = CaseStore(copy, create=False)
    assert store.get("new-case-001").report == "Added from Slicer."
    store.close()


def test_parse_terms_splits_on_commas_semicolons_and_lines():
    assert slicer_logic.parse_terms(" a, b ;c\n\n d ,") == ["a", "b", "c", "d"]
    assert slicer_logic.parse_terms("") == [] and slicer_logic.parse_terms(None) == []


def test_write_case_files_rejects_bad_ids_and_existing_folders(tmp_path):
    import numpy as np
    import SimpleITK as sitk
    from SimilarCaseRetrievalLib.study import study_from_images

    image = sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    study = study_from_images({"T2": image})
    mask = sitk.GetImageFromArray(np.ones((3, 4, 5), np.uint8))
    for bad in ("", "../escape", "a b", "x" * 70):
        with pytest.raises(CaseInputError):
            slicer_logic.write_case_files(tmp_path, bad, study, mask)
    sequences, mask_path = slicer_logic.write_case_files(tmp_path, "ok-1", study, mask)
    assert sequences == {"T2": "cases/ok-1/T2.nrrd"} and mask_path == "cases/ok-1/mask.nrrd"
    with pytest.raises(CaseInputError, match="already holds files"):
        slicer_logic.write_case_files(tmp_path, "ok-1", study, mask)


def test_refine_before_any_search_is_an_error():
    session = slicer_logic.RetrievalSession()
    with pytest.raises(CaseInputError, match="run a search first"):
        session.refine(["a"], [])
    session.close()


def test_missing_archive_is_reported_with_the_fix(tmp_path):
    session = slicer_logic.RetrievalSession()
    with pytest.raises(CaseInputError, match="cases.sqlite"):
        session.runner.call(session._engine_for, tmp_path)
    session.close()


def test_background_runner_uses_one_worker_thread_and_propagates_errors():
    runner = slicer_logic.BackgroundRunner()
    main = threading.get_ident()
    first = runner.call(threading.get_ident)
    second = runner.call(threading.get_ident)
    assert first == second != main

    def fail():
        raise CaseInputError("x", "bad", "fix it")

    job = runner.submit(fail)
    with pytest.raises(CaseInputError):
        job.result(timeout=10)
    assert job.done()
    gate = threading.Event()
    slow = runner.submit(gate.wait, 10)
    queued = runner.submit(lambda: "never")
    queued.cancel()
    gate.set()
    assert slow.result(timeout=10) is True
    assert queued.cancelled
    runner.shutdown()


def test_background_search_job_with_filters(scr, tiny_archive):
    logic = scr.SimilarCaseRetrievalLogic()
    test = scr.SimilarCaseRetrievalTest("test_SearchFromSegmentAndLoadTopCase")
    node, query_case = test._queryFromArchiveCase(logic, index=0)
    node.labelFilter = query_case.label
    node.k = 50
    job = logic.startSearch(node)
    result = job.result(timeout=120)
    assert job.done() and not job.cancelled
    assert logic.lastResult is None  # not adopted until accepted (a cancelled search never is)
    assert logic.acceptResult(result) is logic.lastResult
    assert result.hits and all(hit.label == query_case.label for hit in result.hits)
    assert query_case.case_id in [hit.case_id for hit in result.hits]
    assert logic.reportOf(query_case.case_id) == query_case.report
    assert logic.reportOf("no-such-case") == ""
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
    node.archiveFolder = copy
    node.t1Volume = None  # the model needs T1
    node.newCaseId = "incomplete-1"
    with pytest.raises(CaseInputError, match="T1"):
        logic.addCurrentCase(node)
    logic.close()
    assert not (copy / "cases" / "incomplete-1").exists()
    store = CaseStore(copy, create=False)
    assert "incomplete-1" not in store
    store.close()


def test_demo_builds_indexes_and_loads_a_query_then_reuses_the_archive(scr, tiny_archive, tmp_path):
    _, model_dir = tiny_archive
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    demo = tmp_path / "demo"
    case = logic.loadDemo(node, archiveDir=demo, modelDir=model_dir, nCases=6, size="tiny")
    assert node.archiveFolder == demo and (demo / "cases.sqlite").is_file()
    assert node.t2Volume is not None and node.t1Volume is not None and node.t1fsVolume is not None
    assert node.segmentation.GetSegmentation().GetSegment(node.segmentId) is not None
    assert node.notes == case.notes
    node.textWeight = 0.0
    node.k = 1
    assert logic.search(node).hits[0].case_id == case.case_id
    stamp = (demo / "cases.sqlite").stat().st_mtime_ns
    logic.prepareDemo(demo, model_dir, nCases=6, size="tiny")  # second use: nothing rebuilt
    assert (demo / "cases.sqlite").stat().st_mtime_ns == stamp
    logic.close()
