"""The lexical (FTS5) index inside the case store: kept in the cases' transactions, migration, FTS5 missing,
query terms and matched words."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time

import pytest
from SimilarCaseRetrievalLib import store as store_module
from SimilarCaseRetrievalLib.lexical import fts, query_terms
from SimilarCaseRetrievalLib.store import Case, CaseStore

pytestmark = pytest.mark.skipif(not fts.available(), reason="this SQLite has no FTS5")


def _case(case_id: str, report: str = "", notes: str = "") -> Case:
    return Case(case_id=case_id, sequences={"T2": f"/data/{case_id}.nii.gz"}, report=report, notes=notes)


def _lexical_rows(db) -> dict[str, tuple[str, str]]:
    """case id -> (notes, report) as held by the FTS table, read with a plain connection."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT d.case_id, t.notes, t.report FROM {fts.DOCS_TABLE} d "
            f"JOIN {fts.TEXT_TABLE} t ON t.rowid = d.docid"
        ).fetchall()
        n_docs = conn.execute(f"SELECT COUNT(*) FROM {fts.DOCS_TABLE}").fetchone()[0]
    assert n_docs == len(rows)  # no mapping row without its FTS row
    return {r[0]: (r[1], r[2]) for r in rows}


def _case_rows(db) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT case_id, notes, report FROM cases")}


def _hits(store: CaseStore, text: str) -> list[str]:
    return [cid for cid, _ in store.lexical_search(text)]


def test_fts_follows_add_replace_update_and_remove(tmp_path):
    store = CaseStore(tmp_path)
    assert store.lexical_available
    store.add_many([_case("A", "small pleural effusion"), _case("B", "pneumothorax", notes="dyspnoea")])
    assert _lexical_rows(store.db_path) == _case_rows(store.db_path)
    assert _hits(store, "effusion") == ["A"]
    assert _hits(store, "dyspnoea") == ["B"]
    store.add(_case("A", "cardiomegaly"), replace=True)
    assert _hits(store, "effusion") == [] and _hits(store, "cardiomegaly") == ["A"]
    store.update(_case("B", "granuloma", notes="cough"))
    assert _hits(store, "pneumothorax dyspnoea") == [] and _hits(store, "cough") == ["B"]
    store.remove("A")
    assert _hits(store, "cardiomegaly") == []
    assert _lexical_rows(store.db_path) == _case_rows(store.db_path)
    store.close()
    # persisted: a new process-level open sees the same index (no rebuild needed)
    reopened = CaseStore(tmp_path)
    assert _hits(reopened, "granuloma") == ["B"]


