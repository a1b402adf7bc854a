"""What the Slicer module must install before first use, and how (Qt-free; the dialogs are the module's).

torch comes from the PyTorch extension (PyTorchUtils: the right CPU/CUDA build); the rest from
Resources/requirements.txt through `slicer.packaging.pip_ensure` (Slicer >= 5.12) or `slicer.util.pip_install`.
The user confirms once, for everything; in testing mode nothing is installed.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

TORCH_REQUIREMENT = ">=2.3"  # the tests ran with 2.13
# A requirement is also met by a distribution providing the same module (hnswlib built from source).
EQUIVALENT_DISTRIBUTIONS = {"chroma-hnswlib": ("hnswlib",)}


def requirement_lines(path: Path | str) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def installed_version(name: str) -> str | None:
    for candidate in (name, *EQUIVALENT_DISTRIBUTIONS.get(name.lower(), ())):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _satisfied(name: str, specifier: str, version: str | None) -> bool:
    if version is None:
        return False
    if not specifier:
        return True
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(specifier).contains(version, prereleases=True)


def missing_requirements(path: Path | str) -> list[str]:
    """Requirement lines of `path` that this Python does not satisfy."""
    from packaging.requirements import Requirement

    missing = []
    for line in requirement_lines(path):
        requirement = Requirement(line)
        if not _satisfied(requirement.name, str(requirement.specifier), installed_version(requirement.name)):
            missing.append(line)
    return missing


def torch_problem(version: str | None, requirement: str = TORCH_REQUIREMENT) -> str | None:
    """None when this torch fits, else what is wrong in a few words ('not installed', '1.13 is older than ...')."""
    if version is None:
        return "not installed"
    if not _satisfied("torch", requirement, re.sub(r"\+.*$", "", version)):
        return f"version {version} does not meet {requirement}"
    return None


def install_requirements(slicer_module, path: Path | str, requester: str) -> None:
    """pip-install what `path` lists that is missing: `slicer.packaging.pip_ensure` where Slicer has it (5.12+;
    no second dialog: the module has asked already), else `slicer.util.pip_install`."""
    packaging = getattr(slicer_module, "packaging", None)
    if packaging is None:
        try:
            import slicer.packaging as packaging  # noqa: PLC0415 - only in Slicer >= 5.12
        except ImportError:
            packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure(
            packaging.load_requirements(str(path)), prompt_install=False, requester=requester
        )
    else:
        slicer_module.util.pip_install(missing_requirements(path))
