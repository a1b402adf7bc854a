"""The lexical weight of an archive, chosen on its own labelled cases.

Whether words or embeddings find similar cases better depends on the archive's language and on what queries
look like: on IU chest X-ray reports (report against report) BM25 beats the embeddings, on the synthetic
ovarian archive (clinical notes against notes + report) the embeddings win and BM25 only adds noise. So the
weight `l` of `HybridConfig` is chosen per archive (and model) on a sample of its cases: each sampled case
queries the others with its notes (its report when it has no notes), relevant = same diagnosis (or, without
diagnoses, a shared term), and the `l` of `LAMBDAS` with the best mAP@10 is kept (ties: the smaller) -- jointly
with the share `b` of the sentence model's own cosine in the dense text similarity (`BACKBONE_WEIGHTS`), so
that a projection trained on other language never ranks below the backbone it sits on where the backbone
ranks better (b = 1 is the backbone alone).
`similar-cases index` stores it in the case store (`lexical_state`) per model version; the evaluation chooses
it on the index side of each split, never on the queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .fusion import HybridConfig, blend_backbone, fuse_scores

LAMBDAS = tuple(round(0.1 * i, 1) for i in range(9))  # 0.0 ... 0.8
BACKBONE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_QUERIES = 400
MIN_CASES = 100  # fewer labelled cases with text: keep the default weight


def map_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """Mean over queries with a relevant case of AP@k = sum_{r<=k} P@r rel_r / min(R, k) (scores (Q, N); a
    query's own row must already be -inf in `scores` and False in `relevant`)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rel = np.take_along_axis(relevant, top, axis=1).astype(np.float64)
    n_rel = relevant.sum(axis=1)
    prec = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (prec * rel).sum(axis=1) / np.maximum(np.minimum(n_rel, k), 1)
    keep = n_rel > 0
    return float(ap[keep].mean()) if keep.any() else float("nan")


def relevance(
    query_labels: Sequence[str | None],
    query_terms: Sequence[Sequence[str]],
    labels: Sequence[str | None],
    terms: Sequence[Sequence[str]],
) -> np.ndarray:
    """(Q, N) bool: same diagnosis where the archive has diagnoses (two or more distinct), else a shared term."""
    if len({lab for lab in labels if lab}) >= 2:
        q = np.array([lab or "\0q" for lab in query_labels], dtype=object)
        g = np.array([lab or "\0g" for lab in labels], dtype=object)
        return q[:, None] == g[None, :]
    g_sets = [set(t) for t in terms]
    return np.array([[bool(set(qt) & gt) for gt in g_sets] for qt in query_terms], dtype=bool)


def sample(n: int, max_queries: int = MAX_QUERIES, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `max_queries` of n items (seeded)."""
    if n <= max_queries:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))


def choose_weight(
    dense: np.ndarray,
    lexical: np.ndarray,
    relevant: np.ndarray,
    exclude: np.ndarray | None = None,
    base: HybridConfig | None = None,
    k: int = 10,
    backbone: np.ndarray | None = None,
) -> tuple[HybridConfig, dict[str, float]]:
    """The `base` config with the lexical weight of `LAMBDAS` (and, when the (Q, N) `backbone` cosines are
    given, the backbone weight of `BACKBONE_WEIGHTS`) that gives the best mAP@k for these (Q, N) projected
    text similarities, BM25 scores and relevance, leaving out the `exclude` cells (each query's own case); and
    the mAP@k of every pair tried, keyed "backbone/lexical". Ties keep the smaller weights."""
    base = base or HybridConfig()
    lexical = np.asarray(lexical, dtype=np.float64).copy()
    relevant = np.asarray(relevant, dtype=bool).copy()
    if exclude is not None:
        lexical[exclude], relevant[exclude] = 0.0, False
    table: dict[str, float] = {}
    best, best_map = (0.0, 0.0), -1.0
    for beta in BACKBONE_WEIGHTS if backbone is not None else (0.0,):
        mixed = blend_backbone(dense, backbone, beta)
        if exclude is not None:
            mixed[exclude] = -np.inf
        for lam in LAMBDAS:
            scores = fuse_scores(None, mixed, lexical, 1.0, replace(base, lexical_weight=lam))
            value = map_at_k(np.where(np.isfinite(mixed), scores, -np.inf), relevant, k)
            table[f"{beta}/{lam}"] = value
            if value > best_map + 1e-9:
                best, best_map = (beta, lam), value
    return replace(base, backbone_weight=best[0], lexical_weight=best[1]), table


def calibrate_store(store, encoder, *, seed: int = 0) -> dict | None:
    """Choose the lexical (and backbone) weight for `store` (a CaseStore) and `encoder`'s embeddings, and keep it
    in the store; returns the stored state (`config`, `map_at_10` per "backbone/lexical" pair, `n_queries`,
    `n_cases`), or None when the store has no FTS5 or fewer than `MIN_CASES` labelled cases with text."""
    from ..indexer import BACKBONE_KIND
    from .matrix import bm25_matrix

    if not store.lexical_available:
        return None
    version = encoder.version
    ids, vectors = store.get_embeddings(version, "text")
    by_id = {c.case_id: c for c in store.list_cases()}
    keep = [
        n for n, i in enumerate(ids) if i in by_id and (by_id[i].label or by_id[i].terms) and by_id[i].text
    ]
    if len(keep) < MIN_CASES:
        return None
    cases = [by_id[ids[n]] for n in keep]
    gallery = np.asarray(vectors, dtype=np.float32)[keep]
    picked = sample(len(cases), seed=seed)
    texts = [cases[q].notes.strip() or cases[q].text for q in picked]
    with_notes = [n for n, q in enumerate(picked) if cases[q].notes.strip()]
    queries = gallery[picked].copy()
    stored_ids, stored = store.get_embeddings(version, BACKBONE_KIND)  # (cases indexed before: none)
    pos = {c: n for n, c in enumerate(stored_ids)}
    g_backbone = q_backbone = None
    if stored_ids and all(c.case_id in pos for c in cases):
        g_backbone = np.asarray(stored, dtype=np.float32)[[pos[c.case_id] for c in cases]]
        q_backbone = g_backbone[picked].copy()
    if with_notes:
        from ..indexer import embed_texts_and_backbone

        projected, raw = embed_texts_and_backbone(encoder, [texts[n] for n in with_notes])
        queries[with_notes] = projected
        if q_backbone is not None and raw is not None:
            q_backbone[with_notes] = raw
    backbone = None if q_backbone is None else q_backbone @ g_backbone.T
    lexical = bm25_matrix(texts, [c.report for c in cases], [c.notes for c in cases])
    exclude = np.zeros(lexical.shape, dtype=bool)
    exclude[np.arange(len(picked)), picked] = True
    rel = relevance(
        [cases[q].label for q in picked],
        [cases[q].terms for q in picked],
        [c.label for c in cases],
        [c.terms for c in cases],
    )
    config, table = choose_weight(queries @ gallery.T, lexical, rel, exclude, backbone=backbone)
    state = {
        "config": config.to_dict(),
        "map_at_10": {key: round(v, 4) for key, v in table.items()},
        "n_queries": int(len(picked)),
        "n_cases": int(len(cases)),
    }
    store.set_hybrid_state(version, state)
    return state
