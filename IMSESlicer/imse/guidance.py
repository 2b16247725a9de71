"""Local guidance: does a similarity's voxel-wise cost point each voxel towards its match?

A registration loss must do more than rank whole alignments: near every voxel, moving towards
the true correspondence must cost less than moving away from it, or an optimiser (gradient or
discrete) settles wherever the cost happens to be flat or low. This module measures that
without an optimiser, on a pair with a known displacement. The moving image is warped by a
field plus each of a few candidate constant shifts (every combination of ``-radius..radius``
steps of ``step_mm`` per axis); each voxel-wise cost map (a similarity built with
``reduction="voxel"``, :mod:`imse.similarity`) is smoothed by a Gaussian of
``smoothing_voxels``, and every voxel takes its cheapest shift. Inside a mask:

* ``sharpness``: with the true field applied (aligned), the share of voxels whose cheapest
  shift is zero (1: the cost is lowest at alignment everywhere);
* from no registration (the residual is the whole true field): ``cosine``, the mean cosine
  between the cheapest shift of each voxel that moves and its true displacement; ``moved``,
  the share of voxels that move; ``gain_mm``, the mean of ``|u| - |u - s|``, how much nearer
  its match the cheapest shift ``s`` takes a voxel (mm; negative: further away).

``Testing/bench/bench_guidance.py`` compares the shipped evaluators with MIND on the
registration benchmark's pairs (``make bench``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .discrete import candidate_shifts, cost_against, shift_costs
from .errors import ImageError
from .image import Image, normalize_for_registration, to_tensor


@dataclass
class Guidance:
    """Scores of :func:`local_guidance` (see the module docstring); ``gain_mm`` in mm."""

    sharpness: float
    cosine: float
    moved: float
    gain_mm: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def cheapest_shifts(costs: torch.Tensor, shifts: torch.Tensor) -> np.ndarray:
    """Each voxel's cheapest shift ``[dim, *spatial]`` (mm) from the candidates' ``costs``
    ``[1, K, *spatial]`` (:func:`imse.discrete.shift_costs`) and ``shifts`` ``[K, dim]`` (mm).
    Ties go to the first shift in ``shifts``' order."""
    return shifts[costs[0].argmin(0)].movedim(-1, 0).numpy()


def local_guidance(
    cost: torch.nn.Module,
    fixed: Image,
    moving: Image,
    true_displacement: Image,
    mask: np.ndarray,
    step_mm: float | None = None,
    radius: int = 2,
    smoothing_voxels: float = 2.0,
) -> Guidance:
    """The guidance scores of a voxel-wise ``cost`` (a similarity module built with
    ``reduction="voxel"``) on a pair whose ``true_displacement`` (vector Image on the fixed
    grid, mm, ITK convention: fixed point ``p`` matches moving point ``p + u(p)``) is known,
    inside ``mask`` (boolean, the fixed grid's shape; e.g. the brain). Intensities are
    normalised as the registration engine does. ``step_mm``: the shifts' step (default: the
    fixed image's smallest spacing, one voxel)."""
    if mask.shape != fixed.shape or not mask.any():
        raise ImageError("The guidance mask must be a non-empty boolean array of the fixed image's shape.")
    if true_displacement.array.shape != (*fixed.shape, fixed.dim) or not true_displacement.geometry.isclose(fixed.geometry):
        raise ImageError(f"The true displacement must be a {fixed.dim}-component vector image on the fixed image's grid; resample it first.")
    step_mm = float(min(fixed.geometry.spacing)) if step_mm is None else step_mm
    shifts = candidate_shifts(fixed.dim, radius, step_mm)
    fixed_tensor, moving_tensor = to_tensor(normalize_for_registration(fixed)), to_tensor(normalize_for_registration(moving))
    truth = to_tensor(true_displacement)
    cost_of_warped, geometries = cost_against(cost, fixed_tensor), (fixed.geometry, moving.geometry)
    aligned, from_start = (
        cheapest_shifts(shift_costs(cost_of_warped, moving_tensor, start, geometries, shifts, smoothing_voxels), shifts)
        for start in (truth, torch.zeros_like(truth))
    )
    inside = mask.astype(bool)
    shift, target = from_start[:, inside], truth[0].numpy()[:, inside]  # [dim, voxels]
    shift_length, target_length = np.linalg.norm(shift, axis=0), np.linalg.norm(target, axis=0)
    moved = shift_length > 0
    cosines = (shift * target).sum(0)[moved] / np.maximum(shift_length[moved] * target_length[moved], 1e-6)
    return Guidance(
        sharpness=float((np.abs(aligned[:, inside]).sum(0) == 0).mean()),
        cosine=float(cosines.mean()) if moved.any() else 0.0,
        moved=float(moved.mean()),
        gain_mm=float((target_length - np.linalg.norm(target - shift, axis=0)).mean()),
    )
