"""What the two gradient-free optimisers share (imse.discrete and imse.demons, with
RegistrationSettings(optimizer=...)): their steps follow each axis's own spacing, masks hold
them, the diffeomorphic mode keeps a large deformation unfolded, they report progress and can be
cancelled, and they run from the command line. The discrete search is driven by MIND on T2-like
to T1 pairs, the demons by MSE on T1 to T1 pairs (they need a residual in one modality; IMSE
drives them in test_shipped_models.py)."""

import json

import numpy as np
import pytest

from imse import metrics
from imse.data import make_pair
from imse.errors import Cancelled
from imse.image import resample_to_spacing, write_image
from imse.register import RegistrationSettings, register_pair

from conftest import brain_endpoint_error, unregistered_endpoint_error

#: optimiser -> the similarity that drives it here and the moving image's contrast (the fixed is T1).
DRIVERS = {"discrete": ("mind", "t2"), "demons": ("mse", "t1")}


def _settings(optimizer: str, **changes) -> RegistrationSettings:
    return RegistrationSettings(similarity=DRIVERS[optimizer][0], optimizer=optimizer, levels=2, device="cpu", **changes)


def _pair(optimizer: str, seed: int, max_displacement_mm: float = 6.0, spacing_mm: float = 2.0):
    return make_pair(dim=2, moving_contrast=DRIVERS[optimizer][1], spacing_mm=spacing_mm, max_displacement_mm=max_displacement_mm, seed=seed)


@pytest.mark.parametrize("optimizer, error_fraction", [("discrete", 0.6), ("demons", 0.7)])  # measured: 0.32 and 0.61
def test_steps_follow_each_axis_in_mm(optimizer, error_fraction):
    """Rows twice as far apart as columns: the deformation is still recovered, so the steps
    follow each axis's own spacing."""
    pair = _pair(optimizer, seed=12, spacing_mm=1.5)
    coarse_y = (1.5, 3.0)
    fixed, moving = resample_to_spacing(pair.fixed, coarse_y), resample_to_spacing(pair.moving, coarse_y)
    truth = resample_to_spacing(pair.displacement, coarse_y)
    brain = resample_to_spacing(pair.fixed_labels, coarse_y, "nearest").array > 0
    result = register_pair(fixed, moving, _settings(optimizer))
    before = metrics.endpoint_error(truth.with_array(np.zeros_like(truth.array)), truth, brain)["mean"]
    assert metrics.endpoint_error(result.displacement, truth, brain)["mean"] < error_fraction * before


@pytest.mark.parametrize("optimizer, error_fraction", [("discrete", 0.6), ("demons", 0.7)])  # measured: 0.31 and 0.44
def test_masks_hold_the_optimiser_to_them(optimizer, error_fraction):
    pair = _pair(optimizer, seed=12)
    mask = np.zeros(pair.fixed.shape, np.uint8)
    mask[:, : pair.fixed.shape[1] // 2] = 1  # the left half only
    masked = register_pair(pair.fixed, pair.moving, _settings(optimizer), fixed_mask=pair.fixed.with_array(mask))
    free = register_pair(pair.fixed, pair.moving, _settings(optimizer))
    far_right = np.zeros(pair.fixed.shape, bool)
    far_right[:, -pair.fixed.shape[1] // 4 :] = True
    assert np.linalg.norm(masked.displacement.array[far_right], axis=-1).mean() < 0.5 * np.linalg.norm(free.displacement.array[far_right], axis=-1).mean()
    left_brain = (pair.fixed_labels.array > 0) & (mask > 0)
    assert brain_endpoint_error(masked.displacement, pair, left_brain) < error_fraction * unregistered_endpoint_error(pair, left_brain)


@pytest.mark.parametrize("optimizer", ["discrete", "demons"])
def test_diffeomorphic_mode_does_not_fold_a_large_deformation(optimizer):
    pair = _pair(optimizer, seed=14, max_displacement_mm=10.0)
    result = register_pair(pair.fixed, pair.moving, _settings(optimizer, diffeomorphic=True, smoothing_voxels=1.0))
    assert result.jacobian_determinant.array.min() > 0
    assert brain_endpoint_error(result.displacement, pair) < 0.7 * unregistered_endpoint_error(pair)  # measured: 0.37 and 0.43


@pytest.mark.parametrize("optimizer", ["discrete", "demons"])
def test_progress_and_cancel(optimizer):
    pair = _pair(optimizer, seed=15, max_displacement_mm=4.0, spacing_mm=4.0)
    settings = _settings(optimizer, demons_iterations=5)
    reports = []
    register_pair(pair.fixed, pair.moving, settings, progress=lambda done, total, values: reports.append((done, total)))
    steps = 2 * (len(settings.discrete_steps_voxels) if optimizer == "discrete" else settings.demons_iterations)
    assert reports == [(done, steps) for done in range(1, steps + 1)]
    calls = []
    with pytest.raises(Cancelled):
        register_pair(pair.fixed, pair.moving, settings, should_stop=lambda: calls.append(1) or len(calls) > 3)


@pytest.mark.parametrize("optimizer, refused", [("discrete", "mi"), ("demons", "mind")])
def test_command_line_runs_the_optimiser_and_refuses_what_it_cannot_use(tmp_path, optimizer, refused):
    from imse.cli import main
    from imse.image import read_image

    pair = _pair(optimizer, seed=16)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nii.gz"), write_image(pair.moving, tmp_path / "moving.nii.gz")
    out = tmp_path / "result"
    arguments = ["register", str(fixed), str(moving), "--optimizer", optimizer, "--device", "cpu"]
    assert main([*arguments, "--out", str(out), "--similarity", DRIVERS[optimizer][0]]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["optimizer"] == optimizer and summary["folding_percent"] == 0
    assert brain_endpoint_error(read_image(out / "displacement_mm.nii.gz"), pair) < 0.6 * unregistered_endpoint_error(pair)  # measured: 0.36 and 0.40
    with pytest.raises(SystemExit):
        main([*arguments, "--out", str(tmp_path / "refused"), "--similarity", refused])
    assert not (tmp_path / "refused").exists()
