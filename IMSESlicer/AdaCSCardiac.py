"""AdaCS Cardiac: myocardial motion, correspondence scores and strain from a cardiac cine.

Every analysed frame of a cine (a sequence node), or a second frame (a volume), is registered
onto the reference frame (end-diastole) by AdaCS out of Slicer's process (``imse adacs
register-cine``): a displacement and a score map S in (0, 1) that is low where the frames do
not correspond (dropout, noise, through-plane motion). From the Lagrangian displacements
u(reference -> t), Slicer's process derives (:mod:`imse.strain`) Green-Lagrange radial,
circumferential and principal strain maps about the LV centre, the mean strain curves of the
myocardium over the cycle, and a six-sector table at the frame of peak shortening.

Everything lies on the reference frame's grid (Lagrangian: it describes the end-diastolic
myocardium) and is shown over the reference frame. From a cine, each output is a sequence played
in step with the cine's browser; from two frames, single nodes. 2D only: frames are single
axial slices (as Slicer's cine sequences and the built-in samples are).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import vtk

import slicer
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
)
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
#: Maps made per frame: the AdaCS score and the strains; the key is also the panel's "Show" choice.
MAPS = ("score", "radial strain", "circumferential strain", "first principal strain", "second principal strain")
#: Sectors of the regional table (the AHA mid-ventricular segments when sector 1 starts at the anterior RV insertion).
SEGMENTS = 6
#: Settings of :meth:`AdaCSCardiacLogic.run` that the panel takes from its parameter node.
RUN_SETTINGS = (
    "lvCentre", "cine", "referenceVolume", "frameVolume", "myocardium", "referenceFrame", "lastFrame", "frameStep",
    "model", "iterations", "scoring", "spacing", "device",
)  # fmt: skip


class AdaCSCardiac(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        panel.describe(
            parent,
            _("AdaCS Cardiac"),
            _(
                "Cardiac motion from a cine by AdaCS registration with correspondence scoring: score maps, "
                "displacement transforms, radial, circumferential and principal strain maps, strain curves over "
                "the cycle and a six-segment regional table."
            ),
            "adacs-cardiac",
        )
        parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]


@parameterNodeWrapper
class AdaCSCardiacParameterNode:
    """cine: the sequence analysed (else referenceVolume and frameVolume, two frames on one grid);
    lvCentre: markups, point 1 the LV centre, optional point 2 the start of segment 1; myocardium:
    optional label map or segmentation of the LV wall in the reference frame; referenceFrame,
    lastFrame (-1: the end), frameStep: which cine frames; model: AdaCS network name (empty: optimise
    each pair for ``iterations`` steps); scoring: False gives the MSE baseline; spacing: working pixel
    size in mm (0: the frames' own); device; shownMap: one of :data:`MAPS`; opacity of the overlay."""

    cine: vtkMRMLSequenceNode
    referenceVolume: vtkMRMLScalarVolumeNode
    frameVolume: vtkMRMLScalarVolumeNode
    lvCentre: vtkMRMLMarkupsFiducialNode
    myocardium: vtkMRMLLabelMapVolumeNode | vtkMRMLSegmentationNode | None
    referenceFrame: Annotated[int, WithinRange(0, 100000)] = 0
    lastFrame: Annotated[int, WithinRange(-1, 100000)] = -1
    frameStep: Annotated[int, WithinRange(1, 1000)] = 1
    model: str = ""
    iterations: Annotated[int, WithinRange(1, 100000)] = 300
    scoring: bool = True
    spacing: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    shownMap: Annotated[str, Choice(list(MAPS))] = "circumferential strain"
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6


class AdaCSCardiacWidget(panel.ParameterNodePanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.result = None
        self._shown = None  # (id of the result, map, opacity) last shown: the overlay is set only when it changes

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel("AdaCSCardiac", AdaCSCardiacLogic())
        self.initializeParameterNode()

    def enter(self) -> None:
        self.initializeParameterNode()
        panel.fill_model_combo(self.ui.modelComboBox, "adacs", self._parameterNode.model)
        self.ui.modelComboBox.setItemText(0, _("None: optimise each frame pair"))

    def onSceneStartClose(self, caller, event) -> None:
        self.result = self._shown = None
        super().onSceneStartClose(caller, event)

    def initializeParameterNode(self) -> None:
        super().initializeParameterNode()
        parameters = self._parameterNode
        if not parameters.cine and not parameters.referenceVolume:
            parameters.cine = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
        if not parameters.lvCentre:
            parameters.lvCentre = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLMarkupsFiducialNode")

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        parameters = self._parameterNode
        ready = bool(parameters and parameters.lvCentre and (parameters.cine or (parameters.referenceVolume and parameters.frameVolume)))
        self.ui.iterationsSpinBox.enabled = bool(parameters) and not parameters.model
        if self.controller.running:
            return  # the button is Cancel now
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Register every analysed frame onto the reference frame with AdaCS, then compute the maps, curves and table.")
            if ready
            else _("Choose a cine (or two frames) and the LV centre markups first.")
        )
        self._showResult()

    def onApplyButton(self) -> None:
        settings = lambda: {name: getattr(self._parameterNode, name) for name in RUN_SETTINGS}  # noqa: E731
        self.startOrCancel(_("Could not start the AdaCS run."), lambda: self.logic.run(**settings()), self.onRunDone)

    def onRunDone(self, run) -> None:
        self._onParameterNodeModified()
        if run.result is None:
            return
        self.result = run.result
        panel.show_table(self.ui.regionalTable, self.result.rows)
        self.ui.regionalTable.verticalHeader().visible = False
        self.ui.regionalTable.resizeColumnsToContents()
        self.ui.statusLabel.text = self.result.summary
        self._showResult()
        plots = getattr(slicer.modules, "plots", None)
        if plots is not None and self.result.chart is not None:
            plots.logic().ShowChartInLayout(self.result.chart)

    def _showResult(self) -> None:
        """Show the chosen map of the last result over its reference frame, when the choice or the
        opacity changed (the result is dropped once its nodes are gone)."""
        if self.result is None or not self._parameterNode:
            return
        choice = (id(self.result), self._parameterNode.shownMap, self._parameterNode.opacity)
        if choice == self._shown:
            return
        shown = self.result.maps[choice[1]]
        if shown.GetScene() is None or self.result.background.GetScene() is None:
            self.result = None
            return
        from IMSESlicerLib.overlays import show_overlay

        show_overlay(self.result.background, shown, choice[2])
        self._shown = choice


@dataclass
class CardiacResult:
    """Nodes made by a run, on the reference frame's grid (from a cine: the proxies of sequences
    played with the cine's browser, which shows ``peakFrame``).

    ``transform``: grid transform, displacement from the reference frame to the frame shown (from
    parent: set on that frame, it resamples the frame onto the reference); ``maps``: a volume per
    :data:`MAPS` key (strain in %); ``sequences``: the sequence behind each output (``transform`` and
    the :data:`MAPS` keys), empty for two frames; ``background``: the reference frame volume the
    maps are shown over; ``chart`` and ``table``: the strain curves and the regional table (None
    without a myocardium); ``curves``: frame numbers and mean myocardial strain (%) per frame;
    ``rows``: the regional table's rows; ``peakFrame``: the cine frame of peak circumferential
    shortening (of largest mean motion without a myocardium); ``summary``: one sentence."""

    transform: object
    maps: dict
    sequences: dict
    background: object
    chart: object
    table: object
    curves: dict
    rows: list
    peakFrame: int
    summary: str


@dataclass
class _Frames:
    """What a run analyses, read from the inputs when it is built: ``images`` (single-slice 3D
    images, the reference first), their cine frame ``numbers`` and sequence ``indexValues``; the
    ``scene``; the source ``cine`` and its ``browser`` (None for two frames, or a cine without a
    browser); ``referenceNode`` (the reference volume of two frames, else None); ``name`` (the
    outputs' prefix); ``centre`` (mm, LPS x and y); ``startAngle`` (where sector 1 starts, degrees
    from +x towards +y, LPS); ``myocardium`` (a 2D uint8 image on the reference grid, or None)."""

    images: list
    numbers: list
    indexValues: list
    scene: object
    cine: object
    browser: object
    referenceNode: object
    name: str
    centre: np.ndarray
    startAngle: float
    myocardium: object


class AdaCSCardiacLogic(ScriptedLoadableModuleLogic):
    """AdaCS motion and strain from nodes and plain values; usable from scripts without the panel::

        run = AdaCSCardiacLogic().run(centreNode, cine=sequenceNode, myocardium=labelNode, iterations=150)
        result = run.start().wait()   # a CardiacResult; raises ImageError, or Cancelled
        show_overlay(result.background, result.maps["radial strain"])   # IMSESlicerLib.overlays
    """

    def getParameterNode(self):
        return AdaCSCardiacParameterNode(super().getParameterNode())

    def run(
        self,
        lvCentre,
        cine=None,
        referenceVolume=None,
        frameVolume=None,
        myocardium=None,
        referenceFrame: int = 0,
        lastFrame: int = -1,
        frameStep: int = 1,
        model: str = "",
        iterations: int = 300,
        scoring: bool = True,
        spacing: float = 0.0,
        device: str = "auto",
    ):
        """A :class:`~IMSESlicerLib.runs.CommandRun` (not started) whose result is a
        :class:`CardiacResult`.

        Frames: from ``cine``, frames ``referenceFrame``, ``referenceFrame + frameStep``, ... up to
        ``lastFrame`` (-1: the last); without a cine, ``referenceVolume`` and ``frameVolume``.
        ``lvCentre``: markups whose first point is the LV centre and optional second point the start
        of sector 1 (without it, sector 1 starts at LPS +x, towards the patient's left).
        ``myocardium``: label map or segmentation in the reference frame, or None (then no curves and
        no table). ``model``: an AdaCS network's name, or "" to optimise each pair for
        ``iterations`` steps (``scoring`` False: the plain MSE baseline). ``spacing``: working pixel
        size in mm (0: the frames' own). The inputs are read now and never modified; nodes are added
        only when the run succeeds.
        """
        from IMSESlicerLib.runs import CommandRun, Workspace
        from IMSESlicerLib.sequences import cine_image_from_frames

        frames = self._frames(lvCentre, cine, referenceVolume, frameVolume, myocardium, referenceFrame, lastFrame, frameStep)
        workspace = Workspace("imse-adacs-")
        try:
            path = workspace.write(cine_image_from_frames(frames.images), "cine")
        except Exception:
            workspace.remove()
            raise
        arguments = ["adacs", "register-cine", path, "--reference-frame", "0", "--out", str(workspace.path("out"))]
        arguments += ["--model", model] if model else ["--iterations", str(int(iterations))]
        arguments += [] if scoring else ["--no-scoring"]
        arguments += ["--spacing", str(float(spacing))] if spacing > 0 else []
        return CommandRun(workspace, arguments, lambda workspace: self._collect(workspace, frames), device=device)

    # ---------------------------------------------------------------------------------- inputs

    def _frames(self, lvCentre, cine, referenceVolume, frameVolume, myocardium, referenceFrame, lastFrame, frameStep) -> _Frames:
        from imse.errors import ImageError
        from IMSESlicerLib.planar import as_planar
        from IMSESlicerLib.sequences import frames_from_sequence, sequences_logic
        from IMSESlicerLib.volumes import image_from_volume

        if cine is not None:
            images, _timeStep = frames_from_sequence(cine)
            last = len(images) - 1 if lastFrame < 0 else lastFrame
            if not 0 <= referenceFrame < last < len(images) or frameStep < 1:
                raise ImageError(
                    f"The cine has {len(images)} frames (0 to {len(images) - 1}): choose a reference frame before the last "
                    f"frame analysed (got {referenceFrame} and {last}) and a step of at least 1."
                )
            numbers = list(range(referenceFrame, last + 1, frameStep))
            images = [images[number] for number in numbers]
            indexValues = [cine.GetNthIndexValue(number) for number in numbers]
            scene = cine.GetScene()
            browser = sequences_logic(scene).GetFirstBrowserNodeForSequenceNode(cine)
            frames = _Frames(images, numbers, indexValues, scene, cine, browser, None, cine.GetName(), None, 0.0, None)
        elif referenceVolume is not None and frameVolume is not None:
            images = [image_from_volume(referenceVolume), image_from_volume(frameVolume)]
            frames = _Frames(images, [0, 1], ["0", "1"], referenceVolume.GetScene(), None, None, referenceVolume, frameVolume.GetName(), None, 0.0, None)
        else:
            raise ImageError("Choose a cine, or a reference frame and another frame.")
        frames.centre, frames.startAngle = self._centre(lvCentre, as_planar(frames.images[0]))
        frames.myocardium = self._myocardium(myocardium, frames.images[0]) if myocardium is not None else None
        return frames

    @staticmethod
    def _centre(lvCentre, reference) -> tuple[np.ndarray, float]:
        """The LV centre (mm, LPS x and y) and where sector 1 starts (degrees from +x towards +y)."""
        from imse.errors import ImageError
        from IMSESlicerLib.volumes import RAS_FROM_LPS

        if lvCentre is None or lvCentre.GetNumberOfControlPoints() < 1:
            raise ImageError("Place the LV centre: a markups point in the middle of the LV cavity of the reference frame.")
        points = RAS_FROM_LPS @ slicer.util.arrayFromMarkupsControlPoints(lvCentre, world=True).T  # LPS, a column per point
        centre = points[:2, 0]
        index = reference.geometry.physical_to_index(centre)
        if np.any(index < -0.5) or np.any(index > np.array(reference.shape[::-1]) - 0.5):
            raise ImageError(f"The LV centre ({centre[0]:.1f}, {centre[1]:.1f}) mm LPS lies outside the frames: place it in the LV cavity.")
        if points.shape[1] < 2:
            return centre, 0.0
        offset = points[:2, 1] - centre
        return centre, math.degrees(math.atan2(offset[1], offset[0])) % 360.0

    @staticmethod
    def _myocardium(node, referenceFrame):
        """The myocardium as a 2D uint8 image on the reference frame's grid (``referenceFrame``: a
        single-slice 3D image); a segmentation gives the segment named like "myocardium", else its
        first segment."""
        from imse.errors import ImageError
        from imse.image import Image, resample_to
        from IMSESlicerLib.planar import as_planar
        from IMSESlicerLib.volumes import image_from_volume, volume_from_image

        if node.IsA("vtkMRMLSegmentationNode"):
            scene = node.GetScene()
            segmentation = node.GetSegmentation()
            if segmentation.GetNumberOfSegments() == 0:
                raise ImageError(f"The segmentation '{node.GetName()}' has no segment: draw the myocardium first.")
            names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
            chosen = next((i for i, name in enumerate(names) if "myocard" in name.lower()), 0)
            segmentIds = vtk.vtkStringArray()
            segmentIds.InsertNextValue(segmentation.GetNthSegmentID(chosen))
            grid = volume_from_image(scene, referenceFrame, scene.GenerateUniqueName("imse-temporary"))
            labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName("imse-temporary"))
            try:
                exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    node, segmentIds, labelmap, grid, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
                )
                if not exported:
                    raise ImageError(f"Could not turn segment '{names[chosen]}' into a label map on the reference frame.")
                labels = image_from_volume(labelmap)
            finally:
                for temporary in (grid, labelmap):
                    for index in reversed(range(temporary.GetNumberOfDisplayNodes())):
                        scene.RemoveNode(temporary.GetNthDisplayNode(index))
                    scene.RemoveNode(temporary)
        else:
            labels = image_from_volume(node)
        planar = as_planar(labels)
        mask = resample_to(Image((planar.array > 0).astype(np.uint8), planar.geometry), as_planar(referenceFrame), "nearest")
        if not mask.array.any():
            raise ImageError(f"The myocardium '{node.GetName()}' has no voxel on the reference frame: draw the LV wall on that frame.")
        return mask

    # --------------------------------------------------------------------------------- outputs

    def _collect(self, workspace, frames: _Frames) -> CardiacResult:
        """Read the command's outputs, derive the strain, and add every node (all or none)."""
        from imse.image import read_image, resample_to

        folder = workspace.path("out")
        displacements = [read_image(folder / f"displacement_mm_{i:04d}.nii.gz") for i in range(len(frames.images))]
        maps = {name: [] for name in MAPS}
        for index, displacement in enumerate(displacements):
            maps["score"].append(read_image(folder / f"score_{index:04d}.nii.gz"))
            for name, image in strain_maps(displacement, frames.centre).items():
                maps[name].append(image)
        mask = frames.myocardium
        if mask is not None and not mask.geometry.isclose(displacements[0].geometry):  # a working spacing was chosen
            mask = resample_to(mask, maps["score"][0], "nearest")
        region = None if mask is None else mask.array > 0
        analysis = _analyse(frames, maps, displacements, region)
        with _removed_on_failure(frames.scene):
            return self._addNodes(frames, maps, displacements, analysis, region)

    def _addNodes(self, frames: _Frames, maps: dict, displacements: list, analysis: dict, region) -> CardiacResult:
        from IMSESlicerLib.tables import plot_from_curves, table_from_rows
        from IMSESlicerLib.volumes import volume_from_image

        scene, peak, curves = frames.scene, analysis["peak"], analysis["curves"]
        outputs = _Outputs(frames, peak, region)
        transform = outputs.transforms(f"{frames.name} AdaCS displacement", displacements)
        shown = {
            name: outputs.maps(name, f"{frames.name} AdaCS {name}", maps[name], "score" if name == "score" else "strain", analysis["ranges"].get(name))
            for name in MAPS
        }
        outputs.finish()
        background = frames.referenceNode or volume_from_image(scene, frames.images[0], f"{frames.name} reference frame {frames.numbers[0]}")
        chart = table = None
        if analysis["rows"]:
            strain_curves = {key: curves[key] for key in ("radial strain (%)", "circumferential strain (%)")}
            chart = plot_from_curves(scene, frames.numbers, strain_curves, f"{frames.name} AdaCS strain curves", "frame", "strain (%)")
            table = table_from_rows(scene, analysis["rows"], f"{frames.name} AdaCS regional strain (frame {frames.numbers[peak]})")
        return CardiacResult(
            transform, shown, outputs.sequences, background, chart, table, curves, analysis["rows"], frames.numbers[peak], analysis["summary"]
        )


