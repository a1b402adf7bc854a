"""Acquisition effects: slice profile, coil bias field, Rician noise, scanner gain; and conversion to
SimpleITK images stored as int16 (as scanners export them)."""

from __future__ import annotations

import numpy as np

from .shapes import SEQUENCES, Grid

_BANK_SIZE = 1 << 22
_bank: list[np.ndarray] = []


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise: a random window of a fixed bank (drawing millions of normals per volume
    dominates the generator's time otherwise); fresh draws for volumes larger than the bank."""
    n = int(np.prod(shape))
    if n > _BANK_SIZE // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    if not _bank:
        _bank.append(np.random.default_rng(20240601).standard_normal(_BANK_SIZE, dtype=np.float32))
    start = int(rng.integers(0, _BANK_SIZE - n))
    return _bank[0][start : start + n].reshape(shape)


def acquire(
    image: np.ndarray, grid: Grid, rng: np.random.Generator, noise_level: float | None = None
) -> np.ndarray:
    """(3, Z, Y, X) ideal signal -> what a scanner shows: blurred through-plane, biased, noisy, rescaled.

    Stored values end up around 0-600 (fluid on T2 ~ 250-450), like an int16 scanner export.
    Returns the image and each sequence's scanner gain (divide by it to compare sequences).
    """
    out = np.empty_like(image)
    gains = {}
    x = grid.axis(0) / 120.0
    y = grid.axis(1) / 120.0
    z = grid.axis(2) / 60.0
    base_noise = rng.uniform(0.012, 0.035) if noise_level is None else noise_level
    # respiratory ghosting along the phase-encoding (antero-posterior) axis in some studies
    ghost = rng.uniform(0.02, 0.06) if rng.uniform() < 0.3 else 0.0
    ghost_shift = grid.shape[1] // int(rng.integers(2, 4))
    for c in range(image.shape[0]):
        vol = image[c]
        if vol.shape[0] >= 3:  # slice profile: a little partial volume from neighbouring slices
            vol = vol.copy()
            vol[1:-1] = 0.7 * image[c, 1:-1] + 0.15 * (image[c, :-2] + image[c, 2:])
        if ghost and SEQUENCES[c] != "T1FS":
            vol = vol + ghost * np.roll(vol, ghost_shift, axis=1)
        a = rng.normal(0, 0.12, 6)
        gain = rng.uniform(0.25, 0.5)
        gains[SEQUENCES[c]] = float(gain)
        # phased-array coils: brighter near the anterior and posterior body surface (separable field)
        bx = np.exp(a[0] * x + a[5] * x * x)[None, None, :]
        by = np.exp(a[1] * y + (0.12 + abs(a[4])) * y * y)[None, :, None]
        bz = (gain * np.exp(a[2] * z))[:, None, None]
        bxy = (bx * by * (1 + a[3] * x[None, None, :] * y[None, :, None])).astype(np.float32)
        signal = vol * bxy
        signal *= bz.astype(np.float32)
        sigma = np.float32(1000.0 * gain * base_noise * (1.4 if SEQUENCES[c] == "T1FS" else 1.0))
        real = signal + sigma * _gaussian(rng, signal.shape)
        imag = sigma * _gaussian(rng, signal.shape)
        np.sqrt(real * real + imag * imag, out=out[c])
    return out, gains


def write_nifti_gz(image, path) -> None:
    """Write a SimpleITK image as ``.nii.gz`` with fast (level 1), reproducible gzip."""
    import gzip
    import os
    import tempfile

    import SimpleITK as sitk

    path = str(path)
    fd, tmp = tempfile.mkstemp(suffix=".nii", dir=os.path.dirname(path) or ".")
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, False)
        with open(tmp, "rb") as f:
            raw = f.read()
    finally:
        os.unlink(tmp)
    with open(path, "wb") as f:
        f.write(gzip.compress(raw, compresslevel=1, mtime=0))


def to_sitk(volume: np.ndarray, grid: Grid, dtype: str = "int16"):
    """(Z, Y, X) array -> SimpleITK image on ``grid`` (identity direction, LPS)."""
    import SimpleITK as sitk

    if dtype == "int16":
        arr = np.clip(np.rint(volume), 0, 32767).astype(np.int16)
    elif dtype == "uint8":
        arr = volume.astype(np.uint8)
    else:
        arr = volume.astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in grid.spacing))
    img.SetOrigin(tuple(float(o) for o in grid.origin))
    return img
