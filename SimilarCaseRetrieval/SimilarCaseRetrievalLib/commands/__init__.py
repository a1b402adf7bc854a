"""Subcommands of `similar-cases`; see `cli.SUBCOMMANDS`."""

from __future__ import annotations

import argparse


def add_text_quantization(parser: argparse.ArgumentParser, help: str) -> None:
    """`--text-quantization int8|none` for commands that train encoders (values as in
    `encoders.text.QUANTIZATIONS`, which validates them; not imported here: it imports torch)."""
    parser.add_argument("--text-quantization", choices=("int8", "none"), default="int8", help=help)
