"""Reports (EN/FR) name the case's terms; clinical notes correlate with the diagnosis but never name it."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from SimilarCaseRetrievalLib import terms as lexicon
from SimilarCaseRetrievalLib.synthetic import DIAGNOSIS_WORDS, LABELS
from SimilarCaseRetrievalLib.synthetic.notes import sample_profile, write_notes
from SimilarCaseRetrievalLib.synthetic.reports import ReportContext, differential, write_report


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _forbidden_words() -> list[str]:
    words = [w for ws in DIAGNOSIS_WORDS.values() for w in ws]
    return words + list(LABELS) + [label.replace("_", " ") for label in LABELS]


def test_reports_contain_every_term_phrase_in_both_languages(tiny_archive: Path) -> None:
    for language in ("en", "fr"):
        for row in _rows(tiny_archive / f"manifest_{language}.csv"):
            report = row["text"].lower()
            for term in row["terms"].split(";"):
                assert lexicon.phrase(term, language).lower() in report, (row["case_id"], term, language)


def test_french_report_is_present_and_french(tiny_archive: Path) -> None:
    en = {r["case_id"]: r for r in _rows(tiny_archive / "manifest_en.csv")}
    fr = {r["case_id"]: r for r in _rows(tiny_archive / "manifest_fr.csv")}
    assert en.keys() == fr.keys()
    for case_id, row in fr.items():
        assert row["text"].startswith("IRM PELVIENNE") and "Conclusion :" in row["text"]
        assert en[case_id]["text"].startswith("MRI PELVIS") and "Impression:" in en[case_id]["text"]
        assert row["terms"] == en[case_id]["terms"] and row["image"] == en[case_id]["image"]
    # manifest.csv is the English one by default
    assert (tiny_archive / "manifest.csv").read_bytes() == (tiny_archive / "manifest_en.csv").read_bytes()


def test_report_states_the_orads_score_and_measurements() -> None:
    terms = [
        "fluid:simple",
        "fat:absent",
        "solid:present",
        "t2_dark_solid:absent",
        "t2_shading:absent",
        "septations:thick",
        "wall:thick_irregular",
        "papillary:present",
        "ascites:present",
        "implants:present",
        "laterality:left",
        "locularity:multilocular",
        "size:large",
        "orads:5",
    ]
    ctx = ReportContext((112.0, 90.0, 70.0), postmenopausal=True, endometrium_mm=2.0)
    report = write_report(terms, ctx, "en")
    assert "O-RADS MRI 5" in report and "112 x 90 x 70 mm" in report
    assert "suspicious of ovarian malignancy" in differential(terms, "en")
    assert "O-RADS IRM 5" in write_report(terms, ctx, "fr")


def test_notes_never_name_the_diagnosis(tiny_archive: Path) -> None:
    forbidden = _forbidden_words()
    for language in ("en", "fr"):
        for row in _rows(tiny_archive / f"manifest_{language}.csv"):
            notes = row["notes"].lower()
            assert not [w for w in forbidden if w.lower() in notes], (row["case_id"], row["notes"])
            # nor the report's findings vocabulary
            for term in row["terms"].split(";"):
                if lexicon.is_informative(term) and not term.startswith(("laterality:", "orads:")):
                    assert lexicon.phrase(term, language).lower() not in notes, (row["case_id"], term)


def _notes_sample(label: str, n: int = 150) -> list[tuple[object, str]]:
    out = []
    for seed in range(n):
        rng = np.random.default_rng([seed, LABELS.index(label)])
        age = int(rng.integers(20, 80))
        profile = sample_profile(label, age, age > 51, rng)
        out.append((profile, write_notes(profile, rng, "en")))
    return out


def test_notes_correlate_without_giving_away() -> None:
    forbidden = _forbidden_words()
    raised = {}
    for label in LABELS:
        sample = _notes_sample(label)
        raised[label] = np.mean([p.ca125 >= 35 for p, _ in sample])
        texts = [t for _, t in sample]
        assert any(t == "" for t in texts), "some notes are missing"
        assert len(set(texts)) > len(texts) * 0.8, "notes vary"
        for text in texts:
            assert not [w for w in forbidden if w.lower() in text.lower()], text
    # CA-125 is raised more often with malignancy and endometriosis, but not only there (misleading notes)
    assert raised["malignant"] > 2 * raised["simple_cyst"]
    assert raised["endometrioma"] > raised["mature_teratoma"]
    assert (
        raised["malignant"] < 1.0
        and max(raised[x] for x in ("simple_cyst", "mature_teratoma", "fibroma")) > 0
    )


def test_notes_mention_endometriosis_history_more_often_for_endometrioma() -> None:
    counts = Counter()
    for label in ("endometrioma", "cystadenoma"):
        counts[label] = sum("endometriosis" in t.lower() for _, t in _notes_sample(label))
    assert counts["endometrioma"] > 2 * counts["cystadenoma"]
    assert counts["cystadenoma"] > 0  # a misleading history exists too
