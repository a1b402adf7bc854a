"""What the worker does for each request type: engine, store and search state live here, between requests.

Images travel as files: the module writes the query's volumes (original pixel type and geometry) and mask as
NRRD into a folder and sends their paths; the worker writes the images it reads for the scene the same way.
No scene and no Qt here.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CaseInputError
from .annotation import AnnotationRequests
from .explain_requests import ExplainRequests
from .pacs_requests import PacsRequests, images_on_disk, study_from_pacs_cache

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from ..search import SearchEngine, SearchResult
    from ..store import Case, CaseStore
    from ..study import Study
    from .server import Progress

log = logging.getLogger(__name__)
KEPT_RESULTS = 16  # searches Refine can start from (older ones: search again)


def case_summary(case: Case) -> dict[str, Any]:
    """The JSON form of a case's record (no image data)."""
    return {
        "case_id": case.case_id,
        "label": case.label,
        "terms": list(case.terms),
        "report": case.report,
        "notes": case.notes,
        "sequences": list(case.sequences),
    }


def result_summary(result_id: int, result: SearchResult) -> dict[str, Any]:
    """The JSON form of a search result (hits with plain floats)."""

    def number(value):
        return None if value is None else float(value)

    hits = [
        {
            "case_id": hit.case_id,
            "score": float(hit.score),
            "image_score": number(hit.image_score),
            "text_score": number(hit.text_score),
            "label": hit.label,
            "terms": list(hit.terms),
            "shared_terms": list(hit.shared_terms),
            "report_snippet": hit.report_snippet,
        }
        for hit in result.hits
    ]
    return {
        "result_id": result_id,
        "hits": hits,
        "mode": result.mode,
        "refined": result.refined,
        "query_terms": {name: float(p) for name, p in result.query_terms.items()},
    }


def compact_image(image: sitk.Image) -> sitk.Image:
    """A float image whose voxels are whole numbers within int16 as int16 (MR volumes: half the memory)."""
    import numpy as np
    import SimpleITK as sitk

    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return image
    array = sitk.GetArrayViewFromImage(image)
    if array.size and np.all(array == np.round(array)) and array.min() >= -32768 and array.max() <= 32767:
        return sitk.Cast(image, sitk.sitkInt16)
    return image


def read_query(query: dict[str, Any]) -> tuple[Study, sitk.Image]:
    """The study (resampled onto the reference) and mask from a query's files."""
    from ..segmentation import read_mask
    from ..study import read_study

    study = read_study({name: Path(p) for name, p in query["sequences"].items()}, query.get("reference"))
    mask = read_mask(Path(query["mask"]), study.reference_image)
    return study, mask


