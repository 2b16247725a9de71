"""Known-answer tests of imse.metrics: every expected value is analytic or an exact voxel count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imse import metrics
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image

ANISOTROPIC = (1.0, 1.5, 2.0)
COS_30, SIN_30 = math.cos(math.pi / 6), math.sin(math.pi / 6)
ROTATION_30_ABOUT_Z = np.array([[COS_30, -SIN_30, 0.0], [SIN_30, COS_30, 0.0], [0.0, 0.0, 1.0]])
AXIS_PERMUTATION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def centred_geometry(shape: tuple[int, ...], spacing: tuple[float, ...], direction: np.ndarray | None = None):
    """A grid of NumPy-order ``shape`` whose central voxel lies at the physical origin."""
    dim = len(shape)
    direction = np.eye(dim) if direction is None else direction
    centre_index = (np.asarray(shape[::-1], dtype=float) - 1) / 2
    origin = -direction @ np.diag(spacing) @ centre_index
    return Geometry(tuple(spacing), tuple(origin), tuple(direction.ravel()))


def physical_points(geometry: Geometry, shape: tuple[int, ...]) -> np.ndarray:
    """Physical position (mm) of every voxel: ``(*shape, dim)``, components in x, y[, z] order."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")[::-1], axis=-1)
    return geometry.index_to_physical(index)


def ball(geometry: Geometry, shape: tuple[int, ...], centre, radius: float) -> Image:
    inside = np.linalg.norm(physical_points(geometry, shape) - np.asarray(centre, dtype=float), axis=-1) <= radius
    return Image(inside.astype(np.uint8), geometry)


def field(geometry: Geometry, shape: tuple[int, ...], function) -> Image:
    """Displacement Image ``u(p) = function(p)`` from physical points ``(*shape, dim)``."""
    return Image(function(physical_points(geometry, shape)).astype(np.float32), geometry)


# --------------------------------------------------------------------------------------------
# Dice
# --------------------------------------------------------------------------------------------


def label_map(*boxes: tuple[int, slice, slice]) -> np.ndarray:
    labels = np.zeros((40, 40), dtype=np.int16)
    for label, rows, columns in boxes:
        labels[rows, columns] = label
    return labels


def test_dice_of_two_squares_overlapping_by_half():
    # 20 x 20 squares shifted by 10 rows: |A| = |B| = 400, |A ∩ B| = 200, Dice = 0.5.
    a = label_map((1, slice(0, 20), slice(5, 25)))
    b = label_map((1, slice(10, 30), slice(5, 25)))
    assert metrics.dice(a, b) == {1: pytest.approx(0.5)}


def test_dice_identical_disjoint_and_missing_labels():
    a = label_map((1, slice(0, 10), slice(0, 10)), (2, slice(20, 30), slice(0, 10)), (3, slice(30, 40), slice(30, 40)))
    b = label_map((1, slice(0, 10), slice(0, 10)), (2, slice(20, 30), slice(20, 30)))
    geometry = Geometry.identity(2, spacing=(0.5, 3.0))
    scores = metrics.dice(Image(a, geometry), Image(b, geometry))
    assert scores == {1: 1.0, 2: 0.0, 3: 0.0}
    assert metrics.dice(a, b, labels=[3, 7]) == {3: 0.0}  # 7 is in neither map: no entry


def test_dice_accepts_whole_number_floats_and_rejects_intensities():
    a = label_map((1, slice(0, 20), slice(5, 25)))
    assert metrics.dice(a.astype(np.float32), a) == {1: 1.0}
    with pytest.raises(ImageError, match="whole numbers"):
        metrics.dice(a + 0.3, a)


def test_dice_rejects_label_maps_on_different_grids():
    a = label_map((1, slice(0, 20), slice(5, 25)))
    with pytest.raises(ImageError, match="Resample"):
        metrics.dice(Image(a, Geometry.identity(2, 1.0)), Image(a, Geometry.identity(2, 2.0)))
    with pytest.raises(ImageError, match="different sizes"):
        metrics.dice(a, a[:-1])


