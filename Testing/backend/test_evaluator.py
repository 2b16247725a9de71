"""Error maps and translation with geometry: outputs on the right grid, statistics, masks,
model choice, and the command line. The network here is untrained (geometry and plumbing
do not depend on its weights); what the shipped weights measure is in test_shipped_models.py."""

import json

import numpy as np
import pytest
import torch

from imse.cli import main
from imse.data import make_pair
from imse.errors import ImageError
from imse.evaluator import Evaluator, evaluator_dimension, installed_evaluator, load_evaluator, predict
from imse.geometry import Geometry
from imse.image import Image, read_image, resample_to, write_image
from imse.models import ModelCard, load_model, save_model
from imse.networks import build_network, evaluator_fits


@pytest.fixture(scope="module")
def untrained_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    for dim in (2, 3):
        torch.manual_seed(dim)
        card = ModelCard(f"untrained-{dim}d", "evaluator", "light", dim, "T1", {"percentiles": [0.5, 99.5]}, [32] * dim, float(dim))
        network = build_network("light", dim)
        torch.nn.init.normal_(network.head.weight, std=0.2)  # the zero-initialised head would output 0
        save_model(network, card, folder)
    return folder


@pytest.fixture(scope="module")
def pair_2d():
    return make_pair(dim=2, moving_contrast="pd", seed=5)


def evaluator(folder, dim):
    return Evaluator(load_model(folder / f"untrained-{dim}d.safetensors"))


def test_error_map_lies_on_the_fixed_grid_with_statistics(untrained_models, pair_2d):
    result = evaluator(untrained_models, 2).error_map(pair_2d.fixed, pair_2d.moving, mask=pair_2d.fixed_labels.array > 0)
    assert result.magnitude.geometry == pair_2d.fixed.geometry and result.magnitude.shape == pair_2d.fixed.shape
    assert result.magnitude.array.min() >= 0
    assert set(result.statistics) == {"image", "mask"}
    assert result.statistics["image"]["max"] >= result.statistics["image"]["p95"] >= result.statistics["image"]["median"]


def test_moving_image_on_another_grid_is_resampled_first(untrained_models, pair_2d):
    """A moving image given on a finer, shifted grid gives the map of the same content."""
    model = evaluator(untrained_models, 2)
    finer = Geometry((1.0, 1.0), tuple(np.array(pair_2d.fixed.geometry.origin) - 3.0 * np.diag(pair_2d.fixed.geometry.direction_matrix)), pair_2d.fixed.geometry.direction)
    moving_fine = resample_to(pair_2d.moving, Image(np.zeros((240, 180)), finer))
    direct = model.error_map(pair_2d.fixed, pair_2d.moving).magnitude.array
    via_fine = model.error_map(pair_2d.fixed, moving_fine).magnitude.array
    inside = pair_2d.fixed_labels.array > 0
    assert np.corrcoef(direct[inside], via_fine[inside])[0, 1] > 0.9


def test_images_at_another_spacing_are_evaluated_at_the_model_spacing(untrained_models):
    pair = make_pair(dim=2, spacing_mm=1.0, seed=2)  # model trained at 2 mm
    result = evaluator(untrained_models, 2).error_map(pair.fixed, pair.moving)
    assert result.magnitude.geometry == pair.fixed.geometry


def test_reference_choice_swaps_the_channels(untrained_models, pair_2d):
    model = evaluator(untrained_models, 2)
    as_fixed = model.error_map(pair_2d.fixed, pair_2d.moving, reference="fixed").magnitude.array
    as_moving = model.error_map(pair_2d.fixed, pair_2d.moving, reference="moving").magnitude.array
    assert not np.allclose(as_fixed, as_moving)
    with pytest.raises(ImageError, match="reference must be"):
        model.error_map(pair_2d.fixed, pair_2d.moving, reference="both")


def test_translation_keeps_the_source_grid_and_the_reference_range(untrained_models, pair_2d):
    translated = evaluator(untrained_models, 2).translate(pair_2d.moving, pair_2d.fixed)
    assert translated.geometry == pair_2d.moving.geometry
    low, high = np.percentile(pair_2d.fixed.array, [0.5, 99.5])
    assert low - 1e-3 <= translated.array.min() and translated.array.max() <= high + 1e-3


