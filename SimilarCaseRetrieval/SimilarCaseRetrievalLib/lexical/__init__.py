"""Lexical (word) matching of case texts: an SQLite FTS5 index with BM25 inside the case store, the query
terms it is searched with, and the fusion of its scores with the embedding scores (hybrid retrieval)."""

from __future__ import annotations

from .fusion import HybridConfig, blend_backbone, fuse_scores, normalised_fusion, rrf_fusion
from .query import query_terms

__all__ = ["HybridConfig", "blend_backbone", "fuse_scores", "normalised_fusion", "query_terms", "rrf_fusion"]
