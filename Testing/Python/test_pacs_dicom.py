"""PACS building blocks without a server: config and credentials, sequence rules, pseudonyms, and the DICOM
objects (MR series, SEG, SR, KOS) written and read back."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import SimpleITK as sitk
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.pacs.connection import PacsError, SeriesInfo, StudyFilter, load_config
from SimilarCaseRetrievalLib.pacs.dicom_io import read_segment, seg_segments, series_image, sr_texts
from SimilarCaseRetrievalLib.pacs.export import SERIES_DESCRIPTIONS, case_datasets
from SimilarCaseRetrievalLib.pacs.privacy import Pseudonymizer
from SimilarCaseRetrievalLib.pacs.rules import SeriesRules
from SimilarCaseRetrievalLib.store import CaseStore


# ---- config and credentials -----------------------------------------------------------------------------
def test_credentials_come_from_the_environment_and_never_show():
    config = load_config(
        "https://pacs.example/dicom-web/",
        environ={"SIMILAR_CASES_PACS_USER": "u", "SIMILAR_CASES_PACS_PASSWORD": "s3cret"},
    )
    assert (config.url, config.auth, config.username, config.password) == (
        "https://pacs.example/dicom-web",
        "basic",
        "u",
        "s3cret",
    )
    assert config.verify is True
    assert "s3cret" not in config.describe() and "s3cret" not in repr(config)
    assert load_config("https://p/dicom-web", environ={"SIMILAR_CASES_PACS_TOKEN": "t"}).auth == "bearer"
    assert load_config("https://p/dicom-web", environ={}).auth == "none"


def test_credentials_in_the_url_are_refused():
    with pytest.raises(PacsError, match="credentials in the URL"):
        load_config("https://user:pw@pacs/dicom-web", environ={})


def test_dimse_address_and_config_file(tmp_path):
    config = load_config("dimse://PACS@10.0.0.5:104", environ={})
    assert (config.transport, config.aet, config.host, config.port) == ("dimse", "PACS", "10.0.0.5", 104)
    path = tmp_path / "pacs.json"
    path.write_text(
        json.dumps(
            {"url": "https://p/dicom-web", "auth": "bearer", "token_env": "SITE_TOKEN", "verify": "/ca.pem"}
        ),
        encoding="utf-8",
    )
    config = load_config(path, environ={"SITE_TOKEN": "abc"})
    assert (config.token, config.verify) == ("abc", "/ca.pem")
    with pytest.raises(PacsError, match="without a token"):
        load_config(path, environ={})
    path.write_text(json.dumps({"url": "https://p/dicom-web", "pasword": "x"}), encoding="utf-8")
    with pytest.raises(PacsError, match="unknown setting.*pasword"):
        load_config(path, environ={})


def test_study_filter_queries():
    f = StudyFilter(modality="MR", date_from="20200101", accession_numbers=["A1", "A2"])
    assert f.queries() == [
        {"ModalitiesInStudy": "MR", "StudyDate": "20200101-", "AccessionNumber": "A1"},
        {"ModalitiesInStudy": "MR", "StudyDate": "20200101-", "AccessionNumber": "A2"},
    ]
    assert StudyFilter().queries() == [{}]


# ---- rules ------------------------------------------------------------------------------------------------
def _series(uid, description, number=1, modality="MR", **attributes):
    return SeriesInfo(uid, modality, description, number, 10, dict(attributes))


def test_default_rules_tell_t1_fat_sat_from_t1_and_take_the_latest_repeat():
    rules = SeriesRules.load()
    chosen = rules.classify(
        [
            _series("a", "T2 TSE AX", 1),
            _series("b", "t1_se_ax", 2),
            _series("c", "T1 AX FatSat", 3),
            _series("d", "T2 TSE AX", 7),
            _series("e", "DWI b800", 8),
            _series("f", "T2 SPAIR", 9),  # fat-saturated T2: not the T2 the model wants
            _series("g", "lesion", 10, modality="SEG"),
        ]
    )
    assert {k: v.series_uid for k, v in chosen.items()} == {"T2": "d", "T1": "b", "T1FS": "c", "DWI": "e"}


def test_rules_file_with_attributes_and_required(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps(
            {
                "sequences": {
                    "T1FS": {"description": "(?i)t1", "attributes": {"ScanOptions": "FS"}},
                    "T1": {"description": "(?i)t1"},
                },
                "required": ["T1"],
            }
        ),
        encoding="utf-8",
    )
    rules = SeriesRules.load(path)
    chosen = rules.classify([_series("x", "T1 AX", 1, ScanOptions="FS"), _series("y", "T1 AX", 2)])
    assert (chosen["T1FS"].series_uid, chosen["T1"].series_uid) == ("x", "y")
    assert rules.required == ["T1"]
    with pytest.raises(CaseInputError, match="no rule recognises"):
        rules.with_required(["T2"])
    path.write_text(json.dumps({"sequences": {"T1": {"description": "("}}}), encoding="utf-8")
    with pytest.raises(CaseInputError, match="bad sequence rules"):
        SeriesRules.load(path)


# ---- privacy --------------------------------------------------------------------------------------------
def test_pseudonyms_are_keyed_and_stable(tmp_path):
    a = Pseudonymizer(b"k" * 32)
    assert a.patient("P0001") == a.patient("P0001") != a.patient("P0002")
    assert a.patient("P0001") != Pseudonymizer(b"j" * 32).patient("P0001")
    assert re.fullmatch(r"PSN-[0-9a-f]{20}", a.patient("P0001"))
    assert "P0001" not in a.patient("P0001") and a.patient("") is None
    key = tmp_path / "archive" / "site.key"
    key.parent.mkdir()
    key.write_text("x" * 40, encoding="utf-8")
    with pytest.raises(CaseInputError, match="inside the archive"):
        Pseudonymizer.from_site(key, tmp_path / "archive", environ={})
    with pytest.raises(CaseInputError, match="no key"):
        Pseudonymizer.from_site(None, tmp_path, environ={})
    with pytest.raises(CaseInputError, match="shorter"):
        Pseudonymizer.from_site(None, tmp_path, environ={"SIMILAR_CASES_SITE_KEY": "short"})


# ---- DICOM objects --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_case(pacs_cases):
    archive, _ = pacs_cases
    with CaseStore(archive) as store:
        case = store.list_cases()[1]
        study = store.load_study(case)
        mask = store.load_mask(case, study)
        return case, study, mask, case_datasets(store, case)


def test_mr_series_round_trip_keeps_voxels_and_geometry(exported_case):
    case, study, _, datasets = exported_case
    for name in case.sequences:
        series = [
            d for d in datasets if d.Modality == "MR" and d.SeriesDescription == SERIES_DESCRIPTIONS[name]
        ]
        image = series_image(list(reversed(series)), name)  # order comes from positions, not from the list
        original = study.sequences[name]
        assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original))
        assert np.allclose(image.GetSpacing(), original.GetSpacing())
        assert np.allclose(image.GetOrigin(), original.GetOrigin())
        assert np.allclose(image.GetDirection(), original.GetDirection())
    with pytest.raises(CaseInputError, match="duplicated or not evenly spaced"):
        series_image([d for d in datasets if d.Modality == "MR"], "all MR")  # three series mixed up


def test_seg_round_trip_keeps_mask_label_and_terms(exported_case):
    case, _, mask, datasets = exported_case
    seg = next(d for d in datasets if d.Modality == "SEG")
    source = [
        d
        for d in datasets
        if d.Modality == "MR" and d.SeriesInstanceUID == seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    ]
    (info,) = seg_segments(seg)
    assert (info.name, info.label, info.terms) == ("lesion", case.label, case.terms)
    segment = read_segment(seg, source, None, "seg")
    assert np.array_equal(sitk.GetArrayFromImage(segment.mask), sitk.GetArrayFromImage(mask))
    with pytest.raises(CaseInputError, match="no segment 'liver'.*lesion"):
        read_segment(seg, source, "liver", "seg")


def test_malformed_seg_is_a_one_line_error(exported_case):
    import copy

    _, _, _, datasets = exported_case
    seg = copy.deepcopy(next(d for d in datasets if d.Modality == "SEG"))
    source = [d for d in datasets if d.Modality == "MR"][:8]
    seg.PixelData = seg.PixelData[: len(seg.PixelData) // 3]  # cut short
    with pytest.raises(CaseInputError, match="unreadable SEG") as info:
        read_segment(seg, source, None, "study X SEG")
    assert "\n" not in str(info.value)


def test_sr_round_trip_keeps_report_and_notes(exported_case):
    case, _, _, datasets = exported_case
    sr = next(d for d in datasets if d.Modality == "SR")
    assert sr_texts(sr) == (case.report.strip(), case.notes.strip())


# ---- command line ---------------------------------------------------------------------------------------
def test_search_pacs_arguments_are_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    from SimilarCaseRetrievalLib.cli import main

    archive = str(tmp_path / "none")
    assert main(["search", "--archive", archive, "--study", "1.2.3"]) == 2
    assert "give both --pacs and --study" in capsys.readouterr().err
    argv = [
        "search",
        "--archive",
        archive,
        "--pacs",
        "https://p/dicom-web",
        "--study",
        "1.2.3",
        "--image",
        "a",
    ]
    assert main(argv) == 2
    assert "given with --image" in capsys.readouterr().err
    monkeypatch.delenv("SIMILAR_CASES_SITE_KEY", raising=False)
    monkeypatch.delenv("SIMILAR_CASES_SITE_KEY_FILE", raising=False)
    assert main(["pacs", "sync", "--archive", archive, "--pacs", "https://h/dicom-web"]) == 2
    assert "no key to pseudonymise" in capsys.readouterr().err
    monkeypatch.setenv("SIMILAR_CASES_SITE_KEY", "k" * 32)
    assert main(["pacs", "sync", "--archive", archive, "--pacs", "https://user:pw@h/dicom-web"]) == 2
    err = capsys.readouterr().err
    assert "credentials in the URL" in err and "pw" not in err  # the secret is not echoed


# ---- HTTP authentication and TLS, against a local stand-in DICOMweb endpoint ------------------------------
class _QidoHandler:
    """Answers every GET with an empty QIDO result and records the Authorization header."""

    seen: list[str | None] = []

    @classmethod
    def make(cls):
        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                cls.seen.append(self.headers.get("Authorization"))
                body = b"[]"
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def http_endpoint():
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _QidoHandler.make())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _QidoHandler.seen.clear()
    yield server
    server.shutdown()
    server.server_close()


def test_basic_and_bearer_credentials_are_sent(http_endpoint):
    from base64 import b64encode

    from SimilarCaseRetrievalLib.pacs.connection import open_pacs

    url = f"http://127.0.0.1:{http_endpoint.server_address[1]}/dicom-web"
    env = {"SIMILAR_CASES_PACS_USER": "ris", "SIMILAR_CASES_PACS_PASSWORD": "pw"}
    assert open_pacs(load_config(url, environ=env)).find_studies(StudyFilter()) == []
    assert (
        open_pacs(load_config(url, environ={"SIMILAR_CASES_PACS_TOKEN": "tok"})).find_studies(StudyFilter())
        == []
    )
    assert _QidoHandler.seen == ["Basic " + b64encode(b"ris:pw").decode(), "Bearer tok"]


def test_tls_certificates_are_verified_by_default(http_endpoint, tmp_path):
    import shutil
    import ssl
    import subprocess

    from SimilarCaseRetrievalLib.pacs.connection import open_pacs

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    http_endpoint.socket = context.wrap_socket(http_endpoint.socket, server_side=True)
    url = f"https://127.0.0.1:{http_endpoint.server_address[1]}/dicom-web"
    with pytest.raises(PacsError, match="TLS certificate verification failed"):
        open_pacs(load_config(url, environ={})).find_studies(StudyFilter())
    trusted = load_config(url, environ={})
    trusted.verify = str(cert)  # the site's CA bundle
    assert open_pacs(trusted).find_studies(StudyFilter()) == []


def test_missing_orthanc_skips_here_and_fails_in_ci(monkeypatch):
    import pacs_server

    monkeypatch.setattr(pacs_server, "find_orthanc", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y orthanc orthanc-dicomweb"):
        pacs_server.require_orthanc()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it"):
        pacs_server.require_orthanc()
