"""The shipped evaluators (2D, and 3D inflated from the 2D one): registered, small enough for
git, documented by their cards, and they see misalignment between modalities they were never
trained on, in the part of the atlas that their training held out."""

import json

import numpy as np
import pytest

from imse.data import load_mni_atlas, make_pair, warp_image
from imse.evaluator import DEFAULT_EVALUATORS, Evaluator
from imse.image import read_image, write_image
from imse.models import find_model, load_model
from imse.register import RegistrationSettings, register_pair
from imse.train_evaluator import held_out_slab

from conftest import brain_endpoint_error, unregistered_endpoint_error


@pytest.mark.parametrize("name, dim", [(DEFAULT_EVALUATORS[2], 2), ("mni-t1-light-2d-paper-recipe", 2), (DEFAULT_EVALUATORS[3], 3)])
def test_shipped_evaluator_is_registered_small_and_documented(name, dim):
    weights = find_model(name, task="evaluator", dim=dim)
    assert weights.stat().st_size < 10 * 2**20
    card = load_model(weights).card
    assert card.dim == dim and card.modality == "T1" and card.architecture == "light"
    training = card.training
    assert "imse train-evaluator" in training["command"] and "MNI" in training["data"]
    assert training["iterations"] > 0 and training["history"][0]["step"] == 0
    assert training["final_validation_l1"] < training["history"][0]["validation_l1"]  # it learnt


