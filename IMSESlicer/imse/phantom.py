"""Left-ventricle phantoms with analytic motion and strain: known truth for registration,
AdaCS scoring and strain tests.

The LV is a ring (2D) or an open cylindrical shell along the physical z axis (3D) around
``centre_mm``, with a speckle texture attached to the tissue. Over one cycle of ``T`` frames
it contracts and relaxes: end-diastole (the undeformed reference) at frame 0, end-systole at
frame ``T / 2``. The motion is polar-symmetric and torsion-free; everything is analytic.

Motion model (material point at radius ``r`` from the axis and height ``z`` from the centre
in frame 0, at radius ``R`` and height ``Z`` at time ``t``):

* contraction ``c(t) = (1 - cos(2 pi t / T)) / 2`` (0 at end-diastole, 1 at end-systole);
* longitudinal stretch ``lam(t) = 1 - shortening * c(t)`` (1 in 2D), ``Z = lam z``;
* cavity radius ``R_i(t) = r_i - (r_i - r_es) c(t)``, with ``r_i`` the end-diastolic and
  ``r_es`` the end-systolic inner radius;
* tissue (``r >= r_i``, the myocardium and what surrounds it) is incompressible:
  ``R^2 = (r^2 - a(t)) / lam(t)`` with ``a(t) = r_i^2 - lam(t) R_i(t)^2``, so the inner wall
  follows ``R_i(t)`` and every annulus keeps its area (2D) or volume (3D);
* the blood pool (``r < r_i``) scales uniformly: ``R = (R_i(t) / r_i) r``.

The deformation gradient is a pure stretch along the radial, circumferential and
longitudinal directions of the reference frame, ``F = diag(dR/dr, R/r, lam)`` with
``dR/dr = r / (lam R)`` in the tissue and ``R_i / r_i`` for both in-plane stretches in the
blood pool. Hence, with ``s`` a principal stretch, Green-Lagrange strain ``(s^2 - 1) / 2`` and
infinitesimal strain ``s - 1``:

* ``E_rr = ((r / (lam R))^2 - 1) / 2 > 0`` (thickening), ``e_rr = r / (lam R) - 1``;
* ``E_cc = ((R / r)^2 - 1) / 2 < 0`` (shortening), ``e_cc = R / r - 1``;
* ``E_ll = (lam^2 - 1) / 2``, ``e_ll = lam - 1``.

The inverse map is ``r = sqrt(lam R^2 + a)`` for ``R >= R_i(t)`` and ``r = (r_i / R_i(t)) R``
inside, ``z = Z / lam``. Frame ``t`` shows, at every voxel, the texture of the material that is
there: the tissue intensity times a log-normal speckle, both evaluated at the voxel's frame-0
(material) position. Frame 0 is therefore the texture in the reference configuration, and the
speckle moves with the tissue.

Angles (the corruption sectors) follow :mod:`imse.strain`: around the centre, from physical +x
towards +y. Arrays are in NumPy order, displacements in mm with channel ``c`` along physical
axis ``c`` (see :mod:`imse.geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import ImageError
from .geometry import Geometry

BLOOD_INTENSITY = 0.1
MYOCARDIUM_INTENSITY = 0.7
BACKGROUND_INTENSITY = 0.3
EDGE_WIDTH_MM = 0.4  # the tissue boundaries are smooth steps this wide, so the frames have no aliasing
CORRUPTIONS = ("dropout", "noise_burst", "intensity_change")


@dataclass(frozen=True)
class RingMotion:
    """The analytic motion of the module notes. Radii in mm; ``frames`` is the cycle length
    ``T``; ``longitudinal_shortening`` the fractional shortening along z at end-systole (0 in
    2D); ``half_length_mm`` half the length of the 3D shell (``None``: unbounded, as in 2D).

    Positions are offsets (mm) from the LV centre, ``(..., dim)``, components along physical
    (x, y[, z]); times ``t`` are in frames (any real number).
    """

    inner_radius_mm: float
    outer_radius_mm: float
    end_systolic_inner_radius_mm: float
    frames: int
    longitudinal_shortening: float = 0.0
    half_length_mm: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.end_systolic_inner_radius_mm < self.inner_radius_mm < self.outer_radius_mm:
            raise ImageError(
                "The LV radii must satisfy 0 < end-systolic inner radius < inner radius < outer "
                f"radius; got {self.end_systolic_inner_radius_mm}, {self.inner_radius_mm} and "
                f"{self.outer_radius_mm} mm."
            )
        if self.frames < 2:
            raise ImageError(f"A cardiac cycle needs at least 2 frames, got {self.frames}.")
        if not 0 <= self.longitudinal_shortening < 1:
            raise ImageError(f"The longitudinal shortening must be in [0, 1), got {self.longitudinal_shortening}.")

    def contraction(self, t: float) -> float:
        """``c(t)``: 0 at end-diastole (frame 0), 1 at end-systole (frame ``T / 2``)."""
        return (1.0 - np.cos(2.0 * np.pi * t / self.frames)) / 2.0

    def longitudinal_stretch(self, t: float) -> float:
        """``lam(t)``, the stretch along the long axis."""
        return 1.0 - self.longitudinal_shortening * self.contraction(t)

    def cavity_radius(self, t: float) -> float:
        """``R_i(t)``, the inner (endocardial) radius in mm."""
        return self.inner_radius_mm - (self.inner_radius_mm - self.end_systolic_inner_radius_mm) * self.contraction(t)

    def _area_shift(self, t: float) -> float:
        """``a(t) = r_i^2 - lam R_i^2`` (mm^2)."""
        return self.inner_radius_mm**2 - self.longitudinal_stretch(t) * self.cavity_radius(t) ** 2

    def current_radius(self, material_radius: np.ndarray, t: float) -> np.ndarray:
        """``R(r, t)``: where the material radius ``r`` (mm) is at time ``t``."""
        r = np.asarray(material_radius, dtype=float)
        # r^2 >= a(t) in the tissue; the maximum only silences the unused values of the cavity
        tissue = np.sqrt(np.maximum(r**2 - self._area_shift(t), 0.0) / self.longitudinal_stretch(t))
        return np.where(r >= self.inner_radius_mm, tissue, r * self.cavity_radius(t) / self.inner_radius_mm)

    def material_radius(self, current_radius: np.ndarray, t: float) -> np.ndarray:
        """``r(R, t)``: the material radius (mm) that is at radius ``R`` at time ``t``."""
        big_r = np.asarray(current_radius, dtype=float)
        tissue = np.sqrt(self.longitudinal_stretch(t) * big_r**2 + self._area_shift(t))
        return np.where(big_r >= self.cavity_radius(t), tissue, big_r * self.inner_radius_mm / self.cavity_radius(t))

    def _rescale(self, offsets: np.ndarray, new_radius: np.ndarray, z_stretch: float) -> np.ndarray:
        """``offsets`` with their in-plane radius set to ``new_radius`` and z multiplied by
        ``z_stretch`` (the motion is radial, so the angle is kept)."""
        radius = np.linalg.norm(offsets[..., :2], axis=-1)
        in_plane = offsets[..., :2] * (new_radius / np.maximum(radius, 1e-12))[..., None]
        return np.concatenate([in_plane, offsets[..., 2:] * z_stretch], axis=-1)

    def to_current(self, material: np.ndarray, t: float) -> np.ndarray:
        """Positions at time ``t`` of the material points at ``material`` in frame 0."""
        radius = np.linalg.norm(material[..., :2], axis=-1)
        return self._rescale(material, self.current_radius(radius, t), self.longitudinal_stretch(t))

    def to_material(self, current: np.ndarray, t: float) -> np.ndarray:
        """Frame-0 positions of the material points that are at ``current`` at time ``t``."""
        radius = np.linalg.norm(current[..., :2], axis=-1)
        return self._rescale(current, self.material_radius(radius, t), 1.0 / self.longitudinal_stretch(t))

    def displacement(self, positions: np.ndarray, source: float, target: float) -> np.ndarray:
        """Displacement (mm, ``(..., dim)``) of the points at ``positions`` at time ``source`` to
        where the same material is at time ``target``."""
        return self.to_current(self.to_material(positions, source), target) - positions

    def in_myocardium(self, material: np.ndarray) -> np.ndarray:
        """Whether the frame-0 positions ``material`` lie in the myocardium (boolean)."""
        radius = np.linalg.norm(material[..., :2], axis=-1)
        inside = (radius >= self.inner_radius_mm) & (radius <= self.outer_radius_mm)
        if self.half_length_mm is not None and material.shape[-1] == 3:
            inside &= np.abs(material[..., 2]) <= self.half_length_mm
        return inside

    def principal_stretches(self, material: np.ndarray, t: float) -> tuple[np.ndarray, ...]:
        """Radial and circumferential stretches (and longitudinal, for 3D points) at time ``t``
        of the material at frame-0 ``material`` positions."""
        r = np.linalg.norm(material[..., :2], axis=-1)
        big_r = self.current_radius(r, t)
        lam = self.longitudinal_stretch(t)
        in_tissue = r >= self.inner_radius_mm
        cavity_stretch = self.cavity_radius(t) / self.inner_radius_mm
        safe_r = np.maximum(r, 1e-12)
        radial = np.where(in_tissue, safe_r / (lam * np.maximum(big_r, 1e-12)), cavity_stretch)
        circumferential = np.where(in_tissue, big_r / safe_r, cavity_stretch)
        if material.shape[-1] == 2:
            return radial, circumferential
        return radial, circumferential, np.full_like(radial, lam)

    def strains(self, material: np.ndarray, t: float, measure: str = "green_lagrange") -> tuple[np.ndarray, ...]:
        """Analytic radial and circumferential (and longitudinal, for 3D points) strain, unitless,
        of ``measure`` (``green_lagrange`` or ``infinitesimal``) at the frame-0 positions."""
        stretches = self.principal_stretches(material, t)
        if measure == "green_lagrange":
            return tuple((s**2 - 1.0) / 2.0 for s in stretches)
        if measure == "infinitesimal":
            return tuple(s - 1.0 for s in stretches)
        raise ImageError(f"Unknown strain measure '{measure}'; choose 'green_lagrange' or 'infinitesimal'.")


@dataclass(frozen=True)
class SectorCorruption:
    """A region where the frames stop matching the tissue, to test scores and robustness.

    The region is the sector of angles ``[start_deg, start_deg + width_deg)`` around the LV
    centre (physical +x towards +y, the whole height in 3D), fixed in image space like an
    echo dropout, in the frames listed. ``strength`` depends on the kind: for a dropout the
    fraction of signal lost (1: it vanishes), for a noise burst the standard deviation of the
    added Gaussian noise, for an intensity change the gain that multiplies the signal.
    """

    frames: tuple[int, ...]
    start_deg: float
    width_deg: float = 60.0
    strength: float = 1.0


@dataclass(frozen=True)
class LVPhantom:
    """A synthetic LV cine with its ground truth (``T`` frames, NumPy-order ``spatial``).

    Attributes:
        frames: intensities in [0, 1], float32 ``[T, *spatial]``; myocardium brighter than the
            blood pool and the background.
        geometry: the frames' grid.
        centre_mm: LV centre (mm, LPS), a point on the long axis in 3D, ``(dim,)``.
        long_axis: the long-axis direction (physical z) in 3D, ``None`` in 2D.
        myocardium_masks: bool ``[T, *spatial]``, the myocardium in each frame.
        displacements: float32 ``[T, dim, *spatial]`` in mm on the frame-0 grid: the point
            ``p`` of frame 0 is at ``p + u_t(p)`` in frame ``t`` (ITK convention, frame 0
            fixed). ``displacements[0]`` is zero.
        corruption_masks: for each of ``CORRUPTIONS``, bool ``[T, *spatial]``: where the
            frame is corrupted (all False when that corruption was not asked for).
        motion: the analytic motion, for strains and frame-to-frame displacements.
    """

    frames: np.ndarray
    geometry: Geometry
    centre_mm: np.ndarray
    long_axis: np.ndarray | None
    myocardium_masks: np.ndarray
    displacements: np.ndarray
    corruption_masks: dict[str, np.ndarray] = field(repr=False)
    motion: RingMotion = field(repr=False)

    @property
    def _offsets(self) -> np.ndarray:
        """Frame-0 voxel centres relative to the centre, ``(*spatial, dim)`` in mm."""
        return _voxel_offsets(self.frames.shape[1:], self.geometry, self.centre_mm)

    def analytic_strain(self, measure: str = "green_lagrange") -> tuple[np.ndarray, ...]:
        """True radial and circumferential (and, in 3D, longitudinal) strain from frame 0 to
        every frame at the frame-0 voxel centres (Lagrangian), each float64 ``[T, *spatial]``,
        unitless; ``measure`` is ``green_lagrange`` or ``infinitesimal``. Defined everywhere
        (the motion is), meaningful in the myocardium: ``myocardium_masks[0]``."""
        offsets = self._offsets
        per_frame = [self.motion.strains(offsets, t, measure) for t in range(len(self.frames))]
        return tuple(np.stack(component) for component in zip(*per_frame))

    def frame_to_frame_displacements(self) -> np.ndarray:
        """True ``u(t-1 -> t)`` for ``t = 1 .. T-1``: float32 ``[T-1, dim, *spatial]`` in mm, the
        point ``p`` of frame ``t-1`` is at ``p + u(p)`` in frame ``t``."""
        offsets = self._offsets
        steps = [self.motion.displacement(offsets, t - 1, t) for t in range(1, len(self.frames))]
        return np.stack([_channels_first(step) for step in steps]).astype(np.float32)


def _voxel_offsets(shape: tuple[int, ...], geometry: Geometry, centre_mm: np.ndarray) -> np.ndarray:
    """Voxel centres minus ``centre_mm``: ``(*shape, dim)`` in mm, NumPy-order spatial axes."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)[..., ::-1]
    return geometry.index_to_physical(index) - centre_mm


