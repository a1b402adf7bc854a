"""Speed of the synthetic archive generator: seconds per case (wall and CPU) for a grid size.

    python benchmarks/bench_synthetic.py --n-cases 60 --size default [--ingest] [--out /tmp/bench-archive]
    python benchmarks/bench_synthetic.py --separability [--n-cases 600]

Prints one line per phase; the ratio "render only / full" shows how much goes to writing files.
``--separability`` instead reports how well the label is predicted from the O-RADS terms alone and from
the clinical notes alone (logistic regression, 5-fold CV grouped by patient; needs scikit-learn): the
notes must correlate with the diagnosis without giving it away.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cases", type=int, default=60)
    parser.add_argument("--size", default="default", choices=["default", "small", "tiny"])
    parser.add_argument("--ingest", action="store_true", help="also ingest into the case store")
    parser.add_argument("--out", type=Path, default=None, help="archive folder (default: a temporary one)")
    parser.add_argument("--separability", action="store_true", help="label predictability from terms / notes")
    args = parser.parse_args()
    if args.separability:
        separability(args.n_cases)
        return

    from SimilarCaseRetrievalLib.synthetic import make_archive, plan_archive
    from SimilarCaseRetrievalLib.synthetic.archive import synthesize_planned
    from SimilarCaseRetrievalLib.synthetic.shapes import Grid

    grid = Grid.named(args.size)
    plans = plan_archive(args.n_cases, seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    for plan in plans:
        synthesize_planned(plan, 0, grid)
    render_wall, render_cpu = time.perf_counter() - wall, time.process_time() - cpu

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-synthetic-"))
    wall, cpu = time.perf_counter(), time.process_time()
    make_archive(out, n_cases=args.n_cases, size=args.size, ingest=args.ingest, progress=False)
    full_wall, full_cpu = time.perf_counter() - wall, time.process_time() - cpu
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    if args.out is None:
        shutil.rmtree(out)

    n = args.n_cases
    print(f"grid {grid.size} spacing {tuple(round(s, 2) for s in grid.spacing)} mm, {n} cases")
    print(
        f"render only : {render_wall / n * 1000:7.1f} ms/case wall, {render_cpu / n * 1000:7.1f} ms/case CPU"
    )
    print(f"full archive: {full_wall / n * 1000:7.1f} ms/case wall, {full_cpu / n * 1000:7.1f} ms/case CPU")
    print(f"render/full CPU ratio: {render_cpu / full_cpu:.2f}; archive size {size_mb:.1f} MB")
    print(f"projected 300 cases: {full_wall / n * 300:.0f} s wall, {full_cpu / n * 300:.0f} s CPU")


def separability(n_cases: int) -> None:
    """Cross-validated accuracy of label prediction from terms only and from notes only (no images)."""
    import numpy as np
    from SimilarCaseRetrievalLib.synthetic.archive import plan_archive, synthesize_planned
    from SimilarCaseRetrievalLib.synthetic.shapes import Grid
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MultiLabelBinarizer

    terms, notes, labels, groups = [], [], [], []
    grid = Grid.named((8, 8, 4))  # texts do not depend on the grid; a tiny one renders fast
    for p in plan_archive(n_cases, seed=0):
        case = synthesize_planned(p, 0, grid)
        terms.append([t for t in case.terms if not t.startswith(("laterality:", "size:"))])
        notes.append(case.notes["en"])
        labels.append(p.label)
        groups.append(p.patient_id)
    y, cv = np.array(labels), GroupKFold(5)
    model = LogisticRegression(max_iter=2000)
    x_terms = MultiLabelBinarizer().fit_transform(terms)
    acc_terms = cross_val_score(model, x_terms, y, cv=cv, groups=groups).mean()
    text_model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2), LogisticRegression(max_iter=2000)
    )
    acc_notes = cross_val_score(text_model, np.array(notes, dtype=object), y, cv=cv, groups=groups).mean()
    print(f"{n_cases} cases, {len(set(labels))} labels (chance {1 / len(set(labels)):.3f})")
    print(f"terms only -> label accuracy: {acc_terms:.3f}")
    print(f"notes only -> label accuracy: {acc_notes:.3f}")


if __name__ == "__main__":
    main()
