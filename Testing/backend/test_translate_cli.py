"""``imse translate`` as the IMSE Translation module runs it: 3D volumes with the shipped 2D
evaluator (slice by slice), and NMAE/PSNR/SSIM against a ground truth with the two inputs as
given for comparison."""

import json

import pytest

import imse.models
from imse.cli import main
from imse.data import make_pair
from imse.image import read_image, write_image


@pytest.fixture
def shipped_models_only(monkeypatch):
    """Only the shipped models (2D evaluators): no 3D evaluator a user may have installed."""
    shipped = imse.models.model_directories()[:1]
    monkeypatch.setattr("imse.models.model_directories", lambda: shipped)


def test_translation_with_truth_beats_both_inputs_as_given(tmp_path, shipped_models_only):
    """The T2-like moving image translated to T1 with the fixed T1 as reference, scored against
    the T1 rendering of the moving anatomy (same seed, so the same deformation)."""
    pair = make_pair(dim=2, seed=0)
    truth = make_pair(dim=2, seed=0, moving_contrast="t1").moving
    source = write_image(pair.moving, tmp_path / "source.nrrd")
    reference = write_image(pair.fixed, tmp_path / "reference.nrrd")
    truth_path = write_image(truth, tmp_path / "truth.nrrd")
    out = tmp_path / "translated.nrrd"
    assert main(["translate", str(source), str(reference), "--out", str(out), "--truth", str(truth_path), "--device", "cpu"]) == 0
    assert read_image(out).geometry.isclose(pair.moving.geometry)
    scores = json.loads((tmp_path / "translated-metrics.json").read_text())
    assert set(scores) == {"translated", "source", "reference"}
    for given in ("source", "reference"):
        assert scores["translated"]["nmae"] < scores[given]["nmae"]
        assert scores["translated"]["ssim"] > scores[given]["ssim"]
        assert scores["translated"]["psnr_db"] > scores[given]["psnr_db"]


def test_3d_volumes_use_the_2d_evaluator_slice_by_slice(tmp_path, shipped_models_only):
    pair = make_pair(dim=3, spacing_mm=6.0, seed=1)
    fixed = write_image(pair.fixed, tmp_path / "fixed.nrrd")
    moving = write_image(pair.moving, tmp_path / "moving.nrrd")
    assert main(["translate", str(moving), str(fixed), "--out", str(tmp_path / "translated.nrrd"), "--device", "cpu"]) == 0
    translated = read_image(tmp_path / "translated.nrrd")
    assert translated.geometry.isclose(pair.moving.geometry) and translated.shape == pair.moving.shape
    assert not (tmp_path / "translated-metrics.json").exists()  # no truth, no metrics
    assert main(["error-map", str(fixed), str(moving), "--out", str(tmp_path / "error.nrrd"), "--device", "cpu"]) == 0
    assert read_image(tmp_path / "error.nrrd").shape == pair.fixed.shape
