"""Tests of the built-in data sets (imse.data): atlas, contrasts, deformations, pairs, echo."""

from __future__ import annotations

import numpy as np
import pytest

from imse.data import (
    CONTRASTS,
    LABELS,
    TISSUES,
    invert_displacement,
    load_echo_cine,
    load_mni_atlas,
    load_t1_coronal_slice,
    make_pair,
    random_displacement,
    synthesize_contrast,
    warp_image,
)
from imse.data._package_files import package_file
from imse.data.slicing import extract_slice
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image

MNI_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    a, b = a == label, b == label
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def max_gradient_norm(displacement: Image) -> float:
    """Largest spectral norm of the displacement's Jacobian (per mm) over the grid; the
    direction cosines are orthogonal, so index-aligned axes give the same norms."""
    spacing = displacement.geometry.spacing[::-1]
    rows = [np.stack(np.gradient(displacement.array[..., c], *spacing), axis=-1) for c in range(displacement.dim)]
    return float(np.linalg.norm(np.stack(rows, axis=-2), ord=2, axis=(-2, -1)).max())


def physical_centroid(image: Image) -> np.ndarray:
    indices = np.argwhere(np.ones(image.shape, bool))[:, ::-1]
    weights = image.array.ravel()
    return (weights @ image.geometry.index_to_physical(indices)) / weights.sum()


def gaussian_blob(geometry: Geometry, shape: tuple[int, ...], centre_mm: np.ndarray, sigma_mm: float) -> Image:
    indices = np.argwhere(np.ones(shape, bool))[:, ::-1]
    distance2 = ((geometry.index_to_physical(indices) - centre_mm) ** 2).sum(axis=1)
    return Image(np.exp(-distance2 / (2 * sigma_mm**2)).reshape(shape).astype(np.float32), geometry)


@pytest.fixture(scope="module")
def atlas():
    return load_mni_atlas()


@pytest.fixture(scope="module")
def coarse_atlas():
    return load_mni_atlas(4.0)


# --- atlas -------------------------------------------------------------------------------


