"""`similar-cases ingest MANIFEST.csv --archive DIR`: validate a manifest and add its cases to the archive."""

from __future__ import annotations

import argparse
import sys
import time

HELP = "add the cases of a manifest CSV to an archive's case store (rows validated; bad rows reported)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "manifest", metavar="MANIFEST.csv", help="manifest CSV (columns: case_id, image, mask, ...)"
    )
    parser.add_argument(
        "--archive", required=True, metavar="DIR", help="archive folder (cases.sqlite is created there)"
    )
    parser.add_argument(
        "--replace", action="store_true", help="overwrite cases whose id is already in the archive"
    )
    parser.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="do not read the images and masks (faster)",
    )
    parser.add_argument(
        "--resample-mask",
        action="store_true",
        help="resample masks that are not on their image's grid by physical position (default: refuse them)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every row went in, 1 when some rows were rejected (the others went in)."""
    from pathlib import Path

    from ..errors import CaseInputError
    from ..manifest import ingest_manifest
    from ..store import CaseStore

    if not Path(args.manifest).is_file():  # before the archive is created
        raise CaseInputError(args.manifest, "manifest not found", "check the path to the manifest CSV")
    start = time.perf_counter()
    with CaseStore(args.archive) as store:
        result = ingest_manifest(
            args.manifest,
            store,
            validate=args.validate,
            replace=args.replace,
            progress=not args.quiet,
            resample_masks=args.resample_mask,
        )
        total = len(store)
    for error in result.errors:
        print(f"rejected {error}", file=sys.stderr)
    replaced = f" ({len(result.replaced)} replaced)" if result.replaced else ""
    print(
        f"ingested {len(result.added)} case(s){replaced}, rejected {len(result.errors)} row(s); "
        f"{total} case(s) in {args.archive} ({time.perf_counter() - start:.1f} s)"
    )
    if result.replaced:
        print("note: replaced cases lost their embeddings; run `similar-cases index` again")
    return 1 if result.errors else 0
