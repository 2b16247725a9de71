"""The IMSE evaluator E: where, and how much, two images disagree spatially.

E is trained on one modality (the *reference* modality of its model card). Its input is two
channels ``[other, reference]``: channel 0 an image in any modality, channel 1 an image in the
trained modality, both normalised to [-1, 1]. Its output ``E`` (tanh, in [-1, 1]) predicts
``(reference - other_as_reference_modality) / 2`` at every voxel, so ``|E|`` is zero where the
two images are aligned and grows with the local misalignment, whatever the modality of
``other``. Units of ``|E|``: half the normalised intensity range (1 = the full range).

Reference: Kong et al., "Indescribable Multi-modal Spatial Evaluator", CVPR 2023.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ImageError
from .image import Image, from_tensor, grid_with_spacing, intensity_window, normalize_intensity, resample_to, to_tensor
from .metrics import summarize
from .models import LoadedModel, find_model, list_models, load_model
from .networks import evaluator_fits, network_dimension, pad_to_multiple, size_multiple

#: The shipped evaluators used when none is named (see Resources/Models).
DEFAULT_EVALUATORS = {2: "mni-t1-light-2d", 3: "mni-t1-light-3d"}


def predict(network: torch.nn.Module, other: torch.Tensor, reference: torch.Tensor, slice_axis: int = 0) -> torch.Tensor:
    """Signed evaluator output ``E([other, reference])``, ``[N, 1, *spatial]``, for inputs
    ``[N, 1, *spatial]`` normalised to [-1, 1] (padded internally to the network's multiple).
    A 2D network given volumes ``[N, 1, D, H, W]`` sees their slices across spatial axis
    ``slice_axis`` (0: the ``D`` slices ``[H, W]``; 1: ``[D, W]``; 2: ``[D, H]``, the other two
    axes in their order): as one batch on a GPU, one at a time on the CPU. There one batch of
    every slice allocates activations so large that the C allocator maps and unmaps their
    memory at every call: a volume's demons steps with the flip-averaged, zoomed 2D evaluator
    spent 40 % of their time in the kernel (and twice the memory) that way (README,
    "Registration benchmark")."""
    if other.shape != reference.shape:
        raise ImageError(
            f"The two images must be on the same grid; got shapes {tuple(other.shape)} and "
            f"{tuple(reference.shape)}. Resample one onto the other first."
        )
    if other.dim() == 5 and network_dimension(network) == 2 and slice_axis != 0:
        across = lambda volume: volume.movedim(2 + slice_axis, 2)  # noqa: E731
        return predict(network, across(other), across(reference)).movedim(2, 2 + slice_axis)
    if other.dim() == 5 and network_dimension(network) == 2:
        batch, depth = other.shape[0], other.shape[2]
        as_slices = lambda volume: volume.transpose(1, 2).reshape(batch * depth, 1, *volume.shape[3:])  # noqa: E731
        other_slices, reference_slices = as_slices(other), as_slices(reference)
        step = 1 if other.device.type == "cpu" else len(other_slices)
        parts = [predict(network, other_slices[start : start + step], reference_slices[start : start + step]) for start in range(0, len(other_slices), step)]
        slices = torch.cat(parts)
        return slices.reshape(batch, depth, 1, *slices.shape[2:]).transpose(1, 2)
    padded, crop = pad_to_multiple(torch.cat([other, reference], 1), size_multiple(network))
    return network(padded)[crop]


def predict_tiled(
    network: torch.nn.Module,
    other: torch.Tensor,
    reference: torch.Tensor,
    tile: int = 96,
    overlap: int | None = None,
) -> torch.Tensor:
    """:func:`predict` by overlapping tiles of ``tile`` voxels per axis, for volumes too large
    for memory at once. Voxels near a tile's inner edges (which saw padding instead of the
    neighbouring image) get no weight, and the weight then rises linearly, so there are no
    seams. ``overlap`` defaults to a quarter of the tile. Gradients are not tracked."""
    overlap = tile // 4 if overlap is None else overlap
    if tile <= overlap or overlap < 4:
        raise ImageError(f"The tile size ({tile}) must exceed the overlap ({overlap}), which must be at least 4.")
    spatial = other.shape[2:]
    if all(size <= tile for size in spatial):
        with torch.no_grad():
            return predict(network, other, reference)
    tile_shape = [min(tile, size) for size in spatial]
    starts = [sorted({*range(0, size - edge + 1, edge - overlap), size - edge}) for size, edge in zip(spatial, tile_shape)]
    total = torch.zeros_like(other)
    weights = torch.zeros_like(other)
    with torch.no_grad():
        for corner in itertools.product(*starts):
            window = (slice(None), slice(None), *(slice(c, c + edge) for c, edge in zip(corner, tile_shape)))
            weight = _tile_weights(corner, tile_shape, spatial, overlap, other.device)
            total[window] += predict(network, other[window], reference[window]) * weight
            weights[window] += weight
    return total / weights


def _tile_weights(corner, tile_shape, spatial, overlap: int, device: torch.device) -> torch.Tensor:
    """Blending weights of one tile: 0 within ``overlap // 4`` voxels of an inner edge (an edge
    that is not the volume's border), then rising linearly to 1 at ``overlap // 2``."""
    halo, ramp_end = overlap // 4, overlap // 2
    weight = torch.ones((), device=device)
    for start, edge, size in zip(corner, tile_shape, spatial):
        position = torch.arange(edge, device=device, dtype=torch.float32)
        distance = torch.full_like(position, float(ramp_end))
        if start > 0:
            distance = torch.minimum(distance, position)
        if start + edge < size:
            distance = torch.minimum(distance, edge - 1 - position)
        axis_weight = ((distance - halo + 1) / (ramp_end - halo + 1)).clamp(0.0, 1.0)
        weight = weight[..., None] * axis_weight
    return weight