# --------------------------------------------------------------------------------------------
# Surface distances
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [ANISOTROPIC, (1.5, 2.0, 2.5)])
def test_surface_distances_of_concentric_spheres_are_the_radius_difference(spacing):
    shape = tuple(int(40 / s) + 1 for s in spacing[::-1])
    geometry = centred_geometry(shape, spacing)
    inner, outer = ball(geometry, shape, (0, 0, 0), 8.0), ball(geometry, shape, (0, 0, 0), 15.0)
    # Every surface point is 7 mm from the other surface; voxelisation costs up to about a voxel.
    assert metrics.hausdorff_distance_95(inner, outer) == pytest.approx(7.0, abs=1.5)
    assert metrics.average_surface_distance(inner, outer) == pytest.approx(7.0, abs=1.5)


@pytest.mark.parametrize(
    "direction", [np.eye(3), ROTATION_30_ABOUT_Z, AXIS_PERMUTATION], ids=["identity", "rotated", "permuted"]
)
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["x", "y", "z"])
def test_surface_distances_of_offset_spheres(direction, axis):
    # Two spheres of radius r offset by d: the distance from the surface point at polar angle
    # theta to the other surface is |sqrt(r^2 + d^2 - 2 r d cos(theta)) - r|, and cos(theta)
    # is uniform over the surface, which gives a 95th percentile of 0.95 d and a mean of d / 2.
    shape, offset = (21, 27, 41), 6.0
    geometry = centred_geometry(shape, ANISOTROPIC, direction)
    centre_b = np.zeros(3)
    centre_b[axis] = offset
    a, b = ball(geometry, shape, (0, 0, 0), 10.0), ball(geometry, shape, centre_b, 10.0)
    assert metrics.hausdorff_distance_95(a, b) == pytest.approx(0.95 * offset, abs=0.75)
    assert metrics.average_surface_distance(a, b) == pytest.approx(offset / 2, abs=0.75)


def test_hd95_ignores_an_outlier_that_asd_averages_in():
    # B = A plus one isolated voxel 4 mm from A: every distance is 0 but that voxel's, one of
    # several hundred pooled surface voxels, so HD95 = 0 while the classic (maximum) Hausdorff
    # distance would be 4 mm.
    shape = (21, 21, 21)
    geometry = centred_geometry(shape, ANISOTROPIC)
    a = ball(geometry, shape, (0, 0, 0), 6.0)
    with_outlier = a.array.copy()
    with_outlier[10, 10, 0] = 1  # x = -10 mm; A's surface is at x = -6 mm
    b = a.with_array(with_outlier)
    assert metrics.hausdorff_distance_95(a, b) == 0.0
    assert 0.0 < metrics.average_surface_distance(a, b) < 0.1


def test_surface_distances_threshold_float_masks_at_one_half():
    geometry = centred_geometry((21, 21, 21), ANISOTROPIC)
    a, b = ball(geometry, (21, 21, 21), (0, 0, 0), 8.0), ball(geometry, (21, 21, 21), (3, 0, 0), 8.0)
    soft_a = a.with_array(np.where(a.array > 0, 0.6, 0.4).astype(np.float32))
    assert metrics.hausdorff_distance_95(soft_a, b) == metrics.hausdorff_distance_95(a, b)


def test_surface_distances_reject_different_grids_and_empty_masks():
    shape = (15, 15, 15)
    geometry = centred_geometry(shape, ANISOTROPIC)
    a = ball(geometry, shape, (0, 0, 0), 5.0)
    shifted = Image(a.array, centred_geometry(shape, (1.0, 1.5, 2.5)))
    with pytest.raises(ImageError, match="Resample one onto the other"):
        metrics.hausdorff_distance_95(a, shifted)
    with pytest.raises(ImageError, match="same voxel grid"):
        metrics.average_surface_distance(a, Image(a.array[:-1], geometry))
    with pytest.raises(ImageError, match="second mask is empty"):
        metrics.average_surface_distance(a, a.with_array(np.zeros(shape, np.uint8)))


# --------------------------------------------------------------------------------------------
# End-point error
# --------------------------------------------------------------------------------------------


