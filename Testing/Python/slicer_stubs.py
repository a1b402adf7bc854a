"""Test-only stand-ins for the Qt-level base classes of Slicer scripted modules.

slicer-core provides the real MRML scene, nodes and much of slicer.util, but not
`slicer.ScriptedLoadableModule` (it needs the Qt application) nor, in some versions,
`slicer.parameterNodeWrapper`. `install()` injects minimal stand-ins for exactly those, and only
when absent, so that SimilarCaseRetrieval.py can be imported and its Logic run under pytest.
Everything MRML stays real.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import types
import typing
import unittest


def _scene():
    import slicer

    if getattr(slicer, "mrmlScene", None) is None:
        slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene


# --- slicer.ScriptedLoadableModule -------------------------------------------------------------


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = type(self).__name__.removesuffix("Widget")


class ScriptedLoadableModuleLogic:
    """Like Slicer's: the parameter node is a singleton vtkMRMLScriptedModuleNode tagged with the module name."""

    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        scene = _scene()
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            return node
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(self.moduleName)
        node.SetName(scene.GenerateUniqueName(self.moduleName))
        node.SetAttribute("ModuleName", self.moduleName)
        return scene.AddNode(node)


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        logging.info(message)


# --- slicer.parameterNodeWrapper ---------------------------------------------------------------


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def _split(hint):
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return base, extras
    return hint, []


def _is_node_type(base) -> bool:
    import slicer

    return isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode)


def _property(name, hint, default):
    base, extras = _split(hint)
    ranges = [e for e in extras if isinstance(e, WithinRange)]
    choices = [e for e in extras if isinstance(e, Choice)]

    if _is_node_type(base):

        def get(self):
            return self.parameterNode.GetNodeReference(name)

        def set_(self, value):
            if value is not None and not isinstance(value, base):
                raise TypeError(f"{name}: expected {base.__name__}, got {type(value).__name__}")
            self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)

        return property(get, set_)

    def get(self):
        if not self.parameterNode.GetParameterNames() or name not in self.parameterNode.GetParameterNames():
            return default
        text = self.parameterNode.GetParameter(name)
        if base is bool:
            return text == "True"
        if base in (int, float):
            return base(text)
        if base is pathlib.Path:
            return pathlib.Path(text)
        return text

    def set_(self, value):
        if base in (int, float):
            value = base(value)
            for r in ranges:
                if not r.minimum <= value <= r.maximum:
                    raise ValueError(f"{name}={value} is outside [{r.minimum}, {r.maximum}]")
        for c in choices:
            if value not in c.choices:
                raise ValueError(f"{name}={value!r} is not one of {c.choices}")
        self.parameterNode.SetParameter(name, str(value))

    return property(get, set_)


def parameterNodeWrapper(cls):
    """Typed properties over a vtkMRMLScriptedModuleNode (values stored as node parameters/references)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {}
    for name, hint in hints.items():
        base, _ = _split(hint)
        if hasattr(cls, name):
            defaults[name] = getattr(cls, name)
        elif base is pathlib.Path:
            defaults[name] = pathlib.Path()
        elif not _is_node_type(base):
            defaults[name] = base()

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode

    namespace = {"__init__": __init__, "__doc__": cls.__doc__, "__annotations__": dict(cls.__annotations__)}
    for name, hint in hints.items():
        namespace[name] = _property(name, hint, defaults.get(name))
    return type(cls.__name__, (), namespace)


def install() -> None:
    """Inject the stand-ins as `slicer.ScriptedLoadableModule` / `slicer.parameterNodeWrapper` when absent."""
    import slicer

    _scene()
    try:
        import slicer.ScriptedLoadableModule  # noqa: F401
    except ImportError:
        module = types.ModuleType("slicer.ScriptedLoadableModule")
        for cls in (
            ScriptedLoadableModule,
            ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleTest,
        ):
            setattr(module, cls.__name__, cls)
        sys.modules[module.__name__] = module
        slicer.ScriptedLoadableModule = module
    try:
        import slicer.parameterNodeWrapper  # noqa: F401
    except ImportError:
        module = types.ModuleType("slicer.parameterNodeWrapper")
        module.parameterNodeWrapper = parameterNodeWrapper
        module.WithinRange = WithinRange
        module.Choice = Choice
        sys.modules[module.__name__] = module
        slicer.parameterNodeWrapper = module
    if not hasattr(slicer.util, "VTKObservationMixin"):  # pragma: no cover - slicer-core has it
        raise ImportError("slicer.util.VTKObservationMixin is missing from slicer-core")


def import_module():
    """`install()`, then import SimilarCaseRetrieval.py from the repository (the tests' `scr` fixture)."""
    install()
    folder = str(pathlib.Path(__file__).resolve().parents[2] / "SimilarCaseRetrieval")
    sys.path.insert(0, folder)
    try:
        import SimilarCaseRetrieval
    finally:
        sys.path.remove(folder)
    return SimilarCaseRetrieval
