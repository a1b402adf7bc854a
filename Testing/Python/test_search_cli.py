"""`similar-cases index` / `search` / `demo` end to end (in-process CLI): table, JSON, queries manifest,
feedback, saved queries, the side-by-side report, and one-line errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from search_helpers import copy_archive, tiny_model
from SimilarCaseRetrievalLib.cli import main
from SimilarCaseRetrievalLib.store import CaseStore


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_archive):
    """(archive, model) of an indexed copy of the tiny archive; one case gets a report with HTML in it."""
    root = tmp_path_factory.mktemp("cli")
    store = copy_archive(tiny_archive, root / "archive")
    case = store.get("OV0002")
    case.report = "Impression: <script>alert('x')</script> & cyst"
    store.update(case)
    store.close()
    tiny_model(root / "model")
    assert main(["index", "--archive", str(root / "archive"), "--model", str(root / "model"), "--quiet"]) == 0
    return root / "archive", root / "model"


def image_args(archive, case_id: str) -> list[str]:
    case = CaseStore(archive).get(case_id)
    spec = ";".join(f"{name}={archive / path}" for name, path in case.sequences.items())
    return ["--image", spec, "--mask", str(archive / case.mask), "--segment", case.segment or "1"]


def test_index_again_is_incremental_and_prints_a_summary(setup, capsys):
    archive, model = setup
    assert main(["index", "--archive", str(archive), "--model", str(model), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "embedded 0 case(s)" in out and "index: 24 of 24" in out


def test_search_prints_table_writes_json_and_report(setup, tmp_path, capsys):
    archive, model = setup
    args = ["search", "--archive", str(archive), "--model", str(model), *image_args(archive, "OV0002")]
    args += ["--text", "premenopausal, incidental cyst", "-k", "4", "--json", str(tmp_path / "hits.json")]
    args += ["--report", str(tmp_path / "report"), "--save-query", str(tmp_path / "q.npz")]
    # embeddings only: the random-init model's image cosines all lie within a few hundredths, so with the
    # default hybrid scoring the words of the notes would decide the order (tested in test_lexical_search.py)
    args += ["--fusion", "dense"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "OV0002" in out and "mode: fused" in out
    hits = json.loads((tmp_path / "hits.json").read_text(encoding="utf-8"))
    assert hits["mode"] == "fused" and len(hits["hits"]) == 4 and hits["hits"][0]["case_id"] == "OV0002"
    first = hits["hits"][0]
    assert {"score", "image_score", "text_score", "label", "shared_terms", "report_snippet"} <= set(first)
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # report text is escaped
    assert (tmp_path / "report" / "montage.png").stat().st_size > 1000
    assert (tmp_path / "report" / "query.png").is_file() and (tmp_path / "report" / "hit_04.png").is_file()

    # the saved query searches again, refined by feedback, and the feedback is logged
    args = [
        "search",
        "--archive",
        str(archive),
        "--model",
        str(model),
        "--load-query",
        str(tmp_path / "q.npz"),
    ]
    args += ["--relevant", hits["hits"][3]["case_id"], "--not-relevant", hits["hits"][1]["case_id"]]
    args += ["--json", str(tmp_path / "refined.json")]
    assert main(args) == 0
    refined = json.loads((tmp_path / "refined.json").read_text(encoding="utf-8"))
    assert refined["refined"] == 1 and len(refined["hits"]) == 4
    log = CaseStore(archive).feedback_log()
    assert log[-1]["relevant"] == [hits["hits"][3]["case_id"]]


def test_queries_manifest_runs_every_query_in_one_process(setup, tmp_path):
    archive, model = setup
    store = CaseStore(archive)
    rows = []
    for case_id in ("OV0001", "OV0003"):
        case = store.get(case_id)
        spec = ";".join(f"{n}={archive / p}" for n, p in case.sequences.items())
        rows.append(
            {"case_id": f"q-{case_id}", "image": spec, "mask": str(archive / case.mask), "segment": "1"}
        )
    rows.append(
        {"case_id": "q-text", "image": "", "mask": "", "segment": "", "notes": "solid tissue present"}
    )
    rows.append({"case_id": "q-missing", "image": str(tmp_path / "nope.nii.gz"), "mask": "", "segment": ""})
    with open(tmp_path / "queries.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "image", "mask", "segment", "notes"])
        writer.writeheader()
        writer.writerows(rows)
    args = [
        "search",
        "--archive",
        str(archive),
        "--model",
        str(model),
        "--queries",
        str(tmp_path / "queries.csv"),
    ]
    args += ["-k", "3", "--json", str(tmp_path / "all.json")]
    rc = main(args)
    out = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert out["queries"]["q-OV0001"]["hits"][0]["case_id"] == "OV0001"
    assert out["queries"]["q-OV0003"]["hits"][0]["case_id"] == "OV0003"
    # rows the manifest reader rejects (no image, missing file) are reported, the others still run
    assert set(out["errors"]) >= {"q-missing"} and rc == 1
    assert all(len(q["hits"]) == 3 for q in out["queries"].values())


def test_bad_input_is_one_line_and_exit_code_2(setup, tmp_path, capsys):
    archive, model = setup
    CaseStore(tmp_path / "empty").close()
    assert main(["search", "--archive", str(tmp_path / "empty"), "--model", str(model), "--text", "x"]) == 2
    assert main(["index", "--archive", str(tmp_path / "empty"), "--model", str(model)]) == 2
    assert main(["search", "--archive", str(archive), "--model", str(model), "--mask", "m.nii.gz"]) == 2
    assert (
        main(["search", "--archive", str(archive), "--model", str(tmp_path / "no-model"), "--text", "x"]) == 2
    )
    np.savez(
        tmp_path / "wrong.npz", image=np.ones(7, np.float32), text=np.zeros(0, np.float32), text_weight=0.3
    )
    args = [
        "search",
        "--archive",
        str(archive),
        "--model",
        str(model),
        "--load-query",
        str(tmp_path / "wrong.npz"),
    ]
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 5 and all("Fix:" in line for line in errors)


def test_demo_builds_indexes_searches_and_reports(setup, tmp_path, capsys):
    _, model = setup
    args = [
        "demo",
        "--archive",
        str(tmp_path / "demo-archive"),
        "--model",
        str(model),
        "--out",
        str(tmp_path / "out"),
    ]
    args += ["--cases", "12", "--size", "tiny", "-k", "3", "--workers", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "report:" in out and (tmp_path / "out" / "index.html").is_file()
    assert len(CaseStore(tmp_path / "demo-archive").model_versions()) == 1
    assert (tmp_path / "out" / "montage.png").is_file()
