"""The answer as a DICOM Key Object Selection document (TID 2010), so any PACS viewer can show it: it belongs to
the query study, references the query's images and SEG and one image + the SEG of each similar study, and its
Key Object Description text lists the similar studies with their scores, one line each::

    1. study 1.2.3... score 0.9123 (image 0.9050, text 0.8810) endometrioma

`read_kos` reads that text and the references back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import __version__
from .dicom_io import KOS_CLASS
from .dicom_write import concept, copy_study_header, new_instance, sr_root, text_item
from .query import Reference

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..results import Hit, SearchResult
    from ..store import CaseStore
    from .query import PacsStudy

_LINE = re.compile(
    r"^(?P<rank>\d+)\. (?:study (?P<study>[\d.]+)|case (?P<case>\S+)) score (?P<score>-?[\d.]+)"
    r"(?: \(image (?P<image>-?[\d.]+|n/a), text (?P<text>-?[\d.]+|n/a)\))?(?: (?P<label>.*))?$"
)


@dataclass
class KosHit:
    rank: int
    score: float
    study_uid: str | None  # None for a hit that is not in the PACS (then case_id says which)
    case_id: str | None = None
    image_score: float | None = None
    text_score: float | None = None
    label: str | None = None


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def describe_hits(query_study: str, hits: Sequence[tuple[Hit, str | None]], model: str) -> str:
    """The Key Object Description text (one line per hit; hits not in the PACS go by case id)."""
    lines = [f"Similar cases for study {query_study} (SimilarCaseRetrieval {__version__}, model {model}):"]
    for rank, (hit, study_uid) in enumerate(hits, start=1):
        who = f"study {study_uid}" if study_uid else f"case {hit.case_id}"
        lines.append(
            f"{rank}. {who} score {hit.score:.4f} (image {_score(hit.image_score)}, text {_score(hit.text_score)})"
            + (f" {hit.label}" if hit.label else "")
        )
    return "\n".join(lines)


def similar_cases_kos(
    header: Dataset,
    query_refs: Sequence[Reference],
    hits: Sequence[tuple[Hit, str | None, Sequence[Reference]]],
    *,
    model: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Dataset:
    """A KOS in the query's study (patient/study copied from `header`, an instance of it) referencing the
    query and, per hit, `(hit, study UID or None, references)`."""
    from pydicom.uid import generate_uid

    sop_uid = sop_uid or generate_uid()
    ds = new_instance(KOS_CLASS, sop_uid)
    copy_study_header(header, ds)
    ds.Modality = "KO"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 900
    ds.SeriesDescription = "Similar cases"
    ds.ReferencedPerformedProcedureStepSequence = []
    text = describe_hits(str(header.StudyInstanceUID), [(h, s) for h, s, _ in hits], model)
    refs = list(query_refs) + [r for _, _, rs in hits for r in rs]
    items = [text_item("113012", "DCM", "Key Object Description", text)]
    for ref in refs:
        items.append(_reference_item(ref))
    sr_root(ds, concept("113000", "DCM", "Of Interest"), items, template="2010")
    ds.CurrentRequestedProcedureEvidenceSequence = _evidence(refs)
    return ds


def _reference_item(ref: Reference) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "COMPOSITE" if ref.sop_class.startswith("1.2.840.10008.5.1.4.1.1.88") else "IMAGE"
    sop = Dataset()
    sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = ref.sop_class, ref.sop_uid
    item.ReferencedSOPSequence = [sop]
    return item


def _evidence(refs: Sequence[Reference]) -> list[Dataset]:
    """Hierarchical SOP Instance Reference Macro: study -> series -> instances."""
    from pydicom.dataset import Dataset

    studies: dict[str, dict[str, list[Reference]]] = {}
    for ref in refs:
        studies.setdefault(ref.study_uid, {}).setdefault(ref.series_uid, []).append(ref)
    out = []
    for study_uid, series in studies.items():
        study_item = Dataset()
        study_item.StudyInstanceUID = study_uid
        study_item.ReferencedSeriesSequence = []
        for series_uid, instances in series.items():
            series_item = Dataset()
            series_item.SeriesInstanceUID = series_uid
            series_item.ReferencedSOPSequence = []
            for ref in instances:
                sop = Dataset()
                sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = ref.sop_class, ref.sop_uid
                series_item.ReferencedSOPSequence.append(sop)
            study_item.ReferencedSeriesSequence.append(series_item)
        out.append(study_item)
    return out


def answer_kos(store: CaseStore, query: PacsStudy, result: SearchResult) -> Dataset:
    """The KOS for `result` (a search with the PACS study `query`): hits synced from the PACS are referenced
    by their study; others (cases from files) appear in the text by case id only."""
    from .sync import records

    by_case = {r.case_id: r for r in records(store).values() if r.status == "stored"}
    hits = []
    for hit in result.hits:
        record = by_case.get(hit.case_id)
        hits.append((hit, record.study_uid if record else None, record.refs if record else []))
    return similar_cases_kos(query.header, query.references, hits, model=result.model_version)


def read_kos(ds: Dataset) -> tuple[list[KosHit], list[Reference]]:
    """(hits from the description text, every referenced instance from the evidence)."""
    hits = []
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") != "TEXT":
            continue
        for line in str(item.TextValue).splitlines():
            match = _LINE.match(line.strip())
            if match:
                hits.append(
                    KosHit(
                        rank=int(match["rank"]),
                        score=float(match["score"]),
                        study_uid=match["study"],
                        case_id=match["case"],
                        image_score=_float(match["image"]),
                        text_score=_float(match["text"]),
                        label=match["label"] or None,
                    )
                )
    refs = [
        Reference(
            str(s.StudyInstanceUID),
            str(se.SeriesInstanceUID),
            str(i.ReferencedSOPClassUID),
            str(i.ReferencedSOPInstanceUID),
        )
        for s in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    ]
    return hits, refs


def _float(text: str | None) -> float | None:
    return None if text in (None, "n/a") else float(text)
