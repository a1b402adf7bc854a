"""One adnexal mass per case, of an O-RADS MRI type, with its lexicon terms.

``sample_lesion(label, rng, anatomy)`` draws a ``LesionSpec`` (shape, variant, components, terms);
``render_lesion(canvas, spec, rng)`` paints it and fills ``canvas.lesion`` (the mask's occupancy).
Variants make the classes overlap: haemorrhagic cysts vs endometriomas, proteinaceous simple cysts,
low-fat teratomas, cystadenomas with thick/solid-looking septa, oedematous fibromas, cystic-papillary
malignant masses that look like cystadenomas.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .phantom import Anatomy
from .shapes import FOV_MM, Bumps, Canvas, Ellipsoid, ShapeField, noise_texture, render, rotation
from .tissues import mix, signal

LABELS: tuple[str, ...] = (
    "simple_cyst",
    "endometrioma",
    "mature_teratoma",
    "cystadenoma",
    "fibroma",
    "malignant",
)

# maximum diameter range (mm) per label
_DIAMETER = {
    "simple_cyst": (28, 85),
    "endometrioma": (28, 90),
    "mature_teratoma": (35, 105),
    "cystadenoma": (50, 135),
    "fibroma": (30, 100),
    "malignant": (50, 135),
}


@dataclass
class LesionSpec:
    """Everything needed to render one mass; geometry of components is in the lesion's unit frame."""

    label: str
    variant: str
    side: float  # +1 patient left, -1 right
    shape: Ellipsoid
    wall_mm: float
    wall: np.ndarray  # (3,) signal
    fluid: np.ndarray  # (3,) main content signal
    params: dict = field(default_factory=dict)
    ascites_fraction: float = 0.0
    implants: int = 0
    findings: dict[str, str] = field(default_factory=dict)  # category -> value, size/laterality excluded

    @property
    def diameter_mm(self) -> float:
        return float(2 * self.shape.radii.max())

    @property
    def dimensions_mm(self) -> tuple[float, float, float]:
        """The three diameters, largest first (for the report)."""
        return tuple(sorted((float(2 * r) for r in self.shape.radii), reverse=True))  # type: ignore[return-value]

    @property
    def terms(self) -> list[str]:
        """The complete O-RADS MRI reading: one term per lexicon category."""
        d = round(self.diameter_mm)  # as the report prints it
        size = "small" if d < 50 else ("medium" if d <= 100 else "large")
        values = dict(self.findings)
        values["laterality"] = "left" if self.side > 0 else "right"
        values["size"] = size
        order = (
            "fluid",
            "fat",
            "solid",
            "t2_dark_solid",
            "t2_shading",
            "septations",
            "wall",
            "papillary",
            "ascites",
            "implants",
            "laterality",
            "locularity",
            "size",
            "orads",
        )
        return [f"{c}:{values[c]}" for c in order]

    def followup(self, rng: np.random.Generator) -> LesionSpec:
        """The same mass at a later study: slightly grown or shrunk, same components."""
        scale = np.float32(rng.uniform(0.88, 1.15))
        shape = replace(self.shape, radii=(self.shape.radii * scale).astype(np.float32))
        shape.center = (self.shape.center + rng.normal(0, 2.0, 3)).astype(np.float32)
        return replace(self, shape=shape)


def _findings(**kw: str) -> dict[str, str]:
    base = {
        "fluid": "simple",
        "fat": "absent",
        "solid": "absent",
        "t2_dark_solid": "absent",
        "t2_shading": "absent",
        "septations": "none",
        "wall": "thin_smooth",
        "papillary": "absent",
        "ascites": "absent",
        "implants": "absent",
        "locularity": "unilocular",
        "orads": "2",
    }
    base.update(kw)
    return base


