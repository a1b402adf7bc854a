"""Subcommands of `similar-cases`; see `cli.SUBCOMMANDS`."""

from __future__ import annotations

import argparse


def add_text_quantization(parser: argparse.ArgumentParser, help: str) -> None:
    """`--text-quantization int8|none` for commands that train encoders (values as in
    `encoders.text.QUANTIZATIONS`, which validates them; not imported here: it imports torch)."""
    parser.add_argument("--text-quantization", choices=("int8", "none"), default="int8", help=help)


def add_hybrid(parser: argparse.ArgumentParser) -> None:
    """`--fusion` and `--lexical-weight`: how BM25 word matching joins the embedding score of text
    (`lexical.HybridConfig`); without them, the weight chosen for the archive (lexical/calibrate.py)."""
    from ..lexical.fusion import METHODS

    parser.add_argument(
        "--fusion",
        choices=METHODS,
        default=None,
        help="text scoring: embeddings fused with BM25 by normalised scores (the default) or reciprocal "
        "ranks, or the embeddings alone (dense)",
    )
    parser.add_argument(
        "--lexical-weight",
        type=float,
        default=None,
        help="BM25 share of the text score, 0-1 (default: the one chosen on the archive's labelled cases)",
    )


def hybrid_from_args(args: argparse.Namespace):
    """The `HybridConfig` of `--fusion` / `--lexical-weight`, or None (neither given: chosen per archive).
    A bad weight -> CaseInputError."""
    from ..errors import CaseInputError
    from ..lexical.fusion import HybridConfig

    if args.fusion is None and args.lexical_weight is None:
        return None
    default = HybridConfig()
    weight = default.lexical_weight if args.lexical_weight is None else args.lexical_weight
    if not 0.0 <= weight <= 1.0:
        raise CaseInputError("--lexical-weight", f"{weight}", "use a weight between 0 and 1")
    return HybridConfig(method=args.fusion or default.method, lexical_weight=weight)
