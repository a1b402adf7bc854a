"""Relevance feedback: Rocchio's query refinement in embedding space."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RocchioConfig:
    """q' = alpha * q + beta * mean(relevant) - gamma * mean(not relevant), then L2-normalised."""

    alpha: float = 1.0
    beta: float = 0.75
    gamma: float = 0.15

    def to_dict(self) -> dict:
        return asdict(self)


def rocchio(
    query: np.ndarray | None,
    relevant: np.ndarray,
    not_relevant: np.ndarray,
    config: RocchioConfig | None = None,
) -> np.ndarray | None:
    """Refine one query vector (D,) with the vectors of relevant (n, D) and not-relevant (m, D) cases.

    A missing query (None) starts from zero, so relevant cases alone can define it. Returns a unit vector,
    or the query unchanged (None stays None) when the feedback cancels it out."""
    config = config or RocchioConfig()
    relevant = np.asarray(relevant, dtype=np.float32)
    not_relevant = np.asarray(not_relevant, dtype=np.float32)
    dim = query.shape[-1] if query is not None else (relevant.shape[-1] if relevant.size else 0)
    if dim == 0:
        return query
    refined = np.zeros(dim, dtype=np.float64)
    if query is not None:
        refined += config.alpha * np.asarray(query, dtype=np.float64).reshape(dim)
    if relevant.size:
        refined += config.beta * relevant.reshape(-1, dim).mean(axis=0)
    if not_relevant.size:
        refined -= config.gamma * not_relevant.reshape(-1, dim).mean(axis=0)
    norm = float(np.linalg.norm(refined))
    if not np.isfinite(norm) or norm < 1e-8:
        return query
    return (refined / norm).astype(np.float32)
