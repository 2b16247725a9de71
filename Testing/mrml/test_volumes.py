"""Volume nodes <-> images: RAS/LPS with an oblique, anisotropic geometry, both ways."""

import numpy as np
import pytest
import vtk
from slicer import vtkMRMLScene

from IMSESlicerLib.volumes import image_from_volume, volume_from_image
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image


def oblique_geometry():
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    return Geometry((0.8, 1.1, 2.5), (12.0, -30.0, 7.5), tuple(rotation.ravel()))


def test_a_voxel_lies_at_the_same_physical_point_in_ras_and_lps():
    scene = vtkMRMLScene()
    values = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    image = Image(values, oblique_geometry())
    node = volume_from_image(scene, image, "oblique")
    ijk, lps = np.array([2.0, 3.0, 1.0]), image.geometry.index_to_physical([2.0, 3.0, 1.0])
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint([*ijk, 1.0])[:3]
    np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)
    back = image_from_volume(node)
    assert back.geometry.isclose(image.geometry, tolerance=1e-9)
    np.testing.assert_array_equal(back.array, values)
    back.array[0, 0, 0] = -5.0  # the result is a copy: the node keeps its voxels
    assert image_from_volume(node).array[0, 0, 0] == values[0, 0, 0]


def test_bad_volumes_are_refused():
    scene = vtkMRMLScene()
    with pytest.raises(ImageError, match="no image data"):
        image_from_volume(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))
    with pytest.raises(ImageError, match="Slicer volumes are 3D"):
        volume_from_image(scene, Image(np.zeros((4, 4), np.float32), Geometry.identity(2)), "flat")
