"""Encoders: `ModelConfig`, `CaseEncoder` (image CNN + text encoder + heads), save/load.

Importing this package imports torch; the CLI imports it lazily.
"""

from .config import ModelConfig
from .model import CaseEncoder, RoiPrediction, fuse_embeddings, with_label_prior

__all__ = ["CaseEncoder", "ModelConfig", "RoiPrediction", "fuse_embeddings", "with_label_prior"]