def test_atlas_geometry_is_the_nifti_header_in_lps(atlas):
    import nibabel

    header_affine = nibabel.load(
        package_file("nilearn", "datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    ).affine
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    assert np.allclose(header_affine[:3, 3], (-98.0, -134.0, -72.0))
    for image in (atlas.t1, atlas.gm, atlas.wm, atlas.csf, atlas.labels, atlas.brain):
        assert image.shape == (189, 233, 197)
        assert image.geometry.spacing == (1.0, 1.0, 1.0)
        assert np.allclose(image.geometry.origin, ras_to_lps @ header_affine[:3, 3])
        assert np.allclose(image.geometry.origin, (98.0, 134.0, -72.0))
        assert np.allclose(image.geometry.direction_matrix, ras_to_lps @ header_affine[:3, :3])


def test_atlas_maps_are_consistent_probabilities(atlas):
    for image in (atlas.t1, atlas.csf, atlas.gm, atlas.wm):
        assert image.array.dtype == np.float32
        assert image.array.min() >= 0.0 and image.array.max() <= 1.0
    brain = atlas.brain.array.astype(bool)
    assert np.array_equal(brain, atlas.t1.array > 0)
    np.testing.assert_allclose(
        atlas.csf.array, np.clip(brain - atlas.gm.array - atlas.wm.array, 0.0, 1.0), atol=1e-6
    )
    assert np.array_equal(atlas.labels.array > 0, brain)
    assert atlas.labels.array.dtype == np.uint8


def test_atlas_labels_are_the_most_probable_tissue_in_plausible_amounts(atlas):
    labels = atlas.labels.array
    probabilities = np.stack([atlas.csf.array, atlas.gm.array, atlas.wm.array])
    brain = labels > 0
    assert np.array_equal(labels[brain], 1 + np.argmax(probabilities[:, brain], axis=0))
    fractions = {name: np.count_nonzero(labels == value) / np.count_nonzero(brain) for name, value in LABELS.items()}
    assert 0.25 < fractions["gm"] < 0.65
    assert 0.25 < fractions["wm"] < 0.60
    assert 0.03 < fractions["csf"] < 0.20


def test_atlas_arrays_cannot_corrupt_the_cache():
    first = load_mni_atlas()
    first.t1.array[:] = 7.0
    first.labels.array[:] = 0
    second = load_mni_atlas()
    assert second.t1.array.max() == 1.0
    assert second.labels.array.max() == 3


def test_resampled_atlas_covers_the_same_physical_box(atlas, coarse_atlas):
    assert coarse_atlas.t1.geometry.spacing == (4.0, 4.0, 4.0)
    assert coarse_atlas.t1.geometry.direction == MNI_DIRECTION
    assert coarse_atlas.t1.geometry.origin == atlas.t1.geometry.origin
    (low, high), (coarse_low, coarse_high) = atlas.t1.physical_extent(), coarse_atlas.t1.physical_extent()
    assert np.all(coarse_low >= low - 1e-6) and np.all(coarse_high <= high + 1e-6)
    assert np.all(coarse_low - low < 4.0) and np.all(high - coarse_high < 4.0)

    def brain_volume_ml(a):
        return np.count_nonzero(a.brain.array) * np.prod(a.t1.geometry.spacing) / 1000

    assert brain_volume_ml(coarse_atlas) == pytest.approx(brain_volume_ml(atlas), rel=0.05)
    for image in (coarse_atlas.csf, coarse_atlas.gm, coarse_atlas.wm):
        assert image.array.min() >= 0.0 and image.array.max() <= 1.0


@pytest.mark.parametrize("spacing", [0.0, -2.0, float("nan")])
def test_atlas_rejects_bad_spacing(spacing):
    with pytest.raises(ImageError, match="spacing"):
        load_mni_atlas(spacing)


# --- contrasts ---------------------------------------------------------------------------


def tissue_means(image: Image, atlas) -> dict[str, float]:
    """Mean intensity over nearly pure voxels (probability > 0.8) of each tissue."""
    means = {name: float(image.array[getattr(atlas, name).array > 0.8].mean()) for name in LABELS}
    means["background"] = float(image.array[atlas.brain_probability < 0.01].mean())
    return means


@pytest.mark.parametrize(
    "contrast, brightest_to_darkest",
    [("t1", ("wm", "gm", "csf")), ("t2", ("csf", "gm", "wm")), ("pd", ("csf", "gm", "wm")), ("ct", ("gm", "wm", "csf"))],
)
def test_contrasts_order_the_tissues(coarse_atlas, contrast, brightest_to_darkest):
    image = synthesize_contrast(coarse_atlas, contrast, seed=3)
    assert image.array.dtype == np.float32 and image.geometry == coarse_atlas.geometry
    means = tissue_means(image, coarse_atlas)
    ordered = [means[tissue] for tissue in brightest_to_darkest]
    assert ordered == sorted(ordered, reverse=True), means


def test_proton_density_has_small_contrast_and_ct_is_in_hounsfield_units(coarse_atlas):
    pd = tissue_means(synthesize_contrast(coarse_atlas, "pd", seed=0), coarse_atlas)
    t2 = tissue_means(synthesize_contrast(coarse_atlas, "t2", seed=0), coarse_atlas)
    assert pd["csf"] / pd["wm"] < 1.6 < t2["csf"] / t2["wm"]
    ct = tissue_means(synthesize_contrast(coarse_atlas, "ct", seed=0), coarse_atlas)
    assert 0.0 < ct["csf"] < 20.0
    assert 20.0 < ct["wm"] < 32.0
    assert 32.0 < ct["gm"] < 48.0
    assert ct["background"] < -900.0


def test_contrast_is_the_tissue_mix_times_a_bounded_bias(coarse_atlas):
    clean = synthesize_contrast(coarse_atlas, "t2", bias_strength=0.0, noise_std=0.0)
    probabilities = coarse_atlas.tissue_probabilities()
    expected = sum(probabilities[tissue] * mean for tissue, mean in zip(TISSUES, CONTRASTS["t2"].tissue_means))
    np.testing.assert_allclose(clean.array, expected, atol=1e-6)
    biased = synthesize_contrast(coarse_atlas, "t2", seed=5, bias_strength=0.3, noise_std=0.0)
    brain = coarse_atlas.brain.array.astype(bool)
    log_ratio = np.log(biased.array[brain] / clean.array[brain])
    assert np.abs(log_ratio).max() == pytest.approx(0.3, rel=1e-4)


def test_contrasts_are_reproducible_from_the_seed(coarse_atlas):
    for contrast in CONTRASTS:
        first = synthesize_contrast(coarse_atlas, contrast, seed=11)
        assert np.array_equal(first.array, synthesize_contrast(coarse_atlas, contrast, seed=11).array)
        assert not np.allclose(first.array, synthesize_contrast(coarse_atlas, contrast, seed=12).array)


def test_unknown_contrast_lists_the_valid_ones(coarse_atlas):
    with pytest.raises(ImageError, match="t1.*t2|ct.*pd"):
        synthesize_contrast(coarse_atlas, "flair")


# --- displacement fields -----------------------------------------------------------------


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def reference(request):
    if request.param == 2:
        return Image(np.zeros((90, 100), np.float32), Geometry((2.0, 2.5), (10.0, -20.0), (1.0, 0.0, 0.0, 1.0)))
    return Image(np.zeros((40, 48, 44), np.float32), Geometry((3.0, 3.0, 3.5), (98.0, 134.0, -72.0), MNI_DIRECTION))


def test_random_displacement_has_the_requested_size_and_is_invertible(reference):
    field = random_displacement(reference, max_displacement_mm=8.0, seed=4)
    assert field.array.shape == (*reference.shape, reference.dim)
    assert field.array.dtype == np.float32 and field.geometry == reference.geometry
    assert np.linalg.norm(field.array, axis=-1).max() == pytest.approx(8.0, rel=1e-5)
    assert 0.05 < max_gradient_norm(field) < 1.0


def test_random_displacement_smoothness_controls_the_gradient(reference):
    smooth = random_displacement(reference, 4.0, smoothness_mm=20.0, seed=1)
    rough = random_displacement(reference, 4.0, smoothness_mm=6.0, seed=1)
    assert max_gradient_norm(rough) > 2 * max_gradient_norm(smooth)


def test_random_displacement_is_reproducible_from_the_seed(reference):
    first = random_displacement(reference, 5.0, seed=7)
    assert np.array_equal(first.array, random_displacement(reference, 5.0, seed=7).array)
    assert not np.allclose(first.array, random_displacement(reference, 5.0, seed=8).array)


@pytest.mark.parametrize("magnitude, smoothness", [(0.0, 10.0), (-3.0, 10.0), (3.0, 0.0)])
def test_random_displacement_rejects_non_positive_sizes(reference, magnitude, smoothness):
    with pytest.raises(ImageError, match="positive"):
        random_displacement(reference, magnitude, smoothness_mm=smoothness)


# --- warping and inversion ---------------------------------------------------------------


def test_translation_moves_content_by_minus_the_displacement(reference):
    centre = reference.geometry.index_to_physical((np.asarray(reference.shape[::-1]) - 1) / 2)
    blob = gaussian_blob(reference.geometry, reference.shape, centre, sigma_mm=8.0)
    shift = np.array([4.0, -6.0, 5.0][: reference.dim])
    field = reference.with_array(np.broadcast_to(shift, (*reference.shape, reference.dim)).astype(np.float32))
    warped = warp_image(blob, field)
    # output(p) = blob(p + t): the blob's centre moves from c to c - t.
    np.testing.assert_allclose(physical_centroid(warped), physical_centroid(blob) - shift, atol=0.05)


def test_nearest_warp_keeps_label_values_and_type(reference):
    labels = reference.with_array(np.random.default_rng(0).integers(0, 4, reference.shape).astype(np.uint8))
    warped = warp_image(labels, random_displacement(reference, 5.0), interpolation="nearest")
    assert warped.array.dtype == np.uint8
    assert set(np.unique(warped.array)) <= {0, 1, 2, 3}


def test_inverse_composes_to_zero_away_from_the_border(reference):
    field = random_displacement(reference, 8.0, seed=2)
    inverse = invert_displacement(field)
    assert inverse.geometry == field.geometry and inverse.array.dtype == np.float32
    interior = (slice(6, -6),) * reference.dim
    # v(q) + u(q + v(q)) = 0 is the equation the fixed-point iteration solves (u interpolated).
    solved = np.linalg.norm(inverse.array + warp_image(field, inverse).array, axis=-1)[interior]
    assert solved.max() < 0.01
    # u(p) + v(p + u(p)) = 0 holds up to the interpolation of v (v sampled at p + u(p) is v
    # warped by u).
    composed = np.linalg.norm(field.array + warp_image(inverse, field).array, axis=-1)[interior]
    assert composed.max() < 0.4
    assert composed.mean() < 0.1


def test_warp_rejects_a_field_of_the_wrong_shape(reference):
    scalar_field = reference.with_array(np.zeros(reference.shape, np.float32))
    with pytest.raises(ImageError, match="displacement field"):
        warp_image(reference, scalar_field)
    with pytest.raises(ImageError, match="interpolation"):
        warp_image(reference, random_displacement(reference, 1.0), interpolation="cubic")


def test_slicing_an_oblique_grid_is_refused():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = Image(np.zeros((5, 6, 7), np.float32), Geometry((1.0,) * 3, (0.0,) * 3, tuple(rotation.ravel())))
    with pytest.raises(ImageError, match="oblique"):
        extract_slice(oblique, "coronal", 0.0)


# --- registration pairs ------------------------------------------------------------------


@pytest.fixture(scope="module", params=["axial", "coronal", "3d"])
def pair(request):
    if request.param == "3d":
        return make_pair(dim=3, moving_contrast="ct", seed=1)
    return make_pair(dim=2, plane=request.param, seed=1)


def test_pair_images_share_the_fixed_grid(pair):
    dim = pair.fixed.dim
    assert all(size % 16 == 0 for size in pair.fixed.shape)
    for image in (pair.moving, pair.fixed_labels, pair.moving_labels, pair.displacement):
        assert image.geometry == pair.fixed.geometry and image.shape == pair.fixed.shape
    assert pair.fixed.array.dtype == pair.moving.array.dtype == np.float32
    assert pair.fixed_labels.array.dtype == pair.moving_labels.array.dtype == np.uint8
    assert pair.displacement.array.shape == (*pair.fixed.shape, dim)
    assert np.linalg.norm(pair.displacement.array, axis=-1).max() == pytest.approx(pair.max_displacement_mm, rel=1e-5)
    assert max_gradient_norm(pair.displacement) < 1.0
    # The brain, with its margin, stays clear of the image border.
    border = np.ones(pair.fixed.shape, bool)
    border[(slice(2, -2),) * dim] = False
    assert not pair.fixed_labels.array[border].any()


def test_pair_ground_truth_maps_moving_labels_onto_fixed_labels(pair):
    fixed = pair.fixed_labels.array
    registered = warp_image(pair.moving_labels, pair.displacement, interpolation="nearest").array
    for name, label in LABELS.items():
        after, before = dice(registered, fixed, label), dice(pair.moving_labels.array, fixed, label)
        # CSF is thin at 2-3 mm, and two nearest-neighbour resamplings (there and back) each
        # shift boundaries by up to half a voxel, so it keeps a little less overlap.
        assert after > (0.90 if name == "csf" else 0.95), (name, after)
        assert before < after - 0.1, (name, before, after)


@pytest.mark.parametrize("dim", [2, 3])
def test_mono_modal_pair_warps_back_onto_the_fixed_image(dim):
    pair = make_pair(dim=dim, fixed_contrast="t1", moving_contrast="t1", noise_free=True, seed=2)
    brain = pair.fixed_labels.array > 0

    def error(scale: float) -> float:
        field = pair.displacement.with_array(scale * pair.displacement.array)
        return float(np.abs(warp_image(pair.moving, field).array - pair.fixed.array)[brain].mean())

    assert error(1.0) < 0.5 * error(0.0)
    assert error(1.0) < 0.035
    assert error(1.0) < min(error(0.8), error(1.2))  # the true field, not a scaled one, fits best


def test_2d_pair_slices_keep_their_physical_positions():
    atlas = load_mni_atlas(2.0)
    for plane, normal in (("axial", 2), ("coronal", 1)):
        pair = make_pair(dim=2, plane=plane, slice_mm=10.0, seed=0)
        in_plane = [axis for axis in range(3) if axis != normal]
        labels = pair.fixed_labels
        indices = np.argwhere(np.ones(labels.shape, bool))[:, ::-1]
        points_2d = labels.geometry.index_to_physical(indices)
        points_3d = np.full((len(points_2d), 3), 10.0)
        points_3d[:, in_plane] = points_2d
        atlas_index = np.rint(atlas.geometry.physical_to_index(points_3d)).astype(int)
        inside = np.all((atlas_index >= 0) & (atlas_index < atlas.labels.shape[::-1]), axis=1)
        expected = np.zeros(len(points_2d), np.uint8)
        expected[inside] = atlas.labels.array[tuple(atlas_index[inside, ::-1].T)]
        assert np.array_equal(labels.array.ravel(), expected), plane
        assert np.allclose(np.abs(labels.geometry.direction_matrix), np.eye(2))


def test_pair_default_sizes_are_small():
    assert make_pair(dim=2).fixed.shape == (112, 80)
    assert make_pair(dim=3, seed=3).fixed.shape == (64, 80, 64)


def test_pairs_are_reproducible_from_the_seed():
    first, again, other = (make_pair(dim=2, seed=seed) for seed in (5, 5, 6))
    for name in ("fixed", "moving", "moving_labels", "displacement"):
        assert np.array_equal(getattr(first, name).array, getattr(again, name).array)
    assert not np.allclose(first.displacement.array, other.displacement.array)
    assert not np.allclose(first.fixed.array, other.fixed.array)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"dim": 4}, "dim=2 or dim=3"),
        ({"plane": "oblique"}, "plane"),
        ({"moving_contrast": "flair"}, "contrast"),
        ({"slice_mm": 500.0}, "outside"),
        ({"max_displacement_mm": 0.0}, "positive"),
    ],
)
def test_make_pair_rejects_bad_arguments(arguments, message):
    with pytest.raises(ImageError, match=message):
        make_pair(**arguments)


