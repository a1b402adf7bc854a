"""The Slicer module's worker process: what keeping the engine loaded between requests saves, and how long the
GUI thread spends in `WorkerClient.poll()` (its only work while a search runs).

    PYTHONPATH=SimilarCaseRetrieval python benchmarks/bench_slicer_worker.py [--repeats 5]

Uses a tiny synthetic archive and a random-init model (built in a temporary folder); prints seconds.
Baseline in the same run: a fresh worker per search (what a process per action would cost).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def query_files(archive: Path, folder: Path) -> dict:
    """The archive's first case written as the module writes a query."""
    from SimilarCaseRetrievalLib.store import CaseStore
    from SimilarCaseRetrievalLib.worker.handlers import write_case_images

    with CaseStore(archive, create=False) as store:
        case = store.get(store.ids()[0])
        return {**write_case_images(store, case, folder, list(case.sequences)), "text": case.notes}


def timed_search(client, params) -> tuple[float, float]:
    """(seconds until the result, longest single poll() call) for one search."""
    done = {}
    start = time.perf_counter()
    client.submit(
        "search",
        params,
        on_result=lambda r: done.setdefault("r", r),
        on_error=lambda e: done.setdefault("e", e),
    )
    longest = 0.0
    while not done:
        t = time.perf_counter()
        client.poll()
        longest = max(longest, time.perf_counter() - t)
        time.sleep(0.01)  # the module polls every 100 ms; 10 ms here
    if "e" in done:
        raise done["e"]
    return time.perf_counter() - start, longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from SimilarCaseRetrievalLib.slicer_selftest import build_tiny_indexed_archive
    from SimilarCaseRetrievalLib.worker.client import WorkerClient

    folder = Path(tempfile.mkdtemp(prefix="scr-bench-worker-"))
    archive, model = build_tiny_indexed_archive(folder)
    params = {
        "archive": str(archive),
        "model_dir": str(model),
        "query": query_files(archive, folder / "q"),
        "k": 10,
    }

    client = WorkerClient(log_path=folder / "worker.log")
    start = time.perf_counter()
    client.call("ping", timeout=120)
    ready = time.perf_counter() - start
    first, _ = timed_search(client, params)
    kept = [timed_search(client, params) for _ in range(args.repeats)]
    pings = []
    for _ in range(20):
        t = time.perf_counter()
        client.call("ping", timeout=60)
        pings.append(time.perf_counter() - t)
    client.close()

    fresh = []
    for _ in range(max(1, args.repeats // 2)):
        worker = WorkerClient(log_path=folder / "worker.log")
        t = time.perf_counter()
        timed_search(worker, params)
        fresh.append(time.perf_counter() - t)
        worker.close()

    kept_s = statistics.median(s for s, _ in kept)
    print(f"worker start to first answer (ping)   {ready:7.3f} s")
    print(f"ping round trip (median of 20)        {statistics.median(pings) * 1000:7.2f} ms")
    print(f"first search (loads model + index)    {first:7.3f} s")
    print(f"search, engine kept (median of {args.repeats})     {kept_s:7.3f} s")
    print(f"search in a fresh worker (baseline)   {statistics.median(fresh):7.3f} s")
    print(f"fresh / kept                          {statistics.median(fresh) / kept_s:7.1f} x")
    print(f"longest poll() on the GUI thread      {max(p for _, p in kept) * 1000:7.2f} ms")


if __name__ == "__main__":
    main()
