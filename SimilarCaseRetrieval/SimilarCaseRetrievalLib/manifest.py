"""Manifest CSV (public contract): one case per row, paths relative to the manifest's folder.

Columns: `case_id` (required), `image` (`a.nii.gz`, or `T2=a.nii.gz;T1=b.nii.gz` for several sequences; a path
may end in `#frame=N` or `#series=UID`), `mask`, `segment` (name or label value), `label`, `terms`
(semicolon-separated), `text` (report), `notes`, `patient_id` (pseudonymous), `study_date` (ISO).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from .case_ids import check_case_id
from .errors import CaseInputError
from .store import Case
from .study import format_sequence_spec, parse_sequence_spec
from .volume_io import split_reference

if TYPE_CHECKING:
    from .store import CaseStore

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "case_id",
    "image",
    "mask",
    "segment",
    "label",
    "terms",
    "text",
    "notes",
    "patient_id",
    "study_date",
]


@dataclass
class RowError:
    """A rejected manifest row: its line number in the file and the one-line reason."""

    line: int
    case_id: str | None
    message: str
    manifest: str = ""

    def __str__(self) -> str:
        who = f" case {self.case_id}:" if self.case_id else ""
        return f"{self.manifest}:{self.line}:{who} {self.message}"


@dataclass
class IngestResult:
    added: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def split_terms(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(";") if t.strip()]


def read_manifest(path: Path | str, *, queries: bool = False) -> tuple[list[Case], list[RowError]]:
    """Parse rows into Cases (absolute paths, resolved against the manifest's folder) and row errors.

    Checks here are cheap (columns, ids, file existence, dates); `ingest_manifest` also reads the images.
    A file without a `case_id` column raises CaseInputError. `queries`: rows of a queries manifest, where a
    row with text or notes and no image is a text-only query.
    """
    cases, errors, _ = _read_rows(Path(path), queries=queries)
    return cases, errors


def _read_rows(path: Path, *, queries: bool = False) -> tuple[list[Case], list[RowError], dict[str, int]]:
    if not path.is_file():
        raise CaseInputError(path, "manifest not found", "check the path to the manifest CSV")
    base_dir = path.resolve().parent
    cases: list[Case] = []
    errors: list[RowError] = []
    lines: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if "case_id" not in header:
                raise CaseInputError(path, "manifest has no 'case_id' column", _header_fix(header))
            unknown = [h for h in header if h and h not in MANIFEST_COLUMNS]
            if unknown:
                log.warning("%s: ignoring unknown columns %s", path.name, ", ".join(unknown))
            reader.fieldnames = header
            last_line = reader.line_num
            for row in reader:
                line, last_line = last_line + 1, reader.line_num
                if not any((v or "").strip() for k, v in row.items() if k is not None):
                    continue  # blank line
                case_id = (row.get("case_id") or "").strip() or None
                try:
                    case = _case_from_row(row, base_dir, queries=queries)
                except CaseInputError as exc:
                    errors.append(RowError(line, case_id, str(exc), str(path)))
                    continue
                if case.case_id in lines:
                    errors.append(
                        RowError(line, case.case_id, f"case id repeats line {lines[case.case_id]}", str(path))
                    )
                    continue
                lines[case.case_id] = line
                cases.append(case)
    except UnicodeDecodeError:
        raise CaseInputError(path, "manifest is not UTF-8 text", "save the CSV as UTF-8") from None
    except csv.Error as exc:
        where = f"{path}:{last_line + 1}" if "last_line" in locals() else path  # the record that failed
        if "field larger than field limit" in str(exc):
            raise CaseInputError(
                where,
                f"a field is longer than {csv.field_size_limit()} characters",
                "shorten the text/notes there, or close the quote left open before it",
            ) from None
        raise CaseInputError(where, f"malformed CSV ({exc})", "fix the quoting of that line") from None
    return cases, errors, lines


def _header_fix(header: list[str]) -> str:
    """The fix for a header without `case_id`: a hint when the file is not comma-separated."""
    columns = f"use the columns {', '.join(MANIFEST_COLUMNS)}"
    joined = ",".join(header)
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if "case_id" in joined and sep in joined:
            return f"the file is separated by {name}: save it as comma-separated CSV ({columns})"
    return columns


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def _case_from_row(row: dict, base_dir: Path, *, queries: bool = False) -> Case:
    case_id = _cell(row, "case_id")
    if not case_id:
        raise CaseInputError(None, "empty case_id", "give every row a unique case_id")
    check_case_id(case_id)
    image = _cell(row, "image")
    text_only = queries and not image and bool(_cell(row, "text") or _cell(row, "notes"))
    if not image and not text_only:
        fill = " (or, in a queries manifest, 'text' / 'notes' for a text-only query)" if queries else ""
        raise CaseInputError(
            None, "no image", f"fill the 'image' column (a path, or T2=a.nii.gz;T1=b.nii.gz){fill}"
        )
    sequences = parse_sequence_spec(image, base_dir) if image else {}
    for p in sequences.values():
        _require_exists(p)
    mask = _cell(row, "mask")
    mask_path = None
    if mask:
        mask_path = Path(mask).expanduser()
        mask_path = mask_path if mask_path.is_absolute() else base_dir / mask_path
        _require_exists(mask_path)
    study_date = _cell(row, "study_date") or None
    if study_date:
        try:
            date.fromisoformat(study_date[:10])
        except ValueError:
            raise CaseInputError(
                None, f"study_date '{study_date}' is not an ISO date", "write YYYY-MM-DD"
            ) from None
    return Case(
        case_id=case_id,
        sequences={name: str(p) for name, p in sequences.items()},
        mask=str(mask_path) if mask_path else None,
        segment=_cell(row, "segment") or None,
        label=_cell(row, "label") or None,
        terms=split_terms(row.get("terms")),
        report=_cell(row, "text"),
        notes=_cell(row, "notes"),
        patient_id=_cell(row, "patient_id") or None,
        study_date=study_date,
    )


def _require_exists(path: Path) -> None:
    real = split_reference(path)[0]
    if not real.exists():
        raise CaseInputError(real, "file not found", "check the path (relative to the manifest's folder)")


def write_manifest(path: Path | str, cases: Iterable[Case], *, base_dir: Path | str | None = None) -> Path:
    """Write cases as a manifest CSV.

    Relative case paths are taken relative to `base_dir` (default: the manifest's folder). Paths inside the
    manifest's folder are written relative to it (as `read_manifest` expects), others absolute.
    """
    path = Path(path)
    folder = path.resolve().parent
    base = Path(base_dir).resolve() if base_dir is not None else folder
    path.parent.mkdir(parents=True, exist_ok=True)

    def rel(p: str | None) -> str:
        if not p:
            return ""
        real, sep, options = str(p).partition("#")
        q = Path(real).expanduser()
        q = q if q.is_absolute() else base / q
        try:
            real = q.resolve().relative_to(folder).as_posix()
        except ValueError:
            real = str(q.resolve())
        return real + (sep + options if sep else "")

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for c in cases:
            writer.writerow(
                {
                    "case_id": c.case_id,
                    "image": format_sequence_spec({n: rel(p) for n, p in c.sequences.items()}),
                    "mask": rel(c.mask),
                    "segment": c.segment or "",
                    "label": c.label or "",
                    "terms": ";".join(c.terms),
                    "text": c.report,
                    "notes": c.notes,
                    "patient_id": c.patient_id or "",
                    "study_date": c.study_date or "",
                }
            )
    return path


def with_resample_option(mask: str | None) -> str | None:
    """A mask reference that asks for resampling onto the image grid (`#resample=1`)."""
    from .volume_io import RESAMPLE_OPTION

    if not mask or RESAMPLE_OPTION in mask.partition("#")[2].split("&"):
        return mask
    return f"{mask}&{RESAMPLE_OPTION}" if "#" in mask else f"{mask}#{RESAMPLE_OPTION}"


def validate_case(case: Case) -> None:
    """Read the study and the mask (segment) of a case with absolute paths; raises CaseInputError."""
    from .study import read_mask, read_study

    study = read_study({n: Path(p) for n, p in case.sequences.items()})
    if case.mask:
        read_mask(Path(case.mask), study.reference_image, case.segment)


def ingest_manifest(
    path: Path | str,
    store: CaseStore,
    *,
    validate: bool = True,
    replace: bool = False,
    progress: bool = True,
    resample_masks: bool = False,
) -> IngestResult:
    """Validate every row and add the good ones to `store` in one transaction; bad rows come back as errors.
    `resample_masks`: masks on another grid than their image are resampled (stored as `mask#resample=1`)."""
    from tqdm import tqdm

    path = Path(path)
    cases, errors, lines = _read_rows(path)
    if resample_masks:
        for case in cases:
            case.mask = with_resample_option(case.mask)
    result = IngestResult(errors=list(errors))
    good: list[Case] = []
    for case in tqdm(cases, desc=f"ingest {path.name}", unit="case", disable=not progress or len(cases) < 2):
        line = lines[case.case_id]
        if case.case_id in store and not replace:
            result.errors.append(
                RowError(
                    line,
                    case.case_id,
                    "case id already in the archive (use --replace to overwrite)",
                    str(path),
                )
            )
            continue
        if validate:
            try:
                validate_case(case)
            except CaseInputError as exc:
                result.errors.append(RowError(line, case.case_id, str(exc), str(path)))
                continue
        good.append(case)
    existing = [c.case_id for c in good if c.case_id in store]
    store.add_many(good, replace=replace)
    result.added = [c.case_id for c in good]
    result.replaced = existing
    result.errors.sort(key=lambda e: e.line)
    for error in result.errors:
        log.debug("rejected %s", error)
    return result
