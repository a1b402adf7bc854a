"""Gzipped NIfTI-1 volumes (``.nii.gz``): catch a file that ends early before ITK reads it.

ITK zero-fills a ``.nii.gz`` whose gzip stream or voxel block ends early (a copy cut short), without an error.
The check is cheap: the header comes from inflating the first bytes only, and the gzip trailer's ISIZE (the
uncompressed length mod 2**32) must equal the header's voxel offset plus voxel bytes; only when it does not (a
cut-short file, or a multi-member gzip whose trailer describes its last member) is the whole file inflated to
decide. Reading itself stays with ITK (a faster zlib read of the voxels was tried and dropped: calling ITK's
header reader from the reader threads aborted the process in 2 of ~14 test runs).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import CaseInputError

_REEXPORT = "copy or export the volume again"
_HEADER_BYTES = 352
_HEAD_READ = 65536  # compressed bytes read to inflate the 352-byte header (a few hundred suffice)


def check_nifti_gz(path: Path) -> None:
    """CaseInputError when a ``.nii.gz`` NIfTI-1 file is truncated or its gzip data is corrupt; else nothing."""
    if not path.name.lower().endswith(".nii.gz"):
        return
    start, trailer = _head_and_trailer(path)
    if start[:2] != b"\x1f\x8b" or len(trailer) < 4:
        return  # not gzip despite the name: ITK decides
    try:
        head = zlib.decompressobj(31).decompress(start, _HEADER_BYTES)
    except zlib.error:
        raise CaseInputError(
            path, "cannot read the file (corrupt gzip data)", "re-export the volume"
        ) from None
    expected = _expected_length(head)
    if expected is None or struct.unpack("<I", trailer)[0] == expected % 2**32:
        return  # not a NIfTI-1 header we can size (ITK decides), or the trailer agrees
    try:
        length = len(gzip.decompress(path.read_bytes()))  # only for files the trailer disagrees with
    except EOFError:
        raise CaseInputError(path, "truncated gzip data (the file ends early)", _REEXPORT) from None
    except (OSError, zlib.error):
        raise CaseInputError(
            path, "cannot read the file (corrupt gzip data)", "re-export the volume"
        ) from None
    if length < expected:
        raise CaseInputError(path, f"voxel data truncated ({length} of {expected} bytes)", _REEXPORT)


def _head_and_trailer(path: Path) -> tuple[bytes, bytes]:
    """The first compressed bytes and the 4-byte gzip trailer (empty when the file is under 18 bytes)."""
    with path.open("rb") as f:
        start = f.read(_HEAD_READ)
        if f.seek(0, 2) < 18:
            return start, b""
        f.seek(-4, 2)
        return start, f.read(4)


def _expected_length(header: bytes) -> int | None:
    """Voxel offset + voxel bytes of a little-endian single-file NIfTI-1 header, else None."""
    if len(header) < _HEADER_BYTES or header[344:348] != b"n+1\x00":
        return None
    if struct.unpack_from("<i", header, 0)[0] != 348:
        return None
    dim = struct.unpack_from("<8h", header, 40)
    bitpix = struct.unpack_from("<h", header, 72)[0]
    vox_offset = struct.unpack_from("<f", header, 108)[0]
    if not 1 <= dim[0] <= 7 or min(dim[1 : dim[0] + 1]) < 0 or bitpix <= 0 or vox_offset < _HEADER_BYTES:
        return None
    return int(vox_offset) + int(np.prod(dim[1 : dim[0] + 1], dtype=np.int64)) * bitpix // 8
