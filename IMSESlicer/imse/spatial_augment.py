"""Random spatial transforms for training pairs (the ``T1``, ``T2`` of the IMSE paper), 2D and 3D.

Everything here works on tensors in VOXEL units on an implicit unit grid
(``Geometry.identity(dim)``): a displacement is ``[N, dim, *shape]``, channel ``c`` along ITK
index axis ``c`` (channel 0 = x = the last tensor axis), and warping samples the input at
``p + u(p)`` (see :mod:`imse.field`). ``shape`` is always the spatial shape in NumPy order,
``(H, W)`` or ``(D, H, W)``.

The paper's 2D transform is an affine (per-axis scale 1 +/- 0.08, rotation +/- 3 degrees,
translation +/- 0.08 of the half-extent) followed by an elastic warp (uniform noise in
[-1, 1] per pixel and axis, Gaussian-smoothed with sigma 12 px, times alpha = 120). Smoothing
white noise shrinks its standard deviation by a factor that depends on the number of axes, so
the same alpha and sigma give a field about 6.5 times smaller in 3D (about 0.25 voxel instead
of 1.64 px): :func:`elastic_alpha_for_dim` gives the alpha that keeps the 2D magnitude, and it
is the default.

Random numbers come only from the ``generator`` passed in, which must live on ``device``.
"""

from __future__ import annotations

import math

import torch

from .errors import ImageError
from .field import compose, index_grid, warp
from .filters import GAUSSIAN_TRUNCATE, gaussian_kernel, gaussian_smooth
from .geometry import Geometry

PAPER_ELASTIC_ALPHA = 120.0
PAPER_ELASTIC_SIGMA = 12.0
UNIFORM_NOISE_VARIANCE = 1.0 / 3.0  # variance of U(-1, 1)

# Planes (pairs of ITK axes) of the elementary rotations, applied in this order: in 3D about
# x (the y-z plane), then y (z-x), then z (x-y).
ROTATION_PLANES = {2: ((0, 1),), 3: ((1, 2), (2, 0), (0, 1))}


def _check_shape(shape: tuple[int, ...], batch: int) -> int:
    """The number of axes of a valid spatial ``shape``."""
    if len(shape) not in ROTATION_PLANES or any(int(n) < 1 for n in shape):
        raise ImageError(f"Spatial transforms need a 2D or 3D shape of positive sizes; got {tuple(shape)}.")
    if batch < 1:
        raise ImageError(f"The batch size must be at least 1, got {batch}.")
    return len(shape)


def _uniform(low: float, high: float, size: tuple[int, ...], generator: torch.Generator, device, dtype) -> torch.Tensor:
    return torch.rand(size, generator=generator, device=device, dtype=dtype) * (high - low) + low


# --- Gaussian smoothing --------------------------------------------------------------------


def elastic_displacement_std(dim: int, alpha: float, sigma: float) -> float:
    """Standard deviation (voxels, per component) of :func:`random_elastic_displacement`.

    Each component is ``alpha * (g * n)`` with ``n`` i.i.d. U(-1, 1) (variance 1/3) and ``g``
    the separable kernel, so its variance is ``alpha**2 / 3 * (sum_k g1[k]**2) ** dim``; the
    continuous limit of ``sum g1**2`` is ``1 / (2 sqrt(pi) sigma)``. At alpha 120, sigma 12:
    1.64 px in 2D, 0.25 voxel in 3D.
    """
    kernel_energy = float((gaussian_kernel(sigma) ** 2).sum())
    return alpha * math.sqrt(UNIFORM_NOISE_VARIANCE * kernel_energy**dim)


def elastic_alpha_for_dim(dim: int, sigma: float = PAPER_ELASTIC_SIGMA, alpha_2d: float = PAPER_ELASTIC_ALPHA) -> float:
    """The alpha that gives a ``dim``-D elastic field the standard deviation (in voxels) of the
    2D field with ``alpha_2d`` and the same ``sigma``: ``alpha_2d`` in 2D, and in 3D
    ``alpha_2d / sqrt(sum g1**2)``, about ``alpha_2d * sqrt(2 sqrt(pi) sigma)`` (781 at the
    paper's alpha 120, sigma 12)."""
    return alpha_2d * elastic_displacement_std(2, 1.0, sigma) / elastic_displacement_std(dim, 1.0, sigma)


def random_elastic_width(dim: int, sigma_range: tuple[float, float], generator: torch.Generator) -> tuple[float, float]:
    """``(sigma, alpha)`` of an elastic warp whose Gaussian width ``sigma`` (voxels) is drawn
    uniformly in ``sigma_range`` (nothing is drawn when its ends are equal) and whose ``alpha``
    gives the displacement the standard deviation of the paper's 2D field (alpha 120, sigma 12:
    1.64 voxels) whatever the width and dimension: narrower warps are more local, not larger."""
    low, high = (float(v) for v in sigma_range)
    sigma = low if low == high else low + (high - low) * float(torch.rand(1, generator=generator, device=generator.device))
    paper_std = elastic_displacement_std(2, PAPER_ELASTIC_ALPHA, PAPER_ELASTIC_SIGMA)
    return sigma, elastic_alpha_for_dim(dim, sigma) * (paper_std / elastic_displacement_std(2, PAPER_ELASTIC_ALPHA, sigma))


