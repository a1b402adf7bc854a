"""Classification-feature baseline (after Qayyum et al. 2017): a small CNN trained only to classify the
diagnosis; retrieval by cosine on its penultimate layer, re-ranked so that index cases of the query's
predicted class come first (index cases carry their recorded diagnosis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _build_net(in_channels: int, n_classes: int, flat: bool, width: int = 16):
    import torch.nn as nn

    conv, norm, pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)
        if flat
        else (
            nn.Conv3d,
            nn.BatchNorm3d,
            nn.AdaptiveAvgPool3d,
        )
    )
    maxpool = nn.MaxPool2d if flat else nn.MaxPool3d

    def block(i, o, stride=1):
        return nn.Sequential(conv(i, o, 3, stride=stride, padding=1), norm(o), nn.ReLU(inplace=True))

    # 3D volumes: a strided first convolution (the full-resolution one dominates the cost on CPU).
    trunk = nn.Sequential(
        block(in_channels, width, stride=1 if flat else 2),
        maxpool(2) if flat else nn.Identity(),
        block(width, 2 * width),
        maxpool(2),
        block(2 * width, 4 * width),
        pool(1),
        nn.Flatten(),
        nn.Linear(4 * width, 64),
        nn.ReLU(inplace=True),
    )
    head = nn.Linear(64, n_classes)
    return trunk, head


@dataclass
class ClassifierBaseline:
    """Trained trunk + head; `features` returns L2-normalised penultimate activations."""

    trunk: object
    head: object
    classes: list[str]
    flat: bool

    def _tensor(self, rois: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(rois, dtype=np.float32))
        return x[:, :, 0] if self.flat else x

    def predict(self, rois: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, 64) L2-normalised, class probabilities (N, L))."""
        import torch

        self.trunk.eval()
        self.head.eval()
        feats, probs = [], []
        with torch.no_grad():
            for s in range(0, len(rois), batch):
                f = self.trunk(self._tensor(rois[s : s + batch]))
                probs.append(torch.softmax(self.head(f), dim=1).numpy())
                feats.append(torch.nn.functional.normalize(f, dim=1).numpy())
        return np.concatenate(feats), np.concatenate(probs)


def train_classifier(
    rois: np.ndarray,
    labels: Sequence[str],
    *,
    epochs: int = 15,
    batch: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> ClassifierBaseline:
    """Cross-entropy training (class-balanced weights, random flips) on the index cases only."""
    import torch
    import torch.nn as nn
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(lab) for lab in labels])
    flat = rois.shape[2] == 1
    trunk, head = _build_net(rois.shape[1], len(classes), flat)
    model = ClassifierBaseline(trunk, head, classes, flat)
    x_all = model._tensor(rois)
    counts = torch.bincount(y, minlength=len(classes)).float()
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / counts.clamp(min=1)) / len(classes))
    params = list(trunk.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, (len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    trunk.train()
    head.train()
    bar = tqdm(range(epochs), desc="classifier baseline", disable=not progress, leave=False)
    for _ in bar:
        perm = torch.randperm(len(y), generator=gen)
        for s in range(0, len(y), batch):
            idx = perm[s : s + batch]
            if len(idx) < 2:
                continue
            xb = x_all[idx]
            for dim in range(2, xb.ndim):
                if torch.rand(1, generator=gen).item() < 0.5:
                    xb = xb.flip(dim)
            loss = loss_fn(head(trunk(xb)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=float(loss.detach()))
    return model


def classifier_scores(
    model: ClassifierBaseline, query_rois: np.ndarray, index_rois: np.ndarray, index_labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (Q, N), query features, index features): cosine + 2 for index cases of the predicted class."""
    qf, qp = model.predict(query_rois)
    xf, _ = model.predict(index_rois)
    pred = np.asarray(model.classes, dtype=object)[qp.argmax(axis=1)]
    same = pred[:, None] == np.asarray(index_labels, dtype=object)[None, :]
    return qf @ xf.T + 2.0 * same, qf, xf
