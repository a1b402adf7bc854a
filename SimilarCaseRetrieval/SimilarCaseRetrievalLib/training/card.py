"""MODEL_CARD.md for a trained model folder (data, intended use, metrics, limits, reproducing command)."""

from __future__ import annotations

from pathlib import Path

from .. import encoders


def _recipe_line(recipe: dict | None) -> str:
    if not recipe:
        return "Recipe: not recorded (trained before the diagnosis-aware term existed: the original recipe)."
    if recipe.get("supcon_weight", 0) > 0:
        graded = ", positives graded by shared terms" if recipe.get("supcon_terms") else ""
        return (
            f"Recipe: diagnosis-aware (supervised contrastive term on image + text embeddings, weight "
            f"{recipe['supcon_weight']}, tau {recipe.get('supcon_temperature')}{graded}; instance loss weight "
            f"{recipe.get('instance_weight')})."
        )
    return f"Recipe: original (no supervised contrastive term; instance loss weight {recipe.get('instance_weight')})."


def _head_line(recipe: dict | None) -> str:
    if not recipe or "proxy_weight" not in recipe:
        return ""
    balance = "class-balanced" if recipe.get("label_balance") else "unweighted"
    return (
        f"\nDiagnosis head: {balance} cross-entropy; proxy (normalised-softmax) loss on the embedding, weight "
        f"{recipe['proxy_weight']}."
    )


def _selection(config) -> str:
    sel = config.metrics.get("selection")
    if not sel:
        return "Not recorded (trained before model selection existed: the last epoch, no diagnosis prior)."
    w = float(sel.get("prior_weight", 0.0))
    prior = (
        f"diagnosis prior weight w = {w:g}: image vectors are [sqrt(1-w)·embedding, sqrt(w)·sqrt(p)], p = the "
        "recorded diagnosis of an archive case (one-hot) or the predicted distribution of a query, so their dot "
        "product is (1-w)·cosine + w·sqrt(probability that the query has the archive case's diagnosis); cases "
        "of the query's probable diagnosis come first, ordered by the embedding"
        if w > 0
        else "no diagnosis prior (w = 0: the plain embedding)"
    )
    return f"Kept the weights of epoch {sel.get('epoch')} and {prior}. Why: {sel.get('reason', '?')}."


def _flip_line(config) -> str:
    if not getattr(config, "flip_tta", False):
        return ""
    return "\nImage vectors average the ROI's embedding with its left-right mirror's (test-time flip)."


def _quantization(config) -> str:
    if config.text_quantization == "int8":
        return "int8 dynamic quantisation of its Linear layers"
    return "fp32"


def _ensemble_line(config) -> str:
    e = config.metrics.get("ensemble")
    if config.members <= 1 or not e:
        return ""
    scores = [(s or {}).get("score") for s in e.get("selections", [])]
    return (
        f"\nEnsemble of {config.members} such networks (seeds {e.get('seeds')}, each trained and selected on "
        f"its own validation split, selection scores {scores}; member times {e.get('member_seconds')} s): "
        "search uses the mean of their cosines and of their diagnosis / term probabilities. The validation "
        "table is member 1's."
    )


def model_card(encoder: encoders.CaseEncoder) -> str:
    c = encoder.config
    m = c.metrics
    final = m.get("final", {})
    rows = "\n".join(f"| {k} | {'n/a' if v is None else f'{v:.3f}'} |" for k, v in final.items())
    rows = rows or "| (no validation split) | |"
    n_params = sum(p.numel() for p in encoder.net.parameters())
    return f"""# Model card: {c.version}

## What it is
Image CNN (strided 3D, GroupNorm; {n_params:,} parameters, widths {list(c.widths)}) over the ROI tensor
(sequences {c.sequences} + mask, grid X,Y,Z = {list(c.roi.grid)}) and a trained projection of the frozen
sentence-transformers model `{c.text_model}` ({c.text_dim}-d, {_quantization(c)}) into one {c.embed_dim}-d
L2-normalised space.{_ensemble_line(c)}
Heads: {len(c.terms)} semantic terms (sigmoid), {len(c.labels)} diagnoses (softmax): {", ".join(c.labels)}.
Training: stage 0 self-supervised (NT-Xent on augmented ROI views), stage 1 instance loss with a classifier
shared by both branches + term/label heads, stage 2 + bidirectional hinge ranking loss with hardest negatives
(image->text, text->image, image->image for cases sharing a diagnosis). Text model frozen (cached embeddings).
{_recipe_line(m.get("recipe"))}{_head_line(m.get("recipe"))}

## Data
{m.get("data", "?")}: {m.get("n_train", "?")} training and {m.get("n_val", "?")} validation cases
(split grouped by patient id). Training time {m.get("train_seconds", "?")} s.

## Validation (relevance = same diagnosis; validation queries against train + validation cases)
Image query = ROI; text query = clinical notes only, gallery texts = report + notes; fused = 0.7 image + 0.3 text.
map@10_* = mean over queries of AP@10, p@1_image = share of queries whose first hit has their diagnosis,
select_score = the selection score below (class mean: every diagnosis counts once).{_flip_line(c)}

| metric | value |
|---|---|
{rows}

## Model selection (on the validation split only)
{_selection(c)}

## Reproduce
```
{c.training_command}
```

## Intended use and limits
Research prototype for similar-case retrieval. The weights learn whatever the training archive contains:
a model trained on the synthetic archive knows synthetic phantoms only and must be retrained on a site's own
archive (`similar-cases train --archive DIR --out MODEL_DIR`) before any clinical evaluation. Not a diagnostic
device; the diagnosis and term heads are aids for browsing results, not predictions to act on.
"""


def write_model_card(encoder: encoders.CaseEncoder, model_dir: Path) -> Path:
    path = Path(model_dir) / encoders.model.CARD_FILE
    path.write_text(model_card(encoder), encoding="utf-8")
    return path
