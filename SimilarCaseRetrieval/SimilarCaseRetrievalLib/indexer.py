"""Embed the cases of an archive (image, text, fused) into the case store and keep the index in line.

Embeddings are committed in chunks, one transaction per chunk: a killed run leaves a consistent store (every
case fully embedded or not at all) and the next run embeds only what is missing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError
from .index import ArchiveIndex, IndexConfig, fuse

if TYPE_CHECKING:
    from .encoders import CaseEncoder
    from .encoders.text import SentenceCache
    from .roi import RoiConfig
    from .store import Case, CaseStore

log = logging.getLogger(__name__)

INDEX_DIRNAME = "index"


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
    text_model_seconds: float = 0.0  # of `seconds`: loading the text model (once per process, before reading)

    @property
    def cases_per_second(self) -> float:
        return len(self.embedded) / self.seconds if self.seconds > 0 else 0.0

    def speed(self) -> str:
        """'120 case(s) in 8.4 s (14.2 cases/s; 3.9 s of it loading the text model)'."""
        load = self.text_model_seconds
        note = f"; {load:.1f} s of it loading the text model" if load >= 0.5 else ""
        return f"{len(self.embedded)} case(s) in {self.seconds:.1f} s ({self.cases_per_second:.1f} cases/s{note})"


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
    encoder: CaseEncoder,
    rois: np.ndarray,
    *,
    batch_size: int = 16,
    labels: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(image vectors (N, D), term probabilities (N, T)); ``labels``: the cases' recorded diagnoses (the
    diagnosis prior of a model that has one uses them instead of the predicted ones)."""
    pred = encoder.predict_rois(rois, batch_size=batch_size, labels=labels)
    return np.asarray(pred.embeddings, dtype=np.float32), np.asarray(pred.term_probs, dtype=np.float32)


def embed_texts(
    encoder: CaseEncoder,
    texts: Sequence[str],
    *,
    cache: SentenceCache | None = None,
) -> np.ndarray:
    """(N, D) text embeddings with NaN rows where there is no text; raw sentence embeddings come from `cache`
    where present (the sentence model is frozen) and are added to it."""
    out = np.full((len(texts), encoder.vector_dim), np.nan, dtype=np.float32)
    with_text = [i for i, t in enumerate(texts) if t and t.strip()]
    if with_text:
        chosen = [texts[i] for i in with_text]
        try:
            from .encoders.text import embed_sentences, sentence_dim

            model = encoder.sentence_model
            if cache is not None:
                raw, missing = cache.get(chosen, sentence_dim(model))
            else:
                raw, missing = None, list(range(len(chosen)))
            if missing:
                fresh = embed_sentences(model, [chosen[i] for i in missing])
                if raw is None:
                    raw = fresh
                else:
                    raw[missing] = fresh
                if cache is not None:
                    cache.put([chosen[i] for i in missing], fresh)
            vectors = encoder.project_texts(raw)
        except (ImportError, AttributeError):  # an encoder without the split API
            vectors = encoder.encode_texts(chosen)
        out[with_text] = vectors
    return out


