"""The synthetic ovarian-MRI archive: plan (patients, follow-ups, dates), synthesise, write, ingest.

``make_archive`` writes ``cases/<case_id>/{T2,T1,T1FS}.nii.gz`` + ``mask.nii.gz``, ``manifest_en.csv`` and
``manifest_fr.csv`` (same cases; report and notes in English / French), ``manifest.csv`` (the chosen
language, English by default), ``archive.json`` (how it was made) and, with ``ingest=True``, the case store.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CaseInputError
from .cases import Patient, render_study, sample_patient
from .lesions import LABELS, LesionSpec
from .notes import ClinicalProfile, sample_profile, write_notes
from .reports import ReportContext, write_report
from .shapes import SEQUENCES, Grid

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
LANGUAGES = ("en", "fr")
_QUERY_STREAM = 982_451_653  # seeds for demo queries never collide with archive patients
_FIRST_DATE = dt.date(2016, 1, 4)
_DATE_SPAN_DAYS = 8 * 365


@dataclass
class CasePlan:
    """One study in the archive plan."""

    case_id: str
    patient_index: int
    patient_id: str
    label: str
    visit: int  # 0 = first study, 1 = follow-up
    study_date: str
    prior_date: str | None = None  # date of the patient's previous study


@dataclass
class SyntheticCase:
    """A synthesised study with everything the manifest needs (arrays are (Z, Y, X))."""

    case_id: str
    patient_id: str
    label: str
    variant: str
    study_date: str
    terms: list[str]
    reports: dict[str, str]  # language -> report
    notes: dict[str, str]  # language -> clinical notes
    images: dict[str, np.ndarray]  # sequence -> float32 volume
    mask: np.ndarray  # uint8
    grid: Grid
    info: dict = field(default_factory=dict)

    def sitk_images(self) -> tuple[dict, object]:
        """-> ({sequence: sitk.Image int16}, mask sitk.Image uint8) on the case's grid."""
        from .imaging import to_sitk

        return {n: to_sitk(v, self.grid) for n, v in self.images.items()}, to_sitk(
            self.mask, self.grid, "uint8"
        )


