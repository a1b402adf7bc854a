"""The training loop on a tiny generated set (images only: no text model needed)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.encoders import CaseEncoder, ModelConfig  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402
from SimilarCaseRetrievalLib.roi import RoiConfig  # noqa: E402
from SimilarCaseRetrievalLib.training import TrainingData, train_model  # noqa: E402


def tiny_config() -> ModelConfig:
    return ModelConfig(
        sequences=["T2"], roi=RoiConfig(grid=(8, 8, 2)), embed_dim=16, widths=(4, 8), groups=2, text_hidden=16
    )


def tiny_data(n: int = 16, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    names = ["cyst", "fibroma"]
    rois = rng.normal(size=(n, 2, 2, 8, 8)).astype(np.float32)
    rois[:, 1] = 0.0
    for i in range(n):
        rois[i, 0] += 1.5 if i % 2 else -1.5  # the label shows in the image
        rois[i, 1, :, 2 + i % 3 : 6, 2:6] = 1.0
    return TrainingData(
        ids=[f"case{i:02d}" for i in range(n)],
        rois=rois,
        labels=[names[i % 2] for i in range(n)],
        terms=[["solid:present"] if i % 2 else ["fluid:simple"] for i in range(n)],
        groups=[f"p{i // 2}" for i in range(n)],
        texts=[""] * n,
    )


def weights(encoder: CaseEncoder) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in encoder.net.state_dict().items()}


def test_training_lowers_the_loss_and_fills_vocabularies():
    history: list[dict] = []
    encoder = train_model(
        tiny_data(),
        tiny_config(),
        epochs=(1, 5, 0),
        batch_size=8,
        lr=5e-3,
        progress=False,
        on_epoch=history.append,
    )
    stage1 = [h["loss"] for h in history if h["stage"] == 1]
    assert stage1[-1] < stage1[0]
    assert encoder.config.labels == ["cyst", "fibroma"]
    assert encoder.config.terms == ["fluid:simple", "solid:present"]
    pred = encoder.predict_rois(tiny_data().rois)
    assert pred.label_probs.shape == (16, 2) and pred.term_probs.shape == (16, 2)


def test_same_seed_gives_the_same_weights():
    a = train_model(tiny_data(), tiny_config(), epochs=(1, 1, 1), batch_size=8, seed=7, progress=False)
    b = train_model(tiny_data(), tiny_config(), epochs=(1, 1, 1), batch_size=8, seed=7, progress=False)
    c = train_model(tiny_data(), tiny_config(), epochs=(1, 1, 1), batch_size=8, seed=8, progress=False)
    wa, wb, wc = weights(a), weights(b), weights(c)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)


def test_validation_reports_map_each_epoch_and_resume_continues_the_same_run(tmp_path):
    data = tiny_data(20)
    kw = dict(epochs=(1, 1, 1), batch_size=8, seed=3, val_fraction=0.2, progress=False)
    full_history: list[dict] = []
    full = train_model(data, tiny_config(), on_epoch=full_history.append, **kw)
    assert len(full_history) == 3
    assert all(0.0 <= h["map@10_image"] <= 1.0 for h in full_history)
    assert "final" in full.config.metrics

    def stop_after_two(record: dict) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(data, tiny_config(), checkpoint_dir=tmp_path / "ckpt", on_epoch=stop_after_two, **kw)
    resumed = train_model(data, tiny_config(), resume=tmp_path / "ckpt", **kw)
    wf, wr = weights(full), weights(resumed)
    for k in wf:
        np.testing.assert_allclose(wr[k], wf[k], atol=1e-6)
    assert [h["epoch"] for h in resumed.config.metrics["history"]] == [1, 2, 3]
    assert (
        not list((tmp_path / "ckpt").glob("*.pt"))
        and (tmp_path / "ckpt" / "checkpoint.safetensors").is_file()
    )


def test_trained_model_round_trips_and_bad_input_is_refused(tmp_path):
    encoder = train_model(tiny_data(), tiny_config(), epochs=(0, 1, 0), batch_size=8, progress=False)
    encoder.save(tmp_path / "model")
    loaded = CaseEncoder.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.encode_rois(tiny_data().rois), encoder.encode_rois(tiny_data().rois))
    assert loaded.config.labels == ["cyst", "fibroma"]
    bad = tiny_data()
    bad.rois[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(CaseInputError, match="NaN"):
        train_model(TrainingData(**{**bad.__dict__}), tiny_config(), epochs=1, progress=False)
    with pytest.raises(CaseInputError, match="checkpoint"):
        train_model(
            tiny_data(12), tiny_config(), epochs=(0, 1, 0), resume=tmp_path / "missing", progress=False
        )


def test_recipe_options_switch_the_supervised_contrastive_term_and_bad_ones_are_refused():
    runs = {}
    for name, options in {
        "default": None,
        "original": {"supcon_weight": 0.0, "instance_weight": 1.0},
    }.items():
        history: list[dict] = []
        train_model(
            tiny_data(),
            tiny_config(),
            epochs=(0, 1, 1),
            batch_size=8,
            progress=False,
            on_epoch=history.append,
            options=options,
        )
        runs[name] = history
    assert all(h["loss_supcon"] > 0 for h in runs["default"])
    assert all("loss_supcon" not in h for h in runs["original"])
    with pytest.raises(CaseInputError, match="unknown training options"):
        train_model(tiny_data(), tiny_config(), epochs=(0, 1, 0), progress=False, options={"bogus": 1})


def test_model_selection_on_the_validation_split_sets_epoch_and_prior_weight(tmp_path):
    from SimilarCaseRetrievalLib.training.card import model_card

    data = tiny_data(24)
    encoder = train_model(
        data, tiny_config(), epochs=(0, 3, 1), batch_size=8, seed=1, val_fraction=0.25, progress=False
    )
    history = encoder.config.metrics["history"]
    selection = encoder.config.metrics["selection"]
    scores = [h["select_score"] for h in history]
    # The kept epoch is one with the best validation selection score; its prior weight is the model's.
    assert scores[selection["epoch"] - 1] == max(scores)
    assert selection["score"] == pytest.approx(max(scores), abs=1e-4)
    assert selection["prior_weight"] == history[selection["epoch"] - 1]["prior_weight"]
    assert encoder.config.label_prior_weight == selection["prior_weight"]
    # Per epoch, the kept weight is the best of the tried ones by the default score: the class mean of
    # 0.5 AP@10 + 0.5 P@1, on fused search when the validation queries have notes.
    for h in history:
        offset = 4 if h["select_on"] == "fused" else 0
        rows = h["by_weight"].values()
        best = max(0.5 * r[offset + 1] + 0.5 * r[offset + 3] for r in rows)
        assert h["select_score"] == pytest.approx(best, abs=2e-4)
        assert set(h["by_weight"]) == {f"{w:g}" for w in (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.97)}
    assert "class-mean" in selection["reason"]
    assert f"epoch {selection['epoch']}" in model_card(encoder)
    # Without a validation split: the last epoch, no prior.
    plain = train_model(data, tiny_config(), epochs=(0, 1, 0), batch_size=8, progress=False)
    assert plain.config.label_prior_weight == 0.0 and plain.config.metrics["selection"]["epoch"] == 1


def test_checkpoint_saved_before_the_selection_fields_resumes_with_the_first_rule(tmp_path):
    import json

    data = tiny_data(20)
    kw = dict(epochs=(0, 2, 0), batch_size=8, seed=3, val_fraction=0.2, progress=False)

    def stop_after_one(record: dict) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(data, tiny_config(), checkpoint_dir=tmp_path / "ckpt", on_epoch=stop_after_one, **kw)
    state_file = tmp_path / "ckpt" / "state.json"
    state = json.loads(state_file.read_text())
    for key in ("select_balanced", "select_p1", "select_on"):  # as written before these fields existed
        del state["options"][key]
    state_file.write_text(json.dumps(state))
    resumed = train_model(data, tiny_config(), resume=tmp_path / "ckpt", **kw)
    assert resumed.config.metrics["selection"]["reason"].startswith("best validation mean mAP@10 (image)")
    fresh = train_model(data, tiny_config(), **kw)
    assert fresh.config.metrics["selection"]["reason"].startswith("best validation class-mean 0.5")
