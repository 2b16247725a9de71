"""IMSE Training: train the networks the other modules use, and add them to the model library.

Three kinds of model, each trained by an ``imse`` command in a background process:

* an IMSE evaluator (stage 1, ``imse train-evaluator``) from the user's volumes of ONE
  modality, or the built-in MNI T1 when none is chosen;
* a registration network (stage 2, ``imse train-registration``) on built-in MNI pairs, with
  the IMSE loss of an evaluator or MIND;
* an AdaCS network (``imse adacs train``) on a cine (a sequence node), or the built-in echo cine.

The training loss is plotted while it runs (a plot chart backed by a table). The model is
written to a private folder and copied into the user's model library
(:func:`imse.models.user_model_directory`, the folder ``imse models`` and every module's model
list read) only after training succeeded; a cancelled or failed run leaves no model, no
partial file and no plot.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import vtk

import slicer
from slicer import vtkMRMLSequenceNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from IMSESlicerLib import panel

DEVICES = ("auto", "cuda", "cpu")
TASKS = ("evaluator", "registration", "adacs")
#: The card task of each training task (what the model registry filters on).
MODEL_TASKS = {"evaluator": "evaluator", "registration": "registration", "adacs": "adacs"}
#: Share of the iterations each AdaCS warm-up takes (the paper: 1000 of 6000).
ADACS_WARMUP_FRACTION = 1 / 6
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHOWN_CURVE_ROWS = 10


class IMSETraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        panel.describe(
            parent,
            _("IMSE Training"),
            _(
                "Train an IMSE evaluator from your volumes of one modality (stage 1), a registration network "
                "(stage 2) or an AdaCS network on a cine, with a live loss plot and Cancel; the trained model "
                "joins your model library and appears in the other IMSE modules."
            ),
            "imse-training",
        )
        parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]


@parameterNodeWrapper
class IMSETrainingParameterNode:
    """task: what to train (evaluator, registration, adacs); modelName: the model's name in the
    library (empty: automatic); modality: of the evaluator's training volumes (the volumes
    themselves are checked in the panel's list); similarity / evaluator: the registration
    network's training loss and, for imse, the evaluator (empty: the default one); cine: AdaCS
    training sequence (None: the built-in echo cine); dimension (evaluator, registration);
    iterations; maxMinutes (0: no limit); learningRate (0: the task's default);
    spacing in mm, patchSize and batchSize (0: the task's defaults); device."""

    task: Annotated[str, Choice(list(TASKS))] = "evaluator"
    modelName: str = ""
    modality: str = "T1"
    similarity: Annotated[str, Choice(["imse", "mind"])] = "imse"
    evaluator: str = ""
    cine: vtkMRMLSequenceNode
    dimension: Annotated[int, Choice([2, 3])] = 2
    iterations: Annotated[int, WithinRange(1, 1000000)] = 2000
    maxMinutes: Annotated[float, WithinRange(0.0, 100000.0)] = 0.0
    learningRate: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    spacing: Annotated[float, WithinRange(0.0, 20.0)] = 0.0
    patchSize: Annotated[int, WithinRange(0, 512)] = 0
    batchSize: Annotated[int, WithinRange(0, 256)] = 0
    device: Annotated[str, Choice(list(DEVICES))] = "auto"


class IMSETrainingWidget(panel.ParameterNodePanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._shownTask = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel("IMSETraining", IMSETrainingLogic())
        self.ui.evaluatorComboBox.currentIndexChanged.connect(self.onEvaluatorChanged)
        self.initializeParameterNode()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.refreshModelLists()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Show the data section of the chosen task and enable the options it takes."""
        if not self._parameterNode:
            return
        task = self._parameterNode.task
        self.ui.evaluatorDataCollapsibleButton.visible = task == "evaluator"
        self.ui.registrationDataCollapsibleButton.visible = task == "registration"
        self.ui.adacsDataCollapsibleButton.visible = task == "adacs"
        for control in (self.ui.dimensionComboBox, self.ui.patchSizeSpinBox):
            control.enabled = task != "adacs"
        self.ui.evaluatorComboBox.enabled = self._parameterNode.similarity == "imse"
        if task != self._shownTask:
            self._shownTask = task
            self.refreshModelLists()
        if not self.controller.running:
            self.ui.applyButton.toolTip = _("Train the model in the background (press again to cancel); it joins the model library when done.")

    def refreshModelLists(self) -> None:
        """The evaluator list (for registration training), the library folder and the automatic
        model name, as the library holds them now (once PyTorch is installed)."""
        from IMSESlicerLib.dependencies import missing_packages

        panel.fill_model_combo(self.ui.evaluatorComboBox, "evaluator", self._parameterNode.evaluator if self._parameterNode else "")
        if "torch" in missing_packages():
            self.ui.libraryLabel.text = _("(shown once PyTorch is installed)")
            return
        from imse.models import user_model_directory

        self.ui.libraryLabel.text = str(user_model_directory())
        task = self._parameterNode.task if self._parameterNode else TASKS[0]
        self.ui.modelNameLineEdit.placeholderText = _("automatic: {name}").format(name=self.logic.automaticName(task))

    def onEvaluatorChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.evaluator = self.ui.evaluatorComboBox.itemData(index) or ""

    def onApplyButton(self) -> None:
        self.startOrCancel(_("Could not start the training."), self._newTrainingRun, self.onTrainingDone)

    def _newTrainingRun(self):
        """The training run of the panel's settings; the last run's results are cleared."""
        run = self.logic.trainingRun(self._parameterNode, self.ui.trainingVolumesComboBox.checkedNodes())
        self.ui.resultTable.clear()
        self.ui.resultTable.rowCount = 0
        return run

    def onTrainingDone(self, run) -> None:
        if run.result is not None:
            panel.show_table(self.ui.resultTable, run.result.shownRows())
            self.ui.statusLabel.text = run.result.summary
            if self._parameterNode:
                self._parameterNode.modelName = ""  # the name is taken now: the next run gets a new one
            self.refreshModelLists()
        self._onParameterNodeModified()


class TrainingResult:
    """What a finished training made: ``name``, ``task``, ``weights`` (the model's path in the
    library), ``card`` (its :class:`imse.models.ModelCard`), ``chart`` / ``table`` (the loss
    plot and its table node), ``curve`` (one dict per iteration: ``iteration``, ``loss`` and the
    command's other values) and ``summary`` (one sentence)."""

    def __init__(self, name, task, weights, card, chart, table, curve, summary) -> None:
        self.name = name
        self.task = task
        self.weights = weights
        self.card = card
        self.chart = chart
        self.table = table
        self.curve = curve
        self.summary = summary

    def shownRows(self, count: int = SHOWN_CURVE_ROWS) -> list[dict]:
        """At most ``count`` rows of the loss curve, evenly spread, the last one included."""
        if len(self.curve) <= count:
            return list(self.curve)
        step = (len(self.curve) - 1) / (count - 1)
        return [self.curve[round(index * step)] for index in range(count)]


class LiveLossPlot:
    """The loss curve of a running training as a plot chart node backed by a table node, made at
    the first progress update and grown at each one (``iteration``, ``loss``, and the command's
    other numbers and texts, e.g. the validation loss or the AdaCS phase). ``remove()`` takes the
    nodes out of the scene again."""

    def __init__(self, scene, name: str) -> None:
        self.scene = scene
        self.name = name
        self.chart = None
        self.table = None
        self.curve: list[dict] = []

    def update(self, done: int, total: int, values: dict) -> None:
        from IMSESlicerLib.tables import append_row, plot_from_curves

        lossKey = "loss" if "loss" in values else "total"  # AdaCS reports its objective as "total"
        if lossKey not in values:
            return
        row = {"iteration": done, "loss": float(values[lossKey])}
        row.update({key: value for key, value in values.items() if key not in (lossKey, "step") and isinstance(value, (int, float, str))})
        if self.curve and done <= self.curve[-1]["iteration"]:  # the command started again (on the CPU after a GPU ran out of memory)
            self.curve.clear()
            self.table.GetTable().SetNumberOfRows(0)
        self.curve.append(row)
        if self.chart is None:
            self.chart = plot_from_curves(self.scene, [done], {"loss": [row["loss"]]}, f"{self.name} training loss", "iteration", "loss")
            series = self.chart.GetNthPlotSeriesNode(0)
            series.SetMarkerStyle(series.MarkerStyleNone)
            self.table = series.GetTableNode()
            for key, value in row.items():  # the command's other values, as extra columns
                if key not in ("iteration", "loss"):
                    column = vtk.vtkStringArray() if isinstance(value, str) else vtk.vtkDoubleArray()
                    column.SetName(key)
                    column.InsertNextValue(value)
                    self.table.AddColumn(column)
            self._show()
        else:
            append_row(self.table, row)

    def _show(self) -> None:
        """Switch Slicer's layout to one with a plot view showing the chart (in Slicer only)."""
        modules = getattr(slicer, "modules", None)
        if modules is not None and hasattr(modules, "plots"):
            modules.plots.logic().ShowChartInLayout(self.chart)

    def remove(self) -> None:
        if self.chart is None:
            return
        for index in range(self.chart.GetNumberOfPlotSeriesNodes()):
            self.scene.RemoveNode(self.chart.GetNthPlotSeriesNode(index))
        self.scene.RemoveNode(self.table)
        self.scene.RemoveNode(self.chart)
        self.chart = self.table = None


class IMSETrainingLogic(ScriptedLoadableModuleLogic):
    """Training from nodes and plain values; usable from scripts without the panel::

        run = IMSETrainingLogic().train("evaluator", volumes=[volumeNode], name="my-t1", iterations=500)
        result = run.start().wait()         # or give the run to a RunController
        print(result.summary, result.weights)
    """

    def getParameterNode(self):
        return IMSETrainingParameterNode(super().getParameterNode())

    @staticmethod
    def automaticName(task: str) -> str:
        """``<task>-<n>`` with the first ``n`` no model in the library is named after."""
        from imse.models import list_models

        taken = {card.name for _, card in list_models()}
        return next(f"{task}-{n}" for n in range(1, len(taken) + 2) if f"{task}-{n}" not in taken)

    def trainingRun(self, parameters, volumes=()):
        """:meth:`train` from a parameter node (or any object with its fields) and the checked
        training volumes; options a task does not take are left out."""
        adacs = parameters.task == "adacs"
        return self.train(
            parameters.task,
            volumes=volumes if parameters.task == "evaluator" else (),
            cine=parameters.cine if adacs else None,
            name=parameters.modelName,
            modality=parameters.modality,
            similarity=parameters.similarity,
            evaluator=parameters.evaluator,
            dimension=parameters.dimension,
            iterations=parameters.iterations,
            maxMinutes=parameters.maxMinutes,
            learningRate=parameters.learningRate,
            spacing=parameters.spacing,
            patchSize=0 if adacs else parameters.patchSize,
            batchSize=parameters.batchSize,
            device=parameters.device,
        )

    def train(
        self,
        task: str,
        volumes=(),
        cine=None,
        name: str = "",
        modality: str = "T1",
        similarity: str = "imse",
        evaluator: str = "",
        dimension: int = 2,
        iterations: int = 2000,
        maxMinutes: float = 0.0,
        learningRate: float = 0.0,
        spacing: float = 0.0,
        patchSize: int = 0,
        batchSize: int = 0,
        device: str = "auto",
        extraArguments=(),
        scene=None,
    ):
        """A not-yet-started :class:`IMSESlicerLib.runs.CommandRun` training a model of ``task``
        (see :data:`TASKS`); its result is a :class:`TrainingResult`.

        Args:
            volumes: evaluator training volumes of ONE modality, ``modality`` (none: the built-in
                MNI T1). Single-slice volumes are trained on as 2D images.
            cine: AdaCS training cine, a sequence of scalar volumes (None: the built-in echo cine).
            name: the model's name in the library (empty: :meth:`automaticName`); it must be new.
            similarity, evaluator: the registration network's loss (imse or mind) and the
                evaluator of the imse loss (a library name; empty: the default one).
            dimension: 2 or 3 (evaluator, registration; AdaCS takes the cine's).
            iterations; maxMinutes: a time budget after which the model is written (0: none);
                learningRate (0: the task's default); spacing in mm, patchSize
                in voxels along each axis, batchSize (0: the task's defaults).
            extraArguments: further options of the ``imse`` command, for scripts.
            scene: where the loss plot goes (default: the inputs' scene, else Slicer's).

        Raises ImageError (bad name or input) before anything starts.
        """
        from imse.errors import ImageError
        from imse.models import list_models, user_model_directory
        from IMSESlicerLib.runs import CommandRun, Workspace

        if task not in TASKS:
            raise ImageError(f"Unknown training task '{task}'; choose one of {list(TASKS)}.")
        name = name.strip() or self.automaticName(task)
        if not MODEL_NAME_PATTERN.fullmatch(name):
            raise ImageError(f"'{name}' cannot name a model: use letters, digits, '.', '_' and '-', starting with a letter or digit.")
        existing = [weights for weights, card in list_models() if card.name == name]
        if existing:
            raise ImageError(f"A model named '{name}' is already in the library ({existing[0]}): choose another name.")
        if task == "adacs" and patchSize:
            raise ImageError("AdaCS training takes whole frames: leave the patch size at 0.")
        if task != "evaluator" and volumes:
            raise ImageError("Training volumes are for an evaluator only (a registration network trains on built-in MNI pairs, AdaCS on a cine).")
        scene = scene or next((node.GetScene() for node in (*volumes, cine) if node is not None), None) or slicer.mrmlScene
        workspace = Workspace(prefix="imse-training-")
        try:
            arguments = self._taskArguments(task, workspace, volumes, cine, modality, similarity, evaluator, dimension, iterations, spacing)
        except Exception:
            workspace.remove()
            raise
        arguments += ["--out", str(workspace.path("model")), "--name", name, "--iterations", str(int(iterations))]
        timeLimit = "--time-limit" if task == "adacs" else "--max-minutes"
        for option, value in ((timeLimit, maxMinutes), ("--learning-rate", learningRate), ("--batch-size", batchSize)):
            if value:
                arguments += [option, str(value)]
        if patchSize:
            arguments += ["--patch-size", *[str(int(patchSize))] * int(dimension)]
        arguments += [str(argument) for argument in extraArguments]

        plot = LiveLossPlot(scene, name)
        library = user_model_directory()

        def collect(workspace) -> TrainingResult:
            return self._addToLibrary(workspace.path("model"), library, name, task, plot)

        def discardPlotUnlessDone(run) -> None:
            if run.result is None:
                plot.remove()

        return CommandRun(workspace, arguments, collect, device=device, on_progress=plot.update, on_end=discardPlotUnlessDone)

    def _taskArguments(self, task, workspace, volumes, cine, modality, similarity, evaluator, dimension, iterations, spacing) -> list[str]:
        """The command and its task's own options; inputs are written to ``workspace``."""
        from imse.errors import ImageError
        from imse.models import ModelCard, find_model
        from IMSESlicerLib.planar import as_planar
        from IMSESlicerLib.sequences import cine_image_from_frames, frames_from_sequence
        from IMSESlicerLib.volumes import image_from_volume

        spacingOption = ["--spacing", str(spacing)] if spacing else []
        if task == "evaluator":
            paths = []
            for index, volume in enumerate(volumes):
                image = image_from_volume(volume)
                if image.shape[0] == 1:
                    if dimension == 3:
                        raise ImageError(f"'{volume.GetName()}' is a single slice: a 3D evaluator trains on volumes (choose dimension 2).")
                    image = as_planar(image)
                safeName = re.sub(r'[\\/:*?"<>|]+', "_", volume.GetName()).lstrip(".")  # the model card names the file
                paths.append(workspace.write(image, f"{index + 1:02d}-{safeName}"))
            return ["train-evaluator", *paths, "--dim", str(dimension), "--modality", modality if volumes else "T1", *spacingOption]
        if task == "registration":
            arguments = ["train-registration", "--dim", str(dimension), "--similarity", similarity, *spacingOption]
            if similarity == "imse" and evaluator:
                arguments += ["--evaluator", evaluator]
                if not spacing:  # train at the evaluator's spacing, which the imse loss needs
                    arguments += ["--spacing", str(ModelCard.from_json(find_model(evaluator, task="evaluator").with_suffix(".json")).spacing_mm)]
            return arguments
        if cine is None:
            source = "echo"
        else:
            frames, timeStep = frames_from_sequence(cine)
            source = workspace.write(cine_image_from_frames(frames, timeStep), "cine")
        warmup = str(int(iterations * ADACS_WARMUP_FRACTION))
        return ["adacs", "train", source, "--displacement-warmup", warmup, "--scoring-warmup", warmup, *spacingOption]

    @staticmethod
    def _addToLibrary(trained: Path, library: Path, name: str, task: str, plot: LiveLossPlot) -> TrainingResult:
        """Copy the trained ``name`` from ``trained`` into ``library`` (weights first, then the
        card, each atomically: the registry lists a model only once both are there)."""
        import shutil

        from imse.errors import ImageError
        from imse.files import write_atomically
        from imse.models import CARD_SUFFIX, MODEL_SUFFIX, ModelCard

        weights = library / f"{name}{MODEL_SUFFIX}"
        try:
            for suffix in (MODEL_SUFFIX, CARD_SUFFIX):
                source = trained / f"{name}{suffix}"
                write_atomically(library / source.name, lambda path, source=source: shutil.copyfile(source, path))
        except OSError as error:
            weights.unlink(missing_ok=True)
            raise ImageError(f"Could not add the model to the library '{library}' ({error}); check that the folder is writable.") from None
        card = ModelCard.from_json(weights.with_suffix(CARD_SUFFIX))
        iterations = card.training.get("iterations", len(plot.curve))
        seconds = card.training.get("seconds")
        summary = f"Model '{name}' ({task}, {card.dim}D) joined the model library: {iterations} iterations"
        summary += f" in {seconds:.1f} s" if seconds is not None else ""
        summary += f", final loss {plot.curve[-1]['loss']:.4g}." if plot.curve else "."
        return TrainingResult(name, task, weights, card, plot.chart, plot.table, plot.curve, summary)


class IMSETrainingTest(ScriptedLoadableModuleTest):
    """Self-test: a few iterations of evaluator training on the built-in 2D brain slice, into a
    temporary model library (runs in Slicer and in the stand-in; the user's library is left alone)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_a_short_training_joins_the_library()

    def test_a_short_training_joins_the_library(self):
        import os
        import tempfile

        from imse.models import list_models
        from IMSESlicerLib.sample_data import load_sample

        self.delayDisplay("Training a tiny evaluator on the built-in brain slice")
        nodes = load_sample(slicer.mrmlScene, "IMSE brain pair 2D")
        previous = os.environ.get("IMSE_MODEL_DIR")
        with tempfile.TemporaryDirectory() as library:
            os.environ["IMSE_MODEL_DIR"] = library
            try:
                run = IMSETrainingLogic().train(
                    "evaluator", volumes=[nodes["fixed"]], name="self-test", iterations=3, patchSize=32, batchSize=2, device="cpu"
                )
                result = run.start().wait()
                self.assertIn("self-test", [card.name for _, card in list_models(task="evaluator")])
                self.assertEqual(result.table.GetNumberOfRows(), 3)
                self.assertFalse(run.workspace.folder.exists())
            finally:
                if previous is None:
                    os.environ.pop("IMSE_MODEL_DIR")
                else:
                    os.environ["IMSE_MODEL_DIR"] = previous
        self.delayDisplay("Test passed")
