"""Model selection score: every diagnosis counts once (an imbalanced archive must not reward collapse)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from SimilarCaseRetrievalLib.training.loop import Selection, TrainOptions  # noqa: E402
from SimilarCaseRetrievalLib.training.metrics import (  # noqa: E402
    class_mean,
    map_at_k,
    per_query_scores,
    selection_score,
)


def _cone(phi: np.ndarray, theta: float) -> np.ndarray:
    """Unit vectors at angle ``theta`` from the z axis, azimuths ``phi``."""
    return np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta) * np.ones_like(phi)], 1
    ).astype(np.float32)


def _toy_archive():
    """20 normal cases on a cone around z and 3 rare ones: ``collapsed`` puts the rare cases apart from each
    other (their neighbours are normal cases; normal queries are perfect), ``balanced`` puts them together on
    the axis, near every normal case (rare queries are perfect, normal ones lose ranks 7-9)."""
    n = 20
    labels = ["normal"] * n + ["rare"] * 3
    ids = [f"c{i}" for i in range(n + 3)]
    normals = _cone(np.arange(n) * 2 * np.pi / n, 0.3)
    rare_phi = np.array([0.0, 2.0, 4.0])
    collapsed = np.concatenate([normals, _cone(rare_phi, 0.6)])
    balanced = np.concatenate([normals, _cone(rare_phi, 0.01)])
    return labels, ids, collapsed, balanced


def test_default_selection_prefers_the_model_that_finds_the_rare_diagnosis():
    labels, ids, collapsed, balanced = _toy_archive()
    s_col = per_query_scores(collapsed, labels, collapsed, labels, 10, ids, ids)
    s_bal = per_query_scores(balanced, labels, balanced, labels, 10, ids, ids)
    # the plain mean over queries (the first selection rule) rewards the collapsed model ...
    assert selection_score(*s_col, balance=False) > selection_score(*s_bal, balance=False)
    # ... the default rule (class mean, as `similar-cases train` selects) does not
    default = Selection.of(TrainOptions())
    assert default.balance
    score = {
        name: selection_score(*s, balance=default.balance, p1_weight=default.p1_weight)
        for name, s in (("collapsed", s_col), ("balanced", s_bal))
    }
    assert score["balanced"] > score["collapsed"]
    assert s_col[1][-3:].max() == 0.0 and s_bal[1][-3:].min() == 1.0  # rare queries: missed vs found


def test_per_query_scores_agree_with_map_and_class_mean_counts_each_label_once():
    labels, ids, collapsed, _ = _toy_archive()
    lab, aps, p1s = per_query_scores(collapsed, labels, collapsed, labels, 10, ids, ids)
    assert lab == labels and p1s.tolist() == [1.0] * 20 + [0.0] * 3
    assert np.mean(aps) == pytest.approx(map_at_k(collapsed, labels, collapsed, labels, 10, ids, ids))
    assert class_mean(lab, aps) == pytest.approx((aps[:20].mean() + aps[20:].mean()) / 2)
    blended = selection_score(lab, aps, p1s, balance=True, p1_weight=0.5)
    assert blended == pytest.approx(0.5 * class_mean(lab, aps) + 0.5 * class_mean(lab, p1s))
