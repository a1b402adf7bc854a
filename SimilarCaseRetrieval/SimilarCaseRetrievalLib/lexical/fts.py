"""The lexical index of the case store: an SQLite FTS5 table over each case's notes and report, ranked by BM25.

Tables (beside `cases`, written in the same transactions by `store.CaseStore`):
- `lexical_docs (docid INTEGER PRIMARY KEY, case_id TEXT UNIQUE)`: the FTS row of each case (a case's rowid in
  `cases` is not stable across VACUUM, so the FTS rows are keyed by their own integer).
- `lexical_text` (FTS5, columns `notes`, `report`, tokenizer `porter unicode61 remove_diacritics 2`: English
  stemming, case and accent folding), rowid = docid.
- `lexical_state (key, value)`: `stale` is set when cases were written by a process whose SQLite has no FTS5;
  the next process with FTS5 rebuilds the index from `cases`. `hybrid/<model version>`: the hybrid config
  chosen for this archive (`lexical/calibrate.py`), as JSON.

Without FTS5 (an SQLite built without it) the store works as before and text search uses the embeddings
only; `available()` says which, and the store logs it once.
"""

from __future__ import annotations

import logging
import re
import sqlite3

from .query import match_expression, query_terms

log = logging.getLogger(__name__)

FTS_MODULE = "fts5"
TOKENIZER = "porter unicode61 remove_diacritics 2"
COLUMNS = ("notes", "report")
TEXT_TABLE = "lexical_text"
DOCS_TABLE = "lexical_docs"
STATE_TABLE = "lexical_state"

_PROBED: dict[str, bool] = {}
_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"


def available() -> bool:
    """Whether this process's SQLite has the FTS5 module (probed once on an in-memory database)."""
    if FTS_MODULE not in _PROBED:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(f"CREATE VIRTUAL TABLE probe USING {FTS_MODULE}(x)")
            _PROBED[FTS_MODULE] = True
        except sqlite3.OperationalError:
            _PROBED[FTS_MODULE] = False
        finally:
            conn.close()
    return _PROBED[FTS_MODULE]


def has_tables(conn: sqlite3.Connection) -> bool:
    """Whether this database has the lexical tables (made by a process with FTS5)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TEXT_TABLE,)).fetchone()
    return row is not None


def ensure(conn: sqlite3.Connection) -> bool:
    """Create the lexical tables when missing and fill them from `cases`, or rebuild them when marked stale.
    Idempotent; run inside the store's transaction. False (nothing done) when FTS5 is not available."""
    if not available():
        return False
    created = not has_tables(conn)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {DOCS_TABLE} (docid INTEGER PRIMARY KEY, case_id TEXT NOT NULL UNIQUE)"
    )
    conn.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {TEXT_TABLE} USING {FTS_MODULE}"
        f"({', '.join(COLUMNS)}, tokenize = '{TOKENIZER}')"
    )
    stale = conn.execute(f"SELECT 1 FROM {STATE_TABLE} WHERE key = 'stale'").fetchone() is not None
    if created or stale:
        rebuild(conn)
    return True


def rebuild(conn: sqlite3.Connection) -> None:
    """Re-index every case's notes and report (e.g. after writes made without FTS5)."""
    conn.execute(f"DELETE FROM {TEXT_TABLE}")
    conn.execute(f"DELETE FROM {DOCS_TABLE}")
    conn.execute(f"INSERT INTO {DOCS_TABLE} (case_id) SELECT case_id FROM cases ORDER BY rowid")
    conn.execute(
        f"INSERT INTO {TEXT_TABLE} (rowid, {', '.join(COLUMNS)}) "
        f"SELECT d.docid, c.notes, c.report FROM {DOCS_TABLE} d JOIN cases c ON c.case_id = d.case_id"
    )
    conn.execute(f"DELETE FROM {STATE_TABLE} WHERE key = 'stale'")


def mark_stale(conn: sqlite3.Connection) -> None:
    """Record that cases changed without the lexical index being updated (no FTS5 in this process)."""
    conn.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} (key, value) VALUES ('stale', '1')")


def put_state(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} (key, value) VALUES (?, ?)", (key, value))


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute(f"SELECT value FROM {STATE_TABLE} WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def add(conn: sqlite3.Connection, case_id: str, notes: str, report: str) -> None:
    """Index (or re-index) one case's texts."""
    remove(conn, case_id)
    docid = conn.execute(f"INSERT INTO {DOCS_TABLE} (case_id) VALUES (?)", (case_id,)).lastrowid
    conn.execute(
        f"INSERT INTO {TEXT_TABLE} (rowid, {', '.join(COLUMNS)}) VALUES (?, ?, ?)",
        (docid, notes or "", report or ""),
    )


def remove(conn: sqlite3.Connection, case_id: str) -> None:
    """Drop one case from the lexical index (no-op when absent)."""
    row = conn.execute(f"SELECT docid FROM {DOCS_TABLE} WHERE case_id = ?", (case_id,)).fetchone()
    if row is not None:
        conn.execute(f"DELETE FROM {TEXT_TABLE} WHERE rowid = ?", (row[0],))
        conn.execute(f"DELETE FROM {DOCS_TABLE} WHERE docid = ?", (row[0],))


def _stems(conn: sqlite3.Connection, words: list[str]) -> dict[str, str]:
    """word -> its token under the index's tokenizer (porter stem, folded), through a temporary FTS5 table."""
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_probe USING {FTS_MODULE}(w, tokenize = '{TOKENIZER}')"
    )
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_probe_terms USING fts5vocab(temp, lexical_probe, instance)"
    )
    conn.execute("DELETE FROM temp.lexical_probe")
    conn.executemany("INSERT INTO temp.lexical_probe (rowid, w) VALUES (?, ?)", list(enumerate(words)))
    out = {}
    for term, doc in conn.execute("SELECT term, doc FROM temp.lexical_probe_terms"):
        out.setdefault(words[int(doc)], str(term))
    return out


