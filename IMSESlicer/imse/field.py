"""Displacement fields in mm: warping, composition, scaling and squaring, unit conversions,
spatial gradients and Jacobian determinants.

Conventions (see :mod:`imse.geometry`): images are tensors ``[N, C, (D,) H, W]``; a
displacement ``u`` is ``[N, dim, (D,) H, W]`` in mm, channel ``c`` along physical axis ``c``
(LPS x, y[, z]), defined on the fixed grid, and maps the fixed point ``p`` to the moving point
``p + u(p)`` (ITK's resampling convention). Sampling uses ``grid_sample`` with
``align_corners=True``, so index 0 and index ``n - 1`` are the centres of the first and last
voxels, as in ITK. This module is the only place where mm, voxel indices and ``grid_sample``'s
normalised coordinates are converted into one another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ImageError
from .geometry import Geometry

SAMPLING_MODES = {"linear": "bilinear", "nearest": "nearest"}
PADDING_MODES = ("border", "zeros", "reflection")


def _check_field(displacement: torch.Tensor, geometry: Geometry, name: str = "displacement") -> None:
    dim = geometry.dim
    if displacement.ndim != dim + 2 or displacement.shape[1] != dim:
        raise ImageError(
            f"{name} must be a tensor [N, {dim}, *spatial] for a {dim}D grid (one channel per "
            f"axis, in mm); got shape {tuple(displacement.shape)}."
        )


def _index_to_physical(geometry: Geometry, like: torch.Tensor) -> torch.Tensor:
    """``direction @ diag(spacing)`` as a tensor on the device and dtype of ``like``."""
    return torch.as_tensor(geometry.index_to_physical_matrix, dtype=like.dtype, device=like.device)


def index_grid(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """ITK-order voxel indices of a grid of NumPy-order ``shape``: ``[dim, *shape]``, channel 0
    the index along the last tensor axis (x), on the device and dtype of ``like``."""
    axes = [torch.arange(n, dtype=like.dtype, device=like.device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1])


def physical_points(shape: tuple[int, ...], geometry: Geometry, like: torch.Tensor) -> torch.Tensor:
    """Physical positions (mm, LPS) of the voxel centres of a grid of NumPy-order ``shape``:
    ``[dim, *shape]``, channel ``c`` the coordinate along physical axis ``c``."""
    origin = torch.as_tensor(geometry.origin, dtype=like.dtype, device=like.device)
    points = _apply_matrix(_index_to_physical(geometry, like), index_grid(shape, like), 0)
    return points + origin.view(-1, *([1] * geometry.dim))


def _apply_matrix(matrix: torch.Tensor, vectors: torch.Tensor, channel_axis: int = 1) -> torch.Tensor:
    """``matrix @ v`` for every vector ``v`` along ``channel_axis`` of ``vectors``."""
    return (vectors.movedim(channel_axis, -1) @ matrix.T).movedim(-1, channel_axis)


def displacement_to_voxels(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Convert a displacement from mm (physical axes) to voxel units along the ITK index axes
    of ``geometry``. Shape ``[N, dim, *spatial]`` in and out."""
    _check_field(displacement, geometry)
    return _apply_matrix(torch.linalg.inv(_index_to_physical(geometry, displacement)), displacement)


