"""Hybrid text search through the one engine (SearchEngine): a word only one report has, the archive's own
lexical weight, and search without FTS5."""

from __future__ import annotations

import pytest
from search_helpers import copy_archive, tiny_model
from SimilarCaseRetrievalLib import store as store_module
from SimilarCaseRetrievalLib.indexer import index_archive
from SimilarCaseRetrievalLib.lexical import HybridConfig, calibrate, fts
from SimilarCaseRetrievalLib.search import SearchEngine

pytestmark = pytest.mark.skipif(not fts.available(), reason="this SQLite has no FTS5")

RARE = "OV0009"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_archive):
    """(archive, encoder): the tiny archive indexed with a random-init model; OV0009's report also says
    'pneumothorax' (after indexing: its embeddings do not know the word, only the lexical index does)."""
    root = tmp_path_factory.mktemp("lexical")
    store = copy_archive(tiny_archive, root / "archive")
    encoder = tiny_model(root / "model")
    index_archive(store, encoder, progress=False)
    case = store.get(RARE)
    case.report += " Incidental small apical pneumothorax."
    store.update(case)
    store.close()
    return root / "archive", encoder


def test_a_word_only_one_report_has_ranks_that_case_first(indexed):
    archive, encoder = indexed
    engine = SearchEngine(archive, encoder=encoder, hybrid=HybridConfig(lexical_weight=0.8))
    result = engine.search(text="pneumothorax", k=5)
    assert result.hits[0].case_id == RARE and result.hits[0].lexical_score > 0
    assert all(h.lexical_score == 0 for h in result.hits[1:])
    assert engine.store.matched_words("pneumothorax", RARE)["report"] == ["pneumothorax"]
    # the same query ranked by the embeddings alone does not know the word
    dense = SearchEngine(archive, encoder=encoder, hybrid=HybridConfig(method="dense"))
    assert all(h.lexical_score == 0 for h in dense.search(text="pneumothorax", k=24).hits)


def test_the_archive_weight_is_chosen_stored_and_used(indexed, monkeypatch):
    archive, encoder = indexed
    engine = SearchEngine(archive, encoder=encoder)
    assert engine.hybrid == HybridConfig()  # 24 cases: too few to choose, the default
    monkeypatch.setattr(calibrate, "MIN_CASES", 10)
    state = calibrate.calibrate_store(engine.store, encoder)
    assert state is not None and state["n_queries"] == 24
    # index_archive stored the backbone (sentence) embeddings, so both weights were chosen
    pairs = {f"{b}/{w}" for b in calibrate.BACKBONE_WEIGHTS for w in calibrate.LAMBDAS}
    assert set(state["map_at_10"]) == pairs
    chosen = HybridConfig(**state["config"])
    best = max(state["map_at_10"].values())
    assert state["map_at_10"][f"{chosen.backbone_weight}/{chosen.lexical_weight}"] == best
    assert SearchEngine(archive, encoder=encoder).hybrid == chosen  # read back from the store


def test_text_search_without_fts5_uses_the_embeddings(indexed, monkeypatch):
    archive, encoder = indexed
    monkeypatch.setattr(fts, "FTS_MODULE", "fts5_not_compiled_in")
    monkeypatch.setattr(store_module, "_NO_FTS_LOGGED", True)
    engine = SearchEngine(archive, encoder=encoder, hybrid=HybridConfig(lexical_weight=0.8))
    assert not engine.store.lexical_available
    result = engine.search(text="pneumothorax", k=24)
    assert len(result.hits) == 24 and all(h.lexical_score == 0 for h in result.hits)
    assert [h.score for h in result.hits] == pytest.approx([h.text_score for h in result.hits])


def test_the_engine_blends_in_the_stored_backbone_cosine(indexed):
    archive, encoder = indexed
    from SimilarCaseRetrievalLib.indexer import BACKBONE_KIND, embed_texts_and_backbone

    config = HybridConfig(lexical_weight=0.0, backbone_weight=1.0)
    engine = SearchEngine(archive, encoder=encoder, hybrid=config)
    query = "Unilocular cyst with thin smooth wall."
    hits = engine.search(text=query, k=24).hits
    ids, stored = engine.store.get_embeddings(encoder.version, BACKBONE_KIND)
    assert len(ids) == 24  # index_archive stored one per case with text
    _, q_backbone = embed_texts_and_backbone(encoder, [query])
    expected = dict(zip(ids, stored @ q_backbone[0], strict=True))
    for h in hits:
        assert h.text_score == pytest.approx(float(expected[h.case_id]), abs=2e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_indexing_chooses_the_weights_once_and_again_when_the_archive_grows(
    tmp_path, tiny_archive, monkeypatch
):
    store = copy_archive(tiny_archive, tmp_path / "archive")
    encoder = tiny_model(tmp_path / "model")
    monkeypatch.setattr(calibrate, "MIN_CASES", 10)
    later = ["OV0021", "OV0022", "OV0023", "OV0024"]
    for case_id in later:
        store.remove(case_id)
    index_archive(store, encoder, progress=False)
    assert store.hybrid_state(encoder.version)["n_cases"] == 20
    store.add(tiny_archive_case(tiny_archive, later[0]))
    index_archive(store, encoder, progress=False)  # 21 < 1.1 * 20: the weights are kept
    assert store.hybrid_state(encoder.version)["n_cases"] == 20
    for case_id in later[1:]:
        store.add(tiny_archive_case(tiny_archive, case_id))
    index_archive(store, encoder, progress=False)  # 24 >= 22: chosen again
    assert store.hybrid_state(encoder.version)["n_cases"] == 24


def tiny_archive_case(archive, case_id: str):
    from SimilarCaseRetrievalLib.store import CaseStore

    source = CaseStore(archive)
    try:
        case = source.get(case_id)
    finally:
        source.close()
    case.sequences = {n: str(archive / p) for n, p in case.sequences.items()}
    case.mask = str(archive / case.mask) if case.mask else None
    return case
