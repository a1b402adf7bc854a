"""`similar-cases train`: train the image + text encoders on an archive or a manifest, write a model folder."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from . import add_text_quantization

HELP = "train the image CNN + text projection (3 stages) and write a model folder (safetensors + config.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--archive", metavar="DIR", help="archive folder (cases.sqlite)")
    src.add_argument("--manifest", metavar="M.csv", help="manifest CSV (paths relative to its folder)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="where to write the model folder")
    parser.add_argument(
        "--epochs",
        help="epochs: 'N' in total (split 1:2:2 over stages 0/1/2) or 'a,b,c' per stage "
        "(default training.loop.DEFAULT_EPOCHS = 60, i.e. 12,24,24)",
    )
    parser.add_argument(
        "--members",
        default="auto",
        help="networks in the ensemble, each trained with the next seed; 'auto' (default): as many as fit "
        "the time budget, at most training.ensemble.MAX_MEMBERS = 4",
    )
    parser.add_argument(
        "--budget-min",
        type=float,
        default=15.0,
        help="time budget of --members auto in minutes (a member is started when, at the mean time of "
        "those before, it ends within it; the first always runs)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine per stage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--resume", metavar="CHECKPOINT_DIR", help="continue an interrupted run from MODEL_DIR/checkpoint"
    )
    parser.add_argument(
        "--keep-checkpoint", action="store_true", help="keep MODEL_DIR/checkpoint after a successful run"
    )
    parser.add_argument("--grid", help="ROI grid X,Y,Z (default 64,64,32; 64,64,1 for 2D images)")
    parser.add_argument("--margin-mm", type=float, default=None, help="ROI margin around the segment (mm)")
    parser.add_argument("--sequences", help="comma-separated sequences (default: those every case has)")
    parser.add_argument(
        "--text-model", default="default", help="sentence-transformers name or folder ('default': MiniLM-L6)"
    )
    add_text_quantization(
        parser, "int8: quantised text model (3x faster text, about 2x faster first indexing); none: fp32"
    )
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--widths", default="16,32,64,96", help="CNN channel widths per stage")
    parser.add_argument(
        "--val-fraction",
        type=float,
        help="validation share (grouped by patient) for model selection: epoch and diagnosis-prior weight "
        "(default training.loop.DEFAULT_VAL_FRACTION = 0.15; 0 keeps the last epoch and no prior)",
    )
    parser.add_argument("--name", default="scr-ovary-mri", help="model name (first part of the version)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _ints(text: str, what: str, n: int | None = None) -> tuple[int, ...]:
    from ..errors import CaseInputError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or (n is not None and len(values) != n) or min(values) < 1:
        raise CaseInputError(
            what, f"{text!r} is not {n or 'some'} positive comma-separated integers", "e.g. 64,64,32"
        )
    return values


def run(args: argparse.Namespace) -> int:
    import torch

    from ..encoders import ModelConfig
    from ..errors import CaseInputError
    from ..roi import RoiConfig
    from ..training import load_rois
    from ..training.card import write_model_card
    from ..training.data import infer_sequences
    from ..training.ensemble import parse_members, train_ensemble
    from ..training.loop import DEFAULT_EPOCHS, DEFAULT_VAL_FRACTION

    torch.set_num_threads(max(1, args.threads))
    members = parse_members(args.members)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CaseInputError("--device cuda", "no CUDA device available", "use --device cpu")
    start = time.perf_counter()
    store = None
    if args.archive:
        from ..store import CaseStore

        store = CaseStore(args.archive, create=False, readonly=None)  # reads only
        cases = store.list_cases()
        source = f"archive {args.archive}"
    else:
        from ..manifest import read_manifest

        cases, errors = read_manifest(args.manifest)
        for error in errors:
            print(f"skipped {error}", file=sys.stderr)
        source = f"manifest {args.manifest}"
    cases = [c for c in cases if c.mask]
    if len(cases) < 4:
        raise CaseInputError(
            source, f"only {len(cases)} case(s) with a mask", "train on at least 4 segmented cases"
        )

    sequences = args.sequences.split(",") if args.sequences else infer_sequences(cases)
    if not sequences:
        raise CaseInputError(source, "no sequence shared by all cases", "pass --sequences")
    if args.grid:
        grid = _ints(args.grid, "--grid", 3)
    else:
        from ..roi import default_grid

        grid = default_grid(store.load_study(cases[0]) if store else _first_study(cases[0]))
    roi = RoiConfig(grid=grid) if args.margin_mm is None else RoiConfig(grid=grid, margin_mm=args.margin_mm)
    config = ModelConfig(
        sequences=sequences,
        roi=roi,
        embed_dim=args.embed_dim,
        text_model=args.text_model,
        text_quantization=args.text_quantization,
        widths=_ints(args.widths, "--widths"),
        name=args.name,
        training_command=_command_line(args),
    )
    if config.text_model != "default":
        from ..encoders.text import load_sentence_model, sentence_dim

        config.text_dim = sentence_dim(load_sentence_model(config.text_model))
    from ..annotation.pool import is_labelled

    n_labelled = sum(1 for c in cases if is_labelled(c))
    print(
        f"{len(cases)} case(s) ({n_labelled} labelled: diagnosis/terms heads; all: self-supervised), "
        f"sequences {sequences}, grid {list(grid)}: extracting ROIs",
        file=sys.stderr,
    )
    rois = load_rois(store, cases, config, progress=not args.quiet)

    def report(record: dict) -> None:
        maps = " ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith("map@") and v is not None)
        fit = f" ({record['fit']})" if "fit" in record else ""
        member = f"member {record['member']} " if "member" in record else ""
        print(
            f"{member}epoch {record['epoch']}{fit} stage {record['stage']} loss {record['loss']:.3f} {maps}",
            file=sys.stderr,
        )

    from pathlib import Path

    out = Path(args.out)
    encoder = train_ensemble(
        cases,
        config,
        members=members,
        budget_s=60.0 * args.budget_min,
        rois=rois,
        epochs=DEFAULT_EPOCHS if args.epochs is None else args.epochs,
        seed=args.seed,
        val_fraction=DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        progress=not args.quiet,
        checkpoint_dir=out / "checkpoint",
        resume=args.resume,
        on_epoch=report,
    )
    encoder.config.metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    encoder.config.metrics["data"] = source
    encoder.config.metrics["n_labelled"] = n_labelled
    encoder.save(out)
    write_model_card(encoder, out)
    if not args.keep_checkpoint and args.resume is None:
        import shutil

        shutil.rmtree(out / "checkpoint", ignore_errors=True)
    final = encoder.config.metrics.get("final", {})
    nets = f"{encoder.config.members} networks; member 1's " if encoder.config.members > 1 else ""
    print(f"saved {encoder.version} to {out} ({time.perf_counter() - start:.0f} s); {nets}validation {final}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The options as parsed (for config.json and the model card)."""
    parts = ["similar-cases train"]
    for key, value in vars(args).items():
        if key.startswith("_") or key in ("command", "verbose") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def _first_study(case):
    from ..study import read_study

    return read_study(dict(case.sequences))
