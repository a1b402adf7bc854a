"""Image branch of CaseEncoder: shapes (3D and one-slice), normalisation, determinism, save/load, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.encoders import CaseEncoder, ModelConfig, fuse_embeddings  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402
from SimilarCaseRetrievalLib.roi import RoiConfig  # noqa: E402


def tiny_config(grid=(16, 16, 4), sequences=("T2", "T1"), **kw) -> ModelConfig:
    return ModelConfig(
        sequences=list(sequences),
        roi=RoiConfig(grid=grid),
        embed_dim=16,
        widths=(4, 8),
        groups=2,
        text_hidden=16,
        terms=["fluid:simple", "solid:present", "fat:present"],
        labels=["benign", "malignant"],
        **kw,
    )


def rois_for(config: ModelConfig, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rois = rng.normal(size=(n, config.in_channels, *config.roi_shape)).astype(np.float32)
    rois[:, -1] = rng.random((n, *config.roi_shape)) > 0.5
    return rois


@pytest.mark.parametrize("grid", [(16, 16, 4), (16, 16, 1)])
def test_embeddings_shape_and_unit_norm_for_3d_and_one_slice(grid):
    config = tiny_config(grid=grid, sequences=("image",) if grid[2] == 1 else ("T2", "T1"))
    encoder = CaseEncoder.create(config)
    rois = rois_for(config, 3)
    z = encoder.encode_rois(rois)
    assert z.shape == (3, 16)
    assert z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    pred = encoder.predict_rois(rois)
    assert pred.term_probs.shape == (3, 3) and pred.label_probs.shape == (3, 2)
    assert ((pred.term_probs > 0) & (pred.term_probs < 1)).all()
    np.testing.assert_allclose(pred.label_probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pred.embeddings, z, atol=1e-6)


def test_single_roi_and_batch_give_the_same_embedding():
    config = tiny_config()
    encoder = CaseEncoder.create(config)
    rois = rois_for(config, 4)
    batched = encoder.encode_rois(rois, batch_size=4)
    single = np.concatenate([encoder.encode_rois(r) for r in rois])  # (C, Z, Y, X) accepted
    np.testing.assert_allclose(single, batched, atol=1e-5)


def test_same_seed_same_weights_and_outputs_other_seed_differs():
    config = tiny_config()
    rois = rois_for(config, 2)
    a = CaseEncoder.create(tiny_config(), seed=3).encode_rois(rois)
    b = CaseEncoder.create(tiny_config(), seed=3).encode_rois(rois)
    c = CaseEncoder.create(tiny_config(), seed=4).encode_rois(rois)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_save_load_round_trip_gives_identical_embeddings(tmp_path):
    config = tiny_config()
    encoder = CaseEncoder.create(config, seed=1)
    rois = rois_for(config, 3)
    encoder.save(tmp_path / "model")
    loaded = CaseEncoder.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.encode_rois(rois), encoder.encode_rois(rois))
    assert loaded.version == encoder.version
    assert loaded.config.terms == config.terms and loaded.config.labels == config.labels
    assert loaded.config.roi == config.roi
    # version = name-date-<8 hex of the weights>, so other weights give another version
    other = CaseEncoder.create(tiny_config(), seed=2)
    other.save(tmp_path / "other")
    assert other.version != encoder.version
    assert encoder.version.startswith(config.name + "-")


def test_config_that_does_not_match_the_weights_is_refused_in_one_line(tmp_path):
    model_dir = tmp_path / "model"
    CaseEncoder.create(tiny_config()).save(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    cfg["widths"] = [4, 12]
    (model_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(CaseInputError) as info:
        CaseEncoder.load(model_dir)
    message = str(info.value)
    assert "model.safetensors" in message and "config.json" in message and "\n" not in message


def test_edited_version_or_terms_list_is_refused(tmp_path):
    model_dir = tmp_path / "model"
    CaseEncoder.create(tiny_config()).save(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    cfg["terms"] = cfg["terms"][:2]  # term head has 3 outputs
    (model_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(CaseInputError, match="shape mismatch"):
        CaseEncoder.load(model_dir)
    CaseEncoder.create(tiny_config()).save(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    cfg["version"] = cfg["version"][:-8] + "00000000"
    (model_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(CaseInputError, match="version"):
        CaseEncoder.load(model_dir)


def test_missing_or_corrupt_model_files_raise_case_input_error(tmp_path):
    with pytest.raises(CaseInputError, match="missing"):
        CaseEncoder.load(tmp_path / "nowhere")
    model_dir = tmp_path / "model"
    CaseEncoder.create(tiny_config()).save(model_dir)
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CaseInputError, match="model.safetensors"):
        CaseEncoder.load(model_dir)
    (model_dir / "config.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(CaseInputError, match="config.json"):
        CaseEncoder.load(model_dir)


def test_wrong_roi_shape_or_nan_is_refused():
    config = tiny_config()
    encoder = CaseEncoder.create(config)
    with pytest.raises(CaseInputError, match="grid"):
        encoder.encode_rois(np.zeros((1, 3, 8, 16, 16), np.float32))
    with pytest.raises(CaseInputError, match="sequences"):
        encoder.encode_rois(np.zeros((1, 4, 4, 16, 16), np.float32))
    bad = rois_for(config, 1)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(CaseInputError, match="NaN"):
        encoder.encode_rois(bad)


def test_fuse_embeddings_is_normalised_and_falls_back_to_image_without_text():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 8)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = rng.normal(size=(2, 8)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    txt[1] = 0.0
    fused = fuse_embeddings(img, txt, text_weight=0.3)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fused[1], img[1], atol=1e-6)
    assert fused[0] @ txt[0] > img[0] @ txt[0]


def test_label_prior_vectors_score_cosine_plus_diagnosis_agreement():
    from SimilarCaseRetrievalLib.encoders import with_label_prior

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(3, 8)).astype(np.float32)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.05, 0.95]], np.float32)
    w = 0.4
    v = with_label_prior(emb, probs, w)
    assert v.shape == (3, 10)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    bc = np.sqrt(probs) @ np.sqrt(probs).T  # Bhattacharyya coefficient of the diagnosis distributions
    np.testing.assert_allclose(v @ v.T, (1 - w) * e @ e.T + w * bc, atol=1e-5)


def test_encoder_with_label_prior_extends_image_vectors_and_pads_texts(tmp_path):
    config = tiny_config(label_prior_weight=0.5)
    encoder = CaseEncoder.create(config, seed=0)
    rois = rois_for(config, 4)
    vectors = encoder.encode_rois(rois)
    assert encoder.vector_dim == 16 + 2 and vectors.shape == (4, 18)
    pred = encoder.predict_rois(rois)
    np.testing.assert_allclose(pred.embeddings, vectors, atol=1e-6)
    # The prior part is sqrt(w) * sqrt(diagnosis probabilities).
    np.testing.assert_allclose(vectors[:, 16:], np.sqrt(0.5) * np.sqrt(pred.label_probs), atol=1e-5)
    # Archive cases with a recorded diagnosis use it (one-hot) instead of the predicted one; unknown -> predicted.
    known = encoder.encode_rois(rois, labels=["malignant", None, "benign", "other"])
    np.testing.assert_allclose(known[0, 16:], [0.0, np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(known[2, 16:], [np.sqrt(0.5), 0.0], atol=1e-6)
    np.testing.assert_allclose(known[[1, 3]], vectors[[1, 3]], atol=1e-6)
    np.testing.assert_allclose(known[:, :16], vectors[:, :16], atol=1e-6)
    texts = encoder.project_texts(np.ones((2, config.text_dim), np.float32))
    assert texts.shape == (2, 18) and not texts[:, 16:].any()
    encoder.save(tmp_path / "m")
    assert CaseEncoder.load(tmp_path / "m").config.label_prior_weight == 0.5
    # A config.json written before the key existed loads as no prior (vectors = the plain embedding).
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["label_prior_weight"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    old = CaseEncoder.load(tmp_path / "m")
    assert old.vector_dim == 16 and old.encode_rois(rois).shape == (4, 16)


def test_flip_tta_makes_a_mirrored_roi_give_the_same_vector_and_old_configs_keep_it_off():
    config = tiny_config(grid=(16, 16, 1), sequences=("image",))
    assert config.flip_tta  # new models
    encoder = CaseEncoder.create(config)
    rois = rois_for(config, 2)
    mirrored = rois[..., ::-1].copy()
    pred, pred_m = encoder.predict_rois(rois), encoder.predict_rois(mirrored)
    np.testing.assert_allclose(pred.embeddings, pred_m.embeddings, atol=1e-5)
    np.testing.assert_allclose(pred.label_probs, pred_m.label_probs, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pred.embeddings, axis=1), 1.0, atol=1e-5)
    old = config.to_dict()
    del old["flip_tta"]  # a config.json written before test-time flips existed
    plain = CaseEncoder(ModelConfig.from_dict(old), encoder.net)
    assert not plain.config.flip_tta
    z, z_m = plain.encode_rois(rois), plain.encode_rois(mirrored)
    assert np.abs(z - z_m).max() > 1e-3
