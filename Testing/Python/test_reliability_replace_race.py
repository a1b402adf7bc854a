"""`ingest --replace` while `index` runs: an embedding computed from the old files is refused at commit.

The race is made deterministic by driving the indexer's own steps in order (revision read -> case read and
embedded -> case replaced -> commit), with the real store, reader and encoder."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from search_helpers import copy_archive, make_case, tiny_model
from SimilarCaseRetrievalLib.indexer import (
    commit_current,
    embed_images,
    embed_texts,
    index_archive,
    read_case_roi,
)
from SimilarCaseRetrievalLib.store import SCHEMA_VERSION, CaseStore


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


def _embed(store, encoder, case_id):
    case = store.get(case_id)
    roi, err = read_case_roi(store, case, list(encoder.config.sequences), encoder.config.roi)
    assert err is None
    image, probs = embed_images(encoder, roi[None])
    return image, embed_texts(encoder, [case.text]), probs


def test_a_stale_embedding_is_refused_and_the_current_files_are_embedded(tmp_path, tiny_archive, encoder):
    store = copy_archive(tiny_archive, tmp_path / "a")
    v, terms = encoder.version, list(encoder.config.terms)
    target = "OV0005"
    revisions = store.current_revisions([target, "OV0006"])  # step 1: what the indexer reads first
    old = _embed(store, encoder, target)  # step 2: the old files are read and embedded
    other = _embed(store, encoder, "OV0006")
    replacement = make_case(tmp_path / "new", target, 2, np.random.default_rng(7))
    store.add(replacement, replace=True)  # step 3: `ingest --replace` commits new files for the case
    image = np.concatenate([old[0], other[0]])
    text = np.concatenate([old[1], other[1]])
    probs = np.concatenate([old[2], other[2]])
    stale = commit_current(store, v, terms, [target, "OV0006"], image, text, probs, revisions)  # step 4
    assert stale == [target]
    ids = store.get_embeddings(v, "image")[0]
    assert target not in ids and "OV0006" in ids  # the unchanged case went in, the stale one did not

    report = index_archive(store, encoder, progress=False)  # the next run finds the case to do
    assert target in report.embedded and not report.failed
    ids, vectors = store.get_embeddings(v, "image")
    stored = vectors[ids.index(target)]
    fresh = _embed(store, encoder, target)[0][0]
    assert float(stored @ fresh) > 0.999  # the embedding of the current files
    assert float(stored @ old[0][0]) < float(stored @ fresh) - 1e-3  # not the old one


def test_replace_remove_and_update_each_give_a_new_revision(tmp_path, tiny_archive):
    store = copy_archive(tiny_archive, tmp_path / "a")
    first = store.current_revisions(["OV0001"])["OV0001"]
    case = store.get("OV0001")
    store.add(case, replace=True)
    second = store.current_revisions(["OV0001"])["OV0001"]
    case.notes = "changed"
    store.update(case)
    third = store.current_revisions(["OV0001"])["OV0001"]
    store.remove("OV0001")
    store.add(case)
    fourth = store.current_revisions(["OV0001"])["OV0001"]
    assert len({first, second, third, fourth}) == 4


def test_a_schema_1_store_is_migrated_once_and_keeps_its_cases(tmp_path, tiny_archive):
    store = copy_archive(tiny_archive, tmp_path / "a")
    ids = store.ids()
    store.close()
    conn = sqlite3.connect(tmp_path / "a" / "cases.sqlite")
    conn.execute("ALTER TABLE cases DROP COLUMN revision")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    for _ in range(2):  # idempotent
        store = CaseStore(tmp_path / "a")
        assert store.ids() == ids and all(store.current_revisions(ids).values())
        store.close()
    conn = sqlite3.connect(tmp_path / "a" / "cases.sqlite")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
