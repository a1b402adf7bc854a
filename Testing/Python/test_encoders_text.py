"""Text branch: the bundled MiniLM (loaded once for this module) projected into the shared space."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.encoders import CaseEncoder, ModelConfig  # noqa: E402
from SimilarCaseRetrievalLib.encoders.text import load_sentence_model  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402
from SimilarCaseRetrievalLib.roi import RoiConfig  # noqa: E402
from SimilarCaseRetrievalLib.training import TrainingData, train_model  # noqa: E402


def tiny_config(**kw) -> ModelConfig:
    base = dict(sequences=["T2"], roi=RoiConfig(grid=(8, 8, 2)), embed_dim=16, widths=(4, 8), groups=2)
    base.update(kw)
    return ModelConfig(text_hidden=32, **base)


@pytest.fixture(scope="module")
def sentence_model():
    return load_sentence_model("default")  # the real, local all-MiniLM-L6-v2 (cached for the process)


def test_texts_embed_into_the_shared_dimension(sentence_model):
    encoder = CaseEncoder.create(tiny_config())
    texts = ["Simple unilocular cyst, thin wall.", "", "Kyste uniloculaire simple."]
    z = encoder.encode_texts(texts)
    assert z.shape == (3, 16) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z[[0, 2]], axis=1), 1.0, atol=1e-5)
    assert not z[1].any()  # no text -> zero vector (ranks last, fuses to image-only)
    # the same text gives the same vector; the image branch lives in the same space
    np.testing.assert_allclose(encoder.encode_texts([texts[0]])[0], z[0], atol=1e-5)
    assert encoder.encode_rois(np.zeros((1, 2, 2, 8, 8), np.float32)).shape[1] == z.shape[1]


def test_text_model_dimension_mismatch_is_refused(sentence_model):
    encoder = CaseEncoder.create(tiny_config(text_dim=128))
    with pytest.raises(CaseInputError, match="text_dim"):
        encoder.encode_texts(["a report"])


def test_unknown_text_model_path_is_refused(tmp_path, sentence_model):
    encoder = CaseEncoder.create(tiny_config(text_model=str(tmp_path / "no-such-model")))
    with pytest.raises(CaseInputError, match="text model"):
        encoder.encode_texts(["a report"])


def test_training_aligns_reports_with_their_images(sentence_model):
    """A few epochs on a tiny set: reports move closer to the images of their own diagnosis than to others'."""
    rng = np.random.default_rng(0)
    words = ["simple cyst", "fibroma", "carcinoma"]
    n = 12
    labels = [words[i % 3] for i in range(n)]
    rois = rng.normal(size=(n, 2, 2, 8, 8)).astype(np.float32)
    for i in range(n):
        rois[i, 0] += 2.0 * ((i % 3) - 1)
    rois[:, 1] = 1.0
    data = TrainingData(
        ids=[f"c{i}" for i in range(n)],
        rois=rois,
        labels=labels,
        terms=[[] for _ in range(n)],
        groups=[f"p{i}" for i in range(n)],
        texts=[f"Adnexal mass, findings of a {w}, case {i}." for i, w in enumerate(labels)],
    )
    config = tiny_config()
    before = CaseEncoder.create(config)
    encoder = train_model(data, config, epochs=(0, 6, 4), batch_size=6, lr=5e-3, progress=False)

    same = np.array(labels)[:, None] == np.array(labels)[None, :]

    def matched_margin(enc):
        s = enc.encode_rois(data.rois) @ enc.encode_texts(data.texts).T
        return float(np.mean(s[same]) - np.mean(s[~same]))

    assert matched_margin(encoder) > matched_margin(before) + 0.03


REPORTS = [
    "Left adnexal unilocular cyst with thin smooth wall, no solid tissue. Likely benign.",
    "Multilocular cystic mass with enhancing solid papillary projections and ascites.",
    "Fat-containing lesion with signal drop on fat-saturated T1: mature teratoma.",
]


def test_int8_text_model_is_quantised_close_to_fp32_and_independent_of_batching(sentence_model):
    from SimilarCaseRetrievalLib.encoders.text import embed_sentences

    int8 = load_sentence_model("default", quantization="int8")
    assert int8 is not sentence_model and load_sentence_model("default", quantization="int8") is int8
    kinds = {type(m).__module__ for m in int8.modules()}
    assert any("quantized" in k for k in kinds)  # its Linear layers were swapped
    assert not any("quantized" in type(m).__module__ for m in sentence_model.modules())  # fp32 one untouched

    fp32_vecs, int8_vecs = embed_sentences(sentence_model, REPORTS), embed_sentences(int8, REPORTS)
    cosine = (
        (fp32_vecs * int8_vecs).sum(1) / np.linalg.norm(fp32_vecs, axis=1) / np.linalg.norm(int8_vecs, axis=1)
    )
    # per-channel weight scales keep these at 0.97-0.98 (per-tensor scales gave 0.89-0.95 and cost notes retrieval)
    assert np.all(cosine > 0.95) and not np.allclose(fp32_vecs, int8_vecs, atol=1e-3)
    # a text embeds the same alone or beside others (no batch-wide activation scale)
    np.testing.assert_array_equal(embed_sentences(int8, REPORTS[1:2])[0], int8_vecs[1])


def test_text_quantization_is_part_of_the_config_and_the_cache_key(sentence_model):
    from SimilarCaseRetrievalLib.encoders.text import cache_key

    assert ModelConfig().text_quantization == "int8"  # new models
    old = ModelConfig().to_dict()
    del old["text_quantization"]  # a config.json written before the option: fp32
    assert ModelConfig.from_dict(old).text_quantization == "none"
    encoder = CaseEncoder.create(tiny_config(text_quantization="int8"))
    assert encoder.sentence_model is load_sentence_model("default", quantization="int8")
    assert cache_key(sentence_model, "default", "int8") != cache_key(sentence_model, "default", "none")
    with pytest.raises(CaseInputError, match="quantization"):
        CaseEncoder.create(tiny_config(text_quantization="fp16")).encode_texts(["a report"])
    # the CLI offers exactly the settings the loader accepts (train and evaluate share the option)
    import argparse

    from SimilarCaseRetrievalLib.commands import add_text_quantization
    from SimilarCaseRetrievalLib.encoders.text import QUANTIZATIONS

    parser = argparse.ArgumentParser()
    add_text_quantization(parser, "")
    (option,) = [a for a in parser._actions if a.dest == "text_quantization"]
    assert (
        sorted(option.choices) == sorted(QUANTIZATIONS) and option.default == ModelConfig().text_quantization
    )


def test_loading_the_text_model_leaves_the_process_environment_alone(monkeypatch):
    """Slicer's interpreter is shared with other extensions: offline loading is asked of this load only."""
    from SimilarCaseRetrievalLib.encoders import text

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(text, "_LOADED", {})  # load again, not from the per-process cache
    assert text.load_sentence_model("default") is not None
    with pytest.raises(CaseInputError, match="cannot load text model"):  # a hub name is never downloaded
        text.load_sentence_model("scr-no-such-org/scr-no-such-model")
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
