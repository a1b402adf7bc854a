"""`suggest_cases`: the archive's next cases worth labelling, each with its reason (see strategies.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .pool import LabelPool
from .predictions import case_embeddings, predict_cases
from .strategies import DUPLICATE_THRESHOLD, check_strategy, select

if TYPE_CHECKING:
    from ..encoders import CaseEncoder
    from ..store import CaseStore


@dataclass
class Suggestion:
    """One case to label next. ``diagnosis``: the model's top diagnoses with probabilities (uncertainty and
    hybrid only); ``duplicate_of``: the labelled case it nearly duplicates, if any."""

    rank: int
    case_id: str
    score: float
    reason: str
    strategy: str
    uncertainty: float | None = None
    distance: float | None = None
    duplicate_of: str | None = None
    duplicate_cosine: float | None = None
    diagnosis: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SuggestReport:
    """What `suggest_cases` saw: the suggestions and the pool counts (for the command's summary)."""

    suggestions: list[Suggestion]
    labelled: int
    candidates: int
    without_segment: int
    failed: dict[str, str] = field(default_factory=dict)
    model_version: str = ""


def suggest_cases(
    store: CaseStore,
    encoder: CaseEncoder,
    n: int = 20,
    strategy: str = "hybrid",
    *,
    duplicate_threshold: float = DUPLICATE_THRESHOLD,
    seed: int = 0,
    readers: int = 2,
    threads: int | None = 1,
) -> SuggestReport:
    """Rank the unlabelled, segmented cases of ``store`` for labelling with ``encoder``'s heads and embeddings.

    Labelled cases enter only through their (stored or computed) image embeddings; candidates are read and
    predicted when the strategy needs the heads (uncertainty, hybrid), else their stored embeddings are used."""
    check_strategy(strategy)
    pool = LabelPool.of(store)
    report = SuggestReport([], len(pool.labelled), len(pool.candidates), len(pool.without_segment))
    report.model_version = encoder.version
    if not pool.candidates or n <= 0:
        return report
    labelled = case_embeddings(store, encoder, pool.labelled, readers=readers, threads=threads)
    if strategy in ("uncertainty", "hybrid"):
        cand = predict_cases(store, encoder, pool.candidates, readers=readers, threads=threads)
    else:
        cand = case_embeddings(store, encoder, pool.candidates, readers=readers, threads=threads)
    report.failed = {**labelled.failed, **cand.failed}
    labels, terms = list(encoder.config.labels), list(encoder.config.terms)
    picks = select(
        strategy,
        n,
        cand.embeddings,
        labelled.embeddings,
        label_probs=cand.label_probs,
        term_probs=cand.term_probs,
        labels=labels,
        terms=terms,
        duplicate_threshold=duplicate_threshold,
        seed=seed,
    )
    for rank, pick in enumerate(picks, start=1):
        diagnosis: list[tuple[str, float]] = []
        if cand.label_probs is not None and len(labels):
            probs = cand.label_probs[pick.index]
            diagnosis = sorted(
                ((lab, round(float(p), 4)) for lab, p in zip(labels, probs, strict=True)), key=lambda x: -x[1]
            )[:3]
        report.suggestions.append(
            Suggestion(
                rank=rank,
                case_id=cand.ids[pick.index],
                score=round(pick.score, 4),
                reason=pick.reason,
                strategy=strategy,
                uncertainty=None if pick.uncertainty is None else round(pick.uncertainty, 4),
                distance=None if pick.distance is None else round(pick.distance, 4),
                duplicate_of=None if pick.duplicate_of is None else labelled.ids[pick.duplicate_of],
                duplicate_cosine=None if pick.duplicate_cosine is None else round(pick.duplicate_cosine, 4),
                diagnosis=diagnosis,
            )
        )
    return report