class _Outputs:
    """Each output of a run as a sequence played in step with the cine (from a cine, through its
    browser, or a new one) or as a single node holding the moved frame (two frames)."""

    def __init__(self, frames: _Frames, peak: int, region=None) -> None:
        """``region``: the myocardium (2D boolean, maps' grid) outside which strain maps are
        transparent, or None."""
        from IMSESlicerLib.sequences import sequences_logic

        self.frames, self.peak, self.scene = frames, peak, frames.scene
        self.region = None if region is None else region[None]  # on the lifted single-slice grid
        self.sequences: dict = {}
        self._styles: list = []
        self.browser = frames.browser
        if frames.cine is not None and self.browser is None:
            self.browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{frames.name} browser")
            self.browser.SetAndObserveMasterSequenceNodeID(frames.cine.GetID())
            sequences_logic(self.scene).UpdateProxyNodesFromSequences(self.browser)

    def _lift(self, image):
        """A 2D image or displacement onto the reference frame's slice (its z position and thickness)."""
        from imse.geometry import Geometry
        from imse.image import Image
        from IMSESlicerLib.planar import as_single_slice, displacement_as_single_slice

        plane = self.frames.images[0].geometry
        lifted = displacement_as_single_slice(image) if image.is_vector else as_single_slice(image)
        geometry = lifted.geometry
        return Image(lifted.array, Geometry((*geometry.spacing[:2], plane.spacing[2]), (*geometry.origin[:2], plane.origin[2]), geometry.direction))

    def _sequence(self, key: str, name: str, items: list):
        """A sequence of ``items`` indexed like the cine, played by the browser; returns its proxy."""
        from IMSESlicerLib.sequences import add_synchronized_sequence

        cine = self.frames.cine
        sequence = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
        sequence.SetIndexName(cine.GetIndexName())
        sequence.SetIndexUnit(cine.GetIndexUnit())
        sequence.SetIndexType(cine.GetIndexType())
        for value, item in zip(self.frames.indexValues, items):
            sequence.SetDataNodeAtValue(item, value)
        self.sequences[key] = sequence
        return add_synchronized_sequence(self.browser, sequence)

    def transforms(self, name: str, displacements: list):
        """Grid transforms (from parent) of the displacements from the reference frame."""
        from IMSESlicerLib.transforms import grid_transform_from_displacement

        if self.browser is None:
            return grid_transform_from_displacement(self.scene, self._lift(displacements[-1]), name)
        work = slicer.vtkMRMLScene()  # the sequence stores copies
        items = [grid_transform_from_displacement(work, self._lift(d), f"{name} {n}") for d, n in zip(displacements, self.frames.numbers)]
        return self._sequence("transform", name, items)

    def maps(self, key: str, name: str, images: list, kind: str, value_range):
        """Coloured map volumes of ``kind`` (see IMSESlicerLib.overlays), styled at the peak frame;
        ``key`` names the sequence in :attr:`sequences`."""
        from IMSESlicerLib.overlays import hide_outside, map_kind, map_volume
        from IMSESlicerLib.volumes import update_volume_from_image

        region = self.region if kind == "strain" else None  # strain means something in the wall only
        if self.browser is None:
            return map_volume(self.scene, self._lift(images[-1]), name, kind, value_range=value_range, region=region)
        items = []
        for image in images:
            item = slicer.vtkMRMLScalarVolumeNode()  # the sequence stores copies
            lifted = self._lift(image.with_array(map_kind(kind).convert(image.array)))
            if region is not None:
                lifted = lifted.with_array(hide_outside(lifted.array, region, value_range))
            update_volume_from_image(item, lifted)
            items.append(item)
        proxy = self._sequence(key, name, items)
        self._styles.append((proxy, name, kind, images[self.peak], value_range, region))
        return proxy

    def finish(self) -> None:
        """Show the peak frame in the browser, then give each map proxy its colours and legend."""
        from IMSESlicerLib.overlays import map_volume
        from IMSESlicerLib.sequences import sequences_logic

        if self.browser is None:
            return
        master = self.browser.GetMasterSequenceNode()
        item = master.GetItemNumberFromIndexValue(self.frames.indexValues[self.peak]) if master is not None else -1
        if item >= 0:
            self.browser.SetSelectedItemNumber(item)
            sequences_logic(self.scene).UpdateProxyNodesFromSequences(self.browser)
        for proxy, name, kind, image, value_range, region in self._styles:
            map_volume(self.scene, self._lift(image), name, kind, node=proxy, value_range=value_range, region=region)


