"""Registration tools a user would pick instead of ours, run on our images and converted to
our displacement convention, so that the benchmark scores every method the same way.

* elastix (``pip install itk-elastix``, the ``bench`` extra): its default B-spline
  registration, with the AdvancedMattesMutualInformation metric and a bending-energy penalty.

An elastix transform maps a fixed-space point to a moving-space point, like ours (ITK's
resampling convention); transformix samples ``T(p) - p`` on the fixed grid in mm, LPS, which
is our displacement exactly (:mod:`imse.geometry`). Optional packages are imported inside the
functions, so this module loads without them.

* ANTs SyN with Mattes mutual information (antspyx 0.6.3). antspyx pins numpy < 2.4 and
  scipy < 1.16, which would downgrade our environment, so it lives in an environment of its
  own (``make ants`` builds ``.venv-ants``) and runs there as a subprocess
  (:mod:`imse.ants_worker`); images go to it and its field comes back through files. Its
  composed forward transform is a displacement field in the same convention as ours.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageError
from .geometry import Geometry
from .image import Image, read_image, write_image


ELASTIX_PRESETS = ("bspline", "affine", "rigid", "translation")

#: The interpreter of the environment that ``make ants`` builds in the repository's root.
ANTS_PYTHON = Path(__file__).resolve().parents[2] / ".venv-ants" / "bin" / "python"


@dataclass(frozen=True)
class PeerResult:
    """``displacement``: vector Image (mm, LPS, ITK convention) on the fixed grid;
    ``seconds``: wall time of the registration (elastix: with transformix's field; ANTs: the
    registration alone, as its worker timed it)."""

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

    _check_pair(fixed, moving, "elastix")
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


def ants_available(python: str | Path = ANTS_PYTHON) -> bool:
    """True when ``python`` is an interpreter (``make ants`` builds the default one)."""
    return Path(python).is_file() and os.access(python, os.X_OK)


def ants_syn(fixed: Image, moving: Image, python: str | Path = ANTS_PYTHON, threads: int = 1, timeout: float = 3600.0) -> PeerResult:
    """Register ``moving`` onto ``fixed`` with ANTs SyN (affine then SyN, Mattes mutual
    information for both: antspyx's ``SyN`` preset), run by the interpreter ``python`` of an
    environment with antspyx (``make ants``) on ``threads`` ITK threads, stopped after
    ``timeout`` seconds. ``seconds`` is the registration alone, as ANTs timed it (not the
    subprocess start or the file transfers)."""
    _check_pair(fixed, moving, "ANTs SyN")
    if not ants_available(python):
        raise ImageError(f"ANTs is not installed: no interpreter at {python}. Build its environment with: make ants.")
    environment = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="imse-ants-") as folder:
        fixed_path, moving_path = write_image(fixed, Path(folder) / "fixed.mha"), write_image(moving, Path(folder) / "moving.mha")
        command = [str(python), str(Path(__file__).with_name("ants_worker.py")), str(fixed_path), str(moving_path), str(Path(folder) / "forward")]
        try:
            finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ImageError(f"ANTs did not finish within {timeout:.0f} s; it was stopped (raise the timeout for larger images).") from None
        if finished.returncode != 0:
            raise ImageError(f"ANTs failed (exit status {finished.returncode}): {finished.stderr.strip()[-2000:]}")
        report = json.loads(finished.stdout.strip().splitlines()[-1])
        displacement = read_image(report["field"])
    if displacement.shape != fixed.shape or not displacement.geometry.isclose(fixed.geometry):
        raise ImageError("ANTs returned a displacement on another grid than the fixed image's.")
    return PeerResult(displacement, float(report["seconds"]))


def _check_pair(fixed: Image, moving: Image, tool: str) -> None:
    """Both images scalar and of one dimension, or an :class:`ImageError` naming ``tool``."""
    for image, name in ((fixed, "fixed"), (moving, "moving")):
        if image.is_vector:
            raise ImageError(f"{tool} registers scalar images here; the {name} image is a vector image.")
    if fixed.dim != moving.dim:
        raise ImageError(f"The fixed image is {fixed.dim}D and the moving image {moving.dim}D: register images of the same dimension.")


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
