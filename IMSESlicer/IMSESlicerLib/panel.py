"""GUI glue shared by the module panels: one long run at a time behind an Apply button, and
the small pieces every panel needs (module description, device label, model list, tables).

Qt properties are used attribute-style (``button.enabled = False``), which Slicer's PythonQt
and the test stand-in both support (PythonQt also keeps the ``setX`` setters; PySide6's
attribute mode does not, so none are used).

While a :class:`runs.CommandRun` goes on, Apply reads "Cancel" (and cancels it when pressed),
a progress bar and a status line follow the command's progress, and a log box collects its
output; a timer polls the run so the GUI never blocks. Qt is imported when a controller is
made, never when this module is imported (the bridge stays importable without Qt).
"""

from __future__ import annotations

from typing import Callable

import vtk


def format_progress(done: int, total: int, values: dict) -> str:
    """A status line: ``12/150 loss 0.031 level 2``."""
    shown = " ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in values.items())
    return f"{done}/{total} {shown}".strip()


class RunController:
    """Drives ``applyButton`` / ``progressBar`` / ``statusLabel`` / ``logText`` (optional) for
    one run at a time; ``on_done(run)`` is called when a run ends, however it ends."""

    POLL_MILLISECONDS = 200

    def __init__(self, applyButton, progressBar, statusLabel, logText=None) -> None:
        import qt

        self.applyButton = applyButton
        self.progressBar = progressBar
        self.statusLabel = statusLabel
        self.logText = logText
        self.run = None
        self._apply_text = applyButton.text
        self._on_done: Callable | None = None
        self._timer = qt.QTimer()
        self._timer.interval = self.POLL_MILLISECONDS
        self._timer.timeout.connect(self._poll)
        self.progressBar.visible = False

    @property
    def running(self) -> bool:
        return self.run is not None

    def start(self, run, on_done: Callable) -> None:
        """Start ``run`` (a CommandRun not yet started) and follow it."""
        self.run = run
        self._on_done = on_done
        own_progress = run.on_progress  # the run's own listener (e.g. a live loss plot) keeps its updates

        def progress(done: int, total: int, values: dict) -> None:
            if own_progress is not None:
                own_progress(done, total, values)
            self._progress(done, total, values)

        run.on_progress = progress
        self.applyButton.text = "Cancel"
        self.applyButton.toolTip = "Stop the running job; nothing partial is added to the scene."
        self.progressBar.visible = True
        self.progressBar.value = 0
        self.statusLabel.text = "Starting..."
        run.start()
        self._timer.start()

    def cancel(self) -> None:
        if self.run is not None:
            self.statusLabel.text = "Cancelling..."
            self.run.cancel()
            self._poll()

    def _progress(self, done: int, total: int, values: dict) -> None:
        self.progressBar.maximum = max(total, 1)
        self.progressBar.value = done
        self.statusLabel.text = format_progress(done, total, values)

    def _poll(self) -> None:
        run = self.run
        if run is None or run.poll():
            return
        self._timer.stop()
        self.run = None
        if self.logText is not None:
            self.logText.plainText = "\n".join(run.log)
        self.applyButton.text = self._apply_text
        self.progressBar.visible = False
        if run.cancelled:
            self.statusLabel.text = "Cancelled: nothing was added to the scene."
        elif run.error is not None:
            self.statusLabel.text = f"Failed: {run.error}"
        else:
            self.statusLabel.text = "Done."
        self._on_done(run)


README_URL = "https://github.com/imseslicer/IMSESlicer#readme"


def describe(parent, title: str, help_text: str, readme_anchor: str) -> None:
    """Fill a module's ``parent`` as Slicer's module template does: title, help with a link to
    the module's README section, contributors, acknowledgement and icon
    (Resources/Icons/<title without spaces>.png, looked up in the shared Resources so it shows
    from the source tree too); once the application has
    started, the built-in samples join the Sample Data module (idempotent)."""
    import qt
    import slicer

    from .resources import resource_path
    from .sample_data import register_sample_data

    parent.title = title
    parent.contributors = ["IMSESlicer developers"]
    parent.helpText = f'{help_text}<p>See the <a href="{README_URL.replace("#readme", "#" + readme_anchor)}">module documentation</a>.</p>'
    parent.acknowledgementText = (
        "IMSE: Kong et al., Indescribable Multi-modal Spatial Evaluator, CVPR 2023. "
        "AdaCS: adaptive correspondence scoring for unsupervised medical image registration. "
        "Brain data: MNI ICBM152 2009a (through nilearn); echo cine: pydicom-data."
    )
    parent.icon = qt.QIcon(resource_path(f"Icons/{title.replace(' ', '')}.png"))
    slicer.app.connect("startupCompleted()", register_sample_data)


