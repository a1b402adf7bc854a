"""The Slicer module file: metadata, parameter node, .ui <-> code names, requirements (headless)."""

from __future__ import annotations

import re
import sys
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

import slicer_stubs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = ROOT / "SimilarCaseRetrieval" / "SimilarCaseRetrieval.py"
UI_FILE = ROOT / "Resources" / "UI" / "SimilarCaseRetrieval.ui"


@pytest.fixture(scope="module")
def scr():
    slicer_stubs.install()
    sys.path.insert(0, str(MODULE_FILE.parent))
    try:
        import SimilarCaseRetrieval
    finally:
        sys.path.remove(str(MODULE_FILE.parent))
    return SimilarCaseRetrieval


@pytest.fixture(autouse=True)
def scene():
    slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def ui_parameter_names() -> dict[str, str]:
    """{SlicerParameterName: widget name} from the .ui dynamic properties."""
    out = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                out[prop.find("string").text] = name
    return out


def test_module_metadata_cites_data_and_method(scr):
    parent = types.SimpleNamespace()
    scr.SimilarCaseRetrieval(parent)
    assert parent.categories == ["Informatics"]
    assert parent.title and parent.contributors
    for source in ("MMOTU", "MedMNIST", "LIDC-IDRI", "IU X-ray", "Zheng"):
        assert source in parent.acknowledgementText


def test_every_ui_name_used_by_the_widget_exists_in_the_ui_file(scr):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert {"searchButton", "resultsTable", "segmentSelector", "archiveFolder"} <= used
    missing = used - set(ui_widgets())
    assert not missing, f"widgets used in SimilarCaseRetrieval.py but absent from the .ui: {sorted(missing)}"


def test_every_parameter_has_a_widget_and_every_bound_widget_a_parameter(scr):
    parameters = set(typing.get_type_hints(scr.SimilarCaseRetrievalParameterNode, include_extras=True))
    assert {
        "t2Volume",
        "t1Volume",
        "t1fsVolume",
        "segmentation",
        "segmentId",
        "notes",
        "archiveFolder",
        "k",
        "textWeight",
        "labelFilter",
        "termFilter",
    } <= parameters
    bound = ui_parameter_names()
    widgets = ui_widgets()
    for parameter in parameters:
        widget = bound.get(parameter) or scr.MANUAL_PARAMETER_WIDGETS.get(parameter)
        assert widget in widgets, f"parameter {parameter} has no widget"
    assert set(bound) <= parameters, f"unknown SlicerParameterName(s): {sorted(set(bound) - parameters)}"
    # A widget bound by connectGui must be a type the parameter node wrapper can connect to its parameter.
    expected = {
        "t2Volume": "qMRMLNodeComboBox",
        "segmentation": "qMRMLNodeComboBox",
        "k": "QSpinBox",
        "textWeight": "ctkSliderWidget",
        "labelFilter": "QLineEdit",
    }
    for parameter, widget_class in expected.items():
        assert widgets[bound[parameter]].get("class") == widget_class
    # synced by the widget, never by connectGui (cursor jumps in text boxes; "." written into path fields)
    assert not set(bound) & set(scr.MANUAL_PARAMETER_WIDGETS)
    assert widgets["notes"].get("class") == widgets["newCaseReport"].get("class") == "QTextEdit"
    assert set(scr.MANUAL_TEXT_PARAMETERS) == {"notes", "newCaseReport"}


def test_sequence_selectors_match_parameters(scr):
    hints = typing.get_type_hints(scr.SimilarCaseRetrievalParameterNode)
    for sequence, parameter in scr.SEQUENCE_PARAMETERS.items():
        assert hints[parameter] is slicer.vtkMRMLScalarVolumeNode, sequence


def test_parameter_node_is_a_scene_singleton_with_typed_defaults(scr, scene):
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    assert node.k == 10 and node.textWeight == pytest.approx(0.3) and node.viewerCount == 3
    assert node.t2Volume is None and node.archiveFolder == "" and scr._pathOrNone(node.archiveFolder) is None
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T2")
    node.t2Volume = volume
    node.k = 7
    node.archiveFolder = "/tmp/archive"
    again = logic.getParameterNode()
    assert again.t2Volume is volume and again.k == 7 and again.archiveFolder == "/tmp/archive"
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1


def test_query_volumes_follow_the_selectors_and_extra_needs_a_name(scr, scene):
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    t2 = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T2")
    t1fs = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1FS")
    node.t2Volume, node.t1fsVolume = t2, t1fs
    assert logic.queryVolumeNodes(node) == {"T2": t2, "T1FS": t1fs}
    node.extraVolume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "dwi")
    with pytest.raises(ValueError, match="Fix:"):
        logic.queryVolumeNodes(node)
    node.extraSequenceName = "DWI"
    assert list(logic.queryVolumeNodes(node)) == ["T2", "T1FS", "DWI"]


