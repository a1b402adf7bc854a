"""`AnnotationQueue`: what the Slicer module's *Annotate next* panel calls (Qt-free). It hands out the next
suggested case with its files, segment and pre-filled labels, and stores what the annotator confirmed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .pool import is_labelled
from .prefill import Prefill, confirm_labels, prefill_case
from .strategies import DUPLICATE_THRESHOLD, check_strategy
from .suggest import Suggestion, suggest_cases

if TYPE_CHECKING:
    from ..encoders import CaseEncoder
    from ..store import Case


@dataclass
class AnnotationTask:
    """One case to annotate: absolute paths of its sequences and mask, the segment to load, why it was
    suggested and the model's pre-filled labels."""

    case_id: str
    sequences: dict[str, Path]
    mask: Path | None
    segment: str | None
    suggestion: Suggestion
    prefill: Prefill


class AnnotationQueue:
    """Suggested cases one at a time. ``next()`` refills from `suggest_cases` (``batch`` at a time) and skips
    cases labelled or skipped since; ``confirm()`` stores the labels; ``skip()`` puts a case aside."""

    def __init__(
        self,
        archive_dir: Path | str,
        model_dir: Path | str | None = None,
        *,
        encoder: CaseEncoder | None = None,
        strategy: str = "hybrid",
        batch: int = 20,
        duplicate_threshold: float = DUPLICATE_THRESHOLD,
    ):
        from ..search import load_encoder
        from ..store import CaseStore

        self.strategy = check_strategy(strategy)
        self.store = CaseStore(archive_dir, create=False)
        self.encoder = encoder if encoder is not None else load_encoder(model_dir)
        self.batch = max(1, int(batch))
        self.duplicate_threshold = duplicate_threshold
        self.skipped: set[str] = set()
        self._pending: list[Suggestion] = []

    def _refill(self) -> None:
        report = suggest_cases(
            self.store,
            self.encoder,
            self.batch + len(self.skipped),
            self.strategy,
            duplicate_threshold=self.duplicate_threshold,
        )
        self._pending = [s for s in report.suggestions if s.case_id not in self.skipped]

    def next(self) -> AnnotationTask | None:
        """The next case to annotate, or None when no unlabelled segmented case is left."""
        for attempt in range(2):
            while self._pending:
                suggestion = self._pending.pop(0)
                if suggestion.case_id in self.skipped or suggestion.case_id not in self.store:
                    continue
                case = self.store.get(suggestion.case_id)
                if is_labelled(case):
                    continue
                return self._task(case, suggestion)
            if attempt == 0:
                self._refill()
        return None

    def _task(self, case: Case, suggestion: Suggestion) -> AnnotationTask:
        return AnnotationTask(
            case_id=case.case_id,
            sequences={name: self.store.resolve(p) for name, p in case.sequences.items()},
            mask=self.store.resolve(case.mask) if case.mask else None,
            segment=case.segment,
            suggestion=suggestion,
            prefill=prefill_case(self.store, self.encoder, case.case_id),
        )

    def skip(self, case_id: str) -> None:
        """Do not suggest this case again in this session."""
        self.skipped.add(case_id)

    def confirm(self, case_id: str, label: str | None, terms=()) -> Case:
        """Store the annotator's labels (see `confirm_labels`)."""
        return confirm_labels(self.store, case_id, label, terms)

    def close(self) -> None:
        self.store.close()
