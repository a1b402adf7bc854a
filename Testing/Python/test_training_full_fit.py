"""Training again on every case after selection (``full_fit``) and stopping at a given epoch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.training import train_model  # noqa: E402
from test_training_loop import tiny_config, tiny_data, weights  # noqa: E402

KW = dict(epochs=(0, 3, 2), batch_size=8, seed=1, progress=False)


def test_stop_after_ends_the_run_at_that_epoch_on_the_same_schedule():
    data = tiny_data(16)
    short = train_model(data, tiny_config(), stop_after=2, **KW)
    assert [h["epoch"] for h in short.config.metrics["history"]] == [1, 2]
    assert short.config.metrics["selection"]["epoch"] == 2
    full = train_model(data, tiny_config(), **KW)
    # the first two epochs of the full schedule are the short run's (same learning rates, same batches)
    assert full.config.metrics["history"][:2] == short.config.metrics["history"]


def test_full_fit_trains_again_on_every_case_for_the_kept_epochs():
    data = tiny_data(24)
    selected = train_model(data, tiny_config(), val_fraction=0.25, options={"full_fit": False}, **KW)
    final = train_model(data, tiny_config(), val_fraction=0.25, options={"full_fit": True}, **KW)
    sel, fin = selected.config.metrics, final.config.metrics
    assert sel["n_train"] == 18 and fin["n_train"] == 24 and fin["full_fit"] is True
    # the selection run is the same; its epoch, prior weight and validation numbers travel to the final model
    assert fin["history"] == sel["history"] and fin["final"] == sel["final"]
    assert fin["selection"]["epoch"] == sel["selection"]["epoch"]
    assert final.config.label_prior_weight == selected.config.label_prior_weight
    assert "trained again on all 24 cases" in fin["selection"]["reason"]
    w_sel, w_fin = weights(selected), weights(final)
    assert any(not (w_sel[k] == w_fin[k]).all() for k in w_sel)
    again = train_model(data, tiny_config(), val_fraction=0.25, options={"full_fit": True}, **KW)
    assert all((weights(again)[k] == w_fin[k]).all() for k in w_fin)  # deterministic


def test_full_fit_needs_a_validation_split_carved_from_the_data():
    data = tiny_data(24)
    plain = train_model(data, tiny_config(), options={"full_fit": True}, **KW)
    assert "full_fit" not in plain.config.metrics and plain.config.metrics["n_train"] == 24
    given = train_model(data, tiny_config(), val_cases=tiny_data(8, seed=5), options={"full_fit": True}, **KW)
    assert "full_fit" not in given.config.metrics and given.config.metrics["n_train"] == 24
