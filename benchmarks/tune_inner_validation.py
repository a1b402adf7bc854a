"""Inner-validation tuning run (docs/training.md, "Tuning log"): train on the index side of one evaluation
fold only, with a 15 % inner validation split of it, and print the selection as one JSON line (the per-epoch
history goes to stderr). The fold's queries are never used.

    python benchmarks/tune_inner_validation.py --dataset mmotu --data DATA/mmotu-otu2d-train --fold 0 \\
        --epochs 60 --options '{"refit_head": false}' [--config '{"stem_stride": 2}'] [--seed 1] [--save DIR]

``--dataset archive --data ARCHIVE`` reads an archive folder at grid 32x32x16 (as the synthetic evaluation);
``adrenal`` trains on its train split (its test split is the evaluation's queries). The inner validation split
is drawn with the seed, so runs with different seeds also differ in their split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch
from SimilarCaseRetrievalLib.evaluation.methods import MethodOptions
from SimilarCaseRetrievalLib.evaluation.ours import _config_for
from SimilarCaseRetrievalLib.training import train_model


def load_index_side(dataset: str, data: str, fold: int):
    """The index side of evaluation fold ``fold``, as `similar-cases evaluate` makes it."""
    from SimilarCaseRetrievalLib.evaluation.datasets import load_dataset
    from SimilarCaseRetrievalLib.evaluation.runner import _splits

    if dataset == "archive":
        from SimilarCaseRetrievalLib.evaluation.datasets.archive import load_archive_collection

        index, queries = load_archive_collection(data, grid=(32, 32, 16), progress=False), None
    else:
        index, queries = load_dataset(dataset, data, **({} if dataset == "adrenal" else {"progress": False}))
    if queries is None:
        holdout = 0.25 if dataset == "lidc" else None
        index, _ = list(_splits(index, None, 5, 0, holdout))[fold]
    return index


def nested_parts(dataset: str, data: str, fold: int):
    """(config, all cases, training part, held-out part) of the nested checks: inside the index side of
    evaluation fold ``fold``, 15 % (seed 0) held out as queries and never trained on."""
    from SimilarCaseRetrievalLib.training.data import as_training_data, split_validation

    index = load_index_side(dataset, data, fold)
    config = _config_for(index, MethodOptions())
    everything = as_training_data(index, config)
    tr, held_out = split_validation(everything, 0.15, 0)
    return config, everything, everything.subset(tr), everything.subset(held_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mmotu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", default="60")
    ap.add_argument("--options", default="{}", help="train_model options (JSON)")
    ap.add_argument("--config", default="{}", help="ModelConfig overrides (JSON)")
    ap.add_argument("--fold", type=int, default=0, help="evaluation fold whose index side is used")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the trained model folder here")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    index = load_index_side(a.dataset, a.data, a.fold)
    config = dataclasses.replace(_config_for(index, MethodOptions()), **json.loads(a.config))
    start = time.time()
    encoder = train_model(
        index,
        config,
        epochs=a.epochs,
        seed=a.seed,
        val_fraction=0.15,
        progress=False,
        options=json.loads(a.options),
    )
    if a.save:
        encoder.save(a.save)
    m = encoder.config.metrics
    keep = ("epoch", "prior_weight", "label_accuracy")
    history = [{k: v for k, v in h.items() if k.startswith("map") or k in keep} for h in m["history"]]
    print(
        json.dumps(
            {
                "tag": a.tag,
                "epochs": a.epochs,
                "seed": a.seed,
                "options": a.options,
                "config": a.config,
                "selection": m["selection"],
                "final": m["final"],
                "seconds": round(time.time() - start),
                "last": history[-1],
                "best_w0": max((h.get("map@10_image_w0") or 0) for h in history),
            }
        )
    )
    print(json.dumps(history), file=sys.stderr)


if __name__ == "__main__":
    main()
