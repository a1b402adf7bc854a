"""Retrieval methods under evaluation: each maps (index, queries) to a (Q, N) score matrix, plus the
vectors it ranks with (for simulated feedback) when scores are plain dot products."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CaseInputError
from ..lexical import HybridConfig
from .collection import EvalCollection

IMAGE_METHODS = ("handcrafted", "classifier", "ours")
TEXT_METHODS = ("tfidf", "bm25", "sentence")
ALL_METHODS = IMAGE_METHODS + TEXT_METHODS + ("random",)
MODES = ("image", "text", "fused")


@dataclass
class MethodOutput:
    scores: np.ndarray  # (Q, N), higher = more similar
    query_vecs: np.ndarray | None = None  # scores == query_vecs @ index_vecs.T when both are given
    index_vecs: np.ndarray | None = None


@dataclass
class MethodOptions:
    mode: str = "image"
    model_dir: str | None = None  # trained CaseEncoder; None -> train one on the index cases
    text_weight: float = 0.3
    epochs: int = 15
    text_quantization: str = "int8"  # of a model trained for a split ("none" = fp32)
    seed: int = 0
    # ensemble of the models trained per split (`training.ensemble`; `evaluate` passes train's default "auto")
    members: int | str = 1
    budget_s: float = 900.0
    work_dir: str | None = None
    progress: bool = True
    # text scoring of 'ours': None = normalised fusion with the lexical weight chosen on the index side of
    # each split (as `similar-cases index` does for an archive); HybridConfig(method="dense"): embeddings only
    hybrid: HybridConfig | None = None


def _need_rois(c: EvalCollection, method: str) -> np.ndarray:
    if c.rois is None:
        raise CaseInputError(
            c.name,
            f"method {method} needs images and this data set has none",
            "use a text method (tfidf, bm25, sentence, or ours --mode text)",
        )
    return c.rois


def _need_texts(c: EvalCollection, method: str, query: bool) -> list[str]:
    texts = c.query_texts if query else c.texts
    if texts is None:
        raise CaseInputError(
            c.name,
            f"method {method} needs texts and this data set has none",
            "use an image method (handcrafted, classifier, ours --mode image)",
        )
    return list(texts)


_FEATURE_CACHE: dict[tuple[str, str], np.ndarray] = {}


def _handcrafted(c: EvalCollection, progress: bool) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Raw features of every case, computed once per (collection, case id) across folds."""
    from .features import handcrafted_features

    rois = _need_rois(c, "handcrafted")
    missing = [i for i, cid in enumerate(c.ids) if (c.name, cid) not in _FEATURE_CACHE]
    if missing:
        feats, layout = handcrafted_features(rois[missing], progress)
        _FEATURE_CACHE[("layout", c.name)] = np.array(layout, dtype=object)
        for i, f in zip(missing, feats, strict=False):
            _FEATURE_CACHE[(c.name, c.ids[i])] = f
    layout = [(str(n), int(v)) for n, v in _FEATURE_CACHE[("layout", c.name)]]
    return np.stack([_FEATURE_CACHE[(c.name, cid)] for cid in c.ids]), layout


def run_method(
    method: str, index: EvalCollection, queries: EvalCollection, opts: MethodOptions
) -> MethodOutput:
    """Score every index case for every query with `method`."""
    if method == "random":  # chance level: a seeded random ranking (no vectors, so no feedback)
        rng = np.random.default_rng(opts.seed)
        return MethodOutput(rng.random((len(queries), len(index))))
    if method == "handcrafted":
        from .features import FeatureScaler

        xi, layout = _handcrafted(index, opts.progress)
        xq, _ = _handcrafted(queries, opts.progress)
        scaler = FeatureScaler(layout).fit(xi)
        vi, vq = scaler.transform(xi), scaler.transform(xq)
        return MethodOutput(vq @ vi.T, vq, vi)
    if method == "classifier":
        from .classifier import classifier_scores, train_classifier

        model = train_classifier(
            _need_rois(index, method),
            index.labels,
            epochs=opts.epochs,
            seed=opts.seed,
            progress=opts.progress,
        )
        scores, qf, xf = classifier_scores(model, _need_rois(queries, method), index.rois, index.labels)
        # Feedback runs on the penultimate features (cosine) without the class re-ranking.
        return MethodOutput(scores, qf, xf)
    if method == "tfidf":
        from .text_baselines import tfidf_scores

        return MethodOutput(
            tfidf_scores(_need_texts(queries, method, True), _need_texts(index, method, False))
        )
    if method == "bm25":
        from .text_baselines import bm25_scores

        return MethodOutput(
            bm25_scores(_need_texts(queries, method, True), _need_texts(index, method, False))
        )
    if method == "sentence":
        from .text_baselines import sentence_embeddings

        vq = sentence_embeddings(_need_texts(queries, method, True))
        vi = sentence_embeddings(_need_texts(index, method, False))
        return MethodOutput(vq @ vi.T, vq, vi)
    if method == "ours":
        from .ours import ours_output

        return ours_output(index, queries, opts)
    raise ValueError(f"unknown method {method!r}: use one of {', '.join(ALL_METHODS)}")
