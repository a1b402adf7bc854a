"""Active-learning simulation: how many labelled cases does retrieval need, and do the `similar-cases suggest`
strategies get there with fewer labels than random picks?

For each data set (MMOTU ultrasound, the synthetic ovarian-MRI archive):
1. a fixed held-out split (30 %, grouped by patient) is set aside; the rest is the pool an annotator labels;
2. the image CNN is trained ONCE, self-supervised (stage 0, NT-Xent; no label seen) on the pool images, and
   frozen: its pooled features are the cases' representation for every round (the cheap stand-in for
   retraining the whole model each round, which a 2-core shared CPU cannot afford);
3. per seed, 5 % of the pool is labelled at random; then, per round, a projection (MLP -> 64-d embedding, the
   search space) and the diagnosis / term heads are trained on the labelled cases only (supervised
   contrastive with term weighting + cross-entropy + term BCE, the losses of `training/losses.py`, full batch,
   fixed schedule), mAP@10 (relevance = same diagnosis) is measured on the held-out split (queries and gallery,
   leave-one-out), and 5 % more of the pool is picked by the strategy with `annotation.strategies.select`
   (the function `similar-cases suggest` uses) on that round's embeddings and head probabilities;
4. up to 100 % of the pool; mean and 95 % t-interval over seeds; curves in a PNG.

Usage (the exact commands behind the numbers are in docs/annotation.md):
    nice -n 10 python benchmarks/sim_active_learning.py --mmotu /work/shared/data/mmotu-otu2d-train \
        --synthetic SYNTHETIC_ARCHIVE --seeds 5 --out OUT --figure docs/figures/annotation_learning_curves.png
(SYNTHETIC_ARCHIVE: ``make_archive(folder, n_cases=300, seed=0, size='small')``; the data sets can also run in
separate processes, each with its own --out, and the figure be drawn afterwards with --plot-from.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STEP = 0.05  # fraction of the pool labelled at the start and added per round
EMBED_DIM = 64


@dataclass
class Prepared:
    """One data set, ready for the rounds: frozen features of pool and held-out cases, targets, names."""

    name: str
    pool_x: np.ndarray
    test_x: np.ndarray
    pool_y: np.ndarray
    test_y: np.ndarray
    pool_t: np.ndarray  # (N, T) multi-hot terms (T may be 0)
    labels: list[str]
    terms: list[str]
    seconds: float
    trunk_map: float  # mAP@10 of the frozen self-supervised features alone (no label used)


def grouped_split(groups: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    unique = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    held = set(unique[: round(fraction * len(unique))])
    is_test = np.array([g in held for g in groups])
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_collection(name: str, path: str, args):
    if name == "MMOTU":
        from SimilarCaseRetrievalLib.evaluation.datasets.mmotu import load_mmotu

        return load_mmotu(path, grid=64, limit=args.limit, progress=args.progress)
    from SimilarCaseRetrievalLib.evaluation.datasets.archive import load_archive_collection

    return load_archive_collection(path, grid=(32, 32, 16), progress=args.progress)


def frozen_features(name: str, path: str, args) -> Prepared:
    """Load, split, train the self-supervised trunk on the pool, and extract frozen features."""
    import torch
    from SimilarCaseRetrievalLib.encoders import ModelConfig
    from SimilarCaseRetrievalLib.roi import RoiConfig
    from SimilarCaseRetrievalLib.training import TrainingData, map_at_k, train_model

    start = time.perf_counter()
    coll = load_collection(name, path, args)
    pool, test = grouped_split(coll.groups, args.test_fraction, 0)
    c, z, y, x = coll.rois.shape[1:]
    seqs = list(coll.meta.get("sequences") or ["image"])
    config = ModelConfig(
        sequences=seqs, roi=RoiConfig(grid=(x, y, z)), name=f"sim-{name}", widths=args.widths
    )
    hidden = TrainingData(  # labels hidden: the trunk never sees a diagnosis
        ids=[coll.ids[i] for i in pool],
        rois=coll.rois[pool],
        labels=[None] * len(pool),
        terms=[[] for _ in pool],
        groups=[coll.groups[i] for i in pool],
        texts=[""] * len(pool),
    )
    encoder = train_model(
        hidden, config, epochs=(args.trunk_epochs, 0, 0), seed=0, progress=args.progress, batch_size=64
    )
    net = encoder.net.image.eval()

    def feats(rois: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(rois), 64):
                out.append(net.features(torch.from_numpy(rois[s : s + 64])).numpy())
        return np.concatenate(out).astype(np.float32)

    fx = feats(coll.rois)
    mean, std = fx[pool].mean(axis=0), fx[pool].std(axis=0) + 1e-6
    fx = (fx - mean) / std
    labels = sorted(set(coll.labels))
    y_all = np.array([labels.index(lab) for lab in coll.labels])
    terms = sorted({t for ts in coll.terms for t in ts})
    t_all = np.zeros((len(coll), len(terms)), np.float32)
    for i, ts in enumerate(coll.terms):
        for t in ts:
            t_all[i, terms.index(t)] = 1.0
    test_ids = [coll.ids[i] for i in test]
    test_labels = [coll.labels[i] for i in test]
    trunk_map = map_at_k(
        _unit(fx[test]),
        test_labels,
        _unit(fx[test]),
        test_labels,
        k=10,
        query_ids=test_ids,
        gallery_ids=test_ids,
    )
    return Prepared(
        name=name,
        pool_x=fx[pool],
        test_x=fx[test],
        pool_y=y_all[pool],
        test_y=y_all[test],
        pool_t=t_all[pool],
        labels=labels,
        terms=terms,
        seconds=time.perf_counter() - start,
        trunk_map=float(trunk_map),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Heads:
    """Projection (the retrieval embedding) and diagnosis / term heads on frozen features."""

    def __init__(self, n_features: int, n_labels: int, n_terms: int, seed: int):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.proj = nn.Sequential(
            nn.Dropout(0.2), nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, EMBED_DIM)
        )
        self.label = nn.Linear(n_features, n_labels)
        self.term = nn.Linear(n_features, n_terms) if n_terms else None

    def modules(self):
        return [m for m in (self.proj, self.label, self.term) if m is not None]

    def fit(self, x: np.ndarray, y: np.ndarray, t: np.ndarray, steps: int, lr: float) -> None:
        import torch
        from SimilarCaseRetrievalLib.training.losses import supervised_contrastive
        from torch.nn import functional as F

        params = [p for m in self.modules() for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-3)
        xt, yt, tt = torch.from_numpy(x), torch.from_numpy(y).long(), torch.from_numpy(t)
        for m in self.modules():
            m.train()
        for _ in range(steps):
            z = F.normalize(self.proj(xt), dim=1)
            loss = supervised_contrastive(z, yt, 0.1, tt if self.term is not None else None)
            loss = loss + F.cross_entropy(self.label(F.dropout(xt, 0.2)), yt)
            if self.term is not None:
                loss = loss + F.binary_cross_entropy_with_logits(self.term(F.dropout(xt, 0.2)), tt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for m in self.modules():
            m.eval()

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(unit embeddings, diagnosis softmax, term sigmoid or None)."""
        import torch

        with torch.inference_mode():
            xt = torch.from_numpy(x)
            emb = torch.nn.functional.normalize(self.proj(xt), dim=1).numpy()
            lab = torch.softmax(self.label(xt), dim=1).numpy()
            term = torch.sigmoid(self.term(xt)).numpy() if self.term is not None else None
        return emb, lab, term


