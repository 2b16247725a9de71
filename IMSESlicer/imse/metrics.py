"""Evaluation metrics: label overlap, surface distances, displacement-field errors and
regularity, and intensity similarity.

Every metric takes :class:`~imse.image.Image` objects, so the voxel spacing and direction are
at hand: distances are in mm, displacement gradients are physical (mm per mm). Two images that
are compared must lie on the same voxel grid (same size, spacing, origin and direction); if
they do not, resample one onto the other first (:func:`imse.image.resample_to`, with
``nearest`` interpolation for masks and label maps).

Masks, wherever one is accepted, are a binary :class:`Image` or array on the same grid. A mask
holding floating-point values selects the voxels above 0.5 (so a mask that was resampled with
linear interpolation keeps the voxels that are mostly inside); an integer or boolean mask
selects the non-zero voxels.

torch is only imported by the displacement-gradient metrics, so the other metrics work in an
environment without it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import ImageError
from .image import Image, check_finite, from_tensor, to_sitk, to_tensor

SSIM_SIGMA_VOXELS = 1.5
SSIM_RADIUS_VOXELS = 5  # an 11-voxel window along each axis, as in Wang et al. (2004)
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# --------------------------------------------------------------------------------------------
# Input checks shared by the metrics
# --------------------------------------------------------------------------------------------


def _check_same_grid(first: Image, second: Image, first_name: str, second_name: str) -> None:
    if first.shape != second.shape or not first.geometry.isclose(second.geometry):
        raise ImageError(
            f"{first_name} and {second_name} are not on the same voxel grid (sizes "
            f"{first.shape[::-1]} and {second.shape[::-1]}, spacings {first.geometry.spacing} "
            f"and {second.geometry.spacing} mm, origins {first.geometry.origin} and "
            f"{second.geometry.origin} mm). Resample one onto the other first (nearest-neighbour "
            "interpolation for masks and label maps)."
        )


def _as_boolean(image: Image, name: str) -> np.ndarray:
    """Binary version of a mask: > 0.5 for floating-point values, != 0 otherwise."""
    if image.is_vector:
        raise ImageError(f"{name} must be a single-valued image, not a vector field.")
    check_finite(image, name)
    if np.issubdtype(image.array.dtype, np.floating):
        return image.array > 0.5
    return image.array != 0


def _region(mask: Image | np.ndarray | None, reference: Image) -> np.ndarray:
    """The voxels of ``reference`` that a metric evaluates: all of them, or those of ``mask``."""
    if mask is None:
        return np.ones(reference.shape, dtype=bool)
    mask = mask if isinstance(mask, Image) else reference.with_array(np.asarray(mask))
    _check_same_grid(mask, reference, "The mask", "the image")
    region = _as_boolean(mask, "The mask")
    if not region.any():
        raise ImageError("The mask is empty: it selects no voxel. Use a mask that covers the region to evaluate.")
    return region


def _check_displacement(field: Image, name: str) -> None:
    if not field.is_vector or field.array.shape[-1] != field.dim:
        raise ImageError(
            f"{name} must be a displacement field with {field.dim} components (x, y[, z] in mm) per "
            f"voxel; got an array of shape {field.array.shape}."
        )
    check_finite(field, name)


def _check_scalar(image: Image, name: str) -> None:
    if image.is_vector:
        raise ImageError(f"{name} must be a single-valued image; got {image.array.shape[-1]} values per voxel.")
    check_finite(image, name)


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, median, 95th percentile and maximum of ``values``."""
    return {
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": float(np.max(values)),
    }


# --------------------------------------------------------------------------------------------
# Label overlap
# --------------------------------------------------------------------------------------------


