"""Image similarity losses for registration: one interface for every measure.

Every loss compares a ``fixed`` and a ``moving`` tensor ``[N, 1, *spatial]`` (2D ``(H, W)`` or
3D ``(D, H, W)``, the same shape, floating point) and returns a **dissimilarity** to minimise:
lower means more similar. Each is a stateless function and a thin :class:`torch.nn.Module`
with the same options, whose ``forward(fixed, moving, mask=None)`` calls it, so that the
registration engine can treat all of them alike (:func:`build_similarity`).

* ``mask``: optional voxel weights ``[N, 1, *spatial]`` (or ``[1, 1, *spatial]``, shared by the
  batch), boolean or floating point, >= 0. A loss is the mask-weighted mean of its voxelwise
  terms (for MI: of the voxels' contributions to the joint histogram). A mask that selects
  no voxel of some sample raises :class:`~imse.errors.ImageError`.
* ``reduction``: ``"mean"`` (over the batch, a scalar), ``"sum"`` (a scalar) or ``"none"``
  (one value per sample, ``[N]``); the voxel-wise measures (``mse``, ``mae``, ``lncc``,
  ``mind``, ``imse``) also take ``"voxel"``: the term at every voxel, ``[N, 1, *spatial]``
  (averaged over descriptor channels, not masked), whose mask-weighted mean is the loss; the
  global ones (``ncc``, ``mi``) refuse it.
* Windows, patches and shifts are in voxels of the tensors' grid: the engine evaluates the
  losses on its working grid, whose spacing it chooses.
* Bad shapes and unknown options raise :class:`~imse.errors.ImageError` naming the valid
  choices.

Which loss for which pair (the names of :data:`SIMILARITIES`):

=========  =============================  ===============================================
name       modalities                     value at perfect alignment
=========  =============================  ===============================================
``mse``    same, same intensity scale     0
``mae``    same, same intensity scale     0
``ncc``    linearly related intensities   -1 (increasing relation)
``lncc``   locally linearly related       near -1 in textured regions, 0 in flat ones
``mi``     any (statistical dependence)   -MI (or -NMI): as low as the images allow
``mind``   any (local structure)          0
``imse``   any (learned evaluator)        0 for a perfect evaluator
=========  =============================  ===============================================

Names joined by ``+`` (``mind+imse``) give their weighted sum (:class:`WeightedSum`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ImageError
from .filters import separable_filter
from .networks import FlipAveraged, OrientationCycled, RotationAveraged, Zoomed, evaluator_fits, network_dimension

REDUCTIONS = ("mean", "sum", "none")
#: The voxel-wise similarities (MSE, MAE, LNCC, MIND, IMSE) also take ``voxel``: their cost at
#: every voxel, ``[N, 1, *spatial]`` (see :mod:`imse.guidance` and :mod:`imse.discrete`).
VOXEL_REDUCTIONS = REDUCTIONS + ("voxel",)
KERNELS = ("box", "gaussian")
PARZEN_WINDOWS = ("bspline", "gaussian")
MIND_DISTANCES = ("l2", "l1")
REFERENCES = ("fixed", "moving")
#: How the IMSE similarity shows the evaluator its flips and turns: all of them at every call
#: (their mean), or one a demons step in turn (:class:`~imse.networks.OrientationCycled`).
ORIENTATIONS = ("average", "cycle")
#: How a 2D evaluator sees volumes: slices across their first spatial axis, or across each of
#: their three axes (averaged, or one axis a demons step with the orientations cycled). The
#: shipped 2D evaluator was trained on slices across all three axes of the MNI volume.
SLICE_AXES = {"first": (0,), "all": (0, 1, 2)}
#: Tolerance on the [-1, 1] range that the evaluator's inputs must respect.
IMSE_RANGE_TOLERANCE = 1e-3

# --------------------------------------------------------------------------------------------
# Shared checks and helpers
# --------------------------------------------------------------------------------------------


def _check_pair(fixed: torch.Tensor, moving: torch.Tensor) -> int:
    """Check two images ``[N, 1, *spatial]`` of one shape; returns the spatial dimension."""
    for name, image in (("fixed", fixed), ("moving", moving)):
        if not isinstance(image, torch.Tensor):
            raise ImageError(f"The {name} image must be a torch tensor [N, 1, *spatial], got {type(image).__name__}.")
        if image.ndim not in (4, 5) or image.shape[1] != 1:
            raise ImageError(
                f"The {name} image must be a tensor [N, 1, H, W] (2D) or [N, 1, D, H, W] (3D) with one "
                f"channel; got shape {tuple(image.shape)}."
            )
        if not image.is_floating_point():
            raise ImageError(f"The {name} image must hold floating-point intensities, got {image.dtype}.")
    if fixed.shape != moving.shape:
        raise ImageError(
            f"The fixed and moving images must have the same shape (resample the moving image onto "
            f"the fixed grid first); got {tuple(fixed.shape)} and {tuple(moving.shape)}."
        )
    if fixed.device != moving.device:
        raise ImageError(f"The fixed and moving images are on different devices ({fixed.device}, {moving.device}).")
    return fixed.ndim - 2


def _check_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """The mask as weights of ``like``'s dtype, ``[N or 1, 1, *spatial]``; raises ImageError for
    a wrong shape or a sample whose mask selects no voxel."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ImageError(f"The mask must be a torch tensor [N, 1, *spatial], got {type(mask).__name__}.")
    batch = like.shape[0]
    if mask.ndim != like.ndim or mask.shape[1] != 1 or mask.shape[2:] != like.shape[2:] or mask.shape[0] not in (1, batch):
        raise ImageError(
            f"The mask must have shape [{batch} (or 1), 1, {', '.join(map(str, like.shape[2:]))}] like the "
            f"images; got {tuple(mask.shape)}."
        )
    weights = mask.to(device=like.device, dtype=like.dtype)
    totals = weights.flatten(1).sum(1)
    if bool((totals <= 0).any()):
        raise ImageError("The mask selects no voxel (in at least one sample): use a mask that covers the anatomy.")
    return weights


