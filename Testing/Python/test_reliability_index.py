"""Graph files are verified before hnswlib reads them (checksum + layout), and a save that could not be written
completely (file size limit = a full disk, deterministically) is an error, never reported as done.

Loads and searches run in a subprocess: if a damaged file ever reached hnswlib, its segfault fails the test
instead of killing pytest."""

from __future__ import annotations

import hashlib
import json
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest
from search_helpers import run_python
from SimilarCaseRetrievalLib.graph_files import check_graph_file
from SimilarCaseRetrievalLib.index import SIDECAR, ArchiveIndex, IndexConfig, fuse

N, D = 300, 16
CONFIG = IndexConfig(exact_threshold=0, num_threads=1)  # every query goes through hnswlib


def _vectors(seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((N, D)).astype(np.float32)
    text = rng.standard_normal((N, D)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return [f"c{i:04d}" for i in range(N)], fuse(image, text)


def _build(folder: Path) -> Path:
    ids, fused = _vectors()
    ArchiveIndex.open(folder, "v1", ids, fused, CONFIG)
    return folder


_SEARCH = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    sys.path[:0] = [{tests!r}]
    from test_reliability_index import CONFIG, _vectors
    from SimilarCaseRetrievalLib.index import ArchiveIndex
    ids, fused = _vectors()
    index = ArchiveIndex.open(Path({folder!r}), "v1", ids, fused, CONFIG)
    hits = []
    for q in range(0, 300, 37):
        image, text = fused[q, :16] / 0.8366600265340756, fused[q, 16:] / 0.5477225575051661
        hits.append([s.case_id for s in index.search(image, text, k=5)])
    print(json.dumps({{"status": index.status, "hits": hits}}))
    """
)


def _search_in_subprocess(folder: Path) -> dict:
    code = _SEARCH.format(tests=str(Path(__file__).parent), folder=str(folder))
    run = run_python(code, timeout=120)
    assert run.returncode == 0, f"search crashed (rc {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> list[list[str]]:
    folder = _build(tmp_path_factory.mktemp("clean"))
    result = _search_in_subprocess(folder)
    assert result["status"] == "loaded"
    return result["hits"]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _header(path: Path) -> tuple:
    return struct.unpack_from("<6QiI3QdQ", path.read_bytes(), 0)


@pytest.mark.parametrize("kind", ["image", "text", "fused"])
@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_a_flipped_byte_in_a_graph_is_rebuilt_never_loaded(tmp_path, expected, kind, where):
    folder = _build(tmp_path / "index")
    path = folder / f"{kind}.hnsw"
    _flip(path, int(path.stat().st_size * where))
    result = _search_in_subprocess(folder)
    assert result["status"] == "rebuilt" and result["hits"] == expected


def _rewrite_consistently(folder: Path, kind: str, data: bytes) -> None:
    """Replace a graph file AND its size and checksum in the sidecar (a crafted file that passes the checksum)."""
    (folder / f"{kind}.hnsw").write_bytes(data)
    sidecar = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
    sidecar["file_sizes"][kind] = len(data)
    sidecar["sha256"][kind] = hashlib.sha256(data).hexdigest()
    (folder / SIDECAR).write_text(json.dumps(sidecar))


def test_crafted_entry_point_is_refused_even_with_a_matching_checksum(tmp_path, expected):
    folder = _build(tmp_path / "index")
    data = bytearray((folder / "image.hnsw").read_bytes())
    struct.pack_into("<I", data, 52, 0x7FFFFFF0)  # enterpoint_node
    _rewrite_consistently(folder, "image", bytes(data))
    assert "entry point" in check_graph_file(folder / "image.hnsw", count=N, dim=D, m=CONFIG.m)
    result = _search_in_subprocess(folder)
    assert result["status"] == "rebuilt" and result["hits"] == expected


def test_crafted_capacity_and_neighbour_ids_are_refused(tmp_path, expected):
    folder = _build(tmp_path / "index")
    path = folder / "text.hnsw"
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 8, 1)  # max_elements = 1 with 300 elements laid out
    _rewrite_consistently(folder, "text", bytes(data))
    assert check_graph_file(path, count=N, dim=D, m=CONFIG.m)
    result = _search_in_subprocess(folder)
    assert result["status"] == "rebuilt" and result["hits"] == expected

    folder = _build(tmp_path / "index2")
    path = folder / "fused.hnsw"
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 96 + 4, 0x00FFFFFF)  # first neighbour of element 0 points past the end
    _rewrite_consistently(folder, "fused", bytes(data))
    assert "neighbour" in check_graph_file(path, count=N, dim=2 * D, m=CONFIG.m)
    result = _search_in_subprocess(folder)
    assert result["status"] == "rebuilt" and result["hits"] == expected


def test_a_clean_graph_passes_the_layout_check(tmp_path):
    folder = _build(tmp_path / "index")
    for kind, dim in (("image", D), ("text", D), ("fused", 2 * D)):
        assert check_graph_file(folder / f"{kind}.hnsw", count=N, dim=dim, m=CONFIG.m) is None
        assert _header(folder / f"{kind}.hnsw")[2] == N


_SAVE_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    sys.path[:0] = [{tests!r}]
    from test_reliability_index import CONFIG, _vectors
    from SimilarCaseRetrievalLib.index import ArchiveIndex
    ids, fused = _vectors()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    try:
        ArchiveIndex.open(Path({folder!r}), "v1", ids, fused, CONFIG, rebuild=True)
    except ValueError as exc:
        print("ERROR", exc)
        sys.exit(3)
    print("SAVED")
    """
)


def test_a_save_that_does_not_fit_is_an_error_and_keeps_the_old_files(tmp_path, expected):
    folder = _build(tmp_path / "index")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    limit = (folder / "image.hnsw").stat().st_size // 2  # the graph cannot be written completely
    code = _SAVE_UNDER_LIMIT.format(tests=str(Path(__file__).parent), folder=str(folder), limit=limit)
    run = run_python(code, timeout=120)
    assert run.returncode == 3, run.stdout + run.stderr
    line = run.stdout.strip().splitlines()[-1]
    assert (
        "image.hnsw" in line and "Fix: free space on the disk holding" in line and "SAVED" not in run.stdout
    )
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after == before  # the earlier, complete files are untouched (no .tmp left either)
    assert _search_in_subprocess(folder) == {"status": "loaded", "hits": expected}
