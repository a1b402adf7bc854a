"""`similar-cases index`."""

from __future__ import annotations

import argparse

HELP = "index (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("similar-cases index")
