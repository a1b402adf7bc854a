"""Choose the hybrid text fusion on an inner split of IU X-ray's train reports (never the test split).

Embeds the R2Gen train reports with a model (projected and backbone), holds out 20 % of them as inner queries
(seed 0) against the other 80 %, and prints mAP@10 of: the projection, the backbone, FTS5 BM25 (the case
store's index and query terms), and the fusions `normalised` / `rrf` x BM25 weight x backbone weight, through
the product's `lexical.fuse_scores`. Numbers for docs/evaluation.md (section 5).

    python benchmarks/tune_hybrid.py DATA/iu-xray-reports [--model Resources/Model]
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="the iu-xray-reports folder")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from SimilarCaseRetrievalLib.evaluation.datasets.iu_xray import load_iu_xray
    from SimilarCaseRetrievalLib.evaluation.metrics import evaluate_scores
    from SimilarCaseRetrievalLib.lexical import HybridConfig, blend_backbone, fuse_scores
    from SimilarCaseRetrievalLib.lexical.matrix import bm25_matrix
    from SimilarCaseRetrievalLib.search import load_encoder

    train, _ = load_iu_xray(args.data)  # the test split is not read further
    encoder = load_encoder(args.model)
    raw = np.asarray(encoder.sentence_embeddings(list(train.texts)), np.float32)
    proj = np.asarray(encoder.project_texts(raw), np.float32)
    back = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    perm = np.random.default_rng(0).permutation(len(train))
    q_idx, i_idx = np.sort(perm[: len(train) // 5]), np.sort(perm[len(train) // 5 :])
    queries, index = train.subset(q_idx), train.subset(i_idx)
    projected, backbone = proj[q_idx] @ proj[i_idx].T, back[q_idx] @ back[i_idx].T
    lexical = bm25_matrix(queries.texts, index.texts)

    def map10(scores) -> float:
        res, _ = evaluate_scores(
            scores,
            queries.ids,
            queries.labels,
            queries.terms,
            index.ids,
            index.labels,
            index.terms,
            k=10,
            relevance="terms",
        )
        return res.mean()["map@10"]

    print(
        f"inner split of IU train: {len(queries)} queries, {len(index)} index reports; model {encoder.version}"
    )
    print(
        f"projection {map10(projected):.3f}  backbone {map10(backbone):.3f}  FTS5 BM25 {map10(lexical):.3f}"
    )
    weights = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    print("backbone  method      " + "  ".join(f"l={w}" for w in weights))
    for beta in (0.0, 0.25, 0.5, 0.75, 1.0):
        dense = blend_backbone(projected, backbone, beta)
        for method in ("normalised", "rrf"):
            row = [
                map10(fuse_scores(None, dense, lexical, 1.0, HybridConfig(method=method, lexical_weight=w)))
                for w in weights
            ]
            print(f"{beta:<8}  {method:<10}  " + "  ".join(f"{v:.3f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
