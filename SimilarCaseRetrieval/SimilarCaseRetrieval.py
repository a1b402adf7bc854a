"""SimilarCaseRetrieval: find similar past cases from a segmented study and clinical notes, in 3D Slicer.

Thin Slicer glue: the work is done by SimilarCaseRetrievalLib (never imports Qt); long work (model, index,
search, demo build) runs in a separate worker process (SimilarCaseRetrievalLib/worker), polled from a QTimer,
so the GUI never waits. Qt, ctk and the library's heavy dependencies are imported inside the methods that
need them, so the Logic and self-test also run headless (e.g. under pytest with slicer-core).

This file must parse and import on the Python of older Slicer releases (3.9) so that it can say, in one
message, which Slicer it needs: no syntax or stdlib newer than 3.9 here (checked by `make test`).
"""

import logging
import os
import pathlib
import sys
import unittest
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # headless slicer-core has no translation support

    def _(text):
        return text


MODULE_NAME = "SimilarCaseRetrieval"
# Slicer 5.10 is the first release with Python >= 3.10 (5.6 and 5.8 bundle 3.9.10; 5.10 and 5.12 bundle 3.12.10).
MINIMUM_SLICER = "5.10"
MINIMUM_PYTHON = (3, 10)
SETTINGS_ARCHIVE_KEY = f"{MODULE_NAME}/ArchiveFolder"
SETTINGS_HISTORY_KEY = f"{MODULE_NAME}/ArchiveFolderHistory"
# Parameter -> widget pairs kept in sync by the Widget itself, not by connectGui: the segment (no connector),
# the text boxes (the connector's setPlainText would move the cursor to the start while typing) and the
# folders (an unset Path parameter reads "." and the connector wrote it back before the remembered one was read).
MANUAL_PARAMETER_WIDGETS = {
    "segmentId": "segmentSelector",
    "notes": "notes",
    "newCaseReport": "newCaseReport",
    "archiveFolder": "archiveFolder",
    "modelFolder": "modelFolder",
}
MANUAL_TEXT_PARAMETERS = ("notes", "newCaseReport")
# Volume parameter of each fixed sequence selector (explicit: no volume is ever guessed to be T2).
SEQUENCE_PARAMETERS = {"T2": "t2Volume", "T1": "t1Volume", "T1FS": "t1fsVolume"}
# The demo archive built on first use: small enough to build and index in about a minute on a laptop.
DEMO_CASES = 60
DEMO_SIZE = "small"
WAIT_TIMEOUT_S = 600  # blocking calls (scripts, self-test)


def unsupportedPythonMessage(versionInfo=None):
    """One message when this Slicer's Python is too old for the module, else None."""
    versionInfo = versionInfo or sys.version_info
    if tuple(versionInfo[:2]) >= MINIMUM_PYTHON:
        return None
    return _(
        "Similar Case Retrieval needs 3D Slicer {slicer} or later (Python {need} or later); this Slicer has "
        "Python {have}. Fix: install the current Slicer release from download.slicer.org."
    ).format(
        slicer=MINIMUM_SLICER,
        need=".".join(str(v) for v in MINIMUM_PYTHON),
        have=".".join(str(v) for v in versionInfo[:3]),
    )


def resourcesDir():
    """The extension's Resources folder (repository top level, or beside the installed module)."""
    here = pathlib.Path(__file__).resolve().parent
    for candidate in (here / "Resources", here.parent / "Resources"):
        if (candidate / "UI" / f"{MODULE_NAME}.ui").is_file():
            return candidate
    return here / "Resources"


#
# SimilarCaseRetrieval
#


