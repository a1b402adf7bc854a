"""The training loop: stage 0 (self-supervised image views), stage 1 (instance + heads), stage 2 (+ ranking)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..encoders import CaseEncoder, ModelConfig, fuse_embeddings, with_label_prior
from ..errors import CaseInputError
from .augment import augment
from .checkpoint import optimizer_state, read_checkpoint, save_checkpoint
from .data import TrainingData, as_training_data, split_validation, targets, vocabularies
from .head_refit import refit_label_head
from .losses import InstanceClassifier, nt_xent, ranking_loss, supervised_contrastive
from .metrics import class_mean, map_at_k, per_query_scores, selection_score

log = logging.getLogger(__name__)
STAGES = ("self-supervised", "instance", "ranking")
# inner validation share (grouped by patient) used for model selection by `similar-cases train` and by the
# per-split trainings of `similar-cases evaluate`
DEFAULT_VAL_FRACTION = 0.15
# epochs of `similar-cases train` and of the per-split trainings of `evaluate` (split 12/24/24 over the stages;
# docs/training.md, tuning log)
DEFAULT_EPOCHS = 60


def parse_epochs(value: int | str | Sequence[int]) -> tuple[int, int, int]:
    """``N`` (total, split 1:2:2 over stages 0/1/2) or ``"a,b,c"`` / ``(a, b, c)`` (per stage)."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        value = int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)
    if isinstance(value, int):
        if value < 0:
            raise CaseInputError("--epochs", f"{value} is negative", "give a positive number")
        s0 = round(value * 0.2)
        s1 = round(value * 0.4)
        return (s0, s1, value - s0 - s1)
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 0:
        raise CaseInputError("--epochs", f"{value} is not three non-negative numbers", "use e.g. 4,8,8")
    return value  # type: ignore[return-value]


@dataclass
class TrainOptions:
    epochs: tuple[int, int, int] = (4, 8, 8)
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    margin: float = 0.2
    temperature: float = 0.2
    text_dropout: float = 0.1
    augment_strength: float = 1.0
    progress: bool = True
    # diagnosis-aware recipe (stages 1-2): supervised contrastive term on the image embeddings and the
    # case texts together (positives = same diagnosis, weighted by shared semantic terms when
    # ``supcon_terms``); the instance loss is scaled by ``instance_weight``. supcon_weight 0 and
    # instance_weight 1 give the original recipe.
    supcon_weight: float = 1.0
    supcon_temperature: float = 0.1
    supcon_terms: bool = True
    instance_weight: float = 0.1
    # diagnosis head: cross-entropy weighted by inverse class frequency (rare diagnoses count as much)
    label_balance: bool = True
    # normalised-softmax (proxy) loss on the image embedding itself: one learnt proxy per diagnosis, cosine
    # logits scaled by 16 (Zhai & Wu 2019); 0 = off (the recipe before it)
    proxy_weight: float = 1.0
    # model selection on the validation split (docs/training.md): the epoch (stages 1-2) and the weight w of
    # the diagnosis prior in the image vector (`encoders.with_label_prior`) with the best image mAP@10;
    # without a validation split the last epoch and w = 0 are kept
    prior_weights: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.97)
    select_epoch: bool = True
    # selection score (`metrics.selection_score`): class-mean (every diagnosis counts once) or plain mean
    # over validation queries, of (1 - select_p1) * mAP@10 + select_p1 * P@1, on the image vectors or, with
    # "auto", on the fused ones when the validation queries have notes. False / 0 / "image" = the first
    # selection rule (plain mean image mAP@10; kept for checkpoints saved before these fields existed).
    select_balanced: bool = True
    select_p1: float = 0.5
    select_on: str = "auto"
    # after selection the diagnosis head is refitted as a class-balanced logistic regression on the frozen
    # features of the training cases (`head_refit`), the prior weight chosen again with it, and the refit
    # kept when the validation selection score does not drop (needs a validation split)
    refit_head: bool = True
    # after selection on a validation split carved out of the data (``val_fraction``), train again on all the
    # cases (training + validation) with the same seed for the kept number of epochs, then apply the kept
    # prior weight and head choice; measured not better, so off (docs/training.md, tuning log row 21)
    full_fit: bool = False


