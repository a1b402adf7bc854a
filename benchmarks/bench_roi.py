"""ROI extraction time per case for a 256x256x40, 3-sequence study, against baselines in the same run.

    python benchmarks/bench_roi.py [--repeats 20] [--grid 64 64 32]

- ours: `extract_roi` (index-arithmetic crop, separable sparse resampling, subsampled percentiles cached per
  study; the first call per study pays the percentiles, later calls with other masks reuse them).
- baseline "sitk-roi-grid": full-volume percentiles (every voxel) + `sitk.Resample` of each whole sequence
  onto the ROI grid (linear).
- baseline "whole-volume": resample each whole sequence to the ROI's voxel size with sitk, then crop
  (the naive approach: resample everything, cut later).
Prints milliseconds per case (median) and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import SimpleITK as sitk
from SimilarCaseRetrievalLib.roi import RoiConfig, extract_roi
from SimilarCaseRetrievalLib.study import study_from_images

SEQUENCES = ["T2", "T1", "T1FS"]


def make_study(seed: int = 0):
    rng = np.random.default_rng(seed)
    z, y, x = 40, 256, 256
    zz, yy, xx = np.mgrid[0:z, 0:y, 0:x].astype(np.float32)
    body = ((xx - 128) / 110) ** 2 + ((yy - 128) / 90) ** 2 <= 1
    lesion = ((xx - 140) / 25) ** 2 + ((yy - 120) / 18) ** 2 + ((zz - 20) / 4) ** 2 <= 1
    images = {}
    for i, name in enumerate(SEQUENCES):
        array = rng.normal(10, 3, (z, y, x)).astype(np.float32)
        array[body] += 300 + 100 * i
        array[lesion] += 500 - 150 * i
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.7, 0.7, 4.0))
        images[name] = image
    mask = sitk.GetImageFromArray(lesion.astype(np.uint8))
    mask.CopyInformation(images["T2"])
    return study_from_images(images, reference="T2"), mask


def roi_grid(study, mask, config: RoiConfig) -> sitk.Image:
    """The same output grid as extract_roi (in-plane scale s, Z scale), as an sitk reference image."""
    ref = study.reference_image
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    bx, by, bz, sx, sy, sz = stats.GetBoundingBox(1)
    spacing = np.asarray(ref.GetSpacing())
    field = np.array([sx, sy, sz]) * spacing + 2 * config.margin_mm
    gx, gy, gz = config.grid
    s = max(field[0] / gx, field[1] / gy)
    sz_ = max(s, field[2] / gz)
    centre_index = [bx + (sx - 1) / 2, by + (sy - 1) / 2, bz + (sz - 1) / 2]
    centre = np.asarray(ref.TransformContinuousIndexToPhysicalPoint(centre_index))
    out_spacing = np.array([s, s, sz_])
    direction = np.asarray(ref.GetDirection()).reshape(3, 3)
    origin = centre - direction @ (out_spacing * (np.array(config.grid) - 1) / 2)
    grid = sitk.Image([int(g) for g in config.grid], sitk.sitkFloat32)
    grid.SetSpacing(out_spacing.tolist())
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(ref.GetDirection())
    return grid


def baseline_sitk_roi_grid(study, mask, config: RoiConfig) -> np.ndarray:
    grid = roi_grid(study, mask, config)
    channels = []
    for name in SEQUENCES:
        image = study.sequences[name]
        lo, hi = np.percentile(sitk.GetArrayViewFromImage(image), config.percentiles)
        out = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, float(lo))
        channels.append((sitk.GetArrayFromImage(out) - lo) / (hi - lo))
    mask_f = sitk.Cast(mask, sitk.sitkFloat32)
    channels.append(
        sitk.GetArrayFromImage(sitk.Resample(mask_f, grid, sitk.Transform(), sitk.sitkLinear, 0.0))
    )
    return np.stack(channels).astype(np.float32)


def baseline_whole_volume(study, mask, config: RoiConfig) -> np.ndarray:
    grid = roi_grid(study, mask, config)
    ref = study.reference_image
    spacing = np.asarray(grid.GetSpacing())
    size = np.ceil(np.asarray(ref.GetSize()) * np.asarray(ref.GetSpacing()) / spacing).astype(int)
    channels = []
    for name in [*SEQUENCES, None]:
        image = study.sequences[name] if name else sitk.Cast(mask, sitk.sitkFloat32)
        whole = sitk.Resample(
            image,
            size.tolist(),
            sitk.Transform(),
            sitk.sitkLinear,
            ref.GetOrigin(),
            spacing.tolist(),
            ref.GetDirection(),
        )
        start = np.round(np.asarray(whole.TransformPhysicalPointToContinuousIndex(grid.GetOrigin()))).astype(
            int
        )
        array = sitk.GetArrayViewFromImage(whole)
        gx, gy, gz = config.grid
        crop = np.zeros((gz, gy, gx), np.float32)
        zs, ys, xs = (slice(max(0, start[a]), max(0, start[a]) + g) for a, g in ((2, gz), (1, gy), (0, gx)))
        part = array[zs, ys, xs]
        crop[: part.shape[0], : part.shape[1], : part.shape[2]] = part
        if name:
            lo, hi = np.percentile(array, config.percentiles)
            crop = (crop - lo) / (hi - lo)
        channels.append(crop)
    return np.stack(channels)


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--grid", type=int, nargs=3, default=(64, 64, 32), metavar=("X", "Y", "Z"))
    args = parser.parse_args(argv)
    config = RoiConfig(grid=tuple(args.grid))
    study, mask = make_study()
    print(f"study: 3 sequences of {study.reference_image.GetSize()} voxels, ROI grid {config.grid}")

    def fresh() -> None:
        study.cache.clear()  # a new study: intensity percentiles computed again
        extract_roi(study, mask, SEQUENCES, config)

    first = timed(fresh, args.repeats)
    cached = timed(lambda: extract_roi(study, mask, SEQUENCES, config), args.repeats)
    sitk_grid = timed(lambda: baseline_sitk_roi_grid(study, mask, config), max(3, args.repeats // 4))
    whole = timed(lambda: baseline_whole_volume(study, mask, config), max(3, args.repeats // 4))

    ours = extract_roi(study, mask, SEQUENCES, config)
    reference = baseline_sitk_roi_grid(study, mask, config)
    agreement = float(np.corrcoef(ours[-1].ravel(), reference[-1].ravel())[0, 1])

    rows = [
        ("ours, new study (percentiles computed)", first),
        ("ours, same study, another mask (cached)", cached),
        ("baseline sitk.Resample onto ROI grid", sitk_grid),
        ("baseline whole-volume resample + crop", whole),
    ]
    base = statistics.median(whole)
    for label, times in rows:
        med = statistics.median(times)
        print(f"{label:42s} {med:8.1f} ms/case  (x{base / med:5.1f} faster than whole-volume)")
    print(f"mask channel correlation ours vs sitk baseline: {agreement:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
