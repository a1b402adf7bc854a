"""Training on a partly labelled archive: unlabelled cases train the self-supervised and instance losses, only
labelled ones the supervised heads, and validation uses diagnosed cases only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")

from SimilarCaseRetrievalLib.cli import main  # noqa: E402
from SimilarCaseRetrievalLib.encoders import CaseEncoder  # noqa: E402
from SimilarCaseRetrievalLib.manifest import read_manifest, write_manifest  # noqa: E402
from SimilarCaseRetrievalLib.training import map_at_k, split_validation, train_model  # noqa: E402
from test_training_loop import tiny_config, tiny_data  # noqa: E402

N_LABELLED = 8


def partly_labelled(n: int = 24):
    data = tiny_data(n)
    return dataclasses.replace(
        data,
        labels=[lab if i < N_LABELLED else None for i, lab in enumerate(data.labels)],
        terms=[t if i < N_LABELLED else [] for i, t in enumerate(data.terms)],
    )


def test_validation_is_drawn_from_diagnosed_cases_only():
    data = partly_labelled()
    train, val = split_validation(data, 0.3, seed=0)
    assert len(val) and all(data.labels[i] is not None for i in val)
    assert set(range(N_LABELLED, len(data))) <= set(train)  # every unlabelled case trains
    assert not {data.groups[i] for i in train} & {data.groups[i] for i in val}
    everything = dataclasses.replace(data, labels=[None] * len(data))
    assert len(split_validation(everything, 0.3, seed=0)[1]) == 0


def test_map_leaves_unlabelled_gallery_items_out():
    q = np.array([[1.0, 0.0]], np.float32)
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
    assert map_at_k(q, ["a"], gallery, ["b", "a", "b"]) == pytest.approx(0.5)
    assert map_at_k(q, ["a"], gallery, [None, "a", "b"]) == pytest.approx(1.0)


def test_unlabelled_cases_train_without_supervised_losses():
    data = partly_labelled()
    records: list[dict] = []
    encoder = train_model(
        data, tiny_config(), epochs=(1, 1, 1), val_fraction=0.3, progress=False, on_epoch=records.append
    )
    train, val = split_validation(data, 0.3, seed=0)
    assert encoder.config.metrics["n_train"] == len(train) == len(data) - len(val)
    assert encoder.config.labels == ["cyst", "fibroma"]
    assert records[1]["loss_label"] > 0 and records[1]["loss_terms"] > 0

    nothing = dataclasses.replace(data, labels=[None] * len(data), terms=[[] for _ in data.ids])
    records = []
    encoder = train_model(nothing, tiny_config(), epochs=(1, 1, 1), progress=False, on_epoch=records.append)
    assert encoder.config.labels == [] and encoder.config.terms == []
    assert records[0]["loss_ntxent"] > 0 and records[1]["loss_inst_img"] > 0
    assert (
        records[1]["loss_supcon"] == 0 and "loss_label" not in records[1] and "loss_terms" not in records[1]
    )
    assert encoder.encode_rois(data.rois[:2]).shape == (2, 16)


def test_train_command_on_a_partly_labelled_manifest(tmp_path, capsys):
    from SimilarCaseRetrievalLib.synthetic import make_archive

    archive = make_archive(
        tmp_path / "archive", n_cases=12, seed=2, size="tiny", ingest=False, progress=False
    )
    cases, errors = read_manifest(archive / "manifest.csv")
    assert not errors
    cases = [
        dataclasses.replace(c, report="", notes="", **({} if i < 6 else {"label": None, "terms": []}))
        for i, c in enumerate(cases)
    ]
    manifest = write_manifest(tmp_path / "partly.csv", cases, base_dir=archive)
    out = tmp_path / "model"
    args = ["train", "--manifest", str(manifest), "--out", str(out), "--epochs", "1,1,1", "--grid", "16,16,4"]
    args += ["--widths", "4,8", "--embed-dim", "16", "--batch-size", "4", "--val-fraction", "0.25", "--quiet"]
    assert main(args) == 0
    assert "12 case(s) (6 labelled" in capsys.readouterr().err
    encoder = CaseEncoder.load(out)
    assert encoder.config.metrics["n_labelled"] == 6
    assert encoder.config.labels and set(encoder.config.labels) <= {c.label for c in cases[:6]}
    assert encoder.config.metrics["n_train"] + encoder.config.metrics["n_val"] == 12
