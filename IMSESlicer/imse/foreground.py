"""Automatic foreground masks: the anatomy of an image, without its background.

A registration mask keeps the similarity (and, for the discrete search, the field's updates)
where the image has anatomy. Outside the head a T1 is noise while a CT's air is flat; without a
mask the discrete search with MIND pulled a CT's brain outline outwards into that background
(see the README's registration tables). This module finds the foreground with SimpleITK: the
image smoothed by a Gaussian of one voxel, Otsu's threshold, the largest connected component,
its holes filled (dark ventricles and sinuses stay in), then dilated by a margin.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .image import Image, to_sitk


def foreground_mask(image: Image, margin_voxels: int = 2) -> Image:
    """A mask (uint8, 1 inside) of ``image``'s foreground on its grid, dilated by
    ``margin_voxels`` voxels along each axis (see the module docstring). Raises
    :class:`~imse.errors.ImageError` for an image without a foreground (constant, or scalar
    values needed) or a negative margin."""
    if image.is_vector:
        raise ImageError("A foreground mask needs a scalar image; convert colour or vector images to grey values first.")
    if margin_voxels < 0:
        raise ImageError(f"The mask's margin must be at least 0 voxels, got {margin_voxels}.")
    values = image.array
    if not np.isfinite(values).all() or float(values.max()) <= float(values.min()):
        raise ImageError("The image is constant (or not finite), so it has no foreground to mask; give a mask instead.")
    smoothed = sitk.SmoothingRecursiveGaussian(sitk.Cast(to_sitk(image), sitk.sitkFloat32), float(max(image.geometry.spacing)))
    components = sitk.ConnectedComponent(sitk.OtsuThreshold(smoothed, 0, 1))
    largest = sitk.BinaryFillhole(sitk.RelabelComponent(components, sortByObjectSize=True) == 1)
    if margin_voxels > 0:
        largest = sitk.BinaryDilate(largest, [margin_voxels] * image.dim)
    mask = sitk.GetArrayFromImage(largest).astype(np.uint8)
    if not mask.any():
        raise ImageError("No foreground was found in the image; give a mask instead.")
    return image.with_array(mask)
