"""Text encoder: fp32 vs int8 dynamic quantisation (speed, embedding drift, batch dependence, retrieval).

Usage: python benchmarks/bench_text_int8.py ARCHIVE [--n 64] [--iu-xray DIR]
1. On the archive's own case texts (notes + report), 1 torch thread: ms/text for fp32 and int8 at batch 1 and
   batch 8, cosine between fp32 and int8 sentence embeddings, and cosine of int8 embeddings made one text per
   pass vs in batches of 8 (int8 activations are quantised per forward pass).
2. With --iu-xray: plain all-MiniLM-L6-v2 text retrieval on IU chest X-ray reports (R2Gen train split indexed,
   test split as queries, relevance = shared problem tags), fp32 vs int8: does quantisation itself cost quality?
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from SimilarCaseRetrievalLib.encoders.text import embed_sentences, load_sentence_model
from SimilarCaseRetrievalLib.store import CaseStore


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def timed_encode(model, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    model.encode(texts[:8], batch_size=batch)  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch, normalize_embeddings=True)
    return vectors, (time.perf_counter() - start) / len(texts) * 1000.0


def speed_and_drift(texts: list[str]) -> None:
    models = {q: load_sentence_model("default", quantization=q) for q in ("none", "int8")}
    vectors = {}
    for quant, model in models.items():
        for batch in (1, 8):
            vectors[quant, batch], ms = timed_encode(model, texts, batch)
            print(f"{quant:>4} batch {batch}: {ms:.1f} ms/text")
    drift = (vectors["none", 1] * vectors["int8", 1]).sum(axis=1)
    print(f"cosine(fp32, int8), batch 1: min {drift.min():.4f}, mean {drift.mean():.4f}")
    batch_dep = (vectors["int8", 1] * vectors["int8", 8]).sum(axis=1)
    print(f"cosine(int8 batch 1, int8 batch 8): min {batch_dep.min():.4f}, mean {batch_dep.mean():.4f}")
    fp32_dep = (vectors["none", 1] * vectors["none", 8]).sum(axis=1)
    print(f"cosine(fp32 batch 1, fp32 batch 8): min {fp32_dep.min():.6f}")


def iu_xray_retrieval(folder: str) -> None:
    from SimilarCaseRetrievalLib.evaluation.datasets.iu_xray import load_iu_xray
    from SimilarCaseRetrievalLib.evaluation.metrics import evaluate_scores

    index, queries = load_iu_xray(folder)
    print(f"IU X-ray: {len(index)} indexed reports, {len(queries)} queries")
    for quant in ("none", "int8"):
        model = load_sentence_model("default", quantization=quant)
        start = time.perf_counter()
        x = unit(embed_sentences(model, list(index.texts)))
        q = unit(embed_sentences(model, list(queries.query_texts)))
        seconds = time.perf_counter() - start
        result, _ = evaluate_scores(
            q @ x.T,
            queries.ids,
            queries.labels,
            queries.terms,
            index.ids,
            index.labels,
            index.terms,
            relevance="terms",
        )
        means = result.mean()
        summary = ", ".join(f"{m} {means[m]:.3f}" for m in ("map@10", "precision@10", "ndcg@10"))
        print(f"{quant:>4}: {summary} ({seconds:.0f} s to embed)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--n", type=int, default=64, help="number of case texts")
    parser.add_argument("--iu-xray", help="the iu-xray-reports folder of the shared data")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    texts = [case.text for case in CaseStore(args.archive, create=False).list_cases()][: args.n]
    print(f"{len(texts)} case texts from {args.archive}")
    speed_and_drift(texts)
    if args.iu_xray:
        iu_xray_retrieval(args.iu_xray)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
