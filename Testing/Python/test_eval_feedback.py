"""Simulated relevance feedback on the residual collection."""

from __future__ import annotations

import numpy as np
from SimilarCaseRetrievalLib.evaluation.feedback_sim import simulate_feedback
from SimilarCaseRetrievalLib.evaluation.metrics import relevance_grades, self_mask


def _clusters(n_per=15, dim=6, seed=0, noise=1.2):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 2
    labels = np.repeat(["a", "b", "c"], n_per)
    vecs = centres[np.repeat(np.arange(3), n_per)] + rng.normal(scale=noise, size=(3 * n_per, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32), labels.tolist()


def test_residual_collection_removes_everything_shown():
    vecs, labels = _clusters()
    ids = [f"c{i}" for i in range(len(labels))]
    grades = relevance_grades(labels, [frozenset()] * len(ids), labels, [frozenset()] * len(ids))
    exclude = self_mask(ids, ids)
    rounds = simulate_feedback(vecs, vecs, grades, labels, exclude, rounds=2, shown=5, k=10)
    assert [r.round for r in rounds] == [1, 2]
    # Each round hides 5 more cases per query, on top of the query itself.
    assert (rounds[0].removed.sum(axis=1) == 6).all()
    assert (rounds[1].removed.sum(axis=1) == 11).all()
    for r in rounds:
        for q in range(len(ids)):
            returned = [j for j, ok in zip(r.ranking.order[q], r.ranking.valid[q], strict=False) if ok]
            assert not r.removed[q, returned].any()
        # Same queries scored before and after feedback (paired comparison).
        assert r.initial.n_queries == r.feedback.n_queries


def test_feedback_helps_on_noisy_clusters():
    vecs, labels = _clusters(n_per=30, noise=1.6, seed=3)
    ids = [f"c{i}" for i in range(len(labels))]
    grades = relevance_grades(labels, [frozenset()] * len(ids), labels, [frozenset()] * len(ids))
    rounds = simulate_feedback(vecs, vecs, grades, labels, self_mask(ids, ids), rounds=1, shown=10, k=10)
    gain = rounds[0].gain()
    assert gain["precision@10"] > 0
