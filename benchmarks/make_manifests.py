"""Write manifest CSVs for the real public data sets, for `similar-cases ingest`.

    python benchmarks/make_manifests.py DATA_DIR OUT_DIR

DATA_DIR is the shared data folder (holding `mmotu-otu2d-train/` and `small3d/`). Writes, with absolute paths:
- OUT_DIR/mmotu.csv: one case per MMOTU image (JPG, luminance), its lesion mask (PNG 0/1 or 0/255), label = class.
- OUT_DIR/small3d.csv: the pyradiomics MR volumes with their tumour label maps (label 1), and one case per
  organ label (>= MIN_VOXELS voxels) of the TotalSegmentator CT and MR examples (segment = label value).
Nothing is copied; the data stays where it is.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from SimilarCaseRetrievalLib.manifest import MANIFEST_COLUMNS

MIN_VOXELS = 50
# TotalSegmentator (v2) label values shared by the CT and MR class maps; the others are named label_<value>.
TOTALSEG_NAMES = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "pancreas",
}


def mmotu_rows(folder: Path) -> list[dict]:
    rows = []
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append(
                {
                    "case_id": f"mmotu-{r['id']}",
                    "image": str((folder / r["image"]).resolve()),
                    "mask": str((folder / r["mask"]).resolve()),
                    "label": r["class"],
                }
            )
    return rows


def small3d_rows(folder: Path) -> list[dict]:
    import numpy as np
    import SimpleITK as sitk

    rows = []
    pyrad = folder / "pyradiomics"
    for image in sorted(pyrad.glob("*_image.nrrd")):
        name = image.name[: -len("_image.nrrd")]
        label = pyrad / f"{name}_label.nrrd"
        if label.exists():
            rows.append(
                {
                    "case_id": f"pyradiomics-{name}",
                    "image": str(image.resolve()),
                    "mask": str(label.resolve()),
                    "segment": "1",
                    "label": f"{name.rstrip('0123456789')}_tumour",
                }
            )
    totalseg = folder / "totalseg"
    for modality, image, seg in (
        ("ct", "example_ct_sm.nii.gz", "example_seg.nii.gz"),
        ("mr", "example_mr_sm.nii.gz", "example_seg_mr.nii.gz"),
    ):
        if not (totalseg / image).exists() or not (totalseg / seg).exists():
            continue
        values, counts = np.unique(
            sitk.GetArrayFromImage(sitk.ReadImage(str(totalseg / seg))), return_counts=True
        )
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            if value == 0 or count < MIN_VOXELS:
                continue
            organ = TOTALSEG_NAMES.get(int(value), f"label_{int(value)}")
            rows.append(
                {
                    "case_id": f"totalseg-{modality}-{int(value)}",
                    "image": str((totalseg / image).resolve()),
                    "mask": str((totalseg / seg).resolve()),
                    "segment": str(int(value)),
                    "label": organ,
                    "patient_id": f"totalseg-{modality}",
                }
            )
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in MANIFEST_COLUMNS})
    print(f"wrote {path} ({len(rows)} cases)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data_dir", type=Path, help="shared data folder (with mmotu-otu2d-train/ and small3d/)"
    )
    parser.add_argument("out_dir", type=Path, help="where to write mmotu.csv and small3d.csv")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    wrote = 0
    if (args.data_dir / "mmotu-otu2d-train" / "labels.csv").exists():
        write(args.out_dir / "mmotu.csv", mmotu_rows(args.data_dir / "mmotu-otu2d-train"))
        wrote += 1
    if (args.data_dir / "small3d").is_dir():
        write(args.out_dir / "small3d.csv", small3d_rows(args.data_dir / "small3d"))
        wrote += 1
    if not wrote:
        print(f"{args.data_dir}: neither mmotu-otu2d-train/ nor small3d/ found", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
