"""Does training again on all cases after selection help (docs/training.md, tuning log, third round)?

Inside the index side of one evaluation fold, an inner split (15 %, seed 0) is held out as queries and never
trained on; the model is trained on the rest with its own validation split for selection, either as the
default (A: the selected epoch of the run on the training part) or with ``full_fit`` (B: trained again on the
training part plus its validation split for the selected number of epochs). Test folds are never used.

    python benchmarks/nested_full_fit.py --dataset mmotu --data DATA/mmotu-otu2d-train --fold 0 --variant B

Prints one JSON line: per search mode [mAP@10, class-mean mAP@10, P@1, class-mean P@1] on the held-out part.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from SimilarCaseRetrievalLib.encoders import fuse_embeddings
from SimilarCaseRetrievalLib.training import train_model
from SimilarCaseRetrievalLib.training.metrics import class_mean, per_query_scores
from tune_inner_validation import nested_parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mmotu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--variant", choices=("A", "B"), required=True)
    ap.add_argument("--epochs", default="60")
    a = ap.parse_args()
    torch.set_num_threads(1)
    config, everything, train, held = nested_parts(a.dataset, a.data, a.fold)
    start = time.time()
    encoder = train_model(
        train,
        config,
        epochs=a.epochs,
        seed=0,
        val_fraction=0.15,
        progress=False,
        options={"full_fit": a.variant == "B"},
    )
    seconds = time.time() - start
    selection = encoder.config.metrics["selection"]
    result = {
        "variant": a.variant,
        "fold": a.fold,
        "seconds": round(seconds),
        "epoch": selection["epoch"],
        "w": encoder.config.label_prior_weight,
        "head": selection.get("head"),
    }
    vq = encoder.encode_rois(held.rois)
    vg = encoder.encode_rois(everything.rois, labels=everything.labels)

    def score(name: str, q: np.ndarray, g: np.ndarray) -> None:
        labels, aps, p1 = per_query_scores(q, held.labels, g, everything.labels, 10, held.ids, everything.ids)
        values = [float(aps.mean()), class_mean(labels, aps), float(p1.mean()), class_mean(labels, p1)]
        result[name] = [round(v, 4) for v in values]

    score("image", vq, vg)
    if any(held.query_texts):  # text vectors come in the image vectors' space (zero on the prior part)
        tq, tg = encoder.encode_texts(list(held.query_texts)), encoder.encode_texts(list(everything.texts))
        score("fused", fuse_embeddings(vq, tq), fuse_embeddings(vg, tg))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
