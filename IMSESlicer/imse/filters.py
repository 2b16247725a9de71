"""Separable Gaussian smoothing of tensors ``[N, C, *spatial]`` in 2D and 3D, on any device."""

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


def _convolve_along(x: torch.Tensor, kernel: torch.Tensor, axis: int, padding: str) -> torch.Tensor:
    moved = x.movedim(axis, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    if padding != "valid":
        radius = (kernel.numel() - 1) // 2
        rows = F.pad(rows, (radius, radius), mode=padding)
    smoothed = F.conv1d(rows, kernel.view(1, 1, -1))
    return smoothed.reshape(*moved.shape[:-1], -1).movedim(-1, axis)


def gaussian_smooth(x: torch.Tensor, sigma: float, padding: str = "replicate") -> torch.Tensor:
    """Gaussian smoothing of every channel of ``x`` ``[N, C, *spatial]`` over the spatial
    axes, ``sigma`` in voxels.

    Separable: one 1D convolution per axis with a kernel truncated at 3 sigma, so the cost per
    voxel is ``dim * (6 sigma + 1)`` multiply-adds instead of ``(6 sigma + 1) ** dim``
    (sigma 12 in 3D: 219 instead of about 390 000), exact up to the truncation, and the same on
    CPU and GPU. Smoothing at a coarse resolution and upsampling would be cheaper still but only
    approximate, which would break the closed-form field size of
    :func:`elastic_displacement_std`; a 3-component 48x128x128 field takes about 0.4 s on two CPU
    cores. ``padding`` is ``replicate`` or ``reflect`` (same-size output) or ``valid`` (no
    padding: each spatial size shrinks by ``2 * ceil(3 sigma)``).
    """
    kernel = gaussian_kernel(sigma, like=x)
    for axis in range(2, x.ndim):
        x = _convolve_along(x, kernel, axis, padding)
    return x


# --- Elastic warp -------------------------------------------------------------------------
