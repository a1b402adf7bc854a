"""Validation metrics: mAP@k with relevance = same label (query excluded from its own gallery), and the
model-selection score (class-balanced mAP@k blended with P@1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_query_scores(
    queries: np.ndarray,
    query_labels: Sequence[str | None],
    gallery: np.ndarray,
    gallery_labels: Sequence[str | None],
    k: int = 10,
    query_ids: Sequence[str] | None = None,
    gallery_ids: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(labels, AP@k, P@1) of each scored query: labelled queries with a relevant item in the gallery.

    AP@k = sum_{r<=k} P@r * rel_r / min(R, k), R = relevant in the gallery. Cosine similarity (rows
    L2-normalised; zero rows rank last). A gallery item with the query's id is skipped, and so are gallery items
    without a label (not yet annotated: unjudged, not wrong).
    """
    if len(queries) == 0 or len(gallery) == 0:
        return [], np.zeros(0), np.zeros(0)
    sims = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    glab = np.array([lab if lab is not None else "\0none" for lab in gallery_labels], dtype=object)
    sims[:, glab == "\0none"] = -np.inf  # unlabelled gallery items rank last (after every labelled one)
    self_index = [-1] * len(queries)
    if query_ids is not None and gallery_ids is not None:
        pos = {g: j for j, g in enumerate(gallery_ids)}
        self_index = [pos.get(q, -1) for q in query_ids]
    labels, aps, p1s = [], [], []
    for i, lab in enumerate(query_labels):
        if lab is None:
            continue
        rel_all = glab == lab
        if self_index[i] >= 0:
            sims[i, self_index[i]] = -np.inf
            rel_all[self_index[i]] = False
        n_rel = int(rel_all.sum())
        if n_rel == 0:
            continue
        order = np.argsort(-sims[i], kind="stable")[:k]
        rel = rel_all[order].astype(np.float64)
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        labels.append(lab)
        aps.append(float((prec * rel).sum() / min(n_rel, k)))
        p1s.append(float(rel[0]))
    return labels, np.asarray(aps), np.asarray(p1s)


def map_at_k(
    queries: np.ndarray,
    query_labels: Sequence[str | None],
    gallery: np.ndarray,
    gallery_labels: Sequence[str | None],
    k: int = 10,
    query_ids: Sequence[str] | None = None,
    gallery_ids: Sequence[str] | None = None,
) -> float:
    """Mean over labelled queries of AP@k (`per_query_scores`); queries with no relevant item are left out."""
    _, aps, _ = per_query_scores(queries, query_labels, gallery, gallery_labels, k, query_ids, gallery_ids)
    return float(np.mean(aps)) if len(aps) else float("nan")


def class_mean(labels: Sequence[str], values: np.ndarray) -> float:
    """Mean over labels of the label's mean value: every diagnosis counts once, however many queries it has."""
    if len(values) == 0:
        return float("nan")
    lab = np.asarray(labels, dtype=object)
    return float(np.mean([values[lab == c].mean() for c in sorted(set(labels))]))


def selection_score(
    labels: Sequence[str], aps: np.ndarray, p1s: np.ndarray, balance: bool = True, p1_weight: float = 0.0
) -> float:
    """Model-selection score: (1 - p1_weight) * mAP@k + p1_weight * P@1, each a class mean (``balance``)
    or a plain mean over queries."""
    mean = (
        (lambda v: class_mean(labels, v)) if balance else (lambda v: float(np.mean(v)) if len(v) else np.nan)
    )
    score = (1.0 - p1_weight) * mean(aps)
    if p1_weight > 0:
        score += p1_weight * mean(p1s)
    return float(score)
