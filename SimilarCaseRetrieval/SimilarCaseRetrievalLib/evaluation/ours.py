"""Our dual encoder under evaluation: image-only, text-only or fused embeddings of a `CaseEncoder`,
either loaded (`--model`) or trained on the index cases of each split with `training.train_model`.

Text and fused modes score like the product's search: the projected text cosine blended with the sentence
model's own cosine (`lexical.blend_backbone`) and fused with BM25 from the same FTS5 index and query terms
(`lexical.bm25_matrix`) by the same `lexical.fuse_scores` (exact search: every index case is a candidate). The
weights are `MethodOptions.hybrid`, or (None) chosen on the index side of each split with the product's
`lexical.calibrate.choose_weight`; `HybridConfig(method="dense")` gives the embeddings-only scores."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import CaseInputError
from .collection import EvalCollection
from .methods import MethodOptions, MethodOutput

log = logging.getLogger(__name__)


def _config_for(index: EvalCollection, opts: MethodOptions):
    from ..encoders import ModelConfig
    from ..roi import RoiConfig

    if index.rois is None:
        raise CaseInputError(
            index.name,
            "cannot train 'ours' without images",
            "pass --model with a trained model (text mode) or use tfidf/bm25/sentence",
        )
    c, z, y, x = index.rois.shape[1:]
    sequences = list(index.meta.get("sequences") or [f"image{i}" if c > 2 else "image" for i in range(c - 1)])
    return ModelConfig(
        sequences=sequences,
        roi=RoiConfig(grid=(x, y, z)),
        text_quantization=opts.text_quantization,
        name=f"eval-{index.name}",
    )


_TRAINED: dict[tuple, object] = {}
# frozen sentence embeddings per text model, shared by the folds of a run (each distinct text embedded once)
_SENTENCES: dict[tuple[str, str], dict] = {}


def encoder_for(index: EvalCollection, opts: MethodOptions):
    """The loaded model, or one trained on `index` (its labels, terms, texts) for this split; a model
    trained for a split is kept and reused by the other modes (image, text, fused) of the same run."""
    from ..encoders import CaseEncoder

    if opts.model_dir:
        return CaseEncoder.load(opts.model_dir)
    from ..training.ensemble import train_ensemble
    from ..training.loop import DEFAULT_VAL_FRACTION

    key = (index.name, tuple(index.ids), opts.epochs, opts.seed, opts.text_quantization)
    key += (opts.members, opts.budget_s)
    if key not in _TRAINED:
        log.info("training our encoder on %d index cases (%s epochs)", len(index), opts.epochs)
        config = _config_for(index, opts)
        encoder = train_ensemble(
            index,
            config,
            members=opts.members,
            budget_s=opts.budget_s,
            epochs=opts.epochs,
            seed=opts.seed,
            val_fraction=DEFAULT_VAL_FRACTION,  # inner split of the index side: model selection, as `train`
            progress=opts.progress,
            sentence_cache=_SENTENCES.setdefault((config.text_model, config.text_quantization), {}),
        )
        log.info("trained %d network(s) (--members %s)", encoder.config.members, opts.members)
        if opts.work_dir:
            from pathlib import Path

            encoder.save(Path(opts.work_dir) / f"model-{index.name}-{abs(hash(key)) % 10**8:08d}")
        _TRAINED[key] = encoder
    return _TRAINED[key]


def _texts(c: EvalCollection, query: bool) -> list[str]:
    texts = c.query_texts if query else c.texts
    if texts is None:
        raise CaseInputError(c.name, "this data set has no texts", "use --mode image")
    return list(texts)


def _text_vectors(encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(projected text embeddings, L2-normalised sentence-model embeddings) of `texts` (zero rows: no text)."""
    raw = np.asarray(encoder.sentence_embeddings(list(texts)), np.float32)
    backbone = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    return np.asarray(encoder.project_texts(raw), np.float32), backbone


