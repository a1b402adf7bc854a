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


class StorageError(CaseInputError):
    """A file of the archive could not be written (disk full, read-only, file size limit): nothing was
    reported as done; what was stored before is intact."""


def storage_error(path: str | Path, exc: BaseException | str, what: str = "cannot write") -> StorageError:
    """One-line StorageError for a failed write of `path` (an OSError or an SQLite error), naming the disk."""
    import errno
    import os

    reason = (
        exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    )
    code = getattr(exc, "errno", None)
    folder = Path(path).parent
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in str(exc).replace(" ", "").lower():
        fix = f"make {folder} writable (or copy the archive to a writable disk) and run again"
    else:
        fix = f"free space on the disk holding {folder} (`df -h {folder}`) and run again"
        if code is None and not os.access(folder, os.W_OK):
            fix = f"make {folder} writable and run again"
    return StorageError(path, f"{what} ({reason})", fix)