def test_dimension_mismatch_and_missing_models_are_clear(untrained_models, pair_2d, monkeypatch, tmp_path):
    with pytest.raises(ImageError, match="is 3D but the image is 2D"):
        evaluator(untrained_models, 3).error_map(pair_2d.fixed, pair_2d.moving)
    monkeypatch.setenv("IMSE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr("imse.models.model_directories", lambda: [tmp_path])
    with pytest.raises(ImageError, match="No 3D evaluator is installed"):
        Evaluator.load(dim=3)


def test_2d_evaluator_maps_a_volume_slice_by_slice(untrained_models):
    """Each slice of the volume's map is the 2D network on that slice, the volume having been
    normalised as a whole (so it equals the 2D map of a pair normalised the same way)."""
    pair = make_pair(dim=3, spacing_mm=6.0, seed=1)
    model = evaluator(untrained_models, 2)
    model.card.spacing_mm = 6.0  # no in-plane resampling: compare on the volume's own grid
    volume_map = model.error_map(pair.fixed, pair.moving).magnitude
    assert volume_map.geometry.isclose(pair.fixed.geometry)
    other = model._normalised(pair.moving, pair.fixed)[0]
    reference = model._normalised(pair.fixed, pair.fixed)[0]
    k = pair.fixed.shape[0] // 2
    expected = predict(model.network, other[:, :, k], reference[:, :, k]).abs()[0, 0].numpy()
    np.testing.assert_allclose(volume_map.array[k], expected, atol=1e-5)


class _BatchRecordingNetwork(torch.nn.Module):
    """A 2D "evaluator" whose output at each pixel is a sum over its slice (so slices that
    leaked into one another would show); it records the batch sizes it was given."""

    dim = 2
    size_multiple = 1

    def __init__(self) -> None:
        super().__init__()
        self.batches = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return x[:, :1] - x[:, 1:].mean(dim=(2, 3), keepdim=True)


def test_on_the_cpu_a_2d_network_maps_a_volume_one_slice_at_a_time():
    """One slice per call on the CPU (one batch of every slice made the allocator map and unmap
    its memory at every call), with the same result as the whole batch, and gradients."""
    network = _BatchRecordingNetwork()
    other, reference = torch.rand(2, 1, 5, 6, 7, requires_grad=True), torch.rand(2, 1, 5, 6, 7)
    error = predict(network, other, reference)
    assert network.batches == [1] * 10
    slices = lambda volume: volume.transpose(1, 2).reshape(10, 1, 6, 7)  # noqa: E731
    whole = network(torch.cat([slices(other), slices(reference)], 1)).reshape(2, 5, 1, 6, 7).transpose(1, 2)
    assert error.shape == other.shape and torch.allclose(error, whole)
    error.sum().backward()
    assert other.grad is not None and torch.equal(other.grad, torch.ones_like(other))


def test_3d_error_map_by_tiles_matches_the_grid(untrained_models):
    pair = make_pair(dim=3, spacing_mm=3.0, seed=4)
    result = evaluator(untrained_models, 3).error_map(pair.fixed, pair.moving, tile=32)
    assert result.magnitude.shape == pair.fixed.shape and np.isfinite(result.magnitude.array).all()


def test_command_line_error_map_and_translation(untrained_models, pair_2d, tmp_path, capsys):
    fixed = write_image(pair_2d.fixed, tmp_path / "fixed.nrrd")
    moving = write_image(pair_2d.moving, tmp_path / "moving.nii.gz")
    model = str(untrained_models / "untrained-2d.safetensors")
    assert main(["error-map", str(fixed), str(moving), "--out", str(tmp_path / "error.nii.gz"), "--model", model, "--device", "cpu"]) == 0
    error = read_image(tmp_path / "error.nii.gz")
    assert error.geometry.isclose(pair_2d.fixed.geometry)
    assert json.loads((tmp_path / "error-statistics.json").read_text())["image"]["mean"] >= 0
    assert main(["translate", str(moving), str(fixed), "--out", str(tmp_path / "translated.mha"), "--model", model]) == 0
    assert read_image(tmp_path / "translated.mha").geometry.isclose(pair_2d.moving.geometry)
    with pytest.raises(SystemExit) as exit_info:
        main(["error-map", str(fixed), str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "e.nii.gz"), "--model", model])
    assert exit_info.value.code == 2 and "No such file" in capsys.readouterr().err


def test_volumes_fall_back_to_the_2d_evaluator_only_when_asked(untrained_models, monkeypatch, tmp_path):
    """With only a 2D evaluator installed, 3D images get it (slice by slice) where the caller
    allows that, and none otherwise; a 2D network fits 3D images, a 3D one not 2D ones."""
    (tmp_path / "untrained-2d.safetensors").write_bytes((untrained_models / "untrained-2d.safetensors").read_bytes())
    (tmp_path / "untrained-2d.json").write_bytes((untrained_models / "untrained-2d.json").read_bytes())
    monkeypatch.setattr("imse.models.model_directories", lambda: [tmp_path])
    assert installed_evaluator(3) is None
    assert installed_evaluator(3, slicewise=True).card.name == "untrained-2d"
    assert installed_evaluator(2).card.name == "untrained-2d"
    assert load_evaluator(None, 3).card.name == load_evaluator("untrained-2d", 2).card.name == "untrained-2d"
    monkeypatch.setattr("imse.models.model_directories", lambda: [tmp_path / "empty"])
    with pytest.raises(ImageError, match="No 3D evaluator is installed"):
        load_evaluator("", 3)
    assert [evaluator_fits(network, image) for network, image in ((2, 2), (3, 3), (2, 3), (3, 2))] == [True, True, True, False]


def test_thin_volumes_get_the_2d_evaluator_and_thick_ones_the_3d_one(pair_2d):
    volume = make_pair(dim=3, spacing_mm=6.0, seed=1).fixed
    thin = Image(volume.array[:1], volume.geometry)  # one slice saved as a volume, as Slicer does
    assert [evaluator_dimension(image) for image in (pair_2d.fixed, thin, volume)] == [2, 2, 3]