@dataclass(frozen=True)
class Selection:
    """How validation results are scored for model selection (see `TrainOptions`)."""

    balance: bool = True
    p1_weight: float = 0.5
    on: str = "auto"

    @classmethod
    def of(cls, opts: TrainOptions) -> Selection:
        return cls(opts.select_balanced, opts.select_p1, opts.select_on)

    def describe(self) -> str:
        mean = "class-mean" if self.balance else "mean"
        metric = (
            "mAP@10" if self.p1_weight <= 0 else f"{1 - self.p1_weight:g}·mAP@10 + {self.p1_weight:g}·P@1"
        )
        where = {"auto": "fused when the validation queries have notes, else image", "fused": "fused"}
        return f"{mean} {metric} ({where.get(self.on, 'image')})"


# TrainOptions fields that change the objective (set with train_model(options=...), kept in checkpoints)
RECIPE_FIELDS = (
    "margin",
    "temperature",
    "text_dropout",
    "augment_strength",
    "weight_decay",
    "supcon_weight",
    "supcon_temperature",
    "supcon_terms",
    "instance_weight",
    "label_balance",
    "proxy_weight",
    "prior_weights",
    "select_epoch",
    "select_balanced",
    "select_p1",
    "select_on",
    "refit_head",
    "full_fit",
)
# what checkpoints saved before these fields existed were selecting with (and no head refit)
_FIRST_SELECTION = {
    "select_balanced": False,
    "select_p1": 0.0,
    "select_on": "image",
    "refit_head": False,
    "full_fit": False,
}


def _set_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.use_deterministic_algorithms(True, warn_only=True)


def _sentence_table(encoder: CaseEncoder, data: TrainingData, cache: dict[str, np.ndarray], progress: bool):
    """Frozen sentence embeddings of the index-side and query-side texts (each distinct text embedded once)."""
    todo = sorted({t for t in data.texts + data.query_texts if t and t.strip() and t not in cache})
    if todo:
        vecs = encoder.sentence_embeddings(todo, progress=progress)
        cache.update(zip(todo, vecs, strict=True))
    dim = encoder.config.text_dim
    zero = np.zeros(dim, np.float32)

    def table(texts: list[str]) -> np.ndarray:
        return (
            np.stack([cache.get(t, zero) for t in texts]).astype(np.float32) if texts else np.zeros((0, dim))
        )

    return table(data.texts), table(data.query_texts)


