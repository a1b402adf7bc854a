"""Embed the cases of an archive (image, text, fused) into the case store and keep the index in line.

Embeddings are committed in chunks, one transaction per chunk: a killed run leaves a consistent store (every
case fully embedded or not at all) and the next run embeds only what is missing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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
    return embed_texts_and_backbone(encoder, texts, cache=cache)[0]


def embed_texts_and_backbone(
    encoder: CaseEncoder,
    texts: Sequence[str],
    *,
    cache: SentenceCache | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, D) text embeddings and the (N, text_dim) L2-normalised sentence (backbone) embeddings they were
    projected from, NaN rows where there is no text (backbone None for an encoder without the split API)."""
    out = np.full((len(texts), encoder.vector_dim), np.nan, dtype=np.float32)
    backbone = None
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
            backbone = np.full((len(texts), raw.shape[1]), np.nan, dtype=np.float32)
            backbone[with_text] = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        except (ImportError, AttributeError):  # an encoder without the split API
            vectors = encoder.encode_texts(chosen)
        out[with_text] = vectors
    return out, backbone


BACKBONE_KIND = "sentence"  # the text's L2-normalised sentence-model embedding (before our projection)


def commit_embeddings(
    store: CaseStore,
    version: str,
    terms: Sequence[str],
    case_ids: list[str],
    image,
    text,
    term_probs,
    backbone=None,
) -> np.ndarray:
    """Store one chunk (image, text where present, fused, predicted terms, and the backbone sentence embedding
    where given) in one transaction; returns fused."""
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
        if backbone is not None and text_ids:
            store.set_embeddings(version, BACKBONE_KIND, text_ids, np.asarray(backbone)[has_text])
    return fused


