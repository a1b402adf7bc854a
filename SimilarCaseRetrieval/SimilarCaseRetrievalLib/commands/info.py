"""`similar-cases info --archive DIR`: what an archive holds."""

from __future__ import annotations

import argparse
import json

HELP = "summarise an archive: cases, labels, sequences, terms, embedded model versions, patients"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", required=True, metavar="DIR", help="archive folder holding cases.sqlite")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--top",
        type=int,
        default=15,
        metavar="N",
        help="show the N most frequent labels and terms (default 15)",
    )


def run(args: argparse.Namespace) -> int:
    from ..store import CaseStore

    with CaseStore(args.archive, create=False, readonly=None) as store:
        summary = store.summary()
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    print(f"archive      {summary['archive']}")
    print(
        f"cases        {summary['cases']} ({summary['with_mask']} with a mask, {summary['with_text']} with text)"
    )
    print(f"patients     {summary['patients']}")
    print(f"labels       {_top(summary['labels'], args.top)}")
    print(f"sequences    {_counts(summary['sequences'])}")
    print(f"terms        {_top(summary['terms'], args.top)}")
    versions = summary["model_versions"]
    print(
        f"models       {_counts(versions, 'embedded') if versions else 'none embedded (run similar-cases index)'}"
    )
    print(f"feedback     {summary['feedback_events']} event(s)")
    return 0


def _counts(counts: dict, unit: str = "") -> str:
    if not counts:
        return "-"
    suffix = f" {unit}" if unit else ""
    return ", ".join(f"{k}: {v}{suffix}" for k, v in counts.items())


def _top(counts: dict, n: int) -> str:
    shown = dict(list(counts.items())[:n])
    more = f" (+{len(counts) - len(shown)} more)" if len(counts) > len(shown) else ""
    return _counts(shown) + more