def evaluate(
    encoder: CaseEncoder,
    queries: TrainingData,
    gallery: TrainingData,
    sentences: dict[str, np.ndarray],
    k: int = 10,
    prior_weights: Sequence[float] = (),
    select: Selection | None = None,
) -> dict[str, Any]:
    """mAP@k (relevance = same label) of image-only, text-only (query notes vs gallery reports) and fused.
    With ``prior_weights`` (and a diagnosis head) the image vectors get the diagnosis prior of the weight
    with the best selection score (``select``, `metrics.selection_score`; ties: the smaller weight), given
    as ``prior_weight``; ``map@k_image_w0`` is the plain embedding's. ``select_score`` is the chosen
    weight's selection score (on the fused vectors when ``select`` says so and the queries have notes);
    ``by_weight`` holds, per weight, [image mAP, image class-mean mAP, image P@1, image class-mean P@1]
    and the same four of fused search when there is text."""
    select = select or Selection()
    ids = dict(query_ids=queries.ids, gallery_ids=gallery.ids, k=k)
    with_prior = bool(encoder.config.labels) and any(w > 0 for w in prior_weights)
    old = encoder.config.label_prior_weight
    encoder.config.label_prior_weight = 0.0
    pq, pg = encoder.predict_rois(queries.rois), encoder.predict_rois(gallery.rois)
    encoder.config.label_prior_weight = old
    weights = sorted({0.0, *prior_weights}) if with_prior else [0.0]
    g_probs = encoder.label_probs_for(pg.label_probs, gallery.labels) if with_prior else None
    dim = encoder.config.text_dim
    zero = np.zeros(dim, np.float32)
    q_txt0 = encoder.project_texts(np.stack([sentences.get(t, zero) for t in queries.query_texts]))
    g_txt0 = encoder.project_texts(np.stack([sentences.get(t, zero) for t in gallery.texts]))
    has_text = bool(np.any(q_txt0) and np.any(g_txt0))
    on_fused = has_text and select.on in ("fused", "auto")
    out: dict[str, float] = {}
    by_weight: dict[str, list[float]] = {}
    best = None
    for w in weights:
        if w > 0:
            vq = with_label_prior(pq.embeddings, pq.label_probs, w)
            vg = with_label_prior(pg.embeddings, g_probs, w)
        else:
            vq, vg = pq.embeddings, pg.embeddings
        scored = {"image": per_query_scores(vq, queries.labels, vg, gallery.labels, **ids)}
        q_txt, g_txt = q_txt0, g_txt0
        if has_text:
            extra = vq.shape[1] - q_txt0.shape[1]  # text vectors in the image space (zero on the prior part)
            q_txt = np.concatenate([q_txt0, np.zeros((len(q_txt0), extra), np.float32)], axis=1)
            g_txt = np.concatenate([g_txt0, np.zeros((len(g_txt0), extra), np.float32)], axis=1)
            q_f, g_f = fuse_embeddings(vq, q_txt), fuse_embeddings(vg, g_txt)
            scored["fused"] = per_query_scores(q_f, queries.labels, g_f, gallery.labels, **ids)
        row = []
        for lab, aps, p1s in scored.values():
            row += [_mean(aps), class_mean(lab, aps), _mean(p1s), class_mean(lab, p1s)]
        by_weight[f"{w:g}"] = [round(v, 4) if np.isfinite(v) else None for v in row]
        score = selection_score(*scored["fused" if on_fused else "image"], select.balance, select.p1_weight)
        if w == 0:
            out["image_w0"] = _mean(scored["image"][1])
        if best is None or score > best[0] + 1e-9 or not np.isfinite(best[0]):
            best = (score, w, scored, q_txt, g_txt)
    assert best is not None
    score, chosen, scored, q_txt, g_txt = best
    out["image"] = _mean(scored["image"][1])
    if has_text:
        out["text"] = map_at_k(q_txt, queries.labels, g_txt, gallery.labels, **ids)
        out["fused"] = _mean(scored["fused"][1])
    if not with_prior:
        out.pop("image_w0", None)
    record: dict[str, Any] = {
        f"map@{k}_{key}": (round(v, 4) if np.isfinite(v) else None) for key, v in out.items()
    }
    record["p@1_image"] = round(_mean(scored["image"][2]), 4) if len(scored["image"][2]) else None
    record["select_score"] = round(score, 4) if np.isfinite(score) else None
    record["select_on"] = "fused" if on_fused else "image"
    if with_prior:
        record["prior_weight"] = chosen
        record["by_weight"] = by_weight
        known = [i for i, lab in enumerate(queries.labels) if lab in encoder.config.labels]
        if known:
            pred = np.asarray(encoder.config.labels, dtype=object)[pq.label_probs[known].argmax(axis=1)]
            truth = np.asarray(queries.labels, dtype=object)[known]
            record["label_accuracy"] = round(float(np.mean(pred == truth)), 4)
    return record


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _train_model(
    cases_or_store: Any,
    config: ModelConfig,
    *,
    epochs: int | str | Sequence[int] = (4, 8, 8),
    seed: int = 0,
    val_cases: Any = None,
    val_fraction: float = 0.0,
    rois: np.ndarray | None = None,
    val_rois: np.ndarray | None = None,
    store: Any = None,
    batch_size: int = 32,
    lr: float = 2e-3,
    device: str = "cpu",
    progress: bool = True,
    checkpoint_dir: Path | str | None = None,
    resume: Path | str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    sentence_cache: dict[str, np.ndarray] | None = None,
    options: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> CaseEncoder:
    """Train a `CaseEncoder` on cases (a CaseStore, Cases + ``store``/``rois``, a TrainingData or an
    evaluation collection). Validation: ``val_cases`` (same kinds) or a grouped ``val_fraction`` split;
    mAP@10 (same label) is logged after each epoch and stored in ``encoder.config.metrics``.
    Deterministic for a seed on CPU. ``options``: recipe overrides (`RECIPE_FIELDS` of `TrainOptions`, e.g.
    ``{"supcon_weight": 0, "instance_weight": 1}`` for the original recipe). Returns the trained encoder
    (not saved; call ``save``). ``stop_after``: stop after that epoch (the schedule stays that of ``epochs``)."""
    opts = TrainOptions(epochs=parse_epochs(epochs), batch_size=batch_size, lr=lr, seed=seed, device=device)
    opts.progress = progress
    opts = _with_recipe(opts, options or {}, "options")
    _set_determinism(seed)
    data = as_training_data(cases_or_store, config, rois=rois, store=store, progress=progress)
    if val_cases is not None:
        val = as_training_data(val_cases, config, rois=val_rois, store=store, progress=progress)
        train = data
    else:
        tr_idx, va_idx = split_validation(data, val_fraction, seed)
        train, val = data.subset(tr_idx), (data.subset(va_idx) if len(va_idx) else None)
    if len(train) < 2:
        raise CaseInputError("training data", f"{len(train)} training case(s)", "give at least 2 cases")

    start_epoch, history = 0, []
    ckpt = None
    if resume is not None:
        cfg_json, ckpt, state = read_checkpoint(Path(resume))
        config = ModelConfig.from_json(cfg_json, where=Path(resume) / "config.json")
        if state.get("train_ids") != train.ids:
            raise CaseInputError(
                resume, "checkpoint was trained on other cases", "resume with the same data/seed"
            )
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        opts.epochs = tuple(state["epochs"])  # type: ignore[assignment]
        saved = state.get("options", {})
        recipe = {**_FIRST_SELECTION, **{k: saved[k] for k in RECIPE_FIELDS if k in saved}}
        opts = _with_recipe(opts, recipe, resume)
    else:
        labels, term_list = vocabularies(train, config)
        config = dataclasses.replace(
            config,
            labels=labels,
            terms=term_list,
            version="",
            trained_date="",
            metrics={},
            label_prior_weight=0.0,
        )
    opts_dict = dataclasses.asdict(opts)

    encoder = CaseEncoder.create(config, seed=seed)
    net = encoder.net
    classifier = InstanceClassifier(len(train), config.embed_dim)
    proxies = InstanceClassifier(max(1, len(config.labels)), config.embed_dim)  # one proxy per diagnosis
    if ckpt is not None:
        net.load_state_dict({k[4:]: v for k, v in ckpt.items() if k.startswith("net.")})
        classifier.load_state_dict({"weight": ckpt["cls.weight"]})
        if "proxy.weight" in ckpt:
            proxies.load_state_dict({"weight": ckpt["proxy.weight"]})
    dev = torch.device(opts.device)
    net.to(dev)
    classifier.to(dev)
    proxies.to(dev)
    params = list(net.parameters()) + list(classifier.parameters()) + list(proxies.parameters())
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    if ckpt is not None:
        optimizer.load_state_dict(optimizer_state(ckpt, state["param_groups"]))

    sentences: dict[str, np.ndarray] = sentence_cache if sentence_cache is not None else {}
    needs_text = any(train.has_text) or (val is not None and any(val.has_text))
    if needs_text:
        sent_full, sent_query = _sentence_table(encoder, train, sentences, progress)
        if val is not None:
            _sentence_table(encoder, val, sentences, progress)
    else:
        sent_full = sent_query = np.zeros((len(train), config.text_dim), np.float32)
    y_label, y_terms = targets(train, config.labels, config.terms)
    counts = np.bincount(y_label[y_label >= 0], minlength=len(config.labels)).astype(np.float32)
    label_weight = None
    if opts.label_balance and len(config.labels) > 1 and counts.sum() > 0:
        label_weight = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / len(config.labels)).to(dev)
    arrays = _TrainArrays(
        rois=torch.from_numpy(train.rois),
        sent_full=sent_full,
        sent_query=sent_query,
        has_text=train.has_text,
        y_label=y_label,
        y_terms=y_terms,
        has_terms=y_terms.sum(axis=1) > 0,
        label_weight=label_weight,
    )
    selecting = opts.select_epoch and val is not None and len(val) > 0
    select = Selection.of(opts)
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, Any]] | None = None
    if ckpt is not None and state.get("best"):  # the selected epoch so far travels with the checkpoint
        b = state["best"]
        best_state = {k[5:]: v for k, v in ckpt.items() if k.startswith("best.")}
        best = (float(b["score"]), int(b["epoch"]), best_state, dict(b["record"]))

    total = sum(opts.epochs)
    bounds = np.cumsum(opts.epochs)
    last = total if stop_after is None else max(0, min(total, int(stop_after)))
    for epoch in range(start_epoch, last):
        stage = int(np.searchsorted(bounds, epoch, side="right"))
        stage_start = int(bounds[stage - 1]) if stage else 0
        stage_len = int(opts.epochs[stage])
        # cosine decay within each stage; every epoch reseeded: resuming gives the same run
        frac = (epoch - stage_start) / max(1, stage_len)
        for group in optimizer.param_groups:
            group["lr"] = opts.lr * 0.5 * (1 + math.cos(math.pi * frac))
        torch.manual_seed(seed * 100003 + epoch)
        gen = torch.Generator().manual_seed(seed * 7919 + epoch)
        order = torch.randperm(len(train), generator=gen)
        batches = [order[i : i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches[-2] = torch.cat([batches[-2], batches[-1]])
            batches.pop()
        net.train()
        sums: dict[str, float] = {}
        from tqdm import tqdm

        bar = tqdm(
            batches, desc=f"stage {stage} epoch {epoch + 1}/{total}", disable=not progress, leave=False
        )
        for idx in bar:
            losses = _step(stage, idx, gen, arrays, net, (classifier, proxies), opts, dev)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        net.eval()
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": stage}
        record.update({f"loss_{k}": round(v / len(train), 4) for k, v in sums.items()})
        record["loss"] = round(sum(sums.values()) / len(train), 4)
        if val is not None and len(val):
            gallery = _concat(train, val)
            weights = opts.prior_weights if stage >= 1 else ()
            record.update(evaluate(encoder, val, gallery, sentences, prior_weights=weights, select=select))
            score = record.get("select_score")
            if selecting and stage >= 1 and score is not None and (best is None or score >= best[0]):
                snapshot = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
                best = (float(score), epoch + 1, snapshot, record)
        history.append(record)
        log.debug("epoch %s", record)
        if checkpoint_dir is not None:
            tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
            tensors["cls.weight"] = classifier.weight
            tensors["proxy.weight"] = proxies.weight
            if best is not None:
                tensors.update({f"best.{k}": v for k, v in best[2].items()})
            save_checkpoint(
                Path(checkpoint_dir),
                config.to_json(),
                tensors,
                optimizer,
                {
                    "epoch": epoch + 1,
                    "epochs": list(opts.epochs),
                    "seed": seed,
                    "options": opts_dict,
                    "history": history,
                    "train_ids": train.ids,
                    "best": None if best is None else {"score": best[0], "epoch": best[1], "record": best[3]},
                },
            )
        if on_epoch:
            on_epoch(record)
    net.to("cpu").eval()
    selection: dict[str, Any] = {"epoch": last, "prior_weight": 0.0, "reason": "no validation split"}
    if best is not None:
        score, best_epoch, snapshot, rec = best
        net.load_state_dict(snapshot)
        refit = _refit_head(encoder, train, val, sentences, opts, select, rec) if opts.refit_head else None
        if refit is not None:
            score, rec = refit["score"], refit["record"]
            best = (score, best_epoch, snapshot, rec)
        w = float(rec.get("prior_weight", 0.0) or 0.0)
        encoder.config.label_prior_weight = w
        selection = {
            "epoch": best_epoch,
            "prior_weight": w,
            "reason": f"best validation {select.describe()} = {score:.4f} over epochs of stages 1-2 and "
            f"prior weights {list(opts.prior_weights)}",
            "score": round(score, 4),
        }
        if refit is not None:
            selection["reason"] += refit["reason"]
            selection["head"] = rec["head"]
    encoder.config.metrics = {
        "history": history,
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "recipe": {k: getattr(opts, k) for k in RECIPE_FIELDS},
    }
    encoder.config.metrics["selection"] = selection
    if history and val is not None:
        chosen = best[3] if best is not None else history[-1]
        encoder.config.metrics["final"] = {
            k: v for k, v in chosen.items() if k.startswith(("map@", "p@")) or k == "select_score"
        }
    encoder.config.version = encoder._make_version("untrained")
    if opts.full_fit and val_cases is None and best is not None:
        encoder = _fit_on_all(encoder, data, best[1], opts, sentences, on_epoch)
    return encoder


def _fit_on_all(selected: CaseEncoder, data: TrainingData, epochs_kept: int, opts, sentences, on_epoch):
    """Train again on every case for the kept number of epochs (same seed and schedule), with the prior
    weight and head choice of the selection run; its validation metrics are kept, marked as such."""
    metrics = selected.config.metrics
    recipe = {k: getattr(opts, k) for k in RECIPE_FIELDS}
    full = _train_model(
        data,
        selected.config,
        epochs=opts.epochs,
        seed=opts.seed,
        batch_size=opts.batch_size,
        lr=opts.lr,
        device=opts.device,
        progress=opts.progress,
        on_epoch=None if on_epoch is None else (lambda record: on_epoch({**record, "fit": "all cases"})),
        sentence_cache=sentences,
        options={**recipe, "refit_head": False, "full_fit": False},
        stop_after=epochs_kept,
    )
    refitted = metrics["selection"].get("head") == "refitted"
    if refitted:
        refit_label_head(full, data)
    full.config.label_prior_weight = selected.config.label_prior_weight
    selection = dict(metrics["selection"])
    selection["reason"] += (
        f"; the final model was trained again on all {len(data)} cases (training + validation) for the kept "
        f"{epochs_kept} epochs{' and its head refitted on them' if refitted else ''}: the validation numbers "
        "are the selection run's"
    )
    full.config.metrics = {**metrics, "selection": selection, "n_train": len(data), "full_fit": True}
    full.config.version = full._make_version("untrained")
    return full


@functools.wraps(_train_model)
def train_model(*args, **kwargs) -> CaseEncoder:
    """See `_train_model`; the process-wide deterministic-algorithms setting is restored afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _train_model(*args, **kwargs)
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _refit_head(encoder, train, val, sentences, opts, select, rec) -> dict[str, Any] | None:
    """Refit the diagnosis head of the kept epoch (`head_refit`), choose the prior weight again with it, and
    keep it when the validation selection score does not drop; else restore the trained head. None when no
    refit was possible; else the score, record and reason of what is kept."""
    head = encoder.net.image.label_head
    if head is None:
        return None
    trained = {k: v.detach().clone() for k, v in head.state_dict().items()}
    if not refit_label_head(encoder, train):
        return None
    new = evaluate(
        encoder, val, _concat(train, val), sentences, prior_weights=opts.prior_weights, select=select
    )
    old_score, new_score = rec.get("select_score"), new.get("select_score")
    acc = f"diagnosis accuracy {rec.get('label_accuracy')} -> {new.get('label_accuracy')}"
    if new_score is not None and (old_score is None or new_score >= old_score):
        reason = (
            f"; the diagnosis head refitted on the training cases' features (logistic regression), "
            f"prior weight chosen again: {new.get('prior_weight')}, score {new_score:.4f} ({acc})"
        )
        return {"score": float(new_score), "record": {**rec, **new, "head": "refitted"}, "reason": reason}
    head.load_state_dict(trained)
    reason = f"; trained diagnosis head kept (refitted: score {new_score}, {acc})"
    return {"score": float(old_score), "record": {**rec, "head": "trained"}, "reason": reason}


def _with_recipe(opts: TrainOptions, overrides: dict[str, Any], where: Any) -> TrainOptions:
    unknown = sorted(set(overrides) - set(RECIPE_FIELDS))
    if unknown:
        raise CaseInputError(where, f"unknown training options {unknown}", f"use {', '.join(RECIPE_FIELDS)}")
    return dataclasses.replace(opts, **overrides)


def _concat(a: TrainingData, b: TrainingData) -> TrainingData:
    return TrainingData(
        ids=a.ids + b.ids,
        rois=np.concatenate([a.rois, b.rois]),
        labels=a.labels + b.labels,
        terms=a.terms + b.terms,
        groups=a.groups + b.groups,
        texts=a.texts + b.texts,
        query_texts=a.query_texts + b.query_texts,
    )


@dataclass
class _TrainArrays:
    """Per-case training inputs, fixed for a whole run (rows = training cases)."""

    rois: torch.Tensor
    sent_full: np.ndarray
    sent_query: np.ndarray
    has_text: np.ndarray
    y_label: np.ndarray
    y_terms: np.ndarray
    has_terms: np.ndarray
    label_weight: torch.Tensor | None = None


def _step(stage, idx, gen, arrays: _TrainArrays, net, heads, opts, dev) -> dict[str, torch.Tensor]:
    """Losses of one batch for the given stage; ``heads`` = (instance classifier, diagnosis proxies)."""
    classifier, proxies = heads
    batch = arrays.rois[idx]
    rows = idx.numpy()
    s = opts.augment_strength
    if stage == 0:
        v1, v2 = augment(batch, gen, s).to(dev), augment(batch, gen, s).to(dev)
        z1 = F.normalize(net.image(v1)["embedding"], dim=1)
        z2 = F.normalize(net.image(v2)["embedding"], dim=1)
        return {"ntxent": nt_xent(z1, z2, opts.temperature)}
    out = net.image(augment(batch, gen, s).to(dev))
    zi = F.normalize(out["embedding"], dim=1)
    inst = torch.as_tensor(idx, dtype=torch.long, device=dev)
    losses = {"inst_img": opts.instance_weight * F.cross_entropy(classifier(zi), inst)}
    ht = torch.from_numpy(arrays.has_text[rows]).to(dev)
    # text view: the full text (report + notes) or, one time in three, the query-side text (notes)
    use_query = torch.rand(len(idx), generator=gen) < 1 / 3
    sq = torch.from_numpy(arrays.sent_query[rows])
    sf = torch.from_numpy(arrays.sent_full[rows])
    query_ok = sq.abs().sum(dim=1) > 0
    sent = torch.where((use_query & query_ok)[:, None], sq, sf).to(dev)
    sent = F.dropout(sent, p=opts.text_dropout, training=True)
    zt = F.normalize(net.text(sent), dim=1)
    if ht.any():
        losses["inst_txt"] = opts.instance_weight * F.cross_entropy(classifier(zt[ht]), inst[ht])
    labels = torch.from_numpy(arrays.y_label[rows]).to(dev)
    if opts.supcon_weight > 0:
        z_all, lab_all = torch.cat([zi, zt[ht]]), torch.cat([labels, labels[ht]])
        t_all = None
        if opts.supcon_terms and arrays.y_terms.shape[1]:
            tb = torch.from_numpy(arrays.y_terms[rows]).to(dev)
            t_all = torch.cat([tb, tb[ht]])
        sc = supervised_contrastive(z_all, lab_all, opts.supcon_temperature, t_all)
        losses["supcon"] = opts.supcon_weight * sc
    if "label_logits" in out and (labels >= 0).any():
        losses["label"] = F.cross_entropy(
            out["label_logits"], labels, weight=arrays.label_weight, ignore_index=-1
        )
        if opts.proxy_weight > 0:
            proxy_ce = F.cross_entropy(proxies(zi), labels, weight=arrays.label_weight, ignore_index=-1)
            losses["proxy"] = opts.proxy_weight * proxy_ce
    hterm = torch.from_numpy(arrays.has_terms[rows]).to(dev)
    if "term_logits" in out and hterm.any():
        tgt = torch.from_numpy(arrays.y_terms[rows]).to(dev)
        losses["terms"] = F.binary_cross_entropy_with_logits(out["term_logits"][hterm], tgt[hterm])
    if stage >= 2:
        for k, v in ranking_loss(zi, zt, ht, labels, inst, opts.margin).items():
            losses[k] = v
    return losses
