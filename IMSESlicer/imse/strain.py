"""Cardiac strain from displacement fields: deformation gradient, Green-Lagrange and
infinitesimal strain tensors, principal strains, radial/circumferential/longitudinal
components, six-segment regional means and strain curves over a cycle.

Conventions (see :mod:`imse.geometry`): tensors are torch ``[N, ...]``; a displacement ``u``
is ``[N, dim, (D,) H, W]`` in mm, channel ``c`` along physical axis ``c`` (LPS x, y[, z]).
Strain is **Lagrangian**: ``u`` lives on the reference (end-diastolic) frame, and the material
point at ``X`` in the reference frame is at ``X + u(X)`` in the deformed frame. A registration
result in ITK's convention with the reference frame as the FIXED image and a later frame as
the MOVING image is exactly that displacement (the fixed point ``p`` maps to ``p + u(p)``).
Strain tensors are ``[N, dim, dim, (D,) H, W]``, components along the physical axes, and
unitless: 0.2 means 20 % lengthening (radial thickening), -0.2 means 20 % shortening.

Directions around the left ventricle (LV): the radial direction at a voxel is the unit vector
from the LV centre (or, in 3D, from the long axis) to the voxel centre in the reference frame;
the circumferential direction is ``long_axis x radial``, with ``long_axis`` the out-of-plane
physical z axis in 2D (so circumferential is the radial direction turned by +90 degrees from
+x towards +y); the longitudinal direction is the long axis. Angles around the LV (for the
segments) are measured in the same right-handed sense, from a zero direction that is the
physical +x axis in 2D and the projection of +x (or of +y when +x is along the axis) on the
short-axis plane in 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import ImageError
from .field import compose, physical_points, spatial_gradient
from .geometry import Geometry

STRAIN_MEASURES = ("green_lagrange", "infinitesimal")
_MIN_RADIUS_MM = 1e-6


# --------------------------------------------------------------------------------------------
# Strain tensors
# --------------------------------------------------------------------------------------------


def _identity_like(gradient: torch.Tensor, dim: int) -> torch.Tensor:
    """The identity ``[1, dim, dim, 1, ...]``, broadcastable to ``gradient``."""
    identity = torch.eye(dim, dtype=gradient.dtype, device=gradient.device)
    return identity.view(1, dim, dim, *([1] * (gradient.ndim - 3)))


def _transpose(tensor: torch.Tensor) -> torch.Tensor:
    """Swap the two tensor axes of ``[N, dim, dim, *spatial]``."""
    return tensor.transpose(1, 2)


def deformation_gradient(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """``F = I + du/dX`` of the Lagrangian displacement ``u`` (mm, ``[N, dim, *spatial]``, on the
    reference grid ``geometry``): ``[N, dim, dim, *spatial]``, unitless, ``F[:, i, j] =
    dx_i / dX_j`` along physical axes. Derivatives are central differences (one-sided at the
    borders), honouring spacing and direction."""
    gradient = spatial_gradient(displacement, geometry)
    return gradient + _identity_like(gradient, geometry.dim)


def infinitesimal_strain(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Small-strain tensor ``(grad u + grad u^T) / 2``: ``[N, dim, dim, *spatial]``, unitless.

    Linear in ``u``, but only valid for small motion: a rigid rotation by an angle ``a`` gives a
    spurious strain of ``cos(a) - 1`` along every direction. Prefer
    :func:`green_lagrange_strain` for cardiac motion (strains of 20-50 % and rotations)."""
    gradient = spatial_gradient(displacement, geometry)
    return (gradient + _transpose(gradient)) / 2


