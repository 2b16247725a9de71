"""elastix and ANTs results in our displacement convention (mm, LPS, fixed grid, fixed point p
maps to moving point p + u(p)), checked on a known translation of an image with a flipped
direction."""

import numpy as np
import pytest

from imse import peers
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")  # ITK's SWIG wrappers
needs_elastix = pytest.mark.skipif(not peers.elastix_available(), reason="itk-elastix is not installed (pip install 'imse[bench]')")
needs_ants = pytest.mark.skipif(not peers.ants_available(), reason=f"ANTs is not installed (no {peers.ANTS_PYTHON}; make ants)")


def blobs(geometry: Geometry, shape: tuple[int, int], shift_mm: np.ndarray) -> Image:
    """Two Gaussian blobs, sampled at p + shift_mm for every voxel p (so the image content sits
    at -shift_mm relative to the unshifted one)."""
    index = np.stack(np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), indexing="xy"), axis=-1)  # (H, W, 2): (i, j)
    points = geometry.index_to_physical(index) + shift_mm
    centre = geometry.index_to_physical(np.array([shape[1] / 2, shape[0] / 2]))
    image = sum(np.exp(-np.sum((points - centre - offset) ** 2, axis=-1) / (2 * 6.0**2)) for offset in ([-8.0, 5.0], [10.0, -6.0]))
    return Image(image.astype(np.float32), geometry)


def translated_pair() -> tuple[Image, Image, np.ndarray]:
    """Fixed and moving blobs whose true displacement is one vector (mm) everywhere."""
    geometry = Geometry((1.5, 1.0), (40.0, -20.0), (-1.0, 0.0, 0.0, -1.0))  # LPS-flipped like the MNI atlas
    shape = (64, 56)
    shift = np.array([4.0, -3.0])  # mm, physical x and y
    fixed = blobs(geometry, shape, np.zeros(2))
    moving = blobs(geometry, shape, -shift)  # moving(q) = fixed(q - shift): the fixed point p lies at p + shift
    return fixed, moving, shift


@needs_elastix
def test_elastix_translation_comes_back_as_our_displacement_in_mm():
    fixed, moving, shift = translated_pair()
    result = peers.elastix(fixed, moving, "translation")
    assert result.displacement.geometry == fixed.geometry and result.displacement.shape == fixed.shape
    np.testing.assert_allclose(result.displacement.array.reshape(-1, 2).mean(0), shift, atol=0.1)
    assert result.displacement.array.std(axis=(0, 1)).max() < 1e-3  # one vector everywhere
    assert result.seconds > 0


@needs_ants
def test_ants_syn_translation_comes_back_as_our_displacement_in_mm():
    fixed, moving, shift = translated_pair()
    result = peers.ants_syn(fixed, moving)
    assert result.displacement.geometry.isclose(fixed.geometry) and result.displacement.shape == fixed.shape
    centre = result.displacement.array[16:48, 14:42].reshape(-1, 2)  # where the blobs are (SyN is free outside)
    np.testing.assert_allclose(np.median(centre, axis=0), shift, atol=0.5)
    assert result.seconds > 0


def test_ants_refuses_mixed_dimensions_and_says_how_to_install_it(tmp_path):
    image = Image(np.random.default_rng(0).random((16, 16), dtype=np.float32), Geometry.identity(2))
    with pytest.raises(ImageError, match="same dimension"):
        peers.ants_syn(image, Image(np.zeros((4, 16, 16), np.float32), Geometry.identity(3)))
    with pytest.raises(ImageError, match="make ants"):
        peers.ants_syn(image, image, python=tmp_path / "no-python")


@needs_elastix
def test_elastix_refuses_unknown_presets_and_mixed_dimensions():
    image = Image(np.random.default_rng(0).random((16, 16), dtype=np.float32), Geometry.identity(2))
    with pytest.raises(ImageError, match="preset"):
        peers.elastix(image, image, "demons")
    volume = Image(np.zeros((4, 16, 16), np.float32), Geometry.identity(3))
    with pytest.raises(ImageError, match="same dimension"):
        peers.elastix(image, volume)
