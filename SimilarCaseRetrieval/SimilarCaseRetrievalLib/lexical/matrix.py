"""BM25 of many queries against many texts through the same FTS5 index and query terms as the case store
(an in-memory database with the store's `cases` columns), for the evaluation and the fusion tuning."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from . import fts


def bm25_matrix(
    query_texts: Sequence[str], index_texts: Sequence[str], index_notes: Sequence[str] | None = None
) -> np.ndarray:
    """(Q, N) BM25 scores (0 where a text shares no query word); `index_texts` go in the `report` column and
    `index_notes` (when given) in the `notes` column, as the store holds them. RuntimeError without FTS5."""
    if not fts.available():
        raise RuntimeError("this SQLite has no FTS5")
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(
            "CREATE TABLE cases (case_id TEXT PRIMARY KEY, notes TEXT NOT NULL, report TEXT NOT NULL)"
        )
        notes = list(index_notes) if index_notes is not None else [""] * len(index_texts)
        conn.executemany(
            "INSERT INTO cases VALUES (?, ?, ?)",
            [(str(n), a or "", t or "") for n, (a, t) in enumerate(zip(notes, index_texts, strict=True))],
        )
        fts.ensure(conn)
        out = np.zeros((len(query_texts), len(index_texts)), dtype=np.float32)
        for q, text in enumerate(query_texts):
            for case_id, score in fts.search(conn, text):
                out[q, int(case_id)] = score
        return out
    finally:
        conn.close()
