"""The body of the Slicer module's Logic, free of Qt: query from scene nodes, search, refine, add a case.

`SimilarCaseRetrievalLogic` (in SimilarCaseRetrieval.py) is a thin subclass of `RetrievalSession`.
Searches run on one background worker thread (`BackgroundRunner`) so Slicer stays responsive; all
engine calls go through that same thread, because the engine keeps its SQLite connection and model.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CaseInputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from .search import SearchEngine, SearchResult
    from .study import Study

log = logging.getLogger(__name__)

# The sequence selectors of the module, in order: T2 (reference), T1, T1 fat-sat, then an optional extra.
SEQUENCES = ("T2", "T1", "T1FS")
RESULT_COLUMNS = ("Rank", "Case", "Score", "Image", "Text", "Label", "Shared terms", "Report", "Relevant")
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_terms(text: str | None) -> list[str]:
    """'cystic, solid component; fat' -> ['cystic', 'solid component', 'fat'] (empty items dropped)."""
    if not text:
        return []
    return [t.strip() for t in re.split(r"[,;\n]", text) if t.strip()]


@dataclass
class Query:
    """A query built from scene nodes: the study, the mask on its reference grid, and the notes."""

    study: Study
    mask: sitk.Image
    text: str = ""
    segment_id: str = ""


def build_query(
    volume_nodes: Mapping[str, Any],
    segmentation_node,
    segment_id: str | None,
    text: str = "",
    reference: str | None = None,
) -> Query:
    """Read the selected volume nodes and segment into a `Query` (CaseInputError on bad input)."""
    from . import mrml
    from .study import check_mask

    nodes = {name: node for name, node in volume_nodes.items() if node is not None}
    if not nodes:
        raise CaseInputError(
            "query", "no volume is selected", "select the T2 volume (and the other sequences)"
        )
    if segmentation_node is None:
        raise CaseInputError(
            "query", "no segmentation is selected", "select or draw the segment around the mass"
        )
    if reference is None or reference not in nodes:
        reference = next(iter(nodes))
    study = mrml.study_from_volume_nodes(nodes, reference=reference)
    segment = mrml.resolve_segment_id(segmentation_node, segment_id)
    mask = mrml.mask_from_segment(segmentation_node, segment, nodes[study.reference])
    check_mask(mask, study.sequences[study.reference], segmentation_node.GetName())
    return Query(study=study, mask=mask, text=text or "", segment_id=segment)


def hit_rows(result: SearchResult) -> list[dict[str, Any]]:
    """One dict per hit with the results-table columns (rank from 1)."""
    rows = []
    for rank, hit in enumerate(result.hits, start=1):
        rows.append(
            {
                "Rank": rank,
                "Case": hit.case_id,
                "Score": float(hit.score),
                "Image": None if hit.image_score is None else float(hit.image_score),
                "Text": None if hit.text_score is None else float(hit.text_score),
                "Label": hit.label or "",
                "Shared terms": ", ".join(hit.shared_terms or []),
                "Report": hit.report_snippet or "",
                "Relevant": None,
            }
        )
    return rows


def write_case_files(
    archive_dir: Path, case_id: str, study: Study, mask: sitk.Image
) -> tuple[dict[str, str], str]:
    """Write a new case's sequences and mask as NRRD under archive/cases/<case_id>/; relative paths."""
    import SimpleITK as sitk

    if not CASE_ID_PATTERN.match(case_id or ""):
        raise CaseInputError(
            case_id or "case id", "is not a valid case id", "use letters, digits, '-', '_' or '.' (max 64)"
        )
    folder = Path(archive_dir) / "cases" / case_id
    if folder.exists() and any(folder.iterdir()):
        raise CaseInputError(folder, "already holds files", "choose another case id")
    folder.mkdir(parents=True, exist_ok=True)
    sequences = {}
    for name, image in study.sequences.items():
        path = folder / f"{name}.nrrd"
        sitk.WriteImage(image, str(path), True)
        sequences[name] = str(path.relative_to(archive_dir))
    mask_path = folder / "mask.nrrd"
    sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), str(mask_path), True)
    return sequences, str(mask_path.relative_to(archive_dir))


class Job:
    """A call running on the background worker; poll `done()`, then read `result()`."""

    def __init__(self, future: concurrent.futures.Future, name: str):
        self._future = future
        self.name = name
        self.cancelled = False

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> None:
        """Forget the result (a running search finishes in the background and is discarded)."""
        self.cancelled = True
        self._future.cancel()

    def result(self, timeout: float | None = None):
        return self._future.result(timeout=timeout)


class BackgroundRunner:
    """One worker thread: searches run off the GUI thread, and every engine call uses the same thread."""

    def __init__(self):
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable, /, *args, **kwargs) -> Job:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="scr"
                )
            return Job(self._executor.submit(fn, *args, **kwargs), getattr(fn, "__name__", "job"))

    def call(self, fn: Callable, /, *args, **kwargs):
        """Run on the worker and wait (for short calls: refine, add case)."""
        return self.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None


