"""Training the IMSE evaluator (stage 1) on images of ONE modality.

Each step draws a batch ``x`` of patches (3D) or slices (2D) of the training images, two
random spatial transforms ``T1``, ``T2`` (affine then elastic, :mod:`imse.spatial_augment`),
and trains ``E([SR(x o T1), x o T2]) ~ (x o T2 - x o T1) / 2`` with an L1 loss, where ``SR`` is
Shuffle Remap and its corruptions (:mod:`imse.remap`).

Two recipes for the pair's misalignment:

* ``paper``: ``T1`` and ``T2`` independent, as in the paper. The network never sees aligned or
  nearly aligned pairs, which blurs the zero of ``|E|`` (see shared/FINDINGS.md).
* ``ours`` (default): ``T2 = T1`` followed by a perturbation ``s * T'`` with ``s = 0`` for a
  fraction ``aligned_fraction`` of the pairs and ``s ~ U(0, 1)`` otherwise, so that aligned and
  slightly misaligned pairs are common and the minimum at alignment is sharp.

Registration-produced misalignments (``adversarial_fraction``): an evaluator that only ever saw
random misalignments ranks them well but is fooled when a registration optimises against it:
the optimiser finds smooth warps that it rates as aligned (it shrank the ventricles of a
T2-like slice until they vanished). For that share of the batches, the pair is first warped by
:class:`RegistrationAttack`, a few Adam steps on a smooth displacement that lower the current
network's mean ``|E|`` (what a registration does), and the network is then trained on the true
target of the warped pair.

Runs on one device, or on several processes under ``torchrun`` (DistributedDataParallel with
NCCL on GPUs, gloo on CPUs); rank 0 writes checkpoints and the model.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from .device import resolve_device
from .errors import Cancelled, ImageError
from .field import compose
from .geometry import Geometry
from .image import Image, normalize_intensity, read_image, resample_to_spacing
from .inflation import inflate_evaluator
from .models import ModelCard, find_model, load_checkpoint, load_model, save_checkpoint, save_model
from .networks import build_network
from .remap import RemapAugmentation
from .spatial_augment import PAPER_ELASTIC_SIGMA, apply_displacement, random_elastic_width, random_flips, random_rotations, random_spatial_transform, rotation_margin_shape
from .training_run import TrainingRunSettings

RECIPES = ("ours", "paper")
HELD_OUT_FRACTION = 0.2  # central slab of a single training volume kept for validation


@dataclass(kw_only=True)
class EvaluatorTrainingConfig(TrainingRunSettings):
    """Settings of :func:`train_evaluator` (the paper's optimiser settings are the defaults);
    the run settings are :class:`~imse.training_run.TrainingRunSettings`."""

    name: str = "evaluator"
    dim: int = 2
    architecture: str = "light"
    images: list[str] = field(default_factory=list)  # empty: the built-in MNI T1
    modality: str = "T1"
    spacing_mm: float | None = None  # resample the images to this spacing; default 2 (2D) / 3 (3D)
    patch_size: tuple[int, ...] | None = None  # default (96, 96) / (64, 64, 64)
    betas: tuple[float, float] = (0.5, 0.999)
    recipe: str = "ours"
    aligned_fraction: float = 0.25
    remap: bool = True  # False: no Shuffle Remap, an evaluator for same-modality pairs only
    adversarial_fraction: float = 0.0  # share of batches warped by RegistrationAttack first
    adversarial_steps: int = 8
    elastic_sigma_voxels: tuple[float, float] = (PAPER_ELASTIC_SIGMA, PAPER_ELASTIC_SIGMA)  # width range of the elastic warps
    noise_probability: float = RemapAugmentation.noise_probability  # share of remapped images given Gaussian noise
    noise_std: float = RemapAugmentation.noise_std  # its standard deviation ([-1, 1] units), or the top of its range
    random_noise_std: bool = False  # draw each noisy image's standard deviation in [0, noise_std]
    flip_augment: bool = False  # flip each training image along each axis with probability 1/2
    rotation_augment_degrees: float = 0.0  # turn each training image by a random angle in +/- this (0: none)
    initial_model: str | None = None  # start from this evaluator's weights (name or path)
    validation_pairs: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim not in (2, 3):
            raise ImageError(f"dim must be 2 or 3, got {self.dim}.")
        if self.recipe not in RECIPES:
            raise ImageError(f"Unknown recipe '{self.recipe}'; choose one of {list(RECIPES)}.")
        if not 0.0 <= self.aligned_fraction <= 1.0:
            raise ImageError("aligned_fraction must lie between 0 and 1.")
        if not 0.0 <= self.adversarial_fraction <= 1.0:
            raise ImageError("adversarial_fraction must lie between 0 and 1.")
        if self.adversarial_steps < 1:
            raise ImageError(f"adversarial_steps must be at least 1, got {self.adversarial_steps}.")
        self.elastic_sigma_voxels = tuple(float(v) for v in self.elastic_sigma_voxels)
        if len(self.elastic_sigma_voxels) != 2 or not 0 < self.elastic_sigma_voxels[0] <= self.elastic_sigma_voxels[1]:
            raise ImageError(f"elastic_sigma_voxels must be two widths 0 < low <= high (voxels), got {self.elastic_sigma_voxels}.")
        if not 0.0 <= self.rotation_augment_degrees <= 180.0:
            raise ImageError(f"rotation_augment_degrees must lie between 0 and 180 (degrees), got {self.rotation_augment_degrees}.")
        if not 0.0 <= self.noise_probability <= 1.0 or self.noise_std < 0:
            raise ImageError("noise_probability must lie between 0 and 1 and noise_std must be at least 0.")
        self.spacing_mm = self.spacing_mm or (2.0 if self.dim == 2 else 3.0)
        self.patch_size = tuple(self.patch_size or ((96, 96) if self.dim == 2 else (64, 64, 64)))
        if len(self.patch_size) != self.dim:
            raise ImageError(f"patch_size needs {self.dim} values for a {self.dim}D evaluator, got {self.patch_size}.")


def load_training_volumes(config: EvaluatorTrainingConfig) -> tuple[list[Image], str]:
    """The training images at the configured spacing, and a description of where they came from."""
    from .data import load_mni_atlas

    if not config.images:
        atlas = load_mni_atlas(config.spacing_mm)
        return [atlas.t1], f"built-in MNI ICBM152 2009a T1 (nilearn) at {config.spacing_mm} mm"
    volumes = [resample_to_spacing(read_image(path), config.spacing_mm) for path in config.images]
    return volumes, f"{len(volumes)} image file(s): " + ", ".join(str(p) for p in config.images)


class PatchSampler:
    """Random patches (3D) or slices cropped to patches (2D, along any of the three axes of a
    volume) from normalised volumes, centred where there is foreground. Sizes smaller than the
    patch are padded with -1 (the background of a [-1, 1] image)."""

    def __init__(self, volumes: list[torch.Tensor], patch_size: tuple[int, ...], generator: torch.Generator) -> None:
        self.volumes = volumes
        self.patch_size = patch_size
        self.generator = generator
        # Kept on the CPU: a batch's centres are then looked up without a GPU synchronisation.
        self.foreground = [torch.nonzero(volume > -0.9).cpu() for volume in volumes]
        for index, points in enumerate(self.foreground):
            if len(points) == 0:
                raise ImageError(f"Training image {index + 1} has no foreground above its background level.")

    def sample(self, batch: int) -> torch.Tensor:
        """A batch ``[batch, 1, *patch_size]`` in [-1, 1].

        The batch's random draws (volume, foreground point, slicing axis) are made together and
        read back in one transfer: one synchronisation per batch on a GPU, not three per patch."""
        options = {"generator": self.generator, "device": self.generator.device}
        which = torch.randint(len(self.volumes), (batch,), **options)
        where = torch.rand(batch, **options)  # position in the volume's foreground list, in [0, 1)
        axes = torch.randint(3, (batch,), **options)
        draws = torch.stack([which.to(where.dtype), where, axes.to(where.dtype)], dim=1).tolist()
        return torch.stack([self._patch(int(w), u, int(a)) for w, u, a in draws])[:, None]

    def _patch(self, which: int, where: float, axis: int) -> torch.Tensor:
        volume, points = self.volumes[which], self.foreground[which]
        centre = points[min(int(where * len(points)), len(points) - 1)].tolist()
        if len(self.patch_size) == 2 and volume.ndim == 3:
            volume = volume.select(axis, centre[axis])
            centre = centre[:axis] + centre[axis + 1 :]
        starts = [c - p // 2 for c, p in zip(centre, self.patch_size)]
        return _crop_with_padding(volume, starts, self.patch_size)


def _crop_with_padding(volume: torch.Tensor, starts: list[int], size: tuple[int, ...]) -> torch.Tensor:
    """The window ``starts + size`` of ``volume``; parts outside the volume are -1."""
    source = tuple(slice(max(s, 0), min(s + n, extent)) for s, n, extent in zip(starts, size, volume.shape))
    target = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(source, starts))
    patch = torch.full(size, -1.0, dtype=volume.dtype, device=volume.device)
    patch[target] = volume[source]
    return patch


def pair_displacements(
    shape: tuple[int, ...],
    batch: int,
    recipe: str,
    aligned_fraction: float,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    elastic_sigma_voxels: tuple[float, float] = (PAPER_ELASTIC_SIGMA, PAPER_ELASTIC_SIGMA),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two random transforms ``T1``, ``T2`` of a batch of pairs, in voxels
    ``[batch, dim, *shape]`` each (see the module docstring for the recipes). Each transform's
    elastic part has a width drawn in ``elastic_sigma_voxels`` and the paper's displacement size
    (:func:`~imse.spatial_augment.random_elastic_width`)."""

    def transform() -> torch.Tensor:
        sigma, alpha = random_elastic_width(len(shape), elastic_sigma_voxels, generator)
        return random_spatial_transform(shape, batch, generator, device, alpha=alpha, sigma=sigma)

    first = transform()
    if recipe == "paper":
        return first, transform()
    strength = torch.rand(batch, generator=generator, device=device)
    strength = torch.where(torch.rand(batch, generator=generator, device=device) < aligned_fraction, 0.0, strength)
    perturbation = transform() * strength.view(-1, *([1] * (len(shape) + 1)))
    return first, compose(perturbation, first, Geometry.identity(len(shape)))  # T1, then the perturbation


@dataclass
class RegistrationAttack:
    """Warps one image of training pairs the way a registration that minimises ``network``'s
    mean ``|E|`` would: ``steps`` Adam steps (``step_voxels`` per step) on a displacement given
    at control points every ``control_spacing`` voxels (one of them drawn per batch) and
    interpolated linearly, which keeps it smooth like a regularised registration field. Which
    channel is warped is drawn per batch: the other-modality image (channel 0, the moving image
    of a T2 -> T1 registration) or the reference (channel 1, a T1 -> T2 registration)."""

    network: torch.nn.Module
    steps: int = 8
    step_voxels: float = 0.5
    control_spacings: tuple[int, ...] = (2, 4, 8)

    def displacement(self, other: torch.Tensor, reference: torch.Tensor, channel: int, control_spacing: int) -> torch.Tensor:
        """The displacement (voxels, ``[N, dim, *S]``) of channel ``channel`` (0 or 1) of the
        pair ``[other, reference]`` (``[N, 1, *S]`` each) that lowers the mean ``|E|``."""
        shape = tuple(other.shape[2:])
        coarse_shape = tuple(max(size // control_spacing, 2) for size in shape)
        coarse = torch.zeros(other.shape[0], len(shape), *coarse_shape, device=other.device, requires_grad=True)
        optimizer = torch.optim.Adam([coarse], lr=self.step_voxels)
        mode = "bilinear" if len(shape) == 2 else "trilinear"
        for _ in range(self.steps):
            displacement = F.interpolate(coarse, size=shape, mode=mode, align_corners=False)
            pair = [other, reference]
            pair[channel] = apply_displacement(pair[channel], displacement)
            loss = self.network(torch.cat(pair, 1)).abs().mean()
            (coarse.grad,) = torch.autograd.grad(loss, [coarse])  # no gradients for the weights
            optimizer.step()
        return F.interpolate(coarse.detach(), size=shape, mode=mode, align_corners=False)

    def __call__(self, other, first, second, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``other`` (the remapped ``first``), ``first`` and ``second`` after warping one side
        of the pair: ``other`` and ``first`` together, or ``second``."""
        channel = int(torch.randint(2, (1,), generator=generator, device=generator.device))
        spacing = self.control_spacings[int(torch.randint(len(self.control_spacings), (1,), generator=generator, device=generator.device))]
        displacement = self.displacement(other, second, channel, spacing)
        if channel == 0:
            return apply_displacement(other, displacement), apply_displacement(first, displacement), second
        return other, first, apply_displacement(second, displacement)


def make_training_pair(
    x: torch.Tensor,
    recipe: str,
    aligned_fraction: float,
    remap: RemapAugmentation,
    generator: torch.Generator,
    attack: RegistrationAttack | None = None,
    elastic_sigma_voxels: tuple[float, float] = (PAPER_ELASTIC_SIGMA, PAPER_ELASTIC_SIGMA),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input ``[SR(x o T1), x o T2]`` ``[N, 2, *S]`` and target ``(x o T2 - x o T1) / 2``
    ``[N, 1, *S]`` for a batch ``x`` ``[N, 1, *S]`` in [-1, 1] (see the module docstring); with
    an ``attack``, one side of the pair is warped by it first and the target follows."""
    first, second = pair_displacements(tuple(x.shape[2:]), x.shape[0], recipe, aligned_fraction, generator, x.device, elastic_sigma_voxels)
    x1 = apply_displacement(x, first)
    x2 = apply_displacement(x, second)
    other = remap(x1, generator)
    if attack is not None:
        other, x1, x2 = attack(other, x1, x2, generator)
    return torch.cat([other, x2], 1), (x2 - x1) / 2.0


def _no_remap(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


def _distributed_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def train_evaluator(
    config: EvaluatorTrainingConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path | None:
    """Train an evaluator as ``config`` says; returns the weights path (rank 0) or ``None``.

    ``progress(step, total, values)`` is called after each step with the running training loss
    (and the latest validation loss); ``should_stop()`` is polled each step and raises
    :class:`~imse.errors.Cancelled` when it returns True (the checkpoint is saved, the model
    is not written). Checkpoints go to
    ``out/checkpoints/last.*`` every ``checkpoint_every`` steps; ``resume`` continues from it.
    """
    rank, world = _distributed_rank()
    device = resolve_device(config.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(config, device, rank, world, progress, should_stop)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(config, device, rank, world, progress, should_stop) -> Path | None:
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    volumes, data_description = load_training_volumes(config)
    tensors = [torch.from_numpy(normalize_intensity(v).array).to(device) for v in volumes]
    training, validation = _split_held_out(tensors)

    network = build_network(config.architecture, config.dim).to(device)
    if config.initial_model:
        network.load_state_dict(_initial_weights(config, device))
    model = torch.nn.parallel.DistributedDataParallel(network) if world > 1 else network
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, betas=config.betas)
    generator = torch.Generator(device=device).manual_seed(config.seed * 1000 + rank)
    remap = (
        RemapAugmentation(noise_probability=config.noise_probability, noise_std=config.noise_std, random_noise_std=config.random_noise_std)
        if config.remap
        else _no_remap
    )
    rotate = config.rotation_augment_degrees > 0  # patches are then drawn larger, turned and cropped
    sampler = PatchSampler(training, rotation_margin_shape(config.patch_size) if rotate else config.patch_size, generator)
    attack = RegistrationAttack(network, config.adversarial_steps) if config.adversarial_fraction > 0 else None
    validation_set = _validation_set(validation, config, remap, device)

    checkpoint = config.out / "checkpoints" / "last"
    step, elapsed, history = 0, 0.0, []
    if config.resume:
        if not checkpoint.with_suffix(".json").exists():
            raise ImageError(f"Nothing to resume: no checkpoint at '{checkpoint}.json'.")
        state = load_checkpoint(checkpoint, device)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        step, elapsed, history = state["step"], state["elapsed"], state["history"]

    running, validation_loss = None, math.nan
    if not history:  # the untrained network's loss: the yardstick for what training achieved
        validation_loss = _validation_loss(network, validation_set)
        history.append({"step": 0, "train_l1": None, "validation_l1": validation_loss, "seconds": 0.0})
    started = time.perf_counter() - elapsed
    own_bar = rank == 0 and progress is None  # a progress callback (imse --progress json, Slicer) replaces the bar
    bar = tqdm(total=config.iterations, initial=step, disable=not own_bar, unit="it", desc=f"training {config.name}")
    cancelled = False
    while step < config.iterations:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        if config.max_minutes is not None and time.perf_counter() - started > 60 * config.max_minutes:
            break  # the time budget ends training normally: the model is written
        adversarial = attack is not None and float(torch.rand((), generator=generator, device=device)) < config.adversarial_fraction
        batch = sampler.sample(config.batch_size)
        if rotate:
            batch = random_rotations(batch, generator, config.rotation_augment_degrees, config.patch_size)
        if config.flip_augment:
            batch = random_flips(batch, generator)
        inputs, target = make_training_pair(
            batch, config.recipe, config.aligned_fraction, remap, generator, attack if adversarial else None, elastic_sigma_voxels=config.elastic_sigma_voxels
        )
        loss = F.l1_loss(model(inputs), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % config.validation_every == 0 or step == config.iterations:
            validation_loss = _validation_loss(network, validation_set)
            history.append({"step": step, "train_l1": running, "validation_l1": validation_loss, "seconds": time.perf_counter() - started})
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}", validation=f"{validation_loss:.4f}")
        if progress:
            progress(step, config.iterations, {"loss": running, "validation": validation_loss})
        if rank == 0 and step % config.checkpoint_every == 0:
            _save_training_state(checkpoint, network, optimizer, generator, step, time.perf_counter() - started, history)
    bar.close()
    elapsed = time.perf_counter() - started
    if rank != 0:
        return None
    _save_training_state(checkpoint, network, optimizer, generator, step, elapsed, history)
    if cancelled:
        raise Cancelled(f"Training was cancelled at step {step}; resume it with --resume.")
    if not history or history[-1]["step"] != step:
        validation_loss = _validation_loss(network, validation_set)
        history.append({"step": step, "train_l1": running, "validation_l1": validation_loss, "seconds": elapsed})
    card = ModelCard(
        name=config.name,
        task="evaluator",
        architecture=config.architecture,
        dim=config.dim,
        modality=config.modality,
        normalization={"method": "percentile", "percentiles": [0.5, 99.5], "range": [-1.0, 1.0]},
        patch_size=list(config.patch_size),
        spacing_mm=config.spacing_mm,
        training={
            "command": config.command,
            "data": data_description,
            "recipe": config.recipe,
            "aligned_fraction": config.aligned_fraction,
            "shuffle_remap": config.remap,
            "adversarial_fraction": config.adversarial_fraction,
            "adversarial_steps": config.adversarial_steps,
            "elastic_sigma_voxels": list(config.elastic_sigma_voxels),
            "noise": {"probability": config.noise_probability, "std": config.noise_std, "random_std": config.random_noise_std},
            "flip_augment": config.flip_augment,
            "rotation_augment_degrees": config.rotation_augment_degrees,
            "initial_model": config.initial_model,
            "iterations": step,
            "batch_size": config.batch_size * world,
            "processes": world,
            "seconds": round(elapsed, 1),
            "device": str(device),
            "seed": config.seed,
            "final_train_l1": running,
            "final_validation_l1": history[-1]["validation_l1"],
            "history": history,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        },
    )
    return save_model(network, card, config.out)


def _initial_weights(config: EvaluatorTrainingConfig, device) -> dict[str, torch.Tensor]:
    """The weights of ``config.initial_model``, checked to fit the configured network; a 2D
    light evaluator starting a 3D light training is inflated (:mod:`imse.inflation`)."""
    initial = load_model(find_model(config.initial_model, task="evaluator"), device)
    if (initial.card.architecture, initial.card.dim) == (config.architecture, config.dim):
        return initial.network.state_dict()
    if (initial.card.architecture, initial.card.dim, config.architecture, config.dim) == ("light", 2, "light", 3):
        return inflate_evaluator(initial.network).to(device).state_dict()
    raise ImageError(
        f"The initial model '{initial.card.name}' is a {initial.card.dim}D '{initial.card.architecture}' evaluator; "
        f"this training is {config.dim}D '{config.architecture}': choose a matching model or architecture "
        "(a 2D 'light' evaluator can start a 3D 'light' training)."
    )


def _split_held_out(volumes: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Training and validation volumes: with several images the last is held out; with one, a
    central slab of ``HELD_OUT_FRACTION`` of its first array axis (axial slices through the
    middle of a brain) is held out and the parts below and above it are trained on."""
    if len(volumes) > 1:
        return volumes[:-1], volumes[-1:]
    volume = volumes[0]
    low, high = held_out_slab(volume.shape[0])
    if low < 1 or high >= volume.shape[0]:
        raise ImageError("The training image is too small to hold out a validation part; give at least two images.")
    return [volume[:low], volume[high:]], [volume[low:high]]


def held_out_slab(length: int) -> tuple[int, int]:
    """First and last-plus-one index of the held-out central slab along an axis of ``length``."""
    low = int(round(length * (0.5 - HELD_OUT_FRACTION / 2)))
    return low, low + max(int(round(length * HELD_OUT_FRACTION)), 1)


def _validation_set(volumes, config, remap, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation pairs (same seed every run, so losses compare across runs)."""
    generator = torch.Generator(device=device).manual_seed(12345)
    sampler = PatchSampler(volumes, config.patch_size, generator)
    pairs = []
    for start in range(0, config.validation_pairs, config.batch_size):
        count = min(config.batch_size, config.validation_pairs - start)
        pairs.append(make_training_pair(sampler.sample(count), config.recipe, config.aligned_fraction, remap, generator, elastic_sigma_voxels=config.elastic_sigma_voxels))
    return pairs


def _validation_loss(network: torch.nn.Module, pairs) -> float:
    was_training = network.training
    network.eval()
    with torch.no_grad():
        losses = [F.l1_loss(network(inputs), target, reduction="sum").item() for inputs, target in pairs]
        count = sum(target.numel() for _, target in pairs)
    network.train(was_training)
    return float(np.sum(losses) / count)


def _save_training_state(path, network, optimizer, generator, step, elapsed, history) -> None:
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
