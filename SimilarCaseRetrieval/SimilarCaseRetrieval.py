"""SimilarCaseRetrieval: find similar past cases from a segmented study and clinical notes, in 3D Slicer.

Thin Slicer glue: the work is done by SimilarCaseRetrievalLib (never imports Qt). Qt, ctk and the
retrieval library's heavy dependencies are imported inside the methods that need them, so the
module's Logic and self-test also run headless (e.g. under pytest with slicer-core).
"""

import logging
import os
import pathlib
import unittest
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
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
SETTINGS_ARCHIVE_KEY = f"{MODULE_NAME}/ArchiveFolder"
SETTINGS_HISTORY_KEY = f"{MODULE_NAME}/ArchiveFolderHistory"
# Parameter -> widget pairs kept in sync by the Widget itself (no connectGui connector for them).
MANUAL_PARAMETER_WIDGETS = {"segmentId": "segmentSelector"}
# Volume parameter of each fixed sequence selector.
SEQUENCE_PARAMETERS = {"T2": "t2Volume", "T1": "t1Volume", "T1FS": "t1fsVolume"}
# The demo archive built on first use: small enough to build and index in about a minute on a laptop.
DEMO_CASES = 60
DEMO_SIZE = "small"


def resourcesDir() -> pathlib.Path:
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
        self.parent.contributors = ["SimilarCaseRetrieval developers"]
        self.parent.helpText = _(
            "Find similar past cases in your own archive from the segment around a mass (several MRI "
            "sequences: T2, T1, T1 fat-sat) and optional clinical notes. Results show each case's "
            "diagnosis, semantic terms (O-RADS MRI lexicon) and report; mark results relevant or not "
            "and Refine; show the query and the top cases side by side in linked viewers; annotators "
            "can add the current case to the archive. See docs/slicer.md in the extension's repository."
        )
        self.parent.acknowledgementText = _(
            "Image-text joint embedding after Zheng Z. et al., Dual-path convolutional image-text "
            "embeddings with instance loss, ACM TOMM 2020. Evaluated on public data: MMOTU ovarian "
            "ultrasound (Zhao Q. et al. 2022), MedMNIST v2 (Yang J. et al., Sci Data 2023), LIDC-IDRI "
            "(Armato S.G. et al., Med Phys 2011), IU X-ray / Open-i (Demner-Fushman D. et al., JAMIA 2016). "
            "The demo archive is synthetic: no patient data is shipped."
        )
        app = getattr(slicer, "app", None)
        if app is not None:
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
    """Sample Data entry: switch to this module and build/load the demo there (in the background)."""
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
    archiveFolder: pathlib.Path
    modelFolder: pathlib.Path
    k: Annotated[int, WithinRange(1, 100)] = 10
    textWeight: Annotated[float, WithinRange(0.0, 1.0)] = 0.3
    labelFilter: str = ""
    termFilter: str = ""
    viewerCount: Annotated[int, WithinRange(1, 8)] = 3
    newCaseId: str = ""
    newCaseLabel: str = ""
    newCaseTerms: str = ""
    newCaseReport: str = ""


def _pathOrNone(path) -> pathlib.Path | None:
    """An unset Path parameter reads as '' or '.'; treat both as None."""
    if path is None or str(path).strip() in ("", "."):
        return None
    return pathlib.Path(path)


#
# Widget
#


class SimilarCaseRetrievalWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: thin, bound to the parameter node with connectGui."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._onJobDone = None
        self._pollTimer = None
        self._rows = []
        self.segmentEditorWidget = None

    # -- set up ------------------------------------------------------------------------------
    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(str(resourcesDir() / "UI" / f"{MODULE_NAME}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SimilarCaseRetrievalLogic()

        self._setupSegmentEditor()
        self.ui.searchProgressBar.visible = False
        self.ui.archiveFolder.settingKey = SETTINGS_HISTORY_KEY  # ctkPathLineEdit keeps a history
        self.ui.resultsTable.setColumnCount(len(RESULT_HEADERS))
        self.ui.resultsTable.setHorizontalHeaderLabels(RESULT_HEADERS)
        self.ui.resultsTable.horizontalHeader().setStretchLastSection(True)

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(200)
        self._pollTimer.timeout.connect(self.onPollJob)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentation.currentNodeChanged.connect(self.onSegmentationChanged)
        self.ui.segmentSelector.currentSegmentChanged.connect(self.onSegmentChanged)
        self.ui.t2Volume.currentNodeChanged.connect(self.onReferenceVolumeChanged)
        self.ui.archiveFolder.currentPathChanged.connect(self.onArchiveFolderChanged)
        self.ui.demoArchiveButton.clicked.connect(self.onDemoArchive)
        self.ui.searchButton.clicked.connect(self.onSearch)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.refineButton.clicked.connect(self.onRefine)
        self.ui.showSideBySideButton.clicked.connect(self.onShowSideBySide)
        self.ui.loadCaseButton.clicked.connect(self.onLoadSelectedCase)
        self.ui.resultsTable.cellDoubleClicked.connect(lambda row, column: self.onLoadSelectedCase())
        self.ui.resultsTable.itemSelectionChanged.connect(self.onHitSelected)
        self.ui.addCaseButton.clicked.connect(self.onAddCase)

        self.initializeParameterNode()

    def _setupSegmentEditor(self) -> None:
        """Embed a Segment Editor so the user can draw the mass without leaving the module."""
        self.segmentEditorWidget = slicer.qMRMLSegmentEditorWidget()
        self.segmentEditorWidget.setMaximumNumberOfUndoStates(10)
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

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self.segmentEditorWidget is not None:
            self.segmentEditorWidget.setActiveEffect(None)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._clearResults()
        self.logic.loadedCases.clear()

    def onSceneEndClose(self, caller, event) -> None:
        self._updateSegmentEditorNode()
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        import qt

        self.setParameterNode(self.logic.getParameterNode())
        node = self._parameterNode
        if not node.t2Volume:
            node.t2Volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not node.segmentation:
            node.segmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        if _pathOrNone(node.archiveFolder) is None:
            remembered = qt.QSettings().value(SETTINGS_ARCHIVE_KEY, "")
            if remembered:
                node.archiveFolder = pathlib.Path(remembered)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self.onSegmentationChanged(self._parameterNode.segmentation)
            self._updateButtons()

    # -- GUI state ---------------------------------------------------------------------------
    def _updateButtons(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node and self.ui.segmentSelector.currentSegmentID() != node.segmentId and node.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(node.segmentId)  # set from code (e.g. the demo)
        running = self._job is not None
        ready = bool(node and node.t2Volume and node.segmentation and _pathOrNone(node.archiveFolder))
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
        self.ui.addCaseButton.enabled = bool(ready and node.newCaseId.strip()) and not running

    def onSegmentationChanged(self, segmentationNode) -> None:
        self.ui.segmentSelector.setCurrentNode(segmentationNode)
        if self._parameterNode and self._parameterNode.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(self._parameterNode.segmentId)
        if self.segmentEditorWidget is not None:
            self.segmentEditorWidget.setSegmentationNode(segmentationNode)
            self.onReferenceVolumeChanged(self._parameterNode.t2Volume if self._parameterNode else None)

    def onReferenceVolumeChanged(self, volumeNode) -> None:
        if self.segmentEditorWidget is None or volumeNode is None:
            return
        if hasattr(self.segmentEditorWidget, "setSourceVolumeNode"):
            self.segmentEditorWidget.setSourceVolumeNode(volumeNode)
        else:  # Slicer < 5.2
            self.segmentEditorWidget.setMasterVolumeNode(volumeNode)

    def onSegmentChanged(self, segmentId) -> None:
        if self._parameterNode:
            self._parameterNode.segmentId = segmentId or ""

    def onArchiveFolderChanged(self, path) -> None:
        import qt

        if path:
            qt.QSettings().setValue(SETTINGS_ARCHIVE_KEY, path)
            self.ui.archiveFolder.addCurrentPathToHistory()

    def _status(self, message: str) -> None:
        self.ui.statusLabel.text = message
        slicer.util.showStatusMessage(message, 3000)

    # -- actions -----------------------------------------------------------------------------
    def onDemoArchive(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not build the demo archive."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            modelDir = _pathOrNone(self._parameterNode.modelFolder)
            job = self.logic.session.runner.submit(self.logic.prepareDemo, modelDir=modelDir)
            self._startJob(
                job,
                _("Building and indexing the synthetic demo archive (first time only, about a minute)..."),
                self._onDemoReady,
            )

    def _onDemoReady(self, prepared) -> None:
        self.logic.showDemo(self._parameterNode, prepared)
        self._status(_("Demo archive ready: a demo case is loaded as the query. Click Find similar cases."))

    def onSearch(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Search failed."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            self.segmentEditorWidget.setActiveEffect(None)
            self._startJob(self.logic.startSearch(self._parameterNode), _("Searching..."), self._onSearchDone)

    def _onSearchDone(self, result) -> None:
        self.logic.acceptResult(result)
        self._showResults(result)
        self._status(_("Found {n} similar cases.").format(n=len(result.hits)))

    def _startJob(self, job, message: str, onDone) -> None:
        """Show progress and poll `job` (a background call) from a Qt timer; `onDone(result)` when it ends."""
        self._job = job
        self._onJobDone = onDone
        self.ui.searchProgressBar.visible = True
        self._status(message)
        self._updateButtons()
        self._pollTimer.start()

    def onPollJob(self) -> None:
        job = self._job
        if job is None:
            self._pollTimer.stop()
            return
        if not job.done():
            return
        self._pollTimer.stop()
        self._job = None
        self.ui.searchProgressBar.visible = False
        try:
            if job.cancelled:
                self._status(_("Cancelled."))
                return
            self._onJobDone(job.result())
        except ValueError as exc:  # bad input: one line, no traceback
            slicer.util.errorDisplay(str(exc))
            self._status(str(exc))
        except Exception as exc:
            logging.exception("%s failed", job.name)
            slicer.util.errorDisplay(_("Failed: {error}").format(error=exc))
        finally:
            self._updateButtons()

    def onCancel(self) -> None:
        """Stop waiting: the GUI is free at once; a running search ends in the background, unused."""
        if self._job is not None:
            self._job.cancel()
            self._job = None
            self._pollTimer.stop()
            self.ui.searchProgressBar.visible = False
            self._status(_("Cancelled."))
            self._updateButtons()

    def onRefine(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Refine failed."), waitCursor=True):
            relevant, notRelevant = self._feedback()
            result = self.logic.refine(relevant, notRelevant)
            self._showResults(result)
            self._status(
                _("Refined with {r} relevant and {n} not relevant cases.").format(
                    r=len(relevant), n=len(notRelevant)
                )
            )

    def onShowSideBySide(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the cases side by side."), waitCursor=True):
            self.logic.showSideBySide(self._parameterNode)

    def onLoadSelectedCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
            caseId = self._selectedCaseId()
            if caseId:
                loaded = self.logic.loadCase(caseId, self._parameterNode)
                slicer.util.setSliceViewerLayers(background=loaded.reference_volume, fit=True)

    def onHitSelected(self) -> None:
        row = self._selectedRow()
        if row is None:
            return
        hit = self._rows[row]
        self.ui.hitReport.setPlainText(
            f"{hit['Case']} - {hit['Label']}\nShared terms: {hit['Shared terms']}\n\n{self.logic.reportOf(hit['Case'])}"
        )

    def onAddCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the case."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            case = self.logic.addCurrentCase(self._parameterNode)
            self._status(_("Case {case} added to the archive and indexed.").format(case=case.case_id))
            self._parameterNode.newCaseId = ""

    # -- results table -------------------------------------------------------------------------
    def _clearResults(self) -> None:
        self._rows = []
        if hasattr(self, "ui"):
            self.ui.resultsTable.setRowCount(0)
            self.ui.hitReport.setPlainText("")

    def _showResults(self, result) -> None:
        import qt
        from SimilarCaseRetrievalLib.slicer_logic import hit_rows

        self._rows = hit_rows(result)
        table = self.ui.resultsTable
        table.setRowCount(len(self._rows))
        for r, row in enumerate(self._rows):
            for c, header in enumerate(RESULT_HEADERS):
                if header in ("Relevant", "Not relevant"):
                    item = qt.QTableWidgetItem()
                    item.setFlags(qt.Qt.ItemIsUserCheckable | qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
                    item.setCheckState(qt.Qt.Unchecked)
                else:
                    value = row.get(header)
                    text = (
                        "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
                    )
                    item = qt.QTableWidgetItem(text)
                    item.setToolTip(text)
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

    def _feedback(self) -> tuple[list[str], list[str]]:
        import qt

        relevantColumn = RESULT_HEADERS.index("Relevant")
        notRelevantColumn = RESULT_HEADERS.index("Not relevant")
        relevant, notRelevant = [], []
        for r, row in enumerate(self._rows):
            if self.ui.resultsTable.item(r, relevantColumn).checkState() == qt.Qt.Checked:
                relevant.append(row["Case"])
            elif self.ui.resultsTable.item(r, notRelevantColumn).checkState() == qt.Qt.Checked:
                notRelevant.append(row["Case"])
        return relevant, notRelevant

    def _selectedRow(self):
        rows = {index.row() for index in self.ui.resultsTable.selectedIndexes()}
        return min(rows) if rows else None

    def _selectedCaseId(self) -> str | None:
        row = self._selectedRow()
        if row is None:
            slicer.util.warningDisplay(_("Select a case in the results table first."))
            return None
        return self._rows[row]["Case"]


RESULT_HEADERS = [
    "Rank",
    "Case",
    "Score",
    "Image",
    "Text",
    "Label",
    "Shared terms",
    "Report",
    "Relevant",
    "Not relevant",
]


#
# Logic
#


class SimilarCaseRetrievalLogic(ScriptedLoadableModuleLogic):
    """Search, refine, show and add cases; delegates to SimilarCaseRetrievalLib.

    Usable without the GUI (e.g. from the Python console or a test). Bad input raises ValueError
    (`CaseInputError`) with a one-line message naming the item and the fix.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._session = None
        self.loadedCases = {}
        self.queryCase = None

    @property
    def session(self):
        if self._session is None:
            from SimilarCaseRetrievalLib.slicer_logic import RetrievalSession

            self._session = RetrievalSession()
        return self._session

    def getParameterNode(self):
        return SimilarCaseRetrievalParameterNode(super().getParameterNode())

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- dependencies --------------------------------------------------------------------------
    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Install torch (PyTorch extension) and Resources/requirements.txt at first use; False if declined."""
        testing = bool(getattr(slicer, "app", None) and slicer.app.commandOptions().testingEnabled)
        ask = askConfirmation and not testing
        try:
            import torch  # noqa: F401
        except ImportError:
            try:
                import PyTorchUtils
            except ImportError as exc:
                raise ValueError(
                    "PyTorch is missing. Fix: install the PyTorch extension from the Extensions Manager and restart"
                ) from exc
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                if torchLogic.installTorch(ask, None, ">=2.3") is None:
                    return False
        requirements = resourcesDir() / "requirements.txt"
        if missingRequirements(requirements):
            if ask and not slicer.util.confirmOkCancelDisplay(
                _(
                    "Similar Case Retrieval needs a few Python packages ({packages}). Install them now?"
                ).format(packages=", ".join(missingRequirements(requirements)))
            ):
                return False
            installRequirements(requirements)
        return True

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

    def buildQuery(self, parameterNode):
        from SimilarCaseRetrievalLib.slicer_logic import build_query

        return build_query(
            self.queryVolumeNodes(parameterNode),
            parameterNode.segmentation,
            parameterNode.segmentId or None,
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

    def _archive(self, parameterNode) -> pathlib.Path:
        archive = _pathOrNone(parameterNode.archiveFolder)
        if archive is None:
            raise ValueError(
                "archive folder: not set. Fix: choose the archive folder (or try the demo archive)"
            )
        return archive

    # -- search ----------------------------------------------------------------------------------
    def search(self, parameterNode):
        """Search now and return the SearchResult (blocking; used by scripts and tests)."""
        query = self.buildQuery(parameterNode)
        return self.session.search(query, self._archive(parameterNode), **self._searchOptions(parameterNode))

    def startSearch(self, parameterNode):
        """Read the inputs now (GUI thread), search on the background worker; returns a Job to poll."""
        query = self.buildQuery(parameterNode)
        return self.session.search_in_background(
            query, self._archive(parameterNode), **self._searchOptions(parameterNode)
        )

    def acceptResult(self, result):
        """Make a background search's result the current one (what Refine and Show side by side use)."""
        return self.session.accept(result)

    def refine(self, relevant, notRelevant):
        return self.session.refine(list(relevant), list(notRelevant))

    @property
    def lastResult(self):
        return self.session.last_result

    def reportOf(self, caseId: str) -> str:
        engine = self.session.engine
        if engine is None:
            return ""
        try:
            return self.session.runner.call(lambda: engine.store.get(caseId).report)
        except ValueError:  # unknown case: the report is informative only
            return ""

    # -- scene -----------------------------------------------------------------------------------
    def loadCase(self, caseId: str, parameterNode=None):
        """Load an archive case (all sequences + its segment) into the scene; returns a LoadedCase."""
        from SimilarCaseRetrievalLib import mrml

        engine = self.session.engine
        if engine is None:
            if parameterNode is None:
                raise ValueError("load case: no archive is open. Fix: run a search first")
            engine = self.session.runner.call(
                self.session._engine_for, self._archive(parameterNode), _pathOrNone(parameterNode.modelFolder)
            )
        if caseId in self.loadedCases:
            return self.loadedCases[caseId]
        store = engine.store
        loaded = self.session.runner.call(lambda: _loadCaseData(store, caseId))
        self.loadedCases[caseId] = mrml.add_case_nodes(*loaded)
        return self.loadedCases[caseId]

    def queryAsLoadedCase(self, parameterNode):
        from SimilarCaseRetrievalLib import mrml

        query = self.buildQuery(parameterNode)
        volumes = self.queryVolumeNodes(parameterNode)
        self.queryCase = mrml.LoadedCase(
            case_id="query",
            volumes=volumes,
            segmentation=parameterNode.segmentation,
            segment_id=query.segment_id,
            reference=query.study.reference,
            centre_ras=mrml.mask_centre_ras(query.mask),
            extent_mm=mrml.mask_extent_mm(query.mask),
        )
        return self.queryCase

    def showSideBySide(self, parameterNode, count: int | None = None) -> dict:
        """The query and the top `count` hits in linked viewers centred on their segments."""
        from SimilarCaseRetrievalLib import slicer_layout

        result = self.lastResult
        if result is None or not result.hits:
            raise ValueError("side by side: there are no results. Fix: run a search first")
        count = int(count or parameterNode.viewerCount)
        query = self.queryAsLoadedCase(parameterNode)
        hits = [self.loadCase(hit.case_id, parameterNode) for hit in result.hits[:count]]
        return slicer_layout.show_side_by_side(query, hits)

    # -- annotators --------------------------------------------------------------------------------
    def addCurrentCase(self, parameterNode):
        """Add the query (volumes + segment) with label, terms and report to the archive, indexed at once."""
        from SimilarCaseRetrievalLib.slicer_logic import parse_terms

        query = self.buildQuery(parameterNode)
        return self.session.add_case(
            query,
            self._archive(parameterNode),
            case_id=parameterNode.newCaseId.strip(),
            label=parameterNode.newCaseLabel.strip() or None,
            terms=parse_terms(parameterNode.newCaseTerms),
            report=parameterNode.newCaseReport,
            notes=parameterNode.notes,
            model_dir=_pathOrNone(parameterNode.modelFolder),
        )

    # -- demo --------------------------------------------------------------------------------------
    def demoArchiveDir(self) -> pathlib.Path:
        base = pathlib.Path(slicer.app.cachePath) if getattr(slicer, "app", None) else pathlib.Path.home()
        return base / MODULE_NAME / "demo-archive"

    def prepareDemo(self, archiveDir=None, modelDir=None, nCases: int = DEMO_CASES, size: str = DEMO_SIZE):
        """Build (first use only) and index the synthetic demo archive; read its first case.

        No scene access: runs on the background worker. Returns what `showDemo` puts in the scene.
        """
        from SimilarCaseRetrievalLib.search import SearchEngine
        from SimilarCaseRetrievalLib.synthetic import ensure_demo_archive

        archive = pathlib.Path(archiveDir) if archiveDir else self.demoArchiveDir()
        ensure_demo_archive(archive, n_cases=nCases, seed=0, size=size, progress=False)
        engine = SearchEngine(archive, modelDir, auto_index=True)  # embeds and indexes what is missing
        try:
            case = engine.store.get(engine.store.ids()[0])
            study = engine.store.load_study(case)
            mask = engine.store.load_mask(case, study)
        finally:
            engine.close()
        return archive, case, study, mask

    def showDemo(self, parameterNode, prepared):
        """Select the demo archive and put its first case in the scene as the query (GUI thread)."""
        from SimilarCaseRetrievalLib import mrml

        archive, case, study, mask = prepared
        parameterNode.archiveFolder = archive
        for seq, image in study.sequences.items():
            node = mrml.volume_node_from_image(image, f"demo {seq}")
            if seq in SEQUENCE_PARAMETERS:
                setattr(parameterNode, SEQUENCE_PARAMETERS[seq], node)
        segmentation, segmentId = mrml.segmentation_from_mask(
            mask, "demo segmentation", reference_volume_node=parameterNode.t2Volume
        )
        parameterNode.segmentation = segmentation
        parameterNode.segmentId = segmentId
        parameterNode.notes = case.notes
        return case

    def loadDemo(self, parameterNode=None, archiveDir=None, modelDir=None, **options):
        """Blocking `prepareDemo` + `showDemo` (Sample Data entry, scripts, tests)."""
        parameterNode = parameterNode or self.getParameterNode()
        modelDir = modelDir or _pathOrNone(parameterNode.modelFolder)
        prepared = self.prepareDemo(archiveDir, modelDir, **options)
        if modelDir is not None:
            parameterNode.modelFolder = pathlib.Path(modelDir)
        return self.showDemo(parameterNode, prepared)


def _loadCaseData(store, caseId):
    """Read a case's images on the worker thread (the store's SQLite connection lives there)."""
    case = store.get(caseId)
    study = store.load_study(case)
    mask = store.load_mask(case, study) if case.mask else None
    return case, study, mask


def _requirementLines(path: pathlib.Path) -> list[str]:
    lines = []
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


# A requirement is also met by a distribution providing the same module (hnswlib built from source).
EQUIVALENT_DISTRIBUTIONS = {"chroma-hnswlib": ("hnswlib",)}


def _installedVersion(name: str):
    import importlib.metadata

    for candidate in (name, *EQUIVALENT_DISTRIBUTIONS.get(name.lower(), ())):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def missingRequirements(path) -> list[str]:
    """Requirement lines of `path` that are not satisfied in this Python."""
    import re

    try:
        from packaging.requirements import Requirement
    except ImportError:  # very old Slicer: check names only
        Requirement = None
    missing = []
    for line in _requirementLines(path):
        if Requirement is not None:
            requirement = Requirement(line)
            name, specifier = requirement.name, requirement.specifier
        else:
            name, specifier = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0], None
        version = _installedVersion(name)
        if version is None or (specifier and not specifier.contains(version, prereleases=True)):
            missing.append(line)
    return missing


def installRequirements(path) -> None:
    """pip-install a requirements file: slicer.pydeps.pip_ensure (Slicer >= 5.11), else slicer.util.pip_install."""
    try:
        import slicer.pydeps as pydeps
    except ImportError:
        pydeps = None
    if pydeps is not None and hasattr(pydeps, "pip_ensure"):
        pydeps.pip_ensure(pydeps.load_requirements(str(path)), skip_packages=["torch"], requester=MODULE_NAME)
    else:
        slicer.util.pip_install(["-r", str(path)])


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
            if getattr(slicer, "app", None) is not None:  # in Slicer: install torch and requirements first
                self.assertTrue(SimilarCaseRetrievalLogic().ensureDependencies(askConfirmation=False))
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
        node.archiveFolder = archive
        node.modelFolder = modelDir
        return node, case

    def test_SearchFromSegmentAndLoadTopCase(self):
        from SimilarCaseRetrievalLib import mrml

        self.delayDisplay("Building a tiny synthetic archive and index")
        logic = SimilarCaseRetrievalLogic()
        node, queryCase = self._queryFromArchiveCase(logic)
        node.k = 3
        node.textWeight = 0.0  # image only: the query case itself must come back first

        self.delayDisplay("Searching")
        result = logic.search(node)
        self.assertEqual(len(result.hits), 3)
        scores = [hit.score for hit in result.hits]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual(result.hits[0].case_id, queryCase.case_id)

        self.delayDisplay("Loading the top case")
        before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        loaded = logic.loadCase(result.hits[1].case_id, node)
        after = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
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
        ids = [hit.case_id for hit in first.hits]
        refined = logic.refine(relevant=[ids[-1]], notRelevant=[ids[1]])
        self.assertEqual(len(refined.hits), 4)
        rank = [hit.case_id for hit in refined.hits]
        self.assertLess(rank.index(ids[-1]), ids.index(ids[-1]))  # the relevant case moved up
        views = logic.showSideBySide(node)
        self.assertEqual(len(views), 3)  # query + 2 cases
        logic.close()

    def test_BadInputIsOneLineError(self):
        import numpy as np

        logic = SimilarCaseRetrievalLogic()
        node = logic.getParameterNode()
        node.t2Volume = slicer.util.addVolumeFromArray(np.zeros((4, 8, 8), np.float32), name="blank")
        node.segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
        node.archiveFolder = pathlib.Path(os.getcwd())
        with self.assertRaises(ValueError) as caught:
            logic.search(node)
        self.assertIn("Fix:", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))
        logic.close()


if __name__ == "__main__":  # pragma: no cover
    unittest.main()
