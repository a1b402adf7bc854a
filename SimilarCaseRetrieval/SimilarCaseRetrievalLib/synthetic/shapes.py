"""Grid, soft (partial-volume) shapes and a painter's canvas for the synthetic phantoms.

Geometry is in millimetres (LPS: +x patient left, +y posterior, +z superior) so the same case renders
on any grid. Arrays are (Z, Y, X); images on the canvas are (3, Z, Y, X) for T2, T1, T1FS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CaseInputError

SEQUENCES: tuple[str, ...] = ("T2", "T1", "T1FS")
FOV_MM: tuple[float, float, float] = (240.0, 240.0, 96.0)
PRISM_RADIUS = 300.0  # a shape with a z radius this long is treated as an elliptic cylinder along z
SIZES: dict[str, tuple[int, int, int]] = {
    "default": (160, 160, 24),
    "tiny": (48, 48, 8),
    "small": (96, 96, 16),
}


@dataclass(frozen=True)
class Grid:
    """A voxel grid (X, Y, Z) covering ``FOV_MM`` centred on the origin."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @classmethod
    def named(cls, size: str | tuple[int, int, int]) -> Grid:
        """``"default"`` (160x160x24, 1.5x1.5x4 mm), ``"tiny"`` (48x48x8), ``"small"`` or an (X, Y, Z) tuple."""
        if isinstance(size, str):
            if size not in SIZES:
                raise CaseInputError(
                    "size", f"unknown grid size {size!r}", f"use one of {', '.join(SIZES)} or (X, Y, Z)"
                )
            dims = SIZES[size]
        else:
            try:
                dims = tuple(int(v) for v in size)
            except (TypeError, ValueError):
                dims = ()
            if len(dims) != 3 or min(dims) < 4:
                raise CaseInputError("size", f"bad grid size {size!r}", "give three integers >= 4 (X, Y, Z)")
        spacing = tuple(float(f / n) for f, n in zip(FOV_MM, dims, strict=True))
        return cls(dims, spacing)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """numpy shape (Z, Y, X)."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def origin(self) -> tuple[float, float, float]:
        return tuple(-(n - 1) / 2.0 * s for n, s in zip(self.size, self.spacing, strict=True))  # type: ignore[return-value]

    def axis(self, i: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Physical coordinates (mm) of voxel centres along axis i (0=x, 1=y, 2=z)."""
        hi = self.size[i] if hi is None else hi
        return (self.origin[i] + np.arange(lo, hi) * self.spacing[i]).astype(np.float32)

    def box(self, center, half_extent) -> tuple[slice, slice, slice] | None:
        """Voxel slices (z, y, x) covering centre +- half_extent (mm); None when outside the grid."""
        out = []
        for i in (2, 1, 0):
            lo = int(np.floor((center[i] - half_extent[i] - self.origin[i]) / self.spacing[i])) - 1
            hi = int(np.ceil((center[i] + half_extent[i] - self.origin[i]) / self.spacing[i])) + 2
            lo, hi = max(lo, 0), min(hi, self.size[i])
            if hi <= lo:
                return None
            out.append(slice(lo, hi))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (x, y, z) mm coordinates for a box: shapes (1,1,X), (1,Y,1), (Z,1,1)."""
        zs, ys, xs = box
        x = self.axis(0, xs.start, xs.stop)[None, None, :]
        y = self.axis(1, ys.start, ys.stop)[None, :, None]
        z = self.axis(2, zs.start, zs.stop)[:, None, None]
        return x, y, z

    @property
    def edge_mm(self) -> float:
        """Width of the partial-volume ramp: one in-plane voxel."""
        return float(min(self.spacing[0], self.spacing[1]))


def single_threaded_blas():
    """Context manager limiting BLAS to one thread: the small matrix products here are ~1000x slower
    when a multi-threaded BLAS competes for a busy CPU. A no-op without ``threadpoolctl``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1)


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (radians) about z (yaw), y (pitch), x (roll)."""
    cz, sz, cy, sy, cx, sx = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return (rz @ ry @ rx).astype(np.float32)


@dataclass
class Bumps:
    """Smooth radial perturbation of a shape: sum of ``amp * cos(k . n + phase)`` over random directions."""

    freqs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))  # (K, 3)
    amps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, n: int = 4, max_freq: float = 3.0) -> Bumps:
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        freqs = dirs * rng.uniform(1.0, max_freq, size=(n, 1))
        amps = amplitude * rng.uniform(0.4, 1.0, size=n) / np.sqrt(n)
        return cls(
            freqs.astype(np.float32), amps.astype(np.float32), rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        )


@dataclass
class Ellipsoid:
    """An (optionally bumpy, rotated) ellipsoid in mm."""

    center: np.ndarray  # (3,) x, y, z
    radii: np.ndarray  # (3,)
    rot: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.float32))
    bumps: Bumps | None = None

    @property
    def reach(self) -> np.ndarray:
        """Half extent of an axis-aligned box that holds the shape, bumps included."""
        extra = 1.0 + (float(np.abs(self.bumps.amps).sum()) if self.bumps is not None else 0.0)
        r = float(np.max(self.radii)) * extra
        return np.array([r, r, r], np.float32)


@dataclass
class ShapeField:
    """A rendered shape inside a box: signed distance (mm, <0 inside), local normalised coords."""

    box: tuple[slice, slice, slice]
    dist: np.ndarray  # (bz, by, bx) approx signed distance in mm
    local: tuple[np.ndarray, np.ndarray, np.ndarray]  # coordinates / radii in the shape's frame (full arrays)
    world: tuple[np.ndarray, np.ndarray, np.ndarray]  # broadcastable mm coordinates

    def occupancy(self, grid: Grid, inset_mm: float = 0.0) -> np.ndarray:
        """Partial-volume occupancy in [0, 1] of the shape shrunk by ``inset_mm``."""
        w = grid.edge_mm
        return np.clip(0.5 - (self.dist + inset_mm) / w, 0.0, 1.0).astype(np.float32)


def render(grid: Grid, shape: Ellipsoid, margin_mm: float = 0.0) -> ShapeField | None:
    """Signed-distance field of ``shape`` over its bounding box (None when off the grid)."""
    prism = bool(shape.radii[2] >= PRISM_RADIUS and np.allclose(shape.rot[2], (0, 0, 1)))
    reach = shape.reach
    if prism:  # z-invariant elliptic cylinder: compute one slice, broadcast along z
        reach = np.array([shape.radii[0], shape.radii[1], 0.0]) * (reach[0] / float(np.max(shape.radii)))
    box = grid.box(shape.center, reach + margin_mm + 2 * max(grid.spacing))
    if box is None:
        return None
    if prism:
        box = (slice(0, grid.shape[0]), box[1], box[2])
    x, y, z = grid.coords(box)
    if prism:
        z = np.full((1, 1, 1), shape.center[2], np.float32)
    dx, dy, dz = x - shape.center[0], y - shape.center[1], z - shape.center[2]
    r = shape.rot  # local = R^T (p - c)
    lx = (dx * r[0, 0] + dy * r[1, 0] + dz * r[2, 0]) / shape.radii[0]
    ly = (dx * r[0, 1] + dy * r[1, 1] + dz * r[2, 1]) / shape.radii[1]
    lz = (dx * r[0, 2] + dy * r[1, 2] + dz * r[2, 2]) / shape.radii[2]
    rho = np.sqrt(lx * lx + ly * ly + lz * lz) + 1e-6
    # |grad rho| for the first-order distance (rho - 1) / |grad rho|
    g = np.sqrt((lx / shape.radii[0]) ** 2 + (ly / shape.radii[1]) ** 2 + (lz / shape.radii[2]) ** 2) / rho
    if shape.bumps is not None and len(shape.bumps.amps):
        nx, ny, nz = lx / rho, ly / rho, lz / rho
        pert = np.zeros_like(rho)
        for (fx, fy, fz), a, p in zip(shape.bumps.freqs, shape.bumps.amps, shape.bumps.phases, strict=True):
            pert += a * np.cos(fx * nx + fy * ny + fz * nz + p)
        rho = rho / np.maximum(1.0 + pert, 0.3)
    dist = (rho - 1.0) / np.maximum(g, 1e-6)
    return ShapeField(box, dist.astype(np.float32), (lx, ly, lz), (x, y, z))


def smooth_field(grid: Grid, rng: np.random.Generator, n_waves: int = 6, scale_mm: float = 40.0):
    """A smooth random field of unit standard deviation, as a function of broadcastable (x, y, z) in mm.

    A sum of separable products of cosines (each product is four plane waves), so evaluating it costs
    two multiplications per voxel and term.
    """
    n_terms = max(1, (n_waves + 1) // 2)
    k = (rng.normal(size=(n_terms, 3)) / scale_mm).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n_terms, 3)).astype(np.float32)
    norm = np.float32(np.sqrt(8.0 / n_terms))

    def evaluate(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), np.float32)
        for (kx, ky, kz), (px, py, pz) in zip(k, phase, strict=True):
            out += np.cos(kx * x + px) * np.cos(ky * y + py) * np.cos(kz * z + pz)
        return out * norm

    return evaluate


def noise_texture(
    grid: Grid, box: tuple[slice, slice, slice], rng: np.random.Generator, scale_mm: float
) -> np.ndarray:
    """Isotropic smooth noise (unit std, feature size ~``scale_mm``) over a box.

    Coarse white noise (pitch ``scale_mm / 2``) interpolated with a Gaussian kernel, axis by axis as small
    matrix products: cheap (run it under ``single_threaded_blas``), smooth, no grid-aligned pattern.
    """
    shape = tuple(s.stop - s.start for s in box)
    spacing = (grid.spacing[2], grid.spacing[1], grid.spacing[0])
    weights = []
    for n, sp in zip(shape, spacing, strict=True):
        pitch = max(scale_mm / 2.0, sp)
        m = int(np.ceil(n * sp / pitch)) + 4
        pos = np.arange(n) * sp / pitch + 2.0
        w = np.exp(-0.5 * ((pos[:, None] - np.arange(m)[None, :]) / 0.9) ** 2)
        weights.append((w / np.sqrt((w * w).sum(axis=1, keepdims=True))).astype(np.float32))
    coarse = rng.standard_normal(tuple(w.shape[1] for w in weights)).astype(np.float32)
    # einsum, not tensordot: these products are tiny and a multi-threaded BLAS only adds contention
    field = np.tensordot(weights[0], coarse, axes=(1, 0))  # (n0, m1, m2)
    field = np.tensordot(field, weights[1], axes=(1, 1))  # (n0, m2, n1)
    field = np.tensordot(field, weights[2], axes=(1, 1))  # (n0, n1, n2)
    return field.astype(np.float32)


class Canvas:
    """Multi-sequence image under construction: paint tissues in order (later paint covers earlier)."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.image = np.zeros((len(SEQUENCES),) + grid.shape, np.float32)
        self.lesion = np.zeros(grid.shape, np.float32)

    def paint(self, box, occ: np.ndarray, values) -> None:
        """Blend ``values`` ((3,) or (3, bz, by, bx)) into the box with weights ``occ``."""
        values = np.asarray(values, np.float32)
        if values.ndim == 1:
            values = values[:, None, None, None]
        sub = self.image[(slice(None),) + tuple(box)]
        sub += occ[None] * (values - sub)

    def paint_shape(self, sf: ShapeField, values, inset_mm: float = 0.0, weight: np.ndarray | None = None):
        occ = sf.occupancy(self.grid, inset_mm)
        if weight is not None:
            occ = occ * weight
        self.paint(sf.box, occ, values)
        return occ
