"""Registration networks (the IMSE paper's stage 2): one forward pass predicts the displacement.

A U-Net (:class:`imse.networks.LightUNet`, two input channels ``[moving, fixed]`` normalised to
[-1, 1], ``dim`` output channels, zero-initialised head so the untrained network predicts the
identity) outputs a displacement, or with ``diffeomorphic`` a stationary velocity integrated by
scaling and squaring, in voxels along the working grid's index axes; it is converted to mm with
the grid's geometry, so the result follows :mod:`imse.geometry` (the fixed point ``p`` maps to
the moving point ``p + u(p)``).

Training (:func:`train_registration_network`) minimises, over many synthetic pairs,
``similarity(fixed, moving o (id + u)) + weight * diffusion(u)`` (:mod:`imse.similarity`,
:mod:`imse.regularization`). With the ``imse`` similarity the frozen evaluator sees both channel
orders (``both_orders``) and the network registers in both directions: each batch is either
"other contrast onto T1" or "T1 onto other contrast", as in the paper's loss
``|E(B, A o R(A, B))| + |E(B o R(B, A), A)| + smooth``. ``mind`` is the alternative loss
(per-pair optimisation of the IMSE loss alone can be fooled; see shared/FINDINGS.md).

With a ``teacher`` (a registration preset, :data:`imse.presets.PRESETS`, such as ``imse-2d``)
the network learns instead to give in one pass what that per-pair optimisation finds: the
preset registers every pool pair once in each direction trained (with the run's evaluator),
and the loss is the mean distance (mm) from the teacher's field plus the regularisation
(distillation). The true fields still serve only to validate, and the validation rows of the
history keep the similarity's loss beside them. The teacher's fields are kept in
``out/checkpoints/teacher.*`` and reused on resume.

Training pairs come from :func:`imse.data.make_pair` on the MNI atlas: fixed T1, moving a
T2/PD/CT-like rendering deformed by a known random field. The central slab that
:mod:`imse.train_evaluator` holds out (20 % of the axial extent) is never trained on: 2D pairs
are axial slices outside it, 3D pairs are cropped to the part below or above it. Validation
pairs come from inside it, and their known fields give the end-point error and tissue Dice
during training.

Inference (:func:`register_with_network`) resamples both images onto the model's training
spacing over the fixed image's box, predicts, resamples the field onto the fixed grid, and can
refine it with a few steps of per-pair optimisation (:func:`imse.register.register_pair`); it
returns the same :class:`~imse.register.RegistrationResult` as the optimiser.

Reference: Kong et al., "Indescribable Multi-modal Spatial Evaluator", CVPR 2023.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file
from tqdm import tqdm

from .device import resolve_device
from .errors import Cancelled, ImageError
from .field import as_displacement, compose, displacement_to_mm, jacobian_determinant, warp
from .geometry import Geometry
from .image import Image, from_tensor, normalize_intensity, resample_to, resample_to_spacing, to_tensor
from .models import CARD_SUFFIX, MODEL_SUFFIX, LoadedModel, ModelCard, find_model, list_models, load_checkpoint, save_checkpoint, save_model
from .networks import LIGHT_CHANNELS, LightUNet, pad_to_multiple
from .progress import Progress
from .register import RegistrationResult, RegistrationSettings, check_registration_inputs, resample_displacement, register_pair
from .regularization import REGULARIZERS, regularization
from .similarity import build_similarity
from .training_run import TrainingRunSettings

TASK = "registration"
ARCHITECTURE = "registration-light-unet"
#: The similarities a network can be trained with.
TRAINING_SIMILARITIES = ("imse", "mind")
#: Diffusion weights per training similarity. On 2D MNI pairs (8 mm fields) the true field's
#: diffusion energy is about 0.06 while mean |E| (both orders) falls by about 0.03 and MIND by
#: about 0.07 from the deformed to the aligned pair: these weights make the true field's
#: penalty a fifth to a quarter of the similarity it gains.
DEFAULT_WEIGHTS = {"imse": 0.1, "mind": 0.3}
#: The fixed image is always the MNI T1 in training pairs; the moving one one of these. CT-like
#: images are left out: percentile normalisation over the -1000 HU background leaves only the
#: brain silhouette (all tissue maps to about 1), see shared/FINDINGS.md.
DEFAULT_CONTRASTS = ("t2", "pd")
DEFAULT_PATCH_SIZE = {2: (112, 96), 3: (32, 80, 64)}
DEFAULT_SPACING_MM = {2: 2.0, 3: 3.0}
#: Axial slices whose brain area is below this fraction of the largest are not trained on.
MIN_BRAIN_FRACTION = 0.25


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class RegistrationNetwork(nn.Module):
    """``u = R(moving, fixed)`` in mm (see the module docstring).

    Args:
        dim: 2 or 3.
        diffeomorphic: the U-Net outputs a stationary velocity, integrated by
            ``integration_steps`` squarings (:func:`imse.field.integrate_velocity`).
        channels: U-Net widths per level (default :data:`imse.networks.LIGHT_CHANNELS`).
        spacing_mm: the training spacing (ITK order); inference resamples to it.
        percentiles: the intensity percentiles mapped to -1 and 1
            (:func:`imse.image.normalize_intensity`).
    """

    def __init__(
        self,
        dim: int = 2,
        diffeomorphic: bool = False,
        integration_steps: int = 7,
        channels: Sequence[int] | None = None,
        spacing_mm: Sequence[float] | float | None = None,
        percentiles: Sequence[float] = (0.5, 99.5),
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ImageError(f"Registration networks are 2D or 3D; got dim={dim}.")
        if integration_steps < 0:
            raise ImageError(f"The number of scaling-and-squaring steps must be >= 0, got {integration_steps}.")
        self.dim, self.diffeomorphic, self.integration_steps = dim, bool(diffeomorphic), int(integration_steps)
        self.channels = tuple(channels or LIGHT_CHANNELS[dim])
        spacing = DEFAULT_SPACING_MM[dim] if spacing_mm is None else spacing_mm
        self.spacing_mm = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (dim,)))
        self.percentiles = tuple(float(p) for p in percentiles)
        self.unet = LightUNet(dim, 2, dim, self.channels, final_activation="none")

    @property
    def settings(self) -> dict:
        """The constructor arguments (JSON-ready), as the model card stores them."""
        return {
            "dim": self.dim,
            "diffeomorphic": self.diffeomorphic,
            "integration_steps": self.integration_steps,
            "channels": list(self.channels),
            "spacing_mm": list(self.spacing_mm),
            "percentiles": list(self.percentiles),
        }

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """The displacement ``[N, dim, *spatial]`` in mm on ``geometry`` (the grid of both inputs)
        from ``moving`` and ``fixed`` ``[N, 1, *spatial]`` normalised to [-1, 1]."""
        if moving.shape != fixed.shape or moving.ndim != self.dim + 2 or moving.shape[1] != 1:
            raise ImageError(
                f"A {self.dim}D registration network needs two images [N, 1, *spatial] of one shape; got "
                f"{tuple(moving.shape)} and {tuple(fixed.shape)}."
            )
        padded, crop = pad_to_multiple(torch.cat([moving, fixed], 1), self.unet.size_multiple)
        field_mm = displacement_to_mm(self.unet(padded)[crop], geometry)
        return as_displacement(field_mm, geometry, self.diffeomorphic, self.integration_steps)


class RegistrationLoss(NamedTuple):
    """The named terms of the training objective (scalars): ``total = similarity + weight *
    regularization``."""

    total: torch.Tensor
    similarity: torch.Tensor
    regularization: torch.Tensor


def distillation_loss(
    network: RegistrationNetwork,
    fixed: torch.Tensor,
    moving: torch.Tensor,
    target: torch.Tensor,
    geometry: Geometry,
    regularizer: str = "diffusion",
    weight: float = 0.1,
) -> RegistrationLoss:
    """The objective with a teacher on a batch of normalised pairs ``[N, 1, *spatial]``: the mean
    distance (mm) of the predicted displacement from the teacher's ``target`` ``[N, dim,
    *spatial]`` (mm), as the ``similarity`` term, plus ``weight`` times the regularisation."""
    displacement = network(moving, fixed, geometry)
    distance = ((displacement - target).pow(2).sum(1) + 1e-6).sqrt().mean()  # smooth at 0: no NaN gradient
    penalty = regularization(regularizer, displacement, geometry)
    return RegistrationLoss(distance + weight * penalty, distance, penalty)


def registration_loss(
    network: RegistrationNetwork,
    similarity: nn.Module,
    fixed: torch.Tensor,
    moving: torch.Tensor,
    geometry: Geometry,
    regularizer: str = "diffusion",
    weight: float = 0.1,
) -> tuple[RegistrationLoss, torch.Tensor]:
    """The objective on a batch of normalised pairs ``[N, 1, *spatial]`` on ``geometry``, and the
    predicted displacement (mm)."""
    displacement = network(moving, fixed, geometry)
    similarity_value = similarity(fixed, warp(moving, displacement, geometry))
    penalty = regularization(regularizer, displacement, geometry)
    return RegistrationLoss(similarity_value + weight * penalty, similarity_value, penalty), displacement


# --------------------------------------------------------------------------------------------
# Training pairs
# --------------------------------------------------------------------------------------------


@dataclass
class PairBatch:
    """Pairs cropped or padded to one patch size, as tensors ``[N, C, *patch]``: ``fixed`` (T1)
    and ``moving`` normalised to [-1, 1]; ``displacement`` the true field (mm) on the fixed grid;
    ``fixed_labels``, ``moving_labels`` tissue labels (float, 0 outside the brain)."""

    fixed: torch.Tensor
    moving: torch.Tensor
    displacement: torch.Tensor
    fixed_labels: torch.Tensor
    moving_labels: torch.Tensor

    def select(self, index: torch.Tensor) -> "PairBatch":
        return PairBatch(*(getattr(self, item.name)[index] for item in fields(self)))

    def to(self, device: torch.device) -> "PairBatch":
        return PairBatch(*(getattr(self, item.name).to(device) for item in fields(self)))


def held_out_axial_range_mm(spacing_mm: float) -> tuple[float, float]:
    """The LPS z range (mm) of the MNI atlas slab that :func:`imse.train_evaluator.held_out_slab`
    holds out, at ``spacing_mm``: voxel planes whose z lies in ``[low, high]`` are held out."""
    from .data import load_mni_atlas
    from .train_evaluator import held_out_slab

    atlas = load_mni_atlas(spacing_mm)
    low, high = held_out_slab(atlas.t1.shape[0])
    z = [float(atlas.geometry.index_to_physical(np.array([0.0, 0.0, k]))[2]) for k in (low, high - 1)]
    return min(z), max(z)


def axial_positions_mm(spacing_mm: float, held_out: bool) -> list[float]:
    """z (mm, LPS) of the atlas's axial voxel planes at ``spacing_mm`` that hold a brain section of
    at least :data:`MIN_BRAIN_FRACTION` of the largest: inside the held-out slab, or outside it."""
    from .data import load_mni_atlas

    atlas = load_mni_atlas(spacing_mm)
    area = atlas.brain.array.reshape(atlas.brain.shape[0], -1).sum(1)
    low, high = held_out_axial_range_mm(spacing_mm)
    positions = []
    for k in np.flatnonzero(area >= MIN_BRAIN_FRACTION * area.max()):
        z = float(atlas.geometry.index_to_physical(np.array([0.0, 0.0, k]))[2])
        if (low - 1e-3 <= z <= high + 1e-3) == held_out:
            positions.append(z)
    return positions


def make_pair_batch(
    count: int,
    dim: int,
    spacing_mm: float,
    patch_size: Sequence[int],
    contrasts: Sequence[str],
    max_displacement_mm: tuple[float, float],
    held_out: bool,
    seed: int,
) -> tuple[PairBatch, Geometry]:
    """``count`` pairs (T1 fixed, one of ``contrasts`` moving, a field of largest norm drawn from
    ``max_displacement_mm`` (low, high)), from outside the held-out slab (``held_out=False``) or
    inside it, as one :class:`PairBatch`, and their common grid geometry (origin 0). The same
    arguments give the same pairs. Held-out pairs cycle through ``contrasts`` in order."""
    from .data import make_pair

    rng = np.random.default_rng([seed, int(held_out)])
    positions = axial_positions_mm(spacing_mm, held_out) if dim == 2 else None
    slab = held_out_axial_range_mm(spacing_mm)
    samples, geometry = [], None
    for index in range(count):
        contrast = contrasts[index % len(contrasts)] if held_out else contrasts[rng.integers(len(contrasts))]
        largest = float(rng.uniform(*max_displacement_mm))
        pair_seed = int(rng.integers(2**31))
        if dim == 2:
            spread = positions[int(index * len(positions) / count)]  # held-out pairs span the slab
            position = spread if held_out else positions[rng.integers(len(positions))]
            pair = make_pair(2, "t1", contrast, spacing_mm, "axial", position, largest, seed=pair_seed)
            box = None
        else:
            pair = make_pair(3, "t1", contrast, spacing_mm, max_displacement_mm=largest, seed=pair_seed)
            box = _slab_side(pair.fixed, slab, held_out, side=int(rng.integers(2)))
        images = _patch_tensors(pair, patch_size, box)
        spacing_direction = (pair.fixed.geometry.spacing, pair.fixed.geometry.direction)
        if geometry is None:
            geometry = Geometry(spacing_direction[0], (0.0,) * dim, spacing_direction[1])
        elif (geometry.spacing, geometry.direction) != spacing_direction:
            raise ImageError("Training pairs on differently oriented grids cannot share a batch.")
        samples.append(images)
    batch = PairBatch(*(torch.stack([sample[i] for sample in samples]) for i in range(5)))
    return batch, geometry


def _slab_side(image: Image, slab: tuple[float, float], held_out: bool, side: int) -> tuple[int, int]:
    """First and last-plus-one index along the array's first axis (axial planes) of the planes
    inside the slab (``held_out``), or of one side of it (``side`` 0 below, 1 above; the other
    side when the chosen one is empty)."""
    planes = np.arange(image.shape[0])
    index = np.stack([np.zeros_like(planes), np.zeros_like(planes), planes], -1).astype(float)
    z = image.geometry.index_to_physical(index)[:, 2]
    if held_out:
        groups = [planes[(z >= slab[0] - 1e-3) & (z <= slab[1] + 1e-3)]]
    else:
        groups = [group for group in (planes[z < slab[0] - 1e-3], planes[z > slab[1] + 1e-3]) if group.size]
    if not groups or not groups[0].size:
        raise ImageError("The volume has no axial planes on the requested side of the held-out slab.")
    chosen = groups[min(side, len(groups) - 1)]
    return int(chosen.min()), int(chosen.max()) + 1


def _patch_tensors(pair, patch_size: Sequence[int], box: tuple[int, int] | None) -> list[torch.Tensor]:
    """The pair's normalised images, true field and labels cropped or padded to ``patch_size``
    around the centre of the grid (of the planes ``box`` along the first axis in 3D); images are
    padded with -1 (their normalised background), the rest with 0."""
    from .data.slicing import crop_or_pad

    shape = np.array(pair.fixed.shape)
    low, high = (0, shape[0]) if box is None else box
    centre = shape / 2.0
    centre[0] = (low + high) / 2.0
    start = tuple(int(round(c - p / 2.0)) for c, p in zip(centre, patch_size))
    size = tuple(int(p) for p in patch_size)

    def crop(image: Image, offset: float = 0.0) -> torch.Tensor:
        array = image.array.astype(np.float32) + offset
        if box is not None:  # planes beyond the allowed ones are background too
            outside = np.ones(image.shape[0], bool)
            outside[low:high] = False
            array[outside] = 0.0
        return to_tensor(crop_or_pad(image.with_array(array), start, size))[0]

    return [
        crop(normalize_intensity(pair.fixed), 1.0) - 1.0,
        crop(normalize_intensity(pair.moving), 1.0) - 1.0,
        crop(pair.displacement),
        crop(pair.fixed_labels),
        crop(pair.moving_labels),
    ]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RegistrationTrainingConfig(TrainingRunSettings):
    """Settings of :func:`train_registration_network`; the run settings are
    :class:`~imse.training_run.TrainingRunSettings`.

    Attributes:
        similarity: ``imse`` (needs ``evaluator``) or ``mind``.
        evaluator: name or path of the frozen evaluator (default: the shipped one of ``dim``).
        both_orders: the evaluator scores both channel orders (``imse`` only).
        both_directions: half the batches register T1 onto the other contrast.
        regularization_weight: ``None`` takes :data:`DEFAULT_WEIGHTS` of the similarity.
        contrasts: the moving contrasts of the training pairs (the fixed one is T1).
        max_displacement_mm: range of the largest displacement of the training fields.
        pool_size: training pairs generated once (seeded) and drawn from at random.
        learning_rate: a higher rate than the paper's 1e-4 suits short CPU runs.
        teacher: a registration preset of ``similarity`` (:data:`imse.presets.PRESETS`) whose
            result on each pool pair (in each direction trained) is the network's target (see
            the module docstring).
    """

    name: str = "registration"
    dim: int = 2
    similarity: str = "imse"
    evaluator: str | None = None
    both_orders: bool = True
    both_directions: bool = True
    regularization: str = "diffusion"
    regularization_weight: float | None = None
    diffeomorphic: bool = False
    spacing_mm: float | None = None
    patch_size: tuple[int, ...] | None = None
    contrasts: tuple[str, ...] = DEFAULT_CONTRASTS
    max_displacement_mm: tuple[float, float] = (2.0, 10.0)
    pool_size: int = 512
    learning_rate: float = 1e-3
    teacher: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim not in (2, 3):
            raise ImageError(f"dim must be 2 or 3, got {self.dim}.")
        if self.similarity not in TRAINING_SIMILARITIES:
            raise ImageError(f"Unknown training similarity '{self.similarity}'; choose one of {list(TRAINING_SIMILARITIES)}.")
        if self.regularization not in REGULARIZERS:
            raise ImageError(f"Unknown regularisation '{self.regularization}'; choose one of {list(REGULARIZERS)}.")
        self.spacing_mm = float(self.spacing_mm or DEFAULT_SPACING_MM[self.dim])
        self.patch_size = tuple(self.patch_size or DEFAULT_PATCH_SIZE[self.dim])
        if len(self.patch_size) != self.dim:
            raise ImageError(f"patch_size needs {self.dim} values for a {self.dim}D network, got {self.patch_size}.")
        self.contrasts = tuple(self.contrasts)
        self.max_displacement_mm = tuple(float(v) for v in self.max_displacement_mm)
        if not 0 <= self.max_displacement_mm[0] <= self.max_displacement_mm[1] or self.max_displacement_mm[1] <= 0:
            raise ImageError(f"max_displacement_mm must be (low, high) with 0 <= low <= high, high > 0; got {self.max_displacement_mm}.")
        if self.pool_size < 1:
            raise ImageError(f"pool_size must be at least 1, got {self.pool_size}.")
        if self.regularization_weight is None:
            self.regularization_weight = DEFAULT_WEIGHTS[self.similarity]
        if self.teacher is not None:
            _check_teacher(self)


def _check_teacher(config: RegistrationTrainingConfig) -> None:
    """Raise ImageError for a teacher that cannot teach this run."""
    from .presets import PRESETS

    preset = PRESETS.get(config.teacher)
    if preset is None:
        raise ImageError(f"Unknown teacher '{config.teacher}': name a registration preset, one of {list(PRESETS)}.")
    if config.dim not in preset.dims or preset.options["similarity"] != config.similarity:
        raise ImageError(
            f"The preset '{config.teacher}' registers {'/'.join(map(str, preset.dims))}D images with {preset.options['similarity']}; "
            f"this run trains a {config.dim}D network with {config.similarity}: choose a teacher of that similarity and dimension."
        )
    if preset.options["model"] is not None:
        raise ImageError(f"The preset '{config.teacher}' names its own evaluator; a teacher uses the run's (--evaluator).")


def teacher_displacements(
    config: RegistrationTrainingConfig,
    pool: PairBatch,
    geometry: Geometry,
    evaluator,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """The fields (mm) ``[N, dim, *patch]`` that the preset ``config.teacher`` finds for the pool's
    pairs with ``evaluator``, keyed by which image is the T1: ``fixed`` (the other contrast
    registered onto the T1) and, with ``both_directions``, ``moving`` (the T1 onto the other
    contrast). Read from ``out/checkpoints/teacher.*`` when those were made for the same pool,
    teacher, evaluator and directions, and written there otherwise. ``should_stop()`` is polled
    between registrations (raises :class:`~imse.errors.Cancelled`; nothing is written)."""
    from .foreground import foreground_mask
    from .presets import PRESETS

    path = config.out / "checkpoints" / "teacher"
    directions = ("fixed", "moving") if config.both_directions else ("fixed",)
    made_for = {
        "teacher": config.teacher,
        "evaluator": evaluator.card.name if evaluator is not None else None,
        "pool": [config.seed, config.pool_size, config.dim, config.spacing_mm, list(config.patch_size), list(config.contrasts), list(config.max_displacement_mm)],
        "directions": list(directions),
    }
    device = pool.fixed.device
    if path.with_suffix(CARD_SUFFIX).exists():
        cached = load_checkpoint(path)
        if cached["made_for"] == made_for:
            return {reference: field.to(device) for reference, field in cached["displacement"].items()}
    options = PRESETS[config.teacher].options
    count = len(pool.fixed)
    targets = {}
    for reference in directions:
        settings = RegistrationSettings.from_options(options, reference=reference, device=config.device)
        fields_mm = []
        for index in tqdm(range(count), unit="pair", desc=f"teacher {config.teacher}, T1 {reference}", disable=None):
            if should_stop is not None and should_stop():
                raise Cancelled(f"Cancelled while the teacher registered the training pairs (T1 {reference}: {index} of {count} done).")
            t1, other = (Image(images[index, 0].cpu().numpy(), geometry) for images in (pool.fixed, pool.moving))
            fixed, moving = (t1, other) if reference == "fixed" else (other, t1)
            fixed_mask = foreground_mask(fixed) if options["fixed_mask"] == "auto" else None  # as imse register --preset does
            fields_mm.append(to_tensor(register_pair(fixed, moving, settings, fixed_mask, evaluator=evaluator).displacement)[0])
        targets[reference] = torch.stack(fields_mm)
    save_checkpoint(path, {"displacement": targets, "made_for": made_for})
    return {reference: field.to(device) for reference, field in targets.items()}


def _training_similarities(config: RegistrationTrainingConfig, device: torch.device) -> tuple[dict[str, nn.Module], object | None]:
    """The loss for each direction, keyed by which image is the T1 (``fixed`` or ``moving``), and
    the evaluator (``None`` for MIND)."""
    if config.similarity == "mind":
        mind = build_similarity("mind").to(device)
        return {"fixed": mind, "moving": mind}, None
    from .evaluator import Evaluator

    evaluator = Evaluator.load(config.evaluator, dim=config.dim, device=str(device))
    if not math.isclose(evaluator.card.spacing_mm, config.spacing_mm, rel_tol=0.1):
        raise ImageError(
            f"The evaluator '{evaluator.card.name}' was trained at {evaluator.card.spacing_mm} mm but the network would train "
            f"at {config.spacing_mm} mm; use --spacing {evaluator.card.spacing_mm}."
        )
    losses = {
        reference: build_similarity("imse", network=evaluator.network, reference=reference, both_orders=config.both_orders).to(device)
        for reference in ("fixed", "moving")
    }
    return losses, evaluator


def train_registration_network(
    config: RegistrationTrainingConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train a registration network as ``config`` says; returns the weights path.

    ``progress(step, total, values)`` is called after each step (running loss, latest
    validation end-point error); ``should_stop()`` is polled before each step and raises
    :class:`~imse.errors.Cancelled` after saving the checkpoint (the model is not written).
    Checkpoints go to ``out/checkpoints/last.*`` every ``checkpoint_every`` steps; ``resume``
    continues from there exactly. ``max_minutes`` ends training normally (the model is written).
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    similarities, evaluator = _training_similarities(config, device)
    pair_settings = (config.dim, config.spacing_mm, config.patch_size, config.contrasts, config.max_displacement_mm)
    pool, geometry = make_pair_batch(config.pool_size, *pair_settings, held_out=False, seed=config.seed)
    validation, _ = make_pair_batch(config.validation_pairs, *pair_settings, held_out=True, seed=config.seed)
    pool, validation = pool.to(device), validation.to(device)
    targets = teacher_displacements(config, pool, geometry, evaluator, should_stop) if config.teacher else None

    network = RegistrationNetwork(config.dim, config.diffeomorphic, spacing_mm=config.spacing_mm).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    weight = config.regularization_weight

    checkpoint = config.out / "checkpoints" / "last"
    step, elapsed, history = 0, 0.0, []
    if config.resume:
        if not checkpoint.with_suffix(CARD_SUFFIX).exists():
            raise ImageError(f"Nothing to resume: no checkpoint at '{checkpoint}{CARD_SUFFIX}'.")
        state = load_checkpoint(checkpoint, device)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        step, elapsed, history = state["step"], state["elapsed"], state["history"]

    def validate() -> dict:
        return validation_scores(network, validation, geometry, similarities["fixed"], config.regularization, weight)

    if not history:  # the untrained network predicts the identity: the "before" figures
        history.append({"step": 0, "train_loss": None, **validate(), "seconds": 0.0})
    running = None
    started = time.perf_counter() - elapsed
    bar = tqdm(total=config.iterations, initial=step, disable=progress is not None, unit="it", desc=f"training {config.name}")  # a callback replaces the bar
    cancelled = False
    while step < config.iterations:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        if config.max_minutes is not None and time.perf_counter() - started > 60 * config.max_minutes:
            break
        index = torch.randint(len(pool.fixed), (config.batch_size,), generator=generator)
        swap = config.both_directions and bool(torch.rand(1, generator=generator) < 0.5)
        batch = pool.select(index.to(device))
        fixed, moving = (batch.moving, batch.fixed) if swap else (batch.fixed, batch.moving)
        network.train()
        if targets is None:
            loss, _ = registration_loss(network, similarities["moving" if swap else "fixed"], fixed, moving, geometry, config.regularization, weight)
        else:
            loss = distillation_loss(network, fixed, moving, targets["moving" if swap else "fixed"][index.to(device)], geometry, config.regularization, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        step += 1
        value = loss.total.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % config.validation_every == 0 or step == config.iterations:
            history.append({"step": step, "train_loss": running, **validate(), "seconds": time.perf_counter() - started})
        latest = history[-1]
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}", epe=f"{latest['endpoint_error_mm']:.2f}")
        if progress is not None:
            progress(step, config.iterations, {"loss": running, "validation_endpoint_error_mm": latest["endpoint_error_mm"]})
        if step % config.checkpoint_every == 0:
            _save_state(checkpoint, network, optimizer, generator, step, time.perf_counter() - started, history)
    bar.close()
    elapsed = time.perf_counter() - started
    _save_state(checkpoint, network, optimizer, generator, step, elapsed, history)
    if cancelled:
        raise Cancelled(f"Training was cancelled at step {step}; resume it with --resume.")
    if history[-1]["step"] != step:
        history.append({"step": step, "train_loss": running, **validate(), "seconds": elapsed})
    training = {
        "command": config.command,
        "data": (
            f"built-in MNI ICBM152 2009a (nilearn) at {config.spacing_mm} mm: imse.data.make_pair, fixed T1, moving "
            f"{'/'.join(config.contrasts)}-like, largest displacement {config.max_displacement_mm[0]:g}-"
            f"{config.max_displacement_mm[1]:g} mm; {'axial slices' if config.dim == 2 else 'volumes'} outside the held-out "
            f"central slab (z {'{:g} to {:g}'.format(*held_out_axial_range_mm(config.spacing_mm))} mm); validation inside it"
        ),
        "similarity": config.similarity,
        "evaluator": evaluator.card.name if evaluator is not None else None,
        "teacher": config.teacher,
        "iterations": step,
        "seconds": round(elapsed, 1),
        "device": str(device),
        "final_train_loss": running,
        "final_validation": {k: v for k, v in history[-1].items() if k not in ("step", "train_loss", "seconds")},
        "history": history,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
    return save_registration_network(network, config.out, config.name, training, modality=f"T1 <-> {'/'.join(config.contrasts)}-like")


def validation_scores(
    network: RegistrationNetwork,
    pairs: PairBatch,
    geometry: Geometry,
    similarity: nn.Module,
    regularizer: str = "diffusion",
    weight: float = 0.1,
    batch_size: int = 8,
) -> dict[str, float]:
    """The objective's terms, the mean end-point error in the fixed brain (mm) and the mean Dice
    of grey and white matter after warping the moving labels, over ``pairs`` (moving onto the
    T1), without gradients."""
    was_training = network.training
    network.eval()
    totals = {"loss": 0.0, "similarity": 0.0, "regularization": 0.0, "endpoint_error_mm": 0.0, "dice_gm": 0.0, "dice_wm": 0.0}
    count = len(pairs.fixed)
    with torch.no_grad():
        for start in range(0, count, batch_size):
            part = pairs.select(torch.arange(start, min(start + batch_size, count), device=pairs.fixed.device))
            loss, displacement = registration_loss(network, similarity, part.fixed, part.moving, geometry, regularizer, weight)
            n = len(part.fixed)
            totals["loss"] += loss.total.item() * n
            totals["similarity"] += loss.similarity.item() * n
            totals["regularization"] += loss.regularization.item() * n
            brain = part.fixed_labels[:, 0] > 0
            error = (displacement - part.displacement).norm(dim=1)
            totals["endpoint_error_mm"] += sum(float(e[b].mean()) for e, b in zip(error, brain))
            warped_labels = warp(part.moving_labels, displacement, geometry, mode="nearest", padding="zeros")
            for name, label in (("dice_gm", 2), ("dice_wm", 3)):
                a, b = warped_labels == label, part.fixed_labels == label
                overlap = 2 * (a & b).flatten(1).sum(1) / (a.flatten(1).sum(1) + b.flatten(1).sum(1)).clamp_min(1)
                totals[name] += float(overlap.sum())
    network.train(was_training)
    return {key: value / count for key, value in totals.items()}


def _save_state(path, network, optimizer, generator, step, elapsed, history) -> None:
    save_checkpoint(
        path,
        {
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "elapsed": elapsed,
            "history": history,
        },
    )


# --------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------


def save_registration_network(
    network: RegistrationNetwork, folder: str | Path, name: str, training: dict | None = None, modality: str = "multi-modal"
) -> Path:
    """Write ``<folder>/<name>.safetensors`` and its card (task ``registration``; the network's
    settings under ``training["network"]``). Returns the weights path."""
    training = dict(training or {})
    config = training.get("config", {})
    card = ModelCard(
        name=name,
        task=TASK,
        architecture=ARCHITECTURE,
        dim=network.dim,
        modality=modality,
        normalization={"method": "percentile", "percentiles": list(network.percentiles), "range": [-1.0, 1.0]},
        patch_size=list(config.get("patch_size", [])),
        spacing_mm=float(np.mean(network.spacing_mm)),
        training={"network": network.settings, **training},
    )
    return save_model(network, card, folder)


def registration_models(dim: int | None = None) -> list[str]:
    """Names of the installed registration networks (of dimension ``dim``)."""
    return [card.name for _, card in list_models(task=TASK, dim=dim)]


def is_registration_model(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names an installed registration network or a registration model
    file (its card says task ``registration``)."""
    stem = Path(name_or_path)
    card_path = (stem.with_suffix("") if stem.suffix in (MODEL_SUFFIX, CARD_SUFFIX) else stem).with_suffix(CARD_SUFFIX)
    if card_path.is_file():
        return ModelCard.from_json(card_path).task == TASK
    return str(name_or_path) in registration_models()


