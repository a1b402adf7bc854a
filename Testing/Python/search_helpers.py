"""Helpers for the index / search tests: copies of the `tiny_archive` fixture, extra hand-made cases, and a
tiny random-init model (real store, real encoder; nothing mocked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from SimilarCaseRetrievalLib.store import Case, CaseStore

SEQUENCES = ["T2", "T1", "T1FS"]
LABELS = ["simple_cyst", "fibroma", "cystadenoma"]
TERMS = ["locularity:unilocular", "t2_dark_solid:present", "locularity:multilocular"]
REPORTS = [
    "Unilocular cyst of the left ovary with thin wall.",
    "Solid tissue, low T2 signal, dark on T2 like a fibroma.",
    "Multilocular cystic mass with thin septa.",
]
SHAPE_ZYX = (10, 32, 32)
SPACING = (1.2, 1.2, 3.0)


def write_study(folder: Path, name: str, label: int, rng: np.random.Generator, *, spacing=SPACING):
    """Three sequences and a mask (an ellipsoid whose signal depends on the label); returns (paths, mask)."""
    folder.mkdir(parents=True, exist_ok=True)
    zz, yy, xx = np.mgrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    centre = rng.uniform([4, 12, 12], [6, 20, 20])
    radius = rng.uniform(4.0, 7.0)
    lesion = ((zz - centre[0]) * 3.0 / radius) ** 2 + ((yy - centre[1]) / radius) ** 2 + (
        (xx - centre[2]) / radius
    ) ** 2 <= 1
    contrast = {0: (300, -40, -40), 1: (-60, 20, 30), 2: (200, 60, 80)}[label]
    paths = {}
    for s, seq in enumerate(SEQUENCES):
        array = 100.0 + 8.0 * rng.standard_normal(SHAPE_ZYX)
        array[lesion] += contrast[s]
        if label == 2:
            array[lesion & (xx % 4 == 0)] -= 150.0  # septa
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.SetSpacing(spacing)
        path = folder / f"{name}_{seq}.nii.gz"
        sitk.WriteImage(image, str(path))
        paths[seq] = str(path)
    mask = sitk.GetImageFromArray(lesion.astype(np.uint8))
    mask.SetSpacing(spacing)
    mask_path = folder / f"{name}_mask.nii.gz"
    sitk.WriteImage(mask, str(mask_path))
    return paths, str(mask_path)


def make_case(folder: Path, case_id: str, label: int, rng: np.random.Generator, *, text: bool = True) -> Case:
    paths, mask = write_study(folder, case_id, label, rng)
    return Case(
        case_id=case_id,
        sequences=paths,
        mask=mask,
        label=LABELS[label],
        terms=[TERMS[label]],
        report=REPORTS[label] if text else "",
        notes=("postmenopausal, CA-125 raised" if label == 1 else "premenopausal") if text else "",
        patient_id=f"P{case_id}",
    )


def copy_archive(source: Path, dest: Path, *, no_text: tuple[str, ...] = ()) -> CaseStore:
    """A writable copy of an archive (the `tiny_archive` fixture is read-only); `no_text` cases lose their
    report and notes."""
    import shutil

    shutil.copytree(source, dest)
    store = CaseStore(dest)
    for case_id in no_text:
        case = store.get(case_id)
        case.report, case.notes = "", ""
        store.update(case)
    return store


def tiny_model(model_dir: Path, *, seed: int = 0, name: str = "tiny"):
    """A random-init CaseEncoder on a tiny grid, saved to `model_dir`; returns the loaded encoder."""
    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config

    config = tiny_model_config(name)
    CaseEncoder.create(config, seed=seed).save(model_dir)
    return CaseEncoder.load(model_dir)


def run_python(code: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python (a crash fails the test instead of killing pytest), offline, one thread,
    with extra environment variables `env`; its output decoded as UTF-8 (the suite runs under slicer-core's C
    locale)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env},
    )


def run_cli(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`similar-cases ARGV` in a fresh Python (`run_python`)."""
    return run_python(
        f"import sys\nfrom SimilarCaseRetrievalLib import cli\nsys.exit(cli.main({argv!r}))", timeout
    )
