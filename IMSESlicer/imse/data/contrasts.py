"""Synthetic MR and CT contrasts of a :class:`~imse.data.brain.BrainAtlas`.

Each contrast is the partial-volume mix ``sum_t p_t * mu_t`` of the tissue probability maps
(background, CSF, GM, WM) with tissue intensities ``mu_t``, multiplied by a smooth random bias
field and plus Gaussian noise. The exception is ``t1``, which takes the real MNI T1 (scaled to
[0, 1]) in place of the mix, so that its intensities are not a function of the tissue maps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError
from ..image import Image
from .brain import TISSUES, BrainAtlas


@dataclass(frozen=True)
class Contrast:
    """How one modality renders the tissues.

    ``tissue_means``: intensity of pure background, CSF, GM and WM, in the order of
    :data:`~imse.data.brain.TISSUES` (``None``: the MNI T1).
    ``bias_strength``: default maximum of |log bias| (0.2 keeps the bias within about +-20 %).
    ``noise_std``: default standard deviation of the additive Gaussian noise, in the
    contrast's units (fractions of the brightest tissue for MR, Hounsfield units for CT).
    """

    tissue_means: tuple[float, float, float, float] | None
    bias_strength: float
    noise_std: float


#: The built-in contrasts. MR intensities are relative (brightest tissue about 1); CT is in
#: Hounsfield units with the low soft-tissue contrast of real head CT. Brain CT has no coil
#: bias, so its default bias strength is 0.
CONTRASTS = {
    "t1": Contrast(tissue_means=None, bias_strength=0.2, noise_std=0.02),
    "t2": Contrast(tissue_means=(0.0, 1.0, 0.5, 0.33), bias_strength=0.2, noise_std=0.02),
    "pd": Contrast(tissue_means=(0.0, 1.0, 0.85, 0.7), bias_strength=0.2, noise_std=0.02),
    "ct": Contrast(tissue_means=(-1000.0, 8.0, 40.0, 27.0), bias_strength=0.0, noise_std=4.0),
}

_BIAS_DEGREE = 3


def synthesize_contrast(
    atlas: BrainAtlas,
    contrast: str,
    seed: int = 0,
    bias_strength: float | None = None,
    noise_std: float | None = None,
) -> Image:
    """An image of ``atlas`` in ``contrast`` (one of :data:`CONTRASTS`: ``t1``, ``t2``, ``pd``,
    ``ct``), float32 on the atlas grid.

    ``bias_strength`` and ``noise_std`` default to the contrast's own values (0 switches either
    off). The bias field is ``exp(f)`` for a random polynomial ``f`` of degree 3 in the voxel
    coordinates with ``max |f| = bias_strength`` inside the brain (so 0.2 varies the brain's
    intensities by up to about +-20 %). The same ``seed`` gives the same image; another seed
    gives another bias field and noise.
    """
    if contrast not in CONTRASTS:
        raise ImageError(f"Unknown contrast '{contrast}'; choose one of {sorted(CONTRASTS)}.")
    model = CONTRASTS[contrast]
    bias_strength = model.bias_strength if bias_strength is None else bias_strength
    noise_std = model.noise_std if noise_std is None else noise_std
    if bias_strength < 0 or noise_std < 0:
        raise ImageError("The bias strength and noise level must be zero or positive.")
    rng = np.random.default_rng(seed)
    bias = random_bias_field(atlas.t1.shape, bias_strength, rng, region=atlas.brain.array.astype(bool))
    noise = rng.normal(0.0, noise_std, atlas.t1.shape)
    return atlas.t1.with_array((bias * _noise_free(atlas, model) + noise).astype(np.float32))


def random_bias_field(
    shape: tuple[int, ...], strength: float, rng: np.random.Generator, region: np.ndarray
) -> np.ndarray:
    """A smooth multiplicative field ``exp(f)`` of ``shape``: ``f`` is a random polynomial of
    degree 3 in the voxel coordinates (each scaled to [-1, 1]) with ``max |f| = strength`` over
    the boolean ``region`` (over the whole grid when the region is empty)."""
    coordinates = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in shape), indexing="ij", sparse=True)
    exponents = [
        powers
        for powers in itertools.product(range(_BIAS_DEGREE + 1), repeat=len(shape))
        if 1 <= sum(powers) <= _BIAS_DEGREE
    ]
    coefficients = rng.uniform(-1.0, 1.0, len(exponents))
    log_bias = sum(
        c * math.prod(x**p for x, p in zip(coordinates, powers)) for c, powers in zip(coefficients, exponents)
    )
    peak = np.abs(log_bias[region] if region.any() else log_bias).max()
    return np.exp(log_bias * (strength / peak))


def _noise_free(atlas: BrainAtlas, model: Contrast) -> np.ndarray:
    if model.tissue_means is None:
        return atlas.t1.array
    probabilities = atlas.tissue_probabilities()
    return sum(probabilities[tissue] * mean for tissue, mean in zip(TISSUES, model.tissue_means))
