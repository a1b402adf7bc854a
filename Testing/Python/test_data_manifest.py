"""Manifest CSV parsing, ingest (validation, line numbers, transactions) and the ingest/info commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from data_builders import box_mask, phantom, write_seg_nrrd
from SimilarCaseRetrievalLib import cli
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.manifest import (
    MANIFEST_COLUMNS,
    ingest_manifest,
    read_manifest,
    write_manifest,
)
from SimilarCaseRetrievalLib.store import Case, CaseStore


@pytest.fixture()
def data(tmp_path):
    """Two studies (T2 + T1), a label map, an empty label map and a .seg.nrrd, in tmp_path/data."""
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(2):
        image = phantom(seed=i)
        sitk.WriteImage(image, str(folder / f"c{i}_t2.nii.gz"))
        sitk.WriteImage(image * 1.5, str(folder / f"c{i}_t1.nrrd"))
    reference = phantom()
    sitk.WriteImage(box_mask(reference, (8, 6, 2), (14, 12, 5)), str(folder / "mask.nrrd"))
    sitk.WriteImage(box_mask(reference, (0, 0, 0), (0, 0, 0), value=0), str(folder / "empty.nrrd"))
    lesion = np.zeros((8, 20, 24), bool)
    lesion[2:5, 6:12, 8:14] = True
    write_seg_nrrd(folder / "case.seg.nrrd", reference, {"mass": lesion})
    return folder


def _write_csv(path, rows, header=MANIFEST_COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def _manifest(data, extra_rows=()):
    rows = [
        {
            "case_id": "c0",
            "image": "T2=c0_t2.nii.gz;T1=c0_t1.nrrd",
            "mask": "mask.nrrd",
            "label": "cyst",
            "terms": "thin wall; fluid ;",
            "text": "Findings: a cyst.\nImpression: benign.",  # multi-line cell: line numbers must still count
            "notes": "45 y",
            "patient_id": "P1",
            "study_date": "2023-02-01",
        },
        {
            "case_id": "c1",
            "image": "c1_t2.nii.gz",
            "mask": "case.seg.nrrd",
            "segment": "mass",
            "label": "teratoma",
        },
        *extra_rows,
    ]
    return _write_csv(data / "manifest.csv", rows)


def test_read_manifest_resolves_paths_and_fields(data):
    cases, errors = read_manifest(_manifest(data))
    assert errors == []
    c0, c1 = cases
    assert c0.sequences == {"T2": str(data / "c0_t2.nii.gz"), "T1": str(data / "c0_t1.nrrd")}
    assert c0.mask == str(data / "mask.nrrd")
    assert c0.terms == ["thin wall", "fluid"]
    assert c0.report.startswith("Findings") and c0.notes == "45 y" and c0.study_date == "2023-02-01"
    assert c1.sequences == {"image": str(data / "c1_t2.nii.gz")} and c1.segment == "mass"


def test_bad_rows_are_reported_with_their_line_numbers(data):
    extra = [
        {"case_id": "missing", "image": "nope.nii.gz"},  # line 5 (row 1 spans lines 2-3)
        {"case_id": "", "image": "c0_t2.nii.gz"},  # line 6
        {"case_id": "c0", "image": "c0_t2.nii.gz"},  # line 7, repeats c0
        {"case_id": "baddate", "image": "c0_t2.nii.gz", "study_date": "01/02/2023"},  # line 8
        {"case_id": "noimage", "image": ""},  # line 9
    ]
    cases, errors = read_manifest(_manifest(data, extra))
    assert [c.case_id for c in cases] == ["c0", "c1"]
    assert [e.line for e in errors] == [5, 6, 7, 8, 9]
    assert "nope.nii.gz" in errors[0].message and errors[0].case_id == "missing"
    assert "repeats line 2" in errors[2].message
    assert "ISO date" in errors[3].message
    assert all("\n" not in str(e) for e in errors)
    assert str(errors[0]).startswith(f"{data / 'manifest.csv'}:5:")


def test_manifest_without_case_id_column(data):
    path = _write_csv(data / "bad.csv", [{"image": "c0_t2.nii.gz"}], header=["image", "label"])
    with pytest.raises(CaseInputError, match="case_id"):
        read_manifest(path)


def test_ingest_validates_images_and_masks(tmp_path, data):
    extra = [
        {"case_id": "empty-mask", "image": "c0_t2.nii.gz", "mask": "empty.nrrd"},  # line 5
        {
            "case_id": "wrong-seg",
            "image": "c0_t2.nii.gz",
            "mask": "case.seg.nrrd",
            "segment": "cyst",
        },  # line 6
    ]
    store = CaseStore(tmp_path / "archive")
    result = ingest_manifest(_manifest(data, extra), store, progress=False)
    assert result.added == ["c0", "c1"]
    assert [(e.line, e.case_id) for e in result.errors] == [(5, "empty-mask"), (6, "wrong-seg")]
    assert "empty" in result.errors[0].message and "cyst" in result.errors[1].message
    assert store.ids() == ["c0", "c1"]
    c0 = store.get("c0")
    assert c0.label == "cyst" and c0.patient_id == "P1"
    study = store.load_study(c0)
    assert set(study.sequences) == {"T2", "T1"} and study.reference == "T2"
    assert int(sitk.GetArrayFromImage(store.load_mask(store.get("c1"), study)).sum()) == 3 * 6 * 6

    # Without validation the image content is not read: the empty mask goes in.
    other = CaseStore(tmp_path / "other")
    unchecked = ingest_manifest(_manifest(data, extra), other, validate=False, progress=False)
    assert unchecked.errors == [] and len(other) == 4


def test_ingest_duplicates_need_replace(tmp_path, data):
    store = CaseStore(tmp_path / "archive")
    ingest_manifest(_manifest(data), store, progress=False)
    store.set_embeddings("v1", "image", ["c0", "c1"], np.ones((2, 4), np.float32))
    again = ingest_manifest(_manifest(data), store, progress=False)
    assert again.added == [] and [e.line for e in again.errors] == [2, 4]
    assert all("--replace" in e.message for e in again.errors)
    assert store.model_versions() == {"v1": 2}
    replaced = ingest_manifest(_manifest(data), store, replace=True, progress=False)
    assert replaced.added == ["c0", "c1"] and replaced.replaced == ["c0", "c1"]
    assert store.model_versions() == {}  # stale embeddings of replaced cases are dropped


def test_failing_store_write_leaves_the_store_unchanged(tmp_path, data):
    store = CaseStore(tmp_path / "archive")
    store.add(Case("keep", sequences={"T2": str(data / "c0_t2.nii.gz")}))
    # A case id that collides inside the same transaction (add_many raises) -> nothing from the batch.
    with pytest.raises(CaseInputError):
        store.add_many([Case("new", sequences={"T2": "a"}), Case("keep", sequences={"T2": "b"})])
    assert store.ids() == ["keep"]


def test_write_manifest_round_trip(tmp_path, data):
    cases, _ = read_manifest(_manifest(data))
    out = write_manifest(data / "copy.csv", cases)
    again, errors = read_manifest(out)
    assert errors == [] and again == cases
    with open(out, newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    assert first["image"] == "T2=c0_t2.nii.gz;T1=c0_t1.nrrd"  # written relative to the manifest


def test_cli_ingest_and_info(tmp_path, data, capsys):
    manifest = _manifest(data, [{"case_id": "bad", "image": "c0_t2.nii.gz", "mask": "empty.nrrd"}])
    archive = tmp_path / "archive"
    code = cli.main(["ingest", str(manifest), "--archive", str(archive), "--quiet"])
    out = capsys.readouterr()
    assert code == 1  # some rows rejected, the others went in
    assert "ingested 2 case(s), rejected 1 row(s)" in out.out
    assert "manifest.csv:5: case bad:" in out.err

    assert cli.main(["info", "--archive", str(archive), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cases"] == 2 and summary["patients"] == 1
    assert summary["labels"] == {"cyst": 1, "teratoma": 1}
    assert summary["sequences"] == {"T2": 1, "T1": 1, "image": 1}
    assert summary["terms"] == {"thin wall": 1, "fluid": 1}

    assert cli.main(["info", "--archive", str(archive)]) == 0
    assert "cases        2" in capsys.readouterr().out

    good = _manifest(data)
    assert cli.main(["ingest", str(good), "--archive", str(tmp_path / "fresh"), "--quiet"]) == 0
    assert cli.main(["ingest", str(good), "--archive", str(tmp_path / "fresh"), "--quiet", "--replace"]) == 0


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["info", "--archive", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no case store" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["ingest", str(tmp_path / "absent.csv"), "--archive", str(tmp_path / "a")]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_write_manifest_relative_case_paths_use_base_dir(tmp_path, data):
    case = Case("c0", sequences={"T2": "c0_t2.nii.gz"}, mask="mask.nrrd#series=1.2")
    out = write_manifest(data / "sub" / "m.csv", [case], base_dir=data)
    (read,), errors = read_manifest(out)
    assert errors == [] and read.mask == str((data / "mask.nrrd").resolve()) + "#series=1.2"
    with open(out, newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert (
        row["image"] == f"T2={(data / 'c0_t2.nii.gz').resolve()}"
    )  # outside the manifest's folder: absolute
    assert row["mask"].endswith("mask.nrrd#series=1.2")
    inside = write_manifest(data / "m2.csv", [case], base_dir=data)
    again, errors = read_manifest(inside)
    assert errors == [] and again[0].sequences == {"T2": str(data / "c0_t2.nii.gz")}
