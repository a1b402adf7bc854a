"""Can the clinical notes move the diagnosis decision of fused search (docs/training.md, tuning log, third
round)? On the inner validation split of one synthetic fold's index side (a model trained there by
`tune_inner_validation.py --dataset archive --save M`; test folds never used): a class-balanced logistic
regression on the training part's notes (frozen sentence embeddings) gives p_notes; the query's diagnosis
distribution becomes p_image * p_notes^beta (a product of experts), and image and fused search are scored.

    python benchmarks/notes_prior_check.py --archive SYNTHETIC --fold 0 --model M
"""

from __future__ import annotations

import argparse

import numpy as np
from SimilarCaseRetrievalLib.encoders import CaseEncoder, fuse_embeddings
from SimilarCaseRetrievalLib.encoders.model import softmax, with_label_prior
from SimilarCaseRetrievalLib.training.data import as_training_data, split_validation
from SimilarCaseRetrievalLib.training.metrics import per_query_scores
from sklearn.linear_model import LogisticRegression
from tune_inner_validation import load_index_side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--model", required=True, help="trained with seed 0 on this fold (its split is seed 0's)")
    a = ap.parse_args()
    encoder = CaseEncoder.load(a.model)
    index = load_index_side("archive", a.archive, a.fold)
    data = as_training_data(index, encoder.config)
    tr, va = split_validation(data, 0.15, 0)
    classes = encoder.config.labels
    labels = np.asarray(data.labels, dtype=object)
    out = encoder._image_outputs(data.rois, 32)
    emb, p_image = out["embedding"], softmax(out["label_logits"])
    recorded = encoder.label_probs_for(p_image, data.labels)  # archive side: the recorded diagnosis, one-hot
    notes = np.asarray(encoder.sentence_embeddings(list(data.query_texts)), np.float32)
    reports = np.asarray(encoder.sentence_embeddings(list(data.texts)), np.float32)
    t_query, t_gallery = encoder.project_texts(notes), encoder.project_texts(reports)
    fit = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced").fit(notes[tr], labels[tr])
    p_notes = fit.predict_proba(notes)[:, [list(fit.classes_).index(c) for c in classes]]

    def accuracy(p: np.ndarray) -> float:
        return float(np.mean(np.asarray(classes, dtype=object)[p[va].argmax(1)] == labels[va]))

    def pad(t: np.ndarray, like: np.ndarray) -> np.ndarray:
        return np.concatenate([t, np.zeros((len(t), like.shape[1] - t.shape[1]), np.float32)], 1)

    print(
        f"diagnosis accuracy on validation: image head {accuracy(p_image):.3f}, notes {accuracy(p_notes):.3f}"
    )
    for w in sorted({encoder.config.label_prior_weight, 0.1, 0.5, 0.9}):
        for beta in (0.0, 0.5, 1.0, 2.0):
            p = p_image * p_notes**beta
            p /= p.sum(axis=1, keepdims=True)
            vq, vg = with_label_prior(emb, p, w), with_label_prior(emb, recorded, w)
            fq, fg = fuse_embeddings(vq, pad(t_query, vq)), fuse_embeddings(vg, pad(t_gallery, vg))
            row = []
            for q, g in ((vq, vg), (fq, fg)):
                qids = [data.ids[i] for i in va]
                _, aps, p1 = per_query_scores(q[va], labels[va], g, labels, 10, qids, data.ids)
                row.append(f"{aps.mean():.3f} / {p1.mean():.3f}")
            print(
                f"w {w:g} beta {beta:g}: accuracy {accuracy(p):.3f}; image mAP@10 / P@1 {row[0]}; fused {row[1]}"
            )


if __name__ == "__main__":
    main()
