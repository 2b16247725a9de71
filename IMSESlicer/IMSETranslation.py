"""IMSE Translation: a volume's anatomy shown in another modality, guided by a reference volume.

Reference-guided translation with the learned IMSE evaluator: the output has the spatial
layout (and grid) of the source volume and the modality (and intensity range) of the
reference volume, which must be in the evaluator's trained modality (the shipped evaluators:
T1). With a ground truth (the source's anatomy in the reference's modality) the panel gives
NMAE, PSNR and SSIM of the translation, and of both inputs as given for comparison.

The work runs in a background process (``imse translate``): a whole volume is one network pass
per slice, which takes seconds to minutes on a CPU, and SSIM of a large volume takes seconds
too, so Slicer stays responsive, the job can be cancelled, and a GPU out of memory falls back
to the CPU.
"""

from __future__ import annotations

import json
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
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
#: ``imse translate --truth`` metrics key -> row label in the table.
COMPARED = {"translated": "translated", "source": "source as given", "reference": "reference as given"}


class IMSETranslation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        panel.describe(
            parent,
            _("IMSE Translation"),
            _(
                "Reference-guided translation with the IMSE evaluator: the source volume's anatomy in the modality "
                "of a reference volume (the evaluator's trained modality, e.g. T1), on the source's grid. With a "
                "ground truth, NMAE, PSNR and SSIM of the result and of both inputs as given."
            ),
            "imse-translation",
        )
        parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]


@parameterNodeWrapper
class IMSETranslationParameterNode:
    """sourceVolume: the layout wanted (any modality); referenceVolume: the modality wanted (the
    evaluator's trained modality); groundTruthVolume: optional, the source's anatomy in the
    reference's modality, for the metrics; outputVolume: where the result goes (a new volume when
    empty; never one of the inputs); opacity: of the result shown over the source; device; model:
    evaluator name (empty: the default one)."""

    sourceVolume: vtkMRMLScalarVolumeNode
    referenceVolume: vtkMRMLScalarVolumeNode
    groundTruthVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 1.0
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    model: str = ""