def test_search_without_archive_or_segmentation_is_a_one_line_error(scr, scene):
    import numpy as np

    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    node.t2Volume = slicer.util.addVolumeFromArray(np.ones((3, 4, 5), np.float32), name="T2")
    with pytest.raises(ValueError) as caught:
        logic.search(node)
    assert "segmentation" in str(caught.value) and "\n" not in str(caught.value)


def test_requirements_exclude_torch_pin_hnswlib_wheels_and_are_checked_by_installed_version(tmp_path):
    from SimilarCaseRetrievalLib import slicer_dependencies as deps

    lines = deps.requirement_lines(ROOT / "Resources" / "requirements.txt")
    names = {re.split(r"[<>=!~\[; ]", line)[0].lower(): line for line in lines}
    assert "torch" not in names and names["chroma-hnswlib"] == "chroma-hnswlib==0.7.5"
    assert all("<" in line or "==" in line for line in lines), "every requirement has an upper bound"
    fake = tmp_path / "requirements.txt"
    fake.write_text("# comment\npytest>=1.0\npytest>=999\nno-such-package-scr-test\n", encoding="utf-8")
    assert deps.missing_requirements(fake) == ["pytest>=999", "no-such-package-scr-test"]


def test_installed_torch_is_version_checked():
    from SimilarCaseRetrievalLib import slicer_dependencies as deps

    assert deps.torch_problem(None) == "not installed"
    assert deps.torch_problem("2.13.0+cpu") is None
    assert "does not meet" in deps.torch_problem("1.13.1")


def test_requirements_install_with_pip_ensure_without_a_second_dialog_else_pip_install(tmp_path):
    """Slicer >= 5.12 has slicer.packaging.pip_ensure (checked in Slicer's source); older ones pip_install."""
    from SimilarCaseRetrievalLib import slicer_dependencies as deps

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-scr-test>=1\n", encoding="utf-8")
    calls = []
    packaging = types.SimpleNamespace(
        load_requirements=lambda path: [path],
        pip_ensure=lambda reqs, **kw: calls.append(("pip_ensure", reqs, kw)),
    )
    util = types.SimpleNamespace(pip_install=lambda reqs: calls.append(("pip_install", reqs)))
    deps.install_requirements(types.SimpleNamespace(packaging=packaging, util=util), requirements, "SCR")
    assert calls[-1] == ("pip_ensure", [str(requirements)], {"prompt_install": False, "requester": "SCR"})
    deps.install_requirements(types.SimpleNamespace(util=util), requirements, "SCR")
    assert calls[-1] == ("pip_install", ["no-such-package-scr-test>=1"])


def test_testing_mode_never_installs(scr, monkeypatch):
    from SimilarCaseRetrievalLib import slicer_dependencies as deps

    monkeypatch.setattr(deps, "missing_requirements", lambda path: ["needed-package>=1"])
    installed = []
    monkeypatch.setattr(deps, "install_requirements", lambda *a, **k: installed.append(a))
    app = types.SimpleNamespace(commandOptions=lambda: types.SimpleNamespace(testingEnabled=True))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    with pytest.raises(ValueError, match="testing mode never installs"):
        scr.SimilarCaseRetrievalLogic().ensureDependencies()
    assert not installed


def test_old_python_gets_one_message_naming_the_slicer_version(scr):
    assert scr.unsupportedPythonMessage((3, 12, 10)) is None
    message = scr.unsupportedPythonMessage((3, 9, 10))
    assert "Slicer 5.10" in message and "3.9.10" in message and "\n" not in message


def test_module_file_parses_with_the_python_3_9_grammar():
    import ast

    ast.parse(MODULE_FILE.read_text(encoding="utf-8"), feature_version=(3, 9))


def test_only_a_real_archive_is_remembered(scr, tmp_path):
    assert scr.rememberableArchive("") is None and scr.rememberableArchive(".") is None
    assert scr.rememberableArchive(str(tmp_path / "partial")) is None  # a path typed halfway
    (tmp_path / "cases.sqlite").write_bytes(b"")
    assert scr.rememberableArchive(str(tmp_path)) == str(tmp_path)


def test_module_imports_no_qt_at_top_level():
    source = MODULE_FILE.read_text(encoding="utf-8")
    top_level_imports = re.findall(r"^(?:import|from) (\w+)", source, flags=re.MULTILINE)
    assert not {"qt", "ctk", "torch", "SimpleITK"} & set(top_level_imports)


def test_help_texts_describe_the_one_mark_control():
    """The panel's tooltips, the module help and the guide all describe the same control (no tick boxes)."""
    from SimilarCaseRetrievalLib.slicer_logic import MARK_SYMBOLS, RESULT_COLUMNS

    ui = UI_FILE.read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "slicer.md").read_text(encoding="utf-8")
    help_text = MODULE_FILE.read_text(encoding="utf-8")
    for text in (ui, guide, help_text):
        assert not re.search(r"\b[Tt]ick|untick", text)
    for symbol in (MARK_SYMBOLS["relevant"], MARK_SYMBOLS["not relevant"]):
        assert symbol in ui and symbol in guide
    assert RESULT_COLUMNS[0] == "Mark" and RESULT_COLUMNS.index("Case") < RESULT_COLUMNS.index("Report")