def random_elastic_displacement(
    shape: tuple[int, ...],
    batch: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    alpha: float | None = None,
    sigma: float = PAPER_ELASTIC_SIGMA,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Smooth random displacement ``[N, dim, *shape]`` in voxels: uniform noise in [-1, 1] per
    voxel and axis, Gaussian-smoothed with ``sigma`` (voxels), times ``alpha``.

    ``alpha=None`` means :func:`elastic_alpha_for_dim`: the paper's 120 in 2D (std about 1.6
    px at sigma 12) and the alpha giving the same std in voxels in 3D. Pass ``alpha=120`` in
    3D for the reference code's much milder 3D field (about 0.25 voxel).

    The noise is drawn on a grid larger by the kernel radius on each side and convolved without
    padding, so the field's statistics are the same up to the borders (no padding artefacts)
    for any shape, even one smaller than the kernel.
    """
    dim = _check_shape(shape, batch)
    device = generator.device if device is None else device
    alpha = elastic_alpha_for_dim(dim, sigma) if alpha is None else alpha
    radius = math.ceil(GAUSSIAN_TRUNCATE * sigma)
    padded_shape = tuple(n + 2 * radius for n in shape)
    noise = _uniform(-1.0, 1.0, (batch, dim, *padded_shape), generator, device, dtype)
    return alpha * gaussian_smooth(noise, sigma, padding="valid")


# --- Affine -------------------------------------------------------------------------------


def _rotation_matrices(angles: torch.Tensor, dim: int) -> torch.Tensor:
    """``[N, dim, dim]`` rotations from ``angles`` ``[N, planes]`` (radians), one per plane of
    ``ROTATION_PLANES[dim]``, composed in that order."""
    rotation = torch.eye(dim, dtype=angles.dtype, device=angles.device).expand(angles.shape[0], dim, dim)
    for angle, (i, j) in zip(angles.unbind(1), ROTATION_PLANES[dim]):
        plane = torch.eye(dim, dtype=angles.dtype, device=angles.device).repeat(angles.shape[0], 1, 1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        plane[:, i, i], plane[:, i, j], plane[:, j, i], plane[:, j, j] = cos, -sin, sin, cos
        rotation = plane @ rotation
    return rotation


def random_affine_parameters(
    shape: tuple[int, ...],
    batch: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    scale: float = 0.08,
    rotation_degrees: float = 3.0,
    translation: float = 0.08,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random affine maps in voxel space, all parameters uniform and independent per sample:
    matrix ``R @ diag(s)`` ``[N, dim, dim]`` (ITK axis order) with per-axis scales
    ``s in [1 - scale, 1 + scale]`` and ``R`` a rotation by ``+/- rotation_degrees`` (in 3D
    about x, then y, then z, each angle drawn independently), and a translation ``[N, dim]``
    of ``+/- translation`` times the half-extent ``(n - 1) / 2`` of each axis, in voxels.

    The rotation is a true rotation in voxel space, whatever the aspect ratio of ``shape``.
    """
    dim = _check_shape(shape, batch)
    device = generator.device if device is None else device
    scales = _uniform(1.0 - scale, 1.0 + scale, (batch, dim), generator, device, dtype)
    max_angle = math.radians(rotation_degrees)
    angles = _uniform(-max_angle, max_angle, (batch, len(ROTATION_PLANES[dim])), generator, device, dtype)
    half_extent = (torch.tensor(shape[::-1], dtype=dtype, device=device) - 1) / 2
    shifts = _uniform(-translation, translation, (batch, dim), generator, device, dtype) * half_extent
    return _rotation_matrices(angles, dim) * scales.unsqueeze(1), shifts


