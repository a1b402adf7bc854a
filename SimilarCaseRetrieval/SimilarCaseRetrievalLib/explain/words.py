"""Which words of the query notes and of a hit's report matched.

- lexical: the words both texts contain, after the normalisation a BM25 / SQLite FTS5 ``unicode61``
  tokenizer applies (Unicode case folding, diacritics removed, split on anything that is not a letter or a
  digit), minus a short English + French stop-word list; the positions in the original texts are kept so
  they can be highlighted;
- embedding: leave-one-word-out (Li et al. 2016, "Understanding neural networks through representation
  erasure"): the drop of the text score when every occurrence of one word is removed from one side.

Self-contained (no store or index): any text scorer can be passed as ``encode`` (texts -> vectors).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

STOP_WORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the their this to was were with
    no not without there than then which who whom into per cm mm
    au aux avec ce ces dans de des du elle en est et il la le les leur mais ne ni ou par pas pour qui que sa
    se son sur un une d l""".split()
)


def fold(token: str) -> str:
    """Lower case without diacritics (what FTS5 ``unicode61 remove_diacritics 2`` compares)."""
    decomposed = unicodedata.normalize("NFKD", token.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens_with_spans(text: str) -> list[tuple[str, int, int]]:
    """(normalised token, start, end) for each word of ``text``."""
    return [(fold(m.group()), m.start(), m.end()) for m in _WORD.finditer(text or "")]


def tokenize(text: str, keep_stop_words: bool = False) -> list[str]:
    """Normalised tokens of ``text`` (stop words dropped unless asked)."""
    return [t for t, _, _ in tokens_with_spans(text) if keep_stop_words or t not in STOP_WORDS]


def shared_words(query: str, report: str) -> list[str]:
    """Normalised content words present in both texts, in the query's order."""
    in_report = set(tokenize(report))
    seen: list[str] = []
    for t in tokenize(query):
        if t in in_report and t not in seen:
            seen.append(t)
    return seen


def highlight_spans(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of ``text`` whose normalised token is one of ``words``."""
    wanted = set(words)
    return [(s, e) for t, s, e in tokens_with_spans(text) if t in wanted]


def mark(text: str, words: Sequence[str], before: str = "**", after: str = "**") -> str:
    """``text`` with each occurrence of ``words`` wrapped (markdown bold by default)."""
    out, last = [], 0
    for s, e in highlight_spans(text, words):
        out += [text[last:s], before, text[s:e], after]
        last = e
    out.append(text[last:])
    return "".join(out)


def without_word(text: str, word: str) -> str:
    """``text`` with every occurrence of the normalised ``word`` removed (other characters kept)."""
    spans = highlight_spans(text, [word])
    out, last = [], 0
    for s, e in spans:
        out.append(text[last:s])
        last = e
    out.append(text[last:])
    return re.sub(r"\s{2,}", " ", "".join(out)).strip()


@dataclass
class WordEffect:
    """One word's share of the text score: ``drop`` = score - score without that word (on ``side``)."""

    word: str
    side: str  # "query" | "report"
    drop: float


@dataclass
class WordMatches:
    """Lexical and embedding word matches of a query text and a hit's report."""

    shared: list[str]
    score: float  # text score of the full texts
    effects: list[WordEffect]  # largest drop first

    def top(self, side: str, n: int = 5) -> list[WordEffect]:
        return [w for w in self.effects if w.side == side and w.drop > 0][:n]

    def to_dict(self) -> dict:
        return {
            "shared": self.shared,
            "text_score": round(self.score, 4),
            "query_words": [(w.word, round(w.drop, 4)) for w in self.top("query", 10)],
            "report_words": [(w.word, round(w.drop, 4)) for w in self.top("report", 10)],
        }


def word_matches(
    encode: Callable[[list[str]], np.ndarray],
    query: str,
    report: str,
    max_words: int = 40,
) -> WordMatches:
    """Shared words, and the leave-one-word-out drop of ``<encode(query), encode(report)>`` for the first
    ``max_words`` distinct content words of each side (one batch of ``encode`` calls)."""
    q_words = list(dict.fromkeys(tokenize(query)))[:max_words]
    r_words = list(dict.fromkeys(tokenize(report)))[:max_words]
    texts = [query, report]
    texts += [without_word(query, w) for w in q_words]
    texts += [without_word(report, w) for w in r_words]
    v = np.asarray(encode(texts), np.float32)
    q, r = v[0], v[1]
    score = float(q @ r)
    q_scores = v[2 : 2 + len(q_words)] @ r
    r_scores = v[2 + len(q_words) :] @ q
    effects = [WordEffect(w, "query", score - float(s)) for w, s in zip(q_words, q_scores, strict=True)]
    effects += [WordEffect(w, "report", score - float(s)) for w, s in zip(r_words, r_scores, strict=True)]
    effects.sort(key=lambda e: -e.drop)
    return WordMatches(shared_words(query, report), score, effects)
