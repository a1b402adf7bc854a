"""The model's view of archived cases for annotation: image embeddings (stored by `similar-cases index` when
present, else computed) and diagnosis / term probabilities (computed: the store keeps no diagnosis
probabilities). Nothing is written to the store here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..indexer import read_case_roi, torch_threads

if TYPE_CHECKING:
    from ..encoders import CaseEncoder
    from ..store import Case, CaseStore

log = logging.getLogger(__name__)

EMBEDDING_KIND = "image"  # the annotator labels the image: unlabelled cases often have no report yet


@dataclass
class CasePredictions:
    """Rows follow ``ids`` (the cases that could be read); ``failed``: case id -> one-line reason."""

    ids: list[str]
    embeddings: np.ndarray
    label_probs: np.ndarray | None = None
    term_probs: np.ndarray | None = None
    failed: dict[str, str] = field(default_factory=dict)


def _read_rois(store: CaseStore, encoder: CaseEncoder, cases: Sequence[Case], readers: int):
    args = (list(encoder.config.sequences), encoder.config.roi)
    with ThreadPoolExecutor(max(1, readers), thread_name_prefix="reader") as pool:
        return list(pool.map(lambda c: read_case_roi(store, c, *args), cases))


def predict_cases(
    store: CaseStore,
    encoder: CaseEncoder,
    cases: Sequence[Case],
    *,
    readers: int = 2,
    threads: int | None = 1,
) -> CasePredictions:
    """Read each case's ROI and run the image branch: embeddings, diagnosis and term probabilities."""
    loaded = _read_rois(store, encoder, cases, readers)
    ok = [i for i, (roi, _) in enumerate(loaded) if roi is not None]
    failed = {
        cases[i].case_id: err or "unreadable" for i, (_, err) in enumerate(loaded) if loaded[i][0] is None
    }
    for case_id, err in failed.items():
        log.warning("case %s skipped: %s", case_id, err)
    n_labels, n_terms = len(encoder.config.labels), len(encoder.config.terms)
    if not ok:
        empty = np.zeros((0, encoder.vector_dim), np.float32)
        return CasePredictions([], empty, np.zeros((0, n_labels)), np.zeros((0, n_terms)), failed)
    with torch_threads(threads):
        pred = encoder.predict_rois(np.stack([loaded[i][0] for i in ok]))
    return CasePredictions(
        ids=[cases[i].case_id for i in ok],
        embeddings=np.asarray(pred.embeddings, np.float32),
        label_probs=np.asarray(pred.label_probs, np.float32),
        term_probs=np.asarray(pred.term_probs, np.float32),
        failed=failed,
    )


def case_embeddings(
    store: CaseStore,
    encoder: CaseEncoder,
    cases: Sequence[Case],
    *,
    readers: int = 2,
    threads: int | None = 1,
) -> CasePredictions:
    """Image embeddings of ``cases``: the stored ones of this model version, the rest computed (not stored)."""
    stored_ids, stored = store.get_embeddings(encoder.version, EMBEDDING_KIND)
    row = {cid: n for n, cid in enumerate(stored_ids)}
    missing = [c for c in cases if c.case_id not in row]
    computed = predict_cases(store, encoder, missing, readers=readers, threads=threads) if missing else None
    fresh = {} if computed is None else dict(zip(computed.ids, computed.embeddings, strict=True))
    ids, vectors = [], []
    for case in cases:
        if case.case_id in row:
            ids.append(case.case_id)
            vectors.append(stored[row[case.case_id]])
        elif case.case_id in fresh:
            ids.append(case.case_id)
            vectors.append(fresh[case.case_id])
    dim = encoder.vector_dim
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return CasePredictions(ids, matrix, failed={} if computed is None else computed.failed)
