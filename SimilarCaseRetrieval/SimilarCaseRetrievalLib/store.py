"""The case store: an SQLite file `cases.sqlite` inside the archive folder.

Tables: `schema_version`, `cases` (no column for patient names; `patient_id` is pseudonymous),
`embeddings` (case_id, model_version, kind) -> float32 blob + dimension, `predicted_terms`, `feedback`, and
(schema 3, where SQLite has FTS5) the lexical index of the notes and reports (`lexical/fts.py`), written in the
same transactions as the cases.
Each case row carries a `revision` (schema 2): a fresh random token on every insert, replace and update, so that
an embedding computed from an older version of the case is refused at commit (`current_revisions`).
Every write runs in one transaction; `add_many` is all-or-nothing; removing a case removes its embeddings,
predicted terms and lexical entry. Paths inside the archive folder are stored relative to it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError, StorageError, storage_error
from .lexical import fts

if TYPE_CHECKING:
    import SimpleITK as sitk

    from .study import Study

log = logging.getLogger(__name__)

DB_NAME = "cases.sqlite"
SCHEMA_VERSION = 3  # 2: cases.revision (_migrate_add_revision); 3: the lexical (FTS5) index
EMBEDDING_KINDS = ("image", "text", "fused", "sentence")  # sentence: the text backbone (indexer.py)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    sequences TEXT NOT NULL,
    mask TEXT,
    segment TEXT,
    label TEXT,
    terms TEXT NOT NULL DEFAULT '[]',
    report TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    patient_id TEXT,
    study_date TEXT,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    case_id TEXT NOT NULL REFERENCES cases(case_id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    kind TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (case_id, model_version, kind)
);
CREATE TABLE IF NOT EXISTS predicted_terms (
    case_id TEXT NOT NULL REFERENCES cases(case_id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    term TEXT NOT NULL,
    prob REAL NOT NULL,
    PRIMARY KEY (case_id, model_version, term)
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id TEXT NOT NULL,
    relevant TEXT NOT NULL,
    not_relevant TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_version ON embeddings (model_version, kind);
"""

_CASE_COLUMNS = (
    "case_id",
    "sequences",
    "mask",
    "segment",
    "label",
    "terms",
    "report",
    "notes",
    "patient_id",
    "study_date",
)


@dataclass
class Case:
    """One archived case. Paths are strings (relative to the archive when inside it)."""

    case_id: str
    sequences: dict[str, str]
    mask: str | None = None
    segment: str | None = None
    label: str | None = None
    terms: list[str] = field(default_factory=list)
    report: str = ""
    notes: str = ""
    patient_id: str | None = None
    study_date: str | None = None

    @property
    def text(self) -> str:
        """Clinical notes then report, for the text encoder (notes first: long reports get truncated)."""
        return "\n".join(t.strip() for t in (self.notes, self.report) if t and t.strip())


