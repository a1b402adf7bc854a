"""Against a real PACS (Orthanc, started by the tests): the synthetic cases exported to DICOM and uploaded ->
sync -> index -> search by study UID -> KOS stored -> read back, over DICOMweb and DIMSE, with the same hits as
the file-based archive of the same cases; and the faults (server down, 401, 404, study deleted mid-sync,
kill -9 mid-sync, malformed SEG, no SEG), each a one-line error or a skip with its reason."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pacs_server import CLIENT_AET, PASSWORD, USER, free_port
from SimilarCaseRetrievalLib.cli import main
from SimilarCaseRetrievalLib.pacs.connection import (
    PacsConfig,
    PacsError,
    PacsNotFound,
    StudyFilter,
    open_pacs,
)
from SimilarCaseRetrievalLib.pacs.kos import read_kos
from SimilarCaseRetrievalLib.pacs.privacy import Pseudonymizer
from SimilarCaseRetrievalLib.pacs.sync import STAGING_FOLDER, SyncOptions, case_id_for, records, sync_archive
from SimilarCaseRetrievalLib.store import CaseStore

SITE_KEY = "test-site-key-0123456789abcdef"
KEYS = Pseudonymizer(SITE_KEY.encode())


@pytest.fixture(autouse=True)
def site_key(monkeypatch):
    monkeypatch.setenv("SIMILAR_CASES_SITE_KEY", SITE_KEY)


@pytest.fixture
def pacs(orthanc, pacs_cases):
    """The PACS holding exactly the exported cases (fresh for each test)."""
    orthanc.clear()
    orthanc.upload_folder(pacs_cases[1])
    return orthanc


def studies(dicom: Path) -> dict[str, dict]:
    with (dicom / "studies.csv").open(encoding="utf-8") as f:
        return {row["case_id"]: row for row in csv.DictReader(f)}


def config(server, transport: str) -> PacsConfig:
    if transport == "dicomweb":
        return PacsConfig(url=server.url)
    return PacsConfig(
        aet=server.aet,
        host="127.0.0.1",
        port=server.dicom_port,
        calling_aet=CLIENT_AET,
        retrieve="move" if transport == "dimse-move" else "get",
        move_port=server.move_port,
    )


def sync(server, archive: Path, transport: str = "dicomweb", **kwargs):
    connection = open_pacs(config(server, transport))
    with CaseStore(archive) as store:
        return sync_archive(connection, store, KEYS, kwargs.pop("options", None), progress=False, **kwargs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config

    folder = tmp_path_factory.mktemp("pacs_model")
    CaseEncoder.create(tiny_model_config(), seed=0).save(folder)
    return folder


@pytest.fixture(scope="module")
def file_hits(pacs_cases, model_dir, tmp_path_factory):
    """Hits of the file-based archive for the query case (its files + notes), keyed by study UID."""
    archive, dicom = pacs_cases
    copy = tmp_path_factory.mktemp("file_archive") / "a"
    shutil.copytree(archive, copy)
    with CaseStore(copy) as store:
        case = query_case(store)
        spec = ";".join(f"{n}={store.resolve(p)}" for n, p in case.sequences.items())
        mask, notes = str(store.resolve(case.mask)), case.notes
    assert main(["index", "--archive", str(copy), "--model", str(model_dir), "--quiet"]) == 0
    out = copy / "hits.json"
    argv = ["search", "--archive", str(copy), "--model", str(model_dir), "--image", spec, "--mask", mask]
    assert main([*argv, "--text", notes, "--json", str(out)]) == 0
    uid = {c: row["study_uid"] for c, row in studies(dicom).items()}
    return [(uid[h["case_id"]], h["score"]) for h in json.loads(out.read_text(encoding="utf-8"))["hits"]]


def query_case(store: CaseStore):
    """The first case with clinical notes (so the query uses image and text)."""
    return next(c for c in store.list_cases() if c.notes.strip())


# ---- the round trip ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["dicomweb", "dimse-move"])
def test_round_trip_gives_the_file_archive_hits(
    transport, pacs, pacs_cases, model_dir, file_hits, tmp_path, capsys, caplog
):
    archive, dicom = pacs_cases
    synced = tmp_path / "archive"
    caplog.set_level(logging.DEBUG)
    report = sync(pacs, synced, transport)
    assert (len(report.added), report.skipped) == (6, [])
    with CaseStore(archive) as files, CaseStore(synced) as store:
        by_study = {row["study_uid"]: files.get(c) for c, row in studies(dicom).items()}
        for record in records(store).values():
            case, original = store.get(record.case_id), by_study[record.study_uid]
            assert (case.label, case.terms, case.report, case.notes, case.study_date) == (
                original.label,
                original.terms,
                original.report.strip(),
                original.notes.strip(),
                original.study_date,
            )
            assert case.patient_id == KEYS.patient(original.patient_id)
        query_uid = next(uid for uid, c in by_study.items() if c.case_id == query_case(files).case_id)
        raw_ids = {c.patient_id for c in files.list_cases()}
    _assert_no_identifiers(synced, raw_ids, dicom, caplog.text)
    again = sync(pacs, synced, transport)
    assert (again.added, again.updated, again.unchanged) == ([], [], 6)

    assert main(["index", "--archive", str(synced), "--model", str(model_dir), "--quiet"]) == 0
    spec = pacs.url if transport == "dicomweb" else pacs.dimse
    out = tmp_path / "hits.json"
    argv = [
        "search",
        "--archive",
        str(synced),
        "--model",
        str(model_dir),
        "--pacs",
        spec,
        "--study",
        query_uid,
    ]
    assert main([*argv, "--store-result", "--json", str(out)]) == 0
    hits = json.loads(out.read_text(encoding="utf-8"))["hits"]
    study_of = {case_id_for(uid): uid for uid, _ in file_hits}
    got = [(study_of[h["case_id"]], h["score"]) for h in hits]
    assert [u for u, _ in got] == [u for u, _ in file_hits]
    assert np.allclose([s for _, s in got], [s for _, s in file_hits], atol=1e-4)

    connection = open_pacs(config(pacs, "dicomweb"))
    (ko,) = [s for s in connection.find_series(query_uid) if s.modality == "KO"]
    (kos,) = connection.retrieve_series(query_uid, ko.series_uid)
    kos_hits, refs = read_kos(kos)
    assert [(h.study_uid, h.score) for h in kos_hits] == [(u, round(s, 4)) for u, s in got]
    assert {r.study_uid for r in refs} == {u for u, _ in got} | {query_uid}
    assert "stored the answer" in capsys.readouterr().out
    assert sync(pacs, synced, transport).unchanged == 6  # the KOS does not make the study look changed


def _assert_no_identifiers(archive: Path, raw_ids: set[str], dicom: Path, log: str) -> None:
    """Names, raw patient ids, birth dates and accession numbers appear in no file of the archive, nor in
    the sync's log (debug level)."""
    accessions = {row["accession_number"] for row in studies(dicom).values()}
    needles = [b"Synthetic^", b"19700101", *(i.encode() for i in raw_ids), *(a.encode() for a in accessions)]
    for path in archive.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [n for n in needles if n in data]
            assert not found, f"{path} holds {found}"
    assert log and not [n for n in needles if n.decode() in log]


