"""2D images <-> single-slice 3D images, since every Slicer volume node is 3D.

A 2D backend image (a slice of the MNI pair, an echo frame) lies in its own 2D physical
plane; in a volume node it becomes one slice whose 2D axes are LPS x and y, at z = 0 mm.
"""

from __future__ import annotations

import numpy as np

from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image


def as_single_slice(image: Image, slice_thickness_mm: float = 1.0) -> Image:
    """A 2D image as a 3D image of one slice (3D images are returned unchanged): the 2D
    physical axes become LPS x and y, the slice lies at z = 0 mm with thickness
    ``slice_thickness_mm``, and arrays ``(H, W[, C])`` become ``(1, H, W[, C])`` (vector
    components, such as a colour, are kept as they are; see
    :func:`displacement_as_single_slice` for displacement fields)."""
    if image.dim == 3:
        return image
    geometry = image.geometry
    direction = np.eye(3)
    direction[:2, :2] = geometry.direction_matrix
    lifted = Geometry((*geometry.spacing, slice_thickness_mm), (*geometry.origin, 0.0), tuple(direction.ravel()))
    return Image(image.array[None], lifted)


def displacement_as_single_slice(displacement: Image) -> Image:
    """A 2D displacement field ``(H, W, 2)`` (mm) as a 3D field ``(1, H, W, 3)`` with a zero z
    component, on the single-slice grid of :func:`as_single_slice` (3D fields are returned
    unchanged), ready for :func:`~IMSESlicerLib.transforms.grid_transform_from_displacement`."""
    if displacement.dim == 3:
        return displacement
    if not displacement.is_vector or displacement.array.shape[-1] != 2:
        raise ImageError("A 2D displacement field has two components (x, y) per pixel, in mm.")
    vectors = displacement.array
    padded = np.concatenate([vectors, np.zeros(vectors.shape[:-1] + (1,), vectors.dtype)], axis=-1)
    return as_single_slice(displacement.with_array(padded))


def as_planar(image: Image) -> Image:
    """The inverse of :func:`as_single_slice`: a 3D image of one slice whose in-plane axes lie
    in the LPS x-y plane becomes a 2D image on those axes (its z position is dropped); 2D
    images are returned unchanged."""
    if image.dim == 2:
        return image
    direction = image.geometry.direction_matrix
    if image.shape[0] != 1 or not np.allclose(direction[2, :2], 0.0, atol=1e-6):
        raise ImageError(
            f"Only a single slice in the x-y (axial) plane becomes a 2D image; this volume has "
            f"{image.shape[0]} slice(s), or its slice is not axial. Choose a single axial slice."
        )
    geometry = Geometry(image.geometry.spacing[:2], image.geometry.origin[:2], tuple(direction[:2, :2].ravel()))
    return Image(image.array[0], geometry)


def onto_single_slice(image: Image, grid: Image) -> Image:
    """A 2D result (scalar, or a displacement with components x, y in mm) computed from
    :func:`as_planar` of the single-slice volume ``grid``, put back on ``grid``'s 3D geometry
    (its slice position kept; a displacement gains a zero z component). 3D images are returned
    unchanged."""
    if image.dim == 3:
        return image
    if image.shape != grid.shape[1:]:
        raise ImageError(f"The 2D result {image.shape} does not match the slice {grid.shape[1:]}.")
    array = image.array
    if image.is_vector:
        array = np.concatenate([array, np.zeros(array.shape[:-1] + (1,), array.dtype)], axis=-1)
    return Image(array[None], grid.geometry)
