"""Embed the cases of an archive (image, text, fused) into the case store and keep the index in line.

Embeddings are committed in chunks, one transaction per chunk: a killed run leaves a consistent store (every
case fully embedded or not at all) and the next run embeds only what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError
from .index import ArchiveIndex, IndexConfig, fuse

if TYPE_CHECKING:
    from .encoders import CaseEncoder
    from .store import Case, CaseStore

log = logging.getLogger(__name__)

INDEX_DIRNAME = "index"
TEXT_BATCH = 8  # reports are long (~250 tokens): small batches are faster on CPU (bench_search.py)


@dataclass
class IndexReport:
    """What one `index_archive` run did."""

    model_version: str
    embedded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # case id -> one-line reason
    removed: int = 0
    total: int = 0  # cases in the store
    indexed: int = 0  # cases in the index after the run
    seconds: float = 0.0

    @property
    def cases_per_second(self) -> float:
        return len(self.embedded) / self.seconds if self.seconds > 0 else 0.0


def index_dir(store: CaseStore) -> Path:
    return Path(store.archive_dir) / INDEX_DIRNAME


def require_cases(store: CaseStore) -> None:
    """Empty archive -> CaseInputError."""
    if len(store) == 0:
        raise CaseInputError(
            store.archive_dir,
            "the archive has no cases",
            "add cases with `similar-cases ingest --archive DIR --manifest M.csv` (or run `similar-cases demo`)",
        )


def case_roi(store: CaseStore, encoder: CaseEncoder, case: Case) -> np.ndarray:
    """The model's ROI of a stored case (reads its study and mask)."""
    study = store.load_study(case)
    mask = store.load_mask(case, study)
    return encoder.roi_for(study, mask)


@contextmanager
def torch_threads(n: int | None):
    """Run torch with `n` intra-op threads, then restore the previous setting (None: leave it).

    On a small shared CPU, one thread per inference is much faster than two competing OpenMP threads (measured
    in benchmarks/bench_search.py); parallelism comes from overlapping reading, CNN and text encoding instead."""
    if not n:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def embed_images(
    encoder: CaseEncoder, rois: np.ndarray, *, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings (N, D), term probabilities (N, T))."""
    pred = encoder.predict_rois(rois, batch_size=batch_size)
    return np.asarray(pred.embeddings, dtype=np.float32), np.asarray(pred.term_probs, dtype=np.float32)


def embed_texts(encoder: CaseEncoder, texts: Sequence[str], *, batch_size: int = TEXT_BATCH) -> np.ndarray:
    """(N, D) text embeddings with NaN rows where there is no text."""
    out = np.full((len(texts), encoder.config.embed_dim), np.nan, dtype=np.float32)
    with_text = [i for i, t in enumerate(texts) if t and t.strip()]
    if with_text:
        chosen = [texts[i] for i in with_text]
        try:
            from .encoders.text import embed_sentences

            vectors = encoder.project_texts(
                embed_sentences(encoder.sentence_model, chosen, batch_size=batch_size)
            )
        except (ImportError, AttributeError):  # an encoder without the split API
            vectors = encoder.encode_texts(chosen)
        out[with_text] = vectors
    return out


def embed_rois_and_texts(
    encoder: CaseEncoder, rois: np.ndarray, texts: Sequence[str], *, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (N, D), text (N, D) with NaN rows where there is no text, term probabilities (N, T))."""
    image, probs = embed_images(encoder, rois, batch_size=batch_size)
    return image, embed_texts(encoder, texts), probs


def commit_embeddings(
    store: CaseStore, version: str, terms: Sequence[str], case_ids: list[str], image, text, term_probs
) -> np.ndarray:
    """Store one chunk (image, text where present, fused, predicted terms) in one transaction; returns fused."""
    fused = fuse(image, text)
    has_text = np.isfinite(text).all(axis=1)
    text_ids = [i for i, ok in zip(case_ids, has_text, strict=True) if ok]
    predicted = {
        cid: {t: float(p) for t, p in zip(terms, row, strict=True)}
        for cid, row in zip(case_ids, term_probs, strict=True)
    }
    with store.transaction():
        store.set_embeddings(version, "image", case_ids, image)
        if text_ids:
            store.set_embeddings(version, "text", text_ids, text[has_text])
        store.set_predicted_terms(version, predicted)
        store.set_embeddings(version, "fused", case_ids, fused)
    return fused


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_rois(store: CaseStore, encoder: CaseEncoder, case_ids: list[str], pool: ThreadPoolExecutor):
    """ROIs of the cases (threads: SimpleITK releases the GIL); failures as one-line reasons."""

    def one(case_id: str):
        try:
            return case_id, case_roi(store, encoder, store.get(case_id)), None
        except (ValueError, OSError, RuntimeError) as exc:  # CaseInputError is a ValueError
            return case_id, None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    return list(pool.map(one, case_ids))