# ---- incremental, reports CSV ----------------------------------------------------------------------------
def test_changed_study_is_read_again_and_report_comes_from_csv(pacs, pacs_cases, tmp_path):
    archive, dicom = pacs_cases
    synced = tmp_path / "archive"
    sync(pacs, synced)
    case_id, row = next(iter(studies(dicom).items()))
    connection = open_pacs(config(pacs, "dicomweb"))
    (sr,) = [s for s in connection.find_series(row["study_uid"]) if s.modality == "SR"]
    pacs.delete_series(sr.series_uid)
    from SimilarCaseRetrievalLib.pacs.query import read_reports_csv

    report = sync(pacs, synced, options=SyncOptions(reports=read_reports_csv(dicom / "reports.csv")))
    assert (report.updated, report.unchanged) == ([case_id_for(row["study_uid"])], 5)
    with CaseStore(archive) as files, CaseStore(synced) as store:
        assert store.get(case_id_for(row["study_uid"])).report == files.get(case_id).report
        assert len(list((synced / "pacs" / case_id_for(row["study_uid"])).iterdir())) == 1  # old version gone
    other_rules = SyncOptions().rules.with_required(["T2", "T1"])
    assert len(sync(pacs, synced, options=SyncOptions(rules=other_rules)).updated) == 6  # new settings


