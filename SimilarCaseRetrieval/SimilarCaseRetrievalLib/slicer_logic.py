"""The body of the Slicer module's Logic, free of Qt: query files from scene nodes, one worker request per
action, the scene nodes of loaded cases, and the relevance marks.

Long work runs in the worker process (`worker/`); this module sends requests through a `WorkerClient`
and turns results into scene nodes in the callbacks, which run in `WorkerClient.poll()` on the GUI thread.
Every action has an asynchronous form (callbacks: the widget) and `wait()` for scripts and the self-test.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CaseInputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from .mrml import LoadedCase
    from .worker.client import WorkerClient
    from .worker.protocol import Event

log = logging.getLogger(__name__)

# The sequence selectors of the module, in order: T2 (reference), T1, T1 fat-sat, then an optional extra.
SEQUENCES = ("T2", "T1", "T1FS")
# Mark first, next to the case id: the table stays readable in a narrow panel; the report goes last.
RESULT_COLUMNS = ("Mark", "Rank", "Case", "Score", "Label", "Shared terms", "Image", "Text", "Report")
RELEVANT, NOT_RELEVANT = "relevant", "not relevant"
MARK_SYMBOLS = {None: "", RELEVANT: "\u2713", NOT_RELEVANT: "\u2717"}  # check mark / ballot x
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_terms(text: str | None) -> list[str]:
    """'cystic, solid component; fat' -> ['cystic', 'solid component', 'fat'] (empty items dropped)."""
    if not text:
        return []
    return [t.strip() for t in re.split(r"[,;\n]", text) if t.strip()]


# -- the query --------------------------------------------------------------------------------------------------
@dataclass
class QueryFiles:
    """A query written for the worker: the params it reads, and the mask (for centring the viewers)."""

    params: dict[str, Any]
    mask: sitk.Image
    folder: Path | None = None  # removed once the worker has answered


def export_query(
    volume_nodes: Mapping[str, Any],
    segmentation_node,
    segment_id: str | None,
    folder: Path,
    text: str = "",
    reference: str | None = None,
) -> QueryFiles:
    """Check the selected volume nodes and segment and write them as NRRD into `folder`: each volume in its own
    pixel type and geometry, the segment as a uint8 mask on the reference volume's grid (CaseInputError on
    bad input, before anything reaches the worker)."""
    import SimpleITK as sitk

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
    images = {name: mrml.image_from_volume_node(node, dtype=None) for name, node in nodes.items()}
    segment = mrml.resolve_segment_id(segmentation_node, segment_id)
    mask = mrml.mask_from_segment(segmentation_node, segment, nodes[reference])
    check_mask(mask, images[reference], segmentation_node.GetName())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, image in images.items():
        paths[name] = str(folder / f"{_safe_name(name)}.nrrd")
        sitk.WriteImage(image, paths[name], False)
    mask_path = str(folder / "mask.nrrd")
    sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), mask_path, False)
    params = {
        "sequences": paths,
        "reference": reference,
        "mask": mask_path,
        "text": text or "",
        "segment_id": segment,
    }
    return QueryFiles(params=params, mask=mask, folder=folder)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "sequence"


def write_case_files(
    archive_dir: Path, case_id: str, images: Mapping[str, sitk.Image], mask: sitk.Image
) -> tuple[dict[str, str], str]:
    """Write a new case's sequences (each in its own pixel type and geometry, as read from the scene) and its
    mask (uint8, on the reference grid) as compressed NRRD under archive/cases/<case_id>/; relative paths."""
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
    for name, image in images.items():
        path = folder / f"{_safe_name(name)}.nrrd"
        sitk.WriteImage(image, str(path), True)
        sequences[name] = str(path.relative_to(archive_dir))
    mask_path = folder / "mask.nrrd"
    sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), str(mask_path), True)
    return sequences, str(mask_path.relative_to(archive_dir))


# -- results and marks ----------------------------------------------------------------------------------------------
def hit_rows(result: Mapping[str, Any], marks: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One dict per hit of a worker search result, with the results-table columns (rank from 1)."""
    marks = marks or {}
    rows = []
    for rank, hit in enumerate(result.get("hits", []), start=1):
        rows.append(
            {
                "Mark": marks.get(hit["case_id"]),
                "Rank": rank,
                "Case": hit["case_id"],
                "Score": hit["score"],
                "Label": hit.get("label") or "",
                "Shared terms": ", ".join(hit.get("shared_terms") or []),
                "Image": hit.get("image_score"),
                "Text": hit.get("text_score"),
                "Report": hit.get("report_snippet") or "",
            }
        )
    return rows


