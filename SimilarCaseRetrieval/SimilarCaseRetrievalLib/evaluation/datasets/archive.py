"""Collections from our own formats: a manifest CSV or an archive folder (cases.sqlite), through the
project's readers (`study`, `roi`, `store`, `manifest`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import CaseInputError
from ..collection import EvalCollection


def _common_sequences(cases) -> list[str]:
    names = list(cases[0].sequences)
    for c in cases[1:]:
        names = [n for n in names if n in c.sequences]
    if not names:
        raise CaseInputError(None, "the cases share no sequence name", "give every case the same sequences")
    return names


def cases_to_collection(
    cases: Sequence,
    load,
    name: str,
    sequences: Sequence[str] | None = None,
    grid: tuple[int, int, int] | None = None,
    query_text: str = "notes",
    progress: bool = True,
) -> EvalCollection:
    """ROIs (via `load(case) -> (study, mask)` and `roi.extract_roi`), texts, labels, terms, patients."""
    from tqdm import tqdm

    from ...roi import RoiConfig, default_grid, extract_roi

    if not cases:
        raise CaseInputError(name, "no cases", "ingest cases first or check the manifest")
    seqs = list(sequences) if sequences else _common_sequences(cases)
    config = RoiConfig(grid=tuple(grid)) if grid else None  # None: decided by the first study (2D or 3D)
    rois = []
    for case in tqdm(cases, desc=f"ROIs {name}", disable=not progress or len(cases) < 10, leave=False):
        study, mask = load(case)
        if config is None:
            config = RoiConfig(grid=default_grid(study))
        rois.append(extract_roi(study, mask, seqs, config))
    texts = [case.text for case in cases]
    qtexts = [(case.notes or case.text) if query_text == "notes" else case.text for case in cases]
    return EvalCollection(
        name=name,
        ids=[c.case_id for c in cases],
        labels=[c.label or "unlabelled" for c in cases],
        terms=[frozenset(c.terms or []) for c in cases],
        groups=[c.patient_id or c.case_id for c in cases],
        rois=np.stack(rois).astype(np.float32),
        texts=texts,
        query_texts=qtexts,
        meta={"sequences": seqs, "grid": list(config.grid)},
    )


def load_manifest_collection(path, **kwargs) -> EvalCollection:
    """Cases of a manifest CSV (rows with errors are reported and skipped)."""
    import logging

    from ...manifest import read_manifest
    from ...study import read_mask, read_study

    cases, errors = read_manifest(Path(path))
    for e in errors:
        logging.getLogger(__name__).warning("skipped manifest row: %s", e)

    def load(case):
        study = read_study(case.sequences)
        ref = study.sequences[study.reference]
        return study, read_mask(case.mask, ref, case.segment)

    return cases_to_collection(cases, load, Path(path).stem, **kwargs)


def load_archive_collection(archive_dir, **kwargs) -> EvalCollection:
    """Every case of an archive folder."""
    from ...store import CaseStore

    store = CaseStore(Path(archive_dir), create=False, readonly=None)  # reads only
    cases = store.list_cases()

    def load(case):
        study = store.load_study(case)
        return study, store.load_mask(case, study)

    return cases_to_collection(cases, load, Path(archive_dir).name, **kwargs)
