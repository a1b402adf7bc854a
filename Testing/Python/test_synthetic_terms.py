"""The O-RADS MRI lexicon (terms.py) and the readings the generator produces."""

from __future__ import annotations

import numpy as np
import pytest
from SimilarCaseRetrievalLib import terms as lexicon
from SimilarCaseRetrievalLib.synthetic import LABELS
from SimilarCaseRetrievalLib.synthetic.cases import sample_patient


def test_vocabulary_is_unique_canonical_and_translated() -> None:
    vocab = lexicon.vocabulary()
    assert len(vocab) == len(set(vocab))
    assert {"fluid:simple", "septations:thin", "orads:3", "fat:present", "ascites:present"} <= set(vocab)
    for name in vocab:
        category, value = name.split(":")
        assert category in lexicon.CATEGORIES and value
        assert lexicon.phrase(name, "en") and lexicon.phrase(name, "fr")
        assert lexicon.phrase(name, "en") != lexicon.phrase(name, "fr") or name.startswith("orads")
    assert set(lexicon.informative_terms()) < set(vocab)
    assert not lexicon.is_informative("ascites:absent") and lexicon.is_informative("ascites:present")


def test_validate_and_parse() -> None:
    assert lexicon.validate(["fluid:simple", "orads:2"]) == []
    assert lexicon.validate(["fluid:simple", "fluid:lipid"])  # one value per category
    assert lexicon.validate(["colour:blue"])
    assert lexicon.parse_terms("a:b; c:d|e:f") == ["a:b", "c:d", "e:f"]
    assert lexicon.format_terms(["a:b", "c:d"]) == "a:b;c:d"
    assert lexicon.orads_score(["fat:present", "orads:4"]) == 4 and lexicon.orads_score([]) is None
    with pytest.raises(KeyError):
        lexicon.get("colour:blue")


@pytest.mark.parametrize("label", LABELS)
def test_generated_readings_are_consistent(label: str) -> None:
    scores = set()
    for seed in range(30):
        terms = set(sample_patient("P", label, np.random.default_rng([seed, 99])).lesion.terms)
        assert lexicon.validate(sorted(terms)) == []
        assert len(terms) == len(lexicon.CATEGORIES)
        if "t2_dark_solid:present" in terms:
            assert "solid:present" in terms
        if "fat:present" in terms:
            assert "fluid:lipid" in terms
        if "papillary:present" in terms:
            assert "solid:present" in terms
        if "implants:present" in terms:
            assert "ascites:present" in terms and "orads:5" in terms
        if "solid:absent" in terms:
            assert lexicon.orads_score(sorted(terms)) <= 3
        scores.add(lexicon.orads_score(sorted(terms)))
    if label == "malignant":
        assert scores <= {4, 5}
    if label in ("simple_cyst", "endometrioma", "mature_teratoma"):
        assert scores <= {2, 3}
