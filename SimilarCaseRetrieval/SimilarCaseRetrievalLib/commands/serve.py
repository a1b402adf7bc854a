"""`similar-cases serve`: the worker the Slicer module talks to (JSON lines on stdin/stdout)."""

from __future__ import annotations

import argparse

HELP = "serve search requests as JSON lines on stdin/stdout (the Slicer module's worker process)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Protocol: SimilarCaseRetrievalLib/worker/protocol.py; the worker exits when stdin closes."
    )


def run(args: argparse.Namespace) -> int:
    from ..worker.server import main

    return main()
