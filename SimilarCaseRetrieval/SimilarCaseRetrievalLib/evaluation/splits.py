"""Cross-validation folds grouped by patient (a patient's cases are never split across folds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def grouped_folds(groups: Sequence[str], n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Query positions of each fold; every group lands in exactly one fold.

    Groups are shuffled (seeded) and assigned greedily to the currently smallest fold, so folds are
    balanced in number of cases even when patients have different numbers of cases.
    """
    if n_folds < 2:
        raise ValueError(f"--cv needs at least 2 folds, got {n_folds}")
    uniq = sorted(set(groups))
    if len(uniq) < n_folds:
        raise ValueError(f"{len(uniq)} patients cannot make {n_folds} folds: use a smaller --cv")
    rng = np.random.default_rng(seed)
    order = [uniq[i] for i in rng.permutation(len(uniq))]
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    # Largest groups first (stable after the shuffle) for a tighter balance.
    order.sort(key=lambda g: -len(members[g]))
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for g in order:
        smallest = min(range(n_folds), key=lambda f: len(folds[f]))
        folds[smallest].extend(members[g])
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def train_test_split_grouped(
    groups: Sequence[str], test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(index positions, query positions) with whole patients on each side."""
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    n_test = max(1, round(test_fraction * len(uniq)))
    test_groups = {uniq[i] for i in rng.permutation(len(uniq))[:n_test]}
    test = np.array([i for i, g in enumerate(groups) if g in test_groups], dtype=np.int64)
    train = np.array([i for i, g in enumerate(groups) if g not in test_groups], dtype=np.int64)
    return train, test
