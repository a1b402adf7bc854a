"""Read a lesion mask (label map in any volume format, or a Slicer `.seg.nrrd`) onto a reference grid.

Segment choice: a name (`.seg.nrrd` segment name or ID) or a label value (int or digits). Default: the only
segment / label 1 / any non-zero voxel. The result is a uint8 0/1 image on the reference grid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError
from .geometry import as_3d, grid_mismatch, overlaps, resample_to, same_grid
from .volume_io import (
    PICTURE_SUFFIXES,
    RESAMPLE_OPTION,
    VOLUME_SUFFIXES,
    _read_dicom_series,
    _read_file,
    has_suffix,
    split_reference,
)

if TYPE_CHECKING:
    import SimpleITK as sitk

log = logging.getLogger(__name__)


def read_mask(
    path: str | Path, reference: sitk.Image, segment: str | int | None = None, *, resample: bool = False
) -> sitk.Image:
    """Read the segment's voxels as a uint8 0/1 image on `reference`'s grid.

    The mask file must lie on the image's voxel grid (geometry.grid_mismatch: spacing, direction, origin);
    a mask on another grid is refused unless `resample` (or the reference ends in `#resample=1`), when it is
    resampled by physical position (nearest neighbour) with a warning."""
    import SimpleITK as sitk

    resample = resample or RESAMPLE_OPTION in str(path).partition("#")[2].split("&")
    path, series_uid, _ = split_reference(path)
    if not path.exists():
        raise CaseInputError(path, "mask file not found", "check the mask path")
    segment = _normalise_segment(segment)
    if path.is_file() and _is_segmentation_nrrd(path):
        mask = _read_seg_nrrd(path, segment)
    else:
        labels = _read_label_map(path, series_uid)
        mask = _select_label(labels, path, segment)
    if mask.GetDimension() == 2:
        if reference.GetSize()[2] > 1:
            raise CaseInputError(
                path, "2D mask for a 3D volume", "segment the 3D volume (or use a 3D label map / .seg.nrrd)"
            )
        mask = as_3d(mask)
    if mask.GetPixelID() != sitk.sitkUInt8:
        mask = sitk.Cast(mask, sitk.sitkUInt8)
    problem = grid_mismatch(mask, reference)
    if problem and not resample and overlaps(mask, reference):  # no overlap at all: check_mask says so
        raise CaseInputError(
            path,
            f"mask is not on the image's grid: {problem}",
            "export the mask on the image's grid, or resample it by physical position with --resample-mask "
            "(manifest: end the mask path with '#resample=1')",
        )
    if problem:
        log.warning("%s: mask resampled onto the image's grid by physical position (%s)", path.name, problem)
    return conform_mask(mask, reference, path)


def conform_mask(mask: sitk.Image, reference: sitk.Image, where: str | Path | None = None) -> sitk.Image:
    """Binarise (`> 0`) and bring a mask onto the reference grid; raises if it is empty or outside."""
    import SimpleITK as sitk

    where = where if where is not None else "mask"
    if mask.GetDimension() == 2:
        mask = as_3d(mask)
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise CaseInputError(where, "mask has several components per voxel", "use a scalar label map")
    values = sitk.GetArrayViewFromImage(mask)
    if mask.GetPixelID() == sitk.sitkUInt8 and int(values.max(initial=0)) <= 1:
        binary = mask  # already 0/1
    else:
        binary = sitk.GetImageFromArray((values > 0).astype(np.uint8))
        binary.CopyInformation(mask)
    check_mask(binary, reference, where)
    if not same_grid(binary, reference):
        binary = resample_to(binary, reference, nearest=True)
        if not np.any(sitk.GetArrayViewFromImage(binary)):
            raise CaseInputError(
                where,
                "segment lies outside the volume (nothing left on the image grid)",
                "check the mask belongs to this study and grid",
            )
    return binary


def check_mask(mask: sitk.Image, reference: sitk.Image, where: str | Path | None = None) -> None:
    """Empty mask, mask not overlapping the volume in physical space -> CaseInputError."""
    import SimpleITK as sitk

    where = where if where is not None else "mask"
    if mask.GetDimension() != reference.GetDimension():
        raise CaseInputError(
            where,
            f"{mask.GetDimension()}D mask for a {reference.GetDimension()}D volume",
            "use a mask of the volume",
        )
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise CaseInputError(where, "segment is empty (no voxels)", "draw the segment or choose another one")
    if not same_grid(mask, reference) and not overlaps(mask, reference):
        raise CaseInputError(
            where,
            "mask and volume do not overlap in physical space",
            "check the mask belongs to this study (origin/orientation)",
        )


def _normalise_segment(segment: str | int | None) -> str | int | None:
    if segment is None:
        return None
    if isinstance(segment, (int, np.integer)):
        return int(segment)
    text = str(segment).strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _is_segmentation_nrrd(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return True
    if not name.endswith(".nrrd"):
        return False
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:  # noqa: BLE001 - unreadable headers are reported by the label-map reader
        return False
    return any(key.startswith("Segment0_") for key in header)


def _read_label_map(path: Path, series_uid: str | None) -> sitk.Image:
    import SimpleITK as sitk

    if path.is_dir():
        image = _read_dicom_series(path, series_uid)
    elif has_suffix(path, PICTURE_SUFFIXES + VOLUME_SUFFIXES):
        image = _read_file(path)
    else:
        raise CaseInputError(
            path, "unsupported mask file type", "use a label map (NIfTI, NRRD, MHA, PNG) or .seg.nrrd"
        )
    if image.GetDimension() > 3:
        raise CaseInputError(path, "4D mask", "export one 3D label map")
    if image.GetNumberOfComponentsPerPixel() > 1:
        # RGB(A) mask pictures: any non-zero channel counts.
        array = sitk.GetArrayViewFromImage(image).max(axis=-1)
        scalar = sitk.GetImageFromArray(np.ascontiguousarray(array))
        scalar.CopyInformation(sitk.VectorIndexSelectionCast(image, 0))
        image = scalar
    if has_suffix(path, PICTURE_SUFFIXES):
        image.SetSpacing((1.0,) * image.GetDimension())
        image.SetOrigin((0.0,) * image.GetDimension())
        image.SetDirection(np.eye(image.GetDimension()).ravel().tolist())
    return image


def _select_label(labels: sitk.Image, path: Path, segment: str | int | None) -> sitk.Image:
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(labels)
    if not np.all(np.isfinite(values)):
        raise CaseInputError(path, "mask contains NaN or infinite values", "re-export the label map")
    present = np.unique(values[values != 0])
    if isinstance(segment, str):
        raise CaseInputError(
            path,
            f"segment name '{segment}' given for a plain label map (no segment names)",
            f"use a label value ({_list_values(present)}) or a .seg.nrrd",
        )
    if segment is None:
        if present.size == 0:
            raise CaseInputError(path, "mask is empty (all zero)", "draw the segment or choose another mask")
        selected = values == 1 if (present.size > 1 and 1 in present) else values != 0
    else:
        if segment not in present:
            raise CaseInputError(
                path,
                f"label {segment} is empty or absent (labels present: {_list_values(present)})",
                "choose a present label",
            )
        selected = values == segment
    mask = sitk.GetImageFromArray(selected.astype(np.uint8))
    mask.CopyInformation(labels)
    return mask


def _list_values(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:20])
    return (shown + ", ...") if values.size > 20 else (shown or "none")


def _read_seg_nrrd(path: Path, segment: str | int | None) -> sitk.Image:
    import SimpleITK as sitk
    import slicerio

    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # noqa: BLE001 - slicerio raises IOError/ValueError/nrrd errors
        raise CaseInputError(
            path, f"cannot read the segmentation ({type(exc).__name__})", "re-export it from Slicer"
        ) from None
    segments = seg.get("segments") or []
    if not segments:
        raise CaseInputError(path, "segmentation has no segments", "add a segment in Slicer's Segment Editor")
    chosen = _choose_segment(segments, path, segment)
    voxels = seg["voxels"]
    if len(chosen) == 1:
        array = slicerio.segment_mask(seg, chosen[0])
    else:  # default with several segments and no label 1: any segment
        array = np.any(voxels != 0, axis=0) if voxels.ndim == 4 else voxels != 0
    if not array.any():
        names = ", ".join(s.get("name", s.get("id", "?")) for s in chosen)
        raise CaseInputError(path, f"segment '{names}' is empty", "draw the segment or choose another one")
    ijk_to_lps = np.asarray(seg["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    direction = ijk_to_lps[:3, :3] / spacing
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(np.uint8).transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    image.SetDirection(direction.ravel().tolist())
    return image


def _choose_segment(segments: list[dict], path: Path, segment: str | int | None) -> list[dict]:
    names = [s.get("name", s.get("id", "")) for s in segments]
    if isinstance(segment, str):
        matches = [s for s in segments if s.get("name") == segment or s.get("id") == segment]
        if not matches:
            matches = [s for s in segments if str(s.get("name", "")).lower() == segment.lower()]
        if not matches:
            raise CaseInputError(
                path, f"no segment named '{segment}' (segments: {', '.join(names)})", "use one of those names"
            )
        return matches[:1]
    if isinstance(segment, int):
        matches = [s for s in segments if s.get("labelValue", 1) == segment]
        if not matches:  # a segment literally named "2"
            matches = [s for s in segments if str(s.get("name", "")) == str(segment)][:1]
        if not matches:
            values = sorted({s.get("labelValue", 1) for s in segments})
            raise CaseInputError(
                path, f"no segment with label value {segment} (values: {values})", "use a segment name"
            )
        if len(matches) > 1:
            raise CaseInputError(
                path,
                f"label value {segment} is used by several segments (layers): {', '.join(s.get('name', '?') for s in matches)}",
                "choose the segment by name",
            )
        return matches
    if len(segments) == 1:
        return segments
    first_layer_label1 = [s for s in segments if s.get("labelValue", 1) == 1 and s.get("layer", 0) == 0]
    if first_layer_label1:
        log.info(
            "%s: %d segments, using '%s' (label 1)",
            path.name,
            len(segments),
            first_layer_label1[0].get("name"),
        )
        return first_layer_label1
    return segments
