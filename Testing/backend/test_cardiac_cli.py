"""imse strain and imse adacs register on the phantom, as a user runs them."""

import json

import numpy as np
import pytest
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


def test_adacs_train_command_then_register_with_the_model(tmp_path, monkeypatch):
    from imse.geometry import Geometry

    cine = lv_phantom_2d(shape=(32, 32), spacing_mm=2.0, frames=6)
    volume = Image(cine.frames, Geometry((2.0, 2.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel())))  # time along the third axis
    write_image(volume, tmp_path / "cine.nrrd")
    monkeypatch.setenv("IMSE_MODEL_DIR", str(tmp_path / "models"))
    arguments = ["adacs", "train", str(tmp_path / "cine.nrrd"), "--out", str(tmp_path / "models"), "--name", "phantom"]
    assert main([*arguments, "--iterations", "12", "--displacement-warmup", "4", "--scoring-warmup", "2", "--reference-frame", "1", "--time-limit", "30", "--device", "cpu"]) == 0
    card = json.loads((tmp_path / "models" / "phantom.json").read_text())
    assert card["task"] == "adacs" and card["dim"] == 2
    config = card["training"]["config"]
    assert config["reference_frame"] == 1 and config["time_limit_minutes"] == 30 and not card["training"]["stopped_at_time_limit"]
    write_image(Image(cine.frames[0], cine.geometry), tmp_path / "target.nii.gz")
    write_image(Image(cine.frames[3], cine.geometry), tmp_path / "source.nii.gz")
    assert main(["adacs", "register", str(tmp_path / "source.nii.gz"), str(tmp_path / "target.nii.gz"), "--out", str(tmp_path / "out"), "--model", "phantom", "--device", "cpu"]) == 0
    assert read_image(tmp_path / "out" / "score.nii.gz").geometry.isclose(cine.geometry)
    with pytest.raises(SystemExit):
        main(["adacs", "train", str(tmp_path / "target.nii.gz"), "--out", str(tmp_path / "models")])  # a 2D image is no cine


def test_adacs_train_reads_the_builtin_echo_cine(tmp_path):
    arguments = ["adacs", "train", "echo", "--out", str(tmp_path), "--name", "echo", "--spacing", "2.0"]
    assert main([*arguments, "--iterations", "2", "--displacement-warmup", "1", "--scoring-warmup", "1", "--batch-size", "1", "--device", "cpu"]) == 0
    card = json.loads((tmp_path / "echo.json").read_text())
    assert card["spacing_mm"] == 2.0 and card["training"]["frame_shape"][0] < 384  # resampled from 0.51 mm