class SimilarCaseRetrieval(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Similar Case Retrieval")
        self.parent.categories = ["Informatics"]
        self.parent.dependencies = []
        self.parent.contributors = ["Similar Case Retrieval project (SimilarCaseRetrieval authors)"]
        self.parent.helpText = _(
            "Find similar past cases in your own archive from the segment around a mass (MRI sequences "
            "selected explicitly: T2, T1, T1 fat-sat) and optional clinical notes. Results show each case's "
            "diagnosis, semantic terms (O-RADS MRI lexicon) and report. Click a case's mark to cycle it "
            "between relevant, not relevant and unmarked, then Refine (marks are kept); show the query and "
            "the top cases side by side in linked viewers; annotators can add the current case to the "
            "archive, or label the suggested cases one by one (Annotate next: the model's diagnosis and terms "
            "are pre-filled). With a PACS connection: search from a PACS study, store the answer as a KOS, "
            "store a segment as DICOM SEG; hits only in the PACS are retrieved when shown. "
            "See docs/slicer.md in the extension's repository."
        )
        tooOld = unsupportedPythonMessage()
        if tooOld:
            self.parent.helpText = tooOld + "\n\n" + self.parent.helpText
        self.parent.acknowledgementText = _(
            "Image-text joint embedding after Zheng Z. et al., Dual-path convolutional image-text "
            "embeddings with instance loss, ACM TOMM 2020. Evaluated on public data: MMOTU ovarian "
            "ultrasound (Zhao Q. et al. 2022), MedMNIST v2 (Yang J. et al., Sci Data 2023), LIDC-IDRI "
            "(Armato S.G. et al., Med Phys 2011), IU X-ray / Open-i (Demner-Fushman D. et al., JAMIA 2016). "
            "The demo archive is synthetic: no patient data is shipped."
        )
        app = getattr(slicer, "app", None)
        if app is not None and not tooOld:
            import qt

            # The icon lives in the top-level Resources/ when the module runs from the source tree.
            icon = resourcesDir() / "Icons" / f"{MODULE_NAME}.png"
            if icon.is_file():
                self.parent.icon = qt.QIcon(str(icon))
            app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the synthetic demo archive in the Sample Data module (generated locally, nothing downloaded)."""
    try:
        import SampleData
    except ImportError:
        return
    icon = resourcesDir() / "Icons" / f"{MODULE_NAME}.png"
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Similar case retrieval",
        sampleName="SyntheticOvarianMRIArchive",
        uris=["synthetic://SimilarCaseRetrieval/demo"],
        fileNames=["demo-archive"],
        nodeNames=["SyntheticOvarianMRI"],
        thumbnailFileName=str(icon),
        customDownloader=lambda source: _openDemoInModule(),
    )


def _openDemoInModule():
    """Sample Data entry: switch to this module and build/load the demo there (in the worker)."""
    slicer.util.selectModule(MODULE_NAME)
    slicer.util.getModuleWidget(MODULE_NAME).onDemoArchive()


#
# Parameter node
#


@parameterNodeWrapper
class SimilarCaseRetrievalParameterNode:
    """Everything the user sets in the module panel (saved with the scene)."""

    t2Volume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t1fsVolume: vtkMRMLScalarVolumeNode
    extraSequenceName: str = ""
    extraVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    notes: str = ""
    archiveFolder: str = ""
    modelFolder: str = ""
    k: Annotated[int, WithinRange(1, 100)] = 10
    textWeight: Annotated[float, WithinRange(0.0, 1.0)] = 0.3
    labelFilter: str = ""
    termFilter: str = ""
    viewerCount: Annotated[int, WithinRange(1, 8)] = 3
    newCaseId: str = ""
    newCaseLabel: str = ""
    newCaseTerms: str = ""
    newCaseReport: str = ""
    # PACS: a config file, DICOMweb URL or dimse://AET@host:port; credentials only from the environment or file
    pacsConnection: str = ""
    pacsStudyUid: str = ""
    pacsSegmentName: str = ""
    pacsStoreAnswer: bool = False
    pacsStoreSeg: bool = False
    showMaps: bool = False
    mapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.45
    annotateStrategy: Annotated[str, Choice(["hybrid", "uncertainty", "diversity", "random"])] = "hybrid"


def _pathOrNone(path):
    """A folder parameter -> Path, or None when unset ('' or '.', what an unset Path used to read as)."""
    if path is None or str(path).strip() in ("", "."):
        return None
    return pathlib.Path(str(path).strip())


def rememberableArchive(path):
    """The archive folder worth remembering (QSettings, history), or None for an empty or partial path."""
    folder = _pathOrNone(path)
    if folder is None or not (folder / "cases.sqlite").is_file():
        return None
    return str(folder)


def workerPython():
    """The Python that runs the worker: PythonSlicer in Slicer (as slicer.util.pip_install uses), else this one."""
    import shutil

    if getattr(slicer, "app", None) is not None:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


_worker = {"client": None}


def workerClient():
    """The module's one worker process (shared by the panel, scripts and the self-test)."""
    if _worker["client"] is None:
        from SimilarCaseRetrievalLib.worker.client import WorkerClient, worker_command

        _worker["client"] = WorkerClient(worker_command(workerPython()))
    return _worker["client"]


def stopWorker():
    client, _worker["client"] = _worker["client"], None
    if client is not None:
        client.close()


#
# Widget
#


class SimilarCaseRetrievalWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: thin, bound to the parameter node; every action is one worker request."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._activeRequest = None  # the request the progress bar and Cancel are about
        self._pollTimer = None
        self._rows = []
        self._annotationChoices = None  # what the Annotate next panel shows (diagnoses, terms)
        self._updatingGui = False
        self.segmentEditorWidget = None

    # -- set up ------------------------------------------------------------------------------
    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        tooOld = unsupportedPythonMessage()
        if tooOld:  # one clear message instead of errors from the library
            label = qt.QLabel(tooOld)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(str(resourcesDir() / "UI" / f"{MODULE_NAME}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SimilarCaseRetrievalLogic()

        self._setupSegmentEditor()
        self.ui.searchProgressBar.visible = False
        self.ui.archiveFolder.settingKey = SETTINGS_HISTORY_KEY  # ctkPathLineEdit keeps a history
        from SimilarCaseRetrievalLib.slicer_logic import RESULT_COLUMNS

        self.ui.resultsTable.setColumnCount(len(RESULT_COLUMNS))
        self.ui.resultsTable.setHorizontalHeaderLabels(list(RESULT_COLUMNS))
        self.ui.resultsTable.horizontalHeader().setStretchLastSection(True)

        # The worker's events are read on this (GUI) thread, from a timer, while a request is open.
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.timeout.connect(self.onPollWorker)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentation.currentNodeChanged.connect(self.onSegmentationChanged)
        self.ui.segmentSelector.currentSegmentChanged.connect(self.onSegmentChanged)
        self.ui.t2Volume.currentNodeChanged.connect(self.onReferenceVolumeChanged)
        for name in ("archiveFolder", "modelFolder"):  # the field's own text: compared as is in _updateGui
            widget = getattr(self.ui, name)
            widget.currentPathChanged.connect(
                lambda path, name=name, widget=widget: self._setParameter(name, widget.currentPath)
            )
        for name in MANUAL_TEXT_PARAMETERS:
            widget = getattr(self.ui, name)
            widget.textChanged.connect(
                lambda name=name, widget=widget: self._setParameter(name, widget.toPlainText())
            )
        self.ui.demoArchiveButton.clicked.connect(self.onDemoArchive)
        self.ui.searchButton.clicked.connect(self.onSearch)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.refineButton.clicked.connect(self.onRefine)
        self.ui.showSideBySideButton.clicked.connect(self.onShowSideBySide)
        self.ui.loadCaseButton.clicked.connect(self.onLoadSelectedCase)
        self.ui.resultsTable.cellDoubleClicked.connect(lambda row, column: self.onLoadSelectedCase())
        self.ui.resultsTable.cellClicked.connect(self.onCellClicked)
        self.ui.resultsTable.itemSelectionChanged.connect(self.onHitSelected)
        self.ui.addCaseButton.clicked.connect(self.onAddCase)
        self.ui.pacsSearchButton.clicked.connect(self.onPacsSearch)
        self.ui.showMaps.toggled.connect(self.onMapsToggled)
        self.ui.mapOpacity.valueChanged.connect(
            lambda value: self.logic.showMaps(self.ui.showMaps.checked, float(value))
        )
        self.ui.draftReportButton.clicked.connect(self.onDraftReport)
        self.ui.annotateNextButton.clicked.connect(lambda: self.onAnnotateNext(skip=False))
        self.ui.annotateSkipButton.clicked.connect(lambda: self.onAnnotateNext(skip=True))
        self.ui.annotateConfirmButton.clicked.connect(self.onAnnotateConfirm)

        self.initializeParameterNode()

    def _setupSegmentEditor(self) -> None:
        """Embed a Segment Editor to draw the mass; its own selectors are hidden so it always edits the
        module's segmentation on the module's T2 volume."""
        self.segmentEditorWidget = slicer.qMRMLSegmentEditorWidget()
        self.segmentEditorWidget.setMaximumNumberOfUndoStates(10)
        self.segmentEditorWidget.segmentationNodeSelectorVisible = False
        self.segmentEditorWidget.sourceVolumeNodeSelectorVisible = False
        self.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.segmentEditorCollapsibleButton.layout().addWidget(self.segmentEditorWidget)
        self._updateSegmentEditorNode()

    def _updateSegmentEditorNode(self) -> None:
        tag = f"{MODULE_NAME}SegmentEditor"
        node = slicer.mrmlScene.GetSingletonNode(tag, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(tag)
            node = slicer.mrmlScene.AddNode(node)
        self.segmentEditorWidget.setMRMLSegmentEditorNode(node)

    def cleanup(self) -> None:
        self.removeObservers()
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self.logic is not None:
            self.logic.close()
        stopWorker()  # a reloaded module starts a worker with the reloaded code

    def enter(self) -> None:
        if self.logic is not None:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self.segmentEditorWidget is not None:
            self.segmentEditorWidget.setActiveEffect(None)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._clearResults()
        self.logic.session.forget_scene()

    def onSceneEndClose(self, caller, event) -> None:
        self._updateSegmentEditorNode()
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        import qt

        node = self.logic.getParameterNode()
        if _pathOrNone(node.archiveFolder) is None:  # before the GUI is connected: nothing can overwrite it
            remembered = rememberableArchive(qt.QSettings().value(SETTINGS_ARCHIVE_KEY, ""))
            if remembered:
                node.archiveFolder = remembered
        self.setParameterNode(node)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self.onSegmentationChanged(self._parameterNode.segmentation)
            self._updateGui()

    # -- GUI state ---------------------------------------------------------------------------
    def _setParameter(self, name, value) -> None:
        if (
            self._parameterNode is not None
            and not self._updatingGui
            and getattr(self._parameterNode, name) != value
        ):
            setattr(self._parameterNode, name, value)

    def _updateGui(self, caller=None, event=None) -> None:
        """Parameter node -> the manually synced widgets (only where they differ: no cursor jumps), buttons."""
        node = self._parameterNode
        if node is None:
            return
        self._updatingGui = True
        try:
            for name in MANUAL_TEXT_PARAMETERS:
                widget = getattr(self.ui, name)
                if widget.toPlainText() != getattr(node, name):
                    widget.setPlainText(getattr(node, name))
            for name in ("archiveFolder", "modelFolder"):
                widget = getattr(self.ui, name)
                if widget.currentPath != getattr(node, name):
                    widget.currentPath = getattr(node, name)
            if node.segmentId and self.ui.segmentSelector.currentSegmentID() != node.segmentId:
                self.ui.segmentSelector.setCurrentSegmentID(node.segmentId)  # set from code (e.g. the demo)
        finally:
            self._updatingGui = False
        running = self._activeRequest is not None
        ready = bool(node.t2Volume and node.segmentation and _pathOrNone(node.archiveFolder))
        self.ui.searchButton.enabled = ready and not running
        self.ui.searchButton.toolTip = (
            _("Find similar cases in the archive.")
            if ready
            else _("Select the T2 volume, the segmentation and the archive folder first.")
        )
        self.ui.cancelButton.enabled = running
        haveResults = bool(self._rows) and not running
        self.ui.refineButton.enabled = haveResults
        self.ui.showSideBySideButton.enabled = haveResults
        self.ui.loadCaseButton.enabled = haveResults
        self.ui.draftReportButton.enabled = haveResults
        self.ui.addCaseButton.enabled = bool(ready and node.newCaseId.strip()) and not running
        haveArchive = bool(_pathOrNone(node.archiveFolder)) and not running
        self.ui.pacsSearchButton.enabled = bool(
            haveArchive and node.pacsConnection.strip() and node.pacsStudyUid.strip()
        )
        self.ui.annotateNextButton.enabled = haveArchive
        annotating = self.logic.session.annotation is not None and not running
        self.ui.annotateSkipButton.enabled = annotating
        self.ui.annotateConfirmButton.enabled = annotating

    def onSegmentationChanged(self, segmentationNode) -> None:
        self.ui.segmentSelector.setCurrentNode(segmentationNode)
        if self._parameterNode and self._parameterNode.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(self._parameterNode.segmentId)
        if self.segmentEditorWidget is not None:
            self.segmentEditorWidget.setSegmentationNode(segmentationNode)
            self.onReferenceVolumeChanged(self._parameterNode.t2Volume if self._parameterNode else None)

    def onReferenceVolumeChanged(self, volumeNode) -> None:
        if self.segmentEditorWidget is not None and volumeNode is not None:
            self.segmentEditorWidget.setSourceVolumeNode(volumeNode)

    def onSegmentChanged(self, segmentId) -> None:
        if self._parameterNode:
            self._parameterNode.segmentId = segmentId or ""

    def _rememberArchive(self) -> None:
        """After the archive was used successfully: remember it and add it to the folder history once."""
        import qt

        folder = rememberableArchive(self._parameterNode.archiveFolder)
        if folder:
            qt.QSettings().setValue(SETTINGS_ARCHIVE_KEY, folder)
            self.ui.archiveFolder.addCurrentPathToHistory()

    def _status(self, message: str) -> None:
        self.ui.statusLabel.text = message
        slicer.util.showStatusMessage(message, 3000)

    # -- worker requests ---------------------------------------------------------------------
    def _start(self, message, start, onDone) -> None:
        """Run one action: `start(**callbacks)` sends its request; progress, Cancel and errors are handled here."""
        if self._activeRequest is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start: {what}").format(what=message)):
            self._activeRequest = start(
                done=lambda value: self._finish(onDone, value),
                failed=self._failed,
                progress=self._progress,
                cancelled=lambda: self._finish(None, None, _("Cancelled.")),
            )
            self.ui.searchProgressBar.setRange(0, 0)  # busy until the worker reports an amount
            self.ui.searchProgressBar.visible = True
            self._status(message)
            self._pollTimer.start()
        self._updateGui()

    def _progress(self, event) -> None:
        fraction = event.fraction
        if fraction is None:
            self.ui.searchProgressBar.setRange(0, 0)
        else:
            self.ui.searchProgressBar.setRange(0, 100)
            self.ui.searchProgressBar.value = int(round(100 * fraction))
        if event.data.get("message"):
            self.ui.statusLabel.text = event.data["message"]

    def _finish(self, onDone, value, message=None) -> None:
        self._activeRequest = None
        self.ui.searchProgressBar.visible = False
        try:
            if onDone is not None:
                with slicer.util.tryWithErrorDisplay(_("Could not show the result.")):
                    onDone(value)
            if message:
                self._status(message)
        finally:
            self._updateGui()

    def _failed(self, error) -> None:
        self._finish(None, None)
        if isinstance(error, ValueError):  # bad input: one line, no traceback
            slicer.util.errorDisplay(str(error))
        else:
            slicer.util.errorDisplay(_("Failed: {error}").format(error=error))
        self._status(str(error))

    def onPollWorker(self) -> None:
        client = self.logic.session.client
        client.poll()
        if not client.busy:
            self._pollTimer.stop()

    def _keepPolling(self) -> None:
        if not self._pollTimer.isActive():
            self._pollTimer.start()

    def onCancel(self) -> None:
        """The GUI is free at once; the worker stops the request (or is restarted if it cannot)."""
        if self._activeRequest is not None:
            self.logic.session.cancel(self._activeRequest)

    # -- actions -----------------------------------------------------------------------------
    def _dependenciesReady(self) -> bool:
        """torch and the requirements are there (installed now after one confirmation); errors shown here."""
        ready = False
        with slicer.util.tryWithErrorDisplay(_("The Python packages are not ready.")):
            ready = self.logic.ensureDependencies()
        return ready

    def onDemoArchive(self) -> None:
        if not self._dependenciesReady():
            return
        self._start(
            _("Building and indexing the synthetic demo archive (first time only, about a minute)..."),
            lambda **callbacks: self.logic.startDemo(self._parameterNode, **callbacks),
            self._onDemoReady,
        )

    def _onDemoReady(self, case) -> None:
        self._rememberArchive()
        slicer.util.setSliceViewerLayers(background=self._parameterNode.t2Volume, fit=True)
        self._status(_("Demo archive ready: a demo case is the query. Click Find similar cases."))

    def onSearch(self) -> None:
        if not self._dependenciesReady():
            return
        self.segmentEditorWidget.setActiveEffect(None)
        self._start(
            _("Searching..."),
            lambda **callbacks: self.logic.startSearch(self._parameterNode, **callbacks),
            self._onSearchDone,
        )

    def _onSearchDone(self, result) -> None:
        self._rememberArchive()
        self._showResults()
        self._status(_("Found {n} similar cases.").format(n=len(result["hits"])))

    def onRefine(self) -> None:
        self._start(_("Refining..."), self.logic.session.refine, self._onRefined)

    def _onRefined(self, result) -> None:
        self._showResults()
        marks = list(self.logic.session.marks.values())
        self._status(
            _("Refined with {r} relevant and {n} not relevant cases (marks kept).").format(
                r=marks.count("relevant"), n=marks.count("not relevant")
            )
        )

    def onShowSideBySide(self) -> None:
        self._start(
            _("Loading the top cases..."),
            lambda **callbacks: self.logic.startSideBySide(self._parameterNode, **callbacks),
            self._onSideBySide,
        )

    def _onSideBySide(self, views) -> None:
        self._status(_("The query and the top cases are side by side (linked viewers)."))
        if self.ui.showMaps.checked:
            self.onMapsToggled(True)

    def onMapsToggled(self, checked) -> None:
        """On: show the maps (computed by the worker the first time for these cases); off: hide them."""
        opacity = float(self.ui.mapOpacity.value)
        if not checked or self.logic.session.map_nodes:
            self.logic.showMaps(bool(checked), opacity)
        elif not self.logic.session.views:
            self._status(_("Similarity maps appear once the cases are shown side by side."))
        else:
            self._start(
                _("Computing the similarity maps..."),
                lambda **callbacks: self.logic.startSimilarityMaps(self._parameterNode, **callbacks),
                lambda maps: self._status(_("Similarity maps shown (Grad-CAM).")),
            )

    def onDraftReport(self) -> None:
        self._start(
            _("Drafting the report..."),
            lambda **callbacks: self.logic.startDraftReport(self._parameterNode, **callbacks),
            lambda draft: self.ui.draftReport.setPlainText(draft["text"]),
        )

    def onLoadSelectedCase(self) -> None:
        caseId = self._selectedCaseId()
        if caseId:
            self._start(
                _("Loading case {case}...").format(case=caseId),
                lambda **callbacks: self.logic.startLoadCase(caseId, **callbacks),
                self.logic.showLoadedCase,
            )

    def onCellClicked(self, row, column) -> None:
        """A click on a mark cycles it (relevant, not relevant, none): one mark per case."""
        from SimilarCaseRetrievalLib.slicer_logic import MARK_SYMBOLS, RESULT_COLUMNS, next_mark

        if column != RESULT_COLUMNS.index("Mark") or row >= len(self._rows):
            return
        caseId = self._rows[row]["Case"]
        mark = next_mark(self.logic.session.marks.get(caseId))
        self.logic.session.set_mark(caseId, mark)
        self._rows[row]["Mark"] = mark
        self.ui.resultsTable.item(row, column).setText(MARK_SYMBOLS[mark])

    def onHitSelected(self) -> None:
        row = self._selectedRow()
        if row is None:
            return
        hit = dict(self._rows[row])
        self.ui.hitReport.setPlainText(
            f"{hit['Case']} - {hit['Label']}\nShared terms: {hit['Shared terms']}\n\n..."
        )

        def show(record):
            if self._selectedRow() == row:
                self.ui.hitReport.setPlainText(
                    f"{hit['Case']} - {hit['Label']}\nShared terms: {hit['Shared terms']}\n\n{record.get('report', '')}"
                )

        self.logic.session.case_record(
            hit["Case"], done=show, failed=lambda error: logging.warning("%s", error)
        )
        self._keepPolling()

    def onAddCase(self) -> None:
        if not self._dependenciesReady():
            return
        self._start(
            _("Adding the case to the archive..."),
            lambda **callbacks: self.logic.startAddCase(self._parameterNode, **callbacks),
            self._onCaseAdded,
        )

    def _onCaseAdded(self, case) -> None:
        message = _("Case {case} added to the archive and indexed.").format(case=case["case_id"])
        if case.get("seg"):
            message += " " + _("Segment stored to the PACS as DICOM SEG {uid}.").format(uid=case["seg"])
        self._status(message)
        self._parameterNode.newCaseId = ""

    def onPacsSearch(self) -> None:
        if not self._dependenciesReady():
            return
        self.segmentEditorWidget.setActiveEffect(None)
        self._start(
            _("Retrieving the study from the PACS and searching..."),
            lambda **callbacks: self.logic.startPacsSearch(self._parameterNode, **callbacks),
            self._onPacsSearchDone,
        )

    def _onPacsSearchDone(self, result) -> None:
        self._onSearchDone(result)
        slicer.util.setSliceViewerLayers(background=self._parameterNode.t2Volume, fit=True)
        if result.get("kos"):
            self._status(_("Answer stored to the PACS as KOS {uid}.").format(uid=result["kos"]))

    # -- annotate next -------------------------------------------------------------------------
    def onAnnotateNext(self, skip=False) -> None:
        if not self._dependenciesReady():
            return
        self._start(
            _("Choosing the next case to annotate (a refill takes about 30 s)..."),
            lambda **callbacks: self.logic.startAnnotateNext(self._parameterNode, skip=skip, **callbacks),
            self._showAnnotationTask,
        )

    def _showAnnotationTask(self, task) -> None:
        import qt
        from SimilarCaseRetrievalLib.slicer_logic import annotation_choices

        self.ui.annotateDiagnosis.clear()
        self.ui.annotateTerms.clear()
        self._annotationChoices = None
        if task is None:
            self.ui.annotateReason.text = _("No unlabelled case with a segment is left.")
            return
        self._annotationChoices = annotation_choices(task)
        self.ui.annotateReason.text = self._annotationChoices["reason"]
        for _name, shown in self._annotationChoices["diagnoses"]:
            self.ui.annotateDiagnosis.addItem(shown)
        for _name, shown, checked in self._annotationChoices["terms"]:
            item = qt.QListWidgetItem(shown)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if checked else qt.Qt.Unchecked)
            self.ui.annotateTerms.addItem(item)
        self._status(
            _("Annotate case {case}: confirm or correct the proposed labels.").format(case=task["case_id"])
        )

    def onAnnotateConfirm(self) -> None:
        import qt
        from SimilarCaseRetrievalLib.slicer_logic import chosen_label

        choices = self._annotationChoices
        if choices is None:
            return
        label = chosen_label(self.ui.annotateDiagnosis.currentText, choices["diagnoses"])
        terms = [
            name
            for row, (name, _shown, _checked) in enumerate(choices["terms"])
            if self.ui.annotateTerms.item(row).checkState() == qt.Qt.Checked
        ]
        self._start(
            _("Storing the labels..."),
            lambda **callbacks: self.logic.startConfirmAnnotation(label, terms, **callbacks),
            self._onAnnotationConfirmed,
        )

    def _onAnnotationConfirmed(self, case) -> None:
        self._status(_("Labels of {case} stored; the next search sees them.").format(case=case["case_id"]))
        self.onAnnotateNext(skip=False)

    # -- results table -------------------------------------------------------------------------
    def _clearResults(self) -> None:
        self._rows = []
        if hasattr(self, "ui"):
            self.ui.resultsTable.setRowCount(0)
            self.ui.hitReport.setPlainText("")

    def _showResults(self) -> None:
        import qt
        from SimilarCaseRetrievalLib.slicer_logic import MARK_SYMBOLS, RESULT_COLUMNS, hit_rows

        self._rows = hit_rows(self.logic.session.result, self.logic.session.marks)
        table = self.ui.resultsTable
        table.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows):
            for c, header in enumerate(RESULT_COLUMNS):
                value = row.get(header)
                if header == "Mark":
                    text = MARK_SYMBOLS[value]
                elif value is None:
                    text = ""
                else:
                    text = f"{value:.3f}" if isinstance(value, float) else str(value)
                item = qt.QTableWidgetItem(text)
                item.setToolTip(
                    _("Click to mark: relevant, not relevant, none.") if header == "Mark" else text
                )
                if header == "Mark":
                    item.setTextAlignment(qt.Qt.AlignCenter)
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

    def _selectedRow(self):
        rows = {index.row() for index in self.ui.resultsTable.selectedIndexes()}
        return min(rows) if rows else None

    def _selectedCaseId(self):
        row = self._selectedRow()
        if row is None:
            slicer.util.warningDisplay(_("Select a case in the results table first."))
            return None
        return self._rows[row]["Case"]


#
# Logic
#


class SimilarCaseRetrievalLogic(ScriptedLoadableModuleLogic):
    """Search, refine, show and add cases through the worker process (SimilarCaseRetrievalLib.slicer_logic).

    Each action has a `start...(parameterNode, done=, failed=, progress=, cancelled=)` form that returns at once
    (the panel) and a blocking form (the Python console, scripts, the self-test). Bad input raises ValueError
    (`CaseInputError`) with a one-line message naming the item and the fix.
    """

    def __init__(self, session=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._session = session

    @property
    def session(self):
        if self._session is None:
            from SimilarCaseRetrievalLib.slicer_logic import RetrievalSession

            self._session = RetrievalSession(workerClient())
        return self._session

    def getParameterNode(self):
        return SimilarCaseRetrievalParameterNode(super().getParameterNode())

    def close(self) -> None:
        """Forget this Logic's scratch files (the shared worker keeps running; `stopWorker` ends it)."""
        if self._session is not None:
            import shutil

            shutil.rmtree(self._session.scratch, ignore_errors=True)
            self._session = None

    def _wait(self, requestId):
        return self.session.wait(requestId, timeout=WAIT_TIMEOUT_S)

    # -- dependencies --------------------------------------------------------------------------
    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """torch (PyTorch extension) and Resources/requirements.txt, after ONE confirmation; False if declined.

        In testing mode nothing is installed: a missing package is a one-line error."""
        from SimilarCaseRetrievalLib import slicer_dependencies as deps

        requirements = resourcesDir() / "requirements.txt"
        torchProblem = deps.torch_problem(deps.installed_version("torch"))
        missing = deps.missing_requirements(requirements)
        if torchProblem is None and not missing:
            return True
        needed = ([f"torch{deps.TORCH_REQUIREMENT} ({torchProblem})"] if torchProblem else []) + missing
        app = getattr(slicer, "app", None)
        if app is None or app.commandOptions().testingEnabled:
            raise ValueError(
                f"missing Python packages: {', '.join(needed)}. Fix: install them (testing mode never installs)"
            )
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("Similar Case Retrieval needs these Python packages. Install them now (a few minutes)?"),
            windowTitle=_("Similar Case Retrieval - Install Python Packages"),
            detailedText="\n".join(needed),
        ):
            return False
        with slicer.util.tryWithErrorDisplay(_("Could not install the Python packages."), waitCursor=True):
            if torchProblem:
                try:
                    import PyTorchUtils
                except ImportError as exc:
                    raise ValueError(
                        "PyTorch is missing. Fix: install the PyTorch extension from the Extensions Manager and restart"
                    ) from exc
                # askConfirmation=False: the user has just confirmed, once, for everything.
                if PyTorchUtils.PyTorchUtilsLogic().installTorch(False, None, deps.TORCH_REQUIREMENT) is None:
                    return False
            if missing:
                deps.install_requirements(slicer, requirements, requester=MODULE_NAME)
            return True
        return False

    # -- query -----------------------------------------------------------------------------------
    def queryVolumeNodes(self, parameterNode) -> dict:
        """{sequence name: volume node} of the selected query volumes (T2 first, as reference)."""
        nodes = {seq: getattr(parameterNode, param) for seq, param in SEQUENCE_PARAMETERS.items()}
        extraName = (parameterNode.extraSequenceName or "").strip()
        if parameterNode.extraVolume is not None:
            if not extraName:
                raise ValueError(
                    "extra sequence: a volume is selected without a name. Fix: type its name, e.g. DWI"
                )
            nodes[extraName] = parameterNode.extraVolume
        return {seq: node for seq, node in nodes.items() if node is not None}

    def exportQuery(self, parameterNode):
        """Check the query's nodes and write them for the worker (QueryFiles)."""
        from SimilarCaseRetrievalLib.slicer_logic import export_query

        if parameterNode.t2Volume is None:
            raise ValueError(
                "T2 volume: not selected. Fix: choose the T2 volume of the study in the T2 selector"
            )
        return export_query(
            self.queryVolumeNodes(parameterNode),
            parameterNode.segmentation,
            parameterNode.segmentId or None,
            self.session.query_folder(),
            text=parameterNode.notes,
            reference="T2",
        )

    def _searchOptions(self, parameterNode) -> dict:
        from SimilarCaseRetrievalLib.slicer_logic import parse_terms

        return {
            "k": int(parameterNode.k),
            "text_weight": float(parameterNode.textWeight),
            "label": parameterNode.labelFilter.strip() or None,
            "terms": parse_terms(parameterNode.termFilter) or None,
            "model_dir": _pathOrNone(parameterNode.modelFolder),
        }

    def _archive(self, parameterNode):
        archive = _pathOrNone(parameterNode.archiveFolder)
        if archive is None:
            raise ValueError(
                "archive folder: not set. Fix: choose the archive folder (or try the demo archive)"
            )
        return archive

    # -- search and refine ---------------------------------------------------------------------------
    def startSearch(self, parameterNode, **callbacks) -> int:
        self._usePacs(parameterNode)
        query = self.exportQuery(parameterNode)
        self.queryMask = query.mask
        return self.session.search(
            query, self._archive(parameterNode), **self._searchOptions(parameterNode), **callbacks
        )

    def search(self, parameterNode):
        """Search and wait; returns the result (dict with 'hits'), which becomes the one Refine starts from."""
        return self._wait(self.startSearch(parameterNode))

    def refine(self, relevant=(), notRelevant=()):
        """Mark `relevant` / `notRelevant` (in addition to the marks already set), refine and wait."""
        from SimilarCaseRetrievalLib.slicer_logic import NOT_RELEVANT, RELEVANT

        for caseId in relevant:
            self.session.set_mark(caseId, RELEVANT)
        for caseId in notRelevant:
            self.session.set_mark(caseId, NOT_RELEVANT)
        return self._wait(self.session.refine())

    @property
    def lastResult(self):
        return self.session.result

    def reportOf(self, caseId: str) -> str:
        """The case's report ('' for an unknown case: the report is informative only)."""
        try:
            return self._wait(self.session.case_record(caseId)).get("report", "")
        except ValueError:
            return ""

    # -- scene -----------------------------------------------------------------------------------
    def startLoadCase(self, caseId: str, parameterNode=None, **callbacks) -> int:
        archive = self._archive(parameterNode) if parameterNode is not None else None
        if parameterNode is not None:
            self._usePacs(parameterNode)
        return self.session.load_case(caseId, archive, sequences="all", **callbacks)

    def loadCase(self, caseId: str, parameterNode=None):
        """Load an archive case (every sequence, int16 where whole numbers, and its segment) into the scene;
        returns a LoadedCase. It is the case as stored, never the copy moved for the side-by-side view (whose
        previews hold the reference sequence only)."""
        return self._wait(self.startLoadCase(caseId, parameterNode))

    def showLoadedCase(self, loaded) -> None:
        """Show a loaded case in the usual views (the side-by-side views keep the query and the hits)."""
        from SimilarCaseRetrievalLib import slicer_layout

        if self.session.previous_layout is not None:
            slicer_layout.restore_layout(self.session.previous_layout)
        slicer_layout.show_in_standard_views(loaded.reference_volume)
        if getattr(slicer, "app", None) is not None:
            slicer.util.resetSliceViews()

    def queryAsLoadedCase(self, parameterNode):
        from SimilarCaseRetrievalLib import mrml

        volumes = self.queryVolumeNodes(parameterNode)
        segmentId = mrml.resolve_segment_id(parameterNode.segmentation, parameterNode.segmentId or None)
        mask = mrml.mask_from_segment(parameterNode.segmentation, segmentId, volumes["T2"])
        return mrml.LoadedCase(
            case_id="query",
            volumes=volumes,
            segmentation=parameterNode.segmentation,
            segment_id=segmentId,
            reference="T2",
            centre_ras=mrml.mask_centre_ras(mask),
            extent_mm=mrml.mask_extent_mm(mask),
        )

    def startSideBySide(self, parameterNode, count=None, done=None, failed=None, **callbacks) -> int:
        """Load the top `count` hits (moved onto the query's segment, removed at the next search) and show them
        beside the query in linked viewers; `done` gets {view name: slice node}, or `failed` the first error,
        once, when every case has answered. Returns the last request (they end in order)."""
        from SimilarCaseRetrievalLib import slicer_layout

        result = self.lastResult
        if result is None or not result["hits"]:
            raise ValueError("side by side: there are no results. Fix: run a search first")
        count = int(count or parameterNode.viewerCount)
        self._usePacs(parameterNode)
        query = self.queryAsLoadedCase(parameterNode)
        caseIds = [hit["case_id"] for hit in result["hits"][:count]]
        loaded, errors = {}, []

        def answered():
            if len(loaded) + len(errors) < len(caseIds):
                return
            if errors:
                if failed is not None:
                    failed(errors[0])
                return
            if self.session.previous_layout is None:
                self.session.previous_layout = slicer_layout.current_layout()
            self.session.remove_maps()  # maps belong to the cases shown: recomputed for these
            views = slicer_layout.show_side_by_side(query, [loaded[c] for c in caseIds])
            self.session.views = views
            if done is not None:
                done(views)

        def collect(case):
            loaded[case.case_id] = case
            answered()

        def fail(error):
            errors.append(error)
            answered()

        requestId = None
        for caseId in caseIds:
            requestId = self.session.load_case(caseId, preview=True, done=collect, failed=fail, **callbacks)
        return requestId

    def showSideBySide(self, parameterNode, count=None) -> dict:
        views, errors = {}, []
        requestId = self.startSideBySide(parameterNode, count, done=views.update, failed=errors.append)
        try:
            self._wait(requestId)
        except ValueError:
            pass  # reported through `failed` (the first error) below
        if errors:
            raise errors[0]
        return views

    # -- explanations ------------------------------------------------------------------------------
    def startSimilarityMaps(self, parameterNode, done=None, **callbacks) -> int:
        """Similarity maps of the query and each side-by-side case (worker), then shown at the panel's opacity."""

        def show(answer):
            self.showMaps(True, parameterNode.mapOpacity)
            if done is not None:
                done(answer)

        return self.session.similarity_maps(
            self.exportQuery(parameterNode),
            self._archive(parameterNode),
            model_dir=_pathOrNone(parameterNode.modelFolder),
            done=show,
            **callbacks,
        )

    def similarityMaps(self, parameterNode):
        """Blocking `startSimilarityMaps`; returns {view name: map node}."""
        self._wait(self.startSimilarityMaps(parameterNode))
        return dict(self.session.map_nodes)

    def showMaps(self, visible=True, opacity=0.45) -> None:
        """Overlay (or hide) the computed similarity maps in the side-by-side views."""
        from SimilarCaseRetrievalLib.explain.slicer_maps import show_map

        for view, sliceNode in self.session.views.items():
            mapNode = self.session.map_nodes.get(view)
            show_map(sliceNode, mapNode if visible else None, opacity)

    def startDraftReport(self, parameterNode, **callbacks) -> int:
        """The drafted report of the current result (query's predicted terms + the hits' reports), from the worker."""
        return self.session.draft(self.exportQuery(parameterNode), **callbacks)

    def draftReport(self, parameterNode) -> str:
        return self._wait(self.startDraftReport(parameterNode))["text"]

    # -- annotators --------------------------------------------------------------------------------
    def startAddCase(self, parameterNode, **callbacks) -> int:
        """Add the query (volumes as they are in the scene, the segment) with label, terms and report."""
        from SimilarCaseRetrievalLib.slicer_logic import parse_terms

        self._usePacs(parameterNode)
        return self.session.add_case(
            self.exportQuery(parameterNode),
            self._archive(parameterNode),
            case_id=parameterNode.newCaseId.strip(),
            model_dir=_pathOrNone(parameterNode.modelFolder),
            label=parameterNode.newCaseLabel.strip() or None,
            terms=parse_terms(parameterNode.newCaseTerms),
            report=parameterNode.newCaseReport,
            notes=parameterNode.notes,
            pacs_study_uid=parameterNode.pacsStudyUid.strip() if parameterNode.pacsStoreSeg else None,
            **callbacks,
        )

    def addCurrentCase(self, parameterNode):
        return self._wait(self.startAddCase(parameterNode))

    def startAnnotateNext(self, parameterNode, skip=False, done=None, **callbacks) -> int:
        """The next suggested case to annotate (Skip: the one on screen is put aside), loaded with every sequence
        and its segment and shown; `done` gets the task (reason, pre-filled labels) or None when none is left."""

        def show(task):
            if self.session.annotation_case is not None:
                self.showLoadedCase(self.session.annotation_case)
            if done is not None:
                done(task)

        return self.session.annotate_next(
            self._archive(parameterNode),
            model_dir=_pathOrNone(parameterNode.modelFolder),
            strategy=parameterNode.annotateStrategy,
            skip=skip,
            done=show,
            **callbacks,
        )

    def annotateNext(self, parameterNode, skip=False):
        return self._wait(self.startAnnotateNext(parameterNode, skip=skip))

    def startConfirmAnnotation(self, label, terms, **callbacks) -> int:
        """Store the diagnosis and terms the annotator confirmed for the case on screen."""
        return self.session.confirm_annotation(label, terms, **callbacks)

    def confirmAnnotation(self, label, terms):
        return self._wait(self.startConfirmAnnotation(label, terms))

    # -- PACS ----------------------------------------------------------------------------------------
    def _usePacs(self, parameterNode) -> None:
        """The panel's PACS connection for the next requests (none when the field is empty), and the cache
        folder hits that are only in the PACS are retrieved into."""
        from SimilarCaseRetrievalLib.worker.pacs_requests import check_pacs_spec

        spec = (parameterNode.pacsConnection or "").strip()
        self.session.pacs = check_pacs_spec(spec) if spec else None
        base = pathlib.Path(slicer.app.cachePath) if getattr(slicer, "app", None) else self.session.scratch
        self.session.pacs_cache = base / MODULE_NAME / "pacs-cache"

    def startPacsSearch(self, parameterNode, done=None, **callbacks) -> int:
        """Search from the PACS study (UID and optional segment name in the panel) through the worker; the study
        becomes the query in the scene (its notes fill an empty notes box); optionally the answer goes back
        to the PACS as a KOS (its UID in result["kos"])."""
        self._usePacs(parameterNode)

        def show(value):
            result, query = value
            self.useAsQuery(parameterNode, query, "SimilarCaseRetrieval.pacsQuery")
            if done is not None:
                done(result)

        return self.session.pacs_search(
            self._archive(parameterNode),
            parameterNode.pacsStudyUid,
            segment=parameterNode.pacsSegmentName,
            text=parameterNode.notes,
            store_answer=bool(parameterNode.pacsStoreAnswer),
            done=show,
            **self._searchOptions(parameterNode),
            **callbacks,
        )

    def pacsSearch(self, parameterNode):
        """Blocking `startPacsSearch`; returns the result."""
        return self._wait_result(self.startPacsSearch(parameterNode))

    def _wait_result(self, requestId):
        value = self._wait(requestId)
        return value[0] if isinstance(value, tuple) else value

    # -- demo --------------------------------------------------------------------------------------
    def demoArchiveDir(self):
        base = pathlib.Path(slicer.app.cachePath) if getattr(slicer, "app", None) else pathlib.Path.home()
        return base / MODULE_NAME / "demo-archive"

    def startDemo(
        self,
        parameterNode,
        archiveDir=None,
        modelDir=None,
        nCases=DEMO_CASES,
        size=DEMO_SIZE,
        done=None,
        **callbacks,
    ):
        """Build (first use only) and index the demo archive in the worker, then make its first case the query."""
        modelDir = modelDir or _pathOrNone(parameterNode.modelFolder)
        archive = pathlib.Path(archiveDir) if archiveDir else self.demoArchiveDir()

        def show(prepared):
            case = self.showDemo(parameterNode, prepared, modelDir)
            if done is not None:
                done(case)

        return self.session.demo(
            archive, model_dir=modelDir, n_cases=nCases, size=size, done=show, **callbacks
        )

    def showDemo(self, parameterNode, prepared, modelDir=None):
        """Select the demo archive and its first case as the query: volumes by sequence name, segment, notes.
        The previous demo query's nodes are replaced, not duplicated."""
        archive, case, loaded = prepared
        parameterNode.archiveFolder = str(archive)
        if modelDir is not None:
            parameterNode.modelFolder = str(modelDir)
        parameterNode.notes = case["notes"]
        self.useAsQuery(parameterNode, loaded, "SimilarCaseRetrieval.demo")
        return case

    def useAsQuery(self, parameterNode, loaded, tag):
        """Make a loaded case the query (volumes by sequence name, segment; its notes fill an empty notes box).
        The previous query's nodes carrying `tag` (the demo's, a PACS study's) are replaced, not duplicated."""
        from SimilarCaseRetrievalLib import mrml

        previous = [getattr(parameterNode, param) for param in SEQUENCE_PARAMETERS.values()]
        previous.append(parameterNode.segmentation)
        for seq, param in SEQUENCE_PARAMETERS.items():
            setattr(parameterNode, param, loaded.volumes.get(seq))
        parameterNode.segmentation = loaded.segmentation
        parameterNode.segmentId = loaded.segment_id
        notes = (loaded.info or {}).get("notes") or ""
        if notes and not parameterNode.notes.strip():
            parameterNode.notes = notes
        mrml.remove_nodes([n for n in previous if n is not None and n.GetAttribute(tag)])
        for node in loaded.nodes():
            node.SetAttribute(tag, "1")

    def loadDemo(self, parameterNode=None, archiveDir=None, modelDir=None, **options):
        """Blocking `startDemo` (Sample Data entry, scripts, tests); returns the demo case's record."""
        parameterNode = parameterNode or self.getParameterNode()
        cases = []
        self._wait(self.startDemo(parameterNode, archiveDir, modelDir, done=cases.append, **options))
        return cases[0]


#
# Self-test
#


class SimilarCaseRetrievalTest(ScriptedLoadableModuleTest):
    """Builds a tiny synthetic archive and index, searches from scene nodes, loads the top case.

    Run in Slicer:  Slicer --no-main-window --testing --additional-module-paths <repo>/SimilarCaseRetrieval
                    --python-code "slicer.util.selectModule('SimilarCaseRetrieval'); ..."  (see docs/slicer.md)
    """

    built = None  # (archive_dir, model_dir), built once per process

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_SearchFromSegmentAndLoadTopCase()
        self.setUp()
        self.test_RefineAndSideBySide()
        self.setUp()
        self.test_BadInputIsOneLineError()

    def _tinyArchive(self):
        import tempfile

        from SimilarCaseRetrievalLib.slicer_selftest import build_tiny_indexed_archive

        if SimilarCaseRetrievalTest.built is None:
            if getattr(slicer, "app", None) is not None:  # in Slicer: the packages must be there
                try:  # testing mode never installs; Reload and Test asks once
                    if not SimilarCaseRetrievalLogic().ensureDependencies():
                        self.skipTest("the Python packages were not installed")
                except ValueError as exc:
                    self.skipTest(str(exc))
            folder = pathlib.Path(tempfile.mkdtemp(prefix="scr-selftest-"))
            SimilarCaseRetrievalTest.built = build_tiny_indexed_archive(folder)
        return SimilarCaseRetrievalTest.built

    def _queryFromArchiveCase(self, logic, index: int = 0):
        """Load archive case `index` into the scene as the query (volume + segmentation nodes)."""
        from SimilarCaseRetrievalLib import mrml
        from SimilarCaseRetrievalLib.store import CaseStore

        archive, modelDir = self._tinyArchive()
        store = CaseStore(archive, create=False)
        case = store.get(store.ids()[index])
        study = store.load_study(case)
        mask = store.load_mask(case, study)
        store.close()
        node = logic.getParameterNode()
        for seq, image in study.sequences.items():
            if seq in SEQUENCE_PARAMETERS:
                setattr(node, SEQUENCE_PARAMETERS[seq], mrml.volume_node_from_image(image, f"query {seq}"))
        node.segmentation, node.segmentId = mrml.segmentation_from_mask(
            mask, "query segmentation", reference_volume_node=node.t2Volume
        )
        node.archiveFolder = str(archive)
        node.modelFolder = str(modelDir)
        return node, case

    def test_SearchFromSegmentAndLoadTopCase(self):
        from SimilarCaseRetrievalLib import mrml

        self.delayDisplay("Building a tiny synthetic archive and index")
        logic = SimilarCaseRetrievalLogic()
        node, queryCase = self._queryFromArchiveCase(logic)
        node.k = 3
        node.textWeight = 0.0  # image only: the query case itself must come back first

        self.delayDisplay("Searching (in the worker process)")
        result = logic.search(node)
        hits = result["hits"]
        self.assertEqual(len(hits), 3)
        scores = [hit["score"] for hit in hits]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual(hits[0]["case_id"], queryCase.case_id)

        self.delayDisplay("Loading the second case")
        before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        loaded = logic.loadCase(hits[1]["case_id"], node)
        after = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        self.assertEqual(set(loaded.volumes), set(queryCase.sequences))
        self.assertEqual(after - before, len(loaded.volumes))
        self.assertIsNotNone(loaded.segmentation)
        self.assertEqual(mrml.segment_ids(loaded.segmentation), [loaded.segment_id])
        logic.close()
        self.delayDisplay("Test passed")

    def test_RefineAndSideBySide(self):
        logic = SimilarCaseRetrievalLogic()
        node, queryCase = self._queryFromArchiveCase(logic, index=1)
        node.notes = queryCase.notes
        node.k = 4
        node.viewerCount = 2
        first = logic.search(node)
        ids = [hit["case_id"] for hit in first["hits"]]
        refined = logic.refine(relevant=[ids[-1]], notRelevant=[ids[1]])
        self.assertEqual(len(refined["hits"]), 4)
        rank = [hit["case_id"] for hit in refined["hits"]]
        self.assertLess(rank.index(ids[-1]), ids.index(ids[-1]))  # the relevant case moved up
        self.assertEqual(logic.session.marks, {ids[-1]: "relevant", ids[1]: "not relevant"})  # marks kept
        views = logic.showSideBySide(node)
        self.assertEqual(len(views), 3)  # query + 2 cases
        logic.close()

    def test_BadInputIsOneLineError(self):
        import numpy as np

        logic = SimilarCaseRetrievalLogic()
        node = logic.getParameterNode()
        node.t2Volume = slicer.util.addVolumeFromArray(np.zeros((4, 8, 8), np.float32), name="blank")
        node.segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
        node.archiveFolder = os.getcwd()
        with self.assertRaises(ValueError) as caught:
            logic.search(node)
        self.assertIn("Fix:", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))
        logic.close()


if __name__ == "__main__":  # pragma: no cover
    unittest.main()