def next_mark(mark: str | None) -> str | None:
    """Clicking a mark cycles: none -> relevant -> not relevant -> none (one mark per case, never both)."""
    return {None: RELEVANT, RELEVANT: NOT_RELEVANT, NOT_RELEVANT: None}[mark]


# -- annotate next ---------------------------------------------------------------------------------------------------
def annotation_choices(task: Mapping[str, Any]) -> dict[str, Any]:
    """What the *Annotate next* panel shows for a task: the reason, the diagnoses as "name (p)" most probable
    first (the first is pre-selected), and each term as (name, "name (p)", pre-checked at p >= 0.5)."""
    suggestion, prefill = task["suggestion"], task["prefill"]
    reason = f"{task['case_id']}: {suggestion['reason']}"
    if suggestion.get("duplicate_of"):
        reason += f" (near-duplicate of labelled case {suggestion['duplicate_of']})"
    checked = set(prefill.get("checked_terms") or [])
    return {
        "reason": reason,
        "diagnoses": [(name, f"{name} ({p:.2f})") for name, p in prefill["diagnosis"]],
        "terms": [(name, f"{name} ({p:.2f})", name in checked) for name, p in prefill["terms"]],
    }


def chosen_label(text: str, diagnoses) -> str | None:
    """The diagnosis the annotator chose in the combo box: a listed "name (p)" -> name, else the typed text."""
    text = (text or "").strip()
    for name, shown in diagnoses:
        if text == shown:
            return name
    return text or None


