"""The worker's explanation requests: similarity maps of the query and each side-by-side hit, and the drafted
report of a search (`explain/`). Qt-free, no scene: maps travel as NRRD files in a scratch folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CaseInputError

if TYPE_CHECKING:  # pragma: no cover
    from .server import Progress


class ExplainRequests:
    """Mixed into `WorkerSession`: `explain_maps` and `draft`."""

    def on_explain_maps(
        self, progress: Progress, archive, query, case_ids, folder, model_dir=None, method="gradcam"
    ) -> dict[str, Any]:
        """For each hit: the map of the query and the map of the hit (`explain.pair.explain_case`), each a float
        image of its map box in its own volume's physical space, written as NRRD into `folder`."""
        import SimpleITK as sitk

        from ..explain.pair import explain_case
        from .handlers import read_query

        case_ids = [str(c) for c in case_ids]
        if not case_ids:
            raise CaseInputError("similarity maps", "no case to explain", "show cases side by side first")
        engine = self.engine_for(archive, model_dir)
        study, mask = read_query(query)
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        maps = {}
        for i, case_id in enumerate(case_ids):
            progress(i, len(case_ids), f"similarity maps: case {case_id}")
            pair, hit_study, _ = explain_case(engine.encoder, engine.store, study, mask, case_id, method)
            query_path, hit_path = out / f"query_map_{i}.nrrd", out / f"hit_map_{i}.nrrd"
            sitk.WriteImage(pair.query.to_image(study.reference_image), str(query_path), False)
            sitk.WriteImage(pair.hit.to_image(hit_study.reference_image), str(hit_path), False)
            maps[case_id] = {"query": str(query_path), "hit": str(hit_path), "score": float(pair.score)}
        return {"method": method, "maps": maps}

    def on_draft(self, progress: Progress, result_id, query=None) -> dict[str, Any]:
        """The drafted report of a kept search result (`explain.draft.draft_from_search`): findings from the
        query's term probabilities (its files in `query`) and the hits' reports, as plain text and markdown."""
        from ..explain.draft import draft_from_search
        from .handlers import read_query

        previous = self.results.get(int(result_id))
        if previous is None or self.engine is None:
            raise CaseInputError(
                "draft report",
                "this search is no longer open in the worker (it was restarted)",
                "search again",
            )
        study = mask = None
        if query:
            study, mask = read_query(query)
        draft = draft_from_search(self.engine, previous, study, mask)
        return {"text": draft.to_text(), "markdown": draft.to_markdown(), "diagnosis": draft.diagnosis}