def pool_fractions(n: int) -> list[float]:
    """The labelled share of a pool of ``n`` after each round (ceil(STEP n) cases per round, up to all)."""
    step = math.ceil(STEP * n)
    return [min(n, step * (r + 1)) / n for r in range(math.ceil(n / step))]


def run_curve(data: Prepared, strategy: str, seed: int, args) -> list[float]:
    """mAP@10 on the held-out split after each round (labelled shares: `pool_fractions`)."""
    from SimilarCaseRetrievalLib.annotation.strategies import select
    from SimilarCaseRetrievalLib.training import map_at_k

    n = len(data.pool_x)
    step = math.ceil(STEP * n)
    rng = np.random.default_rng(1000 + seed)
    labelled = list(rng.choice(n, size=step, replace=False))  # the same start for every strategy of a seed
    test_ids = [str(i) for i in range(len(data.test_x))]
    test_labels = [data.labels[i] for i in data.test_y]
    scores = []
    for rnd in range(len(pool_fractions(n))):
        heads = Heads(data.pool_x.shape[1], len(data.labels), len(data.terms), seed)
        idx = np.array(sorted(labelled))
        heads.fit(data.pool_x[idx], data.pool_y[idx], data.pool_t[idx], args.steps, args.lr)
        emb_test, _, _ = heads.predict(data.test_x)
        scores.append(
            map_at_k(
                emb_test, test_labels, emb_test, test_labels, k=10, query_ids=test_ids, gallery_ids=test_ids
            )
        )
        rest = np.setdiff1d(np.arange(n), idx)
        if len(rest) == 0:
            break
        emb, lab, term = heads.predict(data.pool_x)
        picks = select(
            strategy,
            min(step, len(rest)),
            emb[rest],
            emb[idx],
            label_probs=lab[rest],
            term_probs=None if term is None else term[rest],
            labels=data.labels,
            terms=data.terms,
            seed=seed * 1000 + rnd,
        )
        labelled += [int(rest[p.index]) for p in picks]
    return scores


