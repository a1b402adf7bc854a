"""Pelvic anatomy of one synthetic patient: body outline with subcutaneous fat, muscles, pelvic bones,
vessels, bladder, rectum, uterus and the contralateral ovary, plus free fluid (ascites) and
peritoneal implants when the lesion calls for them.

``sample_anatomy`` draws the parameters (all in mm); ``render_anatomy`` paints them on a ``Canvas``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .shapes import Bumps, Canvas, Ellipsoid, render, rotation, smooth_field
from .tissues import mix, signal

_LONG = 400.0  # z radius of structures that run through the whole slab (elliptic cylinders)


@dataclass
class Anatomy:
    """Parameters of one patient's pelvis (mm, LPS)."""

    postmenopausal: bool
    body_y: float
    body_ax: float
    body_ay: float
    fat_lat: float
    fat_ant: float
    fat_post: float
    muscle_lat: float
    muscle_ant: float
    muscle_post: float
    uterus: Ellipsoid
    endometrium_mm: float
    bladder: Ellipsoid
    rectum: Ellipsoid
    rectum_gas: float
    ovary: Ellipsoid
    follicles: list[Ellipsoid] = field(default_factory=list)
    bowel: list[tuple[Ellipsoid, float]] = field(
        default_factory=list
    )  # loops and their content (0 fluid - 1 gas)
    tissue_jitter: dict[str, np.ndarray] = field(default_factory=dict)
    fatsat_falloff: float = 0.0  # relative T1FS fat signal gain at the body edge (imperfect fat-sat)

    @property
    def cavity(self) -> Ellipsoid:
        """The peritoneal/pelvic cavity (inside fat and muscle layers), an elliptic cylinder."""
        ax = self.body_ax - self.fat_lat - self.muscle_lat
        front = self.body_y - self.body_ay + self.fat_ant + self.muscle_ant
        back = self.body_y + self.body_ay - self.fat_post - self.muscle_post
        return Ellipsoid(
            np.array([0.0, (front + back) / 2, 0.0], np.float32), np.array([ax, (back - front) / 2, _LONG])
        )

    def sig(self, name: str) -> np.ndarray:
        """Tissue signal with this patient's fixed per-tissue variation."""
        return signal(name) * self.tissue_jitter.get(name, 1.0)


def sample_anatomy(rng: np.random.Generator, postmenopausal: bool) -> Anatomy:
    """Draw one patient's pelvis."""
    u = rng.uniform
    body_ax, body_ay = u(100, 126), u(78, 98)
    body_y = u(0, 10)
    fat = u(6, 30)
    anatomy_ax = body_ax - fat * 0.8 - 18
    cav_front = body_y - body_ay + fat * u(1.0, 1.6) + 10
    # uterus: anteverted (long axis tilted towards anterior), smaller after menopause
    scale = u(0.65, 0.85) if postmenopausal else u(0.9, 1.15)
    uterus = Ellipsoid(
        np.array([u(-12, 12), u(-8, 12), u(-8, 10)], np.float32),
        np.array([u(24, 32), u(18, 24), u(34, 44)], np.float32) * scale,
        rotation(yaw=u(-0.3, 0.3), roll=u(0.5, 1.1)),
        Bumps.random(rng, 0.06, 3),
    )
    bladder_r = np.array([u(30, 50), u(18, 34), u(22, 36)], np.float32)
    bladder = Ellipsoid(
        np.array([u(-6, 6), cav_front + bladder_r[1] + u(0, 4), u(-46, -30)], np.float32),
        bladder_r,
        rotation(yaw=u(-0.2, 0.2)),
        Bumps.random(rng, 0.05, 3),
    )
    cav_back = body_y + body_ay - fat * 0.6 - 32
    rr = u(11, 18)
    rectum = Ellipsoid(
        np.array([u(-10, 10), cav_back - rr - u(0, 5), 0.0], np.float32),
        np.array([rr * u(1.0, 1.4), rr, _LONG], np.float32),
        rotation(yaw=u(-0.3, 0.3)),
        Bumps.random(rng, 0.08, 3),
    )
    side = rng.choice([-1.0, 1.0])  # where the contralateral ovary sits is set again by the lesion side
    oscale = u(0.55, 0.75) if postmenopausal else u(0.9, 1.2)
    ovary = Ellipsoid(
        np.array([side * min(u(35, 55), anatomy_ax - 30), u(-2, 22), u(-10, 10)], np.float32),
        np.array([u(13, 17), u(8, 11), u(10, 14)], np.float32) * oscale,
        rotation(yaw=u(-0.6, 0.6)),
    )
    n_follicles = 0 if postmenopausal else int(rng.integers(2, 8))
    follicles = []
    for _ in range(n_follicles):
        d = rng.normal(size=3)
        d = d / np.linalg.norm(d) * u(0.0, 0.6)
        fr = u(1.8, 5.0) * (2.5 if rng.uniform() < 0.15 else 1.0)  # occasionally a dominant follicle
        follicles.append(
            Ellipsoid((ovary.center + d * ovary.radii).astype(np.float32), np.full(3, fr, np.float32))
        )
    # small-bowel / sigmoid loops in the upper pelvis (z > 0), away from the midline bladder
    bowel = []
    for _ in range(int(rng.integers(3, 8))):
        r = u(7, 14)
        centre = np.array(
            [u(-0.75, 0.75) * anatomy_ax, u(cav_front + 20, cav_back - 10), u(5, 45)], np.float32
        )
        loop = Ellipsoid(
            centre,
            np.array([r * u(1.0, 1.8), r, r * u(1.5, 3.0)], np.float32),
            rotation(u(-np.pi, np.pi), u(-1, 1)),
        )
        bowel.append((loop, float(rng.choice([0.0, 0.3, 0.9], p=[0.3, 0.5, 0.2]))))
    jitter = {
        name: rng.uniform(0.9, 1.1, 3).astype(np.float32)
        for name in (
            "fat",
            "visceral_fat",
            "muscle",
            "myometrium",
            "urine",
            "marrow",
            "ovarian_stroma",
            "stool",
        )
    }
    return Anatomy(
        postmenopausal=postmenopausal,
        body_y=body_y,
        body_ax=body_ax,
        body_ay=body_ay,
        fat_lat=fat * u(0.6, 0.9),
        fat_ant=fat * u(1.0, 1.6),
        fat_post=fat * u(0.5, 0.8),
        muscle_lat=u(14, 22),
        muscle_ant=u(8, 13),
        muscle_post=u(26, 38),
        uterus=uterus,
        endometrium_mm=u(1.0, 2.5) if postmenopausal else u(3.0, 7.0),
        bladder=bladder,
        rectum=rectum,
        rectum_gas=u(0.0, 0.6),
        ovary=ovary,
        follicles=follicles,
        bowel=bowel,
        tissue_jitter=jitter,
        fatsat_falloff=u(0.0, 2.5),
    )


