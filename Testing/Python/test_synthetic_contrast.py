"""Each lesion type shows its defining MRI contrast; masks are sane.

Each sequence has its own random scanner gain (recorded in ``case.info["gain"]``); signals are compared
after dividing by it, i.e. in the generator's common reference units (bias field and noise remain).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from SimilarCaseRetrievalLib.synthetic import LABELS, SEQUENCES, synthesize_case

SEEDS = range(4)


def _core(mask: np.ndarray) -> np.ndarray:
    """The mask without its in-plane rim (partial volume with the surroundings)."""
    core = ndimage.binary_erosion(mask.astype(bool), structure=np.ones((1, 3, 3), bool))
    return core if core.sum() >= 8 else mask.astype(bool)


def _rel(case, sequence: str) -> float:
    """Mean signal inside the mass (core), in reference units."""
    return float(case.images[sequence][_core(case.mask)].mean() / case.info["gain"][sequence])


@pytest.fixture(scope="module")
def cases() -> dict[str, list]:
    return {label: [synthesize_case(label, seed, size="small") for seed in SEEDS] for label in LABELS}


def _mean(cases, label: str, sequence: str) -> float:
    return float(np.mean([_rel(c, sequence) for c in cases[label]]))


def test_masks_are_non_empty_inside_the_body_and_on_the_grid(cases) -> None:
    for label in LABELS:
        for case in cases[label]:
            mask = case.mask
            assert mask.shape == case.images["T2"].shape == case.grid.shape
            assert mask.dtype == np.uint8 and 0 < mask.sum() < 0.3 * mask.size
            z, y, x = (np.mean(ix) for ix in np.nonzero(mask))
            nz, ny, nx = mask.shape
            assert 0.1 * nx < x < 0.9 * nx and 0.1 * ny < y < 0.9 * ny
            # the mass sits inside the patient: the T2 signal there is well above the air around the body
            assert case.images["T2"][mask.astype(bool)].mean() > 4 * case.images["T2"][:, :2, :2].mean()


def test_laterality_term_matches_the_side_of_the_mask(cases) -> None:
    for label in LABELS:
        for case in cases[label]:
            x = np.nonzero(case.mask)[2].mean()
            left = x > case.mask.shape[2] / 2  # +x is the patient's left (LPS)
            assert ("laterality:left" in case.terms) == left, case.case_id


def test_simple_cyst_is_t2_bright_t1_dark(cases) -> None:
    for case in cases["simple_cyst"]:
        if "fluid:simple" in case.terms:
            assert _rel(case, "T2") > 3 * _rel(case, "T1")
        else:  # proteinaceous: T1 signal rises, T2 stays brighter than T1
            assert "fluid:proteinaceous" in case.terms
            assert _rel(case, "T2") > 1.3 * _rel(case, "T1")


def test_teratoma_fat_drops_on_fat_sat(cases) -> None:
    for case in cases["mature_teratoma"]:
        if case.variant != "low_fat":  # low_fat: a small fat globule only (the reader may miss it)
            assert "fat:present" in case.terms
            assert _rel(case, "T1FS") < _rel(case, "T1")
    assert _mean(cases, "mature_teratoma", "T1FS") < 0.6 * _mean(cases, "endometrioma", "T1FS")


def test_endometrioma_stays_bright_on_fat_sat(cases) -> None:
    simple_fluid = [c for c in cases["simple_cyst"] if "fluid:simple" in c.terms]
    assert simple_fluid
    water = float(np.mean([_rel(c, "T1FS") for c in simple_fluid]))
    for case in cases["endometrioma"]:
        assert _rel(case, "T1FS") > 2 * water
        assert _rel(case, "T1FS") > 0.7 * _rel(case, "T1")


def test_endometrioma_t2_shading_is_darker_than_simple_fluid(cases) -> None:
    shaded = [c for c in cases["endometrioma"] if "t2_shading:present" in c.terms]
    assert shaded
    for case in shaded:
        assert _rel(case, "T2") < 0.85 * _mean(cases, "simple_cyst", "T2")


def test_fibroma_dark_on_t2_relative_to_simple_cyst(cases) -> None:
    for case in cases["fibroma"]:
        factor = 0.5 if "t2_dark_solid:present" in case.terms else 0.8
        assert _rel(case, "T2") < factor * _mean(cases, "simple_cyst", "T2")


def test_cystadenoma_septations_go_with_locularity() -> None:
    from SimilarCaseRetrievalLib.synthetic.cases import sample_patient

    multilocular = 0
    for seed in range(40):
        patient = sample_patient("P", "cystadenoma", np.random.default_rng(seed))
        terms = patient.lesion.terms
        septated = "septations:thin" in terms or "septations:thick" in terms
        assert septated == ("locularity:multilocular" in terms)
        assert (len(patient.lesion.params["seeds"]) > 1) == septated
        multilocular += septated
    assert multilocular > 30  # mostly multilocular; a few unilocular serous ones read like simple cysts


def test_malignant_has_solid_tissue_ascites_and_high_score(cases) -> None:
    for case in cases["malignant"]:
        assert {"solid:present", "ascites:present"} <= set(case.terms)
        assert int(next(t for t in case.terms if t.startswith("orads:")).split(":")[1]) >= 4


def test_classes_overlap_in_terms() -> None:
    """Not trivially separable: some readings are shared between different labels."""
    from SimilarCaseRetrievalLib.synthetic.archive import plan_archive, synthesize_planned
    from SimilarCaseRetrievalLib.synthetic.shapes import Grid

    readings: dict[tuple, set[str]] = {}
    grid = Grid.named((8, 8, 4))
    for plan in plan_archive(120, seed=2):
        case = synthesize_planned(plan, 2, grid)
        key = tuple(t for t in case.terms if not t.startswith(("laterality:", "size:")))
        readings.setdefault(key, set()).add(case.label)
    assert any(len(labels) > 1 for labels in readings.values())


def test_sequences_are_noisy_and_biased_not_piecewise_constant(cases) -> None:
    case = cases["simple_cyst"][0]
    for name in SEQUENCES:
        inside = case.images[name][case.mask.astype(bool)]
        assert inside.std() > 0.01 * inside.mean()
        assert np.isfinite(case.images[name]).all() and case.images[name].min() >= 0


def _free_fluid(case) -> int:
    """Voxels outside the mass that look like fluid (T2 bright, T1 dark)."""
    t2 = case.images["T2"] / case.info["gain"]["T2"]
    t1 = case.images["T1"] / case.info["gain"]["T1"]
    return int(((t2 > 700) & (t1 < 300) & (case.mask == 0)).sum())


def test_malignant_ascites_is_visible_as_free_fluid(cases) -> None:
    """Bladder, follicles and trace fluid exist in every case; ascites adds clearly more."""
    malignant = np.mean([_free_fluid(c) for c in cases["malignant"]])
    simple = np.mean([_free_fluid(c) for c in cases["simple_cyst"]])
    assert malignant > 1.3 * simple
