"""Refitting the diagnosis head after training (logistic regression on the frozen image features)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.encoders import CaseEncoder  # noqa: E402
from SimilarCaseRetrievalLib.training import train_model  # noqa: E402
from SimilarCaseRetrievalLib.training.head_refit import refit_label_head  # noqa: E402
from test_training_loop import tiny_config, tiny_data  # noqa: E402


def _accuracy(encoder: CaseEncoder, data) -> float:
    probs = encoder.predict_rois(data.rois).label_probs
    predicted = np.asarray(encoder.config.labels, dtype=object)[probs.argmax(axis=1)]
    return float(np.mean(predicted == np.asarray(data.labels, dtype=object)))


@pytest.mark.parametrize("labels", [["cyst", "fibroma"], ["cyst", "fibroma", "teratoma"]])
def test_refitted_head_predicts_the_training_diagnoses_and_survives_save(tmp_path, labels):
    data = tiny_data(24)  # the diagnosis shows as the mean intensity
    config = dataclasses.replace(tiny_config(), labels=labels, flip_tta=True)
    encoder = CaseEncoder.create(config, seed=0)  # an untrained trunk: its head is chance
    before = encoder.predict_rois(data.rois).label_probs
    assert refit_label_head(encoder, data)
    after = encoder.predict_rois(data.rois).label_probs
    assert _accuracy(encoder, data) == 1.0
    assert not np.allclose(before, after)
    if "teratoma" in labels:  # a diagnosis without a training case is never predicted
        assert after[:, 2].max() < 1e-6
    encoder.save(tmp_path / "m")
    reloaded = CaseEncoder.load(tmp_path / "m").predict_rois(data.rois).label_probs
    np.testing.assert_allclose(reloaded, after, atol=1e-5)


def test_refit_needs_two_diagnoses():
    data = tiny_data(8)
    one = dataclasses.replace(data, labels=["cyst"] * len(data.ids))
    encoder = CaseEncoder.create(dataclasses.replace(tiny_config(), labels=["cyst", "fibroma"]), seed=0)
    weights = encoder.net.image.label_head.weight.detach().clone()
    assert not refit_label_head(encoder, one)
    assert torch.equal(encoder.net.image.label_head.weight, weights)


def test_training_with_refit_chooses_the_prior_weight_again_with_the_new_head():
    data = tiny_data(24)
    kw = dict(epochs=(0, 2, 1), batch_size=8, seed=1, val_fraction=0.25, progress=False)
    plain = train_model(data, tiny_config(), **kw, options={"refit_head": False})
    refit = train_model(data, tiny_config(), **kw, options={"refit_head": True})
    sel_plain, sel_refit = plain.config.metrics["selection"], refit.config.metrics["selection"]
    # The same run up to the kept epoch; only the head (and the prior weight chosen with it) differ.
    assert sel_refit["epoch"] == sel_plain["epoch"]
    assert plain.config.metrics["history"] == refit.config.metrics["history"]
    assert "refitted" in sel_refit["reason"] and "refitted" not in sel_plain["reason"]
    final = refit.config.metrics["final"]
    assert refit.config.label_prior_weight == sel_refit["prior_weight"]
    assert final["select_score"] == pytest.approx(sel_refit["score"], abs=1e-4)
    # The refitted head is kept only when the validation score does not drop.
    assert sel_refit["score"] >= sel_plain["score"] - 1e-4
    trunk = [k for k in plain.net.state_dict() if not k.startswith("image.label_head")]
    for k in trunk:
        assert torch.equal(plain.net.state_dict()[k], refit.net.state_dict()[k]), k
    same_head = torch.equal(plain.net.image.label_head.weight, refit.net.image.label_head.weight)
    assert same_head == ("trained diagnosis head kept" in sel_refit["reason"])
