"""Retrieval metrics (through ranx), relevance grades, self-exclusion, bootstrap, grouped folds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from SimilarCaseRetrievalLib.evaluation.metrics import (
    Ranking,
    evaluate_ranking,
    evaluate_scores,
    relevance_grades,
    self_mask,
)
from SimilarCaseRetrievalLib.evaluation.splits import grouped_folds, train_test_split_grouped


def _scores_from_order(order: list[int], n: int) -> np.ndarray:
    """A (1, n) score row whose ranking is `order` (first = best)."""
    s = np.zeros((1, n))
    for rank, j in enumerate(order):
        s[0, j] = n - rank
    return s


def test_perfect_ranking_scores_one():
    labels = ["a"] * 3 + ["b"] * 5
    qlabels = ["a"]
    scores = _scores_from_order([0, 1, 2, 3, 4, 5, 6, 7], 8)
    res, _ = evaluate_scores(
        scores, ["q"], qlabels, [frozenset()], [f"d{i}" for i in range(8)], labels, [frozenset()] * 8, k=10
    )
    m = res.mean()
    assert m["map@10"] == pytest.approx(1.0)
    assert m["precision@1"] == pytest.approx(1.0)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(3 / 5)


def test_known_permutation_matches_the_definitions():
    # Relevant cases 2 and 5 (of 8) retrieved at ranks 1 and 3; the rest is irrelevant.
    labels = ["b", "b", "a", "b", "b", "a", "b", "b"]
    order = [2, 0, 5, 1, 3, 4, 6, 7]
    res, _ = evaluate_scores(
        _scores_from_order(order, 8),
        ["q"],
        ["a"],
        [frozenset()],
        [f"d{i}" for i in range(8)],
        labels,
        [frozenset()] * 8,
        k=10,
    )
    m = res.mean()
    rel = [1 if labels[j] == "a" else 0 for j in order]
    ap = sum(sum(rel[: i + 1]) / (i + 1) for i in range(8) if rel[i]) / sum(rel)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
    idcg = sum(1 / math.log2(i + 2) for i in range(sum(rel)))
    assert m["map@10"] == pytest.approx(ap)  # (1/1 + 2/3) / 2
    assert m["precision@1"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["precision@10"] == pytest.approx(2 / 10)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)


def test_map_at_k_is_normalised_by_min_of_relevant_and_k():
    # 20 relevant, the top 10 all relevant: a perfect top-10, mAP@10 = 1 (ranx's TREC value would be 0.5).
    n = 30
    labels = ["a"] * 20 + ["b"] * 10
    res, _ = evaluate_scores(
        _scores_from_order(list(range(n)), n),
        ["q"],
        ["a"],
        [frozenset()],
        [f"d{i}" for i in range(n)],
        labels,
        [frozenset()] * n,
        k=10,
    )
    assert res.mean()["map@10"] == pytest.approx(1.0)
    assert res.extra["map@10_trec"] == pytest.approx(0.5)
    assert res.mean()["recall@10"] == pytest.approx(0.5)


def test_graded_relevance_counts_shared_terms():
    g = relevance_grades(
        ["a"],
        [frozenset({"t1", "t2"})],
        ["a", "a", "b"],
        [frozenset({"t1", "t2", "t3"}), frozenset(), frozenset({"t1"})],
    )
    assert g.tolist() == [[3, 1, 0]]
    g_terms = relevance_grades(
        ["x"],
        [frozenset({"t1", "t2"})],
        ["y", "z"],
        [frozenset({"t2"}), frozenset({"t9"})],
        relevance="terms",
    )
    assert g_terms.tolist() == [[1, 0]]


def test_graded_ndcg_prefers_the_higher_grade_first():
    labels = ["a", "a", "b"]
    terms = [frozenset({"t"}), frozenset(), frozenset()]
    common = (["q"], ["a"], [frozenset({"t"})], ["d0", "d1", "d2"], labels, terms)
    good, _ = evaluate_scores(_scores_from_order([0, 1, 2], 3), *common, k=10)
    worse, _ = evaluate_scores(_scores_from_order([1, 0, 2], 3), *common, k=10)
    assert good.mean()["ndcg@10"] == pytest.approx(1.0)
    # Binary metrics are equal, graded nDCG is not: DCG = 1 + 2/log2(3) vs ideal 2 + 1/log2(3).
    assert worse.mean()["precision@5"] == good.mean()["precision@5"]
    assert worse.mean()["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))


def test_query_is_never_in_its_own_results():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(12, 4))
    ids = [f"c{i}" for i in range(12)]
    labels = ["a", "b"] * 6
    res, ranking = evaluate_scores(
        vecs @ vecs.T, ids, labels, [frozenset()] * 12, ids, labels, [frozenset()] * 12, k=5
    )
    for q in range(12):
        returned = [j for j, ok in zip(ranking.order[q], ranking.valid[q], strict=False) if ok]
        assert q not in returned
        assert len(returned) == 5
    assert res.n_queries == 12
    assert self_mask(["c1", "zz"], ids).sum() == 1


def test_queries_without_relevant_cases_are_left_out():
    res, _ = evaluate_scores(
        np.ones((2, 3)),
        ["q1", "q2"],
        ["a", "z"],
        [frozenset()] * 2,
        ["d0", "d1", "d2"],
        ["a", "b", "b"],
        [frozenset()] * 3,
        k=10,
    )
    assert res.n_queries == 1
    assert res.n_without_relevant == 1


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    n = 40
    labels = rng.choice(["a", "b", "c"], size=n).tolist()
    vecs = rng.normal(size=(n, 8))
    ids = [f"c{i}" for i in range(n)]
    res, _ = evaluate_scores(
        vecs @ vecs.T, ids, labels, [frozenset()] * n, ids, labels, [frozenset()] * n, k=10
    )
    ci1, ci2, ci3 = res.bootstrap(seed=3), res.bootstrap(seed=3), res.bootstrap(seed=4)
    mean = res.mean()
    for m, (lo, hi) in ci1.items():
        assert lo <= mean[m] <= hi
    assert ci1 == ci2
    assert ci1 != ci3
    per_class = res.per_class()
    assert sum(v["n"] for v in per_class.values()) == res.n_queries


def test_ranking_padding_when_fewer_cases_than_k():
    ranking = Ranking.from_scores(np.array([[0.1, 0.9, 0.5]]), 5, np.array([[False, True, False]]))
    kept = [int(j) for j, ok in zip(ranking.order[0], ranking.valid[0], strict=False) if ok]
    assert kept == [2, 0]
    res = evaluate_ranking(
        ranking, np.array([[1, 1, 0]]), ["a"], k=5, exclude=np.array([[False, True, False]])
    )
    # Only case 0 is relevant once case 1 (excluded) is removed from the judgements; it is at rank 2.
    assert res.mean()["map@5"] == pytest.approx(0.5)


def test_grouped_folds_never_split_a_patient():
    rng = np.random.default_rng(2)
    groups = [f"p{int(v)}" for v in rng.integers(0, 17, size=60)]
    folds = grouped_folds(groups, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(60))
    owner = {}
    for f, fold in enumerate(folds):
        for i in fold:
            assert owner.setdefault(groups[i], f) == f
    assert min(len(f) for f in folds) > 0
    train, test = train_test_split_grouped(groups, 0.25, seed=0)
    assert not {groups[i] for i in train} & {groups[i] for i in test}
    with pytest.raises(ValueError):
        grouped_folds(["p1", "p1", "p2"], 5)


def test_fusion_gain_is_fused_minus_the_best_single_modality_with_a_paired_interval():
    from SimilarCaseRetrievalLib.evaluation.metrics import EvalResult
    from SimilarCaseRetrievalLib.evaluation.runner import MethodReport, fusion_gain

    rng = np.random.default_rng(0)
    image = rng.uniform(0.3, 0.9, 200)
    text = image - 0.2  # worse than image on every query
    fused = image + rng.uniform(0.0, 0.1, 200)  # never worse than image

    def report(name, values):
        per_query = {"map@10": values, "precision@1": values}
        return MethodReport(name, EvalResult(["map@10", "precision@1"], per_query, ["a"] * 200))

    reports = {
        n: report(n, v) for n, v in (("ours-image", image), ("ours-text", text), ("ours-fused", fused))
    }
    gain = fusion_gain(reports, n_boot=200)
    assert gain["versus"] == "ours-image"
    assert gain["gain"]["map@10"] == pytest.approx(float(np.mean(fused - image)))
    lo, hi = gain["gain_ci95"]["map@10"]
    assert 0 < lo < gain["gain"]["map@10"] < hi
    assert fusion_gain({"ours-image": reports["ours-image"]}) is None
