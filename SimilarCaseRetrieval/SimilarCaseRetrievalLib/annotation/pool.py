"""Which archived cases are labelled (a diagnosis or terms) and which are waiting for an annotator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Case, CaseStore


def is_labelled(case: Case) -> bool:
    """A case is labelled when it has a diagnosis or at least one term."""
    return bool(case.label) or bool(case.terms)


@dataclass
class LabelPool:
    """The archive split for annotation: labelled cases, unlabelled ones with a segment (the candidates) and
    unlabelled ones without a segment (they need a segment before anything else)."""

    labelled: list[Case] = field(default_factory=list)
    candidates: list[Case] = field(default_factory=list)
    without_segment: list[Case] = field(default_factory=list)

    @classmethod
    def from_cases(cls, cases: Iterable[Case]) -> LabelPool:
        pool = cls()
        for case in cases:
            if is_labelled(case):
                pool.labelled.append(case)
            elif case.mask:
                pool.candidates.append(case)
            else:
                pool.without_segment.append(case)
        return pool

    @classmethod
    def of(cls, store: CaseStore) -> LabelPool:
        return cls.from_cases(store.list_cases())
