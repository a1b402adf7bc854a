"""ArchiveIndex: exact and hnswlib search, fused scoring, persistence, mismatch detection (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from SimilarCaseRetrievalLib.index import SIDECAR, ArchiveIndex, IndexConfig, fuse

DIM = 16


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIM))
    which = rng.integers(0, 8, n)
    image = unit(centres[which] + 0.4 * rng.standard_normal((n, DIM)))
    text = unit(centres[which] + 0.6 * rng.standard_normal((n, DIM)))
    return [f"c{i:04d}" for i in range(n)], image, text


def brute(image, text, q_img, q_txt, w):
    score = (1 - w) * (image @ unit(q_img)) + w * (text @ unit(q_txt))
    return np.argsort(-score, kind="stable"), score


@pytest.mark.parametrize("w", [0.0, 0.3, 0.8, 1.0])
def test_fused_ranking_is_exact_for_any_weight(tmp_path, w):
    ids, image, text = clustered(300)
    index = ArchiveIndex.open(tmp_path, "v1", ids, fuse(image, text), IndexConfig(exact_threshold=10_000))
    rng = np.random.default_rng(1)
    q_img, q_txt = rng.standard_normal(DIM), rng.standard_normal(DIM)
    hits = index.search(q_img, q_txt, text_weight=w, k=10)
    order, score = brute(image, text, q_img, q_txt, w)
    assert [h.case_id for h in hits] == [ids[i] for i in order[:10]]
    assert hits[0].score == pytest.approx(float(score[order[0]]), abs=1e-5)
    assert hits[0].image_score == pytest.approx(float(image[order[0]] @ unit(q_img)), abs=1e-5)


def test_hnsw_agrees_with_exact_and_keeps_exact_scores(tmp_path):
    ids, image, text = clustered(2000)
    fused = fuse(image, text)
    exact = ArchiveIndex.open(tmp_path / "a", "v1", ids, fused, IndexConfig(exact_threshold=10**9))
    ann = ArchiveIndex.open(tmp_path / "b", "v1", ids, fused, IndexConfig(exact_threshold=0))
    rng = np.random.default_rng(2)
    overlap = []
    for _ in range(20):
        q_img, q_txt = image[rng.integers(2000)] + 0.2 * rng.standard_normal(DIM), rng.standard_normal(DIM)
        a = exact.search(q_img, q_txt, text_weight=0.3, k=10)
        b = ann.search(q_img, q_txt, text_weight=0.3, k=10)
        overlap.append(len({h.case_id for h in a} & {h.case_id for h in b}) / 10)
        # whatever the candidates, scores are rescored exactly
        for h in b:
            i = ids.index(h.case_id)
            assert h.score == pytest.approx(
                0.7 * image[i] @ unit(q_img) + 0.3 * text[i] @ unit(q_txt), abs=1e-5
            )
    assert np.mean(overlap) >= 0.95


@pytest.mark.parametrize("threshold", [0, 10**6])
def test_filter_and_k_larger_than_archive(tmp_path, threshold):
    ids, image, text = clustered(50)
    index = ArchiveIndex.open(tmp_path, "v1", ids, fuse(image, text), IndexConfig(exact_threshold=threshold))
    everything = index.search(image[0], None, k=500)
    assert sorted(h.case_id for h in everything) == sorted(ids)
    assert everything[0].case_id == ids[0]
    allowed = set(ids[10:15])
    hits = index.search(image[0], text[0], k=10, allowed=allowed)
    assert {h.case_id for h in hits} == allowed


def test_case_without_text_uses_its_image_embedding(tmp_path):
    ids, image, text = clustered(20)
    text[3] = np.nan  # no report, no notes
    index = ArchiveIndex.open(tmp_path, "v1", ids, fuse(image, text))
    assert not index.has_text(ids[3]) and index.has_text(ids[4])
    hits = index.search(None, image[3], k=1)  # a text query close to case 3's image
    assert hits[0].case_id == ids[3] and not hits[0].has_text
    assert hits[0].text_score == pytest.approx(1.0, abs=1e-5)


def test_reopen_loads_saved_graphs_then_follows_the_store(tmp_path):
    ids, image, text = clustered(100)
    fused = fuse(image, text)
    config = IndexConfig(exact_threshold=0)
    assert ArchiveIndex.open(tmp_path, "v1", ids, fused, config).status == "rebuilt"
    again = ArchiveIndex.open(tmp_path, "v1", ids, fused, config)
    assert again.status == "loaded" and len(again) == 100
    assert again.search(image[7], None, k=1)[0].case_id == ids[7]

    # the store lost two cases and gained one: the saved index is updated, not trusted blindly
    new_ids = [i for i in ids if i not in ("c0007", "c0008")] + ["new"]
    new_fused = np.concatenate([fused[[ids.index(i) for i in new_ids[:-1]]], fuse(image[7], text[7])])
    updated = ArchiveIndex.open(tmp_path, "v1", new_ids, new_fused, config)
    assert updated.status == "updated" and len(updated) == 99
    assert updated.search(image[7], None, k=1)[0].case_id == "new"
    sidecar = json.loads((tmp_path / SIDECAR).read_text(encoding="utf-8"))
    assert sidecar["count"] == 99 and "c0007" not in sidecar["labels"]


def test_mismatched_or_corrupt_index_is_rebuilt(tmp_path):
    ids, image, text = clustered(60)
    fused = fuse(image, text)
    ArchiveIndex.open(tmp_path, "v1", ids, fused)
    assert ArchiveIndex.open(tmp_path, "v2", ids, fused).status == "rebuilt"  # other model version
    graph = tmp_path / "fused.hnsw"
    graph.write_bytes(graph.read_bytes()[:100])  # torn write
    index = ArchiveIndex.open(tmp_path, "v2", ids, fused, IndexConfig(exact_threshold=0))
    assert index.status == "rebuilt"
    assert index.search(image[5], text[5], k=1)[0].case_id == ids[5]
    (tmp_path / SIDECAR).write_text("{not json", encoding="utf-8")
    assert ArchiveIndex.open(tmp_path, "v2", ids, fused).status == "rebuilt"


def test_many_removals_compact_the_graphs(tmp_path):
    ids, image, text = clustered(40)
    index = ArchiveIndex.open(tmp_path, "v1", ids, fuse(image, text), IndexConfig(exact_threshold=0))
    index.remove(ids[:5])
    assert index.deleted == 5 and len(index) == 35
    assert all(h.case_id not in ids[:5] for h in index.search(image[0], None, k=40))
    index.remove(ids[5:15])  # past the rebuild fraction
    assert index.deleted == 0 and len(index) == 25
    assert index.search(image[20], None, k=1)[0].case_id == ids[20]


def test_rebuild_after_reembedding_uses_the_new_vectors(tmp_path):
    ids, image, text = clustered(300)
    config = IndexConfig(exact_threshold=0)
    ArchiveIndex.open(tmp_path, "v1", ids, fuse(image, text), config)
    moved = image.copy()
    moved[42] = unit(np.ones(DIM))  # the case was re-embedded (e.g. its segment was corrected)
    index = ArchiveIndex.open(tmp_path, "v1", ids, fuse(moved, text), config, rebuild=True)
    assert index.status == "rebuilt"
    assert index.search(np.ones(DIM), None, k=1)[0].case_id == ids[42]
