"""A tiny indexed archive for the Slicer module's self-test (and its pytest twin): built in seconds, offline."""

from __future__ import annotations

from pathlib import Path


def tiny_model_config(name: str = "scr-selftest"):
    """A small random-init model over the synthetic archive's sequences, terms and labels."""
    from . import terms
    from .encoders import ModelConfig
    from .roi import RoiConfig
    from .synthetic import LABELS, SEQUENCES

    return ModelConfig(
        name=name,
        sequences=list(SEQUENCES),
        roi=RoiConfig(grid=(16, 16, 4)),
        embed_dim=32,
        terms=terms.vocabulary(),
        labels=list(LABELS),
        widths=(8, 16),
        groups=4,
        text_hidden=32,
    )


def build_tiny_indexed_archive(folder: Path | str, n_cases: int = 12, seed: int = 0) -> tuple[Path, Path]:
    """Synthetic tiny archive + a random-init model, indexed; returns (archive_dir, model_dir)."""
    from .encoders import CaseEncoder
    from .search import SearchEngine
    from .synthetic import make_archive

    folder = Path(folder)
    archive = make_archive(folder / "archive", n_cases=n_cases, seed=seed, size="tiny", progress=False)
    model_dir = folder / "model"
    CaseEncoder.create(tiny_model_config(), seed=seed).save(model_dir)
    engine = SearchEngine(archive, model_dir, auto_index=True)
    engine.close()
    return archive, model_dir
