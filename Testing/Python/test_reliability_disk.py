"""A full disk (simulated deterministically with RLIMIT_FSIZE: writes past the limit fail with EFBIG, as on a
full disk) and a read-only archive: one-line errors, nothing reported done that was not written, nothing
stored lost; a read-only archive is searchable."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from search_helpers import copy_archive, run_cli, run_python, tiny_model
from SimilarCaseRetrievalLib.errors import StorageError
from SimilarCaseRetrievalLib.store import CaseStore

_CLI_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from SimilarCaseRetrievalLib import cli
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    sys.exit(cli.main({argv!r}))
    """
)


def _cli(argv: list[str], limit: int | None = None) -> subprocess.CompletedProcess:
    return run_cli(argv) if limit is None else run_python(_CLI_UNDER_LIMIT.format(limit=limit, argv=argv))


def _error_line(run: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, run.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model")
    tiny_model(path)
    return path


def test_full_disk_at_commit_is_one_line_and_loses_nothing(tmp_path, tiny_archive, model):
    archive = tmp_path / "a"
    copy_archive(tiny_archive, archive).close()
    size = (archive / "cases.sqlite").stat().st_size
    run = _cli(["index", "--archive", str(archive), "--model", str(model), "--quiet"], limit=size // 4)
    assert run.returncode == 2, run.stdout + run.stderr
    line = _error_line(run)
    assert "cases.sqlite" in line and "Fix: free space on the disk holding" in line
    assert "index:" not in run.stdout  # nothing reported as done
    with CaseStore(archive, create=False) as store:
        assert len(store) == 24 and store.model_versions() == {}  # cases kept; no partial chunk
    again = _cli(["index", "--archive", str(archive), "--model", str(model), "--quiet"])
    assert again.returncode == 0 and "index: 24 of 24" in again.stdout, again.stderr[-2000:]


_SAVE_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from SimilarCaseRetrievalLib.indexer import index_archive
    from SimilarCaseRetrievalLib.search import load_encoder
    from SimilarCaseRetrievalLib.store import CaseStore
    store = CaseStore({archive!r}, create=False)  # opened (and its WAL set up) before the disk fills
    encoder = load_encoder({model!r})
    for graph in Path({archive!r}, "index").glob("*.hnsw"):
        graph.unlink()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    try:
        report = index_archive(store, encoder, progress=False)
    except ValueError as exc:
        print("ERROR", exc)
        sys.exit(3)
    print("DONE", report.indexed)
    """
)


def test_full_disk_during_the_index_save_is_not_reported_done(tmp_path, tiny_archive, model):
    archive = tmp_path / "a"
    copy_archive(tiny_archive, archive).close()
    first = _cli(["index", "--archive", str(archive), "--model", str(model), "--quiet"])
    assert first.returncode == 0, first.stderr[-2000:]
    limit = (archive / "index" / "image.hnsw").stat().st_size // 2
    code = _SAVE_UNDER_LIMIT.format(archive=str(archive), model=str(model), limit=limit)
    run = run_python(code)
    assert run.returncode == 3 and "DONE" not in run.stdout, run.stdout + run.stderr[-3000:]
    line = run.stdout.strip().splitlines()[-1]
    assert "image.hnsw" in line and "Fix: free space on the disk holding" in line
    assert not list((archive / "index").glob("*.tmp")) and not (archive / "index" / "image.hnsw").exists()
    # the store is intact: the next search rebuilds the graphs from it
    search = _cli(
        [
            "search",
            "--archive",
            str(archive),
            "--model",
            str(model),
            "--text",
            "cyst",
            "--json",
            str(tmp_path / "hits.json"),
        ]
    )
    assert search.returncode == 0, search.stderr[-2000:]
    assert len(json.loads((tmp_path / "hits.json").read_text(encoding="utf-8"))["hits"]) == 10


def _read_only(folder: Path) -> Path:
    """`folder` seen read-only: a read-only bind mount when root (root ignores permissions), else chmod."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return folder
    view = folder.with_name(folder.name + "_ro")
    view.mkdir()
    ok = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode == 0
    if ok:
        ok = (
            subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True).returncode == 0
        )
        if not ok:
            subprocess.run(["umount", "-l", str(view)], capture_output=True)
    if not ok:
        pytest.skip("running as root without permission to mount a read-only view")
    return view


def test_a_read_only_archive_is_searchable(tmp_path, tiny_archive, model):
    archive = tmp_path / "a"
    copy_archive(tiny_archive, archive).close()
    assert _cli(["index", "--archive", str(archive), "--model", str(model), "--quiet"]).returncode == 0
    (archive / "index" / "text.hnsw").write_bytes(b"damaged")  # must be rebuilt in memory, not saved
    expected = _cli(
        [
            "search",
            "--archive",
            str(archive),
            "--model",
            str(model),
            "--text",
            "cyst",
            "--json",
            str(tmp_path / "rw.json"),
            "--exact-threshold",
            "0",
        ]
    )
    assert expected.returncode == 0, expected.stderr[-2000:]
    (archive / "index" / "text.hnsw").write_bytes(b"damaged")
    view = _read_only(archive)
    try:
        run = _cli(
            [
                "search",
                "--archive",
                str(view),
                "--model",
                str(model),
                "--text",
                "cyst",
                "--json",
                str(tmp_path / "ro.json"),
                "--exact-threshold",
                "0",
            ]
        )
        assert run.returncode == 0, run.stderr[-2000:]
        hits = json.loads((tmp_path / "ro.json").read_text(encoding="utf-8"))["hits"]
        assert hits == json.loads((tmp_path / "rw.json").read_text(encoding="utf-8"))["hits"]
        assert (view / "index" / "text.hnsw").read_bytes() == b"damaged"
        assert not (view / "cases.sqlite-wal").exists()
        info = _cli(["info", "--archive", str(view)])
        assert info.returncode == 0, info.stderr[-2000:]
        store = CaseStore(view, create=False, readonly=None)
        assert store.readonly and len(store) == 24
        with pytest.raises(StorageError, match="read-only"):
            store.remove("OV0001")
        store.close()
        index = _cli(["index", "--archive", str(view), "--model", str(model), "--quiet"])
        assert index.returncode == 2 and "writable" in _error_line(index)
    finally:
        if view != archive:
            subprocess.run(["umount", "-l", str(view)], capture_output=True)
