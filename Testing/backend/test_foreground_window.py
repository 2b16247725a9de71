"""The registration engine's intensity window: tissue keeps its contrast when the background
lies far below it (CT), or is histogram-equalised on request, and nothing changes for MR-like
images."""

import numpy as np
import pytest

from imse import metrics
from imse.data import make_pair
from imse.data.pairs import _pair_atlas
from imse.data.contrasts import synthesize_contrast
from imse.image import (
    EQUALIZED_TISSUE_LOW,
    equalize_tissue,
    far_background_threshold,
    foreground_window,
    intensity_window,
    normalize_for_registration,
    normalize_intensity,
)
from imse.register import RegistrationSettings, register_pair


@pytest.fixture(scope="module")
def atlas():
    return _pair_atlas(2, 3.0, "axial", None)


@pytest.mark.parametrize("contrast", ["t1", "t2", "pd"])
def test_mr_like_images_keep_the_plain_percentile_window(atlas, contrast):
    image = synthesize_contrast(atlas, contrast, seed=1)
    assert foreground_window(image) == intensity_window(image)


def test_ct_tissue_spans_the_range_instead_of_a_few_percent(atlas):
    ct = synthesize_contrast(atlas, "ct", seed=1)
    brain = atlas.labels.array > 0

    def spread(image) -> float:  # range covered by the middle 90 % of the brain's values
        low, high = np.percentile(image.array[brain], [5, 95])
        return float(high - low)

    windowed = normalize_intensity(ct, window=foreground_window(ct))
    assert spread(normalize_intensity(ct)) < 0.15  # squeezed into about two bins of a 32-bin histogram
    assert spread(windowed) > 0.6
    assert np.median(windowed.array[atlas.labels.array == 0]) == -1.0  # air clips to the low end
    assert ct.array.min() < -900  # the input is untouched


def test_mutual_information_registers_a_ct_pair(atlas):
    pair = make_pair(dim=2, fixed_contrast="t1", moving_contrast="ct", spacing_mm=3.0, max_displacement_mm=6.0, seed=5)
    result = register_pair(pair.fixed, pair.moving, RegistrationSettings(similarity="mi", levels=2, iterations=80, device="cpu"))
    brain = pair.fixed_labels.array > 0
    zero = pair.displacement.with_array(np.zeros_like(pair.displacement.array))
    before = metrics.endpoint_error(zero, pair.displacement, brain)["mean"]
    assert metrics.endpoint_error(result.displacement, pair.displacement, brain)["mean"] < 0.75 * before


def test_imse_registers_a_ct_pair_whose_air_clips_to_the_window(atlas):
    """Smoothing the clipped air for the pyramid must not leave values outside [-1, 1], which
    the evaluator refuses."""
    from imse.evaluator import installed_evaluator

    evaluator = installed_evaluator(2)
    if evaluator is None:
        pytest.skip("no 2D evaluator installed")
    pair = make_pair(dim=2, fixed_contrast="t1", moving_contrast="ct", spacing_mm=3.0, max_displacement_mm=6.0, seed=5)
    settings = RegistrationSettings(similarity="imse", levels=2, iterations=3, device="cpu")
    result = register_pair(pair.fixed, pair.moving, settings, evaluator=evaluator)
    assert np.isfinite(result.displacement.array).all()


@pytest.mark.parametrize("contrast", ["t1", "t2", "pd"])
def test_mr_like_images_are_not_equalized(atlas, contrast):
    image = synthesize_contrast(atlas, contrast, seed=1)
    assert equalize_tissue(image) is None
    np.testing.assert_array_equal(normalize_for_registration(image, equalize=True).array, normalize_for_registration(image).array)


def test_ct_tissue_equalized_is_a_monotone_map_onto_an_even_spread(atlas):
    ct = synthesize_contrast(atlas, "ct", seed=1)
    original = ct.array.copy()
    equalized = equalize_tissue(ct)
    assert equalized.geometry == ct.geometry and equalized.array.dtype == np.float32
    tissue = ct.array > far_background_threshold(ct)
    assert np.all(equalized.array[~tissue] == -1.0)  # air
    values = equalized.array[tissue]
    assert values.min() == pytest.approx(EQUALIZED_TISSUE_LOW) and values.max() == pytest.approx(1.0)
    order = np.argsort(ct.array[tissue], kind="stable")
    assert np.all(np.diff(values[order]) > 0)  # brighter tissue stays brighter
    deciles = np.percentile(values, np.arange(10, 100, 10))  # an even spread: each tenth of the voxels a tenth of the range
    np.testing.assert_allclose(deciles, EQUALIZED_TISSUE_LOW + (1 - EQUALIZED_TISSUE_LOW) * np.arange(1, 10) / 10, atol=0.01)
    grey, white = (np.median(equalized.array[atlas.labels.array == label]) for label in (2, 3))
    assert grey > white + 0.3  # CT's grey matter (40 HU) above its white (27 HU), now far apart
    np.testing.assert_array_equal(ct.array, original)  # the input is untouched
    np.testing.assert_array_equal(normalize_for_registration(ct, equalize=True).array, equalized.array)  # what the engine compares


def test_imse_registers_a_ct_pair_with_its_tissue_equalized(tmp_path):
    """The command line's --equalize-tissue reaches the engine (recorded in metrics.json), and
    IMSE's demons then register a CT-like pair."""
    import json

    from imse.cli import main
    from imse.image import read_image, write_image

    pair = make_pair(dim=2, fixed_contrast="t1", moving_contrast="ct", max_displacement_mm=6.0, seed=5)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nrrd")
    out = tmp_path / "result"
    options = ["--similarity", "imse", "--optimizer", "demons", "--levels", "1", "--flip-average", "--evaluator-zoom", "2", "--demons-max-step", "1"]
    assert main(["register", str(fixed), str(moving), "--out", str(out), *options, "--equalize-tissue", "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["equalize_tissue"] is True
    brain = pair.fixed_labels.array > 0
    zero = pair.displacement.with_array(np.zeros_like(pair.displacement.array))
    before = metrics.endpoint_error(zero, pair.displacement, brain)["mean"]
    assert metrics.endpoint_error(read_image(out / "displacement_mm.nii.gz"), pair.displacement, brain)["mean"] < 0.75 * before
