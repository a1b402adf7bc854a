"""A/B of training recipes on one fixed cross-validation fold of an archive (same split, seed and epochs).

    python benchmarks/ab_training_recipe.py ARCHIVE --epochs 40 \\
        --recipe original='{"supcon_weight": 0, "instance_weight": 1}' --recipe default='{}'

Prints validation mAP@10 (relevance = same diagnosis) of image, text (query = notes) and fused (0.3 text)
retrieval of the fold's queries against its index cases, and the training wall time of each recipe.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive")
    parser.add_argument("--grid", default="32,32,16")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--epochs", default="40")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", action="append", default=[], help="NAME=JSON options for train_model")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from SimilarCaseRetrievalLib.encoders import fuse_embeddings
    from SimilarCaseRetrievalLib.evaluation.datasets.archive import load_archive_collection
    from SimilarCaseRetrievalLib.evaluation.ours import _config_for
    from SimilarCaseRetrievalLib.evaluation.splits import grouped_folds
    from SimilarCaseRetrievalLib.training import map_at_k, train_model

    grid = tuple(int(v) for v in args.grid.split(","))
    col = load_archive_collection(args.archive, grid=grid, sequences=None, query_text="notes")
    fold = grouped_folds(col.groups, args.cv, args.seed)[args.fold]
    index, queries = col.subset(np.setdiff1d(np.arange(len(col)), fold)), col.subset(fold)
    recipes = dict(r.split("=", 1) for r in args.recipe) or {"default": "{}"}
    cache: dict = {}
    print(
        f"fold {args.fold + 1}/{args.cv}: {len(index)} index cases, {len(queries)} queries, epochs {args.epochs}"
    )
    for name, text in recipes.items():
        start = time.perf_counter()
        encoder = train_model(
            index,
            _config_for(index, None),
            epochs=args.epochs,
            seed=args.seed,
            progress=False,
            options=json.loads(text),
            sentence_cache=cache,
        )
        seconds = time.perf_counter() - start
        qi, gi = encoder.encode_rois(queries.rois), encoder.encode_rois(index.rois)
        qt, gt = encoder.encode_texts(list(queries.query_texts)), encoder.encode_texts(list(index.texts))
        kw = dict(query_ids=list(queries.ids), gallery_ids=list(index.ids), k=10)
        ql, gl = list(queries.labels), list(index.labels)
        res = {
            "image": map_at_k(qi, ql, gi, gl, **kw),
            "text": map_at_k(qt, ql, gt, gl, **kw),
            "fused": map_at_k(fuse_embeddings(qi, qt, 0.3), ql, fuse_embeddings(gi, gt, 0.3), gl, **kw),
        }
        print(name, " ".join(f"{k} {v:.3f}" for k, v in res.items()), f"({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
