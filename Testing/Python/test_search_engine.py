"""SearchEngine on a copy of the tiny synthetic archive with a tiny random-init model: queries, filters,
feedback, add_case, bad input (geometry, model version, empty archive)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from search_helpers import copy_archive, make_case, tiny_model, write_study
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.feedback import RocchioConfig
from SimilarCaseRetrievalLib.indexer import index_archive
from SimilarCaseRetrievalLib.lexical import HybridConfig
from SimilarCaseRetrievalLib.results import load_query
from SimilarCaseRetrievalLib.search import SearchEngine, read_query
from SimilarCaseRetrievalLib.store import CaseStore
from SimilarCaseRetrievalLib.study import read_mask, read_study

N = 24  # cases in tiny_archive
NO_TEXT = "OV0004"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_archive):
    """(archive dir, model dir): the tiny archive (OV0004 without text), embedded and indexed."""
    root = tmp_path_factory.mktemp("engine")
    store = copy_archive(tiny_archive, root / "archive", no_text=(NO_TEXT,))
    encoder = tiny_model(root / "model")
    report = index_archive(store, encoder, chunk_size=10, progress=False)
    assert len(report.embedded) == N and not report.failed
    store.close()
    return root / "archive", root / "model"


@pytest.fixture()
def writable(indexed, tmp_path):
    """A private copy of the indexed archive (for tests that write to it)."""
    archive, model = indexed
    shutil.copytree(archive, tmp_path / "archive")
    return tmp_path / "archive", model


@pytest.fixture(scope="module")
def engine(indexed):
    archive, model = indexed
    return SearchEngine(archive, model)


def stored_query(engine: SearchEngine, case_id: str):
    case = engine.store.get(case_id)
    study = engine.store.load_study(case)
    return study, engine.store.load_mask(case, study), case


def test_image_query_finds_the_case_itself_first(engine):
    study, mask, case = stored_query(engine, "OV0005")
    result = engine.search(study=study, mask=mask, k=3)
    top = result.hits[0]
    assert top.case_id == "OV0005" and top.image_score == pytest.approx(1.0, abs=1e-4)
    assert top.text_score is None and result.mode == "image"
    assert top.label == case.label and top.terms == case.terms
    impression = case.report.split("Impression:")[1].split()
    assert top.report_snippet.split()[: len(impression)] == impression  # the impression comes first
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert result.query_terms and all(t in engine.term_names for t in result.query_terms)
    assert all(t in result.query_terms and t in top.terms for t in top.shared_terms)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_fused_and_text_queries_combine_the_similarities(engine):
    study, mask, case = stored_query(engine, "OV0007")
    fused = engine.search(study=study, mask=mask, text=case.text, k=N, text_weight=0.4)
    assert fused.mode == "fused" and fused.hits[0].case_id == "OV0007"
    # hybrid text part (normalised fusion): (1 - l) cos_text + l * bm25 / best bm25 (all cases are candidates)
    lam = engine.hybrid.lexical_weight
    assert engine.hybrid.method == "normalised" and 0 < lam < 1
    top_lex = max(h.lexical_score for h in fused.hits)
    assert top_lex > 0
    for h in fused.hits:
        text_part = (1 - lam) * h.text_score + lam * h.lexical_score / top_lex
        assert h.score == pytest.approx(0.6 * h.image_score + 0.4 * text_part, abs=1e-5)
    assert "solid:present" in engine.search(text="Solid tissue present, ascites.", k=1).query_terms
    text_only = engine.search(text=case.text, k=N)
    assert text_only.mode == "text" and text_only.hits[0].image_score is None
    top_lex = max(h.lexical_score for h in text_only.hits)
    for h in text_only.hits:
        assert h.score == pytest.approx((1 - lam) * h.text_score + lam * h.lexical_score / top_lex, abs=1e-5)
    # embeddings only: the plain weighted sum of the two cosines
    dense = SearchEngine(
        engine.store.archive_dir, encoder=engine.encoder, hybrid=HybridConfig(method="dense")
    )
    plain = dense.search(study=study, mask=mask, text=case.text, k=N, text_weight=0.4)
    for h in plain.hits:
        assert h.score == pytest.approx(0.6 * h.image_score + 0.4 * h.text_score, abs=1e-5)
    assert dense.search(text=case.text, k=1).hits[0].score == pytest.approx(text_only.hits[0].text_score)
    # a case without text is still ranked (its image stands in), and flagged
    no_text = {h.case_id: h for h in fused.hits}[NO_TEXT]
    assert not no_text.has_text and all(h.has_text for h in fused.hits if h.case_id != NO_TEXT)


def test_k_larger_than_archive_returns_every_case(engine):
    result = engine.search(text="ovarian mass", k=100)
    assert len(result.hits) == N and len({h.case_id for h in result.hits}) == N


def test_filters_label_terms_sequences(engine):
    study, mask, _ = stored_query(engine, "OV0001")
    by_label = engine.search(study=study, mask=mask, k=10, label="fibroma")
    assert len(by_label.hits) == 4 and {h.label for h in by_label.hits} == {"fibroma"}
    wanted = ["locularity:multilocular", "septations:thin"]
    by_terms = engine.search(study=study, mask=mask, k=10, terms=wanted)
    expected = {c.case_id for c in engine.store.list_cases() if set(wanted) <= set(c.terms)}
    assert expected and {h.case_id for h in by_terms.hits} == expected
    assert engine.search(study=study, mask=mask, k=10, sequences=["DWI"]).hits == []


def test_refine_moves_relevant_cases_up_and_logs_feedback(writable):
    archive, model = writable
    engine = SearchEngine(archive, model)
    study, mask, _ = stored_query(engine, "OV0001")
    first = engine.search(study=study, mask=mask, text="unilocular cyst", k=N)
    relevant = [first.hits[-1].case_id]  # the last-ranked case
    refined = engine.refine(first, relevant, [first.hits[1].case_id])
    new_rank = {h.case_id: h.rank for h in refined.hits}[relevant[0]]
    assert new_rank < N
    assert refined.refined == 1 and refined.query_id == first.query_id
    # a strong beta makes the relevant case the query
    engine.feedback = RocchioConfig(alpha=1.0, beta=20.0, gamma=0.0)
    assert engine.refine(first, relevant, [], log_feedback=False).hits[0].case_id == relevant[0]
    log = engine.store.feedback_log()
    assert log[-1]["query_id"] == first.query_id and log[-1]["relevant"] == relevant
    with pytest.raises(CaseInputError, match="not in the index"):
        engine.refine(first, ["no-such-case"], [])


def test_saved_query_round_trip(engine, tmp_path):
    study, mask, case = stored_query(engine, "OV0002")
    result = engine.search(study=study, mask=mask, text=case.text, k=5)
    result.save_query(tmp_path / "q.npz")
    with np.load(tmp_path / "q.npz", allow_pickle=False) as data:
        assert data["image"].dtype == np.float32 and data["image"].shape == (engine.index.dim,)
    again = engine.search_saved(load_query(tmp_path / "q.npz"))
    assert again.ids() == result.ids()
    assert [h.score for h in again.hits] == pytest.approx([h.score for h in result.hits], abs=1e-6)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CaseInputError):
        load_query(tmp_path / "bad.npz")


def test_add_case_is_searchable_at_once_and_survives_reopen(writable):
    archive, model = writable
    engine = SearchEngine(archive, model)
    case = make_case(archive / "images", "annotated", 1, np.random.default_rng(5))
    study = read_study(case.sequences)
    mask = read_mask(case.mask, study.reference_image)
    engine.add_case(case, study, mask)
    assert engine.search(study=study, mask=mask, k=1).hits[0].case_id == "annotated"
    assert "annotated" in engine.store and len(engine.index) == N + 1
    reopened = SearchEngine(archive, model)
    assert reopened.index.status == "loaded" and "annotated" in reopened.index
    # a case that cannot be embedded is not stored either
    bad = make_case(archive / "images", "bad", 0, np.random.default_rng(6))
    empty = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(mask)
    with pytest.raises(CaseInputError):
        engine.add_case(bad, study, empty)
    assert "bad" not in engine.store


def test_query_geometry_mismatch_is_a_clear_error(engine, tmp_path):
    paths, mask_path = write_study(tmp_path, "q", 0, np.random.default_rng(3))
    study = read_study(paths)
    far = sitk.ReadImage(mask_path)
    far.SetOrigin((500.0, 500.0, 500.0))  # does not overlap the study
    with pytest.raises(CaseInputError, match="overlap"):
        engine.search(study=study, mask=far)
    flat = sitk.Image(16, 16, sitk.sitkUInt8)  # 2D mask for a 3D study
    with pytest.raises(CaseInputError):
        engine.search(study=study, mask=flat)
    with pytest.raises(CaseInputError, match="empty query"):
        engine.search(text="   ")


def test_query_from_manifest_row(engine, tmp_path):
    case = make_case(tmp_path, "q1", 2, np.random.default_rng(9))
    study, mask, text = read_query(case)
    result = engine.search(study=study, mask=mask, text=text, k=4)
    assert len(result.hits) == 4


def test_other_model_version_asks_for_reindex_or_reembeds(writable, tmp_path):
    archive, _ = writable
    other = tiny_model(tmp_path / "other", seed=1, name="other")
    with pytest.raises(CaseInputError, match="similar-cases index"):
        SearchEngine(archive, tmp_path / "other")
    engine = SearchEngine(archive, tmp_path / "other", auto_index=True)
    assert len(engine.index) == N and engine.index.model_version == other.version
    versions = engine.store.model_versions()
    assert len(versions) == 2 and versions[other.version] == N  # the old embeddings are kept


def test_empty_or_missing_archive_is_a_clear_error(indexed, tmp_path):
    _, model = indexed
    CaseStore(tmp_path / "empty").close()
    with pytest.raises(CaseInputError, match="no cases"):
        SearchEngine(tmp_path / "empty", model)
    with pytest.raises(CaseInputError, match="cases.sqlite"):
        SearchEngine(tmp_path / "nowhere", model)


def test_hit_without_annotated_terms_shows_its_predicted_terms(writable):
    archive, model = writable
    store = CaseStore(archive)
    case = store.get("OV0006")
    case.terms = []
    store.update(case)
    engine = SearchEngine(archive, model)
    study, mask, _ = stored_query(engine, "OV0006")
    hit = engine.search(study=study, mask=mask, k=1).hits[0]
    predicted = store.get_predicted_terms(engine.version)["OV0006"]
    assert hit.case_id == "OV0006"
    assert hit.terms and set(hit.terms) == {t for t, p in predicted.items() if p > 0.5}
