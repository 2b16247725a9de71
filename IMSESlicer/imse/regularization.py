"""Smoothness penalties of displacement fields, in physical units.

Both take a displacement ``[N, dim, *spatial]`` in mm on ``geometry`` and use physical
derivatives (:func:`imse.field.spatial_gradient`), so the same weight means the same
smoothness whatever the voxel size or level of a pyramid.
"""

from __future__ import annotations

import torch

from .errors import ImageError
from .field import spatial_gradient
from .geometry import Geometry

REGULARIZERS = ("diffusion", "bending")


def diffusion_energy(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Mean over voxels of ``sum_ij (du_i/dx_j)^2`` (unitless); 0 for any translation."""
    return spatial_gradient(displacement, geometry).square().sum(dim=(1, 2)).mean()


def bending_energy(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Mean over voxels of ``sum_ijk (d2u_i/dx_j dx_k)^2`` (1/mm^2); 0 for any affine map."""
    gradient = spatial_gradient(displacement, geometry)  # [N, i, j, *spatial]
    second = spatial_gradient(gradient.flatten(0, 1), geometry)  # [N * i, j, k, *spatial]
    return second.square().sum(dim=(1, 2)).mean() * geometry.dim  # mean over voxels of the sum over i


def regularization(name: str, displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """The penalty called ``name`` (``diffusion`` or ``bending``)."""
    if name == "diffusion":
        return diffusion_energy(displacement, geometry)
    if name == "bending":
        return bending_energy(displacement, geometry)
    raise ImageError(f"Unknown regularisation '{name}'; choose one of {list(REGULARIZERS)}.")