#: Volumes with fewer voxels than this along an axis (a slice or a thin slab saved as a volume)
#: are stacks of slices for a 3D evaluator's 3x3x3 kernels and three poolings.
THIN_VOLUME_VOXELS = 16


def evaluator_dimension(image: Image) -> int:
    """The dimension of the evaluator that suits ``image`` by default: 2 for 2D images and for
    volumes thinner than :data:`THIN_VOLUME_VOXELS` along an axis (mapped slice by slice), else 3."""
    return 3 if image.dim == 3 and min(image.shape) >= THIN_VOLUME_VOXELS else 2


def installed_evaluator(dim: int, device: str = "cpu", slicewise: bool = False) -> "Evaluator | None":
    """The default evaluator of dimension ``dim`` (see :meth:`Evaluator.load`); with
    ``slicewise``, for 3D images when no 3D evaluator is installed, the default 2D one (applied
    slice by slice); ``None`` when none is installed."""
    if list_models(task="evaluator", dim=dim):
        return Evaluator.load(dim=dim, device=device)
    if slicewise and dim == 3 and list_models(task="evaluator", dim=2):
        return Evaluator.load(dim=2, device=device)
    return None


def load_evaluator(model: str | Path | None, dim: int, device: str = "cpu") -> "Evaluator":
    """The evaluator named ``model`` (a name or path), else the installed default of dimension
    ``dim`` (in 3D, the default 2D one, slice by slice, when no 3D one is installed); a clear
    error, saying what to do, when none is installed."""
    if not model:
        found = installed_evaluator(dim, device, slicewise=True)
        if found is not None:
            return found
    return Evaluator.load(model or None, dim=dim, device=device)


@dataclass(frozen=True)
class ErrorMapResult:
    """``magnitude``: |E| on the fixed image's grid (same geometry); ``statistics``: mean,
    median, 95th percentile and max of |E| over the image and, when a mask was given, inside it."""

    magnitude: Image
    statistics: dict[str, dict[str, float]]


