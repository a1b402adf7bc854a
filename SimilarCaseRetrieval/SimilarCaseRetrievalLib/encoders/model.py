"""`CaseEncoder`: image CNN + text projection (+ the frozen sentence model) into one embedding space.

Saved as a folder: ``model.safetensors`` (our weights only: CNN, heads, text projection), ``config.json``
(`ModelConfig`) and ``MODEL_CARD.md``. Loading never unpickles.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CaseInputError
from .config import ModelConfig
from .ensemble import ImageEnsemble, TextEnsemble, combine_outputs, image_members
from .image import ImageNet
from .text import TextProjection, embed_sentences, load_sentence_model, sentence_dim

if TYPE_CHECKING:
    import SimpleITK as sitk

    from ..study import Study

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"


@dataclass
class RoiPrediction:
    """Outputs of the image branch for N ROIs."""

    embeddings: np.ndarray  # (N, D) L2-normalised
    term_probs: np.ndarray  # (N, T) independent sigmoid probabilities, order = config.terms
    label_probs: np.ndarray  # (N, L) softmax, order = config.labels

    def terms_of(self, i: int, terms: list[str], threshold: float = 0.5) -> dict[str, float]:
        """{term: probability} of ROI ``i`` at or above ``threshold``."""
        return {t: float(p) for t, p in zip(terms, self.term_probs[i], strict=True) if p >= threshold}


class CaseNet(nn.Module):
    """The trainable part of a `CaseEncoder` (what model.safetensors holds): one image network and one text
    projection, or ``config.members`` of each (`ensemble`)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        k = int(config.members)
        if k < 1:
            raise ValueError(f"members must be at least 1, not {k}")
        images = [_image_net(config) for _ in range(k)]
        texts = [TextProjection(config.text_dim, config.embed_dim, config.text_hidden) for _ in range(k)]
        self.image = images[0] if k == 1 else ImageEnsemble(images)
        self.text = texts[0] if k == 1 else TextEnsemble(texts)

    @classmethod
    def of_members(cls, config: ModelConfig, members: Sequence[CaseNet]) -> CaseNet:
        """An ensemble net (``config.members`` = len(members)) holding copies of the members' weights."""
        net = cls(config)
        if len(members) == 1:
            net.load_state_dict(members[0].state_dict())
            return net
        for i, member in enumerate(members):
            net.image.members[i].load_state_dict(member.image.state_dict())
            net.text.members[i].load_state_dict(member.text.state_dict())
        return net


