"""`similar-cases pacs sync|export|upload`: build the archive from a PACS, and put DICOM studies into one.

The PACS (`--pacs`) is a JSON config file, a DICOMweb URL or dimse://AET@host:port; credentials come from the
environment or the config file (see docs/pacs.md), never from the command line.
"""

from __future__ import annotations

import argparse
import sys

HELP = "build/sync the archive from a PACS (DICOMweb or DIMSE); export or upload DICOM studies"
PACS_HELP = "PACS: JSON config file, DICOMweb URL, or dimse://AET@host:port (credentials: see docs/pacs.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="pacs_command", metavar="VERB", required=True)

    sync = verbs.add_parser("sync", help="add new or changed PACS studies (series + SEG + report) as cases")
    sync.add_argument("--archive", required=True, metavar="DIR", help="archive folder (created if needed)")
    sync.add_argument("--pacs", required=True, help=PACS_HELP)
    sync.add_argument("--modality", default="MR", help="only studies with this modality (MR; '' for any)")
    sync.add_argument("--date-from", help="only studies on or after this date (YYYYMMDD or YYYY-MM-DD)")
    sync.add_argument("--date-to", help="only studies on or before this date")
    sync.add_argument("--description", help="only studies whose StudyDescription matches (* wildcards)")
    sync.add_argument(
        "--accession", action="append", default=[], help="only this accession number (repeatable)"
    )
    sync.add_argument("--accession-file", help="text file of accession numbers, one per line")
    sync.add_argument("--rules", help="sequence rules JSON (default: T2, T1, T1FS, DWI by SeriesDescription)")
    sync.add_argument("--sequences", help="sequences every case needs (comma-separated; default: the rules')")
    sync.add_argument("--segment", help="segment name in the SEG (default: its first segment)")
    sync.add_argument("--reports-csv", help="CSV accession_number,report[,notes] for studies without an SR")
    sync.add_argument("--site-key-file", help="site key for patient pseudonyms (or $SIMILAR_CASES_SITE_KEY)")
    sync.add_argument("--quiet", action="store_true", help="no progress bar")

    export = verbs.add_parser("export", help="write an archive's cases as DICOM studies (MR series, SEG, SR)")
    export.add_argument("--archive", required=True, metavar="DIR", help="archive folder to export")
    export.add_argument("--out", required=True, metavar="DIR", help="folder for the DICOM files")
    export.add_argument("--cases", help="only these case ids (comma-separated)")
    export.add_argument("--no-sr", action="store_true", help="no SR (reports only in reports.csv)")

    upload = verbs.add_parser(
        "upload", help="store every .dcm file of a folder to the PACS (STOW-RS / C-STORE)"
    )
    upload.add_argument("folder", metavar="DIR")
    upload.add_argument("--pacs", required=True, help=PACS_HELP)


def run(args: argparse.Namespace) -> int:
    return {"sync": _sync, "export": _export, "upload": _upload}[args.pacs_command](args)


def _date(text: str | None) -> str | None:
    from ..errors import CaseInputError

    if not text:
        return None
    value = text.replace("-", "")
    if len(value) != 8 or not value.isdigit():
        raise CaseInputError(text, "not a date", "write YYYYMMDD or YYYY-MM-DD")
    return value


def _sync(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import CaseInputError
    from ..pacs.connection import StudyFilter, open_pacs
    from ..pacs.privacy import Pseudonymizer
    from ..pacs.query import read_reports_csv
    from ..pacs.rules import SeriesRules
    from ..pacs.sync import SyncOptions, sync_archive
    from ..store import CaseStore

    accessions = list(args.accession)
    if args.accession_file:
        try:
            lines = Path(args.accession_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseInputError(
                args.accession_file, f"cannot read ({exc})", "give a UTF-8 text file"
            ) from None
        accessions += [line.strip() for line in lines if line.strip()]
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    options = SyncOptions(
        filters=StudyFilter(
            modality=args.modality or None,
            date_from=_date(args.date_from),
            date_to=_date(args.date_to),
            description=args.description,
            accession_numbers=accessions,
        ),
        rules=SeriesRules.load(args.rules).with_required(sequences),
        segment=args.segment,
        reports=read_reports_csv(args.reports_csv) if args.reports_csv else None,
    )
    pseudonymizer = Pseudonymizer.from_site(args.site_key_file, args.archive)
    pacs = open_pacs(args.pacs)
    try:
        with CaseStore(args.archive) as store:
            report = sync_archive(pacs, store, pseudonymizer, options, progress=not args.quiet)
            total = len(store)
    finally:
        pacs.close()
    print(report.summary())
    print(f"{total} case(s) in {args.archive}")
    if report.added or report.updated:
        print("run `similar-cases index` to embed the new cases")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..pacs.export import export_cases
    from ..store import CaseStore

    ids = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
    with CaseStore(args.archive, create=False) as store:
        studies = export_cases(store, args.out, ids, with_sr=not args.no_sr)
    files = sum(len(s.files) for s in studies)
    print(f"exported {len(studies)} study(ies), {files} DICOM file(s) to {args.out} (index: studies.csv)")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from ..errors import CaseInputError
    from ..pacs.connection import open_pacs
    from ..pacs.export import read_dicom_folder

    datasets = read_dicom_folder(args.folder)
    if not datasets:
        raise CaseInputError(args.folder, "no .dcm files", "give a folder written by `pacs export`")
    pacs = open_pacs(args.pacs)
    try:
        for start in range(0, len(datasets), 64):
            pacs.store(datasets[start : start + 64])
    finally:
        pacs.close()
    print(f"stored {len(datasets)} instance(s) to {pacs.config.describe()}", file=sys.stdout)
    return 0
