"""Small synthetic volumes, masks, DICOM series and .seg.nrrd files for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def phantom(
    size_xyz=(24, 20, 8), spacing=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 0.0), seed: int = 0, scale: float = 1.0
) -> sitk.Image:
    """A float32 volume: noisy body (value ~100) on a dark background, with a bright blob."""
    rng = np.random.default_rng(seed)
    x, y, z = size_xyz
    array = rng.normal(5.0, 1.0, (z, y, x)).astype(np.float32)
    array[:, 2 : y - 2, 2 : x - 2] += 95.0
    zz, yy, xx = np.mgrid[0:z, 0:y, 0:x]
    blob = ((xx - x / 2) / (x / 5)) ** 2 + ((yy - y / 2) / (y / 5)) ** 2 + (
        (zz - z / 2) / max(z / 4, 0.5)
    ) ** 2 <= 1
    array[blob] += 80.0
    image = sitk.GetImageFromArray(array * scale)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def box_mask(reference: sitk.Image, lo_xyz, hi_xyz, value: int = 1) -> sitk.Image:
    """A uint8 label map on `reference`'s grid with `value` inside the inclusive index box."""
    x, y, z = reference.GetSize()
    array = np.zeros((z, y, x), np.uint8)
    array[lo_xyz[2] : hi_xyz[2] + 1, lo_xyz[1] : hi_xyz[1] + 1, lo_xyz[0] : hi_xyz[0] + 1] = value
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    return mask


def write_dicom_series(
    image: sitk.Image, folder: Path, series_uid: str, study_uid: str = "1.2.826.0.1.3680043.2.1125.1"
) -> list[Path]:
    """Write a 3D image as a DICOM series (one file per slice) with the given Series Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*direction[0:7:3], *direction[1:8:3])),
            "0018|0050": f"{image.GetSpacing()[2]:.6f}",
            "0028|0030": f"{image.GetSpacing()[1]:.6f}\\{image.GetSpacing()[0]:.6f}",
        }
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        path = folder / f"{series_uid.rsplit('.', 1)[-1]}_{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_)
        paths.append(path)
    return paths


def write_seg_nrrd(path: Path, reference: sitk.Image, segments: dict[str, np.ndarray]) -> Path:
    """Write a Slicer .seg.nrrd on `reference`'s grid; `segments` maps a name to a (z, y, x) bool array.

    Overlapping segments go to separate layers (slicerio.add_segment), as Slicer stores them.
    """
    import slicerio

    spacing = np.asarray(reference.GetSpacing())
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * spacing
    ijk_to_lps[:3, 3] = reference.GetOrigin()
    seg = slicerio.create_segmentation(reference.GetSize(), ijk_to_lps)
    for name, mask_zyx in segments.items():
        slicerio.add_segment(seg, np.asarray(mask_zyx, bool).transpose(2, 1, 0), {"id": name, "name": name})
    slicerio.write_segmentation(str(path), seg)
    return path