# --- ultrasound cine and dipy slice ------------------------------------------------------


@pytest.fixture(scope="module")
def echo():
    return load_echo_cine()


def test_echo_cine_frames_and_geometry(echo):
    assert echo.frames.shape == (120, 384, 512) and echo.num_frames == 120
    assert echo.frames.dtype == np.float32
    assert echo.frames.min() >= 0.0 and echo.frames.max() <= 1.0 and echo.frames.std() > 0.05
    assert echo.geometry.spacing == pytest.approx((0.5105, 0.5105), abs=1e-4)
    assert echo.geometry.origin == (0.0, 0.0)
    assert echo.frame_time_ms == pytest.approx(33.333)
    frame = echo.frame(7)
    assert frame.geometry == echo.geometry and np.array_equal(frame.array, echo.frames[7])
    with pytest.raises(ImageError, match="frame"):
        echo.frame(120)


def test_echo_crop_is_the_ultrasound_region_of_the_full_frames(echo):
    full = load_echo_cine(crop_to_region=False)
    assert full.frames.shape == (120, 480, 640)
    assert np.array_equal(full.frames[:, 31:415, 84:596], echo.frames)
    np.testing.assert_allclose(full.geometry.index_to_physical((84, 31)), (0.0, 0.0), atol=1e-9)


def test_echo_grey_level_is_the_luminance_of_the_rgb(echo):
    from pydicom.pixels import pixel_array

    rgb = pixel_array(package_file("data_store", "data", "color3d_jpeg_baseline.dcm"), index=0)
    luminance = rgb[31:415, 84:596].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    difference = np.abs(luminance - echo.frames[0])
    assert difference.mean() < 0.005 and difference.max() < 0.05


def test_dipy_coronal_slice():
    image = load_t1_coronal_slice()
    assert image.shape == (256, 256) and image.array.dtype == np.float32
    assert image.geometry.spacing == (1.0, 1.0)
    assert image.array.min() >= 0.0 and image.array.max() == pytest.approx(1.0)
