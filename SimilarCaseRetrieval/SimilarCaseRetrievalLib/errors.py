"""Errors raised on bad input: one line naming the file (or item) and the fix."""

from __future__ import annotations

from pathlib import Path


class CaseInputError(ValueError):
    """Bad input (file, segment, sequence, model, index). The message is one line: where, what, fix."""

    def __init__(self, where: str | Path | None, problem: str, fix: str):
        self.where = str(where) if where is not None else None
        self.problem = problem
        self.fix = fix
        prefix = f"{self.where}: " if self.where else ""
        super().__init__(f"{prefix}{problem}. Fix: {fix}")
