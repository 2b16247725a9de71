"""Per-pair registration recovers known deformations: 2D and 3D, mono- and multi-modal,
anisotropic spacing, affine pre-alignment, diffeomorphic fields; cancel, progress, bad input."""

import numpy as np
import pytest

from imse import metrics
from imse.data import make_pair, warp_image
from imse.errors import Cancelled, ImageError
from imse.geometry import Geometry
from imse.image import Image, resample_to_spacing
from imse.register import RegistrationSettings, pyramid_grids, register_pair

from conftest import brain_endpoint_error, unregistered_endpoint_error

FAST = dict(levels=3, iterations=80, device="cpu")


def mean_tissue_dice(moving_labels: Image, fixed_labels: Image, displacement: Image | None) -> float:
    warped = moving_labels if displacement is None else warp_image(moving_labels, displacement, "nearest")
    scores = metrics.dice(warped, fixed_labels, labels=[2, 3])
    return float(np.mean(list(scores.values())))


@pytest.mark.parametrize(
    "dim, fixed_contrast, moving_contrast, similarity, error_fraction",
    [
        (2, "t1", "t1", "ncc", 0.85),
        (2, "t1", "t2", "mind", 0.85),
        (2, "t1", "pd", "mi", 0.85),
        (2, "t1", "ct", "mi", 0.85),  # MI leads on CT-like pairs (benchmark); MIND with Adam left 0.83 of this pair's error (Dice +0.018), and all of seed 13's
        (3, "t1", "t1", "ncc", 0.85),
        (3, "t1", "t2", "mi", 0.92),  # 3D multi-modal recovers less so far: see the benchmark
    ],
)
def test_registration_recovers_a_known_deformation(dim, fixed_contrast, moving_contrast, similarity, error_fraction):
    """The end-point error in the brain falls below ``error_fraction`` of the initial one, and in
    2D (where coarse label maps leave room) the tissue Dice rises."""
    spacing = 2.0 if dim == 2 else 4.0
    pair = make_pair(dim=dim, fixed_contrast=fixed_contrast, moving_contrast=moving_contrast, spacing_mm=spacing, max_displacement_mm=6.0, seed=11)
    settings = RegistrationSettings(similarity=similarity, **{**FAST, "levels": 3 if dim == 2 else 2})
    result = register_pair(pair.fixed, pair.moving, settings)
    assert brain_endpoint_error(result.displacement, pair) < error_fraction * unregistered_endpoint_error(pair)
    if dim == 2:
        before = mean_tissue_dice(pair.moving_labels, pair.fixed_labels, None)
        assert mean_tissue_dice(pair.moving_labels, pair.fixed_labels, result.displacement) > before + 0.02
    assert result.displacement.geometry == pair.fixed.geometry and result.warped.geometry == pair.fixed.geometry


def test_anisotropic_volumes_register_in_physical_space():
    pair = make_pair(dim=2, moving_contrast="t2", spacing_mm=1.5, max_displacement_mm=6.0, seed=12)
    coarse_y = (1.5, 3.0)  # rows twice as far apart as columns
    fixed, moving = resample_to_spacing(pair.fixed, coarse_y), resample_to_spacing(pair.moving, coarse_y)
    fixed_labels = resample_to_spacing(pair.fixed_labels, coarse_y, "nearest")
    moving_labels = resample_to_spacing(pair.moving_labels, coarse_y, "nearest")
    result = register_pair(fixed, moving, RegistrationSettings(similarity="mind", **FAST))
    before = mean_tissue_dice(moving_labels, fixed_labels, None)
    assert mean_tissue_dice(moving_labels, fixed_labels, result.displacement) > before + 0.05
    assert result.displacement.geometry.spacing == coarse_y


def test_affine_stage_recovers_a_translation_in_mm():
    pair = make_pair(dim=2, moving_contrast="t1", noise_free=True, max_displacement_mm=0.01, seed=3)
    shift = np.array([4.0, -3.0], np.float32)  # mm along x and y
    translation = pair.fixed.with_array(np.broadcast_to(shift, (*pair.fixed.shape, 2)).copy())
    moving = warp_image(pair.fixed, translation)  # moving(p) = fixed(p + t): registration must find -t
    settings = RegistrationSettings(similarity="ncc", affine=True, affine_iterations=150, levels=2, iterations=30, regularization_weight=10.0, device="cpu")
    result = register_pair(pair.fixed, moving, settings)
    inside = pair.fixed_labels.array > 0
    np.testing.assert_allclose(result.displacement.array[inside].mean(0), -shift, atol=0.5)


def test_diffeomorphic_mode_does_not_fold():
    pair = make_pair(dim=2, moving_contrast="t2", max_displacement_mm=8.0, seed=4)
    settings = RegistrationSettings(similarity="mind", diffeomorphic=True, regularization_weight=1.0, **FAST)
    result = register_pair(pair.fixed, pair.moving, settings)
    assert result.jacobian_determinant.array.min() > 0
    assert metrics.folding_percentage(result.displacement) == 0.0