def _check_choice(value, choices: Sequence, name: str) -> None:
    if value not in choices:
        raise ImageError(f"Unknown {name} '{value}'; choose one of {list(choices)}.")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _reduce_voxels(values: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Voxel-wise ``values`` ``[N, C, *spatial]`` reduced (one of :data:`VOXEL_REDUCTIONS`, which
    the caller checked before computing them): ``voxel`` keeps each voxel's mean over the
    channels, ``[N, 1, *spatial]`` (unmasked); the others take the mask-weighted mean of each
    sample (:func:`_weighted_mean`), then :func:`_reduce`."""
    if reduction == "voxel":
        return values.mean(1, keepdim=True)
    return _reduce(_weighted_mean(values, mask), reduction)


def _check_global_reduction(reduction: str, name: str) -> None:
    """Refuse ``voxel`` for a measure of the whole image, saying which ones have voxel values."""
    if reduction == "voxel":
        raise ImageError(f"{name} measures the whole image and has no voxel-wise value; reduction 'voxel' is for {', '.join(VOXEL_SIMILARITIES)}.")
    _check_choice(reduction, REDUCTIONS, "reduction")


def _weighted_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean of ``values`` ``[N, C, *spatial]`` over channels and voxels, each voxel
    weighted by ``mask`` ``[N or 1, 1, *spatial]``: ``[N]``."""
    if mask is None:
        return values.flatten(1).mean(1)
    mask = mask.expand(values.shape[0], 1, *values.shape[2:])
    return (values * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * values.shape[1])


def _as_sizes(value, dim: int, name: str) -> tuple[int, ...]:
    """An int or one int per spatial axis (NumPy order) as a tuple of ``dim`` ints."""
    sizes = (value,) * dim if isinstance(value, int) else tuple(value)
    if len(sizes) != dim or not all(isinstance(v, int) for v in sizes):
        raise ImageError(f"{name} must be an integer or {dim} integers (one per axis), got {value!r}.")
    return sizes


def _kernel_1d(kind: str, radius: int, like: torch.Tensor) -> torch.Tensor:
    """A normalised 1D window of ``2 * radius + 1`` taps: ``box`` (uniform) or ``gaussian``
    (sigma = radius / 2, so truncated at 2 sigma)."""
    offsets = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    if kind == "box" or radius == 0:
        kernel = torch.ones_like(offsets)
    else:
        kernel = torch.exp(-0.5 * (offsets / (radius / 2.0)) ** 2)
    return kernel / kernel.sum()


# --------------------------------------------------------------------------------------------
# Mono-modal: MSE, MAE
# --------------------------------------------------------------------------------------------


def mse(fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Mean squared intensity difference, ``>= 0``, 0 for identical images. For images of the
    same modality and intensity scale (units: intensity squared)."""
    _check_pair(fixed, moving)
    _check_choice(reduction, VOXEL_REDUCTIONS, "reduction")
    return _reduce_voxels((fixed - moving) ** 2, _check_mask(mask, fixed), reduction)


def mae(fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute intensity difference, ``>= 0``, 0 for identical images; less sensitive to
    outliers than :func:`mse`. For images of the same modality and intensity scale."""
    _check_pair(fixed, moving)
    _check_choice(reduction, VOXEL_REDUCTIONS, "reduction")
    return _reduce_voxels((fixed - moving).abs(), _check_mask(mask, fixed), reduction)


# --------------------------------------------------------------------------------------------
# Correlation: NCC, LNCC
# --------------------------------------------------------------------------------------------


def ncc(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    eps: float = 1e-10,
) -> torch.Tensor:
    """Negative global normalised cross-correlation (Pearson's correlation coefficient) of the
    voxels' intensities, in ``[-1, 1]``: -1 when ``moving = a * fixed + b`` with ``a > 0``, +1
    when ``a < 0``, 0 when uncorrelated. Invariant to a linear intensity change of either
    image. ``eps`` guards constant images (their correlation is taken as 0)."""
    _check_pair(fixed, moving)
    _check_global_reduction(reduction, "NCC")
    mask = _check_mask(mask, fixed)
    mean_f, mean_m = _weighted_mean(fixed, mask), _weighted_mean(moving, mask)
    centred_f = fixed - mean_f.view(-1, *[1] * (fixed.ndim - 1))
    centred_m = moving - mean_m.view(-1, *[1] * (moving.ndim - 1))
    covariance = _weighted_mean(centred_f * centred_m, mask)
    variances = _weighted_mean(centred_f**2, mask) * _weighted_mean(centred_m**2, mask)
    return _reduce(-covariance / variances.clamp_min(eps).sqrt(), reduction)


def _standardised(image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``image`` minus its (weighted) mean over each sample, divided by its standard deviation
    (1 for a constant image): local moments of order-1 values lose little to rounding."""
    mean = _weighted_mean(image, weights).view(-1, *[1] * (image.ndim - 1))
    centred = image - mean
    std = _weighted_mean(centred**2, weights).sqrt().view(-1, *[1] * (image.ndim - 1))
    return centred / torch.where(std > 0, std, torch.ones_like(std))


def lncc(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    mask: torch.Tensor | None = None,
    window: int | Sequence[int] = 9,
    kernel: str = "box",
    reduction: str = "mean",
    eps: float = 1e-5,
) -> torch.Tensor:
    """Negative local normalised cross-correlation, squared as in VoxelMorph, in ``[-1, 0]``.

    At every voxel the squared correlation ``cov^2 / (var_f * var_m + eps)`` of the two images
    within a window of ``window`` voxels per axis (an odd int, or one per axis in NumPy order)
    is computed from local moments by separable convolutions; the loss is minus its
    (mask-weighted) mean. ``kernel`` ``box`` weighs the window uniformly, ``gaussian`` with
    sigma = half the window's radius. Squaring makes it blind to the sign of the local relation
    (like ANTs' CC), so it suits same-modality pairs with smoothly varying intensity scaling.

    Windows see only the voxels inside the image and, with a ``mask``, inside the mask (local
    moments are mask-weighted and renormalised), so voxels outside the mask do not influence
    the loss at all. Each image is first standardised (its own mean and standard deviation
    over the mask), so the loss is invariant to a linear intensity change of either image and
    ``eps``, added to the product of the two local variances, is relative to the global
    variances: it makes flat windows count as uncorrelated (0) and damps near-flat ones.

    References: Avants et al., "Symmetric diffeomorphic image registration with
    cross-correlation", Medical Image Analysis 12 (2008); Balakrishnan et al., "VoxelMorph",
    IEEE TMI 38 (2019).
    """
    dim = _check_pair(fixed, moving)
    _check_choice(reduction, VOXEL_REDUCTIONS, "reduction")
    _check_choice(kernel, KERNELS, "kernel")
    sizes = _as_sizes(window, dim, "window")
    if any(size < 3 or size % 2 == 0 for size in sizes):
        raise ImageError(f"The LNCC window must be odd and at least 3 voxels, got {window!r}.")
    weights = _check_mask(mask, fixed)
    weights = torch.ones_like(fixed) if weights is None else weights.expand_as(fixed)
    kernels = [_kernel_1d(kernel, size // 2, fixed) for size in sizes]
    f, m, w = _standardised(fixed, weights), _standardised(moving, weights), weights
    moments = separable_filter(torch.cat([w, w * f, w * m, w * f * f, w * m * m, w * f * m], 1), kernels, "zeros")
    total = moments[:, :1].clamp_min(torch.finfo(fixed.dtype).tiny)
    mean_f, mean_m, mean_ff, mean_mm, mean_fm = (moments[:, c : c + 1] / total for c in range(1, 6))
    covariance = mean_fm - mean_f * mean_m
    var_f = (mean_ff - mean_f**2).clamp_min(0.0)
    var_m = (mean_mm - mean_m**2).clamp_min(0.0)
    squared_correlation = covariance**2 / (var_f * var_m + eps)
    return _reduce_voxels(-squared_correlation, weights, reduction)


# --------------------------------------------------------------------------------------------
# Mutual information
# --------------------------------------------------------------------------------------------


def _to_unit_range(image: torch.Tensor, mask: torch.Tensor | None, value_range) -> torch.Tensor:
    """Intensities mapped to [0, 1]: ``value_range`` ``(low, high)`` maps linearly and clips;
    ``None`` uses each sample's own minimum and maximum (inside the mask), without gradient."""
    if value_range is not None:
        low, high = value_range
        return ((image - low) / (high - low)).clamp(0.0, 1.0)
    flat = image.detach().flatten(1)
    if mask is not None:
        inside = mask.expand_as(image).flatten(1) > 0
        low = torch.where(inside, flat, torch.full_like(flat, math.inf)).amin(1)
        high = torch.where(inside, flat, torch.full_like(flat, -math.inf)).amax(1)
    else:
        low, high = flat.amin(1), flat.amax(1)
    shape = (-1, *[1] * (image.ndim - 1))
    scale = (high - low).clamp_min(torch.finfo(image.dtype).eps)
    return ((image - low.view(shape)) / scale.view(shape)).clamp(0.0, 1.0)


def _gaussian_joint(
    f: torch.Tensor, m: torch.Tensor, voxel_weights: torch.Tensor | None, bins: int, sigma: float
) -> torch.Tensor:
    """Unnormalised joint histogram ``[N, bins, bins]`` of intensities ``[N, V]`` in [0, 1] with
    Gaussian Parzen weights of ``sigma`` bins, normalised per voxel over the bins (dense)."""

    def weights(values: torch.Tensor) -> torch.Tensor:  # [N, bins, V]
        centres = torch.linspace(0.0, 1.0, bins, dtype=values.dtype, device=values.device)
        kernel = torch.exp(-0.5 * ((values[:, None, :] - centres[None, :, None]) * ((bins - 1) / sigma)) ** 2)
        return kernel / kernel.sum(1, keepdim=True)

    weights_f = weights(f)
    if voxel_weights is not None:
        weights_f = weights_f * voxel_weights[:, None, :]
    return torch.bmm(weights_f, weights(m).transpose(1, 2))


def _cubic_bspline_taps(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 bins that a cubic B-spline Parzen window centred on each intensity ``[N, V]`` in
    [0, 1] touches, and its weights there: ``(index [N, V, 4] (int64), weight [N, V, 4])``.
    Taps beyond the first or last bin are folded onto it, so the weights of a voxel sum to 1."""
    position = values * (bins - 1)  # continuous bin coordinate in [0, bins - 1]
    taps = torch.floor(position.detach()).unsqueeze(-1) + torch.arange(-1, 3, dtype=values.dtype, device=values.device)
    distance = (position.unsqueeze(-1) - taps).abs()
    weight = torch.where(
        distance < 1.0,
        2.0 / 3.0 - distance**2 + 0.5 * distance**3,
        torch.where(distance < 2.0, (2.0 - distance).clamp_min(0.0) ** 3 / 6.0, torch.zeros_like(distance)),
    )
    return taps.long().clamp(0, bins - 1), weight


def _bspline_joint(f: torch.Tensor, m: torch.Tensor, voxel_weights: torch.Tensor | None, bins: int) -> torch.Tensor:
    """Unnormalised joint histogram ``[N, bins, bins]`` with cubic B-spline Parzen windows: each
    voxel adds ``w_f(a) w_m(b)`` to the 4 x 4 bins around its pair of intensities (sparse)."""
    index_f, weight_f = _cubic_bspline_taps(f, bins)
    index_m, weight_m = _cubic_bspline_taps(m, bins)
    if voxel_weights is not None:
        weight_f = weight_f * voxel_weights.unsqueeze(-1)
    batch = f.shape[0]
    flat_index = (index_f.unsqueeze(-1) * bins + index_m.unsqueeze(-2)).reshape(batch, -1)
    contributions = (weight_f.unsqueeze(-1) * weight_m.unsqueeze(-2)).reshape(batch, -1)
    joint = torch.zeros(batch, bins * bins, dtype=f.dtype, device=f.device).scatter_add(1, flat_index, contributions)
    return joint.view(batch, bins, bins)


def _check_histogram_options(bins, parzen, sigma, value_range) -> None:
    if not isinstance(bins, int) or bins < 4:
        raise ImageError(f"The number of histogram bins must be an integer >= 4, got {bins!r}.")
    _check_choice(parzen, PARZEN_WINDOWS, "Parzen window")
    if not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ImageError(f"The Gaussian Parzen window width (sigma, in bins) must be positive, got {sigma!r}.")
    if value_range is not None and not (len(value_range) == 2 and value_range[1] > value_range[0]):
        raise ImageError(f"value_range must be (low, high) with high > low, or None; got {value_range!r}.")


def joint_histogram(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    mask: torch.Tensor | None = None,
    bins: int = 32,
    parzen: str = "bspline",
    sigma: float = 0.5,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
) -> torch.Tensor:
    """Differentiable joint intensity histogram (a probability table summing to 1) of
    ``[N, 1, *spatial]`` images: ``[N, bins, bins]``, rows the fixed image's bins, columns the
    moving image's. Each voxel spreads unit mass (times its mask weight) with a Parzen window.
    See :func:`mutual_information` for the options."""
    _check_pair(fixed, moving)
    _check_histogram_options(bins, parzen, sigma, value_range)
    mask = _check_mask(mask, fixed)
    dtype = torch.promote_types(fixed.dtype, torch.float32)  # half precision is too coarse here
    f = _to_unit_range(fixed.to(dtype), mask, value_range).flatten(1)
    m = _to_unit_range(moving.to(dtype), mask, value_range).flatten(1)
    if mask is not None:
        voxel_weights = mask.to(dtype).expand_as(fixed).flatten(1)
        total = voxel_weights.sum(1)
    else:
        voxel_weights = None
        total = torch.full((f.shape[0],), float(f.shape[1]), dtype=dtype, device=f.device)
    if parzen == "bspline":
        joint = _bspline_joint(f, m, voxel_weights, bins)
    else:
        joint = _gaussian_joint(f, m, voxel_weights, bins, sigma)
    return joint / total.view(-1, 1, 1)


def _entropy(probabilities: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    tiny = torch.finfo(probabilities.dtype).tiny
    return -(probabilities * probabilities.clamp_min(tiny).log()).sum(dims)


def mutual_information(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    mask: torch.Tensor | None = None,
    bins: int = 32,
    parzen: str = "bspline",
    sigma: float = 0.5,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    normalized: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative mutual information of the two images' intensities (nats), from a differentiable
    Parzen-window joint histogram; for any pair of modalities whose intensities are
    statistically related. ``MI = H(F) + H(M) - H(F, M) >= 0``, largest at alignment, so the
    loss is ``-MI <= 0``. With ``normalized`` it is minus Studholme's normalised MI
    ``(H(F) + H(M)) / H(F, M)``, in ``[-2, -1]``, less sensitive to the overlap of the images.

    Binning: ``bins`` equally spaced bin centres span ``value_range`` (the first bin centre at
    its low end, the last at its high end); intensities outside it are clipped. The default
    (-1, 1) suits images already normalised to [-1, 1] (:func:`imse.image.normalize_intensity`);
    ``None`` maps each image's own (in-mask) minimum and maximum to the ends instead (the ends
    carry no gradient). Each voxel contributes unit mass (times its mask weight), spread over
    neighbouring bins by a Parzen window, so the histogram, and the loss, are differentiable in
    both images:

    * ``parzen="bspline"`` (default; Mattes et al.): a cubic B-spline one bin wide per unit,
      touching 4 bins per image, so a voxel updates 16 joint bins (``scatter_add``); memory
      about ``16 * N * voxels`` indices and weights, whatever ``bins``. Taps beyond the first
      or last bin fold onto it. On CUDA the float atomics make the last digits nondeterministic.
    * ``parzen="gaussian"``: a Gaussian of ``sigma`` bin widths over all bins, normalised per
      voxel; dense, memory ``2 * bins * N * voxels`` values (fine for working grids of up to a
      few hundred thousand voxels), deterministic (a batched matrix product).

    References: Viola & Wells, "Alignment by maximization of mutual information", IJCV 24
    (1997); Maes et al., IEEE TMI 16 (1997); Mattes et al., "PET-CT image registration in the
    chest using free-form deformations", IEEE TMI 22 (2003) (B-spline Parzen-window MI);
    Studholme et al., Pattern Recognition 32 (1999) (normalised MI).
    """
    _check_global_reduction(reduction, "Mutual information")
    joint = joint_histogram(fixed, moving, mask, bins, parzen, sigma, value_range)
    h_f = _entropy(joint.sum(2), (1,))
    h_m = _entropy(joint.sum(1), (1,))
    h_joint = _entropy(joint, (1, 2))
    value = (h_f + h_m) / h_joint.clamp_min(torch.finfo(joint.dtype).tiny) if normalized else h_f + h_m - h_joint
    return _reduce(-value.to(fixed.dtype), reduction)


# --------------------------------------------------------------------------------------------
# MIND-SSC
# --------------------------------------------------------------------------------------------


def _ssc_offsets(dim: int, dilation: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Pairs of neighbours of the self-similarity context: the 2 * dim neighbours at
    ``+-dilation`` along each axis, paired two by two except opposite ones (12 pairs in 3D,
    4 in 2D), each as two offsets in NumPy axis order."""
    neighbours = []
    for axis in range(dim):
        for sign in (-1, 1):
            offset = [0] * dim
            offset[axis] = sign * dilation
            neighbours.append(tuple(offset))
    return [
        (a, b)
        for i, a in enumerate(neighbours)
        for b in neighbours[i + 1 :]
        if any(x + y != 0 for x, y in zip(a, b))
    ]


def mind_ssc_descriptor(image: torch.Tensor, radius: int = 1, dilation: int = 2, kernel: str = "box") -> torch.Tensor:
    """The MIND-SSC descriptor of ``image`` ``[N, 1, *spatial]``: ``[N, P, *spatial]`` with
    ``P = 12`` channels in 3D and 4 in 2D, values in ``(0, 1]``.

    Self-similarity context: for every pair ``(a, b)`` of the ``2 * dim`` neighbours at
    ``+-dilation`` voxels along the axes (opposite neighbours excluded), the patch distance
    ``D_ab(x) = sum_p K(p) (I(x + a + p) - I(x + b + p))^2`` with a normalised patch kernel ``K``
    of ``2 * radius + 1`` voxels per axis (``box``, or ``gaussian`` with sigma = radius / 2),
    computed by shifting (edge replication) and separable convolution. Then
    ``D <- D - min_pairs D``, the local variance estimate ``V = mean_pairs D`` (clamped to
    [0.001, 1000] times its mean over the image, so flat regions are well defined) and the
    descriptor is ``exp(-D / V)``. It depends on local structure, not on the intensity mapping,
    so descriptors of two modalities can be compared directly.

    References: Heinrich et al., "MIND: Modality independent neighbourhood descriptor for
    multi-modal deformable registration", Medical Image Analysis 16 (2012); Heinrich et al.,
    "Towards realtime multimodal fusion for image-guided interventions using self-similarities",
    MICCAI 2013 (self-similarity context, SSC).
    """
    if not isinstance(image, torch.Tensor) or image.ndim not in (4, 5) or image.shape[1] != 1:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ImageError(f"MIND needs an image tensor [N, 1, H, W] or [N, 1, D, H, W]; got {shape}.")
    _check_choice(kernel, KERNELS, "kernel")
    if not isinstance(radius, int) or radius < 0 or not isinstance(dilation, int) or dilation < 1:
        raise ImageError(f"MIND needs an integer patch radius >= 0 and dilation >= 1; got {radius!r} and {dilation!r}.")
    dim = image.ndim - 2
    padded = F.pad(image, [dilation] * (2 * dim), mode="replicate")
    spatial = image.shape[2:]

    def shifted(offset: tuple[int, ...]) -> torch.Tensor:  # I(x + offset)
        index = tuple(slice(dilation + o, dilation + o + n) for o, n in zip(offset, spatial))
        return padded[(slice(None), slice(None), *index)]

    differences = torch.cat([(shifted(a) - shifted(b)) ** 2 for a, b in _ssc_offsets(dim, dilation)], 1)
    distances = separable_filter(differences, [_kernel_1d(kernel, radius, image)] * dim, "replicate")
    distances = distances - distances.amin(1, keepdim=True)
    variance = distances.mean(1, keepdim=True)
    typical = variance.flatten(1).mean(1).clamp_min(torch.finfo(image.dtype).tiny).view(-1, *[1] * (dim + 1))
    variance = torch.minimum(torch.maximum(variance, 0.001 * typical), 1000.0 * typical)
    return torch.exp(-distances / variance)


def mind_ssc(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    mask: torch.Tensor | None = None,
    radius: int = 1,
    dilation: int = 2,
    kernel: str = "box",
    distance: str = "l2",
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean squared (``distance="l2"``) or absolute (``"l1"``) difference of the MIND-SSC
    descriptors of the two images (:func:`mind_ssc_descriptor`), averaged over the descriptor's
    channels and the (mask-weighted) voxels: ``>= 0``, 0 when the local structure agrees
    everywhere, whatever the two modalities. A voxel's descriptor sees the image within
    ``dilation + radius`` voxels of it, so a mask weights the descriptor differences but voxels
    just outside the mask still influence those near its border.
    """
    _check_pair(fixed, moving)
    _check_choice(reduction, VOXEL_REDUCTIONS, "reduction")
    _check_choice(distance, MIND_DISTANCES, "distance")
    mask = _check_mask(mask, fixed)
    values = _descriptor_distance(mind_ssc_descriptor(fixed, radius, dilation, kernel), mind_ssc_descriptor(moving, radius, dilation, kernel), distance)
    return _reduce_voxels(values, mask, reduction)


def _descriptor_distance(fixed_descriptor: torch.Tensor, moving_descriptor: torch.Tensor, distance: str) -> torch.Tensor:
    """Squared (``l2``) or absolute (``l1``) difference of two descriptors, channel by channel."""
    difference = fixed_descriptor - moving_descriptor
    return difference**2 if distance == "l2" else difference.abs()


# --------------------------------------------------------------------------------------------
# IMSE: the learned evaluator's similarity
# --------------------------------------------------------------------------------------------


def _check_evaluator_inputs(fixed: torch.Tensor, moving: torch.Tensor, network: nn.Module) -> None:
    """Raise ImageError unless ``network`` is an evaluator that fits the pair's dimension and
    both images are normalised to [-1, 1]."""
    dim = _check_pair(fixed, moving)
    if not isinstance(network, nn.Module):
        raise ImageError(f"The imse similarity needs an evaluator network (a torch Module), got {type(network).__name__}.")
    network_dim = network_dimension(network)
    if network_dim is not None and not evaluator_fits(network_dim, dim):
        raise ImageError(f"The evaluator network is {network_dim}D but the images are {dim}D; use a {dim}D evaluator.")
    for name, image in (("fixed", fixed), ("moving", moving)):
        if bool((image.detach().abs() > 1.0 + IMSE_RANGE_TOLERANCE).any()):
            raise ImageError(
                f"The {name} image has intensities outside [-1, 1]; the evaluator needs images normalised "
                "to [-1, 1] (imse.image.normalize_intensity)."
            )


def imse(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    network: nn.Module,
    mask: torch.Tensor | None = None,
    reference: str = "fixed",
    both_orders: bool = False,
    reduction: str = "mean",
    slice_axes: Sequence[int] = (0,),
) -> torch.Tensor:
    """The IMSE similarity: the mean magnitude ``|E([other, reference])|`` of a frozen evaluator
    ``network``'s signed output (:func:`imse.evaluator.predict`), ``>= 0``, 0 for a perfect
    evaluator at perfect alignment. Units: half the normalised intensity range.

    ``reference`` says which image is in the evaluator's trained modality and goes in channel 1:
    ``"fixed"`` (channel order ``[moving, fixed]``) or ``"moving"`` (``[fixed, moving]``).
    ``both_orders`` averages ``|E|`` over the two channel orders, for evaluators trained on both
    modalities. A 2D evaluator compares 3D images slice by slice across their first spatial
    axis, or across each of ``slice_axes`` with its output averaged (:func:`predict_across`).
    Both images must already be normalised to [-1, 1]
    (:func:`imse.image.normalize_intensity`), as in training. The network sees the whole images
    (its receptive field crosses a mask's border); the mask weights ``|E|``. Gradients flow to
    both images; put the network in ``eval()`` mode and freeze it
    (``requires_grad_(False)``), as :class:`IMSESimilarity` does.

    Reference: Kong et al., "Indescribable Multi-modal Spatial Evaluator", CVPR 2023.
    """
    _check_choice(reduction, VOXEL_REDUCTIONS, "reduction")
    _check_choice(reference, REFERENCES, "reference")
    _check_evaluator_inputs(fixed, moving, network)
    mask = _check_mask(mask, fixed)
    other, trained = (moving, fixed) if reference == "fixed" else (fixed, moving)
    magnitude = predict_across(network, other, trained, slice_axes).abs()
    if both_orders:
        magnitude = 0.5 * (magnitude + predict_across(network, trained, other, slice_axes).abs())
    return _reduce_voxels(magnitude, mask, reduction)


def predict_across(network: nn.Module, other: torch.Tensor, reference: torch.Tensor, slice_axes: Sequence[int]) -> torch.Tensor:
    """The evaluator's signed output (:func:`imse.evaluator.predict`), ``[N, 1, *spatial]``; a
    2D network given volumes sees their slices across each spatial axis of ``slice_axes`` (0, 1,
    2: D, H, W), and the outputs are averaged. One pass for images, and for a 3D network."""
    from .evaluator import predict  # imported here: the evaluator module pulls in SimpleITK

    if other.dim() != 5 or network_dimension(network) != 2:
        return predict(network, other, reference)
    return torch.stack([predict(network, other, reference, axis) for axis in slice_axes]).mean(0)


# --------------------------------------------------------------------------------------------
# Modules and the registry
# --------------------------------------------------------------------------------------------


class _Similarity(nn.Module):
    """Base of the similarity modules: ``forward(fixed, moving, mask=None)`` returns the loss.
    ``voxelwise``: whether the measure has a value at every voxel (``reduction="voxel"``)."""

    voxelwise = True

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if self.voxelwise:
            _check_choice(reduction, VOXEL_REDUCTIONS, "reduction")
        else:
            _check_global_reduction(reduction, type(self).__name__)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self._options().items())

    def _options(self) -> dict:
        return {"reduction": self.reduction}


class MSE(_Similarity):
    """:func:`mse` as a module."""

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return mse(fixed, moving, mask, self.reduction)

    def in_common_modality(self, fixed: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair in one modality, whose difference is the demons' residual
        (:mod:`imse.demons`): for a mono-modal measure, the images themselves."""
        _check_pair(fixed, moving)
        return fixed, moving


class MAE(_Similarity):
    """:func:`mae` as a module."""

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return mae(fixed, moving, mask, self.reduction)


class NCC(_Similarity):
    """:func:`ncc` (negative global normalised cross-correlation) as a module."""

    voxelwise = False

    def __init__(self, reduction: str = "mean", eps: float = 1e-10) -> None:
        super().__init__(reduction)
        self.eps = eps

    def _options(self) -> dict:
        return {"eps": self.eps, **super()._options()}

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return ncc(fixed, moving, mask, self.reduction, self.eps)


class LNCC(_Similarity):
    """:func:`lncc` (negative squared local normalised cross-correlation) as a module."""

    def __init__(self, window: int | Sequence[int] = 9, kernel: str = "box", reduction: str = "mean", eps: float = 1e-5) -> None:
        super().__init__(reduction)
        _check_choice(kernel, KERNELS, "kernel")
        self.window, self.kernel, self.eps = window, kernel, eps

    def _options(self) -> dict:
        return {"window": self.window, "kernel": self.kernel, "eps": self.eps, **super()._options()}

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return lncc(fixed, moving, mask, self.window, self.kernel, self.reduction, self.eps)


class MutualInformation(_Similarity):
    """:func:`mutual_information` (negative Parzen-window MI, or NMI) as a module."""

    voxelwise = False

    def __init__(
        self,
        bins: int = 32,
        parzen: str = "bspline",
        sigma: float = 0.5,
        value_range: tuple[float, float] | None = (-1.0, 1.0),
        normalized: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        _check_histogram_options(bins, parzen, sigma, value_range)
        self.bins, self.parzen, self.sigma = bins, parzen, sigma
        self.value_range, self.normalized = value_range, normalized

    def _options(self) -> dict:
        options = {"bins": self.bins, "parzen": self.parzen, "sigma": self.sigma}
        options.update(value_range=self.value_range, normalized=self.normalized)
        return {**options, **super()._options()}

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        options = (self.bins, self.parzen, self.sigma, self.value_range, self.normalized, self.reduction)
        return mutual_information(fixed, moving, mask, *options)


class MINDSSC(_Similarity):
    """:func:`mind_ssc` (difference of MIND-SSC descriptors) as a module."""

    def __init__(
        self, radius: int = 1, dilation: int = 2, kernel: str = "box", distance: str = "l2", reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        _check_choice(kernel, KERNELS, "kernel")
        _check_choice(distance, MIND_DISTANCES, "distance")
        self.radius, self.dilation, self.kernel, self.distance = radius, dilation, kernel, distance

    def _options(self) -> dict:
        options = {"radius": self.radius, "dilation": self.dilation, "kernel": self.kernel, "distance": self.distance}
        return {**options, **super()._options()}

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return mind_ssc(fixed, moving, mask, self.radius, self.dilation, self.kernel, self.distance, self.reduction)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The MIND-SSC descriptor of ``image`` ``[N, 1, *spatial]``: ``[N, C, *spatial]``. With
        :meth:`feature_cost`, it lets a caller that compares one fixed image with many warped
        ones (the discrete optimiser) describe the fixed image once."""
        return mind_ssc_descriptor(image, self.radius, self.dilation, self.kernel)

    def feature_cost(self, fixed_features: torch.Tensor, moving_features: torch.Tensor) -> torch.Tensor:
        """The voxel-wise cost ``[N, 1, *spatial]`` of two descriptors from :meth:`features`."""
        return _reduce_voxels(_descriptor_distance(fixed_features, moving_features, self.distance), None, "voxel")


class IMSESimilarity(_Similarity):
    """:func:`imse` with a frozen evaluator network: the module puts ``network`` in eval mode and
    switches off its parameters' gradients (in place), and holds it as a submodule, so
    ``.to(device)`` moves it. ``reference``: which of fixed/moving is in the evaluator's trained
    modality (channel 1); ``both_orders`` averages the two channel orders; ``flip_average``
    averages the evaluator over the flips of the images' axes
    (:class:`~imse.networks.FlipAveraged`: 4 times the work in 2D, 8 in 3D); ``rotation``
    (degrees, 0: none) averages it over in-plane rotations by 0 and +-``rotation``
    (:class:`~imse.networks.RotationAveraged`: 3 times the work); ``zoom`` shows
    the evaluator the images zoomed by that factor (:class:`~imse.networks.Zoomed`; 1: as
    they are), e.g. 2 on a 2 mm grid for the shipped 2D evaluator to see 1 mm voxels, with
    ``flip_average`` (zoomed alone, it drove the demons worse than unzoomed). ``orientations``
    ``"cycle"`` shows the evaluator those flips and turns one a demons step, in turn, instead of
    their mean at every call (:class:`~imse.networks.OrientationCycled`: the work of one pass;
    each :meth:`in_common_modality` call, one a step, moves on to the next orientation, and the
    demons average them over their steps). ``slice_axes`` (:data:`SLICE_AXES`) ``"all"`` shows
    a 2D evaluator a volume's slices across each of its three axes, not the first alone: their
    mean at every call, 3 times the work, or with ``orientations`` ``"cycle"`` one axis a step,
    advancing with the flips and turns (4 flips and 3 axes: 12 steps show every combination;
    with turns, each axis keeps one turn). No effect on images; refused with a 3D evaluator.
    Slices across a volume's other axes have its voxels' aspect: use it on isotropic grids."""

    def __init__(
        self,
        network: nn.Module,
        reference: str = "fixed",
        both_orders: bool = False,
        flip_average: bool = False,
        zoom: float = 1.0,
        rotation: float = 0.0,
        orientations: str = "average",
        slice_axes: str = "first",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if not isinstance(network, nn.Module):
            raise ImageError(
                "The imse similarity needs network=<the evaluator's torch Module>, e.g. "
                f"imse.evaluator.Evaluator.load(...).network; got {type(network).__name__}."
            )
        _check_choice(reference, REFERENCES, "reference")
        _check_choice(orientations, ORIENTATIONS, "orientations")
        _check_choice(slice_axes, tuple(SLICE_AXES), "slice_axes")
        if slice_axes != "first" and network_dimension(network) == 3:
            raise ImageError(
                "Slicing volumes across all their axes is for a 2D evaluator, and this one is 3D: "
                "leave slice_axes at 'first', or register with a 2D evaluator."
            )
        network = network.eval().requires_grad_(False)
        self._cycle = None  # the orientation cycle, advanced once a demons step; its count picks the slicing axis
        if orientations == "cycle":
            network = self._cycle = OrientationCycled(network, flip_average, rotation)
        else:
            network = FlipAveraged(network) if flip_average else network
            network = RotationAveraged(network, rotation) if rotation != 0 else network
        self.network = Zoomed(network, zoom) if zoom != 1 else network
        self.reference, self.both_orders, self.flip_average = reference, both_orders, flip_average
        self.zoom, self.rotation, self.orientations = float(zoom), float(rotation), orientations
        self.slice_axes = slice_axes

    def train(self, mode: bool = True) -> "IMSESimilarity":
        """The evaluator stays in eval mode whatever the mode of the enclosing model."""
        super().train(mode)
        self.network.eval()
        return self

    def _options(self) -> dict:
        options = {
            "reference": self.reference,
            "both_orders": self.both_orders,
            "flip_average": self.flip_average,
            "zoom": self.zoom,
            "rotation": self.rotation,
            "orientations": self.orientations,
            "slice_axes": self.slice_axes,
        }
        return {**options, **super()._options()}

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return imse(fixed, moving, self.network, mask, self.reference, self.both_orders, self.reduction, SLICE_AXES[self.slice_axes])

    @torch.no_grad()
    def in_common_modality(self, fixed: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair in the evaluator's trained modality, ``[N, 1, *spatial]`` each, whose
        difference is the demons' residual (:mod:`imse.demons`): the image in that modality, and
        the other one as the evaluator sees it there, ``reference - 2 E([other, reference])``
        (the reference-guided translation, unclamped), so that ``fixed - moving`` is ``2 E`` or
        ``-2 E``. Inputs as for :func:`imse`."""
        if self.both_orders:
            raise ImageError(
                "The demons need the pair in one modality, and both_orders averages two: register with "
                "reference 'fixed' or 'moving' alone, or with another optimizer."
            )
        _check_evaluator_inputs(fixed, moving, self.network)
        axes = SLICE_AXES[self.slice_axes]
        if self._cycle is not None:  # cycling: this step's axis alone
            axes = (axes[self._cycle.advances % len(axes)],)
        if self.reference == "fixed":
            pair = fixed, fixed - 2.0 * predict_across(self.network, moving, fixed, axes)
        else:
            pair = moving - 2.0 * predict_across(self.network, fixed, moving, axes), moving
        if self._cycle is not None:
            self._cycle.advance()  # the next demons step sees the next orientation and axis
        return pair


class WeightedSum(nn.Module):
    """A combined similarity: ``sum_i weight_i * term_i(fixed, moving, mask)`` over similarity
    modules, e.g. MIND plus the IMSE evaluator (``build_similarity("mind+imse", ...)``)."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ImageError("A combined similarity needs at least one term.")
        self.weights = [float(weight) for weight, _ in terms]
        self.terms = nn.ModuleList([term for _, term in terms])

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return sum(weight * term(fixed, moving, mask) for weight, term in zip(self.weights, self.terms))


#: The similarity names that :func:`build_similarity` knows, with their module classes.
SIMILARITIES: dict[str, type[_Similarity]] = {
    "mse": MSE,
    "mae": MAE,
    "ncc": NCC,
    "lncc": LNCC,
    "mi": MutualInformation,
    "mind": MINDSSC,
    "imse": IMSESimilarity,
}
#: The names of the similarities with a value at every voxel (their class's ``voxelwise``).
VOXEL_SIMILARITIES = tuple(name for name, module in SIMILARITIES.items() if module.voxelwise)
#: The names of the similarities that give a residual in one modality, which the demons need
#: (their class's ``in_common_modality``).
RESIDUAL_SIMILARITIES = tuple(name for name, module in SIMILARITIES.items() if hasattr(module, "in_common_modality"))


def similarity_terms(name: str) -> list[str]:
    """The similarity names in ``name``: one (``"mind"``) or several joined by ``+``
    (``"mind+imse"``), lower-cased; raises ImageError for an unknown one."""
    terms = [term.strip().lower() for term in str(name).split("+")]
    unknown = [term for term in terms if term not in SIMILARITIES]
    if unknown or len(set(terms)) != len(terms):
        raise ImageError(
            f"Unknown similarity '{name}'; choose one of {sorted(SIMILARITIES)}, or several different ones "
            "joined by '+' (e.g. 'mind+imse')."
        )
    return terms


def build_similarity(name: str, weights: dict[str, float] | None = None, **options) -> nn.Module:
    """The similarity module registered under ``name`` (one of :data:`SIMILARITIES`) with the
    given options (the keyword arguments of its function, except the images and the mask).
    ``imse`` needs ``network=`` (the frozen evaluator network). Unknown names or options raise
    :class:`~imse.errors.ImageError` listing the valid ones.

    Several names joined by ``+`` build a :class:`WeightedSum`: each option goes to every term
    that accepts it (``reference`` to ``imse``, ``window`` to ``lncc``, ...), and ``weights``
    maps a term's name to its weight (1 when not given)."""
    terms = similarity_terms(name)
    weights = dict(weights or {})
    if len(terms) == 1 and not weights:
        return _build_one(terms[0], options)
    unknown_weights = sorted(set(weights) - set(terms))
    if unknown_weights:
        raise ImageError(f"Weights given for {unknown_weights}, which are not terms of '{name}' ({terms}).")
    accepted = {term: _option_names(SIMILARITIES[term]) for term in terms}
    unused = sorted(set(options) - set().union(*accepted.values()))
    if unused:
        raise ImageError(f"Unknown option(s) {unused} for the '{name}' similarity; valid options: {sorted(set().union(*accepted.values()))}.")
    return WeightedSum(
        [(weights.get(term, 1.0), _build_one(term, {k: v for k, v in options.items() if k in accepted[term]})) for term in terms]
    )


def _option_names(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _build_one(key: str, options: dict) -> nn.Module:
    valid = _option_names(SIMILARITIES[key])
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ImageError(f"Unknown option(s) {unknown} for the '{key}' similarity; valid options: {valid}.")
    if key == "imse" and "network" not in options:
        raise ImageError(
            "The 'imse' similarity needs network=<the evaluator's torch Module> (for example "
            "imse.evaluator.Evaluator.load(...).network)."
        )
    return SIMILARITIES[key](**options)


__all__ = [
    "IMSESimilarity",
    "KERNELS",
    "LNCC",
    "MAE",
    "MINDSSC",
    "MSE",
    "MutualInformation",
    "NCC",
    "PARZEN_WINDOWS",
    "REDUCTIONS",
    "VOXEL_REDUCTIONS",
    "VOXEL_SIMILARITIES",
    "RESIDUAL_SIMILARITIES",
    "SIMILARITIES",
    "WeightedSum",
    "build_similarity",
    "imse",
    "joint_histogram",
    "lncc",
    "mae",
    "mind_ssc",
    "mind_ssc_descriptor",
    "mse",
    "mutual_information",
    "ncc",
    "similarity_terms",
]
