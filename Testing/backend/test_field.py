"""Displacement helpers: identity, known translations and rotations on oblique anisotropic
grids, cross-checks against SimpleITK, composition, scaling and squaring, Jacobians."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from imse import field
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image, resample_to, to_sitk, to_tensor

from conftest import gaussian_blob, rotation_matrix_3d, weighted_centroid_mm

SHAPE_3D = (20, 28, 24)  # (D, H, W)


def centre_of(shape, geometry):
    return geometry.index_to_physical((np.array(shape[::-1]) - 1) / 2.0)


def constant_field(vector_mm, shape):
    return torch.tensor(vector_mm, dtype=torch.float32).view(1, -1, *([1] * len(shape))).expand(1, len(vector_mm), *shape)


def smooth_random_field(shape, scale_mm, seed, sigma=4.0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    components = [gaussian_filter(rng.standard_normal(shape), sigma) for _ in shape]
    field_array = np.stack(components)
    field_array *= scale_mm / np.abs(field_array).max()
    return torch.from_numpy(field_array.astype(np.float32))[None]


def linear_field(matrix, offset, shape, geometry):
    """u(p) = matrix @ p + offset on the grid (mm), [1, dim, *shape]; linear interpolation
    reproduces it exactly, so compositions can be checked against closed forms."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape[::-1]], indexing="ij"), axis=-1)
    points = geometry.index_to_physical(index)
    values = points @ np.asarray(matrix).T + offset
    return torch.from_numpy(values.transpose(*range(len(shape), -1, -1)).astype(np.float64))[None], points


def test_zero_displacement_is_identity(oblique_geometry_3d):
    image = torch.rand(1, 2, *SHAPE_3D)
    warped = field.warp(image, torch.zeros(1, 3, *SHAPE_3D), oblique_geometry_3d)
    assert torch.allclose(warped, image, atol=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
def test_translation_moves_blob_by_minus_t(dim, oblique_geometry_2d, oblique_geometry_3d):
    """output(p) = input(p + t), so the content moves by -t, in mm, whatever the grid."""
    geometry = oblique_geometry_3d if dim == 3 else oblique_geometry_2d
    shape = SHAPE_3D if dim == 3 else (40, 36)
    centre = centre_of(shape, geometry)
    blob = gaussian_blob(shape, geometry, centre, sigma_mm=3.0)
    shift = np.array([2.5, -1.5, 3.0][:dim])
    warped = field.warp(torch.from_numpy(blob)[None, None], constant_field(shift, shape), geometry)
    moved_to = weighted_centroid_mm(warped[0, 0].numpy(), geometry)
    np.testing.assert_allclose(moved_to, centre - shift, atol=0.15)


def test_rotation_moves_point_where_it_must(oblique_geometry_3d):
    """u(p) = R(p - c) + c - p: output(p) = input(R(p - c) + c), so a blob at b appears at
    R^T (b - c) + c."""
    geometry = oblique_geometry_3d
    centre = centre_of(SHAPE_3D, geometry)
    blob_at = centre + np.array([6.0, 3.0, -4.0])
    blob = gaussian_blob(SHAPE_3D, geometry, blob_at, sigma_mm=2.5)
    rotation = rotation_matrix_3d((0.0, 0.0, 20.0))
    displacement, _ = linear_field(rotation - np.eye(3), centre - rotation @ centre, SHAPE_3D, geometry)
    warped = field.warp(torch.from_numpy(blob)[None, None], displacement.float(), geometry)
    expected = rotation.T @ (blob_at - centre) + centre
    np.testing.assert_allclose(weighted_centroid_mm(warped[0, 0].numpy(), geometry), expected, atol=0.2)


def test_warp_matches_simpleitk_displacement_field_transform(oblique_geometry_3d):
    geometry = oblique_geometry_3d
    image = Image(np.random.default_rng(0).random(SHAPE_3D).astype(np.float32), geometry)
    displacement = smooth_random_field(SHAPE_3D, scale_mm=3.0, seed=1)
    ours = field.warp(to_tensor(image), displacement, geometry)[0, 0].numpy()

    vector_image = to_sitk(Image(np.moveaxis(displacement[0].numpy(), 0, -1).astype(np.float64), geometry))
    transform = sitk.DisplacementFieldTransform(vector_image)
    theirs = sitk.GetArrayFromImage(sitk.Resample(to_sitk(image), to_sitk(image), transform, sitk.sitkLinear, -1.0))
    inside = theirs != -1.0  # ITK pads outside with the default value; we pad with the border
    assert inside.mean() > 0.7
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-4)


def test_warp_between_different_grids_matches_simpleitk_resampling(oblique_geometry_3d):
    moving = Image(gaussian_blob(SHAPE_3D, oblique_geometry_3d, centre_of(SHAPE_3D, oblique_geometry_3d), 5.0), oblique_geometry_3d)
    fixed_geometry = Geometry((1.0, 1.0, 1.5), tuple(centre_of(SHAPE_3D, oblique_geometry_3d) - 12.0), tuple(np.eye(3).ravel()))
    fixed = Image(np.zeros((16, 24, 24), np.float32), fixed_geometry)
    ours = field.warp(to_tensor(moving), torch.zeros(1, 3, *fixed.shape), fixed_geometry, moving.geometry, padding="zeros")
    theirs = resample_to(moving, fixed).array
    # ITK and grid_sample pad differently within half a voxel of the edge: compare inside.
    index = np.stack(np.meshgrid(*[np.arange(n) for n in fixed.shape[::-1]], indexing="ij"), axis=-1)
    in_moving = moving.geometry.physical_to_index(fixed_geometry.index_to_physical(index))
    inside = np.all((in_moving >= 0) & (in_moving <= np.array(SHAPE_3D[::-1]) - 1), axis=-1).T
    assert 0.2 < inside.mean() < 1.0
    np.testing.assert_allclose(ours[0, 0].numpy()[inside], theirs[inside], atol=1e-4)


