"""Which unlabelled cases to label next (active learning), on plain arrays: no store, no torch.

- ``uncertainty``: the diagnosis head's margin (1 - (p1 - p2)) and the term heads' mean binary entropy;
- ``diversity``: k-center greedy (core-set, Sener & Savarese 2018) over the embedding space: each pick is the
  candidate farthest (cosine distance) from every labelled or already picked case;
- ``hybrid``: k-center greedy with each distance weighted by the candidate's uncertainty (uncertain *and* far
  from what is labelled; a batch never piles up near-identical uncertain cases);
- ``random``: a seeded random order (the baseline).

A candidate whose cosine similarity to a labelled case reaches ``duplicate_threshold`` is a near-duplicate: it
is flagged (with that case) and ranked after every other candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import CaseInputError

STRATEGIES = ("uncertainty", "diversity", "hybrid", "random")
DUPLICATE_THRESHOLD = 0.98
_CHUNK = 4096


@dataclass
class Pick:
    """One suggested candidate: its row in the candidate arrays, score and one-line reason."""

    index: int
    score: float
    reason: str
    uncertainty: float | None = None
    distance: float | None = None  # cosine distance to the nearest labelled (or earlier picked) case
    duplicate_of: int | None = None  # row in the labelled arrays
    duplicate_cosine: float | None = None


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise CaseInputError(
            "--strategy", f"unknown strategy {strategy!r}", f"use one of {', '.join(STRATEGIES)}"
        )
    return strategy


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def label_margin(label_probs: np.ndarray) -> np.ndarray:
    """(N,) 1 - (p1 - p2) of softmax rows in [0, 1]: 1 = a tie between the two most probable diagnoses."""
    p = np.asarray(label_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        return np.zeros(len(p))
    top = -np.sort(-p, axis=1)
    return 1.0 - (top[:, 0] - top[:, 1])


def label_entropy(label_probs: np.ndarray) -> np.ndarray:
    """(N,) entropy of softmax rows divided by log(L), in [0, 1]."""
    p = np.asarray(label_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        return np.zeros(len(p))
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1) / np.log(p.shape[1])


def term_entropy(term_probs: np.ndarray) -> np.ndarray:
    """(N,) mean binary entropy (bits) of independent sigmoid term probabilities, in [0, 1]."""
    p = np.clip(np.asarray(term_probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    if p.ndim != 2 or p.shape[1] == 0:
        return np.zeros(len(p))
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=1)


def uncertainty(label_probs: np.ndarray | None, term_probs: np.ndarray | None, n: int) -> np.ndarray:
    """(n,) in [0, 1]: mean of the diagnosis margin uncertainty and the term entropy (those the model has)."""
    parts = []
    if (
        label_probs is not None
        and np.asarray(label_probs).ndim == 2
        and np.asarray(label_probs).shape[1] >= 2
    ):
        parts.append(label_margin(label_probs))
    if term_probs is not None and np.asarray(term_probs).ndim == 2 and np.asarray(term_probs).shape[1]:
        parts.append(term_entropy(term_probs))
    if not parts:
        raise CaseInputError(
            "model",
            "has neither a diagnosis nor a term head",
            "train it on labelled cases, or use --strategy diversity",
        )
    return np.mean(parts, axis=0)


def nearest(candidates: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best cosine similarity, its row in ``reference``) for each candidate; (-inf, -1) when none."""
    n = len(candidates)
    best, where = np.full(n, -np.inf, dtype=np.float32), np.full(n, -1, dtype=np.int64)
    c = _normalised(candidates)
    r = _normalised(reference) if len(reference) else reference
    for start in range(0, len(r), _CHUNK):
        sims = c @ r[start : start + _CHUNK].T
        arg = sims.argmax(axis=1)
        val = sims[np.arange(n), arg]
        better = val > best
        best[better], where[better] = val[better], arg[better] + start
    return best, where


