"""Hybrid scoring maths (normalised and reciprocal-rank fusion), the per-archive weight choice, and lexical
candidates joining the ANN candidates of the index."""

from __future__ import annotations

import numpy as np
import pytest
from SimilarCaseRetrievalLib.index import ArchiveIndex, IndexConfig, fuse
from SimilarCaseRetrievalLib.lexical import HybridConfig, fuse_scores, normalised_fusion, rrf_fusion
from SimilarCaseRetrievalLib.lexical.calibrate import BACKBONE_WEIGHTS, LAMBDAS, choose_weight, map_at_k


def test_normalised_fusion_by_hand():
    dense = np.array([0.5, 0.2, 0.9])
    lexical = np.array([2.0, 0.0, 4.0])  # divided by the best (4)
    assert normalised_fusion(dense, lexical, 0.5) == pytest.approx([0.5, 0.1, 0.95])
    # rows are queries: each row is normalised by its own best BM25 (a row without matches: dense only)
    both = normalised_fusion(np.array([[0.5, 0.2], [0.1, 0.3]]), np.array([[1.0, 3.0], [0.0, 0.0]]), 0.25)
    assert both == pytest.approx(np.array([[0.375 + 0.25 / 3, 0.15 + 0.25], [0.075, 0.225]]))


def test_rrf_by_hand():
    a = np.array([0.9, 0.1, 0.5])  # ranks 1, 3, 2
    b = np.array([0.0, 2.0, 1.0])  # ranks 3, 1, 2 ; the first is absent from list b
    got = rrf_fusion([a, b], [0.4, 0.6], k=10, present=[None, b > 0])
    assert got == pytest.approx([0.4 / 11, 0.4 / 13 + 0.6 / 11, 0.4 / 12 + 0.6 / 12])


def test_fuse_scores_cases():
    img, txt, lex = np.array([0.8, 0.6, 0.1]), np.array([0.2, 0.4, 0.9]), np.array([0.0, 5.0, 10.0])
    cfg = HybridConfig(method="normalised", lexical_weight=0.4)
    # no lexical side (None, all zero, or dense method): the plain weighted sum of the cosines
    plain = 0.7 * img + 0.3 * txt
    assert fuse_scores(img, txt, None, 0.3, cfg) == pytest.approx(plain)
    assert fuse_scores(img, txt, np.zeros(3), 0.3, cfg) == pytest.approx(plain)
    assert fuse_scores(img, txt, lex, 0.3, HybridConfig(method="dense")) == pytest.approx(plain)
    # text-only query: w is 1 whatever is passed
    assert fuse_scores(None, txt, lex, 0.3, cfg) == pytest.approx(0.6 * txt + 0.4 * lex / 10)
    # fused: the text part is the hybrid one
    assert fuse_scores(img, txt, lex, 0.3, cfg) == pytest.approx(
        0.7 * img + 0.3 * (0.6 * txt + 0.4 * lex / 10)
    )
    # rrf with an image: three rank lists, weights (1 - w), w (1 - l), w l; k = 60
    r = fuse_scores(img, txt, lex, 0.5, HybridConfig(method="rrf", lexical_weight=0.4))
    expected = [
        0.5 / 61 + 0.3 / 63,  # image rank 1, text rank 3, no word
        0.5 / 62 + 0.3 / 62 + 0.2 / 62,
        0.5 / 63 + 0.3 / 61 + 0.2 / 61,
    ]
    assert r == pytest.approx(expected)
    with pytest.raises(ValueError):
        HybridConfig(method="max")
    with pytest.raises(ValueError):
        HybridConfig(lexical_weight=1.5)


def test_map_at_k_by_hand():
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    relevant = np.array([[True, False, True, False]])
    assert map_at_k(scores, relevant, k=2) == pytest.approx(1.0 / 2)  # (1/1 + 0) / min(2, 2)
    assert map_at_k(scores, relevant, k=3) == pytest.approx((1.0 + 2 / 3) / 2)


