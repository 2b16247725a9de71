"""Automatic foreground masks (imse.foreground) and `imse register --fixed-mask auto`: the mask
holds the whole brain and little background, for T1, T2-like and CT-like images in 2D and 3D;
bad images are refused; the command line uses and writes the mask."""

import json

import numpy as np
import pytest

from imse.data import make_pair
from imse.errors import ImageError
from imse.foreground import foreground_mask
from imse.geometry import Geometry
from imse.image import Image, read_image, write_image


@pytest.mark.parametrize("dim, contrast", [(2, "t1"), (2, "t2"), (2, "ct"), (3, "t1"), (3, "ct")])
def test_the_mask_holds_the_brain_and_little_else(dim, contrast):
    pair = make_pair(dim=dim, fixed_contrast=contrast, moving_contrast="t1" if contrast != "t1" else "t2", spacing_mm=2.0 if dim == 2 else 4.0, max_displacement_mm=4.0, seed=21)
    mask = foreground_mask(pair.fixed)
    brain = pair.fixed_labels.array > 0
    assert mask.geometry == pair.fixed.geometry and mask.array.dtype == np.uint8
    assert mask.array[brain].all()  # every brain voxel, ventricles included
    assert mask.array.sum() < 1.6 * brain.sum()  # the brain and a margin, not the field of view
    tighter = foreground_mask(pair.fixed, margin_voxels=0)
    assert tighter.array.sum() < mask.array.sum() and (mask.array >= tighter.array).all()


def test_images_without_a_foreground_are_refused():
    geometry = Geometry.identity(2, 1.0)
    with pytest.raises(ImageError, match="constant"):
        foreground_mask(Image(np.full((20, 20), 3.0, np.float32), geometry))
    with pytest.raises(ImageError, match="margin"):
        foreground_mask(Image(np.eye(20, dtype=np.float32), geometry), margin_voxels=-1)
    with pytest.raises(ImageError, match="scalar"):
        foreground_mask(Image(np.zeros((20, 20, 2), np.float32), geometry))


def test_command_line_masks_the_fixed_foreground_and_writes_the_mask(tmp_path):
    from imse.cli import main

    pair = make_pair(dim=2, moving_contrast="ct", spacing_mm=2.0, max_displacement_mm=6.0, seed=22)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nii.gz"), write_image(pair.moving, tmp_path / "moving.nii.gz")
    out = tmp_path / "result"
    assert main(["register", str(fixed), str(moving), "--out", str(out), "--optimizer", "discrete", "--fixed-mask", "auto", "--device", "cpu"]) == 0
    written = read_image(out / "fixed_mask_auto.nii.gz")
    assert written.geometry.isclose(pair.fixed.geometry)
    np.testing.assert_array_equal(written.array, foreground_mask(pair.fixed).array)
    assert json.loads((out / "metrics.json").read_text())["fixed_mask"] == "auto"