@dataclass
class RetrievalSession:
    """Search, refine and add cases against one archive; keeps the engine and the last result."""

    runner: BackgroundRunner = field(default_factory=BackgroundRunner)
    engine: SearchEngine | None = None
    engine_key: tuple[str, str] | None = None
    last_result: SearchResult | None = None

    # -- engine -------------------------------------------------------------------------------
    def _engine_for(self, archive_dir: Path | str, model_dir: Path | str | None = None) -> SearchEngine:
        """Load (once per archive and model) the search engine. Runs on the worker thread."""
        from .search import SearchEngine

        archive = Path(archive_dir).expanduser()
        if not str(archive_dir).strip() or not (archive / "cases.sqlite").is_file():
            raise CaseInputError(
                archive,
                "is not a case archive (no cases.sqlite)",
                "choose an archive folder or build the demo one",
            )
        key = (str(archive.resolve()), str(model_dir or ""))
        if self.engine is None or self.engine_key != key:
            self.engine = SearchEngine(archive, model_dir) if model_dir else SearchEngine(archive)
            self.engine_key = key
        return self.engine

    # -- search -------------------------------------------------------------------------------
    def _search_now(
        self,
        query: Query,
        archive_dir,
        *,
        k: int = 10,
        text_weight: float = 0.3,
        label: str | None = None,
        terms: Sequence[str] | None = None,
        model_dir=None,
    ) -> SearchResult:
        if k < 1:
            raise CaseInputError("k", f"must be at least 1 (got {k})", "ask for 1 or more cases")
        if not 0.0 <= text_weight <= 1.0:
            raise CaseInputError(
                "text weight", f"must be in [0, 1] (got {text_weight})", "set it between 0 and 1"
            )
        engine = self._engine_for(archive_dir, model_dir)
        result = engine.search(
            study=query.study,
            mask=query.mask,
            text=query.text,
            k=int(k),
            text_weight=float(text_weight),
            label=label or None,
            terms=list(terms) if terms else None,
        )
        return result

    def search(self, query: Query, archive_dir, **options) -> SearchResult:
        """Search now (blocking), on the worker thread; the result becomes the one to refine."""
        return self.accept(self.runner.call(self._search_now, query, archive_dir, **options))

    def search_in_background(self, query: Query, archive_dir, **options) -> Job:
        """Start a search; the caller polls `job.done()` (e.g. from a Qt timer), reads `job.result()` and
        `accept`s it. A cancelled search is never accepted, so it cannot replace the results shown."""
        return self.runner.submit(self._search_now, query, archive_dir, **options)

    def accept(self, result: SearchResult) -> SearchResult:
        """Make `result` the current one (what Refine starts from)."""
        self.last_result = result
        return result

    # -- relevance feedback ------------------------------------------------------------------
    def refine(self, relevant: Sequence[str], not_relevant: Sequence[str]) -> SearchResult:
        """Re-rank with the cases marked relevant / not relevant (Rocchio on the query vectors)."""
        if self.last_result is None or self.engine is None:
            raise CaseInputError("refine", "there is no search to refine", "run a search first")
        if not relevant and not not_relevant:
            raise CaseInputError(
                "refine", "no case is marked", "tick Relevant (or untick for not relevant) on some results"
            )
        known = {hit.case_id for hit in self.last_result.hits}
        unknown = [c for c in [*relevant, *not_relevant] if c not in known]
        if unknown:
            raise CaseInputError(
                "refine", f"unknown case(s) {', '.join(unknown)}", "mark cases from the results"
            )
        engine, previous = self.engine, self.last_result
        result = self.runner.call(engine.refine, previous, list(relevant), list(not_relevant))
        self.last_result = result
        return result

    # -- annotators ---------------------------------------------------------------------------
    def add_case(
        self,
        query: Query,
        archive_dir,
        *,
        case_id: str,
        label: str | None = None,
        terms: Sequence[str] = (),
        report: str = "",
        notes: str = "",
        model_dir=None,
    ):
        """Write the case's images into the archive, then store, embed and index it at once."""
        return self.runner.call(
            self._add_case_now,
            query,
            archive_dir,
            case_id=case_id,
            label=label,
            terms=list(terms),
            report=report,
            notes=notes,
            model_dir=model_dir,
        )

    def _add_case_now(self, query: Query, archive_dir, *, case_id, label, terms, report, notes, model_dir):
        from .store import Case

        engine = self._engine_for(archive_dir, model_dir)
        if case_id in engine.store:
            raise CaseInputError(case_id, "is already in the archive", "choose another case id")
        archive = Path(archive_dir).expanduser()
        engine.encoder.roi_for(query.study, query.mask)  # bad input fails here, before any file is written
        sequences, mask_path = write_case_files(archive, case_id, query.study, query.mask)
        case = Case(
            case_id=case_id,
            sequences=sequences,
            mask=mask_path,
            segment="1",
            label=label or None,
            terms=list(terms),
            report=report or "",
            notes=notes or "",
        )
        try:
            engine.add_case(case, query.study, query.mask)
        except BaseException:
            shutil.rmtree(archive / "cases" / case_id, ignore_errors=True)  # nothing half-added stays
            raise
        log.info("added case %s to the archive", case_id)
        return case

    def close(self) -> None:
        self.runner.shutdown()
        self.engine = None
