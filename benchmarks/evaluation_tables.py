"""Print the Markdown tables of docs/evaluation.md from the results.json files of `similar-cases evaluate`.

python benchmarks/evaluation_tables.py WORK_DIR/mmotu/results.json [more results.json ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from SimilarCaseRetrievalLib.evaluation.report import feedback_table, markdown_table


def per_class_table(summaries: dict[str, dict], metric: str = "precision@10") -> str:
    """Methods x classes for one metric (number of queries per class in the header)."""
    classes = sorted({c for s in summaries.values() for c in s["per_class"]})
    first = next(iter(summaries.values()))["per_class"]
    head = "| method | " + " | ".join(f"{c} (n={first.get(c, {}).get('n', 0)})" for c in classes) + " |"
    rows = [head, "|---" * (len(classes) + 1) + "|"]
    for name, s in summaries.items():
        cells = [f"{s['per_class'][c][metric]:.3f}" if c in s["per_class"] else "-" for c in classes]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files (same data set: merged)")
    args = parser.parse_args()
    merged: dict[tuple[str, str], dict] = {}
    for path in args.results:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = (data["dataset"], data["protocol"])
        if key in merged:
            merged[key]["methods"].update(data["methods"])
        else:
            merged[key] = data
    for data in merged.values():
        summaries = data["methods"]
        print(f"### {data['dataset']} ({data['protocol']}, k={data['k']})\n")
        print(markdown_table(summaries) + "\n")
        print("Per class, P@10:\n")
        print(per_class_table(summaries) + "\n")
        if any(s.get("feedback") for s in summaries.values()):
            print("Simulated relevance feedback (residual collection):\n")
            print(feedback_table(summaries) + "\n")


if __name__ == "__main__":
    main()