def _unit_vectors(rng: np.random.Generator, n: int, bias: np.ndarray | None = None) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    if bias is not None:
        v = v + bias
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _seeds_in_ball(rng: np.random.Generator, n: int, radius: float = 0.85) -> np.ndarray:
    v = _unit_vectors(rng, n)
    return (v * radius * rng.uniform(0.15, 1.0, (n, 1)) ** (1 / 3)).astype(np.float32)


def _place(rng: np.random.Generator, anatomy: Anatomy, radii: np.ndarray, side: float) -> np.ndarray:
    """A centre in the chosen adnexa that keeps the mass inside the pelvic cavity where possible."""
    cav = anatomy.cavity
    x = rng.uniform(30, 62)
    x = min(x, cav.radii[0] + 6 - 0.8 * radii[0])
    x = side * max(x, 8.0)
    front, back = cav.center[1] - cav.radii[1], cav.center[1] + cav.radii[1]
    lo, hi = front + 0.75 * radii[1], back - 0.75 * radii[1]
    y = rng.uniform(-15, 25)
    y = float(np.clip(y, lo, hi)) if lo < hi else float(cav.center[1])
    zmax = max(FOV_MM[2] / 2 + 6.0 - radii[2], 0.0)
    z = float(np.clip(rng.uniform(-18, 18), -zmax, zmax))
    return np.array([x, y, z], np.float32)


