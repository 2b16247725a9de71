"""Shared fixtures and helpers for the backend tests: small images on deliberately awkward grids,
and the end-point error of a registration of a synthetic pair (:func:`imse.data.make_pair`)."""

import numpy as np
import pytest

from imse import metrics
from imse.geometry import Geometry


def rotation_matrix_3d(angles_degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation about x, then y, then z (angles in degrees)."""
    ax, ay, az = np.deg2rad(angles_degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def oblique_geometry_3d() -> Geometry:
    """Anisotropic spacing, a non-zero origin and an oblique direction."""
    direction = rotation_matrix_3d((20.0, -15.0, 30.0))
    return Geometry((1.2, 0.8, 2.0), (-30.0, 12.5, 40.0), tuple(direction.ravel()))


@pytest.fixture
def oblique_geometry_2d() -> Geometry:
    angle = np.deg2rad(25.0)
    direction = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return Geometry((0.7, 1.3), (10.0, -5.0), tuple(direction.ravel()))


def gaussian_blob(shape: tuple[int, ...], geometry: Geometry, centre_mm: np.ndarray, sigma_mm: float) -> np.ndarray:
    """A Gaussian of width ``sigma_mm`` centred at the physical point ``centre_mm`` (NumPy order)."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape[::-1]], indexing="ij"), axis=-1)
    points = geometry.index_to_physical(index)  # ITK index order (x, y, z) along the leading axes
    squared = np.sum((points - centre_mm) ** 2, axis=-1)
    return np.exp(-squared / (2 * sigma_mm**2)).transpose(*range(len(shape))[::-1]).astype(np.float32)


def weighted_centroid_mm(array: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Intensity-weighted centroid of a NumPy-order array, in mm."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij"), axis=-1)[..., ::-1]
    points = geometry.index_to_physical(index)
    weights = array[..., None]
    return (points * weights).sum(axis=tuple(range(array.ndim))) / weights.sum()


def brain_endpoint_error(displacement, pair, inside: np.ndarray | None = None) -> float:
    """Mean end-point error (mm) of ``displacement`` (a vector Image in mm on the fixed grid)
    against ``pair``'s true field, inside the boolean array ``inside`` (default: the fixed brain)."""
    inside = pair.fixed_labels.array > 0 if inside is None else inside
    return metrics.endpoint_error(displacement, pair.displacement, inside)["mean"]


def unregistered_endpoint_error(pair, inside: np.ndarray | None = None) -> float:
    """:func:`brain_endpoint_error` before registration (a zero displacement)."""
    return brain_endpoint_error(pair.displacement.with_array(np.zeros_like(pair.displacement.array)), pair, inside)
