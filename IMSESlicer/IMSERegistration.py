"""IMSE Registration: register a moving volume onto a fixed one, whatever their modalities.

Per-pair optimisation with the IMSE evaluator, MIND, MIND + IMSE, MI, NCC or MSE as the
similarity (or AdaCS correspondence scoring for 2D frames), or one-shot prediction by a
trained registration network. The work runs in a background process (``imse register``); the
outputs are a displacement-field transform (from parent), the warped volume, the Jacobian
map, IMSE error maps before and after, a metrics table and the loss curve.
"""

from __future__ import annotations

import json
from typing import Annotated

import slicer
from slicer import vtkMRMLGridTransformNode, vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode
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

from imse.presets import Preset, recommended_preset
from IMSESlicerLib import panel

#: What the panel offers -> the backend's similarity name (AdaCS runs `imse adacs register`).
SIMILARITIES = {"MIND": "mind", "IMSE": "imse", "MIND + IMSE": "mind+imse", "AdaCS": "adacs", "MI": "mi", "NCC": "ncc", "MSE": "mse"}
#: What the panel offers -> the backend's optimiser (``imse register --optimizer``).
OPTIMIZERS = {"gradient (Adam)": "adam", "discrete search": "discrete", "demons": "demons"}
#: The similarities that each gradient-free optimiser can use (Adam takes them all), and what
#: the panel says when another one is chosen.
GRADIENT_FREE = {
    "discrete": (
        ("MIND", "IMSE", "MIND + IMSE", "MSE"),
        _("The discrete search compares the images voxel by voxel: choose MIND, IMSE, MIND + IMSE or MSE, or the gradient (Adam) optimiser."),
    ),
    "demons": (
        ("IMSE", "MSE"),
        _("The demons are driven by an intensity residual, the evaluator's or the images' own: choose IMSE or MSE, or another optimiser."),
    ),
}
DEVICES = ("auto", "cuda", "cpu")


def optimizer_refusal(parameters) -> str | None:
    """Why the chosen optimiser cannot use the chosen similarity (the panel's labels in the
    parameter node ``parameters``), or ``None`` when it can."""
    usable, reason = GRADIENT_FREE.get(OPTIMIZERS[parameters.optimizer], (tuple(SIMILARITIES), None))
    return None if parameters.similarity in usable else reason


def volume_dimension(volume) -> int:
    """2 for a volume of one slice along its k axis (registered in 2D), else 3."""
    return 2 if volume.GetImageData().GetDimensions()[2] == 1 else 3


class IMSERegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        panel.describe(
            parent,
            _("IMSE Registration"),
            _(
                "Multi-modal deformable registration: per-pair optimisation with the IMSE evaluator, MIND, MI, NCC "
                "or MSE (AdaCS for 2D frames), or one-shot prediction by a trained network. Outputs a displacement "
                "transform, the warped volume, Jacobian and error maps, metrics and the loss curve."
            ),
            "imse-registration",
        )
        parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]


