"""Loaders of the real public data sets (path given by the caller; nothing is copied into the repo)."""

from __future__ import annotations

DATASETS = ("mmotu", "adrenal", "lidc", "iu-xray")


def load_dataset(name: str, path, **kwargs):
    """(index collection, query collection or None) for a named data set; None means cross-validate."""
    if name == "mmotu":
        from .mmotu import load_mmotu

        return load_mmotu(path, **kwargs), None
    if name == "adrenal":
        from .adrenal import load_adrenal

        return load_adrenal(path, **kwargs)
    if name == "lidc":
        from .lidc import load_lidc

        return load_lidc(path, **kwargs), None
    if name == "iu-xray":
        from .iu_xray import load_iu_xray

        return load_iu_xray(path, **kwargs)
    raise ValueError(f"unknown data set {name!r}: use one of {', '.join(DATASETS)}")