def prune_terms(conn: sqlite3.Connection, terms: list[str], max_postings: int | None = None) -> list[str]:
    """The query terms worth searching. Terms in no text are dropped; terms in half of the texts or more are
    dropped when a rarer term remains (FTS5's BM25 gives them an idf of 1e-6: beside a rarer term they cannot
    change the order, only cost time); with `max_postings` (large archives, best-N search) only the rarest terms
    are kept, as long as their texts add up to at most that many (the rarest is always kept), and a query of
    common terms only is not searched at all."""
    stems = _stems(conn, terms)
    conn.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_vocab USING fts5vocab(main, {TEXT_TABLE}, row)"
    )
    df: dict[str, int] = {}
    for stem in set(stems.values()):  # one equality lookup each (fts5vocab seeks on term =, not on IN)
        row = conn.execute("SELECT doc FROM temp.lexical_vocab WHERE term = ?", (stem,)).fetchone()
        df[stem] = int(row[0]) if row else 0
    n_docs = conn.execute(f"SELECT COUNT(*) FROM {DOCS_TABLE}").fetchone()[0]
    present = [t for t in terms if df.get(stems.get(t, ""), 0) > 0]
    kept = [t for t in present if df[stems[t]] < n_docs / 2]
    if max_postings is None:
        return kept or present
    chosen, total = set(), 0
    for t in sorted(kept, key=lambda t: df[stems[t]]):
        total += df[stems[t]]
        if chosen and total > max_postings:
            break
        chosen.add(t)
    return [t for t in kept if t in chosen]


MAX_POSTINGS = 5_000  # texts a query may score when only the best `limit` are wanted (large archives)


def search(conn: sqlite3.Connection, text: str, limit: int | None = None) -> list[tuple[str, float]]:
    """(case id, BM25 score) of the cases whose notes or report contain a query term of `text`, best first
    (scores > 0, higher is better: FTS5's bm25() negated); at most `limit` (None: all). Query terms go through
    `prune_terms` (with a `limit`: the rarest up to `MAX_POSTINGS` texts, which keeps a query over 100k reports
    in milliseconds)."""
    terms = query_terms(text)
    if terms:
        terms = prune_terms(conn, terms, None if limit is None else MAX_POSTINGS)
    if not terms:
        return []
    sql = (
        f"SELECT d.case_id, t.score FROM (SELECT rowid AS docid, -rank AS score FROM {TEXT_TABLE} "
        f"WHERE {TEXT_TABLE} MATCH ? ORDER BY rank{' LIMIT ?' if limit is not None else ''}) t "
        f"JOIN {DOCS_TABLE} d ON d.docid = t.docid ORDER BY t.score DESC"
    )
    params: tuple = (match_expression(terms),) + ((int(limit),) if limit is not None else ())
    return [(str(cid), float(score)) for cid, score in conn.execute(sql, params)]


def matched_words(conn: sqlite3.Connection, text: str, case_id: str) -> dict[str, list[str]]:
    """Which words of one case's notes and report matched the query `text` (as written in the case, each once,
    in text order), per column: `{"notes": [...], "report": [...]}`; empty lists when nothing matched."""
    out: dict[str, list[str]] = {c: [] for c in COLUMNS}
    terms = query_terms(text)
    if not terms:
        return out
    marks = ", ".join(
        f"highlight({TEXT_TABLE}, {n}, '{_MARK_OPEN}', '{_MARK_CLOSE}')" for n in range(len(COLUMNS))
    )
    row = conn.execute(
        f"SELECT {marks} FROM {TEXT_TABLE} JOIN {DOCS_TABLE} d ON d.docid = {TEXT_TABLE}.rowid "
        f"WHERE {TEXT_TABLE} MATCH ? AND d.case_id = ?",
        (match_expression(terms), case_id),
    ).fetchone()
    if row is None:
        return out
    pattern = re.compile(f"{_MARK_OPEN}(.*?){_MARK_CLOSE}", re.S)
    for column, marked in zip(COLUMNS, row, strict=True):
        words: dict[str, None] = {}
        for span in pattern.findall(marked or ""):
            words.setdefault(span, None)
        out[column] = list(words)
    return out
