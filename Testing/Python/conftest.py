"""Shared pytest fixtures: a tiny synthetic ovarian-MRI archive built once per test session.

Fixtures
- ``tiny_archive``  -> Path: a synthetic archive of 24 cases (4 per label: simple_cyst, endometrioma,
  mature_teratoma, cystadenoma, fibroma, malignant), grid 48x48x8 (5x5x14 mm), sequences T2/T1/T1FS,
  ingested into ``cases.sqlite`` in that folder (``CaseStore(tiny_archive)``). Contains
  ``manifest.csv`` (English reports/notes), ``manifest_en.csv``, ``manifest_fr.csv`` and
  ``cases/<case_id>/{T2,T1,T1FS,mask}.nii.gz``. 18 patients: 6 have a follow-up study (same label),
  so split by ``patient_id``. Built in about a second; treat it as READ-ONLY (copy it to change it).
- ``tiny_manifest`` -> Path: ``tiny_archive / "manifest.csv"``.
- ``tiny_archive_files`` -> Path: the same kind of archive written but NOT ingested (no ``cases.sqlite``),
  for ingest tests that need a fresh store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_CASES = 24
TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-case tiny synthetic archive, ingested (read-only; see module docstring)."""
    from SimilarCaseRetrievalLib.synthetic import make_archive

    out = tmp_path_factory.mktemp("tiny_archive")
    return make_archive(out, n_cases=TINY_CASES, seed=TINY_SEED, size="tiny", ingest=True, progress=False)


@pytest.fixture(scope="session")
def tiny_manifest(tiny_archive: Path) -> Path:
    """The English manifest of ``tiny_archive``."""
    return tiny_archive / "manifest.csv"


@pytest.fixture(scope="session")
def tiny_archive_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 24 cases written to disk with manifests but no case store (not ingested)."""
    from SimilarCaseRetrievalLib.synthetic import make_archive

    out = tmp_path_factory.mktemp("tiny_archive_files")
    return make_archive(out, n_cases=TINY_CASES, seed=TINY_SEED, size="tiny", ingest=False, progress=False)


# ---- PACS tests (Orthanc): see pacs_server.py --------------------------------------------------------------
PACS_CASES = 6


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    """A running Orthanc (DICOMweb + DIMSE, no authentication) for the session; skipped/failed when absent."""
    from pacs_server import Orthanc

    server = Orthanc(tmp_path_factory.mktemp("orthanc"), auth=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_auth(tmp_path_factory: pytest.TempPathFactory):
    """A running Orthanc with HTTP basic authentication (pacs_server.USER / PASSWORD)."""
    from pacs_server import Orthanc

    server = Orthanc(tmp_path_factory.mktemp("orthanc_auth"), auth=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pacs_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(archive, dicom): a 6-case tiny synthetic archive (ingested; read-only) and its DICOM export
    (``<case_id>/`` folders with MR series, seg.dcm, sr.dcm; studies.csv; reports.csv)."""
    from SimilarCaseRetrievalLib.pacs.export import export_cases
    from SimilarCaseRetrievalLib.store import CaseStore
    from SimilarCaseRetrievalLib.synthetic import make_archive

    archive = make_archive(
        tmp_path_factory.mktemp("pacs_archive"), n_cases=PACS_CASES, seed=3, size="tiny", progress=False
    )
    dicom = tmp_path_factory.mktemp("pacs_dicom")
    with CaseStore(archive) as store:
        export_cases(store, dicom)
    return archive, dicom