def test_progress_and_cancel():
    pair = make_pair(dim=2, seed=5)
    seen = []
    register_pair(pair.fixed, pair.moving, RegistrationSettings(similarity="mse", levels=2, iterations=5, device="cpu"), progress=lambda done, total, values: seen.append((done, total)))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1][1] == 10
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        register_pair(pair.fixed, pair.moving, RegistrationSettings(similarity="mse", device="cpu"), should_stop=lambda: next(calls) >= 3)


def test_pyramid_is_physical_and_coarsens_fine_axes_first():
    image = Image(np.zeros((20, 64, 64), np.float32), Geometry((1.0, 1.0, 4.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel())))
    grids = pyramid_grids(image, 3)
    assert [g.geometry.spacing for g in grids] == [(4.0, 4.0, 4.0), (2.0, 2.0, 4.0), (1.0, 1.0, 4.0)]
    assert grids[-1] is image


def test_pyramid_on_a_grid_of_the_given_spacing_covers_the_fixed_box():
    image = Image(np.zeros((50, 60), np.float32), Geometry((2.0, 2.0), (3.0, -4.0), (1.0, 0.0, 0.0, 1.0)))
    grids = pyramid_grids(image, 2, grid_spacing_mm=1.5)
    assert [g.geometry.spacing for g in grids] == [(3.0, 3.0), (1.5, 1.5)]
    assert grids[-1].shape == (66, 79) and grids[-1].geometry.origin == (3.0, -4.0)  # 98 x 118 mm, as the image


@pytest.mark.parametrize("grid_spacing_mm", [4.0, 1.5])
def test_registration_on_a_coarser_or_finer_grid_gives_its_result_on_the_fixed_grid(grid_spacing_mm):
    """A coarser grid (faster) or a finer one still recovers the deformation, and every output
    lies on the fixed image's grid."""
    pair = make_pair(dim=2, moving_contrast="t2", max_displacement_mm=6.0, seed=11)
    settings = RegistrationSettings(similarity="mind", grid_spacing_mm=grid_spacing_mm, **{**FAST, "levels": 2})
    result = register_pair(pair.fixed, pair.moving, settings)
    assert brain_endpoint_error(result.displacement, pair) < 0.85 * unregistered_endpoint_error(pair)
    for output in (result.displacement, result.warped, result.jacobian_determinant):
        assert output.geometry == pair.fixed.geometry and output.shape[:2] == pair.fixed.shape


@pytest.mark.parametrize("grid_spacing_mm, message", [(0.0, "one positive value"), (-2.0, "one positive value"), ((1.0, 1.0, 1.0), "one per axis"), (1e-4, "coarser grid")])
def test_a_grid_spacing_that_cannot_work_is_refused_before_any_work(grid_spacing_mm, message):
    pair = make_pair(dim=2, seed=6)
    settings = RegistrationSettings(similarity="mse", grid_spacing_mm=grid_spacing_mm, device="cpu")
    with pytest.raises(ImageError, match=message):
        register_pair(pair.fixed, pair.moving, settings, progress=lambda *_: pytest.fail("work started"))


def test_bad_inputs_are_refused_clearly():
    pair2 = make_pair(dim=2, seed=6)
    pair3 = make_pair(dim=3, spacing_mm=6.0, seed=6)
    with pytest.raises(ImageError, match="same dimension"):
        register_pair(pair2.fixed, pair3.moving)
    far = Image(pair2.moving.array, Geometry(pair2.moving.geometry.spacing, (5000.0, 5000.0), pair2.moving.geometry.direction))
    with pytest.raises(ImageError, match="hardly overlap"):
        register_pair(pair2.fixed, far)
    with pytest.raises(ImageError, match="mask is empty"):
        register_pair(pair2.fixed, pair2.moving, fixed_mask=pair2.fixed.with_array(np.zeros(pair2.fixed.shape)))
    for similarity in ("imse", "mind+imse"):
        with pytest.raises(ImageError, match="needs an evaluator"):
            register_pair(pair2.fixed, pair2.moving, RegistrationSettings(similarity=similarity))


def test_command_line_writes_outputs_that_load_back_and_agree_with_itk(tmp_path):
    import json

    import SimpleITK as sitk

    from imse.cli import main
    from imse.image import read_image, to_sitk, write_image
    from imse.transforms import read_displacement_transform

    pair = make_pair(dim=2, moving_contrast="t2", max_displacement_mm=5.0, seed=7)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nii.gz")
    out = tmp_path / "result"
    assert main(["register", str(fixed), str(moving), "--out", str(out), "--levels", "2", "--iterations", "40", "--device", "cpu"]) == 0
    displacement = read_image(out / "displacement_mm.nii.gz")
    warped = read_image(out / "warped.nii.gz")
    assert displacement.geometry.isclose(pair.fixed.geometry) and warped.geometry.isclose(pair.fixed.geometry)
    transform_field = read_displacement_transform(out / "transform.h5")
    np.testing.assert_allclose(transform_field.array, displacement.array, atol=1e-5)
    # ITK resampling through the written transform reproduces our warped image.
    transform = sitk.ReadTransform(str(out / "transform.h5"))
    itk_warped = sitk.GetArrayFromImage(sitk.Resample(to_sitk(pair.moving), to_sitk(pair.fixed), transform, sitk.sitkLinear, float(pair.moving.array.min())))
    inside = pair.fixed_labels.array > 0
    np.testing.assert_allclose(itk_warped[inside], warped.array[inside], atol=1e-3)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["similarity"] == "mind" and summary["folding_percent"] >= 0 and summary["grid_spacing_mm"] is None
    assert read_image(out / "jacobian_determinant.nii.gz").geometry.isclose(pair.fixed.geometry)