def test_endpoint_error_of_identical_fields_is_zero():
    geometry = centred_geometry((6, 7, 8), ANISOTROPIC)
    u = Image(np.random.default_rng(0).normal(size=(6, 7, 8, 3)).astype(np.float32), geometry)
    assert metrics.endpoint_error(u, u) == {"mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}


def test_endpoint_error_of_constant_fields_is_the_norm_of_their_difference():
    geometry = centred_geometry((6, 7, 8), ANISOTROPIC)
    u = Image(np.full((6, 7, 8, 3), 1.0, np.float32), geometry)
    reference = u.with_array(u.array - np.array([3.0, 4.0, 12.0], np.float32))
    expected = {"mean": 13.0, "median": 13.0, "p95": 13.0, "max": 13.0}  # |(3, 4, 12)| = 13 mm
    assert metrics.endpoint_error(u, reference) == pytest.approx(expected)


def test_endpoint_error_summary_and_mask():
    # Errors 0, 1, ..., 99 mm along x: mean = median = 49.5, p95 = 94.05 (linear interpolation).
    geometry = Geometry.identity(2, spacing=(0.8, 1.7))
    u = np.zeros((3, 100, 2), np.float32)
    u[..., 1] = np.arange(100)
    summary = metrics.endpoint_error(Image(u, geometry), Image(np.zeros_like(u), geometry))
    assert summary == pytest.approx({"mean": 49.5, "median": 49.5, "p95": 94.05, "max": 99.0})
    mask = np.zeros((3, 100), bool)
    mask[:, :10] = True
    assert metrics.endpoint_error(Image(u, geometry), Image(np.zeros_like(u), geometry), mask)["max"] == 9.0


def test_endpoint_error_rejects_bad_fields_and_masks():
    geometry = Geometry.identity(2)
    u = Image(np.zeros((4, 5, 2), np.float32), geometry)
    with pytest.raises(ImageError, match="2 components"):
        metrics.endpoint_error(u, Image(np.zeros((4, 5), np.float32), geometry))
    with pytest.raises(ImageError, match="NaN"):
        metrics.endpoint_error(u, u.with_array(np.full((4, 5, 2), np.nan, np.float32)))
    with pytest.raises(ImageError, match="mask is empty"):
        metrics.endpoint_error(u, u, mask=np.zeros((4, 5), bool))
    with pytest.raises(ImageError, match="same voxel grid"):
        metrics.endpoint_error(u, u, mask=np.ones((5, 4), bool))


# --------------------------------------------------------------------------------------------
# Jacobian determinant, folding and gradient magnitude
# --------------------------------------------------------------------------------------------

GRIDS = {
    "2d-isotropic": ((20, 24), (1.0, 1.0), None),
    "2d-anisotropic": ((20, 24), (0.7, 2.0), np.array([[0.0, -1.0], [1.0, 0.0]])),
    "3d-anisotropic": ((10, 12, 14), ANISOTROPIC, None),
    "3d-rotated": ((10, 12, 14), ANISOTROPIC, ROTATION_30_ABOUT_Z),
}


@pytest.fixture(params=list(GRIDS), ids=list(GRIDS))
def grid(request) -> tuple[Geometry, tuple[int, ...]]:
    shape, spacing, direction = GRIDS[request.param]
    return centred_geometry(shape, spacing, direction), shape


def test_translation_keeps_volume_and_has_no_gradient(grid):
    geometry, shape = grid
    u = field(geometry, shape, lambda p: np.broadcast_to(np.arange(1.0, geometry.dim + 1) * 3.7, p.shape))
    determinant = metrics.jacobian_determinant_map(u)
    assert determinant.geometry == geometry and determinant.shape == shape and not determinant.is_vector
    np.testing.assert_allclose(determinant.array, 1.0, atol=1e-6)
    assert metrics.folding_percentage(u) == 0.0
    assert metrics.mean_gradient_magnitude(u) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale", [1.2, 0.7])
def test_uniform_scaling(grid, scale):
    # u(p) = (s - 1) p maps p to s p: det J = s^dim and |du/dx|_F = sqrt(dim) |s - 1|, whatever
    # the spacing and direction of the grid.
    geometry, shape = grid
    u = field(geometry, shape, lambda p: (scale - 1.0) * p)
    np.testing.assert_allclose(metrics.jacobian_determinant_map(u).array, scale**geometry.dim, rtol=1e-5)
    assert metrics.folding_percentage(u) == 0.0
    assert metrics.mean_gradient_magnitude(u) == pytest.approx(math.sqrt(geometry.dim) * abs(scale - 1.0), rel=1e-5)


def test_point_reflection_folds_everywhere_in_3d():
    # u(p) = -2 p maps p to -p: det J = (-1)^3 = -1 at every voxel.
    geometry, shape = centred_geometry((8, 9, 10), ANISOTROPIC), (8, 9, 10)
    assert metrics.folding_percentage(field(geometry, shape, lambda p: -2.0 * p)) == 100.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISOTROPIC])
