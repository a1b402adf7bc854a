"""Run one method under one protocol (index/query split or grouped cross-validation) and score it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .collection import EvalCollection
from .feedback_sim import simulate_feedback
from .methods import MethodOptions, run_method
from .metrics import EvalResult, Ranking, evaluate_scores, relevance_grades, self_mask
from .splits import grouped_folds, train_test_split_grouped

log = logging.getLogger(__name__)


@dataclass
class MethodReport:
    """Pooled results of one method: main metrics, feedback rounds, and one fold's rankings for figures."""

    method: str
    result: EvalResult
    feedback: list[dict] = field(default_factory=list)  # per round: initial, feedback, gain (means)
    example: dict | None = None  # index, queries, ranking of the first split (for the qualitative figure)

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict:
        out = self.result.summary(n_boot=n_boot, seed=seed)
        out["method"] = self.method
        if self.feedback:
            out["feedback"] = self.feedback
        return out


def _splits(index: EvalCollection, queries: EvalCollection | None, cv: int, seed: int, holdout: float | None):
    if queries is not None:
        yield index, queries
        return
    if holdout:
        rest, held = train_test_split_grouped(index.groups, holdout, seed)
        log.info("grouped hold-out: %d index cases, %d queries", len(rest), len(held))
        yield index.subset(rest), index.subset(held)
        return
    for f, fold in enumerate(grouped_folds(index.groups, cv, seed)):
        rest = np.setdiff1d(np.arange(len(index)), fold)
        log.info("fold %d/%d: %d index cases, %d queries", f + 1, cv, len(rest), len(fold))
        yield index.subset(rest), index.subset(fold)


def evaluate_method(
    method: str,
    index: EvalCollection,
    queries: EvalCollection | None,
    opts: MethodOptions,
    *,
    cv: int = 5,
    k: int = 10,
    feedback_rounds: int = 0,
    holdout: float | None = None,
) -> MethodReport:
    """Evaluate `method`; with `queries=None` cross-validate over `cv` folds grouped by patient, or with
    `holdout` use one split that holds out that fraction of the patients as queries."""
    results, rounds, example = [], [[] for _ in range(feedback_rounds)], None
    for idx, qry in _splits(index, queries, cv, opts.seed, holdout):
        out = run_method(method, idx, qry, opts)
        res, ranking = evaluate_scores(
            out.scores,
            qry.ids,
            qry.labels,
            qry.terms,
            idx.ids,
            idx.labels,
            idx.terms,
            k=k,
            relevance=index.relevance,
        )
        results.append(res)
        if example is None:
            example = {"index": idx, "queries": qry, "ranking": ranking}
        if feedback_rounds and out.query_vecs is not None:
            grades = relevance_grades(qry.labels, qry.terms, idx.labels, idx.terms, index.relevance)
            fb = simulate_feedback(
                out.query_vecs,
                out.index_vecs,
                grades,
                qry.labels,
                self_mask(qry.ids, idx.ids),
                rounds=feedback_rounds,
                k=k,
            )
            for r, fr in enumerate(fb):
                rounds[r].append(fr)
    report = MethodReport(method, EvalResult.merge(results), example=example)
    for r, frs in enumerate(rounds):
        if not frs:
            continue
        initial = EvalResult.merge([f.initial for f in frs])
        updated = EvalResult.merge([f.feedback for f in frs])
        a, b = initial.mean(), updated.mean()
        report.feedback.append(
            {
                "round": r + 1,
                "n_queries": initial.n_queries,
                "initial_residual": a,
                "feedback_residual": b,
                "gain": {m: b[m] - a[m] for m in a},
                "gain_ci95": _paired_ci(initial, updated, seed=opts.seed),
            }
        )
    return report


def chance_precision(
    index: EvalCollection,
    queries: EvalCollection | None,
    *,
    cv: int = 5,
    seed: int = 0,
    holdout: float | None = None,
) -> float:
    """Expected P@k of a random ranking under the same protocol: mean over scored queries of R / N
    (relevant cases / candidate cases), the floor every method should clear."""
    values = []
    for idx, qry in _splits(index, queries, cv, seed, holdout):
        grades = relevance_grades(qry.labels, qry.terms, idx.labels, idx.terms, index.relevance)
        exclude = self_mask(qry.ids, idx.ids)
        grades[exclude] = 0
        n_rel = (grades > 0).sum(axis=1)
        n_cand = (~exclude).sum(axis=1)
        values.extend((n_rel[n_rel > 0] / n_cand[n_rel > 0]).tolist())
    return float(np.mean(values)) if values else float("nan")


def fusion_gain(reports: dict[str, MethodReport], n_boot: int = 1000, seed: int = 0) -> dict | None:
    """Fused minus the best single modality (by mAP@k) of ours, per metric, with the paired bootstrap
    interval over the same queries; None unless ours-fused and at least one of ours-image / ours-text ran."""
    fused = reports.get("ours-fused")
    singles = {n: r for n, r in reports.items() if n in ("ours-image", "ours-text")}
    if fused is None or not singles:
        return None
    key = next(m for m in fused.result.per_query if m.startswith("map@"))
    best = max(singles, key=lambda n: singles[n].result.mean()[key])
    a, b = singles[best].result.mean(), fused.result.mean()
    return {
        "versus": best,
        "gain": {m: b[m] - a[m] for m in a},
        "gain_ci95": _paired_ci(singles[best].result, fused.result, n_boot=n_boot, seed=seed),
    }


def _paired_ci(a: EvalResult, b: EvalResult, n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """Bootstrap interval of the mean per-query difference b - a (same queries, same order)."""
    if a.n_queries == 0 or a.n_queries != b.n_queries:
        return {}
    diff = EvalResult(a.metrics, {m: b.per_query[m] - a.per_query[m] for m in a.per_query}, a.query_labels)
    return {m: list(v) for m, v in diff.bootstrap(n_boot=n_boot, seed=seed).items()}


__all__ = ["MethodReport", "evaluate_method", "fusion_gain", "Ranking"]
