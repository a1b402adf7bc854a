"""`similar-cases demo`."""

from __future__ import annotations

import argparse

HELP = "demo (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("similar-cases demo")
