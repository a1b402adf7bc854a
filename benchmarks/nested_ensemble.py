"""Does an ensemble of networks trained with successive seeds search better than one (docs/training.md,
tuning log, fourth round)?

Inside the index side of one evaluation fold, an inner part (15 %, seed 0) is held out as queries and never
trained on; each member is trained on the rest with its own seed and validation split (as
`training.ensemble.train_ensemble` does), saved under ``--models``, and read back when it is already there
(so members can be trained by parallel runs). The ensemble is `training.ensemble.combine` of the members.
Test folds are never used.

    python benchmarks/nested_ensemble.py --dataset mmotu --data DATA/mmotu-otu2d-train --fold 0 \\
        --seeds 0,1,2,3 --models WORK/ens-mmotu-f0

Prints, per member and for the ensembles of the first 2..K members, [mAP@10, class-mean mAP@10, P@1,
diagnosis accuracy] of image search on the held-out part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from SimilarCaseRetrievalLib.encoders import CaseEncoder
from SimilarCaseRetrievalLib.training import train_model
from SimilarCaseRetrievalLib.training.ensemble import combine
from SimilarCaseRetrievalLib.training.metrics import class_mean, per_query_scores
from tune_inner_validation import nested_parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mmotu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--models", required=True, help="folder of the members (seed-S), reused when present")
    ap.add_argument("--epochs", default="60")
    ap.add_argument("--train-only", action="store_true", help="train the missing members and stop")
    a = ap.parse_args()
    torch.set_num_threads(1)
    config, everything, train, held = nested_parts(a.dataset, a.data, a.fold)
    seeds = [int(s) for s in a.seeds.split(",")]
    members = []
    for seed in seeds:
        folder = Path(a.models) / f"seed-{seed}"
        if (folder / "config.json").is_file():
            members.append(CaseEncoder.load(folder))
            continue
        vocab = {"labels": members[0].labels, "terms": members[0].terms} if members else {}
        member_config = dataclasses.replace(config, **vocab)
        member = train_model(
            train, member_config, epochs=a.epochs, seed=seed, val_fraction=0.15, progress=False
        )
        member.save(folder)
        members.append(member)
    if a.train_only:
        return

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
    for seed, member in zip(seeds, members, strict=True):
        result[f"seed {seed} (w {member.config.label_prior_weight:g})"] = scores(member)
    for k in range(2, len(members) + 1):
        ensemble = combine(members[:k], seeds[0], k, 0.0)
        result[f"ensemble of {k} (w {ensemble.config.label_prior_weight:g})"] = scores(ensemble)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