class WorkerSession(AnnotationRequests, PacsRequests, ExplainRequests):
    """The state kept between requests: one engine (archive + model), open stores, recent results, the
    annotation queue and PACS connections."""

    def __init__(self):
        self.engine: SearchEngine | None = None
        self.engine_key: tuple[str, str] | None = None
        self.stores: dict[str, CaseStore] = {}
        self.results: OrderedDict[int, SearchResult] = OrderedDict()
        self._next_result = 1
        self.annotation = None
        self.pacs_connections = {}

    def handle(self, kind: str, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        handler = getattr(self, f"on_{kind}", None)
        if handler is None:
            raise CaseInputError(
                "request", f"unknown request type {kind!r}", "update the module and the worker"
            )
        return handler(progress=progress, **params)

    # -- state ----------------------------------------------------------------------------------------------
    def engine_for(self, archive, model_dir=None, progress: Progress | None = None, auto_index=False):
        from ..search import SearchEngine

        archive = _archive_path(archive)
        key = (str(archive.resolve()), str(model_dir or ""))
        if self.engine is None or self.engine_key != key:
            self._close_engine()
            report = None
            if progress is not None:

                def report(done, total):
                    progress(done, total, "embedding and indexing cases")

            self.engine = SearchEngine(archive, model_dir or None, auto_index=auto_index, on_progress=report)
            self.engine_key = key
            self.results.clear()
        return self.engine

    def store_for(self, archive) -> CaseStore:
        """The engine's store when it is this archive's, else a store opened for reading cases."""
        from ..store import CaseStore

        archive = _archive_path(archive)
        key = str(archive.resolve())
        if self.engine is not None and self.engine_key[0] == key:
            return self.engine.store
        if key not in self.stores:
            self.stores[key] = CaseStore(archive, create=False)
        return self.stores[key]

    def _keep(self, result: SearchResult) -> dict[str, Any]:
        result_id = self._next_result
        self._next_result += 1
        self.results[result_id] = result
        while len(self.results) > KEPT_RESULTS:
            self.results.popitem(last=False)
        return result_summary(result_id, result)

    def _close_engine(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = self.engine_key = None

    def close(self) -> None:
        self.close_annotation()
        self.close_pacs()
        self._close_engine()
        for store in self.stores.values():
            store.close()
        self.stores.clear()

    # -- requests -------------------------------------------------------------------------------------------
    def on_ping(self, progress: Progress, hold_seconds: float = 0.0) -> dict[str, Any]:
        """Health check. `hold_seconds` keeps the worker busy without progress reports (a request that cannot
        be interrupted: what the client's hard cancel and crash handling are tested with)."""
        import os

        time.sleep(max(0.0, float(hold_seconds)))
        return {
            "pid": os.getpid(),
            "library": str(Path(__file__).resolve().parents[1]),
            "engine": self.engine_key[0] if self.engine_key else None,
        }

    def on_search(
        self,
        progress: Progress,
        archive,
        query,
        model_dir=None,
        k=10,
        text_weight=0.3,
        label=None,
        terms=None,
    ) -> dict[str, Any]:
        k, text_weight = int(k), float(text_weight)
        if k < 1:
            raise CaseInputError("k", f"must be at least 1 (got {k})", "ask for 1 or more cases")
        if not 0.0 <= text_weight <= 1.0:
            raise CaseInputError(
                "text weight", f"must be in [0, 1] (got {text_weight})", "set it between 0 and 1"
            )
        progress(0, 0, "opening the archive")
        engine = self.engine_for(archive, model_dir)
        progress(0, 0, "reading the query")
        study, mask = read_query(query)
        progress(0, 0, "searching")
        result = engine.search(
            study=study,
            mask=mask,
            text=query.get("text", ""),
            k=k,
            text_weight=text_weight,
            label=label or None,
            terms=list(terms) if terms else None,
        )
        return self._keep(result)

    def on_refine(self, progress: Progress, result_id, relevant=(), not_relevant=()) -> dict[str, Any]:
        relevant, not_relevant = list(relevant), list(not_relevant)
        previous = self.results.get(int(result_id))
        if previous is None or self.engine is None:
            raise CaseInputError(
                "refine", "this search is no longer open in the worker (it was restarted)", "search again"
            )
        if not relevant and not not_relevant:
            raise CaseInputError("refine", "no case is marked", "mark some results relevant or not relevant")
        known = {hit.case_id for hit in previous.hits}
        unknown = [c for c in relevant + not_relevant if c not in known]
        if unknown:
            raise CaseInputError(
                "refine", f"unknown case(s) {', '.join(unknown)}", "mark cases from the results"
            )
        return self._keep(self.engine.refine(previous, relevant, not_relevant))

    def on_case(self, progress: Progress, archive, case_id) -> dict[str, Any]:
        """A case's record: label, terms, report, notes, sequence names."""
        return case_summary(self.store_for(archive).get(case_id))

    def on_case_images(
        self, progress: Progress, archive, case_id, folder, sequences=None, pacs=None, pacs_cache=None
    ) -> dict[str, Any]:
        """Write the case's `sequences` (default: the reference only; "all": every one) and its mask, on the
        reference grid, as NRRD into `folder`: what the module loads into the scene. A case synced from the
        PACS whose files are not in the archive is retrieved from `pacs` into `pacs_cache` first."""
        store = self.store_for(archive)
        case = store.get(case_id)
        if sequences == "all":
            sequences = list(case.sequences)
        fetch = None
        if pacs and pacs_cache:

            def fetch(names):
                if images_on_disk(store, case, names):
                    return None
                progress(0, 0, f"retrieving case {case_id} from the PACS")
                return study_from_pacs_cache(self.pacs_for(pacs), store, case, names, pacs_cache)

        return {"case": case_summary(case), **write_case_images(store, case, Path(folder), sequences, fetch)}

    def on_add_case(
        self,
        progress: Progress,
        archive,
        query,
        case_id,
        model_dir=None,
        label=None,
        terms=(),
        report="",
        notes="",
        pacs=None,
        pacs_study_uid=None,
    ) -> dict[str, Any]:
        """Write the query's volumes (their own pixel type and geometry) and mask into the archive as a new case,
        then store, embed and index it at once; nothing is left behind when anything fails. With `pacs`, the
        segment is then stored to the PACS as a DICOM SEG of the study `pacs_study_uid` ("seg" in the answer)."""
        import SimpleITK as sitk

        from ..slicer_logic import write_case_files
        from ..store import Case

        engine = self.engine_for(archive, model_dir)
        if case_id in engine.store:
            raise CaseInputError(case_id, "is already in the archive", "choose another case id")
        study, mask = read_query(query)
        engine.encoder.roi_for(study, mask)  # bad input fails here, before any file is written
        originals = {name: sitk.ReadImage(str(path)) for name, path in query["sequences"].items()}
        archive_dir = _archive_path(archive)
        sequences, mask_path = write_case_files(archive_dir, case_id, originals, mask)
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
            engine.add_case(case, study, mask)
        except BaseException:
            shutil.rmtree(archive_dir / "cases" / case_id, ignore_errors=True)  # nothing half-added stays
            raise
        log.info("added case %s to the archive", case_id)
        summary = case_summary(case)
        if pacs:
            progress(0, 0, "storing the segment to the PACS (DICOM SEG)")
            try:
                summary["seg"] = self.store_seg(pacs, pacs_study_uid, mask, case)
            except CaseInputError as exc:
                raise CaseInputError(
                    f"case {case_id}",
                    f"was added to the archive, but its SEG was not stored to the PACS: {exc.problem}",
                    exc.fix,
                ) from None
        return summary

    def on_demo(
        self, progress: Progress, archive, folder, model_dir=None, n_cases=60, size="small"
    ) -> dict[str, Any]:
        """Build (first use only) and index the synthetic demo archive; write its first case for the scene."""
        from ..synthetic import ensure_demo_archive

        archive = Path(archive)

        def built(done, total):
            progress(done, total, "building the synthetic demo archive")

        ensure_demo_archive(
            archive, n_cases=int(n_cases), seed=0, size=size, progress=False, on_progress=built
        )
        engine = self.engine_for(archive, model_dir, progress=progress, auto_index=True)
        case = engine.store.get(engine.store.ids()[0])
        images = write_case_images(engine.store, case, Path(folder), list(case.sequences))
        return {"archive": str(archive), "case": case_summary(case), **images}


def write_case_images(
    store: CaseStore, case: Case, folder: Path, sequences=None, fetch=None
) -> dict[str, Any]:
    """{'reference', 'sequences': {name: NRRD path}, 'mask': NRRD path or None}: the case's images on its
    reference grid (whole-number volumes as int16), for the scene. `fetch(names)`: (study, mask) from
    elsewhere (the PACS) when the archive does not hold the files, else None."""
    import SimpleITK as sitk

    from ..study import DEFAULT_REFERENCE, read_study

    names = list(case.sequences)
    reference = DEFAULT_REFERENCE if DEFAULT_REFERENCE in names else names[0]
    wanted = [reference] + [s for s in (sequences or []) if s != reference]
    missing = [s for s in wanted if s not in case.sequences]
    if missing:
        raise CaseInputError(
            f"case {case.case_id}", f"has no sequence {', '.join(missing)}", "pick one it has"
        )
    fetched = fetch(wanted) if fetch is not None else None
    if fetched is not None:
        study, mask = fetched
    else:
        study = read_study({name: store.resolve(case.sequences[name]) for name in wanted}, reference)
        mask = store.load_mask(case, study) if case.mask else None
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in wanted:
        path = folder / f"{case.case_id}_{name}.nrrd"
        sitk.WriteImage(compact_image(study.sequences[name]), str(path), False)
        paths[name] = str(path)
    mask_path = None
    if mask is not None:
        mask_path = folder / f"{case.case_id}_mask.nrrd"
        sitk.WriteImage(mask, str(mask_path), False)
    return {"reference": reference, "sequences": paths, "mask": None if mask_path is None else str(mask_path)}


def _archive_path(archive) -> Path:
    if archive is None or not str(archive).strip() or str(archive).strip() == ".":
        raise CaseInputError(
            "archive folder", "not set", "choose the archive folder (or try the demo archive)"
        )
    path = Path(archive).expanduser()
    if not (path / "cases.sqlite").is_file():
        raise CaseInputError(
            path, "is not a case archive (no cases.sqlite)", "choose an archive folder or build the demo one"
        )
    return path
