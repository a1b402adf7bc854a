"""Losses: NT-Xent (stage 0), instance loss with a classifier shared by both branches (stage 1), the
bidirectional hinge ranking loss with hardest negatives (stage 2, after Zheng et al. 2020 / VSE++)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR loss between two views (rows L2-normalised): each view's positive is its twin."""
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


class InstanceClassifier(nn.Module):
    """One class per training case; a cosine classifier SHARED by the image and text branches."""

    def __init__(self, n_cases: int, embed_dim: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_cases, embed_dim) * 0.01)
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).t()


def hardest_negative_hinge(sim: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float):
    """mean_i max(0, margin - sim[i, pos_i] + max_{j in negatives of i} sim[i, j]) over rows with both.

    ``positive``: (B, B) bool, the positives of each row (the hardest = least similar is used);
    ``negative``: (B, B) bool, the candidate negatives of each row.
    """
    big = torch.finfo(sim.dtype).max / 4
    pos = torch.where(positive, sim, torch.full_like(sim, big)).amin(dim=1)
    neg = torch.where(negative, sim, torch.full_like(sim, -big)).amax(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not valid.any():
        return sim.new_zeros(())
    return F.relu(margin - pos[valid] + neg[valid]).mean()


def ranking_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    has_text: torch.Tensor,
    labels: torch.Tensor,
    case_index: torch.Tensor,
    margin: float = 0.2,
) -> dict[str, torch.Tensor]:
    """Bidirectional image<->text hinge (positive = the same case's text) plus image->image (positive = a case
    with the same diagnosis, negatives = other diagnoses), each with the hardest negative in the batch.
    Rows (L2-normalised) without text only enter the image->image term."""
    same_case = case_index[:, None] == case_index[None, :]
    both = has_text[:, None] & has_text[None, :]
    s_it = img @ txt.t()
    losses = {
        "i2t": hardest_negative_hinge(s_it, same_case & both, ~same_case & both, margin),
        "t2i": hardest_negative_hinge(s_it.t(), same_case & both, ~same_case & both, margin),
    }
    known = labels >= 0
    same_label = (labels[:, None] == labels[None, :]) & known[:, None] & known[None, :]
    other = ~same_case
    s_ii = img @ img.t()
    diff_label = (labels[:, None] != labels[None, :]) & known[:, None] & known[None, :]
    losses["i2i"] = hardest_negative_hinge(s_ii, same_label & other, diff_label, margin)
    return losses


def supervised_contrastive(
    z: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    terms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on L2-normalised rows: every other row with the
    same diagnosis is a positive, all other rows are the denominator. With ``terms`` (multi-hot, (B, T))
    each positive is weighted by 1 + the Jaccard overlap of the two term sets (graded similarity: cases
    sharing more semantic terms are pulled closer). Rows with an unknown label (< 0) or no positive are
    skipped; returns 0 when no row has a positive."""
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    known = labels >= 0
    positive = (labels[:, None] == labels[None, :]) & known[:, None] & known[None, :] & ~eye
    valid = positive.any(dim=1)
    if not valid.any():
        return z.new_zeros(())
    logits = (z @ z.t() / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    weight = positive.to(z.dtype)
    if terms is not None:
        t = terms.to(z.dtype)
        inter = t @ t.t()
        union = t.sum(1)[:, None] + t.sum(1)[None, :] - inter
        weight = weight * (1 + torch.where(union > 0, inter / union.clamp_min(1e-6), torch.zeros_like(inter)))
    log_prob = log_prob.masked_fill(eye, 0.0)
    per_row = -(weight * log_prob).sum(1) / weight.sum(1).clamp_min(1e-6)
    return per_row[valid].mean()
