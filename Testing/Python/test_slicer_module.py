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
        "notes": "QTextEdit",
        "archiveFolder": "ctkPathLineEdit",
        "k": "QSpinBox",
        "textWeight": "ctkSliderWidget",
        "labelFilter": "QLineEdit",
    }
    for parameter, widget_class in expected.items():
        assert widgets[bound[parameter]].get("class") == widget_class


def test_sequence_selectors_match_parameters(scr):
    hints = typing.get_type_hints(scr.SimilarCaseRetrievalParameterNode)
    for sequence, parameter in scr.SEQUENCE_PARAMETERS.items():
        assert hints[parameter] is slicer.vtkMRMLScalarVolumeNode, sequence


def test_parameter_node_is_a_scene_singleton_with_typed_defaults(scr, scene):
    logic = scr.SimilarCaseRetrievalLogic()
    node = logic.getParameterNode()
    assert node.k == 10 and node.textWeight == pytest.approx(0.3) and node.viewerCount == 3
    assert node.t2Volume is None and scr._pathOrNone(node.archiveFolder) is None
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T2")
    node.t2Volume = volume
    node.k = 7
    node.archiveFolder = Path("/tmp/archive")
    again = logic.getParameterNode()
    assert again.t2Volume is volume and again.k == 7 and again.archiveFolder == Path("/tmp/archive")
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


def test_requirements_exclude_torch_and_are_checked_by_installed_version(scr, tmp_path):
    requirements = ROOT / "Resources" / "requirements.txt"
    lines = scr._requirementLines(requirements)
    names = [re.split(r"[<>=!~\[; ]", line)[0].lower() for line in lines]
    assert "torch" not in names and "chroma-hnswlib" in names
    fake = tmp_path / "requirements.txt"
    fake.write_text("# comment\npytest>=1.0\npytest>=999\nno-such-package-scr-test\n", encoding="utf-8")
    assert scr.missingRequirements(fake) == ["pytest>=999", "no-such-package-scr-test"]


def test_module_imports_no_qt_at_top_level():
    source = MODULE_FILE.read_text(encoding="utf-8")
    top_level_imports = re.findall(r"^(?:import|from) (\w+)", source, flags=re.MULTILINE)
    assert not {"qt", "ctk", "torch", "SimpleITK"} & set(top_level_imports)