def held_out_axial_position_mm(spacing_mm: float) -> float:
    """The LPS z (mm) of the middle of the slab that training held out."""
    t1 = load_mni_atlas(spacing_mm).t1
    low, high = held_out_slab(t1.shape[0])
    return float(t1.geometry.index_to_physical([0, 0, (low + high) // 2])[2])


@pytest.mark.parametrize("contrast", ["t2", "pd", "ct"])
def test_shipped_2d_evaluator_sees_misalignment_of_unseen_contrasts(contrast):
    evaluator = Evaluator.load(dim=2)
    z = held_out_axial_position_mm(evaluator.card.spacing_mm)
    pair = make_pair(dim=2, moving_contrast=contrast, slice_mm=z, max_displacement_mm=8.0, seed=21)
    brain = pair.fixed_labels.array > 0
    aligned = warp_image(pair.moving, pair.displacement, default_value=float(pair.moving.array.min()))
    misaligned_error = evaluator.error_map(pair.fixed, pair.moving).magnitude.array[brain].mean()
    aligned_error = evaluator.error_map(pair.fixed, aligned).magnitude.array[brain].mean()
    assert misaligned_error > 5 * aligned_error  # measured: 164 to 270 times on these pairs


@pytest.mark.parametrize("grid_spacing_mm", [None, 1.5])
@pytest.mark.parametrize("contrast, seed", [("t2", 22), ("pd", 21)])
def test_shipped_2d_evaluator_registers_a_held_out_pair_on_its_grid_and_a_finer_one(contrast, seed, grid_spacing_mm):
    """IMSE's discrete search with the shipped 2D evaluator recovers part of a known deformation
    of a held-out 2 mm pair, on the pair's grid and on a 1.5 mm grid (where the benchmark's mean
    is lower; single pairs go either way). Measured: 3.20 -> 2.33 and 2.05 mm (T2-like), 3.39 ->
    2.32 and 2.35 mm (PD-like)."""
    evaluator = Evaluator.load(dim=2)
    pair = make_pair(dim=2, moving_contrast=contrast, slice_mm=held_out_axial_position_mm(2.0), max_displacement_mm=8.0, seed=seed)
    settings = RegistrationSettings(similarity="imse", optimizer="discrete", levels=1, grid_spacing_mm=grid_spacing_mm, device="cpu")
    result = register_pair(pair.fixed, pair.moving, settings, evaluator=evaluator)
    assert result.displacement.geometry == pair.fixed.geometry
    assert brain_endpoint_error(result.displacement, pair) < 0.9 * unregistered_endpoint_error(pair)


@pytest.mark.parametrize(
    "grid_spacing_mm, flip_average, zoom, steps, max_step, error_fraction",
    [
        (None, False, 1.0, 20, 0.5, 0.8),  # the pair's grid
        (1.5, True, 1.0, 20, 0.5, 0.7),
        (None, True, 2.0, 30, 0.5, 0.65),
        (None, True, 2.0, 30, 1.0, 0.6),  # IMSE's best configuration on the benchmark
    ],
)
@pytest.mark.parametrize("fixed_contrast, moving_contrast, reference", [("t1", "t2", "fixed"), ("pd", "t1", "moving")])
def test_shipped_2d_evaluator_drives_the_demons_with_either_image_as_its_reference(
    fixed_contrast, moving_contrast, reference, grid_spacing_mm, flip_average, zoom, steps, max_step, error_fraction
):
    """The demons, driven by the shipped 2D evaluator's residual, recover part of a known
    deformation of a held-out pair whether the T1 image is fixed or moving: on the pair's grid
    (measured: 3.20 -> 2.38 mm with a T2-like moving image, 3.39 -> 2.11 mm with a PD-like fixed
    one), with the evaluator averaged over flips on a 1.5 mm grid (1.94 and 1.56 mm; 2.18 and
    1.72 without the flips), and averaged over flips and zoomed 2 times on the pair's grid, 30
    steps (1.86 and 1.46 mm; zoomed without the flips, 3.21 and 2.03), and so with steps of up
    to a voxel (1.76 and 1.34 mm)."""
    evaluator = Evaluator.load(dim=2)
    seed = 22 if moving_contrast == "t2" else 21
    pair = make_pair(dim=2, fixed_contrast=fixed_contrast, moving_contrast=moving_contrast, slice_mm=held_out_axial_position_mm(2.0), max_displacement_mm=8.0, seed=seed)
    options = {"reference": reference, "flip_average": flip_average, "zoom": zoom}
    settings = RegistrationSettings(
        similarity="imse", similarity_options=options, optimizer="demons", levels=1, grid_spacing_mm=grid_spacing_mm, demons_iterations=steps,
        demons_max_step_voxels=max_step, device="cpu",
    )
    result = register_pair(pair.fixed, pair.moving, settings, evaluator=evaluator)
    assert result.displacement.geometry == pair.fixed.geometry and (result.jacobian_determinant.array > 0).all()
    assert brain_endpoint_error(result.displacement, pair) < error_fraction * unregistered_endpoint_error(pair)


def test_command_line_rotates_flips_and_zooms_the_evaluator_for_the_demons(tmp_path, capsys):
    """``imse register --flip-average --evaluator-rotation 60 --evaluator-zoom 2
    --demons-max-step 1``: the backend's best 2D configuration from the command line (measured
    on the demo's 2D pair: 3.25 -> 1.23 mm; 1.26 without the rotations), and with the
    orientations cycled, 60 steps averaged over the last 12 (measured: 1.25 mm, with a sixth of
    the evaluator's passes); a zoom that is not positive, a rotation outside (0, 90] degrees, or
    the cycle with Adam, is refused before anything is written."""
    from imse.cli import main

    pair = make_pair(dim=2, fixed_contrast="t1", moving_contrast="t2", seed=0)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nii.gz"), write_image(pair.moving, tmp_path / "moving.nii.gz")
    arguments = ["register", str(fixed), str(moving), "--similarity", "imse", "--optimizer", "demons", "--levels", "1", "--flip-average", "--device", "cpu"]
    best = ["--evaluator-rotation", "60", "--evaluator-zoom", "2", "--demons-iterations", "30", "--demons-max-step", "1"]
    assert main([*arguments, "--out", str(tmp_path / "out"), *best]) == 0
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["evaluator_zoom"] == 2.0 and summary["flip_average"] is True and summary["folding_percent"] == 0
    assert summary["evaluator_rotation_deg"] == 60.0
    assert summary["demons_iterations"] == 30 and summary["demons_max_step_voxels"] == 1.0
    assert brain_endpoint_error(read_image(tmp_path / "out" / "displacement_mm.nii.gz"), pair) < 0.5 * unregistered_endpoint_error(pair)
    cycled = ["--evaluator-orientations", "cycle", "--demons-iterations", "60", "--demons-average-last", "12"]
    assert main([*arguments, "--out", str(tmp_path / "cycled"), *best, *cycled]) == 0
    summary = json.loads((tmp_path / "cycled" / "metrics.json").read_text())
    assert summary["evaluator_orientations"] == "cycle" and summary["demons_iterations"] == 60 and summary["demons_average_last"] == 12
    assert brain_endpoint_error(read_image(tmp_path / "cycled" / "displacement_mm.nii.gz"), pair) < 0.5 * unregistered_endpoint_error(pair)
    with pytest.raises(SystemExit):
        main([*arguments, "--out", str(tmp_path / "refused"), *cycled, "--optimizer", "adam"])
    assert "for the demons" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    with pytest.raises(SystemExit):
        main([*arguments, "--out", str(tmp_path / "refused"), "--evaluator-zoom", "0"])
    assert "positive factor" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    with pytest.raises(SystemExit):
        main([*arguments, "--out", str(tmp_path / "refused"), "--evaluator-rotation", "120"])
    assert "rotation must be an angle" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    with pytest.raises(SystemExit):
        main([*arguments, "--out", str(tmp_path / "refused"), "--demons-max-step", "0"])
    assert "maximum step" in capsys.readouterr().err and not (tmp_path / "refused").exists()


def held_out_voxels(image, spacing_mm: float) -> np.ndarray:
    """Voxels of ``image`` (a 3D pair, cropped from the atlas) inside the z range of the slab
    that training at ``spacing_mm`` held out."""
    t1 = load_mni_atlas(spacing_mm).t1
    low, high = held_out_slab(t1.shape[0])
    z_low, z_high = (t1.geometry.index_to_physical([0, 0, k])[2] for k in (low, high))
    z = np.array([image.geometry.index_to_physical([0, 0, k])[2] for k in range(image.shape[0])])
    inside = np.zeros(image.shape, dtype=bool)
    inside[(z >= z_low) & (z < z_high)] = True
    return inside


@pytest.mark.parametrize("contrast", ["t2", "pd", "ct"])
def test_shipped_3d_evaluator_sees_misalignment_of_unseen_contrasts(contrast):
    evaluator = Evaluator.load(dim=3)
    assert evaluator.card.dim == 3
    pair = make_pair(dim=3, moving_contrast=contrast, spacing_mm=evaluator.card.spacing_mm, max_displacement_mm=8.0, seed=21)
    scored = (pair.fixed_labels.array > 0) & held_out_voxels(pair.fixed, evaluator.card.spacing_mm)
    aligned = warp_image(pair.moving, pair.displacement, default_value=float(pair.moving.array.min()))
    misaligned_error = evaluator.error_map(pair.fixed, pair.moving).magnitude.array[scored].mean()
    aligned_error = evaluator.error_map(pair.fixed, aligned).magnitude.array[scored].mean()
    assert misaligned_error > 10 * aligned_error  # measured: 34 to 43 times (the 2D evaluator slice by slice: 38 to 149)


def test_shipped_2d_evaluator_slice_by_slice_drives_the_demons_on_a_volume():
    """The 2D evaluator, applied to a volume's slices, drives the demons on a 3 mm volume pair
    on a 2 mm grid (the benchmark's best 3D IMSE row): measured 2.73 -> 2.33 mm on the demo's
    3D pair."""
    pair = make_pair(dim=3, fixed_contrast="t1", moving_contrast="t2", seed=0)
    settings = RegistrationSettings(similarity="imse", optimizer="demons", levels=1, grid_spacing_mm=2.0, device="cpu")
    result = register_pair(pair.fixed, pair.moving, settings, evaluator=Evaluator.load(dim=2))
    assert result.displacement.geometry == pair.fixed.geometry and (result.jacobian_determinant.array > 0).all()
    assert brain_endpoint_error(result.displacement, pair) < 0.9 * unregistered_endpoint_error(pair)
