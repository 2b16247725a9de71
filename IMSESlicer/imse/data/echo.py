"""A cardiac ultrasound cine loop that ships with pydicom-data (``color3d_jpeg_baseline.dcm``):
120 frames of 480 x 640 pixels, JPEG-compressed, 33.333 ms apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageError
from ..geometry import Geometry
from ..image import Image
from ._package_files import package_file

_ECHO_FILE = ("data", "color3d_jpeg_baseline.dcm")
_MM_PER_CM = 10.0  # the ultrasound region gives its pixel size in cm (physical units code 3)


@dataclass(frozen=True)
class EchoCine:
    """Grey-level frames of a 2D ultrasound cine loop.

    ``frames``: float32 ``(T, H, W)`` in [0, 1]; ``geometry``: the 2D grid of every frame (mm);
    ``frame_time_ms``: time between frames.
    """

    frames: np.ndarray
    geometry: Geometry
    frame_time_ms: float

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    def frame(self, index: int) -> Image:
        """Frame ``index`` (0-based) as a 2D image."""
        if not -self.num_frames <= index < self.num_frames:
            raise ImageError(f"There is no frame {index}; the cine has frames 0 to {self.num_frames - 1}.")
        return Image(self.frames[index], self.geometry)


def load_echo_cine(crop_to_region: bool = True) -> EchoCine:
    """The pydicom-data ultrasound cine loop as grey levels.

    Grey level is the luminance ``0.299 R + 0.587 G + 0.114 B`` scaled to [0, 1]: the Y
    channel that the JPEG frames store (YBR_FULL_422), read without converting to RGB. Pixels
    are 0.5105 mm square, the physical size of the file's ultrasound region; the origin puts
    the region's top-left pixel at (0, 0) mm. ``crop_to_region`` keeps only that region
    (384 x 512 pixels), dropping the annotations around it.
    """
    import pydicom
    from pydicom.pixels import pixel_array

    dataset = pydicom.dcmread(package_file("data_store", *_ECHO_FILE))
    luminance = pixel_array(dataset, raw=True)[..., 0]
    region = dataset.SequenceOfUltrasoundRegions[0]
    spacing = (region.PhysicalDeltaX * _MM_PER_CM, region.PhysicalDeltaY * _MM_PER_CM)
    if crop_to_region:
        luminance = luminance[
            :, region.RegionLocationMinY0 : region.RegionLocationMaxY1 + 1,
            region.RegionLocationMinX0 : region.RegionLocationMaxX1 + 1,
        ]
        origin = (0.0, 0.0)
    else:
        origin = (-region.RegionLocationMinX0 * spacing[0], -region.RegionLocationMinY0 * spacing[1])
    return EchoCine(
        frames=luminance.astype(np.float32) / 255.0,
        geometry=Geometry(spacing, origin, (1.0, 0.0, 0.0, 1.0)),
        frame_time_ms=float(dataset.FrameTime),
    )