class UnknownCaseError(CaseInputError, KeyError):
    """A case id that is not in the store (both a ValueError and a KeyError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CaseStore:
    """SQLite-backed case archive. Use `with store.transaction():` to group several writes."""

    def __init__(self, archive_dir: Path | str, *, create: bool = True, readonly: bool | None = False):
        """Open (or create, with `create`) the store of `archive_dir`. `readonly`: True opens it for reading
        only (no journal, WAL or schema writes: an archive on a read-only disk or share is searchable); None
        decides by whether the archive can be written; writes then raise StorageError."""
        self.archive_dir = Path(archive_dir).expanduser().resolve()
        self.db_path = self.archive_dir / DB_NAME
        if self.archive_dir.exists() and not self.archive_dir.is_dir():
            raise CaseInputError(
                self.archive_dir,
                "is a file, not an archive folder",
                "give a folder (new or holding cases.sqlite)",
            )
        if not self.db_path.exists():
            if not create:
                raise CaseInputError(
                    self.archive_dir,
                    "no case store here (cases.sqlite missing)",
                    "run `similar-cases ingest` or `demo` first",
                )
            try:
                self.archive_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(self.db_path, exc, "cannot create the archive") from None
            readonly = False
        elif readonly is None:
            readonly = not (os.access(self.db_path, os.W_OK) and os.access(self.archive_dir, os.W_OK))
        self.readonly = bool(readonly)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            if self.readonly:
                self._conn = _connect_readonly(self.db_path)
                self._check_schema_version()
                self._lexical_tables = fts.has_tables(self._conn)
                self._lexical = self._lexical_tables and fts.available()
            else:
                self._conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
                self._conn.execute("PRAGMA foreign_keys = ON")
                try:
                    self._conn.execute("PRAGMA journal_mode = WAL")
                except sqlite3.DatabaseError:
                    pass  # e.g. network file systems; the default rollback journal is fine
                self._init_schema()
        except StorageError:
            raise
        except sqlite3.DatabaseError as exc:
            if _is_storage_failure(exc):
                raise storage_error(self.db_path, exc, "cannot open the case store for writing") from None
            raise CaseInputError(
                self.db_path, f"not a readable case store ({exc})", "restore it or use another archive"
            ) from None

    def _check_schema_version(self) -> None:
        row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        if row is not None and row[0] > SCHEMA_VERSION:
            raise CaseInputError(
                self.db_path,
                f"case store schema version {row[0]} is newer than this software ({SCHEMA_VERSION})",
                "upgrade SimilarCaseRetrieval",
            )

    # ---- connection and transactions -------------------------------------------------------------------
    def _init_schema(self) -> None:
        with self.transaction() as conn:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise CaseInputError(
                    self.db_path,
                    f"case store schema version {row[0]} is newer than this software ({SCHEMA_VERSION})",
                    "upgrade SimilarCaseRetrieval",
                )
            _migrate_add_revision(conn)
            self._lexical = _migrate_add_fts(conn)
            self._lexical_tables = fts.has_tables(conn)
            conn.execute("UPDATE schema_version SET version = ? WHERE version < ?", (SCHEMA_VERSION, SCHEMA_VERSION))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: commits when the outermost block ends, rolls back on an exception.

        A nested block is a savepoint: if it raises, only its own writes are undone (and the exception
        propagates to the enclosing block, which rolls back everything unless it handles the exception).
        """
        if self.readonly:
            raise StorageError(
                self.db_path, "the archive is open read-only", "copy it to a writable folder to change it"
            )
        with self._lock:
            depth = self._depth
            try:
                self._conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
            except sqlite3.OperationalError as exc:
                if _is_storage_failure(exc):
                    raise storage_error(self.db_path, exc, "cannot write the case store") from None
                raise
            self._depth += 1
            try:
                yield self._conn
            except BaseException as exc:
                self._depth -= 1
                if depth == 0:
                    if self._conn.in_transaction:  # SQLite may have rolled back already (disk full)
                        self._conn.execute("ROLLBACK")
                elif self._conn.in_transaction:  # else SQLite rolled the whole transaction back (disk full)
                    self._conn.execute(f"ROLLBACK TO sp{depth}")
                    self._conn.execute(f"RELEASE sp{depth}")
                if depth == 0 and isinstance(exc, sqlite3.OperationalError) and _is_storage_failure(exc):
                    raise storage_error(self.db_path, exc, "cannot write the case store") from None
                raise
            self._depth -= 1
            if depth:
                self._conn.execute(f"RELEASE sp{depth}")
                return
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if _is_storage_failure(exc):
                    raise storage_error(self.db_path, exc, "cannot write the case store") from None
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- paths -------------------------------------------------------------------------------------------
    def relative(self, path: Path | str) -> str:
        """A path as stored: relative to the archive when inside it, else absolute. Keeps `#options`."""
        text = str(path)
        base, sep, options = text.partition("#")
        p = Path(base).expanduser()
        if not p.is_absolute():
            return text  # already archive-relative
        p = p.resolve()
        try:
            rel = p.relative_to(self.archive_dir)
            stored = rel.as_posix()
        except ValueError:
            stored = str(p)
        return stored + (sep + options if sep else "")

    def resolve(self, path: str) -> Path:
        """A stored path -> absolute Path (the `#options` suffix is kept in the returned Path)."""
        base, sep, options = str(path).partition("#")
        p = Path(base).expanduser()
        if not p.is_absolute():
            p = self.archive_dir / p
        return Path(str(p) + (sep + options if sep else ""))

    # ---- cases -------------------------------------------------------------------------------------------
    def _row(self, case: Case) -> tuple:
        if not isinstance(case.case_id, str) or not case.case_id.strip():
            raise CaseInputError("case", "empty case_id", "give every case a unique id")
        if not case.sequences:
            raise CaseInputError(
                f"case {case.case_id}", "case has no image sequences", "give at least one image"
            )
        sequences = {name: self.relative(p) for name, p in case.sequences.items()}
        return (
            case.case_id,
            json.dumps(sequences),
            self.relative(case.mask) if case.mask else None,
            None if case.segment is None or str(case.segment) == "" else str(case.segment),
            case.label or None,
            json.dumps([str(t) for t in case.terms]),
            case.report or "",
            case.notes or "",
            case.patient_id or None,
            case.study_date or None,
        )

    def _insert(self, conn: sqlite3.Connection, case: Case, replace: bool) -> None:
        from .case_ids import check_case_id

        check_case_id(case.case_id, f"case {ascii(case.case_id)[1:-1][:80]}")
        row = self._row(case)
        if replace:
            conn.execute("DELETE FROM cases WHERE case_id = ?", (case.case_id,))
        elif self._exists(conn, case.case_id):
            raise CaseInputError(
                f"case {case.case_id}",
                "case id already in the archive",
                "use another id, update(), or --replace",
            )
        placeholders = ", ".join("?" * (len(_CASE_COLUMNS) + 2))
        conn.execute(
            f"INSERT INTO cases ({', '.join(_CASE_COLUMNS)}, added_at, revision) VALUES ({placeholders})",
            (*row, _now(), _new_revision()),
        )
        self._lexical_add(conn, case)

    # ---- lexical index (FTS5; lexical/fts.py) ---------------------------------------------------------------
    def _lexical_add(self, conn: sqlite3.Connection, case: Case) -> None:
        if self._lexical:
            fts.add(conn, case.case_id, case.notes or "", case.report or "")
        elif self._lexical_tables:  # made with FTS5, written without it: the next process with FTS5 rebuilds
            fts.mark_stale(conn)

    def _lexical_remove(self, conn: sqlite3.Connection, case_id: str) -> None:
        if self._lexical:
            fts.remove(conn, case_id)
        elif self._lexical_tables:
            fts.mark_stale(conn)

    @property
    def lexical_available(self) -> bool:
        """Whether word (BM25) search over notes and reports works here (SQLite with FTS5)."""
        return self._lexical

    def lexical_search(self, text: str, limit: int | None = None) -> list[tuple[str, float]]:
        """(case id, BM25 score > 0) of the cases whose notes or report share a word with `text`, best first
        (at most `limit`); [] without FTS5 or without searchable words."""
        if not self._lexical:
            return []
        with self._lock:
            return fts.search(self._conn, text, limit)

    def hybrid_state(self, model_version: str) -> dict | None:
        """The hybrid scoring config chosen for this archive and model (`lexical/calibrate.py`), or None."""
        if not self._lexical:
            return None
        with self._lock:
            value = fts.get_state(self._conn, f"hybrid/{model_version}")
        try:
            return json.loads(value) if value else None
        except ValueError:
            return None

    def set_hybrid_state(self, model_version: str, state: dict) -> None:
        if self._lexical:
            with self.transaction() as conn:
                fts.put_state(conn, f"hybrid/{model_version}", json.dumps(state))

    def matched_words(self, text: str, case_id: str) -> dict[str, list[str]]:
        """The words of the case's notes and of its report that matched the query `text` (per column)."""
        if not self._lexical:
            return {c: [] for c in fts.COLUMNS}
        with self._lock:
            return fts.matched_words(self._conn, text, case_id)

    @staticmethod
    def _exists(conn: sqlite3.Connection, case_id: str) -> bool:
        return conn.execute("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone() is not None

    def add(self, case: Case, *, replace: bool = False) -> None:
        """Add one case; an existing id is an error unless `replace` (which drops its stale embeddings)."""
        with self.transaction() as conn:
            self._insert(conn, case, replace)

    def add_many(self, cases: Iterable[Case], *, replace: bool = False) -> None:
        """Add several cases in one transaction: all go in, or none (on any error)."""
        cases = list(cases)
        seen: set[str] = set()
        for case in cases:
            if case.case_id in seen:
                raise CaseInputError(f"case {case.case_id}", "case id given twice", "make case ids unique")
            seen.add(case.case_id)
        with self.transaction() as conn:
            for case in cases:
                self._insert(conn, case, replace)

    def update(self, case: Case) -> None:
        """Rewrite an existing case's fields (embeddings are kept)."""
        row = self._row(case)
        with self.transaction() as conn:
            if not self._exists(conn, case.case_id):
                raise self._unknown(case.case_id)
            assignments = ", ".join(f"{c} = ?" for c in (*_CASE_COLUMNS[1:], "revision"))
            conn.execute(
                f"UPDATE cases SET {assignments} WHERE case_id = ?", (*row[1:], _new_revision(), case.case_id)
            )
            self._lexical_add(conn, case)

    def remove(self, case_id: str) -> None:
        """Remove a case with its embeddings and predicted terms."""
        with self.transaction() as conn:
            if not self._exists(conn, case_id):
                raise self._unknown(case_id)
            conn.execute("DELETE FROM embeddings WHERE case_id = ?", (case_id,))
            conn.execute("DELETE FROM predicted_terms WHERE case_id = ?", (case_id,))
            conn.execute("DELETE FROM cases WHERE case_id = ?", (case_id,))
            self._lexical_remove(conn, case_id)

    def get(self, case_id: str) -> Case:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_CASE_COLUMNS)} FROM cases WHERE case_id = ?", (case_id,)
            ).fetchone()
        if row is None:
            raise self._unknown(case_id)
        return _case_from_row(row)

    def list_cases(self, label: str | None = None, term: str | None = None) -> list[Case]:
        """Cases in insertion order, optionally only those with `label` and/or carrying `term`."""
        sql = f"SELECT {', '.join(_CASE_COLUMNS)} FROM cases"
        params: tuple = ()
        if label is not None:
            sql += " WHERE label = ?"
            params = (label,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY rowid", params).fetchall()
        cases = [_case_from_row(r) for r in rows]
        if term is not None:
            cases = [c for c in cases if term in c.terms]
        return cases

    def current_revisions(self, case_ids: Iterable[str]) -> dict[str, int]:
        """case id -> its revision now (cases not in the store are left out). An embedding is current when
        the revision read before its files were read is still the case's revision at commit."""
        ids = list(case_ids)
        out: dict[str, int] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                out.update(
                    self._conn.execute(
                        f"SELECT case_id, revision FROM cases WHERE case_id IN ({marks})", part
                    ).fetchall()
                )
        return out

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT case_id FROM cases ORDER BY rowid")]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0])

    def __contains__(self, case_id: object) -> bool:
        with self._lock:
            return self._exists(self._conn, str(case_id))

    def _unknown(self, case_id: str) -> UnknownCaseError:
        return UnknownCaseError(
            f"case {case_id}", "no such case in the archive", "check the case id (`similar-cases info`)"
        )

    # ---- images ------------------------------------------------------------------------------------------
    def load_study(self, case: Case, reference: str | None = None) -> Study:
        from .study import read_study

        return read_study({name: self.resolve(p) for name, p in case.sequences.items()}, reference)

    def load_mask(self, case: Case, study: Study) -> sitk.Image:
        from .study import read_mask

        if not case.mask:
            raise CaseInputError(
                f"case {case.case_id}", "case has no mask", "add a mask (segment) to the case"
            )
        return read_mask(self.resolve(case.mask), study.reference_image, case.segment)

    # ---- embeddings ----------------------------------------------------------------------------------------
    def set_embeddings(self, model_version: str, kind: str, ids: list[str], vectors: np.ndarray) -> None:
        """Store (upsert) float32 vectors for `ids` under (model_version, kind)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise CaseInputError(
                f"embeddings {model_version}/{kind}",
                f"{len(ids)} ids but vectors of shape {vectors.shape}",
                "pass (N, D) vectors",
            )
        if not np.all(np.isfinite(vectors)):
            raise CaseInputError(
                f"embeddings {model_version}/{kind}", "vectors contain NaN or inf", "check the encoder"
            )
        dim = int(vectors.shape[1])
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT dim FROM embeddings WHERE model_version = ? AND kind = ? LIMIT 1",
                (model_version, kind),
            ).fetchone()
            if row is not None and row[0] != dim:
                raise CaseInputError(
                    f"embeddings {model_version}/{kind}",
                    f"dimension {dim} differs from the stored {row[0]}",
                    "use a new model version (or delete_embeddings first)",
                )
            missing = [i for i in ids if not self._exists(conn, i)]
            if missing:
                raise self._unknown(missing[0])
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (case_id, model_version, kind, dim, vector) VALUES (?, ?, ?, ?, ?)",
                [(i, model_version, kind, dim, v.tobytes()) for i, v in zip(ids, vectors, strict=True)],
            )

    def get_embeddings(self, model_version: str, kind: str) -> tuple[list[str], np.ndarray]:
        """(ids in case insertion order, (N, D) float32); ([], (0, 0)) when none."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT e.case_id, e.dim, e.vector FROM embeddings e JOIN cases c ON c.case_id = e.case_id "
                "WHERE e.model_version = ? AND e.kind = ? ORDER BY c.rowid",
                (model_version, kind),
            ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dim = int(np.median([r[1] for r in rows]))
        sound = [r for r in rows if r[1] == dim and isinstance(r[2], bytes) and len(r[2]) == 4 * dim]
        if len(sound) < len(rows):
            log.warning("%d stored %s embedding(s) damaged (size); left out", len(rows) - len(sound), kind)
        if not sound:
            return [], np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([np.frombuffer(r[2], dtype=np.float32, count=dim) for r in sound])
        return [r[0] for r in sound], vectors

    def delete_embeddings(self, model_version: str, kind: str | None = None) -> None:
        with self.transaction() as conn:
            if kind is None:
                conn.execute("DELETE FROM embeddings WHERE model_version = ?", (model_version,))
                conn.execute("DELETE FROM predicted_terms WHERE model_version = ?", (model_version,))
            else:
                conn.execute(
                    "DELETE FROM embeddings WHERE model_version = ? AND kind = ?", (model_version, kind)
                )

    def model_versions(self) -> dict[str, int]:
        """model version -> number of cases with at least one embedding of it."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT model_version, COUNT(DISTINCT case_id) FROM embeddings GROUP BY model_version ORDER BY model_version"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # ---- predicted terms ------------------------------------------------------------------------------------
    def set_predicted_terms(self, model_version: str, predictions: Mapping[str, Mapping[str, float]]) -> None:
        """Replace the predicted term probabilities of the given cases for `model_version`."""
        with self.transaction() as conn:
            for case_id, probs in predictions.items():
                if not self._exists(conn, case_id):
                    raise self._unknown(case_id)
                conn.execute(
                    "DELETE FROM predicted_terms WHERE case_id = ? AND model_version = ?",
                    (case_id, model_version),
                )
                conn.executemany(
                    "INSERT INTO predicted_terms (case_id, model_version, term, prob) VALUES (?, ?, ?, ?)",
                    [(case_id, model_version, str(t), float(p)) for t, p in probs.items()],
                )

    def get_predicted_terms(self, model_version: str) -> dict[str, dict[str, float]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT case_id, term, prob FROM predicted_terms WHERE model_version = ? ORDER BY case_id, term",
                (model_version,),
            ).fetchall()
        out: dict[str, dict[str, float]] = {}
        for case_id, term, prob in rows:
            out.setdefault(case_id, {})[term] = float(prob)
        return out

    # ---- feedback ------------------------------------------------------------------------------------------
    def log_feedback(self, query_id: str, relevant: list[str], not_relevant: list[str]) -> None:
        """Append one relevance-feedback event (case ids only)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO feedback (query_id, relevant, not_relevant, created_at) VALUES (?, ?, ?, ?)",
                (str(query_id), json.dumps(list(relevant)), json.dumps(list(not_relevant)), _now()),
            )

    def feedback_log(self) -> list[dict]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT query_id, relevant, not_relevant, created_at FROM feedback ORDER BY id"
            ).fetchall()
        return [
            {"query_id": q, "relevant": json.loads(r), "not_relevant": json.loads(n), "created_at": t}
            for q, r, n, t in rows
        ]

    # ---- summary -------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts for `similar-cases info`: cases, labels, sequences, terms, model versions, patients."""
        from collections import Counter

        cases = self.list_cases()
        labels = Counter(c.label for c in cases if c.label)
        sequences = Counter(name for c in cases for name in c.sequences)
        terms = Counter(t for c in cases for t in c.terms)
        patients = {c.patient_id for c in cases if c.patient_id}
        return {
            "archive": str(self.archive_dir),
            "cases": len(cases),
            "with_mask": sum(1 for c in cases if c.mask),
            "with_text": sum(1 for c in cases if c.text),
            "patients": len(patients),
            "labels": dict(labels.most_common()),
            "sequences": dict(sequences.most_common()),
            "terms": dict(terms.most_common()),
            "model_versions": self.model_versions(),
            "feedback_events": len(self.feedback_log()),
        }