# ---- faults ---------------------------------------------------------------------------------------------
def _one_line_error(argv, capsys, *needles):
    assert main(argv) == 2
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.strip() and not line.startswith("Loading weights")
    ]
    assert len(lines) == 1, lines  # (the text model's own progress bar aside)
    err = lines[0]
    for needle in needles:
        assert needle in err, err
    return err


def test_server_down_is_one_line(tmp_path, capsys):
    port = free_port()
    for spec, needle in (
        (f"http://127.0.0.1:{port}/dicom-web", "cannot connect"),
        (f"dimse://X@127.0.0.1:{port}", "no association"),
    ):
        _one_line_error(
            ["pacs", "sync", "--archive", str(tmp_path / "a"), "--pacs", spec, "--quiet"], capsys, needle
        )


def test_authentication(orthanc_auth, pacs_cases, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SIMILAR_CASES_PACS_USER", raising=False)
    monkeypatch.delenv("SIMILAR_CASES_PACS_PASSWORD", raising=False)
    argv = ["pacs", "sync", "--archive", str(tmp_path / "a"), "--pacs", orthanc_auth.url, "--quiet"]
    _one_line_error(argv, capsys, "authentication refused (HTTP 401)")
    monkeypatch.setenv("SIMILAR_CASES_PACS_USER", USER)
    monkeypatch.setenv("SIMILAR_CASES_PACS_PASSWORD", "wrong")
    err = _one_line_error(argv, capsys, "HTTP 401")
    assert "wrong" not in err
    monkeypatch.setenv("SIMILAR_CASES_PACS_PASSWORD", PASSWORD)
    orthanc_auth.clear()
    assert main(["pacs", "upload", str(pacs_cases[1] / "OV0001"), "--pacs", orthanc_auth.url]) == 0
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 added" in out and PASSWORD not in out


def test_unknown_study_is_404_or_a_one_line_error(pacs, tmp_path, capsys, model_dir):
    connection = open_pacs(config(pacs, "dicomweb"))
    with pytest.raises(PacsNotFound, match="HTTP 404"):
        connection.retrieve_series("1.2.3.4", "1.2.3.4.5")
    dimse = open_pacs(config(pacs, "dimse-get"))
    with pytest.raises(PacsNotFound, match="nothing retrieved"):
        dimse.retrieve_series("1.2.3.4", "1.2.3.4.5")
    archive = tmp_path / "a"
    sync(pacs, archive)
    assert main(["index", "--archive", str(archive), "--model", str(model_dir), "--quiet"]) == 0
    argv = [
        "search",
        "--archive",
        str(archive),
        "--model",
        str(model_dir),
        "--pacs",
        pacs.url,
        "--study",
        "1.2.3.4",
    ]
    _one_line_error(argv, capsys, "study 1.2.3.4", "not in the PACS")


def test_study_deleted_mid_sync_is_skipped(pacs, pacs_cases, tmp_path):
    victim = next(iter(studies(pacs_cases[1]).values()))["study_uid"]
    archive = tmp_path / "a"

    def delete(study_uid: str) -> None:
        if study_uid == victim:
            pacs.delete_study(victim)

    report = sync(pacs, archive, on_study=delete)
    assert report.skipped == [(victim, "gone from the PACS while reading it")]
    assert len(report.added) == 5
    with CaseStore(archive) as store:
        assert case_id_for(victim) not in store and len(store) == 5
    assert not (archive / "pacs" / case_id_for(victim)).exists()


def test_malformed_and_missing_seg_are_skipped_with_reasons(pacs, pacs_cases, tmp_path):
    import pydicom

    rows = list(studies(pacs_cases[1]).items())
    (bad_case, bad), (_, no_seg) = rows[0], rows[1]
    seg = pydicom.dcmread(pacs_cases[1] / bad_case / "seg.dcm")
    seg.SeriesInstanceUID, seg.SOPInstanceUID, seg.SeriesNumber = (
        seg.SeriesInstanceUID + ".9",
        seg.SOPInstanceUID + ".9",
        101,
    )
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.PixelData = seg.PixelData[: len(seg.PixelData) // 3]
    open_pacs(config(pacs, "dicomweb")).store([seg])
    connection = open_pacs(config(pacs, "dicomweb"))
    for s in connection.find_series(no_seg["study_uid"]):
        if s.modality == "SEG":
            pacs.delete_series(s.series_uid)
    archive = tmp_path / "a"
    report = sync(pacs, archive)
    reasons = dict(report.skipped)
    assert reasons[bad["study_uid"]].startswith("unreadable: unreadable SEG")
    assert reasons[no_seg["study_uid"]] == "no SEG (segmentation) in the study"
    assert len(report.added) == 4
    assert f"skipped study {bad['study_uid']}: unreadable" in report.summary()
    again = sync(pacs, archive)  # remembered: not read again while unchanged, still reported
    assert (again.unchanged, dict(again.skipped)) == (6, reasons)


def test_kill_9_mid_sync_leaves_nothing_half_stored(pacs, tmp_path):
    archive = tmp_path / "a"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "SimilarCaseRetrievalLib.cli", "pacs", "sync", "--archive", str(archive)]
    process = subprocess.Popen(
        [*argv, "--pacs", pacs.url, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(list(archive.glob("pacs/*/*"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # kill once a case is (probably) committed and the next one's files are in place
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the sync finished before it could be killed"
    with CaseStore(archive) as store:
        stored = {r.case_id for r in records(store).values() if r.status == "stored"}
        assert stored == set(store.ids())  # a case and its PACS record are committed together
        assert len(store) < 6
        for case in store.list_cases():
            assert all(store.resolve(p).is_file() for p in [*case.sequences.values(), case.mask])
    report = sync(pacs, archive)
    assert len(report.added) + len(report.updated) + report.unchanged == 6 and not report.skipped
    assert not (archive / STAGING_FOLDER).exists()
    with CaseStore(archive) as store:
        assert len(store) == 6
        folders = sorted(p.parent.parent.name for p in (archive / "pacs").glob("*/*/mask.nii.gz"))
        assert folders == sorted(store.ids())  # one version folder per case, no leftovers


# ---- what the Slicer module calls ------------------------------------------------------------------------
def test_viewer_retrieves_a_hit_and_stores_a_segment(pacs, pacs_cases, tmp_path):
    from SimilarCaseRetrievalLib.pacs.dicom_io import read_segment
    from SimilarCaseRetrievalLib.pacs.viewer import retrieve_case_study, store_segment_as_seg
    from SimilarCaseRetrievalLib.volume_io import read_volume

    archive = tmp_path / "a"
    sync(pacs, archive)
    connection = open_pacs(config(pacs, "dicomweb"))
    with CaseStore(archive) as store:
        case = store.list_cases()[0]
        folders = retrieve_case_study(connection, store, case.case_id, tmp_path / "cache")
        assert set(folders) == {"T2", "T1", "T1FS", "SEG"}
        image = read_volume(folders["T2"])
        stored = sitk.ReadImage(str(store.resolve(case.sequences["T2"])), sitk.sitkFloat32)
        assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(stored))
        stamp = (folders["T2"] / ".complete").stat().st_mtime_ns
        assert retrieve_case_study(connection, store, case.case_id, tmp_path / "cache") == folders
        assert (folders["T2"] / ".complete").stat().st_mtime_ns == stamp  # cached: not fetched again
        mask = sitk.ReadImage(str(store.resolve(case.mask)))
        study_uid = next(r.study_uid for r in records(store).values() if r.case_id == case.case_id)
    sop = store_segment_as_seg(
        connection, study_uid, mask, segment_name="cyst", label="endometrioma", terms=["t2_shading:present"]
    )
    segs = [s for s in connection.find_series(study_uid) if s.modality == "SEG"]
    assert len(segs) == 2
    new = next(
        s
        for s in segs
        for ds in connection.retrieve_series(study_uid, s.series_uid)
        if ds.SOPInstanceUID == sop
    )
    (seg,) = connection.retrieve_series(study_uid, new.series_uid)
    source = connection.retrieve_series(study_uid, seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    segment = read_segment(seg, source, "cyst", "new SEG")
    assert (segment.label, segment.terms) == ("endometrioma", ["t2_shading:present"])
    assert np.array_equal(sitk.GetArrayFromImage(segment.mask), sitk.GetArrayFromImage(mask))
    from SimilarCaseRetrievalLib.pacs.query import read_pacs_study
    from SimilarCaseRetrievalLib.pacs.rules import SeriesRules

    for name in ("cyst", "lesion"):  # two SEGs in the study: the one holding the named segment is read
        assert read_pacs_study(connection, study_uid, SeriesRules.load(), segment=name).segment.name == name


def test_filters_select_studies(pacs, pacs_cases):
    rows = list(studies(pacs_cases[1]).values())
    connection = open_pacs(config(pacs, "dimse-get"))
    found = connection.find_studies(StudyFilter(accession_numbers=[rows[0]["accession_number"]]))
    assert [s.study_uid for s in found] == [rows[0]["study_uid"]]
    assert len(connection.find_studies(StudyFilter(modality="MR"))) == 6
    assert connection.find_studies(StudyFilter(modality="CT")) == []
    web = open_pacs(config(pacs, "dicomweb"))
    assert (
        len(web.find_studies(StudyFilter(date_from="19000101", date_to="21000101", description="MR*"))) == 6
    )
    assert web.find_studies(StudyFilter(date_to="19000101")) == []
    with pytest.raises(PacsError):
        open_pacs(PacsConfig(url=pacs.url + "/nowhere")).find_studies(StudyFilter())


def test_viewer_queries_from_the_pacs_and_stores_the_answer(pacs, model_dir, tmp_path):
    from SimilarCaseRetrievalLib.pacs.query import query_from_pacs
    from SimilarCaseRetrievalLib.pacs.viewer import store_answer
    from SimilarCaseRetrievalLib.search import SearchEngine

    archive = tmp_path / "a"
    sync(pacs, archive)
    assert main(["index", "--archive", str(archive), "--model", str(model_dir), "--quiet"]) == 0
    connection = open_pacs(config(pacs, "dimse-get"))
    engine = SearchEngine(archive, model_dir)
    try:
        uid = next(iter(records(engine.store)))
        found, study, mask = query_from_pacs(connection, uid, engine.encoder.config.sequences)
        result = engine.search(study=study, mask=mask, text=found.notes, k=3)
        assert result.hits[0].case_id == case_id_for(uid)  # the study itself comes first
        sop = store_answer(connection, engine.store, found, result)
    finally:
        engine.close()
    (ko,) = [s for s in connection.find_series(uid) if s.modality == "KO"]
    (kos,) = connection.retrieve_series(uid, ko.series_uid)
    assert str(kos.SOPInstanceUID) == sop
    hits, _ = read_kos(kos)
    assert [h.study_uid for h in hits][0] == uid and len(hits) == 3


@pytest.mark.parametrize("transport", ["dicomweb", "dimse-get"])
def test_rules_on_sequence_attributes_from_the_pacs(transport, pacs, pacs_cases):
    from SimilarCaseRetrievalLib.pacs.rules import SeriesRules

    rules = SeriesRules.from_dict(
        {
            "sequences": {
                "FATSAT": {"modality": "MR", "attributes": {"ScanOptions": "FS"}},
                "OTHER": {"modality": "MR"},
            }
        }
    )
    uid = next(iter(studies(pacs_cases[1]).values()))["study_uid"]
    chosen = rules.classify(open_pacs(config(pacs, transport)).find_series(uid))
    assert chosen["FATSAT"].description == "T1 SE AX FS"
    assert chosen["OTHER"].description in ("T2 TSE AX", "T1 SE AX")
