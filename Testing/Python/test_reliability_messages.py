"""Unclear messages of issue 12, each now one line naming the file or item and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from search_helpers import make_case, tiny_model
from SimilarCaseRetrievalLib import cli
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.manifest import read_manifest
from SimilarCaseRetrievalLib.store import CaseStore


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err and "Fix:" in lines[0], err
    return lines[0]


def test_index_over_cases_without_a_mask_lists_them(tmp_path, capsys):
    store = CaseStore(tmp_path / "a")
    for n in range(3):
        case = make_case(tmp_path / "files", f"c{n}", n, np.random.default_rng(n))
        case.mask = None
        store.add(case)
    store.close()
    tiny_model(tmp_path / "model")
    rc = cli.main(["index", "--archive", str(tmp_path / "a"), "--model", str(tmp_path / "model"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 1 and "reshape" not in out.out + out.err
    assert "no case could be embedded" in out.out
    assert all(f"c{n}: case c{n}: case has no mask" in out.out for n in range(3))


def test_text_with_invalid_utf8_bytes(tmp_path, capsys):
    text = b"kyste \xff\xfe ovarien".decode("utf-8", "surrogateescape")  # how argv carries such bytes
    assert cli.main(["search", "--archive", str(tmp_path), "--text", text]) == 2
    assert "--text: not valid UTF-8 text" in _error(capsys)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_huge_notes_field_names_the_line_and_the_limit(tmp_path):
    big = "x" * 5_000_000
    manifest = _write(tmp_path / "m.csv", f"case_id,image,notes\nc1,a.nii.gz,short\nc2,a.nii.gz,{big}\n")
    with pytest.raises(CaseInputError) as err:
        read_manifest(manifest)
    text = str(err.value)
    assert "\n" not in text and "m.csv:3" in text and "longer than 131072 characters" in text
    assert "shorten" in text


@pytest.mark.parametrize("sep, name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_manifest_with_another_separator_gets_a_hint(tmp_path, sep, name):
    manifest = _write(
        tmp_path / "m.csv", sep.join(["case_id", "image", "mask"]) + "\nc1" + sep + "a.nii.gz\n"
    )
    with pytest.raises(CaseInputError, match=f"separated by {name}: save it as comma-separated"):
        read_manifest(manifest)


def test_ingest_into_a_file_and_from_a_missing_manifest(tmp_path, capsys):
    not_a_folder = _write(tmp_path / "archive.txt", "x")
    manifest = _write(tmp_path / "m.csv", "case_id,image\n")
    assert cli.main(["ingest", str(manifest), "--archive", str(not_a_folder), "--quiet"]) == 2
    assert "is a file, not an archive folder" in _error(capsys)
    assert (
        cli.main(["ingest", str(tmp_path / "no_such.csv"), "--archive", str(tmp_path / "new"), "--quiet"])
        == 2
    )
    assert "manifest not found" in _error(capsys)
    assert not (tmp_path / "new").exists()  # nothing created before the failure


def test_a_hub_name_that_is_not_cached_fails_at_once(monkeypatch):
    from SimilarCaseRetrievalLib.encoders.text import load_sentence_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even when online access is allowed, nothing is downloaded
    with pytest.raises(
        CaseInputError,
        match=r"cannot load text model .* \(neither a local folder nor in the local Hugging Face cache\)",
    ):
        load_sentence_model("nobody-here/not-a-cached-model")