def test_choose_weight_follows_whichever_side_ranks_better():
    rng = np.random.default_rng(0)
    n = 40
    labels = np.arange(n) % 4
    relevant = labels[:, None] == labels[None, :]
    informative = relevant * 1.0 + rng.random((n, n)) * 0.1
    noise = rng.random((n, n))
    exclude = np.eye(n, dtype=bool)
    words, table = choose_weight(noise, informative * 5.0, relevant, exclude)
    assert words.lexical_weight > 0 and table[f"0.0/{words.lexical_weight}"] > table["0.0/0.0"]
    dense, table = choose_weight(informative, noise * 5.0, relevant, exclude)
    assert dense.lexical_weight == 0.0 and table["0.0/0.0"] == max(table.values())
    # a projection that ranks worse than its backbone: the backbone's cosine takes over
    blend, table = choose_weight(noise, noise * 5.0, relevant, exclude, backbone=informative)
    assert blend.backbone_weight > 0 and len(table) == len(BACKBONE_WEIGHTS) * len(LAMBDAS)
    assert table[f"{blend.backbone_weight}/{blend.lexical_weight}"] > table["0.0/0.0"]
    kept, _ = choose_weight(informative, noise * 5.0, relevant, exclude, backbone=noise)
    assert kept.backbone_weight == 0.0


def test_backbone_blend_in_the_index(tmp_path):
    """Text similarity (1 - b) cos(projected) + b cos(backbone), for cases that have a backbone embedding."""
    rng = np.random.default_rng(2)
    n, dim, tdim = 20, 4, 6
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    image, text, back = unit(rng.random((n, dim))), unit(rng.random((n, dim))), unit(rng.random((n, tdim)))
    ids = [f"C{i}" for i in range(n)]
    index = ArchiveIndex.open(tmp_path, "v", ids, fuse(image, text))
    index.set_backbone(ids[:-1], back[:-1])  # the last case has none
    q, qb = text[3], back[3]
    hits = {
        s.case_id: s
        for s in index.search(None, q, k=n, backbone=qb, hybrid=HybridConfig(backbone_weight=0.25))
    }
    for i, cid in enumerate(ids[:-1]):
        expected = 0.75 * float(text[i] @ q) + 0.25 * float(back[i] @ qb)
        assert hits[cid].text_score == pytest.approx(expected, abs=2e-3)  # float16 backbone rows
    assert hits[ids[-1]].text_score == pytest.approx(float(text[-1] @ q), abs=1e-5)
    # added later without a backbone, or after a compaction, rows stay aligned
    index.add(["NEW"], fuse(image[:1], text[:1]))
    index.remove(ids[:8])  # > 25 % deleted: compaction
    again = {
        s.case_id: s
        for s in index.search(None, q, k=n, backbone=qb, hybrid=HybridConfig(backbone_weight=1.0))
    }
    assert again["C10"].text_score == pytest.approx(float(back[10] @ qb), abs=2e-3)
    assert again["NEW"].text_score == pytest.approx(float(text[0] @ q), abs=1e-5)


def test_lexical_cases_join_the_ann_candidates(tmp_path):
    """Above the exact threshold a case the embeddings rank last still comes first on a strong word match."""
    rng = np.random.default_rng(1)
    n, dim = 300, 8
    image = rng.standard_normal((n, dim)).astype(np.float32)
    text = rng.standard_normal((n, dim)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    ids = [f"C{i:03d}" for i in range(n)]
    index = ArchiveIndex.open(tmp_path, "v", ids, fuse(image, text), IndexConfig(exact_threshold=0))
    query = text[0]
    worst = ids[int(np.argmin(text @ query))]
    plain = index.search(None, query, k=3)
    assert worst not in [s.case_id for s in plain]
    hybrid = HybridConfig(lexical_weight=0.9)
    found = index.search(None, query, k=3, lexical={worst: 7.5, ids[5]: 1.0}, hybrid=hybrid)
    assert found[0].case_id == worst and found[0].lexical_score == 7.5
    # filtered out cases stay out even with a word match
    allowed = set(ids[:200]) - {worst}
    filtered = index.search(None, query, k=3, allowed=allowed, lexical={worst: 7.5}, hybrid=hybrid)
    assert worst not in [s.case_id for s in filtered]