def test_failed_transactions_leave_the_fts_table_as_before(tmp_path):
    store = CaseStore(tmp_path)
    store.add(_case("keep", "calcified granuloma"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add(_case("new", "pleural effusion"))
            store.update(_case("keep", "atelectasis"))
            raise RuntimeError("boom")
    assert _hits(store, "effusion atelectasis") == [] and _hits(store, "granuloma") == ["keep"]
    with pytest.raises(store_module.CaseInputError):  # add_many is all-or-nothing, FTS included
        store.add_many([_case("x", "opacity"), _case("keep", "duplicate id")])
    assert _hits(store, "opacity") == []
    with store.transaction():  # a failed savepoint undoes only its own FTS writes
        store.add(_case("outer", "nodule"))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.remove("keep")
                raise RuntimeError("inner")
    assert _hits(store, "nodule") == ["outer"] and _hits(store, "granuloma") == ["keep"]
    assert _lexical_rows(store.db_path) == _case_rows(store.db_path)


_WRITER = """
import sys, time
from SimilarCaseRetrievalLib.store import Case, CaseStore
store = CaseStore(sys.argv[1])
with store.transaction():
    for i in range(50):
        store.add(Case(case_id=f"K{i}", sequences={"T2": "x.nii.gz"}, report=f"killed write {i} emphysema"))
    store.remove("keep")
    open(sys.argv[2], "w").close()
    time.sleep(60)
"""


def test_killed_writer_leaves_cases_and_fts_consistent(tmp_path):
    store = CaseStore(tmp_path / "a")
    store.add(_case("keep", "hyperinflation"))
    store.close()
    marker = tmp_path / "in-transaction"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "a"), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert marker.exists(), "the writer did not reach its transaction"
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = CaseStore(tmp_path / "a")
    assert store.ids() == ["keep"]
    assert _hits(store, "emphysema") == [] and _hits(store, "hyperinflation") == ["keep"]
    assert _lexical_rows(store.db_path) == _case_rows(store.db_path)


def test_a_word_in_only_one_report_ranks_it_first(tmp_path):
    store = CaseStore(tmp_path)
    common = "heart size normal lungs clear no effusion"
    store.add_many([_case(f"C{i}", f"{common} {'stable' if i % 2 else ''}") for i in range(30)])
    store.add(_case("RARE", f"{common} with a small left apical pneumothorax"))
    ranked = store.lexical_search("pneumothorax stable")
    assert ranked[0][0] == "RARE" and len(ranked) == 16  # RARE, then the 15 'stable' reports
    assert ranked[0][1] > ranked[1][1] > 0
    assert len(store.lexical_search("pneumothorax stable", limit=5)) == 5


def test_terms_in_half_the_texts_are_left_out_and_the_rarest_come_first(tmp_path):
    store = CaseStore(tmp_path)
    store.add_many([_case(f"C{i}", f"effusion {'stable' if i % 3 == 0 else ''}") for i in range(30)])
    store.add(_case("RARE", "effusion pneumothorax"))
    with sqlite3.connect(store.db_path) as conn:
        # 'effusion' is in every text (FTS5's idf: 1e-6) and a rarer term is there; 'absentword' is in none
        terms = ["effusion", "stable", "pneumothorax", "absentword"]
        assert fts.prune_terms(conn, terms) == ["stable", "pneumothorax"]
        assert fts.prune_terms(conn, ["effusion", "absentword"]) == ["effusion"]  # common only: kept
        # a budget of 5 texts: the rarest term (1 text) fits, 'stable' (10 texts) would exceed it
        assert fts.prune_terms(conn, ["stable", "pneumothorax"], max_postings=5) == ["pneumothorax"]
        # the rarest term is kept even when it alone exceeds the budget; common terms only: nothing
        assert fts.prune_terms(conn, ["stable"], max_postings=5) == ["stable"]
        assert fts.prune_terms(conn, ["effusion"], max_postings=5) == []
    assert len(store.lexical_search("effusion")) == 31 and store.lexical_search("effusion", limit=3) == []
    assert [c for c, _ in store.lexical_search("effusion pneumothorax")] == ["RARE"]


def test_matched_words_per_column(tmp_path):
    store = CaseStore(tmp_path)
    store.add(_case("A", "Small pleural effusions. No pneumothorax.", notes="Postmenopausal, CA-125 raised"))
    words = store.matched_words("pleural effusion, CA-125 rising", "A")
    assert words == {"notes": ["CA", "125"], "report": ["pleural", "effusions"]}  # stems match, as written
    assert store.matched_words("cardiomegaly", "A") == {"notes": [], "report": []}


def test_query_terms_drop_function_words_and_repeat():
    assert query_terms("No acute effusion; the EFFUSION is small, CA-125 x 2") == [
        "acute",
        "effusion",
        "small",
        "ca",
        "125",
        "2",
    ]
    assert query_terms("the and of") == []


def _make_v1_archive(folder) -> None:
    """An archive as written by schema version 1 (before the lexical index): its tables and rows only."""
    folder.mkdir()
    conn = sqlite3.connect(folder / store_module.DB_NAME)
    for statement in filter(None, (s.strip() for s in store_module._SCHEMA.split(";"))):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.executemany(
        "INSERT INTO cases (case_id, sequences, report, notes, added_at) VALUES (?, '{}', ?, ?, 'then')",
        [("OLD1", "old report with bronchiectasis", ""), ("OLD2", "clear lungs", "haemoptysis")],
    )
    conn.commit()
    conn.close()


def test_opening_a_version_1_archive_adds_and_fills_the_lexical_index(tmp_path):
    _make_v1_archive(tmp_path / "a")
    store = CaseStore(tmp_path / "a")
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == store_module.SCHEMA_VERSION
    assert _hits(store, "bronchiectasis") == ["OLD1"] and _hits(store, "haemoptysis") == ["OLD2"]
    assert _lexical_rows(store.db_path) == _case_rows(store.db_path)
    store.close()
    with sqlite3.connect(tmp_path / "a" / store_module.DB_NAME) as conn:  # the step is idempotent
        assert store_module._migrate_add_fts(conn) is True
        assert conn.execute(f"SELECT COUNT(*) FROM {fts.DOCS_TABLE}").fetchone()[0] == 2


@pytest.fixture
def no_fts5(monkeypatch):
    """This process's store believes SQLite has no FTS5: the probe asks SQLite for a module it really lacks."""
    monkeypatch.setattr(fts, "FTS_MODULE", "fts5_not_compiled_in")
    monkeypatch.setattr(store_module, "_NO_FTS_LOGGED", False)
    assert not fts.available()


def test_without_fts5_the_store_works_and_says_so_once(tmp_path, no_fts5, caplog):
    with caplog.at_level(logging.WARNING, logger="SimilarCaseRetrievalLib.store"):
        store = CaseStore(tmp_path / "a")
        CaseStore(tmp_path / "b")
    assert len([r for r in caplog.records if "FTS5" in r.getMessage()]) == 1
    assert not store.lexical_available
    store.add(_case("A", "pleural effusion"))
    store.update(_case("A", "pneumothorax"))
    assert store.lexical_search("pneumothorax") == []
    assert store.matched_words("pneumothorax", "A") == {"notes": [], "report": []}
    store.remove("A")
    assert store.ids() == []


def test_writes_without_fts5_are_reindexed_by_the_next_open_with_it(tmp_path, monkeypatch):
    store = CaseStore(tmp_path)
    store.add_many([_case("A", "pleural effusion"), _case("B", "pneumothorax")])
    store.close()
    with monkeypatch.context() as m:  # e.g. the archive opened by a Python whose SQLite lacks FTS5
        m.setattr(fts, "FTS_MODULE", "fts5_not_compiled_in")
        m.setattr(store_module, "_NO_FTS_LOGGED", True)
        other = CaseStore(tmp_path)
        other.add(_case("C", "cardiomegaly"))
        other.remove("A")
        other.close()
    store = CaseStore(tmp_path)
    assert _hits(store, "cardiomegaly") == ["C"] and _hits(store, "effusion") == []
    assert _lexical_rows(store.db_path) == _case_rows(store.db_path)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute(f"SELECT COUNT(*) FROM {fts.STATE_TABLE}").fetchone()[0] == 0  # no longer stale