@parameterNodeWrapper
class IMSERegistrationParameterNode:
    """Inputs (fixed/moving volumes, optional label-map masks, or the fixed volume's automatic
    foreground mask when no fixed mask is chosen), options (similarity; reference:
    which volume is in the evaluator's trained modality, for the IMSE choices; mode
    optimisation/network; optimiser, gradient, discrete search or demons; levels; grid spacing in mm,
    0 meaning the fixed volume's own grid; iterations; the demons' steps per level, their
    maximum step in voxels and how many last steps their field is averaged over; regularisation
    weight with 0 meaning the similarity's default; diffeomorphic, affine, a CT's tissue
    histogram-equalised, the evaluator averaged over flips and in-plane rotations (degrees, 0:
    none) or shown them one per demons step in turn (cycleOrientations), a 2D evaluator shown
    a volume's slices across all three axes (sliceAllAxes), its zoom and the evaluator itself
    (IMSE choices; empty: the installed one of the volumes' dimension), device, model: the
    registration network of network mode) and outputs (transform, warped volume; new nodes when
    empty)."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    fixedMask: vtkMRMLLabelMapVolumeNode
    movingMask: vtkMRMLLabelMapVolumeNode
    autoFixedMask: bool = False
    similarity: Annotated[str, Choice(list(SIMILARITIES))] = "MIND"
    reference: Annotated[str, Choice(["fixed", "moving"])] = "fixed"
    mode: Annotated[str, Choice(["optimisation", "network"])] = "optimisation"
    optimizer: Annotated[str, Choice(list(OPTIMIZERS))] = "gradient (Adam)"
    levels: Annotated[int, WithinRange(1, 6)] = 3
    gridSpacing: Annotated[float, WithinRange(0.0, 100.0)] = 0.0
    iterations: Annotated[int, WithinRange(0, 5000)] = 150
    demonsIterations: Annotated[int, WithinRange(1, 500)] = 20
    demonsMaxStep: Annotated[float, WithinRange(0.05, 5.0)] = 0.5
    demonsAverageLast: Annotated[int, WithinRange(0, 500)] = 0
    regularizationWeight: Annotated[float, WithinRange(0.0, 100.0)] = 0.0
    diffeomorphic: bool = False
    affine: bool = False
    equalizeTissue: bool = False
    flipAverage: bool = False
    evaluatorZoom: Annotated[float, WithinRange(0.25, 4.0)] = 1.0
    evaluatorRotation: Annotated[float, WithinRange(0.0, 90.0)] = 0.0
    cycleOrientations: bool = False
    sliceAllAxes: bool = False
    evaluator: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    model: str = ""
    outputTransform: vtkMRMLGridTransformNode
    outputVolume: vtkMRMLScalarVolumeNode
    applyTransform: bool = True


class IMSERegistrationWidget(panel.ParameterNodePanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel("IMSERegistration", IMSERegistrationLogic())
        self.ui.evaluatorComboBox.currentIndexChanged.connect(self.onEvaluatorChanged)
        self.ui.recommendedButton.clicked.connect(self.onRecommendedButton)
        self.initializeParameterNode()

    def enter(self) -> None:
        self.initializeParameterNode()
        panel.fill_model_combo(self.ui.modelComboBox, "registration", self._parameterNode.model)
        panel.fill_model_combo(self.ui.evaluatorComboBox, "evaluator", self._parameterNode.evaluator)

    def onEvaluatorChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.evaluator = self.ui.evaluatorComboBox.itemData(index) or ""

    def onRecommendedButton(self) -> None:
        preset = self.logic.recommendedPreset(self._parameterNode)
        if preset is not None:
            self.logic.applyPreset(self._parameterNode, preset)
            self.ui.statusLabel.text = _("Recommended settings ({name}): {measured}.").format(name=preset.name, measured=preset.measured)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        ready = bool(parameters and parameters.fixedVolume and parameters.movingVolume)
        ready = ready and (parameters.mode == "optimisation" or bool(parameters.model))
        gradient_free = bool(parameters and OPTIMIZERS[parameters.optimizer] != "adam")
        demons = bool(parameters and OPTIMIZERS[parameters.optimizer] == "demons")
        refusal = optimizer_refusal(parameters) if parameters else None
        self.ui.applyButton.enabled = (ready and refusal is None) or self.controller.running
        self.ui.modelComboBox.enabled = bool(parameters and parameters.mode == "network")
        uses_evaluator = bool(parameters and "imse" in SIMILARITIES[parameters.similarity])
        self.ui.referenceComboBox.enabled = uses_evaluator
        self.ui.flipAverageCheckBox.enabled = uses_evaluator
        self.ui.evaluatorZoomSpinBox.enabled = self.ui.evaluatorRotationSpinBox.enabled = uses_evaluator
        self.ui.evaluatorComboBox.enabled = bool(parameters and parameters.mode == "optimisation")  # in network mode --model names the network
        shown = self.ui.evaluatorComboBox.findData(parameters.evaluator) if parameters else -1
        if shown >= 0 and shown != self.ui.evaluatorComboBox.currentIndex:  # e.g. set by a preset
            self.ui.evaluatorComboBox.currentIndex = shown
        preset = self.logic.recommendedPreset(parameters) if parameters else None
        self.ui.recommendedButton.enabled = preset is not None and not self.controller.running
        self.ui.recommendedButton.toolTip = (
            _("Set the options to {name}: {measured}.").format(name=preset.name, measured=preset.measured)
            if preset
            else _("No recommended settings for this similarity: choose MIND, IMSE or MI.")
        )
        self.ui.regularizationSpinBox.enabled = not gradient_free  # the discrete search and the demons regularise by smoothing
        self.ui.gridSpacingSpinBox.enabled = bool(parameters and SIMILARITIES[parameters.similarity] != "adacs")  # AdaCS registers on its network's grid
        self.ui.iterationsSpinBox.enabled = not demons and not (gradient_free and parameters.mode == "optimisation")  # they run a fixed schedule
        self.ui.demonsIterationsSpinBox.enabled = self.ui.demonsMaxStepSpinBox.enabled = demons  # the demons' schedule
        self.ui.demonsAverageLastSpinBox.enabled = demons
        self.ui.cycleOrientationsCheckBox.enabled = demons and uses_evaluator  # one orientation a demons step
        self.ui.sliceAllAxesCheckBox.enabled = uses_evaluator and bool(parameters.fixedVolume) and volume_dimension(parameters.fixedVolume) == 3
        if not self.controller.running:
            if not ready:
                self.ui.applyButton.toolTip = _("Choose a fixed and a moving volume (and, in network mode, a registration network).")
            elif refusal:
                self.ui.applyButton.toolTip = refusal
            else:
                self.ui.applyButton.toolTip = _("Register the moving volume onto the fixed one (runs in the background; press again to cancel).")

    def onApplyButton(self) -> None:
        self.startOrCancel(_("Could not start the registration."), lambda: self.logic.registrationRun(self._parameterNode), self.onRunDone)

    def onRunDone(self, run) -> None:
        if run.result is not None:
            panel.show_table(self.ui.metricsTable, run.result.rows)
            self.ui.statusLabel.text = run.result.summary
        self._onParameterNodeModified()


class RegistrationResult:
    """The nodes a registration made: ``transform`` (grid transform, from parent), ``warped``
    (volume on the fixed grid), ``jacobian``, ``fixedMask`` (the automatic fixed mask as a
    label map; None unless one was asked for), ``errorBefore``/``errorAfter`` (None when no
    evaluator was available), ``table`` (metrics), ``lossPlot`` (chart), ``rows`` (the metrics
    as a list of dicts), ``summary`` (one sentence)."""

    def __init__(self, **nodes) -> None:
        self.__dict__.update(nodes)


class IMSERegistrationLogic(ScriptedLoadableModuleLogic):
    """Registration from nodes and plain values; usable from scripts without the panel::

        run = IMSERegistrationLogic().registrationRun(parameters)   # parameter node or any object with its fields
        result = run.start().wait()                                   # or give it to a RunController
    """

    def getParameterNode(self):
        return IMSERegistrationParameterNode(super().getParameterNode())

    def recommendedPreset(self, parameters) -> Preset | None:
        """The best measured settings (:mod:`imse.presets`) for ``parameters.similarity`` on
        volumes like the fixed one (a single slice: 2D; none chosen yet: 3D), or ``None``."""
        dimension = volume_dimension(parameters.fixedVolume) if parameters.fixedVolume else 3
        return recommended_preset(SIMILARITIES[parameters.similarity], dimension)

    def applyPreset(self, parameters, preset: Preset) -> None:
        """Set every option that ``preset`` covers (``imse register --preset``) in
        ``parameters``, in optimisation mode; volumes, masks, reference, device and outputs stay."""
        options = preset.options
        labels = {**{name: label for label, name in SIMILARITIES.items()}, **{name: label for label, name in OPTIMIZERS.items()}}
        parameters.mode = "optimisation"
        parameters.similarity = labels[options["similarity"]]
        parameters.optimizer = labels[options["optimizer"]]
        parameters.levels = options["levels"]
        parameters.gridSpacing = options["grid_spacing"] or 0.0
        parameters.iterations = options["iterations"]
        parameters.regularizationWeight = options["regularization_weight"] or 0.0
        parameters.diffeomorphic = options["diffeomorphic"]
        parameters.affine = options["affine"]
        parameters.equalizeTissue = options["equalize_tissue"]
        parameters.demonsIterations = options["demons_iterations"]
        parameters.demonsMaxStep = options["demons_max_step"]
        parameters.demonsAverageLast = options["demons_average_last"]
        parameters.flipAverage = options["flip_average"]
        parameters.evaluatorZoom = options["evaluator_zoom"]
        parameters.evaluatorRotation = options["evaluator_rotation"]
        parameters.cycleOrientations = options["evaluator_orientations"] == "cycle"
        parameters.sliceAllAxes = options["evaluator_slice_axes"] == "all"
        parameters.evaluator = options["model"] or ""
        parameters.autoFixedMask = options["fixed_mask"] == "auto"

    def registrationRun(self, parameters):
        """A not-yet-started :class:`IMSESlicerLib.runs.CommandRun` registering
        ``parameters.movingVolume`` onto ``parameters.fixedVolume``; its result is a
        :class:`RegistrationResult`. Single-slice volumes are registered in 2D."""
        from IMSESlicerLib.planar import as_planar
        from IMSESlicerLib.runs import CommandRun, Workspace
        from IMSESlicerLib.volumes import image_from_volume, world_image_from_volume

        if not parameters.fixedVolume or not parameters.movingVolume:
            raise ValueError(_("Choose a fixed and a moving volume."))
        similarity = SIMILARITIES[parameters.similarity]
        if parameters.mode == "network" and not parameters.model:
            raise ValueError(_("Network mode needs a trained registration network: choose one, or use optimisation."))
        optimizer = OPTIMIZERS[parameters.optimizer]
        refusal = optimizer_refusal(parameters)
        if refusal:
            raise ValueError(refusal)
        fixed = world_image_from_volume(parameters.fixedVolume)
        moving = world_image_from_volume(parameters.movingVolume)
        planar = volume_dimension(parameters.fixedVolume) == 2
        workspace = Workspace()
        fixedPath = workspace.write(as_planar(fixed) if planar else fixed, "fixed")
        movingPath = workspace.write(as_planar(moving) if planar else moving, "moving")
        out = str(workspace.path("out"))
        if similarity == "adacs":
            arguments = ["adacs", "register", movingPath, fixedPath, "--out", out, "--iterations", str(max(parameters.iterations, 1))]
        else:
            arguments = ["register", fixedPath, movingPath, "--out", out, "--similarity", similarity, "--iterations", str(parameters.iterations)]
            arguments += ["--levels", str(parameters.levels), "--reference", parameters.reference, "--optimizer", optimizer]
            if parameters.gridSpacing > 0:
                arguments += ["--grid-spacing", str(parameters.gridSpacing)]
            if optimizer == "demons":
                arguments += ["--demons-iterations", str(parameters.demonsIterations), "--demons-max-step", str(parameters.demonsMaxStep)]
                arguments += ["--demons-average-last", str(parameters.demonsAverageLast)] if parameters.demonsAverageLast else []
            if parameters.regularizationWeight > 0 and optimizer == "adam":
                arguments += ["--regularization-weight", str(parameters.regularizationWeight)]
            if parameters.diffeomorphic:
                arguments.append("--diffeomorphic")
            if parameters.affine:
                arguments.append("--affine")
            if parameters.equalizeTissue:
                arguments.append("--equalize-tissue")
            if "imse" in similarity:  # the evaluator's options
                arguments += ["--flip-average"] if parameters.flipAverage else []
                arguments += ["--evaluator-zoom", str(parameters.evaluatorZoom)] if parameters.evaluatorZoom != 1.0 else []
                arguments += ["--evaluator-rotation", str(parameters.evaluatorRotation)] if parameters.evaluatorRotation > 0 else []
                arguments += ["--evaluator-orientations", "cycle"] if parameters.cycleOrientations and optimizer == "demons" else []
                arguments += ["--evaluator-slice-axes", "all"] if parameters.sliceAllAxes and not planar else []
            if parameters.mode == "network":  # the demons refine the network's result for their own steps
                refinement = parameters.demonsIterations if optimizer == "demons" else parameters.iterations
                arguments += ["--model", parameters.model, "--refine-iterations", str(refinement)]
            elif parameters.evaluator:  # the imse similarity's and the error maps' evaluator
                arguments += ["--model", parameters.evaluator]
            for option, mask in (("--fixed-mask", parameters.fixedMask), ("--moving-mask", parameters.movingMask)):
                if mask is not None:
                    maskImage = image_from_volume(mask)
                    arguments += [option, workspace.write(as_planar(maskImage) if planar else maskImage, option.strip("-"))]
            if parameters.autoFixedMask and parameters.fixedMask is None:
                arguments += ["--fixed-mask", "auto"]
        inputs = {
            "fixedVolume": parameters.fixedVolume,
            "movingVolume": parameters.movingVolume,
            "outputTransform": parameters.outputTransform,
            "outputVolume": parameters.outputVolume,
            "applyTransform": parameters.applyTransform,
            "similarity": parameters.similarity,
            "fixed": fixed,
        }
        return CommandRun(workspace, arguments, lambda workspace: self._collect(workspace, inputs), device=parameters.device)

    def _collect(self, workspace, inputs) -> RegistrationResult:
        """Nodes from the command's outputs (called only after it succeeded)."""
        from imse.image import read_image
        from imse.metrics import jacobian_determinant_map
        from IMSESlicerLib.overlays import map_volume, show_overlay
        from IMSESlicerLib.planar import onto_single_slice
        from IMSESlicerLib.tables import plot_from_curves, table_from_rows
        from IMSESlicerLib.transforms import grid_transform_from_displacement
        from IMSESlicerLib.volumes import update_volume_from_image, volume_from_image

        out = workspace.path("out")
        fixedNode, movingNode, fixed = inputs["fixedVolume"], inputs["movingVolume"], inputs["fixed"]
        scene = fixedNode.GetScene()

        def result_image(name):
            path = out / name
            return onto_single_slice(read_image(path), fixed) if path.exists() else None

        displacement = result_image("displacement_mm.nii.gz")
        warped = result_image("warped.nii.gz")
        base = movingNode.GetName()
        transform = inputs["outputTransform"]
        if transform is None:
            transform = grid_transform_from_displacement(scene, displacement, f"{base} registration transform")
        else:
            fresh = grid_transform_from_displacement(scene, displacement, "imse-temporary-transform")
            transform.SetAndObserveTransformFromParent(fresh.GetTransformFromParent())
            scene.RemoveNode(fresh)
        warpedNode = inputs["outputVolume"]
        if warpedNode is None:
            warpedNode = volume_from_image(scene, warped, f"{base} registered")
        else:
            update_volume_from_image(warpedNode, warped)
        jacobian = map_volume(scene, jacobian_determinant_map(displacement), f"{base} Jacobian", "jacobian")
        automaticMask = result_image("fixed_mask_auto.nii.gz")
        if automaticMask is not None:
            automaticMask = volume_from_image(scene, automaticMask, f"{fixedNode.GetName()} automatic mask", "vtkMRMLLabelMapVolumeNode")
        errors = {name: result_image(f"error_map_{name}.nii.gz") for name in ("before", "after")}
        errorNodes = {}
        if errors["before"] is not None:
            upper = float(max(image.array.max() for image in errors.values()))
            for name, image in errors.items():  # one colour scale, so before and after compare by eye
                errorNodes[name] = map_volume(scene, image, f"{base} IMSE error {name}", "error", value_range=(0.0, upper))
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
        rows = [{"quantity": key, "value": value if isinstance(value, (int, float)) else str(value)} for key, value in metrics.items()]
        table = table_from_rows(scene, rows, f"{base} registration metrics") if rows else None
        curve = json.loads((out / "loss_curve.json").read_text()) if (out / "loss_curve.json").exists() else []
        lossPlot = None
        if curve:
            lossPlot = plot_from_curves(scene, list(range(len(curve))), {"loss": [step["total"] for step in curve]}, f"{base} registration loss", "iteration", "loss")
        if inputs["applyTransform"] and movingNode.GetParentTransformNode() is None:
            movingNode.SetAndObserveTransformNodeID(transform.GetID())
        show_overlay(fixedNode, warpedNode, 0.5)
        summary = f"Registered with {inputs['similarity']}"
        if "folding_percent" in metrics:
            summary += f": folding {metrics['folding_percent']:.2f} %"
        if "imse_mean_error_before" in metrics:
            summary += f", mean |E| {metrics['imse_mean_error_before']:.4f} -> {metrics['imse_mean_error_after']:.4f}"
        return RegistrationResult(
            transform=transform,
            warped=warpedNode,
            jacobian=jacobian,
            fixedMask=automaticMask,
            errorBefore=errorNodes.get("before"),
            errorAfter=errorNodes.get("after"),
            table=table,
            lossPlot=lossPlot,
            rows=rows,
            summary=summary + ".",
        )


