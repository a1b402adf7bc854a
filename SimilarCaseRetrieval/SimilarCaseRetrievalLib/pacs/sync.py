"""Build and sync the archive from a PACS: each new or changed study that has the required series and a SEG
becomes a case (images and mask as NIfTI under ``<archive>/pacs/<case_id>/<version>/``).

Nothing is half-stored: a study's files are written to a staging folder, moved into a folder of their own
(named by the study's content signature), and only then the case row and its `pacs_studies` row are
committed in ONE transaction of the case store. A kill at any point leaves either the old case or the new
one; unreferenced folders are removed by the next sync. Studies whose signature (series and instance counts,
and the sync settings: rules, required sequences, segment) has not changed are not read again; skipped ones
are remembered with their reason until they change.

Stored per case: pseudonymous patient id (HMAC with the site key), study date, images, mask, the segment's
label and terms, report and notes. Kept in `pacs_studies`: study and series UIDs and one referenced instance
per series (to open a hit in the PACS and to reference it in a KOS). Never stored: names, patient ids,
birth dates, accession numbers or any other header field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..store import Case, CaseStore
from .connection import Pacs, PacsNotFound, SeriesInfo, StudyFilter
from .privacy import Pseudonymizer
from .query import PacsStudy, Reference, StudySkipped, read_pacs_study
from .rules import SeriesRules

log = logging.getLogger(__name__)

CASES_FOLDER = "pacs"
STAGING_FOLDER = ".pacs-staging"
_TABLE = """
CREATE TABLE IF NOT EXISTS pacs_studies (
    study_uid TEXT PRIMARY KEY,
    case_id TEXT,
    signature TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    series TEXT NOT NULL DEFAULT '{}',
    refs TEXT NOT NULL DEFAULT '[]',
    synced_at TEXT NOT NULL
)"""


@dataclass
class SyncOptions:
    filters: StudyFilter = field(default_factory=StudyFilter)
    rules: SeriesRules = field(default_factory=SeriesRules.load)
    segment: str | None = None  # segment name in the SEG (default: the first segment)
    reports: dict[str, tuple[str, str]] | None = None  # accession number -> (report, notes) fallback

    def key(self) -> str:
        """Changes with the settings that decide what a study becomes (rules, required sequences, segment):
        studies read under other settings are read again. (A changed reports CSV applies to new and changed
        studies only.)"""
        rules = [
            (r.name, *(p.pattern if p else "" for p in (r.description, r.exclude)), r.modality or "")
            + tuple(sorted((k, v.pattern) for k, v in r.attributes.items()))
            for r in self.rules.rules
        ]
        text = json.dumps([rules, self.rules.required, self.segment])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


@dataclass
class SyncReport:
    found: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (study UID, reason)
    seconds: float = 0.0

    @property
    def studies_per_minute(self) -> float:
        done = len(self.added) + len(self.updated)
        return 60.0 * done / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.found} studies found: {len(self.added)} added, {len(self.updated)} updated, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped ({self.seconds:.1f} s, "
            f"{self.studies_per_minute:.0f} studies/min)"
        ]
        lines += [f"skipped study {uid}: {reason}" for uid, reason in self.skipped]
        return "\n".join(lines)


@dataclass
class StudyRecord:
    """A row of `pacs_studies`."""

    study_uid: str
    case_id: str | None
    signature: str
    status: str  # "stored" or "skipped"
    reason: str
    series: dict[str, str]
    refs: list[Reference]


def case_id_for(study_uid: str) -> str:
    """The case id of a PACS study (stable, derived from the Study Instance UID)."""
    return "pacs-" + hashlib.sha256(study_uid.encode("ascii")).hexdigest()[:12]


IGNORED_MODALITIES = ("KO", "PR")  # key object selections (our answers) and presentation states


def signature(series: Sequence[SeriesInfo]) -> str:
    """Changes when a series is added, removed, or gains / loses instances (KOS and presentation states
    excepted: storing an answer back must not make the study look changed)."""
    kept = [s for s in series if s.modality not in IGNORED_MODALITIES]
    text = "\n".join(sorted(f"{s.series_uid}:{s.n_instances}" for s in kept))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


# ---- the pacs_studies table (inside cases.sqlite, written in the case's own transaction) -------------------
def ensure_table(store: CaseStore) -> None:
    with store.transaction() as conn:
        conn.execute(_TABLE)


def records(store: CaseStore) -> dict[str, StudyRecord]:
    """study UID -> record (empty for an archive never synced)."""
    ensure_table(store)
    with store.transaction() as conn:
        rows = conn.execute(
            "SELECT study_uid, case_id, signature, status, reason, series, refs FROM pacs_studies"
        ).fetchall()
    return {
        r[0]: StudyRecord(
            r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), [Reference(**x) for x in json.loads(r[6])]
        )
        for r in rows
    }


def record_for_case(store: CaseStore, case_id: str) -> StudyRecord | None:
    return next((r for r in records(store).values() if r.case_id == case_id and r.status == "stored"), None)


def _write_record(conn, record: StudyRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO pacs_studies (study_uid, case_id, signature, status, reason, series, refs, synced_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.study_uid,
            record.case_id,
            record.signature,
            record.status,
            record.reason,
            json.dumps(record.series),
            json.dumps([r.__dict__ for r in record.refs]),
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ),
    )


# ---- the sync ------------------------------------------------------------------------------------------
def sync_archive(
    pacs: Pacs,
    store: CaseStore,
    pseudonymizer: Pseudonymizer,
    options: SyncOptions | None = None,
    *,
    progress: bool = True,
    on_study: Callable[[str], None] | None = None,
) -> SyncReport:
    """Add or update a case for every new or changed study matching `options.filters`.

    `on_study(study_uid)` is called between listing a study's series and reading them (tests use it to
    change the PACS mid-sync).
    PACS failures (down, 401...) stop the sync with a `PacsError`; what was committed stays.
    """
    from tqdm import tqdm

    options = options or SyncOptions()
    start = time.perf_counter()
    ensure_table(store)
    clean_orphans(store)
    known = records(store)
    report = SyncReport()
    settings = options.key()
    studies = pacs.find_studies(options.filters)
    report.found = len(studies)
    for info in tqdm(studies, desc="PACS sync", unit="study", disable=not progress):
        try:
            series = pacs.find_series(info.study_uid)
        except PacsNotFound:
            report.skipped.append((info.study_uid, "gone from the PACS while reading it"))
            continue
        if on_study is not None:
            on_study(info.study_uid)
        sig = f"{signature(series)}-{settings}"
        old = known.get(info.study_uid)
        if old is not None and old.signature == sig and (old.status == "skipped" or old.case_id in store):
            report.unchanged += 1
            if old.status == "skipped":
                report.skipped.append((info.study_uid, old.reason))
            continue
        try:
            study = read_pacs_study(
                pacs,
                info.study_uid,
                options.rules,
                segment=options.segment,
                reports=options.reports,
                series=series,
            )
        except StudySkipped as skip:
            report.skipped.append((info.study_uid, skip.reason))
            # Remembered (not read again until it changes), unless it vanished (it may come back) or an
            # earlier version of it is a case: that case and its record stay, and the study is retried.
            if not skip.reason.startswith("gone") and (old is None or old.status == "skipped"):
                with store.transaction() as conn:
                    _write_record(
                        conn, StudyRecord(info.study_uid, None, sig, "skipped", skip.reason, {}, [])
                    )
            continue
        case_id = case_id_for(info.study_uid)
        existed = case_id in store
        _store_study(store, study, case_id, sig, pseudonymizer)
        (report.updated if existed else report.added).append(case_id)
        log.debug("stored case %s", case_id)
    clean_orphans(store)
    report.seconds = time.perf_counter() - start
    return report


def _store_study(
    store: CaseStore, study: PacsStudy, case_id: str, sig: str, pseudonymizer: Pseudonymizer
) -> None:
    """Files to staging -> their own final folder -> case + record in one transaction."""
    from ..synthetic.imaging import write_nifti_gz

    staging = store.archive_dir / STAGING_FOLDER / case_id
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, image in study.images.items():
        write_nifti_gz(image, staging / f"{name}.nii.gz")
    write_nifti_gz(study.mask, staging / "mask.nii.gz")  # on the reference sequence's grid
    final = store.archive_dir / CASES_FOLDER / case_id / sig
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)
    case = Case(
        case_id=case_id,
        sequences={name: str(final / f"{name}.nii.gz") for name in study.images},
        mask=str(final / "mask.nii.gz"),
        segment="1",
        label=study.segment.label,
        terms=list(study.segment.terms),
        report=study.report,
        notes=study.notes,
        patient_id=pseudonymizer.patient(study.patient_id),
        study_date=study.iso_date,
    )
    record = StudyRecord(study.study_uid, case_id, sig, "stored", "", study.series, study.references)
    with store.transaction() as conn:
        store.add(case, replace=True)
        _write_record(conn, record)


def clean_orphans(store: CaseStore) -> None:
    """Remove the staging folder and every case folder version no stored case points to."""
    shutil.rmtree(store.archive_dir / STAGING_FOLDER, ignore_errors=True)
    root = store.archive_dir / CASES_FOLDER
    if not root.is_dir():
        return
    used = set()
    for case in store.list_cases():
        for path in [*case.sequences.values(), case.mask or ""]:
            used.add(store.resolve(path).parent.resolve())
    for case_dir in root.iterdir():
        if not case_dir.is_dir():
            continue
        for version in case_dir.iterdir():
            if version.resolve() not in used:
                shutil.rmtree(version, ignore_errors=True)
        if not any(case_dir.iterdir()):
            case_dir.rmdir()
