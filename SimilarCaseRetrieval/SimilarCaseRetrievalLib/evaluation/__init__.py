"""Evaluation of case retrieval: ranx metrics, baselines, real-data loaders, simulated feedback.

Similarities are computed exactly with numpy from embeddings or features (no approximate index), so
the numbers measure the representation, not the index.
"""
