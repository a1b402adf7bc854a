"""`ModelConfig`: everything needed to rebuild a `CaseEncoder` from its safetensors weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CaseInputError

CONFIG_FORMAT = 1
DEFAULT_SEQUENCES = ("T2", "T1", "T1FS")


def _roi_config_cls():
    from ..roi import RoiConfig

    return RoiConfig


def _default_roi():
    return _roi_config_cls()()


@dataclass
class ModelConfig:
    """Architecture, input (sequences + ROI grid), output vocabularies and text model of one encoder.

    ``version`` is set when the model is saved: ``<name>-<trained_date>-<8 hex of the weights hash>``.
    ``text_model`` is ``"default"`` (the bundled all-MiniLM-L6-v2), a sentence-transformers name or a
    local path; ``text_dim`` is its embedding size, checked when the text model is loaded.
    ``text_quantization``: ``"int8"`` (the text model's Linear layers quantised: 3x faster text encoding; the
    default for new models) or ``"none"`` (fp32; what a config.json without the key means).
    """

    version: str = ""
    sequences: list[str] = field(default_factory=lambda: list(DEFAULT_SEQUENCES))
    roi: Any = field(default_factory=_default_roi)  # roi.RoiConfig
    embed_dim: int = 256
    terms: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    text_model: str = "default"
    text_dim: int = 384
    text_quantization: str = "int8"
    # image CNN (see encoders/image.py)
    widths: tuple[int, ...] = (16, 32, 64, 96)
    stem_stride: int = 4
    groups: int = 8
    text_hidden: int = 512
    # diagnosis prior in the image vector (chosen on the validation split by training; 0 = plain embedding,
    # what a config.json without the key means): see `with_label_prior`
    label_prior_weight: float = 0.0
    # test-time augmentation: image outputs are the mean of the ROI's and its left-right mirror's (embedding
    # re-normalised); False = the ROI alone, what a config.json without the key means
    flip_tta: bool = True
    # networks in the ensemble (`encoders.ensemble`): K image networks and K text projections trained with
    # seeds seed .. seed + K - 1; 1 = one network, what a config.json without the key means
    members: int = 1
    # provenance
    name: str = "scr-ovary-mri"
    trained_date: str = ""
    training_command: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def in_channels(self) -> int:
        """Sequences plus the mask channel."""
        return len(self.sequences) + 1

    @property
    def roi_shape(self) -> tuple[int, int, int]:
        """Expected (Z, Y, X) of an ROI tensor (the grid is given as X, Y, Z)."""
        gx, gy, gz = self.roi.grid
        return (int(gz), int(gy), int(gx))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self) if not hasattr(self.roi, "to_dict") else {**asdict(self), "roi": self.roi.to_dict()}
        d["widths"] = list(self.widths)
        d["format"] = CONFIG_FORMAT
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | Path | None = None) -> ModelConfig:
        d = dict(d)
        fmt = d.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise CaseInputError(
                where, f"model config format {fmt} is not {CONFIG_FORMAT}", "retrain or update"
            )
        d.setdefault("text_quantization", "none")  # written before int8 text existed: fp32
        d.setdefault("flip_tta", False)  # written before test-time flips existed: the ROI alone
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise CaseInputError(
                where, f"unknown model config keys {unknown}", "use a config.json written by save()"
            )
        roi_cls = _roi_config_cls()
        if "roi" in d:
            d["roi"] = roi_cls.from_dict(d["roi"]) if isinstance(d["roi"], dict) else d["roi"]
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise CaseInputError(
                where, f"bad model config ({exc})", "use a config.json written by save()"
            ) from exc

    @classmethod
    def from_json(cls, text: str, where: str | Path | None = None) -> ModelConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CaseInputError(
                where, f"not valid JSON ({exc.msg} line {exc.lineno})", "restore config.json"
            ) from exc
        if not isinstance(d, dict):
            raise CaseInputError(where, "model config is not a JSON object", "restore config.json")
        return cls.from_dict(d, where)