def green_lagrange_strain(displacement: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Green-Lagrange strain ``(F^T F - I) / 2``: ``[N, dim, dim, *spatial]``, unitless.

    Exactly zero for any rigid motion, whatever its size. A material fibre of unit length along
    the unit vector ``n`` in the reference frame has length ``sqrt(1 + 2 n^T E n)`` afterwards."""
    deformation = deformation_gradient(displacement, geometry)
    right_cauchy_green = torch.einsum("nki...,nkj...->nij...", deformation, deformation)
    return (right_cauchy_green - _identity_like(deformation, geometry.dim)) / 2


def _check_measure(measure: str) -> None:
    if measure not in STRAIN_MEASURES:
        raise ImageError(f"Unknown strain measure '{measure}'; choose one of {list(STRAIN_MEASURES)}.")


def strain_tensor(displacement: torch.Tensor, geometry: Geometry, measure: str = "green_lagrange") -> torch.Tensor:
    """The strain tensor of ``measure`` (``green_lagrange`` or ``infinitesimal``), see
    :func:`green_lagrange_strain` and :func:`infinitesimal_strain`."""
    _check_measure(measure)
    if measure == "green_lagrange":
        return green_lagrange_strain(displacement, geometry)
    return infinitesimal_strain(displacement, geometry)


def principal_strains(
    tensor: torch.Tensor, eigenvectors: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues of a symmetric strain ``tensor`` ``[N, dim, dim, *spatial]``, largest first:
    ``[N, dim, *spatial]`` (unitless). With ``eigenvectors=True`` also returns the unit principal
    directions ``[N, dim, dim, *spatial]``, where ``[:, k]`` is the direction (physical
    components) of eigenvalue ``k``. Only the lower triangle of ``tensor`` is read."""
    if tensor.ndim < 4 or tensor.shape[1] != tensor.shape[2]:
        raise ImageError(f"A strain tensor must be [N, dim, dim, *spatial]; got shape {tuple(tensor.shape)}.")
    values, vectors = torch.linalg.eigh(tensor.movedim((1, 2), (-2, -1)))
    values = values.flip(-1).movedim(-1, 1)
    if not eigenvectors:
        return values
    # vectors: [N, *spatial, component, k] -> [N, k, component, *spatial]
    return values, vectors.flip(-1).movedim((-1, -2), (1, 2))


# --------------------------------------------------------------------------------------------
# Directions around the left ventricle
# --------------------------------------------------------------------------------------------


def _unit_long_axis(long_axis: Sequence[float] | None) -> np.ndarray:
    """The 3D long axis as a unit vector (physical x, y, z)."""
    if long_axis is None:
        raise ImageError(
            "3D strain needs the LV long axis: give its direction (physical x, y, z) as "
            "long_axis; centre_mm is then a point on the axis."
        )
    axis = np.asarray(long_axis, dtype=float)
    if axis.shape != (3,) or not np.linalg.norm(axis) > 0:
        raise ImageError(f"The long axis must be a non-zero 3D direction, got {tuple(np.ravel(axis))}.")
    return axis / np.linalg.norm(axis)


def _in_plane_basis(geometry: Geometry, long_axis: Sequence[float] | None) -> np.ndarray:
    """Rows: the zero-angle direction, the 90-degree direction and the long axis, ``(3, dim)``
    for 3D (``(2, 2)`` in 2D, the plane's own x and y)."""
    if geometry.dim == 2:
        return np.eye(2)
    axis = _unit_long_axis(long_axis)
    reference = np.eye(3)[0] if abs(axis[0]) < 0.9 else np.eye(3)[1]
    zero_angle = reference - axis * (reference @ axis)
    zero_angle /= np.linalg.norm(zero_angle)
    return np.stack([zero_angle, np.cross(axis, zero_angle), axis])


def _offsets_from_axis(
    shape: tuple[int, ...], geometry: Geometry, centre_mm: Sequence[float], long_axis, like: torch.Tensor
) -> torch.Tensor:
    """Vectors (mm) from the LV centre (2D) or long axis (3D) to every voxel centre, components
    in the short-axis plane only: ``[dim, *shape]``."""
    centre = np.asarray(centre_mm, dtype=float)
    if centre.shape != (geometry.dim,):
        raise ImageError(f"The LV centre must be a {geometry.dim}D point in mm, got {tuple(np.ravel(centre))}.")
    centre = torch.as_tensor(centre, dtype=like.dtype, device=like.device).view(-1, *([1] * len(shape)))
    offsets = physical_points(shape, geometry, like) - centre
    if geometry.dim == 3:
        axis = torch.as_tensor(_unit_long_axis(long_axis), dtype=like.dtype, device=like.device)
        along = torch.einsum("c,c...->...", axis, offsets)
        offsets = offsets - axis.view(-1, 1, 1, 1) * along
    return offsets


def cardiac_directions(
    shape: tuple[int, ...],
    geometry: Geometry,
    centre_mm: Sequence[float],
    long_axis: Sequence[float] | None = None,
    like: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Unit radial and circumferential directions at every voxel centre (and, in 3D, the
    longitudinal one), each ``[dim, *shape]`` with physical components (see the module notes).

    Args:
        shape: NumPy-order spatial shape of the grid.
        geometry: the grid's geometry (the reference frame).
        centre_mm: LV centre, a physical point (mm, LPS); in 3D a point on the long axis.
        long_axis: 3D only: direction of the LV long axis (physical x, y, z; any length).
        like: the directions get its dtype and device (float32 on the CPU by default).

    At the centre itself (on the axis in 3D) the radial and circumferential directions are
    undefined and set to zero.
    """
    like = torch.zeros((), dtype=torch.float32) if like is None else like
    offsets = _offsets_from_axis(shape, geometry, centre_mm, long_axis, like)
    radial = offsets / offsets.norm(dim=0, keepdim=True).clamp(min=_MIN_RADIUS_MM)
    if geometry.dim == 2:
        return radial, torch.stack([-radial[1], radial[0]])
    axis = torch.as_tensor(_unit_long_axis(long_axis), dtype=like.dtype, device=like.device)
    axis_field = axis.view(-1, 1, 1, 1).expand_as(radial)
    return radial, torch.linalg.cross(axis_field, radial, dim=0), axis_field


def radial_circumferential_strain(
    tensor: torch.Tensor,
    geometry: Geometry,
    centre_mm: Sequence[float],
    long_axis: Sequence[float] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Normal strains along the LV's own directions: ``E_rr = r^T E r`` and ``E_cc = c^T E c``
    (and ``E_ll = l^T E l`` in 3D), each ``[N, *spatial]``, unitless.

    Args:
        tensor: strain tensor ``[N, dim, dim, *spatial]`` on the reference grid (from
            :func:`green_lagrange_strain` or :func:`infinitesimal_strain`).
        geometry: the reference grid.
        centre_mm: LV centre (mm, LPS); in 3D a point on the long axis.
        long_axis: required in 3D: the long-axis direction (physical x, y, z).

    Returns:
        ``(radial, circumferential)`` in 2D, ``(radial, circumferential, longitudinal)`` in 3D.
        Positive radial strain is wall thickening; negative circumferential and longitudinal
        strains are shortening.
    """
    dim = geometry.dim
    if tensor.ndim != dim + 3 or tensor.shape[1:3] != (dim, dim):
        raise ImageError(
            f"A strain tensor on a {dim}D grid must be [N, {dim}, {dim}, *spatial]; got shape {tuple(tensor.shape)}."
        )
    directions = cardiac_directions(tuple(tensor.shape[3:]), geometry, centre_mm, long_axis, like=tensor)
    return tuple(torch.einsum("i...,nij...,j...->n...", d, tensor, d) for d in directions)


# --------------------------------------------------------------------------------------------
# Regional means
# --------------------------------------------------------------------------------------------


def angle_around_lv(
    shape: tuple[int, ...],
    geometry: Geometry,
    centre_mm: Sequence[float],
    long_axis: Sequence[float] | None = None,
    like: torch.Tensor | None = None,
) -> torch.Tensor:
    """Angle (degrees, in [0, 360)) of every voxel centre around the LV centre or long axis,
    ``[*shape]``, measured from the zero direction in the circumferential sense (module notes):
    in 2D from physical +x towards +y."""
    like = torch.zeros((), dtype=torch.float64) if like is None else like
    offsets = _offsets_from_axis(shape, geometry, centre_mm, long_axis, like)
    basis = torch.as_tensor(_in_plane_basis(geometry, long_axis), dtype=like.dtype, device=like.device)
    along_zero, along_ninety = torch.einsum("bc,c...->b...", basis[:2], offsets)
    return torch.rad2deg(torch.atan2(along_ninety, along_zero)) % 360.0


def segment_labels(
    shape: tuple[int, ...],
    geometry: Geometry,
    centre_mm: Sequence[float],
    reference_angle_deg: float = 0.0,
    segments: int = 6,
    long_axis: Sequence[float] | None = None,
) -> torch.Tensor:
    """Sector index (0 to ``segments - 1``, int64 ``[*shape]``) of every voxel: sector ``k``
    holds the angles ``[ref + k * w, ref + (k + 1) * w)`` with ``w = 360 / segments`` degrees,
    counted from ``reference_angle_deg`` in the sense of :func:`angle_around_lv`.

    The user chooses the reference: for the six AHA mid-ventricular segments, the angle of the
    anterior RV insertion point. Which anatomical name belongs to which index depends on how
    the image is oriented (the AHA order anterior, anteroseptal, inferoseptal, inferior,
    inferolateral, anterolateral runs counter-clockwise in the standard short-axis view seen
    from the apex); map the indices to names once the orientation is known.
    """
    if segments < 1:
        raise ImageError(f"The number of segments must be at least 1, got {segments}.")
    angle = angle_around_lv(shape, geometry, centre_mm, long_axis)
    relative = (angle - float(reference_angle_deg)) % 360.0
    return torch.div(relative, 360.0 / segments, rounding_mode="floor").long().clamp(max=segments - 1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[N, *spatial]`` over the voxels of ``mask`` (broadcast): ``[N]``,
    NaN where the mask is empty."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)


def _as_mask(mask, values: torch.Tensor) -> torch.Tensor:
    """``mask`` (tensor or array, ``[*spatial]`` or ``[N, *spatial]``) as a boolean tensor on the
    device of ``values`` ``[N, *spatial]``."""
    mask = torch.as_tensor(mask, device=values.device).bool()
    if tuple(mask.shape) not in (tuple(values.shape[1:]), tuple(values.shape)):
        raise ImageError(
            f"The myocardium mask (shape {tuple(mask.shape)}) does not match the strain map "
            f"(spatial shape {tuple(values.shape[1:])}): give it on the reference grid."
        )
    if not mask.any():
        raise ImageError("The myocardium mask is empty: it selects no voxel. Give a mask of the LV wall.")
    return mask


def segment_means(
    values: torch.Tensor,
    geometry: Geometry,
    centre_mm: Sequence[float],
    myocardium_mask,
    reference_angle_deg: float = 0.0,
    segments: int = 6,
    long_axis: Sequence[float] | None = None,
) -> torch.Tensor:
    """Mean of a map (e.g. radial strain) over each of ``segments`` equal sectors of the
    myocardium, the AHA mid-ventricular segments for ``segments=6``.

    Args:
        values: map ``[N, *spatial]`` on ``geometry`` (any unit; strain is unitless).
        geometry: its grid.
        centre_mm: LV centre (mm, LPS); in 3D a point on the long axis.
        myocardium_mask: boolean ``[*spatial]`` or ``[N, *spatial]`` (tensor or array).
        reference_angle_deg: where sector 0 starts, given by the user (e.g. the angle of the
            anterior RV insertion point); see :func:`segment_labels`.
        segments: number of equal sectors.
        long_axis: required in 3D: the long-axis direction (physical x, y, z).

    Returns:
        ``[N, segments]``: the mean inside the mask per sector, NaN for a sector without a
        myocardium voxel.
    """
    mask = _as_mask(myocardium_mask, values)
    labels = segment_labels(tuple(values.shape[1:]), geometry, centre_mm, reference_angle_deg, segments, long_axis)
    labels = labels.to(values.device)
    return torch.stack([_masked_mean(values, mask & (labels == k)) for k in range(segments)], dim=1)


# --------------------------------------------------------------------------------------------
# Strain over a cycle
# --------------------------------------------------------------------------------------------


def accumulate_displacements(frame_displacements: Sequence[torch.Tensor], geometry: Geometry) -> list[torch.Tensor]:
    """Displacements from the reference frame 0 to every frame, ``u(0->t)``, from the
    frame-to-frame ones ``u(0->1), u(1->2), ...``.

    Each ``u(t-1->t)`` is ``[N, dim, *spatial]`` in mm on the (common) grid ``geometry``, in
    ITK's convention with the earlier frame as fixed: the point ``p`` of frame ``t-1`` is at
    ``p + u(p)`` in frame ``t``. They are chained by ``u(0->t) = compose(u(0->t-1),
    u(t-1->t))`` (linear interpolation, border values outside the grid). Returns the list
    ``[u(0->0) = 0, u(0->1), ..., u(0->T-1)]``, one entry per frame.
    """
    if not frame_displacements:
        raise ImageError("Give at least one frame-to-frame displacement to build a strain curve.")
    cumulative = [torch.zeros_like(frame_displacements[0]), frame_displacements[0]]
    for step in frame_displacements[1:]:
        cumulative.append(compose(cumulative[-1], step, geometry))
    return cumulative


def strain_curve(
    frame_displacements: Sequence[torch.Tensor],
    geometry: Geometry,
    centre_mm: Sequence[float],
    mask,
    measure: str = "green_lagrange",
    long_axis: Sequence[float] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Global strain over a cycle: the mean radial and circumferential (and, in 3D,
    longitudinal) strain in the myocardium of the reference frame, at every frame.

    Args:
        frame_displacements: ``u(0->1), u(1->2), ...``, each ``[N, dim, *spatial]`` in mm, the
            earlier frame fixed (see :func:`accumulate_displacements`).
        geometry: the frames' common grid.
        centre_mm: LV centre in the reference frame (mm, LPS); in 3D a point on the long axis.
        mask: myocardium of the reference frame, boolean ``[*spatial]`` or ``[N, *spatial]``.
            Strain is Lagrangian, so the same material voxels are averaged at every frame.
        measure: ``green_lagrange`` (default: exact for the large strains and rotations of the
            heart) or ``infinitesimal`` (the small-strain approximation that many tools report:
            a stretch ``s`` gives ``s - 1`` instead of ``(s**2 - 1) / 2``, and rotation biases
            it).
        long_axis: required in 3D: the long-axis direction (physical x, y, z).

    Returns:
        ``(radial, circumferential)`` (2D) or ``(radial, circumferential, longitudinal)`` (3D),
        each ``[T, N]`` with ``T`` the number of frames (one more than the number of
        displacements) and the value 0 at frame 0. Unitless.
    """
    _check_measure(measure)
    cumulative = accumulate_displacements(frame_displacements, geometry)
    region = _as_mask(mask, cumulative[0][:, 0])
    per_frame = []
    for displacement in cumulative:
        components = radial_circumferential_strain(
            strain_tensor(displacement, geometry, measure), geometry, centre_mm, long_axis
        )
        per_frame.append(torch.stack([_masked_mean(component, region) for component in components]))
    return tuple(torch.stack(per_frame).unbind(1))
