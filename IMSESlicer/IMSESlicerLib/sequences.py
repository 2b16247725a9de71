"""Cines: sequence nodes <-> lists of frames, and the cine image that ``imse adacs train`` reads.

A cine in Slicer is a vtkMRMLSequenceNode of scalar volume nodes (one per frame, in index
order) played by a vtkMRMLSequenceBrowserNode. Times follow Slicer's convention (as its DICOM
image-sequence reader writes them): index name ``time``, unit ``s``, numeric index values in
seconds. The backend speaks milliseconds.
"""

from __future__ import annotations

import numpy as np
import slicer

from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image

from .planar import as_planar, as_single_slice
from .volumes import image_from_volume, update_volume_from_image

#: Index units read as times, with their length in ms.
TIME_UNITS_MS = {"s": 1000.0, "sec": 1000.0, "second": 1000.0, "seconds": 1000.0, "ms": 1.0, "msec": 1.0}


def _time_step_ms(sequence_node) -> float | None:
    """The mean step between index values in ms, when the index is numeric with a time unit
    (:data:`TIME_UNITS_MS`) and there are at least two frames; else ``None``."""
    unit_ms = TIME_UNITS_MS.get(sequence_node.GetIndexUnit().strip().lower())
    count = sequence_node.GetNumberOfDataNodes()
    if unit_ms is None or count < 2 or sequence_node.GetIndexType() != slicer.vtkMRMLSequenceNode.NumericIndex:
        return None
    first, last = (float(sequence_node.GetNthIndexValue(i)) for i in (0, count - 1))
    return (last - first) / (count - 1) * unit_ms


def frames_from_sequence(sequence_node) -> tuple[list[Image], float | None]:
    """The frames of a volume sequence, in index order, as 3D images with their geometry (LPS;
    copies, so the sequence is never modified), and the time step in ms.

    The time step is read from the index: numeric values with unit ``s`` (Slicer's default) or
    ``ms``; it is the mean step ``(last - first) / (frames - 1)``, robust to index values
    rounded to 1 ms. Any other index (frame numbers, no unit) gives ``None``.
    """
    if sequence_node is None or sequence_node.GetNumberOfDataNodes() == 0:
        raise ImageError("The sequence is empty: choose a sequence that holds volume frames.")
    frames = []
    for index in range(sequence_node.GetNumberOfDataNodes()):
        frame = sequence_node.GetNthDataNode(index)
        if not frame.IsA("vtkMRMLScalarVolumeNode") or frame.IsA("vtkMRMLVectorVolumeNode"):
            raise ImageError(
                f"Frame {index} of the sequence is a {frame.GetClassName()}, not a scalar volume. For a colour "
                "(RGB) cine, convert it to grey levels first (Vector to Scalar Volume module)."
            )
        frames.append(image_from_volume(frame))
    return frames, _time_step_ms(sequence_node)


def sequences_logic(scene):
    """Slicer's Sequences module logic inside Slicer; elsewhere a logic attached to ``scene``
    (it registers the browser node class and keeps proxy nodes up to date while alive)."""
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "sequences"):
        return modules.sequences.logic()
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    return logic


def sequence_from_frames(scene, frames: list[Image], name: str, time_step_ms: float | None):
    """A sequence node ``name`` holding ``frames`` (2D or 3D scalar images with geometry; 2D
    frames become single slices) in order, and a browser node ``name + " browser"`` that
    plays it, with its proxy volume (the frame on show) in the scene.

    With ``time_step_ms`` the index is ``time`` in ``s`` (frame ``i`` at ``i * step``) and the
    browser plays at the real frame rate; without it the index is the frame number and the
    browser plays at 10 frames/s. Returns ``(sequence_node, browser_node)``; the proxy volume is
    ``browser_node.GetProxyNode(sequence_node)``.
    """
    if not frames:
        raise ImageError("There are no frames to put in a sequence.")
    if time_step_ms is not None and not time_step_ms > 0:
        raise ImageError(f"The time step must be a positive number of ms; got {time_step_ms}.")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time" if time_step_ms else "frame")
    sequence.SetIndexUnit("s" if time_step_ms else "")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    frame_node = slicer.vtkMRMLScalarVolumeNode()  # outside the scene: the sequence stores copies
    for index, frame in enumerate(frames):
        update_volume_from_image(frame_node, as_single_slice(frame))
        value = f"{index * time_step_ms / 1000.0:.6f}" if time_step_ms else str(index)
        sequence.SetDataNodeAtValue(frame_node, value)
    logic = sequences_logic(scene)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetPlaybackRateFps(1000.0 / time_step_ms if time_step_ms else 10.0)
    browser.SetPlaybackLooped(True)
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    logic.UpdateProxyNodesFromSequences(browser)
    return sequence, browser


def add_synchronized_sequence(browser_node, sequence_node):
    """Play ``sequence_node`` (e.g. a transform per frame, with the same index values as the
    browser's cine) in step with ``browser_node``; returns its proxy node (the item on show)."""
    browser_node.AddSynchronizedSequenceNodeID(sequence_node.GetID())
    sequences_logic(browser_node.GetScene()).UpdateProxyNodesFromSequences(browser_node)
    return browser_node.GetProxyNode(sequence_node)


def cine_image_from_frames(frames: list[Image], time_step_ms: float | None = None) -> Image:
    """The frames as one 3D image whose third axis is time, the layout ``imse adacs train``
    reads: array ``(T, H, W)``; in-plane spacing, origin and direction from the frames (2D, or
    single axial slices as :func:`frames_from_sequence` gives them); along time, spacing
    ``time_step_ms`` (1 when unknown; the command ignores it), origin 0. Every frame must have
    the same grid."""
    if not frames:
        raise ImageError("There are no frames to put in a cine.")
    planar = [as_planar(frame) for frame in frames]
    first = planar[0]
    for index, frame in enumerate(planar):
        if frame.is_vector or frame.shape != first.shape or not frame.geometry.isclose(first.geometry):
            raise ImageError(f"Frame {index} is not a scalar image on the grid of frame 0; every frame of a cine needs the same grid.")
    direction = np.eye(3)
    direction[:2, :2] = first.geometry.direction_matrix
    geometry = Geometry(
        (*first.geometry.spacing, float(time_step_ms or 1.0)), (*first.geometry.origin, 0.0), tuple(direction.ravel())
    )
    return Image(np.stack([frame.array for frame in planar]), geometry)


def frames_from_cine_image(cine: Image) -> list[Image]:
    """The inverse of :func:`cine_image_from_frames`: the 2D frames of a ``(T, H, W)`` cine image,
    on its in-plane grid (the first two axes)."""
    if cine.dim != 3 or cine.is_vector:
        raise ImageError("A cine image is a 3D scalar image whose third axis is time.")
    geometry = cine.geometry
    planar = Geometry(geometry.spacing[:2], geometry.origin[:2], tuple(geometry.direction_matrix[:2, :2].ravel()))
    return [Image(frame, planar) for frame in cine.array]
