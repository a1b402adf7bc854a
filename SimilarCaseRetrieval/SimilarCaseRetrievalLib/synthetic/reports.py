"""Templated radiology reports (English and French) from a case's O-RADS MRI terms.

The report names every term with its lexicon phrase (``terms.phrase``); the impression gives the
O-RADS MRI score and a differential read from the terms (not from the true label), as a radiologist would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import terms as lexicon

# Words a report may use to name a diagnosis; clinical notes must never contain any of them.
DIAGNOSIS_WORDS: dict[str, tuple[str, ...]] = {
    "simple_cyst": ("simple cyst", "functional cyst", "kyste simple", "kyste fonctionnel"),
    "endometrioma": ("endometrioma", "endométriome", "haemorrhagic cyst", "kyste hémorragique"),
    "mature_teratoma": ("teratoma", "dermoid", "tératome", "dermoïde"),
    "cystadenoma": ("cystadenoma", "cystadénome"),
    "fibroma": ("fibroma", "fibrothecoma", "fibrome", "fibrothécome"),
    "malignant": (
        "malignan",
        "carcinoma",
        "cancer",
        "borderline",
        "malignité",
        "carcinome",
        "tumeur maligne",
    ),
}

_SIGNAL = {
    "en": {
        "simple": "The content is of high T2 and low T1 signal",
        "proteinaceous": "The content is of mildly high T1 signal and slightly reduced T2 signal",
        "haemorrhagic": "The content is of high T1 signal that persists on fat-saturated images",
        "endometriotic": "The content is markedly T1 hyperintense, persisting on fat saturation",
        "lipid": "T1-hyperintense components lose signal on fat-saturated images",
        "none": "The lesion is solid",
    },
    "fr": {
        "simple": "Le contenu est en hypersignal T2 et en hyposignal T1",
        "proteinaceous": "Le contenu est en discret hypersignal T1 et en hypersignal T2 modéré",
        "haemorrhagic": "Le contenu est en hypersignal T1 persistant après saturation de la graisse",
        "endometriotic": "Le contenu est en hypersignal T1 franc, persistant après saturation de la graisse",
        "lipid": "Des composantes en hypersignal T1 s'éteignent après saturation de la graisse",
        "none": "La lésion est solide",
    },
}

_TEXT = {
    "en": {
        "title": "MRI PELVIS - characterisation of an adnexal mass|MRI PELVIS - adnexal mass, O-RADS MRI assessment|MRI PELVIS - ovarian lesion",
        "technique": "Technique: axial T2-weighted, T1-weighted and fat-saturated T1-weighted images.|Sequences: axial T2, T1 and T1 fat-saturated.",
        "comparison": "Comparison: prior MRI of {date}; the lesion measured {prior:.0f} mm (now {now:.0f} mm).",
        "findings": "Findings:",
        "uterus_pre": "Uterus anteverted, normal in size; endometrium {e:.0f} mm.|Normal-sized anteverted uterus, endometrial thickness {e:.0f} mm.",
        "uterus_post": "Small postmenopausal uterus; thin endometrium ({e:.0f} mm).|Atrophic uterus, endometrium {e:.0f} mm.",
        "lesion": "In the {side}, {loc} lesion, {size}, measuring {a:.0f} x {b:.0f} x {c:.0f} mm, with a {wall}.|{Side}: {loc} lesion, {size}, {a:.0f} x {b:.0f} x {c:.0f} mm, {wall}.",
        "ovary_pre": "The contralateral ovary is normal, with follicles.|Normal contralateral ovary with small follicles.",
        "ovary_post": "The contralateral ovary is small and normal.",
        "trace": "Trace physiological pelvic fluid.",
        "impression": "Impression:",
        "risk": "{orads}: {risk}.",
    },
    "fr": {
        "title": "IRM PELVIENNE - caractérisation d'une masse annexielle|IRM PELVIENNE - masse annexielle, évaluation O-RADS IRM|IRM PELVIENNE - lésion ovarienne",
        "technique": "Technique : séquences axiales pondérées T2, T1 et T1 avec saturation de la graisse.|Séquences : T2, T1 et T1 FatSat axiales.",
        "comparison": "Comparaison : IRM du {date} ; la lésion mesurait {prior:.0f} mm (actuellement {now:.0f} mm).",
        "findings": "Résultats :",
        "uterus_pre": "Utérus antéversé de taille normale ; endomètre de {e:.0f} mm.|Utérus antéversé normal, épaisseur endométriale {e:.0f} mm.",
        "uterus_post": "Utérus de petite taille, ménopausique ; endomètre fin ({e:.0f} mm).|Utérus atrophique, endomètre de {e:.0f} mm.",
        "lesion": "Dans l'{side}, lésion {loc}, {size}, mesurant {a:.0f} x {b:.0f} x {c:.0f} mm, {wall}.|{Side} : lésion {loc}, {size}, {a:.0f} x {b:.0f} x {c:.0f} mm, {wall}.",
        "ovary_pre": "L'ovaire controlatéral est normal, folliculaire.|Ovaire controlatéral normal, d'aspect folliculaire.",
        "ovary_post": "L'ovaire controlatéral est atrophique, normal.",
        "trace": "Lame d'épanchement pelvien physiologique.",
        "impression": "Conclusion :",
        "risk": "{orads} : {risk}.",
    },
}


@dataclass
class ReportContext:
    """What the report needs besides the terms."""

    dimensions_mm: tuple[float, float, float]
    postmenopausal: bool
    endometrium_mm: float
    trace_fluid: bool = False
    ascites_fraction: float = 0.0
    prior_date: str | None = None
    prior_diameter_mm: float | None = None


def differential(terms: list[str], language: str = "en") -> str:
    """The impression's differential diagnosis, read from the terms."""
    t = set(terms)
    fr = language == "fr"
    orads = lexicon.orads_score(terms) or 0
    if "fat:present" in t:
        return "tératome mature (kyste dermoïde)" if fr else "mature cystic teratoma (dermoid)"
    if "solid:present" in t:
        if "t2_dark_solid:present" in t:
            return "fibrome / fibrothécome probable" if fr else "probable fibroma / fibrothecoma"
        if orads >= 5:
            return "très suspect de malignité ovarienne" if fr else "highly suspicious of ovarian malignancy"
        if "locularity:multilocular" in t and "papillary:absent" in t:
            return (
                "cystadénome à cloisons épaisses ; tumeur borderline non exclue"
                if fr
                else "cystadenoma with thick septa; a borderline tumour cannot be excluded"
            )
        return (
            "tissu solide indéterminé ; tumeur borderline ou maligne non exclue, avis en RCP"
            if fr
            else "indeterminate solid tissue; a borderline or malignant tumour cannot be excluded, MDT review"
        )
    if "fluid:endometriotic" in t:
        return "endométriome" if fr else "endometrioma"
    if "fluid:haemorrhagic" in t:
        return (
            "kyste hémorragique ; endométriome non exclu"
            if fr
            else "haemorrhagic cyst; endometrioma not excluded"
        )
    if "locularity:multilocular" in t:
        return "cystadénome (séreux ou mucineux)" if fr else "cystadenoma (serous or mucinous)"
    if "fluid:proteinaceous" in t:
        return (
            "kyste à contenu protéique ; kyste hémorragique possible"
            if fr
            else "proteinaceous cyst; haemorrhagic cyst possible"
        )
    return "kyste simple (fonctionnel)" if fr else "simple (functional) cyst"


