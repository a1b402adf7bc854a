"""Verify hnswlib graph files before hnswlib reads them.

hnswlib trusts its files: a flipped byte in a link list, or a crafted header, makes it read out of bounds
(segfault). Every graph file is therefore checked twice before `load_index` sees it:

1. its SHA-256 must equal the one `index.json` recorded when the file was written (any change at all);
2. its layout must be one hnswlib can walk safely (`check_graph_file`): header fields consistent with the
   expected element count, dimension and M, the entry point on the top level, every link count within its
   limit and every neighbour id an existing element, the file size exactly what the header describes.

The layout check also verifies a freshly written file before it replaces the old one (a full disk leaves a
file shorter than its header says). Format (hnswlib 0.7/0.8, `HierarchicalNSW::saveIndex`): a 96-byte header,
then `count` level-0 blocks of `size_data_per_element` bytes (link count + maxM0 neighbour ids, the vector,
the label), then per element a uint32 byte size followed by its upper-level link blocks.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

_HEADER = struct.Struct("<6QiI3QdQ")  # offsetLevel0, max_elements, count, size_data, label_offset,
# offsetData, maxlevel, enterpoint, maxM, maxM0, M, mult, ef_construction
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def check_graph_file(path: Path, *, count: int, dim: int, m: int) -> str | None:
    """None when the file is an hnswlib graph of `count` float32 vectors of size `dim` built with `m` that
    hnswlib can load and search without reading out of bounds; else the problem, in a few words."""
    data = Path(path).read_bytes()
    return check_graph_bytes(data, count=count, dim=dim, m=m)


def check_graph_bytes(data: bytes, *, count: int, dim: int, m: int) -> str | None:
    """`check_graph_file` on the file's bytes."""
    if len(data) < _HEADER.size:
        return "shorter than an hnswlib header"
    (
        offset0,
        max_elements,
        n,
        size_data,
        label_offset,
        offset_data,
        max_level,
        enter,
        max_m,
        max_m0,
        m_,
        _mult,
        _efc,
    ) = _HEADER.unpack_from(data, 0)
    links0 = 4 + 4 * max_m0
    if (offset0, n, m_, max_m, max_m0) != (0, count, m, m, 2 * m) or max_elements < n:
        return "header does not match the index (count, M or capacity)"
    if (offset_data, label_offset, size_data) != (links0, links0 + 4 * dim, links0 + 4 * dim + 8):
        return "header does not match the vector size"
    if n == 0:
        return None if len(data) == _HEADER.size else "wrong file size"
    if not 0 <= max_level < 64 or not 0 <= enter < n:
        return "entry point or top level out of range"
    end0 = _HEADER.size + n * size_data
    if len(data) < end0 + 4 * n:
        return "file ends early (level-0 data)"
    block = np.frombuffer(data, dtype=np.uint8, count=n * size_data, offset=_HEADER.size).reshape(
        n, size_data
    )
    head = block[:, :4].copy().view(np.uint32)[:, 0]
    if np.any((head & 0xFFFF) > max_m0):
        return "level-0 link count out of range"
    ids = block[:, 4:links0].copy().view(np.uint32)
    used = np.arange(max_m0)[None, :] < (head & 0xFFFF)[:, None]
    if np.any(ids[used] >= n):
        return "level-0 neighbour id out of range"
    labels = block[:, label_offset:].copy().view(np.uint64)[:, 0]
    if not np.array_equal(np.sort(labels), np.arange(n, dtype=np.uint64)):
        return "labels are not 0..count-1"
    return _check_upper_levels(data, end0, n, max_m, max_level, enter)


def _check_upper_levels(data: bytes, pos: int, n: int, max_m: int, max_level: int, enter: int) -> str | None:
    per_level = 4 + 4 * max_m
    top = 0
    for element in range(n):
        if pos + 4 > len(data):
            return "file ends early (upper levels)"
        (size,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if size == 0:
            continue
        levels, rest = divmod(size, per_level)
        if rest or levels > max_level or pos + size > len(data):
            return "upper-level link list size out of range"
        links = np.frombuffer(data, dtype=np.uint32, count=size // 4, offset=pos).reshape(levels, 1 + max_m)
        counts = links[:, 0] & 0xFFFF
        if np.any(counts > max_m):
            return "upper-level link count out of range"
        if np.any(links[:, 1:][np.arange(max_m)[None, :] < counts[:, None]] >= n):
            return "upper-level neighbour id out of range"
        if element == enter:
            top = levels
        pos += size
    if pos != len(data):
        return "wrong file size"
    if top != max_level:
        return "entry point is not on the top level"
    return None
