"""Pre-filled labels for the annotator (the model's diagnosis and terms with probabilities) and storing the
labels the annotator confirmed. Storing changes only the case's diagnosis and terms: its embeddings do not
depend on them, so the index stays valid and the next search (which reads labels from the store) sees them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import CaseInputError
from .predictions import predict_cases

if TYPE_CHECKING:
    from ..encoders import CaseEncoder
    from ..store import Case, CaseStore

TERM_THRESHOLD = 0.5


@dataclass
class Prefill:
    """The model's proposal for one case. ``diagnosis``: every diagnosis with its probability, most probable
    first; ``terms``: every term with its probability, most probable first; ``label`` / ``checked_terms``: what
    to pre-select (the top diagnosis; the terms at or above 0.5). ``current_*``: what the case already has."""

    case_id: str
    model_version: str
    diagnosis: list[tuple[str, float]] = field(default_factory=list)
    terms: list[tuple[str, float]] = field(default_factory=list)
    current_label: str | None = None
    current_terms: list[str] = field(default_factory=list)

    @property
    def label(self) -> str | None:
        return self.diagnosis[0][0] if self.diagnosis else None

    @property
    def checked_terms(self) -> list[str]:
        return [t for t, p in self.terms if p >= TERM_THRESHOLD]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(label=self.label, checked_terms=self.checked_terms)
        return out


def prefill_case(store: CaseStore, encoder: CaseEncoder, case_id: str, *, threads: int | None = 1) -> Prefill:
    """Read the case's study and segment and predict its diagnosis and terms (nothing is stored)."""
    case = store.get(case_id)
    if not case.mask:
        raise CaseInputError(f"case {case_id}", "case has no segment", "draw the mass and add a mask first")
    pred = predict_cases(store, encoder, [case], readers=1, threads=threads)
    if not pred.ids:
        raise CaseInputError(
            f"case {case_id}", pred.failed.get(case_id, "unreadable"), "check its image and mask"
        )

    def ranked(names: Sequence[str], probs) -> list[tuple[str, float]]:
        pairs = [(n, round(float(p), 4)) for n, p in zip(names, probs, strict=True)]
        return sorted(pairs, key=lambda x: -x[1])

    labels, terms = list(encoder.config.labels), list(encoder.config.terms)
    return Prefill(
        case_id=case_id,
        model_version=encoder.version,
        diagnosis=ranked(labels, pred.label_probs[0]) if labels else [],
        terms=ranked(terms, pred.term_probs[0]) if terms else [],
        current_label=case.label,
        current_terms=list(case.terms),
    )


def confirm_labels(store: CaseStore, case_id: str, label: str | None, terms: Sequence[str] = ()) -> Case:
    """Store the annotator's diagnosis and terms for an archived case (one transaction; other fields, the
    embeddings and the index are kept). Returns the updated case."""
    label = (label or "").strip() or None
    cleaned = [str(t).strip() for t in terms]
    if any(not t for t in cleaned):
        raise CaseInputError(f"case {case_id}", "an empty term", "remove it or name the term")
    cleaned = list(dict.fromkeys(cleaned))
    if label is None and not cleaned:
        raise CaseInputError(
            f"case {case_id}", "no diagnosis and no terms to store", "give a diagnosis or terms"
        )
    with store.transaction():
        case = store.get(case_id)
        updated = dataclasses.replace(case, label=label, terms=cleaned)
        store.update(updated)
    return updated
