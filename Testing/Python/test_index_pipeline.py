"""index_archive's pipeline: reader threads / processes and the sentence cache give the sequential results."""

from __future__ import annotations

import numpy as np
import pytest
from search_helpers import copy_archive, tiny_model
from SimilarCaseRetrievalLib.encoders.text import CACHE_NAME, SentenceCache
from SimilarCaseRetrievalLib.indexer import case_roi, index_archive, index_dir


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


def _embeddings(store, version: str) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for kind in ("image", "text", "fused"):
        ids, vectors = store.get_embeddings(version, kind)
        out[kind] = dict(zip(ids, vectors, strict=True))
    return out


def test_reader_processes_and_threads_give_the_sequential_embeddings(tmp_path, encoder, tiny_archive):
    # reference: every case read and encoded one at a time, no pipeline, no cache
    ref_store = copy_archive(tiny_archive, tmp_path / "ref", no_text=("OV0004",))
    ids = ref_store.ids()
    rois = np.stack([case_roi(ref_store, encoder, ref_store.get(i)) for i in ids])
    ref_image = dict(zip(ids, encoder.encode_rois(rois), strict=True))
    ref_text = {
        i: v for i, v in zip(ids, encoder.encode_texts([ref_store.get(i).text for i in ids]), strict=True)
    }

    for name, processes in (("threads", False), ("processes", True)):
        store = copy_archive(tiny_archive, tmp_path / name, no_text=("OV0004",))
        report = index_archive(
            store,
            encoder,
            chunk_size=5,
            readers=3,
            reader_processes=processes,
            text_cache=False,
            progress=False,
        )
        assert sorted(report.embedded) == sorted(ids) and not report.failed, name
        got = _embeddings(store, encoder.version)
        assert set(got["image"]) == set(ids) and set(got["text"]) == set(ids) - {"OV0004"}, name
        for i in ids:  # same case -> same vectors, whatever thread or process read it, in chunk order
            assert np.allclose(got["image"][i], ref_image[i], atol=1e-5), (name, i)
            if i != "OV0004":
                assert np.allclose(got["text"][i], ref_text[i], atol=1e-4), (name, i)


def test_reader_process_failures_are_reported_per_case(tmp_path, encoder, tiny_archive):
    store = copy_archive(tiny_archive, tmp_path / "a")
    case = store.get("OV0006")
    (tmp_path / "a" / store.relative(store.resolve(case.sequences["T2"]))).write_bytes(b"not a volume")
    report = index_archive(store, encoder, chunk_size=4, reader_processes=True, progress=False)
    assert set(report.failed) == {"OV0006"} and "OV0006" not in report.embedded
    assert report.indexed == len(store) - 1


def test_sentence_cache_is_reused_and_gives_the_same_text_embeddings(tmp_path, encoder, tiny_archive):
    store = copy_archive(tiny_archive, tmp_path / "a")
    index_archive(store, encoder, chunk_size=8, progress=False)
    cache_file = index_dir(store) / CACHE_NAME
    assert cache_file.is_file()
    first = _embeddings(store, encoder.version)["text"]

    # a report edited meanwhile must be encoded afresh, not served from the cache
    case = store.get("OV0003")
    case.report = "Simple unilocular cyst, thin wall, no solid tissue."
    store.update(case)
    fresh = encoder.encode_texts([case.text])[0]
    again = index_archive(store, encoder, chunk_size=8, reembed=True, progress=False)
    assert sorted(again.embedded) == sorted(store.ids())
    second = _embeddings(store, encoder.version)["text"]
    assert np.allclose(second["OV0003"], fresh, atol=1e-4)
    assert not np.allclose(second["OV0003"], first["OV0003"], atol=1e-3)
    for i in first:
        if i != "OV0003":
            assert np.allclose(second[i], first[i], atol=1e-5), i


def test_a_corrupt_sentence_cache_is_replaced(tmp_path, encoder, tiny_archive):
    store = copy_archive(tiny_archive, tmp_path / "a")
    index_dir(store).mkdir(parents=True, exist_ok=True)
    (index_dir(store) / CACHE_NAME).write_bytes(b"garbage, not sqlite" * 100)
    report = index_archive(store, encoder, chunk_size=8, progress=False)
    assert sorted(report.embedded) == sorted(store.ids()) and not report.failed
    ids, text = store.get_embeddings(encoder.version, "text")
    expected = encoder.encode_texts([store.get(i).text for i in ids])
    assert np.allclose(text, expected, atol=1e-4)
    cache = SentenceCache(index_dir(store) / CACHE_NAME, "any")  # the file was replaced by a working cache
    cache.put(["a report"], np.ones((1, 3), np.float32))
    vectors, missing = cache.get(["a report", "another"], 3)
    cache.close()
    assert missing == [1] and np.array_equal(vectors[0], np.ones(3, np.float32))


