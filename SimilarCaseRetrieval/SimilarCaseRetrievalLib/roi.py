"""Region of interest: crop around the segment, resample to a fixed grid, normalise, append the mask.

Geometry (documented choice):
- The output axes follow the image axes of the reference sequence (flipped where the axis points against
  L/P/S, so that every ROI has the same handedness); X, Y are the acquisition plane.
- In-plane, one physical scale `s` (mm per output voxel) for X and Y: the lesion's bounding box plus
  `margin_mm` on each side fits the larger of the two, centred on the box; the lesion's aspect is kept.
- Z (slices; often 3-6 mm in MRI): the same scale `s` when the lesion box plus margins fits in `grid[2]`
  voxels at that scale (isotropic, shape kept); otherwise a coarser Z scale so that the whole lesion fits
  (the lesion is then flattened in Z only). Grid Z = 1 takes the lesion's central plane.
- Resampling is separable: per axis a linear-interpolation (tent) filter, widened to the output spacing when
  downsampling (anti-aliasing), applied to the cropped voxels only. Samples outside the volume read as
  background (0 after normalisation).

Intensities (MRI has no absolute units): per sequence, `(x - p_lo) / (p_hi - p_lo)` with the `percentiles`
computed over the non-background voxels of the whole volume (voxels above min + 10 % of the min..p99 range),
estimated on a regular subsample; clipped to [-1, 2]. Invariant to affine intensity changes.
The mask channel is the resampled 0/1 mask (soft at the border), the last channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError
from .segmentation import conform_mask

if TYPE_CHECKING:
    import SimpleITK as sitk

    from .study import Study

_SUBSAMPLE = 200_000  # voxels used to estimate the percentiles
_BACKGROUND_FRACTION = 0.10
_CLIP = (-1.0, 2.0)


GRID_3D = (64, 64, 32)
GRID_2D = (64, 64, 1)


def default_grid(study: Study) -> tuple[int, int, int]:
    """The ROI grid (X, Y, Z) for a study when none is given: one slice for 2D images, else the 3D default.

    Used by `train` and `evaluate` alike, so both read a 2D archive the same way."""
    return GRID_2D if study.reference_image.GetSize()[2] == 1 else GRID_3D


@dataclass(frozen=True)
class RoiConfig:
    grid: tuple[int, int, int] = GRID_3D  # X, Y, Z voxels; Z = 1 for 2D images
    margin_mm: float = 10.0
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise CaseInputError(
                "RoiConfig", f"grid {self.grid} is not three positive sizes", "use e.g. (64, 64, 32)"
            )
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise CaseInputError(
                "RoiConfig", f"percentiles {self.percentiles} invalid", "use 0 <= low < high <= 100"
            )
        if self.margin_mm < 0:
            raise CaseInputError("RoiConfig", "negative margin", "use margin_mm >= 0")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, Y, X), the spatial shape of the ROI array."""
        return self.grid[2], self.grid[1], self.grid[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        return {
            "grid": list(d["grid"]),
            "margin_mm": float(d["margin_mm"]),
            "percentiles": list(d["percentiles"]),
        }

    @classmethod
    def from_dict(cls, d: dict) -> RoiConfig:
        return cls(
            grid=tuple(d.get("grid", cls.grid)),
            margin_mm=float(d.get("margin_mm", cls.margin_mm)),
            percentiles=tuple(d.get("percentiles", cls.percentiles)),
        )


def extract_roi(study: Study, mask: sitk.Image, sequences: Sequence[str], config: RoiConfig) -> np.ndarray:
    """(len(sequences) + 1, Z, Y, X) float32 ROI; last channel the mask. Missing sequence -> CaseInputError."""
    import SimpleITK as sitk

    sequences = list(sequences)
    study.require(sequences)
    reference = study.reference_image
    if config.grid[2] > 1 and reference.GetSize()[2] == 1:
        raise CaseInputError(
            study.paths.get(study.reference, f"sequence {study.reference}"),
            f"a 2D image (one slice) for a 3D model (its ROI is {config.grid[2]} slices deep)",
            "give the 3D volume of every sequence, or use a model trained on 2D images",
        )
    mask = conform_mask(mask, reference, "mask")
    mask_array = sitk.GetArrayViewFromImage(mask)
    box = _bounding_box(mask_array)  # ((z0, z1), (y0, y1), (x0, x1)) inclusive
    spacing_zyx = np.asarray(reference.GetSpacing(), dtype=float)[::-1]
    plan = _plan_axes(box, spacing_zyx, mask_array.shape, config)
    flips = _flipped_axes(reference)

    out = np.empty((len(sequences) + 1, *config.shape), dtype=np.float32)
    crop = tuple(slice(a.start, a.stop) for a in plan)
    for c, name in enumerate(sequences):
        lo, hi = intensity_range(study, name, config.percentiles)
        values = sitk.GetArrayViewFromImage(study.sequences[name])[crop].astype(np.float32)
        values -= lo
        values *= 1.0 / (hi - lo)
        np.clip(values, *_CLIP, out=values)
        out[c] = _apply(values, plan)
    out[-1] = _apply(mask_array[crop].astype(np.float32), plan)
    np.clip(out[-1], 0.0, 1.0, out=out[-1])
    if flips:
        out = np.ascontiguousarray(np.flip(out, axis=[1 + a for a in flips]))
    return out


def intensity_range(study: Study, name: str, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Robust (low, high) intensities of a sequence over its non-background voxels (cached on the study)."""
    key = ("intensity_range", name, tuple(percentiles))
    cached = study.cache.get(key)
    if cached is None:
        cached = robust_range(
            study.sequences[name], percentiles, where=study.paths.get(name, f"sequence {name}")
        )
        study.cache[key] = cached
    return cached


def robust_range(image: sitk.Image, percentiles: tuple[float, float], where=None) -> tuple[float, float]:
    """Percentiles over non-background voxels of a regular subsample of the whole volume."""
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)
    step = max(1, int(np.ceil((values.size / _SUBSAMPLE) ** (1 / 3))))
    sample = values[::step, ::step, ::step].ravel().astype(np.float32)
    if sample.size < 1000:
        sample = values.ravel().astype(np.float32)
    vmin = float(sample.min())
    p99 = float(np.percentile(sample, 99.0))
    body = sample[sample > vmin + _BACKGROUND_FRACTION * (p99 - vmin)] if p99 > vmin else sample
    if body.size < 0.01 * sample.size or body.size < 16:
        body = sample
    lo, hi = (float(v) for v in np.percentile(body, percentiles))
    if hi <= lo:
        lo, hi = float(body.min()), float(body.max())
    if hi <= lo:
        lo, hi = vmin, float(sample.max())
    if hi <= lo:
        raise CaseInputError(where, "image is constant", "export the real image data")
    return lo, hi


class _AxisPlan:
    """Cropped input range [start, stop) of one axis and its sparse resampling taps.

    Output voxel i is `sum_k weights[i, k] * input[start + index[i, k]]` (indices relative to the crop).
    """

    def __init__(self, start: int, stop: int, dense: np.ndarray):
        self.start, self.stop = start, stop
        nonzero = dense != 0
        has = nonzero.any(axis=1)
        first = np.where(has, nonzero.argmax(axis=1), 0)
        last = np.where(has, dense.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1), 0)
        taps = int(max(1, (last - first + 1).max()))
        index = first[:, None] + np.arange(taps)[None, :]
        valid = index <= last[:, None]
        index = np.minimum(index, dense.shape[1] - 1)
        self.index = index
        self.weights = np.where(valid, np.take_along_axis(dense, index, axis=1), 0.0).astype(np.float32)


def _bounding_box(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    if not mask.any():
        raise CaseInputError("mask", "segment is empty (no voxels)", "draw the segment or choose another one")
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append((int(hits[0]), int(hits[-1])))
    return tuple(box)


@dataclass(frozen=True)
class RoiSampling:
    """Where each ROI voxel was sampled in its volume: per axis (Z, Y, X) the continuous voxel index of each
    output position (before the flips), and the output axes flipped afterwards (see `extract_roi`)."""

    positions: tuple[np.ndarray, np.ndarray, np.ndarray]
    flips: tuple[int, ...]
    volume_shape: tuple[int, int, int]  # (Z, Y, X) of the reference volume


def roi_sampling(reference: sitk.Image, mask: sitk.Image, config: RoiConfig) -> RoiSampling:
    """The geometry `extract_roi` uses for this mask (to map ROI-space values back into the volume)."""
    import SimpleITK as sitk

    mask = conform_mask(mask, reference, "mask")
    mask_array = sitk.GetArrayViewFromImage(mask)
    box = _bounding_box(mask_array)
    spacing_zyx = np.asarray(reference.GetSpacing(), dtype=float)[::-1]
    positions = tuple(p for p, _ in _axis_positions(box, spacing_zyx, config))
    return RoiSampling(positions, tuple(_flipped_axes(reference)), tuple(mask_array.shape))  # type: ignore[arg-type]


def _axis_positions(box, spacing_zyx: np.ndarray, config: RoiConfig) -> list[tuple[np.ndarray, float]]:
    """Per axis (Z, Y, X): output positions in input continuous-index coordinates and the filter step."""
    gz, gy, gx = config.shape
    extent = np.array([(hi - lo + 1) * sp for (lo, hi), sp in zip(box, spacing_zyx, strict=True)])  # mm
    field = extent + 2 * config.margin_mm
    scale_xy = max(field[2] / gx, field[1] / gy, 1e-6)
    scale_z = scale_xy if gz == 1 else max(scale_xy, field[0] / gz)
    scales = (scale_z, scale_xy, scale_xy)
    out = []
    for axis, n_out in enumerate((gz, gy, gx)):
        lo, hi = box[axis]
        centre = 0.5 * (lo + hi)
        step = scales[axis] / spacing_zyx[axis]  # input voxels per output voxel
        positions = centre + (np.arange(n_out) - 0.5 * (n_out - 1)) * step
        out.append((positions, step if n_out > 1 else 1.0))
    return out


def _plan_axes(box, spacing_zyx: np.ndarray, shape_zyx, config: RoiConfig) -> list[_AxisPlan]:
    """Output sampling per axis (Z, Y, X) in input continuous-index coordinates."""
    return [
        _axis_weights(positions, step, shape_zyx[axis])
        for axis, (positions, step) in enumerate(_axis_positions(box, spacing_zyx, config))
    ]


def _axis_weights(positions: np.ndarray, step: float, n_in: int) -> _AxisPlan:
    """Tent filter of half-width max(1, step) at each output position, over the input voxels it touches."""
    half = max(1.0, step)
    start = int(np.clip(np.floor(positions.min() - half), 0, n_in - 1))
    stop = int(np.clip(np.ceil(positions.max() + half) + 1, start + 1, n_in))
    idx = np.arange(start, stop, dtype=float)
    weights = np.clip(1.0 - np.abs(idx[None, :] - positions[:, None]) / half, 0.0, None)
    inside = (positions >= -0.5) & (positions <= n_in - 0.5)
    total = weights.sum(axis=1)
    ok = inside & (total > 0)
    # Inside the volume but between the last voxel centre and its border: nearest voxel.
    for i in np.flatnonzero(inside & (total <= 0)):
        weights[i, int(np.clip(round(positions[i]), start, stop - 1)) - start] = 1.0
        ok[i] = True
    weights[~ok] = 0.0
    total = weights.sum(axis=1)
    weights[ok] /= total[ok, None]
    return _AxisPlan(start, stop, weights.astype(np.float32))


def _apply(values: np.ndarray, plan: list[_AxisPlan]) -> np.ndarray:
    """Separable resampling of a cropped (z, y, x) array to the output grid: X, then Y, then Z.

    Sparse taps (a handful per output voxel) rather than dense matrix products: no BLAS threads, whose
    start-up costs tens of milliseconds on a busy machine.
    """
    for axis in (2, 1, 0):
        p = plan[axis]
        shape = [1, 1, 1]
        shape[axis] = p.weights.shape[0]
        out = None
        for k in range(p.index.shape[1]):
            term = np.take(values, p.index[:, k], axis=axis)
            term *= p.weights[:, k].reshape(shape)
            out = term if out is None else out.__iadd__(term)
        values = out
    return values


def _flipped_axes(reference: sitk.Image) -> list[int]:
    """Output axes (0=Z, 1=Y, 2=X) whose image axis points against its dominant L/P/S direction."""
    direction = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    flips = []
    for image_axis in range(3):  # columns: i (X), j (Y), k (Z)
        column = direction[:, image_axis]
        if column[np.argmax(np.abs(column))] < 0:
            flips.append(2 - image_axis)
    return sorted(flips)
