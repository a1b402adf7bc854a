"""Cross-validated mAP@10 of our trained image encoder on real 2D ultrasound (MMOTU OTU_2D, 8 classes).

Per fold (stratified, seeded): train on the other folds (no text: images alone), then every held-out image
queries the training images (the archive); relevance = same class. The same run scores the untrained
(random-init) encoder as a floor. The model is not saved.

    python benchmarks/train_cv_mmotu.py /work/shared/data/mmotu-otu2d-train [--folds 5] [--epochs 4,12,8]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="the mmotu-otu2d-train folder (labels.csv, images, masks)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", default="4,12,8")
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N images only (quick runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the per-fold numbers here")
    args = parser.parse_args()

    import numpy as np
    import torch
    from SimilarCaseRetrievalLib.encoders import CaseEncoder, ModelConfig
    from SimilarCaseRetrievalLib.evaluation.datasets.mmotu import load_mmotu
    from SimilarCaseRetrievalLib.roi import RoiConfig
    from SimilarCaseRetrievalLib.training import TrainingData, map_at_k, train_model
    from sklearn.model_selection import StratifiedKFold

    torch.set_num_threads(args.threads)
    col = load_mmotu(args.data, grid=args.grid, limit=args.limit)
    data = TrainingData(
        ids=list(col.ids),
        rois=col.rois,
        labels=list(col.labels),
        terms=[[] for _ in col.ids],
        groups=list(col.groups),
        texts=[""] * len(col.ids),
    )
    print(f"MMOTU: {len(data)} images, ROI {col.rois.shape[1:]}, classes {sorted(set(data.labels))}")
    config = ModelConfig(
        name="scr-mmotu-cv", sequences=["image"], roi=RoiConfig(grid=(args.grid, args.grid, 1)), embed_dim=128
    )
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    results = []
    for k, (tr, te) in enumerate(folds.split(np.zeros(len(data)), data.labels)):
        train, test = data.subset(tr), data.subset(te)
        start = time.perf_counter()
        enc = train_model(train, config, epochs=args.epochs, seed=args.seed, progress=False)
        seconds = time.perf_counter() - start
        untrained = CaseEncoder.create(enc.config, seed=args.seed)
        row = {"fold": k, "n_train": len(train), "n_test": len(test), "train_s": round(seconds, 1)}
        for name, e in (("trained", enc), ("untrained", untrained)):
            q, g = e.encode_rois(test.rois), e.encode_rois(train.rois)
            row[f"map@10_{name}"] = round(map_at_k(q, test.labels, g, train.labels, k=10), 4)
        pred = enc.predict_rois(test.rois).label_probs.argmax(axis=1)
        row["label_head_accuracy"] = round(
            float(np.mean(np.array(enc.config.labels)[pred] == test.labels)), 4
        )
        results.append(row)
        print(json.dumps(row), flush=True)
    for key in ("map@10_trained", "map@10_untrained", "label_head_accuracy"):
        vals = np.array([r[key] for r in results])
        print(f"{key}: {vals.mean():.3f} ± {vals.std():.3f} over {len(vals)} folds")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "folds": results}, f, indent=1)


if __name__ == "__main__":
    main()
