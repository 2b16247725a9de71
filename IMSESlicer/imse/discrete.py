"""Discrete optimisation of a dense displacement: a gradient-free alternative to Adam.

At each step the moving image is warped by the current displacement plus each of a few
candidate constant shifts (every combination of ``-radius..radius`` steps along each voxel axis
of the level grid, zero among them); each candidate's voxel-wise cost (a similarity built with
``reduction="voxel"``, :mod:`imse.similarity`) is smoothed by a Gaussian, and every voxel moves
by the soft minimum of its candidates: the mean of the shifts weighted by
``softmax(-cost / (temperature * spread))``, where ``spread`` is the mean over the level of each
voxel's standard deviation across the candidates. The field is then smoothed, which
regularises it as in demons, and the steps shrink through a schedule. It is the search of
deeds (Heinrich et al.) without its graph: no gradient of the similarity is taken, so
similarities that are flat or noisy at the voxel scale, such as MIND, land nearer their
minimum than Adam takes them (see the README's registration tables).
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch

from .errors import ImageError
from .field import as_displacement, warp
from .filters import optional_gaussian_smooth


def candidate_shifts(dim: int, radius: int, step: float) -> torch.Tensor:
    """Every constant shift with ``-radius..radius`` steps of ``step`` along each axis:
    ``[(2 radius + 1) ** dim, dim]`` in the unit of ``step``, zero among them and the set
    symmetric about it."""
    if radius < 1 or not step > 0:
        raise ImageError(f"The shifts need a radius of at least 1 step and a positive step; got {radius} and {step}.")
    steps = itertools.product(range(-radius, radius + 1), repeat=dim)
    return torch.tensor(list(steps), dtype=torch.float32) * step


@torch.no_grad()
def shift_costs(
    cost_of_warped: Callable[[torch.Tensor], torch.Tensor],
    moving: torch.Tensor,
    displacement: torch.Tensor,
    geometries: tuple,
    shifts: torch.Tensor,
    smoothing_voxels: float,
) -> torch.Tensor:
    """The smoothed voxel-wise cost of each of ``shifts`` ``[K, dim]`` (mm):
    ``[1, K, *fixed_spatial]``, when the ``moving`` image ``[1, 1, *moving_spatial]`` is warped
    by ``displacement`` ``[1, dim, *fixed_spatial]`` (mm, on the fixed grid) plus that shift.

    ``cost_of_warped(warped)`` gives the voxel-wise cost ``[1, 1, *fixed_spatial]`` of the warped
    image against the fixed one; ``geometries`` are (fixed, moving)
    :class:`~imse.geometry.Geometry`; the Gaussian's width ``smoothing_voxels`` is in voxels
    (0: none)."""
    fixed_geometry, moving_geometry = geometries
    costs = []
    for shift in shifts.to(displacement):
        warped = warp(moving, displacement + shift.view(1, -1, *[1] * (displacement.dim() - 2)), fixed_geometry, moving_geometry)
        costs.append(optional_gaussian_smooth(cost_of_warped(warped), smoothing_voxels))
    return torch.cat(costs, 1)


def cost_against(cost: torch.nn.Module, fixed: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``warped -> cost(fixed, warped)`` for a voxel-wise similarity module. One that describes
    an image on its own (MIND: ``features`` and ``feature_cost``) describes ``fixed`` once here
    rather than at every call."""
    describe = getattr(cost, "features", None)
    if describe is None:
        return lambda warped: cost(fixed, warped)
    fixed_features = describe(fixed)
    return lambda warped: cost.feature_cost(fixed_features, describe(warped))


def soft_minimum_shift(costs: torch.Tensor, shifts: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each voxel's soft-minimum shift ``[1, dim, *spatial]`` (the unit of ``shifts``) from the
    candidates' ``costs`` ``[1, K, *spatial]`` and ``shifts`` ``[K, dim]``: the shifts weighted
    by ``softmax(-cost / (temperature * spread))`` (``spread``: see the module docstring). A
    voxel whose candidates all cost the same stays where it is (the shifts are symmetric)."""
    if not temperature > 0:
        raise ImageError(f"The discrete optimiser's temperature must be positive; got {temperature}.")
    spread = costs.std(1).mean().clamp_min(torch.finfo(costs.dtype).tiny)
    weights = torch.softmax(-(costs - costs.amin(1, keepdim=True)) / (temperature * spread), 1)
    return torch.einsum("bk...,kd->bd...", weights, shifts.to(costs))


def discrete_stage(level, index: int, initial: torch.Tensor, cost: torch.nn.Module, settings, tracker) -> torch.Tensor:
    """Run the discrete search on one pyramid level (a ``register._Level``) from the parameter
    ``initial`` ``[1, dim, *level_shape]`` (the unsmoothed displacement in mm, or velocity when
    ``settings.diffeomorphic``, as for Adam) and return the new parameter.

    ``cost`` is the voxel-wise similarity; ``settings`` a
    :class:`~imse.register.RegistrationSettings` (``discrete_steps_voxels``, ``discrete_radius``,
    ``cost_smoothing_voxels``, ``temperature``, ``smoothing_voxels``, ``diffeomorphic``). Each
    step smooths the parameter, searches the shifts about the displacement it stands for, and
    adds each voxel's soft-minimum shift (zero outside the masks)."""
    geometry = level.geometry
    voxel_to_mm = torch.as_tensor(geometry.index_to_physical_matrix, dtype=initial.dtype, device=initial.device)
    unit_shifts = candidate_shifts(geometry.dim, settings.discrete_radius, 1.0).to(initial) @ voxel_to_mm.T  # one voxel per step, in mm
    no_shift = unit_shifts.abs().sum(1).argmin()  # the candidate that leaves the field as it is
    cost_of_warped = cost_against(cost, level.fixed)
    parameter = initial
    for iteration, step in enumerate(settings.discrete_steps_voxels):
        smoothed = optional_gaussian_smooth(parameter, settings.field_smoothing_voxels)
        displacement = as_displacement(smoothed, geometry, settings.diffeomorphic)
        shifts = unit_shifts * step
        costs = shift_costs(cost_of_warped, level.moving, displacement, (geometry, level.moving_geometry), shifts, settings.cost_smoothing_voxels)
        update = soft_minimum_shift(costs, shifts, settings.temperature)
        mask = level.mask(displacement)
        if mask is not None:
            update = update * mask
        parameter = smoothed + update
        current = costs[:, no_shift]
        value = float(current.mean() if mask is None else (current * mask[0, 0]).sum() / mask.sum())
        tracker.step({"stage": "discrete", "level": index, "iteration": iteration, "total": value, "similarity": value, "regularization": 0.0})
    return parameter
