"""Shuffle Remap and the intensity corruptions that follow it: the style augmentation ``epsilon``
of the IMSE paper, which makes the evaluator blind to modality and sensitive only to space.

Images are tensors ``[N, C, H, W]`` or ``[N, C, D, H, W]`` normalised to [-1, 1]; every function
returns a tensor of the same shape in [-1, 1], draws its random numbers only from the
``generator`` passed in (which must live on the image's device), and draws independent
parameters for each sample of the batch.

Kong et al., "Indescribable Multi-modal Spatial Evaluator", CVPR 2023, Algorithm 1 and Eq. (8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from .errors import ImageError
from .filters import gaussian_smooth

Corruption = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _check_image(x: torch.Tensor) -> None:
    if x.ndim not in (4, 5) or not x.is_floating_point():
        raise ImageError(
            f"Intensity augmentation needs a floating-point tensor [N, C, H, W] or [N, C, D, H, W]; "
            f"got {x.dtype} of shape {tuple(x.shape)}."
        )


def _uniform_per_sample(low: float, high: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One value uniform in ``[low, high)`` per sample, shaped to broadcast against ``like``."""
    values = torch.rand(like.shape[0], generator=generator, device=like.device, dtype=like.dtype)
    return (values * (high - low) + low).view(-1, *([1] * (like.ndim - 1)))


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def _from_unit(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], clamped."""
    return (2 * x - 1).clamp(-1, 1)


# --- Piecewise-linear intensity maps -------------------------------------------------------


def random_knots(count: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """``[-1, p_1, ..., p_count, 1]`` with the ``p_k`` uniform in [-1, 1) and sorted: the
    ``count + 2`` end points of ``count + 1`` segments of [-1, 1], on the device and dtype of
    ``like``."""
    interior = torch.rand(count, generator=generator, device=like.device, dtype=like.dtype) * 2 - 1
    ends = torch.tensor([-1.0, 1.0], device=like.device, dtype=like.dtype)
    return torch.cat([ends[:1], interior.sort().values, ends[1:]])


def map_segments(values: torch.Tensor, knots: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Map each value of segment ``i`` = ``[knots[i], knots[i + 1])`` linearly onto
    ``[starts[i], ends[i]]`` (``knots[i] -> starts[i]``, ``knots[i + 1] -> ends[i]``).

    ``values`` lie in ``[knots[0], knots[-1]]``; the right end ``knots[-1]`` belongs to the last
    segment (it maps to ``ends[-1]``). A segment of zero length receives no value: ``bucketize``
    places a value equal to a repeated knot in the segment to its right.
    """
    segment = torch.bucketize(values, knots[1:-1], right=True)
    left, length = knots[:-1][segment], (knots[1:] - knots[:-1])[segment]
    return (values - left) / length * (ends - starts)[segment] + starts[segment]


def _draw_count(low: int, high: int, generator: torch.Generator, like: torch.Tensor) -> int:
    """An integer uniform in ``[low, high]`` (both included)."""
    if not 0 <= low <= high:
        raise ImageError(f"The number of control points must satisfy 0 <= min <= max; got {low} and {high}.")
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=like.device))