@contextlib.contextmanager
def _removed_on_failure(scene):
    """Nodes added to ``scene`` inside the block are removed again if it fails, which then raises
    an ImageError (what the job runner reports)."""
    from imse.errors import ImageError

    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield
    except Exception as error:
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in before and node.GetScene() is scene:
                scene.RemoveNode(node)
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"Could not add the AdaCS results to the scene: {error}") from error


def _analyse(frames: _Frames, maps: dict, displacements: list, mask) -> dict:
    """The numbers of a run: ``peak`` (position of the frame, after the reference, of peak
    circumferential shortening in the myocardium, or of largest mean motion without one), ``ranges`` (strain windows in %,
    symmetric, from the myocardium at the peak), ``curves`` (mean myocardial strain in % and score
    per frame), ``rows`` (the regional table) and a one-sentence ``summary``."""
    import torch

    from imse.strain import segment_means

    numbers = frames.numbers
    if mask is None:
        motion = [float(np.linalg.norm(d.array, axis=-1).mean()) for d in displacements]
        peak = 1 + int(np.argmax(motion[1:]))
        summary = (
            f"Largest motion at frame {numbers[peak]} ({motion[peak]:.2f} mm on average). Choose a myocardium "
            "for the strain curves and the regional table."
        )
        return {"peak": peak, "ranges": {}, "curves": {"frame": numbers, "mean motion (mm)": motion}, "rows": [], "summary": summary}
    curves = {"frame": numbers}
    for name in ("radial strain", "circumferential strain"):
        curves[f"{name} (%)"] = [100.0 * float(image.array[mask].mean()) for image in maps[name]]
    curves["mean score"] = [float(image.array[mask].mean()) for image in maps["score"]]
    peak = 1 + int(np.argmin(curves["circumferential strain (%)"][1:]))
    ranges = {}
    for name in MAPS[1:]:
        high = float(np.percentile(np.abs(100.0 * maps[name][peak].array[mask]), 99.0))
        if high > 0:
            ranges[name] = (-high, high)
    geometry = maps["score"][peak].geometry

    def sectors(name: str) -> list[float]:
        values = torch.from_numpy(maps[name][peak].array).double()[None]
        return segment_means(values, geometry, frames.centre, mask, frames.startAngle, SEGMENTS)[0].tolist()

    radial, circumferential, score = sectors("radial strain"), sectors("circumferential strain"), sectors("score")
    width = 360.0 / SEGMENTS
    rows = [
        {
            "segment": k + 1,
            "from (deg)": round((frames.startAngle + k * width) % 360.0, 1),
            "radial (%)": 100.0 * radial[k],
            "circumferential (%)": 100.0 * circumferential[k],
            "score": score[k],
        }
        for k in range(SEGMENTS)
    ]
    summary = (
        f"Peak shortening at frame {numbers[peak]}: circumferential strain {curves['circumferential strain (%)'][peak]:+.1f} %, "
        f"radial {curves['radial strain (%)'][peak]:+.1f} % (myocardium mean); mean score {curves['mean score'][peak]:.2f}."
    )
    return {"peak": peak, "ranges": ranges, "curves": curves, "rows": rows, "summary": summary}


