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


def verify_graph_file(
    path: Path, *, size: object, sha256: object, count: int, dim: int, m: int
) -> str | None:
    """None when the file has `size` bytes, SHA-256 `sha256` (both as recorded in index.json) and a layout
    hnswlib can walk safely; else the problem. The file is memory-mapped, not copied: index.py verifies its
    three graphs in parallel threads (hashlib and most of the layout check release the GIL)."""
    import mmap
    import os

    if not isinstance(sha256, str) or not isinstance(size, int):
        return "no checksum recorded"
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                return "size differs from the one recorded"
            if size == 0:
                return "empty file"
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if hashlib.sha256(data).hexdigest() != sha256:
                    return "SHA-256 differs from the one recorded"
                return check_graph_bytes(data, count=count, dim=dim, m=m)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def check_graph_file(path: Path, *, count: int, dim: int, m: int) -> str | None:
    """None when the file is an hnswlib graph of `count` float32 vectors of size `dim` built with `m` that
    hnswlib can load and search without reading out of bounds; else the problem, in a few words."""
    data = Path(path).read_bytes()
    return check_graph_bytes(data, count=count, dim=dim, m=m)


def check_graph_bytes(data: bytes | memoryview, *, count: int, dim: int, m: int) -> str | None:
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
    """Walk the per-element upper-level link lists (sizes in a tight loop), then check every link block at once."""
    per_level = 4 + 4 * max_m  # a multiple of 4: every size field sits on a 4-byte step from `pos`
    if (len(data) - pos) % 4:
        return "wrong file size"
    words = np.frombuffer(data, dtype="<u4", offset=pos).tolist()
    end = len(words)
    starts: list[int] = []
    levels: list[int] = []
    top = 0
    i = 0
    for element in range(n):
        if i >= end:
            return "file ends early (upper levels)"
        size = words[i]
        i += 1
        if not size:
            continue
        count, rest = divmod(size, per_level)
        if rest or count > max_level or i + size // 4 > end:
            return "upper-level link list size out of range"
        starts.append(pos + 4 * i)
        levels.append(count)
        if element == enter:
            top = count
        i += size // 4
    if i != end:
        return "wrong file size"
    if top != max_level:
        return "entry point is not on the top level"
    if not starts:
        return None
    per = np.asarray(levels, dtype=np.int64)
    first = np.repeat(np.asarray(starts, dtype=np.int64), per)  # each level block's offset in the file
    within = np.arange(len(first), dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    offsets = first + within * per_level
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[:, None] + np.arange(per_level)]
    links = raw.view("<u4").reshape(len(offsets), 1 + max_m)
    counts = links[:, 0] & 0xFFFF
    if np.any(counts > max_m):
        return "upper-level link count out of range"
    if np.any(links[:, 1:][np.arange(max_m)[None, :] < counts[:, None]] >= n):
        return "upper-level neighbour id out of range"
    return None
