"""Scalar volume nodes <-> ``imse.image.Image``.

MRML stores a volume's geometry as its IJK-to-RAS matrix; the backend works in LPS (see
``imse.geometry``). This module is the one place where the two meet: RAS and LPS differ by
the sign of their first two axes, so ``LPS = diag(-1, -1, 1) @ RAS``.
"""

from __future__ import annotations

import numpy as np
import slicer.util
import vtk

from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])  # its own inverse


def _matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def image_from_volume(node) -> Image:
    """The voxels of a scalar volume node (copied, so the node is never modified through the
    result) with its geometry converted to LPS."""
    if node is None or node.GetImageData() is None:
        raise ImageError("The volume has no image data: load or select a volume first.")
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = _matrix_to_numpy(ijk_to_ras)
    index_to_lps = RAS_FROM_LPS @ matrix[:3, :3]
    spacing = np.linalg.norm(index_to_lps, axis=0)
    geometry = Geometry(tuple(spacing), tuple(RAS_FROM_LPS @ matrix[:3, 3]), tuple((index_to_lps / spacing).ravel()))
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if array.ndim != 3:
        raise ImageError(f"Expected a scalar volume; this one has array shape {array.shape} (a vector or colour volume?).")
    return Image(array, geometry)


def ijk_to_ras_matrix(geometry: Geometry) -> vtk.vtkMatrix4x4:
    """The IJK-to-RAS matrix of a 3D LPS geometry."""
    if geometry.dim != 3:
        raise ImageError("Slicer volumes are 3D; put a 2D image into a single-slice 3D image first.")
    matrix = np.eye(4)
    matrix[:3, :3] = RAS_FROM_LPS @ geometry.index_to_physical_matrix
    matrix[:3, 3] = RAS_FROM_LPS @ np.asarray(geometry.origin)
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, matrix[row, column])
    return result


def update_volume_from_image(node, image: Image) -> None:
    """Put ``image`` (voxels and geometry) into an existing scalar volume node."""
    if image.is_vector:
        raise ImageError("Only scalar images go into scalar volume nodes.")
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(image.array))
    node.SetIJKToRASMatrix(ijk_to_ras_matrix(image.geometry))


def volume_from_image(scene, image: Image, name: str, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new scalar volume node (or label map: ``node_class="vtkMRMLLabelMapVolumeNode"``) in
    ``scene`` holding ``image``."""
    node = scene.AddNewNodeByClass(node_class, name)
    node.CreateDefaultDisplayNodes()
    update_volume_from_image(node, image)
    return node


def world_image_from_volume(node) -> Image:
    """The volume as it is seen in the scene: with its parent transforms applied (hardened on a
    temporary copy, so the node and its transform are untouched). A linear transform changes
    only the geometry; a non-linear one resamples the voxels. Without a transform this is
    :func:`image_from_volume`."""
    if node is None or node.GetParentTransformNode() is None:
        return image_from_volume(node)
    scene = node.GetScene()
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName("imse-temporary"))
    try:
        image_data = vtk.vtkImageData()
        image_data.DeepCopy(node.GetImageData())
        copy.SetAndObserveImageData(image_data)
        ijk_to_ras = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(ijk_to_ras)
        copy.SetIJKToRASMatrix(ijk_to_ras)
        copy.SetAndObserveTransformNodeID(node.GetParentTransformNode().GetID())
        slicer.vtkSlicerTransformLogic().hardenTransform(copy)
        return image_from_volume(copy)
    finally:
        scene.RemoveNode(copy)