# -- the session --------------------------------------------------------------------------------------------------
class RetrievalSession:
    """One worker, the current result and marks, and the cases this module put in the scene.

    `loaded`: cases the user loaded (kept, never moved); `previews`: the side-by-side cases (moved onto the
    query, removed before the next search's previews and when the session closes).
    """

    def __init__(self, client: WorkerClient | None = None, scratch: Path | None = None):
        if client is None:
            from .worker.client import WorkerClient

            client = WorkerClient()
        self.client = client
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix="SimilarCaseRetrieval-"))
        self.result: dict[str, Any] | None = None
        self.marks: dict[str, str] = {}
        self.archive: str | None = None
        self.loaded: dict[str, LoadedCase] = {}
        self.previews: dict[str, LoadedCase] = {}
        self.previous_layout: int | None = None
        # PACS: the connection (config file or URL) and the cache folder hits only in the PACS are retrieved to
        self.pacs: str | None = None
        self.pacs_cache: Path | None = None
        # Annotate next: the case on screen (its task from the worker) and its nodes
        self.annotation: dict[str, Any] | None = None
        self.annotation_case: LoadedCase | None = None
        # side by side: {view name: slice node}, and the similarity map node of each view
        self.views: dict[str, Any] = {}
        self.map_nodes: dict[str, Any] = {}
        self._outcomes: OrderedDict[int, tuple[str, Any]] = OrderedDict()
        self._counter = itertools.count()

    # -- requests ---------------------------------------------------------------------------------------------
    def request(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        adopt: Callable[[dict], Any] | None = None,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
        progress: Callable[[Event], None] | None = None,
        cancelled: Callable[[], None] | None = None,
        scratch: Path | None = None,
    ) -> int:
        """Send one request; `adopt(result)` (GUI thread, scene changes) turns the result into what `done`
        receives and `wait` returns. `scratch`: a folder of files for the worker, removed when it has answered."""
        request_id = None

        def finish(value):
            _remove(scratch)
            try:
                value = adopt(value) if adopt is not None else value
            except Exception as exc:  # adopting (e.g. reading the written files) failed: report it
                fail(exc)
                return
            self._record(request_id, ("ok", value))
            if done is not None:
                done(value)

        def fail(exc):
            _remove(scratch)
            self._record(request_id, ("error", exc))
            if failed is not None:
                failed(exc)

        def stop():
            from .worker.protocol import WorkerError

            self._record(request_id, ("error", WorkerError(f"{kind} was cancelled")))
            if cancelled is not None:
                cancelled()

        request_id = self.client.submit(
            kind, params, on_progress=progress, on_result=finish, on_error=fail, on_cancelled=stop
        )
        return request_id

    def _record(self, request_id, outcome) -> None:
        self._outcomes[request_id] = outcome
        while len(self._outcomes) > 32:
            self._outcomes.popitem(last=False)

    def wait(self, request_id: int, timeout: float | None = None):
        """Block until the request ends (scripts, tests); its adopted result, or its error raised."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while request_id not in self._outcomes:
            self.client.poll()
            if request_id in self._outcomes:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.client.cancel(request_id)
                raise TimeoutError(f"request {request_id}: no answer within {timeout} s")
            time.sleep(0.01)
        status, value = self._outcomes.pop(request_id)
        if status == "error":
            raise value
        return value

    def cancel(self, request_id: int) -> None:
        self.client.cancel(request_id)

    def query_folder(self) -> Path:
        """A new scratch folder for one request's files."""
        return self.scratch / f"r{next(self._counter)}"

    # -- actions ----------------------------------------------------------------------------------------------
    def search(self, query: QueryFiles, archive, *, model_dir=None, **options) -> int:
        """Start a search. The result replaces the current one only when it arrives (a cancelled search never
        does); the previous search's side-by-side cases leave the scene then. Marks are cleared."""
        callbacks = self._callbacks(options)
        params = {
            "archive": str(archive),
            "model_dir": _str_or_none(model_dir),
            "query": query.params,
            **options,
        }

        def adopt(result):
            self.remove_previews()
            self.result, self.marks, self.archive = result, {}, str(archive)
            return result

        return self.request("search", params, adopt=adopt, scratch=query.folder, **callbacks)

    @staticmethod
    def _callbacks(options: dict) -> dict:
        return {
            key: options.pop(key) for key in ("done", "failed", "progress", "cancelled") if key in options
        }

    def refine(self, **callbacks) -> int:
        """Re-rank with the current marks (kept: the same cases stay marked in the refined list)."""
        if self.result is None:
            raise CaseInputError("refine", "there is no search to refine", "run a search first")
        relevant = [c for c, m in self.marks.items() if m == RELEVANT]
        not_relevant = [c for c, m in self.marks.items() if m == NOT_RELEVANT]
        if not relevant and not not_relevant:
            raise CaseInputError("refine", "no case is marked", "mark some results relevant or not relevant")
        params = {"result_id": self.result["result_id"], "relevant": relevant, "not_relevant": not_relevant}

        def adopt(result):
            self.result = result
            return result

        return self.request("refine", params, adopt=adopt, **callbacks)

    def set_mark(self, case_id: str, mark: str | None) -> None:
        if mark is None:
            self.marks.pop(case_id, None)
        elif mark in (RELEVANT, NOT_RELEVANT):
            self.marks[case_id] = mark
        else:
            raise CaseInputError(case_id, f"unknown mark {mark!r}", f"use {RELEVANT!r} or {NOT_RELEVANT!r}")

    def case_record(self, case_id: str, archive=None, **callbacks) -> int:
        """The case's label, terms, report and notes (the report box)."""
        return self.request(
            "case", {"archive": str(archive or self.archive), "case_id": case_id}, **callbacks
        )

    def load_case(
        self, case_id: str, archive=None, *, preview: bool = False, sequences=None, **callbacks
    ) -> int:
        """Put a case in the scene: its reference sequence (`sequences`: others too, "all": every one) and its
        segment. Cases already in the scene are reused; a case whose nodes were deleted is loaded again."""
        from . import mrml

        cache = self.previews if preview else self.loaded
        known = cache.get(case_id)
        if known is not None and not mrml.nodes_present(known):
            mrml.remove_nodes(known.nodes())
            del cache[case_id]
        params = {
            "archive": str(archive or self.archive),
            "case_id": case_id,
            "folder": str(self.query_folder()),
            "sequences": sequences if sequences == "all" else list(sequences or []),
            **self._pacs_params(),
        }

        def adopt(written):
            loaded = cache.get(case_id)
            if loaded is None or not mrml.nodes_present(loaded):
                prefix = "" if not preview else "side by side: "
                loaded = mrml.add_written_case(written, prefix=prefix)
                cache[case_id] = loaded
            else:
                mrml.add_written_sequences(loaded, written)
            shutil.rmtree(params["folder"], ignore_errors=True)
            return loaded

        return self.request("case_images", params, adopt=adopt, **callbacks)

    def _pacs_params(self) -> dict[str, str]:
        """What lets the worker retrieve a hit that is only in the PACS (nothing without a PACS)."""
        if not self.pacs:
            return {}
        return {"pacs": self.pacs, "pacs_cache": str(self.pacs_cache or self.scratch / "pacs-cache")}

    def pacs_search(
        self, archive, study_uid: str, *, segment: str | None = None, model_dir=None, **options
    ) -> int:
        """Search from a PACS study (and its SEG, `segment` by name) through the worker; the query study comes
        into the scene with the result (`done` gets (result, LoadedCase of the query)). Options as `search`, and
        `store_answer=True` stores the hits to the PACS as a KOS (its UID in result["kos"])."""
        from . import mrml

        callbacks = self._callbacks(options)
        if not self.pacs:
            raise CaseInputError("PACS connection", "not set", "give a PACS config file or DICOMweb URL")
        if not (study_uid or "").strip():
            raise CaseInputError("PACS study", "no Study Instance UID given", "type the study's UID")
        folder = self.query_folder()
        params = {
            "archive": str(archive),
            "model_dir": _str_or_none(model_dir),
            "pacs": self.pacs,
            "study_uid": study_uid.strip(),
            "segment": (segment or "").strip() or None,
            "folder": str(folder),
            **options,
        }

        def adopt(result):
            written = result.pop("query")
            query = mrml.add_written_case(written, prefix="")
            query.info["notes"] = written["case"].get("notes") or ""
            shutil.rmtree(folder, ignore_errors=True)
            self.remove_previews()
            self.result, self.marks, self.archive = result, {}, str(archive)
            return result, query

        return self.request("pacs_search", params, adopt=adopt, **callbacks)

    def add_case(self, query: QueryFiles, archive, *, case_id: str, model_dir=None, **fields) -> int:
        """Add the query's volumes and segment to the archive with label, terms, report and notes; indexed at once.
        `pacs_study_uid` (with a PACS set): the segment is also stored to the PACS as DICOM SEG of that study."""
        callbacks = self._callbacks(fields)
        if not CASE_ID_PATTERN.match(case_id or ""):
            raise CaseInputError(
                case_id or "case id",
                "is not a valid case id",
                "use letters, digits, '-', '_' or '.' (max 64)",
            )
        params = {
            "archive": str(archive),
            "model_dir": _str_or_none(model_dir),
            "query": query.params,
            "case_id": case_id,
            **fields,
        }
        if not params.get("pacs_study_uid"):
            params.pop("pacs_study_uid", None)
        elif self.pacs:
            params["pacs"] = self.pacs
        else:
            raise CaseInputError(
                "PACS connection", "not set, so the SEG cannot be stored", "give a PACS config file or URL"
            )
        return self.request("add_case", params, scratch=query.folder, **callbacks)

    # -- annotate next ----------------------------------------------------------------------------------
    def annotate_next(
        self, archive, *, model_dir=None, strategy: str = "hybrid", skip: bool = False, **callbacks
    ) -> int:
        """The next suggested case to annotate (Skip: the one on screen is put aside first), loaded into the
        scene with every sequence and its segment; the previous one's nodes leave the scene. `done` gets the
        task ({"case_id", "suggestion", "prefill", ...}; None when no unlabelled segmented case is left)."""
        from . import mrml

        folder = self.query_folder()
        current = self.annotation["case_id"] if self.annotation else None
        params = {
            "archive": str(archive),
            "model_dir": _str_or_none(model_dir),
            "strategy": strategy,
            "folder": str(folder),
            "skip": current if skip else None,
        }

        def adopt(written):
            self.remove_annotation_case()
            task = written.get("task")
            if task is not None:
                self.annotation_case = mrml.add_written_case(written, prefix="annotate ")
                self.annotation = {
                    **task,
                    "archive": str(archive),
                    "model_dir": params["model_dir"],
                    "strategy": strategy,
                }
            shutil.rmtree(folder, ignore_errors=True)
            return task

        return self.request("annotate_next", params, adopt=adopt, **callbacks)

    def confirm_annotation(self, label: str | None, terms, **callbacks) -> int:
        """Store the annotator's diagnosis and terms for the case on screen (the next search sees them)."""
        if self.annotation is None:
            raise CaseInputError("annotate", "no case is being annotated", "click Next case first")
        task = self.annotation
        params = {
            "archive": task["archive"],
            "model_dir": task["model_dir"],
            "strategy": task["strategy"],
            "case_id": task["case_id"],
            "label": (label or "").strip() or None,
            "terms": list(terms),
        }
        return self.request("annotate_confirm", params, **callbacks)

    def remove_annotation_case(self) -> None:
        """Take the annotated case's nodes out of the scene."""
        from . import mrml

        if self.annotation_case is not None:
            mrml.remove_nodes(self.annotation_case.nodes())
        self.annotation_case = self.annotation = None

    def demo(self, archive, *, model_dir=None, n_cases: int = 60, size: str = "small", **callbacks) -> int:
        """Build (first use only) and index the demo archive; `done` gets (archive path, case record, LoadedCase
        of its first case with every sequence): the widget makes it the query."""
        from . import mrml

        folder = self.query_folder()
        params = {
            "archive": str(archive),
            "folder": str(folder),
            "model_dir": _str_or_none(model_dir),
            "n_cases": int(n_cases),
            "size": size,
        }

        def adopt(written):
            loaded = mrml.add_written_case(written, prefix="demo ")
            shutil.rmtree(folder, ignore_errors=True)
            self.archive = written["archive"]
            return Path(written["archive"]), written["case"], loaded

        return self.request("demo", params, adopt=adopt, **callbacks)

    # -- explanations -----------------------------------------------------------------------------------
    def similarity_maps(
        self, query: QueryFiles, archive=None, *, model_dir=None, method="gradcam", **callbacks
    ) -> int:
        """Similarity maps of the side-by-side cases: `map_nodes` gets, per view, a map node (the query's view:
        the query's map against the first hit; each hit's view: its own map, under its preview transform)."""
        from . import slicer_layout

        case_ids = list(self.previews)
        if not case_ids or not self.views:
            raise CaseInputError(
                "similarity maps", "no case is shown side by side", "click Show side by side first"
            )
        folder = self.query_folder()
        params = {
            "archive": str(archive or self.archive),
            "model_dir": _str_or_none(model_dir),
            "query": query.params,
            "case_ids": case_ids,
            "folder": str(folder),
            "method": method,
        }

        def adopt(answer):
            import SimpleITK as sitk

            from .explain.slicer_maps import add_map_node
            from .explain.volume import VolumeMap

            def node(path, name, transform=None):
                image = sitk.ReadImage(path)
                values = sitk.GetArrayFromImage(image)
                volume_map = VolumeMap(values, (0, 0, 0), tuple(values.shape))
                added = add_map_node(volume_map, image, name, transform=transform)
                added.SetAttribute("SimilarCaseRetrieval.map", "1")
                return added

            self.remove_maps()
            names = slicer_layout.view_names(len(case_ids))
            maps = answer["maps"]
            self.map_nodes[names[0]] = node(maps[case_ids[0]]["query"], "similarity map: query")
            for name, case_id in zip(names[1:], case_ids, strict=True):
                transform = self.previews[case_id].transform
                self.map_nodes[name] = node(maps[case_id]["hit"], f"similarity map: {case_id}", transform)
            shutil.rmtree(folder, ignore_errors=True)
            return answer

        return self.request("explain_maps", params, adopt=adopt, scratch=query.folder, **callbacks)

    def remove_maps(self) -> None:
        from . import mrml

        mrml.remove_nodes(list(self.map_nodes.values()))
        self.map_nodes.clear()

    def draft(self, query: QueryFiles | None = None, **callbacks) -> int:
        """The drafted report of the current result (`done` gets {"text", "markdown", "diagnosis"})."""
        if self.result is None:
            raise CaseInputError("draft report", "there is no search to draft from", "run a search first")
        params = {"result_id": self.result["result_id"], "query": query.params if query is not None else None}
        return self.request("draft", params, scratch=query.folder if query is not None else None, **callbacks)

    # -- scene ------------------------------------------------------------------------------------------------
    def remove_previews(self) -> None:
        """Take the side-by-side cases out of the scene and give the user their layout back."""
        from . import mrml, slicer_layout

        self.remove_maps()
        for loaded in self.previews.values():
            mrml.remove_nodes(loaded.nodes())
        self.previews.clear()
        self.views = {}
        if self.previous_layout is not None:
            slicer_layout.restore_layout(self.previous_layout)
            self.previous_layout = None

    def forget_scene(self) -> None:
        """The scene was closed: its nodes are gone."""
        self.loaded.clear()
        self.previews.clear()
        self.previous_layout = None
        self.annotation_case = self.annotation = None
        self.views, self.map_nodes = {}, {}

    def close(self) -> None:
        self.client.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _str_or_none(path) -> str | None:
    if path is None or str(path).strip() in ("", "."):
        return None
    return str(path)
