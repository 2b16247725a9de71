"""Separable filtering (Gaussian smoothing and any product of 1D kernels) of tensors
``[N, C, *spatial]`` in 1D to 3D, on any device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import ImageError

GAUSSIAN_TRUNCATE = 3.0  # kernel radius in standard deviations


def gaussian_kernel(sigma: float, like: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised 1D Gaussian of standard deviation ``sigma`` (voxels), truncated at
    ``GAUSSIAN_TRUNCATE * sigma``: ``[2 r + 1]``, on the device and dtype of ``like`` (float64
    on the CPU without it)."""
    if sigma <= 0:
        raise ImageError(f"The Gaussian width sigma must be positive, got {sigma}.")
    options = {"dtype": torch.float64} if like is None else {"dtype": like.dtype, "device": like.device}
    radius = math.ceil(GAUSSIAN_TRUNCATE * sigma)
    offsets = torch.arange(-radius, radius + 1, **options)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


#: Padding modes of :func:`separable_filter` and the ``F.pad`` mode each stands for.
PADDINGS = {"zeros": "constant", "replicate": "replicate", "reflect": "reflect", "valid": None}
_CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def separable_filter(x: torch.Tensor, kernels: list[torch.Tensor], padding: str = "replicate") -> torch.Tensor:
    """Filter every channel of ``x`` ``[N, C, *spatial]`` with the product of the 1D ``kernels``
    (one per spatial axis, NumPy order, odd lengths, on the device and dtype of ``x``).

    ``padding``: ``zeros``, ``replicate`` or ``reflect`` (same-size output) or ``valid`` (no
    padding: each axis shrinks by its kernel's length minus one). Each axis is one depthwise
    convolution (``groups = C``) whose kernel spans that axis only: on a CPU, forward and
    backward together take about a quarter of the time of reshaping the tensor into rows for
    ``conv1d`` (measured on a 3-channel 64x80x64 field: 0.25 s against 0.88 s).
    """
    if padding not in PADDINGS:
        raise ImageError(f"Unknown padding '{padding}'; choose one of {list(PADDINGS)}.")
    dim, channels = x.ndim - 2, x.shape[1]
    if dim not in _CONVOLUTIONS or len(kernels) != dim:
        raise ImageError(f"separable_filter needs a tensor [N, C, *spatial] with 1 to 3 spatial axes and one kernel per axis; got shape {tuple(x.shape)} and {len(kernels)} kernels.")
    for axis, kernel in enumerate(kernels):
        if kernel.numel() == 1:
            x = x * kernel
            continue
        shape = [1] * dim
        shape[axis] = kernel.numel()
        weight = kernel.view(1, 1, *shape).expand(channels, 1, *shape).contiguous()
        if PADDINGS[padding] is not None:
            pad = [0] * (2 * dim)
            pad[2 * (dim - 1 - axis)] = pad[2 * (dim - 1 - axis) + 1] = kernel.numel() // 2
            x = F.pad(x, pad, mode=PADDINGS[padding])
        x = _CONVOLUTIONS[dim](x, weight, groups=channels)
    return x


def gaussian_smooth(x: torch.Tensor, sigma: float, padding: str = "replicate") -> torch.Tensor:
    """Gaussian smoothing of every channel of ``x`` ``[N, C, *spatial]`` over the spatial
    axes, ``sigma`` in voxels.

    Separable: one 1D convolution per axis with a kernel truncated at 3 sigma, so the cost per
    voxel is ``dim * (6 sigma + 1)`` multiply-adds instead of ``(6 sigma + 1) ** dim``
    (sigma 12 in 3D: 219 instead of about 390 000), exact up to the truncation, and the same on
    CPU and GPU. Smoothing at a coarse resolution and upsampling would be cheaper still but only
    approximate, which would break the closed-form field size of
    :func:`elastic_displacement_std`. ``padding`` is ``replicate``, ``reflect`` or ``zeros``
    (same-size output) or ``valid`` (no padding: each spatial size shrinks by
    ``2 * ceil(3 sigma)``); see :func:`separable_filter`.
    """
    return separable_filter(x, [gaussian_kernel(sigma, like=x)] * (x.ndim - 2), padding)


def optional_gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`gaussian_smooth` of ``x`` ``[N, C, *spatial]`` by ``sigma`` voxels, or ``x`` itself
    when ``sigma`` is 0 (a setting that switches smoothing off)."""
    return gaussian_smooth(x, sigma) if sigma > 0 else x


# --- Elastic warp -------------------------------------------------------------------------