def test_nearest_warp_keeps_label_values(oblique_geometry_2d):
    labels = np.zeros((30, 30), np.float32)
    labels[5:15, 5:20] = 2
    labels[18:25, 10:28] = 3
    displacement = smooth_random_field((30, 30), scale_mm=2.0, seed=2)
    warped = field.warp(torch.from_numpy(labels)[None, None], displacement, oblique_geometry_2d, mode="nearest")
    assert set(np.unique(warped.numpy())) <= {0.0, 2.0, 3.0}


def test_voxel_mm_round_trip_and_known_values(oblique_geometry_3d):
    axis_aligned = Geometry((2.0, 3.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    voxels = field.displacement_to_voxels(constant_field([2.0, 3.0], (4, 4)), axis_aligned)
    assert torch.allclose(voxels, torch.ones(1, 2, 4, 4))
    u = smooth_random_field(SHAPE_3D, 2.0, seed=3)
    back = field.displacement_to_mm(field.displacement_to_voxels(u, oblique_geometry_3d), oblique_geometry_3d)
    assert torch.allclose(back, u, atol=1e-5)


def test_compose_follows_first_then_second(oblique_geometry_2d):
    shape = (40, 44)
    geometry = oblique_geometry_2d
    a_matrix, a_offset = np.array([[0.05, -0.08], [0.06, 0.02]]), np.array([0.4, -0.3])
    b_matrix, b_offset = np.array([[-0.04, 0.1], [0.0, 0.07]]), np.array([-0.2, 0.5])
    first, points = linear_field(a_matrix, a_offset, shape, geometry)
    second, _ = linear_field(b_matrix, b_offset, shape, geometry)
    moved = points + points @ a_matrix.T + a_offset
    expected = (moved - points) + moved @ b_matrix.T + b_offset  # first(p) + second(p + first(p))
    composed = field.compose(first, second, geometry)[0].numpy().transpose(*range(1, len(shape) + 1)[::-1], 0)
    inside = np.all((geometry.physical_to_index(moved) > 0) & (geometry.physical_to_index(moved) < np.array(shape[::-1]) - 1), -1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(composed[inside], expected[inside], atol=1e-6)
    wrong_order = field.compose(second, first, geometry)[0].numpy().transpose(*range(1, len(shape) + 1)[::-1], 0)
    assert np.abs(wrong_order[inside] - expected[inside]).max() > 0.05
    translations = field.compose(constant_field([1.0, 2.0], shape), constant_field([0.5, -1.0], shape), geometry)
    assert torch.allclose(translations, constant_field([1.5, 1.0], shape), atol=1e-5)


def test_scaling_and_squaring(oblique_geometry_2d):
    shape = (40, 40)
    geometry = oblique_geometry_2d
    constant = field.integrate_velocity(constant_field([1.5, -0.5], shape), geometry)
    assert torch.allclose(constant, constant_field([1.5, -0.5], shape), atol=1e-5)
    velocity = smooth_random_field(shape, 6.0, seed=6, sigma=3.0)
    assert field.jacobian_determinant(velocity, geometry).min() < 0  # the raw field folds
    integrated = field.integrate_velocity(velocity, geometry, steps=7)
    assert field.jacobian_determinant(integrated, geometry).min() > 0  # its exponential does not
    with pytest.raises(ImageError):
        field.integrate_velocity(velocity, geometry, steps=-1)
    assert field.as_displacement(velocity, geometry, diffeomorphic=False) is velocity
    assert torch.equal(field.as_displacement(velocity, geometry, diffeomorphic=True, steps=7), integrated)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 1.5, 3.0)])
def test_jacobian_of_uniform_scaling_on_any_grid(spacing):
    direction = rotation_matrix_3d((10.0, 20.0, -30.0))
    geometry = Geometry(spacing, (5.0, -3.0, 2.0), tuple(direction.ravel()))
    scale = 1.1
    u, _ = linear_field((scale - 1.0) * np.eye(3), np.zeros(3), SHAPE_3D, geometry)
    determinant = field.jacobian_determinant(u, geometry)
    assert torch.allclose(determinant, torch.full_like(determinant, scale**3), atol=1e-6)
    gradient = field.spatial_gradient(u, geometry)[0, :, :, 5, 5, 5]
    assert torch.allclose(gradient, (scale - 1.0) * torch.eye(3, dtype=torch.float64), atol=1e-8)


def test_warp_gradient_is_correct():
    geometry = Geometry((1.5, 0.5), (0.0, 0.0), (0.0, 1.0, 1.0, 0.0))
    image = torch.rand(1, 1, 6, 7, dtype=torch.float64)
    displacement = (0.3 * torch.randn(1, 2, 6, 7, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda u: field.warp(image, u, geometry, padding="zeros"), (displacement,))


def test_bad_arguments_raise_clear_errors(oblique_geometry_3d):
    image = torch.rand(1, 1, *SHAPE_3D)
    with pytest.raises(ImageError, match="one channel per"):
        field.warp(image, torch.zeros(1, 2, *SHAPE_3D), oblique_geometry_3d)
    with pytest.raises(ImageError, match="interpolation"):
        field.warp(image, torch.zeros(1, 3, *SHAPE_3D), oblique_geometry_3d, mode="cubic")
    with pytest.raises(ImageError, match="padding"):
        field.warp(image, torch.zeros(1, 3, *SHAPE_3D), oblique_geometry_3d, padding="wrap")
    with pytest.raises(ImageError, match="image to warp"):
        field.warp(image[0], torch.zeros(1, 3, *SHAPE_3D), oblique_geometry_3d)
