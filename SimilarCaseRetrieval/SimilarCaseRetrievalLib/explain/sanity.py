"""Sanity checks of the similarity maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

- model randomisation: re-initialise the image branch's layers from the top (embedding layer first, then
  each convolutional stage down to the stem: the "cascading" test; all at once: the "full" test); a map that
  explains the model must change (low rank correlation with the trained model's map);
- data randomisation: the same network trained on shuffled diagnoses; its maps must differ from those of the
  network trained on the true diagnoses.
The similarity between two maps is Spearman's rank correlation over the ROI voxels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .maps import pair_maps

if TYPE_CHECKING:
    from torch import nn

    from ..encoders import CaseEncoder


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation between two maps (0 when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def image_layers(encoder: CaseEncoder) -> list[tuple[str, list[nn.Module]]]:
    """The image branch's embedding path as (name, modules) from the top: embedding layer, then the trunk's
    stages last to first (the term / diagnosis heads are not on the path of the similarity score). For an
    ensemble each entry holds the layer of every member."""
    from ..encoders.ensemble import image_members

    nets = image_members(encoder.net.image)
    layers: list[tuple[str, list]] = []
    if getattr(nets[0], "embed", None) is not None:
        layers.append(("embed", [net.embed for net in nets]))
    trunks = [list(net.trunk.children()) for net in nets if getattr(net, "trunk", None) is not None]
    for i in reversed(range(len(trunks[0]) if trunks else 0)):
        mods = [
            m
            for stages in trunks
            for m in stages[i].modules()
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))
        ]
        if mods:
            layers.append((f"trunk.{i}", mods))
    return layers


def randomised(encoder: CaseEncoder, n_layers: int | None = None, seed: int = 1) -> CaseEncoder:
    """A copy of ``encoder`` with its top ``n_layers`` (`image_layers`) re-initialised; None = all of them."""
    import torch

    from ..encoders import CaseEncoder

    net = copy.deepcopy(encoder.net)
    clone = CaseEncoder(copy.deepcopy(encoder.config), net)
    layers = image_layers(clone)
    torch.manual_seed(seed)
    for _, mods in layers[: len(layers) if n_layers is None else n_layers]:
        for m in mods:
            m.reset_parameters()
            norm = isinstance(m, torch.nn.GroupNorm | torch.nn.BatchNorm3d)
            if norm and m.weight is not None:  # reset = identity: draw instead
                with torch.no_grad():
                    m.weight.normal_(1.0, 0.5)
                    m.bias.normal_(0.0, 0.5)
    return clone


def cascading_correlations(
    encoder: CaseEncoder,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    method: str = "gradcam",
    seed: int = 1,
) -> list[tuple[str, float]]:
    """Mean rank correlation (query and hit maps, over ``pairs``) of the trained maps with the maps after
    re-initialising the top 1, 2, ... layers; the last row is the fully randomised model."""
    base = [pair_maps(encoder, q, h, method) for q, h in pairs]
    layers = image_layers(encoder)
    out = []
    for n in range(1, len(layers) + 1):
        rnd = randomised(encoder, n, seed)
        out.append(
            (
                f"up to {layers[n - 1][0]}",
                mean_map_correlation(base, [pair_maps(rnd, q, h, method) for q, h in pairs]),
            )
        )
    return out


def mean_map_correlation(a, b) -> float:
    """Mean Spearman correlation of the query and hit maps of two lists of `PairMaps`."""
    values = [rank_correlation(x.query, y.query) for x, y in zip(a, b, strict=True)]
    values += [rank_correlation(x.hit, y.hit) for x, y in zip(a, b, strict=True)]
    return float(np.mean(values)) if values else float("nan")


def fit_diagnosis(
    encoder: CaseEncoder,
    rois: np.ndarray,
    labels: Sequence[str],
    *,
    steps: int = 30,
    lr: float = 3e-3,
    temperature: float = 0.2,
    seed: int = 0,
) -> CaseEncoder:
    """A copy of ``encoder`` whose image branch is trained ``steps`` full-batch steps on ``labels`` (supervised
    contrastive loss on the embeddings: same label = positive). For the data-randomisation check."""
    import torch
    from torch.nn import functional as F

    from ..encoders import CaseEncoder

    torch.manual_seed(seed)
    clone = CaseEncoder(copy.deepcopy(encoder.config), copy.deepcopy(encoder.net))
    net = clone.net.image.train()
    x = torch.from_numpy(clone.check_rois(rois))
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(v) for v in labels])
    same = (y[:, None] == y[None, :]).float()
    eye = torch.eye(len(y))
    positives = same - eye
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        e = F.normalize(net(x)["embedding"], dim=1)
        logits = (e @ e.T / temperature) - 1e9 * eye
        log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        has = positives.sum(1) > 0
        loss = -((positives * log_p).sum(1)[has] / positives.sum(1)[has]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    clone.net.eval()
    return clone
