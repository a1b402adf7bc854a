"""Annotation support: which case to label next (active learning), pre-filled labels, storing confirmed labels.

Qt-free; the Slicer module's *Annotate next* queue calls `AnnotationQueue`. Imports torch only through the
encoder when predicting.
"""

from __future__ import annotations

from .pool import LabelPool, is_labelled
from .prefill import Prefill, confirm_labels, prefill_case
from .queue import AnnotationQueue, AnnotationTask
from .strategies import STRATEGIES, Pick, select
from .suggest import Suggestion, SuggestReport, suggest_cases

__all__ = [
    "STRATEGIES",
    "AnnotationQueue",
    "AnnotationTask",
    "LabelPool",
    "Pick",
    "Prefill",
    "SuggestReport",
    "Suggestion",
    "confirm_labels",
    "is_labelled",
    "prefill_case",
    "select",
    "suggest_cases",
]
