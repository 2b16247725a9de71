"""Strain: known linear fields (zero, translation, scaling, rotation, stretches) on oblique
anisotropic grids, radial/circumferential/longitudinal projections, segments, and the LV
phantom's analytic strain recovered from its true displacement and from chained
frame-to-frame displacements."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from imse import strain
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.phantom import lv_phantom_2d, lv_phantom_3d

MEASURES = ("green_lagrange", "infinitesimal")
SHAPE_2D = (30, 34)
SHAPE_3D = (12, 16, 14)
PHANTOM_TOLERANCE = 0.01


def grid_points(shape, geometry):
    """Voxel centres (mm), ``(*shape, dim)`` in NumPy-order spatial axes."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)[..., ::-1]
    return geometry.index_to_physical(index)


def grid_centre(shape, geometry):
    return geometry.index_to_physical((np.array(shape[::-1]) - 1) / 2.0 + 0.3)  # off the voxel centres


def linear_displacement(gradient, shape, geometry, centre):
    """u(x) = gradient @ (x - centre): [1, dim, *shape], float64, mm."""
    values = (grid_points(shape, geometry) - centre) @ np.asarray(gradient, dtype=float).T
    return torch.from_numpy(np.moveaxis(values, -1, 0))[None]


def setting(dim, oblique_geometry_2d, oblique_geometry_3d):
    geometry = oblique_geometry_3d if dim == 3 else oblique_geometry_2d
    shape = SHAPE_3D if dim == 3 else SHAPE_2D
    return geometry, shape, grid_centre(shape, geometry)


def rotation_2d(angle_deg):
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def components(tensor, geometry, centre):
    long_axis = (0.3, -0.2, 1.0) if geometry.dim == 3 else None
    return strain.radial_circumferential_strain(tensor, geometry, centre, long_axis)


def eroded(mask, voxels=2):
    return ndimage.binary_erosion(mask, iterations=voxels)


# --------------------------------------------------------------------------------------------
# Known fields
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("measure", MEASURES)
def test_zero_displacement_and_translation_give_zero_strain(dim, measure, oblique_geometry_2d, oblique_geometry_3d):
    geometry, shape, _ = setting(dim, oblique_geometry_2d, oblique_geometry_3d)
    translation = torch.tensor([3.0, -2.0, 5.0][:dim], dtype=torch.float64).view(1, dim, *([1] * dim))
    for displacement in (torch.zeros(1, dim, *shape, dtype=torch.float64), translation.expand(1, dim, *shape)):
        tensor = strain.strain_tensor(displacement, geometry, measure)
        assert tensor.shape == (1, dim, dim, *shape)
        assert tensor.abs().max() < 1e-12


@pytest.mark.parametrize("dim", [2, 3])
def test_uniform_scaling(dim, oblique_geometry_2d, oblique_geometry_3d):
    """u = (s - 1) x: every direction is stretched by s."""
    geometry, shape, centre = setting(dim, oblique_geometry_2d, oblique_geometry_3d)
    scale = 0.8
    displacement = linear_displacement((scale - 1) * np.eye(dim), shape, geometry, centre + 4.0)
    expected = {"green_lagrange": (scale**2 - 1) / 2, "infinitesimal": scale - 1}
    for measure, value in expected.items():
        tensor = strain.strain_tensor(displacement, geometry, measure)
        for component in components(tensor, geometry, centre):
            assert torch.allclose(component, torch.full_like(component, value), atol=1e-9)
        assert torch.allclose(strain.principal_strains(tensor), torch.full((1, dim, *shape), value, dtype=torch.float64))


