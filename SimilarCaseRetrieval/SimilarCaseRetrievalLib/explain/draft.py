"""A drafted structured report (O-RADS MRI lexicon) for a query, from its predicted terms and nearest cases.

For each lexicon category the draft states the most probable term: by default the one most of the k nearest
cases were recorded with (its share as probability, the model's term-head probability beside it; measured
better than the term head alone, docs/explain.md), or the term head's (``findings_from="term head"``), the O-RADS MRI score the published rules
give for those findings (`orads.py`), what the k nearest cases were ("7 of 10 similar cases were
endometriomas, 2 cystadenomas") and, per finding, the sentences of the neighbours' reports that state it,
each with its case id. Always marked as a draft to be verified by the radiologist.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import terms as lexicon
from .orads import OradsResult, orads_score
from .words import tokenize

DRAFT_BANNER = "DRAFT - generated from similar cases; to be verified and edited by the radiologist"
# Categories the O-RADS rules read (the diagnosis implied by the draft is voted by neighbours agreeing on them)
FINDINGS_SOURCES = ("neighbours", "term head")
DECISIVE = ("fluid", "fat", "solid", "t2_dark_solid", "septations", "wall", "papillary", "implants")


@dataclass
class Neighbour:
    """One of the k nearest cases as the draft needs it."""

    case_id: str
    score: float
    label: str | None
    terms: list[str]
    report: str


@dataclass
class Support:
    case_id: str
    sentence: str


@dataclass
class Finding:
    category: str
    term: str
    phrase: str
    probability: float
    support: list[Support] = field(default_factory=list)
    head_probability: float | None = None  # the term head's, when findings are voted by the neighbours

    @property
    def informative(self) -> bool:
        return lexicon.is_informative(self.term)


@dataclass
class Draft:
    findings: list[Finding]
    orads: OradsResult
    head_orads: dict[str, float]  # the term head's own orads:* probabilities (empty for text-only)
    neighbours: list[Neighbour]
    diagnosis: str | None  # the diagnosis the draft implies (see implied_diagnosis)
    source: str  # "term head" | "neighbours"
    query_id: str = ""
    model_version: str = ""

    @property
    def findings_dict(self) -> dict[str, str]:
        return {f.category: f.term.split(":", 1)[1] for f in self.findings}

    def neighbour_summary(self) -> str:
        """E.g. "7 of 10 similar cases were endometrioma, 2 cystadenoma, 1 simple_cyst"."""
        counts = Counter(n.label or "unlabelled" for n in self.neighbours).most_common()
        if not counts:
            return "no similar cases"
        head, *rest = counts
        text = f"{head[1]} of {len(self.neighbours)} similar cases were {_plural(head[0], head[1])}"
        return text + "".join(f", {n} {_plural(lab, n)}" for lab, n in rest)

    def to_dict(self) -> dict:
        return {
            "draft": True,
            "notice": DRAFT_BANNER,
            "query_id": self.query_id,
            "model_version": self.model_version,
            "findings": [
                {
                    "category": f.category,
                    "term": f.term,
                    "phrase": f.phrase,
                    "probability": round(f.probability, 4),
                    "term_head_probability": None
                    if f.head_probability is None
                    else round(f.head_probability, 4),
                    "support": [{"case_id": s.case_id, "sentence": s.sentence} for s in f.support],
                }
                for f in self.findings
            ],
            "orads": self.orads.to_dict(),
            "term_head_orads": {k: round(v, 4) for k, v in self.head_orads.items()},
            "findings_source": self.source,
            "similar_cases": self.neighbour_summary(),
            "implied_diagnosis": self.diagnosis,
            "neighbours": [
                {"case_id": n.case_id, "score": round(n.score, 4), "label": n.label} for n in self.neighbours
            ],
        }

    def to_markdown(self) -> str:
        lines = [f"> **{DRAFT_BANNER}**", ""]
        if self.query_id:
            lines.append(
                f"Query: {self.query_id}" + (f" (model {self.model_version})" if self.model_version else "")
            )
            lines.append("")
        lines.append(f"## Findings (O-RADS MRI lexicon; probability from the {self.source})")
        for f in self.findings:
            head = "" if f.head_probability is None else f" (term head {f.head_probability:.2f})"
            lines.append(f"- {f.phrase[:1].upper()}{f.phrase[1:]} [{f.term}] - p = {f.probability:.2f}{head}")
            for s in f.support:
                lines.append(f'  - "{s.sentence}" (case {s.case_id})')
        lines += ["", "## Impression"]
        score = self.orads.score
        if score is None:
            lines.append(f"- O-RADS MRI: not assignable - {self.orads.rule}.")
        else:
            risk = lexicon.ORADS_RISK.get(str(score), ("",))[0]
            lines.append(f"- O-RADS MRI {score}" + (f" ({risk})" if risk else "") + f": {self.orads.rule}.")
            if self.orads.caveat:
                lines.append(f"  - Note: {self.orads.caveat}.")
        if self.head_orads:
            top = max(self.head_orads, key=self.head_orads.get)
            lines.append(f"- Term head's own O-RADS estimate: {top} (p = {self.head_orads[top]:.2f}).")
        lines.append(f"- {self.neighbour_summary()}.")
        if self.diagnosis:
            lines.append(
                f"- Diagnosis suggested by the similar cases that share these findings: {self.diagnosis}."
            )
        lines += ["", "## Similar cases"]
        lines += [f"- {n.case_id}: {n.label or '-'} (score {n.score:.3f})" for n in self.neighbours]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """Plain text (the markdown without its markup), for copying into a report."""
        return re.sub(r"[*>#]+ ?", "", self.to_markdown())


def _plural(label: str, n: int) -> str:
    """ "endometrioma" -> "endometriomas" for n > 1 (diagnosis nouns; adjectives such as "malignant" stay)."""
    word = label.replace("_", " ")
    return word + "s" if n > 1 and word.endswith(("oma", "cyst")) else word


def sentences(report: str) -> list[str]:
    """Report split into sentences (on . ; ! ? and line breaks)."""
    parts = re.split(r"(?<=[.;!?])\s+|\n+", report or "")
    return [p.strip() for p in parts if p and p.strip()]


def _contains(tokens: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))


def supporting_sentences(term: str, neighbours: Sequence[Neighbour], limit: int = 3) -> list[Support]:
    """Sentences of the neighbours' reports that state ``term`` (its English or French phrase, as a run of
    normalised words, negations included), from neighbours recorded with that term when they carry terms."""
    phrases = [tokenize(lexicon.phrase(term, lang), keep_stop_words=True) for lang in ("en", "fr")]
    out: list[Support] = []
    for n in neighbours:
        if n.terms and term not in n.terms:
            continue
        for s in sentences(n.report):
            toks = tokenize(s, keep_stop_words=True)
            if any(_contains(toks, p) for p in phrases):
                out.append(Support(n.case_id, s))
                break
        if len(out) >= limit:
            break
    return out


def implied_diagnosis(findings: Mapping[str, str], neighbours: Sequence[Neighbour]) -> str | None:
    """Similarity-weighted vote of the neighbours whose recorded terms agree with the draft on the decisive
    categories (all neighbours when none agrees)."""

    def agrees(n: Neighbour) -> bool:
        rec = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in n.terms if ":" in t}
        return all(rec.get(c) == v for c, v in findings.items() if c in DECISIVE and c in rec)

    voters = [n for n in neighbours if n.label and agrees(n)] or [n for n in neighbours if n.label]
    votes: dict[str, float] = {}
    for n in voters:
        votes[n.label] = votes.get(n.label, 0.0) + max(n.score, 0.0) + 1e-6
    return max(votes, key=votes.get) if votes else None


def build_draft(
    term_probs: Mapping[str, float] | None,
    neighbours: Sequence[Neighbour],
    *,
    findings_from: str = "neighbours",
    curve: str | None = None,
    query_id: str = "",
    model_version: str = "",
) -> Draft:
    """The draft from the k neighbours and the query's term probabilities (None for a text-only query).

    ``findings_from``: ``"neighbours"`` (default: each category's term voted by the neighbours' recorded terms,
    the term head's probability shown beside it; measured better, docs/explain.md) or ``"term head"``. Falls
    back to whichever source exists.
    """
    if findings_from not in FINDINGS_SOURCES:
        raise ValueError(f"findings_from {findings_from!r}: use one of {FINDINGS_SOURCES}")
    neighbours = list(neighbours)
    counts = Counter(t for n in neighbours for t in n.terms)
    votes = {t: c / max(1, len(neighbours)) for t, c in counts.items()}
    head_probs = dict(term_probs or {})
    if head_probs and (findings_from == "term head" or not votes):
        probs, source = head_probs, "term head"
    else:
        probs, source = votes, "neighbours"
    findings = []
    for cat in lexicon.CATEGORIES:
        if cat == "orads":
            continue
        options = [(probs[t.name], t.name) for t in lexicon.LEXICON[cat] if t.name in probs]
        if not options:
            continue
        p, name = max(options)
        findings.append(
            Finding(
                cat,
                name,
                lexicon.phrase(name),
                float(p),
                supporting_sentences(name, neighbours),
                head_probs.get(name) if source == "neighbours" and head_probs else None,
            )
        )
    values = {f.category: f.term.split(":", 1)[1] for f in findings}
    head = {t: float(p) for t, p in head_probs.items() if t.startswith("orads:")}
    return Draft(
        findings,
        orads_score(values, curve),
        head,
        neighbours,
        implied_diagnosis(values, neighbours),
        source,
        query_id,
        model_version,
    )


def draft_from_search(
    engine, result, study=None, mask=None, curve: str | None = None, findings_from: str = "neighbours"
) -> Draft:
    """The draft for a `SearchEngine` result: term probabilities of the query ROI (when there is one) and the
    hits' stored reports and terms."""
    probs = None
    if study is not None and mask is not None:
        encoder = engine.encoder
        pred = encoder.predict_rois(encoder.roi_for(study, mask)[None])
        probs = {t: float(p) for t, p in zip(encoder.terms, pred.term_probs[0], strict=True)}
    neighbours = []
    for h in result.hits:
        case = engine.store.get(h.case_id)
        neighbours.append(Neighbour(h.case_id, float(h.score), h.label, list(case.terms), case.report))
    return build_draft(
        probs,
        neighbours,
        findings_from=findings_from,
        curve=curve,
        query_id=result.query_id,
        model_version=result.model_version,
    )
