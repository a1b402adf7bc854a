"""Start the worker process, send it requests, and read its events without ever blocking the caller.

Qt-free: the Slicer module calls `poll()` from a QTimer; tests and scripts use `call()`, which waits.
A reader thread only moves the worker's stdout lines into a queue (like `slicer.util.launchConsoleProcess`
with `blocking=False`); parsing and callbacks run in `poll()`, on the caller's (GUI) thread.

A cancelled request is forgotten at once (its callbacks never run); if the worker has not stopped it within
`cancel_grace_s` (work with no progress reports), the worker is killed. A worker that stops (killed, crashed)
fails its open requests with one WorkerError and is started again by the next request.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import Event, WorkerError, WorkerInputError, decode_event, encode

log = logging.getLogger(__name__)
LIB_PARENT = Path(__file__).resolve().parents[2]  # the folder holding SimilarCaseRetrievalLib/


# Puts the library's folder on sys.path itself: a launcher such as PythonSlicer sets its own PYTHONPATH.
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from SimilarCaseRetrievalLib.worker.__main__ import run; sys.exit(run())"
)


def worker_command(python: str | None = None) -> list[str]:
    """The command line of the worker (what `python -m SimilarCaseRetrievalLib.worker` runs), importing the
    library from this folder whatever the environment's PYTHONPATH."""
    return [python or sys.executable, "-c", BOOTSTRAP, str(LIB_PARENT)]


