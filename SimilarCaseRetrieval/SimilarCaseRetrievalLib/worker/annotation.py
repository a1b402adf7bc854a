"""The worker's *Annotate next* requests: one `AnnotationQueue` per archive, model and strategy, kept between
requests (its skipped cases and pending suggestions live here). Qt-free, no scene."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..annotation.queue import AnnotationQueue, AnnotationTask
    from .server import Progress


def task_summary(task: AnnotationTask) -> dict[str, Any]:
    """The JSON form of a task: the case, why it was suggested, and the model's pre-filled labels."""
    suggestion = task.suggestion.to_dict()
    suggestion["diagnosis"] = [[name, float(p)] for name, p in suggestion.get("diagnosis") or []]
    prefill = task.prefill.to_dict()
    for key in ("diagnosis", "terms"):
        prefill[key] = [[name, float(p)] for name, p in prefill[key]]
    return {"case_id": task.case_id, "segment": task.segment, "suggestion": suggestion, "prefill": prefill}


class AnnotationRequests:
    """Mixed into `WorkerSession`: `annotate_next` and `annotate_confirm`."""

    annotation: tuple[tuple[str, str, str], AnnotationQueue] | None = None

    def queue_for(self, archive, model_dir=None, strategy="hybrid") -> AnnotationQueue:
        """The open queue of this archive, model and strategy (a new one otherwise; the engine's encoder is
        shared when it is the same archive and model)."""
        from ..annotation.queue import AnnotationQueue
        from .handlers import _archive_path

        path = _archive_path(archive)
        key = (str(path.resolve()), str(model_dir or ""), str(strategy))
        if self.annotation is None or self.annotation[0] != key:
            self.close_annotation()
            encoder = self.engine.encoder if self.engine is not None and self.engine_key == key[:2] else None
            self.annotation = (
                key,
                AnnotationQueue(path, model_dir or None, encoder=encoder, strategy=strategy),
            )
        return self.annotation[1]

    def close_annotation(self) -> None:
        if self.annotation is not None:
            self.annotation[1].close()
            self.annotation = None

    def on_annotate_next(
        self, progress: Progress, archive, folder, model_dir=None, strategy="hybrid", skip=None
    ) -> dict[str, Any]:
        """Put `skip` aside (Skip), then the next suggested case: its record, suggestion, pre-filled labels and
        every sequence and its mask written as NRRD into `folder`; {"task": None} when none is left. A refill
        is a full suggest run (tens of seconds)."""
        from .handlers import case_summary, write_case_images

        queue = self.queue_for(archive, model_dir, strategy)
        if skip:
            queue.skip(str(skip))
        progress(0, 0, "choosing the next case to annotate")
        task = queue.next()
        if task is None:
            return {"task": None}
        progress(0, 0, f"reading case {task.case_id}")
        case = queue.store.get(task.case_id)
        images = write_case_images(queue.store, case, Path(folder), list(case.sequences))
        return {"task": task_summary(task), "case": case_summary(case), **images}

    def on_annotate_confirm(
        self, progress: Progress, archive, case_id, label=None, terms=(), model_dir=None, strategy="hybrid"
    ) -> dict[str, Any]:
        """Store the annotator's diagnosis and terms for the case (the next search sees them)."""
        from .handlers import case_summary

        queue = self.queue_for(archive, model_dir, strategy)
        return case_summary(queue.confirm(str(case_id), label, list(terms)))
