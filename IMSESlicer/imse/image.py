"""Images with geometry: reading, writing, resampling, intensity normalisation, tensors.

An :class:`Image` is a NumPy array plus its :class:`~imse.geometry.Geometry`; the axis and
unit conventions are stated in :mod:`imse.geometry`. Files go through SimpleITK, so every
format it reads (NIfTI, NRRD, MHA, DICOM series, ...) keeps its spacing, origin and direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .files import write_atomically
from .geometry import Geometry

INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


@dataclass(frozen=True)
class Image:
    """An array with its physical geometry.

    ``array`` is in NumPy order: ``(H, W)`` or ``(D, H, W)`` for a scalar image, with one more
    trailing axis of components for a vector image (a displacement field is ``(*spatial, dim)``,
    components in physical x, y[, z] order, mm).
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        dim = self.geometry.dim
        if array.ndim not in (dim, dim + 1):
            raise ImageError(
                f"A {dim}D geometry needs a {dim}D array (or {dim}D plus one axis of vector "
                f"components); got an array of shape {array.shape}."
            )
        if array.size == 0 or min(array.shape[:dim]) < 1:
            raise ImageError(f"The image is empty (array shape {array.shape}).")
        object.__setattr__(self, "array", array)

    @property
    def dim(self) -> int:
        return self.geometry.dim

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape in NumPy order (``(H, W)`` or ``(D, H, W)``)."""
        return tuple(self.array.shape[: self.dim])

    @property
    def is_vector(self) -> bool:
        return self.array.ndim == self.dim + 1

    def with_array(self, array: np.ndarray) -> "Image":
        """A new image on the same grid (the geometry is shared, the array replaced)."""
        return Image(array, self.geometry)

    def physical_extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners (mm, LPS) of the box spanned by the voxel centres."""
        corners = self.geometry.extent_corners(self.shape)
        return corners.min(axis=0), corners.max(axis=0)


