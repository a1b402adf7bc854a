"""Count MMOTU images that have a near-duplicate elsewhere in the set (leakage across image-level CV folds).

Usage: python benchmarks/mmotu_near_duplicates.py DATA/mmotu-otu2d-train
Each image is reduced to a 32x32 grey thumbnail, z-scored; a twin is the most correlated other image.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image


def thumbnails(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    vectors = []
    for row in rows:
        pixels = np.asarray(
            Image.open(folder / row["image"]).convert("L").resize((32, 32)), np.float32
        ).ravel()
        pixels = (pixels - pixels.mean()) / (pixels.std() + 1e-6)
        vectors.append(pixels / np.sqrt(pixels.size))
    return np.stack(vectors), np.array([row["class"] for row in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    vectors, labels = thumbnails(args.folder)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -1.0)
    best, twin = similarity.max(1), similarity.argmax(1)
    print(f"{len(labels)} images")
    for threshold in (0.99, 0.97, 0.95, 0.90):
        has_twin = best >= threshold
        same = np.mean(labels[has_twin] == labels[twin[has_twin]]) if has_twin.any() else float("nan")
        print(
            f"thumbnail correlation >= {threshold:.2f}: {has_twin.sum():4d} images have a twin, same class {same:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