def test_folding_percentage_and_gradient_of_a_folded_band(spacing):
    # u_x = -2 (x - x_start) inside a band of 10 voxel columns (its edges halfway between voxel
    # centres), constant outside: dx'/dx = -1 inside the band, so exactly its columns fold.
    shape = (6, 8, 40)
    geometry = Geometry(spacing, (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    start, stop = 9.5 * spacing[0], 19.5 * spacing[0]

    def band(p):
        u = np.zeros_like(p)
        u[..., 0] = -2.0 * (np.clip(p[..., 0], start, stop) - start)
        return u

    u = field(geometry, shape, band)
    assert metrics.folding_percentage(u) == pytest.approx(100.0 * 10 / 40)
    in_band = np.zeros(shape, bool)
    in_band[..., 10:20] = True
    assert metrics.folding_percentage(u, mask=in_band) == 100.0
    assert metrics.folding_percentage(u, mask=~in_band) == 0.0
    band_interior = np.zeros(shape, bool)
    band_interior[..., 11:19] = True  # central differences see only the band's slope of -2
    assert metrics.mean_gradient_magnitude(u, mask=band_interior) == pytest.approx(2.0, rel=1e-5)


def test_displacement_metrics_reject_scalar_images():
    image = Image(np.zeros((5, 6), np.float32), Geometry.identity(2))
    with pytest.raises(ImageError, match="displacement field"):
        metrics.jacobian_determinant_map(image)
    with pytest.raises(ImageError, match="displacement field"):
        metrics.mean_gradient_magnitude(image)


# --------------------------------------------------------------------------------------------
# Intensity metrics
# --------------------------------------------------------------------------------------------


def smooth_image(shape: tuple[int, ...], spacing: tuple[float, ...]) -> Image:
    """Intensities from 0 to 100 with structure at several scales."""
    axes = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    values = 50 + 25 * np.sin(7 * axes[-1]) * np.cos(5 * axes[0]) + 25 * np.cos(11 * sum(axes))
    values = 100 * (values - values.min()) / np.ptp(values)
    return Image(values.astype(np.float32), Geometry.identity(len(shape), spacing))


def with_noise(image: Image, sigma: float, seed: int = 0) -> Image:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return image.with_array((image.array + noise).astype(np.float32))


@pytest.mark.parametrize("shape, spacing", [((48, 40), (0.5, 1.0)), ((16, 20, 24), ANISOTROPIC)])
def test_identical_images(shape, spacing):
    truth = smooth_image(shape, spacing)
    assert metrics.nmae(truth, truth) == 0.0
    assert metrics.psnr(truth, truth) == math.inf
    assert metrics.ssim(truth, truth) == pytest.approx(1.0, abs=1e-9)


def test_constant_offset_gives_known_nmae_and_psnr():
    truth = smooth_image((48, 40), (1.0, 1.0))  # intensity range exactly 100
    offset = truth.with_array(truth.array + 5.0)
    assert metrics.nmae(offset, truth) == pytest.approx(5.0 / 100.0, rel=1e-5)
    assert metrics.psnr(offset, truth) == pytest.approx(20 * math.log10(100.0 / 5.0), rel=1e-5)
    assert metrics.psnr(offset, truth, data_range=255.0) == pytest.approx(20 * math.log10(255.0 / 5.0), rel=1e-5)


@pytest.mark.parametrize("shape", [(32, 32), (12, 14, 16)])
def test_ssim_of_constant_images_is_the_luminance_term(shape):
    # Constant images a and b have no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with
    # C1 = (0.01 L)^2.
    geometry = Geometry.identity(len(shape))
    a, b, data_range = 20.0, 30.0, 100.0
    c1 = (0.01 * data_range) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    truth, prediction = Image(np.full(shape, a), geometry), Image(np.full(shape, b), geometry)
    assert metrics.ssim(prediction, truth, data_range=data_range) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", [(64, 64), (16, 24, 24)])
def test_ssim_decreases_as_noise_grows(shape):
    truth = smooth_image(shape, (1.0,) * len(shape))
    scores = [metrics.ssim(with_noise(truth, sigma), truth) for sigma in (1.0, 5.0, 15.0, 40.0)]
    assert all(later < earlier for earlier, later in zip(scores, scores[1:]))
    assert scores[0] < 1.0 and scores[-1] < 0.5


def test_ssim_window_is_11_voxels_wide():
    # One changed voxel alters the SSIM map up to 5 voxels away (Chebyshev distance) and no further.
    truth = with_noise(Image(np.zeros((41, 41), np.float32), Geometry.identity(2)), 10.0)
    changed = truth.array.copy()
    changed[20, 20] += 50.0
    prediction = truth.with_array(changed)
    rows, columns = np.mgrid[:41, :41]
    distance = np.maximum(abs(rows - 20), abs(columns - 20))
    assert metrics.ssim(prediction, truth, mask=distance == 6) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(prediction, truth, mask=distance == 5) < 1.0 - 1e-6


def test_mask_restricts_intensity_metrics():
    truth = smooth_image((40, 60), (1.0, 1.0))
    noisy = with_noise(truth, 10.0).array
    noisy[:, 30:] = truth.array[:, 30:]  # noise only in the left half
    prediction = truth.with_array(noisy)
    right = np.zeros(truth.shape, bool)
    right[:, 40:] = True  # more than 5 voxels (the SSIM window radius) from the noise
    assert metrics.nmae(prediction, truth, mask=right) == 0.0
    assert metrics.psnr(prediction, truth, mask=right) == math.inf
    assert metrics.ssim(prediction, truth, mask=right) == pytest.approx(1.0, abs=1e-9)
    assert metrics.nmae(prediction, truth) > 0.0
    assert metrics.ssim(prediction, truth) < 0.9


def test_intensity_metrics_reject_bad_inputs():
    truth = smooth_image((20, 20), (1.0, 1.0))
    with pytest.raises(ImageError, match="same voxel grid"):
        metrics.nmae(Image(truth.array, Geometry.identity(2, 2.0)), truth)
    with pytest.raises(ImageError, match="NaN"):
        metrics.psnr(truth.with_array(np.full((20, 20), np.nan, np.float32)), truth)
    with pytest.raises(ImageError, match="single value"):
        metrics.ssim(truth, truth.with_array(np.ones((20, 20), np.float32)))
    with pytest.raises(ImageError, match="mask is empty"):
        metrics.ssim(truth, truth, mask=truth.with_array(np.zeros((20, 20), np.float32)))
    with pytest.raises(ImageError, match="single-valued"):
        metrics.nmae(truth.with_array(np.zeros((20, 20, 2), np.float32)), truth)


def test_global_correlation_and_mutual_information_known_answers():
    from imse.metrics import mutual_information, normalized_cross_correlation

    rng = np.random.default_rng(0)
    geometry = Geometry.identity(2)
    image = Image(rng.random((64, 64)), geometry)
    assert normalized_cross_correlation(image, image.with_array(3 * image.array + 2)) == pytest.approx(1.0)
    assert normalized_cross_correlation(image, image.with_array(-image.array)) == pytest.approx(-1.0)
    levels = Image(rng.integers(0, 4, (64, 64)).astype(float), geometry)  # four equally likely values
    assert mutual_information(levels, levels, bins=4) == pytest.approx(np.log(4), abs=0.01)
    remapped = levels.with_array(np.array([3.0, 0.0, 2.0, 1.0])[levels.array.astype(int)])  # non-monotone
    assert mutual_information(levels, remapped, bins=4) == pytest.approx(np.log(4), abs=0.01)
    assert abs(normalized_cross_correlation(levels, remapped)) < 0.5  # NCC misses it, MI does not
    independent = Image(rng.random((64, 64)), geometry)
    assert mutual_information(image, independent, bins=8) < 0.05
    with pytest.raises(ImageError, match="constant"):
        normalized_cross_correlation(image, image.with_array(np.ones((64, 64))))