def load_registration_network(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a registration network by installed name or by path (``.safetensors``, ``.json`` or
    their stem), on ``device``, in evaluation mode; ``.network`` is the
    :class:`RegistrationNetwork`."""
    weights = find_model(name_or_path, task=TASK)
    card = ModelCard.from_json(weights.with_suffix(CARD_SUFFIX))
    if card.task != TASK or "network" not in card.training:
        raise ImageError(f"'{weights.with_suffix(CARD_SUFFIX).name}' describes a '{card.task}' model, not a registration network.")
    network = RegistrationNetwork(**card.training["network"])
    network.load_state_dict(load_file(str(weights), device=str(device)))
    return LoadedModel(network.to(device).eval(), card, weights)


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def refinement_settings(settings: RegistrationSettings, iterations: int) -> RegistrationSettings:
    """``settings`` with ``iterations`` steps a level: Adam's iterations, and the demons' steps
    when they are the optimiser."""
    return replace(settings, iterations=iterations, **({"demons_iterations": iterations} if settings.optimizer == "demons" else {}))


def register_with_network(
    fixed: Image,
    moving: Image,
    model: LoadedModel | RegistrationNetwork | str | Path,
    refine_iterations: int = 0,
    refine_settings: RegistrationSettings | None = None,
    fixed_mask: Image | None = None,
    moving_mask: Image | None = None,
    evaluator=None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str = "auto",
) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` with a trained network in one forward pass, then
    optionally refine by per-pair optimisation; returns what :func:`imse.register.register_pair`
    returns (displacement in mm on the fixed grid, ITK convention; warped moving image; det J;
    loss curve of the refinement, empty without it; seconds).

    ``model``: a loaded model, a network, or an installed name or a path. Refinement registers
    the network-warped moving image to ``fixed`` with ``refine_settings`` (default: the model's
    training similarity, one level) for at most ``refine_iterations`` iterations (Adam's, or the
    demons' steps), and composes the two fields: ``u = r + u_net o (id + r)``. Masks,
    ``evaluator`` (needed to refine with ``imse``; default: the one the model was trained with),
    ``progress`` and ``should_stop`` serve the refinement as in ``register_pair``.
    """
    started = time.perf_counter()
    torch_device = resolve_device(device)
    loaded = model if isinstance(model, LoadedModel) else None
    if isinstance(model, (str, Path)):
        loaded = load_registration_network(model, torch_device)
    network = loaded.network if loaded is not None else model
    if not isinstance(network, RegistrationNetwork):
        raise ImageError(f"Expected a registration network (see 'imse models'), got {type(network).__name__}.")
    if refine_iterations < 0:
        raise ImageError(f"refine_iterations must be >= 0, got {refine_iterations}.")
    trained_similarity = loaded.card.training.get("similarity", "mind") if loaded is not None else "mind"
    settings = refine_settings or RegistrationSettings(similarity=trained_similarity, levels=1, device=device)
    if refine_iterations:
        settings = refinement_settings(settings, refine_iterations)
        if settings.uses_evaluator and evaluator is None:
            from .evaluator import Evaluator

            name = loaded.card.training.get("evaluator") if loaded is not None else None
            evaluator = Evaluator.load(name, dim=fixed.dim, device=str(torch_device))
    check_registration_inputs(fixed, moving, fixed_mask, moving_mask, settings if refine_iterations else RegistrationSettings(), evaluator)
    if network.dim != fixed.dim:
        raise ImageError(f"The registration network is {network.dim}D but the images are {fixed.dim}D; choose a {fixed.dim}D network.")

    network = network.to(torch_device).eval()
    displacement = _predict(network, fixed, moving, torch_device)
    curve: list[dict] = []
    if refine_iterations:
        moving_tensor = to_tensor(moving, torch_device)
        warped_net = from_tensor(warp(moving_tensor, displacement, fixed.geometry, moving.geometry), fixed.geometry)
        warped_mask = None
        if moving_mask is not None:
            mask = warp(to_tensor(moving_mask, torch_device), displacement, fixed.geometry, moving_mask.geometry, "nearest", "zeros")
            warped_mask = from_tensor(mask, fixed.geometry)
            if not np.any(warped_mask.array > 0):
                warped_mask = None  # the mask left the fixed box: refine without it
        refined = register_pair(fixed, warped_net, settings, fixed_mask, warped_mask, evaluator, progress, should_stop)
        residual = to_tensor(refined.displacement, torch_device)
        displacement = compose(residual, displacement, fixed.geometry)
        curve = refined.loss_curve
    elif should_stop is not None and should_stop():
        raise Cancelled("The registration was cancelled; no result was produced.")

    moving_tensor = to_tensor(moving, torch_device)
    background = float(moving.array.min())
    warped = warp(moving_tensor - background, displacement, fixed.geometry, moving.geometry, padding="zeros") + background
    return RegistrationResult(
        displacement=from_tensor(displacement, fixed.geometry),
        warped=from_tensor(warped, fixed.geometry),
        jacobian_determinant=from_tensor(jacobian_determinant(displacement, fixed.geometry), fixed.geometry),
        loss_curve=curve,
        seconds=time.perf_counter() - started,
    )


def _predict(network: RegistrationNetwork, fixed: Image, moving: Image, device: torch.device) -> torch.Tensor:
    """The network's displacement (mm) ``[1, dim, *fixed.shape]`` on the fixed grid: both images
    are resampled onto the fixed box at the training spacing (the moving one through physical
    space, background outside it) and normalised as in training."""
    working = resample_to_spacing(fixed, network.spacing_mm)
    moving_on_grid = resample_to(resample_to_spacing(moving, np.maximum(network.spacing_mm, moving.geometry.spacing)), working, default_value=float(moving.array.min()))
    tensors = [to_tensor(normalize_intensity(image, percentiles=network.percentiles), device) for image in (moving_on_grid, working)]
    with torch.no_grad():
        displacement = network(*tensors, working.geometry)
    return resample_displacement(displacement, working.geometry, fixed)
