"""ROI-grid maps back into a volume's own voxel space (the inverse of `roi.extract_roi`'s sampling).

`roi.roi_sampling` gives, per axis, the continuous voxel index at which each ROI voxel was sampled; a map
value is spread back by linear interpolation between those sample positions (separable, per axis), over
the volume voxels the ROI covers. Outside the ROI field of view the map is 0. A one-slice ROI (grid Z = 1)
covers the one plane it was read from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

    from ..roi import RoiConfig, RoiSampling
    from ..study import Study


@dataclass
class VolumeMap:
    """A map over a box of the reference volume: ``values`` (z, y, x) starting at voxel index ``start``."""

    values: np.ndarray  # float32 in [0, 1]
    start: tuple[int, int, int]  # (z, y, x) index of values[0, 0, 0] in the volume
    volume_shape: tuple[int, int, int]  # (Z, Y, X) of the reference volume

    def dense(self) -> np.ndarray:
        """The map on the whole volume grid (zeros outside the box)."""
        out = np.zeros(self.volume_shape, np.float32)
        z, y, x = self.start
        dz, dy, dx = self.values.shape
        out[z : z + dz, y : y + dy, x : x + dx] = self.values
        return out

    def to_image(self, reference: sitk.Image) -> sitk.Image:
        """A float32 image of the box with the reference's spacing and direction (origin moved to the box)."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(np.ascontiguousarray(self.values, np.float32))
        img.SetSpacing(reference.GetSpacing())
        img.SetDirection(reference.GetDirection())
        z, y, x = self.start
        img.SetOrigin(reference.TransformIndexToPhysicalPoint((int(x), int(y), int(z))))
        return img


def _axis_matrix(positions: np.ndarray, n_in: int) -> tuple[int, np.ndarray]:
    """(first volume index, weights (n_volume_rows, n_roi)) of one axis."""
    positions = np.asarray(positions, float)
    n = len(positions)
    if n == 1:
        centre = int(np.clip(round(float(positions[0])), 0, n_in - 1))
        return centre, np.ones((1, 1), np.float32)
    step = float(positions[1] - positions[0])
    lo, hi = positions[0] - 0.5 * step, positions[-1] + 0.5 * step
    first = int(np.clip(np.ceil(lo), 0, n_in - 1))
    last = int(np.clip(np.floor(hi), first, n_in - 1))
    v = np.arange(first, last + 1, dtype=float)
    t = np.clip((v - positions[0]) / step, 0.0, n - 1.0)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = t - i0
    w = np.zeros((len(v), n), np.float32)
    rows = np.arange(len(v))
    np.add.at(w, (rows, i0), 1.0 - f)
    np.add.at(w, (rows, i1), f)
    inside = (v >= lo) & (v <= hi)
    w[~inside] = 0.0
    return first, w


def roi_map_to_volume(roi_map: np.ndarray, sampling: RoiSampling) -> VolumeMap:
    """A (Z, Y, X) ROI-grid map -> `VolumeMap` in the reference volume's voxel space."""
    m = np.asarray(roi_map, np.float32)
    if sampling.flips:
        m = np.flip(m, axis=list(sampling.flips))  # undo the handedness flips of extract_roi
    starts = []
    for axis in range(3):
        first, w = _axis_matrix(sampling.positions[axis], sampling.volume_shape[axis])
        m = np.moveaxis(np.tensordot(w, m, axes=([1], [axis])), 0, axis)
        starts.append(first)
    return VolumeMap(np.clip(m, 0.0, 1.0).astype(np.float32), tuple(starts), tuple(sampling.volume_shape))  # type: ignore[arg-type]


def map_to_volume(roi_map: np.ndarray, study: Study, mask: sitk.Image, config: RoiConfig) -> VolumeMap:
    """Resample a map computed on ``extract_roi(study, mask, ..., config)`` into the study's reference space."""
    from ..roi import roi_sampling

    return roi_map_to_volume(roi_map, roi_sampling(study.reference_image, mask, config))
