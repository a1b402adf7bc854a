"""Training checkpoints: ``checkpoint.safetensors`` (model, shared instance classifier, optimizer moments),
``config.json`` (ModelConfig) and ``state.json`` (epoch, options, history). Never pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import CaseInputError

WEIGHTS = "checkpoint.safetensors"
STATE = "state.json"
CONFIG = "config.json"


def save_checkpoint(
    directory: Path,
    config_json: str,
    tensors: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    out = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for name, value in slots.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"opt.{idx}.{name}"] = t.detach().cpu().contiguous().reshape(t.shape)
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(out, str(tmp))
    tmp.replace(directory / WEIGHTS)
    (directory / CONFIG).write_text(config_json + "\n", encoding="utf-8")
    state = {**state, "param_groups": opt["param_groups"]}
    (directory / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")


def read_checkpoint(directory: Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(config json, tensors, state) of a checkpoint folder; missing/corrupt -> CaseInputError."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (WEIGHTS, STATE, CONFIG):
        if not (directory / name).is_file():
            raise CaseInputError(directory / name, "missing", "pass a checkpoint folder written by training")
    try:
        tensors = load_file(str(directory / WEIGHTS))
        state = json.loads((directory / STATE).read_text(encoding="utf-8"))
    except Exception as exc:  # safetensors / json errors
        raise CaseInputError(
            directory, f"unreadable checkpoint ({exc})", "restart training without --resume"
        ) from exc
    return (directory / CONFIG).read_text(encoding="utf-8"), tensors, state


def optimizer_state(tensors: dict[str, torch.Tensor], param_groups: list[dict]) -> dict[str, Any]:
    """Rebuild an optimizer state_dict from the ``opt.<idx>.<slot>`` tensors."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, slot = key.split(".", 2)
            state.setdefault(int(idx), {})[slot] = value
    return {"state": state, "param_groups": param_groups}
