"""SDF-CAR in 3D Slicer: two angiograms and their C-arm geometry become a segmentation node.

The widget holds the GUI, :class:`SlicerSDFCARLogic` the orchestration (case folder, the
background ``sdfcar reconstruct`` process, importing its outputs) and ``SlicerSDFCARLib``
the pure-Python helpers, which are tested outside Slicer.
"""

import html
import importlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import (
    Choice,
    Default,
    Minimum,
    WithinRange,
    parameterNodeWrapper,
    parameterPack,
)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SlicerSDFCARLib.case_folder import (
    CASE_FOLDER,
    RECONSTRUCTION_FOLDER,
    make_run_folder,
    write_case_folder,
)
from SlicerSDFCARLib.command import (
    AUTOMATIC_PRESET, DEVICES, PRESET_CHOICES, EngineSettings, engine_preset, parse_overrides,
    reconstruct_command)
from SlicerSDFCARLib.dicom import read_geometry
from SlicerSDFCARLib.geometry import ViewSettings, volume_contract
from SlicerSDFCARLib.process import BackgroundProcess
from SlicerSDFCARLib.process_output import OutputMonitor, Progress
from SlicerSDFCARLib.requirements import (
    install_arguments,
    local_source,
    missing_requirements,
    read_requirements,
)
from SlicerSDFCARLib.results import (ImportedResults, ResultImportError, import_results,
                                     import_xa_views, qca_line, working_view_camera)
from SlicerSDFCARLib.validation import Issue, ViewInput, has_errors, validate_views
from SlicerSDFCARLib.xa_input import chosen_frames, edited_fields, xa_run_command

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = MODULE_DIR / "Resources" / "requirements.txt"
MINIMUM_TORCH = ">=2.1"
#: Contract field -> ViewParameters member.
VIEW_FIELDS = {
    "primary_angle_deg": "primaryAngle",
    "secondary_angle_deg": "secondaryAngle",
    "source_to_detector_mm": "sourceToDetector",
    "source_to_isocenter_mm": "sourceToIsocenter",
}