def random_shuffle(
    generator: torch.Generator, like: torch.Tensor, min_points: int = 2, max_points: int = 50
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draw of one Shuffle Remap: ``knots`` ``[K + 2]`` (``-1``, ``K`` sorted uniform
    points, ``1``) with ``K`` uniform in ``[min_points, max_points]``, and a uniform random
    ``permutation`` ``[K + 1]``: segment ``i`` goes onto segment ``permutation[i]``."""
    knots = random_knots(_draw_count(min_points, max_points, generator, like), generator, like)
    return knots, torch.randperm(knots.numel() - 1, generator=generator, device=like.device)


def shuffle_segments(x: torch.Tensor, knots: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Eq. (8) of the IMSE paper for given ``knots`` ``p_0 = -1 < ... < p_{K+1} = 1`` and
    ``permutation`` ``pi``: a value ``x`` in segment ``i`` = ``[p_i, p_{i+1})`` (the last one
    closed) becomes ``(x - p_i) / (p_{i+1} - p_i) * (p_{j+1} - p_j) + p_j`` with ``j = pi(i)``.
    ``x`` is any tensor of values in [-1, 1]."""
    return map_segments(x, knots, knots[permutation], knots[permutation + 1])


def shuffle_remap(
    x: torch.Tensor, generator: torch.Generator, min_points: int = 2, max_points: int = 50
) -> torch.Tensor:
    """Shuffle Remap (IMSE paper, Algorithm 1 and Eq. 8): cut the intensity axis [-1, 1] into
    pieces and shuffle them.

    For each sample independently: ``K = randint(min_points, max_points)`` (both included)
    control points uniform in [-1, 1), sorted, plus the ends ``p_0 = -1`` and ``p_{K+1} = 1``,
    give ``K + 1`` segments; a random permutation ``j = pi(i)`` sends segment ``i`` onto segment
    ``j`` of the same cut, and a value ``x`` in ``[p_i, p_{i+1})`` becomes

        x' = (x - p_i) / (p_{i+1} - p_i) * (p_{j+1} - p_j) + p_j.

    The map is a bijection of [-1, 1] up to its ``K`` breakpoints, affine with slope
    ``len(j) / len(i)`` on each segment (so it also changes the density of the histogram there).
    Unlike the reference code, ``x = 1`` is kept in the last segment: it maps to the right end
    of that segment's image instead of becoming 0. Input values outside [-1, 1] are clamped
    first.

    Args:
        x: images ``[N, C, *spatial]`` in [-1, 1]; all channels of a sample share one map.
        generator: source of randomness, on the device of ``x``; sample ``n`` uses the
            ``n``-th :func:`random_shuffle` drawn from it.
        min_points, max_points: range of the number ``K`` of interior control points.

    Returns:
        The remapped images, same shape, in [-1, 1].
    """
    _check_image(x)
    x = x.clamp(-1, 1)
    draws = [random_shuffle(generator, x, min_points, max_points) for _ in range(x.shape[0])]
    return torch.stack([shuffle_segments(sample, *draw) for sample, draw in zip(x, draws)])


# --- Corruptions -----------------------------------------------------------------------------


def negate(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x -> -x`` (the generator is unused; accepted so that every corruption has one signature)."""
    return -x


def monotone_histogram_shift(
    x: torch.Tensor, generator: torch.Generator, min_points: int = 2, max_points: int = 8
) -> torch.Tensor:
    """A random increasing piecewise-linear map of [-1, 1] onto itself, per sample: ``K`` in
    ``[min_points, max_points]`` sorted uniform control points ``p_k`` are sent to ``K`` other
    sorted uniform points ``q_k`` (the ends stay fixed), linearly in between. Intensities keep
    their order; the histogram is stretched and squeezed."""
    _check_image(x)
    x = x.clamp(-1, 1)
    shifted = []
    for sample in x:
        count = _draw_count(min_points, max_points, generator, x)
        source, target = random_knots(count, generator, x), random_knots(count, generator, x)
        shifted.append(map_segments(sample, source, target[:-1], target[1:]))
    return torch.stack(shifted)


def gaussian_noise(x: torch.Tensor, generator: torch.Generator, std: float = 0.05, random_std: bool = False) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``std`` (in [-1, 1] units), or with
    ``random_std`` of a standard deviation drawn per sample uniformly in ``[0, std]``; then clamp."""
    _check_image(x)
    sigma = _uniform_per_sample(0.0, std, x, generator) if random_std else std
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + sigma * noise).clamp(-1, 1)


def bias_field(x: torch.Tensor, generator: torch.Generator, strength: float = 0.3, order: int = 3) -> torch.Tensor:
    """Multiply the image, rescaled to [0, 1], by a smooth field ``exp(P)`` where ``P`` is a
    polynomial of total degree ``order`` in coordinates normalised to [-1, 1] along each axis,
    every coefficient uniform in ``[-strength, strength]`` (per sample), as MRI coil
    inhomogeneity does.

    ``P = sum_{i+j+k <= order} c_ijk z^i y^j x^k`` is evaluated one axis at a time (a tensor
    contraction with the powers of that axis' coordinate), never per monomial and voxel.
    """
    _check_image(x)
    spatial = tuple(x.shape[2:])
    options = {"device": x.device, "dtype": x.dtype}
    degrees = torch.arange(order + 1, **options)
    degree_grid = torch.stack(torch.meshgrid(*[degrees] * len(spatial), indexing="ij"))
    coefficients = torch.rand((x.shape[0], *degree_grid.shape[1:]), generator=generator, **options)
    polynomial = (coefficients * 2 - 1) * strength * (degree_grid.sum(0) <= order)
    for n in spatial:
        powers = torch.linspace(-1, 1, n, **options) ** degrees[:, None]  # [order + 1, n]
        polynomial = torch.tensordot(polynomial, powers, dims=([1], [0]))  # degree axis -> spatial axis at the end
    return _from_unit(_to_unit(x) * torch.exp(polynomial).unsqueeze(1))


def contrast_change(x: torch.Tensor, generator: torch.Generator, max_log_gamma: float = 0.3) -> torch.Tensor:
    """Gamma correction of the image rescaled to [0, 1]: ``y = y ** gamma`` with ``log(gamma)``
    uniform in ``[-max_log_gamma, max_log_gamma]`` per sample."""
    _check_image(x)
    gamma = torch.exp(_uniform_per_sample(-max_log_gamma, max_log_gamma, x, generator))
    return _from_unit(_to_unit(x).clamp(0, 1) ** gamma)


def sharpen(x: torch.Tensor, generator: torch.Generator, max_amount: float = 1.5, sigma: float = 1.0) -> torch.Tensor:
    """Unsharp mask: ``x + a * (x - blur(x))``, ``blur`` a Gaussian of ``sigma`` voxels and the
    amount ``a`` uniform in ``[0, max_amount]`` per sample; clamped."""
    _check_image(x)
    amount = _uniform_per_sample(0.0, max_amount, x, generator)
    return (x + amount * (x - gaussian_smooth(x, sigma))).clamp(-1, 1)


def kspace_spikes(
    x: torch.Tensor, generator: torch.Generator, max_spikes: int = 3, max_amplitude: float = 0.2
) -> torch.Tensor:
    """MRI spike (herringbone) artefact: 1 to ``max_spikes`` spikes per sample at random
    non-zero frequencies of the image's discrete Fourier transform. A spike of amplitude ``a``
    (uniform in ``[0, max_amplitude]``, [-1, 1] units) and random phase adds the stripe pattern
    ``a * cos(2 pi k . r / n + phase)`` to the image, which is the real part of the inverse
    transform. All channels of a sample get the same spikes."""
    _check_image(x)
    batch, spatial = x.shape[0], tuple(x.shape[2:])
    size = math.prod(spatial)
    options = {"generator": generator, "device": x.device}
    counts = torch.randint(1, max_spikes + 1, (batch, 1), **options)
    frequencies = torch.randint(1, size, (batch, max_spikes), **options)  # flat index, never 0 (DC)
    amplitudes = torch.rand((batch, max_spikes), dtype=x.dtype, **options) * max_amplitude
    amplitudes = amplitudes * (torch.arange(max_spikes, device=x.device) < counts)
    phases = torch.rand((batch, max_spikes), dtype=x.dtype, **options) * (2 * math.pi)
    # The inverse DFT divides by the number of voxels: scale the spikes up by it.
    spikes = torch.polar(amplitudes * size, phases)
    spike_spectrum = torch.zeros((batch, size), dtype=spikes.dtype, device=x.device)
    spike_spectrum.scatter_add_(1, frequencies, spikes)
    spectrum_axes = tuple(range(2, x.ndim))
    spectrum = torch.fft.fftn(x, dim=spectrum_axes) + spike_spectrum.view(batch, 1, *spatial)
    return torch.fft.ifftn(spectrum, dim=spectrum_axes).real.clamp(-1, 1)


# --- The full augmentation -------------------------------------------------------------------


def apply_with_probability(
    x: torch.Tensor, probability: float, corruption: Corruption, generator: torch.Generator
) -> torch.Tensor:
    """Apply ``corruption`` to each sample of ``x`` independently with ``probability``; the others
    are returned untouched. The result is clamped to [-1, 1]."""
    chosen = torch.rand(x.shape[0], generator=generator, device=x.device) < probability
    indices = chosen.nonzero().flatten()
    if indices.numel() == 0:
        return x
    return x.index_copy(0, indices, corruption(x[indices], generator).clamp(-1, 1))


@dataclass(frozen=True)
class RemapAugmentation:
    """Shuffle Remap, always, then each follow-up corruption with its own probability (0.2 each
    by default, as in the reference code), in this order: negation, monotone histogram shift,
    then the MRI-style chain sharpen, Gaussian noise, bias field, contrast change, k-space spikes.

    Call it on images ``[N, C, H, W]`` or ``[N, C, D, H, W]`` in [-1, 1] with a generator on their
    device; the decisions and parameters are drawn per sample. ``random_noise_std`` draws each
    noisy sample's noise level uniformly in ``[0, noise_std]`` instead of using ``noise_std``.
    """

    min_points: int = 2
    max_points: int = 50
    negate_probability: float = 0.2
    histogram_shift_probability: float = 0.2
    sharpen_probability: float = 0.2
    noise_probability: float = 0.2
    bias_field_probability: float = 0.2
    contrast_probability: float = 0.2
    spike_probability: float = 0.2
    noise_std: float = 0.05
    random_noise_std: bool = False
    bias_strength: float = 0.3
    max_log_gamma: float = 0.3
    max_sharpen_amount: float = 1.5
    max_spike_amplitude: float = 0.2

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_probability") and not 0.0 <= value <= 1.0:
                raise ImageError(f"{name} must be between 0 and 1, got {value}.")

    def corruptions(self) -> list[tuple[float, Corruption]]:
        """The follow-up corruptions in order, each with its probability."""
        return [
            (self.negate_probability, negate),
            (self.histogram_shift_probability, monotone_histogram_shift),
            (self.sharpen_probability, partial(sharpen, max_amount=self.max_sharpen_amount)),
            (self.noise_probability, partial(gaussian_noise, std=self.noise_std, random_std=self.random_noise_std)),
            (self.bias_field_probability, partial(bias_field, strength=self.bias_strength)),
            (self.contrast_probability, partial(contrast_change, max_log_gamma=self.max_log_gamma)),
            (self.spike_probability, partial(kspace_spikes, max_amplitude=self.max_spike_amplitude)),
        ]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = shuffle_remap(x, generator, self.min_points, self.max_points)
        for probability, corruption in self.corruptions():
            x = apply_with_probability(x, probability, corruption, generator)
        return x
