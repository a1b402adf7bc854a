"""Refit the diagnosis head after training: a class-balanced logistic regression on the frozen features.

The head trained jointly with the metric losses ends on a decaying learning rate while the features under it
still move; on real ultrasound (MMOTU, inner validation splits) a logistic regression fitted afterwards on the
same training cases' features predicts the diagnosis better (docs/training.md, tuning log round 3). The
z-scoring is folded into the head's weights, so the model file keeps its layout."""

from __future__ import annotations

import numpy as np
import torch

from ..encoders import CaseEncoder
from .data import TrainingData

# L2 strength (sklearn's C, on z-scored features) and the logit of a diagnosis without a training case
REFIT_C = 1.0
_NEVER = -1e4


def refit_label_head(encoder: CaseEncoder, train: TrainingData) -> bool:
    """Replace ``encoder``'s diagnosis head by a class-balanced L2 logistic regression on the image features
    (flip-averaged when the model averages flips, as at search time) of the labelled ``train`` cases.
    Returns False (head unchanged) with fewer than two labelled cases or diagnoses."""
    from sklearn.linear_model import LogisticRegression

    labels = list(encoder.config.labels)
    head = encoder.net.image.label_head
    rows = [i for i, lab in enumerate(train.labels) if lab in labels]
    if head is None or len(rows) < 2 or len({train.labels[i] for i in rows}) < 2:
        return False
    feats = encoder._image_outputs(train.rois[rows], 32)["features"].astype(np.float64)
    mean, std = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    y = np.asarray([labels.index(train.labels[i]) for i in rows])
    fit = LogisticRegression(C=REFIT_C, max_iter=5000, class_weight="balanced").fit((feats - mean) / std, y)
    coef = np.zeros((len(labels), feats.shape[1]))
    bias = np.full(len(labels), _NEVER)
    if len(fit.classes_) == 2:  # one logit z for the second class: softmax([0, z]) is the same model
        coef[fit.classes_[1]], bias[fit.classes_[1]] = fit.coef_[0], fit.intercept_[0]
        bias[fit.classes_[0]] = 0.0
    else:
        coef[fit.classes_], bias[fit.classes_] = fit.coef_, fit.intercept_
    weight = coef / std
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight).to(head.weight))
        head.bias.copy_(torch.from_numpy(bias - weight @ mean).to(head.bias))
    return True
