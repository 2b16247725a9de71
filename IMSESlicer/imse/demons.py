"""Demons: a dense displacement driven by an intensity residual, here the IMSE evaluator's.

The evaluator predicts ``E([other, reference]) ~ (reference - other_in_reference_modality) / 2``
(:mod:`imse.evaluator`): half the difference of the two images once both are in the trained
modality. That is the residual of Thirion's demons, which mono-modal registration computes as
``fixed - warped``. So each step asks the similarity for the pair in one modality
(``in_common_modality``: the images themselves for MSE; for IMSE the trained-modality image and
its counterpart ``reference - 2 E``), and moves every voxel by the symmetric demons force
``2 s r g / (|g|^2 + r^2)`` (voxels), where ``r`` is the residual, ``g`` the mean of the two
images' index gradients and ``s`` the maximum step: the force is at most ``s`` voxels (ITK's
``MaximumUpdateStepLength``; Thirion's half a voxel by default), so no step size is needed. The
field is then smoothed, which regularises it (as for :mod:`imse.discrete`).

One evaluator call per step instead of one per candidate shift: on the registration benchmark
the search and the demons reach the same end-point error in 2D, and the demons take a fraction
of the time (README, "Registration benchmark").

References: Thirion, "Image matching as a diffusion process: an analogy with Maxwell's
demons", Medical Image Analysis 1998; Vercauteren et al., "Diffeomorphic demons", NeuroImage
2009 (the symmetric force); Kong et al., "Indescribable Multi-modal Spatial Evaluator", CVPR 2023.
"""

from __future__ import annotations

import torch

from .field import as_displacement, index_gradient
from .filters import optional_gaussian_smooth


def demons_force(fixed_like: torch.Tensor, warped_like: torch.Tensor, max_step_voxels: float = 0.5) -> torch.Tensor:
    """The symmetric demons force ``[1, dim, *spatial]`` in voxels of the grid: the shift of the
    warped image's sampling point that lowers ``(fixed_like - warped_like) ** 2`` (both
    ``[1, 1, *spatial]``, one modality), at most ``max_step_voxels`` long, which it reaches
    where the residual equals the gradient's norm; zero where the residual or the gradient is."""
    residual = fixed_like - warped_like
    gradient = 0.5 * (index_gradient(fixed_like) + index_gradient(warped_like))[:, 0]  # [1, dim, *spatial], per voxel
    denominator = (gradient * gradient).sum(1, keepdim=True) + residual * residual
    force = residual * gradient / denominator.clamp_min(torch.finfo(residual.dtype).tiny)  # Thirion's: at most half a voxel, where |r| = |g|
    return torch.where(denominator > 0, 2.0 * max_step_voxels * force, 0.0)


@torch.no_grad()
def demons_stage(level, index: int, initial: torch.Tensor, similarity: torch.nn.Module, settings, tracker) -> torch.Tensor:
    """Run ``settings.demons_iterations`` demons steps on one pyramid level (a
    ``register._Level``) from the parameter ``initial`` ``[1, dim, *level_shape]`` (the
    unsmoothed displacement in mm, or velocity when ``settings.diffeomorphic``, as for Adam) and
    return the new parameter.

    ``similarity`` has ``in_common_modality(fixed, warped)`` (MSE, IMSE). Each step smooths the
    parameter by ``settings.field_smoothing_voxels``, warps the moving image, and adds the
    force of at most ``settings.demons_max_step_voxels``, converted to mm (zero outside the
    masks); the result is the mean of the parameter over the last
    ``settings.demons_average_last`` steps (0: the last step's). The tracked value is the mean
    absolute residual."""
    geometry = level.geometry
    voxel_to_mm = torch.as_tensor(geometry.index_to_physical_matrix, dtype=initial.dtype, device=initial.device)
    parameter = initial
    averaged_from = settings.demons_iterations - settings.demons_average_last
    total = 0.0  # the sum of the averaged steps' parameters (a tensor from the first of them)
    for iteration in range(settings.demons_iterations):
        smoothed = optional_gaussian_smooth(parameter, settings.field_smoothing_voxels)
        displacement = as_displacement(smoothed, geometry, settings.diffeomorphic)
        fixed_like, warped_like = similarity.in_common_modality(level.fixed, level.warp_moving(displacement))
        update = torch.einsum("ij,bj...->bi...", voxel_to_mm, demons_force(fixed_like, warped_like, settings.demons_max_step_voxels))
        mask = level.mask(displacement)
        if mask is not None:
            update = update * mask
        parameter = smoothed + update
        if iteration >= averaged_from:
            total = total + parameter
        residual = (fixed_like - warped_like).abs()
        value = float(residual.mean() if mask is None else (residual * mask).sum() / mask.sum())
        tracker.step({"stage": "demons", "level": index, "iteration": iteration, "total": value, "similarity": value, "regularization": 0.0})
    return total / settings.demons_average_last if settings.demons_average_last else parameter
