"""imse strain and imse adacs register on the phantom, as a user runs them."""

import json

import numpy as np
from scipy import ndimage

from imse.cli import main
from imse.image import Image, read_image, write_image
from imse.phantom import SectorCorruption, lv_phantom_2d


def test_strain_command_matches_the_analytic_strain(tmp_path):
    cine = lv_phantom_2d(shape=(64, 64), frames=6)
    frame = 3  # end-systole
    displacement = Image(np.moveaxis(cine.displacements[frame], 0, -1), cine.geometry)
    mask = cine.myocardium_masks[0]
    write_image(displacement, tmp_path / "u.nii.gz")
    write_image(Image(mask.astype(np.uint8), cine.geometry), tmp_path / "myocardium.nii.gz")
    centre = [str(v) for v in cine.centre_mm]
    assert main(["strain", str(tmp_path / "u.nii.gz"), "--centre", *centre, "--mask", str(tmp_path / "myocardium.nii.gz"), "--out", str(tmp_path / "strain")]) == 0
    radial = read_image(tmp_path / "strain" / "radial_strain.nii.gz").array
    truth_radial, truth_circumferential = cine.analytic_strain("green_lagrange")
    inner = ndimage.binary_erosion(mask, iterations=2)
    np.testing.assert_allclose(radial[inner], truth_radial[frame][inner], atol=0.01)
    summary = json.loads((tmp_path / "strain" / "strain.json").read_text())
    assert len(summary["radial_segments"]) == 6 and summary["radial_mean"] > 0 > summary["circumferential_mean"]


def test_adacs_register_command_scores_a_dropout_sector_low(tmp_path):
    cine = lv_phantom_2d(shape=(48, 48), spacing_mm=1.5, frames=6, dropout=SectorCorruption(frames=(0,), start_deg=30, width_deg=60))
    write_image(Image(cine.frames[0], cine.geometry), tmp_path / "target.nii.gz")  # corrupted reference frame
    write_image(Image(cine.frames[3], cine.geometry), tmp_path / "source.nii.gz")
    assert main(["adacs", "register", str(tmp_path / "source.nii.gz"), str(tmp_path / "target.nii.gz"), "--out", str(tmp_path / "out"), "--iterations", "200", "--device", "cpu"]) == 0
    score = read_image(tmp_path / "out" / "score.nii.gz").array
    sector = cine.corruption_masks["dropout"][0] & cine.myocardium_masks[0]
    rest = cine.myocardium_masks[0] & ~sector
    assert score[sector].mean() < score[rest].mean() - 0.2
    assert read_image(tmp_path / "out" / "displacement_mm.nii.gz").geometry.isclose(cine.geometry)
