"""The MNI ICBM 2009a symmetric brain atlas that ships with nilearn: a skull-stripped T1 and
grey/white-matter probability maps, from which CSF, tissue labels and a brain mask follow.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from ..errors import ImageError
from ..geometry import Geometry
from ..image import Image, read_image, resample_to_spacing
from ._package_files import package_file

#: Label values of :attr:`BrainAtlas.labels` (0 is background).
LABELS = {"csf": 1, "gm": 2, "wm": 3}
#: The tissue classes of :meth:`BrainAtlas.tissue_probabilities`, in order.
TISSUES = ("background", "csf", "gm", "wm")

_MNI_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
_MNI_SPACING_MM = 1.0


@dataclass(frozen=True)
class BrainAtlas:
    """Brain anatomy on one grid (2D or 3D); all images share the geometry.

    * ``t1``: the MNI T1 intensity scaled to [0, 1] (0 outside the brain), float32.
    * ``csf``, ``gm``, ``wm``: tissue probabilities in [0, 1], float32;
      ``csf = clip(brain - gm - wm, 0, 1)``.
    * ``labels``: uint8, 0 background, 1 CSF, 2 GM, 3 WM (:data:`LABELS`): inside the brain the
      most probable of the three tissues.
    * ``brain``: uint8 mask, 1 inside the brain (where the T1 is nonzero, at 1 mm).
    """

    t1: Image
    csf: Image
    gm: Image
    wm: Image
    labels: Image
    brain: Image

    @classmethod
    def from_maps(cls, t1: Image, gm: Image, wm: Image, brain_probability: Image) -> "BrainAtlas":
        """Derive CSF, labels and mask from the T1, GM, WM and brain probability maps (values
        are clipped to [0, 1], undoing any overshoot of smoothing or interpolation)."""
        csf = np.clip(brain_probability.array - gm.array - wm.array, 0.0, 1.0).astype(np.float32)
        brain = brain_probability.array >= 0.5
        most_probable = 1 + np.argmax(np.stack([csf, gm.array, wm.array]), axis=0)
        return cls(
            t1=_unit_interval(t1),
            csf=t1.with_array(csf),
            gm=_unit_interval(gm),
            wm=_unit_interval(wm),
            labels=t1.with_array(np.where(brain, most_probable, 0).astype(np.uint8)),
            brain=t1.with_array(brain.astype(np.uint8)),
        )

    @property
    def geometry(self) -> Geometry:
        return self.t1.geometry

    @property
    def brain_probability(self) -> np.ndarray:
        """Probability (float32, [0, 1]) that a voxel holds brain tissue: CSF + GM + WM."""
        return np.clip(self.csf.array + self.gm.array + self.wm.array, 0.0, 1.0)

    def tissue_probabilities(self) -> dict[str, np.ndarray]:
        """Probability maps of the :data:`TISSUES` (background, CSF, GM, WM); they sum to 1 in
        every voxel."""
        maps = (1.0 - self.brain_probability, self.csf.array, self.gm.array, self.wm.array)
        return dict(zip(TISSUES, maps))

    def map(self, transform: Callable[[Image], Image]) -> "BrainAtlas":
        """The atlas after applying a spatial ``transform`` (resampling, warping, slicing, ...)
        to its continuous maps; CSF, labels and mask are derived again afterwards, so they stay
        consistent with the transformed probabilities."""
        brain = self.t1.with_array(self.brain_probability)
        return BrainAtlas.from_maps(*(transform(image) for image in (self.t1, self.gm, self.wm, brain)))


def load_mni_atlas(spacing_mm: float = 1.0) -> BrainAtlas:
    """The MNI ICBM152 2009a atlas on an isotropic grid of ``spacing_mm`` (mm).

    At 1 mm this is the file's own grid: 197 x 233 x 189 voxels (x, y, z), so arrays are
    ``(189, 233, 197)``, origin (98, 134, -72) mm LPS, direction diag(-1, -1, 1). Other spacings
    resample with :func:`~imse.image.resample_to_spacing` (anti-aliased, same origin and
    direction, covering the same physical box). Every call returns fresh arrays.
    """
    if not np.isfinite(spacing_mm) or spacing_mm <= 0:
        raise ImageError(f"The atlas spacing must be a positive number of mm, got {spacing_mm}.")
    return _with_arrays(_cached_atlas(float(spacing_mm)), np.array)


@functools.lru_cache(maxsize=4)
def _cached_atlas(spacing_mm: float) -> BrainAtlas:
    """Read-only atlas for one spacing; reading and resampling take about a second."""
    if spacing_mm == _MNI_SPACING_MM:
        atlas = _read_mni_atlas()
    else:
        atlas = _cached_atlas(_MNI_SPACING_MM).map(lambda image: resample_to_spacing(image, spacing_mm))
    return _with_arrays(atlas, _read_only)


def _read_mni_atlas() -> BrainAtlas:
    t1, gm, wm = (
        read_image(package_file("nilearn", "datasets", "data", _MNI_FILE.format(name)))
        for name in ("t1", "gm", "wm")
    )
    brain = t1.with_array((t1.array > 0).astype(np.float32))  # skull-stripped: T1 >= 28 inside
    return BrainAtlas.from_maps(*(image.with_array(image.array / 255.0) for image in (t1, gm, wm)), brain)


def _unit_interval(image: Image) -> Image:
    return image.with_array(np.clip(image.array, 0.0, 1.0).astype(np.float32))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _with_arrays(atlas: BrainAtlas, convert: Callable[[np.ndarray], np.ndarray]) -> BrainAtlas:
    """The same atlas with ``convert`` applied to every array (copying, freezing)."""
    images = {field.name: getattr(atlas, field.name) for field in fields(atlas)}
    return BrainAtlas(**{name: image.with_array(convert(image.array)) for name, image in images.items()})
