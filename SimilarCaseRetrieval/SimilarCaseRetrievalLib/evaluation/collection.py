"""`EvalCollection`: the cases of one evaluation, as arrays (ROIs, texts, labels, terms, groups)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvalCollection:
    """Cases with everything a retrieval method or a relevance judgement needs.

    `rois` is (N, C, Z, Y, X) float32 with the mask as last channel (None for text-only sets);
    `texts` is the index-side text (report + notes); `query_texts` the query-side text (notes only
    for the synthetic archive, else the same as `texts`). `groups` are patient ids (folds never
    split one); `thumbs` optional 2D uint8/float previews for the qualitative figure.
    """

    name: str
    ids: list[str]
    labels: list[str]
    terms: list[frozenset[str]]
    groups: list[str]
    rois: np.ndarray | None = None
    texts: list[str] | None = None
    query_texts: list[str] | None = None
    thumbs: list[np.ndarray] | None = None
    relevance: str = "label"  # "label": same label; "terms": at least one shared term
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("labels", "terms", "groups"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"EvalCollection {self.name}: {name} has {len(getattr(self, name))} items, ids {n}"
                )
        if self.rois is not None and len(self.rois) != n:
            raise ValueError(f"EvalCollection {self.name}: rois has {len(self.rois)} items, ids {n}")
        if len(set(self.ids)) != n:
            raise ValueError(f"EvalCollection {self.name}: case ids are not unique")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray | list[int]) -> EvalCollection:
        """The cases at `index` (in that order)."""
        idx = [int(i) for i in index]

        def pick(values):
            return None if values is None else [values[i] for i in idx]

        return EvalCollection(
            name=self.name,
            ids=[self.ids[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            terms=[self.terms[i] for i in idx],
            groups=[self.groups[i] for i in idx],
            rois=None if self.rois is None else self.rois[idx],
            texts=pick(self.texts),
            query_texts=pick(self.query_texts),
            thumbs=pick(self.thumbs),
            relevance=self.relevance,
            meta=dict(self.meta),
        )

    def concat(self, other: EvalCollection) -> EvalCollection:
        """Cases of `self` then `other` (same kind of data)."""

        def join(a, b):
            return None if a is None or b is None else list(a) + list(b)

        rois = None
        if self.rois is not None and other.rois is not None:
            rois = np.concatenate([self.rois, other.rois])
        return EvalCollection(
            name=self.name,
            ids=self.ids + other.ids,
            labels=self.labels + other.labels,
            terms=self.terms + other.terms,
            groups=self.groups + other.groups,
            rois=rois,
            texts=join(self.texts, other.texts),
            query_texts=join(self.query_texts, other.query_texts),
            thumbs=join(self.thumbs, other.thumbs),
            relevance=self.relevance,
            meta=dict(self.meta),
        )