def device_description() -> str:
    """The device "auto" resolves to, with the GPU's name and memory, for a label."""
    from .dependencies import missing_packages

    if "torch" in missing_packages():
        return "PyTorch is not installed yet."
    from .devices import device_choices

    return device_choices()[0][0]


def backend_ready() -> bool:
    """True when torch and the other packages are there; otherwise offer to install them
    (asking first, through the PyTorch extension and Slicer's pip)."""
    import slicer.util

    from .dependencies import ensure_backend

    return ensure_backend(slicer.util.confirmOkCancelDisplay)


def fill_model_combo(combo, task: str, current: str = "") -> None:
    """List the installed models of ``task`` (item text: name, dimension and modality; item
    data: the name), keeping ``current`` selected when it is still there."""
    from .dependencies import missing_packages

    combo.clear()
    combo.addItem("Default", "")
    if "torch" in missing_packages():
        return
    from imse.models import list_models

    for _, card in list_models(task=task):
        combo.addItem(f"{card.name} ({card.dim}D, {card.modality})", card.name)
    index = combo.findData(current)
    combo.currentIndex = max(index, 0)


def show_table(table_widget, rows: list[dict]) -> None:
    """Rows of numbers and text in a QTableWidget (numbers to 4 significant digits)."""
    import qt

    columns = list(rows[0]) if rows else []
    table_widget.clear()
    table_widget.rowCount = len(rows)
    table_widget.columnCount = len(columns)
    table_widget.setHorizontalHeaderLabels(columns)
    for row_index, row in enumerate(rows):
        for column_index, column in enumerate(columns):
            value = row.get(column, "")
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            table_widget.setItem(row_index, column_index, qt.QTableWidgetItem(text))


class ParameterNodePanel:
    """The parameter-node wiring of Slicer's scripted-module template, written once for every
    panel: put it first among a Widget's bases (before ScriptedLoadableModuleWidget and
    VTKObservationMixin, whose methods it uses). The Widget calls :meth:`setupPanel` in
    ``setup`` (which sets ``self.ui``, ``self.logic`` and, if it runs jobs, ``self.controller``)
    and defines ``_onParameterNodeModified(caller=None, event=None)``, called whenever a
    parameter changes."""

    _parameterNode = None
    _parameterNodeGuiTag = None
    controller: RunController | None = None

    def setupPanel(self, name: str, logic, runsJobs: bool = True) -> None:
        """What every panel's ``setup`` does first: load ``Resources/UI/<name>.ui`` into the
        panel and its named children into ``self.ui`` (the MRML widgets get the scene), keep
        ``logic``, give Apply (and, with ``runsJobs``, a background job's progress bar, status
        and log) to the panel, follow the scene's closing, show the device, and connect the
        model menu when there is one. The panel then calls ``initializeParameterNode()``."""
        import slicer

        from .resources import resource_path

        uiWidget = slicer.util.loadUI(resource_path(f"UI/{name}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        if runsJobs:
            self.controller = RunController(self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self.ui.logText)
        self.observeSceneClose()
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        if hasattr(self.ui, "modelComboBox"):
            self.ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        self.ui.deviceInfoLabel.text = device_description()

    def onModelChanged(self, index) -> None:
        """The model menu's choice (its item data: the model's name) into the parameter node."""
        if self._parameterNode:
            self._parameterNode.model = self.ui.modelComboBox.itemData(index) or ""

    def startOrCancel(self, failure: str, makeRun: Callable, onDone: Callable) -> None:
        """Apply's action for a panel that runs jobs: cancel the running job, or (once the
        backend is ready) start the run that ``makeRun()`` returns, showing ``failure`` and
        the error if that fails; ``onDone(run)`` is called when it ends."""
        import slicer

        if self.controller.running:
            self.controller.cancel()
            return
        if not backend_ready():
            return
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            self.controller.start(makeRun(), onDone)

    def observeSceneClose(self) -> None:
        import slicer

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def _cancelRun(self) -> None:
        if self.controller is not None and self.controller.running:
            self.controller.cancel()

    def cleanup(self) -> None:
        self._cancelRun()
        self.removeObservers()

    def exit(self) -> None:
        """Stop following the parameter node while another module is shown."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRun()  # a running job's inputs and outputs belong to the scene being closed
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.visible:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        """Follow ``parameterNode`` (or none): bind it to the panel's widgets both ways."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()
