"""NIfTI-1 volumes (``.nii``, ``.nii.gz``): catch what ITK would read silently wrong, before ITK reads them.

ITK (niftilib) zero-fills a file whose voxel block ends early, never checks the gzip CRC, and replaces NaN and
infinite voxels with 0 (the same NaN in NRRD reaches us and is refused). So, for every NIfTI-1 file:
- ``.nii``: the file must hold the header's voxel offset plus voxel bytes (cut-short copies);
- ``.nii.gz``: the whole gzip stream is inflated once, in 1 MiB pieces, and zlib verifies its CRC-32 and
  length (a flipped byte, a cut-short copy), every gzip member included;
- float voxels (float32/64) are checked to be finite while they pass by (NaN/inf, all-NaN).
Reading itself stays with ITK (a faster zlib read of the voxels was tried and dropped: calling ITK's header
reader from the reader threads aborted the process in 2 of ~14 test runs). The cost next to ITK's read is
measured by benchmarks/bench_nifti_gz.py.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CaseInputError

_REEXPORT = "copy or export the volume again"
_HEADER_BYTES = 352
_PIECE = 1 << 20
_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype code -> numpy float type (others cannot hold NaN)


@dataclass(frozen=True)
class _Layout:
    offset: int  # first voxel byte
    nbytes: int  # voxel bytes
    dtype: np.dtype | None  # float voxels to check for NaN/inf, else None


def check_nifti_gz(path: Path) -> None:
    """CaseInputError when a NIfTI-1 file (``.nii`` or ``.nii.gz``) is cut short, has corrupt gzip data (CRC)
    or holds NaN/infinite voxels; else nothing. Other files: nothing (ITK decides)."""
    name = path.name.lower()
    if name.endswith(".nii"):
        _check_nii(path)
    elif name.endswith(".nii.gz"):
        _check_nii_gz(path)


def _layout(header: bytes) -> _Layout | None:
    """Voxel offset, size and float type of a single-file NIfTI-1 header (either byte order), else None."""
    if len(header) < 348 or header[344:348] != b"n+1\x00":
        return None
    for order in "<>":
        if struct.unpack_from(order + "i", header, 0)[0] == 348:
            break
    else:
        return None
    dim = struct.unpack_from(order + "8h", header, 40)
    datatype, bitpix = struct.unpack_from(order + "2h", header, 70)
    vox_offset = struct.unpack_from(order + "f", header, 108)[0]
    if not 1 <= dim[0] <= 7 or min(dim[1 : dim[0] + 1]) < 0 or bitpix <= 0 or not vox_offset >= 348:
        return None
    count = int(np.prod(dim[1 : dim[0] + 1], dtype=np.int64))
    dtype = np.dtype(order + _FLOATS[datatype]) if datatype in _FLOATS else None
    return _Layout(int(vox_offset), count * bitpix // 8, dtype)


class _FiniteCheck:
    """Counts non-finite float voxels over pieces of the voxel bytes (an item may straddle two pieces)."""

    def __init__(self, layout: _Layout):
        self.layout, self.seen, self.bad, self.carry = layout, 0, 0, b""

    def feed(self, data: bytes, start: int) -> None:
        """`data` = the file's (uncompressed) bytes from position `start`."""
        lo = max(self.layout.offset, start)
        hi = min(self.layout.offset + self.layout.nbytes, start + len(data))
        if self.layout.dtype is None or hi <= lo:
            return
        chunk = self.carry + data[lo - start : hi - start]
        usable = len(chunk) - len(chunk) % self.layout.dtype.itemsize
        values = np.frombuffer(chunk, dtype=self.layout.dtype, count=usable // self.layout.dtype.itemsize)
        self.bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.seen += values.size
        self.carry = chunk[usable:]

    def verdict(self, path: Path) -> None:
        if self.bad == 0:
            return
        if self.bad == self.seen:
            raise CaseInputError(
                path, "image has no finite voxel (all NaN or infinite)", "export the real image"
            )
        raise CaseInputError(
            path, f"image contains {self.bad} NaN or infinite voxel(s)", "fix or re-export the volume"
        )


def _check_nii(path: Path) -> None:
    with path.open("rb") as f:
        layout = _layout(f.read(_HEADER_BYTES))
        if layout is None:
            return  # not a NIfTI-1 header we can size: ITK decides
        size = f.seek(0, 2)
        if size < layout.offset + layout.nbytes:
            have = max(0, size - layout.offset)
            raise CaseInputError(path, f"voxel data truncated ({have} of {layout.nbytes} bytes)", _REEXPORT)
        if layout.dtype is None:
            return
        check = _FiniteCheck(layout)
        f.seek(layout.offset)
        pos = layout.offset
        while pos < layout.offset + layout.nbytes and (piece := f.read(_PIECE)):
            check.feed(piece, pos)
            pos += len(piece)
    check.verdict(path)


def _check_nii_gz(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return  # not gzip despite the name: ITK decides
        f.seek(0)
        head, layout, check, length = b"", None, None, 0
        try:
            for out in _inflate(f):
                if len(head) < _HEADER_BYTES:
                    head += out[: _HEADER_BYTES - len(head)]
                    if len(head) >= _HEADER_BYTES:
                        layout = _layout(head)
                        if layout is None:
                            return  # not a NIfTI-1 header we can size: ITK decides
                        check = _FiniteCheck(layout)
                if check is not None:
                    check.feed(out, length)
                length += len(out)
        except EOFError:
            raise CaseInputError(path, "truncated gzip data (the file ends early)", _REEXPORT) from None
        except zlib.error:
            raise CaseInputError(
                path,
                "cannot read the file (corrupt gzip data: CRC or length check failed)",
                "re-export the volume",
            ) from None
    if layout is None or check is None:
        raise CaseInputError(path, "truncated gzip data (the file ends early)", _REEXPORT)
    if length < layout.offset + layout.nbytes:
        have = max(0, length - layout.offset)
        raise CaseInputError(path, f"voxel data truncated ({have} of {layout.nbytes} bytes)", _REEXPORT)
    check.verdict(path)


def _inflate(f) -> Iterator[bytes]:
    """The uncompressed pieces of every gzip member of `f`; zlib verifies each member's CRC-32 and length
    (zlib.error); EOFError when the file ends inside a member."""
    inflate = zlib.decompressobj(31)
    open_member = False
    while data := f.read(_PIECE):
        while data:
            open_member = True
            yield inflate.decompress(data)
            data = b""
            if inflate.eof:  # a member ended, verified; another may follow
                data, inflate, open_member = inflate.unused_data, zlib.decompressobj(31), False
                if not data.strip(b"\0"):
                    data = b""  # zero padding after a member
    if open_member:
        raise EOFError
