"""Read one image volume (NIfTI, NRRD, MHA/MHD, DICOM series folder, PNG/JPG) as a 3D float32 image.

A volume reference may carry options after a `#`, so that a manifest can name them in a path:
`dwi.nii.gz#frame=2` (a frame of a 4D file) or `dicom_dir#series=1.2.840...` (a series of a folder).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError
from .geometry import as_3d

if TYPE_CHECKING:
    import SimpleITK as sitk

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_OPTION = re.compile(r"^(frame|series|resample)=(.+)$")
RESAMPLE_OPTION = (
    "resample=1"  # on a mask reference: resample it onto the image grid (segmentation.read_mask)
)


def split_reference(ref: str | Path) -> tuple[Path, str | None, int | None]:
    """`path#frame=2` / `path#series=UID` -> (path, series_uid, frame)."""
    text = str(ref)
    if "#" not in text:
        return Path(text), None, None
    base, _, options = text.partition("#")
    series_uid, frame = None, None
    for option in filter(None, options.split("&")):
        match = _OPTION.match(option.strip())
        if not match:
            raise CaseInputError(
                text,
                f"unknown volume option '{option}'",
                "use '#frame=N', '#series=UID' or (masks) '#resample=1'",
            )
        key, value = match.groups()
        if key == "resample":
            continue  # a mask option, read by segmentation.read_mask
        if key == "series":
            series_uid = value
        else:
            try:
                frame = int(value)
            except ValueError:
                raise CaseInputError(text, f"frame '{value}' is not an integer", "use '#frame=N'") from None
    return Path(base), series_uid, frame


def join_reference(path: str | Path, series_uid: str | None = None, frame: int | None = None) -> str:
    """Inverse of `split_reference`."""
    options = []
    if series_uid:
        options.append(f"series={series_uid}")
    if frame is not None:
        options.append(f"frame={frame}")
    return str(path) + ("#" + "&".join(options) if options else "")


def has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def read_volume(path: str | Path, *, series_uid: str | None = None, frame: int | None = None) -> sitk.Image:
    """Read a volume as a 3D float32 image; 2D pictures become one-slice volumes with unit spacing.

    Raises CaseInputError (one line: file, problem, fix) for missing, unreadable, unsupported, 4D without
    `frame`, NaN/inf or constant images.
    """
    import SimpleITK as sitk

    path, uid_opt, frame_opt = split_reference(path)
    series_uid = series_uid or uid_opt
    frame = frame if frame is not None else frame_opt
    if not path.exists():
        raise CaseInputError(
            path, "file not found", "check the path (relative paths are read from the manifest's folder)"
        )
    if path.is_dir():
        image = _read_dicom_series(path, series_uid)
    elif has_suffix(path, PICTURE_SUFFIXES):
        image = _read_picture(path)
    elif has_suffix(path, VOLUME_SUFFIXES) or _looks_like_dicom(path):
        image = _read_file(path)
    else:
        raise CaseInputError(
            path,
            "unsupported file type",
            "use NIfTI (.nii/.nii.gz), NRRD, MHA/MHD, a DICOM series folder, or PNG/JPG",
        )
    image = _select_frame(image, path, frame)
    image = as_3d(image)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    check_volume(image, path)
    return image


def check_volume(image: sitk.Image, where: str | Path) -> None:
    """NaN/inf or constant intensities -> CaseInputError."""
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)
    if values.size == 0:
        raise CaseInputError(where, "image has no voxels", "export the volume again")
    finite = np.isfinite(values)
    if not finite.any():
        raise CaseInputError(
            where, "image has no finite voxel (all NaN or infinite)", "export the real image"
        )
    if not finite.all():
        raise CaseInputError(
            where,
            f"image contains {finite.size - int(np.count_nonzero(finite))} NaN or infinite voxel(s)",
            "fix or re-export the volume",
        )
    if float(values.min()) == float(values.max()):
        raise CaseInputError(
            where, f"image is constant ({float(values.min()):g} everywhere)", "export the real image data"
        )


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_file(path: Path) -> sitk.Image:
    import SimpleITK as sitk

    from .nifti_gz import check_nifti_gz

    check_nifti_gz(path)  # ITK would zero-fill a cut-short NIfTI, skip the gzip CRC and turn NaN into 0
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise CaseInputError(
            path, "cannot read the file (corrupt or not an image)", "re-export the volume"
        ) from None


def _read_picture(path: Path) -> sitk.Image:
    """PNG/JPG: RGB(A) -> luminance, unit spacing, origin 0, identity direction."""
    import SimpleITK as sitk

    image = _read_file(path)
    if image.GetDimension() != 2:
        raise CaseInputError(path, f"expected a 2D picture, got {image.GetDimension()}D", "use a 2D PNG/JPG")
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array = to_luminance(array, image.GetNumberOfComponentsPerPixel())
    picture = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    picture.SetSpacing((1.0, 1.0))
    return picture


def to_luminance(array: np.ndarray, components: int) -> np.ndarray:
    """(H, W, C) pixel array -> (H, W) luminance (ITU-R 601); grey(+alpha) -> first component."""
    if components <= 1:
        return array
    if components >= 3:
        return (0.299 * array[..., 0] + 0.587 * array[..., 1] + 0.114 * array[..., 2]).astype(np.float32)
    return array[..., 0]


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    import SimpleITK as sitk

    try:
        uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        uids = []
    if not uids:
        raise CaseInputError(
            folder, "folder holds no DICOM series", "point to a DICOM series folder or a volume file"
        )
    if series_uid is None:
        if len(uids) > 1:
            raise CaseInputError(
                folder,
                f"folder holds {len(uids)} DICOM series ({', '.join(sorted(uids))})",
                "choose one with '#series=UID' after the folder name (or series_uid=)",
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise CaseInputError(
            folder,
            f"no DICOM series {series_uid} (found {', '.join(sorted(uids))})",
            "use one of the listed UIDs",
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError:
        raise CaseInputError(
            folder, f"cannot read DICOM series {series_uid}", "check the series is complete"
        ) from None


def _select_frame(image: sitk.Image, path: Path, frame: int | None) -> sitk.Image:
    """4D images and multi-component 3D volumes (e.g. DWI b-values, time) need an explicit frame."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    if dim == 2 and components > 1:
        array = to_luminance(sitk.GetArrayFromImage(image).astype(np.float32), components)
        scalar = sitk.GetImageFromArray(array)
        scalar.CopyInformation(sitk.VectorIndexSelectionCast(image, 0))
        return scalar
    if dim > 4 or dim < 2:
        raise CaseInputError(path, f"{dim}D images are not supported", "use a 2D, 3D or 4D image with frame=")
    frames = image.GetSize()[3] if dim == 4 else (components if dim == 3 else 1)
    if dim == 4 and components > 1:
        raise CaseInputError(path, "4D multi-component images are not supported", "export one 3D volume")
    if frames == 1:
        if frame not in (None, 0):
            raise CaseInputError(
                path, f"frame {frame} requested but the image has one frame", "drop the frame option"
            )
        if dim == 4:
            return sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
        return image
    if frame is None:
        raise CaseInputError(
            path,
            f"image has {frames} frames (4D, e.g. b-values or time points) and no frame was chosen",
            "name one with '#frame=N' after the file name (or frame=)",
        )
    if not 0 <= frame < frames:
        raise CaseInputError(
            path, f"frame {frame} out of range (image has {frames} frames)", f"use 0..{frames - 1}"
        )
    if dim == 4:
        return sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, frame])
    return sitk.VectorIndexSelectionCast(image, frame)
