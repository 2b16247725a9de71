"""IMSE Quality: where, and how much, two volumes disagree spatially, whatever their modalities.

The IMSE spatial-error map |E(fixed, moving)| as a coloured overlay with a legend, the
Jacobian determinant and folding maps of a transform, a statistics table (whole volume and
inside a region), a before/after comparison, and a live mode that recomputes the map while
the user moves the moving volume's transform. The maps are small interactive work and run
in Slicer's process.
"""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLTransformNode
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
LIVE_DELAY_MILLISECONDS = 500


class IMSEQuality(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        panel.describe(
            parent,
            _("IMSE Quality"),
            _(
                "Spatial-error heatmap of two volumes of any modalities (the learned IMSE evaluator), Jacobian "
                "determinant and folding maps of a transform, statistics in a region, before/after comparison "
                "and live update while you move a transform."
            ),
            "imse-quality",
        )
        parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]


@parameterNodeWrapper
class IMSEQualityParameterNode:
    """fixedVolume / movingVolume: the pair judged (moving as shown, with its transform);
    compareVolume: optional second moving volume (before/after); transform: optional, for the
    Jacobian maps; mask: optional label map on the fixed grid; reference: which volume is in the
    evaluator's trained modality; opacity: of the overlay; liveUpdate; device; model: evaluator
    name (empty: the default one)."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    compareVolume: vtkMRMLScalarVolumeNode
    transform: vtkMRMLTransformNode
    mask: vtkMRMLLabelMapVolumeNode
    reference: Annotated[str, Choice(["fixed", "moving"])] = "fixed"
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    liveUpdate: bool = False
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    model: str = ""


class IMSEQualityWidget(panel.ParameterNodePanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._observedMoving = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel("IMSEQuality", IMSEQualityLogic(), runsJobs=False)
        self.liveTimer = qt.QTimer()
        self.liveTimer.singleShot = True
        self.liveTimer.interval = LIVE_DELAY_MILLISECONDS
        self.liveTimer.timeout.connect(self.onLiveUpdate)
        self.initializeParameterNode()

    def enter(self) -> None:
        self.initializeParameterNode()
        panel.fill_model_combo(self.ui.modelComboBox, "evaluator", self._parameterNode.model)

    def initializeParameterNode(self) -> None:
        super().initializeParameterNode()
        if not self._parameterNode.fixedVolume:
            volumes = [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if node.GetClassName() == "vtkMRMLScalarVolumeNode"]
            if len(volumes) >= 2:
                self._parameterNode.fixedVolume, self._parameterNode.movingVolume = volumes[:2]

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.fixedVolume and self._parameterNode.movingVolume)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Compute the IMSE error map (and Jacobian maps when a transform is chosen) and the statistics table.")
            if ready
            else _("Choose a fixed and a moving volume first.")
        )
        self._observeMovingTransform()

    def _observeMovingTransform(self) -> None:
        """Watch the moving volume's transform while live update is on."""
        moving = self._parameterNode.movingVolume if self._parameterNode and self._parameterNode.liveUpdate else None
        if moving is self._observedMoving:
            return
        if self._observedMoving is not None:
            self.removeObserver(self._observedMoving, slicer.vtkMRMLTransformableNode.TransformModifiedEvent, self.onMovingTransformModified)
        self._observedMoving = moving
        if moving is not None:
            self.addObserver(moving, slicer.vtkMRMLTransformableNode.TransformModifiedEvent, self.onMovingTransformModified)

    def onMovingTransformModified(self, caller=None, event=None) -> None:
        self.liveTimer.start()  # restarts: one update after the user pauses (throttled)

    def onLiveUpdate(self) -> None:
        if self._parameterNode and self._parameterNode.liveUpdate and self.ui.applyButton.enabled:
            self.onApplyButton()

    def onApplyButton(self) -> None:
        if not panel.backend_ready():
            return
        with slicer.util.tryWithErrorDisplay(_("Could not compute the quality maps."), waitCursor=True):
            result = self.logic.assess(self._parameterNode)
            panel.show_table(self.ui.statisticsTable, result.rows)
            self.ui.statusLabel.text = result.summary


class QualityResult:
    """Nodes made by :meth:`IMSEQualityLogic.assess`; ``rows``: the statistics table's rows;
    ``summary``: one sentence for the user."""

    def __init__(self, errorMaps, jacobian, folding, table, rows, summary) -> None:
        self.errorMaps = errorMaps
        self.jacobian = jacobian
        self.folding = folding
        self.table = table
        self.rows = rows
        self.summary = summary


