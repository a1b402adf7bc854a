"""AdrenalMNIST3D (MedMNIST v2): 28^3 binary adrenal shapes, normal vs hyperplasia."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import CaseInputError
from ..collection import EvalCollection
from .common import signed_distance

CLASSES = {0: "normal", 1: "hyperplasia"}


def _split(data, split: str) -> EvalCollection:
    images = data[f"{split}_images"]
    labels = data[f"{split}_labels"].ravel()
    masks = images > (images.max() / 2 if images.max() > 1 else 0.5)
    ids = [f"adrenal-{split}-{i}" for i in range(len(images))]
    rois = np.stack([np.stack([signed_distance(m), m.astype(np.float32)]) for m in masks])
    return EvalCollection(
        name="AdrenalMNIST3D",
        ids=ids,
        labels=[CLASSES.get(int(v), str(int(v))) for v in labels],
        terms=[frozenset() for _ in ids],
        groups=ids[:],
        rois=rois.astype(np.float32),
    )


def load_adrenal(path) -> tuple[EvalCollection, EvalCollection]:
    """(index = train split, queries = test split); the image channel is a signed distance map."""
    p = Path(path)
    if p.is_dir():
        p = p / "adrenalmnist3d.npz"
    if not p.is_file():
        raise CaseInputError(p, "AdrenalMNIST3D npz not found", "pass adrenalmnist3d.npz or its folder")
    with np.load(p, allow_pickle=False) as data:
        return _split(data, "train"), _split(data, "test")
