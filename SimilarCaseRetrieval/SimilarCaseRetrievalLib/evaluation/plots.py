"""Figures: a bar chart of methods x metrics (with 95% intervals) and a qualitative query/top-5 montage."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .collection import EvalCollection
from .metrics import Ranking, display_name


def bar_chart(summaries: dict[str, dict], path: Path, title: str = "") -> Path:
    """Grouped bars: one group per metric, one bar per method, error bars = bootstrap 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summaries)
    metrics = list(next(iter(summaries.values()))["overall"])
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.3 * len(metrics) + 1.5, 3.2), dpi=90)
    x = np.arange(len(metrics))
    for i, m in enumerate(methods):
        s = summaries[m]
        vals = np.array([s["overall"][k] for k in metrics])
        lo = np.array([s["ci95"][k][0] for k in metrics])
        hi = np.array([s["ci95"][k][1] for k in metrics])
        ax.bar(
            x + (i - (len(methods) - 1) / 2) * width,
            vals,
            width,
            label=m,
            yerr=[np.maximum(vals - lo, 0), np.maximum(hi - vals, 0)],
            capsize=2,
        )
    ax.set_xticks(x, [display_name(m) for m in metrics])
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(methods), 4))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _preview(roi: np.ndarray) -> np.ndarray:
    """2D preview of a (C, Z, Y, X) ROI: first channel on the slice where the mask is largest."""
    mask = roi[-1]
    z = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    return roi[0, z], mask[z]


def qualitative_figure(
    index: EvalCollection,
    queries: EvalCollection,
    ranking: Ranking,
    path: Path,
    n_queries: int = 3,
    top: int = 5,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Three queries (different labels where possible) and their top 5, with labels; ticks mark relevance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    picks, seen = [], set()
    for q in rng.permutation(len(queries)):
        if queries.labels[q] not in seen or len(seen) >= len(set(queries.labels)):
            picks.append(int(q))
            seen.add(queries.labels[q])
        if len(picks) == n_queries:
            break
    text_mode = index.rois is None
    fig, axes = plt.subplots(
        len(picks),
        top + 1,
        figsize=(2.2 * (top + 1), 1.35 * len(picks)) if text_mode else (1.6 * (top + 1), 1.9 * len(picks)),
        dpi=60,
    )
    axes = np.atleast_2d(axes)
    for r, q in enumerate(picks):
        cells = [(queries, q, "query")] + [
            (index, int(j), f"#{n + 1}") for n, j in enumerate(ranking.order[q][:top]) if ranking.valid[q][n]
        ]
        for c in range(top + 1):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(cells):
                continue
            coll, i, tag = cells[c]
            if coll is index:
                if index.relevance == "label":
                    ok = coll.labels[i] == queries.labels[q]
                else:
                    ok = bool(coll.terms[i] & queries.terms[q])
                mark, color = ("+", "green") if ok else ("-", "red")
            else:
                mark, color = "", "black"
            label = coll.labels[i] if coll.relevance == "label" else ", ".join(sorted(coll.terms[i]))[:40]
            if text_mode:
                text = (coll.query_texts if coll is queries else coll.texts)[i]
                ax.text(
                    0,
                    1,
                    "\n".join(textwrap.wrap(text[:300], 44)),
                    va="top",
                    fontsize=5.5,
                    transform=ax.transAxes,
                )
            else:
                img, msk = _preview(coll.rois[i])
                ax.imshow(img, cmap="gray")
                if msk.any() and msk.min() != msk.max():
                    ax.contour(msk, levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_title(f"{tag} {mark}\n{label}"[:60], fontsize=6, color=color)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
