"""MMOTU OTU_2D ovarian ultrasound: 1000 JPG images + lesion masks, 8 tumour types (labels.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...errors import CaseInputError
from ..collection import EvalCollection
from .common import crop_2d_roi


def load_mmotu(path, grid: int = 64, limit: int | None = None, progress: bool = True) -> EvalCollection:
    """Every image as one case (2D ROI, grid x grid x 1); no patient ids, so each image is its own group."""
    from skimage.io import imread
    from tqdm import tqdm

    root = Path(path)
    table = root / "labels.csv"
    if not table.is_file():
        raise CaseInputError(table, "labels.csv not found", "pass the mmotu-otu2d-train folder")
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if limit:
        rows = rows[:limit]
    ids, labels, rois = [], [], []
    for row in tqdm(rows, desc="MMOTU", disable=not progress, leave=False):
        img = imread(root / row["image"]).astype(np.float32)
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
        mask = imread(root / row["mask"])
        if mask.ndim == 3:
            mask = mask[..., 0]
        mask = mask > 0
        if not mask.any() or mask.shape != img.shape:
            continue
        ids.append(f"mmotu-{row['id']}")
        labels.append(row["class"])
        rois.append(crop_2d_roi(img, mask, grid=grid))
    return EvalCollection(
        name="MMOTU",
        ids=ids,
        labels=labels,
        terms=[frozenset() for _ in ids],
        groups=ids[:],
        rois=np.stack(rois).astype(np.float32),
    )
