"""Read one PACS study the way the model needs it: the series of each required sequence (by the rules), one
segment of its DICOM SEG, and its report / notes (SR, else a CSV keyed by accession number). Used by the sync
and by `search --pacs --study`."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CaseInputError
from ..segmentation import conform_mask
from ..study import Study, study_from_images
from .connection import Pacs, PacsError, PacsNotFound, SeriesInfo
from .dicom_io import (
    Segment,
    read_segment,
    seg_segments,
    seg_source_series,
    series_image,
    sort_slices,
    sr_texts,
)
from .rules import SeriesRules

if TYPE_CHECKING:
    import SimpleITK as sitk
    from pydicom import Dataset


class StudySkipped(Exception):
    """This study cannot become a case; `reason` says why (no SEG, no matching series, unreadable...)."""

    def __init__(self, study_uid: str, reason: str):
        super().__init__(f"study {study_uid}: {reason}")
        self.study_uid = study_uid
        self.reason = reason


@dataclass
class Reference:
    """One instance a KOS can point to."""

    study_uid: str
    series_uid: str
    sop_class: str
    sop_uid: str


@dataclass
class PacsStudy:
    """A study read from the PACS (kept in memory; `header` holds identifiers and is never stored)."""

    study_uid: str
    images: dict[str, sitk.Image]
    series: dict[str, str]  # sequence name (and "SEG", "SR") -> series UID
    segment: Segment
    report: str = ""
    notes: str = ""
    accession: str = ""
    study_date: str = ""  # YYYYMMDD
    patient_id: str = ""  # raw: only to pseudonymise, never stored or logged
    references: list[Reference] = field(default_factory=list)
    header: Dataset | None = None  # one image instance (for new objects of this study: KOS, SEG)
    study: Study | None = None  # the sequences on the reference (first required) sequence's grid
    mask: sitk.Image | None = None  # the segment on that grid

    @property
    def iso_date(self) -> str | None:
        d = self.study_date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else None


def read_reports_csv(path: str | Path) -> dict[str, tuple[str, str]]:
    """accession number -> (report, notes) from a CSV with columns accession_number, report[, notes]."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CaseInputError(path, f"cannot read the reports CSV ({exc})", "give a UTF-8 CSV") from None
    if rows and not {"accession_number", "report"} <= set(rows[0]):
        raise CaseInputError(path, "missing column accession_number or report", "add the columns")
    return {r["accession_number"].strip(): (r["report"] or "", r.get("notes") or "") for r in rows}


def _pick(series: list[SeriesInfo], modality: str) -> SeriesInfo | None:
    found = [s for s in series if s.modality == modality]
    return max(found, key=lambda s: s.number or 0) if found else None


def read_pacs_study(
    pacs: Pacs,
    study_uid: str,
    rules: SeriesRules,
    *,
    segment: str | None = None,
    reports: dict[str, tuple[str, str]] | None = None,
    series: list[SeriesInfo] | None = None,
) -> PacsStudy:
    """Retrieve and read `study_uid`. Raises `StudySkipped` (with the reason) when it cannot be a case,
    `PacsError` when the PACS fails."""
    where = f"study {study_uid}"
    if series is None:
        series = pacs.find_series(study_uid)
    if not series:
        raise StudySkipped(study_uid, "not in the PACS (no series)")
    segs = sorted((s for s in series if s.modality == "SEG"), key=lambda s: -(s.number or 0))
    if not segs:
        raise StudySkipped(study_uid, "no SEG (segmentation) in the study")
    chosen = rules.classify(series)
    missing = [name for name in rules.required if name not in chosen]
    if missing:
        raise StudySkipped(study_uid, f"no matching series for {', '.join(missing)}")
    try:
        seg_info, seg = _find_seg(pacs, study_uid, segs, segment)
        source_uid = seg_source_series(seg)
        retrieved = {name: _retrieve(pacs, study_uid, info.series_uid) for name, info in chosen.items()}
        by_uid = {chosen[name].series_uid: datasets for name, datasets in retrieved.items()}
        if source_uid not in by_uid:
            by_uid[source_uid] = _retrieve(pacs, study_uid, source_uid)
        seg_part = read_segment(seg, by_uid[source_uid], segment, f"{where} SEG")
        images = {name: series_image(datasets, f"{where} {name}") for name, datasets in retrieved.items()}
        # The checks of a file ingest, in memory: sequences on one grid, the segment non-empty and on it.
        study = study_from_images(images, reference=rules.required[0] if rules.required else None)
        mask = conform_mask(seg_part.mask, study.reference_image, f"{where} SEG")
        report = notes = ""
        sr_info = _pick(series, "SR")
        if sr_info is not None:
            report, notes = sr_texts(_retrieve(pacs, study_uid, sr_info.series_uid)[0])
    except PacsNotFound:
        raise StudySkipped(study_uid, "gone from the PACS while reading it") from None
    except PacsError:
        raise
    except CaseInputError as exc:
        raise StudySkipped(study_uid, f"unreadable: {exc.problem}") from None
    header = retrieved[rules.required[0] if rules.required else next(iter(retrieved))][0]
    accession = str(header.get("AccessionNumber", "") or "")
    if not (report or notes) and reports:
        report, notes = reports.get(accession, ("", ""))
    references = [
        _reference(sort_slices(datasets, where)[len(datasets) // 2]) for datasets in retrieved.values()
    ]
    references.append(_reference(seg))
    return PacsStudy(
        study_uid=study_uid,
        images=images,
        series={**{n: i.series_uid for n, i in chosen.items()}, "SEG": seg_info.series_uid},
        segment=seg_part,
        report=report.strip(),
        notes=notes.strip(),
        accession=accession,
        study_date=str(header.get("StudyDate", "") or ""),
        patient_id=str(header.get("PatientID", "") or ""),
        references=references,
        header=header,
        study=study,
        mask=mask,
    )


def query_from_pacs(
    pacs: Pacs,
    study_uid: str,
    sequences: Sequence[str],
    *,
    segment: str | None = None,
    rules: SeriesRules | None = None,
) -> tuple[PacsStudy, Study, sitk.Image]:
    """A PACS study as a search query: (the study as read, its `Study` on the first sequence's grid, the
    segment's mask on that grid). `sequences` are the model's (`engine.encoder.config.sequences`). Raises a
    one-line `CaseInputError` when the study cannot be a query (`PacsError` when the PACS fails)."""
    rules = (rules or SeriesRules.load()).with_required(list(sequences))
    try:
        found = read_pacs_study(pacs, study_uid, rules, segment=segment)
    except StudySkipped as skip:
        raise CaseInputError(f"study {study_uid}", skip.reason, "check the UID, its SEG and series") from None
    return found, found.study, found.mask


def _retrieve(pacs: Pacs, study_uid: str, series_uid: str) -> list[Dataset]:
    return pacs.retrieve_series(study_uid, series_uid)


def _find_seg(
    pacs: Pacs, study_uid: str, segs: list[SeriesInfo], segment: str | None
) -> tuple[SeriesInfo, Dataset]:
    """The latest SEG (highest SeriesNumber) or, with `segment`, the latest SEG that has a segment of that name
    (when none has, the latest, whose error then lists the names it has)."""
    first = None
    for info in segs:
        seg = _retrieve(pacs, study_uid, info.series_uid)[0]
        first = first or (info, seg)
        if segment is None or any(segment in (s.name, str(s.number)) for s in seg_segments(seg)):
            return info, seg
    return first


def _reference(ds: Dataset) -> Reference:
    return Reference(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    )
