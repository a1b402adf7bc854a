"""`similar-cases search`: the most similar archived cases to a query study + segment and/or text."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_hybrid, hybrid_from_args, pacs_search

HELP = "find the most similar cases to a query (image + segment, clinical text, or both)"


def _ids(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", required=True, help="archive folder (holds cases.sqlite and index/)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    q = parser.add_argument_group("query")
    q.add_argument("--image", help="query study: a path, or 'T2=a.nii.gz;T1=b.nii.gz;T1FS=c.nii.gz'")
    q.add_argument("--mask", help="segment mask of the query (label map, .seg.nrrd)")
    q.add_argument("--segment", help="segment name or label value inside --mask")
    q.add_argument(
        "--resample-mask",
        action="store_true",
        help="resample a mask that is not on the image's grid by physical position (default: refuse it)",
    )
    q.add_argument("--text", default="", help="clinical notes / report text of the query")
    q.add_argument("--text-weight", type=float, default=None, help="text share w of the fused score (0.3)")
    q.add_argument("-k", type=int, default=None, help="number of hits (10)")
    add_hybrid(q)
    q.add_argument(
        "--queries", help="manifest CSV of queries (ingest columns); one JSON with hits per query id"
    )
    q.add_argument(
        "--query-id", help="id of this query (for the feedback log); default: derived from the query"
    )
    f = parser.add_argument_group("filters")
    f.add_argument("--label", help="only cases with this diagnosis")
    f.add_argument("--term", action="append", default=[], help="only cases with this term (repeatable)")
    f.add_argument("--sequences", help="only cases with these sequences (comma-separated)")
    r = parser.add_argument_group("relevance feedback")
    r.add_argument("--relevant", help="case ids judged relevant (comma-separated)")
    r.add_argument("--not-relevant", help="case ids judged not relevant (comma-separated)")
    r.add_argument("--alpha", type=float, default=1.0, help="Rocchio weight of the query (1.0)")
    r.add_argument("--beta", type=float, default=0.75, help="Rocchio weight of relevant cases (0.75)")
    r.add_argument("--gamma", type=float, default=0.15, help="Rocchio weight of not-relevant cases (0.15)")
    r.add_argument("--save-query", help="save the (refined) query vectors to this .npz")
    r.add_argument("--load-query", help="search with query vectors saved by --save-query")
    o = parser.add_argument_group("output")
    o.add_argument("--json", help="write the hits as JSON here")
    o.add_argument("--report", help="write a side-by-side report (montage PNG + index.html) into this folder")
    o.add_argument(
        "--explain",
        choices=("gradcam", "occlusion"),
        help="with --report and an image query: similarity maps over the query and each hit, matched words",
    )
    o.add_argument("--draft", action="store_true", help="with --report: add a drafted O-RADS MRI report")
    o.add_argument(
        "--exact-threshold", type=int, default=5000, help="exact search below this many cases (5000)"
    )
    pacs_search.add_arguments(parser)


def _query_id(args: argparse.Namespace) -> str:
    import hashlib

    if args.query_id:
        return args.query_id
    key = "|".join(str(x) for x in (args.image, args.mask, args.segment, args.text, args.load_query))
    return "cli-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import CaseInputError
    from ..feedback import RocchioConfig
    from ..index import IndexConfig
    from ..results import format_table, load_query
    from ..search import SearchEngine

    try:
        args.text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as surrogates
        raise CaseInputError(
            "--text", "not valid UTF-8 text", "pass the notes as UTF-8 (e.g. convert them with iconv)"
        ) from None
    if args.k is not None and args.k < 1:
        raise CaseInputError("-k", f"{args.k}", "ask for at least one hit")
    if args.queries and (args.image or args.text or args.load_query):
        raise CaseInputError(
            "--queries", "given with --image/--text/--load-query", "use either a manifest or one query"
        )
    if args.load_query and (args.image or args.text):
        raise CaseInputError(
            "--load-query", "given with --image/--text", "use either a saved query or a new one"
        )
    pacs = pacs_search.pacs_query(args)  # --pacs/--study: the query study comes from the PACS
    if not (args.queries or args.image or args.text.strip() or args.load_query or pacs):
        raise CaseInputError(
            "search", "no query", "give --image and --mask, --text, --load-query or --queries"
        )
    if (args.explain or args.draft) and not args.report:
        raise CaseInputError("--explain/--draft", "given without --report", "add --report FOLDER")
    if args.mask and not args.image:
        raise CaseInputError("--mask", "given without --image", "give the query study with --image")
    if args.image and not args.mask:
        raise CaseInputError(
            "--image", "given without --mask", "give the segment with --mask (and --segment)"
        )

    engine = SearchEngine(
        args.archive,
        args.model,
        config=IndexConfig(exact_threshold=max(0, args.exact_threshold)),
        feedback=RocchioConfig(args.alpha, args.beta, args.gamma),
        hybrid=hybrid_from_args(args),
    )
    options = {
        "label": args.label,
        "terms": args.term or None,
        "sequences": [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None,
    }
    relevant, not_relevant = _ids(args.relevant), _ids(args.not_relevant)
    if args.queries:
        return _run_manifest(engine, args, options, relevant, not_relevant)

    study = mask = None
    if args.image:
        from ..study import parse_sequence_spec, read_mask, read_study

        study = read_study(parse_sequence_spec(args.image, Path.cwd()))
        mask = read_mask(args.mask, study.reference_image, args.segment, resample=args.resample_mask)
    if pacs:
        study, mask, args.text = pacs.read(engine)
    if args.load_query:
        saved = load_query(args.load_query)
        extra = {"k": args.k} if args.k else {}
        if args.text_weight is not None:
            extra["text_weight"] = args.text_weight
        result = engine.search_saved(saved, query_id=_query_id(args), **options, **extra)
    else:
        result = engine.search(
            study=study,
            mask=mask,
            text=args.text,
            k=args.k or 10,
            text_weight=0.3 if args.text_weight is None else args.text_weight,
            query_id=_query_id(args),
            **options,
        )
    if relevant or not_relevant:
        result = engine.refine(result, relevant, not_relevant)
        print(f"refined with {len(relevant)} relevant and {len(not_relevant)} not relevant case(s)")
    print(format_table(result))
    if pacs:
        pacs.finish(engine, result)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        print(f"hits written to {args.json}")
    if args.save_query:
        result.save_query(args.save_query)
        print(f"query vectors saved to {args.save_query}")
    if args.report:
        page = _write_report(engine, args, Path(args.report), result, study, mask)
        print(f"report: {page}")
    return 0


def _write_report(engine, args: argparse.Namespace, out_dir: Path, result, study, mask) -> Path:
    """The side-by-side report of one query (with maps / draft when asked)."""
    from ..render import write_report

    draft = None
    if args.draft:
        from ..explain.draft import draft_from_search

        draft = draft_from_search(engine, result, study, mask)
    return write_report(
        out_dir,
        result,
        engine.store,
        query_study=study,
        query_mask=mask,
        sequences=engine.encoder.config.sequences,
        explain=args.explain,
        encoder=engine.encoder,
        draft=draft,
    )


def _run_manifest(engine, args, options, relevant, not_relevant) -> int:
    """Every row of a queries manifest, one engine; one JSON with the ranked hits per query id."""
    import json

    from tqdm import tqdm

    from ..case_ids import inside
    from ..manifest import read_manifest, with_resample_option
    from ..results import format_table
    from ..search import read_query

    queries, row_errors = read_manifest(args.queries, queries=True)
    out = {"queries": {}, "errors": {e.case_id or f"line {e.line}": e.message for e in row_errors}}
    for case in tqdm(queries, desc="queries", unit="query", disable=len(queries) < 3):
        if args.resample_mask:
            case.mask = with_resample_option(case.mask)
        try:
            study, mask, text = read_query(case)
            result = engine.search(
                study=study,
                mask=mask,
                text=text,
                k=args.k or 10,
                text_weight=0.3 if args.text_weight is None else args.text_weight,
                query_id=case.case_id,
                **options,
            )
            if relevant or not_relevant:
                result = engine.refine(result, relevant, not_relevant, log_feedback=False)
        except ValueError as exc:  # bad query row: reported, the others still run
            out["errors"][case.case_id] = str(exc)
            continue
        out["queries"][case.case_id] = result.to_dict()
        if args.report:
            # never outside the folder named by --report
            _write_report(engine, args, inside(args.report, case.case_id), result, study, mask)
        if not args.json:
            print(f"query {case.case_id}")
            print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
        print(f"{len(out['queries'])} query result(s) written to {args.json}")
    for who, message in out["errors"].items():
        print(f"query {who} failed: {message}")
    return 1 if out["errors"] else 0
