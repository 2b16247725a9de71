"""Displacement fields -> grid transform nodes.

A backend displacement (mm, LPS, on the fixed grid) maps the fixed point ``p`` to the moving
point ``p + u(p)`` (ITK's resampling convention). In Slicer that is the transform "from
parent": set on the moving volume, it resamples the moving volume onto the fixed one, as
the backend's warped image does.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

from imse.errors import ImageError
from imse.image import Image

from .volumes import RAS_FROM_LPS


def _vtk_matrix(values: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            matrix.SetElement(row, column, values[row, column])
    return matrix


def grid_transform_from_displacement(scene, displacement: Image, name: str):
    """A new grid transform node in ``scene`` whose transform from parent moves each RAS point
    ``p`` of the fixed grid to ``p + u(p)`` (``u`` converted from LPS to RAS)."""
    if not displacement.is_vector or displacement.dim != 3 or displacement.array.shape[-1] != 3:
        raise ImageError("A grid transform needs a 3D displacement field with three components (mm).")
    geometry = displacement.geometry
    vectors = np.ascontiguousarray((displacement.array.astype(np.float64) @ RAS_FROM_LPS.T).reshape(-1, 3))
    grid = vtk.vtkImageData()
    grid.SetDimensions(*displacement.shape[::-1])
    grid.SetSpacing(*geometry.spacing)
    grid.SetOrigin(*(RAS_FROM_LPS @ np.asarray(geometry.origin)))
    grid.GetPointData().SetScalars(numpy_to_vtk(vectors, deep=True, array_type=vtk.VTK_DOUBLE))
    direction = np.eye(4)
    direction[:3, :3] = RAS_FROM_LPS @ geometry.direction_matrix
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetGridDirectionMatrix(_vtk_matrix(direction))
    transform.SetInterpolationModeToLinear()
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    node.SetAndObserveTransformFromParent(transform)
    return node


def displacement_from_transform(transform_node, reference: Image) -> Image:
    """The displacement (mm, LPS) that ``transform_node`` applies, from parent, to each point of
    the ``reference`` grid: ``u(p) = T(p) - p``, the backend's convention (the inverse of
    :func:`grid_transform_from_displacement`). Any transform kind (linear, grid, B-spline,
    composite) goes through VTK's batch point transform."""
    if reference.dim != 3:
        raise ImageError("The reference grid must be a 3D volume.")
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in reference.shape), indexing="ij")
    indices = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)  # ITK index order (i, j, k)
    geometry = reference.geometry
    points_lps = indices @ geometry.index_to_physical_matrix.T + np.asarray(geometry.origin)  # [N, 3] mm
    points_ras = np.ascontiguousarray(points_lps @ RAS_FROM_LPS.T, dtype=np.float64)
    source = vtk.vtkPoints()
    source.SetData(numpy_to_vtk(points_ras, deep=True))
    moved = vtk.vtkPoints()
    transform_node.GetTransformFromParent().TransformPoints(source, moved)
    moved_ras = vtk_to_numpy(moved.GetData()).astype(np.float64)
    vectors = ((moved_ras - points_ras) @ RAS_FROM_LPS.T).astype(np.float32)
    return Image(vectors.reshape(*reference.shape, 3), reference.geometry)
