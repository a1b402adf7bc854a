"""Search results: hits, the query they answer, JSON form, text table, saved query vectors (.npz)."""

from __future__ import annotations

import re
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import CaseInputError

SNIPPET_CHARS = 200


@dataclass
class Hit:
    """One retrieved case. `text_score` of a case without text compares the query text with its image
    embedding (shared space); `has_text` says which. `lexical_score`: BM25 of the query text's words in the
    case's notes and report (0: none of them; None: no query text)."""

    case_id: str
    score: float
    image_score: float | None
    text_score: float | None
    label: str | None
    terms: list[str]
    shared_terms: list[str]
    report_snippet: str
    has_text: bool = True
    rank: int = 0
    lexical_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    """Ranked hits and the query (vectors, weight, filters) that produced them."""

    hits: list[Hit]
    query_terms: dict[str, float]
    image_vector: np.ndarray | None
    text_vector: np.ndarray | None
    text_weight: float
    k: int
    query_id: str
    model_version: str
    text: str = ""
    label: str | None = None
    terms: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    refined: int = 0  # rounds of relevance feedback applied
    backbone_vector: np.ndarray | None = None  # the query text's sentence-model embedding (hybrid scoring)

    @property
    def mode(self) -> str:
        if self.image_vector is not None and self.text_vector is not None and 0 < self.text_weight < 1:
            return "fused"
        return "image" if self.image_vector is not None and self.text_weight < 1 else "text"

    def ids(self) -> list[str]:
        return [h.case_id for h in self.hits]

    def to_dict(self) -> dict:
        """JSON-ready summary (no vectors)."""
        return {
            "query_id": self.query_id,
            "mode": self.mode,
            "text_weight": self.text_weight,
            "k": self.k,
            "model_version": self.model_version,
            "query_terms": {t: round(p, 4) for t, p in self.query_terms.items()},
            "filters": {"label": self.label, "terms": self.terms, "sequences": self.sequences},
            "refined": self.refined,
            "hits": [h.to_dict() for h in self.hits],
        }

    def save_query(self, path: str | Path) -> None:
        """The (refined) query vectors as plain arrays (load with `np.load(..., allow_pickle=False)`)."""
        empty = np.zeros(0, dtype=np.float32)
        np.savez(
            Path(path),
            image=empty if self.image_vector is None else np.asarray(self.image_vector, np.float32),
            text=empty if self.text_vector is None else np.asarray(self.text_vector, np.float32),
            text_weight=np.float32(self.text_weight),
            k=np.float32(self.k),
            query_terms_p=np.asarray(list(self.query_terms.values()), dtype=np.float32),
            query_terms=np.asarray(list(self.query_terms), dtype=str),
            model_version=np.asarray(self.model_version, dtype=str),
            query_text=np.asarray(self.text or "", dtype=str),  # for the BM25 side of hybrid text scoring
        )


@dataclass
class SavedQuery:
    """Query vectors read back from a `.npz` written by `SearchResult.save_query`."""

    image_vector: np.ndarray | None
    text_vector: np.ndarray | None
    text_weight: float
    k: int
    query_terms: dict[str, float]
    model_version: str | None
    text: str = ""  # the query text (BM25 side of hybrid scoring); "" in files saved before it was kept


def load_query(path: str | Path) -> SavedQuery:
    """Read a saved query (no pickle). Bad file -> CaseInputError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            image = np.asarray(data["image"], dtype=np.float32)
            text = np.asarray(data["text"], dtype=np.float32)
            weight = float(data["text_weight"])
            k = int(data["k"]) if "k" in data else 10
            names = [str(t) for t in data["query_terms"]] if "query_terms" in data else []
            probs = [float(p) for p in data["query_terms_p"]] if "query_terms_p" in data else []
            version = str(data["model_version"]) if "model_version" in data else None
            query_text = str(data["query_text"]) if "query_text" in data else ""
    except (OSError, ValueError, KeyError) as exc:
        raise CaseInputError(
            path, f"not a saved query ({exc})", "write it with `similar-cases search --save-query`"
        ) from None
    if image.size == 0 and text.size == 0:
        raise CaseInputError(path, "saved query has no vectors", "save a query from an image or text search")
    for name, v in (("image", image), ("text", text)):
        if v.size and (v.ndim != 1 or not np.isfinite(v).all()):
            raise CaseInputError(path, f"{name} vector is not a finite 1D array", "save the query again")
    return SavedQuery(
        image_vector=image if image.size else None,
        text_vector=text if text.size else None,
        text_weight=weight,
        k=k,
        query_terms=dict(zip(names, probs, strict=True)),
        model_version=version,
        text=query_text,
    )


_SECTION = re.compile(
    r"^\s*(impression|conclusions?|findings|résultats|technique|comparison|comparaison)\s*:?\s*", re.I | re.M
)


def snippet(report: str, limit: int = SNIPPET_CHARS) -> str:
    """The report on one line, cut at a word boundary: the impression (conclusion) first, then the findings
    (the header and technique lines of a structured report are left out)."""
    report = report or ""
    sections: dict[str, str] = {}
    marks = list(_SECTION.finditer(report))
    for n, m in enumerate(marks):
        name = m.group(1).lower()
        name = {"conclusion": "impression", "conclusions": "impression", "résultats": "findings"}.get(
            name, name
        )
        end = marks[n + 1].start() if n + 1 < len(marks) else len(report)
        sections[name] = report[m.end() : end]
    parts = [sections.get("impression", ""), sections.get("findings", "")] if marks else [report]
    flat = re.sub(r"\s+", " ", " ".join(p.strip() for p in parts if p.strip())).strip()
    return flat if len(flat) <= limit else textwrap.shorten(flat, limit, placeholder=" …")


def format_table(result: SearchResult, *, width: int = 60) -> str:
    """A readable text table of the hits."""
    lines = []
    from .terms import is_informative

    shown = {t: p for t, p in result.query_terms.items() if is_informative(t)}
    if shown:
        terms = ", ".join(f"{t} ({p:.2f})" for t, p in shown.items())
        lines.append(f"query terms (positive findings): {terms}")
    lines.append(f"mode: {result.mode} (text weight {result.text_weight:g}), {len(result.hits)} hit(s)")
    header = f"{'#':>3}  {'case':<14} {'score':>6} {'image':>6} {'text':>6}  {'label':<22} shared terms"
    lines += [header, "-" * len(header)]
    for h in result.hits:
        img = "" if h.image_score is None else f"{h.image_score:6.3f}"
        txt = "" if h.text_score is None else f"{h.text_score:6.3f}" + ("" if h.has_text else "*")
        shared = ", ".join(h.shared_terms) or "-"
        lines.append(
            f"{h.rank:>3}  {h.case_id:<14} {h.score:6.3f} {img:>6} {txt:>6}  {(h.label or '-'):<22} {shared}"
        )
        if h.report_snippet:
            lines.append(f"{'':5}{textwrap.shorten(h.report_snippet, width + 40, placeholder=' …')}")
    if any(not h.has_text for h in result.hits):
        lines.append("* case without text: its image embedding stands in for the text")
    return "\n".join(lines)
