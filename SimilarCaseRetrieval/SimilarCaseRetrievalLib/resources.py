"""Locate the extension's `Resources/` folder (icons, UI, requirements, shipped model)."""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """The Resources folder: $SCR_RESOURCES, the repository's top level, or beside the Slicer module."""
    env = os.environ.get("SCR_RESOURCES")
    candidates = [Path(env)] if env else []
    candidates += [_HERE.parents[1] / "Resources", _HERE.parent / "Resources"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def default_model_dir() -> Path:
    """The shipped default model (trained on the synthetic ovarian-MRI archive)."""
    env = os.environ.get("SCR_MODEL")
    return Path(env) if env else resources_dir() / "Model"


def default_archive_dir() -> Path:
    """Where `similar-cases demo` writes the synthetic archive unless told otherwise."""
    env = os.environ.get("SCR_ARCHIVE")
    return Path(env) if env else Path.cwd() / "demo-archive"
