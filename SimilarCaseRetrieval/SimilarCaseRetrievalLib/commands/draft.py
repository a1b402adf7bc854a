"""`similar-cases draft`: a drafted structured report (O-RADS MRI lexicon) for a query, from similar cases."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "draft a structured O-RADS MRI report for a query from its predicted terms and similar cases"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", required=True, help="archive folder (holds cases.sqlite and index/)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--image", help="query study: a path, or 'T2=a.nii.gz;T1=b.nii.gz;T1FS=c.nii.gz'")
    parser.add_argument("--mask", help="segment mask of the query (label map, .seg.nrrd)")
    parser.add_argument("--segment", help="segment name or label value inside --mask")
    parser.add_argument("--text", default="", help="clinical notes of the query")
    parser.add_argument("--text-weight", type=float, default=0.3, help="text share of the fused score (0.3)")
    parser.add_argument("-k", type=int, default=10, help="number of similar cases to draft from (10)")
    parser.add_argument(
        "--curve",
        choices=("low", "intermediate", "high"),
        help="DCE time-intensity curve of the solid tissue, if read (the lexicon has none; default: unknown)",
    )
    parser.add_argument(
        "--findings",
        choices=("neighbours", "head"),
        default="neighbours",
        help="findings voted by the similar cases (default) or read from the model's term head",
    )
    parser.add_argument("--out", help="write the draft as markdown here")
    parser.add_argument("--json", help="write the draft as JSON here")


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import CaseInputError
    from ..explain.draft import draft_from_search
    from ..search import SearchEngine

    if args.k < 1:
        raise CaseInputError("-k", f"{args.k}", "draft from at least one similar case")
    if bool(args.image) != bool(args.mask):
        raise CaseInputError("--image/--mask", "only one given", "give both the study and its segment mask")
    if not (args.image or args.text.strip()):
        raise CaseInputError("draft", "no query", "give --image and --mask, or --text")
    study = mask = None
    if args.image:
        from ..study import parse_sequence_spec, read_mask, read_study

        study = read_study(parse_sequence_spec(args.image, Path.cwd()))
        mask = read_mask(args.mask, study.reference_image, args.segment)
    engine = SearchEngine(args.archive, args.model)
    result = engine.search(
        study=study, mask=mask, text=args.text, k=args.k, text_weight=args.text_weight, query_id="draft"
    )
    findings_from = "term head" if args.findings == "head" else "neighbours"
    draft = draft_from_search(engine, result, study, mask, curve=args.curve, findings_from=findings_from)
    text = draft.to_markdown()
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"draft written to {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(draft.to_dict(), indent=2), encoding="utf-8")
        print(f"draft JSON written to {args.json}")
    return 0