def test_cli_rebuild_keeps_the_sentence_cache_and_readers_option_works(tmp_path, tiny_archive):
    from SimilarCaseRetrievalLib.cli import main

    model_dir = tmp_path / "model"
    tiny_model(model_dir)
    store = copy_archive(tiny_archive, tmp_path / "a")
    base = ["index", "--archive", str(tmp_path / "a"), "--model", str(model_dir), "--quiet"]
    assert main([*base, "--readers", "1"]) == 0
    cache = index_dir(store) / CACHE_NAME
    graphs = sorted(p.name for p in index_dir(store).glob("*.hnsw"))
    size = cache.stat().st_size
    assert cache.is_file() and graphs
    assert main([*base, "--rebuild", "--no-text-cache"]) == 0
    assert cache.is_file() and cache.stat().st_size == size  # the cache survived --rebuild untouched
    assert sorted(p.name for p in index_dir(store).glob("*.hnsw")) == graphs


def test_an_unloadable_text_model_stops_indexing_before_anything_is_stored(tmp_path, tiny_archive):
    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.errors import CaseInputError
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config

    config = tiny_model_config("no-text")
    config.text_model = str(tmp_path / "missing-text-model")  # e.g. a site model folder that was moved
    encoder = CaseEncoder.create(config)
    store = copy_archive(tiny_archive, tmp_path / "archive")
    with pytest.raises(CaseInputError, match="cannot load text model"):
        index_archive(store, encoder, progress=False, chunk_size=4)
    assert store.get_embeddings(encoder.version, "fused")[0] == []  # no chunk half-committed
    # the same archive indexes once the model is fixed, and the report says what loading the text model cost
    encoder = CaseEncoder.create(tiny_model_config("text-ok"))
    report = index_archive(store, encoder, progress=False, chunk_size=4)
    assert len(report.embedded) == len(store) and 0.0 <= report.text_model_seconds <= report.seconds
    assert report.speed().startswith(f"{len(store)} case(s) in ")


def test_a_model_with_a_diagnosis_prior_indexes_and_searches_with_recorded_diagnoses(tmp_path, tiny_archive):
    """Image vectors grow by one entry per diagnosis (the archive case's recorded one), texts stay zero there;
    the index and the search engine take the larger vectors."""
    import dataclasses

    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.search import SearchEngine
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config

    config = dataclasses.replace(tiny_model_config("prior"), label_prior_weight=0.5)
    CaseEncoder.create(config, seed=0).save(tmp_path / "model")
    encoder = CaseEncoder.load(tmp_path / "model")
    store = copy_archive(tiny_archive, tmp_path / "archive")
    report = index_archive(store, encoder, chunk_size=10, text_cache=False, progress=False)
    assert not report.failed
    got = _embeddings(store, encoder.version)
    dim, labels = config.embed_dim, config.labels
    for case_id, vector in got["image"].items():
        assert vector.shape == (encoder.vector_dim,) == (dim + len(labels),)
        expected = np.zeros(len(labels), np.float32)
        expected[labels.index(store.get(case_id).label)] = np.sqrt(0.5)
        np.testing.assert_allclose(vector[dim:], expected, atol=1e-6)
    assert all(not v[dim:].any() for v in got["text"].values())
    store.close()
    engine = SearchEngine(tmp_path / "archive", tmp_path / "model")
    case = engine.store.get("OV0005")
    study = engine.store.load_study(case)
    result = engine.search(study=study, mask=engine.store.load_mask(case, study), text=case.notes, k=3)
    assert len(result.hits) == 3 and result.mode == "fused"


def test_an_ensemble_model_indexes_and_searches(tmp_path, tiny_archive):
    """A model of two networks writes vectors of 2 x embed_dim (+ the prior) and its image query finds the case
    itself first, through the same index and search engine."""
    import dataclasses

    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.search import SearchEngine
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config

    config = dataclasses.replace(tiny_model_config("ensemble"), members=2, label_prior_weight=0.25)
    CaseEncoder.create(config, seed=0).save(tmp_path / "model")
    encoder = CaseEncoder.load(tmp_path / "model")
    assert encoder.config.members == 2
    store = copy_archive(tiny_archive, tmp_path / "archive")
    report = index_archive(store, encoder, chunk_size=10, text_cache=False, progress=False)
    assert not report.failed
    got = _embeddings(store, encoder.version)
    dim = 2 * config.embed_dim + len(config.labels)
    assert {v.shape for v in got["image"].values()} == {(dim,)} == {v.shape for v in got["text"].values()}
    store.close()
    engine = SearchEngine(tmp_path / "archive", tmp_path / "model")
    case = engine.store.get("OV0005")
    study = engine.store.load_study(case)
    result = engine.search(study=study, mask=engine.store.load_mask(case, study), k=3)
    assert result.hits[0].case_id == "OV0005"
