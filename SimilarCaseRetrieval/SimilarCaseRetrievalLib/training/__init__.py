"""Training: cached ROIs, tensor-space augmentation, losses (NT-Xent, shared instance classifier,
bidirectional hinge ranking with hard negatives) and the three-stage loop. Imports torch."""

from .data import TrainingData, as_training_data, load_rois, split_validation
from .loop import TrainOptions, evaluate, parse_epochs, train_model
from .metrics import map_at_k

__all__ = [
    "TrainOptions",
    "TrainingData",
    "as_training_data",
    "evaluate",
    "load_rois",
    "map_at_k",
    "parse_epochs",
    "split_validation",
    "train_model",
]
