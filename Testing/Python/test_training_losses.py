"""Losses, metric and data helpers of the training package."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402
from SimilarCaseRetrievalLib.training import TrainingData, map_at_k, parse_epochs, split_validation  # noqa: E402
from SimilarCaseRetrievalLib.training.augment import augment  # noqa: E402
from SimilarCaseRetrievalLib.training.losses import (  # noqa: E402
    InstanceClassifier,
    hardest_negative_hinge,
    nt_xent,
    ranking_loss,
)


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def test_nt_xent_is_lower_for_matching_views():
    g = torch.Generator().manual_seed(0)
    z = unit(torch.randn(8, 16, generator=g))
    other = unit(torch.randn(8, 16, generator=g))
    assert nt_xent(z, z) < nt_xent(z, other)


def test_hinge_is_zero_when_the_positive_beats_every_negative_by_the_margin():
    sim = torch.tensor([[0.9, 0.5], [0.1, 0.8]])
    eye = torch.eye(2, dtype=torch.bool)
    assert float(hardest_negative_hinge(sim, eye, ~eye, margin=0.2)) == 0.0
    # row 0: 0.2 - 0.9 + 0.8 = 0.1 ; row 1: 0.2 - 0.8 + 0.1 < 0 -> 0 ; mean 0.05
    sim2 = torch.tensor([[0.9, 0.8], [0.1, 0.8]])
    assert float(hardest_negative_hinge(sim2, eye, ~eye, margin=0.2)) == pytest.approx(0.05)


def test_ranking_loss_skips_cases_without_text_and_rewards_alignment():
    g = torch.Generator().manual_seed(1)
    img = unit(torch.randn(6, 8, generator=g))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    idx = torch.arange(6)
    all_text = torch.ones(6, dtype=torch.bool)
    aligned = ranking_loss(img, img.clone(), all_text, labels, idx, margin=0.2)
    shuffled = ranking_loss(img, img[[1, 2, 3, 4, 5, 0]], all_text, labels, idx, margin=0.2)
    assert aligned["i2t"] < shuffled["i2t"] and aligned["t2i"] < shuffled["t2i"]
    no_text = ranking_loss(img, img, torch.zeros(6, dtype=torch.bool), labels, idx)
    assert float(no_text["i2t"]) == 0.0 and float(no_text["t2i"]) == 0.0
    # the image->image term (same diagnosis) does not need text
    torch.testing.assert_close(no_text["i2i"], aligned["i2i"])
    assert float(no_text["i2i"]) > 0.0


def test_instance_classifier_is_shared_cosine_logits():
    cls = InstanceClassifier(5, 8, scale=10.0)
    z = torch.randn(3, 8)
    logits = cls(z).detach()
    assert logits.shape == (3, 5)
    assert float(logits.abs().max()) <= 10.0 + 1e-5
    torch.testing.assert_close(cls(2 * z).detach(), logits)  # scale-invariant: cosine


def test_map_at_k_perfect_worst_and_hand_computed():
    q = np.array([[1.0, 0.0]], np.float32)
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    assert map_at_k(q, ["a"], gallery, ["a", "a", "b", "b"], k=10) == pytest.approx(1.0)
    assert map_at_k(q, ["b"], gallery, ["a", "a", "b", "b"], k=10) == pytest.approx((1 / 3 + 2 / 4) / 2)
    # the query itself is excluded from the gallery by id
    score = map_at_k(
        q, ["a"], gallery, ["a", "b", "a", "b"], k=10, query_ids=["x"], gallery_ids=["x", "y", "z", "w"]
    )
    assert score == pytest.approx(1 / 2)


def test_parse_epochs():
    assert parse_epochs(10) == (2, 4, 4)
    assert parse_epochs("1,2,3") == (1, 2, 3)
    assert sum(parse_epochs("7")) == 7
    with pytest.raises(CaseInputError):
        parse_epochs("1,2")


def test_validation_split_never_splits_a_patient():
    n = 30
    data = TrainingData(
        ids=[f"c{i}" for i in range(n)],
        rois=np.zeros((n, 2, 1, 4, 4), np.float32),
        labels=["a"] * n,
        terms=[[] for _ in range(n)],
        groups=[f"p{i // 3}" for i in range(n)],
        texts=[""] * n,
    )
    tr, va = split_validation(data, 0.2, seed=0)
    assert len(va) > 0 and len(tr) + len(va) == n
    assert not {data.groups[i] for i in tr} & {data.groups[i] for i in va}
    tr2, va2 = split_validation(data, 0.2, seed=0)
    np.testing.assert_array_equal(va, va2)


def test_augment_keeps_shape_and_mask_range_and_is_seeded():
    rois = torch.rand(3, 3, 4, 16, 16)
    rois[:, -1] = (rois[:, -1] > 0.5).float()
    a = augment(rois, torch.Generator().manual_seed(5))
    b = augment(rois, torch.Generator().manual_seed(5))
    c = augment(rois, torch.Generator().manual_seed(6))
    assert a.shape == rois.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert float(a[:, -1].min()) >= 0.0 and float(a[:, -1].max()) <= 1.0 + 1e-5  # interpolation rounding
    one_slice = augment(torch.rand(2, 2, 1, 16, 16), torch.Generator().manual_seed(0))
    assert one_slice.shape == (2, 2, 1, 16, 16)


def test_supervised_contrastive_rewards_clustering_by_diagnosis_and_shared_terms():
    from SimilarCaseRetrievalLib.training.losses import supervised_contrastive

    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    centres = unit(torch.randn(3, 16, generator=g))
    clustered = unit(centres[labels] + 0.05 * torch.randn(8, 16, generator=g))
    shuffled = clustered[torch.tensor([0, 3, 6, 1, 4, 7, 2, 5])]  # each label spread over the clusters
    assert supervised_contrastive(clustered, labels) < supervised_contrastive(shuffled, labels) - 1.0
    # unknown labels and rows without a positive are ignored; nothing to learn -> exactly 0
    alone = torch.tensor([0, 1, -1, -1, 2, 3, 4, 5])
    assert float(supervised_contrastive(clustered, alone)) == 0.0
    assert supervised_contrastive(clustered, alone).shape == ()
    # graded: within one diagnosis, pulling the pair that shares terms closer lowers the loss more
    lab = torch.tensor([0, 0, 0, 1])
    terms = torch.tensor([[1.0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]])
    a, b, c, d = unit(torch.eye(4)[:, :4])
    near_sharing = unit(torch.stack([a, a + 0.2 * b, a + 2 * c, d]))  # 0 and 1 share terms and are close
    near_other = unit(torch.stack([a, a + 2 * b, a + 0.2 * c, d]))  # 0 is close to 2 (no shared term)
    assert supervised_contrastive(near_sharing, lab, 0.1, terms) < supervised_contrastive(
        near_other, lab, 0.1, terms
    )
    plain = [float(supervised_contrastive(z, lab, 0.1)) for z in (near_sharing, near_other)]
    assert plain[0] == pytest.approx(plain[1], rel=1e-5)  # without terms the two layouts are equivalent
    # gradients flow into the embeddings
    z = clustered.clone().requires_grad_(True)
    supervised_contrastive(z, labels).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
