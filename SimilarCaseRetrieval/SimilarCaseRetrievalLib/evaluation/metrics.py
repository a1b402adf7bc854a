"""Retrieval metrics through ranx: relevance judgements, top-k runs, per-class scores, bootstrap.

Relevance (qrels): with `relevance="label"` an index case is relevant to a query when it has the same
label (diagnosis); its grade is 1 + the number of semantic terms the two share. With
`relevance="terms"` (no diagnosis, e.g. chest X-ray problem tags) a case is relevant when it shares at
least one term; its grade is the number of shared terms. A query never retrieves itself (same case
id), and queries with no relevant case in the index are left out (counted in `n_without_relevant`).

mAP@k: ranx's `map@k` divides by the number of relevant cases in the whole index (TREC style), which
caps it at k/R for large classes. We report the usual CBIR normalisation by min(R, k) (a perfect
top-k scores 1), computed as ranx's per-query AP@k x R / min(R, k); ranx's raw value is kept in the
JSON as `map@k_trec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

METRIC_NAMES = ("map@{k}", "precision@1", "precision@5", "precision@{k}", "recall@{k}", "ndcg@{k}")
DISPLAY = {"map": "mAP", "precision": "P", "recall": "R", "ndcg": "nDCG"}


def metric_names(k: int = 10) -> list[str]:
    """The reported metric names for cut-off `k` (duplicates removed, order kept)."""
    names = [m.format(k=k) for m in METRIC_NAMES]
    return list(dict.fromkeys(names))


def display_name(metric: str) -> str:
    """`precision@5` -> `P@5`."""
    base, _, cut = metric.partition("@")
    return f"{DISPLAY.get(base, base)}@{cut}" if cut else DISPLAY.get(base, base)


def _multi_hot(terms: Sequence[frozenset[str]], vocab: dict[str, int]) -> np.ndarray:
    out = np.zeros((len(terms), max(len(vocab), 1)), dtype=np.float32)
    for i, ts in enumerate(terms):
        for t in ts:
            if t in vocab:
                out[i, vocab[t]] = 1.0
    return out


def relevance_grades(
    query_labels: Sequence[str],
    query_terms: Sequence[frozenset[str]],
    index_labels: Sequence[str],
    index_terms: Sequence[frozenset[str]],
    relevance: str = "label",
) -> np.ndarray:
    """(Q, N) int grades: 0 = not relevant, >= 1 relevant (see module docstring)."""
    vocab = (
        {t: i for i, t in enumerate(sorted(set().union(*index_terms, *query_terms)))}
        if (index_terms or query_terms)
        else {}
    )
    shared = (_multi_hot(query_terms, vocab) @ _multi_hot(index_terms, vocab).T).round().astype(np.int64)
    if relevance == "label":
        same = (
            np.asarray(query_labels, dtype=object)[:, None] == np.asarray(index_labels, dtype=object)[None, :]
        )
        return np.where(same, 1 + shared, 0).astype(np.int64)
    if relevance == "terms":
        return shared
    raise ValueError(f"unknown relevance {relevance!r}: use 'label' or 'terms'")


def self_mask(query_ids: Sequence[str], index_ids: Sequence[str]) -> np.ndarray:
    """(Q, N) bool, True where the index case is the query itself (never returned)."""
    pos = {cid: j for j, cid in enumerate(index_ids)}
    mask = np.zeros((len(query_ids), len(index_ids)), dtype=bool)
    for i, cid in enumerate(query_ids):
        if cid in pos:
            mask[i, pos[cid]] = True
    return mask


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(Q, k') indices of the highest scores per row, best first; excluded cells are never returned.

    Ties are broken by the lower index (stable), so runs are reproducible.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    s[~np.isfinite(s)] = -np.inf
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, s.shape[1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order


@dataclass
class Ranking:
    """Top-k index positions per query (`order[q]`, best first), -1 padded when fewer are allowed."""

    order: np.ndarray
    valid: np.ndarray  # bool, same shape: False for excluded/padded slots

    @classmethod
    def from_scores(cls, scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        order = top_k(scores, k, exclude)
        valid = np.ones_like(order, dtype=bool)
        if exclude is not None:
            valid = ~np.take_along_axis(exclude, order, axis=1)
        return cls(order=order, valid=valid)


@dataclass
class EvalResult:
    """Per-query scores for each metric plus the query labels (for per-class summaries)."""

    metrics: list[str]
    per_query: dict[str, np.ndarray]
    query_labels: list[str]
    n_without_relevant: int = 0
    extra: dict = field(default_factory=dict)
    positions: np.ndarray | None = None  # row of each scored query in the (Q, N) grades

    @property
    def n_queries(self) -> int:
        return len(self.query_labels)

    def mean(self) -> dict[str, float]:
        return {m: float(np.mean(v)) if len(v) else float("nan") for m, v in self.per_query.items()}

    def bootstrap(
        self, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
    ) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval over queries (same resamples for every metric; seeded)."""
        n = self.n_queries
        if n == 0:
            return {m: (float("nan"), float("nan")) for m in self.per_query}
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        out = {}
        for m, v in self.per_query.items():
            means = np.asarray(v)[idx].mean(axis=1)
            lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
            out[m] = (float(lo), float(hi))
        return out

    def per_class(self) -> dict[str, dict[str, float]]:
        labels = np.asarray(self.query_labels, dtype=object)
        out = {}
        for c in sorted(set(self.query_labels)):
            sel = labels == c
            out[c] = {m: float(np.mean(np.asarray(v)[sel])) for m, v in self.per_query.items()}
            out[c]["n"] = int(sel.sum())
        return out

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict:
        """JSON-ready: overall mean, 95% interval, per-class means, counts."""
        ci = self.bootstrap(n_boot=n_boot, seed=seed)
        return {
            "n_queries": self.n_queries,
            "n_without_relevant": self.n_without_relevant,
            "overall": self.mean(),
            "ci95": {m: list(v) for m, v in ci.items()},
            "per_class": self.per_class(),
            **self.extra,
        }

    @staticmethod
    def merge(results: Sequence[EvalResult]) -> EvalResult:
        """Pool the queries of several folds."""
        metrics = results[0].metrics
        return EvalResult(
            metrics=metrics,
            per_query={m: np.concatenate([r.per_query[m] for r in results]) for m in results[0].per_query},
            query_labels=[lab for r in results for lab in r.query_labels],
            n_without_relevant=sum(r.n_without_relevant for r in results),
        )


