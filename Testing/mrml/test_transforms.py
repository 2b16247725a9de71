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


def test_saved_transform_loads_back_and_maps_points_identically(tmp_path):
    """The grid transform written by Slicer's own storage node (as "Save" does) and the
    backend's transform.h5 both load back into MRML and move fixed points the same way."""
    from slicer import vtkMRMLGridTransformNode, vtkMRMLTransformStorageNode

    from IMSESlicerLib.transforms import displacement_from_transform
    from imse.transforms import write_displacement_transform

    geometry = oblique_geometry()
    field = np.random.default_rng(2).normal(scale=1.5, size=(4, 5, 6, 3)).astype(np.float32)
    scene = vtkMRMLScene()
    node = grid_transform_from_displacement(scene, Image(field, geometry), "registration")
    write_displacement_transform(Image(field, geometry), tmp_path / "backend.h5")
    storage = vtkMRMLTransformStorageNode()
    storage.SetFileName(str(tmp_path / "slicer.h5"))
    assert storage.WriteData(node)
    reference = Image(np.zeros(field.shape[:3], np.float32), geometry)
    for path in (tmp_path / "slicer.h5", tmp_path / "backend.h5"):
        loaded = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", path.stem)
        reader = vtkMRMLTransformStorageNode()
        reader.SetFileName(str(path))
        assert reader.ReadData(loaded), f"{path.name} did not load"
        np.testing.assert_allclose(displacement_from_transform(loaded, reference).array, field, atol=1e-3)
    assert isinstance(loaded, vtkMRMLGridTransformNode)
