"""Query terms of a free text for the FTS5 index: words, lower-cased, without function words, each once."""

from __future__ import annotations

import re

MAX_TERMS = 64  # a pasted report is cut here (BM25 over more terms costs time and adds little)

# English and French function words (and negations: they occur in most reports, so they only cost time).
STOP_WORDS = frozenset(
    """
    a an and are as at be been but by for from had has have he her his i if in into is it its of on or our
    she so than that the their them then there these they this those to was we were which while who will with
    within without you your no not nor none any all also can could may might should would does did do done
    there here very more most other such only same both each few some than too s t
    le la les un une des du de d l et ou en au aux sur sous par pour dans avec sans est sont été etre être
    ce cet cette ces qui que quoi dont il elle ils elles on ne pas ni plus se sa son ses leur leurs y
    """.split()
)

_WORD = re.compile(r"\w+", re.UNICODE)


def query_terms(text: str, max_terms: int = MAX_TERMS) -> list[str]:
    """The distinct words of `text` that are searched (lower case, first occurrence order, at most
    `max_terms`): function words and one-character words are dropped, digits are kept."""
    seen: dict[str, None] = {}
    for word in _WORD.findall((text or "").lower()):
        if word in STOP_WORDS or (len(word) < 2 and not word.isdigit()) or word.replace("_", "") == "":
            continue
        seen.setdefault(word, None)
        if len(seen) >= max_terms:
            break
    return list(seen)


def match_expression(terms: list[str]) -> str:
    """An FTS5 MATCH expression that matches a text containing any of `terms` (each quoted as a string)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
