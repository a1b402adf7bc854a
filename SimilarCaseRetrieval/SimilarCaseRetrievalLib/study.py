"""Studies: one or several sequences (T2, T1, T1FS...) resampled onto the reference sequence's grid.

Readers live in `volume_io.py` (volumes) and `segmentation.py` (masks); they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CaseInputError
from .geometry import as_3d, overlaps, resample_to
from .segmentation import check_mask, conform_mask, read_mask
from .volume_io import check_volume, read_volume, split_reference

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [
    "Study",
    "check_mask",
    "conform_mask",
    "parse_sequence_spec",
    "read_mask",
    "read_study",
    "read_volume",
    "study_from_images",
    "DEFAULT_REFERENCE",
]

DEFAULT_REFERENCE = "T2"
SINGLE_SEQUENCE = "image"


@dataclass
class Study:
    """Every sequence is a 3D float32 image on the reference sequence's grid."""

    sequences: dict[str, sitk.Image]
    reference: str
    paths: dict[str, Path] = field(default_factory=dict)
    # Per-sequence intensity statistics cached by roi.py (keyed by sequence and percentiles).
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def reference_image(self) -> sitk.Image:
        return self.sequences[self.reference]

    @property
    def is_2d(self) -> bool:
        return self.reference_image.GetSize()[2] == 1

    def require(self, names: list[str] | tuple[str, ...], where: str | Path | None = None) -> None:
        """Missing sequences -> CaseInputError naming what the study has."""
        missing = [n for n in names if n not in self.sequences]
        if missing:
            where = where or next(iter(self.paths.values()), None) or "study"
            raise CaseInputError(
                where,
                f"study lacks sequence(s) {', '.join(missing)} (it has {', '.join(self.sequences)})",
                "add the sequence to the study or use a model trained on the sequences it has",
            )


def parse_sequence_spec(spec: str, base_dir: Path | str) -> dict[str, Path]:
    """`"T2=a.nii.gz;T1=b.nii.gz"` -> {"T2": base/a.nii.gz, ...}; a bare `"a.png"` -> {"image": base/a.png}.

    Paths may carry volume options (`dwi.nii.gz#frame=2`, `dicom#series=UID`), kept in the returned Path.
    """
    base_dir = Path(base_dir)
    spec = (spec or "").strip()
    if not spec:
        raise CaseInputError(None, "empty image specification", "give a path, or 'T2=a.nii.gz;T1=b.nii.gz'")
    out: dict[str, Path] = {}
    parts = [p.strip() for p in spec.split(";") if p.strip()]
    for part in parts:
        name, sep, rel = part.partition("=")
        if not sep or "/" in name or "\\" in name or not name.strip() or "#" in name:
            if len(parts) > 1:
                raise CaseInputError(part, "sequence without a name", "write NAME=path for every sequence")
            name, rel = SINGLE_SEQUENCE, part
        name, rel = name.strip(), rel.strip()
        if name in out:
            raise CaseInputError(spec, f"sequence '{name}' given twice", "name each sequence once")
        path = Path(rel).expanduser()
        out[name] = path if path.is_absolute() else base_dir / path
    return out


def format_sequence_spec(paths: Mapping[str, str | Path]) -> str:
    """Inverse of `parse_sequence_spec` (paths written as given)."""
    if list(paths) == [SINGLE_SEQUENCE]:
        return str(paths[SINGLE_SEQUENCE])
    return ";".join(f"{name}={p}" for name, p in paths.items())


def _choose_reference(names: list[str], reference: str | None, where) -> str:
    if not names:
        raise CaseInputError(where, "study has no sequences", "give at least one image")
    if reference is None:
        return DEFAULT_REFERENCE if DEFAULT_REFERENCE in names else names[0]
    if reference not in names:
        raise CaseInputError(
            where,
            f"reference sequence '{reference}' not in the study ({', '.join(names)})",
            "choose one of those",
        )
    return reference


def read_study(paths: Mapping[str, Path | str], reference: str | None = None) -> Study:
    """Read every sequence and resample (linear, by physical space) onto the reference sequence's grid."""
    names = list(paths)
    reference = _choose_reference(names, reference, next(iter(paths.values()), None))
    images = {name: read_volume(paths[name]) for name in names}
    study = _conform(images, reference, {n: Path(str(p)) for n, p in paths.items()})
    return study


def study_from_images(images: Mapping[str, sitk.Image], reference: str | None = None) -> Study:
    """An in-memory study (e.g. from Slicer nodes): 2D -> one-slice 3D, float32, resampled to the reference."""
    import SimpleITK as sitk

    names = list(images)
    reference = _choose_reference(names, reference, "study")
    conformed = {}
    for name, image in images.items():
        if image.GetDimension() not in (2, 3) or image.GetNumberOfComponentsPerPixel() != 1:
            raise CaseInputError(
                f"sequence {name}", "expected a scalar 2D or 3D image", "choose one frame / one component"
            )
        image = sitk.Cast(as_3d(image), sitk.sitkFloat32)
        check_volume(image, f"sequence {name}")
        conformed[name] = image
    return _conform(conformed, reference, {})


def _conform(images: dict[str, sitk.Image], reference: str, paths: dict[str, Path]) -> Study:
    ref = images[reference]
    out = {}
    for name, image in images.items():
        if name != reference:
            where = split_reference(paths[name])[0] if name in paths else f"sequence {name}"
            if image.GetSize()[2] == 1 < ref.GetSize()[2]:
                raise CaseInputError(
                    where,
                    f"sequence {name} is a single slice (2D) but the reference sequence {reference} is 3D",
                    "give the 3D volume of every sequence of the study",
                )
            if not overlaps(image, ref):
                raise CaseInputError(
                    where,
                    f"sequence {name} does not overlap the reference sequence {reference} in physical space",
                    "check both belong to the same study (origin/orientation)",
                )
            image = resample_to(image, ref)
        out[name] = image
    return Study(sequences=out, reference=reference, paths=paths)
