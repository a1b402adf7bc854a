"""Read what a PACS study holds: an image series -> SimpleITK volume, a DICOM SEG -> one segment's mask with
its label and terms (from the segment's coded properties), a DICOM SR -> report and clinical notes.

Only the pixel data, geometry, coded segment properties and report text are read: no header field that names
or identifies the patient leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CaseInputError

if TYPE_CHECKING:
    import SimpleITK as sitk
    from pydicom import Dataset

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.88.11",
    "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33",
)
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
LOCAL_SCHEME = "99SCR"  # our private coding scheme for diagnoses and lexicon terms in SEG segments
HISTORY_CONCEPT = "121060"  # DCM "History": the clinical notes of an SR; other TEXT items make the report


def sort_slices(datasets: Sequence[Dataset], where: str) -> list[Dataset]:
    """Single-frame image instances ordered along the slice normal."""
    slices = [d for d in datasets if "PixelData" in d and "ImagePositionPatient" in d]
    if not slices:
        raise CaseInputError(where, "no image slices with a position", "check that this is an image series")
    if any(int(d.get("NumberOfFrames", 1) or 1) > 1 for d in slices):
        raise CaseInputError(
            where, "multi-frame images are not supported", "export the series as single frames"
        )
    normal = _normal(slices[0])
    return sorted(slices, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))


def _normal(ds: Dataset) -> np.ndarray:
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(iop[:3], iop[3:])


def series_image(datasets: Sequence[Dataset], where: str) -> sitk.Image:
    """A 3D volume from an image series (rescale applied; int16 kept when the values are integers)."""
    import SimpleITK as sitk

    slices = sort_slices(datasets, where)
    first = slices[0]
    iop = np.asarray(first.ImageOrientationPatient, float)
    normal = _normal(first)
    positions = np.array([np.asarray(d.ImagePositionPatient, float) for d in slices])
    try:
        planes = [_rescaled(d) for d in slices]
    except Exception as exc:  # noqa: BLE001 - pixel decoding errors come in many types
        raise CaseInputError(
            where, f"unreadable pixel data ({exc})", "check the series in the PACS"
        ) from None
    if len({p.shape for p in planes}) != 1:
        raise CaseInputError(where, "slices of different sizes", "check the series in the PACS")
    array = np.stack(planes)
    if len(slices) > 1:
        steps = np.diff(positions @ normal)
        if np.any(steps <= 1e-6) or np.ptp(steps) > 0.01 * max(float(np.mean(steps)), 1e-6):
            raise CaseInputError(
                where, "slices are duplicated or not evenly spaced", "export a regular volume"
            )
        dz = float(np.mean(steps))
    else:
        dz = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)) or 1.0)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    if np.issubdtype(array.dtype, np.integer) and array.min() >= -32768 and array.max() <= 32767:
        array = array.astype(np.int16)
    else:
        array = array.astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((col_spacing, row_spacing, dz))
    image.SetOrigin(tuple(float(v) for v in positions[0]))
    image.SetDirection(tuple(np.column_stack([iop[:3], iop[3:], normal]).ravel()))
    return image


def _rescaled(ds: Dataset) -> np.ndarray:
    pixels = ds.pixel_array
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if slope == 1.0 and intercept == 0.0:
        return pixels.astype(np.int32) if np.issubdtype(pixels.dtype, np.integer) else pixels
    return pixels.astype(np.float64) * slope + intercept


# ---------------------------------------------------------------------------------------------------------
@dataclass
class Segment:
    """One segment of a DICOM SEG, as a 0/1 mask on its source series' grid."""

    number: int
    name: str
    label: str | None
    terms: list[str] = field(default_factory=list)
    source_series_uid: str = ""
    mask: sitk.Image | None = None


def seg_segments(seg: Dataset) -> list[Segment]:
    """The segments a SEG holds (names, labels, terms; no pixels yet)."""
    out = []
    for item in seg.get("SegmentSequence", []):
        label, terms = None, []
        types = item.get("SegmentedPropertyTypeCodeSequence", [])
        if types:
            label = _code(types[0])
            terms = [_code(m) for m in types[0].get("SegmentedPropertyTypeModifierCodeSequence", [])]
        out.append(
            Segment(
                number=int(item.SegmentNumber),
                name=str(item.get("SegmentLabel", "") or f"segment {item.SegmentNumber}"),
                label=label,
                terms=[t for t in terms if t],
                source_series_uid=seg_source_series(seg),
            )
        )
    return out


def _code(item: Dataset) -> str:
    value = item.get("CodeValue") or item.get("LongCodeValue") or ""
    return (
        str(value) if item.get("CodingSchemeDesignator") == LOCAL_SCHEME else str(item.get("CodeMeaning", ""))
    )


def seg_source_series(seg: Dataset) -> str:
    refs = seg.get("ReferencedSeriesSequence", [])
    return str(refs[0].SeriesInstanceUID) if refs else ""


def choose_segment(seg: Dataset, name: str | None, where: str) -> Segment:
    segments = seg_segments(seg)
    if not segments:
        raise CaseInputError(where, "the SEG holds no segment", "check the segmentation in the PACS")
    if name is None:
        return segments[0]
    for segment in segments:
        if segment.name == name or str(segment.number) == str(name):
            return segment
    names = ", ".join(s.name for s in segments)
    raise CaseInputError(where, f"no segment {name!r} in the SEG (has: {names})", "give one of these names")


def read_segment(seg: Dataset, source: Sequence[Dataset], name: str | None, where: str) -> Segment:
    """`name`'s segment (default: the first) of `seg` as a uint8 0/1 mask on the grid of `source`."""
    import highdicom as hd
    import SimpleITK as sitk

    segment = choose_segment(seg, name, where)
    slices = sort_slices(source, where)
    try:
        document = hd.seg.Segmentation.from_dataset(seg, copy=True)
        pixels = document.get_pixels_by_source_instance(
            source_sop_instance_uids=[str(d.SOPInstanceUID) for d in slices],
            segment_numbers=[segment.number],
            combine_segments=False,
            assert_missing_frames_are_empty=True,
        )
    except Exception as exc:  # noqa: BLE001 - highdicom raises many types for malformed SEGs
        raise CaseInputError(where, f"unreadable SEG ({_short(exc)})", "re-export the segmentation") from None
    array = (np.asarray(pixels)[..., 0] > 0).astype(np.uint8)
    if not array.any():
        raise CaseInputError(where, f"segment {segment.name!r} is empty", "draw the segment or pick another")
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(series_image(source, where))
    segment.mask = mask
    return segment


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text[:140] + "...") if len(text) > 140 else text or type(exc).__name__


# ---------------------------------------------------------------------------------------------------------
def sr_texts(sr: Dataset) -> tuple[str, str]:
    """(report, notes) from an SR: TEXT items named History are the notes, all other TEXT items the report."""
    report, notes = [], []

    def walk(items) -> None:
        for item in items:
            if item.get("ValueType") == "TEXT" and item.get("TextValue"):
                names = item.get("ConceptNameCodeSequence", [])
                code = str(names[0].get("CodeValue", "")) if names else ""
                (notes if code == HISTORY_CONCEPT else report).append(str(item.TextValue).strip())
            walk(item.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return "\n".join(t for t in report if t), "\n".join(t for t in notes if t)
