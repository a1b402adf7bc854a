"""Reading .nii.gz: ITK's reader vs the checked zlib path of nifti_gz.py (same files, same run), and equality.

Usage: python benchmarks/bench_nifti_gz.py FOLDER [FOLDER ...] [--repeats 5]
Every *.nii.gz under the folders is read both ways (alternating, median of the repeats); the voxels and the
geometry must be identical wherever the fast path takes the file (else it hands the file to ITK).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from SimilarCaseRetrievalLib.nifti_gz import read_nifti_gz


def same(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetPixelID() == b.GetPixelID()
        and a.GetOrigin() == b.GetOrigin()
        and a.GetSpacing() == b.GetSpacing()
        and a.GetDirection() == b.GetDirection()
        and np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    files = sorted(f for folder in args.folders for f in Path(folder).rglob("*.nii.gz"))
    taken = [f for f in files if read_nifti_gz(f) is not None]
    mismatched = [f for f in taken if not same(read_nifti_gz(f), sitk.ReadImage(str(f)))]
    print(
        f"{len(files)} files, fast path taken for {len(taken)}, identical to ITK: {len(taken) - len(mismatched)}"
    )
    for f in mismatched:
        print(f"  DIFFERENT: {f}")
    itk, fast = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for f in taken:
            sitk.ReadImage(str(f))
        itk.append((time.perf_counter() - start) / max(1, len(taken)) * 1000)
        start = time.perf_counter()
        for f in taken:
            read_nifti_gz(f)
        fast.append((time.perf_counter() - start) / max(1, len(taken)) * 1000)
    a, b = statistics.median(itk), statistics.median(fast)
    print(f"ms/file (median of {args.repeats}): ITK {a:.2f}, checked zlib path {b:.2f} ({a / b:.2f}x)")
    return 1 if mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
