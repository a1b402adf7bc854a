"""The Slicer module's worker process: long work (model, index, search, demo build) outside Slicer's GUI
process, over JSON lines on stdin/stdout. `protocol` (messages), `server` + `handlers` (the worker side),
`client` (the module's side; Qt-free)."""

from __future__ import annotations

from .protocol import REQUEST_TYPES, Event, WorkerError, WorkerInputError

__all__ = ["REQUEST_TYPES", "Event", "WorkerError", "WorkerInputError"]
