"""Image-grid helpers (SimpleITK): grid comparison, physical overlap, resampling onto a reference grid."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

_TOL = 1e-4


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = _TOL) -> bool:
    """True when both images have the same size, spacing, origin and direction (within `tol`)."""
    if a.GetDimension() != b.GetDimension() or a.GetSize() != b.GetSize():
        return False
    spacing = np.asarray(a.GetSpacing())
    scale = max(float(spacing.max()), 1.0)
    return (
        np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=tol, atol=tol * scale)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * scale * 10)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def grid_mismatch(
    mask: sitk.Image, image: sitk.Image, tol: float = 1e-3, voxel_tol: float = 0.05
) -> str | None:
    """None when the mask's voxels are the image's voxels: same spacing (relative `tol`) and direction
    (`tol`), and an origin on the image's grid (within `voxel_tol` of a voxel; with the same size, the same
    origin; a cropped or padded extent, as Slicer writes segmentations, is fine). Else the difference."""
    if mask.GetDimension() != image.GetDimension():
        return f"{mask.GetDimension()}D mask for a {image.GetDimension()}D image"
    ms, rs = np.asarray(mask.GetSpacing()), np.asarray(image.GetSpacing())
    if not np.allclose(ms, rs, rtol=tol, atol=0.0):
        return f"spacing {_mm(ms)} mm differs from the image's {_mm(rs)} mm"
    md, rd = np.asarray(mask.GetDirection()), np.asarray(image.GetDirection())
    if not np.allclose(md, rd, atol=tol):
        return "orientation (direction matrix) differs from the image's"
    n = image.GetDimension()
    shift = np.asarray(mask.GetOrigin()) - np.asarray(image.GetOrigin())
    voxels = np.linalg.solve(rd.reshape(n, n) * rs[None, :], shift)  # origin offset in image voxels
    if mask.GetSize() == image.GetSize():
        if np.all(np.abs(voxels) <= voxel_tol):
            return None
        return f"origin is {float(np.linalg.norm(shift)):.1f} mm away from the image's (same size)"
    if np.all(np.abs(voxels - np.round(voxels)) <= voxel_tol):
        return None
    return f"origin is off the image's voxel grid (by {_mm(voxels - np.round(voxels))} voxels)"


def _mm(values: np.ndarray) -> str:
    return "x".join(f"{float(v):g}" for v in np.round(values, 3))


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box (min, max) of the image's voxels, including half-voxel borders."""
    size = image.GetSize()
    corners = []
    for corner in itertools.product(*[(-0.5, s - 0.5) for s in size]):
        corners.append(image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]))
    pts = np.asarray(corners)
    return pts.min(axis=0), pts.max(axis=0)


def overlaps(a: sitk.Image, b: sitk.Image) -> bool:
    """True when the physical bounding boxes of the two images intersect."""
    amin, amax = physical_bounds(a)
    bmin, bmax = physical_bounds(b)
    # A one-slice image has a physical thickness of one spacing; allow touching boxes.
    eps = 1e-3 * max(float(np.max(a.GetSpacing())), float(np.max(b.GetSpacing())), 1.0)
    return bool(np.all(amin <= bmax + eps) and np.all(bmin <= amax + eps))


def resample_to(image: sitk.Image, reference: sitk.Image, *, nearest: bool = False) -> sitk.Image:
    """Resample `image` onto `reference`'s grid by physical space (linear, or nearest for label maps)."""
    import SimpleITK as sitk

    if same_grid(image, reference):
        return image
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def as_3d(image: sitk.Image) -> sitk.Image:
    """A 2D image as a one-slice 3D volume (unit slice spacing); 3D images unchanged."""
    import SimpleITK as sitk

    if image.GetDimension() == 3:
        return image
    if image.GetDimension() != 2:
        raise ValueError(f"expected a 2D or 3D image, got {image.GetDimension()}D")
    vector = image.GetNumberOfComponentsPerPixel() > 1
    volume = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(image)[None], isVector=vector)
    direction2 = np.asarray(image.GetDirection()).reshape(2, 2)
    direction3 = np.eye(3)
    direction3[:2, :2] = direction2
    volume.SetDirection(direction3.ravel().tolist())
    volume.SetOrigin((*image.GetOrigin(), 0.0))
    volume.SetSpacing((*image.GetSpacing(), 1.0))
    return volume