def displacement_to_mm(displacement_voxels: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Convert a displacement in voxel units along the ITK index axes of ``geometry`` to mm along
    the physical axes. Shape ``[N, dim, *spatial]`` in and out."""
    _check_field(displacement_voxels, geometry, "displacement_voxels")
    return _apply_matrix(_index_to_physical(geometry, displacement_voxels), displacement_voxels)


def warp(
    image: torch.Tensor,
    displacement: torch.Tensor,
    fixed: Geometry,
    moving: Geometry | None = None,
    mode: str = "linear",
    padding: str = "border",
) -> torch.Tensor:
    """Resample the moving ``image`` at ``p + u(p)`` for every voxel ``p`` of the fixed grid.

    Args:
        image: moving image ``[N, C, *moving_spatial]``, on the ``moving`` geometry.
        displacement: ``u`` in mm, ``[N, dim, *fixed_spatial]`` (or batch 1, broadcast), on the
            ``fixed`` geometry.
        fixed: geometry of the displacement's grid, which is the output grid.
        moving: geometry of ``image``; defaults to ``fixed`` (same grid).
        mode: ``linear`` or ``nearest`` (label maps).
        padding: value outside the moving image: ``border`` (nearest edge value), ``zeros`` or
            ``reflection``.

    Returns:
        The warped image ``[N, C, *fixed_spatial]``, differentiable in ``image`` and ``u``.
    """
    moving = fixed if moving is None else moving
    _check_field(displacement, fixed)
    if image.ndim != moving.dim + 2:
        raise ImageError(
            f"The image to warp must be a tensor [N, C, *spatial] for a {moving.dim}D grid; got "
            f"shape {tuple(image.shape)}."
        )
    if mode not in SAMPLING_MODES:
        raise ImageError(f"Unknown interpolation '{mode}'; choose one of {sorted(SAMPLING_MODES)}.")
    if padding not in PADDING_MODES:
        raise ImageError(f"Unknown padding '{padding}'; choose one of {list(PADDING_MODES)}.")
    fixed_shape = tuple(displacement.shape[2:])
    moving_shape = tuple(image.shape[2:])

    # Moving-grid index of p + u(p): inverse(A_m) (p + u(p) - o_m).
    to_moving_index = torch.linalg.inv(_index_to_physical(moving, displacement))
    moving_origin = torch.as_tensor(moving.origin, dtype=displacement.dtype, device=displacement.device)
    points = physical_points(fixed_shape, fixed, displacement) - moving_origin.view(-1, *([1] * fixed.dim))
    moving_index = _apply_matrix(to_moving_index, points.unsqueeze(0) + displacement)

    # grid_sample wants [N, *spatial, dim] in (x, y[, z]) order, normalised to [-1, 1].
    sizes = torch.as_tensor(moving_shape[::-1], dtype=displacement.dtype, device=displacement.device)
    scale = 2.0 / (sizes - 1).clamp(min=1)
    grid = moving_index.movedim(1, -1) * scale - 1.0
    if grid.shape[0] != image.shape[0]:
        grid = grid.expand(image.shape[0], *grid.shape[1:])
    return F.grid_sample(image, grid, mode=SAMPLING_MODES[mode], padding_mode=padding, align_corners=True)


def compose(first: torch.Tensor, second: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The displacement that moves a point by ``first`` and then by ``second``:
    ``c(p) = first(p) + second(p + first(p))``, all in mm on one grid ``[N, dim, *spatial]``.

    Warping by ``c`` equals warping by ``second`` and then by ``first``:
    ``warp(I, c) == warp(warp(I, second), first)``. Chaining frame-to-frame displacements
    ``u(0->1)``, ``u(1->2)`` therefore gives ``compose(u(0->1), u(1->2)) = u(0->2)``.
    """
    _check_field(second, geometry, "second")
    return first + warp(second, first, geometry, padding="border")


def integrate_velocity(velocity: torch.Tensor, geometry: Geometry, steps: int = 7) -> torch.Tensor:
    """Scaling and squaring: the displacement of the diffeomorphism ``exp(v)`` of a stationary
    velocity field ``v`` (mm, ``[N, dim, *spatial]``), by ``steps`` self-compositions of
    ``v / 2**steps``."""
    if steps < 0:
        raise ImageError(f"The number of scaling-and-squaring steps must be >= 0, got {steps}.")
    displacement = velocity / (2**steps)
    for _ in range(steps):
        displacement = compose(displacement, displacement, geometry)
    return displacement


def as_displacement(field: torch.Tensor, geometry: Geometry, diffeomorphic: bool, steps: int = 7) -> torch.Tensor:
    """The displacement (mm, ``[N, dim, *spatial]``) that ``field`` stands for: the field itself,
    or, when ``diffeomorphic``, the displacement of ``exp(field)`` with ``field`` a stationary
    velocity (:func:`integrate_velocity`, ``steps`` squarings)."""
    return integrate_velocity(field, geometry, steps) if diffeomorphic else field


def index_gradient(x: torch.Tensor) -> torch.Tensor:
    """Derivative of ``x`` ``[N, C, *spatial]`` along each voxel index axis, per voxel, by central
    differences (one-sided at the borders): ``[N, C, dim, *spatial]``, axis ``a`` being ITK index
    axis ``a`` (the last tensor axis first). Along an axis of one voxel (a single-slice volume) it
    is zero."""
    # torch.gradient returns the derivative along tensor axes (z, y, x): reverse to ITK order.
    per_axis = [torch.gradient(x, dim=axis)[0] if x.shape[axis] > 1 else torch.zeros_like(x) for axis in range(2, x.dim())][::-1]
    return torch.stack(per_axis, dim=2)


def spatial_gradient(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Physical gradient ``du_i / dx_j`` (unitless, mm per mm) by central differences (one-sided
    at the borders), honouring spacing and direction: ``[N, dim, dim, *spatial]`` with ``i``
    the displacement component and ``j`` the physical axis. Along an axis of one voxel (a
    single-slice volume) the derivative is zero."""
    _check_field(displacement, geometry)
    to_index = torch.linalg.inv(_index_to_physical(geometry, displacement))  # d index_a / d x_j
    return torch.einsum("nia...,aj->nij...", index_gradient(displacement), to_index)


def jacobian_determinant(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Determinant of the Jacobian of ``x -> x + u(x)`` in physical space: ``[N, 1, *spatial]``.
    1 means volume preserved, below 1 compression, <= 0 folding."""
    gradient = spatial_gradient(displacement, geometry)
    identity = torch.eye(geometry.dim, dtype=gradient.dtype, device=gradient.device)
    jacobian = gradient.movedim((1, 2), (-2, -1)) + identity
    return torch.linalg.det(jacobian).unsqueeze(1)