def _channels_first(vectors: np.ndarray) -> np.ndarray:
    """``(*spatial, dim)`` to ``(dim, *spatial)``."""
    return np.moveaxis(vectors, -1, 0)


def _smooth_step(distance_mm: np.ndarray) -> np.ndarray:
    """0 well below 0 mm, 1 well above, rising over about ``EDGE_WIDTH_MM``."""
    return 1.0 / (1.0 + np.exp(-np.clip(distance_mm / (EDGE_WIDTH_MM / 4.0), -50.0, 50.0)))


def _tissue_intensity(material: np.ndarray, motion: RingMotion) -> np.ndarray:
    """Noise-free intensity of the material at frame-0 ``material`` positions: blood pool,
    myocardium, background, with smooth edges."""
    radius = np.linalg.norm(material[..., :2], axis=-1)
    ring = (
        BLOOD_INTENSITY
        + (MYOCARDIUM_INTENSITY - BLOOD_INTENSITY) * _smooth_step(radius - motion.inner_radius_mm)
        + (BACKGROUND_INTENSITY - MYOCARDIUM_INTENSITY) * _smooth_step(radius - motion.outer_radius_mm)
    )
    if motion.half_length_mm is None or material.shape[-1] == 2:
        return ring
    within_length = _smooth_step(motion.half_length_mm - np.abs(material[..., 2]))
    return BACKGROUND_INTENSITY + within_length * (ring - BACKGROUND_INTENSITY)


