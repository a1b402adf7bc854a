"""Index and search speed on this CPU; numbers for docs/benchmarks.md.

1. Indexing throughput (cases/s) on a synthetic archive at the model's grid: end to end (read studies, ROI,
   CNN, text encoder, commit) with reader threads and with reader processes (same run, fresh archive copies),
   re-indexing with a warm sentence cache (what a retrained model costs), plus the per-case time of each stage;
   with `--baseline-model DIR` the same first indexing with that model too, and the ratio (e.g. an fp32-text
   model against the int8 shipped one).
2. hnswlib recall@10 vs exact search on real embeddings (the archive's, queried with fresh query cases), and on
   the 100k index.
3. The archive padded to `--pad` cases with random stored embeddings (drawn from a Gaussian fitted to the
   real embeddings) -> end-to-end query latency (read the query files, ROI, encode image + notes, search; no
   rendering), p50 / p95.
4. QPS of hnswlib, faiss HNSW (same M / efConstruction / efSearch) and exact numpy on the same 100k vectors,
   one query at a time, same thread count; recall@10 of both ANN indexes; memory per case.
5. `verify` (needs no model): the cost of checking the three graph files before hnswlib reads them (SHA-256 +
   layout, graph_files.py) at `--n` random cases of size `--dim`, against hnswlib's load without the check.
   `python benchmarks/bench_search.py --sections verify --n 100000 --ef-construction 40`
6. `hybrid`: at the padded size (the padded cases carry the real cases' notes and reports, so the store's FTS5
   index holds `--n` texts), the search part of fused (image + notes) and text-only queries with the hybrid
   scoring (BM25 + embeddings) next to the embeddings alone, same queries, same run: p50 and the ratio.

    python benchmarks/bench_search.py [--model Resources/Model] [--cases 60] [--n 100000] [--queries 30]
        [--sections index,recall,scale,qps,hybrid] [--no-faiss] [--baseline-model DIR]

Each section builds only what it needs: `index` and `recall` need no padding; `scale` (engine open, latency,
memory) and `qps` pad the store to `--n` cases (the engine builds its three graphs once); `--no-faiss` skips
the faiss HNSW build.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    """Resident memory of this process (MiB)."""
    with open("/proc/self/statm", encoding="utf-8") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def recall_at(found: list[list], truth: list[list], k: int = 10) -> float:
    """Share of the exact top-k ids found (ties between equally similar cases count as misses)."""
    return statistics.mean(
        len(set(f[:k]) & set(t[:k])) / min(k, len(t)) for f, t in zip(found, truth, strict=True)
    )


def score_recall(found_scores: list[list[float]], kth_scores: list[float], eps: float = 1e-4) -> float:
    """ann-benchmarks style: share of returned hits at least as similar as the exact k-th hit (minus eps)."""
    return statistics.mean(
        sum(s >= kth - eps for s in scores) / len(scores)
        for scores, kth in zip(found_scores, kth_scores, strict=True)
    )


def like_real(real, n: int, rng):
    """n unit vectors from a Gaussian fitted to `real` (mean + the real deviations mixed at random)."""
    import numpy as np

    mean = real.mean(axis=0)
    mix = rng.standard_normal((n, len(real))).astype(np.float32) / math.sqrt(max(1, len(real) - 1))
    x = mean + mix @ (real - mean)
    x += rng.standard_normal(x.shape).astype(np.float32) * (0.02 / math.sqrt(real.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def load_model(model_dir: str | None, work: Path):
    """The shipped (or given) model; without one, a random-init model of the default architecture."""
    from SimilarCaseRetrievalLib import terms
    from SimilarCaseRetrievalLib.encoders import CaseEncoder, ModelConfig
    from SimilarCaseRetrievalLib.resources import default_model_dir
    from SimilarCaseRetrievalLib.synthetic import LABELS

    path = Path(model_dir) if model_dir else default_model_dir()
    if (path / "config.json").is_file():
        return CaseEncoder.load(path), str(path)
    encoder = CaseEncoder.create(ModelConfig(terms=terms.vocabulary(), labels=list(LABELS)))
    encoder.save(work / "model")
    return CaseEncoder.load(work / "model"), "random-init default architecture (no shipped model found)"


def write_queries(n: int, size: str, folder: Path, seed0: int = 1000) -> list[tuple[dict, Path, str]]:
    """Fresh query cases written as files: (sequence paths, mask path, notes)."""
    import SimpleITK as sitk
    from SimilarCaseRetrievalLib.synthetic import LABELS, make_query_case

    out = []
    for i in range(n):
        study, mask, notes = make_query_case(seed0 + i, LABELS[i % len(LABELS)], size=size)
        paths = {}
        for name, image in study.sequences.items():
            paths[name] = folder / f"q{i}_{name}.nii.gz"
            sitk.WriteImage(image, str(paths[name]))
        mask_path = folder / f"q{i}_mask.nii.gz"
        sitk.WriteImage(mask, str(mask_path))
        out.append((paths, mask_path, notes or "postmenopausal, CA-125 raised"))
    return out


def stage_times(store, encoder, n: int = 16) -> dict[str, float]:
    """Seconds per case of each indexing stage (after warm-up)."""
    cases = store.list_cases()[:n]
    t = time.perf_counter()
    studies = [store.load_study(c) for c in cases]
    masks = [store.load_mask(c, s) for c, s in zip(cases, studies, strict=True)]
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    import numpy as np

    rois = np.stack([encoder.roi_for(s, m) for s, m in zip(studies, masks, strict=True)])
    t_roi = time.perf_counter() - t
    t = time.perf_counter()
    encoder.predict_rois(rois)
    t_cnn = time.perf_counter() - t
    t = time.perf_counter()
    encoder.encode_texts([c.text for c in cases])
    t_text = time.perf_counter() - t
    return {"read": t_read / n, "roi": t_roi / n, "cnn": t_cnn / n, "text": t_text / n}


def index_throughput(archive: Path, encoder, work: Path, readers: int, baseline=None) -> None:
    """Indexing cases/s and CPU ms/case on fresh copies of one archive: reader processes, reader threads
    (the default), the `baseline` encoder with reader threads, and a re-index with a warm sentence cache (a
    retrained model, same text model)."""
    import resource
    import shutil

    from SimilarCaseRetrievalLib.indexer import index_archive
    from SimilarCaseRetrievalLib.store import CaseStore

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    runs = {}
    if baseline is not None:  # first: the re-index below must follow our own first indexing
        runs[f"baseline {baseline.version}, reader threads, cold cache"] = {"encoder": baseline}
    runs["reader processes, no cache"] = {"reader_processes": True, "text_cache": False}
    runs["reader threads (default), cold cache"] = {}
    runs["re-index, warm sentence cache"] = {"reembed": True}
    copy = work / "archive_throughput"
    speed = {}
    for name, options in runs.items():
        if not options.get("reembed"):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(archive, copy)
        store = CaseStore(copy)
        load, c0 = os.getloadavg()[0], cpu()
        model = options.pop("encoder", encoder)
        report = index_archive(store, model, progress=False, threads=1, readers=readers, **options)
        speed[name] = report.cases_per_second
        n = max(1, len(report.embedded))
        cpu_case = (cpu() - c0) / n
        print(
            f"index ({name}): {len(report.embedded)} cases in {report.seconds:.1f} s = "
            f"{report.cases_per_second:.1f} cases/s; CPU {cpu_case * 1000:.0f} ms/case (all threads and "
            f"processes) -> at most {2 / cpu_case:.1f} cases/s on 2 dedicated cores; load {load:.1f}"
        )
        store.close()
    if baseline is not None:
        base = next(v for n, v in speed.items() if n.startswith("baseline"))
        ratio = speed["reader threads (default), cold cache"] / max(base, 1e-9)
        print(f"  first indexing, {encoder.version} / baseline: {ratio:.2f}x")
    stages = stage_times(CaseStore(archive), encoder)
    per = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stages.items())
    image_only = 1.0 / (stages["read"] + stages["roi"] + stages["cnn"])
    print(f"  per case, one at a time: {per}; image path alone (read + ROI + CNN) = {image_only:.1f} cases/s")


def verify_cost(index_dir: Path, count: int, dim: int, m: int, repeats: int = 3) -> None:
    """Cost of checking the graph files before hnswlib loads them, as `ArchiveIndex.open` does it (SHA-256 +
    layout of the three memory-mapped files, in parallel threads), against hnswlib's own load of the same
    files; with the single-threaded parts for reference. Best of `repeats` runs (files in the page cache)."""
    import hashlib
    import json

    import hnswlib
    from SimilarCaseRetrievalLib.graph_files import check_graph_bytes
    from SimilarCaseRetrievalLib.index import SIDECAR, ArchiveIndex, IndexConfig

    sidecar = json.loads((index_dir / SIDECAR).read_text(encoding="utf-8"))
    index = ArchiveIndex(index_dir, "v", dim, IndexConfig(m=m))
    kinds = ("image", "text", "fused")
    best = {"check": math.inf, "load": math.inf, "sha256": math.inf, "layout": math.inf}
    for _ in range(repeats):
        t = time.perf_counter()
        assert index._verified(sidecar, count)
        best["check"] = min(best["check"], time.perf_counter() - t)
        sha = layout = load = 0.0
        for kind in kinds:
            path, kdim = index_dir / f"{kind}.hnsw", 2 * dim if kind == "fused" else dim
            data = path.read_bytes()
            t0 = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            t1 = time.perf_counter()
            assert check_graph_bytes(data, count=count, dim=kdim, m=m) is None
            t2 = time.perf_counter()
            graph = hnswlib.Index(space="cosine", dim=kdim)
            graph.load_index(str(path), max_elements=count + 16)
            t3 = time.perf_counter()
            sha, layout, load = sha + t1 - t0, layout + t2 - t1, load + t3 - t2
            del data, graph
        for key, value in (("sha256", sha), ("layout", layout), ("load", load)):
            best[key] = min(best[key], value)
    mib = sum((index_dir / f"{k}.hnsw").stat().st_size for k in kinds) / 2**20
    print(
        f"graph check at {count} cases (3 files, {mib:.0f} MiB): {best['check'] * 1000:.0f} ms as ArchiveIndex.open "
        f"runs it (3 threads; one thread: SHA-256 {best['sha256'] * 1000:.0f} ms + layout "
        f"{best['layout'] * 1000:.0f} ms); hnswlib load without the check {best['load'] * 1000:.0f} ms; "
        f"open with the check / without = {(best['check'] + best['load']) / best['load']:.2f}"
    )


def verify_section(n: int, dim: int, work: Path, threads: int, ef_construction: int | None) -> None:
    """Build a `n`-case index of random unit vectors (no model needed) and measure `verify_cost`. The check's
    cost depends on the file sizes (n, dim, M), not on graph quality: `--ef-construction 40` builds faster."""
    import numpy as np
    from SimilarCaseRetrievalLib.index import ArchiveIndex, IndexConfig, fuse

    rng = np.random.default_rng(0)
    image = rng.standard_normal((n, dim)).astype(np.float32)
    text = rng.standard_normal((n, dim)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    config = IndexConfig(exact_threshold=0, num_threads=threads)
    if ef_construction:
        config = IndexConfig(exact_threshold=0, num_threads=threads, ef_construction=ef_construction)
    t = time.perf_counter()
    index = ArchiveIndex.open(work / "verify", "v", [f"c{i}" for i in range(n)], fuse(image, text), config)
    print(f"index status {index.status} (a --work folder from an earlier run is reused)")
    print(
        f"opened (built and saved, with the write verification, when new) {n} cases x 3 graphs in "
        f"{time.perf_counter() - t:.0f} s"
    )
    t = time.perf_counter()
    again = ArchiveIndex.open(work / "verify", "v", index.ids(), index.fused, config)
    assert again.status == "loaded"
    print(f"ArchiveIndex.open of the saved index (checks + load): {time.perf_counter() - t:.2f} s")
    verify_cost(work / "verify", n, dim, config.m)


def hybrid_latency(engine, queries, encoder, percentile) -> None:
    """Search part p50 of fused and text-only queries: hybrid (BM25 + embeddings) vs embeddings alone."""
    from SimilarCaseRetrievalLib.lexical import HybridConfig
    from SimilarCaseRetrievalLib.study import read_mask, read_study

    vectors = []
    for paths, mask_path, notes in queries:
        study = read_study(paths)
        roi = encoder.roi_for(study, read_mask(mask_path, study.reference_image))
        vectors.append((encoder.encode_rois(roi[None])[0], encoder.encode_texts([notes])[0], notes))
    configs = {"embeddings only": HybridConfig(method="dense"), "hybrid": HybridConfig(lexical_weight=0.5)}
    print(f"hybrid scoring at {len(engine.index)} cases (FTS5 rows: {len(engine.store)}), search part only:")
    p50 = {}
    for name, config in configs.items():
        engine._hybrid = config
        for mode in ("fused", "text"):
            times = []
            for image, text, notes in vectors:
                t = time.perf_counter()
                engine.search_vectors(
                    image if mode == "fused" else None, text, k=10, text_weight=0.3, text=notes
                )
                times.append(time.perf_counter() - t)
            p50[(name, mode)] = percentile(times, 50) * 1000
            print(
                f"  {name:<16} {mode:<5} p50 {p50[(name, mode)]:.1f} ms, p95 {percentile(times, 95) * 1000:.1f} ms"
            )
    for mode in ("fused", "text"):
        ratio = p50[("hybrid", mode)] / max(p50[("embeddings only", mode)], 1e-9)
        print(f"  hybrid / embeddings only ({mode}): {ratio:.1f}x")
    engine._hybrid = None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--baseline-model", help="index section: also index with this model, print the ratio")
    parser.add_argument("--cases", type=int, default=60, help="synthetic cases to embed (60)")
    parser.add_argument("--size", default="default", help="synthetic grid ('default' or 'tiny')")
    parser.add_argument(
        "--n", "--pad", dest="pad", type=int, default=100_000, help="indexed cases for the scale/QPS runs"
    )
    parser.add_argument(
        "--sections",
        default="index,recall,scale,qps,hybrid",
        help="comma-separated: index, recall, scale, qps, hybrid, verify (graph-file check cost; needs no model)",
    )
    parser.add_argument("--dim", type=int, default=256, help="verify section: embedding size D (256)")
    parser.add_argument("--no-faiss", action="store_true", help="skip the faiss HNSW comparison in qps")
    parser.add_argument("--queries", type=int, default=30, help="end-to-end queries (30)")
    parser.add_argument("--qps-queries", type=int, default=300, help="vector queries for QPS / recall (300)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the ANN indexes and index readers")
    parser.add_argument("--m", type=int, default=None, help="hnsw M (default: IndexConfig's)")
    parser.add_argument(
        "--ef-construction", type=int, default=None, help="hnsw efConstruction (IndexConfig's)"
    )
    parser.add_argument("--ef-search", type=int, default=None, help="hnsw ef at query time (IndexConfig's)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch

    torch.set_num_threads(
        1
    )  # per inference: one thread is faster on a small shared CPU (see docs/benchmarks.md)
    from SimilarCaseRetrievalLib.index import ArchiveIndex, IndexConfig, fuse, split_fused
    from SimilarCaseRetrievalLib.indexer import index_archive
    from SimilarCaseRetrievalLib.search import SearchEngine
    from SimilarCaseRetrievalLib.store import Case, CaseStore
    from SimilarCaseRetrievalLib.study import read_mask, read_study
    from SimilarCaseRetrievalLib.synthetic import make_archive

    tmp = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(args.work or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    if "verify" in sections:
        verify_section(args.pad, args.dim, work, args.threads, args.ef_construction)
        if sections == {"verify"}:
            return
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2-core machine shared with other jobs)")
    encoder, model_name = load_model(args.model, work)
    print(
        f"model: {model_name} ({encoder.version}), grid {tuple(encoder.config.roi.grid)}, threads {args.threads}"
    )

    # 1. indexing throughput ----------------------------------------------------------------------------
    t = time.perf_counter()
    archive = make_archive(
        work / "archive", n_cases=args.cases, seed=3, size=args.size, progress=False, workers=2
    )
    print(f"synthetic archive: {args.cases} cases ({args.size}) in {time.perf_counter() - t:.1f} s")
    store = CaseStore(archive)
    encoder.encode_texts(["warm up"])  # load the text model outside the timing
    encoder.predict_rois(np.zeros((1, encoder.config.in_channels, *encoder.config.roi_shape), np.float32))
    if "index" in sections:
        baseline = None
        if args.baseline_model:
            from SimilarCaseRetrievalLib.encoders import CaseEncoder

            baseline = CaseEncoder.load(args.baseline_model)
            baseline.encode_texts(["warm up"])
        index_throughput(archive, encoder, work, args.threads, baseline)
    index_archive(store, encoder, progress=False, threads=1, readers=args.threads)  # (no-op when done)
    if not sections & {"recall", "scale", "qps", "hybrid"}:
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        return

    # 2. recall on the real embeddings ----------------------------------------------------------------
    version = encoder.version
    ids, fused = store.get_embeddings(version, "fused")
    dim = fused.shape[1] // 2
    queries = write_queries(args.queries, args.size, work)
    q_img, q_txt = [], []
    for paths, mask_path, notes in queries:
        study = read_study(paths)
        roi = encoder.roi_for(study, read_mask(mask_path, study.reference_image))
        q_img.append(encoder.encode_rois(roi[None])[0])
        q_txt.append(encoder.encode_texts([notes])[0])
    q_img, q_txt = np.stack(q_img), np.stack(q_txt)
    real_exact = ArchiveIndex.open(
        work / "real_exact", version, ids, fused, IndexConfig(exact_threshold=10**9)
    )
    real_ann = ArchiveIndex.open(work / "real_ann", version, ids, fused, IndexConfig(exact_threshold=0))
    found, truth = [], []
    for qi, qt in zip(q_img, q_txt, strict=True):
        truth.append([h.case_id for h in real_exact.search(qi, qt, text_weight=0.3, k=10)])
        found.append([h.case_id for h in real_ann.search(qi, qt, text_weight=0.3, k=10)])
    if "recall" in sections:
        print(
            f"recall@10 hnswlib vs exact, {len(ids)} real embeddings, {len(found)} fresh queries: "
            f"{recall_at(found, truth):.3f}"
        )

    if not sections & {"scale", "qps", "hybrid"}:
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        return

    # 3. pad to N cases with real-like random embeddings; end-to-end latency --------------------------
    n_pad = max(0, args.pad - len(ids))
    rng = np.random.default_rng(0)
    real_img, real_txt = split_fused(fused, dim)
    # random embeddings shaped like the real ones: a Gaussian with their mean and covariance (+ a little
    # isotropic noise), so that the 100k vectors spread over the real embeddings' subspace
    pad_img, pad_txt = (like_real(real, n_pad, rng) for real in (real_img, real_txt))
    pad_ids = [f"PAD{i:06d}" for i in range(n_pad)]
    t = time.perf_counter()
    real_cases = [
        store.get(i) for i in ids
    ]  # padded cases repeat their notes and reports (FTS5 holds n texts)
    store.add_many(
        Case(
            case_id=i,
            sequences={"T2": "pad/none.nii.gz"},
            label="pad",
            notes=real_cases[n % len(real_cases)].notes,
            report=real_cases[n % len(real_cases)].report,
        )
        for n, i in enumerate(pad_ids)
    )
    with store.transaction():
        store.set_embeddings(version, "image", pad_ids, pad_img)
        store.set_embeddings(version, "text", pad_ids, pad_txt)
        store.set_embeddings(version, "fused", pad_ids, fuse(pad_img, pad_txt))
    print(f"padded the store to {len(store)} cases in {time.perf_counter() - t:.1f} s")
    store.close()
    rss0 = rss_mb()
    t = time.perf_counter()
    overrides = {"m": args.m, "ef_construction": args.ef_construction, "ef_search": args.ef_search}
    config = IndexConfig(**{k: v for k, v in overrides.items() if v is not None})
    engine = SearchEngine(archive, encoder=encoder, config=config)
    build_s = time.perf_counter() - t
    rss1 = rss_mb()
    n = len(engine.index)
    if "scale" in sections:
        t = time.perf_counter()
        SearchEngine(archive, encoder=encoder, config=config)  # second open: loads the saved graphs
        load_s = time.perf_counter() - t
        print(
            f"engine open at {n} cases: {build_s:.1f} s (build 3 graphs), {load_s:.1f} s (load saved graphs)"
        )
        print(
            f"memory per case: {engine.index.memory_bytes() / n:.0f} B (vectors + 3 graphs), "
            f"process RSS growth {(rss1 - rss0) * 2**20 / n:.0f} B/case"
        )
        latencies, search_only = [], []
        for i, (paths, mask_path, notes) in enumerate(queries):
            t = time.perf_counter()
            study = read_study(paths)
            mask = read_mask(mask_path, study.reference_image)
            result = engine.search(study=study, mask=mask, text=notes, k=10, text_weight=0.3)
            latencies.append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.search_vectors(result.image_vector, result.text_vector, k=10, text_weight=0.3)
            search_only.append(time.perf_counter() - t)
            assert len(result.hits) == 10, i
        print(
            f"end-to-end query at {n} cases (read + ROI + encode image and notes + search + hits): "
            f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms; "
            f"search part p50 {percentile(search_only, 50) * 1000:.1f} ms"
        )

    if "hybrid" in sections:
        hybrid_latency(engine, queries, encoder, percentile)

    # 4. QPS: hnswlib vs faiss HNSW vs exact numpy on the same fused vectors -------------------------
    if "qps" not in sections:
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        return
    vectors = np.ascontiguousarray(engine.index.fused[[engine.index.rows[i] for i in engine.index.ids()]])
    nq = args.qps_queries
    picks = rng.integers(0, len(q_img), nq)
    # fresh query embeddings, jittered so that the QPS queries differ
    qi_all = q_img[picks] + rng.standard_normal((nq, dim)).astype(np.float32) * 0.05 / math.sqrt(dim)
    qt_all = q_txt[picks] + rng.standard_normal((nq, dim)).astype(np.float32) * 0.05 / math.sqrt(dim)
    qv = np.stack([engine.index.query_vector(a, b, 0.3)[1] for a, b in zip(qi_all, qt_all, strict=True)])
    k = 10

    def run(fn) -> tuple[float, list]:
        fn(qv[0])
        t = time.perf_counter()
        out = [fn(q) for q in qv]
        return nq / (time.perf_counter() - t), out

    def exact(q):
        s = vectors @ q
        top = np.argpartition(-s, k)[:k]
        return list(top[np.argsort(-s[top])])

    graph = engine.index.graphs["fused"]
    cfg = engine.index.config
    graph.set_ef(cfg.ef_search)
    graph.set_num_threads(1)
    label_to_pos = {lbl: p for p, lbl in enumerate(engine.index.rows[i] for i in engine.index.ids())}

    def hnsw(q):
        labels, _ = graph.knn_query(q[None], k=k)
        return [label_to_pos[int(x)] for x in labels[0]]

    faiss_build, fx = 0.0, None
    if not args.no_faiss:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        t = time.perf_counter()
        fx = faiss.IndexHNSWFlat(2 * dim, cfg.m, faiss.METRIC_INNER_PRODUCT)
        fx.hnsw.efConstruction = cfg.ef_construction
        fx.add(vectors)
        fx.hnsw.efSearch = cfg.ef_search
        faiss_build = time.perf_counter() - t

    def faiss_search(q):
        _, labels = fx.search(q[None], k)
        return list(labels[0])

    qps_exact, truth = run(exact)
    qps_hnsw, found_h = run(hnsw)
    qps_faiss, found_f = run(faiss_search) if fx is not None else (0.0, truth)
    kth = [float(vectors[t[-1]] @ q) for t, q in zip(truth, qv, strict=True)]
    s_h = [[float(vectors[i] @ q) for i in f] for f, q in zip(found_h, qv, strict=True)]
    s_f = [[float(vectors[i] @ q) for i in f] for f, q in zip(found_f, qv, strict=True)]
    # the engine's path: over-fetch from hnswlib, then exact rescoring
    pos_of = {cid: p for p, cid in enumerate(engine.index.ids())}
    engine_found = []
    t = time.perf_counter()
    for qi, qt in zip(qi_all, qt_all, strict=True):
        engine_found.append([pos_of[h.case_id] for h in engine.index.search(qi, qt, text_weight=0.3, k=k)])
    qps_engine = nq / (time.perf_counter() - t)
    print(
        f"QPS at {n} fused vectors ({2 * dim}-d), one query at a time, M={cfg.m} efC={cfg.ef_construction} ef={cfg.ef_search}:"
    )
    print(f"  exact numpy  {qps_exact:8.0f} QPS")
    print(
        f"  hnswlib      {qps_hnsw:8.0f} QPS  recall@10 {recall_at(found_h, truth):.3f} (score recall {score_recall(s_h, kth):.3f})"
    )
    if fx is not None:
        print(
            f"  faiss HNSW   {qps_faiss:8.0f} QPS  recall@10 {recall_at(found_f, truth):.3f} (score recall "
            f"{score_recall(s_f, kth):.3f}), build {faiss_build:.1f} s"
        )
    print(
        f"  engine (hnswlib over-fetch {cfg.overfetch}x + exact rescoring) {qps_engine:.0f} QPS  "
        f"recall@10 {recall_at(engine_found, truth):.3f}"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
