"""Drafts evaluated on a labelled archive (the synthetic one knows every case's true terms and diagnosis),
cross-validated by patient (`evaluation.splits.grouped_folds`).

Per fold our encoder is trained on the index cases (`evaluation.ours.encoder_for`: image + text, the terms
and diagnoses of the index cases only) and the classifier baseline (`evaluation.classifier`) too. For each
held-out query (its ROI and its notes, never its report), the draft is built from the term head's
probabilities and the k nearest index cases (fused image + text score). Measured against the truth:
- O-RADS MRI score of the draft (rule table on its findings, voted by the k neighbours): accuracy and
  quadratic-weighted kappa; for reference the rules on the term head's findings (``findings_from="term
  head"``), the term head's own ``orads:*`` argmax, and the rules on the TRUE findings (how far the
  published rules are from the generator's scoring);
- term-level F1 of the predicted findings (micro over the informative terms, and macro over those terms);
- the diagnosis implied by the draft vs plain k-NN voting (majority of the k neighbours) vs the classifier.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .. import terms as lexicon
from .draft import Neighbour, build_draft
from .orads import findings_from_terms, orads_score


@dataclass
class DraftEvalOptions:
    folds: int = 3
    k: int = 10
    epochs: int | str = 12
    classifier_epochs: int = 15
    text_weight: float = 0.3
    seed: int = 0


def _knn_vote(labels: list[str]) -> str:
    counts = Counter(labels)
    best = max(counts.values())
    return next(lab for lab in labels if counts[lab] == best)  # ties: the higher-ranked label


def evaluate_drafts(collection, opts: DraftEvalOptions | None = None) -> dict:
    """Pooled predictions over the folds and the summary table (see module doc)."""
    from ..encoders import fuse_embeddings
    from ..evaluation.classifier import train_classifier
    from ..evaluation.methods import MethodOptions
    from ..evaluation.ours import encoder_for
    from ..evaluation.splits import grouped_folds

    opts = opts or DraftEvalOptions()
    rows: list[dict] = []
    for fold in grouped_folds(collection.groups, opts.folds, opts.seed):
        rest = np.setdiff1d(np.arange(len(collection)), fold)
        index, queries = collection.subset(rest), collection.subset(fold)
        encoder = encoder_for(
            index, MethodOptions(mode="fused", epochs=opts.epochs, seed=opts.seed, progress=False)
        )
        pred = encoder.predict_rois(queries.rois)
        qv = fuse_embeddings(
            pred.embeddings, encoder.encode_texts(list(queries.query_texts)), opts.text_weight
        )
        iv = fuse_embeddings(
            encoder.encode_rois(index.rois), encoder.encode_texts(list(index.texts)), opts.text_weight
        )
        scores = qv @ iv.T
        clf = train_classifier(
            index.rois, index.labels, epochs=opts.classifier_epochs, seed=opts.seed, progress=False
        )
        clf_pred = np.asarray(clf.classes)[clf.predict(queries.rois)[1].argmax(axis=1)]
        for i in range(len(queries)):
            top = np.argsort(-scores[i])[: opts.k]
            neighbours = [
                Neighbour(
                    index.ids[j], float(scores[i, j]), index.labels[j], sorted(index.terms[j]), index.texts[j]
                )
                for j in top
            ]
            probs = dict(zip(encoder.terms, pred.term_probs[i].tolist(), strict=True))
            draft = build_draft(probs, neighbours)  # findings voted by the neighbours (the default)
            head_draft = build_draft(probs, neighbours, findings_from="term head")
            truth_terms = sorted(queries.terms[i])
            head = {t: p for t, p in probs.items() if t.startswith("orads:")}
            rows.append(
                {
                    "case_id": queries.ids[i],
                    "label": queries.labels[i],
                    "truth_orads": lexicon.orads_score(truth_terms),
                    "draft_orads": draft.orads.score,
                    "head_orads": int(max(head, key=head.get).split(":")[1]) if head else None,
                    "rules_on_truth": orads_score(findings_from_terms(truth_terms)).score,
                    "truth_terms": truth_terms,
                    "draft_terms": sorted(f.term for f in draft.findings),
                    "head_rule_orads": head_draft.orads.score,
                    "head_terms": sorted(f.term for f in head_draft.findings),
                    "head_draft_diagnosis": head_draft.diagnosis,
                    "draft_diagnosis": draft.diagnosis,
                    "knn_diagnosis": _knn_vote([n.label for n in neighbours]),
                    "classifier_diagnosis": str(clf_pred[i]),
                }
            )
    return {"rows": rows, "summary": summarise(rows)}


def _orads_metrics(truth: list, pred: list) -> dict:
    from sklearn.metrics import cohen_kappa_score

    pairs = [(t, p) for t, p in zip(truth, pred, strict=True) if t is not None]
    t = np.array([a for a, _ in pairs])
    p = np.array([b if b is not None else 0 for _, b in pairs])
    return {
        "accuracy": float((t == p).mean()),
        "weighted_kappa": float(cohen_kappa_score(t, p, weights="quadratic", labels=[0, 2, 3, 4, 5])),
        "n": len(pairs),
    }


def _term_f1(rows: list[dict], key: str = "draft_terms") -> dict:
    informative = [t for t in lexicon.informative_terms() if not t.startswith("orads:")]
    tp = Counter()
    fp = Counter()
    fn = Counter()
    for r in rows:
        truth = set(r["truth_terms"]) & set(informative)
        pred = set(r[key]) & set(informative)
        for t in truth & pred:
            tp[t] += 1
        for t in pred - truth:
            fp[t] += 1
        for t in truth - pred:
            fn[t] += 1
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    micro = 2 * total_tp / max(1, 2 * total_tp + total_fp + total_fn)
    per_term = {t: 2 * tp[t] / (2 * tp[t] + fp[t] + fn[t]) for t in informative if (tp[t] + fn[t]) > 0}
    return {
        "micro_f1": float(micro),
        "macro_f1": float(np.mean(list(per_term.values()))) if per_term else float("nan"),
        "per_term": {t: round(v, 3) for t, v in per_term.items()},
    }


def summarise(rows: list[dict]) -> dict:
    from sklearn.metrics import f1_score

    truth = [r["truth_orads"] for r in rows]
    labels = [r["label"] for r in rows]
    diag = {}
    for key in ("draft_diagnosis", "head_draft_diagnosis", "knn_diagnosis", "classifier_diagnosis"):
        pred = [r[key] or "none" for r in rows]
        diag[key] = {
            "accuracy": float(np.mean([a == b for a, b in zip(labels, pred, strict=True)])),
            "macro_f1": float(f1_score(labels, pred, average="macro", labels=sorted(set(labels)))),
        }
    return {
        "queries": len(rows),
        "orads_draft": _orads_metrics(truth, [r["draft_orads"] for r in rows]),
        "orads_term_head": _orads_metrics(truth, [r["head_orads"] for r in rows]),
        "orads_head_findings": _orads_metrics(truth, [r["head_rule_orads"] for r in rows]),
        "orads_rules_on_true_findings": _orads_metrics(truth, [r["rules_on_truth"] for r in rows]),
        "terms": _term_f1(rows),
        "terms_head": _term_f1(rows, "head_terms"),
        "diagnosis": diag,
    }