def sample_lesion(label: str, rng: np.random.Generator, anatomy: Anatomy) -> LesionSpec:
    """Draw one mass of ``label`` for this patient."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    lo, hi = _DIAMETER[label]
    diameter = rng.uniform(lo, hi) if rng.uniform() < 0.7 else rng.uniform(lo, (lo + hi) / 2)
    r = diameter / 2
    radii = np.array([r, r * rng.uniform(0.72, 1.0), r * rng.uniform(0.65, 1.0)], np.float32)
    radii[2] = min(radii[2], 46.0)
    rng.shuffle(radii[:2])
    side = float(rng.choice([-1.0, 1.0]))
    irregular = {"malignant": 0.22, "fibroma": 0.06, "cystadenoma": 0.07}.get(label, 0.035)
    shape = Ellipsoid(
        _place(rng, anatomy, radii, side),
        radii,
        rotation(rng.uniform(-np.pi, np.pi), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)),
        Bumps.random(
            rng, irregular * rng.uniform(0.6, 1.3), 5, max_freq=4.0 if label == "malignant" else 2.5
        ),
    )
    spec = LesionSpec(
        label, "", side, shape, 1.5, signal("lesion_wall", rng, 0.1), signal("simple_fluid", rng, 0.06)
    )
    _SAMPLERS[label](spec, rng)
    return spec


# ---- per-label parameter samplers ---------------------------------------------------------------------


def _physiological_fluid(spec: LesionSpec, rng: np.random.Generator, p: float) -> None:
    if rng.uniform() < p:
        spec.ascites_fraction = float(rng.uniform(0.02, 0.05))  # trace pelvic fluid, not reported as ascites


def _sample_simple_cyst(spec: LesionSpec, rng: np.random.Generator) -> None:
    spec.wall_mm = float(rng.uniform(0.8, 1.8))
    if rng.uniform() < 0.25:
        spec.variant = "proteinaceous"
        spec.fluid = mix(signal("simple_fluid"), signal("proteinaceous_fluid"), rng.uniform(0.5, 1.1))
        spec.fluid *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
        spec.findings = _findings(fluid="proteinaceous", orads="3")
    else:
        spec.variant = "simple"
        spec.findings = _findings(fluid="simple", orads="2")
    _physiological_fluid(spec, rng, 0.2)


def _sample_endometrioma(spec: LesionSpec, rng: np.random.Generator) -> None:
    if rng.uniform() < 0.35:
        spec.variant = "haemorrhagic"
        spec.wall_mm = float(rng.uniform(1.0, 2.5))
        spec.fluid = signal("haemorrhagic_fluid", rng, 0.15)
        spec.params = {"reticular": float(rng.uniform(0.05, 0.14)), "shading": 0.0}
        spec.findings = _findings(fluid="haemorrhagic", orads="3")
        if rng.uniform() < 0.3:  # paler old blood: read as proteinaceous, like some simple cysts
            spec.fluid = mix(spec.fluid, signal("proteinaceous_fluid"), rng.uniform(0.5, 0.9))
            spec.findings["fluid"] = "proteinaceous"
    else:
        spec.variant = "endometrioma"
        spec.wall_mm = float(rng.uniform(2.0, 4.0))
        spec.wall = signal("hemosiderin_wall", rng, 0.15)
        spec.fluid = signal("endometriotic_fluid", rng, 0.12)
        weak = rng.uniform() < 0.2  # faint shading: looks like a haemorrhagic cyst
        spec.params = {
            "reticular": 0.03,
            "shading": float(rng.uniform(0.15, 0.35) if weak else rng.uniform(0.45, 0.8)),
            "level": float(rng.uniform(-0.5, 0.3)),
            "t2_top": float(rng.uniform(1.5, 2.0) if weak else rng.uniform(1.1, 1.8)),
        }
        spec.findings = _findings(fluid="endometriotic", t2_shading="present", orads="2")
        if weak and rng.uniform() < 0.5:  # shading missed: read as a haemorrhagic cyst
            spec.findings.update(fluid="haemorrhagic", t2_shading="absent", orads="3")
    if rng.uniform() < 0.15:  # bilocular
        spec.params["seeds"] = _seeds_in_ball(rng, 2)
        spec.params["septum_mm"] = float(rng.uniform(1.0, 2.0))
        spec.findings.update(septations="thin", locularity="multilocular", orads="3")
    _physiological_fluid(spec, rng, 0.25)


def _sample_mature_teratoma(spec: LesionSpec, rng: np.random.Generator) -> None:
    spec.wall_mm = float(rng.uniform(1.0, 2.5))
    u = rng.uniform()
    spec.variant = "fat_fluid" if u < 0.4 else ("fat_rich" if u < 0.85 else "low_fat")
    spec.params = {
        "fat": signal("lesion_fat", rng, 0.08),
        "level": float(rng.uniform(-0.3, 0.5)),
        "rokitansky": rng.uniform() < 0.6 or spec.variant == "low_fat",
        "rok_dir": _unit_vectors(rng, 1, np.array([0.0, 1.2, 0.0]))[0],
        "rok_size": float(rng.uniform(0.22, 0.4)),
        "calcification": rng.uniform() < 0.35,
        "pockets": float(rng.uniform(0.15, 0.35)),
    }
    spec.fluid = mix(signal("simple_fluid"), signal("proteinaceous_fluid"), rng.uniform(0.0, 0.5))
    spec.findings = _findings(fluid="lipid", fat="present", orads="2")
    if spec.variant == "low_fat" and rng.uniform() < 0.35:  # the small fat globule is missed
        spec.findings.update(fluid="proteinaceous", fat="absent", orads="3")


def _sample_cystadenoma(spec: LesionSpec, rng: np.random.Generator) -> None:
    spec.wall_mm = float(rng.uniform(1.0, 2.0))
    unilocular = rng.uniform() < 0.12  # serous cystadenomas are often unilocular: reads like a simple cyst
    n = 1 if unilocular else int(rng.integers(2, 11))
    mucinous = rng.uniform() < 0.5
    spec.variant = "mucinous" if mucinous else "serous"
    locules = []
    for _ in range(n):
        if mucinous:
            locules.append(mix(signal("simple_fluid"), signal("proteinaceous_fluid"), rng.uniform(0.0, 1.2)))
        else:
            locules.append(signal("simple_fluid", rng, 0.05))
    thick = rng.uniform() < 0.25
    spec.params = {
        "seeds": _seeds_in_ball(rng, n),
        "locules": np.stack(locules).astype(np.float32),
        "septum_mm": float(rng.uniform(3.0, 5.5) if thick else rng.uniform(0.9, 2.0)),
        "septum": signal("septum", rng, 0.12) * (np.float32([1.35, 1.0, 1.0]) if thick else 1.0),
        "nodules": 0,
    }
    spec.findings = _findings(
        fluid="proteinaceous" if mucinous else "simple",
        septations="thick" if thick else "thin",
        locularity="multilocular",
        orads="3",
    )
    if unilocular:
        spec.params["septum_mm"] = 0.0
        spec.findings.update(septations="none", locularity="unilocular", orads="3" if mucinous else "2")
    elif thick and rng.uniform() < 0.4:  # solid-looking septal nodules
        spec.params["nodules"] = int(rng.integers(1, 4))
        spec.findings.update(solid="present", orads="4")
        if rng.uniform() < 0.3:
            spec.findings["papillary"] = "present"


def _sample_fibroma(spec: LesionSpec, rng: np.random.Generator) -> None:
    spec.wall_mm = 0.0
    spec.fluid = signal("fibrous_solid", rng, 0.12)
    oedema = rng.uniform() < 0.3
    spec.variant = "oedematous" if oedema else "classic"
    spec.params = {
        "oedema": float(rng.uniform(0.2, 0.5)) if oedema else 0.0,
        "texture": float(rng.uniform(0.04, 0.1)),
    }
    spec.findings = _findings(
        fluid="none",
        solid="present",
        t2_dark_solid="absent" if oedema else "present",
        locularity="solid",
        orads="4" if oedema else "2",
    )
    if rng.uniform() < 0.15:  # Meigs syndrome
        spec.ascites_fraction = float(rng.uniform(0.08, 0.25))
        spec.findings["ascites"] = "present"


def _sample_malignant(spec: LesionSpec, rng: np.random.Generator) -> None:
    u = rng.uniform()
    spec.variant = "solid_cystic" if u < 0.5 else ("predominantly_solid" if u < 0.8 else "cystic_papillary")
    spec.wall_mm = float(rng.uniform(3.0, 8.0))
    spec.wall = signal("malignant_solid", rng, 0.12)
    fluid_kind = str(rng.choice(["simple", "haemorrhagic", "proteinaceous"], p=[0.5, 0.25, 0.25]))
    spec.fluid = {
        "simple": signal("simple_fluid", rng, 0.06),
        "haemorrhagic": mix(signal("simple_fluid"), signal("haemorrhagic_fluid"), rng.uniform(0.5, 1.0)),
        "proteinaceous": mix(signal("simple_fluid"), signal("proteinaceous_fluid"), rng.uniform(0.5, 1.0)),
    }[fluid_kind]
    solid_fraction = {
        "solid_cystic": (0.15, 0.4),
        "predominantly_solid": (0.65, 0.9),
        "cystic_papillary": (0.0, 0.05),
    }
    septa = spec.variant == "cystic_papillary" or (spec.variant == "solid_cystic" and rng.uniform() < 0.4)
    papillary = {"solid_cystic": 0.6, "predominantly_solid": 0.1, "cystic_papillary": 1.0}[
        spec.variant
    ] > rng.uniform()
    n = int(rng.integers(2, 7))
    spec.params = {
        "solid": signal("malignant_solid", rng, 0.12),
        "solid_fraction": float(rng.uniform(*solid_fraction[spec.variant])),
        "solid_dir": _unit_vectors(rng, 1)[0],
        "papillae": _unit_vectors(rng, int(rng.integers(3, 10)))
        if papillary
        else np.zeros((0, 3), np.float32),
        "papilla_mm": float(rng.uniform(3.0, 7.0)),
        "seeds": _seeds_in_ball(rng, n) if septa else None,
        "septum_mm": float(rng.uniform(2.5, 5.0)),
        "septum": signal("malignant_solid", rng, 0.12),
    }
    spec.ascites_fraction = float(rng.uniform(0.1, 0.45))
    spec.implants = int(rng.integers(2, 7)) if rng.uniform() < 0.4 else 0
    predominantly_solid = spec.variant == "predominantly_solid"
    spec.findings = _findings(
        fluid="none" if predominantly_solid and rng.uniform() < 0.5 else fluid_kind,
        solid="present",
        septations="thick" if septa else "none",
        wall="thick_irregular",
        papillary="present" if papillary else "absent",
        ascites="present",
        implants="present" if spec.implants else "absent",
        locularity="solid" if predominantly_solid else ("multilocular" if septa else "unilocular"),
        orads="5" if spec.implants or predominantly_solid else "4",
    )
    if predominantly_solid and rng.uniform() < 0.25:  # well-circumscribed solid tumour
        spec.findings.update(wall="thin_smooth", orads="5" if spec.implants else "4")


_SAMPLERS = {
    "simple_cyst": _sample_simple_cyst,
    "endometrioma": _sample_endometrioma,
    "mature_teratoma": _sample_mature_teratoma,
    "cystadenoma": _sample_cystadenoma,
    "fibroma": _sample_fibroma,
    "malignant": _sample_malignant,
}


# ---- rendering ----------------------------------------------------------------------------------------


def _world(shape: Ellipsoid, unit: np.ndarray) -> np.ndarray:
    """A point given in the lesion's unit frame -> mm."""
    return (shape.center + shape.rot @ (unit * shape.radii)).astype(np.float32)