def plan_archive(n_cases: int, seed: int = 0, followup_fraction: float = 0.15) -> list[CasePlan]:
    """Balanced labels; about ``followup_fraction`` of studies are second studies of a patient."""
    if n_cases < 1:
        raise CaseInputError("n_cases", f"{n_cases} cases requested", "ask for at least 1 case")
    rng = np.random.default_rng([seed, 0x5EED])
    counts = [n_cases // len(LABELS) + (i < n_cases % len(LABELS)) for i in range(len(LABELS))]
    patients: list[tuple[str, int]] = []  # (label, number of studies)
    for label, count in zip(LABELS, counts, strict=True):
        n_followups = min(int(round(count * followup_fraction)), count // 2)
        patients += [(label, 2)] * n_followups + [(label, 1)] * (count - 2 * n_followups)
    order = rng.permutation(len(patients))
    studies = []
    for pid_index, k in enumerate(order):
        label, n_studies = patients[k]
        first = _FIRST_DATE + dt.timedelta(days=int(rng.integers(0, _DATE_SPAN_DAYS)))
        date, prior = first, ""
        for visit in range(n_studies):
            if visit:
                prior, date = date.isoformat(), date + dt.timedelta(days=int(rng.integers(60, 420)))
            studies.append((date.isoformat(), pid_index, label, visit, prior))
    studies.sort()
    return [
        CasePlan(f"OV{i + 1:04d}", pid, f"P{pid + 1:04d}", label, visit, date, prior or None)
        for i, (date, pid, label, visit, prior) in enumerate(studies)
    ]


def _patient(seed: int, index: int, label: str, patient_id: str) -> tuple[Patient, ClinicalProfile]:
    rng = np.random.default_rng([seed, index, 0])
    patient = sample_patient(patient_id, label, rng)
    return patient, sample_profile(label, patient.age, patient.postmenopausal, rng)


def synthesize(
    patient: Patient,
    profile: ClinicalProfile,
    rng: np.random.Generator,
    grid: Grid,
    *,
    case_id: str,
    study_date: str,
    lesion: LesionSpec | None = None,
    prior: tuple[str, float] | None = None,
) -> SyntheticCase:
    """Render one study of ``patient`` (``lesion`` overrides the patient's mass, e.g. at follow-up)."""
    lesion = lesion or patient.lesion
    text_seed = int(rng.integers(2**31))  # drawn first: the texts do not depend on the grid size
    image, mask, gains = render_study(patient.anatomy, lesion, grid, rng)
    terms = lesion.terms
    ctx = ReportContext(
        dimensions_mm=lesion.dimensions_mm,
        postmenopausal=patient.postmenopausal,
        endometrium_mm=patient.anatomy.endometrium_mm,
        trace_fluid=lesion.ascites_fraction > 0 and "ascites:absent" in terms,
        ascites_fraction=lesion.ascites_fraction,
        prior_date=prior[0] if prior else None,
        prior_diameter_mm=prior[1] if prior else None,
    )
    reports = {lang: write_report(terms, ctx, lang, np.random.default_rng(text_seed)) for lang in LANGUAGES}
    notes = {
        lang: write_notes(profile, np.random.default_rng(text_seed + 1), lang, followup=prior is not None)
        for lang in LANGUAGES
    }
    return SyntheticCase(
        case_id=case_id,
        patient_id=patient.patient_id,
        label=patient.label,
        variant=lesion.variant,
        study_date=study_date,
        terms=terms,
        reports=reports,
        notes=notes,
        images={name: image[i] for i, name in enumerate(SEQUENCES)},
        mask=mask,
        grid=grid,
        info={
            "age": patient.age,
            "diameter_mm": round(lesion.diameter_mm, 1),
            "ca125": profile.ca125,
            "gain": gains,  # scanner gain per sequence: images / gain are in common reference units
        },
    )


def synthesize_planned(plan: CasePlan, seed: int, grid: Grid) -> SyntheticCase:
    """The study described by ``plan`` (deterministic in ``seed``)."""
    patient, profile = _patient(seed, plan.patient_index, plan.label, plan.patient_id)
    rng = np.random.default_rng([seed, plan.patient_index, plan.visit + 1])
    lesion, prior = patient.lesion, None
    if plan.visit:
        lesion = patient.lesion.followup(rng)
        prior = (plan.prior_date or "", patient.lesion.diameter_mm)
    return synthesize(
        patient,
        profile,
        rng,
        grid,
        case_id=plan.case_id,
        study_date=plan.study_date,
        lesion=lesion,
        prior=prior,
    )


def synthesize_case(label: str, seed: int = 0, size: str | tuple[int, int, int] = "tiny") -> SyntheticCase:
    """A single fresh case of ``label`` (not part of any archive); for tests and demo queries."""
    if label not in LABELS:
        raise CaseInputError("label", f"unknown synthetic label {label!r}", f"use one of {', '.join(LABELS)}")
    index = LABELS.index(label)
    rng = np.random.default_rng([_QUERY_STREAM, seed, index])
    patient = sample_patient("QUERY", label, rng)
    profile = sample_profile(label, patient.age, patient.postmenopausal, rng)
    return synthesize(
        patient,
        profile,
        rng,
        Grid.named(size),
        case_id=f"query-{label}-{seed}",
        study_date=dt.date.today().isoformat(),
    )


def _write_case(case: SyntheticCase, out_dir: Path) -> dict[str, str]:
    """Write the volumes and mask; -> {sequence or "mask": path relative to out_dir}."""
    from .imaging import write_nifti_gz

    folder = out_dir / "cases" / case.case_id
    folder.mkdir(parents=True, exist_ok=True)
    images, mask = case.sitk_images()
    paths = {}
    for name, img in images.items():
        write_nifti_gz(img, folder / f"{name}.nii.gz")
        paths[name] = f"cases/{case.case_id}/{name}.nii.gz"
    write_nifti_gz(mask, folder / "mask.nii.gz")
    paths["mask"] = f"cases/{case.case_id}/mask.nii.gz"
    return paths


def _work(job: tuple[CasePlan, int, tuple[int, int, int], str]) -> dict:
    plan, seed, size, out_dir = job
    case = synthesize_planned(plan, seed, Grid.named(size))
    paths = _write_case(case, Path(out_dir))
    return {
        "case_id": case.case_id,
        "paths": paths,
        "label": case.label,
        "terms": case.terms,
        "reports": case.reports,
        "notes": case.notes,
        "patient_id": case.patient_id,
        "study_date": case.study_date,
    }


_OWN_FILES = ("manifest.csv", "manifest_en.csv", "manifest_fr.csv", "archive.json")
_STORE_FILES = ("cases.sqlite", "cases.sqlite-wal", "cases.sqlite-shm", "cases.sqlite-journal")


_SYNTHETIC_ID = re.compile(r"^OV\d{4,}$")


def _stored_ids(archive_dir: Path) -> list[str]:
    """Case ids in the archive's store (empty without a store)."""
    if not (archive_dir / "cases.sqlite").is_file():
        return []
    from ..store import CaseStore

    store = CaseStore(archive_dir, create=False)
    try:
        return list(store.ids())
    finally:
        store.close()


def _prepare(out_dir: Path) -> None:
    """Make ``out_dir`` ready: clear a previous synthetic archive, but never touch anything else.

    Refuses a non-empty folder that holds no synthetic archive, and an archive whose store also holds
    cases that are not synthetic (e.g. added from Slicer), since rebuilding would lose them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
    if contents and not (out_dir / "archive.json").exists() and not (out_dir / "cases").is_dir():
        raise CaseInputError(
            out_dir,
            "folder is not empty and holds no synthetic archive",
            "choose an empty or new folder for the synthetic archive",
        )
    try:
        foreign = [i for i in _stored_ids(out_dir) if not _SYNTHETIC_ID.match(i)]
    except Exception as exc:  # noqa: BLE001 - an unreadable store must not be deleted silently
        raise CaseInputError(
            out_dir / "cases.sqlite",
            f"cannot read the case store ({exc})",
            "rebuild the demo archive in a new folder",
        ) from None
    if foreign:
        raise CaseInputError(
            out_dir,
            f"the archive also holds {len(foreign)} non-synthetic case(s) (e.g. {foreign[0]}) that a rebuild would lose",
            "build the synthetic archive in another folder",
        )
    cases_dir = out_dir / "cases"
    if cases_dir.is_dir():
        for folder in cases_dir.iterdir():
            if folder.is_dir() and _SYNTHETIC_ID.match(folder.name):
                shutil.rmtree(folder)
    for name in _OWN_FILES + _STORE_FILES:
        (out_dir / name).unlink(missing_ok=True)


def make_archive(
    out_dir: Path | str,
    n_cases: int = 300,
    seed: int = 0,
    size: str | tuple[int, int, int] = "default",
    ingest: bool = True,
    *,
    language: str = "en",
    followup_fraction: float = 0.15,
    workers: int = 1,
    validate: bool = False,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic archive of ``n_cases`` studies into ``out_dir`` (rebuilt from scratch); -> out_dir.

    ``language`` picks the report/notes language of ``manifest.csv`` (both are always written).
    ``validate`` re-reads every file during ingest (slower; the generator's output is already known good).
    ``on_progress(done, total)`` is called after each case is written (the Slicer module's progress bar).
    """
    from tqdm import tqdm

    from ..manifest import write_manifest
    from ..store import Case

    if language not in LANGUAGES:
        raise CaseInputError("language", f"unsupported report language {language!r}", "use 'en' or 'fr'")
    out_dir = Path(out_dir)
    grid = Grid.named(size)
    plans = plan_archive(n_cases, seed, followup_fraction)
    _prepare(out_dir)
    jobs = [(p, seed, grid.size, str(out_dir)) for p in plans]
    bar = dict(total=len(jobs), desc="synthetic archive", unit="case", disable=not progress)
    rows = []
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for row in tqdm(pool.imap(_work, jobs, chunksize=4), **bar):
                rows.append(row)
                if on_progress is not None:
                    on_progress(len(rows), len(jobs))
    else:
        for job in tqdm(jobs, **bar):
            rows.append(_work(job))
            if on_progress is not None:
                on_progress(len(rows), len(jobs))
    for lang in LANGUAGES:
        cases = [
            Case(
                case_id=r["case_id"],
                sequences={n: r["paths"][n] for n in SEQUENCES},
                mask=r["paths"]["mask"],
                segment="1",
                label=r["label"],
                terms=r["terms"],
                report=r["reports"][lang],
                notes=r["notes"][lang],
                patient_id=r["patient_id"],
                study_date=r["study_date"],
            )
            for r in rows
        ]
        write_manifest(out_dir / f"manifest_{lang}.csv", cases, base_dir=out_dir)
    shutil.copyfile(out_dir / f"manifest_{language}.csv", out_dir / "manifest.csv")
    labels = [r["label"] for r in rows]
    info = {
        "generator": "SimilarCaseRetrieval synthetic ovarian MRI",
        "version": GENERATOR_VERSION,
        "n_cases": n_cases,
        "seed": seed,
        "size": list(grid.size),
        "spacing_mm": list(grid.spacing),
        "sequences": list(SEQUENCES),
        "language": language,
        "labels": {label: labels.count(label) for label in LABELS},
        "patients": len({r["patient_id"] for r in rows}),
        "ingested": False,
    }
    if ingest:
        _ingest(out_dir, validate, progress)
        info["ingested"] = True
    (out_dir / "archive.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("synthetic archive: %d cases in %s", n_cases, out_dir)
    return out_dir


def _ingest(out_dir: Path, validate: bool, progress: bool) -> None:
    from ..manifest import ingest_manifest
    from ..store import CaseStore

    store = CaseStore(out_dir)
    try:
        result = ingest_manifest(out_dir / "manifest.csv", store, validate=validate, progress=progress)
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
    if result.errors:
        raise CaseInputError(
            out_dir / "manifest.csv",
            f"{len(result.errors)} rows rejected: {result.errors[0]}",
            "report this generator bug",
        )


def archive_is_complete(
    archive_dir: Path | str, n_cases: int | None = None, seed: int | None = None, size=None
) -> bool:
    """True when ``archive_dir`` holds a finished, ingested synthetic archive with these parameters."""
    archive_dir = Path(archive_dir)
    try:
        info = json.loads((archive_dir / "archive.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("version") != GENERATOR_VERSION or not info.get("ingested"):
        return False
    if n_cases is not None and info.get("n_cases") != n_cases:
        return False
    if seed is not None and info.get("seed") != seed:
        return False
    if size is not None and info.get("size") != list(Grid.named(size).size):
        return False
    if not (archive_dir / "manifest.csv").is_file() or not (archive_dir / "cases.sqlite").is_file():
        return False
    case_dirs = archive_dir / "cases"
    planned = [p.case_id for p in plan_archive(int(info["n_cases"]), int(info["seed"]))]
    if not all((case_dirs / case_id / "mask.nii.gz").is_file() for case_id in planned):
        return False
    try:
        return set(planned) <= set(_stored_ids(archive_dir))
    except Exception:  # noqa: BLE001 - an unreadable store: not complete
        return False


def ensure_demo_archive(
    archive_dir: Path | str,
    n_cases: int = 300,
    seed: int = 0,
    size: str | tuple[int, int, int] = "default",
    **kwargs,
) -> Path:
    """The demo archive in ``archive_dir``: reused when complete with these parameters, else (re)built."""
    archive_dir = Path(archive_dir)
    if archive_is_complete(archive_dir, n_cases, seed, size):
        log.info("using the synthetic archive in %s", archive_dir)
        return archive_dir
    return make_archive(archive_dir, n_cases=n_cases, seed=seed, size=size, ingest=True, **kwargs)


def make_query_case(
    seed: int, label: str, size: str | tuple[int, int, int] = "default", language: str = "en"
):
    """A fresh, unseen study of ``label`` for a demo query -> (Study, mask sitk.Image uint8, notes)."""
    from ..study import study_from_images

    if language not in LANGUAGES:
        raise CaseInputError("language", f"unsupported notes language {language!r}", "use 'en' or 'fr'")
    case = synthesize_case(label, seed, size)
    images, mask = case.sitk_images()
    return study_from_images(images, reference="T2"), mask, case.notes[language]
