"""Synthetic multi-sequence (T2, T1, T1FS) ovarian-MRI archive: pelvic phantoms with one adnexal mass of an
O-RADS MRI type per case, its mask, lexicon terms, English/French reports and noisy clinical notes.

Entry points: ``make_archive``, ``ensure_demo_archive``, ``make_query_case``, ``synthesize_case``.
Importing this package is cheap (numpy only); SimpleITK and the store are imported when files are written.
"""

from .archive import (
    LANGUAGES,
    SyntheticCase,
    archive_is_complete,
    ensure_demo_archive,
    make_archive,
    make_query_case,
    plan_archive,
    synthesize_case,
)
from .lesions import LABELS
from .reports import DIAGNOSIS_WORDS
from .shapes import SEQUENCES, SIZES, Grid

__all__ = [
    "DIAGNOSIS_WORDS",
    "LABELS",
    "LANGUAGES",
    "SEQUENCES",
    "SIZES",
    "Grid",
    "SyntheticCase",
    "archive_is_complete",
    "ensure_demo_archive",
    "make_archive",
    "make_query_case",
    "plan_archive",
    "synthesize_case",
]
