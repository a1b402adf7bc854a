"""The module's worker process end to end: a real `python -m SimilarCaseRetrievalLib.worker` subprocess driven by
the Qt-free WorkerClient (request, progress, result, input error, cancel, hard cancel, crash and restart)."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
from SimilarCaseRetrievalLib.worker import protocol
from SimilarCaseRetrievalLib.worker.client import WorkerClient
from SimilarCaseRetrievalLib.worker.server import Server


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    from SimilarCaseRetrievalLib.slicer_selftest import build_tiny_indexed_archive

    return build_tiny_indexed_archive(tmp_path_factory.mktemp("worker"))


@pytest.fixture
def client(tmp_path):
    worker = WorkerClient(cancel_grace_s=2.0, log_path=tmp_path / "worker.log")
    yield worker
    worker.close()


def query_files(archive, folder, index=0):
    """A stored case written as the module writes a query: each sequence (int16 here) and the mask as NRRD."""
    from SimilarCaseRetrievalLib.store import CaseStore
    from SimilarCaseRetrievalLib.worker.handlers import write_case_images

    with CaseStore(archive, create=False) as store:
        case = store.get(store.ids()[index])
        written = write_case_images(store, case, folder, list(case.sequences))
    return case, {**written, "text": case.notes}


def wait_for(condition, client, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        client.poll()
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        time.sleep(0.01)


def test_protocol_rejects_unknown_and_malformed_requests():
    with pytest.raises(ValueError, match="unknown request type"):
        protocol.decode_request('{"id": 1, "type": "format_disk"}')
    with pytest.raises(ValueError, match="integer id"):
        protocol.decode_request('{"type": "search"}')
    event = protocol.decode_event(protocol.encode({"event": "progress", "id": 3, "done": 5, "total": 20}))
    assert (event.event, event.id, event.fraction) == ("progress", 3, 0.25)
    assert protocol.decode_event('{"event": "progress", "id": 3, "done": 5, "total": 0}').fraction is None
    with pytest.raises(ValueError):
        protocol.decode_event("some library printed this")


def test_server_answers_every_request_once_and_skips_a_cancelled_queued_one():
    """The request loop in-process: the cancel of queued request 2 is read while request 1 runs, so request 2
    never starts; a malformed line gets one error; every request ends exactly once."""
    ran = []
    server = None

    def handler(kind, params, progress):
        ran.append(params["n"])
        if params["n"] == 1:  # hold request 1 until the reader thread has seen the cancel of request 2
            deadline = time.monotonic() + 10
            while 2 not in server.cancelled and time.monotonic() < deadline:
                time.sleep(0.005)
        progress(1, 2, "half")
        return {"n": params["n"]}

    lines = [
        protocol.encode({"id": 1, "type": "ping", "params": {"n": 1}}),
        protocol.encode({"id": 2, "type": "ping", "params": {"n": 2}}),
        protocol.encode({"id": 2, "type": "cancel"}),
        "not json\n",
        protocol.encode({"id": 3, "type": "ping", "params": {"n": 3}}),
    ]
    out = io.StringIO()
    server = Server(handler, out)
    assert server.serve(io.StringIO("".join(lines))) == 0
    events = [protocol.decode_event(line) for line in out.getvalue().splitlines()]
    assert events[0].event == "ready"
    ends = [(e.id, e.event) for e in events if e.ends_request]
    assert sorted(ends, key=str) == sorted(
        [(1, "result"), (2, "cancelled"), (None, "error"), (3, "result")], key=str
    )
    assert ran == [1, 3]
    assert [e.fraction for e in events if e.event == "progress"] == [0.5, 0.5]


def test_similar_cases_serve_is_the_same_worker(tmp_path):
    import sys

    worker = WorkerClient(
        [sys.executable, "-m", "SimilarCaseRetrievalLib.cli", "serve"], log_path=tmp_path / "log"
    )
    try:
        assert worker.call("ping", timeout=60)["pid"] == worker.worker_pid
    finally:
        worker.close()
    assert not worker.running


def test_search_refine_case_record_and_input_errors_through_a_real_worker(client, tiny, tmp_path):
    archive, model = tiny
    case, query = query_files(archive, tmp_path / "query")
    assert client.call("ping", timeout=60)["pid"] == client.worker_pid != os.getpid()
    progress = []
    params = {"archive": str(archive), "model_dir": str(model), "query": query, "k": 4, "text_weight": 0.0}
    result = client.call("search", params, timeout=300, on_progress=progress.append)
    assert [hit["case_id"] for hit in result["hits"]][0] == case.case_id  # its own images come first
    assert len(result["hits"]) == 4 and progress and all(p.fraction is None for p in progress)
    ids = [hit["case_id"] for hit in result["hits"]]
    refined = client.call(
        "refine",
        {"result_id": result["result_id"], "relevant": [ids[-1]], "not_relevant": [ids[1]]},
        timeout=120,
    )
    assert refined["refined"] == 1 and refined["result_id"] != result["result_id"]
    record = client.call("case", {"archive": str(archive), "case_id": case.case_id}, timeout=60)
    assert record["report"] == case.report and record["label"] == case.label
    with pytest.raises(protocol.WorkerInputError, match="Fix:"):
        client.call("case", {"archive": str(archive), "case_id": "no-such-case"}, timeout=60)
    with pytest.raises(protocol.WorkerInputError, match="search again"):
        client.call("refine", {"result_id": 999, "relevant": [ids[0]]}, timeout=60)
    assert client.starts == 1  # one process served everything: the engine stayed loaded


def test_demo_reports_determinate_progress_then_cancel_stops_it_without_a_restart(client, tiny, tmp_path):
    _, model = tiny
    events = []
    done = {}
    params = {"archive": str(tmp_path / "demo"), "folder": str(tmp_path / "out"), "model_dir": str(model)}
    client.submit(
        "demo",
        {**params, "n_cases": 4, "size": "tiny"},
        on_progress=events.append,
        on_result=lambda r: done.setdefault("result", r),
        on_error=lambda e: done.setdefault("error", e),
    )
    wait_for(lambda: done, client, timeout=300)
    assert "result" in done, done
    build = [e.fraction for e in events if e.data["message"].startswith("building")]
    index = [e.fraction for e in events if e.data["message"].startswith("embedding")]
    assert build == [n / 4 for n in range(1, 5)]  # determinate: one report per case built
    assert index and index == sorted(index) and index[-1] == 1.0
    assert set(done["result"]["sequences"]) == {"T2", "T1", "T1FS"}
    pid = client.worker_pid

    # a long build, cancelled at its first progress report: the worker stops it and stays up
    cancelled, seen = [], []
    request = client.submit(
        "demo",
        {**params, "archive": str(tmp_path / "big"), "n_cases": 200, "size": "tiny"},
        on_progress=seen.append,
        on_cancelled=lambda: cancelled.append(True),
    )
    wait_for(lambda: seen, client, timeout=120)
    client.cancel(request)
    assert cancelled == [True]  # the caller is free at once
    wait_for(lambda: not client.busy, client, timeout=30)  # the worker confirmed within the grace period
    assert client.call("ping", timeout=60)["pid"] == pid and client.starts == 1


def test_uninterruptible_request_is_stopped_by_killing_the_worker_then_it_restarts(client):
    first = client.call("ping", timeout=60)["pid"]
    cancelled = []
    request = client.submit("ping", {"hold_seconds": 120}, on_cancelled=lambda: cancelled.append(True))
    time.sleep(0.5)
    client.cancel(request)
    wait_for(lambda: not client.running, client, timeout=30)  # killed after the 2 s grace
    assert cancelled == [True]
    second = client.call("ping", timeout=60)["pid"]
    assert second != first and client.starts == 2


def test_a_crashed_worker_fails_its_open_request_once_and_the_next_request_restarts_it(client):
    first = client.call("ping", timeout=60)["pid"]
    errors = []
    client.submit("ping", {"hold_seconds": 120}, on_error=errors.append)
    time.sleep(0.3)
    os.kill(first, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
    wait_for(lambda: errors, client, timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], protocol.WorkerError)
    assert "stopped" in str(errors[0]) and "\n" not in str(errors[0])
    assert client.call("ping", timeout=60)["pid"] != first and client.starts == 2


def test_the_worker_finds_the_library_without_pythonpath(tmp_path):
    """PythonSlicer (a launcher) sets PYTHONPATH itself: the worker command must not depend on it."""
    import sys

    from SimilarCaseRetrievalLib.worker.client import LIB_PARENT, worker_command, worker_environment

    env = worker_environment()
    env["PYTHONPATH"] = str(tmp_path)  # nothing useful there
    worker = WorkerClient(worker_command(sys.executable), env, log_path=tmp_path / "log")
    try:
        answer = worker.call("ping", timeout=60)
        assert answer["pid"] == worker.worker_pid
        assert answer["library"] == str(
            LIB_PARENT / "SimilarCaseRetrievalLib"
        )  # this copy, not an installed one
    finally:
        worker.close()


def test_pacs_and_annotation_requests_check_their_input_in_a_real_worker(client, tiny, tmp_path):
    archive, model = tiny
    base = {"archive": str(archive), "model_dir": str(model), "folder": str(tmp_path / "q")}
    with pytest.raises(protocol.WorkerInputError, match="PACS connection: not set"):
        client.call("pacs_search", {**base, "pacs": "", "study_uid": "1.2.3"}, timeout=60)
    with pytest.raises(protocol.WorkerInputError, match="holds a password"):
        client.call(
            "pacs_search", {**base, "pacs": "http://u:p@localhost:1/dicom-web", "study_uid": "1"}, timeout=60
        )
    with pytest.raises(protocol.WorkerInputError, match="no Study Instance UID"):
        client.call(
            "pacs_search", {**base, "pacs": "http://localhost:1/dicom-web", "study_uid": " "}, timeout=60
        )
    # a case whose files are in the archive is read from them: the (unreachable) PACS is never asked
    from SimilarCaseRetrievalLib.store import CaseStore

    with CaseStore(archive, create=False) as store:
        case_id = store.ids()[0]
    written = client.call(
        "case_images",
        {
            "archive": str(archive),
            "folder": str(tmp_path / "q"),
            "case_id": case_id,
            "pacs": "http://localhost:1/dicom-web",
            "pacs_cache": str(tmp_path / "c"),
        },
        timeout=60,
    )
    assert os.path.isfile(written["sequences"]["T2"]) and not (tmp_path / "c").exists()
    with pytest.raises(protocol.WorkerInputError, match="no diagnosis and no terms"):
        client.call(
            "annotate_confirm",
            {"archive": str(archive), "model_dir": str(model), "case_id": case_id, "label": " ", "terms": []},
            timeout=120,
        )
