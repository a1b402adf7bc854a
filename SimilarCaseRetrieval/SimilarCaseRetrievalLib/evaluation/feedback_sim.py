"""Simulated relevance feedback with the residual-collection protocol.

Round r: the user sees the top `shown` cases of the current ranking and marks them relevant or not by
ground truth. The query vector is updated with Rocchio (q' = a q0 + b mean(relevant) - c mean(not
relevant), over everything marked so far) and the index is re-ranked. Every case shown so far is
removed from both the ranking and the relevance judgements (residual collection), and the feedback
ranking is compared with the initial ranking on that same residual collection, so the gain does not
come from re-ranking cases the user has already seen. The update itself is the product's
`feedback.rocchio` (alpha 1, beta 0.75, gamma 0.15).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import EvalResult, Ranking, evaluate_ranking


def rocchio(query: np.ndarray, relevant: np.ndarray, not_relevant: np.ndarray) -> np.ndarray:
    """The product's Rocchio update (`feedback.rocchio`, default weights); always returns a vector."""
    from ..feedback import rocchio as product_rocchio

    out = product_rocchio(np.asarray(query, dtype=np.float32), relevant, not_relevant)
    return np.asarray(query if out is None else out, dtype=np.float32)


@dataclass
class FeedbackRound:
    round: int
    initial: EvalResult  # initial ranking, residual collection
    feedback: EvalResult  # Rocchio-updated ranking, same residual collection
    removed: np.ndarray  # (Q, N) bool: cases left out so far (the query itself and everything shown)
    ranking: Ranking  # the Rocchio-updated ranking on the residual collection

    def gain(self) -> dict[str, float]:
        a, b = self.initial.mean(), self.feedback.mean()
        return {m: b[m] - a[m] for m in a}


def simulate_feedback(
    query_vecs: np.ndarray,
    index_vecs: np.ndarray,
    grades: np.ndarray,
    query_labels: Sequence[str],
    exclude: np.ndarray,
    *,
    rounds: int = 1,
    shown: int = 10,
    k: int = 10,
) -> list[FeedbackRound]:
    """Run `rounds` rounds of simulated feedback; see the module docstring."""
    q0 = np.asarray(query_vecs, dtype=np.float32)
    x = np.asarray(index_vecs, dtype=np.float32)
    base_scores = q0 @ x.T
    removed = np.array(exclude, dtype=bool, copy=True)
    current = q0.copy()
    marked_rel: list[list[int]] = [[] for _ in range(len(q0))]
    marked_not: list[list[int]] = [[] for _ in range(len(q0))]
    out = []
    for r in range(1, rounds + 1):
        seen = Ranking.from_scores(current @ x.T, shown, removed)
        for q in range(len(q0)):
            for j, ok in zip(seen.order[q], seen.valid[q], strict=False):
                if not ok:
                    continue
                (marked_rel if grades[q, j] > 0 else marked_not)[q].append(int(j))
                removed[q, j] = True
        current = np.stack(
            [rocchio(q0[q], x[marked_rel[q]], x[marked_not[q]]) for q in range(len(q0))]
        ).astype(np.float32)
        initial = evaluate_ranking(
            Ranking.from_scores(base_scores, k, removed), grades, query_labels, k, removed
        )
        ranking = Ranking.from_scores(current @ x.T, k, removed)
        updated = evaluate_ranking(ranking, grades, query_labels, k, removed)
        out.append(FeedbackRound(r, initial, updated, removed.copy(), ranking))
    return out
