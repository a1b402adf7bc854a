"""Export an archive of cases (e.g. the synthetic one: `synthetic.make_archive`) to DICOM, one study per
case: an MR series per sequence, a SEG of the case's segment (label and terms coded), and an SR with the
report and clinical notes. For tests, benchmarks and demonstrations against a real PACS.

Files: ``<out>/<case_id>/<sequence>/<k>.dcm``, ``seg.dcm``, ``sr.dcm``; ``studies.csv`` (case_id,
study_uid, accession_number) and ``reports.csv`` (accession_number, report, notes: the CSV fallback).
UIDs are derived from the case id, so exporting twice gives the same studies.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .dicom_write import StudyHeader, mr_series, report_sr, seg_document

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..store import Case, CaseStore

# Series descriptions as a scanner would write them; the default rules recognise them.
SERIES_DESCRIPTIONS = {"T2": "T2 TSE AX", "T1": "T1 SE AX", "T1FS": "T1 SE AX FS", "DWI": "DWI b800"}


@dataclass
class ExportedStudy:
    case_id: str
    study_uid: str
    accession: str
    files: list[Path] = field(default_factory=list)


def case_uid(case_id: str, *parts: str) -> str:
    """A deterministic UID for an object of case `case_id`."""
    from pydicom.uid import generate_uid

    return generate_uid(prefix=None, entropy_srcs=["similar-cases-export", case_id, *parts])


def case_datasets(
    store: CaseStore, case: Case, *, with_sr: bool = True, with_seg: bool = True
) -> list[Dataset]:
    """The DICOM objects of one case of `store` (MR series per sequence, SEG, SR)."""
    import SimpleITK as sitk

    study = store.load_study(case)
    accession = f"A{case_uid(case.case_id, 'accession')[-12:]}"
    header = StudyHeader(
        patient_name=f"Synthetic^{case.patient_id or case.case_id}",
        patient_id=case.patient_id or case.case_id,
        study_uid=case_uid(case.case_id, "study"),
        study_date=(case.study_date or "2020-01-01").replace("-", ""),
        accession=accession,
        study_id=case.case_id[:16],
        description="MR PELVIS",
        birth_date="19700101",
    )
    frame_uid = case_uid(case.case_id, "frame")
    out: list[Dataset] = []
    by_sequence: dict[str, list[Dataset]] = {}
    for number, name in enumerate(case.sequences, start=1):
        image = sitk.ReadImage(str(store.resolve(case.sequences[name]).as_posix().split("#")[0]))
        by_sequence[name] = mr_series(
            image,
            header,
            series_uid=case_uid(case.case_id, "series", name),
            series_number=number,
            description=SERIES_DESCRIPTIONS.get(name, name),
            frame_of_reference_uid=frame_uid,
            scan_options="FS" if name.endswith("FS") else "",
        )
        out += by_sequence[name]
    if with_seg and case.mask:
        mask = store.load_mask(case, study)
        source = by_sequence[study.reference]
        out.append(
            seg_document(
                source,
                mask,
                series_uid=case_uid(case.case_id, "seg-series"),
                sop_uid=case_uid(case.case_id, "seg"),
                label=case.label,
                terms=case.terms,
            )
        )
    if with_sr and (case.report or case.notes):
        out.append(
            report_sr(
                header,
                case.report,
                case.notes,
                series_uid=case_uid(case.case_id, "sr-series"),
                sop_uid=case_uid(case.case_id, "sr"),
            )
        )
    return out


def export_cases(
    store: CaseStore, out_dir: str | Path, case_ids: Iterable[str] | None = None, *, with_sr: bool = True
) -> list[ExportedStudy]:
    """Write the DICOM studies of `case_ids` (default: all cases of `store`) under `out_dir`."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = list(case_ids) if case_ids is not None else store.ids()
    exported = []
    for case_id in tqdm(ids, desc="DICOM export", unit="study", disable=len(ids) < 5):
        case = store.get(case_id)
        datasets = case_datasets(store, case, with_sr=with_sr)
        study = ExportedStudy(case_id, str(datasets[0].StudyInstanceUID), str(datasets[0].AccessionNumber))
        for ds in datasets:
            study.files.append(write_dataset(ds, out_dir / case_id / _file_name(ds)))
        exported.append(study)
    _write_index(out_dir, store, exported)
    return exported


def _file_name(ds: Dataset) -> str:
    modality = str(ds.Modality)
    if modality == "MR":
        return f"{ds.SeriesDescription.replace(' ', '_')}/{int(ds.InstanceNumber):04d}.dcm"
    return f"{modality.lower()}.dcm"


def write_dataset(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _write_index(out_dir: Path, store: CaseStore, exported: list[ExportedStudy]) -> None:
    with (out_dir / "studies.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "study_uid", "accession_number"])
        writer.writerows([s.case_id, s.study_uid, s.accession] for s in exported)
    with (out_dir / "reports.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["accession_number", "report", "notes"])
        for s in exported:
            case = store.get(s.case_id)
            writer.writerow([s.accession, case.report, case.notes])


def read_dicom_folder(folder: str | Path) -> list[Dataset]:
    """Every DICOM file under `folder` (for upload)."""
    import pydicom

    paths = sorted(p for p in Path(folder).rglob("*.dcm") if p.is_file())
    return [pydicom.dcmread(p) for p in paths]