def summarise(curves: dict[str, np.ndarray], fractions: list[float]) -> dict:
    """Mean and 95 % t-interval per round; labels needed to reach random's final mean."""
    from scipy.stats import t as student

    out: dict = {"strategies": {}}
    final = float(curves["random"][:, -1].mean())
    n_seeds = curves["random"].shape[0]
    half = float(student.ppf(0.975, n_seeds - 1) * curves["random"][:, -1].std(ddof=1) / math.sqrt(n_seeds))
    out["random_final"] = round(final, 4)
    out["random_final_interval"] = [round(final - half, 4), round(final + half, 4)]
    for name, c in curves.items():
        mean = c.mean(axis=0)
        sd = c.std(axis=0, ddof=1) if len(c) > 1 else np.zeros_like(mean)
        h = student.ppf(0.975, max(1, len(c) - 1)) * sd / math.sqrt(len(c))
        reach = next((round(f, 4) for f, m in zip(fractions, mean, strict=True) if m >= final), None)
        reach_ci = next(
            (round(f, 4) for f, m in zip(fractions, mean, strict=True) if m >= final - half), None
        )
        out["strategies"][name] = {
            "fractions": [round(f, 4) for f in fractions],
            "mean": [round(float(v), 4) for v in mean],
            "low": [round(float(v), 4) for v in mean - h],
            "high": [round(float(v), 4) for v in mean + h],
            "reaches_random_final_at": reach,
            "reaches_random_final_interval_at": reach_ci,
        }
    return out


def paired_gain(curves: dict[str, list[list[float]]], until: float, fractions: list[float]) -> dict:
    """Per strategy: mean over the rounds with a labelled share <= ``until`` of (strategy - random) mAP@10,
    paired by seed (same starting labels), with its 95 % t-interval over seeds."""
    from scipy.stats import t as student

    rounds = [i for i, f in enumerate(fractions) if f <= until + 1e-9]
    base = np.asarray(curves["random"])[:, rounds]
    out = {}
    for name, c in curves.items():
        if name == "random":
            continue
        diff = (np.asarray(c)[:, rounds] - base).mean(axis=1)
        half = (
            student.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
            if len(diff) > 1
            else 0
        )
        out[name] = [
            round(float(diff.mean()), 4),
            round(float(diff.mean() - half), 4),
            round(float(diff.mean() + half), 4),
        ]
    return out