_NO_FTS_LOGGED = False


def _migrate_add_fts(conn: sqlite3.Connection) -> bool:
    """Schema 2: the lexical (FTS5) index of notes and reports, created and filled from `cases` when missing,
    rebuilt when marked stale. Idempotent (runs at every open, in the opening transaction). Without FTS5 in
    this SQLite: nothing is created, a one-time message is logged, and False is returned (text search then
    uses the embeddings only)."""
    global _NO_FTS_LOGGED
    if fts.ensure(conn):
        return True
    if not _NO_FTS_LOGGED:
        _NO_FTS_LOGGED = True
        log.warning(
            "this Python's SQLite (%s) has no FTS5: text search ranks by the embeddings only, without word "
            "matching (BM25); see docs/search.md",
            sqlite3.sqlite_version,
        )
    return False


def _case_from_row(row: tuple) -> Case:
    values = dict(zip(_CASE_COLUMNS, row, strict=True))
    return Case(
        case_id=values["case_id"],
        sequences=json.loads(values["sequences"]),
        mask=values["mask"],
        segment=values["segment"],
        label=values["label"],
        terms=json.loads(values["terms"] or "[]"),
        report=values["report"] or "",
        notes=values["notes"] or "",
        patient_id=values["patient_id"],
        study_date=values["study_date"],
    )


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection: `mode=ro` (sees a pending WAL), else `immutable=1` when the folder cannot hold
    the WAL index (-shm) a WAL-mode reader needs, e.g. on a read-only disk."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        wal = path.with_name(path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            log.warning("%s: unmerged writes in %s cannot be read on a read-only disk", path, wal.name)
        return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def _is_storage_failure(exc: BaseException) -> bool:
    """SQLite errors that mean the disk, not the data: full, read-only, I/O, file size limit."""
    text = str(exc).lower()
    return any(k in text for k in ("disk is full", "readonly", "read-only", "disk i/o", "unable to open"))


def _migrate_add_revision(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: add `cases.revision` (existing cases get random tokens); idempotent."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(cases)")}
    if "revision" not in columns:
        conn.execute("ALTER TABLE cases ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
        ids = [r[0] for r in conn.execute("SELECT case_id FROM cases")]
        conn.executemany(
            "UPDATE cases SET revision = ? WHERE case_id = ?", [(_new_revision(), i) for i in ids]
        )


def _new_revision() -> int:
    """A fresh revision token (62 random bits: two versions of a case never share one in practice)."""
    import secrets

    return secrets.randbits(62) + 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