class SlicerSDFCAR(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SDF-CAR Coronary Reconstruction"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["SDF-CAR developers"]
        self.parent.helpText = (
            "Reconstructs the 3D coronary artery tree from two X-ray angiography views and "
            "their C-arm geometry with a hybrid SDF-occupancy neural field (sdfcar). Pick the "
            "two views (a frame of a cine run, or a 2D image), check the geometry that the "
            "DICOM tags pre-filled, and Apply: the reconstruction runs in a background "
            "process and a 'Coronary arteries' segmentation appears in patient space. Two XA "
            "DICOM runs are handed to the engine as they are (it extracts the vessels and "
            "the extracted masks and line-integral proxies are loaded as volumes); other "
            "views must be line-integral images or binary vessel masks.")
        self.parent.acknowledgementText = (
            "The method follows the SDF-CAR and NeCA papers; the engine is the sdfcar package "
            "of this repository.")


@parameterPack
class ViewParameters:
    """One view's frame and C-arm geometry (pre-filled from DICOM tags, editable)."""

    frame: Annotated[int, Minimum(0), Default(0)]
    primaryAngle: Annotated[float, WithinRange(-180.0, 180.0), Default(0.0)]
    secondaryAngle: Annotated[float, WithinRange(-180.0, 180.0), Default(0.0)]
    sourceToDetector: Annotated[float, Minimum(0.0), Default(1000.0)]
    sourceToIsocenter: Annotated[float, Minimum(0.0), Default(750.0)]
    rowSpacing: Annotated[float, Minimum(0.0), Default(0.3)]
    columnSpacing: Annotated[float, Minimum(0.0), Default(0.3)]
    #: ID of the volume whose tags filled the fields (a restored scene keeps user edits).
    filledFrom: str


@parameterNodeWrapper
class SlicerSDFCARParameterNode:
    """Everything the module's GUI holds; saved and restored with the scene."""

    view1Volume: vtkMRMLScalarVolumeNode
    view2Volume: vtkMRMLScalarVolumeNode
    view1: ViewParameters
    view2: ViewParameters
    preset: Annotated[str, Choice(PRESET_CHOICES), Default(AUTOMATIC_PRESET)]
    device: Annotated[str, Choice(DEVICES), Default("auto")]
    iterations: Annotated[int, Minimum(0), Default(0)]  # 0: the preset's count
    seed: Annotated[int, Minimum(0), Default(0)]
    volumeSize: Annotated[int, WithinRange(16, 512), Default(128)]
    voxelSpacing: Annotated[float, WithinRange(0.05, 5.0), Default(0.8)]
    #: Outputs written on a finer grid of this spacing (mm; 0: the fit's grid).
    outputSpacing: Annotated[float, WithinRange(0.0, 5.0), Default(0.0)]
    extraSettings: str  # KEY=VALUE items passed as --set
    sdfVolume: Annotated[bool, Default(False)]
    labelVolume: Annotated[bool, Default(False)]
    surfaceModel: Annotated[bool, Default(True)]
    outputFolder: str  # empty: a folder under Slicer's temporary path
    rawXA: Annotated[bool, Default(True)]  # two XA DICOM files: the engine reads them
    automaticFrames: Annotated[bool, Default(False)]  # raw XA: the engine picks the frames
    automaticVolume: Annotated[bool, Default(True)]  # raw XA: the engine places the grid


class InstallationDeclined(RuntimeError):
    """The user did not allow the Python packages to be installed."""


@dataclass
class RunOutcome:
    """How a reconstruction ended: ``message`` is one line (the error on failure)."""

    success: bool
    message: str
    runFolder: Path
    results: ImportedResults | None = None
    xaViews: list | None = None  # [(mask, integral)] per view for raw XA runs


@dataclass
class _Run:
    folder: Path
    options: dict
    onProgress: Callable[[Progress], None]
    onLog: Callable[[str], None]
    onFinished: Callable[[RunOutcome], None]
    started: float = field(default_factory=time.monotonic)
    #: raw XA runs: the angiogram volumes and whether each is a multi-frame volume
    xaReferences: tuple | None = None
    xaMultiFrame: tuple[bool, bool] = (False, False)


class SlicerSDFCARWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: inputs, live validation, Apply/Cancel, progress, log and status."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SlicerSDFCAR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SlicerSDFCARLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for index in (1, 2):
            self._viewWidget(index, "VolumeSelector").connect(
                "currentNodeChanged(vtkMRMLNode*)", self.onViewVolumeChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.outputFolderButton.connect("clicked(bool)", self.onBrowseOutputFolder)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.logic.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.updateValidation)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.updateValidation)
            self.updateViews()
        self.updateValidation()

    def _viewWidget(self, index: int, name: str):
        return getattr(self.ui, f"view{index}{name}")

    def onViewVolumeChanged(self, volumeNode=None) -> None:
        # Deferred until the parameter node wrapper has stored the new selection and updated
        # the GUI, so the geometry written here reaches both. A view whose volume did not
        # change keeps its fields (see updateView).
        qt.QTimer.singleShot(0, self.updateViews)

    def updateViews(self) -> None:
        for index in (1, 2):
            self.updateView(index)

    def updateView(self, index: int) -> None:
        """Frame range of the view's image, and its DICOM geometry when it is a new choice."""
        if self._parameterNode is None:
            return
        volumeNode = getattr(self._parameterNode, f"view{index}Volume")
        shape = self.logic.imageShape(volumeNode)
        frames = shape[0] if shape else 1
        frameSpinBox = self._viewWidget(index, "FrameSpinBox")
        frameSpinBox.maximum = max(frames - 1, 0)
        frameSpinBox.enabled = frames > 1
        label = self._viewWidget(index, "GeometryLabel")
        if volumeNode is None:
            label.text = ""
            return
        view = getattr(self._parameterNode, f"view{index}")
        values, notes = self.logic.geometryFromVolume(volumeNode, view.frame)
        if view.filledFrom != volumeNode.GetID():
            self.logic.applyGeometry(view, values, volumeNode.GetID())
        label.text = "; ".join(notes) if notes else "DICOM tags (read by sdfcar)"

    def updateValidation(self, caller=None, event=None) -> None:
        running = self.logic.isRunning
        issues = self.logic.validate(self._parameterNode) if self._parameterNode else []
        self.ui.validationLabel.text = _issuesHtml(issues)
        self.ui.applyButton.enabled = (self._parameterNode is not None and not running
                                       and not has_errors(issues))
        self.ui.cancelButton.enabled = running
        for name in ("inputsCollapsibleButton", "settingsCollapsibleButton",
                     "outputsCollapsibleButton"):
            getattr(self.ui, name).enabled = not running

    def setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.styleSheet = "color: #c0392b;" if error else ""

    def onApplyButton(self) -> None:
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        self.showQcaTable(None)
        try:
            if self.logic.missingRequirements():
                self.setStatus("Installing the Python packages SDF-CAR needs ...")
                self.logic.installRequirements(confirm=True)
            runFolder = self.logic.startReconstruction(
                self._parameterNode, self.onProgress, self.onLog, self.onFinished)
        except Exception as error:  # noqa: BLE001 - any failure is reported as one line
            logging.exception("SDF-CAR could not start")
            self.setStatus(_oneLine(error), error=True)
            return
        finally:
            self.updateValidation()
        self.setStatus(f"Running in the background; files in {runFolder}")

    def onCancelButton(self) -> None:
        self.logic.cancel()

    def onProgress(self, progress: Progress) -> None:
        self.ui.progressBar.value = progress.percent
        self.setStatus(progress.describe().capitalize())

    def onLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onFinished(self, outcome: RunOutcome) -> None:
        self.updateValidation()
        self.setStatus(outcome.message, error=not outcome.success)
        if outcome.success:
            self.ui.progressBar.value = 100
            slicer.util.resetThreeDViews()
            if outcome.results is not None:
                self.logic.showWorkingView(outcome.results)
                self.showQcaTable(outcome.results.qca_table)

    def showQcaTable(self, table) -> None:
        """Show the run's QCA table node in the panel (hide the section for None)."""
        self.ui.qcaTableView.setMRMLTableNode(table)
        self.ui.qcaCollapsibleButton.visible = table is not None

    def onBrowseOutputFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), "Folder for SDF-CAR runs", self._parameterNode.outputFolder)
        if folder:
            self._parameterNode.outputFolder = folder