def test_command_line_registers_on_the_grid_it_is_given(tmp_path):
    import json

    from imse.cli import main
    from imse.image import read_image, write_image

    pair = make_pair(dim=2, moving_contrast="t2", max_displacement_mm=6.0, seed=7)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nrrd")
    out = tmp_path / "result"
    assert main(["register", str(fixed), str(moving), "--out", str(out), "--grid-spacing", "3", "--levels", "2", "--iterations", "40", "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["grid_spacing_mm"] == 3.0
    displacement = read_image(out / "displacement_mm.nii.gz")
    assert displacement.geometry.isclose(pair.fixed.geometry) and displacement.shape[:2] == pair.fixed.shape
    assert brain_endpoint_error(displacement, pair) < 0.85 * unregistered_endpoint_error(pair)


def test_failed_command_leaves_earlier_results_alone(tmp_path):
    from imse.cli import main
    from imse.image import write_image

    out = tmp_path / "result"
    out.mkdir()
    (out / "metrics.json").write_text("good")
    pair = make_pair(dim=2, seed=8)
    fixed = write_image(pair.fixed, tmp_path / "fixed.nrrd")
    far = write_image(Image(pair.moving.array, Geometry(pair.moving.geometry.spacing, (5000.0, 5000.0), pair.moving.geometry.direction)), tmp_path / "far.nrrd")
    with pytest.raises(SystemExit):
        main(["register", str(fixed), str(far), "--out", str(out), "--device", "cpu"])
    assert (out / "metrics.json").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.nrrd", "fixed.nrrd", "result"]


def test_a_named_evaluator_that_does_not_exist_is_an_error_not_a_silent_skip(tmp_path):
    from imse.cli import main
    from imse.image import write_image

    pair = make_pair(dim=2, seed=9)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nrrd")
    with pytest.raises(SystemExit) as exit_info:
        main(["register", str(fixed), str(moving), "--out", str(tmp_path / "out"), "--model", "no-such-model", "--iterations", "2"])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()


def test_command_line_combined_similarity_puts_the_t1_in_the_evaluators_reference_channel(tmp_path):
    """T1 moving onto a T2-like fixed image with MIND + IMSE: ``--reference moving`` gives the
    evaluator the T1 in its trained channel, for the loss and for the error maps."""
    import json

    from imse.cli import main
    from imse.evaluator import Evaluator
    from imse.image import read_image, write_image

    pair = make_pair(dim=2, fixed_contrast="t2", moving_contrast="t1", max_displacement_mm=5.0, seed=13)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nrrd")
    out = tmp_path / "result"
    arguments = ["register", str(fixed), str(moving), "--out", str(out), "--similarity", "mind+imse", "--reference", "moving"]
    assert main([*arguments, "--levels", "2", "--iterations", "40", "--device", "cpu"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    evaluator = Evaluator.load(dim=2)
    expected = evaluator.error_map(pair.fixed, pair.moving, reference="moving").statistics["image"]["mean"]
    assert summary["similarity"] == "mind+imse" and summary["imse_mean_error_before"] == pytest.approx(expected, rel=1e-4)
    assert summary["imse_mean_error_after"] < summary["imse_mean_error_before"]
    assert brain_endpoint_error(read_image(out / "displacement_mm.nii.gz"), pair) < unregistered_endpoint_error(pair)


def test_a_volume_registers_with_the_2d_evaluator_slice_by_slice():
    """No 3D evaluator ships: IMSE registers volumes with the 2D one on their axial slices."""
    from imse.evaluator import Evaluator

    evaluator = Evaluator.load("mni-t1-light-2d", dim=2)
    pair = make_pair(dim=3, moving_contrast="t2", spacing_mm=6.0, max_displacement_mm=8.0, seed=14)
    settings = RegistrationSettings(similarity="imse", levels=1, iterations=15, device="cpu")
    result = register_pair(pair.fixed, pair.moving, settings, evaluator=evaluator)
    curve = [entry["similarity"] for entry in result.loss_curve]
    assert curve[-1] < 0.8 * curve[0]  # mean |E| over the slices fell
    assert result.displacement.geometry == pair.fixed.geometry