def _label_values(labels: Image | np.ndarray, name: str) -> np.ndarray:
    values = labels.array if isinstance(labels, Image) else np.asarray(labels)
    if not (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ImageError(
                f"{name} holds values that are not whole numbers (or NaN). A label map stores one "
                "whole number per structure: check that a segmentation, not an intensity image, "
                "was chosen."
            )
    return values.astype(np.int64)


def dice(
    labels_a: Image | np.ndarray,
    labels_b: Image | np.ndarray,
    labels: Iterable[int] | None = None,
) -> dict[int, float]:
    """Dice overlap ``2 |A ∩ B| / (|A| + |B|)`` per label, between 0 (disjoint) and 1 (identical).

    Args:
        labels_a, labels_b: label maps (Images on the same grid, or integer arrays of the same
            shape); floating-point arrays are accepted when they hold whole numbers.
        labels: the labels to score; default every non-zero label present in either map.

    Returns:
        ``{label: dice}``. A label present in neither map gets no entry; a label present in one
        map only scores 0.0. Unitless; on one grid the voxel volume cancels out.
    """
    if isinstance(labels_a, Image) and isinstance(labels_b, Image):
        _check_same_grid(labels_a, labels_b, "The first label map", "the second label map")
    a = _label_values(labels_a, "The first label map")
    b = _label_values(labels_b, "The second label map")
    if a.shape != b.shape:
        raise ImageError(
            f"The label maps have different sizes ({a.shape} and {b.shape}). Resample one onto the "
            "other first (nearest-neighbour interpolation)."
        )
    if labels is None:
        labels = [label for label in np.union1d(np.unique(a), np.unique(b)) if label != 0]
    scores = {}
    for label in labels:
        in_a, in_b = a == label, b == label
        total = int(np.count_nonzero(in_a)) + int(np.count_nonzero(in_b))
        if total:
            scores[int(label)] = 2.0 * np.count_nonzero(in_a & in_b) / total
    return scores


# --------------------------------------------------------------------------------------------
# Surface distances
# --------------------------------------------------------------------------------------------


def _surface(mask: Image, name: str) -> sitk.Image:
    """The mask's surface voxels (inside the mask, with a face neighbour outside it) as a
    SimpleITK image carrying the mask's geometry."""
    binary = _as_boolean(mask, name)
    if not binary.any():
        raise ImageError(
            f"{name} is empty: it selects no voxel, so it has no surface to measure. Check that "
            "the right segmentation was chosen."
        )
    return sitk.LabelContour(to_sitk(mask.with_array(binary.astype(np.uint8))), fullyConnected=False)


def _distance_to(surface: sitk.Image) -> np.ndarray:
    """Distance (mm) from every voxel centre to the nearest voxel of ``surface`` (0 on it)."""
    signed = sitk.SignedMaurerDistanceMap(surface, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(signed), 0.0)


def _pooled_surface_distances(mask_a: Image, mask_b: Image) -> np.ndarray:
    """Distances (mm) from each surface voxel of A to the surface of B, and from each surface
    voxel of B to the surface of A, in one array."""
    _check_same_grid(mask_a, mask_b, "The first mask", "the second mask")
    surface_a = _surface(mask_a, "The first mask")
    surface_b = _surface(mask_b, "The second mask")
    on_a = sitk.GetArrayViewFromImage(surface_a) > 0
    on_b = sitk.GetArrayViewFromImage(surface_b) > 0
    return np.concatenate([_distance_to(surface_b)[on_a], _distance_to(surface_a)[on_b]])


def hausdorff_distance_95(mask_a: Image, mask_b: Image) -> float:
    """95th-percentile symmetric Hausdorff distance between two masks, in mm.

    The surface of a mask is its voxels that have a face neighbour outside it. The distance of
    a surface voxel to the other surface is the Euclidean distance (mm, spacing and direction
    honoured; the direction is taken to be a rotation or flip, as for any scanner image) between
    voxel centres. HD95 is the 95th percentile of the pooled distances of both directions
    (every surface voxel of A to B and every surface voxel of B to A).
    Voxel-based, so accurate to about one voxel. Masks: > 0.5 for floating-point values,
    != 0 otherwise; both on the same grid.
    """
    return float(np.percentile(_pooled_surface_distances(mask_a, mask_b), 95))


def average_surface_distance(mask_a: Image, mask_b: Image) -> float:
    """Symmetric average surface distance between two masks, in mm: the mean of the pooled
    distances of both directions, with surfaces and distances defined as in
    :func:`hausdorff_distance_95`."""
    return float(np.mean(_pooled_surface_distances(mask_a, mask_b)))


# --------------------------------------------------------------------------------------------
# Displacement fields
# --------------------------------------------------------------------------------------------


def endpoint_error(
    displacement: Image,
    reference: Image,
    mask: Image | np.ndarray | None = None,
) -> dict[str, float]:
    """End-point error ``|u(p) - u_ref(p)|`` (Euclidean norm, mm) between two displacement
    fields on the same grid, summarised over the voxels of ``mask`` (default all voxels).

    Returns ``{"mean", "median", "p95", "max"}`` in mm.
    """
    _check_displacement(displacement, "The displacement field")
    _check_displacement(reference, "The reference displacement field")
    _check_same_grid(displacement, reference, "The displacement field", "the reference displacement field")
    region = _region(mask, displacement)
    error = np.linalg.norm(displacement.array.astype(np.float64) - reference.array, axis=-1)
    return summarize(error[region])


def _displacement_tensor(displacement: Image):
    """The field as a float64 tensor ``[1, dim, *spatial]`` in mm, after checking it."""
    import torch

    _check_displacement(displacement, "The displacement field")
    return to_tensor(displacement, dtype=torch.float64)


def jacobian_determinant_map(displacement: Image) -> Image:
    """Determinant of the Jacobian of ``p -> p + u(p)`` at every voxel, physical (spacing and
    direction honoured), as a scalar Image on the field's grid. Unitless: 1 keeps volume,
    below 1 compresses, above 1 expands, <= 0 folds."""
    from .field import jacobian_determinant

    determinant = jacobian_determinant(_displacement_tensor(displacement), displacement.geometry)
    return from_tensor(determinant, displacement.geometry)


def folding_percentage(displacement: Image, mask: Image | np.ndarray | None = None) -> float:
    """Percentage (0-100) of the voxels of ``mask`` (default all) where the Jacobian
    determinant is <= 0, i.e. where the transformation folds space."""
    region = _region(mask, displacement)
    folded = jacobian_determinant_map(displacement).array <= 0
    return 100.0 * np.count_nonzero(folded & region) / np.count_nonzero(region)


def mean_gradient_magnitude(displacement: Image, mask: Image | np.ndarray | None = None) -> float:
    """Mean over ``mask`` (default all voxels) of the Frobenius norm of the physical displacement
    gradient ``du_i/dx_j`` (unitless, mm per mm; 0 for a translation)."""
    from .field import spatial_gradient

    region = _region(mask, displacement)
    gradient = spatial_gradient(_displacement_tensor(displacement), displacement.geometry)[0]
    magnitude = gradient.square().sum(dim=(0, 1)).sqrt().numpy()
    return float(magnitude[region].mean())


# --------------------------------------------------------------------------------------------
# Intensity similarity
# --------------------------------------------------------------------------------------------


def _intensity_pair(
    prediction: Image, truth: Image, mask: Image | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both images as float64 arrays, after checking them, and the evaluated region."""
    _check_scalar(prediction, "The predicted image")
    _check_scalar(truth, "The reference image")
    _check_same_grid(prediction, truth, "The predicted image", "the reference image")
    return prediction.array.astype(np.float64), truth.array.astype(np.float64), _region(mask, truth)


def _data_range(truth: np.ndarray, data_range: float | None) -> float:
    """``data_range``, or the reference image's intensity range (max - min over all voxels)."""
    value = float(truth.max() - truth.min()) if data_range is None else float(data_range)
    if not value > 0:
        raise ImageError(
            "The intensity range is zero: the reference image has a single value, so errors "
            "cannot be normalised. Pass data_range explicitly or check that the right image was chosen."
        )
    return value


def nmae(prediction: Image, truth: Image, mask: Image | np.ndarray | None = None) -> float:
    """Normalised mean absolute error: the mean of ``|prediction - truth|`` over ``mask``
    (default all voxels) divided by the reference's intensity range ``max - min`` (taken over
    the whole reference image, so that the mask only chooses the voxels averaged). Unitless;
    0 for identical images."""
    predicted, reference, region = _intensity_pair(prediction, truth, mask)
    return float(np.abs(predicted - reference)[region].mean() / _data_range(reference, None))


def psnr(
    prediction: Image,
    truth: Image,
    mask: Image | np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in dB, the mean squared
    error taken over ``mask`` (default all voxels). ``data_range`` defaults to the reference's
    intensity range ``max - min`` over the whole image. Infinite for identical images."""
    predicted, reference, region = _intensity_pair(prediction, truth, mask)
    peak = _data_range(reference, data_range)
    mse = float(np.square(predicted - reference)[region].mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def ssim(
    prediction: Image,
    truth: Image,
    mask: Image | np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Structural similarity (Wang et al., IEEE TIP 2004), 2D or 3D, between -1 and 1
    (1 for identical images).

    Local means, variances and covariance use a Gaussian window of sigma 1.5 voxels cut at 5
    voxels (11 voxels wide along each axis, in voxels, not mm) with mirrored edges;
    ``C1 = (0.01 L)**2`` and ``C2 = (0.03 L)**2`` with ``L = data_range``, by default the
    reference's intensity range ``max - min`` over the whole image. The SSIM map is averaged
    over ``mask`` (default all voxels); the windows still see the voxels around the mask.
    """
    predicted, reference, region = _intensity_pair(prediction, truth, mask)
    peak = _data_range(reference, data_range)

    def local_mean(values: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(values, SSIM_SIGMA_VOXELS, mode="reflect", radius=SSIM_RADIUS_VOXELS)

    mean_p, mean_t = local_mean(predicted), local_mean(reference)
    variance_p = local_mean(predicted * predicted) - mean_p * mean_p
    variance_t = local_mean(reference * reference) - mean_t * mean_t
    covariance = local_mean(predicted * reference) - mean_p * mean_t
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    ssim_map = ((2 * mean_p * mean_t + c1) * (2 * covariance + c2)) / (
        (mean_p**2 + mean_t**2 + c1) * (variance_p + variance_t + c2)
    )
    return float(ssim_map[region].mean())


def normalized_cross_correlation(first: Image, second: Image, mask: Image | np.ndarray | None = None) -> float:
    """Global Pearson correlation of the intensities of two images on one grid over ``mask``:
    1 for an increasing affine intensity relation, -1 for a decreasing one."""
    a, b, region = _intensity_pair(first, second, mask)
    a, b = a[region] - a[region].mean(), b[region] - b[region].mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if denominator == 0:
        raise ImageError("Correlation is undefined for a constant image (inside the mask).")
    return float((a * b).sum() / denominator)


def mutual_information(first: Image, second: Image, mask: Image | np.ndarray | None = None, bins: int = 32) -> float:
    """Mutual information (nats) of the intensities of two images on one grid over ``mask``,
    from a joint histogram of ``bins`` x ``bins`` equal-width bins spanning each image's range.
    Equals the entropy of the binned image for identical images; near 0 for independent ones."""
    a, b, region = _intensity_pair(first, second, mask)
    joint, _, _ = np.histogram2d(a[region], b[region], bins=bins)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())
