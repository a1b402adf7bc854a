"""Validation metric: mAP@k with relevance = same label (query excluded from its own gallery)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def map_at_k(
    queries: np.ndarray,
    query_labels: Sequence[str | None],
    gallery: np.ndarray,
    gallery_labels: Sequence[str | None],
    k: int = 10,
    query_ids: Sequence[str] | None = None,
    gallery_ids: Sequence[str] | None = None,
) -> float:
    """Mean over labelled queries of AP@k = sum_{r<=k} P@r * rel_r / min(R, k), R = relevant in the gallery.

    Cosine similarity (rows L2-normalised; zero rows rank last). A gallery item with the query's id is skipped,
    and so are gallery items without a label (not yet annotated: unjudged, not wrong). Queries with no relevant
    item in the gallery are left out.
    """
    if len(queries) == 0 or len(gallery) == 0:
        return float("nan")
    sims = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    glab = np.array([lab if lab is not None else "\0none" for lab in gallery_labels], dtype=object)
    sims[:, glab == "\0none"] = -np.inf  # unlabelled gallery items rank last (after every labelled one)
    self_index = [-1] * len(queries)
    if query_ids is not None and gallery_ids is not None:
        pos = {g: j for j, g in enumerate(gallery_ids)}
        self_index = [pos.get(q, -1) for q in query_ids]
    aps = []
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
        aps.append(float((prec * rel).sum() / min(n_rel, k)))
    return float(np.mean(aps)) if aps else float("nan")