def evaluate_ranking(
    ranking: Ranking,
    grades: np.ndarray,
    query_labels: Sequence[str],
    k: int = 10,
    exclude: np.ndarray | None = None,
) -> EvalResult:
    """Score a ranking against (Q, N) grades with ranx; `exclude` cells are removed from the qrels too."""
    from ranx import Qrels, Run, evaluate

    g = np.array(grades, dtype=np.int64, copy=True)
    if exclude is not None:
        g[exclude] = 0
    has_rel = (g > 0).any(axis=1)
    keep = np.flatnonzero(has_rel)
    metrics = metric_names(k)
    if len(keep) == 0:
        return EvalResult(metrics, {m: np.zeros(0) for m in metrics}, [], int((~has_rel).sum()))
    qrels, run = {}, {}
    for q in keep:
        qid = f"q{q:07d}"
        rel = np.flatnonzero(g[q])
        qrels[qid] = {f"d{j:07d}": int(g[q, j]) for j in rel}
        docs = [int(j) for j, ok in zip(ranking.order[q], ranking.valid[q], strict=False) if ok]
        # Strictly decreasing scores keep ranx's order identical to ours.
        run[qid] = {f"d{j:07d}": float(len(docs) - r) for r, j in enumerate(docs)} or {"d_none": 0.0}
    ranx_metrics = list(dict.fromkeys(metrics + [f"map@{k}"]))
    scores = evaluate(Qrels(qrels), Run(run), ranx_metrics, return_mean=False, make_comparable=True)
    if len(keep) == 1:
        scores = {m: np.atleast_1d(v) for m, v in scores.items()}
    # ranx returns per-query scores in the sorted order of query ids, which is our order (zero-padded).
    per_query = {m: np.asarray(scores[m], dtype=np.float64) for m in metrics}
    n_rel = (g[keep] > 0).sum(axis=1)
    trec = np.asarray(scores[f"map@{k}"], dtype=np.float64)
    per_query[f"map@{k}"] = trec * n_rel / np.minimum(n_rel, k)
    labels = [query_labels[q] for q in keep]
    result = EvalResult(metrics, per_query, labels, int((~has_rel).sum()))
    result.extra[f"map@{k}_trec"] = float(trec.mean())
    result.positions = keep
    return result


def evaluate_scores(
    scores: np.ndarray,
    query_ids: Sequence[str],
    query_labels: Sequence[str],
    query_terms: Sequence[frozenset[str]],
    index_ids: Sequence[str],
    index_labels: Sequence[str],
    index_terms: Sequence[frozenset[str]],
    k: int = 10,
    relevance: str = "label",
) -> tuple[EvalResult, Ranking]:
    """Rank the index for each query by `scores` (Q, N), leaving the query itself out, and score it."""
    exclude = self_mask(query_ids, index_ids)
    ranking = Ranking.from_scores(scores, k, exclude)
    grades = relevance_grades(query_labels, query_terms, index_labels, index_terms, relevance)
    return evaluate_ranking(ranking, grades, query_labels, k, exclude), ranking