class IMSEQualityLogic(ScriptedLoadableModuleLogic):
    """Quality maps from nodes and plain values; usable from scripts without the panel."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._evaluators = {}

    def getParameterNode(self):
        return IMSEQualityParameterNode(super().getParameterNode())

    def evaluator(self, model: str = "", device: str = "auto", dim: int = 2):
        """The evaluator named ``model`` or, when empty, the default one of dimension ``dim``
        (the 2D one when no 3D one is installed; a 2D one maps volumes slice by slice), cached
        per model, device and dimension."""
        from imse.device import resolve_device
        from imse.evaluator import load_evaluator

        key = (model, str(resolve_device(device)), dim)
        if key not in self._evaluators:
            self._evaluators[key] = load_evaluator(model, dim, key[1])
        return self._evaluators[key]

    def errorMap(self, fixedVolume, movingVolume, outputVolume=None, model="", reference="fixed", mask=None, device="auto"):
        """|E| of ``movingVolume`` (with its transform) against ``fixedVolume`` on the fixed grid,
        into ``outputVolume`` (a new volume when None) with the error colours and legend. When
        the GPU runs out of memory the map is computed on the CPU (with a warning). Returns (volume node, statistics dict: {"image": {...}, "mask": {...}})."""
        import torch

        from imse.evaluator import evaluator_dimension
        from IMSESlicerLib.overlays import map_volume
        from IMSESlicerLib.volumes import image_from_volume, world_image_from_volume

        fixed = world_image_from_volume(fixedVolume)
        moving = world_image_from_volume(movingVolume)
        maskArray = image_from_volume(mask).array > 0 if mask is not None else None
        dim = evaluator_dimension(fixed)
        try:
            result = self.evaluator(model, device, dim).error_map(fixed, moving, reference=reference, mask=maskArray)
        except torch.cuda.OutOfMemoryError:  # the documented fallback: same map, on the CPU
            torch.cuda.empty_cache()
            logging.warning("IMSE Quality: the GPU ran out of memory; the error map is computed on the CPU.")
            result = self.evaluator(model, "cpu", dim).error_map(fixed, moving, reference=reference, mask=maskArray)
        name = f"{movingVolume.GetName()} IMSE error"
        node = map_volume(fixedVolume.GetScene(), result.magnitude, name, "error", node=outputVolume)
        return node, result.statistics

    def jacobianMaps(self, transformNode, referenceVolume, jacobianVolume=None, foldingVolume=None):
        """det J of ``transformNode`` (the displacement it applies to the reference grid, from
        parent) and its folding mask (det J <= 0) on the reference volume's grid. Returns
        (jacobian node, folding node, statistics dict)."""
        from imse.image import Image
        from imse.metrics import jacobian_determinant_map
        from IMSESlicerLib.overlays import map_volume
        from IMSESlicerLib.transforms import displacement_from_transform
        from IMSESlicerLib.volumes import image_from_volume

        reference = image_from_volume(referenceVolume)
        displacement = displacement_from_transform(transformNode, reference)
        determinant = jacobian_determinant_map(displacement)
        scene = referenceVolume.GetScene()
        jacobian = map_volume(scene, determinant, f"{transformNode.GetName()} Jacobian", "jacobian", node=jacobianVolume)
        folds = Image((determinant.array <= 0).astype(np.uint8), determinant.geometry)
        folding = map_volume(scene, folds, f"{transformNode.GetName()} folding", "folding", node=foldingVolume)
        statistics = {
            "det J min": float(determinant.array.min()),
            "det J max": float(determinant.array.max()),
            "folding %": float(100.0 * folds.array.mean()),
        }
        return jacobian, folding, statistics

    def assess(self, parameters) -> QualityResult:
        """Everything the panel's button does, from a parameter node (or any object with the
        same attributes): error maps of the moving (and compare) volume, Jacobian maps of the
        transform, a statistics table node, and the overlay shown over the fixed volume."""
        from IMSESlicerLib.overlays import show_overlay
        from IMSESlicerLib.tables import table_from_rows

        if not parameters.fixedVolume or not parameters.movingVolume:
            raise ValueError(_("Choose a fixed and a moving volume."))
        errorMaps, rows = [], []
        for moving in (parameters.movingVolume, parameters.compareVolume):
            if moving is None:
                continue
            existing = parameters.fixedVolume.GetScene().GetFirstNodeByName(f"{moving.GetName()} IMSE error")
            node, statistics = self.errorMap(
                parameters.fixedVolume, moving, existing, parameters.model, parameters.reference, parameters.mask, parameters.device
            )
            errorMaps.append(node)
            for region, values in statistics.items():
                rows.append({"volume": moving.GetName(), "region": region, **{f"|E| {key}": value for key, value in values.items()}})
        jacobian = folding = None
        summary = f"Mean |E|: {rows[0]['|E| mean']:.4f}"
        if parameters.compareVolume is not None:
            after = next(row for row in rows if row["volume"] == parameters.compareVolume.GetName() and row["region"] == rows[0]["region"])
            summary += f" ({parameters.movingVolume.GetName()}) vs {after['|E| mean']:.4f} ({parameters.compareVolume.GetName()})"
        if parameters.transform is not None:
            jacobian, folding, jacobianStatistics = self.jacobianMaps(parameters.transform, parameters.fixedVolume)
            summary += f"; det J in [{jacobianStatistics['det J min']:.3f}, {jacobianStatistics['det J max']:.3f}], folding {jacobianStatistics['folding %']:.2f} %"
            for row in rows:
                row.update(jacobianStatistics)
        table = table_from_rows(parameters.fixedVolume.GetScene(), rows, "IMSE quality statistics")
        show_overlay(parameters.fixedVolume, errorMaps[0], parameters.opacity)
        return QualityResult(errorMaps, jacobian, folding, table, rows, summary + ".")


class IMSEQualityTest(ScriptedLoadableModuleTest):
    """Self-test on the built-in 2D brain pair (runs in Slicer and in the stand-in)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_misaligned_pair_scores_worse_than_aligned()

    def test_misaligned_pair_scores_worse_than_aligned(self):
        from IMSESlicerLib.sample_data import load_sample

        self.delayDisplay("Loading the built-in brain pair")
        nodes = load_sample(slicer.mrmlScene, "IMSE brain pair 2D")
        logic = IMSEQualityLogic()
        misaligned, misalignedStatistics = logic.errorMap(nodes["fixed"], nodes["moving"], device="cpu")
        aligned, alignedStatistics = logic.errorMap(nodes["fixed"], nodes["fixed"], device="cpu")
        self.assertGreater(misalignedStatistics["image"]["mean"], 1.5 * alignedStatistics["image"]["mean"])
        self.assertEqual(misaligned.GetImageData().GetDimensions(), nodes["fixed"].GetImageData().GetDimensions())
        self.delayDisplay("Test passed")