def place_contralateral_ovary(anatomy: Anatomy, lesion_side: float) -> None:
    """Move the normal ovary (and its follicles) to the side opposite the lesion."""
    if np.sign(anatomy.ovary.center[0]) == -np.sign(lesion_side):
        return
    anatomy.ovary.center[0] *= -1
    for f in anatomy.follicles:
        f.center[0] *= -1


def _layered(canvas: Canvas, shape: Ellipsoid, layers: list[tuple[float, np.ndarray]]) -> None:
    """Paint ``shape`` as concentric layers: [(inset_mm, signal), ...] from the outside in."""
    sf = render(canvas.grid, shape)
    if sf is None:
        return
    for inset, value in layers:
        canvas.paint_shape(sf, value, inset)


def render_anatomy(
    canvas: Canvas,
    a: Anatomy,
    rng: np.random.Generator,
    ascites_fraction: float = 0.0,
    implants: int = 0,
) -> None:
    """Paint the patient's pelvis; ``ascites_fraction`` of the cavity turns to free fluid (0 = none)."""
    cav = a.cavity
    body = Ellipsoid(
        np.array([0.0, a.body_y, 0.0], np.float32), np.array([a.body_ax, a.body_ay, _LONG], np.float32)
    )
    body.bumps = Bumps.random(rng, 0.02, 3)
    sub_y = a.body_y + (a.fat_ant - a.fat_post) / 2
    sub = Ellipsoid(
        np.array([0.0, sub_y, 0.0], np.float32),
        np.array([a.body_ax - a.fat_lat, a.body_ay - (a.fat_ant + a.fat_post) / 2, _LONG], np.float32),
        bumps=Bumps.random(rng, 0.03, 4),
    )
    sf = render(canvas.grid, body)
    if sf is not None:
        canvas.paint_shape(sf, a.sig("skin"), 0.0)
        # imperfect fat saturation towards the edge of the field: peripheral fat brighter on T1FS
        rr = np.minimum(sf.local[0] ** 2 + sf.local[1] ** 2, 1.0) ** 3
        fat = a.sig("fat")[:, None, None, None] * np.ones((3, 1, 1, 1), np.float32)
        fat = fat * (1 + np.float32([0, 0, a.fatsat_falloff])[:, None, None, None] * rr[None])
        canvas.paint_shape(sf, fat.astype(np.float32), 1.5)
    _layered(canvas, sub, [(0.0, a.sig("muscle"))])
    # pelvic bones in the posterolateral muscle layer: iliac wings / acetabula and the sacrum
    for side in (-1.0, 1.0):
        ilium = Ellipsoid(
            np.array([side * (cav.radii[0] + 2), cav.center[1] + cav.radii[1] * 0.35, 0.0], np.float32),
            np.array([11.0, 34.0, _LONG], np.float32),
            rotation(yaw=-side * 0.45),
        )
        _layered(canvas, ilium, [(0.0, signal("cortex")), (2.5, a.sig("marrow"))])
    sacrum = Ellipsoid(
        np.array([0.0, cav.center[1] + cav.radii[1] + 12, 0.0], np.float32),
        np.array([36.0, 11.0, _LONG], np.float32),
        bumps=Bumps.random(rng, 0.05, 2),
    )
    _layered(canvas, sacrum, [(0.0, signal("cortex")), (2.5, a.sig("marrow"))])
    _layered(canvas, cav, [(0.0, a.sig("visceral_fat"))])
    if ascites_fraction > 0:
        _paint_ascites(canvas, a, rng, ascites_fraction)
    # sidewall: iliopsoas muscles and external iliac vessels
    for side in (-1.0, 1.0):
        psoas = Ellipsoid(
            np.array([side * (cav.radii[0] - 12), cav.center[1] - 4, 0.0], np.float32),
            np.array([12.0, 19.0, _LONG], np.float32),
            rotation(yaw=side * 0.3),
        )
        _layered(canvas, psoas, [(0.0, a.sig("muscle"))])
        for dx, dy, r, name in ((26, -6, 4.0, "artery"), (31, 4, 5.5, "vein")):
            vessel = Ellipsoid(
                np.array([side * (cav.radii[0] - dx), cav.center[1] + dy, 0.0], np.float32),
                np.array([r, r, _LONG], np.float32),
            )
            _layered(canvas, vessel, [(0.0, signal(name, rng, 0.3))])
    for loop, gas in a.bowel:  # bowel wall, then fluid / feces / gas content
        bf = render(canvas.grid, loop)
        if bf is not None:
            canvas.paint_shape(bf, signal("rectal_wall"), 0.0)
            content = mix(
                mix(signal("simple_fluid"), a.sig("stool"), min(gas * 2, 1.0)),
                signal("gas"),
                max(gas * 2 - 1, 0.0),
            )
            canvas.paint_shape(bf, content * np.float32([0.8, 1.0, 1.0]), 2.0)
    # rectum: wall, then stool with a gas bubble on the non-dependent (anterior) side
    sf = render(canvas.grid, a.rectum)
    if sf is not None:
        canvas.paint_shape(sf, signal("rectal_wall"), 0.0)
        gas = np.clip((-sf.local[1] - (1 - 2 * a.rectum_gas)) * 4, 0, 1).astype(np.float32)
        content = a.sig("stool")[:, None, None, None] * (1 - gas) + signal("gas")[:, None, None, None] * gas
        canvas.paint_shape(sf, content, 3.0)
    _layered(canvas, a.bladder, [(0.0, signal("bladder_wall")), (2.5, a.sig("urine"))])
    e = a.endometrium_mm
    jz = min(float(a.uterus.radii.min()) - e - 2, 9.0 if not a.postmenopausal else 4.0)
    inner = float(a.uterus.radii.min())
    _layered(
        canvas,
        a.uterus,
        [
            (0.0, a.sig("myometrium")),
            (max(inner - e - jz, 2.0), signal("junctional_zone")),
            (max(inner - e, 3.0), signal("endometrium")),
        ],
    )
    _layered(canvas, a.ovary, [(0.0, a.sig("ovarian_stroma"))])
    for f in a.follicles:
        _layered(canvas, f, [(0.0, signal("follicle"))])
    for _ in range(implants):
        _paint_implant(canvas, a, rng)


