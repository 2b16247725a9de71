"""Maps (IMSE error, AdaCS score, Jacobian determinant, folding, strain) -> coloured scalar
volumes with a colour legend, shown as a foreground over an anatomical background.

Colours are Slicer's own default colour nodes, found by the IDs Slicer gives them
(``vtkMRMLColorLogic``: ``vtkMRMLColorTableNode<Type>`` for the built-in tables and
``vtkMRMLColorTableNodeFile<file name>`` for the tables read from Slicer's ColorFiles folder).
A bare scene (the ``slicer-core`` package, without Slicer's colour files) lacks them; there
an equivalent table is added under the same ID, so one code path serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import slicer

from imse.errors import ImageError
from imse.image import Image, check_finite

from .planar import as_single_slice
from .volumes import update_volume_from_image

#: Fraction of the error window below which |E| is transparent (Slicer's lower threshold).
ERROR_TRANSPARENT_FRACTION = 0.2
#: AdaCS scores above this (good correspondence) are transparent: the overlay marks where
#: correspondence is doubtful instead of veiling the whole frame.
SCORE_SHOWN_BELOW = 0.8
#: Percentile of the values that sets the "robust" ends of the error and strain windows.
ROBUST_PERCENTILE = 99.0
MAP_KIND_ATTRIBUTE = "IMSE.MapKind"


def _robust_error_range(values: np.ndarray) -> tuple[float, float]:
    high = float(np.percentile(values, ROBUST_PERCENTILE)) or float(values.max())
    return 0.0, high if high > 0 else 1.0


def _symmetric_robust_range(values: np.ndarray) -> tuple[float, float]:
    high = float(np.percentile(np.abs(values), ROBUST_PERCENTILE)) or float(np.abs(values).max())
    high = high if high > 0 else 1.0
    return -high, high


def _folding_mask(values: np.ndarray) -> np.ndarray:
    if not np.all((values == 0) | (values == 1)):
        raise ImageError(
            "A folding map is a mask: 1 where det J <= 0, 0 elsewhere. Make it from the Jacobian "
            "determinant map (determinant <= 0), or show the determinant itself as a 'jacobian' map."
        )
    return values.astype(np.uint8)


@dataclass(frozen=True)
class MapKind:
    """How one kind of map is shown.

    ``color_node_id``: the Slicer colour node; ``quantity`` and ``unit`` make the legend title;
    ``convert``: backend values -> the voxel values stored in the node; ``value_range``: the
    converted values -> window ``(low, high)``; ``threshold``: window and converted values ->
    the ``(lower, upper)`` range shown (outside it the overlay is transparent), or ``None`` to
    show every voxel; ``label_format``: printf format of the legend's numbers.
    """

    color_node_id: str
    quantity: str
    unit: str
    convert: Callable[[np.ndarray], np.ndarray]
    value_range: Callable[[np.ndarray], tuple[float, float]]
    threshold: Callable[[tuple[float, float], np.ndarray], tuple[float, float]] | None
    label_format: str


#: The kinds of map and how each looks. Inputs, as the backend gives them:
#:
#: * ``error``: IMSE ``|E|`` (unitless: half the normalised intensity range, so 1 is the whole
#:   range); Inferno from 0 to the 99th percentile, values under 20 % of that transparent (small residuals would otherwise tint the whole brain).
#: * ``score``: AdaCS score in (0, 1), unitless; Viridis over the fixed range 0 to 1, scores
#:   above 0.8 transparent.
#: * ``jacobian``: the Jacobian determinant (unitless); DivergingBlueRed over 0 to 2, so that
#:   1 (no volume change) is the neutral middle colour.
#: * ``folding``: the folding mask, 1 where ``det J <= 0`` and 0 elsewhere (any other value is
#:   refused, so that a Jacobian map is never shown as a mask by mistake); drawn pure red with
#:   the unfolded voxels transparent.
#: * ``strain``: strain as :mod:`imse.strain` gives it (unitless, 0.2 = 20 % lengthening); the
#:   node holds PERCENT (values x 100), DivergingBlueRed centred on 0 over +-(99th percentile
#:   of |strain|): red lengthening or thickening, blue shortening.
MAP_KINDS: dict[str, MapKind] = {
    "error": MapKind(
        "vtkMRMLColorTableNodeFileInferno.txt", "IMSE error |E|", "normalised intensity",
        lambda values: values.astype(np.float32),
        _robust_error_range,
        lambda window, values: (ERROR_TRANSPARENT_FRACTION * window[1], max(float(values.max()), window[1])),
        "%.2f",
    ),
    "score": MapKind(
        "vtkMRMLColorTableNodeFileViridis.txt", "AdaCS score", "0 to 1",
        lambda values: values.astype(np.float32), lambda values: (0.0, 1.0),
        lambda window, values: (-1.0, SCORE_SHOWN_BELOW), "%.1f",
    ),
    "jacobian": MapKind(
        "vtkMRMLColorTableNodeFileDivergingBlueRed.txt", "Jacobian determinant", "unitless",
        lambda values: values.astype(np.float32), lambda values: (0.0, 2.0), None, "%.1f",
    ),
    "folding": MapKind(
        "vtkMRMLColorTableNodeRed", "Folding, det J <= 0", "1 = folded",
        _folding_mask, lambda values: (0.0, 1.0), lambda window, values: (0.5, 1.0), "%.0f",
    ),
    "strain": MapKind(
        "vtkMRMLColorTableNodeFileDivergingBlueRed.txt", "Strain", "%",
        lambda values: (100.0 * values).astype(np.float32), _symmetric_robust_range, None, "%.0f",
    ),
}

#: Equivalents of Slicer's default colour nodes, for scenes that lack them: (name, builder).
#: File tables follow the matplotlib colour maps they come from (Slicer's colour files say
#: so); built-in tables are made by vtkMRMLColorTableNode itself from their type.
_FILE_TABLES = {
    "vtkMRMLColorTableNodeFileInferno.txt": ("Inferno", "inferno"),
    "vtkMRMLColorTableNodeFileViridis.txt": ("Viridis", "viridis"),
    "vtkMRMLColorTableNodeFileDivergingBlueRed.txt": ("DivergingBlueRed", "RdBu_r"),
}
_TYPE_TABLES = {"vtkMRMLColorTableNodeRed": "Red"}
_FILE_ID_PREFIX = "vtkMRMLColorTableNode"


def map_kind(kind: str) -> MapKind:
    """The :data:`MAP_KINDS` entry for ``kind``; an unknown kind raises :class:`ImageError`."""
    if kind not in MAP_KINDS:
        raise ImageError(f"Unknown map kind '{kind}'; choose one of {sorted(MAP_KINDS)}.")
    return MAP_KINDS[kind]


def _equivalent_color_node(node_id: str):
    """A colour table equal to Slicer's default node ``node_id``, carrying the singleton tag
    that gives it that ID once added to a scene."""
    node = slicer.vtkMRMLColorTableNode()
    if node_id in _TYPE_TABLES:
        node.SetType(getattr(slicer.vtkMRMLColorTableNode, _TYPE_TABLES[node_id]))
        node.SetName(_TYPE_TABLES[node_id])
    else:
        from matplotlib import colormaps  # only where Slicer's colour files are missing

        name, colormap = _FILE_TABLES[node_id]
        node.SetTypeToFile()
        node.SetName(name)
        node.SetNumberOfColors(256)
        for index, rgba in enumerate(colormaps[colormap](np.linspace(0.0, 1.0, 256))):
            node.SetColor(index, str(index), *(float(value) for value in rgba))
    node.SetSingletonTag(node_id[len(_FILE_ID_PREFIX):])
    node.SaveWithSceneOff()
    node.HideFromEditorsOn()
    return node


def color_node(scene, kind: str):
    """The colour node of map ``kind`` in ``scene``: Slicer's default node with that ID, added
    (as an equivalent table with the same ID) when the scene lacks it."""
    node_id = map_kind(kind).color_node_id
    node = scene.GetNodeByID(node_id)
    if node is None:
        node = scene.AddNode(_equivalent_color_node(node_id))
    return node


def _add_color_legend(node, title: str, label_format: str):
    """Slicer's default colour legend of ``node`` (the Colors module logic's own function; a
    bare scene first learns the legend node class), visible, titled ``title``."""
    scene = node.GetScene()
    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(node)
    legend.SetTitleText(title)
    legend.SetLabelFormat(label_format)
    legend.SetVisibility(True)
    return legend


def map_volume(
    scene,
    image: Image,
    name: str,
    kind: str,
    node=None,
    value_range: tuple[float, float] | None = None,
    region: np.ndarray | None = None,
):
    """A scalar volume node showing map ``image`` as :data:`MAP_KINDS` ``[kind]`` says: colour
    node, window, threshold and a visible colour legend titled with quantity and unit.

    ``image``: a scalar 2D or 3D map with its geometry (a 2D map becomes one slice, see
    :func:`~IMSESlicerLib.planar.as_single_slice`). ``node``: a volume node to update
    instead of adding a new one; it is changed only after the new map is fully computed, and
    keeps its display and legend nodes. ``value_range``: a fixed window ``(low, high)`` in the
    node's values (percent for strain) instead of the automatic one, e.g. to compare a map
    before and after registration on the same scale. ``region``: a boolean array on the image's
    grid (e.g. the myocardium); outside it the map is transparent, and the automatic window
    comes from inside it. Returns the volume node.
    """
    shown = map_kind(kind)
    if image.is_vector:
        raise ImageError(f"A {kind} map is a scalar image; this one has {image.array.shape[-1]} components per voxel.")
    check_finite(image, f"The {kind} map")
    values = shown.convert(np.asarray(image.array))
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != values.shape or not region.any():
            raise ImageError(f"The region must be a non-empty mask on the map's grid {values.shape}; got {region.shape}.")
    window = shown.value_range(values[region] if region is not None else values) if value_range is None else tuple(float(v) for v in value_range)
    if not window[1] > window[0]:
        raise ImageError(f"The value range must have low < high; got {window}.")
    threshold = shown.threshold(window, values) if shown.threshold else None
    if region is not None:
        values = hide_outside(values, region, window)
        lower = window[0] - (window[1] - window[0])  # between the hidden value and the window
        threshold = (max(lower, threshold[0]), threshold[1]) if threshold else (lower, max(float(values.max()), window[1]))
    colors = color_node(scene, kind)
    created = node is None
    if created:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    try:
        update_volume_from_image(node, as_single_slice(image.with_array(values)))
        node.SetName(name)
        node.SetAttribute(MAP_KIND_ATTRIBUTE, kind)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(colors.GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(*window)
        display.AutoThresholdOff()
        display.SetApplyThreshold(threshold is not None)
        if threshold is not None:
            display.SetThreshold(*threshold)
        _add_color_legend(node, f"{shown.quantity} ({shown.unit})", shown.label_format)
    except Exception:
        if created:
            scene.RemoveNode(node)
        raise
    return node


def hide_outside(values: np.ndarray, region: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``values`` (as stored in the node) with the voxels outside ``region`` set well below the
    ``window``, where the threshold :func:`map_volume` gives a region hides them. For the frames
    of a sequence that share one display node styled with that region and window."""
    return np.where(region, values, window[0] - 2.0 * (window[1] - window[0])).astype(values.dtype)


def show_overlay(background_node, foreground_node, opacity: float = 0.5) -> int:
    """Show ``foreground_node`` over ``background_node`` at ``opacity`` (0 to 1) in every slice
    view of their scene (each vtkMRMLSliceCompositeNode; no view is created). Returns the
    number of slice views set."""
    if not 0.0 <= opacity <= 1.0:
        raise ImageError(f"The overlay opacity must be between 0 and 1; got {opacity}.")
    scene = background_node.GetScene()
    if scene is None or foreground_node.GetScene() is not scene:
        raise ImageError("The background and foreground volumes must both be in the same scene.")
    composites = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
    for composite in composites:
        composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(foreground_node.GetID())
        composite.SetForegroundOpacity(opacity)
    return len(composites)