class IMSERegistrationTest(ScriptedLoadableModuleTest):
    """Self-test on the built-in 2D brain pair (runs in Slicer and in the stand-in)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_registration_improves_tissue_overlap()

    def test_registration_improves_tissue_overlap(self):
        from imse.image import resample_to
        from imse.metrics import dice
        from IMSESlicerLib.sample_data import load_sample
        from IMSESlicerLib.volumes import image_from_volume, world_image_from_volume

        self.delayDisplay("Loading the built-in brain pair")
        nodes = load_sample(slicer.mrmlScene, "IMSE brain pair 2D")
        logic = IMSERegistrationLogic()
        parameters = logic.getParameterNode()
        parameters.fixedVolume, parameters.movingVolume = nodes["fixed"], nodes["moving"]
        parameters.levels, parameters.iterations, parameters.device = 2, 40, "cpu"
        self.delayDisplay("Registering (MIND)")
        result = logic.registrationRun(parameters).start().wait()
        fixedLabels = image_from_volume(nodes["fixed labels"]).array
        movingLabels = nodes["moving labels"]
        before = dice(fixedLabels, image_from_volume(movingLabels).array, labels=[2, 3])
        movingLabels.SetAndObserveTransformNodeID(result.transform.GetID())
        shown = resample_to(world_image_from_volume(movingLabels), image_from_volume(nodes["fixed labels"]), interpolation="nearest")
        after = dice(fixedLabels, shown.array, labels=[2, 3])
        self.assertGreater(after[2] + after[3], before[2] + before[3])  # grey and white matter
        self.delayDisplay("Test passed")
