"""Does an ensemble of networks trained with successive seeds search better than one (docs/training.md,
tuning log, fourth round)?

Inside the index side of one evaluation fold, an inner part (15 %, seed 0) is held out as queries and never
trained on; the members (seeds 0..K-1, each with its own validation split) are trained on the rest by
`training.ensemble.train_ensemble` itself, with ``--models`` as its checkpoint folder: each finished member
stays there (``member-k/model``) and a second run reads it back instead of training it again. The ensembles
are `training.ensemble.combine` of the first 2..K members. Test folds are never used.

    python benchmarks/nested_ensemble.py --dataset mmotu --data DATA/mmotu-otu2d-train --fold 0 \\
        --members 4 --models WORK/ens-mmotu-f0

Prints, per member and for the ensembles of the first 2..K members, [mAP@10, class-mean mAP@10, P@1,
diagnosis accuracy] of image search on the held-out part.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from SimilarCaseRetrievalLib.encoders import CaseEncoder
from SimilarCaseRetrievalLib.training.ensemble import combine, train_ensemble
from SimilarCaseRetrievalLib.training.metrics import class_mean, per_query_scores
from tune_inner_validation import nested_parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mmotu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--models", required=True, help="checkpoint folder of the members (reused when present)")
    ap.add_argument("--epochs", default="60")
    a = ap.parse_args()
    torch.set_num_threads(1)
    config, everything, train, held = nested_parts(a.dataset, a.data, a.fold)
    kept = dict(members=a.members, checkpoint_dir=a.models, resume=a.models)
    train_ensemble(train, config, **kept, epochs=a.epochs, val_fraction=0.15, progress=False)
    members = [CaseEncoder.load(Path(a.models) / f"member-{k}" / "model") for k in range(a.members)]

    def scores(encoder: CaseEncoder) -> list[float]:
        q = encoder.predict_rois(held.rois)
        g = encoder.encode_rois(everything.rois, labels=everything.labels)
        labels, aps, p1 = per_query_scores(
            q.embeddings, held.labels, g, everything.labels, 10, held.ids, everything.ids
        )
        predicted = np.asarray(encoder.labels, dtype=object)[q.label_probs.argmax(axis=1)]
        accuracy = float(np.mean(predicted == np.asarray(held.labels, dtype=object)))
        return [round(v, 4) for v in (float(aps.mean()), class_mean(labels, aps), float(p1.mean()), accuracy)]

    result = {"fold": a.fold, "held_out": len(held)}
    for seed, member in enumerate(members):
        result[f"seed {seed} (w {member.config.label_prior_weight:g})"] = scores(member)
    for k in range(2, len(members) + 1):
        ensemble = combine(members[:k], 0, k, 0.0)
        result[f"ensemble of {k} (w {ensemble.config.label_prior_weight:g})"] = scores(ensemble)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
