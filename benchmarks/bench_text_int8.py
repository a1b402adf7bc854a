"""Text encoder: fp32 vs int8 dynamic quantisation (speed per text and drift of the sentence embeddings).

Usage: python benchmarks/bench_text_int8.py ARCHIVE [--n 64]
Measures on the archive's own case texts (notes + report), 1 torch thread, batch 8.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from SimilarCaseRetrievalLib.encoders.text import load_sentence_model
from SimilarCaseRetrievalLib.store import CaseStore


def timed_encode(model, texts: list[str]) -> tuple[np.ndarray, float]:
    model.encode(texts[:8], batch_size=8)  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=8, normalize_embeddings=True)
    return vectors, (time.perf_counter() - start) / len(texts) * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--n", type=int, default=64, help="number of case texts")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    texts = [case.text for case in CaseStore(args.archive, create=False).list_cases()][: args.n]
    model = load_sentence_model("default")
    fp32, fp32_ms = timed_encode(model, texts)
    int8_model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    int8, int8_ms = timed_encode(int8_model, texts)
    cosine = (fp32 * int8).sum(axis=1)
    print(
        f"{len(texts)} texts: fp32 {fp32_ms:.1f} ms/text, int8 {int8_ms:.1f} ms/text ({fp32_ms / int8_ms:.2f}x)"
    )
    print(f"cosine(fp32, int8) min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
