"""What a viewer (the Slicer module) calls, Qt-free: retrieve a hit's study from the PACS on demand into a
local cache, store a segment drawn on a PACS study back to the PACS as a DICOM SEG, and store a search's
answer as a KOS. (A PACS study as a query: `query.query_from_pacs`.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CaseInputError
from .connection import Pacs
from .rules import SeriesRules

if TYPE_CHECKING:
    import SimpleITK as sitk

    from ..results import SearchResult
    from ..store import CaseStore
    from .query import PacsStudy

COMPLETE = ".complete"


def retrieve_case_study(pacs: Pacs, store: CaseStore, case_id: str, cache_dir: str | Path) -> dict[str, Path]:
    """The DICOM series of a case synced from the PACS (each sequence and its SEG), downloaded into
    ``cache_dir/<study UID>/<series UID>/`` unless a complete copy is already there.

    -> {sequence name or "SEG": folder of .dcm files}. A folder is complete or absent: files are written to a
    temporary folder first, which is renamed when the whole series is in.
    """
    from .export import write_dataset
    from .sync import record_for_case

    record = record_for_case(store, case_id)
    if record is None:
        raise CaseInputError(
            f"case {case_id}",
            "not synced from a PACS (no study UID)",
            "open it from the archive files instead",
        )
    out: dict[str, Path] = {}
    for name, series_uid in record.series.items():
        folder = Path(cache_dir) / record.study_uid / series_uid
        if not (folder / COMPLETE).is_file():
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            for k, ds in enumerate(pacs.retrieve_series(record.study_uid, series_uid)):
                write_dataset(ds, partial / f"{k:05d}.dcm")
            (partial / COMPLETE).touch()
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
        out[name] = folder
    return out


def reference_series(pacs: Pacs, study_uid: str, rules: SeriesRules | None = None) -> str:
    """The series UID of the study's reference sequence (the rules' first required sequence)."""
    rules = rules or SeriesRules.load()
    chosen = rules.classify(pacs.find_series(study_uid))
    for name in rules.required or list(chosen):
        if name in chosen:
            return chosen[name].series_uid
    raise CaseInputError(f"study {study_uid}", "no series matches the sequence rules", "give the series UID")


def store_segment_as_seg(
    pacs: Pacs,
    study_uid: str,
    mask: sitk.Image,
    *,
    series_uid: str | None = None,
    segment_name: str = "lesion",
    label: str | None = None,
    terms: list[str] | tuple[str, ...] = (),
) -> str:
    """Store `mask` (any grid overlapping the series) as a DICOM SEG of the series `series_uid` (default: the
    reference sequence's series) of `study_uid`; the label and terms are coded in the segment.
    -> the SEG's SOP Instance UID."""
    from pydicom.uid import generate_uid

    from ..segmentation import conform_mask
    from .dicom_io import series_image
    from .dicom_write import seg_document

    series_uid = series_uid or reference_series(pacs, study_uid)
    source = pacs.retrieve_series(study_uid, series_uid)
    grid = series_image(source, f"series {series_uid}")
    on_grid = conform_mask(mask, grid, f"segment {segment_name}")
    seg = seg_document(
        source,
        on_grid,
        series_uid=generate_uid(),
        sop_uid=generate_uid(),
        segment_name=segment_name,
        label=label,
        terms=terms,
    )
    pacs.store([seg])
    return str(seg.SOPInstanceUID)


def store_answer(pacs: Pacs, store: CaseStore, query: PacsStudy, result: SearchResult) -> str:
    """Store `result` (a search whose query is the PACS study `query`, e.g. from `query.query_from_pacs`)
    to the PACS as a Key Object Selection document in the query's study; -> its SOP Instance UID."""
    from .kos import answer_kos

    kos = answer_kos(store, query, result)
    pacs.store([kos])
    return str(kos.SOPInstanceUID)
