"""Reference signal of each tissue on T2, T1 and T1 fat-sat (arbitrary units, fluid on T2 ~ 1000).

Values follow the usual pelvic-MRI appearance: fluid bright on T2 and dark on T1; fat bright on T1 and
T2 (fast spin echo), dark on fat-sat; blood products bright on T1 and still bright on fat-sat; fibrous
tissue and muscle dark on T2.
"""

from __future__ import annotations

import numpy as np

#                         T2     T1    T1FS
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 0.0, 0.0),
    "skin": (380.0, 450.0, 380.0),
    "fat": (640.0, 900.0, 110.0),
    "visceral_fat": (600.0, 860.0, 120.0),
    "muscle": (230.0, 380.0, 420.0),
    "marrow": (520.0, 780.0, 190.0),
    "cortex": (30.0, 40.0, 40.0),
    "urine": (1000.0, 110.0, 150.0),
    "bladder_wall": (260.0, 400.0, 430.0),
    "myometrium": (470.0, 390.0, 440.0),
    "junctional_zone": (210.0, 380.0, 420.0),
    "endometrium": (820.0, 400.0, 460.0),
    "cervix": (260.0, 380.0, 420.0),
    "rectal_wall": (300.0, 380.0, 430.0),
    "stool": (420.0, 420.0, 400.0),
    "gas": (20.0, 20.0, 25.0),
    "ovarian_stroma": (430.0, 370.0, 410.0),
    "follicle": (950.0, 130.0, 160.0),
    "artery": (60.0, 120.0, 160.0),
    "vein": (180.0, 200.0, 260.0),
    # lesion components
    "simple_fluid": (1000.0, 140.0, 170.0),
    "proteinaceous_fluid": (820.0, 380.0, 450.0),
    "haemorrhagic_fluid": (760.0, 640.0, 720.0),
    "endometriotic_fluid": (450.0, 880.0, 980.0),
    "lesion_wall": (320.0, 400.0, 450.0),
    "hemosiderin_wall": (140.0, 360.0, 400.0),
    "lesion_fat": (660.0, 920.0, 115.0),
    "rokitansky": (420.0, 560.0, 300.0),
    "calcification": (40.0, 50.0, 50.0),
    "septum": (300.0, 390.0, 450.0),
    "fibrous_solid": (240.0, 320.0, 350.0),
    "oedema_solid": (600.0, 290.0, 330.0),
    "malignant_solid": (500.0, 360.0, 430.0),
    "ascites": (980.0, 120.0, 150.0),
}


def signal(name: str, rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
    """The (T2, T1, T1FS) signal of a tissue, optionally with independent relative jitter per sequence."""
    value = np.array(TISSUES[name], np.float32)
    if rng is not None and jitter > 0:
        value = value * rng.uniform(1 - jitter, 1 + jitter, 3).astype(np.float32)
    return value


def mix(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Linear blend of two signals; ``t`` may be an array (returns (3, ...) then)."""
    t = np.asarray(t, np.float32)
    a = a.reshape((3,) + (1,) * t.ndim)
    b = b.reshape((3,) + (1,) * t.ndim)
    return a + (b - a) * t[None] if t.ndim else a + (b - a) * t
