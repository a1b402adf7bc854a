"""Ensembles of independently trained networks behind the single-network interface.

An ensemble of K members searches with the concatenation of the members' L2-normalised embeddings divided
by sqrt(K): the dot product of two such vectors is the mean of the members' cosines. Diagnosis and term
probabilities are the members' means (returned as logits, so the single-network code reads them unchanged).
On small real data the networks of different seeds differ much (docs/training.md, tuning log): the mean
of several is steadier than any one of them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .image import ImageNet
from .text import TextProjection


def _mean_prob_logits(logits: Sequence[torch.Tensor], kind: str) -> torch.Tensor:
    """Logits whose softmax (``kind`` "softmax") or sigmoid ("sigmoid") is the mean of the members'."""
    if kind == "softmax":
        probs = torch.stack([F.softmax(x, dim=1) for x in logits]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-12))
    probs = torch.stack([torch.sigmoid(x) for x in logits]).mean(dim=0)
    return torch.logit(probs, eps=1e-6)


class ImageEnsemble(nn.Module):
    """K image networks; same outputs as `ImageNet` (embedding already unit length: see the module doc)."""

    def __init__(self, members: Sequence[ImageNet]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, rois: torch.Tensor) -> dict[str, torch.Tensor]:
        return combine_outputs([m(rois) for m in self.members])


def combine_outputs(outs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One output dict from the members' (`ImageNet` outputs): concatenated unit embeddings over sqrt(K),
    mean probabilities as logits, concatenated features."""
    scale = 1.0 / math.sqrt(len(outs))
    out = {
        "features": torch.cat([o["features"] for o in outs], dim=1),
        "embedding": torch.cat([F.normalize(o["embedding"], dim=1) for o in outs], dim=1) * scale,
    }
    if "label_logits" in outs[0]:
        out["label_logits"] = _mean_prob_logits([o["label_logits"] for o in outs], "softmax")
    if "term_logits" in outs[0]:
        out["term_logits"] = _mean_prob_logits([o["term_logits"] for o in outs], "sigmoid")
    return out


class TextEnsemble(nn.Module):
    """K text projections: the concatenation of their L2-normalised outputs over sqrt(K)."""

    def __init__(self, members: Sequence[TextProjection]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, sentences: torch.Tensor) -> torch.Tensor:
        scale = 1.0 / math.sqrt(len(self.members))
        return torch.cat([F.normalize(m(sentences), dim=1) for m in self.members], dim=1) * scale


def image_members(image: nn.Module) -> list[nn.Module]:
    """The single image networks of an image branch (itself when it is not an ensemble)."""
    return list(image.members) if isinstance(image, ImageEnsemble) else [image]
