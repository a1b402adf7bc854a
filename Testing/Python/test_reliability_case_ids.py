"""Case ids: refused at ingest and at query unless plain; reports never written or deleted outside the folder
the user named; text-only rows in a queries manifest; '$' in a caption is text, not mathtext."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from search_helpers import copy_archive, make_case, tiny_model
from SimilarCaseRetrievalLib import cli
from SimilarCaseRetrievalLib.case_ids import case_id_problem, inside
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.indexer import index_archive
from SimilarCaseRetrievalLib.manifest import ingest_manifest
from SimilarCaseRetrievalLib.render import RowImages, render_row
from SimilarCaseRetrievalLib.store import CaseStore

BAD_IDS = ["../../evil", "/tmp/abs", "a b", "math$x^{1$", "..", ".hidden", "x/y", "tab\there", "é"]


@pytest.mark.parametrize("case_id", BAD_IDS)
def test_bad_ids_are_refused_by_the_store(tmp_path, case_id):
    store = CaseStore(tmp_path / "a")
    case = make_case(tmp_path / "files", "ok", 0, np.random.default_rng(0))
    case.case_id = case_id
    with pytest.raises(CaseInputError, match="is not allowed|empty case_id") as err:
        store.add(case)
    assert "\n" not in str(err.value) and len(store) == 0


def test_good_ids_pass():
    for case_id in ["OV0001", "mmotu-1234", "TCGA-09-0364.2", "a_b"]:
        assert case_id_problem(case_id) is None


def _manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "image", "mask", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_ingest_rejects_bad_id_rows_and_keeps_the_others(tmp_path):
    case = make_case(tmp_path / "files", "good", 0, np.random.default_rng(0))
    image, mask = ";".join(f"{k}={v}" for k, v in case.sequences.items()), case.mask
    rows = [{"case_id": i, "image": image, "mask": mask, "text": "x"} for i in ["good", "../../evil", "a$b"]]
    store = CaseStore(tmp_path / "a")
    result = ingest_manifest(_manifest(tmp_path / "m.csv", rows), store, validate=False, progress=False)
    assert result.added == ["good"] and store.ids() == ["good"]
    assert [e.line for e in result.errors] == [3, 4]
    assert all("is not allowed" in e.message for e in result.errors)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_archive):
    root = tmp_path_factory.mktemp("ids")
    store = copy_archive(tiny_archive, root / "archive")
    model = root / "model"
    encoder = tiny_model(model)
    index_archive(store, encoder, progress=False)
    store.close()
    return root / "archive", model


def test_query_ids_cannot_escape_the_report_folder(tmp_path, indexed):
    archive, model = indexed
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "index.html").write_text("keep me", encoding="utf-8")
    (victim / "hit_00.png").write_bytes(b"keep me")
    reports = tmp_path / "out" / "report"
    rows = [
        {"case_id": "../../victim", "text": "unilocular cyst"},
        {"case_id": str(victim), "text": "unilocular cyst"},
        {"case_id": "q1", "text": "unilocular cyst with thin wall"},  # a text-only query row
    ]
    queries = _manifest(tmp_path / "q.csv", rows)
    rc = cli.main(
        [
            "search",
            "--archive",
            str(archive),
            "--model",
            str(model),
            "--queries",
            str(queries),
            "--report",
            str(reports),
            "--json",
            str(tmp_path / "hits.json"),
        ]
    )
    assert rc == 1  # two rows refused, one answered
    assert (victim / "index.html").read_text(encoding="utf-8") == "keep me" and (
        victim / "hit_00.png"
    ).read_bytes() == b"keep me"
    assert sorted(p.name for p in victim.iterdir()) == ["hit_00.png", "index.html"]
    assert (reports / "q1" / "index.html").is_file()
    assert sorted(p.name for p in reports.iterdir()) == ["q1"]
    import json

    out = json.loads((tmp_path / "hits.json").read_text(encoding="utf-8"))
    assert list(out["queries"]) == ["q1"] and out["queries"]["q1"]["mode"] == "text"
    assert len(out["errors"]) == 2 and all("is not allowed" in m for m in out["errors"].values())


def test_inside_refuses_links_and_parents(tmp_path):
    base = tmp_path / "report"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (base / "link").symlink_to(tmp_path / "elsewhere")
    for name in ["../x", "/etc", "link", ".", "link/sub"]:
        with pytest.raises(CaseInputError, match="outside the report folder"):
            inside(base, name)
    assert inside(base, "q1") == (base / "q1").resolve()


def test_a_dollar_in_a_caption_is_drawn_as_text(tmp_path):
    row = RowImages([("T2$x^{1$", np.random.default_rng(0).random((20, 20)), None, 1.0)])
    path = render_row(tmp_path / "hit_00.png", "#1 math$x^{1$\nscore 0.9", row, 1)
    assert path.is_file() and path.stat().st_size > 1000