class IMSETranslationWidget(panel.ParameterNodePanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel("IMSETranslation", IMSETranslationLogic())
        self.initializeParameterNode()

    def enter(self) -> None:
        self.initializeParameterNode()
        panel.fill_model_combo(self.ui.modelComboBox, "evaluator", self._parameterNode.model)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        ready = bool(parameters and parameters.sourceVolume and parameters.referenceVolume)
        self.ui.applyButton.enabled = ready or self.controller.running
        if not self.controller.running:
            self.ui.applyButton.toolTip = (
                _("Translate the source volume into the reference's modality (runs in the background; press again to cancel).")
                if ready
                else _("Choose a source and a reference volume first.")
            )

    def onApplyButton(self) -> None:
        self.startOrCancel(_("Could not start the translation."), lambda: self.logic.translationRun(self._parameterNode), self.onRunDone)

    def onRunDone(self, run) -> None:
        if run.result is not None:
            panel.show_table(self.ui.metricsTable, run.result.rows)
            self.ui.statusLabel.text = run.result.summary
        self._onParameterNodeModified()


class TranslationResult:
    """What a translation made: ``translated`` (volume node on the source's grid), ``table``
    (metrics table node, None without a ground truth), ``rows`` (the metrics as dicts: image,
    NMAE, PSNR (dB), SSIM), ``summary`` (one sentence)."""

    def __init__(self, translated, table, rows, summary) -> None:
        self.translated = translated
        self.table = table
        self.rows = rows
        self.summary = summary


class IMSETranslationLogic(ScriptedLoadableModuleLogic):
    """Translation from nodes and plain values; usable from scripts without the panel::

        run = IMSETranslationLogic().translationRun(parameters)   # parameter node or any object with its fields
        result = run.start().wait()                                # or give it to a RunController
    """

    def getParameterNode(self):
        return IMSETranslationParameterNode(super().getParameterNode())

    def translationRun(self, parameters):
        """A not-yet-started :class:`IMSESlicerLib.runs.CommandRun` translating
        ``parameters.sourceVolume`` into the modality of ``parameters.referenceVolume``; its
        result is a :class:`TranslationResult`.

        Volumes are taken as shown in the scene (their transforms applied). A single-slice
        source is translated in 2D: the reference and ground truth are first resampled onto its
        slice. Raises ValueError when a volume is missing or the output is one of the inputs.
        """
        from imse.image import resample_to
        from IMSESlicerLib.runs import CommandRun, Workspace
        from IMSESlicerLib.volumes import world_image_from_volume

        if not parameters.sourceVolume or not parameters.referenceVolume:
            raise ValueError(_("Choose a source and a reference volume."))
        inputNodes = [parameters.sourceVolume, parameters.referenceVolume, parameters.groundTruthVolume]
        if parameters.outputVolume is not None and any(parameters.outputVolume is node for node in inputNodes):
            raise ValueError(_("The output volume is one of the inputs, which are never overwritten: choose another volume, or none for a new one."))
        source = world_image_from_volume(parameters.sourceVolume)
        others = {"reference": world_image_from_volume(parameters.referenceVolume)}
        if parameters.groundTruthVolume is not None:
            others["truth"] = world_image_from_volume(parameters.groundTruthVolume)
        if source.shape[0] == 1:  # the command reads single slices as 2D images: put every input on that slice
            others = {name: resample_to(image, source, default_value=float(image.array.min())) for name, image in others.items()}
        workspace = Workspace(prefix="imse-translation-")
        try:
            arguments = ["translate", workspace.write(source, "source"), workspace.write(others["reference"], "reference")]
            arguments += ["--out", str(workspace.path("translated.nrrd"))]
            if "truth" in others:
                arguments += ["--truth", workspace.write(others["truth"], "truth")]
        except Exception:
            workspace.remove()
            raise
        if parameters.model:
            arguments += ["--model", parameters.model]
        inputs = {
            "sourceVolume": parameters.sourceVolume,
            "outputVolume": parameters.outputVolume,
            "opacity": parameters.opacity,
            "source": source,
        }
        return CommandRun(workspace, arguments, lambda workspace: self._collect(workspace, inputs), device=parameters.device)

    def _collect(self, workspace, inputs) -> TranslationResult:
        """Nodes from the command's outputs (called only after it succeeded)."""
        from imse.image import read_image
        from IMSESlicerLib.overlays import show_overlay
        from IMSESlicerLib.planar import onto_single_slice
        from IMSESlicerLib.tables import table_from_rows
        from IMSESlicerLib.volumes import update_volume_from_image, volume_from_image

        sourceNode = inputs["sourceVolume"]
        scene = sourceNode.GetScene()
        translated = onto_single_slice(read_image(workspace.path("translated.nrrd")), inputs["source"])
        node = inputs["outputVolume"]
        if node is None:
            node = volume_from_image(scene, translated, scene.GenerateUniqueName(f"{sourceNode.GetName()} translated"))
        else:
            update_volume_from_image(node, translated)
            node.SetAndObserveTransformNodeID(None)  # the result lies where the source is shown
            if node.GetDisplayNode() is None:
                node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().AutoWindowLevelOn()
        metricsPath = workspace.path("translated-metrics.json")
        scores = json.loads(metricsPath.read_text()) if metricsPath.exists() else {}
        rows = [
            {"image": label, "NMAE": scores[key]["nmae"], "PSNR (dB)": scores[key]["psnr_db"], "SSIM": scores[key]["ssim"]}
            for key, label in COMPARED.items()
            if key in scores
        ]
        table = table_from_rows(scene, rows, f"{node.GetName()} metrics") if rows else None
        show_overlay(sourceNode, node, inputs["opacity"])
        summary = f"Translated into '{node.GetName()}'"
        if rows:
            result, given = (next(row for row in rows if row["image"] == COMPARED[key]) for key in ("translated", "reference"))
            summary += (
                f": NMAE {result['NMAE']:.4f}, PSNR {result['PSNR (dB)']:.2f} dB, SSIM {result['SSIM']:.3f} against the "
                f"ground truth (reference as given: NMAE {given['NMAE']:.4f}, PSNR {given['PSNR (dB)']:.2f} dB, SSIM {given['SSIM']:.3f})"
            )
        return TranslationResult(node, table, rows, summary + ".")


class IMSETranslationTest(ScriptedLoadableModuleTest):
    """Self-test on the built-in 2D brain pair (runs in Slicer and in the stand-in)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_translation_beats_both_inputs_against_the_truth()

    @staticmethod
    def loadPairWithTruth(scene) -> dict:
        """The built-in 2D brain pair (see IMSESlicerLib.sample_data.load_sample) plus
        ``truth``: the moving (T2-like) volume's anatomy rendered as T1, the modality of the
        fixed volume, on the moving grid (same seed, hence the same deformation)."""
        from imse.data import make_pair
        from IMSESlicerLib.planar import as_single_slice
        from IMSESlicerLib.sample_data import load_sample
        from IMSESlicerLib.volumes import volume_from_image

        nodes = load_sample(scene, "IMSE brain pair 2D")
        truth = make_pair(dim=2, seed=0, moving_contrast="t1").moving
        nodes["truth"] = volume_from_image(scene, as_single_slice(truth), "MNI 2D T1 of the moving anatomy")
        return nodes

    def test_translation_beats_both_inputs_against_the_truth(self):
        self.delayDisplay("Loading the built-in brain pair and its T1 truth")
        nodes = self.loadPairWithTruth(slicer.mrmlScene)
        logic = IMSETranslationLogic()
        parameters = logic.getParameterNode()
        parameters.sourceVolume, parameters.referenceVolume = nodes["moving"], nodes["fixed"]
        parameters.groundTruthVolume, parameters.device = nodes["truth"], "cpu"
        self.delayDisplay("Translating the T2-like volume to T1")
        result = logic.translationRun(parameters).start().wait()
        scores = {row["image"]: row for row in result.rows}
        for given in ("source as given", "reference as given"):
            self.assertLess(scores["translated"]["NMAE"], scores[given]["NMAE"])
            self.assertGreater(scores["translated"]["SSIM"], scores[given]["SSIM"])
        self.assertEqual(result.translated.GetImageData().GetDimensions(), nodes["moving"].GetImageData().GetDimensions())
        self.delayDisplay("Test passed")
