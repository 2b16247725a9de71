"""Per-pair registration by optimisation (the IMSE paper's "traditional" registration).

A dense displacement in mm (or, with ``diffeomorphic``, a stationary velocity whose
exponential is the displacement) is optimised with Adam from coarse to fine over a pyramid
of grids in physical space, minimising ``similarity(fixed, moving o (id + u)) + weight *
regularisation(u)``, optionally after an affine pre-alignment. The similarity is any of
:mod:`imse.similarity` (the IMSE evaluator, MIND, MI, NCC, ...): the loop does not care
which. Instead of Adam, ``optimizer="discrete"`` runs the gradient-free search of
:mod:`imse.discrete` on each level (voxel-wise similarities), and ``optimizer="demons"`` the
demons of :mod:`imse.demons` (IMSE or MSE, whose residual drives them); for both, the smoothing
of the field is the regulariser. Everything is physical: level grids keep the fixed image's box
and direction, the regularisation uses mm derivatives, and the result is a displacement in mm on the fixed grid
in ITK's convention (the fixed point ``p`` maps to the moving point ``p + u(p)``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .demons import demons_stage
from .device import resolve_device
from .discrete import discrete_stage
from .errors import ImageError
from .field import as_displacement, jacobian_determinant, physical_points, warp
from .filters import optional_gaussian_smooth
from .geometry import Geometry
from .image import Image, from_tensor, grid_shape, grid_with_spacing, normalize_for_registration, resample_to, resample_to_spacing, to_tensor
from .networks import evaluator_fits
from .progress import IterationTracker, Progress
from .regularization import regularization

#: The optimisers of the dense stage: Adam on the similarity plus the regulariser, or the
#: gradient-free search of :mod:`imse.discrete`, or the demons of :mod:`imse.demons`.
OPTIMIZERS = ("adam", "discrete", "demons")
#: The width (voxels) of the Gaussian that smooths the field, per optimiser (chosen on the
#: registration benchmark's 2D pairs; see ``RegistrationSettings.smoothing_voxels``).
DEFAULT_SMOOTHING_VOXELS = {"adam": 1.5, "discrete": 2.5, "demons": 2.5}
#: Diffusion weights that balance each similarity's scale, chosen on 2D MNI pairs with known
#: 6 mm deformations (T2-, PD- and CT-like against T1; mean end-point error in the brain).
#: The IMSE weight awaits the same sweep with trained evaluators.
DEFAULT_REGULARIZATION_WEIGHTS = {"mind": 0.3, "mi": 3.0, "ncc": 0.3, "lncc": 1.0, "mse": 1.0, "mae": 1.0, "imse": 1.0}


@dataclass
class RegistrationSettings:
    """How to register.

    Attributes:
        similarity: name in :data:`imse.similarity.SIMILARITIES` (``imse`` needs an evaluator).
        similarity_options: keyword options of that similarity (e.g. ``{"window": 7}``).
        levels: pyramid levels; each coarser level doubles the finest spacing (per axis, never
            finer than the finest level's spacing along that axis).
        grid_spacing_mm: spacing (mm; one value, or one per axis in ITK order) of the finest
            level's grid over the fixed image's box; ``None``: the fixed image's own grid. The
            displacement is computed on that grid and resampled (linearly) onto the fixed grid.
            A coarser grid registers large images faster; a finer one helps the shipped 2D
            evaluator, which scores a 2 mm pair better on a 1.25-1.5 mm grid, though better
            still on the pair's own grid when zoomed 2 times (the ``imse`` similarity's
            ``zoom`` option; README, "Registration benchmark").
        iterations: Adam iterations per level at most.
        step_voxels: Adam's learning rate in voxels of each level (converted to mm).
        regularization: ``diffusion`` or ``bending`` (see :mod:`imse.regularization`).
        regularization_weight: weight of the regulariser against the similarity; ``None``
            takes :data:`DEFAULT_REGULARIZATION_WEIGHTS` of the similarity (their scales differ).
        smoothing_voxels: the optimised parameter is smoothed by a Gaussian of this width (in
            voxels of each level) before use, which keeps Adam's per-voxel steps from leaving
            pixel noise in the field, and is the discrete optimiser's only regulariser (0: off;
            ``None``: :data:`DEFAULT_SMOOTHING_VOXELS` of the optimiser). On 2D MNI pairs, 1.5
            lowered Adam's end-point error from 1.59 to 1.24 mm at the same spread of det J;
            the discrete search needs 2.5 (1.5 left 0.02 % folds and 0.55 mm more error), and the
            demons take the same (1.5 and 4 both gave 0.02-0.04 mm more error with IMSE).
        diffeomorphic: optimise a stationary velocity field and integrate it (scaling and
            squaring), which keeps the map invertible.
        affine: affine pre-alignment (at the coarsest level) before the dense stage.
        affine_iterations: Adam iterations of the affine stage.
        optimizer: ``adam`` (gradient descent on the similarity plus the regulariser) or
            ``discrete`` (a gradient-free search over shifts, :mod:`imse.discrete`; it needs a
            voxel-wise similarity: mse, mae, lncc, mind, imse or their sums, and regularises by
            ``smoothing_voxels`` alone, so ``regularization_weight`` must stay unset) or
            ``demons`` (:mod:`imse.demons`; it needs a similarity with a residual, imse or mse,
            and regularises in the same way).
        discrete_steps_voxels: the discrete optimiser's schedule on each level: one search per
            entry, with steps of that many voxels of the level.
        discrete_radius: the discrete search tries ``-radius..radius`` steps along each axis.
        cost_smoothing_voxels: Gaussian width (voxels) over which the discrete search pools
            each voxel's cost.
        temperature: how soft the discrete search's minimum is (see :mod:`imse.discrete`).
        demons_iterations: the demons' steps on each level (each calls the evaluator once; with
            IMSE, 15-30 gave the same end-point error on 2D pairs, 10 fell short; with the
            evaluator flip-averaged and zoomed 2 times, 30 gained 0.03 mm over 20, 40-60 no more).
        demons_max_step_voxels: the longest step (voxels of the level) the demons' force takes
            in one iteration: ITK's maximum update step length, Thirion's half a voxel by
            default. Against the field smoothing, a longer step regularises less: with the
            evaluator flip-averaged and zoomed 2 times, 1 voxel took the 2D benchmark's
            end-point error from 1.87 to 1.80 mm (2 voxels made it worse); without the zoom it
            gained nothing, and on mono-modal pairs it helped or hurt by the pair.
        demons_average_last: each level's result is the mean of the field over its last this many
            demons steps (iterate averaging; 0: the last step's field). With the evaluator's
            orientations cycled (``similarity_options["orientations"] = "cycle"``) each step is
            driven by one orientation, and the mean evens them out (README, "Registration").
        patience, tolerance: a level stops early when its last ``patience`` iterations gained
            less than ``tolerance`` of the loss decrease the level has achieved so far.
        equalize_tissue: an image whose background lies far below its tissue (a CT) is
            compared with its tissue histogram-equalised (:func:`imse.image.equalize_tissue`)
            instead of windowed on it. On the 2D benchmark's CT-like pairs it took IMSE's best
            settings from 2.64 to 2.19 mm and MI from 2.22 to 2.09 (README, "Registration").
        device: ``auto``, ``cuda`` or ``cpu``.
    """

    similarity: str = "mind"
    similarity_options: dict = field(default_factory=dict)
    levels: int = 3
    grid_spacing_mm: float | tuple[float, ...] | None = None
    iterations: int = 150
    step_voxels: float = 0.25
    regularization: str = "diffusion"
    regularization_weight: float | None = None
    smoothing_voxels: float | None = None
    diffeomorphic: bool = False
    affine: bool = False
    affine_iterations: int = 100
    optimizer: str = "adam"
    discrete_steps_voxels: tuple[float, ...] = (1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25)
    discrete_radius: int = 1
    cost_smoothing_voxels: float = 2.0
    temperature: float = 0.3
    demons_iterations: int = 20
    demons_max_step_voxels: float = 0.5
    demons_average_last: int = 0
    patience: int = 20
    tolerance: float = 0.01
    equalize_tissue: bool = False
    device: str = "auto"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], reference: str = "fixed", device: str = "auto") -> "RegistrationSettings":
        """The settings that ``imse register`` options give: ``options`` maps the options'
        argparse names (:data:`imse.presets.PRESET_OPTIONS` but the masks and the model, which
        are not settings, and optionally ``regularization``) to their values, as the command
        line parses them or a preset spells them out. ``reference``: which image, ``fixed`` or
        ``moving``, is in the evaluator's trained modality. The command line, its presets and
        the registration benchmark all translate their options here, so a preset registers the
        same way in each."""
        from .similarity import similarity_terms

        similarity = options["similarity"]
        evaluator_options = {
            "reference": reference,
            "flip_average": options["flip_average"],
            "zoom": options["evaluator_zoom"],
            "rotation": options["evaluator_rotation"],
            "orientations": options["evaluator_orientations"],
            "slice_axes": options["evaluator_slice_axes"],
        }
        return cls(
            similarity=similarity,
            similarity_options=evaluator_options if "imse" in similarity_terms(similarity) else {},
            levels=options["levels"],
            grid_spacing_mm=options["grid_spacing"],
            iterations=options["iterations"],
            regularization=options.get("regularization", cls.regularization),
            regularization_weight=options["regularization_weight"],
            diffeomorphic=options["diffeomorphic"],
            affine=options["affine"],
            optimizer=options["optimizer"],
            demons_iterations=options["demons_iterations"],
            demons_max_step_voxels=options["demons_max_step"],
            demons_average_last=options["demons_average_last"],
            equalize_tissue=options["equalize_tissue"],
            device=device,
        )

    @property
    def field_smoothing_voxels(self) -> float:
        """``smoothing_voxels``, or the optimiser's default when it is ``None``."""
        return DEFAULT_SMOOTHING_VOXELS.get(self.optimizer, 0.0) if self.smoothing_voxels is None else self.smoothing_voxels

    @property
    def uses_evaluator(self) -> bool:
        """Whether the similarity (or a term of a combined one, ``mind+imse``) is IMSE."""
        from .similarity import similarity_terms

        return "imse" in similarity_terms(self.similarity)


@dataclass
class RegistrationResult:
    """``displacement``: vector Image (mm, ITK convention) on the fixed grid; ``warped``: the
    moving image resampled through it onto the fixed grid (its own intensities);
    ``jacobian_determinant``: det J of ``p -> p + u(p)``; ``loss_curve``: one entry per
    iteration (stage, level, iteration, total, similarity, regularization)."""

    displacement: Image
    warped: Image
    jacobian_determinant: Image
    loss_curve: list[dict]
    seconds: float


def register_pair(
    fixed: Image,
    moving: Image,
    settings: RegistrationSettings | None = None,
    fixed_mask: Image | None = None,
    moving_mask: Image | None = None,
    evaluator=None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` (see the module docstring).

    ``fixed_mask`` (on the fixed grid) and ``moving_mask`` (on the moving grid) restrict the
    similarity to where both are set. ``evaluator`` (an :class:`imse.evaluator.Evaluator`) is
    needed for the ``imse`` similarity. ``progress(done, total, values)`` reports iterations;
    ``should_stop()`` is polled each iteration and raises :class:`~imse.errors.Cancelled`.
    """
    settings = settings or RegistrationSettings()
    started = time.perf_counter()
    check_registration_inputs(fixed, moving, fixed_mask, moving_mask, settings, evaluator)
    device = resolve_device(settings.device)
    similarity = _build_similarity(settings, evaluator, device)  # Adam's loss; the affine stage's for all
    voxel_similarity = _build_similarity(settings, evaluator, device, reduction="voxel") if settings.optimizer != "adam" else None
    fixed_normalised = normalize_for_registration(fixed, settings.equalize_tissue)
    moving_normalised = normalize_for_registration(moving, settings.equalize_tissue)
    levels = pyramid_grids(fixed, settings.levels, settings.grid_spacing_mm)
    steps_per_level = {"adam": settings.iterations, "discrete": len(settings.discrete_steps_voxels), "demons": settings.demons_iterations}[settings.optimizer]
    total = steps_per_level * len(levels) + (settings.affine_iterations if settings.affine else 0)
    tracker = IterationTracker(total, progress, should_stop, "The registration was cancelled; no result was produced.")

    # The parameter is the (unsmoothed) displacement, or velocity in the diffeomorphic mode; it
    # is carried from level to level and turned into the displacement once at the end.
    parameter = torch.zeros(1, fixed.dim, *levels[0].shape, device=device)
    if settings.affine:
        level = _Level(levels[0], fixed_normalised, moving_normalised, fixed_mask, moving_mask, device)
        parameter = _affine_stage(level, similarity, settings, tracker)
    for index, grid in enumerate(levels):
        level = _Level(grid, fixed_normalised, moving_normalised, fixed_mask, moving_mask, device)
        parameter = resample_displacement(parameter, levels[max(index - 1, 0)].geometry, grid)
        if settings.optimizer == "discrete":
            parameter = discrete_stage(level, index, parameter, voxel_similarity, settings, tracker)
        elif settings.optimizer == "demons":
            parameter = demons_stage(level, index, parameter, voxel_similarity, settings, tracker)
        else:
            parameter = _dense_stage(level, index, parameter, similarity, settings, tracker)

    with torch.no_grad():
        finest = levels[-1].geometry
        displacement = resample_displacement(_displacement(parameter, finest, settings), finest, fixed)
    moving_tensor = to_tensor(moving, device)
    background = float(moving.array.min())
    warped = warp(moving_tensor - background, displacement, fixed.geometry, moving.geometry, padding="zeros") + background
    return RegistrationResult(
        displacement=from_tensor(displacement, fixed.geometry),
        warped=from_tensor(warped, fixed.geometry),
        jacobian_determinant=from_tensor(jacobian_determinant(displacement, fixed.geometry), fixed.geometry),
        loss_curve=tracker.curve,
        seconds=time.perf_counter() - started,
    )


def pyramid_grids(fixed: Image, levels: int, grid_spacing_mm: float | tuple[float, ...] | None = None) -> list[Image]:
    """Grids from coarse to fine over the fixed image's box. The finest is the fixed grid, or
    one of ``grid_spacing_mm`` (one value or one per axis, ITK order); each coarser one doubles
    the finest's smallest spacing, never going below an axis's own spacing (so anisotropic
    volumes become isotropic as they coarsen)."""
    if levels < 1:
        raise ImageError(f"levels must be at least 1, got {levels}.")
    if grid_spacing_mm is None:
        spacing, grids = np.asarray(fixed.geometry.spacing), [fixed]
    else:
        spacing = np.broadcast_to(np.asarray(grid_spacing_mm, dtype=float), (fixed.dim,))
        grids = [grid_with_spacing(fixed, tuple(spacing))]
    for level in range(1, levels):
        coarse = np.maximum(spacing, spacing.min() * 2**level)
        grids.insert(0, grid_with_spacing(fixed, tuple(coarse)))
    return grids


class _Level:
    """One pyramid level: the fixed image and mask on the level grid, the moving image (and
    mask) smoothed to the level's resolution on their own grid, as tensors on ``device``. The
    images are clamped to [-1, 1], the normalised range: the recursive Gaussian that smooths
    them overshoots by about 0.002 at a steep edge (a CT's air clipped to -1 against brain)."""

    def __init__(self, grid: Image, fixed: Image, moving: Image, fixed_mask, moving_mask, device) -> None:
        self.geometry = grid.geometry
        self.shape = grid.shape
        level_spacing = grid.geometry.spacing
        self.fixed = to_tensor(resample_to_spacing(fixed, level_spacing), device).clamp(-1.0, 1.0)  # the grid of pyramid_grids
        moving_level = resample_to_spacing(moving, tuple(np.maximum(level_spacing, moving.geometry.spacing)))
        self.moving_geometry = moving_level.geometry
        self.moving = to_tensor(moving_level, device).clamp(-1.0, 1.0)
        self.fixed_mask = None if fixed_mask is None else to_tensor(resample_to(fixed_mask, grid, "nearest"), device)
        self.moving_mask = None if moving_mask is None else to_tensor(moving_mask, device)
        self.moving_mask_geometry = None if moving_mask is None else moving_mask.geometry

    def warp_moving(self, displacement: torch.Tensor) -> torch.Tensor:
        return warp(self.moving, displacement, self.geometry, self.moving_geometry)

    def mask(self, displacement: torch.Tensor) -> torch.Tensor | None:
        """Where both masks hold, on the level grid (the moving mask follows the displacement)."""
        masks = [] if self.fixed_mask is None else [self.fixed_mask]
        if self.moving_mask is not None:
            warped = warp(self.moving_mask, displacement.detach(), self.geometry, self.moving_mask_geometry, "nearest", "zeros")
            masks.append(warped)
        return None if not masks else torch.stack(masks).prod(0)


def _converged(losses: list[float], patience: int, tolerance: float) -> bool:
    """True when the last ``patience`` iterations gained less than ``tolerance`` of what the
    level has gained so far (a scale-free test: similarities differ in scale and offset)."""
    if len(losses) <= patience:
        return False
    recent_gain = losses[-patience - 1] - losses[-1]
    total_gain = losses[0] - losses[-1]
    return total_gain > 0 and recent_gain < tolerance * total_gain


def _dense_stage(level: _Level, index: int, initial: torch.Tensor, similarity, settings, tracker) -> torch.Tensor:
    """Optimise the dense parameter (displacement, or velocity if diffeomorphic; mm) on one
    level, starting from ``initial``; returns it."""
    mean_spacing = float(np.mean(level.geometry.spacing))
    parameter = initial.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([parameter], lr=settings.step_voxels * mean_spacing)
    losses = []
    for iteration in range(settings.iterations):
        displacement = _displacement(parameter, level.geometry, settings)
        similarity_value = similarity(level.fixed, level.warp_moving(displacement), level.mask(displacement))
        penalty = regularization(settings.regularization, displacement, level.geometry)
        loss = similarity_value + _regularization_weight(settings) * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        tracker.step({"stage": "dense", "level": index, "iteration": iteration, "total": losses[-1], "similarity": similarity_value.item(), "regularization": penalty.item()})
        if _converged(losses, settings.patience, settings.tolerance):
            tracker.skip(settings.iterations - iteration - 1)
            break
    return parameter.detach()


def _affine_stage(level: _Level, similarity, settings, tracker) -> torch.Tensor:
    """Optimise an affine map about the fixed box's centre on the coarsest level; returns its
    displacement (mm) on that level (a velocity, for the diffeomorphic mode, to first order)."""
    points = physical_points(level.shape, level.geometry, level.fixed)  # [dim, *shape]
    centre = points.flatten(1).mean(1)
    dim = level.geometry.dim
    linear = torch.zeros(dim, dim, device=level.fixed.device, requires_grad=True)
    shift = torch.zeros(dim, device=level.fixed.device, requires_grad=True)
    mean_spacing = float(np.mean(level.geometry.spacing))
    optimizer = torch.optim.Adam([{"params": [linear], "lr": 0.01}, {"params": [shift], "lr": settings.step_voxels * mean_spacing}])
    centred = points - centre.view(-1, *([1] * dim))

    def displacement() -> torch.Tensor:
        return (torch.einsum("ij,j...->i...", linear, centred) + shift.view(-1, *([1] * dim)))[None]

    losses = []
    for iteration in range(settings.affine_iterations):
        current = displacement()
        loss = similarity(level.fixed, level.warp_moving(current), level.mask(current))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        tracker.step({"stage": "affine", "level": 0, "iteration": iteration, "total": losses[-1], "similarity": losses[-1], "regularization": 0.0})
        if _converged(losses, settings.patience, settings.tolerance):
            tracker.skip(settings.affine_iterations - iteration - 1)
            break
    with torch.no_grad():
        return displacement()


def _displacement(parameter: torch.Tensor, geometry: Geometry, settings: RegistrationSettings) -> torch.Tensor:
    """The displacement (mm) that the optimised parameter stands for: smoothed, and integrated
    when it is a velocity."""
    return as_displacement(optional_gaussian_smooth(parameter, settings.field_smoothing_voxels), geometry, settings.diffeomorphic)


def _regularization_weight(settings: RegistrationSettings) -> float:
    """The set weight, else the default of the similarity (of its first term, when combined)."""
    if settings.regularization_weight is not None:
        return settings.regularization_weight
    from .similarity import similarity_terms

    return DEFAULT_REGULARIZATION_WEIGHTS.get(similarity_terms(settings.similarity)[0], 1.0)


def resample_displacement(displacement: torch.Tensor, source: Geometry, target: Image) -> torch.Tensor:
    """A displacement (mm) on the ``source`` grid resampled onto ``target``'s grid (linear)."""
    if source == target.geometry and tuple(displacement.shape[2:]) == target.shape:
        return displacement
    zero = torch.zeros(1, target.dim, *target.shape, dtype=displacement.dtype, device=displacement.device)
    return warp(displacement, zero, target.geometry, source, padding="border")


def _build_similarity(settings: RegistrationSettings, evaluator, device, reduction: str = "mean"):
    from .similarity import build_similarity

    options = {**settings.similarity_options, "reduction": reduction}
    if settings.uses_evaluator:
        options["network"] = evaluator.network.to(device)
    return build_similarity(settings.similarity, **options).to(device)


def check_registration_inputs(fixed: Image, moving: Image, fixed_mask, moving_mask, settings, evaluator) -> None:
    """Raise ImageError, saying what to do, for a pair, masks, settings and evaluator that
    cannot be registered (different dimensions, no overlap, empty or misplaced masks, IMSE
    without an evaluator of the images' dimension)."""
    if fixed.dim != moving.dim:
        raise ImageError(f"The fixed image is {fixed.dim}D and the moving image {moving.dim}D: register images of the same dimension.")
    if fixed.is_vector or moving.is_vector:
        raise ImageError("Registration needs scalar images; convert colour or vector images to grey values first.")
    overlap = resample_to(moving.with_array(np.ones(moving.shape, np.float32)), fixed, "nearest").array
    if overlap.mean() < 0.1:
        raise ImageError(
            f"The moving image covers only {100 * overlap.mean():.1f} % of the fixed image: they hardly "
            "overlap in physical space. Check their origins and directions, or align them first (e.g. "
            "centre them with a transform)."
        )
    for mask, image, name in ((fixed_mask, fixed, "fixed"), (moving_mask, moving, "moving")):
        if mask is not None and (not mask.geometry.isclose(image.geometry) or mask.shape != image.shape):
            raise ImageError(f"The {name} mask must lie on the {name} image's grid; resample it first.")
        if mask is not None and not np.any(mask.array > 0):
            raise ImageError(f"The {name} mask is empty; give a mask that covers the anatomy or none.")
    _check_optimizer(settings)
    _check_grid_spacing(settings.grid_spacing_mm, fixed)
    _check_slice_axes(settings, fixed)
    if settings.uses_evaluator:
        if evaluator is None:
            raise ImageError("The 'imse' similarity needs an evaluator model (see 'imse models').")
        if not evaluator_fits(evaluator.card.dim, fixed.dim):
            raise ImageError(
                f"The evaluator '{evaluator.card.name}' is {evaluator.card.dim}D but the images are {fixed.dim}D; "
                f"choose a {fixed.dim}D evaluator."
            )


def _check_grid_spacing(grid_spacing_mm, fixed: Image) -> None:
    """Raise ImageError for a grid spacing that is not one positive value or one per axis, or
    that would make the finest grid too large (over 2**28 voxels)."""
    if grid_spacing_mm is None:
        return
    spacing = np.atleast_1d(np.asarray(grid_spacing_mm, dtype=float))
    if spacing.size not in (1, fixed.dim) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ImageError(
            f"The grid spacing must be one positive value in mm, or one per axis ({fixed.dim}); got {grid_spacing_mm}. "
            "Leave it unset to register on the fixed image's own grid."
        )
    voxels = float(np.prod(grid_shape(fixed, tuple(np.broadcast_to(spacing, (fixed.dim,))))))
    if voxels > 2**28:
        raise ImageError(
            f"A {grid_spacing_mm} mm grid over the fixed image would hold {voxels:.3g} voxels; choose a coarser grid spacing."
        )


#: The most anisotropic finest grid (longest over shortest voxel side) on which a 2D evaluator
#: may see a volume's slices across all its axes: across the other axes they have that aspect.
MAX_SLICE_ASPECT = 1.5


def _check_slice_axes(settings: RegistrationSettings, fixed: Image) -> None:
    """Raise ImageError when IMSE would show a 2D evaluator slices across every axis of a
    volume whose finest registration grid is anisotropic (the slices would be stretched)."""
    if settings.similarity_options.get("slice_axes", "first") == "first" or fixed.dim != 3:
        return
    spacing = np.broadcast_to(np.asarray(settings.grid_spacing_mm if settings.grid_spacing_mm is not None else fixed.geometry.spacing, dtype=float), (3,))
    if spacing.max() / spacing.min() > MAX_SLICE_ASPECT:
        raise ImageError(
            f"The registration grid's voxels are {' x '.join(f'{value:g}' for value in spacing)} mm: slices across all three "
            "axes would show the evaluator stretched images. Register on an isotropic grid (--grid-spacing MM), or "
            "slice across the first axis only (--evaluator-slice-axes first)."
        )


def _check_optimizer(settings: RegistrationSettings) -> None:
    """Raise ImageError for an unknown optimiser, or settings the discrete search or the demons
    cannot run with."""
    from .similarity import RESIDUAL_SIMILARITIES, VOXEL_SIMILARITIES, similarity_terms

    if settings.optimizer not in OPTIMIZERS:
        raise ImageError(f"Unknown optimizer '{settings.optimizer}'; choose one of {list(OPTIMIZERS)}.")
    if settings.similarity_options.get("orientations") == "cycle" and settings.optimizer != "demons":
        raise ImageError(
            "Cycling the evaluator's orientations (one a demons step) is for the demons, which call it once a step: "
            f"the {settings.optimizer} optimiser needs their mean (orientations 'average'), or choose the demons optimizer."
        )
    if settings.demons_average_last and settings.optimizer != "demons":
        raise ImageError(
            f"Averaging the field over the last steps is the demons' (--demons-average-last); the {settings.optimizer} "
            "optimiser would ignore it: leave it at 0, or choose the demons optimizer."
        )
    if settings.optimizer == "adam":
        return
    if settings.regularization_weight is not None:
        raise ImageError(
            f"The {settings.optimizer} optimiser regularises by smoothing the field, not with a weighted penalty: leave the "
            "regularization weight unset (no --regularization-weight), or choose the adam optimizer."
        )
    if settings.optimizer == "demons":
        terms = similarity_terms(settings.similarity)
        if len(terms) != 1 or terms[0] not in RESIDUAL_SIMILARITIES:
            raise ImageError(
                f"The demons move voxels by an intensity residual, which '{settings.similarity}' does not give: "
                f"choose one of {list(RESIDUAL_SIMILARITIES)}, or the adam or discrete optimizer."
            )
        if settings.demons_iterations < 1:
            raise ImageError(f"The demons need at least 1 iteration per level; got {settings.demons_iterations}.")
        if not (math.isfinite(settings.demons_max_step_voxels) and settings.demons_max_step_voxels > 0):
            raise ImageError(f"The demons' maximum step must be a positive number of voxels (0.5 is the usual); got {settings.demons_max_step_voxels}.")
        if not 0 <= settings.demons_average_last <= settings.demons_iterations:
            raise ImageError(
                f"The demons can average the field over 0 to {settings.demons_iterations} (their iterations) last steps; "
                f"got {settings.demons_average_last}: average over fewer steps, or run more."
            )
        return
    whole_image = [term for term in similarity_terms(settings.similarity) if term not in VOXEL_SIMILARITIES]
    if whole_image:
        raise ImageError(
            f"The discrete optimiser compares each voxel's cost, and {whole_image} measure(s) the whole image only: "
            f"choose one of {list(VOXEL_SIMILARITIES)}, or the adam optimizer."
        )
    if not settings.discrete_steps_voxels or min(settings.discrete_steps_voxels) <= 0:
        raise ImageError(f"The discrete steps must be a non-empty list of positive voxel sizes; got {settings.discrete_steps_voxels}.")
    if settings.discrete_radius < 1 or settings.temperature <= 0 or settings.cost_smoothing_voxels < 0:
        raise ImageError(
            "The discrete search needs a radius of at least 1, a positive temperature and a cost smoothing of at least 0; "
            f"got {settings.discrete_radius}, {settings.temperature} and {settings.cost_smoothing_voxels}."
        )
