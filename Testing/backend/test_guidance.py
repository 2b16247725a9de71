"""Local guidance (imse.guidance): a cost that sees a known shift points every voxel to it; a
cost blind to alignment scores as such; bad masks and fields are refused (the candidate shifts
are tested with imse.discrete)."""

import numpy as np
import pytest
import torch

from imse.errors import ImageError
from imse.filters import gaussian_smooth
from imse.geometry import Geometry
from imse.guidance import local_guidance
from imse.image import Image
from imse.similarity import build_similarity

SHAPE = (40, 48)


def textured_image(spacing: tuple[float, float]) -> Image:
    """Smooth random texture (Gaussian-filtered noise, sigma 2 voxels) on a 2D grid."""
    noise = torch.rand(1, 1, *SHAPE, generator=torch.Generator().manual_seed(3))
    return Image(gaussian_smooth(noise, 2.0)[0, 0].numpy(), Geometry(spacing, (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)))


def constant_field(image: Image, vector_mm: tuple[float, float]) -> Image:
    """A constant displacement (mm, physical x then y) on the image's grid."""
    return Image(np.broadcast_to(np.float32(vector_mm), (*image.shape, 2)).copy(), image.geometry)


def shifted(image: Image, vector_mm: tuple[float, float]) -> Image:
    """``moving(q) = image(q - u)`` for a constant ``u`` (mm, x then y) of whole voxels, by
    rolling the array (exact, and the same histogram: both normalise alike)."""
    steps = tuple(int(round(v / s)) for v, s in zip(vector_mm, image.geometry.spacing))
    return image.with_array(np.roll(image.array, shift=steps[::-1], axis=(0, 1)))


def interior() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[10:-10, 10:-10] = True
    return mask


@pytest.mark.parametrize("spacing", [(2.0, 2.0), (1.0, 2.0)])
def test_a_cost_that_sees_the_shift_points_every_voxel_to_it(spacing):
    fixed = textured_image(spacing)
    truth = (2 * spacing[0], -spacing[1])  # two voxels along x, one back along y: a candidate shift
    moving = shifted(fixed, truth)
    scores = local_guidance(build_similarity("mse", reduction="voxel"), fixed, moving, constant_field(fixed, truth), interior())
    assert scores.sharpness > 0.95
    assert scores.moved > 0.95
    assert scores.cosine > 0.95
    assert scores.gain_mm == pytest.approx(float(np.hypot(*truth)), rel=0.05)


class BlindCost(torch.nn.Module):
    """A voxel-wise cost that ignores the images: every shift ties."""

    def forward(self, fixed, moving):
        return torch.zeros_like(fixed)


def test_a_cost_blind_to_alignment_scores_no_guidance():
    fixed = textured_image((2.0, 2.0))
    truth = (2.0, 0.0)
    moving = shifted(fixed, truth)
    scores = local_guidance(BlindCost(), fixed, moving, constant_field(fixed, truth), interior())
    assert scores.sharpness == 0.0  # the tie goes to the first candidate, never the zero shift
    assert scores.gain_mm < 0.0


def test_bad_masks_and_fields_are_refused():
    fixed = textured_image((2.0, 2.0))
    field = constant_field(fixed, (0.0, 0.0))
    with pytest.raises(ImageError, match="mask"):
        local_guidance(BlindCost(), fixed, fixed, field, np.zeros(SHAPE, bool))
    with pytest.raises(ImageError, match="mask"):
        local_guidance(BlindCost(), fixed, fixed, field, np.ones((3, 3), bool))
    with pytest.raises(ImageError, match="fixed image's grid"):
        local_guidance(BlindCost(), fixed, fixed, Image(field.array[:-1], field.geometry), interior())