def print_gains(name: str, res: dict) -> None:
    fractions = res["summary"]["strategies"]["random"]["fractions"]
    for until in (0.5, 1.0):
        gains = paired_gain(res["curves"], until, fractions)
        text = ", ".join(f"{s} {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}]" for s, g in gains.items())
        print(
            f"{name}: mean mAP@10 gain over random, paired by seed, rounds up to {until:.0%} labelled: {text}"
        )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False)
    colours = {"random": "0.35", "uncertainty": "tab:red", "diversity": "tab:blue", "hybrid": "tab:green"}
    for ax, name in zip(axes[0], names, strict=True):
        res = results[name]
        for strategy, s in res["summary"]["strategies"].items():
            f = np.array(s["fractions"]) * 100
            ax.plot(f, s["mean"], label=strategy, color=colours.get(strategy), lw=1.8)
            ax.fill_between(f, s["low"], s["high"], color=colours.get(strategy), alpha=0.15)
        ax.axhline(res["summary"]["random_final"], color="0.35", ls=":", lw=1)
        ax.axhline(res["trunk_map"], color="0.6", ls="--", lw=1, label="frozen features, no labels")
        ax.set_title(f"{name}: pool {res['pool']}, held-out {res['test']}, {res['seeds']} seeds")
        ax.set_xlabel("labelled share of the pool (%)")
        ax.set_ylabel("held-out mAP@10 (same diagnosis)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mmotu", help="MMOTU OTU_2D folder (labels.csv)")
    p.add_argument("--synthetic", help="synthetic archive folder (cases.sqlite)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--strategies", nargs="+", default=["random", "uncertainty", "diversity", "hybrid"])
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--trunk-epochs", type=int, default=15, help="self-supervised epochs of the frozen trunk")
    p.add_argument("--widths", default="16,32,64,96", help="CNN channel widths")
    p.add_argument("--steps", type=int, default=150, help="full-batch steps of the heads per round")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--limit", type=int, default=None, help="use only the first N MMOTU images (quick runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/sim-active-learning")
    p.add_argument("--figure", default=None, help="PNG of the learning curves")
    p.add_argument("--progress", action="store_true")
    p.add_argument(
        "--plot-from",
        nargs="+",
        metavar="RESULTS_JSON",
        help="only draw --figure from earlier runs' results.json",
    )
    args = p.parse_args(argv)
    if args.plot_from:
        if not args.figure:
            p.error("--plot-from needs --figure")
        merged: dict = {}
        for path in args.plot_from:
            merged.update(json.loads(Path(path).read_text(encoding="utf-8"))["results"])
        for name, res in merged.items():
            print_gains(name, res)
        plot(merged, Path(args.figure))
        print(f"figure: {args.figure}")
        return 0
    args.widths = tuple(int(w) for w in args.widths.split(","))
    if "random" not in args.strategies:
        p.error("--strategies must include random (the baseline)")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = [(n, s) for n, s in (("MMOTU", args.mmotu), ("synthetic", args.synthetic)) if s]
    if not sets:
        p.error("give --mmotu and/or --synthetic")
    results: dict = {}
    for name, path in sets:
        data = frozen_features(name, path, args)
        print(
            f"{name}: pool {len(data.pool_x)}, held-out {len(data.test_x)}, {len(data.labels)} diagnoses, "
            f"{len(data.terms)} terms; trunk + features {data.seconds:.0f} s; frozen features alone mAP@10 "
            f"{data.trunk_map:.3f}",
            flush=True,
        )
        start = time.perf_counter()
        curves = {
            s: np.array([run_curve(data, s, seed, args) for seed in range(args.seeds)])
            for s in args.strategies
        }
        summary = summarise(curves, pool_fractions(len(data.pool_x)))
        results[name] = {
            "pool": len(data.pool_x),
            "test": len(data.test_x),
            "seeds": args.seeds,
            "trunk_map": round(data.trunk_map, 4),
            "trunk_seconds": round(data.seconds, 1),
            "rounds_seconds": round(time.perf_counter() - start, 1),
            "summary": summary,
            "curves": {s: c.round(4).tolist() for s, c in curves.items()},
        }
        print(
            f"{name}: random's final mAP@10 {summary['random_final']:.3f} "
            f"{summary['random_final_interval']} ({results[name]['rounds_seconds']:.0f} s of rounds)"
        )
        print(
            "  strategy     "
            + " ".join(f"{int(round(f * 100)):>5d}" for f in summary["strategies"]["random"]["fractions"])
        )
        for s, v in summary["strategies"].items():
            print(
                f"  {s:<12} "
                + " ".join(f"{m:5.3f}" for m in v["mean"])
                + f"  reaches random's final at {v['reaches_random_final_at']}"
                + f" (its interval at {v['reaches_random_final_interval_at']})"
            )
        print_gains(name, results[name])
        (out / "results.json").write_text(
            json.dumps({"args": vars(args), "results": results}, indent=1, default=str), encoding="utf-8"
        )
    if args.figure:
        plot(results, Path(args.figure))
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