def _index_side_config(index: EvalCollection, encoder, ti, bi, lexical_index):
    """The lexical and backbone weights chosen on the index side of this split alone (its query-side texts
    against its index texts, relevance as the evaluation's), as `similar-cases index` chooses them."""
    from ..lexical.calibrate import choose_weight, sample
    from .metrics import relevance_grades, self_mask

    sub = index.subset(sample(len(index)))
    ts, bs = _text_vectors(encoder, _texts(sub, True))
    rel = relevance_grades(sub.labels, sub.terms, index.labels, index.terms, index.relevance) > 0
    config, table = choose_weight(
        ts @ ti.T,
        lexical_index(_texts(sub, True)),
        rel,
        self_mask(sub.ids, index.ids),
        backbone=bs @ bi.T,
    )
    log.info(
        "backbone weight %.2f, lexical weight %.1f chosen on the index side (mAP@10 %.3f)",
        config.backbone_weight,
        config.lexical_weight,
        max(table.values()),
    )
    return config


def _hybrid(index: EvalCollection, encoder, ti, bi, texts_i: list[str], opts: MethodOptions):
    """(config, BM25 of query texts -> index texts as a function) or (None, None) for embeddings only."""
    from ..lexical import fts
    from ..lexical.matrix import bm25_matrix

    if opts.hybrid is not None and opts.hybrid.method == "dense":
        return None, None
    if not fts.available():
        log.warning("this SQLite has no FTS5: 'ours' text scores are the embeddings' only")
        return None, None

    def lexical_index(query_texts: list[str]) -> np.ndarray:
        return bm25_matrix(query_texts, texts_i)

    config = opts.hybrid or _index_side_config(index, encoder, ti, bi, lexical_index)
    return config, lexical_index


def ours_output(index: EvalCollection, queries: EvalCollection, opts: MethodOptions) -> MethodOutput:
    """Embeddings of both sides in the chosen mode; scores are their dot products (cosine) for images, and for
    text and fused modes the product's hybrid score (then no vectors are returned, so simulated feedback, which
    re-ranks by vectors alone, is not run for them; `--fusion dense` gives the embeddings-only scores and
    vectors)."""
    from ..encoders import fuse_embeddings
    from ..lexical import blend_backbone, fuse_scores

    if opts.mode not in ("image", "text", "fused"):
        raise ValueError(f"unknown mode {opts.mode!r}: use image, text or fused")
    if opts.mode in ("image", "fused") and (index.rois is None or queries.rois is None):
        raise CaseInputError(index.name, "this data set has no images", "use --mode text")
    if opts.mode in ("text", "fused"):
        texts_q, texts_i = _texts(queries, True), _texts(index, False)  # checked before any training
    encoder = encoder_for(index, opts)
    vq = vi = None
    if opts.mode in ("image", "fused"):
        # index cases carry their recorded diagnosis (as in an archive); queries get the predicted one
        vq, vi = encoder.encode_rois(queries.rois), encoder.encode_rois(index.rois, labels=index.labels)
    if opts.mode in ("text", "fused"):
        tq, bq = _text_vectors(encoder, texts_q)
        ti, bi = _text_vectors(encoder, texts_i)
        config, lexical_index = _hybrid(index, encoder, ti, bi, texts_i, opts)
        if config is not None:  # the product's score: (1 - w) cos_image + w * hybrid text
            image = None if vq is None else np.asarray(vq, np.float32) @ np.asarray(vi, np.float32).T
            text = blend_backbone(tq @ ti.T, bq @ bi.T, config.backbone_weight)
            lexical = lexical_index(texts_q) if config.uses_lexical else None
            w = 1.0 if opts.mode == "text" else opts.text_weight
            return MethodOutput(fuse_scores(image, text, lexical, w, config).astype(np.float32))
        if opts.mode == "text":
            vq, vi = tq, ti
        else:
            vq, vi = fuse_embeddings(vq, tq, opts.text_weight), fuse_embeddings(vi, ti, opts.text_weight)
    vq, vi = np.asarray(vq, np.float32), np.asarray(vi, np.float32)
    return MethodOutput(vq @ vi.T, vq, vi)
