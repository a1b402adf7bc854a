"""Hybrid scoring: the embedding (dense) similarities of the candidate cases fused with their BM25 scores.

Both functions work on the last axis (the candidates of one query; leading axes are queries), so the product's
search (one query, its candidates) and the evaluation (all queries x all cases) run the same arithmetic.

- `normalised_fusion`: `(1 - l) * dense + l * bm25 / max(bm25)`: BM25 divided by the best BM25 among the
  candidates (so in [0, 1]; 0 = no query word in the case), the dense cosine as is.
- `rrf_fusion`: weighted reciprocal-rank fusion, `(1 - l) / (k + rank_dense) + l / (k + rank_bm25)` with ranks
  from 1 among the candidates; a case without any query word gets no lexical share.

In fused (image + text) search the text similarity of `score = (1 - w) cos_image + w text` is the hybrid
text score (normalised fusion) or the image joins the rank fusion as a third list (RRF); see `fuse_scores`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

METHODS = ("normalised", "rrf", "dense")


@dataclass(frozen=True)
class HybridConfig:
    """How lexical (BM25) and embedding scores are combined. `method`: "normalised", "rrf" or "dense"
    (embeddings only); `lexical_weight`: the lexical share `l` of the text score; `rrf_k`: the RRF constant;
    `candidates`: BM25 candidates fetched per query above the exact-search threshold; `backbone_weight`: the
    share `b` of the sentence model's own cosine in the dense text similarity,
    `(1 - b) cos(projected) + b cos(backbone)` (where the archive stores backbone embeddings)."""

    method: str = "normalised"
    lexical_weight: float = 0.3  # used where the archive's own weight was not chosen (lexical/calibrate.py)
    rrf_k: int = 60
    candidates: int = 200
    backbone_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}: use one of {', '.join(METHODS)}")
        if not 0.0 <= self.lexical_weight <= 1.0:
            raise ValueError(f"lexical weight {self.lexical_weight} is not between 0 and 1")
        if not 0.0 <= self.backbone_weight <= 1.0:
            raise ValueError(f"backbone weight {self.backbone_weight} is not between 0 and 1")

    @property
    def uses_lexical(self) -> bool:
        return self.method != "dense" and self.lexical_weight > 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def blend_backbone(projected: np.ndarray, backbone: np.ndarray | None, weight: float) -> np.ndarray:
    """Dense text similarity `(1 - weight) * projected + weight * backbone` (cosines; backbone None or weight 0:
    the projected cosine alone). Always a new array."""
    if backbone is None or weight <= 0.0:
        return np.array(projected, dtype=np.float64)
    return (1.0 - weight) * np.asarray(projected, dtype=np.float64) + weight * np.asarray(
        backbone, np.float64
    )


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate along the last axis (ties broken by position)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[-1] + 1), axis=-1)
    return ranks


def normalised_fusion(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """`(1 - weight) * dense + weight * lexical / max(lexical)` along the last axis (see module doc)."""
    dense = np.asarray(dense, dtype=np.float64)
    lexical = np.clip(np.nan_to_num(np.asarray(lexical, dtype=np.float64)), 0.0, None)
    top = lexical.max(axis=-1, keepdims=True) if lexical.shape[-1] else np.zeros(lexical.shape[:-1] + (1,))
    norm = np.divide(lexical, top, out=np.zeros_like(lexical), where=top > 0)
    return (1.0 - weight) * dense + weight * norm


def rrf_fusion(
    lists: list[np.ndarray], weights: list[float], k: int = 60, present: list | None = None
) -> np.ndarray:
    """Weighted reciprocal-rank fusion `sum_i weights[i] / (k + rank_i)` along the last axis; `present[i]`
    (optional boolean mask like the scores) says where list i ranks a candidate at all (elsewhere it adds 0)."""
    total = np.zeros(np.asarray(lists[0]).shape, dtype=np.float64)
    for i, (scores, weight) in enumerate(zip(lists, weights, strict=True)):
        contrib = weight / (k + _ranks(np.asarray(scores, dtype=np.float64)))
        if present is not None and present[i] is not None:
            contrib = np.where(present[i], contrib, 0.0)
        total += contrib
    return total


def fuse_scores(
    image: np.ndarray | None,
    text: np.ndarray | None,
    lexical: np.ndarray | None,
    text_weight: float,
    config: HybridConfig,
) -> np.ndarray:
    """The final score of each candidate (last axis) from its image cosine, dense text similarity and BM25
    score (0 where no query word occurs); any of the three may be None (absent from the query).
    `text_weight` is `w` of `(1 - w) image + w text`."""
    w = float(text_weight)
    arrays = [a for a in (image, text, lexical) if a is not None]
    if not arrays:
        raise ValueError("nothing to score")
    shape = np.asarray(arrays[0]).shape
    use_lexical = lexical is not None and config.uses_lexical and np.any(np.asarray(lexical) > 0)
    if image is None:
        w = 1.0
    if text is None and not use_lexical:
        w = 0.0
    img = np.zeros(shape) if image is None else np.asarray(image, dtype=np.float64)
    if not use_lexical:
        txt = np.zeros(shape) if text is None else np.asarray(text, dtype=np.float64)
        return (1.0 - w) * img + w * txt
    lam = config.lexical_weight if text is not None else 1.0
    lex = np.asarray(lexical, dtype=np.float64)
    if config.method == "normalised":
        dense = np.zeros(shape) if text is None else np.asarray(text, dtype=np.float64)
        return (1.0 - w) * img + w * normalised_fusion(dense, lex, lam)
    lists, weights, present = [], [], []
    for scores, share, mask in (
        (image, 1.0 - w, None),
        (text, w * (1.0 - lam), None),
        (lex, w * lam, lex > 0),
    ):
        if scores is not None and share > 0:
            lists.append(scores)
            weights.append(share)
            present.append(mask)
    return rrf_fusion(lists, weights, config.rrf_k, present)
