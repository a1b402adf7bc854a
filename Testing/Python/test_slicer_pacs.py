"""The module's PACS functions against a real Orthanc (conftest `orthanc`): search from a PACS study through the
Logic and a real worker (the study becomes the query, the answer goes back as a KOS), a hit whose images are
only in the PACS retrieved on demand when loaded and shown side by side, and Add case storing a DICOM SEG."""

from __future__ import annotations

import csv
import shutil

import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("torch")

import slicer_stubs  # noqa: E402

SITE_KEY = "test-site-key-0123456789abcdef"


@pytest.fixture(scope="module")
def scr():
    module = slicer_stubs.import_module()
    yield module
    module.stopWorker()


@pytest.fixture(autouse=True)
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene


@pytest.fixture
def synced(orthanc, pacs_cases, tmp_path):
    """(archive synced from the PACS over DICOMweb and indexed, model, {case_id: study UID})."""
    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.pacs.connection import open_pacs
    from SimilarCaseRetrievalLib.pacs.privacy import Pseudonymizer
    from SimilarCaseRetrievalLib.pacs.sync import case_id_for, sync_archive
    from SimilarCaseRetrievalLib.search import SearchEngine
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config
    from SimilarCaseRetrievalLib.store import CaseStore

    orthanc.clear()
    orthanc.upload_folder(pacs_cases[1])
    archive, model = tmp_path / "archive", tmp_path / "model"
    connection = open_pacs(orthanc.url)
    with CaseStore(archive) as store:
        report = sync_archive(connection, store, Pseudonymizer(SITE_KEY.encode()), progress=False)
    connection.close()
    assert len(report.added) == 6
    CaseEncoder.create(tiny_model_config(), seed=0).save(model)
    SearchEngine(archive, model, auto_index=True).close()
    with (pacs_cases[1] / "studies.csv").open(encoding="utf-8") as f:
        studies = {case_id_for(row["study_uid"]): row["study_uid"] for row in csv.DictReader(f)}
    return archive, model, studies


def remove_local_files(archive, case_id):
    """The case's image files leave the archive (its record stays): only the PACS has its images now."""
    from SimilarCaseRetrievalLib.store import CaseStore

    with CaseStore(archive, create=False) as store:
        folder = store.resolve(store.get(case_id).mask).parent
    shutil.rmtree(folder)


def series_of(orthanc, study_uid, modality):
    from SimilarCaseRetrievalLib.pacs.connection import open_pacs

    connection = open_pacs(orthanc.url)
    try:
        return [s for s in connection.find_series(study_uid) if s.modality == modality]
    finally:
        connection.close()


def test_search_from_pacs_study_kos_hits_retrieved_on_demand_and_seg_stored(scr, orthanc, synced, tmp_path):
    archive, model, studies = synced
    query_case, query_uid = next(iter(studies.items()))
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    node.archiveFolder, node.modelFolder = str(archive), str(model)
    node.pacsConnection, node.pacsStudyUid, node.pacsStoreAnswer = orthanc.url, query_uid, True
    node.k, node.textWeight, node.viewerCount = 3, 0.0, 2

    result = logic.pacsSearch(node)
    hits = [hit["case_id"] for hit in result["hits"]]
    assert hits[0] == query_case  # image only: the study itself, synced into the archive, comes first
    assert node.t2Volume is not None and node.t2Volume.GetAttribute("SimilarCaseRetrieval.pacsQuery") == "1"
    assert node.segmentation is not None and node.segmentId
    (kos,) = series_of(orthanc, query_uid, "KO")
    assert result["kos"]

    # the second hit's files leave the archive: only the PACS has its images now
    second = hits[1]
    remove_local_files(archive, second)
    loaded = logic.loadCase(second, node)
    assert set(loaded.volumes) >= {"T2"} and loaded.segmentation is not None
    assert (logic.session.pacs_cache / studies[second]).is_dir()
    views = logic.showSideBySide(node)  # the previews retrieve it too (from the cache)
    assert len(views) == 3

    # Add case also stores the segment to the PACS as a DICOM SEG of the query study
    segs_before = len(series_of(orthanc, query_uid, "SEG"))
    node.newCaseId, node.newCaseLabel, node.pacsStoreSeg = "pacs-new-case", "endometrioma", True
    added = logic.addCurrentCase(node)
    assert added["seg"] and len(series_of(orthanc, query_uid, "SEG")) == segs_before + 1
    logic.close()


def test_a_hit_only_in_the_pacs_without_a_connection_is_a_one_line_error(scr, synced):
    archive, model, studies = synced
    case_id = next(iter(studies))
    remove_local_files(archive, case_id)
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    node.archiveFolder, node.modelFolder = str(archive), str(model)
    with pytest.raises(ValueError, match="Fix:"):
        logic.loadCase(case_id, node)
    logic.close()