class Evaluator:
    """A frozen evaluator network with its model card, applied to images with geometry."""

    def __init__(self, model: LoadedModel) -> None:
        self.network = model.network.eval().requires_grad_(False)
        self.card = model.card
        self.device = next(self.network.parameters()).device

    @classmethod
    def load(cls, name_or_path: str | Path | None = None, dim: int = 3, device: str = "cpu") -> "Evaluator":
        """Load an evaluator by path or registered name; by default the shipped
        ``DEFAULT_EVALUATORS[dim]``, or else the first registered evaluator of dimension ``dim``."""
        if name_or_path is None:
            found = list_models(task="evaluator", dim=dim)
            if not found:
                raise ImageError(f"No {dim}D evaluator is installed. Train one with 'imse train-evaluator'.")
            preferred = [weights for weights, card in found if card.name == DEFAULT_EVALUATORS[dim]]
            path = (preferred or [found[0][0]])[0]
        else:
            path = find_model(name_or_path, task="evaluator")
        return cls(load_model(path, device))

    @property
    def percentiles(self) -> tuple[float, float]:
        return tuple(self.card.normalization.get("percentiles", (0.5, 99.5)))

    def _working_grid(self, fixed: Image) -> Image:
        """The fixed grid, or the same box at the model's training spacing when the two differ
        by more than 10 % (the network's features are learnt at that scale)."""
        spacing = tuple(np.broadcast_to(self.card.spacing_mm, (self.card.dim,)))
        if fixed.dim == 3 and self.slicewise:  # in-plane at the model's spacing, slices kept
            spacing = (*spacing, fixed.geometry.spacing[2])
        if np.allclose(fixed.geometry.spacing, spacing, rtol=0.1):
            return fixed
        return grid_with_spacing(fixed, spacing)

    @property
    def slicewise(self) -> bool:
        """A 2D evaluator applied to 3D volumes slice by slice."""
        return self.card.dim == 2

    def _check_dimension(self, image: Image) -> None:
        if not evaluator_fits(self.card.dim, image.dim):
            raise ImageError(
                f"The evaluator '{self.card.name}' is {self.card.dim}D but the image is {image.dim}D; "
                f"choose a {image.dim}D evaluator (see 'imse models')."
            )

    def _normalised(self, image: Image, grid: Image) -> tuple[torch.Tensor, tuple[float, float]]:
        """``image`` resampled onto ``grid`` and normalised to [-1, 1] ``[1, 1, *spatial]``, with
        the intensity window that was mapped to [-1, 1]."""
        on_grid = resample_to(image, grid, default_value=float(image.array.min()))
        window = intensity_window(on_grid, percentiles=self.percentiles)
        return to_tensor(normalize_intensity(on_grid, percentiles=self.percentiles), self.device), window

    def error_map(
        self,
        fixed: Image,
        moving: Image,
        reference: str = "fixed",
        mask: np.ndarray | None = None,
        tile: int = 128,
    ) -> ErrorMapResult:
        """|E| of a fixed/moving pair on the fixed grid (the moving image is resampled onto it).

        A 2D evaluator maps a 3D pair slice by slice along the first array axis (the slowest
        index, e.g. axial slices of an axial acquisition).
        ``reference`` says which image is in the evaluator's trained modality (channel 1):
        ``fixed`` or ``moving``. ``mask`` (boolean, fixed grid) adds in-mask statistics.
        """
        self._check_dimension(fixed)
        self._check_dimension(moving)
        if reference not in ("fixed", "moving"):
            raise ImageError(f"reference must be 'fixed' or 'moving', got '{reference}'.")
        grid = self._working_grid(fixed)
        other, trained_modality = (moving, fixed) if reference == "fixed" else (fixed, moving)
        magnitude = predict_tiled(self.network, self._normalised(other, grid)[0], self._normalised(trained_modality, grid)[0], tile).abs()
        result = resample_to(from_tensor(magnitude, grid.geometry), fixed) if grid is not fixed else from_tensor(magnitude, fixed.geometry)
        statistics = {"image": summarize(result.array)}
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != fixed.shape or not mask.any():
                raise ImageError("The mask must be a non-empty boolean array on the fixed image's grid.")
            statistics["mask"] = summarize(result.array[mask])
        return ErrorMapResult(result, statistics)

    def translate(self, source: Image, reference: Image, tile: int = 128) -> Image:
        """Reference-guided translation: an image with the spatial layout of ``source`` and the
        modality (and intensity range) of ``reference``, on the source's grid:
        ``x' = clamp(x - 2 E([y, x]), -1, 1)`` with ``y`` the source and ``x`` the reference
        resampled onto the source grid, then mapped back to the reference's intensities."""
        self._check_dimension(source)
        self._check_dimension(reference)
        grid = self._working_grid(source)
        y, _ = self._normalised(source, grid)
        x, (low, high) = self._normalised(reference, grid)
        translated = (x - 2.0 * predict_tiled(self.network, y, x, tile)).clamp(-1.0, 1.0)
        result = from_tensor(translated, grid.geometry)
        if grid is not source:
            result = resample_to(result, source)
        return result.with_array(((result.array + 1.0) / 2.0 * (high - low) + low).astype(np.float32))
