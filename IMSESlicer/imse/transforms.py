"""Transform files: a displacement field as an ITK transform that 3D Slicer and ITK load.

ITK's DisplacementFieldTransform maps fixed-space points to moving-space points (the
resampling convention of :mod:`imse.geometry`), which is what Slicer calls the transform
"from parent"; Slicer converts LPS to RAS itself when it reads the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageError
from .files import write_atomically
from .image import Image, from_sitk, to_sitk


def write_displacement_transform(displacement: Image, path: str | Path) -> Path:
    """Write a displacement (vector Image, mm, LPS) as an ITK transform file (``.h5`` or ``.tfm``)."""
    if not displacement.is_vector or displacement.array.shape[-1] != displacement.dim:
        raise ImageError("A displacement transform needs a vector image with one component per axis (mm).")
    field = to_sitk(displacement.with_array(displacement.array.astype(np.float64)))
    return write_atomically(path, lambda partial: sitk.WriteTransform(sitk.DisplacementFieldTransform(field), str(partial)))


def read_displacement_transform(path: str | Path) -> Image:
    """Read a displacement-field transform file back as a vector Image (mm, LPS)."""
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as error:
        raise ImageError(f"Could not read '{path}' as a transform: {str(error).strip().splitlines()[-1]}") from None
    if transform.GetTransformEnum() == sitk.sitkComposite:
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    if transform.GetName() != "DisplacementFieldTransform":
        raise ImageError(f"'{path}' holds a {transform.GetName()}, not a displacement field.")
    return from_sitk(sitk.DisplacementFieldTransform(transform).GetDisplacementField())
