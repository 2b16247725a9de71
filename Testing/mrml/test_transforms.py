"""Displacement -> grid transform node: the transform from parent moves a fixed RAS point by
the displacement converted to RAS, on an oblique anisotropic grid."""

import numpy as np
import pytest
from slicer import vtkMRMLScene

from IMSESlicerLib.transforms import grid_transform_from_displacement
from imse.errors import ImageError
from imse.image import Image
from test_volumes import oblique_geometry


def test_transform_from_parent_maps_fixed_points_to_moving_points():
    geometry = oblique_geometry()
    field = np.random.default_rng(1).normal(scale=2.0, size=(4, 5, 6, 3)).astype(np.float32)
    node = grid_transform_from_displacement(vtkMRMLScene(), Image(field, geometry), "registration")
    transform = node.GetTransformFromParent()
    for index in ((0, 0, 0), (2, 3, 1), (5, 4, 3)):  # ITK order (i, j, k)
        lps = geometry.index_to_physical(index)
        ras = np.array([-lps[0], -lps[1], lps[2]])
        u_lps = field[index[2], index[1], index[0]]
        expected = ras + np.array([-u_lps[0], -u_lps[1], u_lps[2]])
        np.testing.assert_allclose(transform.TransformPoint(*ras), expected, atol=1e-4)


def test_only_3d_vector_fields_become_grid_transforms():
    with pytest.raises(ImageError, match="3D displacement"):
        grid_transform_from_displacement(vtkMRMLScene(), Image(np.zeros((4, 5, 6), np.float32), oblique_geometry()), "scalar")
