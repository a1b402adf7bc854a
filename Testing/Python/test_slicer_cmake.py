"""The extension's CMake files: every Lib file listed, resources present, extension fields set."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "SimilarCaseRetrieval"


def cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\b(.*?)\)", text, flags=re.DOTALL)
    assert match, f"set({variable} ...) not found"
    return [item for item in match.group(1).split() if not item.startswith("#")]


def test_module_cmake_lists_every_file_of_the_lib_package():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = cmake_list(text, "MODULE_PYTHON_SCRIPTS") + cmake_list(text, "MODULE_LIB_RESOURCES")
    listed = {item.replace("${MODULE_NAME}", "SimilarCaseRetrieval") for item in listed}
    on_disk = {
        p.relative_to(MODULE_DIR).as_posix()
        for p in (MODULE_DIR / "SimilarCaseRetrievalLib").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }
    on_disk.add("SimilarCaseRetrieval.py")
    assert not on_disk - listed, f"add to SimilarCaseRetrieval/CMakeLists.txt: {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"listed but missing on disk: {sorted(listed - on_disk)}"
    scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    assert all(s.endswith(".py") for s in scripts), "the macro appends .py to non-Python SCRIPTS"


def test_module_cmake_resources_exist_and_the_test_is_registered():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    for resource in cmake_list(text, "MODULE_PYTHON_RESOURCES"):
        resource = resource.replace("${MODULE_NAME}", "SimilarCaseRetrieval")
        assert (ROOT / "Resources" / resource).is_file(), resource
    assert "slicerMacroBuildScriptedModule(" in text
    assert re.search(
        r"if\(BUILD_TESTING\)\s*\n(.*\n)*?\s*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text
    )


def test_top_level_cmake_declares_the_extension():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"cmake_minimum_required\(VERSION", text)
    assert "project(SimilarCaseRetrieval)" in text
    for field in (
        "HOMEPAGE",
        "CATEGORY",
        "CONTRIBUTORS",
        "DESCRIPTION",
        "ICONURL",
        "SCREENSHOTURLS",
        "DEPENDS",
    ):
        assert re.search(rf'set\(EXTENSION_{field} "[^"]+"\)', text), field
    assert 'set(EXTENSION_CATEGORY "Informatics")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    order = [
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(SimilarCaseRetrieval)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)


def test_top_level_cmake_requires_slicer_5_10_and_names_the_contributors():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(
        r'if\(Slicer_REQUIRED_PYTHON_VERSION VERSION_LESS "3\.10"\)\s*\n\s*message\(FATAL_ERROR', text
    )
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', text).group(1)
    assert contributors != "SimilarCaseRetrieval developers"
    assert re.fullmatch(r"[^,()]+ \([^()]+\)(, [^,()]+ \([^()]+\))*", contributors), (
        "Name (Organisation), ..."
    )


def test_extensions_index_entry_draft_matches_the_extension():
    """The draft catalog entry (schema 1.0.1, as MONAIAuto3DSeg.json in Slicer/ExtensionsIndex)."""
    import json

    entry = json.loads(
        (ROOT / "packaging" / "ExtensionsIndex" / "SimilarCaseRetrieval.json").read_text(encoding="utf-8")
    )
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= {
        "$schema",
        "category",
        "scm_url",
        "scm_revision",
        "scm_type",
        "build_dependencies",
        "build_subdirectory",
        "enabled",
        "tier",
    }
    assert entry["build_dependencies"] == ["PyTorch"]
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in text
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"#]+)', text).group(1)
    assert homepage.rstrip("/") == entry["scm_url"]
    assert entry["tier"] in (1, 3, 5)


def write_lib_list() -> list[str]:
    """Rewrite the Lib file lists of SimilarCaseRetrieval/CMakeLists.txt from the files on disk."""
    path = MODULE_DIR / "CMakeLists.txt"
    text = path.read_text(encoding="utf-8")
    files = sorted(
        p.relative_to(MODULE_DIR).as_posix().replace("SimilarCaseRetrievalLib", "${MODULE_NAME}Lib", 1)
        for p in (MODULE_DIR / "SimilarCaseRetrievalLib").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    scripts = ["${MODULE_NAME}.py"] + [f for f in files if f.endswith(".py")]
    data = [f for f in files if not f.endswith(".py")]
    for variable, items in (("MODULE_PYTHON_SCRIPTS", scripts), ("MODULE_LIB_RESOURCES", data)):
        body = "".join(f"\n  {item}" for item in items)
        text = re.sub(
            rf"set\({variable}\b.*?\)", f"set({variable}{body}\n  )", text, count=1, flags=re.DOTALL
        )
    path.write_text(text, encoding="utf-8")
    return files


if __name__ == "__main__":  # `python Testing/Python/test_slicer_cmake.py` updates the list
    print(f"{len(write_lib_list())} Lib files listed in {MODULE_DIR / 'CMakeLists.txt'}")