def embed_rois_and_texts(
    encoder: CaseEncoder,
    rois: np.ndarray,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    labels: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (N, D), text (N, D) with NaN rows where there is no text, term probabilities (N, T));
    ``labels`` as in `embed_images`."""
    image, probs = embed_images(encoder, rois, batch_size=batch_size, labels=labels)
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


_READER_STORES: dict[str, CaseStore] = {}


def read_case_roi(
    store: CaseStore | str, case: Case, sequences: Sequence[str], roi_config: RoiConfig
) -> tuple[np.ndarray | None, str | None]:
    """(ROI, None) or (None, one-line reason) for one stored case: what a reader runs. In a reader process
    `store` is the archive folder (one CaseStore per process is opened for it)."""
    from .roi import extract_roi

    try:
        if isinstance(store, str):
            if store not in _READER_STORES:
                from .store import CaseStore

                _READER_STORES[store] = CaseStore(Path(store), create=False)
            store = _READER_STORES[store]
        study = store.load_study(case)
        return extract_roi(study, store.load_mask(case, study), sequences, roi_config), None
    except (ValueError, OSError, RuntimeError) as exc:  # CaseInputError is a ValueError
        return None, (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _reader_pool(readers: int, processes: bool) -> Executor:
    """Reader threads, or processes (no GIL shared with the encoders; forked on Linux: fast start, no re-import
    of the caller's __main__, they only read files; spawned elsewhere)."""
    if not processes:
        return ThreadPoolExecutor(readers, thread_name_prefix="reader")
    import multiprocessing

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(readers, mp_context=multiprocessing.get_context(method))


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
    reader_processes: bool = False,
    text_cache: bool = True,
) -> IndexReport:
    """Embed every case not yet embedded with this model, then update (or rebuild) the index files.

    Pipeline: `readers` reader threads (SimpleITK releases the GIL; processes with `reader_processes`, which
    measured no faster, docs/benchmarks.md) read studies and extract ROIs up to two chunks ahead while this
    thread encodes each chunk's texts (torch with `threads` intra-op threads), runs the CNN on its ROIs and
    commits it. `text_cache`: reuse raw sentence embeddings from ``index/sentences.sqlite`` (see
    encoders/text.py). The embeddings do not depend on `readers`, processes or the cache (up to float rounding
    of batched matrix products)."""
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
    # The text model first (its imports take seconds): loading it while the readers run was measured slower
    # (120 cases 8.4 -> 10.7-17.6 s: the readers' Python share of the GIL slowed the imports down).
    report.text_model_seconds = _load_text_model(encoder) if todo else 0.0
    cache = _open_cache(store, encoder) if text_cache and todo else None
    processes = bool(reader_processes and todo)
    source = str(store.archive_dir) if processes else store
    read_args = (list(encoder.config.sequences), encoder.config.roi)
    with (
        torch_threads(threads),
        tqdm(total=len(todo), desc="embedding cases", unit="case", disable=not progress or not todo) as bar,
        _reader_pool(max(1, readers), processes) as pool,
    ):
        cases: list[list[Case]] = []
        reads: list[list[Future]] = []

        def submit_reads(n: int) -> None:
            cases.append([store.get(cid) for cid in chunks[n]])
            reads.append([pool.submit(read_case_roi, source, c, *read_args) for c in cases[n]])

        for n in range(min(2, len(chunks))):
            submit_reads(n)
        try:
            for n in range(len(chunks)):
                text = embed_texts(encoder, [c.text for c in cases[n]], cache=cache)  # while ROIs arrive
                loaded = [f.result() for f in reads[n]]
                if n + 2 < len(chunks):  # readers at most two chunks ahead (memory)
                    submit_reads(n + 2)
                keep = [i for i, (roi, _) in enumerate(loaded) if roi is not None]
                for case, (_, err) in zip(cases[n], loaded, strict=True):
                    if err is not None:
                        report.failed[case.case_id] = err
                        log.warning("case %s not embedded: %s", case.case_id, err)
                if keep:
                    ids = [cases[n][i].case_id for i in keep]
                    rois = np.stack([loaded[i][0] for i in keep])
                    labels = [cases[n][i].label for i in keep]
                    image, probs = embed_images(encoder, rois, batch_size=batch_size, labels=labels)
                    commit_embeddings(store, version, terms, ids, image, text[keep], probs)
                    report.embedded.extend(ids)
                cases[n], reads[n] = [], []  # free the ROIs
                bar.update(len(loaded))
        finally:
            for f in [f for chunk in reads for f in chunk]:
                f.cancel()
            if cache is not None:
                log.debug("sentence cache: %d hit(s), %d miss(es)", cache.hits, cache.misses)
                cache.close()
    before = _indexed_count(store)
    index = open_index(store, version, config, rebuild=reembed)
    report.removed = max(0, before - len(index) + len(report.embedded)) if before >= 0 else 0
    report.indexed = len(index)
    report.seconds = time.perf_counter() - started
    return report


def _load_text_model(encoder: CaseEncoder) -> float:
    """Seconds spent loading the encoder's text model now (0 when already loaded or when it has none)."""
    start = time.perf_counter()
    try:
        loaded = encoder.sentence_model is not None
    except (AttributeError, ImportError):  # no text branch: embed_texts copes
        loaded = False
    return time.perf_counter() - start if loaded else 0.0


def _open_cache(store: CaseStore, encoder: CaseEncoder) -> SentenceCache | None:
    from .encoders.text import CACHE_NAME, SentenceCache, cache_key

    try:
        config = encoder.config
        key = cache_key(encoder.sentence_model, config.text_model, config.text_quantization)
    except (AttributeError, ImportError, ValueError):  # no sentence model: nothing to cache
        return None
    return SentenceCache(index_dir(store) / CACHE_NAME, key)


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
