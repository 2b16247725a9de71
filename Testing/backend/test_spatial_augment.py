"""Random spatial transforms in voxels: the elastic field's size (the paper's 2D magnitude, the
3D fix), the affine parts recovered from the fields (translation, rotation, scaling about the
centre), composition, smoothness, reproducibility, and warping by voxel displacements."""

import itertools
import math

import numpy as np
import pytest
import torch

from imse import spatial_augment as sa
from imse.errors import ImageError
from imse.field import index_grid, jacobian_determinant
from imse.geometry import Geometry

SHAPE_2D = (40, 56)  # (H, W): not square, so that axis mix-ups show
SHAPE_3D = (12, 20, 28)  # (D, H, W)
NO_AFFINE = {"scale": 0.0, "rotation_degrees": 0.0, "translation": 0.0}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def det_jacobian(displacement: torch.Tensor) -> torch.Tensor:
    return jacobian_determinant(displacement, Geometry.identity(displacement.shape[1]))


def fitted_affine(displacement: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``(M, b)`` with ``p + u(p) = M p + b`` over the grid, for one sample
    ``[dim, *shape]``; ITK axis order, voxels."""
    dim = displacement.shape[0]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in displacement.shape[1:]], indexing="ij")[::-1])
    points = index.reshape(dim, -1).T.astype(np.float64)
    moved = points + displacement.double().numpy().reshape(dim, -1).T
    design = np.hstack([points, np.ones((len(points), 1))])
    solution, residual, *_ = np.linalg.lstsq(design, moved, rcond=None)
    assert np.abs(design @ solution - moved).max() < 1e-3  # the field is affine
    return solution[:dim].T, solution[dim]


def centre(shape) -> np.ndarray:
    return (np.array(shape[::-1]) - 1) / 2


# --- Zero magnitudes and reproducibility --------------------------------------------------------


@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_zero_magnitudes_give_a_zero_field(shape):
    zero = torch.zeros(2, len(shape), *shape)
    assert torch.equal(sa.random_affine_displacement(shape, 2, seeded(0), **NO_AFFINE), zero)
    assert torch.equal(sa.random_elastic_displacement(shape, 2, seeded(0), alpha=0.0), zero)
    assert torch.equal(sa.random_spatial_transform(shape, 2, seeded(0), alpha=0.0, **NO_AFFINE), zero)


@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_same_seed_same_field_and_different_seed_or_sample_different_field(shape):
    first = sa.random_spatial_transform(shape, 2, seeded(3))
    assert first.shape == (2, len(shape), *shape)
    assert torch.equal(first, sa.random_spatial_transform(shape, 2, seeded(3)))
    assert not torch.allclose(first, sa.random_spatial_transform(shape, 2, seeded(4)))
    assert not torch.allclose(first[0], first[1])


# --- Elastic ------------------------------------------------------------------------------


def test_the_2d_elastic_field_has_the_papers_size():
    field = sa.random_elastic_displacement((128, 128), 8, seeded(0))
    std = field.std().item()
    assert 1.3 < std < 2.2  # the reference reports about 1.9 px; the analytic value is 1.64
    assert std == pytest.approx(sa.elastic_displacement_std(2, 120.0, 12.0), rel=0.1)
    assert 4.0 < field.abs().max() < 12.0  # reference: about 8 px at most


def test_the_3d_default_matches_the_2d_size_and_the_reference_3d_setting_is_far_smaller():
    std_2d = sa.random_elastic_displacement((128, 128), 8, seeded(0)).std().item()
    std_3d = sa.random_elastic_displacement((32, 48, 48), 4, seeded(0)).std().item()
    std_reference_3d = sa.random_elastic_displacement((32, 48, 48), 4, seeded(0), alpha=120.0).std().item()
    assert std_2d / 1.5 < std_3d < std_2d * 1.5
    assert std_reference_3d < std_2d / 4
    assert sa.elastic_displacement_std(3, sa.elastic_alpha_for_dim(3), 12.0) == pytest.approx(
        sa.elastic_displacement_std(2, 120.0, 12.0)
    )
    assert sa.elastic_alpha_for_dim(2) == 120.0
    assert sa.elastic_alpha_for_dim(3) == pytest.approx(120.0 * math.sqrt(2 * math.sqrt(math.pi) * 12.0), rel=0.01)


@pytest.mark.parametrize("dim", [2, 3])
def test_elastic_widths_drawn_in_a_range_keep_the_papers_displacement_size(dim):
    paper_std = sa.elastic_displacement_std(2, 120.0, 12.0)
    generator = seeded(0)
    widths = []
    for _ in range(20):
        sigma, alpha = sa.random_elastic_width(dim, (5.0, 12.0), generator)
        widths.append(sigma)
        assert sa.elastic_displacement_std(dim, alpha, sigma) == pytest.approx(paper_std)
    assert 5.0 <= min(widths) < 6.5 and 10.5 < max(widths) <= 12.0
    # the paper's single width draws nothing and gives the default alpha
    state = generator.get_state()
    assert sa.random_elastic_width(dim, (12.0, 12.0), generator) == (12.0, sa.elastic_alpha_for_dim(dim))
    assert torch.equal(generator.get_state(), state)
    sigma, alpha = sa.random_elastic_width(2, (5.0, 5.0), seeded(1))
    narrow = sa.random_elastic_displacement((128, 128), 8, seeded(1), alpha=alpha, sigma=sigma)
    assert sigma == 5.0 and narrow.std().item() == pytest.approx(paper_std, rel=0.15)


def test_the_elastic_field_is_stationary_up_to_the_borders():
    field = sa.random_elastic_displacement((96, 96), 16, seeded(1), sigma=6.0)
    border, middle = field[..., :4].std(), field[..., 44:52].std()
    assert border == pytest.approx(middle.item(), rel=0.25)


# --- Affine -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(11, 101), (9, 11, 101)])
def test_translation_only_is_a_constant_field_within_the_half_extent_bounds(shape):
    field = sa.random_affine_displacement(shape, 64, seeded(0), scale=0.0, rotation_degrees=0.0, translation=0.08)
    shift = field.flatten(2)[..., 0]
    torch.testing.assert_close(field, shift.view(*shift.shape, *([1] * len(shape))).expand_as(field))
    bounds = torch.tensor(0.08 * centre(shape), dtype=torch.float32)
    assert (shift.abs() <= bounds + 1e-6).all()
    assert shift[:, 0].abs().max() > bounds[1]  # channel 0 moves along x, the long last axis


@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_rotation_only_is_a_rigid_rotation_about_the_centre_within_the_bound(shape):
    dim = len(shape)
    field = sa.random_affine_displacement(shape, 4, seeded(0), scale=0.0, rotation_degrees=3.0, translation=0.0)
    for sample in field:
        matrix, offset = fitted_affine(sample)
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(dim), atol=1e-5)
        assert np.linalg.det(matrix) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(matrix @ centre(shape) + offset, centre(shape), atol=1e-4)
        angle = math.degrees(math.acos(np.clip((np.trace(matrix) - (dim - 2)) / 2, -1, 1)))
        assert 0 < angle <= 3.0 * math.sqrt(dim - 1) + 1e-3  # up to three 3-degree turns in 3D
    torch.testing.assert_close(det_jacobian(field), torch.ones(4, 1, *shape), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_scale_only_scales_each_axis_about_the_centre(shape):
    dim = len(shape)
    field = sa.random_affine_displacement(shape, 4, seeded(0), scale=0.08, rotation_degrees=0.0, translation=0.0)
    for sample in field:
        matrix, offset = fitted_affine(sample)
        np.testing.assert_allclose(matrix, np.diag(np.diag(matrix)), atol=1e-5)
        assert ((np.diag(matrix) >= 0.92 - 1e-5) & (np.diag(matrix) <= 1.08 + 1e-5)).all()
        np.testing.assert_allclose(matrix @ centre(shape) + offset, centre(shape), atol=1e-4)
    determinant = det_jacobian(field)
    assert determinant.min() >= 0.92**dim - 1e-4 and determinant.max() <= 1.08**dim + 1e-4


@pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D])
def test_default_affine_stays_within_the_volume_bounds(shape):
    dim = len(shape)
    determinant = det_jacobian(sa.random_affine_displacement(shape, 8, seeded(2)))
    assert determinant.min() >= 0.92**dim - 1e-4 and determinant.max() <= 1.08**dim + 1e-4


# --- The full transform and warping --------------------------------------------------------------


@pytest.mark.parametrize("shape, batch", [((128, 128), 4), ((24, 48, 48), 1)])
def test_the_default_transform_does_not_fold(shape, batch):
    field = sa.random_spatial_transform(shape, batch, seeded(0))
    assert det_jacobian(field).min() > 0
    assert field.abs().max() > 1.0  # and it does move things


@pytest.mark.parametrize("shape", [(64, 72), (24, 40, 48)])
def test_the_transform_is_the_affine_then_the_elastic_warp(shape):
    """Warping by ``a`` then by ``e`` samples the image at ``p + e(p) + a(p + e(p))``, and for the
    affine ``a(q) = (M - I)(q - c) + t`` that is ``p + a(p) + M e(p)``."""
    dim = len(shape)
    total = sa.random_spatial_transform(shape, 2, seeded(5))
    generator = seeded(5)  # the same draws, in the documented order: affine, then elastic
    matrix, shift = sa.random_affine_parameters(shape, 2, generator)
    elastic = sa.random_elastic_displacement(shape, 2, generator)
    expected = sa.affine_displacement(matrix, shift, shape) + torch.einsum("nij,nj...->ni...", matrix, elastic)
    # Away from where p + e(p) leaves the grid (warping clamps there).
    target = index_grid(shape, elastic) + elastic
    sizes = torch.tensor(shape[::-1], dtype=torch.float32).view(1, dim, *([1] * dim))
    inside = ((target >= 0) & (target <= sizes - 1)).all(dim=1, keepdim=True).expand_as(total)
    assert inside.float().mean() > 0.7
    torch.testing.assert_close(total[inside], expected[inside], atol=1e-4, rtol=0)


def test_apply_displacement_moves_along_the_channel_axes_in_voxels():
    volume = torch.rand(1, 1, *SHAPE_3D, generator=seeded(0))
    for channel, axis in [(0, 4), (1, 3), (2, 2)]:
        displacement = torch.zeros(1, 3, *SHAPE_3D)
        displacement[:, channel] = 2.0
        moved = sa.apply_displacement(volume, displacement)
        torch.testing.assert_close(moved.narrow(axis, 0, 5), volume.narrow(axis, 2, 5))


def test_bad_shapes_are_reported():
    with pytest.raises(ImageError):
        sa.random_spatial_transform((8,), 1, seeded(0))
    with pytest.raises(ImageError):
        sa.random_elastic_displacement((8, 8), 0, seeded(0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator():
    generator = torch.Generator("cuda").manual_seed(0)
    field = sa.random_spatial_transform(SHAPE_3D, 2, generator)
    assert field.is_cuda and det_jacobian(field).min() > 0
    assert sa.apply_displacement(torch.zeros(2, 1, *SHAPE_3D, device="cuda"), field).is_cuda


@pytest.mark.parametrize("shape", [(4, 6), (3, 4, 5)])
def test_random_flips_flip_each_sample_and_axis_by_chance(shape):
    x = torch.arange(float(np.prod(shape))).reshape(1, 1, *shape).expand(64, 2, *shape)
    flipped = sa.random_flips(x, torch.Generator().manual_seed(0))
    assert flipped.shape == x.shape and torch.equal(flipped[:, 0], flipped[:, 1])  # the channels of a sample together
    axes = range(2, x.dim())
    seen = set()
    for sample in flipped:
        matches = [subset for count in range(len(axes) + 1) for subset in itertools.combinations(axes, count) if torch.equal(sample[None], x[:1].flip(subset))]
        assert len(matches) == 1  # each sample is one flip of the image
        seen.add(matches[0])
    assert len(seen) == 2 ** len(shape)  # 64 draws show every combination of axes


@pytest.mark.parametrize("shape", [(96, 96), (31, 40), (16, 17, 18)])
def test_the_rotation_margin_covers_the_crop_at_any_angle_with_its_parity(shape):
    larger = sa.rotation_margin_shape(shape)
    half_diagonal = math.sqrt(sum(((n - 1) / 2) ** 2 for n in shape))  # centre to a corner voxel
    assert all((big - 1) / 2 >= half_diagonal + 1 for big in larger)  # a corner turned onto any axis, a voxel inside
    assert all((big - n) % 2 == 0 for big, n in zip(larger, shape))


def centred_grid(shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Voxel coordinates about the centre ``(n - 1) / 2``, one tensor per NumPy axis."""
    return torch.meshgrid(*[torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in shape], indexing="ij")


@pytest.mark.parametrize("crop", [(24, 30), (12, 14, 16)])
def test_random_rotations_without_a_turn_crop_the_centre_and_keep_a_centred_ball(crop):
    larger = sa.rotation_margin_shape(crop)
    x = torch.rand(3, 2, *larger, generator=seeded(1))
    unturned = sa.random_rotations(x, seeded(2), 0.0, crop)
    offsets = [(big - n) // 2 for big, n in zip(larger, crop)]
    assert torch.allclose(unturned, x[(slice(None), slice(None), *[slice(o, o + n) for o, n in zip(offsets, crop)])], atol=1e-5)
    # a smooth ball about the centre is the same at every angle: the turn is about the centre
    radius = torch.sqrt(sum(axis**2 for axis in centred_grid(larger)))
    ball = torch.sigmoid((6.0 - radius) / 2).expand(8, 1, *larger)
    turned = sa.random_rotations(ball, seeded(3), 180.0, crop)
    assert turned.shape == (8, 1, *crop)
    assert torch.allclose(turned, ball[:1, :, *[slice(o, o + n) for o, n in zip(offsets, crop)]].expand_as(turned), atol=0.02)


def test_random_rotations_turn_each_sample_by_a_drawn_angle_within_the_range():
    crop = (33, 33)
    larger = sa.rotation_margin_shape(crop)
    y, x = centred_grid(larger)
    bar = torch.exp(-(y**2) / 2.0) * (x.abs() < 30)  # along x, through the centre
    turned = sa.random_rotations(bar.expand(64, 1, *larger), seeded(4), 40.0, crop)[:, 0]
    yc, xc = centred_grid(crop)
    # the bar's direction from its second moments, in degrees from x (y pointing down the rows)
    mxx, myy, mxy = [(turned * a * b).sum(dim=(1, 2)) for a, b in ((xc, xc), (yc, yc), (xc, yc))]
    angles = torch.rad2deg(0.5 * torch.atan2(2 * mxy, mxx - myy))
    assert angles.abs().max() <= 41.0  # never beyond the range
    assert angles.max() > 30.0 and angles.min() < -30.0  # and the range is used, both ways
    assert angles.std() > 15.0  # spread, not two values (uniform in +-40: 23)


def test_random_rotations_refuse_an_input_too_small_for_the_crop():
    crop = (20, 20)
    with pytest.raises(ImageError, match=r"needs an input of \(32, 32\)"):
        sa.random_rotations(torch.zeros(1, 1, 24, 24), seeded(0), 10.0, crop)
    with pytest.raises(ImageError, match="even number"):
        sa.random_rotations(torch.zeros(1, 1, 33, 33), seeded(0), 10.0, crop)