def _scaled_local(sf: ShapeField, shape: Ellipsoid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lx, ly, lz = sf.local
    return lx * shape.radii[0], ly * shape.radii[1], lz * shape.radii[2]


def _voronoi(sf: ShapeField, shape: Ellipsoid, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-seed index and half-gap to the second nearest (mm) for a multilocular partition."""
    px, py, pz = _scaled_local(sf, shape)
    d = []
    for s in seeds * shape.radii:
        d.append(np.sqrt((px - s[0]) ** 2 + (py - s[1]) ** 2 + (pz - s[2]) ** 2))
    d = np.stack(d)
    idx = d.argmin(axis=0)
    if len(seeds) == 1:
        return idx, np.full_like(d[0], 1e3)
    part = np.partition(d, 1, axis=0)
    return idx, (part[1] - part[0]) / 2


def _septa(canvas: Canvas, sf: ShapeField, shape: Ellipsoid, seeds, thickness, sig, inset, wobble=None):
    idx, gap = _voronoi(sf, shape, seeds)
    if wobble is not None:
        gap = gap + wobble
    w = canvas.grid.edge_mm
    occ = np.clip(0.5 - (gap - thickness / 2) / w, 0, 1) * sf.occupancy(canvas.grid, inset)
    canvas.paint(sf.box, occ.astype(np.float32), sig)
    return idx


def render_lesion(canvas: Canvas, spec: LesionSpec, rng: np.random.Generator) -> None:
    """Paint the mass and record its occupancy in ``canvas.lesion``."""
    shape = spec.shape
    sf = render(canvas.grid, shape)
    if sf is None:
        return
    outer = sf.occupancy(canvas.grid)
    lesion = canvas.lesion[sf.box]
    np.maximum(lesion, outer, out=lesion)
    canvas.paint(sf.box, outer, spec.wall if spec.wall_mm > 0 else spec.fluid)
    x, y, z = sf.world
    dep = ((y - shape.center[1]) / shape.radii.max()).astype(np.float32)  # +1 = posterior (dependent)
    _PAINTERS[spec.label](canvas, spec, sf, dep, rng)


def _texture(canvas: Canvas, sf: ShapeField, rng, scale_mm: float) -> np.ndarray:
    return noise_texture(canvas.grid, sf.box, rng, scale_mm)


def _render_simple_cyst(canvas, spec, sf, dep, rng):
    tex = 1 + 0.025 * _texture(canvas, sf, rng, 15.0)
    canvas.paint_shape(sf, spec.fluid[:, None, None, None] * tex[None], spec.wall_mm)


def _render_endometrioma(canvas, spec, sf, dep, rng):
    p = spec.params
    content = np.broadcast_to(spec.fluid[:, None, None, None], (3,) + sf.dist.shape).copy()
    tex = _texture(canvas, sf, rng, 5.0)
    content *= 1 + p["reticular"] * tex[None] * np.float32([1.0, 0.6, 0.6])[:, None, None, None]
    if p.get("shading", 0) > 0:
        t = np.clip((dep - p["level"]) * 2.5 + 0.5, 0, 1)
        t2 = spec.fluid[0] * (p["t2_top"] * (1 - t) + (1 - p["shading"]) * t * 0.8 + 0.2 * t)
        content[0] = t2 * (1 + 0.05 * tex)
        content[1:] *= (1 + 0.08 * t)[None]
    if "seeds" in p:
        canvas.paint_shape(sf, content, spec.wall_mm)
        _septa(canvas, sf, spec.shape, p["seeds"], p["septum_mm"], spec.wall, spec.wall_mm)
    else:
        canvas.paint_shape(sf, content, spec.wall_mm)


def _render_mature_teratoma(canvas, spec, sf, dep, rng):
    p = spec.params
    fat = p["fat"]
    tex = _texture(canvas, sf, rng, 10.0)
    if spec.variant == "fat_fluid":
        frac = np.clip((p["level"] - dep) * 12 + 0.5, 0, 1)  # fat floats anteriorly: fat-fluid level
    elif spec.variant == "fat_rich":
        frac = np.clip((tex + 1 - 2 * p["pockets"]) * 3, 0, 1)
    else:
        frac = np.zeros_like(dep)
    content = mix(spec.fluid, fat, frac)
    canvas.paint_shape(sf, content, spec.wall_mm)
    shape = spec.shape
    if spec.variant == "low_fat":  # a small fat globule floating anteriorly
        ball = Ellipsoid(_world(shape, np.float32([0.1, -0.45, 0.0])), shape.radii * 0.3)
        bf = render(canvas.grid, ball)
        if bf is not None:
            canvas.paint_shape(bf, fat, 0.0, weight=(canvas.lesion[bf.box] > 0.5).astype(np.float32))
    if p["rokitansky"]:
        r = float(shape.radii.min()) * p["rok_size"]
        c = _world(shape, p["rok_dir"] * 0.88)
        nod = Ellipsoid(c, np.float32([r, r * 0.8, r]), bumps=Bumps.random(rng, 0.15, 3))
        nf = render(canvas.grid, nod)
        if nf is not None:
            inside = (canvas.lesion[nf.box] > 0.5).astype(np.float32)
            ntex = noise_texture(canvas.grid, nf.box, rng, 4.0)
            nsig = mix(signal("rokitansky"), fat, np.clip(0.5 + 0.6 * ntex, 0, 1))
            canvas.paint_shape(nf, nsig, 0.0, weight=inside)
            if p["calcification"]:
                calc = Ellipsoid(c, np.full(3, max(r * 0.35, 2.0), np.float32))
                cf = render(canvas.grid, calc)
                if cf is not None:
                    canvas.paint_shape(
                        cf, signal("calcification"), 0.0, weight=(canvas.lesion[cf.box] > 0.5) * 1.0
                    )


def _render_cystadenoma(canvas, spec, sf, dep, rng):
    p = spec.params
    idx, _ = _voronoi(sf, spec.shape, p["seeds"])
    tex = 1 + 0.03 * _texture(canvas, sf, rng, 12.0)
    content = np.moveaxis(p["locules"][idx], -1, 0) * tex[None]
    canvas.paint_shape(sf, content, spec.wall_mm)
    wob = 0.6 * _texture(canvas, sf, rng, 8.0) if p["septum_mm"] > 2.5 else None
    _septa(canvas, sf, spec.shape, p["seeds"], p["septum_mm"], p["septum"], spec.wall_mm, wob)
    seeds = p["seeds"]
    for i in range(min(p["nodules"], len(seeds) - 1)):
        mid = (seeds[i] + seeds[i + 1]) / 2
        r = float(rng.uniform(4.0, 8.0))
        nod = Ellipsoid(_world(spec.shape, mid), np.float32([r, r, r * 0.8]), bumps=Bumps.random(rng, 0.2, 3))
        nf = render(canvas.grid, nod)
        if nf is not None:
            canvas.paint_shape(
                nf, signal("malignant_solid", rng, 0.15), 0.0, weight=(canvas.lesion[nf.box] > 0.5) * 1.0
            )


def _render_fibroma(canvas, spec, sf, dep, rng):
    p = spec.params
    tex = _texture(canvas, sf, rng, 6.0)
    content = spec.fluid[:, None, None, None] * (1 + p["texture"] * tex[None])
    if p["oedema"] > 0:  # oedema / myxoid change: soft-edged areas of intermediate-high T2
        o = _texture(canvas, sf, rng, 14.0)
        t = np.clip((o - (1 - 2 * p["oedema"])) * 1.2, 0, 0.9)
        oedema = signal("oedema_solid", rng, 0.12)[:, None, None, None]
        content = content * (1 - t[None]) + oedema * t[None]
    canvas.paint_shape(sf, content, 0.0)


def _render_malignant(canvas, spec, sf, dep, rng):
    p = spec.params
    shape = spec.shape
    wob = _texture(canvas, sf, rng, 10.0)
    # cystic content inside an irregular thick wall
    inner = np.clip(0.5 - (sf.dist + spec.wall_mm * (1 + 0.6 * wob)) / canvas.grid.edge_mm, 0, 1)
    canvas.paint(sf.box, inner.astype(np.float32), spec.fluid)
    if p["seeds"] is not None:
        _septa(canvas, sf, shape, p["seeds"], p["septum_mm"], p["septum"], spec.wall_mm, 1.2 * wob)
    # solid tissue: a lumpy region grown from one side of the mass
    if p["solid_fraction"] > 0.01:
        px, py, pz = sf.local
        d = p["solid_dir"]
        score = px * d[0] + py * d[1] + pz * d[2] + 0.55 * _texture(canvas, sf, rng, 9.0)
        inside = sf.dist < 0
        if inside.any():
            cut = np.quantile(score[inside], 1 - p["solid_fraction"])
            t = np.clip((score - cut) * 6, 0, 1) * (sf.dist < 0)
            stex = 1 + 0.07 * _texture(canvas, sf, rng, 5.0)
            solid = p["solid"][:, None, None, None] * stex[None]
            if spec.variant == "predominantly_solid":  # necrotic foci
                nec = np.clip((_texture(canvas, sf, rng, 8.0) - 1.4) * 2, 0, 1)
                solid = solid * (1 - nec[None]) + spec.fluid[:, None, None, None] * nec[None]
            canvas.paint(sf.box, t.astype(np.float32), solid)
    # papillary projections from the inner wall
    for n in p["papillae"]:
        inset = 1 - (spec.wall_mm + 0.5 * p["papilla_mm"]) / float(shape.radii.mean())
        r = p["papilla_mm"] * float(rng.uniform(0.7, 1.3))
        pap = Ellipsoid(
            _world(shape, n * inset), np.float32([r, r, r]), bumps=Bumps.random(rng, 0.25, 3, 5.0)
        )
        pf = render(canvas.grid, pap)
        if pf is not None:
            canvas.paint_shape(pf, p["solid"], 0.0, weight=(canvas.lesion[pf.box] > 0.5) * 1.0)


_PAINTERS = {
    "simple_cyst": _render_simple_cyst,
    "endometrioma": _render_endometrioma,
    "mature_teratoma": _render_mature_teratoma,
    "cystadenoma": _render_cystadenoma,
    "fibroma": _render_fibroma,
    "malignant": _render_malignant,
}