def _speckle(shape: tuple[int, ...], geometry: Geometry, size_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Smoothed Gaussian noise of unit standard deviation on the frame-0 grid, correlated over
    about ``size_mm``."""
    sigma_voxels = size_mm / np.asarray(geometry.spacing)[::-1]
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_voxels, mode="wrap")
    return noise / noise.std()


def _sample_on_grid(values: np.ndarray, material: np.ndarray, geometry: Geometry, centre_mm: np.ndarray) -> np.ndarray:
    """Cubic-spline samples of the frame-0 array ``values`` at the frame-0 positions
    ``material`` (offsets from the centre); mirrored outside the grid."""
    index = geometry.physical_to_index(material + centre_mm)[..., ::-1]  # NumPy order
    return ndimage.map_coordinates(values, np.moveaxis(index, -1, 0), order=3, mode="mirror")


def _sector(offsets: np.ndarray, corruption: SectorCorruption) -> np.ndarray:
    """Voxels whose angle around the centre lies in the corruption's sector (boolean)."""
    angle = np.rad2deg(np.arctan2(offsets[..., 1], offsets[..., 0])) % 360.0
    return (angle - corruption.start_deg) % 360.0 < corruption.width_deg


def _corrupt(
    frames: np.ndarray,
    offsets: np.ndarray,
    corruptions: dict[str, SectorCorruption | None],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Apply the corruptions to ``frames`` ``[T, *spatial]`` in place; return their masks."""
    masks = {}
    for kind in CORRUPTIONS:
        masks[kind] = np.zeros(frames.shape, dtype=bool)
        corruption = corruptions[kind]
        if corruption is None:
            continue
        region = _sector(offsets, corruption)
        for t in corruption.frames:
            if not 0 <= t < len(frames):
                raise ImageError(f"The {kind} frame {t} is outside the cycle (frames 0 to {len(frames) - 1}).")
            masks[kind][t] = region
            if kind == "dropout":
                frames[t][region] *= 1.0 - corruption.strength
            elif kind == "noise_burst":
                frames[t][region] += corruption.strength * rng.standard_normal(int(region.sum()))
            else:
                frames[t][region] *= corruption.strength
    np.clip(frames, 0.0, 1.0, out=frames)
    return masks


def _build_phantom(
    shape: tuple[int, ...],
    geometry: Geometry,
    motion: RingMotion,
    speckle_size_mm: float,
    speckle_contrast: float,
    corruptions: dict[str, SectorCorruption | None],
    seed: int,
) -> LVPhantom:
    """Render the cycle of ``motion`` on ``geometry`` (centre at the middle of the grid)."""
    centre = geometry.index_to_physical((np.array(shape[::-1]) - 1) / 2.0)
    offsets = _voxel_offsets(shape, geometry, centre)
    planar_reach = np.min(np.abs(geometry.extent_corners(shape) - centre)[:, :2])
    if motion.outer_radius_mm >= planar_reach:
        raise ImageError(
            f"The LV (outer radius {motion.outer_radius_mm} mm) does not fit in the image (half "
            f"width {planar_reach:.1f} mm): enlarge the image or the spacing, or shrink the radii."
        )
    rng = np.random.default_rng(seed)
    speckle = _speckle(shape, geometry, speckle_size_mm, rng)
    frames, masks, displacements = [], [], []
    for t in range(motion.frames):
        material = motion.to_material(offsets, t)
        texture = _tissue_intensity(material, motion) * np.exp(
            speckle_contrast * _sample_on_grid(speckle, material, geometry, centre)
        )
        frames.append(texture)
        masks.append(motion.in_myocardium(material))
        displacements.append(_channels_first(motion.to_current(offsets, t) - offsets))
    frames = np.stack(frames).astype(np.float32)
    corruption_masks = _corrupt(frames, offsets, corruptions, rng)
    return LVPhantom(
        frames=frames,
        geometry=geometry,
        centre_mm=centre,
        long_axis=np.array([0.0, 0.0, 1.0]) if geometry.dim == 3 else None,
        myocardium_masks=np.stack(masks),
        displacements=np.stack(displacements).astype(np.float32),
        corruption_masks=corruption_masks,
        motion=motion,
    )


def lv_phantom_2d(
    shape: tuple[int, int] = (96, 96),
    spacing_mm: float | tuple[float, float] = 1.0,
    frames: int = 10,
    inner_radius_mm: float = 16.0,
    outer_radius_mm: float = 28.0,
    end_systolic_inner_radius_mm: float = 11.0,
    speckle_size_mm: float = 1.5,
    speckle_contrast: float = 0.3,
    dropout: SectorCorruption | None = None,
    noise_burst: SectorCorruption | None = None,
    intensity_change: SectorCorruption | None = None,
    seed: int = 0,
) -> LVPhantom:
    """A 2D short-axis LV cine: a contracting, thickening ring (see the module notes).

    Args:
        shape: ``(H, W)``.
        spacing_mm: pixel spacing, one value or ``(x, y)`` in ITK order. The grid is
            axis-aligned at the origin, the LV centred in it.
        frames: ``T``, the frames of one cycle (end-systole at ``T / 2``).
        inner_radius_mm, outer_radius_mm: the ring at end-diastole (frame 0).
        end_systolic_inner_radius_mm: the cavity radius at end-systole.
        speckle_size_mm: correlation length of the multiplicative speckle.
        speckle_contrast: standard deviation of the logarithm of the (log-normal) speckle.
        dropout, noise_burst, intensity_change: optional broken-correspondence sectors
            (:class:`SectorCorruption`); their masks are in ``corruption_masks``.
        seed: the speckle and the noise bursts are reproducible for a given seed.
    """
    geometry = Geometry.identity(2, spacing_mm)
    motion = RingMotion(inner_radius_mm, outer_radius_mm, end_systolic_inner_radius_mm, frames)
    corruptions = {"dropout": dropout, "noise_burst": noise_burst, "intensity_change": intensity_change}
    return _build_phantom(tuple(shape), geometry, motion, speckle_size_mm, speckle_contrast, corruptions, seed)


def lv_phantom_3d(
    shape: tuple[int, int, int] = (24, 64, 64),
    spacing_mm: float | tuple[float, float, float] = (1.0, 1.0, 2.0),
    frames: int = 8,
    inner_radius_mm: float = 16.0,
    outer_radius_mm: float = 28.0,
    end_systolic_inner_radius_mm: float = 11.0,
    length_mm: float = 32.0,
    longitudinal_shortening: float = 0.1,
    speckle_size_mm: float = 2.0,
    speckle_contrast: float = 0.3,
    dropout: SectorCorruption | None = None,
    noise_burst: SectorCorruption | None = None,
    intensity_change: SectorCorruption | None = None,
    seed: int = 0,
) -> LVPhantom:
    """A 3D LV cine: an open cylindrical shell of ``length_mm`` along the physical z axis, with
    the in-plane motion of :func:`lv_phantom_2d` and, incompressibly, a longitudinal
    shortening of ``longitudinal_shortening`` (fraction) at end-systole. ``shape`` is
    ``(D, H, W)``, ``spacing_mm`` in ITK order ``(x, y, z)``; other arguments as in 2D."""
    geometry = Geometry.identity(3, spacing_mm)
    motion = RingMotion(
        inner_radius_mm,
        outer_radius_mm,
        end_systolic_inner_radius_mm,
        frames,
        longitudinal_shortening=longitudinal_shortening,
        half_length_mm=length_mm / 2.0,
    )
    corruptions = {"dropout": dropout, "noise_burst": noise_burst, "intensity_change": intensity_change}
    return _build_phantom(tuple(shape), geometry, motion, speckle_size_mm, speckle_contrast, corruptions, seed)
