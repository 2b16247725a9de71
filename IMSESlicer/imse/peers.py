"""Registration tools a user would pick instead of ours, run on our images and converted to
our displacement convention, so that the benchmark scores every method the same way.

* elastix (``pip install itk-elastix``, the ``bench`` extra): its default B-spline
  registration, with the AdvancedMattesMutualInformation metric and a bending-energy penalty.

An elastix transform maps a fixed-space point to a moving-space point, like ours (ITK's
resampling convention); transformix samples ``T(p) - p`` on the fixed grid in mm, LPS, which
is our displacement exactly (:mod:`imse.geometry`). Optional packages are imported inside the
functions, so this module loads without them.

ANTs (antspyx) is not wrapped: antspyx 0.6.3 requires numpy < 2.4 and scipy < 1.16, and
installing it would downgrade the pinned environment.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .errors import ImageError
from .geometry import Geometry
from .image import Image


ELASTIX_PRESETS = ("bspline", "affine", "rigid", "translation")


@dataclass(frozen=True)
class PeerResult:
    """``displacement``: vector Image (mm, LPS, ITK convention) on the fixed grid;
    ``seconds``: wall time of the registration and the conversion."""

    displacement: Image
    seconds: float


def elastix_available() -> bool:
    """True when itk-elastix is installed (it adds elastix to the ``itk`` package)."""
    try:
        importlib.metadata.version("itk-elastix")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def elastix(fixed: Image, moving: Image, preset: str = "bspline", threads: int = 1) -> PeerResult:
    """Register ``moving`` onto ``fixed`` with one of elastix's default parameter maps
    (``preset``: ``bspline``, ``affine``, ``rigid`` or ``translation``), using ``threads``
    threads. The default B-spline map: 4 resolutions, a 10 mm final control-point grid,
    AdvancedMattesMutualInformation plus a bending-energy penalty, 256 iterations of adaptive
    stochastic gradient descent per resolution. Keep ``threads`` at 1: itk-elastix 0.25.4
    crashes the process (segmentation fault) with more on our 2D B-spline pairs, a known
    defect (InsightSoftwareConsortium/ITKElastix issues 160 and 295)."""
    if not elastix_available():
        raise ImageError("elastix is not installed; install the benchmark extras: pip install 'imse[bench]'.")
    import itk

    for image, name in ((fixed, "fixed"), (moving, "moving")):
        if image.is_vector:
            raise ImageError(f"elastix registers scalar images; the {name} image is a vector image.")
    if fixed.dim != moving.dim:
        raise ImageError(f"The fixed image is {fixed.dim}D and the moving image {moving.dim}D: register images of the same dimension.")
    started = time.perf_counter()
    parameters = itk.ParameterObject.New()
    if preset not in ELASTIX_PRESETS:
        raise ImageError(f"Unknown elastix preset '{preset}'; choose one of {list(ELASTIX_PRESETS)}.")
    parameter_map = parameters.GetDefaultParameterMap(preset)
    parameter_map["WriteResultImage"] = ["false"]
    parameters.AddParameterMap(parameter_map)
    fixed_itk, moving_itk = _to_itk(fixed), _to_itk(moving)
    _, transform_parameters = itk.elastix_registration_method(
        fixed_itk, moving_itk, parameter_object=parameters, log_to_console=False, number_of_threads=threads
    )
    with tempfile.TemporaryDirectory(prefix="imse-transformix-") as folder:  # transformix writes its field there too
        transformix = itk.TransformixFilter.New(moving_itk)
        transformix.SetTransformParameterObject(transform_parameters)
        transformix.SetComputeDeformationField(True)
        transformix.SetOutputDirectory(folder)
        transformix.SetLogToConsole(False)
        transformix.UpdateLargestPossibleRegion()
        displacement = _from_itk(transformix.GetOutputDeformationField())
    if displacement.shape != fixed.shape or not displacement.geometry.isclose(fixed.geometry):
        raise ImageError("elastix returned a displacement on another grid than the fixed image's.")
    return PeerResult(displacement.with_array(displacement.array.astype(np.float32)), time.perf_counter() - started)


def _to_itk(image: Image):
    """A float32 ITK image with the geometry of ``image`` (ITK's direction is a matrix)."""
    import itk

    result = itk.image_from_array(np.ascontiguousarray(image.array, dtype=np.float32))
    result.SetSpacing(image.geometry.spacing)
    result.SetOrigin(image.geometry.origin)
    result.SetDirection(itk.matrix_from_array(image.geometry.direction_matrix))
    return result


def _from_itk(image) -> Image:
    """An Image (vector images: components last) with the geometry of the ITK ``image``."""
    import itk

    direction = itk.array_from_matrix(image.GetDirection())
    geometry = Geometry(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(direction.ravel()))
    return Image(np.array(itk.array_view_from_image(image)), geometry)