def k_center_greedy(
    candidates: np.ndarray, labelled: np.ndarray, n: int, weights: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """Up to ``n`` (row, distance at pick time) by greedy k-center: each step the candidate with the largest
    ``weight x cosine distance`` to the labelled and already picked cases. With no labelled case the first
    pick is the candidate farthest from the candidates' mean."""
    c = _normalised(candidates)
    if len(labelled):
        sim, _ = nearest(c, labelled)
        dist = 1.0 - sim.astype(np.float64)
    else:
        dist = 1.0 - (c @ _normalised(c.mean(axis=0, keepdims=True)).T)[:, 0].astype(np.float64)
    w = np.ones(len(c)) if weights is None else np.asarray(weights, dtype=np.float64)
    picked: list[tuple[int, float]] = []
    taken = np.zeros(len(c), dtype=bool)
    for _ in range(min(n, len(c))):
        score = np.where(taken, -np.inf, w * np.maximum(dist, 0.0))
        i = int(np.argmax(score))
        picked.append((i, float(max(dist[i], 0.0))))
        taken[i] = True
        dist = np.minimum(dist, 1.0 - (c @ c[i]).astype(np.float64))
    return picked


def _diagnosis_reason(probs: np.ndarray, labels: Sequence[str]) -> str:
    order = np.argsort(-probs, kind="stable")
    first, second = int(order[0]), int(order[1])
    return f"diagnosis uncertain: {probs[first]:.2f} {labels[first]} vs {probs[second]:.2f} {labels[second]}"


def _terms_reason(probs: np.ndarray, terms: Sequence[str], shown: int = 2) -> str:
    closest = np.argsort(np.abs(probs - 0.5), kind="stable")[:shown]
    return "terms uncertain: " + ", ".join(f"{terms[i]} {probs[i]:.2f}" for i in closest)


def uncertainty_reason(
    i: int,
    label_probs: np.ndarray | None,
    term_probs: np.ndarray | None,
    labels: Sequence[str],
    terms: Sequence[str],
) -> str:
    """'diagnosis uncertain: 0.41 endometrioma vs 0.38 cystadenoma; terms uncertain: solid:present 0.52, ...'."""
    parts = []
    if label_probs is not None and np.asarray(label_probs).ndim == 2 and len(labels) >= 2:
        parts.append(_diagnosis_reason(np.asarray(label_probs)[i], labels))
    if term_probs is not None and np.asarray(term_probs).ndim == 2 and len(terms):
        parts.append(_terms_reason(np.asarray(term_probs)[i], terms))
    return "; ".join(parts)


def select(
    strategy: str,
    n: int,
    candidates: np.ndarray,
    labelled: np.ndarray,
    *,
    label_probs: np.ndarray | None = None,
    term_probs: np.ndarray | None = None,
    labels: Sequence[str] = (),
    terms: Sequence[str] = (),
    duplicate_threshold: float = DUPLICATE_THRESHOLD,
    seed: int = 0,
) -> list[Pick]:
    """The next ``n`` candidates (rows of ``candidates``, embeddings (N, D)) to label, best first.

    ``labelled``: embeddings (M, D) of the labelled cases (M may be 0). ``label_probs`` (N, L) and
    ``term_probs`` (N, T): the model's predictions for the candidates, needed by uncertainty and hybrid."""
    check_strategy(strategy)
    candidates = np.asarray(candidates, dtype=np.float32)
    labelled = np.asarray(labelled, dtype=np.float32).reshape(
        -1, candidates.shape[1] if candidates.ndim == 2 else 0
    )
    count = len(candidates)
    if n <= 0 or count == 0:
        return []
    dup_sim, dup_row = (
        nearest(candidates, labelled) if len(labelled) else (np.full(count, -np.inf), np.full(count, -1))
    )
    is_dup = dup_sim >= duplicate_threshold
    fresh = np.flatnonzero(~is_dup)
    u = uncertainty(label_probs, term_probs, count) if strategy in ("uncertainty", "hybrid") else None

    order: list[tuple[int, float, str, float | None]] = []  # (row, score, reason, distance)
    if strategy == "random":
        rng = np.random.default_rng(seed)
        order = [(int(i), 0.0, "random pick (baseline)", None) for i in rng.permutation(fresh)]
    elif strategy == "uncertainty":
        assert u is not None
        ranked = fresh[np.argsort(-u[fresh], kind="stable")]
        order = [
            (int(i), float(u[i]), uncertainty_reason(i, label_probs, term_probs, labels, terms), None)
            for i in ranked
        ]
    else:
        weights = None if strategy == "diversity" else u[fresh]  # type: ignore[index]
        picks = k_center_greedy(candidates[fresh], labelled, min(n, len(fresh)), weights)
        for j, dist in picks:
            i = int(fresh[j])
            far = f"farthest from labelled cases: distance {dist:.2f}"
            if strategy == "diversity":
                order.append((i, dist, far, dist))
            else:
                assert u is not None
                why = uncertainty_reason(i, label_probs, term_probs, labels, terms)
                order.append((i, float(u[i]) * dist, f"{why}; {far}" if why else far, dist))
    picks_out = [
        Pick(index=i, score=s, reason=r, uncertainty=None if u is None else float(u[i]), distance=d)
        for i, s, r, d in order[:n]
    ]
    for i in np.flatnonzero(is_dup)[np.argsort(-dup_sim[is_dup], kind="stable")]:
        if len(picks_out) >= n:
            break
        cos = float(dup_sim[i])
        picks_out.append(
            Pick(
                index=int(i),
                score=0.0,
                reason=f"near-duplicate of a labelled case (cosine {cos:.3f}): check and copy its labels",
                uncertainty=None if u is None else float(u[i]),
                distance=1.0 - cos,
                duplicate_of=int(dup_row[i]),
                duplicate_cosine=cos,
            )
        )
    return picks_out
