"""`similar-cases search --pacs P --study UID [--segment NAME] [--store-result]`: the query study, its SEG and
its clinical notes come from the PACS; the answer can go back to it as a Key Object Selection document."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .pacs import PACS_HELP

if TYPE_CHECKING:
    from ..pacs.query import PacsStudy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "PACS query (the study and its SEG are retrieved; --segment picks the segment)"
    )
    g.add_argument("--pacs", help=PACS_HELP)
    g.add_argument("--study", metavar="UID", help="Study Instance UID of the query study in the PACS")
    g.add_argument("--rules", help="sequence rules JSON (default rules: see docs/pacs.md)")
    g.add_argument(
        "--store-result",
        action="store_true",
        help="store the hits to the PACS as a Key Object Selection document",
    )


class PacsQuery:
    """A search whose query is a PACS study."""

    def __init__(self, args: argparse.Namespace):
        from ..errors import CaseInputError

        if not (args.pacs and args.study):
            raise CaseInputError(
                "--pacs/--study", "one given without the other", "give both --pacs and --study"
            )
        for other in ("image", "mask", "queries", "load_query"):
            if getattr(args, other, None):
                raise CaseInputError(
                    "--study",
                    f"given with --{other.replace('_', '-')}",
                    "use either a PACS study or local files",
                )
        self.args = args
        self.study: PacsStudy | None = None

    def read(self, engine):
        """Retrieve the study; -> (Study, mask, query text): the notes of its SR unless --text was given."""
        from ..pacs.connection import open_pacs
        from ..pacs.query import query_from_pacs
        from ..pacs.rules import SeriesRules
        from ..pacs.sync import case_id_for

        args = self.args
        rules = SeriesRules.load(args.rules) if args.rules else None
        self.pacs = open_pacs(args.pacs)
        self.study, study, mask = query_from_pacs(
            self.pacs, args.study, engine.encoder.config.sequences, segment=args.segment, rules=rules
        )
        if not args.query_id:
            args.query_id = case_id_for(args.study)
        return study, mask, args.text or self.study.notes

    def finish(self, engine, result) -> None:
        """--store-result: the KOS to the PACS."""
        from ..pacs.viewer import store_answer

        try:
            if self.args.store_result and self.study is not None:
                uid = store_answer(self.pacs, engine.store, self.study, result)
                print(f"stored the answer to {self.pacs.config.describe()} as KOS {uid}")
        finally:
            self.pacs.close()


def pacs_query(args: argparse.Namespace) -> PacsQuery | None:
    """A `PacsQuery` when --pacs or --study is given (arguments checked, nothing retrieved yet)."""
    if getattr(args, "pacs", None) or getattr(args, "study", None):
        return PacsQuery(args)
    return None