def from_sitk(image: sitk.Image) -> Image:
    """Convert a SimpleITK image, keeping its geometry."""
    geometry = Geometry(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return Image(sitk.GetArrayFromImage(image), geometry)


def to_sitk(image: Image) -> sitk.Image:
    """Convert to a SimpleITK image (vector images become vector pixels)."""
    result = sitk.GetImageFromArray(np.ascontiguousarray(image.array), isVector=image.is_vector)
    result.SetSpacing(image.geometry.spacing)
    result.SetOrigin(image.geometry.origin)
    result.SetDirection(image.geometry.direction)
    return result


def read_image(path: str | Path, dtype: np.dtype | None = np.float32) -> Image:
    """Read an image file (NIfTI, NRRD, MHA, ...) or a folder holding one DICOM series.

    ``dtype`` converts the values (``None`` keeps the file's type). Raises :class:`ImageError`
    when the file is missing or unreadable, holds no data, holds NaN or infinite values, or is
    not 2D or 3D.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"No such file or folder: '{path}'. Check the path and try again.")
    try:
        if path.is_dir():
            files = _dicom_series_files(path)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        raise ImageError(
            f"Could not read '{path}' as an image ({first_line}). Use a NIfTI, NRRD, MHA or "
            "DICOM file, or a folder containing one DICOM series."
        ) from None
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]  # a single slice is a 2D image
    if image.GetDimension() not in (2, 3):
        raise ImageError(
            f"'{path}' is {image.GetDimension()}D; only 2D and 3D images are supported. "
            "Split a time series into single frames first."
        )
    result = from_sitk(image)
    if dtype is not None:
        result = result.with_array(result.array.astype(dtype, copy=False))
    check_finite(result, name=str(path))
    return result


def _dicom_series_files(folder: Path) -> list[str]:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageError(f"The folder '{folder}' contains no DICOM series.")
    if len(series) > 1:
        raise ImageError(
            f"The folder '{folder}' contains {len(series)} DICOM series; put each series in a "
            "folder of its own and choose one."
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def write_image(image: Image, path: str | Path) -> Path:
    """Write an image with its geometry; the format follows the extension (.nii.gz, .nrrd,
    .mha, ...). The file is written next to its final name and then renamed, so an
    interrupted write never leaves a truncated file in place of a good one."""
    try:
        return write_atomically(path, lambda partial: sitk.WriteImage(to_sitk(image), str(partial), useCompression=True))
    except RuntimeError as error:
        raise ImageError(f"Could not write '{path}': {str(error).strip().splitlines()[-1]}") from None


def check_finite(image: Image, name: str = "the image") -> None:
    """Raise :class:`ImageError` if the image holds NaN or infinite values."""
    if not np.all(np.isfinite(image.array)):
        count = int(np.size(image.array) - np.count_nonzero(np.isfinite(image.array)))
        raise ImageError(
            f"{name} contains {count} NaN or infinite values. Fix or mask them (for example "
            "replace them with the background value) before using it."
        )


def resample_to(
    image: Image,
    reference: Image,
    interpolation: str = "linear",
    default_value: float = 0.0,
    transform: sitk.Transform | None = None,
) -> Image:
    """Resample ``image`` onto the grid of ``reference`` in physical space, through
    ``transform`` (ITK convention: reference-grid point ``p`` samples ``image`` at
    ``transform(p)``; default identity).

    ``interpolation`` is one of ``linear``, ``nearest`` (for label maps) or ``bspline``; points
    outside ``image`` get ``default_value``.
    """
    if image.dim != reference.dim:
        raise ImageError(
            f"Cannot resample a {image.dim}D image onto a {reference.dim}D grid: use images of "
            "the same dimension."
        )
    if interpolation not in INTERPOLATORS:
        raise ImageError(f"Unknown interpolation '{interpolation}'; choose one of {sorted(INTERPOLATORS)}.")
    resampled = sitk.Resample(
        to_sitk(image),
        to_sitk(reference.with_array(np.zeros(reference.shape, np.uint8))),
        transform or sitk.Transform(),
        INTERPOLATORS[interpolation],
        float(default_value),
    )
    return from_sitk(resampled)


def grid_shape(image: Image, spacing_mm: float | tuple[float, ...]) -> tuple[int, ...]:
    """The array shape of :func:`grid_with_spacing` (computed without allocating it)."""
    new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (image.dim,))
    spacing = np.asarray(image.geometry.spacing)
    size = np.maximum(np.floor((np.array(image.shape[::-1]) - 1) * spacing / new_spacing + 1e-6).astype(int) + 1, 1)
    return tuple(int(n) for n in size[::-1])


def grid_with_spacing(image: Image, spacing_mm: float | tuple[float, ...]) -> Image:
    """An empty (zero) image on a grid of ``spacing_mm`` (one value for all axes, or one per
    axis in ITK order) that covers the physical box of ``image``, with its origin and direction."""
    new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (image.dim,))
    geometry = Geometry(tuple(new_spacing), image.geometry.origin, image.geometry.direction)
    return Image(np.zeros(grid_shape(image, spacing_mm), np.uint8), geometry)


def resample_to_spacing(image: Image, spacing_mm: float | tuple[float, ...], interpolation: str = "linear") -> Image:
    """Resample onto a grid of ``spacing_mm`` (one value or one per axis, ITK order) covering the
    same physical box (same origin and direction). Axes downsampled more than 1.5 times are
    first blurred by a Gaussian of the matching width, to avoid aliasing."""
    spacing = np.asarray(image.geometry.spacing)
    new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (image.dim,))
    if np.allclose(spacing, new_spacing, rtol=1e-3):
        return image
    source = image
    if interpolation != "nearest" and np.any(new_spacing > 1.5 * spacing):
        sigma = np.sqrt(np.maximum(new_spacing**2 - spacing**2, 0.0)) / 2.355  # FWHM to sigma, mm
        source = from_sitk(sitk.SmoothingRecursiveGaussian(to_sitk(image), [float(s) for s in np.maximum(sigma, 1e-3)]))
    return resample_to(source, grid_with_spacing(image, tuple(new_spacing)), interpolation)


def intensity_window(
    image: Image,
    mask: np.ndarray | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> tuple[float, float]:
    """The intensities at ``percentiles`` of the voxels inside ``mask`` (or of all voxels): the
    values that :func:`normalize_intensity` maps to -1 and 1. Raises :class:`ImageError` for
    NaN values, empty masks and constant images."""
    check_finite(image)
    values = image.array if mask is None else image.array[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ImageError("The intensity mask is empty: it selects no voxel. Use a mask that covers the anatomy.")
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:
        raise ImageError(
            "The image (inside the mask) has a single intensity, so it carries no structure to "
            "compare. Check that the right volume was chosen."
        )
    return low, high


#: :func:`foreground_window` windows an image on its foreground when its background lies more
#: than this many times farther below the foreground's median than the foreground's bright end
#: lies above it. Measured on the MNI contrasts: T2-like 0.95, T1 2.9, PD-like 3.6, CT-like 74.
FAR_BACKGROUND_RATIO = 10.0
#: The foreground window's low end: this percentile of the foreground, less this fraction of
#: the window, so the darkest tissue stays above the background (which clips to -1).
FOREGROUND_LOW_PERCENTILE = 5.0
FOREGROUND_LOW_MARGIN = 0.25


def far_background_threshold(image: Image, percentiles: tuple[float, float] = (0.5, 99.5)) -> float | None:
    """Otsu's threshold between background and tissue when the background lies far below the
    tissue (:data:`FAR_BACKGROUND_RATIO`; a CT, with air at -1000 HU and brain at 0-80 HU), else
    ``None`` (MR images, whose background is near their darkest tissue)."""
    low, _ = intensity_window(image, percentiles=percentiles)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.Execute(to_sitk(image.with_array(image.array.astype(np.float32))))
    threshold = otsu.GetThreshold()
    foreground = image.array[image.array > threshold]
    if foreground.size == 0:
        return None
    median, tissue_high = np.percentile(foreground, (50.0, percentiles[1]))
    if not tissue_high > median or (median - low) < FAR_BACKGROUND_RATIO * (tissue_high - median):
        return None
    return float(threshold)


def foreground_window(image: Image, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """An intensity window that keeps the tissue's contrast when the background lies far below it.

    Most images get :func:`intensity_window` (``percentiles`` of all voxels). An image whose
    background is far from its tissue (:func:`far_background_threshold`) would then have its
    tissue squeezed into a few percent of the range, for instance into one bin of a
    mutual-information histogram. Such an image is windowed on its foreground (the voxels above
    the Otsu threshold): from its :data:`FOREGROUND_LOW_PERCENTILE` th percentile, less
    :data:`FOREGROUND_LOW_MARGIN` of the window, to its ``percentiles[1]`` th percentile; the
    background then clips to the low end.
    """
    threshold = far_background_threshold(image, percentiles)
    if threshold is None:
        return intensity_window(image, percentiles=percentiles)
    tissue_low, tissue_high = np.percentile(image.array[image.array > threshold], (FOREGROUND_LOW_PERCENTILE, percentiles[1]))
    return float(tissue_low - FOREGROUND_LOW_MARGIN * (tissue_high - tissue_low)), float(tissue_high)


#: :func:`equalize_tissue` maps the tissue's darkest voxel here, a step above the background's -1.
EQUALIZED_TISSUE_LOW = -0.6


def equalize_tissue(image: Image) -> Image | None:
    """An image whose background lies far below its tissue (:func:`far_background_threshold`,
    a CT) with its tissue histogram-equalised, in [-1, 1]: each voxel above the threshold takes
    its rank among them, mapped linearly onto [:data:`EQUALIZED_TISSUE_LOW`, 1] (ties keep their
    order in the array), and the background is -1. ``None`` for other images. A monotone map:
    each tissue class then spans a range in proportion to its volume, whatever its contrast."""
    threshold = far_background_threshold(image)
    if threshold is None:
        return None
    values = image.array
    tissue = values > threshold
    order = np.argsort(values[tissue], kind="stable")
    ranks = np.empty(order.size, dtype=np.float64)
    ranks[order] = np.arange(order.size)
    equalized = np.full(values.shape, -1.0, dtype=np.float32)
    equalized[tissue] = EQUALIZED_TISSUE_LOW + (1.0 - EQUALIZED_TISSUE_LOW) * ranks / max(order.size - 1, 1)
    return image.with_array(equalized)


def normalize_intensity(
    image: Image,
    mask: np.ndarray | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    window: tuple[float, float] | None = None,
) -> Image:
    """Map intensities to [-1, 1]: the :func:`intensity_window` (or the given ``window``, e.g.
    :func:`foreground_window`) goes to -1 and 1 and values beyond are clipped. Robust to
    outliers such as bright vessels or metal."""
    low, high = intensity_window(image, mask, percentiles) if window is None else window
    scaled = 2.0 * (image.array.astype(np.float32) - low) / (high - low) - 1.0
    return image.with_array(np.clip(scaled, -1.0, 1.0).astype(np.float32))


def normalize_for_registration(image: Image, equalize: bool = False) -> Image:
    """Intensities as the registration engine compares them: [-1, 1] over the image's
    :func:`foreground_window` (percentiles, or the tissue's window for a CT-like image); with
    ``equalize``, a CT-like image's tissue histogram-equalised instead (:func:`equalize_tissue`)."""
    equalized = equalize_tissue(image) if equalize else None
    return equalized if equalized is not None else normalize_intensity(image, window=foreground_window(image))


def to_tensor(image: Image, device: "str | None" = None, dtype=None):
    """The array as a torch tensor ``[1, C, *spatial]`` (C = 1 for scalar images, the number of
    components for vector images), float32 unless ``dtype`` says otherwise."""
    import torch

    array = np.moveaxis(image.array, -1, 0) if image.is_vector else image.array[None]
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return tensor.to(device=device, dtype=dtype or torch.float32)


def from_tensor(tensor, geometry: Geometry) -> Image:
    """An image from a tensor ``[1, C, *spatial]`` or ``[C, *spatial]`` on ``geometry``; a single
    channel gives a scalar image, several channels a vector image (components last)."""
    array = tensor.detach().to("cpu").float().numpy()
    if array.ndim == geometry.dim + 2:
        if array.shape[0] != 1:
            raise ImageError(f"Expected a batch of one image, got a batch of {array.shape[0]}.")
        array = array[0]
    if array.ndim != geometry.dim + 1:
        raise ImageError(
            f"Expected a tensor [1, C, *spatial] for a {geometry.dim}D image, got shape {tuple(tensor.shape)}."
        )
    array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    return Image(array, geometry)