def index_archive(
    store: CaseStore,
    encoder: CaseEncoder,
    *,
    config: IndexConfig | None = None,
    chunk_size: int = 64,
    batch_size: int = 16,
    progress: bool = True,
    reembed: bool = False,
    threads: int | None = 1,
    readers: int = 2,
) -> IndexReport:
    """Embed every case not yet embedded with this model, then update (or rebuild) the index files.

    Pipeline: `readers` threads read the next chunk's studies and ROIs while this chunk's texts are encoded in
    a second thread and its ROIs by the CNN here (torch limited to `threads` intra-op threads each)."""
    from tqdm import tqdm

    require_cases(store)
    started = time.perf_counter()
    version = encoder.version
    terms = list(encoder.config.terms)
    all_ids = list(store.ids())
    done = set() if reembed else set(store.get_embeddings(version, "fused")[0])
    todo = [i for i in all_ids if i not in done]
    report = IndexReport(model_version=version, total=len(all_ids))
    chunks = list(_chunks(todo, max(1, chunk_size)))
    with (
        torch_threads(threads),
        tqdm(total=len(todo), desc="embedding cases", unit="case", disable=not progress or not todo) as bar,
        ThreadPoolExecutor(max(1, readers)) as pool,
        ThreadPoolExecutor(1) as prefetch,
        ThreadPoolExecutor(1) as text_worker,
    ):
        pending = prefetch.submit(_load_rois, store, encoder, chunks[0], pool) if chunks else None
        for n in range(len(chunks)):
            loaded = pending.result()  # type: ignore[union-attr]
            if n + 1 < len(chunks):  # read the next chunk while this one is encoded
                pending = prefetch.submit(_load_rois, store, encoder, chunks[n + 1], pool)
            ok = [(cid, roi) for cid, roi, err in loaded if err is None]
            for cid, _roi, err in loaded:
                if err is not None:
                    report.failed[cid] = err
                    log.warning("case %s not embedded: %s", cid, err)
            if ok:
                ids = [cid for cid, _ in ok]
                texts = [store.get(cid).text for cid in ids]
                text_job = text_worker.submit(_in_threads, threads, embed_texts, encoder, texts)
                image, probs = embed_images(encoder, np.stack([r for _, r in ok]), batch_size=batch_size)
                commit_embeddings(store, version, terms, ids, image, text_job.result(), probs)
                report.embedded.extend(ids)
            bar.update(len(loaded))
    before = _indexed_count(store)
    index = open_index(store, version, config, rebuild=reembed)
    report.removed = max(0, before - len(index) + len(report.embedded)) if before >= 0 else 0
    report.indexed = len(index)
    report.seconds = time.perf_counter() - started
    return report


def _in_threads(threads: int | None, fn, *args):
    """Call fn in a worker thread with the torch thread limit applied there too."""
    with torch_threads(threads):
        return fn(*args)


def _indexed_count(store: CaseStore) -> int:
    """Live cases in the saved index (sidecar), -1 when there is none."""
    import json

    try:
        return int(json.loads((index_dir(store) / "index.json").read_text(encoding="utf-8"))["count"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def open_index(
    store: CaseStore, version: str, config: IndexConfig | None = None, *, rebuild: bool = False
) -> ArchiveIndex:
    """The index of the stored fused embeddings for `version` (loaded, updated or rebuilt; saved)."""
    ids, fused = store.get_embeddings(version, "fused")
    live = set(store.ids())
    keep = [n for n, i in enumerate(ids) if i in live]  # embeddings of removed cases are not indexed
    ids = [ids[n] for n in keep]
    fused = np.asarray(fused, dtype=np.float32)[keep] if keep else np.zeros((0, 2), dtype=np.float32)
    return ArchiveIndex.open(index_dir(store), version, list(ids), fused, config, rebuild=rebuild)