def _image_net(config: ModelConfig) -> ImageNet:
    return ImageNet(
        config.in_channels,
        config.roi_shape,
        widths=tuple(config.widths),
        stem_stride=config.stem_stride,
        groups=config.groups,
        embed_dim=config.embed_dim,
        n_terms=len(config.terms),
        n_labels=len(config.labels),
    )


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted tensor names, shapes and bytes (the last part of the model version)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class CaseEncoder:
    """Image and text encoders into one L2-normalised space, with term and diagnosis heads."""

    def __init__(self, config: ModelConfig, net: CaseNet):
        self.config = config
        self.net = net.eval()
        self._sentence_model = None
        if not config.version:
            config.version = self._make_version(config.trained_date or "untrained")

    # ---- construction / persistence -------------------------------------------------------------------
    @classmethod
    def create(cls, config: ModelConfig, seed: int | None = 0) -> CaseEncoder:
        """A randomly initialised encoder (deterministic for a given seed)."""
        if seed is not None:
            torch.manual_seed(seed)
        return cls(config, CaseNet(config))

    @classmethod
    def load(cls, model_dir: Path | str | None = None) -> CaseEncoder:
        """Load a saved model folder (default: the shipped model). Mismatches -> CaseInputError."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from ..resources import default_model_dir

        model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        cfg_path, w_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise CaseInputError(p, "missing", "pass a model folder written by `similar-cases train`")
        try:
            text = cfg_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CaseInputError(cfg_path, "not UTF-8 text (damaged)", "restore config.json") from None
        config = ModelConfig.from_json(text, where=cfg_path)
        try:
            state = load_file(str(w_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CaseInputError(
                w_path, f"unreadable safetensors ({exc})", "retrain or restore the file"
            ) from exc
        try:
            net = CaseNet(config)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CaseInputError(cfg_path, f"invalid architecture ({exc})", "restore config.json") from exc
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        wrong = sorted(
            k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
        )
        if missing or extra or wrong:
            detail = "; ".join(
                f"{what} {names[:3]}{'...' if len(names) > 3 else ''}"
                for what, names in (("missing", missing), ("unexpected", extra), ("shape mismatch", wrong))
                if names
            )
            raise CaseInputError(
                w_path,
                f"weights do not match {CONFIG_FILE} ({detail})",
                f"use the {CONFIG_FILE} saved with these weights, or retrain with `similar-cases train`",
            )
        net.load_state_dict(state)
        if config.version and not config.version.endswith(weights_hash(state)[:8]):
            raise CaseInputError(
                cfg_path,
                f"version {config.version} does not match the weights hash in {WEIGHTS_FILE}",
                "use the config.json saved with these weights (or re-save the model)",
            )
        return cls(config, net)

    def save(self, model_dir: Path | str, card: str | None = None) -> Path:
        """Write model.safetensors + config.json (+ MODEL_CARD.md); sets and returns the version."""
        from safetensors.torch import save_file

        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        if not self.config.trained_date:
            self.config.trained_date = _dt.date.today().strftime("%Y%m%d")
        self.config.version = self._make_version(self.config.trained_date, state)
        tmp = model_dir / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"version": self.config.version})
        tmp.chmod(0o644)
        tmp.replace(model_dir / WEIGHTS_FILE)
        (model_dir / CONFIG_FILE).write_text(self.config.to_json() + "\n", encoding="utf-8")
        if card is not None:
            (model_dir / CARD_FILE).write_text(card, encoding="utf-8")
        return model_dir

    def _make_version(self, date: str, state: dict[str, torch.Tensor] | None = None) -> str:
        state = state if state is not None else self.net.state_dict()
        return f"{self.config.name}-{date}-{weights_hash(state)[:8]}"

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def terms(self) -> list[str]:
        return list(self.config.terms)

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    # ---- image branch -----------------------------------------------------------------------------------
    def check_rois(self, rois: np.ndarray, where: str = "ROI") -> np.ndarray:
        """(N, C, Z, Y, X) float32 (a single (C, Z, Y, X) is accepted); wrong shape/NaN -> CaseInputError."""
        rois = np.asarray(rois, dtype=np.float32)
        if rois.ndim == 4:
            rois = rois[None]
        expected = (self.config.in_channels, *self.config.roi_shape)
        if rois.ndim != 5 or tuple(rois.shape[1:]) != expected:
            raise CaseInputError(
                where,
                f"ROI array shape {tuple(rois.shape)} does not match the model's (N, {', '.join(map(str, expected))})",
                f"extract ROIs with sequences {self.config.sequences} and grid {tuple(self.config.roi.grid)} "
                "(CaseEncoder.roi_for)",
            )
        if not np.isfinite(rois).all():
            raise CaseInputError(
                where, "ROI contains NaN or infinite values", "check the image and mask files"
            )
        return rois

    def _image_outputs(self, rois: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        rois = self.check_rois(rois)
        outs: dict[str, list[np.ndarray]] = {}
        device = next(self.net.parameters()).device  # cuda while training with --device cuda
        nets = image_members(self.net.image)
        with torch.inference_mode():
            for start in range(0, len(rois), batch_size):
                batch = torch.from_numpy(rois[start : start + batch_size]).to(device)
                parts = [self._network_outputs(net, batch) for net in nets]
                out = parts[0] if len(parts) == 1 else combine_outputs(parts)
                for k, v in out.items():
                    outs.setdefault(k, []).append(v.cpu().numpy())
        if not outs:  # N == 0
            return {
                "embedding": np.zeros((0, self.embedding_dim), np.float32),
                "label_logits": np.zeros((0, len(self.config.labels)), np.float32),
            }
        return {k: np.concatenate(v).astype(np.float32) for k, v in outs.items()}

    def _network_outputs(self, net: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """One image network's outputs (unit embedding), averaged with the left-right mirror's (X is the last
        axis) when the model does test-time flips."""
        out = net(batch)
        out["embedding"] = F.normalize(out["embedding"], dim=1)
        if self.config.flip_tta:
            mirror = net(torch.flip(batch, dims=(-1,)))
            mirror["embedding"] = F.normalize(mirror["embedding"], dim=1)
            out = {key: (v + mirror[key]) / 2 for key, v in out.items()}
            out["embedding"] = F.normalize(out["embedding"], dim=1)
        return out

    @property
    def embedding_dim(self) -> int:
        """Size of the image (and text) embedding: ``embed_dim`` per ensemble member."""
        return int(self.config.members) * self.config.embed_dim

    @property
    def vector_dim(self) -> int:
        """Size of the vectors this model writes for search: the embedding, plus one entry per diagnosis when
        the diagnosis prior is on (text vectors are zero there)."""
        extra = len(self.config.labels) if self.config.label_prior_weight > 0 else 0
        return self.embedding_dim + extra

    def label_probs_for(self, label_probs: np.ndarray, labels: Sequence[str | None] | None) -> np.ndarray:
        """Predicted diagnosis probabilities, replaced by the recorded diagnosis (one-hot) where ``labels``
        gives one the model knows (archive cases: their diagnosis is known; queries: predicted)."""
        probs = np.asarray(label_probs, np.float32).copy()
        if labels is not None:
            where = {lab: i for i, lab in enumerate(self.config.labels)}
            for row, lab in enumerate(labels):
                if lab in where:
                    probs[row] = 0.0
                    probs[row, where[lab]] = 1.0
        return probs

    def _search_vectors(self, out: dict[str, np.ndarray], labels=None) -> np.ndarray:
        emb = out["embedding"]
        w = self.config.label_prior_weight
        if w <= 0 or not self.config.labels:
            return emb
        logits = out.get("label_logits", np.zeros((len(emb), len(self.config.labels)), np.float32))
        return with_label_prior(emb, self.label_probs_for(softmax(logits), labels), w)

    def encode_rois(
        self, rois: np.ndarray, batch_size: int = 16, labels: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """(N, C, Z, Y, X) -> (N, vector_dim) L2-normalised image vectors (with the diagnosis prior if on;
        ``labels``: recorded diagnoses of archive cases, used instead of the predicted ones)."""
        return self._search_vectors(self._image_outputs(rois, batch_size), labels)

    def predict_rois(
        self, rois: np.ndarray, batch_size: int = 16, labels: Sequence[str | None] | None = None
    ) -> RoiPrediction:
        """Search vectors (as `encode_rois`) plus term probabilities (sigmoid) and diagnosis probabilities
        (softmax, always the predicted ones)."""
        out = self._image_outputs(rois, batch_size)
        n = len(out["embedding"])
        t = out.get("term_logits")
        lab = out.get("label_logits")
        term_probs = 1.0 / (1.0 + np.exp(-t)) if t is not None else np.zeros((n, 0), np.float32)
        label_probs = softmax(lab) if lab is not None else np.zeros((n, 0), np.float32)
        return RoiPrediction(
            self._search_vectors(out, labels), term_probs.astype(np.float32), label_probs.astype(np.float32)
        )

    def roi_for(self, study: Study, mask: sitk.Image) -> np.ndarray:
        """The ROI tensor (C, Z, Y, X) for this model's sequences and grid."""
        from ..roi import extract_roi

        return extract_roi(study, mask, self.config.sequences, self.config.roi)

    # ---- text branch ------------------------------------------------------------------------------------
    @property
    def sentence_model(self):
        """The frozen sentence-transformers model (loaded on first use; its dimension is checked)."""
        if self._sentence_model is None:
            model = load_sentence_model(self.config.text_model, quantization=self.config.text_quantization)
            dim = sentence_dim(model)
            if dim != self.config.text_dim:
                raise CaseInputError(
                    f"text model {self.config.text_model}",
                    f"embedding size {dim} differs from the model's text_dim {self.config.text_dim}",
                    "use the text model this model was trained with, or retrain with --text-model",
                )
            self._sentence_model = model
        return self._sentence_model

    def sentence_embeddings(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Frozen sentence embeddings (N, text_dim) before our projection; empty texts -> zero rows."""
        return embed_sentences(self.sentence_model, list(texts), progress=progress)

    def project_texts(self, sentence_embeddings: np.ndarray) -> np.ndarray:
        """Sentence embeddings -> (N, D) L2-normalised shared-space vectors; all-zero rows stay zero."""
        s = np.asarray(sentence_embeddings, dtype=np.float32)
        if s.ndim != 2 or s.shape[1] != self.config.text_dim:
            raise CaseInputError(
                "text embeddings", f"shape {s.shape} is not (N, {self.config.text_dim})", "re-embed"
            )
        with torch.inference_mode():
            device = next(self.net.parameters()).device
            z = F.normalize(self.net.text(torch.from_numpy(s).to(device)), dim=1).cpu().numpy()
        empty = ~np.any(s != 0, axis=1)
        z[empty] = 0.0
        pad = self.vector_dim - z.shape[1]  # the diagnosis-prior part of image vectors: zero for texts
        if pad:
            z = np.concatenate([z, np.zeros((len(z), pad), np.float32)], axis=1)
        return z.astype(np.float32)

    def encode_texts(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(N, D) L2-normalised text embeddings in the image space; an empty text gives a zero row."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, self.vector_dim), np.float32)
        return self.project_texts(self.sentence_embeddings(list(texts), progress=progress))

    # ---- misc --------------------------------------------------------------------------------------------
    def describe(self) -> dict:
        """A short JSON-able summary (for `similar-cases info`)."""
        n = sum(p.numel() for p in self.net.parameters())
        return {
            "version": self.version,
            "sequences": self.config.sequences,
            "grid": list(self.config.roi.grid),
            "embed_dim": self.config.embed_dim,
            "members": self.config.members,
            "label_prior_weight": self.config.label_prior_weight,
            "terms": len(self.config.terms),
            "labels": self.config.labels,
            "text_model": self.config.text_model,
            "text_quantization": self.config.text_quantization,
            "parameters": n,
            "metrics": self.config.metrics,
        }

    def __repr__(self) -> str:
        return f"CaseEncoder({json.dumps(self.describe())})"


def fuse_embeddings(image: np.ndarray, text: np.ndarray, text_weight: float = 0.3) -> np.ndarray:
    """L2-normalised ``(1 - w) * image + w * text``; rows whose text is zero fall back to the image vector."""
    image = np.asarray(image, np.float32)
    text = np.asarray(text, np.float32)
    fused = (1.0 - text_weight) * image + text_weight * text
    norms = np.linalg.norm(fused, axis=-1, keepdims=True)
    return (fused / np.maximum(norms, 1e-12)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float32)."""
    logits = np.asarray(logits, np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True)) if logits.size else logits
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32) if logits.size else logits


def with_label_prior(embeddings: np.ndarray, label_probs: np.ndarray, weight: float) -> np.ndarray:
    """``[sqrt(1 - w) * e, sqrt(w) * sqrt(p)]``: unit vectors whose dot product is
    ``(1 - w) * cos(e_q, e_h) + w * BC(p_q, p_h)``, BC = the Bhattacharyya coefficient of the two diagnosis
    distributions (1 for identical ones). A diagnosis prior (what makes a classifier strong for retrieval)
    that keeps the embedding's order among cases of the same predicted diagnosis."""
    e = np.asarray(embeddings, np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    p = np.sqrt(np.clip(np.asarray(label_probs, np.float32), 0.0, None))
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    w = float(weight)
    return np.concatenate([np.sqrt(1.0 - w) * e, np.sqrt(w) * p], axis=1).astype(np.float32)