def commit_current(
    store: CaseStore,
    version: str,
    terms: Sequence[str],
    case_ids: list[str],
    image,
    text,
    term_probs,
    revisions: dict[str, int],
    backbone=None,
) -> list[str]:
    """Commit the embeddings of the cases whose revision is still the one read before their files were read
    (`revisions`); the others changed meanwhile (`ingest --replace`, update, removal): their embeddings are
    stale and are not stored. Returns the stale case ids."""
    with store.transaction():
        now = store.current_revisions(case_ids)
        keep = [n for n, i in enumerate(case_ids) if i in revisions and now.get(i) == revisions[i]]
        if keep:
            commit_embeddings(
                store,
                version,
                terms,
                [case_ids[n] for n in keep],
                image[keep],
                text[keep],
                term_probs[keep],
                None if backbone is None else np.asarray(backbone)[keep],
            )
    kept = {case_ids[n] for n in keep}
    return [i for i in case_ids if i not in kept]


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

                _READER_STORES[store] = CaseStore(Path(store), create=False, readonly=True)
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
    on_progress: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Embed every case not yet embedded with this model, then update (or rebuild) the index files.

    Pipeline: `readers` reader threads (SimpleITK releases the GIL; processes with `reader_processes`, which
    measured no faster, docs/benchmarks.md) read studies and extract ROIs up to two chunks ahead while this
    thread encodes each chunk's texts (torch with `threads` intra-op threads), runs the CNN on its ROIs and
    commits it. `text_cache`: reuse raw sentence embeddings from ``index/sentences.sqlite`` (see
    encoders/text.py). The embeddings do not depend on `readers`, processes or the cache (up to float rounding
    of batched matrix products). `on_progress(done, total)` is called after each chunk (cases embedded so far)."""
    require_cases(store)
    started = time.perf_counter()
    version = encoder.version
    all_ids = list(store.ids())
    done = set() if reembed else set(sound_embeddings(store, version)[0])  # damaged ones are embedded again
    todo = [i for i in all_ids if i not in done]
    report = IndexReport(model_version=version, total=len(all_ids))
    # The text model first (its imports take seconds): loading it while the readers run was measured slower
    # (120 cases 8.4 -> 10.7-17.6 s: the readers' Python share of the GIL slowed the imports down).
    report.text_model_seconds = _load_text_model(encoder) if todo else 0.0
    cache = _open_cache(store, encoder) if text_cache and todo else None
    passes, total, processed = 0, len(todo), 0

    def chunk_done(count: int) -> None:
        nonlocal processed
        processed += count
        if on_progress is not None:  # (a disabled tqdm bar does not count)
            on_progress(min(processed, total), total)

    while todo:
        stale = _embed_pass(
            store,
            encoder,
            todo,
            report,
            cache=cache,
            chunk_size=chunk_size,
            batch_size=batch_size,
            progress=progress,
            threads=threads,
            readers=readers,
            reader_processes=reader_processes,
            chunk_done=chunk_done,
        )
        passes += 1
        todo = [i for i in stale if i in store]  # replaced meanwhile: embed the current version
        if todo and passes >= _MAX_PASSES:
            for case_id in todo:
                report.failed[case_id] = "the case kept changing while it was embedded; run index again"
            break
        if todo:
            log.info("%d case(s) changed while they were embedded; embedding them again", len(todo))
    if cache is not None:
        log.debug("sentence cache: %d hit(s), %d miss(es)", cache.hits, cache.misses)
        cache.close()
    before = _indexed_count(store)
    if not store.model_versions().get(version):  # nothing could be embedded: report.failed says why
        report.seconds = time.perf_counter() - started
        return report
    index = open_index(store, version, config, rebuild=reembed)
    report.removed = max(0, before - len(index) + len(report.embedded)) if before >= 0 else 0
    report.indexed = len(index)
    report.seconds = time.perf_counter() - started
    if not store.readonly:
        _calibrate_hybrid(store, encoder)  # (returns at once when the weights are there and still fit)
    return report


_MAX_PASSES = 3


def _case_or_none(store: CaseStore):
    """store.get that answers None for a case removed meanwhile."""
    from .store import UnknownCaseError

    def get(case_id: str) -> Case | None:
        try:
            return store.get(case_id)
        except UnknownCaseError:
            return None

    return get


def _embed_pass(
    store: CaseStore,
    encoder: CaseEncoder,
    todo: list[str],
    report: IndexReport,
    *,
    cache: SentenceCache | None,
    chunk_size: int,
    batch_size: int,
    progress: bool,
    threads: int | None,
    readers: int,
    reader_processes: bool,
    chunk_done: Callable[[int], None],
) -> list[str]:
    """Embed and commit the `todo` cases (see `index_archive`); returns those that changed meanwhile."""
    from tqdm import tqdm

    version, terms = encoder.version, list(encoder.config.terms)
    chunks = list(_chunks(todo, max(1, chunk_size)))
    processes = bool(reader_processes)
    source = str(store.archive_dir) if processes else store
    read_args = (list(encoder.config.sequences), encoder.config.roi)
    stale: list[str] = []
    with (
        torch_threads(threads),
        tqdm(total=len(todo), desc="embedding cases", unit="case", disable=not progress or not todo) as bar,
        _reader_pool(max(1, readers), processes) as pool,
    ):
        cases: list[list[Case]] = []
        reads: list[list[Future]] = []
        revisions: list[dict[str, int]] = []

        def submit_reads(n: int) -> None:
            revisions.append(store.current_revisions(chunks[n]))  # before the case's files are read
            cases.append([c for c in map(_case_or_none(store), chunks[n]) if c is not None])
            reads.append([pool.submit(read_case_roi, source, c, *read_args) for c in cases[n]])

        for n in range(min(2, len(chunks))):
            submit_reads(n)
        try:
            for n in range(len(chunks)):
                text, backbone = embed_texts_and_backbone(encoder, [c.text for c in cases[n]], cache=cache)
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
                    changed = commit_current(
                        store,
                        version,
                        terms,
                        ids,
                        image,
                        text[keep],
                        probs,
                        revisions[n],
                        None if backbone is None else backbone[keep],
                    )
                    stale.extend(changed)
                    report.embedded.extend(i for i in ids if i not in changed)
                cases[n], reads[n] = [], []  # free the ROIs
                bar.update(len(loaded))
                chunk_done(len(chunks[n]))
        finally:
            for f in [f for chunk in reads for f in chunk]:
                f.cancel()
    return stale


def _calibrate_hybrid(store: CaseStore, encoder: CaseEncoder) -> None:
    """Choose the archive's hybrid weights (backbone, lexical) again when there are none yet or the archive grew
    by 10 % since (lexical/calibrate.py); a failure only keeps the previous (or default) weights."""
    import sqlite3

    from .lexical.calibrate import calibrate_store

    state = store.hybrid_state(encoder.version)
    if state is not None and len(store) < 1.1 * int(state.get("n_cases", 0)):
        return
    try:
        chosen = calibrate_store(store, encoder)
    except (ValueError, RuntimeError, OSError, sqlite3.Error) as exc:
        log.warning("hybrid weights not chosen (%s); keeping the previous or default ones", exc)
        return
    if chosen is not None:
        config = chosen["config"]
        log.info(
            "hybrid text scoring: backbone weight %s, lexical weight %s (chosen on %d cases)",
            config["backbone_weight"],
            config["lexical_weight"],
            chosen["n_queries"],
        )


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


def sound_embeddings(store: CaseStore, version: str) -> tuple[list[str], np.ndarray]:
    """The stored fused embeddings of `version` that are intact: fused vectors have unit length by
    construction, so a vector damaged on disk (a flipped byte in its blob) is left out with a warning, never
    searched (`similar-cases index` embeds those cases again)."""
    ids, fused = store.get_embeddings(version, "fused")
    if not ids:
        return ids, fused
    norms = np.linalg.norm(fused.astype(np.float64), axis=1)
    bad = ~(np.abs(norms - 1.0) <= 1e-3)  # NaN norms are bad too
    if bad.any():
        damaged = [i for i, b in zip(ids, bad, strict=True) if b]
        log.warning(
            "%d case(s) have damaged stored embeddings and are left out (e.g. %s); run `similar-cases index`",
            len(damaged),
            damaged[0],
        )
        keep = ~bad
        ids, fused = [i for i, k in zip(ids, keep, strict=True) if k], fused[keep]
    return ids, fused


def open_index(
    store: CaseStore,
    version: str,
    config: IndexConfig | None = None,
    *,
    rebuild: bool = False,
    must_save: bool = True,
) -> ArchiveIndex:
    """The index of the stored fused embeddings for `version` (loaded, updated or rebuilt; saved).

    A read-only store is indexed in memory (nothing saved). `must_save=False` (searching): a failed save is
    logged and the index is used from memory; else the StorageError propagates (indexing: never report done
    what was not written)."""
    from .errors import StorageError

    ids, fused = sound_embeddings(store, version)
    live = set(store.ids())
    keep = [n for n, i in enumerate(ids) if i in live]  # embeddings of removed cases are not indexed
    if not keep:
        raise CaseInputError(
            store.archive_dir,
            f"no case is embedded with model {version}",
            f"run `similar-cases index --archive {store.archive_dir}` and fix the cases it lists",
        )
    ids = [ids[n] for n in keep]
    fused = np.asarray(fused, dtype=np.float32)[keep]
    directory = index_dir(store)
    save = not store.readonly
    try:
        index = ArchiveIndex.open(directory, version, list(ids), fused, config, rebuild=rebuild, save=save)
    except StorageError as exc:
        if must_save:
            raise
        log.warning("index not saved (%s); searching with the index built in memory", exc)
        index = ArchiveIndex.open(directory, version, list(ids), fused, config, rebuild=rebuild, save=False)
    backbone_ids, backbone = store.get_embeddings(version, BACKBONE_KIND)
    if backbone_ids:
        index.set_backbone(backbone_ids, backbone)
    return index
