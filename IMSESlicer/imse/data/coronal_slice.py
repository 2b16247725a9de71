"""The coronal T1 brain slice that ships with dipy."""

from __future__ import annotations

import numpy as np

from ..geometry import Geometry
from ..image import Image
from ._package_files import package_file


def load_t1_coronal_slice() -> Image:
    """dipy's ``t1_coronal_slice``: a 256 x 256 coronal T1 MR slice, float32 in [0, 1].

    The file (the one ``dipy.data.get_fnames(name="t1_coronal_slice")`` returns) stores no
    geometry: the spacing is a nominal 1 mm and the origin (0, 0), with identity direction.
    """
    array = np.load(package_file("dipy", "data", "files", "t1_coronal_slice.npy"))
    return Image(array.astype(np.float32), Geometry.identity(2, 1.0))
