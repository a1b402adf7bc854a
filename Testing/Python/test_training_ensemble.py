"""Ensembles: several networks trained with successive seeds, searched as one model."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from SimilarCaseRetrievalLib.encoders import CaseEncoder, with_label_prior  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402
from SimilarCaseRetrievalLib.explain import sanity  # noqa: E402
from SimilarCaseRetrievalLib.explain.maps import _gradcam_member, _normalise, gradcam_pair  # noqa: E402
from SimilarCaseRetrievalLib.training import train_model  # noqa: E402
from SimilarCaseRetrievalLib.training.ensemble import (  # noqa: E402
    next_member_fits,
    parse_members,
    train_ensemble,
)
from test_training_loop import tiny_config, tiny_data, weights  # noqa: E402


def same_weights(a: CaseEncoder, b: CaseEncoder) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name])


KW = dict(epochs=(1, 2, 1), batch_size=8, val_fraction=0.25, progress=False)


@pytest.fixture(scope="module")
def pair():
    """(ensemble of 2, member seed 0, member seed 1), trained once for the module."""
    data = tiny_data(24)
    ensemble = train_ensemble(data, tiny_config(), members=2, seed=0, **KW)
    first = train_model(data, tiny_config(), seed=0, **KW)
    config = dataclasses.replace(tiny_config(), labels=first.labels, terms=first.terms)
    second = train_model(data, config, seed=1, **KW)
    return ensemble, first, second


def test_members_are_the_runs_of_successive_seeds(pair):
    ensemble, first, second = pair
    assert ensemble.config.members == 2
    assert ensemble.config.metrics["ensemble"]["seeds"] == [0, 1]
    state = weights(ensemble)
    for i, member in enumerate((first, second)):
        for name, value in weights(member).items():
            branch, rest = name.split(".", 1)
            np.testing.assert_array_equal(state[f"{branch}.members.{i}.{rest}"], value)
    w = np.median([first.config.label_prior_weight, second.config.label_prior_weight])
    assert ensemble.config.label_prior_weight == pytest.approx(w)


@pytest.mark.parametrize("flip", [False, True])
def test_search_score_is_the_mean_of_the_members_cosines(pair, flip):
    ensemble, first, second = pair
    rois = tiny_data(24).rois[:6]
    members = [first, second]
    for enc in (ensemble, *members):
        enc.config.flip_tta = flip
        enc.config.label_prior_weight = 0.0
    v = ensemble.encode_rois(rois)
    assert v.shape == (6, 2 * 16) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cosines = [m.encode_rois(rois) @ m.encode_rois(rois).T for m in members]
    np.testing.assert_allclose(v @ v.T, np.mean(cosines, axis=0), atol=1e-5)
    probs = ensemble.predict_rois(rois).label_probs
    mean = np.mean([m.predict_rois(rois).label_probs for m in members], axis=0)
    np.testing.assert_allclose(probs, mean, atol=1e-5)
    ensemble.config.label_prior_weight = 0.5  # the prior on the mean probabilities
    prior = with_label_prior(v, probs, 0.5)
    np.testing.assert_allclose(ensemble.encode_rois(rois), prior, atol=1e-5)
    assert ensemble.vector_dim == 2 * 16 + 2
    ensemble.config.label_prior_weight = 0.0


def test_ensemble_survives_save_and_load(pair, tmp_path):
    ensemble = pair[0]
    rois = tiny_data(24).rois[:5]
    ensemble.save(tmp_path / "m")
    loaded = CaseEncoder.load(tmp_path / "m")
    assert loaded.config.members == 2
    np.testing.assert_allclose(loaded.encode_rois(rois), ensemble.encode_rois(rois), atol=1e-6)
    config = (
        (tmp_path / "m" / "config.json").read_text(encoding="utf-8").replace('"members": 2', '"members": 3')
    )
    (tmp_path / "m" / "config.json").write_text(config, encoding="utf-8")
    with pytest.raises(CaseInputError, match="model.safetensors|config.json"):
        CaseEncoder.load(tmp_path / "m")


def test_gradcam_and_randomisation_cover_every_member(pair):
    ensemble, first, second = pair
    rois = tiny_data(24).rois
    ensemble.config.flip_tta = False
    maps = gradcam_pair(ensemble, rois[0], rois[1])
    v = ensemble.encode_rois(rois[:2])
    assert maps.score == pytest.approx(float(v[0] @ v[1]), abs=1e-5)
    assert maps.query.shape == rois.shape[2:]
    x = torch.from_numpy(rois[:2])
    cams = [_gradcam_member(net, x)[0] for net in (first.net.image, second.net.image)]
    mean = np.mean(cams, axis=0)  # every member's map counts
    np.testing.assert_allclose(maps.query, _normalise(mean[0]), atol=1e-5)
    np.testing.assert_allclose(maps.hit, _normalise(mean[1]), atol=1e-5)
    assert not np.allclose(cams[0], cams[1], atol=1e-4)  # so the mean is neither member's map alone
    layers = sanity.image_layers(ensemble)
    assert [name for name, _ in layers] == [name for name, _ in sanity.image_layers(first)]
    assert all(
        len(mods) == 2 * len(m1)
        for (_, mods), (_, m1) in zip(layers, sanity.image_layers(first), strict=True)
    )


def test_auto_trains_members_while_the_next_fits_the_budget():
    assert next_member_fits([100.0], 900.0)
    assert next_member_fits([300.0, 300.0], 900.0)
    assert not next_member_fits([500.0], 900.0)
    assert not next_member_fits([10.0] * 4, 900.0)
    assert parse_members("auto") == "auto" and parse_members("3") == 3
    for bad in ("0", "two", -1):
        with pytest.raises(CaseInputError, match="--members"):
            parse_members(bad)
    tiny = train_ensemble(tiny_data(24), tiny_config(), members="auto", budget_s=0.0, **KW)
    assert tiny.config.members == 1  # the first always runs; a second would not fit 0 s


def test_one_member_is_train_model_itself():
    data = tiny_data(24)
    one = train_ensemble(data, tiny_config(), members=1, seed=3, **KW)
    plain = train_model(data, tiny_config(), seed=3, **KW)
    same_weights(one, plain)
    assert one.version == plain.version and one.config.members == 1


def test_resume_trains_only_the_members_left(pair, tmp_path):
    ensemble = pair[0]
    data = tiny_data(24)
    ckpt = tmp_path / "ckpt"
    seen: list[str] = []
    full = train_ensemble(
        data, tiny_config(), members=2, checkpoint_dir=ckpt, on_epoch=lambda r: seen.append(r["member"]), **KW
    )
    assert set(seen) == {"1/2", "2/2"}
    same_weights(full, ensemble)
    shutil.rmtree(ckpt / "member-1")  # as if stopped before the second member started
    seen.clear()
    resumed = train_ensemble(
        data,
        tiny_config(),
        members=2,
        resume=ckpt,
        checkpoint_dir=ckpt,
        on_epoch=lambda r: seen.append(r["member"]),
        **KW,
    )
    assert set(seen) == {"2/2"}  # the first member was read back, not trained again
    same_weights(resumed, ensemble)
