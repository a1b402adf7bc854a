"""Clinical notes: partial, noisy information that correlates with the diagnosis but never names it.

Each patient gets a clinical profile (age, menopausal status, CA-125, history of endometriosis, symptoms,
how the mass was found); each study's note shows only part of it, in varied terse styles, and some notes
are empty or misleading (raised CA-125 in a benign mass, incidental discovery of a malignant one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# P(CA-125 raised), P(history of endometriosis), P(incidental finding) per label
_CA125_RAISED = {
    "simple_cyst": 0.05,
    "endometrioma": 0.4,
    "mature_teratoma": 0.08,
    "cystadenoma": 0.12,
    "fibroma": 0.15,
    "malignant": 0.75,
}
_ENDOMETRIOSIS = {"endometrioma": 0.5}
_INCIDENTAL = {
    "malignant": 0.12,
    "fibroma": 0.45,
    "cystadenoma": 0.35,
    "mature_teratoma": 0.5,
    "simple_cyst": 0.45,
}
_SYMPTOMS = {
    "simple_cyst": (("acute_pain", 0.25), ("irregular_cycles", 0.1)),
    "endometrioma": (("dysmenorrhoea", 0.55), ("dyspareunia", 0.25), ("infertility", 0.2)),
    "mature_teratoma": (("intermittent_pain", 0.2),),
    "cystadenoma": (("fullness", 0.35),),
    "fibroma": (("heaviness", 0.2), ("pmb", 0.08)),
    "malignant": (("bloating", 0.5), ("weight_loss", 0.3), ("fullness", 0.25), ("pmb", 0.1)),
}
_NOISE_SYMPTOMS = ("acute_pain", "dysmenorrhoea", "bloating", "fullness", "heaviness", "intermittent_pain")

_PHRASES = {
    "en": {
        "acute_pain": "acute right iliac fossa pain|sudden pelvic pain",
        "irregular_cycles": "irregular cycles",
        "dysmenorrhoea": "severe dysmenorrhoea|chronic pelvic pain, worse with menses",
        "dyspareunia": "deep dyspareunia",
        "infertility": "infertility work-up|trying to conceive for 2 years",
        "intermittent_pain": "intermittent pelvic pain|episodic left-sided pain",
        "fullness": "abdominal fullness|increasing abdominal girth",
        "heaviness": "pelvic heaviness",
        "pmb": "postmenopausal bleeding",
        "bloating": "bloating for 3 months|persistent bloating, early satiety",
        "weight_loss": "weight loss 5 kg|unintentional weight loss",
    },
    "fr": {
        "acute_pain": "douleur aiguë de la fosse iliaque|douleur pelvienne brutale",
        "irregular_cycles": "cycles irréguliers",
        "dysmenorrhoea": "dysménorrhée sévère|douleurs pelviennes chroniques cataméniales",
        "dyspareunia": "dyspareunie profonde",
        "infertility": "bilan d'infertilité|désir de grossesse depuis 2 ans",
        "intermittent_pain": "douleurs pelviennes intermittentes|douleur latéralisée épisodique",
        "fullness": "pesanteur abdominale|augmentation du périmètre abdominal",
        "heaviness": "pesanteur pelvienne",
        "pmb": "métrorragies post-ménopausiques",
        "bloating": "ballonnements depuis 3 mois|ballonnements persistants, satiété précoce",
        "weight_loss": "perte de poids de 5 kg|amaigrissement involontaire",
    },
}


@dataclass
class ClinicalProfile:
    """What is known about a patient (a note shows part of it)."""

    age: int
    postmenopausal: bool
    ca125: float  # U/mL
    endometriosis: bool
    incidental: str | None  # "ultrasound" / "CT" / None
    symptoms: list[str] = field(default_factory=list)
    brca: bool = False
    gravida: int = 0


def sample_profile(label: str, age: int, postmenopausal: bool, rng: np.random.Generator) -> ClinicalProfile:
    """Draw a profile that correlates with ``label`` without determining it."""
    if rng.uniform() < _CA125_RAISED[label]:
        ca125 = float(np.exp(rng.normal(np.log(220 if label == "malignant" else 60), 0.8)))
        ca125 = max(ca125, 36.0)
    else:
        ca125 = float(rng.uniform(5, 34))
    symptoms = [s for s, p in _SYMPTOMS[label] if rng.uniform() < p]
    if rng.uniform() < 0.12:  # misleading symptom
        symptoms.append(str(rng.choice(_NOISE_SYMPTOMS)))
    incidental = None
    if not symptoms or rng.uniform() < _INCIDENTAL.get(label, 0.2) * 0.5:
        if rng.uniform() < _INCIDENTAL.get(label, 0.2) * 1.5:
            incidental = str(rng.choice(["ultrasound", "CT"], p=[0.75, 0.25]))
    return ClinicalProfile(
        age=age,
        postmenopausal=postmenopausal,
        ca125=round(ca125, 0),
        endometriosis=rng.uniform() < _ENDOMETRIOSIS.get(label, 0.06),
        incidental=incidental,
        symptoms=[s for s in dict.fromkeys(symptoms) if not (s == "pmb" and not postmenopausal)],
        brca=rng.uniform() < (0.08 if label == "malignant" else 0.01),
        gravida=int(rng.integers(0, 4)),
    )


def write_notes(
    profile: ClinicalProfile, rng: np.random.Generator, language: str = "en", followup: bool = False
) -> str:
    """One study's note: a random subset of the profile in one of a few styles; sometimes empty."""
    if rng.uniform() < 0.08:
        return ""
    fr = language == "fr"
    p = profile
    style = int(rng.integers(0, 3))
    parts: list[str] = []
    if rng.uniform() < 0.9:
        if style == 0:
            status = (
                ("ménopausée" if p.postmenopausal else "non ménopausée")
                if fr
                else ("postmenopausal" if p.postmenopausal else "premenopausal")
            )
            parts.append(f"Patiente de {p.age} ans, {status}" if fr else f"{p.age}-year-old {status} woman")
        elif style == 1:
            parts.append(
                f"F {p.age} ans, G{p.gravida}P{min(p.gravida, 2)}"
                if fr
                else f"F {p.age}y, G{p.gravida}P{min(p.gravida, 2)}"
            )
            if rng.uniform() < 0.7:
                parts.append(
                    ("ménopause" if fr else "postmenopausal")
                    if p.postmenopausal
                    else ("DDR il y a 2 semaines" if fr else "LMP 2 weeks ago")
                )
        else:
            parts.append(f"{p.age} ans" if fr else f"Age {p.age}")
    symptoms = [s for s in p.symptoms if rng.uniform() < 0.8]
    for s in symptoms:
        options = _PHRASES[language][s].split("|")
        parts.append(str(rng.choice(options)))
    if p.endometriosis and rng.uniform() < 0.8:
        parts.append(
            "Endométriose connue"
            if fr
            else str(rng.choice(["Known endometriosis", "History of endometriosis (laparoscopy)"]))
        )
    if p.brca and rng.uniform() < 0.8:
        parts.append("Mutation BRCA1" if fr else "BRCA1 mutation carrier")
    if rng.uniform() < 0.65:
        fmt = str(rng.choice(["CA-125 {v:.0f} U/mL", "CA125: {v:.0f}", "Ca-125 {v:.0f} (N < 35)"]))
        parts.append(fmt.format(v=p.ca125))
    if p.incidental and rng.uniform() < 0.85:
        where = {"ultrasound": "échographie", "CT": "scanner"}[p.incidental] if fr else p.incidental
        parts.append(f"Découverte fortuite en {where}" if fr else f"Incidental finding on {where}")
    if followup:
        parts.append("IRM de contrôle" if fr else "Follow-up MRI")
    if rng.uniform() < 0.4:
        parts.append(
            "Caractérisation demandée"
            if fr
            else str(rng.choice(["Please characterise", "Characterisation requested"]))
        )
    if not parts:
        return ""
    sep = ". " if style != 1 else "; "
    text = sep.join(s[:1].upper() + s[1:] if sep == ". " else s for s in parts)
    return text + "."
