"""The worker process: reads requests from stdin, runs them one at a time, writes events to stdout.

The main thread only reads stdin (so a cancel is seen while a request runs); one request thread runs the
handlers in order (the engine keeps its model, index and SQLite connection between requests). A running
request is cancelled at its next progress report (`Progress.__call__` raises `Cancelled`); a queued one
never starts. stdout carries protocol lines only: anything else printed in the process (libraries, tqdm)
goes to stderr.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from .protocol import Cancelled, decode_request, encode

log = logging.getLogger(__name__)
Handler = Callable[[str, dict[str, Any], "Progress"], dict[str, Any]]


class Progress:
    """Handed to a request's handler: `progress(done, total, message)` reports, and raises if cancelled."""

    def __init__(self, server: Server, request_id: int):
        self._server = server
        self.request_id = request_id

    @property
    def cancelled(self) -> bool:
        return self.request_id in self._server.cancelled

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()

    def __call__(self, done: int, total: int = 0, message: str = "") -> None:
        self.check()
        self._server.emit(
            {
                "event": "progress",
                "id": self.request_id,
                "done": int(done),
                "total": int(total),
                "message": message,
            }
        )


class Server:
    """JSON-lines request loop around a handler `(type, params, progress) -> result dict`."""

    def __init__(self, handler: Handler, out: TextIO):
        self.handler = handler
        self.out = out
        self.cancelled: set[int] = set()
        self._write_lock = threading.Lock()
        self._requests: queue.Queue = queue.Queue()

    def emit(self, message: dict[str, Any]) -> None:
        line = encode(message)
        with self._write_lock:
            self.out.write(line)
            self.out.flush()

    def serve(self, lines: TextIO) -> int:
        from .. import __version__

        runner = threading.Thread(target=self._run_requests, name="scr-worker-requests", daemon=True)
        runner.start()
        self.emit({"event": "ready", "pid": os.getpid(), "version": __version__})
        for line in lines:
            if not line.strip():
                continue
            try:
                request = decode_request(line)
            except ValueError as exc:
                self.emit({"event": "error", "id": None, "kind": "input", "message": f"bad request: {exc}"})
                continue
            if request["type"] == "shutdown":
                break
            if request["type"] == "cancel":
                self.cancelled.add(request["id"])
                continue
            self._requests.put(request)
        self._requests.put(None)  # stdin closed or shutdown: finish what runs, then exit
        runner.join()
        return 0

    def _run_requests(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            self._run(request)

    def _run(self, request: dict[str, Any]) -> None:
        request_id = request["id"]
        if request_id in self.cancelled:
            self.emit({"event": "cancelled", "id": request_id})
            return
        try:
            result = self.handler(request["type"], request.get("params", {}), Progress(self, request_id))
        except Cancelled:
            self.emit({"event": "cancelled", "id": request_id})
        except ValueError as exc:  # CaseInputError and other bad input: the one-line message
            self.emit({"event": "error", "id": request_id, "kind": "input", "message": str(exc)})
        except Exception as exc:
            log.error("request %s (%s) failed:\n%s", request_id, request["type"], traceback.format_exc())
            message = f"{request['type']} failed ({type(exc).__name__}: {exc})"
            self.emit({"event": "error", "id": request_id, "kind": "internal", "message": message})
        else:
            if request_id in self.cancelled:
                self.emit({"event": "cancelled", "id": request_id})
            else:
                self.emit({"event": "result", "id": request_id, "result": result})
        finally:
            self.cancelled.discard(request_id)


def protocol_streams() -> tuple[TextIO, TextIO]:
    """(requests in, events out) on the process's stdin/stdout; fd 1 and sys.stdout then go to stderr so
    nothing but protocol lines reaches the client."""
    events = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8", newline="\n", write_through=True)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    return requests, events


def main(argv: list[str] | None = None) -> int:
    """`python -m SimilarCaseRetrievalLib.worker` / `similar-cases serve`: serve until stdin closes."""
    from .handlers import WorkerSession

    requests, events = protocol_streams()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    session = WorkerSession()
    try:
        return Server(session.handle, events).serve(requests)
    finally:
        session.close()
