"""Our dual encoder under evaluation: image-only, text-only or fused embeddings of a `CaseEncoder`,
either loaded (`--model`) or trained on the index cases of each split with `training.train_model`."""

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
    from ..training import train_model
    from ..training.loop import DEFAULT_VAL_FRACTION

    key = (index.name, tuple(index.ids), opts.epochs, opts.seed, opts.text_quantization)
    if key not in _TRAINED:
        log.info("training our encoder on %d index cases (%s epochs)", len(index), opts.epochs)
        config = _config_for(index, opts)
        encoder = train_model(
            index,
            config,
            epochs=opts.epochs,
            seed=opts.seed,
            val_fraction=DEFAULT_VAL_FRACTION,  # inner split of the index side: model selection, as `train`
            progress=opts.progress,
            sentence_cache=_SENTENCES.setdefault((config.text_model, config.text_quantization), {}),
        )
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


def ours_output(index: EvalCollection, queries: EvalCollection, opts: MethodOptions) -> MethodOutput:
    """Embeddings of both sides in the chosen mode; scores are their dot products (cosine)."""
    from ..encoders import fuse_embeddings

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
        tq, ti = encoder.encode_texts(texts_q), encoder.encode_texts(texts_i)
        if opts.mode == "text":
            vq, vi = tq, ti
        else:
            vq, vi = fuse_embeddings(vq, tq, opts.text_weight), fuse_embeddings(vi, ti, opts.text_weight)
    vq, vi = np.asarray(vq, np.float32), np.asarray(vi, np.float32)
    return MethodOutput(vq @ vi.T, vq, vi)
