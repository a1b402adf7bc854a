"""Gzipped NIfTI-1 volumes (``.nii.gz``, the archive's most common format): a checked, faster read.

ITK inflates ``.nii.gz`` through a small-buffer gz reader (7-12 ms for a 160x160x24 sequence where Python's
zlib takes 5 ms) and zero-fills a file whose gzip stream or voxel data ends early, without an error. Here the
file is inflated once; a cut-short stream or voxel block is a one-line `CaseInputError`; for the plain case
(NIfTI-1, little endian, 3D scalar integer or float voxels, no intensity scaling) the geometry comes from ITK's
own header reading and the voxels from the inflated bytes. Everything else returns None and goes to ITK.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError

if TYPE_CHECKING:
    import SimpleITK as sitk

# NIfTI-1 datatype code -> little-endian numpy dtype (complex, RGB and 128-bit types are left to ITK)
_DTYPES = {2: "u1", 4: "<i2", 8: "<i4", 16: "<f4", 64: "<f8", 256: "i1", 512: "<u2", 768: "<u4"}
_REEXPORT = "copy or export the volume again"


@dataclass(frozen=True)
class _Header:
    dim: tuple[int, ...]  # dim[0] = number of dimensions, then the sizes
    datatype: int
    bitpix: int
    offset: int
    scaled: bool

    @property
    def voxel_bytes(self) -> int:
        return int(np.prod(self.dim[1 : self.dim[0] + 1], dtype=np.int64)) * self.bitpix // 8

    @property
    def plain(self) -> bool:
        return self.dim[0] == 3 and min(self.dim[1:4]) >= 1 and self.datatype in _DTYPES and not self.scaled


def read_nifti_gz(path: Path) -> sitk.Image | None:
    """The volume of a plain ``.nii.gz``; None for anything ITK should read; CaseInputError when cut short."""
    import SimpleITK as sitk

    if not path.name.lower().endswith(".nii.gz"):
        return None
    compressed = path.read_bytes()
    if compressed[:2] != b"\x1f\x8b":
        return None  # not gzip despite the name: ITK decides
    try:
        data = gzip.decompress(compressed)
    except EOFError:
        raise CaseInputError(path, "truncated gzip data (the file ends early)", _REEXPORT) from None
    except (OSError, zlib.error):
        raise CaseInputError(
            path, "cannot read the file (corrupt gzip data)", "re-export the volume"
        ) from None
    header = _read_header(data)
    if header is None:
        return None
    if len(data) < header.offset + header.voxel_bytes:
        have = max(0, len(data) - header.offset)
        raise CaseInputError(path, f"voxel data truncated ({have} of {header.voxel_bytes} bytes)", _REEXPORT)
    if not header.plain:
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("NiftiImageIO")
    shape = tuple(header.dim[1:4])
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or reader.GetSize() != shape:
        return None
    dtype = np.dtype(_DTYPES[header.datatype])
    voxels = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=header.offset)
    image = sitk.GetImageFromArray(voxels.reshape(shape[::-1]).astype(dtype.newbyteorder("="), copy=False))
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    return image


def _read_header(data: bytes) -> _Header | None:
    """The fields we use of a little-endian NIfTI-1 single-file header, else None."""
    if len(data) < 352 or struct.unpack_from("<i", data, 0)[0] != 348 or data[344:348] != b"n+1\x00":
        return None
    dim = struct.unpack_from("<8h", data, 40)
    datatype, bitpix = struct.unpack_from("<2h", data, 70)
    vox_offset, slope, inter = struct.unpack_from("<3f", data, 108)
    if not 1 <= dim[0] <= 7 or min(dim[1 : dim[0] + 1]) < 0 or bitpix <= 0:
        return None
    scaled = slope not in (0.0, 1.0) or inter != 0.0  # ITK applies the scaling
    return _Header(tuple(int(d) for d in dim), int(datatype), int(bitpix), int(vox_offset), scaled)
