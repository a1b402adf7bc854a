"""Word matches between query notes and a hit's report: BM25-style normalisation, highlighting and
leave-one-word-out score changes."""

from __future__ import annotations

import numpy as np
from SimilarCaseRetrievalLib.explain.words import (
    mark,
    shared_words,
    tokenize,
    without_word,
    word_matches,
)


def test_tokens_are_case_and_accent_folded_and_stop_words_dropped():
    assert tokenize("Kyste ENDOMÉTRIOSIQUE de l'ovaire, CA-125 élevé") == [
        "kyste",
        "endometriosique",
        "ovaire",
        "ca",
        "125",
        "eleve",
    ]
    assert "the" in tokenize("the cyst", keep_stop_words=True)


def test_shared_words_follow_the_query_order_once():
    assert shared_words("Pelvic pain, CA-125 raised; pain again", "CA-125 normal. Pelvic mass.") == [
        "pelvic",
        "ca",
        "125",
    ]
    assert shared_words("cyst", "") == []


def test_mark_and_without_word_keep_the_original_text():
    text = "Thin septations; no solid TISSUE. Solid?"
    assert mark(text, ["solid"]) == "Thin septations; no **solid** TISSUE. **Solid**?"
    assert without_word(text, "solid") == "Thin septations; no TISSUE. ?"


def _bag_of_words(vocabulary):
    def encode(texts):
        rows = []
        for t in texts:
            v = np.array([tokenize(t).count(w) for w in vocabulary], np.float32)
            n = np.linalg.norm(v)
            rows.append(v / n if n else v)
        return np.stack(rows)

    return encode


def test_leave_one_word_out_ranks_the_shared_word_first():
    query = "postmenopausal woman, pelvic pain, fat"
    report = "Mature teratoma with macroscopic fat; pelvic"
    vocab = sorted(set(tokenize(query)) | set(tokenize(report)))
    m = word_matches(_bag_of_words(vocab), query, report)
    assert set(m.shared) == {"pelvic", "fat"}
    assert m.score > 0
    top_query = [w.word for w in m.top("query", 2)]
    assert set(top_query) == {"pelvic", "fat"}  # the only words whose removal lowers the score
    assert all(w.drop <= 1e-6 for w in m.effects if w.word in ("postmenopausal", "woman", "pain"))
    d = m.to_dict()
    assert d["shared"] == m.shared and d["query_words"][0][0] in ("pelvic", "fat")
