"""AdaCS: adaptive correspondence scoring for unsupervised registration (Zhang et al., 2023),
here for cardiac motion between cine frames, in 2D and 3D.

Two estimators are optimised in alternation, each by its own Adam optimiser:

* the displacement estimator ``u`` (a VoxelMorph-style U-Net on ``[source, target]``, or a
  dense field per pair) minimises
  ``L_de = mean(sg(S) * M * (I_t - I_s o u)^2) + lambda * mean |grad u|^2``;
* the scoring estimator ``S`` in (0, 1) (a U-Net on the target alone ending in a sigmoid, or a
  free map per pair) minimises
  ``L_se = mean(S * M * (I_t - I_s o sg(u))^2) + alpha * mean(M * (1 - S)^2) + w_T * mean |grad S|^2``,

with ``sg`` the stop-gradient and ``M`` the foreground mask ``(I_s > tau) | (I_t > tau)``
(the reference's ``(I_s != 0) | (I_t != 0)`` for ``tau = 0`` and images in [0, 1]; give a
small ``tau`` when the background is noise rather than exact zeros). Means run over all
voxels. Per voxel, ``S r + alpha (1 - S)^2`` with residual ``r`` is least at
``S* = clip(1 - r / (2 alpha), 0, 1)``: the score drops where no displacement explains the
target (dropout, noise, through-plane motion), and the displacement estimator stops chasing
those voxels.

Momentum-guided smoothness (the paper's form): ``mu_T`` is the mean squared residual of the
T-th scoring step, ``b_T = cos(scale * mu_T)`` with ``scale = pi / 2``,
``m_T = gamma * m_{T-1} + (1 - gamma) * b_T`` and ``w_T = beta * m_T``: a large residual
(early) relaxes the smoothness of S, a small one (late) enforces it. The reference code
scales it differently: ``beta = 1.5``, ``cos(pi * 50 * mu)`` and
``gamma = min(1 - 1 / (epoch + 1), 0.99)``; :class:`MomentumSmoothness` exposes all three
(``momentum_gamma=None`` is that ramp, counted in scoring steps). ``b`` is clipped to [0, 1],
a no-op for the paper's scale on [0, 1] images that keeps larger scales from rewarding rough
scores.

Schedule (the reference's): ``displacement_warmup`` displacement-only steps with ``S = 1``,
then ``scoring_warmup`` scoring-only steps, then one displacement step and one scoring step in
turn. ``scoring=False`` gives the baseline (plain masked MSE, ``S = 1`` throughout: the paper's
VoxelMorph row).

Deliberate differences from the reference code:

* The two losses never share a graph: each step computes the other estimator's output under
  ``torch.no_grad`` and steps only its own optimiser. (The reference lets the scoring loss
  leak gradients into the displacement network.)
* ``|grad u|^2`` is :func:`imse.regularization.diffusion_energy`: the sum over components and
  physical axes (mm per mm, central differences), as in the paper's formula. VoxelMorph's code
  averages over them in voxel units, ``dim^2`` times less at 1 mm spacing. ``|grad S|^2`` is
  likewise physical (1/mm^2), so the weights mean the same at any spacing.
* The network field lives at full resolution (the reference's diffeomorphic field is at half
  resolution) and the training is one-directional.

Conventions (see :mod:`imse.geometry`): the target is the fixed image and the source the
moving one; ``u`` is ``[N, dim, *spatial]`` in mm on the target grid, channel ``c`` along
physical axis ``c``, and the target point ``p`` corresponds to the source point ``p + u(p)``.
With the reference (end-diastolic) frame as the target, ``u`` is the Lagrangian displacement
that :mod:`imse.strain` takes. Images are ``[N, 1, *spatial]``, min-max normalised to [0, 1]
before they reach the estimators; scores are ``[N, 1, *spatial]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

from .device import resolve_device
from .errors import ImageError
from .field import as_displacement, displacement_to_mm, spatial_gradient, warp
from .filters import optional_gaussian_smooth
from .geometry import Geometry
from .models import CARD_SUFFIX, MODEL_SUFFIX, LoadedModel, ModelCard, save_model
from .networks import LIGHT_CHANNELS, LightUNet, pad_to_multiple
from .progress import IterationTracker, Progress
from .regularization import diffusion_energy
from .training_run import invoked_command

PAIRINGS = ("reference", "consecutive")
MOMENTUM_GAMMA_MAX = 0.99  # the cap of the reference's gamma ramp
TASK = "adacs"

ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


class DisplacementLoss(NamedTuple):
    """Terms of ``L_de`` (scalar tensors): ``total = similarity + lambda * smoothness``.

    ``similarity`` is the score-weighted masked squared residual, ``smoothness`` the diffusion
    energy of ``u`` (unitless), ``mean_squared_residual`` the unweighted masked residual (no
    gradient; the plain MSE that the baseline minimises).
    """

    total: torch.Tensor
    similarity: torch.Tensor
    smoothness: torch.Tensor
    mean_squared_residual: torch.Tensor


class ScoringLoss(NamedTuple):
    """Terms of ``L_se``: ``total = correspondence + alpha * regularization + smoothness_weight
    * smoothness`` (scalar tensors; ``smoothness`` in 1/mm^2, ``smoothness_weight`` the
    momentum-guided ``w_T``, a float, and ``mean_squared_residual`` its ``mu_T``)."""

    total: torch.Tensor
    correspondence: torch.Tensor
    regularization: torch.Tensor
    smoothness: torch.Tensor
    smoothness_weight: float
    mean_squared_residual: torch.Tensor


def foreground_mask(source: torch.Tensor, target: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """``(source > threshold) | (target > threshold)`` as a float ``[N, 1, *spatial]`` tensor
    (images in [0, 1]; threshold 0 is the reference's ``!= 0``)."""
    return ((source > threshold) | (target > threshold)).to(target.dtype)


def mean_squared_residual(target: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean(M * (I_t - I_s o u)^2)`` over all voxels, without gradient (the paper's ``mu``)."""
    return (mask * (target - warped).square()).mean().detach()


def score_smoothness(score: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Mean over voxels of ``|grad S|^2`` (1/mm^2, physical central differences) of a score
    map ``[N, 1, *spatial]``."""
    # spatial_gradient wants one channel per axis; row 0 of the repeated map is grad S.
    repeated = score.expand(-1, geometry.dim, *score.shape[2:])
    return spatial_gradient(repeated, geometry)[:, 0].square().sum(1).mean()


def displacement_loss(
    target: torch.Tensor,
    warped: torch.Tensor,
    displacement: torch.Tensor,
    score: torch.Tensor,
    mask: torch.Tensor,
    geometry: Geometry,
    smoothness_weight: float = 0.01,
) -> DisplacementLoss:
    """``L_de`` for ``warped = I_s o u`` (``[N, 1, *spatial]``), ``u`` in mm and a score whose
    gradient is stopped here."""
    similarity = (score.detach() * mask * (target - warped).square()).mean()
    smoothness = diffusion_energy(displacement, geometry)
    total = similarity + smoothness_weight * smoothness
    return DisplacementLoss(total, similarity, smoothness, mean_squared_residual(target, warped, mask))


def scoring_loss(
    target: torch.Tensor,
    warped: torch.Tensor,
    score: torch.Tensor,
    mask: torch.Tensor,
    geometry: Geometry,
    score_regularization: float = 0.02,
    smoothness_weight: float = 0.0,
) -> ScoringLoss:
    """``L_se`` for a score ``[N, 1, *spatial]`` in (0, 1); the gradient through ``warped`` is
    stopped here, so only the score learns from it."""
    residual = (target - warped.detach()).square()
    correspondence = (score * mask * residual).mean()
    regularization = ((1.0 - score).square() * mask).mean()
    smoothness = score_smoothness(score, geometry)
    total = correspondence + score_regularization * regularization + smoothness_weight * smoothness
    return ScoringLoss(total, correspondence, regularization, smoothness, smoothness_weight, mean_squared_residual(target, warped, mask))


@dataclass
class MomentumSmoothness:
    """The momentum-guided weight ``w_T = beta * m_T`` of the score smoothness (module notes).

    ``b_T = clip(cos(scale * mu_T), 0, 1)``; ``m_T = gamma_T * m_{T-1} + (1 - gamma_T) * b_T``
    with ``m_0 = b_0``; ``gamma_T = gamma``, or with ``gamma=None`` the reference's ramp
    ``min(1 - 1 / (T + 1), 0.99)`` (``T`` counting earlier updates), which makes ``m`` the
    running mean of ``b`` until ``gamma`` reaches 0.99.
    """

    scale: float = math.pi / 2
    gamma: float | None = None
    beta: float = 1.0
    momentum: float | None = None
    updates: int = 0

    def update(self, mean_squared_residual: float) -> float:
        """Take ``mu_T`` and return ``w_T``."""
        b = min(max(math.cos(self.scale * mean_squared_residual), 0.0), 1.0)
        gamma = self.gamma if self.gamma is not None else min(1.0 - 1.0 / (self.updates + 1), MOMENTUM_GAMMA_MAX)
        self.momentum = b if self.momentum is None else gamma * self.momentum + (1.0 - gamma) * b
        self.updates += 1
        return self.beta * self.momentum


@dataclass(frozen=True)
class AdaCSObjective:
    """Weights of the two losses.

    Attributes:
        smoothness_weight: ``lambda``, weight of the diffusion energy of ``u``.
        score_regularization: ``alpha``, weight of ``mean(M (1 - S)^2)``; a voxel's score falls
            to 0 once its squared residual exceeds ``2 alpha``.
        score_smoothness: ``beta``, multiplies the momentum weight ``m_T`` (reference: 1.5).
        momentum_scale: ``b_T = cos(momentum_scale * mu_T)`` (paper: pi / 2; reference: 50 pi).
        momentum_gamma: the momentum's ``gamma``; ``None``: the reference's ramp to 0.99.
        foreground_threshold: ``tau`` of the foreground mask.
    """

    smoothness_weight: float = 0.01
    score_regularization: float = 0.02
    score_smoothness: float = 1.0
    momentum_scale: float = math.pi / 2
    momentum_gamma: float | None = None
    foreground_threshold: float = 0.0

    def __post_init__(self) -> None:
        weights = (self.smoothness_weight, self.score_regularization, self.score_smoothness, self.momentum_scale)
        if min(weights) < 0 or not all(math.isfinite(w) for w in weights):
            raise ImageError(f"The AdaCS loss weights must be finite and >= 0, got {weights}.")
        if self.momentum_gamma is not None and not 0.0 <= self.momentum_gamma < 1.0:
            raise ImageError(f"The momentum gamma must lie in [0, 1), got {self.momentum_gamma}.")

    def momentum(self) -> MomentumSmoothness:
        return MomentumSmoothness(self.momentum_scale, self.momentum_gamma, self.score_smoothness)


# --------------------------------------------------------------------------------------------
# Schedule and the alternating steps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaCSSchedule:
    """Which estimator step ``step`` (0-based) trains (see the module notes)."""

    iterations: int
    displacement_warmup: int
    scoring_warmup: int
    scoring: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.displacement_warmup < 0 or self.scoring_warmup < 0:
            raise ImageError(
                f"AdaCS needs iterations >= 1 and warm-ups >= 0; got {self.iterations}, "
                f"{self.displacement_warmup} and {self.scoring_warmup}."
            )

    def phase(self, step: int) -> str:
        """``displacement`` or ``scoring``."""
        if not self.scoring or step < self.displacement_warmup:
            return "displacement"
        after = step - self.displacement_warmup - self.scoring_warmup
        return "scoring" if after < 0 or after % 2 == 1 else "displacement"

    def uses_score(self, step: int) -> bool:
        """Whether a displacement step at ``step`` weights by ``S`` (else ``S = 1``)."""
        return self.scoring and step >= self.displacement_warmup


def displacement_objective(
    estimators: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    geometry: Geometry,
    objective: AdaCSObjective,
    use_score: bool = True,
) -> DisplacementLoss:
    """``L_de`` of ``estimators`` (an :class:`AdaCSModel` or the per-pair estimators) on
    normalised ``source`` and ``target`` ``[N, 1, *spatial]``; the score is computed without
    a graph (``S = 1`` unless ``use_score``)."""
    displacement = estimators.displacement(source, target, geometry)
    warped = warp(source, displacement, geometry)
    with torch.no_grad():
        score = estimators.score(target) if use_score else torch.ones_like(target)
    mask = foreground_mask(source, target, objective.foreground_threshold)
    return displacement_loss(target, warped, displacement, score, mask, geometry, objective.smoothness_weight)


def scoring_objective(
    estimators: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    geometry: Geometry,
    objective: AdaCSObjective,
    momentum: MomentumSmoothness,
) -> ScoringLoss:
    """``L_se`` of ``estimators`` on normalised ``source`` and ``target``; the displacement is
    computed without a graph, and ``momentum`` takes this step's ``mu``."""
    with torch.no_grad():
        warped = warp(source, estimators.displacement(source, target, geometry), geometry)
    mask = foreground_mask(source, target, objective.foreground_threshold)
    weight = momentum.update(float(mean_squared_residual(target, warped, mask)))
    return scoring_loss(target, warped, estimators.score(target), mask, geometry, objective.score_regularization, weight)


def _descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class AdaCSAlternation:
    """Takes one step of the schedule at a time, each estimator with its own optimiser.

    ``estimators`` has ``displacement(source, target, geometry)`` and ``score(target)`` (an
    :class:`AdaCSModel`); each optimiser holds only its estimator's parameters (the scoring
    one may be ``None`` when the schedule never scores). A step builds the graph of one loss
    only (see :func:`displacement_objective`, :func:`scoring_objective`), so the other
    estimator's parameters and gradients are left as they were.
    """

    def __init__(self, estimators, schedule: AdaCSSchedule, objective: AdaCSObjective, displacement_optimizer, scoring_optimizer) -> None:
        self.estimators, self.schedule, self.objective = estimators, schedule, objective
        self.optimizers = {"displacement": displacement_optimizer, "scoring": scoring_optimizer}
        self.momentum = objective.momentum()

    def step(self, step: int, source: torch.Tensor, target: torch.Tensor, geometry: Geometry) -> dict:
        """One optimiser step; returns the loss terms as floats with ``step`` and ``phase``."""
        phase = self.schedule.phase(step)
        if phase == "displacement":
            loss = displacement_objective(self.estimators, source, target, geometry, self.objective, self.schedule.uses_score(step))
        else:
            loss = scoring_objective(self.estimators, source, target, geometry, self.objective, self.momentum)
        _descend(self.optimizers[phase], loss.total)
        terms = {name: float(value.detach()) if torch.is_tensor(value) else value for name, value in loss._asdict().items()}
        return {"step": step, "phase": phase, **terms}


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def _padded_forward(network: LightUNet, inputs: torch.Tensor) -> torch.Tensor:
    padded, crop = pad_to_multiple(inputs, network.size_multiple)
    return network(padded)[crop]


class AdaCSModel(nn.Module):
    """The displacement network and the scoring network.

    * ``displacement_network``: ``LightUNet(dim, 2, dim)`` on ``[source, target]``; its output
      is a displacement (or, if ``diffeomorphic``, a stationary velocity integrated by
      ``integration_steps`` squarings) in voxels along the index axes, converted to mm with the
      geometry. Its head starts at zero: the untrained network predicts the identity.
    * ``scoring_network``: ``LightUNet(dim, 1, 1)`` with a sigmoid on the target alone (0.5
      untrained); ``None`` with ``scoring=False`` (then ``S = 1``).

    ``channels`` are the U-Net widths (default :data:`imse.networks.LIGHT_CHANNELS`);
    ``spacing_mm`` (ITK order) is the training spacing, for tensors given without a geometry.
    Any spatial size works (inputs are padded to the U-Net's multiple).
    """

    def __init__(
        self,
        dim: int = 2,
        scoring: bool = True,
        diffeomorphic: bool = False,
        integration_steps: int = 7,
        channels: Sequence[int] | None = None,
        spacing_mm: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ImageError(f"AdaCS networks are 2D or 3D; got dim={dim}.")
        if integration_steps < 0:
            raise ImageError(f"The number of scaling-and-squaring steps must be >= 0, got {integration_steps}.")
        self.dim, self.diffeomorphic, self.integration_steps = dim, diffeomorphic, integration_steps
        self.channels = tuple(channels or LIGHT_CHANNELS[dim])
        self.spacing_mm = None if spacing_mm is None else tuple(float(s) for s in spacing_mm)
        self.displacement_network = LightUNet(dim, 2, dim, self.channels, final_activation="none")
        self.scoring_network = LightUNet(dim, 1, 1, self.channels, final_activation="sigmoid") if scoring else None

    @property
    def scoring(self) -> bool:
        return self.scoring_network is not None

    @property
    def settings(self) -> dict:
        """The constructor arguments (JSON-ready), as the model card stores them."""
        return {
            "dim": self.dim,
            "scoring": self.scoring,
            "diffeomorphic": self.diffeomorphic,
            "integration_steps": self.integration_steps,
            "channels": list(self.channels),
            "spacing_mm": None if self.spacing_mm is None else list(self.spacing_mm),
        }

    def default_geometry(self) -> Geometry:
        """An axis-aligned grid at the training spacing (1 mm when unknown)."""
        return Geometry.identity(self.dim, self.spacing_mm or 1.0)

    def displacement(self, source: torch.Tensor, target: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """``u`` in mm ``[N, dim, *spatial]`` on the target grid, from normalised images
        ``[N, 1, *spatial]``."""
        voxels = _padded_forward(self.displacement_network, torch.cat([source, target], 1))
        field_mm = displacement_to_mm(voxels, geometry)
        return as_displacement(field_mm, geometry, self.diffeomorphic, self.integration_steps)

    def score(self, target: torch.Tensor) -> torch.Tensor:
        """``S`` in (0, 1) ``[N, 1, *spatial]`` from the normalised target (ones without scoring)."""
        if self.scoring_network is None:
            return torch.ones_like(target)
        return _padded_forward(self.scoring_network, target)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def minmax_normalize(values: torch.Tensor) -> torch.Tensor:
    """Map a tensor's intensities to [0, 1] (one minimum and maximum for the whole tensor)."""
    if not torch.isfinite(values).all():
        raise ImageError("The frames contain NaN or infinite values; fix or exclude those frames.")
    low, high = values.min(), values.max()
    if not high > low:
        raise ImageError("The frames have a single intensity, so there is no motion to track. Check the input.")
    return (values - low) / (high - low)


def _as_batch(image: ArrayLike, dim: int, name: str) -> torch.Tensor:
    """A single image of ``dim`` spatial axes, given as ``*spatial`` or ``[1, 1, *spatial]``,
    as a float tensor ``[1, 1, *spatial]``."""
    tensor = torch.as_tensor(image, dtype=torch.float32)
    if tensor.ndim == dim + 2 and tensor.shape[:2] == (1, 1):
        return tensor
    if tensor.ndim == dim:
        return tensor[None, None]
    raise ImageError(f"The {name} must be a {dim}D image (shape *spatial or [1, 1, *spatial]); got shape {tuple(tensor.shape)}.")


def _normalised_pair(source: ArrayLike, target: ArrayLike, dim: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(source, normalised source, normalised target)`` on ``device``, both normalised by
    the pair's joint minimum and maximum."""
    source_tensor, target_tensor = _as_batch(source, dim, "source"), _as_batch(target, dim, "target")
    if source_tensor.shape != target_tensor.shape:
        raise ImageError(
            f"Source and target frames must share one grid; got shapes {tuple(source_tensor.shape[2:])} "
            f"and {tuple(target_tensor.shape[2:])}."
        )
    normalised = minmax_normalize(torch.stack([source_tensor, target_tensor])).to(device)
    return source_tensor.to(device), normalised[0], normalised[1]


# --------------------------------------------------------------------------------------------
# Training a network on cine frames
# --------------------------------------------------------------------------------------------


@dataclass
class AdaCSConfig:
    """Settings of :func:`train_adacs` (the dimension comes from the geometry).

    Attributes:
        iterations: optimiser steps in all (warm-ups included; each step trains one network).
        displacement_warmup, scoring_warmup: the schedule's warm-up steps (the paper: 20 epochs
            each).
        displacement_learning_rate, scoring_learning_rate: Adam's (paper: 1e-4 each).
        objective: the loss weights (:class:`AdaCSObjective`).
        scoring: False trains the baseline (``S = 1``, plain masked MSE).
        diffeomorphic, integration_steps: the displacement network predicts a velocity.
        channels: U-Net widths (default :data:`imse.networks.LIGHT_CHANNELS`).
        pairing: ``reference`` (target ``reference_frame``, source every other frame: the
            Lagrangian displacements that strain needs) or ``consecutive`` (target ``t - 1``,
            source ``t``).
        reference_frame: the target frame of the ``reference`` pairing (end-diastole).
        batch_size: pairs per step, drawn at random with a generator seeded by ``seed``.
        seed: seeds the initial weights (torch's global generator) and the pair sampling.
        device: ``auto``, ``cuda`` or ``cpu``.
        time_limit_minutes: stop after the step that passes this wall time and keep the model
            (``None``: run every iteration); the summary says where it stopped.
        command: the command line, for the model card (default: this process's).
    """

    iterations: int = 6000
    displacement_warmup: int = 1000
    scoring_warmup: int = 1000
    displacement_learning_rate: float = 1e-4
    scoring_learning_rate: float = 1e-4
    objective: AdaCSObjective = field(default_factory=AdaCSObjective)
    scoring: bool = True
    diffeomorphic: bool = False
    integration_steps: int = 7
    channels: tuple[int, ...] | None = None
    pairing: str = "reference"
    reference_frame: int = 0
    batch_size: int = 4
    seed: int = 0
    device: str = "auto"
    time_limit_minutes: float | None = None
    command: str = ""

    def __post_init__(self) -> None:
        self.schedule  # validates the counts
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise ImageError(f"The time limit must be a positive number of minutes, got {self.time_limit_minutes}.")
        if self.pairing not in PAIRINGS:
            raise ImageError(f"Unknown pairing '{self.pairing}'; choose one of {list(PAIRINGS)}.")
        if self.batch_size < 1 or min(self.displacement_learning_rate, self.scoring_learning_rate) <= 0:
            raise ImageError("AdaCS training needs a batch size >= 1 and positive learning rates.")
        self.command = self.command or invoked_command()

    @property
    def schedule(self) -> AdaCSSchedule:
        return AdaCSSchedule(self.iterations, self.displacement_warmup, self.scoring_warmup, self.scoring)


@dataclass
class AdaCSTraining:
    """What :func:`train_adacs` returns: the trained ``model`` (evaluation mode), the
    per-step ``history`` (loss terms, ``step`` and ``phase``) and a ``summary`` for the model
    card (:func:`save_adacs`)."""

    model: AdaCSModel
    history: list[dict]
    summary: dict


def train_adacs(
    cines: ArrayLike | Sequence[ArrayLike],
    geometry: Geometry,
    config: AdaCSConfig | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AdaCSTraining:
    """Train the AdaCS networks on the frame pairs of one or more cines.

    Args:
        cines: a cine ``[T, *spatial]`` (NumPy order) or a sequence of cines of one spatial
            shape, all on ``geometry``. Each cine is min-max normalised to [0, 1] as a whole.
            Explicit pairs are 2-frame cines ``[target, source]`` with the ``reference`` pairing.
        geometry: the frames' grid (its dimension is the networks').
        config: :class:`AdaCSConfig` (defaults as in the paper).
        progress: ``progress(step, total, values)`` after each step, ``values`` the history
            entry.
        should_stop: polled each step; True raises :class:`~imse.errors.Cancelled` (nothing is
            returned or written).
    """
    config = config or AdaCSConfig()
    started = time.perf_counter()
    device = resolve_device(config.device)
    frames = _training_cines(cines, geometry, device)
    pairs = _frame_pairs([len(cine) for cine in frames], config.pairing, config.reference_frame)
    torch.manual_seed(config.seed)
    model = AdaCSModel(geometry.dim, config.scoring, config.diffeomorphic, config.integration_steps, config.channels, geometry.spacing)
    model.to(device).train()
    displacement_optimizer = torch.optim.Adam(model.displacement_network.parameters(), lr=config.displacement_learning_rate)
    scoring_optimizer = torch.optim.Adam(model.scoring_network.parameters(), lr=config.scoring_learning_rate) if config.scoring else None
    alternation = AdaCSAlternation(model, config.schedule, config.objective, displacement_optimizer, scoring_optimizer)
    generator = torch.Generator().manual_seed(config.seed)
    tracker = IterationTracker(config.iterations, progress, should_stop, "AdaCS training was cancelled; no model was written.")
    deadline = math.inf if config.time_limit_minutes is None else started + 60.0 * config.time_limit_minutes
    for step in range(config.iterations):
        if time.perf_counter() > deadline:
            break
        source, target = _sample_batch(frames, pairs, config.batch_size, generator)
        tracker.step(alternation.step(step, source, target, geometry))
    model.eval()
    summary = _training_summary(config, frames, pairs, tracker.curve, device, time.perf_counter() - started)
    return AdaCSTraining(model, tracker.curve, summary)


def _training_cines(cines, geometry: Geometry, device) -> list[torch.Tensor]:
    """The cines as normalised tensors ``[T, 1, *spatial]`` on ``device``."""
    cines = [cines] if isinstance(cines, (np.ndarray, torch.Tensor)) else list(cines)
    if not cines:
        raise ImageError("AdaCS training needs at least one cine.")
    tensors = []
    for index, cine in enumerate(cines):
        tensor = torch.as_tensor(cine, dtype=torch.float32)
        if tensor.ndim != geometry.dim + 1 or len(tensor) < 2:
            raise ImageError(
                f"Cine {index + 1} must be [T, *spatial] with T >= 2 frames of {geometry.dim}D images; got shape "
                f"{tuple(tensor.shape)}."
            )
        if tensors and tensor.shape[1:] != tensors[0].shape[2:]:
            raise ImageError(f"All cines must share one frame shape; cine {index + 1} is {tuple(tensor.shape[1:])}.")
        tensors.append(minmax_normalize(tensor).unsqueeze(1).to(device))
    return tensors


def _frame_pairs(lengths: list[int], pairing: str, reference_frame: int) -> list[tuple[int, int, int]]:
    """``(cine, target frame, source frame)`` of every training pair."""
    if pairing == "consecutive":
        return [(c, t - 1, t) for c, length in enumerate(lengths) for t in range(1, length)]
    if not all(0 <= reference_frame < length for length in lengths):
        raise ImageError(f"The reference frame {reference_frame} is outside a cine of {min(lengths)} frames.")
    return [(c, reference_frame, t) for c, length in enumerate(lengths) for t in range(length) if t != reference_frame]


def _sample_batch(frames, pairs, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources and targets ``[batch, 1, *spatial]`` of randomly drawn pairs."""
    chosen = [pairs[int(i)] for i in torch.randint(len(pairs), (batch_size,), generator=generator)]
    source = torch.stack([frames[c][s] for c, _, s in chosen])
    target = torch.stack([frames[c][t] for c, t, _ in chosen])
    return source, target


def _final_losses(history: list[dict], window: int = 20) -> dict[str, float]:
    """Mean ``total`` of the last ``window`` steps of each phase."""
    finals = {}
    for phase in ("displacement", "scoring"):
        totals = [entry["total"] for entry in history if entry["phase"] == phase][-window:]
        if totals:
            finals[f"final_{phase}_loss"] = float(np.mean(totals))
    return finals


def _training_summary(config: AdaCSConfig, frames, pairs, history, device, seconds: float) -> dict:
    return {
        "command": config.command,
        "data": f"{len(frames)} cine(s), {sum(len(c) for c in frames)} frames, {len(pairs)} pairs ({config.pairing})",
        "frame_shape": list(frames[0].shape[2:]),
        "normalization": "min-max to [0, 1] per cine",
        "iterations": len(history),
        "stopped_at_time_limit": len(history) < config.iterations,
        "seconds": round(seconds, 1),
        "device": str(device),
        "seed": config.seed,
        **_final_losses(history),
        "config": asdict(config),
    }


# --------------------------------------------------------------------------------------------
# Model files and inference
# --------------------------------------------------------------------------------------------


def save_adacs(model: AdaCSModel, folder: str | Path, name: str, training: dict | None = None, modality: str = "cardiac cine") -> Path:
    """Write ``<folder>/<name>.safetensors`` (both networks' weights, prefixed
    ``displacement_network.`` and ``scoring_network.``) and ``<name>.json``, a
    :class:`~imse.models.ModelCard` with task ``adacs`` whose ``training`` holds the network
    settings (``network``) and ``training`` (e.g. :attr:`AdaCSTraining.summary`). Returns the
    weights path."""
    training = dict(training or {})
    card = ModelCard(
        name=name,
        task=TASK,
        architecture="adacs-light-unet",
        dim=model.dim,
        modality=modality,
        normalization={"method": "minmax", "range": [0.0, 1.0]},
        patch_size=list(training.get("frame_shape", [])),
        spacing_mm=float(np.mean(model.spacing_mm or 1.0)),
        training={"network": model.settings, **training},
    )
    return save_model(model, card, folder)


def load_adacs(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load what :func:`save_adacs` wrote (give the ``.safetensors``, the ``.json`` or their
    stem), on ``device``, in evaluation mode; ``.network`` is the :class:`AdaCSModel`."""
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in (MODEL_SUFFIX, CARD_SUFFIX) else stem
    weights, card_path = stem.with_suffix(MODEL_SUFFIX), stem.with_suffix(CARD_SUFFIX)
    if not weights.exists() or not card_path.exists():
        raise ImageError(f"An AdaCS model needs both '{weights.name}' and '{card_path.name}' in '{weights.parent}'.")
    card = ModelCard.from_json(card_path)
    if card.task != TASK or "network" not in card.training:
        raise ImageError(f"'{card_path.name}' describes a '{card.task}' model, not an AdaCS model.")
    model = AdaCSModel(**card.training["network"])
    model.load_state_dict(load_file(str(weights), device=str(device)))
    return LoadedModel(model.to(device).eval(), card, weights)


def register_frames(
    model: AdaCSModel, source: ArrayLike, target: ArrayLike, geometry: Geometry | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Register one pair with a trained model, in one forward pass.

    ``source`` (moving) and ``target`` (fixed) are images of one grid, ``*spatial`` or
    ``[1, 1, *spatial]``, any intensities (normalised together to [0, 1] here); ``geometry``
    is their grid (default :meth:`AdaCSModel.default_geometry`). Returns, on the model's
    device: the displacement ``[1, dim, *spatial]`` in mm on the target grid, the source
    warped onto the target grid ``[1, 1, *spatial]`` (its own intensities) and the score
    ``[1, 1, *spatial]`` in (0, 1) (ones for a model without scoring).
    """
    geometry = geometry or model.default_geometry()
    if geometry.dim != model.dim:
        raise ImageError(f"The geometry is {geometry.dim}D but the model is {model.dim}D.")
    device = next(model.parameters()).device
    source_tensor, source_normalised, target_normalised = _normalised_pair(source, target, model.dim, device)
    model.eval()
    with torch.no_grad():
        displacement = model.displacement(source_normalised, target_normalised, geometry)
        return displacement, warp(source_tensor, displacement, geometry), model.score(target_normalised)


# --------------------------------------------------------------------------------------------
# Per-pair AdaCS without a network
# --------------------------------------------------------------------------------------------


@dataclass
class AdaCSPairSettings:
    """Settings of :func:`adacs_pair`.

    Attributes:
        iterations, displacement_warmup, scoring_warmup: the schedule (module notes).
        step_voxels: Adam's learning rate for the field, in voxels (converted to mm).
        score_learning_rate: Adam's learning rate for the score logits.
        smoothing_voxels: the field parameter is Gaussian-smoothed by this width (voxels)
            before use, as in :mod:`imse.register` (0: off).
        objective: the loss weights (:class:`AdaCSObjective`).
        scoring: False gives the baseline (``S = 1``: masked MSE registration).
        diffeomorphic, integration_steps: optimise a velocity and integrate it.
        device: ``auto``, ``cuda`` or ``cpu``.
    """

    iterations: int = 300
    displacement_warmup: int = 100
    scoring_warmup: int = 50
    step_voxels: float = 0.25
    score_learning_rate: float = 0.1
    smoothing_voxels: float = 1.5
    objective: AdaCSObjective = field(default_factory=AdaCSObjective)
    scoring: bool = True
    diffeomorphic: bool = False
    integration_steps: int = 7
    device: str = "auto"

    def __post_init__(self) -> None:
        self.schedule  # validates the counts
        if self.step_voxels <= 0 or self.score_learning_rate <= 0 or self.smoothing_voxels < 0:
            raise ImageError("AdaCS needs positive learning rates and a smoothing width >= 0.")

    @property
    def schedule(self) -> AdaCSSchedule:
        return AdaCSSchedule(self.iterations, self.displacement_warmup, self.scoring_warmup, self.scoring)

    @classmethod
    def for_iterations(cls, iterations: int, **options) -> "AdaCSPairSettings":
        """Settings whose warm-ups keep the defaults' proportions (a third of the steps for the
        displacement, a sixth for the score), so that any step count scores in its last half."""
        return cls(iterations=iterations, displacement_warmup=iterations // 3, scoring_warmup=iterations // 6, **options)


@dataclass
class AdaCSPairResult:
    """``displacement``: ``[1, dim, *spatial]`` mm on the target grid; ``warped``: the source
    on the target grid ``[1, 1, *spatial]`` (its own intensities); ``score``: ``[1, 1,
    *spatial]`` in (0, 1); ``loss_curve``: one entry per step (terms, ``step``, ``phase``).
    Tensors on the CPU."""

    displacement: torch.Tensor
    warped: torch.Tensor
    score: torch.Tensor
    loss_curve: list[dict]
    seconds: float


class _PairEstimators(nn.Module):
    """A dense field parameter (mm; a velocity if diffeomorphic), Gaussian-smoothed before use,
    and a free score map ``S = sigmoid(logit)``, both on the target grid."""

    def __init__(self, shape: tuple[int, ...], dim: int, settings: AdaCSPairSettings) -> None:
        super().__init__()
        self.settings = settings
        self.field_parameter = nn.Parameter(torch.zeros(1, dim, *shape))
        self.score_logit = nn.Parameter(torch.zeros(1, 1, *shape))

    def displacement(self, source: torch.Tensor, target: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        settings = self.settings
        smoothed = optional_gaussian_smooth(self.field_parameter, settings.smoothing_voxels)
        return as_displacement(smoothed, geometry, settings.diffeomorphic, settings.integration_steps)

    def score(self, target: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.score_logit) if self.settings.scoring else torch.ones_like(target)


def adacs_pair(
    source: ArrayLike,
    target: ArrayLike,
    geometry: Geometry,
    settings: AdaCSPairSettings | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AdaCSPairResult:
    """AdaCS on one pair by optimisation: a displacement field and a score map, alternating as
    the networks do (same losses, schedule and gradient separation).

    ``source`` (moving) and ``target`` (fixed) are images on ``geometry`` (``*spatial`` or
    ``[1, 1, *spatial]``), normalised together to [0, 1]. ``progress(done, total, values)``
    reports each step; ``should_stop()`` is polled each step and raises
    :class:`~imse.errors.Cancelled`.
    """
    settings = settings or AdaCSPairSettings()
    started = time.perf_counter()
    device = resolve_device(settings.device)
    source_tensor, source_normalised, target_normalised = _normalised_pair(source, target, geometry.dim, device)
    estimators = _PairEstimators(tuple(target_normalised.shape[2:]), geometry.dim, settings).to(device)
    field_rate = settings.step_voxels * float(np.mean(geometry.spacing))
    alternation = AdaCSAlternation(
        estimators,
        settings.schedule,
        settings.objective,
        torch.optim.Adam([estimators.field_parameter], lr=field_rate),
        torch.optim.Adam([estimators.score_logit], lr=settings.score_learning_rate),
    )
    tracker = IterationTracker(settings.iterations, progress, should_stop, "The AdaCS registration was cancelled; no result was produced.")
    for step in range(settings.iterations):
        tracker.step(alternation.step(step, source_normalised, target_normalised, geometry))
    with torch.no_grad():
        displacement = estimators.displacement(source_normalised, target_normalised, geometry)
        warped = warp(source_tensor, displacement, geometry)
        score = estimators.score(target_normalised)
    return AdaCSPairResult(displacement.cpu(), warped.cpu(), score.cpu(), tracker.curve, time.perf_counter() - started)
