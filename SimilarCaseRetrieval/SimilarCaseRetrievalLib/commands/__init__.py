"""Subcommands of `similar-cases`; see `cli.SUBCOMMANDS`."""

from __future__ import annotations

import argparse


def add_text_quantization(parser: argparse.ArgumentParser, help: str) -> None:
    """`--text-quantization int8|none` for commands that train encoders (values as in
    `encoders.text.QUANTIZATIONS`, which validates them; not imported here: it imports torch)."""
    parser.add_argument("--text-quantization", choices=("int8", "none"), default="int8", help=help)


def add_hybrid(parser: argparse.ArgumentParser) -> None:
    """`--fusion` and `--lexical-weight`: how BM25 word matching joins the embedding score of text
    (`lexical.HybridConfig`; defaults are the product's)."""
    from ..lexical.fusion import METHODS, HybridConfig

    default = HybridConfig()
    parser.add_argument(
        "--fusion",
        choices=METHODS,
        default=default.method,
        help=f"text scoring: embeddings fused with BM25 by normalised scores or reciprocal ranks, or the "
        f"embeddings alone (dense) ({default.method})",
    )
    parser.add_argument(
        "--lexical-weight",
        type=float,
        default=default.lexical_weight,
        help=f"BM25 share of the text score, 0-1 ({default.lexical_weight})",
    )


def hybrid_from_args(args: argparse.Namespace):
    """The `HybridConfig` of `--fusion` / `--lexical-weight` (a bad weight -> CaseInputError)."""
    from ..errors import CaseInputError
    from ..lexical.fusion import HybridConfig

    if not 0.0 <= args.lexical_weight <= 1.0:
        raise CaseInputError("--lexical-weight", f"{args.lexical_weight}", "use a weight between 0 and 1")
    return HybridConfig(method=args.fusion, lexical_weight=args.lexical_weight)
