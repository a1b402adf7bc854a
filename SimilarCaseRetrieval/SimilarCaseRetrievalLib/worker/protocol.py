"""The worker protocol: one JSON object per line on the worker's stdin (requests) and stdout (events).

Requests (client -> worker)::

    {"id": 7, "type": "search", "params": {...}}     one of REQUEST_TYPES; ids are the client's
    {"type": "cancel", "id": 7}                      cancel request 7 (queued or running)
    {"type": "shutdown"}                             finish the running request, then exit

Events (worker -> client)::

    {"event": "ready", "pid": 1234, "version": "0.1.0"}               once, when the worker is listening
    {"event": "progress", "id": 7, "done": 3, "total": 60, "message": "..."}   total 0: unknown amount
    {"event": "result", "id": 7, "result": {...}}
    {"event": "error", "id": 7, "kind": "input" | "internal", "message": "one line"}
    {"event": "cancelled", "id": 7}

Every request ends with exactly one of result / error / cancelled. Qt-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# One request type per module action; the widget and the worker's handlers use these names.
REQUEST_TYPES = (
    "ping",
    "search",
    "refine",
    "case",
    "case_images",
    "add_case",
    "demo",
    "annotate_next",
    "annotate_confirm",
    "pacs_search",
    "explain_maps",
    "draft",
)
CONTROL_TYPES = ("cancel", "shutdown")
END_EVENTS = ("result", "error", "cancelled")


class WorkerInputError(ValueError):
    """Bad input reported by the worker (a CaseInputError there): the one-line message, verbatim."""


class WorkerError(RuntimeError):
    """The worker failed (an internal error, or it stopped): the message says what and what happens next."""


class Cancelled(Exception):
    """Raised inside the worker by a progress report once the request is cancelled."""


@dataclass
class Event:
    """One message from the worker."""

    event: str
    id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ends_request(self) -> bool:
        return self.event in END_EVENTS

    @property
    def fraction(self) -> float | None:
        """Progress as 0..1, or None when the amount is unknown."""
        total = self.data.get("total") or 0
        return min(1.0, self.data.get("done", 0) / total) if total > 0 else None


def encode(message: dict[str, Any]) -> str:
    """One line of JSON (no newline inside: json.dumps escapes them)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n"


def decode_event(line: str) -> Event:
    """A worker stdout line -> Event; a line that is not a protocol message is ValueError."""
    message = json.loads(line)
    if not isinstance(message, dict) or "event" not in message:
        raise ValueError(f"not a worker event: {line[:80]!r}")
    name = message.pop("event")
    request_id = message.pop("id", None)
    return Event(event=str(name), id=request_id, data=message)


def decode_request(line: str) -> dict[str, Any]:
    """A worker stdin line -> request dict with a known type (ValueError otherwise)."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a request is a JSON object")
    kind = message.get("type")
    if kind not in REQUEST_TYPES + CONTROL_TYPES:
        raise ValueError(f"unknown request type {kind!r} (known: {', '.join(REQUEST_TYPES + CONTROL_TYPES)})")
    if kind != "shutdown" and not isinstance(message.get("id"), int):
        raise ValueError(f"request {kind!r} needs an integer id")
    if not isinstance(message.get("params", {}), dict):
        raise ValueError("request params must be a JSON object")
    return message
