"""Training data: ROIs cached once in memory, labels / terms as arrays, texts as frozen sentence embeddings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CaseInputError

if TYPE_CHECKING:
    from ..encoders import ModelConfig
    from ..store import Case, CaseStore

log = logging.getLogger(__name__)


def load_rois(
    store: CaseStore | None, cases: Sequence[Case], config: ModelConfig, progress: bool = True
) -> np.ndarray:
    """(N, C, Z, Y, X) float32 ROIs of ``cases`` with the model's sequences and grid (extracted with roi.py).

    ``store`` resolves archive-relative paths; with ``None`` the cases' paths must be absolute (a manifest).
    A case that cannot be read raises its CaseInputError (naming the case id).
    """
    from tqdm import tqdm

    from ..roi import extract_roi

    if store is None:
        store = _PathResolver()

    out = np.empty((len(cases), config.in_channels, *config.roi_shape), dtype=np.float32)
    for i, case in enumerate(tqdm(cases, desc="ROIs", unit="case", disable=not progress, leave=False)):
        try:
            study = store.load_study(case)
            mask = store.load_mask(case, study)
            out[i] = extract_roi(study, mask, config.sequences, config.roi)
        except CaseInputError as exc:
            where = f"case {case.case_id}" + (f" ({exc.where})" if exc.where else "")
            raise CaseInputError(where, exc.problem, exc.fix) from exc
    return out


class _PathResolver:
    """`CaseStore.load_study/load_mask` for cases whose paths are absolute (from a manifest)."""

    def load_study(self, case: Case):
        from ..study import read_study

        return read_study(dict(case.sequences))

    def load_mask(self, case: Case, study):
        from ..study import read_mask

        if not case.mask:
            raise CaseInputError(
                f"case {case.case_id}", "case has no mask", "add a mask (segment) to the case"
            )
        return read_mask(case.mask, study.reference_image, case.segment)


def infer_sequences(cases: Sequence[Case]) -> list[str]:
    """The sequence names every case has, in the first case's order."""
    if not cases:
        return []
    common = set(cases[0].sequences)
    for case in cases[1:]:
        common &= set(case.sequences)
    return [name for name in cases[0].sequences if name in common]


@dataclass
class TrainingData:
    """Cases as arrays. ``texts``: report + notes (index side); ``query_texts``: what a user types (notes)."""

    ids: list[str]
    rois: np.ndarray
    labels: list[str | None]
    terms: list[list[str]]
    groups: list[str]
    texts: list[str]
    query_texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not self.query_texts:
            self.query_texts = list(self.texts)
        for name in ("labels", "terms", "groups", "texts", "query_texts"):
            if len(getattr(self, name)) != n:
                raise CaseInputError(
                    "training data", f"{name} has {len(getattr(self, name))} items, ids {n}", "align"
                )
        if self.rois.shape[0] != n:
            raise CaseInputError("training data", f"rois has {self.rois.shape[0]} items, ids {n}", "align")
        if n and not np.isfinite(self.rois).all():
            raise CaseInputError("training data", "ROIs contain NaN or infinite values", "check the images")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int]) -> TrainingData:
        idx = [int(i) for i in index]
        return TrainingData(
            ids=[self.ids[i] for i in idx],
            rois=self.rois[idx],
            labels=[self.labels[i] for i in idx],
            terms=[self.terms[i] for i in idx],
            groups=[self.groups[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            query_texts=[self.query_texts[i] for i in idx],
        )

    @property
    def has_text(self) -> np.ndarray:
        return np.array([bool(t and t.strip()) for t in self.texts])


def data_from_cases(cases: Sequence[Case], rois: np.ndarray) -> TrainingData:
    """TrainingData from store cases and their ROIs (patients group the validation split; else the case)."""
    return TrainingData(
        ids=[c.case_id for c in cases],
        rois=np.asarray(rois, dtype=np.float32),
        labels=[c.label or None for c in cases],
        terms=[list(c.terms) for c in cases],
        groups=[c.patient_id or c.case_id for c in cases],
        texts=[c.text for c in cases],
        query_texts=[c.notes or "" for c in cases],
    )


def as_training_data(
    source: Any, config: ModelConfig, *, rois=None, store=None, progress=True
) -> TrainingData:
    """Accept a CaseStore, a list of Case (with ``store`` or ``rois``), a TrainingData or an object with
    ``ids/labels/terms/groups/rois`` (+ optional ``texts``/``query_texts``, e.g. evaluation.EvalCollection)."""
    from ..store import CaseStore

    if isinstance(source, TrainingData):
        return source
    if isinstance(source, CaseStore):
        store, source = source, source.list_cases()
    if isinstance(source, (list, tuple)):
        cases = list(source)
        if rois is None:
            rois = load_rois(store, cases, config, progress=progress)
        return data_from_cases(cases, rois)
    if hasattr(source, "ids") and hasattr(source, "labels"):
        r = source.rois if rois is None else rois
        if r is None:
            raise CaseInputError(getattr(source, "name", "collection"), "has no ROIs", "pass rois=")
        n = len(source.ids)
        texts = list(source.texts) if getattr(source, "texts", None) is not None else [""] * n
        qtexts = list(getattr(source, "query_texts", None) or texts)
        return TrainingData(
            ids=list(source.ids),
            rois=np.asarray(r, dtype=np.float32),
            labels=list(source.labels),
            terms=[sorted(t) for t in source.terms],
            groups=list(source.groups),
            texts=texts,
            query_texts=qtexts,
        )
    raise CaseInputError(
        "train_model", f"cannot train on a {type(source).__name__}", "pass a CaseStore or cases"
    )


def split_validation(data: TrainingData, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices, grouped by ``groups`` (patient id): no patient in both parts.

    Only groups with a diagnosed case are drawn for validation (its mAP needs diagnoses): the cases of groups
    without any diagnosis always train (the self-supervised and instance losses use them; the supervised
    losses skip them). With every case diagnosed this is the plain grouped split."""
    if fraction <= 0 or len(data) < 4:
        return np.arange(len(data)), np.zeros(0, dtype=int)
    groups = sorted({g for g, label in zip(data.groups, data.labels, strict=True) if label})
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n_val = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    if n_val < 1:
        return np.arange(len(data)), np.zeros(0, dtype=int)
    val_groups = set(groups[:n_val])
    is_val = np.array([g in val_groups for g in data.groups])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def vocabularies(data: TrainingData, config: ModelConfig) -> tuple[list[str], list[str]]:
    """The label and term lists of the model: the config's if set, else those found in the data."""
    from .. import terms as lexicon

    labels = list(config.labels) or sorted({lab for lab in data.labels if lab})
    if config.terms:
        return labels, list(config.terms)
    seen = {t for ts in data.terms for t in ts}
    ordered = [t for t in lexicon.vocabulary() if t in seen]
    ordered += sorted(seen - set(ordered))
    return labels, ordered


def targets(data: TrainingData, labels: list[str], terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Label indices (-1 when unknown / not in the list) and multi-hot term targets (N, T)."""
    lab_index = {lab: i for i, lab in enumerate(labels)}
    term_index = {t: i for i, t in enumerate(terms)}
    y = np.array([lab_index.get(lab, -1) if lab else -1 for lab in data.labels], dtype=np.int64)
    t = np.zeros((len(data), len(terms)), dtype=np.float32)
    for i, ts in enumerate(data.terms):
        for term in ts:
            if term in term_index:
                t[i, term_index[term]] = 1.0
    return y, t
