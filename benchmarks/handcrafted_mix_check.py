"""Would a learned mix with the handcrafted features help (docs/training.md, tuning log, third round)?

On the inner validation split (seed 0) of one evaluation fold's index side, with a model trained there with
seed 0 (`tune_inner_validation.py --save M`; test folds never used): the handcrafted features alone, their
concatenation with our embedding, and class-balanced logistic regressions fitted on the training part (on our
CNN features, the handcrafted features, both) used as the diagnosis prior; and the classifier baseline
trained on the same training part (30 epochs).

    python benchmarks/handcrafted_mix_check.py --dataset mmotu --data DATA/mmotu-otu2d-train --fold 0 --model M
"""

from __future__ import annotations

import argparse

import numpy as np
from SimilarCaseRetrievalLib.encoders import CaseEncoder
from SimilarCaseRetrievalLib.encoders.model import softmax, with_label_prior
from SimilarCaseRetrievalLib.evaluation.classifier import train_classifier
from SimilarCaseRetrievalLib.evaluation.features import FeatureScaler, handcrafted_features
from SimilarCaseRetrievalLib.training.data import as_training_data, split_validation
from SimilarCaseRetrievalLib.training.metrics import class_mean, per_query_scores
from sklearn.linear_model import LogisticRegression
from tune_inner_validation import load_index_side


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mmotu")
    ap.add_argument("--data", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    encoder = CaseEncoder.load(a.model)
    data = as_training_data(load_index_side(a.dataset, a.data, a.fold), encoder.config)
    tr, va = split_validation(data, 0.15, 0)
    classes = encoder.config.labels
    labels = np.asarray(data.labels, dtype=object)
    qids = [data.ids[i] for i in va]

    def score(name: str, q: np.ndarray, g: np.ndarray) -> None:
        labs, aps, p1 = per_query_scores(q[va], labels[va], g, labels, 10, qids, data.ids)
        print(
            f"{name:40s} mAP@10 {aps.mean():.3f} (class mean {class_mean(labs, aps):.3f}) "
            f"P@1 {p1.mean():.3f} (class mean {class_mean(labs, p1):.3f})"
        )

    def accuracy(p: np.ndarray) -> float:
        return float(np.mean(np.asarray(classes, dtype=object)[p[va].argmax(1)] == labels[va]))

    raw, layout = handcrafted_features(data.rois, progress=False)
    hand = FeatureScaler(layout).fit(raw[tr]).transform(raw)
    out = encoder._image_outputs(data.rois, 64)
    emb, feats, p_head = out["embedding"], out["features"], softmax(out["label_logits"])
    recorded = encoder.label_probs_for(p_head, data.labels)  # archive side: the recorded diagnosis, one-hot
    print(f"diagnosis head accuracy {accuracy(p_head):.3f}")
    score("handcrafted", hand, hand)
    score("embedding (w 0)", emb, emb)
    score(
        "embedding + head prior (w 0.97)",
        with_label_prior(emb, p_head, 0.97),
        with_label_prior(emb, recorded, 0.97),
    )
    for share in (0.3, 0.5):
        mix = _unit(np.concatenate([np.sqrt(1 - share) * emb, np.sqrt(share) * hand], 1))
        score(f"embedding + handcrafted ({share:g})", mix, mix)

    def zscore(x: np.ndarray) -> np.ndarray:
        return (x - x[tr].mean(0)) / (x[tr].std(0) + 1e-6)

    inputs = {"CNN features": zscore(feats), "handcrafted": zscore(raw)}
    inputs["CNN + handcrafted"] = np.concatenate(list(inputs.values()), 1)
    for name, x in inputs.items():
        fit = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced").fit(x[tr], labels[tr])
        p = fit.predict_proba(x)[:, [list(fit.classes_).index(c) for c in classes]]
        print(f"logistic regression on {name}: accuracy {accuracy(p):.3f}")
        score(
            "  embedding + its prior (w 0.97)",
            with_label_prior(emb, p, 0.97),
            with_label_prior(emb, recorded, 0.97),
        )
    baseline = train_classifier(data.rois[tr], list(labels[tr]), epochs=30, progress=False)
    _, p_clf = baseline.predict(data.rois)
    print(
        f"classifier baseline (30 epochs on the training part): accuracy {accuracy(p_clf[:, [baseline.classes.index(c) for c in classes]]):.3f}"
    )


if __name__ == "__main__":
    main()
