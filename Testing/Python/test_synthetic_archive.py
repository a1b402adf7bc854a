"""Synthetic archive: layout, determinism, balance, follow-ups, ingest, demo helpers."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from SimilarCaseRetrievalLib import terms as lexicon
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.manifest import MANIFEST_COLUMNS, ingest_manifest
from SimilarCaseRetrievalLib.store import CaseStore
from SimilarCaseRetrievalLib.synthetic import (
    LABELS,
    SEQUENCES,
    archive_is_complete,
    ensure_demo_archive,
    make_archive,
    make_query_case,
    plan_archive,
    synthesize_case,
)


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_archive_layout_and_manifest_columns(tiny_archive: Path) -> None:
    rows = _rows(tiny_archive / "manifest.csv")
    assert list(rows[0]) == MANIFEST_COLUMNS
    assert len(rows) == 24
    for row in rows:
        spec = dict(part.split("=", 1) for part in row["image"].split(";"))
        assert list(spec) == list(SEQUENCES)
        for path in [*spec.values(), row["mask"]]:
            assert (tiny_archive / path).is_file(), path
        assert spec["T2"] == f"cases/{row['case_id']}/T2.nii.gz"
        assert row["label"] in LABELS
        assert row["patient_id"].startswith("P") and row["study_date"][:2] == "20"


def test_volumes_share_one_anisotropic_grid(tiny_archive: Path) -> None:
    folder = tiny_archive / "cases" / "OV0001"
    images = [sitk.ReadImage(str(folder / f"{name}.nii.gz")) for name in (*SEQUENCES, "mask")]
    for img in images[1:]:
        assert img.GetSize() == images[0].GetSize()
        assert img.GetSpacing() == images[0].GetSpacing()
        assert img.GetOrigin() == images[0].GetOrigin()
    assert images[0].GetSize() == (48, 48, 8)
    sx, sy, sz = images[0].GetSpacing()
    assert sx == sy and sz > 2 * sx
    mask = sitk.GetArrayFromImage(images[-1])
    assert set(np.unique(mask)) == {0, 1}


def test_labels_balanced() -> None:
    for n in (24, 300, 7):
        counts = Counter(p.label for p in plan_archive(n, seed=3))
        assert sum(counts.values()) == n
        assert set(counts) <= set(LABELS)
        assert max(counts.values()) - min(counts.get(label, 0) for label in LABELS) <= 1


def test_followups_share_patient_label_and_come_later() -> None:
    plans = plan_archive(120, seed=1)
    assert len({p.case_id for p in plans}) == len(plans)
    by_patient: dict[str, list] = {}
    for p in plans:
        by_patient.setdefault(p.patient_id, []).append(p)
    repeated = [v for v in by_patient.values() if len(v) > 1]
    assert repeated, "some patients must have a follow-up study"
    assert len(repeated) < len(by_patient) / 2
    for studies in repeated:
        assert len({s.label for s in studies}) == 1
        first, second = sorted(studies, key=lambda s: s.visit)
        assert second.study_date > first.study_date and second.prior_date == first.study_date


def test_plan_is_deterministic_and_seed_dependent() -> None:
    a, b, c = plan_archive(60, seed=5), plan_archive(60, seed=5), plan_archive(60, seed=6)
    assert a == b
    assert [(p.label, p.patient_id) for p in a] != [(p.label, p.patient_id) for p in c]


def test_case_is_deterministic_for_a_seed() -> None:
    a, b = synthesize_case("cystadenoma", seed=11), synthesize_case("cystadenoma", seed=11)
    c = synthesize_case("cystadenoma", seed=12)
    for name in SEQUENCES:
        np.testing.assert_array_equal(a.images[name], b.images[name])
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.terms == b.terms and a.reports == b.reports and a.notes == b.notes
    assert not np.array_equal(a.images["T2"], c.images["T2"])


def test_archive_rebuild_is_identical(tiny_archive: Path, tiny_archive_files: Path) -> None:
    """Same seed and size -> same manifest text and the same voxels, whether ingested or not."""
    assert (tiny_archive / "manifest_en.csv").read_bytes() == (
        tiny_archive_files / "manifest_en.csv"
    ).read_bytes()
    assert (tiny_archive / "manifest_fr.csv").read_bytes() == (
        tiny_archive_files / "manifest_fr.csv"
    ).read_bytes()
    for name in ("T1FS.nii.gz", "mask.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_archive / "cases" / "OV0007" / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_archive_files / "cases" / "OV0007" / name)))
        np.testing.assert_array_equal(a, b)
    assert not (tiny_archive_files / "cases.sqlite").exists()


def test_store_holds_every_case_with_terms(tiny_archive: Path) -> None:
    store = CaseStore(tiny_archive, create=False)
    try:
        rows = {r["case_id"]: r for r in _rows(tiny_archive / "manifest.csv")}
        assert sorted(store.ids()) == sorted(rows)
        case = store.get("OV0003")
        assert case.label == rows["OV0003"]["label"]
        assert case.terms == rows["OV0003"]["terms"].split(";")
        assert case.sequences.keys() == set(SEQUENCES)
        assert case.notes == rows["OV0003"]["notes"]
        study = store.load_study(case)
        mask = store.load_mask(case, study)
        assert sitk.GetArrayFromImage(mask).sum() > 0
        assert len(store.list_cases(label="malignant")) == 4
    finally:
        store.close()
    info = json.loads((tiny_archive / "archive.json").read_bytes())
    assert info["ingested"] and info["labels"] == {label: 4 for label in LABELS}


def test_every_case_passes_full_validation_on_ingest(tiny_archive_files: Path, tmp_path: Path) -> None:
    """Reading back every study and mask through the public reader finds no bad row."""
    archive = tmp_path / "copy"
    shutil.copytree(tiny_archive_files, archive)
    store = CaseStore(archive)
    try:
        result = ingest_manifest(archive / "manifest_fr.csv", store, validate=True, progress=False)
        assert result.errors == []
        assert len(result.added) == 24
        assert "Conclusion" in store.get("OV0001").report
    finally:
        store.close()


def test_terms_are_a_complete_valid_reading(tiny_archive: Path) -> None:
    for row in _rows(tiny_archive / "manifest.csv"):
        terms = row["terms"].split(";")
        assert lexicon.validate(terms) == []
        assert sorted(lexicon.category(t) for t in terms) == sorted(lexicon.CATEGORIES)


def test_make_archive_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_bytes(b"not a synthetic archive")
    with pytest.raises(CaseInputError, match="not empty"):
        make_archive(tmp_path, n_cases=6, size="tiny", ingest=False, progress=False)
    assert (tmp_path / "precious.txt").read_bytes() == b"not a synthetic archive"


def test_ensure_demo_archive_reuses_then_repairs(tmp_path: Path) -> None:
    archive = tmp_path / "demo"
    ensure_demo_archive(archive, n_cases=6, size="tiny", progress=False)
    assert archive_is_complete(archive, 6, 0, "tiny")
    stamp = (archive / "archive.json").stat().st_mtime_ns
    ensure_demo_archive(archive, n_cases=6, size="tiny", progress=False)
    assert (archive / "archive.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    shutil.rmtree(archive / "cases" / "OV0002")
    assert not archive_is_complete(archive, 6, 0, "tiny")
    ensure_demo_archive(archive, n_cases=6, size="tiny", progress=False)
    assert archive_is_complete(archive, 6, 0, "tiny")
    assert (archive / "cases" / "OV0002" / "T2.nii.gz").is_file()


def test_make_query_case_is_unseen_study_with_mask(tiny_archive: Path) -> None:
    study, mask, notes = make_query_case(seed=4, label="endometrioma", size="tiny")
    assert set(study.sequences) == set(SEQUENCES) and study.reference == "T2"
    assert mask.GetSize() == study.sequences["T2"].GetSize()
    assert sitk.GetArrayFromImage(mask).sum() > 0
    assert isinstance(notes, str)
    query = sitk.GetArrayFromImage(study.sequences["T2"])
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_archive / "cases" / "OV0001" / "T2.nii.gz")))
    assert query.shape == stored.shape and not np.allclose(query, stored)


@pytest.mark.parametrize(
    "kwargs",
    [{"size": "huge"}, {"size": (48, 48)}, {"n_cases": 0}, {"language": "de"}],
)
def test_bad_parameters_raise_one_line_case_input_error(tmp_path: Path, kwargs: dict) -> None:
    args = {"n_cases": 6, "size": "tiny", "ingest": False, "progress": False, **kwargs}
    with pytest.raises(CaseInputError) as info:
        make_archive(tmp_path / "a", **args)
    assert "\n" not in str(info.value) and "Fix:" in str(info.value)


def test_unknown_query_label_is_rejected() -> None:
    with pytest.raises(CaseInputError, match="simple_cyst"):
        make_query_case(seed=0, label="adenocarcinoma", size="tiny")


def test_texts_and_terms_do_not_depend_on_the_grid() -> None:
    from SimilarCaseRetrievalLib.synthetic.archive import synthesize_planned
    from SimilarCaseRetrievalLib.synthetic.shapes import Grid

    plan = plan_archive(12, seed=0)[5]
    a = synthesize_planned(plan, 0, Grid.named((8, 8, 4)))
    b = synthesize_planned(plan, 0, Grid.named("tiny"))
    assert a.terms == b.terms and a.reports == b.reports and a.notes == b.notes
    assert a.mask.shape != b.mask.shape


def test_rebuild_never_loses_cases_added_to_the_demo_archive(tmp_path: Path) -> None:
    from SimilarCaseRetrievalLib.store import Case

    archive = ensure_demo_archive(tmp_path / "demo", n_cases=6, size="tiny", progress=False)
    own = archive / "cases" / "MY-CASE"
    shutil.copytree(archive / "cases" / "OV0001", own)
    store = CaseStore(archive)
    try:
        store.add(
            Case(
                case_id="MY-CASE",
                sequences={"T2": "cases/MY-CASE/T2.nii.gz"},
                mask="cases/MY-CASE/mask.nii.gz",
                label="fibroma",
            )
        )
    finally:
        store.close()
    # still complete (the store holds every synthetic case, and more): reused as is
    assert archive_is_complete(archive, 6, 0, "tiny")
    # a different archive would replace the synthetic cases: refused, nothing deleted
    with pytest.raises(CaseInputError, match="non-synthetic"):
        ensure_demo_archive(archive, n_cases=12, size="tiny", progress=False)
    assert (own / "T2.nii.gz").is_file() and (archive / "cases" / "OV0001" / "T2.nii.gz").is_file()
    store = CaseStore(archive, create=False)
    try:
        assert "MY-CASE" in store and len(store) == 7
    finally:
        store.close()