def affine_displacement(matrix: torch.Tensor, translation: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Displacement ``[N, dim, *shape]`` (voxels) of the affine map about the grid centre
    ``c = (n - 1) / 2``: ``p -> c + matrix @ (p - c) + translation``, i.e.
    ``u(p) = (matrix - I) @ (p - c) + translation``; ``matrix`` ``[N, dim, dim]`` and
    ``translation`` ``[N, dim]`` in ITK axis order and voxels."""
    dim = len(shape)
    centre = (torch.tensor(shape[::-1], dtype=matrix.dtype, device=matrix.device) - 1) / 2
    centred = index_grid(tuple(shape), matrix) - centre.view(dim, *([1] * dim))
    linear = matrix - torch.eye(dim, dtype=matrix.dtype, device=matrix.device)
    return torch.einsum("nij,j...->ni...", linear, centred) + translation.view(*translation.shape, *([1] * dim))


def random_affine_displacement(
    shape: tuple[int, ...],
    batch: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    scale: float = 0.08,
    rotation_degrees: float = 3.0,
    translation: float = 0.08,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random affine displacement ``[N, dim, *shape]`` in voxels, about the image centre:
    :func:`affine_displacement` of :func:`random_affine_parameters` (the paper's magnitudes by
    default)."""
    matrix, shift = random_affine_parameters(
        shape, batch, generator, device, scale, rotation_degrees, translation, dtype
    )
    return affine_displacement(matrix, shift, shape)


# --- Both, and warping --------------------------------------------------------------------


def random_spatial_transform(
    shape: tuple[int, ...],
    batch: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    scale: float = 0.08,
    rotation_degrees: float = 3.0,
    translation: float = 0.08,
    alpha: float | None = None,
    sigma: float = PAPER_ELASTIC_SIGMA,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The paper's random transform ``[N, dim, *shape]`` in voxels: the image is moved by a
    random affine and then by a random elastic warp (defaults: the paper's 2D magnitudes, and in
    3D an elastic alpha giving the same size in voxels, see :func:`elastic_alpha_for_dim`).

    Warping by the result equals warping by the affine and then warping that by the elastic
    field, so it is ``compose(elastic, affine)``: ``u(p) = e(p) + a(p + e(p))``. The affine is
    drawn from ``generator`` first, then the elastic field.
    """
    affine = random_affine_displacement(
        shape, batch, generator, device, scale, rotation_degrees, translation, dtype
    )
    elastic = random_elastic_displacement(shape, batch, generator, device, alpha, sigma, dtype)
    return compose(elastic, affine, Geometry.identity(len(shape)))


def apply_displacement(
    image: torch.Tensor, displacement_voxels: torch.Tensor, mode: str = "linear", padding: str = "border"
) -> torch.Tensor:
    """Warp ``image`` ``[N, C, *shape]`` by a displacement ``[N, dim, *shape]`` in voxels (or
    batch 1, broadcast): the output at ``p`` is the image at ``p + u(p)``. ``mode`` is
    ``linear`` or ``nearest``; ``padding`` is ``border``, ``zeros`` or ``reflection``."""
    unit_grid = Geometry.identity(displacement_voxels.ndim - 2)
    return warp(image, displacement_voxels, unit_grid, mode=mode, padding=padding)


def random_flips(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x`` ``[N, C, *shape]`` with each sample flipped along each spatial axis with
    probability one half (drawn per sample and axis), so a network learns the symmetry that
    :class:`imse.networks.FlipAveraged` otherwise imposes at test time."""
    for axis in range(2, x.dim()):
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
        x = torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(axis), x)
    return x


def rotation_margin_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The size ``(H, W)`` or ``(D, H, W)`` of an image that still covers a centred ``shape``
    after any rotation about its centre (each side at least the crop's diagonal plus two voxels,
    with the crop's parity so that the crop is centred exactly): what :func:`random_rotations`
    needs."""
    diagonal = math.sqrt(sum(n * n for n in shape))
    return tuple(n + 2 * math.ceil((diagonal - n) / 2 + 1) for n in shape)


def random_rotations(x: torch.Tensor, generator: torch.Generator, degrees: float, shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` ``[N, C, *larger]`` with each sample rotated about its centre by a random angle,
    uniform in ``+/- degrees`` (in 3D about x, then y, then z, each angle drawn independently),
    linearly interpolated, and cropped about the centre to ``shape``: a network trained on the
    result learns the orientations that :class:`imse.networks.RotationAveraged` averages over
    at test time. ``larger`` is :func:`rotation_margin_shape` of ``shape`` (or larger by an even
    number of voxels per axis, so that the crop is centred exactly), so that no voxel of the
    crop comes from outside ``x``."""
    larger = tuple(x.shape[2:])
    if len(larger) != len(shape) or any(big < need or (big - need) % 2 for big, need in zip(larger, rotation_margin_shape(shape))):
        raise ImageError(
            f"Rotating to a {tuple(shape)} crop needs an input of {rotation_margin_shape(shape)} (or larger by an even number of voxels per axis), got {larger}."
        )
    matrix, _ = random_affine_parameters(larger, x.shape[0], generator, x.device, scale=0.0, rotation_degrees=degrees, translation=0.0, dtype=x.dtype)
    rotated = apply_displacement(x, affine_displacement(matrix, torch.zeros_like(matrix[:, 0]), larger))
    crop = tuple(slice((big - n) // 2, (big - n) // 2 + n) for big, n in zip(larger, shape))
    return rotated[(slice(None), slice(None), *crop)]
