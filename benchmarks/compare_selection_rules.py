"""Which (epoch, prior weight) each model-selection rule picks from one training run's validation records
(docs/training.md, tuning log, second round). The selection rule does not change the training, so all rules
are compared on the same run.

    python benchmarks/compare_selection_rules.py HISTORY.json

HISTORY.json: the per-epoch ``metrics.history`` of a model trained with the current code (its ``by_weight``
records), e.g. the last line of the tuning script's stderr or ``config.json["metrics"]["history"]``.
Prints one JSON line per rule and search mode (image; fused too when the records have notes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

NAMES = ("map", "macro_map", "p1", "macro_p1")
# row = [mAP@10, class-mean mAP@10, P@1, class-mean P@1] of one search mode at one prior weight
RULES: dict[str, Callable[[list[float]], float]] = {
    "mean mAP@10 (first rule)": lambda r: r[0],
    "class-mean mAP@10": lambda r: r[1],
    "class-mean 0.75 mAP@10 + 0.25 P@1": lambda r: 0.75 * r[1] + 0.25 * r[3],
    "class-mean 0.5 mAP@10 + 0.5 P@1 (default)": lambda r: 0.5 * r[1] + 0.5 * r[3],
}


def pick(history: list[dict], rule: Callable[[list[float]], float], offset: int):
    """As training selects: per epoch the best weight (ties: the smaller), over epochs the best (ties: later)."""
    best = None
    for record in history:
        if record.get("stage", 1) < 1 or not record.get("by_weight"):
            continue
        epoch_best = None
        for w, row in sorted(record["by_weight"].items(), key=lambda kv: float(kv[0])):
            part = row[offset : offset + 4]
            if len(part) < 4 or None in part:
                continue
            if epoch_best is None or rule(part) > epoch_best[0] + 1e-9:
                epoch_best = (rule(part), record["epoch"], float(w), row)
        if epoch_best and (best is None or epoch_best[0] >= best[0]):
            best = epoch_best
    return best


def main() -> None:
    text = open(sys.argv[1], encoding="utf-8").read().strip().splitlines()[-1]
    history = json.loads(text)
    history = history.get("metrics", {}).get("history", history) if isinstance(history, dict) else history
    has_fused = any(len(row) > 4 for h in history for row in (h.get("by_weight") or {}).values())
    for mode, offset in [("image", 0)] + ([("fused", 4)] if has_fused else []):
        for name, rule in RULES.items():
            best = pick(history, rule, offset)
            if best is None:
                continue
            _, epoch, w, row = best
            out = {"select_on": mode, "rule": name, "epoch": epoch, "prior_weight": w}
            out["image"] = dict(zip(NAMES, row[:4], strict=True))
            if len(row) > 4:
                out["fused"] = dict(zip(NAMES, row[4:8], strict=True))
            print(json.dumps(out))


if __name__ == "__main__":
    main()
