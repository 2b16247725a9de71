"""Cutting planes and boxes out of images while keeping every voxel's physical position."""

from __future__ import annotations

import numpy as np

from ..errors import ImageError
from ..geometry import Geometry
from ..image import Image

#: The LPS axis (0 = x, 1 = y, 2 = z) that is constant on each anatomical plane.
PLANE_NORMAL_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def plane_normal_axis(plane: str) -> int:
    """The LPS axis held constant on ``plane``; raises :class:`ImageError` for unknown names."""
    if plane not in PLANE_NORMAL_AXES:
        raise ImageError(f"Unknown plane '{plane}'; choose one of {sorted(PLANE_NORMAL_AXES)}.")
    return PLANE_NORMAL_AXES[plane]


def extract_slice(image: Image, plane: str, position_mm: float) -> Image:
    """The 2D image on ``plane`` through the voxel plane nearest to ``position_mm`` (the LPS
    coordinate along the plane's normal, mm).

    The two in-plane axes keep their physical meaning: a 2D point ``(a, b)`` is the 3D point
    whose two in-plane LPS coordinates are ``(a, b)`` (for example ``(x, z)`` on a coronal
    plane). Needs a 3D image whose grid is aligned with the plane (not oblique).
    """
    if image.dim != 3 or image.is_vector:
        raise ImageError("Slices are cut from 3D scalar images; this one is not.")
    normal = plane_normal_axis(plane)
    direction = image.geometry.direction_matrix
    index_axis = int(np.argmax(np.abs(direction[normal])))
    in_plane = [axis for axis in range(3) if axis != index_axis]
    physical_in_plane = [axis for axis in range(3) if axis != normal]
    if not np.allclose(np.abs(direction[:, index_axis]), np.eye(3)[normal], atol=1e-6):
        raise ImageError(
            f"The image grid is oblique to the {plane} plane; resample it onto an axis-aligned "
            "grid before cutting slices."
        )
    step = direction[normal, index_axis] * image.geometry.spacing[index_axis]
    index = int(round((position_mm - image.geometry.origin[normal]) / step))
    size = image.array.shape[image.dim - 1 - index_axis]
    if not 0 <= index < size:
        low, high = sorted(image.geometry.origin[normal] + step * np.array([0, size - 1]))
        raise ImageError(
            f"The {plane} slice at {position_mm:g} mm is outside the image, which spans "
            f"{low:g} to {high:g} mm along that axis."
        )
    geometry = Geometry(
        spacing=tuple(image.geometry.spacing[axis] for axis in in_plane),
        origin=tuple(image.geometry.origin[axis] for axis in physical_in_plane),
        direction=tuple(direction[np.ix_(physical_in_plane, in_plane)].ravel()),
    )
    return Image(np.take(image.array, index, axis=image.dim - 1 - index_axis), geometry)


def crop_or_pad(image: Image, start: tuple[int, ...], size: tuple[int, ...]) -> Image:
    """The box of ``size`` voxels starting at voxel ``start`` (both in NumPy order); parts of the
    box outside the image are filled with zeros. The voxels keep their physical positions."""
    stop = np.add(start, size)
    inside_start = np.maximum(start, 0)
    inside_stop = np.minimum(stop, image.shape)
    array = image.array[tuple(slice(a, b) for a, b in zip(inside_start, inside_stop))]
    padding = [(a - s, t - b) for s, t, a, b in zip(start, stop, inside_start, inside_stop)]
    padding += [(0, 0)] * (image.array.ndim - image.dim)
    origin = image.geometry.index_to_physical(np.asarray(start[::-1], dtype=float))
    geometry = Geometry(image.geometry.spacing, tuple(origin), image.geometry.direction)
    return Image(np.pad(array, padding), geometry)


def box_around(mask: np.ndarray, margin: int, multiple: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(start, size)`` in NumPy order of the box around the nonzero voxels of ``mask``, grown by
    ``margin`` voxels on each side, then to a multiple of ``multiple`` voxels along each axis,
    staying centred (the box may extend beyond the array)."""
    nonzero = np.argwhere(mask)
    if nonzero.size == 0:
        raise ImageError("The mask is empty, so there is nothing to crop around.")
    low = nonzero.min(axis=0) - margin
    extent = nonzero.max(axis=0) + 1 + margin - low
    size = -(-extent // multiple) * multiple
    start = low - (size - extent) // 2
    return tuple(int(v) for v in start), tuple(int(v) for v in size)
