"""The SQLite case store: cases, transactions, paths, embeddings, predicted terms, feedback."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import box_mask, phantom
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.store import Case, CaseStore


def _case(case_id: str, **kw) -> Case:
    kw.setdefault("sequences", {"T2": f"/data/{case_id}_t2.nii.gz"})
    return Case(case_id=case_id, **kw)


def test_add_get_round_trip_and_persistence(tmp_path):
    store = CaseStore(tmp_path / "archive")
    case = _case(
        "c1",
        sequences={"T2": "/data/c1_t2.nii.gz", "T1": "/data/c1_t1.nii.gz"},
        mask="/data/c1.seg.nrrd",
        segment="lesion",
        label="endometrioma",
        terms=["T1 hyperintense", "shading"],
        report="Unilocular cyst.",
        notes="32 y, premenopausal",
        patient_id="P-0001",
        study_date="2024-05-01",
    )
    store.add(case)
    assert store.db_path == (tmp_path / "archive" / "cases.sqlite").resolve()
    assert store.get("c1") == case
    assert case.text == "32 y, premenopausal\nUnilocular cyst."
    store.close()
    reopened = CaseStore(tmp_path / "archive", create=False)
    assert reopened.get("c1") == case
    assert len(reopened) == 1 and "c1" in reopened and "zz" not in reopened


def test_paths_inside_the_archive_are_stored_relative(tmp_path):
    archive = tmp_path / "archive"
    store = CaseStore(archive)
    inside = archive / "images" / "c1.nii.gz"
    outside = tmp_path / "elsewhere" / "c1_mask.nii.gz"
    store.add(Case("c1", sequences={"T2": str(inside)}, mask=str(outside)))
    stored = store.get("c1")
    assert stored.sequences["T2"] == "images/c1.nii.gz"
    assert stored.mask == str(outside.resolve())
    assert store.resolve(stored.sequences["T2"]) == inside.resolve()
    assert store.resolve("dwi.nii.gz#frame=2") == archive.resolve() / "dwi.nii.gz#frame=2"
    assert store.relative(archive / "dwi.nii.gz#frame=2") == "dwi.nii.gz#frame=2"


def test_duplicate_add_is_an_error_and_changes_nothing(tmp_path):
    store = CaseStore(tmp_path)
    store.add(_case("c1", label="a"))
    with pytest.raises(CaseInputError, match="already"):
        store.add(_case("c1", label="b"))
    assert store.get("c1").label == "a"
    store.add(_case("c1", label="b"), replace=True)
    assert store.get("c1").label == "b" and len(store) == 1


def test_add_many_is_all_or_nothing(tmp_path):
    store = CaseStore(tmp_path)
    store.add(_case("existing"))
    with pytest.raises(CaseInputError):
        store.add_many([_case("a"), _case("b"), _case("existing")])
    assert store.ids() == ["existing"]
    with pytest.raises(CaseInputError):
        store.add_many([_case("a"), _case("")])  # empty id
    with pytest.raises(CaseInputError):
        store.add_many([_case("a"), _case("a")])
    assert store.ids() == ["existing"]
    store.add_many([_case("a"), _case("b")])
    assert store.ids() == ["existing", "a", "b"]


def test_exception_inside_a_transaction_rolls_everything_back(tmp_path):
    store = CaseStore(tmp_path)
    store.add(_case("keep"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add(_case("x"))
            store.set_embeddings("v1", "image", ["keep"], np.ones((1, 4), np.float32))
            store.remove("keep")
            raise RuntimeError("boom")
    assert store.ids() == ["keep"]
    assert store.get_embeddings("v1", "image")[0] == []
    # the store is usable afterwards
    store.add(_case("y"))
    assert store.ids() == ["keep", "y"]


def test_embeddings_round_trip_order_and_versions(tmp_path):
    store = CaseStore(tmp_path)
    store.add_many([_case("a"), _case("b"), _case("c")])
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2, 5)).astype(np.float32)
    store.set_embeddings("v1", "image", ["c", "a"], vectors)
    ids, got = store.get_embeddings("v1", "image")
    assert ids == ["a", "c"]  # case insertion order
    assert got.dtype == np.float32 and got.shape == (2, 5)
    np.testing.assert_array_equal(got, vectors[[1, 0]])
    store.set_embeddings("v1", "text", ["b"], np.ones((1, 5)))
    store.set_embeddings("v2", "fused", ["a", "b", "c"], np.zeros((3, 3)))
    assert store.model_versions() == {"v1": 3, "v2": 3}
    store.set_embeddings("v1", "image", ["a"], np.full((1, 5), 2.0))  # upsert
    np.testing.assert_array_equal(store.get_embeddings("v1", "image")[1][0], np.full(5, 2.0, np.float32))
    with pytest.raises(CaseInputError, match="dimension"):
        store.set_embeddings("v1", "image", ["b"], np.ones((1, 7)))
    with pytest.raises(KeyError):
        store.set_embeddings("v1", "image", ["nope"], np.ones((1, 5)))
    with pytest.raises(CaseInputError):
        store.set_embeddings("v1", "image", ["a", "b"], np.ones((1, 5)))
    none_ids, none_vectors = store.get_embeddings("v9", "image")
    assert none_ids == [] and none_vectors.shape == (0, 0)


def test_remove_deletes_embeddings_and_predicted_terms(tmp_path):
    store = CaseStore(tmp_path)
    store.add_many([_case("a"), _case("b")])
    store.set_embeddings("v1", "image", ["a", "b"], np.eye(2, dtype=np.float32))
    store.set_predicted_terms("v1", {"a": {"solid": 0.9}, "b": {"solid": 0.1, "fat": 0.7}})
    store.remove("a")
    assert "a" not in store
    assert store.get_embeddings("v1", "image")[0] == ["b"]
    assert store.get_predicted_terms("v1") == {"b": {"fat": pytest.approx(0.7), "solid": pytest.approx(0.1)}}
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM embeddings WHERE case_id = 'a'").fetchone()[0] == 0
    with pytest.raises(KeyError):
        store.remove("a")
    with pytest.raises(ValueError):
        store.get("a")


def test_replace_drops_stale_embeddings(tmp_path):
    store = CaseStore(tmp_path)
    store.add(_case("a"))
    store.set_embeddings("v1", "image", ["a"], np.ones((1, 3)))
    store.add(_case("a", label="new"), replace=True)
    assert store.get_embeddings("v1", "image")[0] == []


def test_update_list_and_filters(tmp_path):
    store = CaseStore(tmp_path)
    store.add_many(
        [
            _case("a", label="teratoma", terms=["fat"]),
            _case("b", label="cyst", terms=["fluid", "thin wall"]),
            _case("c", label="teratoma", terms=["fat", "calcification"]),
        ]
    )
    assert [c.case_id for c in store.list_cases(label="teratoma")] == ["a", "c"]
    assert [c.case_id for c in store.list_cases(term="fat")] == ["a", "c"]
    assert [c.case_id for c in store.list_cases(label="teratoma", term="calcification")] == ["c"]
    b = store.get("b")
    b.label, b.report = "endometrioma", "shading"
    store.update(b)
    assert store.get("b").label == "endometrioma" and store.get("b").report == "shading"
    with pytest.raises(KeyError):
        store.update(_case("zz"))


def test_feedback_log_and_summary(tmp_path):
    store = CaseStore(tmp_path)
    store.add_many([_case("a", label="x", patient_id="p1"), _case("b", label="x", patient_id="p1")])
    store.log_feedback("query-1", ["a"], ["b"])
    log = store.feedback_log()
    assert log[0]["query_id"] == "query-1" and log[0]["relevant"] == ["a"] and log[0]["not_relevant"] == ["b"]
    summary = store.summary()
    assert summary["cases"] == 2 and summary["patients"] == 1 and summary["labels"] == {"x": 2}
    assert summary["feedback_events"] == 1


def test_store_schema_has_no_patient_name_and_a_version(tmp_path):
    store = CaseStore(tmp_path)
    with sqlite3.connect(store.db_path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(cases)")}
        assert not any("name" in c for c in columns)
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] >= 1
        conn.execute("UPDATE schema_version SET version = 999")
    store.close()
    with pytest.raises(CaseInputError, match="newer"):
        CaseStore(tmp_path)


def test_missing_or_corrupt_store(tmp_path):
    with pytest.raises(CaseInputError, match="no case store"):
        CaseStore(tmp_path / "nothing", create=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cases.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CaseInputError, match="cases.sqlite"):
        CaseStore(tmp_path / "bad")


def test_load_study_and_mask_through_the_store(tmp_path):
    archive = tmp_path / "archive"
    (archive / "c1").mkdir(parents=True)
    image = phantom()
    sitk.WriteImage(image, str(archive / "c1" / "t2.nrrd"))
    sitk.WriteImage(box_mask(image, (5, 5, 2), (10, 10, 4), value=3), str(archive / "c1" / "mask.nrrd"))
    store = CaseStore(archive)
    store.add(
        Case(
            "c1",
            sequences={"T2": str(archive / "c1" / "t2.nrrd")},
            mask=str(archive / "c1/mask.nrrd"),
            segment="3",
        )
    )
    case = store.get("c1")
    study = store.load_study(case)
    mask = store.load_mask(case, study)
    assert study.reference == "T2"
    assert int(sitk.GetArrayFromImage(mask).sum()) == 6 * 6 * 3


def test_nested_transaction_failure_undoes_only_its_own_writes(tmp_path):
    store = CaseStore(tmp_path)
    with store.transaction():
        store.add(_case("outer"))
        with pytest.raises(CaseInputError):
            store.add_many([_case("inner"), _case("outer")])  # fails on the duplicate: "inner" undone
        store.add(_case("after"))
    assert store.ids() == ["outer", "after"]
