"""Similarity maps: Grad-CAM and occlusion of the pair score, back into each volume's space, and the
randomisation sanity checks (Adebayo et al. 2018) on a tiny model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")
import SimpleITK as sitk  # noqa: E402
from SimilarCaseRetrievalLib.encoders import CaseEncoder  # noqa: E402
from SimilarCaseRetrievalLib.explain import sanity  # noqa: E402
from SimilarCaseRetrievalLib.explain.maps import gradcam_pair, occlusion_pair, pair_maps  # noqa: E402
from SimilarCaseRetrievalLib.explain.pair import explain_case  # noqa: E402
from SimilarCaseRetrievalLib.explain.volume import map_to_volume  # noqa: E402
from SimilarCaseRetrievalLib.roi import extract_roi  # noqa: E402
from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config  # noqa: E402
from SimilarCaseRetrievalLib.store import CaseStore  # noqa: E402
from SimilarCaseRetrievalLib.study import study_from_images  # noqa: E402


@pytest.fixture(scope="module")
def archive(tiny_archive):
    store = CaseStore(tiny_archive, create=False)
    # Grad-CAM explains one forward pass: the pair score it reports is that of a model without flip averaging
    config = dataclasses.replace(tiny_model_config(), flip_tta=False)
    encoder = CaseEncoder.create(config, seed=0)
    cases = store.list_cases()
    studies = [store.load_study(c) for c in cases]
    masks = [store.load_mask(c, s) for c, s in zip(cases, studies, strict=True)]
    rois = np.stack([encoder.roi_for(s, m) for s, m in zip(studies, masks, strict=True)])
    return store, encoder, cases, studies, masks, rois


@pytest.fixture(scope="module")
def trained(archive):
    _, encoder, cases, _, _, rois = archive
    labels = [c.label for c in cases]
    shuffled = list(np.random.default_rng(0).permutation(labels))
    return (
        sanity.fit_diagnosis(encoder, rois, labels, steps=30),
        sanity.fit_diagnosis(encoder, rois, shuffled, steps=30),
    )


def test_maps_are_roi_shaped_normalised_and_not_flat(archive):
    _, encoder, _, _, _, rois = archive
    for method in ("gradcam", "occlusion"):
        maps = pair_maps(encoder, rois[0], rois[1], method)
        assert maps.query.shape == maps.hit.shape == rois.shape[2:]
        for m in (maps.query, maps.hit):
            assert m.min() >= 0 and m.max() == pytest.approx(1.0)
            assert np.ptp(m) > 0
        e = encoder.encode_rois(rois[:2])
        assert maps.score == pytest.approx(float(e[0] @ e[1]), abs=1e-4)


def test_occluding_the_hottest_box_lowers_the_score_more_than_the_coldest(archive):
    _, encoder, _, _, _, rois = archive
    q, h = rois[2], rois[3]
    maps = occlusion_pair(encoder, q, h)
    emb_h = encoder.encode_rois(h[None])[0]

    def score_without(box_centre):
        z, y, x = box_centre
        occluded = q.copy()
        occluded[:-1, max(0, z - 1) : z + 1, max(0, y - 2) : y + 2, max(0, x - 2) : x + 2] = 0.0
        return float(encoder.encode_rois(occluded[None])[0] @ emb_h)

    hot = np.unravel_index(np.argmax(maps.query), maps.query.shape)
    cold = np.unravel_index(np.argmin(maps.query), maps.query.shape)
    assert score_without(hot) < score_without(cold)


def test_gradcam_differs_between_query_sides(archive):
    _, encoder, _, _, _, rois = archive
    a = gradcam_pair(encoder, rois[0], rois[1])
    b = gradcam_pair(encoder, rois[0], rois[5])
    assert not np.allclose(a.query, b.query)  # the query's map depends on the hit it is compared with


@pytest.mark.parametrize("flip_x", [False, True])
def test_mask_channel_maps_back_onto_the_mask_in_volume_space(archive, flip_x):
    _, encoder, _, studies, masks, _ = archive
    study, mask = studies[0], masks[0]
    if flip_x:  # an image whose first axis points right-to-left: extract_roi flips the ROI

        def flipped(img):
            out = sitk.Image(img)
            d = list(img.GetDirection())
            d[0] = -d[0]
            out.SetDirection(d)
            return out

        study = study_from_images({k: flipped(v) for k, v in study.sequences.items()}, study.reference)
        mask = flipped(mask)
    roi = extract_roi(study, mask, encoder.config.sequences, encoder.config.roi)
    back = map_to_volume(roi[-1], study, mask, encoder.config.roi).dense() > 0.5
    truth = sitk.GetArrayFromImage(mask) > 0
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert dice > 0.7
    if flip_x:  # without undoing the flip the map lands mirrored
        mirrored = map_to_volume(roi[-1][:, :, ::-1], study, mask, encoder.config.roi).dense() > 0.5
        assert 2 * (mirrored & truth).sum() / (mirrored.sum() + truth.sum()) < dice


def test_explain_case_gives_images_in_each_volume_space(archive):
    store, encoder, cases, studies, masks, _ = archive
    maps, hit_study, _ = explain_case(encoder, store, studies[0], masks[0], cases[4].case_id, "gradcam")
    image = maps.hit.to_image(hit_study.reference_image)
    ref = hit_study.reference_image
    assert image.GetSpacing() == ref.GetSpacing()
    z, y, x = maps.hit.start
    assert np.allclose(image.GetOrigin(), ref.TransformIndexToPhysicalPoint((x, y, z)))
    assert maps.query.dense().shape == sitk.GetArrayViewFromImage(studies[0].reference_image).shape
    assert maps.query.values.max() > 0.5


def test_model_randomisation_changes_the_maps(archive, trained):
    _, _, _, _, _, rois = archive
    true_model, _ = trained
    pairs = [(rois[i], rois[i + 1]) for i in range(0, 8, 2)]
    for method in ("gradcam", "occlusion"):
        cascade = sanity.cascading_correlations(true_model, pairs, method)
        assert len(cascade) == len(sanity.image_layers(true_model))
        assert cascade[-1][1] < 0.5, (method, cascade)  # fully randomised: maps no longer alike
    same = [pair_maps(true_model, q, h) for q, h in pairs]
    assert sanity.mean_map_correlation(same, same) == pytest.approx(1.0)


def test_label_randomisation_changes_the_maps(archive, trained):
    _, _, _, _, _, rois = archive
    true_model, shuffled_model = trained
    pairs = [(rois[i], rois[i + 1]) for i in range(0, 8, 2)]
    for method in ("gradcam", "occlusion"):
        a = [pair_maps(true_model, q, h, method) for q, h in pairs]
        b = [pair_maps(shuffled_model, q, h, method) for q, h in pairs]
        assert sanity.mean_map_correlation(a, b) < 0.5, method


def test_unknown_method_is_a_one_line_error(archive):
    _, encoder, _, _, _, rois = archive
    with pytest.raises(ValueError, match="unknown map method"):
        pair_maps(encoder, rois[0], rois[1], "lime")
