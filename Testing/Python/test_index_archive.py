"""index_archive: embeddings stored per model version, incremental updates, failures, and a killed run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from search_helpers import copy_archive, make_case, tiny_model
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.index import SIDECAR
from SimilarCaseRetrievalLib.indexer import index_archive, index_dir, open_index
from SimilarCaseRetrievalLib.store import CaseStore


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    return path, tiny_model(path)


N = 24  # cases in tiny_archive


def test_index_stores_all_kinds_and_terms_then_is_incremental(tmp_path, model, tiny_archive):
    _, encoder = model
    store = copy_archive(tiny_archive, tmp_path / "a", no_text=("OV0002",))
    report = index_archive(store, encoder, chunk_size=7, progress=False)
    v = encoder.version
    assert sorted(report.embedded) == sorted(store.ids()) and report.indexed == N
    img_ids, img = store.get_embeddings(v, "image")
    txt_ids, _ = store.get_embeddings(v, "text")
    fused_ids, fused = store.get_embeddings(v, "fused")
    assert len(img_ids) == N and len(fused_ids) == N and "OV0002" not in txt_ids and len(txt_ids) == N - 1
    assert np.allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5) and fused.shape[1] == 2 * img.shape[1]
    predicted = store.get_predicted_terms(v)
    assert set(predicted) == set(img_ids) and set(predicted["OV0001"]) == set(encoder.config.terms)

    # nothing new: nothing embedded, index loaded as is
    again = index_archive(store, encoder, progress=False)
    assert again.embedded == [] and again.indexed == N
    # one ingested, one removed: only the new one is embedded, the removed one leaves the index
    store.add(make_case(tmp_path / "a" / "extra", "late", 1, np.random.default_rng(3)))
    store.remove("OV0003")
    third = index_archive(store, encoder, progress=False)
    assert third.embedded == ["late"] and third.indexed == N
    index = open_index(store, v)
    assert "late" in index and "OV0003" not in index and index.status == "loaded"


def test_cases_that_cannot_be_read_are_reported_not_fatal(tmp_path, model, tiny_archive):
    _, encoder = model
    store = copy_archive(tiny_archive, tmp_path / "a")
    for case_id in store.ids()[4:]:
        store.remove(case_id)  # four cases are enough here
    os.remove(store.resolve(store.get("OV0003").sequences["T1"]))
    report = index_archive(store, encoder, progress=False)
    assert set(report.failed) == {"OV0003"} and "T1" in report.failed["OV0003"]
    assert len(report.embedded) == 3 and report.indexed == 3


def test_empty_archive_is_a_clear_error(tmp_path, model):
    _, encoder = model
    with pytest.raises(CaseInputError, match="no cases"):
        index_archive(CaseStore(tmp_path / "empty"), encoder, progress=False)


def _embedded_kinds(db: Path, version: str) -> dict[str, set[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT case_id, kind FROM embeddings WHERE model_version = ?", (version,)
        ).fetchall()
    kinds: dict[str, set[str]] = {}
    for case_id, kind in rows:
        kinds.setdefault(case_id, set()).add(kind)
    return kinds


def test_killed_index_run_leaves_a_consistent_store_and_the_next_run_finishes(tmp_path, model, tiny_archive):
    model_dir, encoder = model
    n = N
    copy_archive(tiny_archive, tmp_path / "a").close()
    db = tmp_path / "a" / "cases.sqlite"
    command = [sys.executable, "-m", "SimilarCaseRetrievalLib.cli", "index", "--archive", str(tmp_path / "a")]
    command += ["--model", str(model_dir), "--chunk-size", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    blocker = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if blocker.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] > 0:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        # First chunk committed: hold the write lock so that the run cannot commit more, then kill it.
        blocker.execute("BEGIN IMMEDIATE")
        partial = _embedded_kinds(db, encoder.version)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert 0 < len(partial) < n
    # every case is embedded completely or not at all
    kinds_of_a_case = {"image", "text", "fused", "sentence"}  # sentence: the backbone text embedding
    assert all(kinds == kinds_of_a_case for kinds in partial.values())

    store = CaseStore(tmp_path / "a")
    assert set(store.get_predicted_terms(encoder.version)) == set(partial)
    report = index_archive(store, encoder, progress=False)
    assert sorted(report.embedded) == sorted(set(store.ids()) - set(partial))
    final = _embedded_kinds(db, encoder.version)
    assert len(final) == n and all(kinds == kinds_of_a_case for kinds in final.values())
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 4 * n  # no duplicates
    assert report.indexed == n and (index_dir(store) / SIDECAR).is_file()