def write_report(
    terms: list[str], ctx: ReportContext, language: str = "en", rng: np.random.Generator | None = None
) -> str:
    """The full report in ``language`` (``en`` or ``fr``); it contains every term's lexicon phrase."""
    if language not in _TEXT:
        raise ValueError(f"unsupported report language {language!r}; use 'en' or 'fr'")
    rng = rng or np.random.default_rng(0)
    tx = _TEXT[language]
    value = {lexicon.category(name): name for name in terms}

    def ph(category: str) -> str:
        return lexicon.phrase(value[category], language)

    def cap(s: str) -> str:
        return s[:1].upper() + s[1:]

    def pick(key: str) -> str:
        options = tx[key].split("|")
        return options[int(rng.integers(len(options)))]

    a, b, c = ctx.dimensions_mm
    lines = [pick("title"), pick("technique")]
    if ctx.prior_date and ctx.prior_diameter_mm:
        lines.append(tx["comparison"].format(date=ctx.prior_date, prior=ctx.prior_diameter_mm, now=a))
    lines.append(tx["findings"])
    lines.append(pick("uterus_post" if ctx.postmenopausal else "uterus_pre").format(e=ctx.endometrium_mm))
    side = ph("laterality")
    lines.append(
        pick("lesion").format(
            side=side, Side=cap(side), loc=ph("locularity"), size=ph("size"), a=a, b=b, c=c, wall=ph("wall")
        )
    )
    fluid = value["fluid"].split(":", 1)[1]
    content = [f"{_SIGNAL[language][fluid]} ({ph('fluid')})", cap(ph("t2_shading")), cap(ph("fat"))]
    sep = " ; " if language == "fr" else "; "
    structure = [cap(ph("septations")), cap(ph("solid")) + sep + ph("t2_dark_solid"), cap(ph("papillary"))]
    if rng.uniform() < 0.5:
        content, structure = structure, content
    lines.append(". ".join(content) + ".")
    lines.append(". ".join(structure) + ".")
    lines.append(pick("ovary_post" if ctx.postmenopausal else "ovary_pre"))
    ascites = cap(ph("ascites"))
    if value["ascites"] == "ascites:present" and ctx.ascites_fraction:
        grade = min(int(ctx.ascites_fraction / 0.12), 2)
        if language == "fr":
            ascites += " " + ("de faible abondance", "modérée", "abondante")[grade]
        else:
            ascites = cap(("small-volume ", "moderate ", "large-volume ")[grade] + ph("ascites"))
    extra = [ascites, cap(ph("implants"))]
    if ctx.trace_fluid and value["ascites"] == "ascites:absent":
        extra.append(tx["trace"].rstrip("."))
    lines.append(". ".join(extra) + ".")
    lines.append(tx["impression"])
    score = value["orads"].split(":", 1)[1]
    risk = lexicon.ORADS_RISK[score][1 if language == "fr" else 0]
    lines.append(
        tx["risk"].format(orads=ph("orads"), risk=risk) + " " + cap(differential(terms, language)) + "."
    )
    return "\n".join(lines)
