"""`similar-cases index`: embed every case of an archive and build its nearest-neighbour index."""

from __future__ import annotations

import argparse

HELP = "embed the archive's cases (image, text, fused) and build the search index"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--archive", required=True, help="archive folder (holds cases.sqlite)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--chunk-size", type=int, default=64, help="cases per committed chunk (64)")
    parser.add_argument("--batch-size", type=int, default=16, help="ROIs per encoder batch (16)")
    parser.add_argument(
        "--exact-threshold", type=int, default=5000, help="below this many cases search is exact (5000)"
    )
    parser.add_argument(
        "--reembed", action="store_true", help="embed every case again, even if already embedded"
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the index files from the stored embeddings"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per encoder (1: fastest on a small shared CPU)"
    )
    parser.add_argument(
        "--readers", type=int, default=2, help="reader threads (studies + ROIs) beside the encoders (2)"
    )
    parser.add_argument(
        "--no-text-cache",
        action="store_true",
        help="do not reuse cached sentence embeddings (index/sentences.sqlite)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import shutil

    from ..encoders.text import CACHE_NAME
    from ..index import IndexConfig
    from ..indexer import index_archive, index_dir
    from ..search import load_encoder
    from ..store import CaseStore

    if args.chunk_size < 1 or args.batch_size < 1:
        raise ValueError("--chunk-size and --batch-size must be at least 1")
    store = CaseStore(args.archive, create=False)
    encoder = load_encoder(args.model)
    config = IndexConfig(exact_threshold=max(0, args.exact_threshold))
    if args.rebuild and index_dir(store).is_dir():  # graphs and sidecar go; the sentence cache stays
        for path in index_dir(store).iterdir():
            if path.name.startswith(CACHE_NAME):
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    report = index_archive(
        store,
        encoder,
        config=config,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        progress=not args.quiet,
        reembed=args.reembed,
        threads=max(1, args.threads),
        readers=max(1, args.readers),
        text_cache=not args.no_text_cache,
    )
    if report.indexed == 0:
        print(f"no case could be embedded with model {report.model_version}; the index was not built:")
        for case_id, reason in list(report.failed.items())[:20]:
            print(f"  {case_id}: {reason}")
        if len(report.failed) > 20:
            print(f"  ... and {len(report.failed) - 20} more")
        return 1
    mode = "exact" if report.indexed < config.exact_threshold else "hnswlib"
    print(f"embedded {report.speed()} with model {report.model_version}")
    print(f"index: {report.indexed} of {report.total} case(s), {mode} search, at {index_dir(store)}")
    if report.failed:
        print(f"{len(report.failed)} case(s) not embedded (fix them and run index again):")
        for case_id, reason in list(report.failed.items())[:20]:
            print(f"  {case_id}: {reason}")
        return 1
    return 0
