"""The O-RADS MRI risk score from lexicon findings, as a small ordered rule table.

Rules after the published O-RADS MRI risk stratification system:
- Thomassin-Naggara I, Poncelet E, Jalaguier-Coudray A, et al. "Ovarian-Adnexal Reporting Data System
  Magnetic Resonance Imaging (O-RADS MRI) Score for Risk Stratification of Sonographically Indeterminate
  Adnexal Masses." JAMA Netw Open 2020;3(1):e1919896.
- Sadowski EA, Thomassin-Naggara I, Rockall A, et al. "O-RADS MRI Risk Stratification System: Guide for
  Assigning Scores." Radiology 2022;303(1):35-47.
- Reinhold C, Rockall A, Sadowski EA, et al. "Ovarian-Adnexal Reporting Lexicon for MRI: A White Paper of the
  ACR O-RADS MRI Committee." J Am Coll Radiol 2021;18(5):713-729.

Score 1 (normal ovaries, no lesion) never applies to a segmented mass. The first matching rule, in table
order (highest risk first), gives the score. "Solid tissue" follows the lexicon: a solid component,
papillary projections or an irregular wall (our ``wall:thick_irregular``); smooth septations, thin or
thick, are not solid tissue.

What our lexicon (terms.py) cannot express, and the assumption the table makes (stated in every draft):
- the dynamic contrast time-intensity curve (TIC) that splits solid tissue into 3 (low-risk curve),
  4 (intermediate) and 5 (high-risk curve): pass ``curve``; without it, solid tissue scores 4 and the
  draft says "3-5 depending on the curve";
- wall enhancement of a unilocular cyst with haemorrhagic or proteinaceous fluid (2 without enhancement,
  3 with a smooth enhancing wall): assumed enhancing (3), the usual reading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

Findings = Mapping[str, str]  # category -> value, e.g. {"fluid": "simple", "solid": "absent", ...}
CURVES = ("low", "intermediate", "high")


def has_solid_tissue(f: Findings) -> bool:
    """Solid tissue in the O-RADS MRI sense (solid component, papillary projection or irregular wall)."""
    return (
        f.get("solid") == "present" or f.get("papillary") == "present" or f.get("wall") == "thick_irregular"
    )


def _dark_solid(f: Findings) -> bool:
    return f.get("t2_dark_solid") == "present"


def _lipid(f: Findings) -> bool:
    return f.get("fat") == "present" or f.get("fluid") == "lipid"


def _multilocular(f: Findings) -> bool:
    return f.get("locularity") == "multilocular" or f.get("septations") in ("thin", "thick")


@dataclass(frozen=True)
class Rule:
    """One row of the table: ``score`` when ``applies(findings, curve)``; ``text`` is the published wording."""

    score: int
    text: str
    applies: Callable[[Findings, str | None], bool]


RULES: tuple[Rule, ...] = (
    Rule(
        5,
        "peritoneal, mesenteric or omental nodularity or irregular thickening (implants), with or without ascites",
        lambda f, c: f.get("implants") == "present",
    ),
    Rule(
        5,
        "solid tissue (not homogeneously T2-dark) with a high-risk time-intensity curve",
        lambda f, c: has_solid_tissue(f) and not _dark_solid(f) and c == "high",
    ),
    Rule(
        4,
        "solid tissue (not homogeneously T2-dark) with an intermediate-risk time-intensity curve "
        "(assumed when the curve is not given)",
        lambda f, c: has_solid_tissue(f) and not _dark_solid(f) and c in (None, "intermediate"),
    ),
    Rule(
        4,
        "lipid-containing lesion with a large volume of enhancing solid tissue",
        lambda f, c: _lipid(f) and has_solid_tissue(f) and not _dark_solid(f) and c != "low",
    ),
    Rule(
        3,
        "solid tissue (not homogeneously T2-dark) with a low-risk time-intensity curve",
        lambda f, c: has_solid_tissue(f) and not _dark_solid(f) and c == "low",
    ),
    Rule(2, "solid tissue homogeneously dark on T2 (and DWI)", lambda f, c: _dark_solid(f)),
    Rule(
        2,
        "lesion with lipid content, no enhancing solid tissue",
        lambda f, c: _lipid(f) and not has_solid_tissue(f),
    ),
    Rule(
        3,
        "multilocular cyst, any fluid but lipid, smooth septations and wall, no enhancing solid tissue",
        lambda f, c: _multilocular(f) and not has_solid_tissue(f),
    ),
    Rule(
        2,
        "unilocular cyst with simple fluid, thin smooth wall, no solid tissue",
        lambda f, c: f.get("fluid") == "simple" and not has_solid_tissue(f),
    ),
    Rule(
        2,
        "unilocular cyst with endometriotic fluid (T2 shading), smooth wall, no solid tissue",
        lambda f, c: (
            (f.get("fluid") == "endometriotic" or f.get("t2_shading") == "present")
            and not has_solid_tissue(f)
        ),
    ),
    Rule(
        3,
        "unilocular cyst with haemorrhagic or proteinaceous fluid and a smooth enhancing wall (enhancement "
        "assumed), no solid tissue",
        lambda f, c: f.get("fluid") in ("haemorrhagic", "proteinaceous") and not has_solid_tissue(f),
    ),
)


@dataclass(frozen=True)
class OradsResult:
    score: int | None
    rule: str  # the matching rule's wording, or why no score
    caveat: str = ""

    def to_dict(self) -> dict:
        return {"score": self.score, "rule": self.rule, "caveat": self.caveat}


def findings_from_terms(terms) -> dict[str, str]:
    """``["fluid:simple", ...]`` -> ``{"fluid": "simple", ...}`` (``orads:*`` itself is left out)."""
    out = {}
    for name in terms:
        cat, _, value = str(name).partition(":")
        if value and cat != "orads":
            out[cat] = value
    return out


def orads_score(findings: Findings, curve: str | None = None) -> OradsResult:
    """The O-RADS MRI score the rule table gives for ``findings`` (``curve``: low / intermediate / high)."""
    if curve is not None and curve not in CURVES:
        raise ValueError(f"unknown time-intensity curve {curve!r}; use one of {CURVES}")
    for rule in RULES:
        if rule.applies(findings, curve):
            caveat = ""
            if curve is None and has_solid_tissue(findings) and not _dark_solid(findings) and rule.score == 4:
                caveat = "no time-intensity curve in the lexicon: 3 (low-risk), 4 or 5 (high-risk curve)"
            if "enhancement assumed" in rule.text:
                caveat = "2 if the cyst wall does not enhance"
            return OradsResult(rule.score, rule.text, caveat)
    return OradsResult(None, "no rule applies to these findings (incomplete reading)")
