"""PACS sync throughput (studies/min) against a local Orthanc, next to a plain file-based ingest of the same cases.

Usage: python benchmarks/bench_pacs.py [--cases 24] [--size small] [--out /tmp/bench_pacs]
Needs Orthanc + its DICOMweb plugin (Debian: orthanc, orthanc-dicomweb); it is started on free localhost ports.
The same synthetic cases are (1) ingested from their NIfTI files with validation (every image and mask read),
(2) exported to DICOM, uploaded, and synced over DICOMweb, DIMSE C-GET and DIMSE C-MOVE (each into a new archive).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

# The Orthanc launcher is the tests' (Testing/Python/pacs_server.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "Python"))


def main(argv: list[str] | None = None) -> int:
    from pacs_server import CLIENT_AET, Orthanc, find_orthanc
    from SimilarCaseRetrievalLib.manifest import ingest_manifest
    from SimilarCaseRetrievalLib.pacs.connection import PacsConfig, open_pacs
    from SimilarCaseRetrievalLib.pacs.export import export_cases
    from SimilarCaseRetrievalLib.pacs.privacy import Pseudonymizer
    from SimilarCaseRetrievalLib.pacs.sync import sync_archive
    from SimilarCaseRetrievalLib.store import CaseStore
    from SimilarCaseRetrievalLib.synthetic import make_archive

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--size", default="small", help="synthetic grid: tiny, small or default")
    parser.add_argument("--out", default="/tmp/bench_pacs")
    args = parser.parse_args(argv)
    if find_orthanc() is None:
        print("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")
        return 1
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    files = make_archive(
        out / "files", n_cases=args.cases, seed=0, size=args.size, ingest=False, progress=False
    )

    start = time.perf_counter()
    with CaseStore(out / "ingested") as store:
        result = ingest_manifest(files / "manifest.csv", store, validate=True, progress=False)
    ingest_s = time.perf_counter() - start
    assert not result.errors, result.errors[0]

    with CaseStore(files) as store:  # a store over the files, only to export them
        ingest_manifest(files / "manifest.csv", store, validate=False, progress=False)
        start = time.perf_counter()
        studies = export_cases(store, out / "dicom")
        export_s = time.perf_counter() - start
    instances = sum(len(s.files) for s in studies)
    server = Orthanc(out / "orthanc", auth=False)
    try:
        start = time.perf_counter()
        server.upload_folder(out / "dicom")
        upload_s = time.perf_counter() - start
        transports = {
            "DICOMweb (QIDO/WADO-RS)": PacsConfig(url=server.url),
            "DIMSE C-FIND + C-GET": PacsConfig(aet=server.aet, host="127.0.0.1", port=server.dicom_port),
            "DIMSE C-FIND + C-MOVE": PacsConfig(
                aet=server.aet,
                host="127.0.0.1",
                port=server.dicom_port,
                calling_aet=CLIENT_AET,
                retrieve="move",
                move_port=server.move_port,
            ),
        }
        keys = Pseudonymizer(b"benchmark-site-key-0123456789")
        rows = []
        for name, config in transports.items():
            with CaseStore(out / f"synced-{len(rows)}") as store:
                report = sync_archive(open_pacs(config), store, keys, progress=False)
            assert len(report.added) == args.cases and not report.skipped, report.summary()
            rows.append((name, report.seconds))
    finally:
        server.stop()

    per_min = lambda seconds: 60.0 * args.cases / seconds  # noqa: E731
    print(f"{args.cases} studies ({args.size} grid, {instances} DICOM instances); Orthanc on localhost")
    print(f"  DICOM export {export_s:.1f} s, upload (REST) {upload_s:.1f} s")
    print(
        f"  {'file-based ingest (validated)':32s} {ingest_s:7.1f} s  {per_min(ingest_s):8.0f} studies/min  1.00x"
    )
    for name, seconds in rows:
        print(
            f"  {'sync ' + name:32s} {seconds:7.1f} s  {per_min(seconds):8.0f} studies/min  {ingest_s / seconds:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