def worker_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: this one, with the library importable, unbuffered UTF-8 output and the
    Hugging Face hub offline (in the worker only: the caller's environment is not changed)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LIB_PARENT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


@dataclass
class Pending:
    """A request sent and not yet ended, with what to call on its events."""

    kind: str
    on_progress: Callable[[Event], None] | None
    on_result: Callable[[dict], None] | None
    on_error: Callable[[Exception], None] | None
    on_cancelled: Callable[[], None] | None
    cancelled_at: float | None = None


class WorkerClient:
    """One worker process and the requests sent to it."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        *,
        cancel_grace_s: float = 5.0,
        log_path: Path | str | None = None,
    ):
        self.command = list(command or worker_command())
        self.env = env if env is not None else worker_environment()
        self.cancel_grace_s = cancel_grace_s
        self.log_path = Path(
            log_path or Path(tempfile.gettempdir()) / f"SimilarCaseRetrieval-worker-{os.getpid()}.log"
        )
        self.worker_pid: int | None = (
            None  # the worker's own pid (a launcher such as PythonSlicer may sit between)
        )
        self.starts = 0
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._pending: dict[int, Pending] = {}
        self._next_id = 1

    # -- process --------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def busy(self) -> bool:
        """True while a request has not ended (cancelled ones included until the worker confirms)."""
        return bool(self._pending)

    def start(self) -> None:
        """Start the worker (the next request also does when it is not running)."""
        if self.running:
            return
        self._events = queue.Queue()  # events of a previous process are dropped
        self.worker_pid = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        stderr = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it; closed below
        options: dict[str, Any] = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NO_WINDOW
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=self.env,
                **options,
            )
        finally:
            stderr.close()
        self.starts += 1
        log.info("similar-case worker started: %s (log %s)", " ".join(self.command), self.log_path)
        threading.Thread(target=self._read, args=(self._process, self._events), daemon=True).start()

    @staticmethod
    def _read(process: subprocess.Popen, events: queue.Queue) -> None:
        """Reader thread: worker stdout lines -> queue; ('exit', code) at the end."""
        for raw in iter(process.stdout.readline, b""):
            events.put(("line", raw.decode("utf-8", errors="replace")))
        events.put(("exit", process.wait()))

    def kill(self) -> None:
        """Stop the worker now (and the launcher in front of it); open requests fail at the next poll."""
        process, pid = self._process, self.worker_pid
        if pid is not None and process is not None and pid != process.pid:
            try:
                os.kill(pid, signal.SIGTERM if os.name == "nt" else signal.SIGKILL)
            except OSError:
                pass
        if process is not None and process.poll() is None:
            process.kill()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to finish and exit; kill it if it does not within `timeout` seconds."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.stdin.write(encode({"type": "shutdown"}).encode("utf-8"))
                process.stdin.close()
                process.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
            process.wait(timeout=timeout)
        self._process = None
        self._pending.clear()

    # -- requests -------------------------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        on_progress: Callable[[Event], None] | None = None,
        on_result: Callable[[dict], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> int:
        """Send a request; returns its id. Callbacks run inside `poll()`."""
        if not self.running:
            self._drain_until_exit()
            self.start()
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = Pending(kind, on_progress, on_result, on_error, on_cancelled)
        self._send({"id": request_id, "type": kind, "params": params or {}})
        return request_id

    def cancel(self, request_id: int) -> None:
        """Forget the request now (`on_cancelled` runs at once); the worker stops it at its next progress
        report, or is killed after `cancel_grace_s` seconds."""
        pending = self._pending.get(request_id)
        if pending is None or pending.cancelled_at is not None:
            return
        pending.cancelled_at = time.monotonic()
        self._send({"id": request_id, "type": "cancel"})
        if pending.on_cancelled is not None:
            pending.on_cancelled()

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._process.stdin.write(encode(message).encode("utf-8"))
            self._process.stdin.flush()
        except OSError:  # the worker has stopped: poll() reports it to the open requests
            log.warning("the similar-case worker is not reading its requests any more")

    def poll(self) -> list[Event]:
        """Handle every event received so far (callbacks run here); returns them. Never blocks."""
        handled = []
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "exit":
                handled.extend(self._worker_stopped(payload))
                continue
            try:
                event = decode_event(payload)
            except ValueError:
                log.warning("worker: %s", payload.rstrip())
                continue
            self._dispatch(event)
            handled.append(event)
        self._enforce_cancel_grace()
        return handled

    def _dispatch(self, event: Event) -> None:
        if event.event == "ready":
            self.worker_pid = int(event.data["pid"])
            return
        pending = self._pending.get(event.id)
        if pending is None:
            if event.event == "error":
                log.warning("worker: %s", event.data.get("message"))
            return
        if event.ends_request:
            del self._pending[event.id]
        if pending.cancelled_at is not None:
            return
        if event.event == "progress" and pending.on_progress is not None:
            pending.on_progress(event)
        elif event.event == "result" and pending.on_result is not None:
            pending.on_result(event.data.get("result") or {})
        elif event.event == "error" and pending.on_error is not None:
            error_type = WorkerInputError if event.data.get("kind") == "input" else WorkerError
            pending.on_error(error_type(event.data.get("message", "unknown error")))
        elif event.event == "cancelled" and pending.on_cancelled is not None:
            pending.on_cancelled()

    def _worker_stopped(self, code: int) -> list[Event]:
        """The process ended: every open request fails with one message; the next request restarts it."""
        log.warning("the similar-case worker stopped (exit code %s); see %s", code, self.log_path)
        events = []
        for request_id, pending in list(self._pending.items()):
            message = (
                f"the worker process stopped (exit code {code}) during {pending.kind}; it starts again with the "
                f"next request (log: {self.log_path})"
            )
            event = Event("error", request_id, {"kind": "internal", "message": message})
            self._dispatch(event)
            events.append(event)
        self._pending.clear()
        return events

    def _drain_until_exit(self) -> None:
        """Before a restart: report the previous worker's end to its open requests."""
        if self._process is not None and self._process.poll() is not None:
            deadline = time.monotonic() + 5.0
            while self._pending and time.monotonic() < deadline:
                self.poll()
                time.sleep(0.01)
            self._pending.clear()

    def _enforce_cancel_grace(self) -> None:
        now = time.monotonic()
        overdue = [
            p
            for p in self._pending.values()
            if p.cancelled_at is not None and now - p.cancelled_at > self.cancel_grace_s
        ]
        if overdue and self.running:
            log.warning(
                "a cancelled %s did not stop within %.0f s: stopping the worker",
                overdue[0].kind,
                self.cancel_grace_s,
            )
            self.kill()

    def call(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Event], None] | None = None,
    ) -> dict[str, Any]:
        """Send a request and wait for its result (scripts, tests, the self-test); raises its error."""
        outcome: dict[str, Any] = {}
        request_id = self.submit(
            kind,
            params,
            on_progress=on_progress,
            on_result=lambda result: outcome.setdefault("result", result),
            on_error=lambda error: outcome.setdefault("error", error),
            on_cancelled=lambda: outcome.setdefault("error", WorkerError(f"{kind} was cancelled")),
        )
        deadline = None if timeout is None else time.monotonic() + timeout
        while not outcome:
            self.poll()
            if outcome:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(request_id)
                raise WorkerError(f"{kind}: no answer from the worker within {timeout:.0f} s")
            time.sleep(0.01)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]
