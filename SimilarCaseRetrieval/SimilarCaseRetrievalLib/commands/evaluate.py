"""`similar-cases evaluate`: retrieval quality (mAP@k, P@k, R@k, nDCG@k) of our model vs baselines."""

from __future__ import annotations

import argparse

from . import add_hybrid, add_text_quantization, hybrid_from_args

HELP = "measure retrieval quality (mAP, P@k, nDCG) of our model and baselines"

METHODS = ("ours", "handcrafted", "classifier", "tfidf", "bm25", "sentence", "random")
DATASETS = ("mmotu", "adrenal", "lidc", "iu-xray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("cases (one of)")
    src.add_argument("--index-manifest", help="manifest CSV of the indexed cases")
    src.add_argument("--query-manifest", help="manifest CSV of the query cases (with --index-manifest)")
    src.add_argument("--archive", help="archive folder (cases.sqlite); cross-validated with --cv")
    src.add_argument("--dataset", choices=DATASETS, help="a public data set loader (needs --data)")
    src.add_argument("--data", help="folder (or file) of the public data set")
    parser.add_argument("--cv", type=int, default=5, help="folds (grouped by patient) when no query set (5)")
    parser.add_argument(
        "--holdout",
        type=float,
        help="instead of --cv: hold out this fraction of patients as queries (one split)",
    )
    parser.add_argument(
        "--method",
        nargs="+",
        choices=METHODS,
        default=["handcrafted"],
        help="methods to compare (default handcrafted)",
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=("image", "text", "fused"),
        default=["fused"],
        help="what 'ours' searches with: image, text, fused (several allowed)",
    )
    parser.add_argument("--model", help="trained model folder for 'ours' (default: train one per fold)")
    parser.add_argument("-k", type=int, default=10, help="cut-off k (10)")
    parser.add_argument(
        "--feedback-rounds",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="simulated relevance-feedback rounds (residual collection)",
    )
    parser.add_argument("--text-weight", type=float, default=0.3, help="text share of the fused score (0.3)")
    add_hybrid(parser)
    parser.add_argument(
        "--epochs",
        type=int,
        help="training epochs for trained methods (default: train's, training.loop.DEFAULT_EPOCHS = 60)",
    )
    add_text_quantization(
        parser, "text model of the encoders trained per fold: int8 (default) or none (fp32)"
    )
    parser.add_argument(
        "--grid",
        help="ROI grid X,Y,Z for manifest/archive cases (default: the --model's; without one 64,64,1 for 2D "
        "images, 64,64,32 for 3D, as in train)",
    )
    parser.add_argument(
        "--query-text",
        choices=("notes", "full"),
        default="notes",
        help="query-side text: clinical notes only (default) or report + notes",
    )
    parser.add_argument("--limit", type=int, help="use only the first N cases (MMOTU) / N patients (LIDC)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% interval"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for folds, training and bootstrap")
    parser.add_argument(
        "--members",
        default="auto",
        help="ensemble size of 'ours' trained per split (as train: 'auto' = as many as fit --budget-min, at "
        "most 4)",
    )
    parser.add_argument(
        "--budget-min", type=float, default=15.0, help="time budget of --members auto per split (minutes)"
    )
    parser.add_argument("--out", help="folder for results.json, metrics.png, examples.png")
    parser.add_argument("--work", help="folder for derived files (models trained per fold)")


def _load(args):
    from ..errors import CaseInputError

    if args.dataset:
        if not args.data:
            raise CaseInputError("--dataset", "no --data folder given", "add --data /path/to/the/data set")
        from ..evaluation.datasets import load_dataset

        kwargs = {}
        if args.limit and args.dataset == "mmotu":
            kwargs["limit"] = args.limit
        if args.limit and args.dataset == "lidc":
            kwargs["max_patients"] = args.limit
        return load_dataset(args.dataset, args.data, **kwargs)
    grid = tuple(int(v) for v in args.grid.split(",")) if args.grid else None
    sequences = None
    if args.model and grid is None:
        from ..encoders import CaseEncoder

        config = CaseEncoder.load(args.model).config
        grid, sequences = tuple(config.roi.grid), list(config.sequences)
    kwargs = {"grid": grid, "sequences": sequences, "query_text": args.query_text}
    from ..evaluation.datasets.archive import load_archive_collection, load_manifest_collection

    if args.index_manifest:
        index = load_manifest_collection(args.index_manifest, **kwargs)
        kwargs["grid"] = tuple(index.meta["grid"])  # queries on the index's grid (2D or 3D decided once)
        queries = load_manifest_collection(args.query_manifest, **kwargs) if args.query_manifest else None
        return index, queries
    if args.archive:
        return load_archive_collection(args.archive, **kwargs), None
    raise CaseInputError(
        "evaluate",
        "no cases given",
        "pass --index-manifest [--query-manifest], --archive DIR, or --dataset NAME --data DIR",
    )


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    from pathlib import Path

    from ..evaluation.methods import MethodOptions
    from ..evaluation.report import feedback_table, text_table
    from ..evaluation.runner import evaluate_method
    from ..training.ensemble import parse_members
    from ..training.loop import DEFAULT_EPOCHS

    log = logging.getLogger("similar-cases.evaluate")
    index, queries = _load(args)
    if queries is not None:
        protocol = "index/query split"
    elif args.holdout:
        protocol = f"hold-out of {args.holdout:.0%} of patients as queries"
    else:
        protocol = f"{args.cv}-fold CV grouped by patient"
    log.info(
        "%s: %d index cases%s, %s",
        index.name,
        len(index),
        f", {len(queries)} queries" if queries is not None else "",
        protocol,
    )
    runs = [(m, mode) for m in args.method for mode in (args.mode if m == "ours" else [None])]
    summaries, examples, reports = {}, {}, {}
    for method, mode in runs:
        name = f"{method}-{mode}" if mode else method
        opts = MethodOptions(
            mode=mode or "image",
            model_dir=args.model,
            text_weight=args.text_weight,
            epochs=DEFAULT_EPOCHS if args.epochs is None else args.epochs,
            text_quantization=args.text_quantization,
            seed=args.seed,
            members=parse_members(args.members),
            budget_s=60.0 * args.budget_min,
            work_dir=args.work,
            hybrid=hybrid_from_args(args),
        )
        report = evaluate_method(
            method,
            index,
            queries,
            opts,
            cv=args.cv,
            k=args.k,
            feedback_rounds=args.feedback_rounds,
            holdout=args.holdout,
        )
        summaries[name] = report.summary(n_boot=args.bootstrap, seed=args.seed)
        reports[name] = report
        examples[name] = report.example
        log.info("%s done: %d queries", name, report.result.n_queries)
    from ..evaluation.runner import chance_precision, fusion_gain

    gain = fusion_gain(reports, n_boot=args.bootstrap, seed=args.seed)

    chance = chance_precision(index, queries, cv=args.cv, seed=args.seed, holdout=args.holdout)
    print(f"{index.name} ({protocol}; k={args.k}; mean [bootstrap 95% interval over queries])")
    print(f"chance level (random ranking): P@k = {chance:.3f}")
    print(text_table(summaries))
    if args.feedback_rounds:
        print(feedback_table(summaries))
    if gain is not None:
        print(
            f"ours-fused minus {gain['versus']} (paired bootstrap 95% interval over the same queries): "
            + ", ".join(
                f"{m} {g:+.3f} [{gain['gain_ci95'][m][0]:+.3f}, {gain['gain_ci95'][m][1]:+.3f}]"
                for m, g in gain["gain"].items()
                if m in gain["gain_ci95"]
            )
        )
    if args.out:
        from ..evaluation.plots import bar_chart, qualitative_figure

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "dataset": index.name,
            "protocol": protocol,
            "k": args.k,
            "seed": args.seed,
            "n_index": len(index),
            "grid": index.meta.get("grid"),
            "chance_precision": chance,
            "n_queries_set": len(queries) if queries is not None else None,
            "methods": summaries,
        }
        if gain is not None:
            payload["fusion_gain"] = gain
        (out / "results.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        bar_chart(summaries, out / "metrics.png", title=f"{index.name}: {protocol}")
        for name, ex in examples.items():
            if ex is not None:
                qualitative_figure(
                    ex["index"],
                    ex["queries"],
                    ex["ranking"],
                    out / f"examples-{name}.png",
                    seed=args.seed,
                    title=f"{index.name}, {name}: query and top 5",
                )
        print(f"wrote {out / 'results.json'}, {out / 'metrics.png'}")
    return 0
