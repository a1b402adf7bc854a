"""Fault injection: each file of an indexed archive (case store, each graph, index.json, sentence cache) and of
its model (weights, config) is damaged in turn, then the archive is searched in a subprocess (a segfault fails
the test instead of killing pytest). Every outcome is either a one-line error (exit 2, no traceback) or an
answer whose every hit has exactly the score the intact archive gives that case, best first; cases left out
(a damaged stored embedding) are announced. Never a crash, never a wrong score."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from search_helpers import copy_archive, run_cli, tiny_model
from SimilarCaseRetrievalLib import cli
from SimilarCaseRetrievalLib.store import CaseStore

K = 24  # every case: the truth is the full ranking


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_archive) -> Path:
    root = tmp_path_factory.mktemp("fault")
    copy_archive(tiny_archive, root / "archive").close()
    tiny_model(root / "model")
    assert (
        cli.main(["index", "--archive", str(root / "archive"), "--model", str(root / "model"), "--quiet"])
        == 0
    )
    with sqlite3.connect(root / "archive" / "cases.sqlite") as conn:  # every write in the main file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with CaseStore(root / "archive", create=False, readonly=True) as store:
        case = store.get("OV0001")
    sequences = ";".join(f"{k}={(root / 'archive' / v).resolve()}" for k, v in case.sequences.items())
    rows = [
        "case_id,image,mask,text",
        "textonly,,,unilocular cyst with a thin wall",
        f'withimage,"{sequences}",{(root / "archive" / case.mask).resolve()},solid tissue dark on T2',
    ]
    (root / "queries.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _copy(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


def _search(root: Path) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = root / "hits.json"
    out.unlink(missing_ok=True)
    run = run_cli(
        [
            "search",
            "--archive",
            str(root / "archive"),
            "--model",
            str(root / "model"),
            "--queries",
            str(root / "queries.csv"),
            "-k",
            str(K),
            "--exact-threshold",
            "0",
            "--json",
            str(out),
        ]
    )
    return run, (json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None)


@pytest.fixture(scope="module")
def truth(pristine, tmp_path_factory) -> dict:
    run, hits = _search(_copy(pristine, tmp_path_factory.mktemp("truth") / "copy"))
    assert run.returncode == 0 and hits is not None and not hits["errors"], run.stderr[-2000:]
    assert all(len(q["hits"]) == K for q in hits["queries"].values())
    return hits


def _judge(run: subprocess.CompletedProcess, hits: dict | None, truth: dict) -> str:
    """'error' (one clear line) or 'answer' (every score right); anything else fails."""
    assert run.returncode in (0, 2), f"crashed or failed oddly (rc {run.returncode}): {run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    if run.returncode == 2:
        errors = [line for line in run.stderr.splitlines() if ": error: " in line]
        assert len(errors) == 1 and "Fix:" in errors[0], run.stderr[-3000:]
        return "error"
    assert hits is not None and not hits["errors"] and set(hits["queries"]) == set(truth["queries"])
    for qid, result in hits["queries"].items():
        expected = {h["case_id"]: h["score"] for h in truth["queries"][qid]["hits"]}
        scores = [h["score"] for h in result["hits"]]
        assert scores == sorted(scores, reverse=True)
        for h in result["hits"]:
            assert h["case_id"] in expected and abs(h["score"] - expected[h["case_id"]]) < 1e-4, (qid, h)
        if len(result["hits"]) < len(expected):
            assert "damaged" in run.stderr  # a case left out is announced
    return "answer"


def _flip(path: Path, offset: int, mask: int = 0x5A) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


FILES = {
    "graph image": "archive/index/image.hnsw",
    "graph text": "archive/index/text.hnsw",
    "graph fused": "archive/index/fused.hnsw",
    "sidecar": "archive/index/index.json",
    "weights": "model/model.safetensors",
}


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("how", ["flip", "truncate", "empty"])
def test_a_damaged_index_or_model_file(tmp_path, pristine, truth, name, how):
    root = _copy(pristine, tmp_path / "copy")
    path = root / FILES[name]
    if how == "flip":
        _flip(path, path.stat().st_size // 2)
    elif how == "truncate":
        _truncate(path)
    else:
        path.write_bytes(b"")
    verdict = _judge(*_search(root), truth)
    if name != "weights":
        assert verdict == "answer"  # index files are a cache: rebuilt from the store, same answer
    else:
        assert verdict == "error"


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_a_damaged_model_config(tmp_path, pristine, truth, how):
    root = _copy(pristine, tmp_path / "copy")
    path = root / "model" / "config.json"
    if how == "truncate":
        _truncate(path)
    else:
        path.write_bytes(os.urandom(path.stat().st_size))
    assert _judge(*_search(root), truth) == "error"


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_sentence_cache_is_never_used(tmp_path, pristine, truth, how):
    root = _copy(pristine, tmp_path / "copy")
    cache = root / "archive" / "index" / "sentences.sqlite"
    assert cache.is_file()
    data = cache.read_bytes()
    if how == "flip":  # inside a cached vector: every cached blob is 4*dim + 4 bytes; flip the middle one's
        _flip(cache, len(data) - 3 * len(data) // 8)
    else:
        _truncate(cache)
    reindex = run_cli(
        ["index", "--archive", str(root / "archive"), "--model", str(root / "model"), "--quiet", "--reembed"]
    )
    assert reindex.returncode == 0 and "Traceback" not in reindex.stderr, reindex.stderr[-3000:]
    assert _judge(*_search(root), truth) == "answer"


def _fused_offset(archive: Path, case_id: str, model: Path) -> int:
    from SimilarCaseRetrievalLib.encoders import CaseEncoder

    version = CaseEncoder.load(model).version
    store = CaseStore(archive, create=False, readonly=True)
    ids, fused = store.get_embeddings(version, "fused")
    store.close()
    blob = np.ascontiguousarray(fused[ids.index(case_id)]).tobytes()
    offset = (archive / "cases.sqlite").read_bytes().find(blob)
    assert offset > 0
    return offset


def test_a_damaged_stored_embedding_is_left_out_then_embedded_again(tmp_path, pristine, truth):
    root = _copy(pristine, tmp_path / "copy")
    _flip(
        root / "archive" / "cases.sqlite", _fused_offset(root / "archive", "OV0003", root / "model") + 3, 0x40
    )
    run, hits = _search(root)
    assert _judge(run, hits, truth) == "answer"
    assert all("OV0003" not in {h["case_id"] for h in q["hits"]} for q in hits["queries"].values())
    reindex = run_cli(
        ["index", "--archive", str(root / "archive"), "--model", str(root / "model"), "--quiet"]
    )
    assert reindex.returncode == 0 and "embedded 1 case(s)" in reindex.stdout, reindex.stdout + reindex.stderr
    run, hits = _search(root)
    assert _judge(run, hits, truth) == "answer"
    assert all(len(q["hits"]) == K for q in hits["queries"].values())  # nothing lost


@pytest.mark.parametrize("how", ["truncate", "header", "empty"])
def test_a_damaged_case_store(tmp_path, pristine, truth, how):
    root = _copy(pristine, tmp_path / "copy")
    path = root / "archive" / "cases.sqlite"
    if how == "truncate":
        _truncate(path)
    elif how == "header":
        data = bytearray(path.read_bytes())
        data[:100] = os.urandom(100)
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"")
    _judge(*_search(root), truth)  # an error naming cases.sqlite, or (rarely) a right answer
