"""`similar-cases`: the command-line entry point. Each subcommand lives in `commands/<name>.py`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__

# Order shown in --help. Each module defines HELP, add_arguments(parser) and run(args) -> int,
# and imports heavy dependencies (torch, SimpleITK...) only inside run().
SUBCOMMANDS = (
    "demo",
    "ingest",
    "train",
    "index",
    "search",
    "evaluate",
    "info",
    "draft",
    "suggest",
    "pacs",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="similar-cases",
        description="Find similar past cases from a segmented study and clinical notes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except ValueError as exc:  # CaseInputError and other bad input: one line, no traceback
        print(f"similar-cases {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"similar-cases {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
