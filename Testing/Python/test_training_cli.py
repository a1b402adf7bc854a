"""`similar-cases train` end to end on a tiny synthetic archive (manifest without texts: no text model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from SimilarCaseRetrievalLib.cli import main  # noqa: E402
from SimilarCaseRetrievalLib.encoders import CaseEncoder  # noqa: E402
from SimilarCaseRetrievalLib.manifest import read_manifest, write_manifest  # noqa: E402
from SimilarCaseRetrievalLib.synthetic import make_archive  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-cli")
    archive = make_archive(root / "archive", n_cases=8, seed=1, size="tiny", ingest=False, progress=False)
    cases, errors = read_manifest(archive / "manifest.csv")
    assert not errors
    no_text = [dataclasses.replace(c, report="", notes="") for c in cases]
    return write_manifest(root / "images_only.csv", no_text, base_dir=archive)


def test_train_command_writes_a_loadable_model_folder(manifest, tmp_path):
    out = tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--epochs", "1,1,1", "--grid", "16,16,4"]
    args += ["--widths", "4,8", "--embed-dim", "16", "--batch-size", "4", "--val-fraction", "0.25", "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    encoder = CaseEncoder.load(out)
    assert encoder.config.sequences == ["T2", "T1", "T1FS"]
    assert encoder.config.roi.grid == (16, 16, 4)
    assert encoder.config.labels and encoder.config.terms
    assert "--manifest" in encoder.config.training_command
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert encoder.version in card
    # default --members auto: a tiny run fits four networks into the 15-minute budget
    assert encoder.config.members == 4 and "Ensemble of 4 such networks" in card
    history = encoder.config.metrics["history"]
    assert [h["stage"] for h in history] == [0, 1, 2]
    assert all(np.isfinite(h["loss"]) for h in history)


def test_train_command_bad_input_exits_2_with_one_line(manifest, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--manifest", str(manifest), "--out", str(out), "--grid", "16,16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--grid" in err and len(err.splitlines()) == 1
    assert main(["train", "--manifest", str(manifest), "--out", str(out), "--members", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--members" in err and len(err.splitlines()) == 1
    assert main(["train", "--manifest", str(tmp_path / "missing.csv"), "--out", str(out)]) == 2
