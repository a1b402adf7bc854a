"""One synthetic study: patient anatomy + adnexal mass -> (T2, T1, T1FS) volumes and the mass mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imaging import acquire
from .lesions import LesionSpec, render_lesion, sample_lesion
from .phantom import Anatomy, place_contralateral_ovary, render_anatomy, sample_anatomy
from .shapes import Canvas, Grid, single_threaded_blas


@dataclass
class Patient:
    """A pseudonymous patient: age, menopausal status, anatomy and the mass followed over time."""

    patient_id: str
    label: str
    age: int
    postmenopausal: bool
    anatomy: Anatomy
    lesion: LesionSpec


def age_for(label: str, rng: np.random.Generator) -> int:
    """Age at first study, typical for each diagnosis (with a wide spread so it never decides alone)."""
    mean, sd = {
        "simple_cyst": (36, 10),
        "endometrioma": (34, 7),
        "mature_teratoma": (33, 11),
        "cystadenoma": (50, 14),
        "fibroma": (55, 12),
        "malignant": (60, 11),
    }[label]
    return int(np.clip(round(rng.normal(mean, sd)), 17, 88))


def menopause_for(age: int, rng: np.random.Generator) -> bool:
    return age >= 56 or (age >= 46 and rng.uniform() < (age - 45) / 11)


def sample_patient(patient_id: str, label: str, rng: np.random.Generator) -> Patient:
    """Draw a patient with one mass of ``label``."""
    age = age_for(label, rng)
    post = menopause_for(age, rng)
    anatomy = sample_anatomy(rng, post)
    lesion = sample_lesion(label, rng, anatomy)
    place_contralateral_ovary(anatomy, lesion.side)
    return Patient(patient_id, label, age, post, anatomy, lesion)


def render_study(
    anatomy: Anatomy, lesion: LesionSpec, grid: Grid, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """-> image (3, Z, Y, X) float32 (T2, T1, T1FS) after acquisition, mask (Z, Y, X) uint8, gains."""
    canvas = Canvas(grid)
    with single_threaded_blas():
        render_anatomy(canvas, anatomy, rng, lesion.ascites_fraction, lesion.implants)
        render_lesion(canvas, lesion, rng)
    mask = (canvas.lesion >= 0.5).astype(np.uint8)
    if not mask.any():  # a very small mass on a very coarse grid: keep the voxel it covers most
        mask.flat[int(np.argmax(canvas.lesion))] = 1
    image, gains = acquire(canvas.image, grid, rng)
    return image, mask, gains
