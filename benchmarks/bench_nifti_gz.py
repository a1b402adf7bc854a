"""Cost of the NIfTI check (nifti_gz.check_nifti_gz: raw length, gzip CRC of the whole stream, NaN/inf voxels)
next to ITK's read of the same files, same run.

Usage: python benchmarks/bench_nifti_gz.py FOLDER [FOLDER ...] [--repeats 5]
Every *.nii.gz under the folders is checked and read (median of the repeats); files the check rejects are listed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import SimpleITK as sitk
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.nifti_gz import check_nifti_gz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    files = sorted(f for folder in args.folders for f in Path(folder).rglob("*.nii.gz"))
    rejected = []
    for f in files:
        try:
            check_nifti_gz(f)
        except CaseInputError as exc:
            rejected.append(str(exc))
    print(f"{len(files)} files, rejected by the check: {len(rejected)}")
    for line in rejected:
        print(f"  {line}")
    itk, check = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for f in files:
            sitk.ReadImage(str(f))
        itk.append((time.perf_counter() - start) / max(1, len(files)) * 1000)
        start = time.perf_counter()
        for f in files:
            check_nifti_gz(f)
        check.append((time.perf_counter() - start) / max(1, len(files)) * 1000)
    a, b = statistics.median(itk), statistics.median(check)
    print(
        f"ms/file (median of {args.repeats}): ITK read {a:.2f}, check {b:.3f} ({100 * b / a:.1f} % of a read)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
