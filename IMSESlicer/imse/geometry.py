"""Image geometry: where every voxel lies in physical space.

The one convention of the backend, stated once:

* Physical space is ITK's LPS (x towards the patient's left, y posterior, z superior), in mm.
  Slicer's RAS differs by the sign of x and y; the Slicer bridge converts, nothing else does.
* ``spacing``, ``origin`` and the columns of ``direction`` are in ITK axis order (x, y[, z]):
  the physical position of the voxel with ITK index ``idx = (i, j[, k])`` is
  ``p = origin + direction @ diag(spacing) @ idx``.
* Arrays are stored in NumPy/SimpleITK order, the reverse: ``array[k, j, i]`` (3D, shape
  ``(D, H, W)``) or ``array[j, i]`` (2D, shape ``(H, W)``); torch tensors add batch and
  channel in front, ``[N, C, (D,) H, W]``.
* A displacement field has one channel per physical axis, in physical order (x, y[, z]) and
  in mm: tensor ``[N, dim, (D,) H, W]``, or array ``(*spatial, dim)`` as SimpleITK stores
  vector images. It follows ITK's resampling convention: the fixed-space point ``p`` maps to
  the moving-space point ``p + u(p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ImageError


@dataclass(frozen=True)
class Geometry:
    """Spacing (mm), origin (mm, LPS) and direction cosines of an image grid.

    ``direction`` is the ``dim x dim`` matrix flattened row by row, as SimpleITK gives it;
    its columns are the physical directions of the index axes.
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        dim = len(self.spacing)
        if dim not in (2, 3):
            raise ImageError(f"Images must be 2D or 3D; this geometry has {dim} axes.")
        if len(self.origin) != dim or len(self.direction) != dim * dim:
            raise ImageError(
                f"Inconsistent geometry: {dim} spacings, {len(self.origin)} origin values and "
                f"{len(self.direction)} direction values (expected {dim}, {dim}, {dim * dim})."
            )
        spacing = np.asarray(self.spacing, dtype=float)
        if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise ImageError(f"Voxel spacing must be positive mm values, got {tuple(spacing)}.")
        if not np.all(np.isfinite(self.origin)) or not np.all(np.isfinite(self.direction)):
            raise ImageError("The image origin or direction contains NaN or infinite values.")
        if abs(np.linalg.det(self.direction_matrix)) < 1e-6:
            raise ImageError("The image direction matrix is singular: its axes are not independent.")
        # Normalise to plain Python floats so that equality and hashing behave.
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))

    @classmethod
    def identity(cls, dim: int, spacing: float | tuple[float, ...] = 1.0) -> "Geometry":
        """Axis-aligned grid at the origin with the given spacing (mm)."""
        spacing = (spacing,) * dim if np.isscalar(spacing) else tuple(spacing)
        return cls(spacing, (0.0,) * dim, tuple(np.eye(dim).ravel()))

    @property
    def dim(self) -> int:
        return len(self.spacing)

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a ``(dim, dim)`` array; column ``a`` is index axis ``a``."""
        return np.asarray(self.direction, dtype=float).reshape(self.dim, self.dim)

    @property
    def index_to_physical_matrix(self) -> np.ndarray:
        """``direction @ diag(spacing)``: maps an ITK-order index offset to mm (LPS)."""
        return self.direction_matrix * np.asarray(self.spacing)[None, :]

    def index_to_physical(self, index: np.ndarray) -> np.ndarray:
        """Physical points (mm, LPS) of ITK-order indices; ``index`` is ``(..., dim)``."""
        index = np.asarray(index, dtype=float)
        return index @ self.index_to_physical_matrix.T + np.asarray(self.origin)

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous ITK-order indices of physical points (mm, LPS); ``points`` is ``(..., dim)``."""
        points = np.asarray(points, dtype=float)
        inverse = np.linalg.inv(self.index_to_physical_matrix)
        return (points - np.asarray(self.origin)) @ inverse.T

    def isclose(self, other: "Geometry", tolerance: float = 1e-4) -> bool:
        """Same grid placement to within ``tolerance`` (mm for origin and spacing)."""
        return (
            self.dim == other.dim
            and np.allclose(self.spacing, other.spacing, atol=tolerance)
            and np.allclose(self.origin, other.origin, atol=tolerance)
            and np.allclose(self.direction, other.direction, atol=tolerance)
        )

    def extent_corners(self, shape: tuple[int, ...]) -> np.ndarray:
        """Physical positions (mm) of the ``2**dim`` corner voxel centres of an array of
        NumPy-order ``shape``; returns ``(2**dim, dim)``."""
        sizes = shape[::-1]
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in sizes], indexing="ij"))
        return self.index_to_physical(corners.reshape(self.dim, -1).T)
