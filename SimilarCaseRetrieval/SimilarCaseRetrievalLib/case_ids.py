"""What a case id may contain, and folders named after case ids that stay inside the folder asked for.

A case id is 1 to 128 ASCII letters, digits, '.', '_' or '-', starting with a letter or a digit (e.g.
`OV0001`, `mmotu-1234`, `TCGA-09-0364.2`). Ids name report folders and appear in HTML and figure captions, so
anything else (path separators, `..`, spaces, `$`, control characters) is refused at ingest and at query.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import CaseInputError

CASE_ID_RULE = "1-128 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def case_id_problem(case_id: object) -> str | None:
    """None for a valid case id, else what is wrong with it (one line, the id shown escaped)."""
    if not isinstance(case_id, str) or not case_id.strip():
        return "empty case_id"
    if _CASE_ID.fullmatch(case_id) is None:
        return f"case id {ascii(case_id)[:80]} is not allowed (a case id is {CASE_ID_RULE})"
    return None


def check_case_id(case_id: object, where: str | Path | None = None) -> str:
    """The case id when valid; CaseInputError otherwise."""
    problem = case_id_problem(case_id)
    if problem:
        raise CaseInputError(where, problem, "rename the case (e.g. replace '/', spaces and '$' with '-')")
    return case_id  # type: ignore[return-value]


def inside(base: str | Path, name: str) -> Path:
    """`base/name`, resolved, refused (CaseInputError) unless it lies strictly inside `base` resolved: a name
    with '..', an absolute path or a symbolic link pointing out never escapes the folder the user named."""
    root = Path(base).expanduser().resolve()
    target = (root / name).resolve()
    if target == root or root not in target.parents:
        raise CaseInputError(
            f"{base}/{name}", "would write outside the report folder", "use a plain case id as the name"
        )
    return target