def test_rigid_rotation_has_no_green_lagrange_strain(oblique_geometry_2d):
    """A rotation by a is no deformation: Green-Lagrange strain is exactly zero, while the
    infinitesimal strain (linearised) reports cos(a) - 1 along every direction, -13 % for 30
    degrees. This is why Green-Lagrange is the default for the large motion of the heart."""
    geometry, centre = oblique_geometry_2d, grid_centre(SHAPE_2D, oblique_geometry_2d)
    angle = 30.0
    displacement = linear_displacement(rotation_2d(angle) - np.eye(2), SHAPE_2D, geometry, centre)
    assert strain.green_lagrange_strain(displacement, geometry).abs().max() < 1e-12
    small_strain = strain.principal_strains(strain.infinitesimal_strain(displacement, geometry))
    assert torch.allclose(small_strain, torch.full_like(small_strain, np.cos(np.deg2rad(angle)) - 1), atol=1e-12)


def test_deformation_gradient_of_a_linear_map(oblique_geometry_3d):
    geometry, centre = oblique_geometry_3d, grid_centre(SHAPE_3D, oblique_geometry_3d)
    gradient = np.array([[0.1, 0.2, 0.0], [-0.3, 0.05, 0.1], [0.0, 0.4, -0.2]])
    deformation = strain.deformation_gradient(linear_displacement(gradient, SHAPE_3D, geometry, centre), geometry)
    expected = torch.from_numpy(np.eye(3) + gradient).view(1, 3, 3, 1, 1, 1).expand_as(deformation)
    assert torch.allclose(deformation, expected, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_principal_strains_of_diagonal_stretches(dim, oblique_geometry_2d, oblique_geometry_3d):
    geometry, shape, centre = setting(dim, oblique_geometry_2d, oblique_geometry_3d)
    stretches = np.array([0.9, 1.25, 1.1][:dim])
    displacement = linear_displacement(np.diag(stretches - 1), shape, geometry, centre)
    values, vectors = strain.principal_strains(strain.green_lagrange_strain(displacement, geometry), eigenvectors=True)
    order = np.argsort(-stretches)
    expected = (stretches[order] ** 2 - 1) / 2
    assert values.shape == (1, dim, *shape) and vectors.shape == (1, dim, dim, *shape)
    assert torch.allclose(values, torch.from_numpy(expected).view(1, dim, *([1] * dim)).expand_as(values), atol=1e-9)
    for k, axis in enumerate(order):  # each principal direction is a physical axis (up to sign)
        assert torch.allclose(vectors[:, k, axis].abs(), torch.ones(1, *shape, dtype=torch.float64), atol=1e-9)


def test_radial_circumferential_follow_the_oblique_grid(oblique_geometry_2d):
    """E_rr = r^T E r with r the physical unit vector from the centre to each voxel, checked
    against an independent computation for an anisotropic stretch on a rotated grid."""
    geometry, centre = oblique_geometry_2d, grid_centre(SHAPE_2D, oblique_geometry_2d)
    stretch = np.diag([0.3, -0.1])
    tensor = strain.infinitesimal_strain(linear_displacement(stretch, SHAPE_2D, geometry, centre), geometry)
    radial, circumferential = strain.radial_circumferential_strain(tensor, geometry, centre)
    offsets = grid_points(SHAPE_2D, geometry) - centre
    angle = np.arctan2(offsets[..., 1], offsets[..., 0])
    np.testing.assert_allclose(radial[0].numpy(), 0.3 * np.cos(angle) ** 2 - 0.1 * np.sin(angle) ** 2, atol=1e-9)
    np.testing.assert_allclose(circumferential[0].numpy(), 0.3 * np.sin(angle) ** 2 - 0.1 * np.cos(angle) ** 2, atol=1e-9)


def test_3d_components_around_an_oblique_long_axis(oblique_geometry_3d):
    """In-plane stretch 1 + a and axial stretch 1 + b about an oblique axis through the centre."""
    geometry, centre = oblique_geometry_3d, grid_centre(SHAPE_3D, oblique_geometry_3d)
    axis = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    along_axis = np.outer(axis, axis)
    a, b = -0.15, 0.2
    gradient = a * (np.eye(3) - along_axis) + b * along_axis
    tensor = strain.green_lagrange_strain(linear_displacement(gradient, SHAPE_3D, geometry, centre), geometry)
    radial, circumferential, longitudinal = strain.radial_circumferential_strain(tensor, geometry, centre, axis * 3)
    for component, stretch in ((radial, 1 + a), (circumferential, 1 + a), (longitudinal, 1 + b)):
        assert torch.allclose(component, torch.full_like(component, (stretch**2 - 1) / 2), atol=1e-9)
    directions = strain.cardiac_directions(SHAPE_3D, geometry, centre, axis, like=tensor)
    gram = torch.einsum("kc...,lc...->kl...", torch.stack(directions), torch.stack(directions))
    assert torch.allclose(gram, torch.eye(3, dtype=gram.dtype).view(3, 3, 1, 1, 1).expand_as(gram), atol=1e-9)


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------


def ring_mask(shape, geometry, centre, inner_mm, outer_mm):
    radius = np.linalg.norm(grid_points(shape, geometry) - centre, axis=-1)
    return (radius >= inner_mm) & (radius <= outer_mm)


def test_angles_run_from_x_towards_y():
    geometry = Geometry.identity(2, (0.5, 2.0))
    centre = np.array([10.0, 10.0])
    angle = strain.angle_around_lv((11, 41), geometry, centre)  # index (i, j) is at (i/2, 2 j) mm
    assert angle[5, 30].item() == pytest.approx(0.0)  # +x
    assert angle[10, 20].item() == pytest.approx(90.0)  # +y
    assert angle[5, 0].item() == pytest.approx(180.0)  # -x
    assert angle[0, 24].item() == pytest.approx(360.0 - np.rad2deg(np.arctan2(10, 2)))


@pytest.mark.parametrize("reference_angle_deg", [0.0, 75.0])
def test_segment_means_of_the_angle_and_of_sector_constants(reference_angle_deg):
    geometry = Geometry.identity(2, (0.8, 1.2))
    shape = (60, 80)
    centre = grid_centre(shape, geometry)
    mask = ring_mask(shape, geometry, centre, 12.0, 20.0)
    labels = strain.segment_labels(shape, geometry, centre, reference_angle_deg)
    # the six segments partition the mask into sectors of about equal size
    counts = np.bincount(labels.numpy()[mask], minlength=6)
    assert counts.sum() == mask.sum() and len(counts) == 6
    assert counts.min() > 0.9 * counts.max()
    # a field equal to its segment number, and the angle relative to the reference
    sector_constant = labels[None].double()
    np.testing.assert_allclose(
        strain.segment_means(sector_constant, geometry, centre, mask, reference_angle_deg)[0].numpy(), np.arange(6)
    )
    relative_angle = (strain.angle_around_lv(shape, geometry, centre) - reference_angle_deg) % 360
    means = strain.segment_means(relative_angle[None], geometry, centre, mask, reference_angle_deg)
    np.testing.assert_allclose(means[0].numpy(), 30.0 + 60.0 * np.arange(6), atol=1.0)


def test_segment_means_in_3d_use_the_long_axis():
    geometry = Geometry.identity(3, (1.0, 1.0, 2.0))
    shape = (6, 40, 40)
    centre = grid_centre(shape, geometry)
    radius = np.linalg.norm((grid_points(shape, geometry) - centre)[..., :2], axis=-1)
    mask = (radius >= 8) & (radius <= 14)
    values = strain.segment_labels(shape, geometry, centre, 10.0, long_axis=(0, 0, 1))[None].double()
    means = strain.segment_means(values, geometry, centre, mask, 10.0, long_axis=(0, 0, 1))
    np.testing.assert_allclose(means[0].numpy(), np.arange(6))


# --------------------------------------------------------------------------------------------
# The LV phantom's analytic strain
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing_mm", [1.0, (0.8, 1.2)])
@pytest.mark.parametrize("measure", MEASURES)
def test_phantom_true_displacement_gives_analytic_strain(spacing_mm, measure):
    phantom = lv_phantom_2d(spacing_mm=spacing_mm, frames=6)
    core = eroded(phantom.myocardium_masks[0])
    tensor = strain.strain_tensor(torch.from_numpy(phantom.displacements).double(), phantom.geometry, measure)
    measured = strain.radial_circumferential_strain(tensor, phantom.geometry, phantom.centre_mm)
    truth = phantom.analytic_strain(measure)
    for estimate, expected in zip(measured, truth):
        assert np.abs(estimate.numpy() - expected)[:, core].max() < PHANTOM_TOLERANCE
    radial, circumferential = truth
    assert radial[3][core].min() > 0.1 and circumferential[3][core].max() < -0.05  # a real contraction


def test_3d_phantom_true_displacement_gives_analytic_strain():
    phantom = lv_phantom_3d(shape=(14, 64, 64), frames=4, length_mm=16.0)
    core = eroded(phantom.myocardium_masks[0])
    displacement = torch.from_numpy(phantom.displacements).double()
    for measure in MEASURES:
        tensor = strain.strain_tensor(displacement, phantom.geometry, measure)
        measured = strain.radial_circumferential_strain(tensor, phantom.geometry, phantom.centre_mm, phantom.long_axis)
        for estimate, expected in zip(measured, phantom.analytic_strain(measure)):
            assert np.abs(estimate.numpy() - expected)[:, core].max() < PHANTOM_TOLERANCE


@pytest.mark.parametrize("measure", MEASURES)
def test_strain_curve_from_chained_frame_to_frame_displacements(measure):
    phantom = lv_phantom_2d(spacing_mm=(0.8, 1.2), frames=8)
    core = eroded(phantom.myocardium_masks[0])
    steps = list(torch.from_numpy(phantom.frame_to_frame_displacements()).double().unsqueeze(1))
    curves = strain.strain_curve(steps, phantom.geometry, phantom.centre_mm, core, measure)
    assert len(curves) == 2 and curves[0].shape == (8, 1)
    for curve, truth in zip(curves, phantom.analytic_strain(measure)):
        assert curve[0, 0] == 0
        np.testing.assert_allclose(curve[:, 0].numpy(), truth[:, core].mean(axis=1), atol=2e-3)
    radial, circumferential = (curve[:, 0].numpy() for curve in curves)
    assert radial.argmax() == 4 and circumferential.argmin() == 4  # peak at end-systole


def test_accumulated_displacements_match_the_true_ones():
    phantom = lv_phantom_2d(frames=6)
    core = eroded(phantom.myocardium_masks[0])
    steps = list(torch.from_numpy(phantom.frame_to_frame_displacements()).double().unsqueeze(1))
    cumulative = strain.accumulate_displacements(steps, phantom.geometry)
    assert len(cumulative) == 6
    for t, displacement in enumerate(cumulative):
        assert np.abs(displacement[0].numpy() - phantom.displacements[t])[:, core].max() < 0.02  # mm


# --------------------------------------------------------------------------------------------
# Errors a user can make
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_image_error(oblique_geometry_3d):
    displacement = torch.zeros(1, 3, *SHAPE_3D)
    centre = grid_centre(SHAPE_3D, oblique_geometry_3d)
    tensor = strain.green_lagrange_strain(displacement, oblique_geometry_3d)
    with pytest.raises(ImageError, match="Unknown strain measure"):
        strain.strain_tensor(displacement, oblique_geometry_3d, "almansi")
    with pytest.raises(ImageError, match="long axis"):
        strain.radial_circumferential_strain(tensor, oblique_geometry_3d, centre)
    with pytest.raises(ImageError, match="LV centre"):
        strain.radial_circumferential_strain(tensor, oblique_geometry_3d, centre[:2], (0, 0, 1))
    values = torch.zeros(1, *SHAPE_3D)
    with pytest.raises(ImageError, match="empty"):
        strain.segment_means(values, oblique_geometry_3d, centre, np.zeros(SHAPE_3D, bool), long_axis=(0, 0, 1))
    with pytest.raises(ImageError, match="does not match"):
        strain.segment_means(values, oblique_geometry_3d, centre, np.ones((3, 3, 3), bool), long_axis=(0, 0, 1))
    with pytest.raises(ImageError, match="at least one"):
        strain.strain_curve([], oblique_geometry_3d, centre, np.ones(SHAPE_3D, bool))
