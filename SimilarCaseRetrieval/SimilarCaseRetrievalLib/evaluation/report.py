"""Tables of results: on screen (plain text) and Markdown for docs/evaluation.md."""

from __future__ import annotations

from .metrics import display_name


def _cell(summary: dict, metric: str) -> str:
    v = summary["overall"][metric]
    lo, hi = summary["ci95"][metric]
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def text_table(summaries: dict[str, dict]) -> str:
    """Methods x metrics, mean [95% interval]."""
    metrics = list(next(iter(summaries.values()))["overall"])
    head = ["method", *[display_name(m) for m in metrics], "queries"]
    rows = [[name, *[_cell(s, m) for m in metrics], str(s["n_queries"])] for name, s in summaries.items()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(summaries: dict[str, dict]) -> str:
    metrics = list(next(iter(summaries.values()))["overall"])
    head = "| method | " + " | ".join(display_name(m) for m in metrics) + " | queries |"
    sep = "|---" * (len(metrics) + 2) + "|"
    rows = [
        f"| {name} | " + " | ".join(_cell(s, m) for m in metrics) + f" | {s['n_queries']} |"
        for name, s in summaries.items()
    ]
    return "\n".join([head, sep, *rows])


def feedback_table(summaries: dict[str, dict]) -> str:
    """Markdown: per method and round, residual-collection metric before/after feedback and the gain."""
    lines = [
        "| method | round | queries | mAP@10 initial -> feedback (gain [95% CI]) | P@10 initial -> feedback (gain) |",
        "|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        for fb in s.get("feedback", []):
            cells = []
            for m in ("map@10", "precision@10"):
                if m not in fb["gain"]:
                    continue
                ci = fb["gain_ci95"].get(m, [float("nan")] * 2)
                cells.append(
                    f"{fb['initial_residual'][m]:.3f} -> {fb['feedback_residual'][m]:.3f} "
                    f"({fb['gain'][m]:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}])"
                )
            lines.append(f"| {name} | {fb['round']} | {fb['n_queries']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
