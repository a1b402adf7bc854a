"""The O-RADS MRI lexicon as short canonical terms (``category:value``), with English and French phrases.

A case carries one term per category (a complete reading), e.g. ``fluid:simple``, ``septations:thin``,
``orads:3``. ``vocabulary()`` lists every term in a fixed order (use it for term heads); ``is_informative``
tells the positive findings from the "absent"/"none" ones (useful when showing shared terms).
The phrases are what the templated reports write, so a report always names its terms.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One lexicon entry: ``name`` is ``category:value``; ``en``/``fr`` the phrase a report uses."""

    category: str
    value: str
    en: str
    fr: str
    informative: bool = True

    @property
    def name(self) -> str:
        return f"{self.category}:{self.value}"


def _t(category: str, value: str, en: str, fr: str, informative: bool = True) -> Term:
    return Term(category, value, en, fr, informative)


# Category -> its terms, in a fixed order. Every case has exactly one term of each category.
LEXICON: dict[str, tuple[Term, ...]] = {
    "fluid": (
        _t("fluid", "simple", "simple fluid content", "contenu liquidien simple"),
        _t("fluid", "haemorrhagic", "haemorrhagic fluid content", "contenu hémorragique"),
        _t("fluid", "proteinaceous", "proteinaceous fluid content", "contenu protéique"),
        _t("fluid", "endometriotic", "endometriotic fluid content", "contenu endométriosique"),
        _t("fluid", "lipid", "lipid (fat-containing) content", "contenu lipidique"),
        _t("fluid", "none", "no cystic component", "sans composante kystique", informative=False),
    ),
    "fat": (
        _t("fat", "present", "macroscopic fat present", "graisse macroscopique présente"),
        _t("fat", "absent", "no macroscopic fat", "pas de graisse macroscopique", informative=False),
    ),
    "solid": (
        _t("solid", "present", "solid tissue present", "tissu solide présent"),
        _t("solid", "absent", "no solid tissue", "pas de tissu solide", informative=False),
    ),
    "t2_dark_solid": (
        _t(
            "t2_dark_solid",
            "present",
            "homogeneously T2-dark solid tissue",
            "tissu solide homogène en hyposignal T2",
        ),
        _t(
            "t2_dark_solid",
            "absent",
            "no homogeneously T2-dark solid tissue",
            "pas de tissu solide homogène en hyposignal T2",
            informative=False,
        ),
    ),
    "t2_shading": (
        _t("t2_shading", "present", "T2 shading", "effet « shading » en T2"),
        _t("t2_shading", "absent", "no T2 shading", "pas d'effet « shading » en T2", informative=False),
    ),
    "septations": (
        _t("septations", "none", "no septations", "pas de cloison", informative=False),
        _t("septations", "thin", "thin smooth septations", "cloisons fines régulières"),
        _t("septations", "thick", "thick septations", "cloisons épaisses"),
    ),
    "wall": (
        _t("wall", "thin_smooth", "thin smooth wall", "paroi fine et régulière", informative=False),
        _t("wall", "thick_irregular", "thick irregular wall", "paroi épaisse et irrégulière"),
    ),
    "papillary": (
        _t("papillary", "present", "papillary projections", "végétations papillaires"),
        _t("papillary", "absent", "no papillary projections", "pas de végétation", informative=False),
    ),
    "ascites": (
        _t("ascites", "present", "ascites", "ascite"),
        _t("ascites", "absent", "no ascites", "pas d'ascite", informative=False),
    ),
    "implants": (
        _t("implants", "present", "peritoneal implants", "implants péritonéaux"),
        _t("implants", "absent", "no peritoneal implants", "pas d'implant péritonéal", informative=False),
    ),
    "laterality": (
        _t("laterality", "right", "right adnexa", "annexe droite"),
        _t("laterality", "left", "left adnexa", "annexe gauche"),
    ),
    "locularity": (
        _t("locularity", "unilocular", "unilocular", "uniloculaire"),
        _t("locularity", "multilocular", "multilocular", "multiloculaire"),
        _t("locularity", "solid", "predominantly solid", "à prédominance solide"),
    ),
    "size": (
        _t("size", "small", "small (< 5 cm)", "de petite taille (< 5 cm)"),
        _t("size", "medium", "medium-sized (5-10 cm)", "de taille moyenne (5-10 cm)"),
        _t("size", "large", "large (> 10 cm)", "volumineuse (> 10 cm)"),
    ),
    "orads": (
        _t("orads", "2", "O-RADS MRI 2", "O-RADS IRM 2"),
        _t("orads", "3", "O-RADS MRI 3", "O-RADS IRM 3"),
        _t("orads", "4", "O-RADS MRI 4", "O-RADS IRM 4"),
        _t("orads", "5", "O-RADS MRI 5", "O-RADS IRM 5"),
    ),
}

CATEGORIES: tuple[str, ...] = tuple(LEXICON)
_BY_NAME: dict[str, Term] = {t.name: t for terms in LEXICON.values() for t in terms}

# O-RADS MRI risk of malignancy, for display.
ORADS_RISK = {
    "2": ("almost certainly benign (< 0.5 %)", "presque certainement bénin (< 0,5 %)"),
    "3": ("low risk (~5 %)", "risque faible (~5 %)"),
    "4": ("intermediate risk (~50 %)", "risque intermédiaire (~50 %)"),
    "5": ("high risk (~90 %)", "risque élevé (~90 %)"),
}


def vocabulary() -> list[str]:
    """Every term, in the lexicon's fixed order (category by category)."""
    return [t.name for terms in LEXICON.values() for t in terms]


def informative_terms() -> list[str]:
    """Terms that state a finding (drops "absent"/"none" values)."""
    return [t.name for terms in LEXICON.values() for t in terms if t.informative]


def get(name: str) -> Term:
    """The lexicon entry for ``name``; unknown names raise ``KeyError``."""
    return _BY_NAME[name]


def is_known(name: str) -> bool:
    return name in _BY_NAME


def is_informative(name: str) -> bool:
    """True for a positive finding (unknown terms count as informative)."""
    term = _BY_NAME.get(name)
    return term.informative if term else True


def category(name: str) -> str:
    return name.split(":", 1)[0]


def phrase(name: str, language: str = "en") -> str:
    """The report phrase for a term in ``en`` or ``fr``; an unknown term reads as itself."""
    term = _BY_NAME.get(name)
    if term is None:
        return name
    return term.fr if language == "fr" else term.en


def orads_score(terms: list[str]) -> int | None:
    """The O-RADS MRI score stored among ``terms`` (``orads:N``), or None."""
    for name in terms:
        if name.startswith("orads:"):
            return int(name.split(":", 1)[1])
    return None


def validate(terms: list[str]) -> list[str]:
    """Problems with a term list: unknown terms, categories given twice. Empty when fine."""
    problems = [f"unknown term {name!r}" for name in terms if name not in _BY_NAME]
    seen: dict[str, str] = {}
    for name in terms:
        cat = category(name)
        if cat in seen and seen[cat] != name:
            problems.append(f"{seen[cat]!r} and {name!r} both given")
        seen[cat] = name
    return problems


def parse_terms(text: str) -> list[str]:
    """Manifest form ``"fluid:simple;septations:thin"`` (``;`` or ``|`` separated) -> list of terms."""
    parts = text.replace("|", ";").split(";") if text else []
    return [p.strip() for p in parts if p.strip()]


def format_terms(terms: list[str]) -> str:
    """List of terms -> manifest form (``;`` separated)."""
    return ";".join(terms)
