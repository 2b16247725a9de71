"""Registration pairs with a known answer, built from the MNI atlas.

The fixed image is the undeformed atlas in one contrast. A random smooth field ``u`` on the
fixed grid is the ground truth; the moving anatomy is the atlas warped by the inverse of ``u``,
so that ``moving(p + u(p))`` shows the anatomy of ``fixed(p)``. The moving image is rendered in
the other contrast from the (linearly) warped T1 and tissue maps, with its own bias field and
noise, so noise is not deformed and differs between the two images. The moving labels are the
fixed labels warped by the inverse with nearest-neighbour interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError
from ..image import Image
from .brain import BrainAtlas, load_mni_atlas
from .contrasts import synthesize_contrast
from .deformation import DEFAULT_SMOOTHNESS_MM, invert_displacement, random_displacement, warp_image
from .slicing import box_around, crop_or_pad, extract_slice, plane_normal_axis

#: Default voxel size (mm) per dimension: 2D slices about 112 x 96, volumes about 64 x 80 x 64.
DEFAULT_SPACING_MM = {2: 2.0, 3: 3.0}
DEFAULT_MAX_DISPLACEMENT_MM = 8.0
#: Background kept around the brain (mm); each side is then padded to a multiple of
#: ``SIZE_MULTIPLE`` voxels so that multi-resolution pyramids halve the grid evenly.
CROP_MARGIN_MM = 8.0
SIZE_MULTIPLE = 16


@dataclass(frozen=True)
class Pair:
    """A fixed and a moving image with the true registration between them.

    ``fixed``, ``moving``: float32 images on the same grid (the moving one is deformed).
    ``fixed_labels``, ``moving_labels``: uint8 tissue labels of each (:data:`~imse.data.LABELS`).
    ``displacement``: the true field ``u`` on the fixed grid, float32 ``(*spatial, dim)`` in mm,
    physical component order: ``moving(p + u(p))`` shows the anatomy of ``fixed(p)``, so
    ``warp_image(moving, displacement)`` matches ``fixed`` up to contrast, noise and
    interpolation.
    """

    fixed: Image
    moving: Image
    fixed_labels: Image
    moving_labels: Image
    displacement: Image
    fixed_contrast: str
    moving_contrast: str
    max_displacement_mm: float
    seed: int


def make_pair(
    dim: int = 2,
    fixed_contrast: str = "t1",
    moving_contrast: str = "t2",
    spacing_mm: float | None = None,
    plane: str = "axial",
    slice_mm: float | None = None,
    max_displacement_mm: float = DEFAULT_MAX_DISPLACEMENT_MM,
    smoothness_mm: float = DEFAULT_SMOOTHNESS_MM,
    noise_free: bool = False,
    seed: int = 0,
) -> Pair:
    """A synthetic brain registration pair with ground truth, 2D or 3D.

    ``spacing_mm`` defaults to :data:`DEFAULT_SPACING_MM`. 2D pairs are slices of the atlas:
    ``plane`` is ``axial`` (constant z), ``coronal`` (constant y) or ``sagittal`` (constant x),
    at ``slice_mm``, the LPS coordinate (mm) along the plane's normal (default: through the
    brain's centre of mass); both are ignored in 3D. Images are cropped to the brain plus
    :data:`CROP_MARGIN_MM`. The field has largest norm ``max_displacement_mm`` and Gaussian
    smoothness ``smoothness_mm`` (see :func:`~imse.data.random_displacement`). ``noise_free``
    renders both images without bias field and noise. The same ``seed`` gives the same pair.
    """
    if dim not in DEFAULT_SPACING_MM:
        raise ImageError(f"A pair is 2D or 3D; got dim={dim}. Use dim=2 or dim=3.")
    spacing_mm = DEFAULT_SPACING_MM[dim] if spacing_mm is None else spacing_mm
    fixed_atlas = _pair_atlas(dim, spacing_mm, plane, slice_mm)
    fixed_seed, moving_seed, field_seed = np.random.SeedSequence(seed).generate_state(3)
    displacement = random_displacement(fixed_atlas.t1, max_displacement_mm, smoothness_mm, int(field_seed))
    inverse = invert_displacement(displacement)
    moving_atlas = fixed_atlas.map(lambda image: warp_image(image, inverse))
    corruption = {"bias_strength": 0.0, "noise_std": 0.0} if noise_free else {}
    return Pair(
        fixed=synthesize_contrast(fixed_atlas, fixed_contrast, seed=int(fixed_seed), **corruption),
        moving=synthesize_contrast(moving_atlas, moving_contrast, seed=int(moving_seed), **corruption),
        fixed_labels=fixed_atlas.labels,
        moving_labels=warp_image(fixed_atlas.labels, inverse, "nearest"),
        displacement=displacement,
        fixed_contrast=fixed_contrast,
        moving_contrast=moving_contrast,
        max_displacement_mm=float(max_displacement_mm),
        seed=seed,
    )


def _pair_atlas(dim: int, spacing_mm: float, plane: str, slice_mm: float | None) -> BrainAtlas:
    """The atlas at ``spacing_mm``, sliced for 2D, cropped around the brain."""
    atlas = load_mni_atlas(spacing_mm)
    if dim == 2:
        position = _brain_centre(atlas)[plane_normal_axis(plane)] if slice_mm is None else slice_mm
        atlas = atlas.map(lambda image: extract_slice(image, plane, position))
    margin = math.ceil(CROP_MARGIN_MM / spacing_mm)
    start, size = box_around(atlas.brain.array, margin, SIZE_MULTIPLE)
    return atlas.map(lambda image: crop_or_pad(image, start, size))


def _brain_centre(atlas: BrainAtlas) -> np.ndarray:
    """Centre of mass (mm, LPS) of the brain mask."""
    return atlas.geometry.index_to_physical(np.argwhere(atlas.brain.array).mean(axis=0)[::-1])
