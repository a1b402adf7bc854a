"""Rocchio relevance feedback in embedding space."""

from __future__ import annotations

import numpy as np
import pytest
from SimilarCaseRetrievalLib.feedback import RocchioConfig, rocchio


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_query_moves_towards_relevant_and_away_from_not_relevant():
    rng = np.random.default_rng(0)
    q = unit(rng.standard_normal(8))
    relevant = unit(rng.standard_normal((3, 8)))
    not_relevant = unit(rng.standard_normal((2, 8)))
    refined = rocchio(q, relevant, not_relevant)
    assert np.linalg.norm(refined) == pytest.approx(1.0, abs=1e-6)
    centre, anti = relevant.mean(axis=0), not_relevant.mean(axis=0)
    assert refined @ centre > q @ centre
    assert refined @ anti < q @ anti


def test_weights_are_configurable():
    q = unit([1.0, 0.0, 0.0])
    relevant = unit([[0.0, 1.0, 0.0]])
    empty = np.zeros((0, 3), np.float32)
    assert np.allclose(rocchio(q, relevant, empty, RocchioConfig(beta=0.0)), q)
    assert np.allclose(rocchio(q, relevant, empty, RocchioConfig(alpha=0.0, beta=1.0)), relevant[0])
    halfway = rocchio(q, relevant, empty, RocchioConfig(alpha=1.0, beta=1.0))
    assert np.allclose(halfway, unit([1.0, 1.0, 0.0]), atol=1e-6)


def test_missing_query_is_defined_by_relevant_cases_and_cancelling_keeps_query():
    relevant = unit([[0.0, 0.0, 2.0]])
    empty = np.zeros((0, 3), np.float32)
    assert np.allclose(rocchio(None, relevant, empty), relevant[0])
    assert rocchio(None, empty, empty) is None
    q = unit([1.0, 0.0, 0.0])
    cancelled = rocchio(q, empty, q[None], RocchioConfig(alpha=1.0, gamma=1.0))
    assert np.allclose(cancelled, q)
