"""Active-learning strategies on hand-made embeddings and probabilities (no store, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from SimilarCaseRetrievalLib.annotation.strategies import (
    k_center_greedy,
    label_entropy,
    label_margin,
    select,
    term_entropy,
)
from SimilarCaseRetrievalLib.errors import CaseInputError


def unit(*rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


LABELLED = unit([1, 0, 0, 0])
# candidates: 0 close to the labelled case, 1 and 2 far in two directions, 3 next to 1
CANDIDATES = unit([1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.05, 1, 0.05, 0])


def test_uncertainty_measures_order_ties_above_confident_rows():
    probs = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]])
    assert label_margin(probs)[0] == pytest.approx(1.0)
    assert label_margin(probs)[1] == pytest.approx(0.15)
    assert label_entropy(probs)[2] == pytest.approx(1.0)
    assert label_entropy(probs)[1] < label_entropy(probs)[0] < label_entropy(probs)[2]
    terms = np.array([[0.5, 0.5], [0.99, 0.01]])
    assert term_entropy(terms)[0] == pytest.approx(1.0)
    assert term_entropy(terms)[1] < 0.1


def test_k_center_greedy_picks_far_cases_and_spreads_the_batch():
    picks = k_center_greedy(CANDIDATES, LABELLED, 4)
    order = [i for i, _ in picks]
    assert set(order[:2]) == {1, 2}  # each far from the labelled case and from the other
    assert picks[0][1] == pytest.approx(1.0, abs=1e-5)
    assert order[2] == 0  # 3 is next to the picked 1 (distance ~0.003), 0 is 0.11 from the labelled case
    assert picks[3][1] < 0.01


def test_diversity_reason_names_the_distance():
    picks = select("diversity", 2, CANDIDATES, LABELLED)
    assert {p.index for p in picks} == {1, 2}
    assert picks[0].reason.startswith("farthest from labelled cases: distance 1.00")


def test_uncertainty_ranks_the_tie_first_with_its_two_diagnoses():
    probs = np.array([[0.9, 0.1], [0.41, 0.59], [0.6, 0.4], [0.99, 0.01]])
    picks = select("uncertainty", 4, CANDIDATES, LABELLED, label_probs=probs, labels=["cyst", "fibroma"])
    assert [p.index for p in picks] == [1, 2, 0, 3]  # margins 0.18, 0.20, 0.80, 0.98
    assert picks[0].reason == "diagnosis uncertain: 0.59 fibroma vs 0.41 cyst"
    assert picks[1].reason == "diagnosis uncertain: 0.60 cyst vs 0.40 fibroma"


def test_uncertainty_with_terms_names_the_most_uncertain_terms():
    terms = np.array([[0.5, 0.99], [0.9, 0.02], [0.1, 0.1], [0.95, 0.97]])
    picks = select(
        "uncertainty", 1, CANDIDATES, LABELLED, term_probs=terms, terms=["solid:present", "fat:present"]
    )
    assert picks[0].index == 0
    assert picks[0].reason.startswith("terms uncertain: solid:present 0.50")


def test_hybrid_prefers_uncertain_far_cases_and_does_not_repeat_neighbours():
    # 1 and 3 are neighbours and both uncertain; 2 is far and fairly certain; 0 is near the labelled case
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.8, 0.2], [0.52, 0.48]])
    picks = select("hybrid", 3, CANDIDATES, LABELLED, label_probs=probs, labels=["a", "b"])
    order = [p.index for p in picks]
    assert order[0] == 1
    assert order[1] == 2  # not 3: next to the case just picked
    assert "diagnosis uncertain" in picks[0].reason and "farthest from labelled cases" in picks[0].reason


def test_near_duplicates_are_flagged_and_ranked_last():
    candidates = np.vstack([CANDIDATES, unit([1, 0.001, 0, 0])])
    picks = select("diversity", 5, candidates, LABELLED)
    assert picks[-1].index == 4
    assert picks[-1].duplicate_of == 0 and picks[-1].duplicate_cosine > 0.999
    assert "near-duplicate" in picks[-1].reason
    assert all(p.duplicate_of is None for p in picks[:-1])
    # a stricter threshold: no longer a duplicate
    assert all(
        p.duplicate_of is None for p in select("diversity", 5, candidates, LABELLED, duplicate_threshold=1.01)
    )


def test_random_is_seeded_and_covers_every_candidate():
    a = [p.index for p in select("random", 4, CANDIDATES, LABELLED, seed=3)]
    b = [p.index for p in select("random", 4, CANDIDATES, LABELLED, seed=3)]
    assert a == b and sorted(a) == [0, 1, 2, 3]


def test_without_labelled_cases_diversity_still_picks():
    picks = select("diversity", 2, CANDIDATES, np.zeros((0, 4), np.float32))
    assert len(picks) == 2 and len({p.index for p in picks}) == 2


def test_bad_strategy_and_missing_heads_are_errors():
    with pytest.raises(CaseInputError, match="unknown strategy"):
        select("greedy", 2, CANDIDATES, LABELLED)
    with pytest.raises(CaseInputError, match="neither a diagnosis nor a term head"):
        select("uncertainty", 2, CANDIDATES, LABELLED)
