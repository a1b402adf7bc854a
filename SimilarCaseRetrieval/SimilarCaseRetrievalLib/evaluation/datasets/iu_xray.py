"""IU chest X-ray reports (Open-i): text-only retrieval, relevance by shared problem tags."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ...errors import CaseInputError
from ..collection import EvalCollection

IGNORED_TAGS = {"No Indexing", ""}


def _collection(rows: list[dict], name: str) -> EvalCollection:
    ids, labels, terms, texts = [], [], [], []
    for r in rows:
        text = " ".join(t for t in (r.get("findings", ""), r.get("impression", "")) if t).strip()
        tags = frozenset(t.strip() for t in r.get("Problems", "").split(";")) - IGNORED_TAGS
        if not text or not tags:
            continue
        ids.append(f"iu-{r['uid']}")
        labels.append("normal" if tags == {"normal"} else "abnormal")
        terms.append(tags)
        texts.append(text)
    return EvalCollection(
        name=name,
        ids=ids,
        labels=labels,
        terms=terms,
        groups=ids[:],
        texts=texts,
        query_texts=texts[:],
        relevance="terms",
    )


def load_iu_xray(path) -> tuple[EvalCollection, EvalCollection]:
    """(index = R2Gen train split, queries = R2Gen test split); text = findings + impression."""
    root = Path(path)
    table, split = root / "indiana_reports.csv", root / "r2gen_annotation.json"
    for f in (table, split):
        if not f.is_file():
            raise CaseInputError(f, "file not found", "pass the iu-xray-reports folder")
    with table.open(newline="", encoding="utf-8") as f:
        by_uid = {r["uid"]: r for r in csv.DictReader(f)}
    sets = json.loads(split.read_text(encoding="utf-8"))

    def rows(name):
        return [by_uid[str(e["id"])] for e in sets[name] if str(e["id"]) in by_uid]

    return _collection(rows("train"), "IU X-ray"), _collection(rows("test"), "IU X-ray")
