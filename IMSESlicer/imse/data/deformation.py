"""Random smooth displacement fields, and warping and inverting with SimpleITK.

Deliberately independent of the torch warp in :mod:`imse.field`, so that the two can check each
other. Fields follow :mod:`imse.geometry`: vector images ``(*spatial, dim)``, components in
physical (x, y[, z]) order, mm; the point ``p`` maps to ``p + u(p)``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ImageError
from ..image import Image, from_sitk, resample_to, to_sitk

#: Default standard deviation (mm) of the Gaussian that smooths random fields. The largest
#: displacement gradient comes out at about 0.7-1.0 x max_displacement / smoothness, so fields
#: up to about 10 mm are invertible (diffeomorphic) at this default.
DEFAULT_SMOOTHNESS_MM = 15.0


def random_displacement(
    reference: Image,
    max_displacement_mm: float,
    smoothness_mm: float = DEFAULT_SMOOTHNESS_MM,
    seed: int = 0,
) -> Image:
    """A random smooth displacement field on the grid of ``reference`` (2D or 3D).

    White Gaussian noise is smoothed by a Gaussian of standard deviation ``smoothness_mm``
    (zero-padded, so the field tapers towards the image border) and scaled so that the largest
    vector norm on the grid is exactly ``max_displacement_mm``. Returns a float32 vector image
    ``(*spatial, dim)`` in mm; the same ``seed`` gives the same field.
    """
    _check_positive(max_displacement_mm, "max_displacement_mm")
    _check_positive(smoothness_mm, "smoothness_mm")
    rng = np.random.default_rng(seed)
    sigma_voxels = smoothness_mm / np.asarray(reference.geometry.spacing[::-1])
    components = [
        ndimage.gaussian_filter(rng.standard_normal(reference.shape), sigma_voxels, mode="constant")
        for _ in range(reference.dim)
    ]
    field = np.stack(components, axis=-1)
    field *= max_displacement_mm / np.linalg.norm(field, axis=-1).max()
    return Image(field.astype(np.float32), reference.geometry)


def warp_image(
    image: Image,
    displacement: Image,
    interpolation: str = "linear",
    default_value: float = 0.0,
) -> Image:
    """``image`` resampled onto the grid of ``displacement``: ``output(p) = image(p + u(p))``.

    ``interpolation`` is ``linear``, ``nearest`` (label maps) or ``bspline``; points that map
    outside ``image`` get ``default_value``. The output keeps the input's data type.
    """
    _check_displacement(displacement, image.dim)
    transform = sitk.DisplacementFieldTransform(_sitk_field(displacement))
    grid = Image(np.zeros(displacement.shape, np.uint8), displacement.geometry)
    return resample_to(image, grid, interpolation, default_value, transform)


def invert_displacement(
    displacement: Image,
    max_iterations: int = 20,
    tolerance_mm: float = 0.001,
) -> Image:
    """The inverse field ``v`` on the same grid, so that ``u(p) + v(p + u(p)) = 0``.

    Uses SimpleITK's fixed-point ``InvertDisplacementField`` (Chen et al. 2008), iterating until
    the largest residual falls below ``tolerance_mm`` or ``max_iterations`` pass. Accurate where
    the field is invertible (largest displacement gradient below 1); near the border, where
    ``p + u(p)`` leaves the grid, the inverse is extrapolated and less accurate.
    """
    _check_displacement(displacement, displacement.dim)
    inverter = sitk.InvertDisplacementFieldImageFilter()
    inverter.SetMaximumNumberOfIterations(int(max_iterations))
    inverter.SetMaxErrorToleranceThreshold(float(tolerance_mm))
    inverter.SetMeanErrorToleranceThreshold(float(tolerance_mm) / 10)
    inverter.SetEnforceBoundaryCondition(False)
    inverse = from_sitk(inverter.Execute(_sitk_field(displacement)))
    return inverse.with_array(inverse.array.astype(np.float32))


def _sitk_field(displacement: Image) -> sitk.Image:
    """A float64 vector image, the pixel type SimpleITK's displacement filters require."""
    return to_sitk(displacement.with_array(displacement.array.astype(np.float64)))


def _check_displacement(displacement: Image, dim: int) -> None:
    if not displacement.is_vector or displacement.array.shape[-1] != displacement.dim or displacement.dim != dim:
        raise ImageError(
            f"Expected a {dim}D displacement field with {dim} components per voxel (mm), got an "
            f"array of shape {displacement.array.shape} on a {displacement.dim}D grid."
        )


def _check_positive(value: float, name: str) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ImageError(f"{name} must be a positive number of mm, got {value}.")
