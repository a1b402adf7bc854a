"""`similar-cases suggest`: the archive's next unlabelled cases worth labelling, each with its reason."""

from __future__ import annotations

import argparse

HELP = "suggest the next unlabelled cases to label (uncertainty, diversity, hybrid or random)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..annotation.strategies import DUPLICATE_THRESHOLD, STRATEGIES

    parser.add_argument("--archive", required=True, help="archive folder (holds cases.sqlite)")
    parser.add_argument("-n", type=int, default=20, help="how many cases to suggest (20)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="hybrid", help="selection strategy (hybrid)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument(
        "--duplicate-threshold",
        type=float,
        default=DUPLICATE_THRESHOLD,
        help=f"cosine at or above which a case is a near-duplicate of a labelled one ({DUPLICATE_THRESHOLD})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from ..annotation import suggest_cases
    from ..search import load_encoder
    from ..store import CaseStore

    if args.n < 1:
        raise ValueError("-n must be at least 1")
    store = CaseStore(args.archive, create=False)
    encoder = load_encoder(args.model)
    report = suggest_cases(
        store, encoder, args.n, args.strategy, duplicate_threshold=args.duplicate_threshold, seed=args.seed
    )
    if args.json:
        out = {
            "model_version": report.model_version,
            "strategy": args.strategy,
            "labelled": report.labelled,
            "candidates": report.candidates,
            "without_segment": report.without_segment,
            "failed": report.failed,
            "suggestions": [s.to_dict() for s in report.suggestions],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{report.labelled} labelled case(s), {report.candidates} unlabelled with a segment, "
        f"{report.without_segment} unlabelled without a segment; model {report.model_version}"
    )
    if not report.suggestions:
        print("nothing to suggest: no unlabelled case with a segment")
    for s in report.suggestions:
        flag = f"  [near-duplicate of {s.duplicate_of}]" if s.duplicate_of else ""
        print(f"{s.rank:3d}. {s.case_id}  {s.reason}{flag}")
    for case_id, reason in list(report.failed.items())[:20]:
        print(f"not read: {case_id}: {reason}")
    return 0