def strain_maps(displacement, centre_mm) -> dict:
    """Green-Lagrange strain maps (unitless 2D images on the displacement's grid) of a 2D
    displacement from the reference frame (mm, LPS): ``radial strain`` and ``circumferential
    strain`` about ``centre_mm`` (LPS x, y), ``first principal strain`` (the larger) and
    ``second principal strain``."""
    from imse.image import Image, to_tensor
    from imse.strain import principal_strains, radial_circumferential_strain, strain_tensor

    geometry = displacement.geometry
    tensor = strain_tensor(to_tensor(displacement).double(), geometry)
    radial, circumferential = radial_circumferential_strain(tensor, geometry, centre_mm)
    principal = principal_strains(tensor)
    values = {
        "radial strain": radial[0],
        "circumferential strain": circumferential[0],
        "first principal strain": principal[0, 0],
        "second principal strain": principal[0, 1],
    }
    return {name: Image(value.float().numpy(), geometry) for name, value in values.items()}


class AdaCSCardiacTest(ScriptedLoadableModuleTest):
    """Self-test on the built-in LV phantom (runs in Slicer and in the stand-in)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_thickens_and_shortens_at_end_systole()

    def test_phantom_thickens_and_shortens_at_end_systole(self):
        from IMSESlicerLib.sample_data import load_sample

        self.delayDisplay("Loading the LV phantom cine")
        nodes = load_sample(slicer.mrmlScene, "LV phantom cine")
        run = AdaCSCardiacLogic().run(
            nodes["LV centre"], cine=nodes["cine"], myocardium=nodes["myocardium"], lastFrame=5, frameStep=5, iterations=90, device="cpu"
        )
        self.delayDisplay("Registering frames 0 and 5 (end-systole)")
        result = run.start().wait()
        self.assertEqual(result.peakFrame, 5)
        self.assertGreater(result.curves["radial strain (%)"][-1], 5.0)
        self.assertLess(result.curves["circumferential strain (%)"][-1], -5.0)
        self.assertEqual(result.sequences["transform"].GetNumberOfDataNodes(), 2)
        self.delayDisplay("Test passed")
