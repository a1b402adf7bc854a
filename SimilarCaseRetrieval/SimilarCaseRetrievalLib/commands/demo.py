"""`similar-cases demo`: synthetic archive -> index with the shipped model -> one query -> side-by-side report."""

from __future__ import annotations

import argparse

HELP = "build the synthetic archive if needed, index it, run a query and write a side-by-side report"

DEFAULT_LABEL = "malignant"
DEFAULT_NOTES = "Postmenopausal, CA-125 raised."  # when the generated notes are empty


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archive", default=None, help="archive folder (default: ./demo-archive or $SCR_ARCHIVE)"
    )
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--out", default="demo-output", help="report folder (default: ./demo-output)")
    parser.add_argument("--cases", type=int, default=120, help="cases in the synthetic archive (120)")
    parser.add_argument("--size", default="default", help="synthetic grid: 'default' or 'tiny'")
    parser.add_argument(
        "--label", default=DEFAULT_LABEL, help=f"diagnosis of the query case ({DEFAULT_LABEL})"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the query case (7)")
    parser.add_argument("--notes", default=None, help="clinical notes of the query (default: generated ones)")
    parser.add_argument("-k", type=int, default=5, help="number of hits (5)")
    parser.add_argument("--text-weight", type=float, default=0.3, help="text share of the fused score (0.3)")
    parser.add_argument("--workers", type=int, default=2, help="processes that synthesise the archive (2)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..errors import CaseInputError
    from ..indexer import index_archive
    from ..render import write_report
    from ..resources import default_archive_dir
    from ..results import format_table
    from ..search import SearchEngine, load_encoder
    from ..store import CaseStore
    from ..synthetic import LABELS, ensure_demo_archive, make_query_case

    if args.label not in LABELS:
        raise CaseInputError("--label", f"unknown label {args.label!r}", f"use one of {', '.join(LABELS)}")
    started = time.perf_counter()
    archive = Path(args.archive) if args.archive else default_archive_dir()
    encoder = load_encoder(args.model)  # fail early if the model is missing
    print(f"[1/4] synthetic archive ({args.cases} cases) in {archive}")
    ensure_demo_archive(archive, n_cases=args.cases, size=args.size, workers=max(1, args.workers))

    print(f"[2/4] indexing with model {encoder.version}")
    store = CaseStore(archive, create=False)
    report = index_archive(store, encoder)
    if report.embedded:
        print(f"      embedded {report.speed()}")
    store.close()

    print(f"[3/4] query: a new {args.label} case (seed {args.seed})")
    study, mask, notes = make_query_case(args.seed, args.label, size=args.size)
    notes = args.notes if args.notes is not None else (notes.strip() or DEFAULT_NOTES)
    print(f"      notes: {notes}")
    engine = SearchEngine(archive, args.model, encoder=encoder)
    result = engine.search(study=study, mask=mask, text=notes, k=args.k, text_weight=args.text_weight)
    print(format_table(result))
    same = sum(h.label == args.label for h in result.hits)
    print(f"      {same} of {len(result.hits)} hits share the query's diagnosis ({args.label})")

    print(f"[4/4] side-by-side report in {args.out}")
    page = write_report(
        args.out,
        result,
        engine.store,
        query_study=study,
        query_mask=mask,
        sequences=encoder.config.sequences,
        title=f"Similar cases for a new {args.label.replace('_', ' ')} query",
    )
    print(f"report: {page.resolve()}  (montage: {(page.parent / 'montage.png').resolve()})")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0
