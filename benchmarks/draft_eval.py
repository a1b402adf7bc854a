"""Drafted reports on the synthetic archive, cross-validated by patient: O-RADS score, terms, diagnosis.

    nice -n 10 python benchmarks/draft_eval.py WORK/draft-archive [--cases 180] [--size tiny] [--grid 32,32,8]
        [--folds 3] [--epochs 12] [--json out.json]
    python benchmarks/draft_eval.py WORK/draft-archive --json out.json --print-json   # the table again

Makes the synthetic archive in the folder when it has no cases.sqlite yet. See docs/explain.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def print_table(s: dict, k: int) -> None:
    """The summary of `evaluate_drafts` as a table."""
    print(f"{s['queries']} queries, k = {k}")
    print(f"{'O-RADS MRI score':<44} {'accuracy':>9} {'w. kappa':>9}")
    for key, name in (
        ("orads_draft", "draft: rules on neighbour-voted findings"),
        ("orads_head_findings", "rules on the term head's findings"),
        ("orads_term_head", "term head's own orads:* argmax"),
        ("orads_rules_on_true_findings", "rule table on the true findings"),
    ):
        print(f"{name:<44} {s[key]['accuracy']:>9.3f} {s[key]['weighted_kappa']:>9.3f}")
    for key, name in (("terms", "draft: neighbour vote"), ("terms_head", "term head")):
        t = s[key]
        print(
            f"terms ({name}): micro-F1 {t['micro_f1']:.3f}, macro-F1 {t['macro_f1']:.3f} (informative terms)"
        )
    print(f"{'diagnosis':<44} {'accuracy':>9} {'macro-F1':>9}")
    for key, name in (
        ("draft_diagnosis", "implied by the draft"),
        ("head_draft_diagnosis", "implied by a term-head draft"),
        ("knn_diagnosis", f"k-NN vote (k = {k})"),
        ("classifier_diagnosis", "classifier baseline"),
    ):
        print(f"{name:<44} {s['diagnosis'][key]['accuracy']:>9.3f} {s['diagnosis'][key]['macro_f1']:>9.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("archive")
    p.add_argument("--cases", type=int, default=180)
    p.add_argument("--size", default="tiny")
    p.add_argument("--grid", default="32,32,8")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--epochs", default="12")
    p.add_argument("--classifier-epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--print-json", action="store_true", help="only print the table of a saved --json")
    args = p.parse_args()
    if args.print_json:
        print_table(json.loads(Path(args.json).read_text(encoding="utf-8"))["summary"], args.k)
        return

    import torch
    from SimilarCaseRetrievalLib.evaluation.datasets.archive import load_archive_collection
    from SimilarCaseRetrievalLib.explain.draft_eval import DraftEvalOptions, evaluate_drafts
    from SimilarCaseRetrievalLib.synthetic import make_archive

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    archive = Path(args.archive)
    if not (archive / "cases.sqlite").is_file():
        make_archive(archive, n_cases=args.cases, seed=args.seed, size=args.size, progress=False)
    grid = tuple(int(v) for v in args.grid.split(","))
    collection = load_archive_collection(archive, grid=grid, progress=False)
    epochs = int(args.epochs) if args.epochs.isdigit() else args.epochs
    opts = DraftEvalOptions(args.folds, args.k, epochs, args.classifier_epochs, seed=args.seed)
    out = evaluate_drafts(collection, opts)
    print(f"{len(collection)} cases, {args.folds}-fold CV by patient, grid {grid}, epochs {args.epochs}")
    print_table(out["summary"], args.k)
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