def _issuesHtml(issues: list[Issue]) -> str:
    colours = {"error": "#c0392b", "warning": "#b9770e"}
    return "<br>".join(f'<span style="color:{colours[issue.level]}">'
                       f"{html.escape(issue.message)}</span>" for issue in issues)


def _oneLine(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class SlicerSDFCARLogic(ScriptedLoadableModuleLogic):
    """Inputs from volume nodes, the case folder, the background process and the import.

    Usable without the widget: ``startReconstruction`` returns at once and reports through
    callbacks from a Qt timer, so the application stays responsive.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._process: BackgroundProcess | None = None
        self._monitor: OutputMonitor | None = None
        self._run: _Run | None = None
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._poll)

    def getParameterNode(self) -> SlicerSDFCARParameterNode:
        return SlicerSDFCARParameterNode(super().getParameterNode())

    # -- images -------------------------------------------------------------------------

    @staticmethod
    def sequenceBrowser(volumeNode):
        """The sequence browser that plays ``volumeNode`` (a cine run), or None."""
        sequences = getattr(slicer.modules, "sequences", None)
        if volumeNode is None or sequences is None:
            return None
        return sequences.logic().GetFirstBrowserNodeForProxyNode(volumeNode)

    def imageShape(self, volumeNode) -> tuple[int, int, int] | None:
        """``(frames, rows, columns)`` of a 2D image, a multi-frame volume or a sequence."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            return None
        columns, rows, slices = volumeNode.GetImageData().GetDimensions()
        browser = self.sequenceBrowser(volumeNode)
        frames = browser.GetSequenceNode(volumeNode).GetNumberOfDataNodes() if browser else slices
        return frames, rows, columns

    def frameImage(self, volumeNode, frame: int) -> np.ndarray:
        """Frame ``frame`` as a float32 ``(rows, columns)`` array, row 0 first as stored."""
        browser = self.sequenceBrowser(volumeNode)
        if browser:
            volumeNode = browser.GetSequenceNode(volumeNode).GetNthDataNode(frame)
            frame = 0
        array = slicer.util.arrayFromVolume(volumeNode)
        if array.ndim != 3:
            raise ValueError(f"{volumeNode.GetName()}: expected a grayscale image, got "
                             f"{array.shape[-1]} components per pixel")
        return np.array(array[frame], dtype=np.float32)

    # -- geometry -----------------------------------------------------------------------

    @staticmethod
    def dicomFile(volumeNode) -> str:
        """The DICOM file the volume was loaded from (Slicer's DICOM database), or ""."""
        if volumeNode is None:
            return ""
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        return (database.fileForInstance(uids[0]) if uids and database else "") or ""

    def geometryFromVolume(self, volumeNode, frame: int = 0) -> tuple[dict, list[str]]:
        """Geometry values (contract names) of the volume's DICOM file at ``frame``, read by
        the engine (``sdfcar xa-geometry``), the pixel spacing falling back to the volume's
        own, and notes on what is missing."""
        path = self.dicomFile(volumeNode)
        if path:
            found = read_geometry(self.pythonExecutable(), path, frame)
            values, notes = dict(found.values), list(found.notes)
        else:
            values, notes = {}, ["no DICOM tags: enter the angles and distances"]
        if "detector_spacing_mm" not in values:
            columnSpacing, rowSpacing = volumeNode.GetSpacing()[:2]
            values["detector_spacing_mm"] = (rowSpacing, columnSpacing)
            notes.append("pixel spacing taken from the volume")
        return values, notes

    @staticmethod
    def applyGeometry(view: ViewParameters, values: dict, volumeID: str) -> None:
        """Write geometry values into a view's parameters and remember their volume."""
        for name, member in VIEW_FIELDS.items():
            if name in values:
                setattr(view, member, float(values[name]))
        view.rowSpacing, view.columnSpacing = (float(v) for v in values["detector_spacing_mm"])
        view.filledFrom = volumeID

    @staticmethod
    def viewSettings(view: ViewParameters) -> ViewSettings:
        return ViewSettings(view.primaryAngle, view.secondaryAngle, view.sourceToDetector,
                            view.sourceToIsocenter, (view.rowSpacing, view.columnSpacing))

    def validate(self, parameters: SlicerSDFCARParameterNode) -> list[Issue]:
        """Errors and warnings for the two selected views."""
        views = []
        for index in (1, 2):
            node = getattr(parameters, f"view{index}Volume")
            view = getattr(parameters, f"view{index}")
            views.append(ViewInput(self.viewSettings(view), node.GetID() if node else None,
                                   self.imageShape(node), view.frame))
        return validate_views(views)

    # -- Python packages ----------------------------------------------------------------

    @staticmethod
    def missingRequirements() -> list[str]:
        """Requirements of ``Resources/requirements.txt`` not installed in Slicer's Python."""
        return missing_requirements(read_requirements(REQUIREMENTS_FILE))

    def installRequirements(self, confirm: bool = True) -> None:
        """Install what is missing: PyTorch through the PyTorch extension when it is there
        (it picks the build for the GPU), then ``sdfcar`` with its dependencies."""
        missing = self.missingRequirements()
        if not missing:
            return
        self._installTorch(confirm)
        arguments = install_arguments(missing, local_source(MODULE_DIR, os.environ))
        try:
            import slicer.packaging as slicerPackaging
            pipEnsure = slicerPackaging.pip_ensure
        except (ImportError, AttributeError):  # Slicer before 5.12
            pipEnsure = None
        if pipEnsure is not None:
            from packaging.requirements import Requirement
            try:
                pipEnsure([Requirement(a) for a in arguments], prompt_install=confirm,
                          requester="SDF-CAR", skip_in_testing=False)
            except RuntimeError as error:
                raise InstallationDeclined(f"Python packages not installed: {error}") from None
        else:
            question = ("SDF-CAR needs these Python packages in Slicer's Python (several GB "
                        "with PyTorch):\n\n" + "\n".join(arguments) + "\n\nInstall them now?")
            if confirm and not slicer.util.confirmOkCancelDisplay(question):
                raise InstallationDeclined("Python packages not installed: declined")
            slicer.util.pip_install(arguments)
        importlib.invalidate_caches()
        still = self.missingRequirements()
        if still:
            raise RuntimeError(f"still missing after installation: {', '.join(still)}")

    @staticmethod
    def _installTorch(confirm: bool) -> None:
        if importlib.util.find_spec("torch") is not None:
            return
        try:
            import PyTorchUtils
        except ImportError:  # without the PyTorch extension pip installs torch for sdfcar
            return
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=confirm, torchVersionRequirement=MINIMUM_TORCH)
        if torch is None:
            raise InstallationDeclined("PyTorch was not installed")

    # -- running ------------------------------------------------------------------------

    @property
    def isRunning(self) -> bool:
        return self._process is not None

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's Python interpreter (``PythonSlicer``), which runs ``sdfcar``."""
        return shutil.which("PythonSlicer") or sys.executable

    def startReconstruction(self, parameters: SlicerSDFCARParameterNode,
                            onProgress: Callable[[Progress], None],
                            onLog: Callable[[str], None],
                            onFinished: Callable[[RunOutcome], None]) -> Path:
        """Write the case folder and start ``sdfcar reconstruct`` in the background.

        Returns the run folder at once; ``onProgress``, ``onLog`` and finally ``onFinished``
        are called from a Qt timer. Bad input raises before anything runs.
        """
        if self.isRunning:
            raise RuntimeError("a reconstruction is already running")
        errors = [i.message for i in self.validate(parameters) if i.level == "error"]
        if errors:
            raise ValueError(errors[0])
        settings = EngineSettings(engine_preset(parameters.preset), parameters.device,
                                  parameters.iterations, parameters.seed,
                                  tuple(parse_overrides(parameters.extraSettings)),
                                  parameters.outputSpacing)
        volumes = tuple(getattr(parameters, f"view{i}Volume") for i in (1, 2))
        files = tuple(self.dicomFile(node) for node in volumes)
        rawXA = parameters.rawXA and all(files)
        base = (Path(parameters.outputFolder) if parameters.outputFolder.strip()
                else Path(slicer.app.temporaryPath) / "SDFCAR")
        folder = make_run_folder(base)
        try:
            command = (self._xaCommand(parameters, files, folder, settings) if rawXA
                       else self._caseCommand(parameters, volumes, folder, settings))
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        onLog("$ " + " ".join(command))
        self._process = BackgroundProcess(command, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                          cwd=folder)
        self._monitor = OutputMonitor()
        self._run = _Run(folder, {"sdf_volume": parameters.sdfVolume,
                                  "label_volume": parameters.labelVolume,
                                  "surface_model": parameters.surfaceModel},
                         onProgress, onLog, onFinished)
        if rawXA:
            self._run.xaReferences = volumes
            self._run.xaMultiFrame = tuple(self.sequenceBrowser(node) is None for node in volumes)
        self._timer.start()
        return folder

    @staticmethod
    def showWorkingView(results: ImportedResults, rank: int = 0) -> bool:
        """Point the first 3D view's camera as the ``rank``-th best working view's angiogram
        sees the tree (:func:`working_view_camera`); False without QCA."""
        camera = working_view_camera(results, rank)
        if camera is None:
            return False
        view = slicer.app.layoutManager().threeDWidget(0).threeDView()
        node = slicer.modules.cameras.logic().GetViewActiveCameraNode(view.mrmlViewNode())
        position, focal, up = camera
        node.SetFocalPoint(focal)
        node.SetPosition(position)
        node.SetViewUp(up)
        node.ResetClippingRange()
        return True

    def _caseCommand(self, parameters, volumes, folder: Path, settings: EngineSettings
                     ) -> list[str]:
        """Write the selected frames as a case folder; the command that reconstructs it."""
        images = [self.frameImage(node, getattr(parameters, f"view{i}").frame)
                  for i, node in enumerate(volumes, start=1)]
        write_case_folder(folder / CASE_FOLDER, images,
                          [self.viewSettings(parameters.view1),
                           self.viewSettings(parameters.view2)],
                          volume_contract(parameters.volumeSize, parameters.voxelSpacing))
        return reconstruct_command(self.pythonExecutable(), folder / CASE_FOLDER,
                                   folder / RECONSTRUCTION_FOLDER, settings)

    def _xaCommand(self, parameters, files, folder: Path, settings: EngineSettings
                   ) -> list[str]:
        """The engine reads the two XA files; the geometry fields the user changed (against
        what it reads from the tags) and the grid, unless the engine places it on the
        vessels, go to ``--geometry``."""
        views = (parameters.view1, parameters.view2)
        edits = [edited_fields(self.viewSettings(view),
                               read_geometry(self.pythonExecutable(), path, view.frame).values)
                 for view, path in zip(views, files)]
        frames = None if parameters.automaticFrames else (views[0].frame, views[1].frame)
        return xa_run_command(
            self.pythonExecutable(), files, frames, folder / CASE_FOLDER,
            folder / RECONSTRUCTION_FOLDER, edits,
            None if parameters.automaticVolume
            else volume_contract(parameters.volumeSize, parameters.voxelSpacing), settings)

    def cancel(self) -> None:
        """Stop the running reconstruction (its outcome is reported as cancelled)."""
        if self._process is not None:
            self._process.cancel()

    def _poll(self) -> None:
        process, monitor, run = self._process, self._monitor, self._run
        if process is None:
            self._timer.stop()
            return
        for stream, line in process.read_lines():
            progress = monitor.feed(stream, line)
            if progress is not None:
                run.onProgress(progress)
            else:
                run.onLog(line)
        returncode = process.returncode
        if returncode is None:
            return
        self._timer.stop()
        self._process = self._monitor = self._run = None
        try:
            (run.folder / "sdfcar.log").write_text("\n".join(monitor.log) + "\n")
            outcome = self._outcome(run, monitor, returncode, process.cancelled)
        except Exception as error:  # noqa: BLE001 - reported; the GUI must not wait forever
            logging.exception("SDF-CAR: the results could not be loaded")
            outcome = RunOutcome(False, _oneLine(error), run.folder)
        run.onFinished(outcome)

    @staticmethod
    def _outcome(run: _Run, monitor: OutputMonitor, returncode: int,
                 cancelled: bool) -> RunOutcome:
        if returncode != 0 or cancelled:
            return RunOutcome(False, monitor.failure_message(returncode, cancelled), run.folder)
        try:
            results = import_results(slicer.mrmlScene, run.folder / RECONSTRUCTION_FOLDER,
                                     **run.options)
            xaViews = None
            if run.xaReferences is not None:
                frames = chosen_frames(run.folder / RECONSTRUCTION_FOLDER)
                slices = tuple(f if multi else 0 for f, multi in zip(frames, run.xaMultiFrame))
                xaViews = import_xa_views(slicer.mrmlScene, run.folder / RECONSTRUCTION_FOLDER,
                                          run.xaReferences, slices)
        except ResultImportError as error:
            return RunOutcome(False, str(error), run.folder)
        seconds = time.monotonic() - run.started
        message = (f"Done in {seconds:.0f} s: '{results.segmentation.GetName()}' "
                   f"(files in {run.folder})")
        if results.qca:
            message += f". {qca_line(results.qca)}"
        return RunOutcome(True, message, run.folder, results, xaViews)


class SlicerSDFCARTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (it needs the application and ``sdfcar`` in Slicer's Python): a
    small simulated case goes through the logic as the Apply button sends it (case folder,
    background process, progress, import), then the cancel and failure paths."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_reconstruction_loads_segmentation_in_patient_space()
        self.setUp()
        self.test_cancel_stops_the_process()
        self.setUp()
        self.test_failed_run_reports_one_line()

    def _prepare(self, logic: SlicerSDFCARLogic, iterations: int, emptyView: bool = False):
        if logic.missingRequirements():
            logic.installRequirements(confirm=False)
        from sdfcar.geometry import ViewGeometry, VolumeGrid
        from sdfcar.synthetic.phantom import label_volume
        from sdfcar.synthetic.simulate import project_label

        grid = VolumeGrid((48, 48, 48), (1.0, 1.0, 1.0))
        views = (ViewGeometry(30, 0, 1000, 750, (96, 96), (0.7, 0.7)),
                 ViewGeometry(0, 30, 1000, 750, (96, 96), (0.7, 0.7)))
        images = project_label(label_volume("lca", 0, grid), grid, views)
        if emptyView:
            images[1][:] = 0.0
        parameters = logic.getParameterNode()
        for index, (view, image) in enumerate(zip(views, images), start=1):
            node = slicer.util.addVolumeFromArray(image[np.newaxis], name=f"view{index}")
            setattr(parameters, f"view{index}Volume", node)
            pack = getattr(parameters, f"view{index}")
            pack.primaryAngle, pack.secondaryAngle = (view.primary_angle_deg,
                                                      view.secondary_angle_deg)
            pack.sourceToDetector = view.source_to_detector_mm
            pack.sourceToIsocenter = view.source_to_isocenter_mm
            pack.rowSpacing, pack.columnSpacing = view.detector_spacing_mm
        parameters.volumeSize, parameters.voxelSpacing = 48, 1.0
        parameters.iterations, parameters.device = iterations, "cpu"
        # A field that starts inside the visual hull gives a non-empty label in 3 iterations.
        parameters.extraSettings = "field.output_bias=-1"
        parameters.sdfVolume = parameters.surfaceModel = True
        parameters.outputFolder = tempfile.mkdtemp(prefix="SlicerSDFCARTest-")
        self.addCleanup(shutil.rmtree, parameters.outputFolder, ignore_errors=True)
        return parameters, grid

    def _run(self, logic, parameters, onProgress=None, timeout_s: float = 600.0) -> RunOutcome:
        outcomes = []
        logic.startReconstruction(parameters, onProgress or (lambda progress: None),
                                  lambda line: None, outcomes.append)
        deadline = time.monotonic() + timeout_s
        while not outcomes:
            if time.monotonic() > deadline:
                logic.cancel()
                self.fail("the reconstruction did not end in time")
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertFalse(logic.isRunning)
        return outcomes[0]

    def test_reconstruction_loads_segmentation_in_patient_space(self) -> None:
        logic = SlicerSDFCARLogic()
        parameters, grid = self._prepare(logic, iterations=3)
        progress = []
        outcome = self._run(logic, parameters, progress.append)
        self.assertTrue(outcome.success, outcome.message)
        self.assertEqual((progress[-1].done, progress[-1].total), (3, 3))
        node = outcome.results.segmentation
        self.assertEqual(node.GetName(), "Coronary arteries")
        self.assertEqual(slicer.mrmlScene.GetFirstNodeByName("Coronary arteries").GetID(),
                         node.GetID())
        segment = node.GetSegmentation().GetNthSegment(0)
        self.assertEqual(segment.GetName(), "Coronary artery")
        labelmap = segment.GetRepresentation("Binary labelmap")
        self.assertGreater(slicer.util.arrayFromSegmentInternalBinaryLabelmap(
            node, node.GetSegmentation().GetNthSegmentID(0)).sum(), 0)
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        lpsToRas = np.diag([-1.0, -1.0, 1.0, 1.0])
        self.assertTrue(np.allclose(slicer.util.arrayFromVTKMatrix(matrix),
                                    lpsToRas @ grid.affine, atol=1e-4))
        self.assertIsNotNone(segment.GetRepresentation("Closed surface"))
        self.assertTrue(node.GetDisplayNode().GetVisibility3D())
        self.assertEqual(outcome.results.sdf_volume.GetImageData().GetDimensions(), (48, 48, 48))
        self.assertGreater(outcome.results.surface_model.GetPolyData().GetNumberOfPoints(), 0)

    def test_cancel_stops_the_process(self) -> None:
        logic = SlicerSDFCARLogic()
        # Progress comes every 1 % (10 iterations): cancel at the first report, long before
        # the end (a run that ignored the cancel would succeed and fail the test).
        parameters, _ = self._prepare(logic, iterations=1000)
        outcome = self._run(logic, parameters, lambda progress: logic.cancel())
        self.assertFalse(outcome.success)
        self.assertIn("Cancelled", outcome.message)
        self.assertIsNone(slicer.mrmlScene.GetFirstNodeByName("Coronary arteries"))

    def test_failed_run_reports_one_line(self) -> None:
        logic = SlicerSDFCARLogic()
        parameters, _ = self._prepare(logic, iterations=3, emptyView=True)
        outcome = self._run(logic, parameters)
        self.assertFalse(outcome.success)
        self.assertIn("empty", outcome.message)
        self.assertEqual(len(outcome.message.splitlines()), 1)