def _paint_ascites(canvas: Canvas, a: Anatomy, rng: np.random.Generator, fraction: float) -> None:
    """Free fluid filling the dependent (posterior) and peripheral parts of the cavity."""
    cav = a.cavity
    sf = render(canvas.grid, cav)
    if sf is None:
        return
    noise = smooth_field(canvas.grid, rng, n_waves=6, scale_mm=30.0)
    x, y = sf.world[0], sf.world[1]
    z = canvas.grid.axis(2)[:, None, None]
    # favour the pouch of Douglas (posterior) and the periphery; threshold set by the fraction
    lx, ly = sf.local[0], sf.local[1]
    score = 0.8 * ly + 0.6 * np.sqrt(lx * lx + ly * ly) + 0.6 * noise(x, y, z)
    inside = np.broadcast_to(sf.dist < 0, score.shape)
    cut = np.quantile(score[inside], 1.0 - float(np.clip(fraction, 0.01, 0.9)))
    weight = np.clip((score - cut) * 8.0, 0.0, 1.0).astype(np.float32)
    canvas.paint_shape(sf, signal("ascites", rng, 0.05), 2.0, weight=weight)


def _paint_implant(canvas: Canvas, a: Anatomy, rng: np.random.Generator) -> None:
    """A small solid peritoneal nodule along the cavity wall."""
    cav = a.cavity
    t = rng.uniform(0, 2 * np.pi)
    pos = np.array(
        [
            cav.radii[0] * 0.85 * np.cos(t),
            cav.center[1] + cav.radii[1] * 0.85 * np.sin(t),
            rng.uniform(-40, 40),
        ],
        np.float32,
    )
    nodule = Ellipsoid(pos, rng.uniform(3.5, 9.0, 3).astype(np.float32), bumps=Bumps.random(rng, 0.2, 3))
    _layered(canvas, nodule, [(0.0, signal("malignant_solid", rng, 0.1))])
