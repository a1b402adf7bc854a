"""Train an ensemble: the same recipe with seeds seed, seed + 1, ... into one model (`encoders.ensemble`).

Each member is a complete `train_model` run with its own seed (initialisation, augmentation and validation
split: every case trains most members) and its own selection. ``members="auto"`` trains members while the
next one, at the mean time of those before, still ends within ``budget_s`` (at most `MAX_MEMBERS`): a 2D
archive of 1000 images gets four networks on a 2-core CPU, a 300-case 3D archive one (docs/training.md)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders import CaseEncoder
from ..encoders.model import CaseNet
from ..errors import CaseInputError
from .checkpoint import STATE
from .data import as_training_data
from .loop import train_model

log = logging.getLogger(__name__)
MAX_MEMBERS = 4
# time `members="auto"` may spend (the default of `similar-cases train` and `evaluate`)
DEFAULT_BUDGET_S = 900.0
DEFAULT_MEMBERS = "auto"


def parse_members(value: int | str) -> int | str:
    """``"auto"`` or a positive number of members (`similar-cases train --members`)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise CaseInputError("--members", f"{value!r} is not 'auto' or a positive number", "e.g. --members 3")
    return n


def next_member_fits(seconds: list[float], budget_s: float, limit: int = MAX_MEMBERS) -> bool:
    """Whether ``members="auto"`` trains one more: below ``limit`` and the next one, at the mean time of
    those trained so far, ends within ``budget_s``."""
    if len(seconds) >= limit:
        return False
    return sum(seconds) + float(np.mean(seconds)) <= budget_s


def train_ensemble(
    cases_or_store: Any,
    config,
    *,
    members: int | str = DEFAULT_MEMBERS,
    budget_s: float = DEFAULT_BUDGET_S,
    seed: int = 0,
    rois: np.ndarray | None = None,
    store: Any = None,
    progress: bool = True,
    checkpoint_dir: Path | str | None = None,
    resume: Path | str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **train_kwargs: Any,
) -> CaseEncoder:
    """`train_model` once per member, combined into one `CaseEncoder`. ``members=1`` is `train_model`
    itself (same checkpoint folder). Otherwise member k's checkpoint is ``checkpoint_dir/member-k`` and a
    finished member is kept as a model folder ``member-k/model``: ``resume`` (that folder) trains only what is
    left."""
    members = parse_members(members)
    if members == 1:
        return train_model(
            cases_or_store,
            config,
            seed=seed,
            rois=rois,
            store=store,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            on_epoch=on_epoch,
            **train_kwargs,
        )
    data = as_training_data(cases_or_store, config, rois=rois, store=store, progress=progress)
    limit = MAX_MEMBERS if members == "auto" else int(members)
    encoders: list[CaseEncoder] = []
    seconds: list[float] = []
    folder = None if checkpoint_dir is None and resume is None else Path(resume or checkpoint_dir)
    while len(encoders) < limit and (
        not encoders or members != "auto" or next_member_fits(seconds, budget_s, limit)
    ):
        k = len(encoders)
        member_dir = None if folder is None else folder / f"member-{k}"
        start = time.perf_counter()
        done = None if member_dir is None else member_dir / "model"
        if resume is not None and done is not None and (done / "config.json").is_file():
            encoder = CaseEncoder.load(done)
            took = float(encoder.config.metrics.get("member_seconds", 0.0))
        else:
            if encoders:  # the first member's vocabularies for all (its training part decided them)
                config = dataclasses.replace(config, labels=encoders[0].labels, terms=encoders[0].terms)
            can_resume = resume is not None and member_dir is not None and (member_dir / STATE).is_file()
            encoder = train_model(
                data,
                config,
                seed=seed + k,
                progress=progress,
                checkpoint_dir=member_dir,
                resume=member_dir if can_resume else None,
                on_epoch=None if on_epoch is None else _tagged(on_epoch, k, limit, members),
                **train_kwargs,
            )
            took = time.perf_counter() - start
            encoder.config.metrics["member_seconds"] = round(took, 1)
            if done is not None:
                encoder.save(done)
        log.info("ensemble member %d (seed %d) trained in %.0f s", k + 1, seed + k, took)
        encoders.append(encoder)
        seconds.append(took)
    return combine(encoders, seed, members, budget_s)


def _tagged(on_epoch, k: int, limit: int, members: int | str):
    total = f"{limit}" if members != "auto" else f"up to {limit}"
    return lambda record: on_epoch({**record, "member": f"{k + 1}/{total}"})


def combine(encoders: list[CaseEncoder], seed: int, members: int | str, budget_s: float) -> CaseEncoder:
    """One encoder from trained members: an ensemble net, the median of their prior weights, member 1's
    history and validation numbers, and every member's selection in ``metrics["ensemble"]``."""
    first = encoders[0]
    if len(encoders) == 1:
        return first
    vocab = (first.labels, first.terms)
    if any((e.labels, e.terms) != vocab for e in encoders):
        raise CaseInputError("ensemble", "members disagree on diagnoses or terms", "retrain all members")
    weights = [float(e.config.label_prior_weight) for e in encoders]
    w = float(np.median(weights))
    how = f"'auto' within a {budget_s:.0f} s budget" if members == "auto" else "fixed"
    selection = dict(first.config.metrics.get("selection", {}))
    selection["reason"] = (
        f"ensemble of {len(encoders)} networks (seeds {seed}..{seed + len(encoders) - 1}, {how}), each "
        f"selected on its own validation split; prior weight = median of theirs {weights} = {w:g}. "
        f"Member 1: {selection.get('reason', '')}"
    )
    selection["prior_weight"] = w
    metrics = {
        **first.config.metrics,
        "selection": selection,
        "ensemble": {
            "members": len(encoders),
            "seeds": [seed + i for i in range(len(encoders))],
            "member_seconds": [e.config.metrics.get("member_seconds") for e in encoders],
            "selections": [e.config.metrics.get("selection") for e in encoders],
            "finals": [e.config.metrics.get("final") for e in encoders],
        },
    }
    metrics.pop("member_seconds", None)
    config = dataclasses.replace(
        first.config,
        members=len(encoders),
        label_prior_weight=w,
        metrics=metrics,
        version="",
        trained_date="",
    )
    net = CaseNet.of_members(config, [e.net for e in encoders])
    return CaseEncoder(config, net)
