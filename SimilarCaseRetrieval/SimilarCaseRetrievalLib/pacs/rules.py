"""Which PACS series is which sequence: rules on SeriesDescription, Modality and other series attributes
(e.g. ScanOptions = FS for fat saturation). A rules file is JSON::

    {"sequences": {"T1FS": {"description": "(?i)\\bt1\\b.*(\\bfs\\b|fat.?sat)", "modality": "MR"},
                   "T1": {"description": "(?i)\\bt1\\b", "exclude": "(?i)\\bfs\\b|fat.?sat"}, ...},
     "required": ["T2", "T1", "T1FS"]}

Rules are tried in file order and a series takes the first sequence whose rule matches: put specific rules
(T1FS) before general ones (T1). Every condition given must hold: ``description`` and ``exclude`` are regular
expressions searched in SeriesDescription; ``modality`` is compared exactly; ``attributes`` maps a DICOM
keyword to a regular expression its value must contain. When several series match one sequence, the one with
the highest SeriesNumber (the latest repeat) is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CaseInputError
from .connection import SeriesInfo


def _word(pattern: str) -> str:
    """`pattern` as a whole token: not inside a longer run of letters/digits (underscores separate, as in
    Siemens' t1_tse_tra)."""
    return rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])"


_FAT_SAT = _word("fs|fat.?sat|spir|spair|dixon.?w|fatsat")
_T1, _T2 = _word("t1"), _word("t2")
DEFAULT_RULES = {
    "sequences": {
        "T1FS": {"description": rf"(?i){_T1}.*{_FAT_SAT}|{_FAT_SAT}.*{_T1}", "modality": "MR"},
        "T1": {
            "description": rf"(?i){_T1}",
            "exclude": rf"(?i){_FAT_SAT}|{_word('post|gado|gd')}|\+c",
            "modality": "MR",
        },
        "T2": {"description": rf"(?i){_T2}", "exclude": rf"(?i){_FAT_SAT}|stir|flair", "modality": "MR"},
        "DWI": {"description": rf"(?i){_word('dwi|diffusion|trace|adc')}", "modality": "MR"},
    },
    "required": ["T2", "T1", "T1FS"],
}


@dataclass
class SequenceRule:
    name: str
    description: re.Pattern | None = None
    exclude: re.Pattern | None = None
    modality: str | None = None
    attributes: dict[str, re.Pattern] = field(default_factory=dict)

    def matches(self, series: SeriesInfo) -> bool:
        if self.modality and series.modality != self.modality:
            return False
        if self.description and not self.description.search(series.description):
            return False
        if self.exclude and self.exclude.search(series.description):
            return False
        return all(p.search(series.attributes.get(k, "")) for k, p in self.attributes.items())


@dataclass
class SeriesRules:
    rules: list[SequenceRule]
    required: list[str]

    @classmethod
    def from_dict(cls, data: dict, where: str = "rules") -> SeriesRules:
        try:
            sequences = data["sequences"]
            rules = [
                SequenceRule(
                    name=name,
                    description=_regex(spec.get("description")),
                    exclude=_regex(spec.get("exclude")),
                    modality=spec.get("modality"),
                    attributes={k: re.compile(v) for k, v in spec.get("attributes", {}).items()},
                )
                for name, spec in sequences.items()
            ]
            required = list(data.get("required", list(sequences)))
        except (KeyError, TypeError, AttributeError, re.error) as exc:
            raise CaseInputError(
                where, f"bad sequence rules ({exc})", "see docs/pacs.md for the format"
            ) from None
        unknown = [r for r in required if r not in sequences]
        if unknown:
            raise CaseInputError(where, f"required sequence(s) without a rule: {unknown}", "add their rules")
        return cls(rules, required)

    @classmethod
    def load(cls, path: str | Path | None = None) -> SeriesRules:
        if path is None:
            return cls.from_dict(DEFAULT_RULES, "default rules")
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CaseInputError(path, f"not a readable JSON rules file ({exc})", "fix the file") from None
        return cls.from_dict(data, str(path))

    def with_required(self, sequences: Sequence[str] | None) -> SeriesRules:
        """The same rules requiring `sequences` (e.g. the model's) instead of the file's list."""
        if not sequences:
            return self
        names = {r.name for r in self.rules}
        missing = [s for s in sequences if s not in names]
        if missing:
            raise CaseInputError("sequences", f"no rule recognises {missing}", "add rules for them (--rules)")
        return SeriesRules(self.rules, list(sequences))

    def classify(self, series: Sequence[SeriesInfo]) -> dict[str, SeriesInfo]:
        """sequence name -> chosen series (only sequences with a matching series)."""
        chosen: dict[str, SeriesInfo] = {}
        for info in series:
            rule = next((r for r in self.rules if r.matches(info)), None)
            if rule is None:
                continue
            best = chosen.get(rule.name)
            if best is None or (info.number or 0) > (best.number or 0):
                chosen[rule.name] = info
        return chosen


def _regex(text: str | None) -> re.Pattern | None:
    return re.compile(text) if text else None
