"""The registration benchmark's rows of ours are ``imse register`` options: its preset rows run
the presets as they are, and a row with an option the command line does not know is refused
(it would be ignored, and the row would measure something else than its name says); each
network row finds its own kind of network."""

import sys
from pathlib import Path

import pytest
import torch

import imse.models
from imse.data import make_pair
from imse.evaluator import load_evaluator
from imse.metrics import endpoint_error
from imse.presets import PRESET_OPTIONS, PRESETS
from imse.registration_network import RegistrationNetwork, save_registration_network

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # the benchmark scripts are not a package
import bench_registration


@pytest.mark.parametrize("dim", [2, 3])
def test_every_row_of_ours_is_a_complete_set_of_command_line_options(dim):
    for name, row in bench_registration.OURS.items():
        options, dims = bench_registration.row_options(dim, row)
        assert set(options) == set(PRESET_OPTIONS), name
        if "preset" in row:
            assert (options, dims) == (PRESETS[row["preset"]].options, PRESETS[row["preset"]].dims), name
        else:  # the benchmark's pyramid where the row says nothing
            setup = bench_registration.SETUPS[dim]
            assert options["levels"] == row.get("levels", setup["levels"]) and options["iterations"] == setup["iterations"], name


def test_each_preset_has_its_row_in_the_benchmark():
    presets = {row["preset"] for row in bench_registration.OURS.values() if "preset" in row}
    assert presets == set(PRESETS)


def test_a_row_with_an_unknown_option_is_refused():
    with pytest.raises(ValueError, match="grid_spacing_mm"):
        bench_registration.row_options(2, {"similarity": "mi", "grid_spacing_mm": 1.5})


def brain_endpoint_error(displacement, pair) -> float:
    return endpoint_error(displacement, pair.displacement, pair.fixed_labels.array > 0)["mean"]


def test_each_network_row_registers_with_its_own_kind_of_network(tmp_path, monkeypatch):
    """The network rows pick the installed IMSE network trained with the IMSE loss, and the one
    taught by the imse-2d preset, apart (a row with no such network says so); the refined row
    runs the teacher's demons on the network's result."""
    evaluator = load_evaluator(None, 2)  # the shipped one, before only tmp_path holds models
    monkeypatch.setattr(imse.models, "model_directories", lambda: [tmp_path])
    assert "no 2D registration model taught by the imse-2d preset" in bench_registration.network_method(2, teacher="imse-2d")
    network = RegistrationNetwork(2, spacing_mm=4.0)
    with torch.no_grad():
        network.unet.head.bias.copy_(torch.tensor([1.0, 0.0]))  # one voxel (4 mm) along the first index axis
    save_registration_network(network, tmp_path, "taught", {"similarity": "imse", "teacher": "imse-2d"})
    assert "no 2D registration model trained with the IMSE loss" in bench_registration.network_method(2)
    pair = make_pair(2, "t1", "t2", spacing_mm=4.0, seed=3)
    displacement, _ = bench_registration.network_method(2, teacher="imse-2d")(pair)
    assert float(abs(displacement.array).mean(axis=(0, 1))[0]) == pytest.approx(4.0) and abs(displacement.array[..., 1]).max() < 1e-4
    refined, _ = bench_registration.network_method(2, "imse-2d", evaluator)(pair)  # the teacher's demons undo the shift
    assert brain_endpoint_error(refined, pair) < 0.7 * brain_endpoint_error(displacement, pair)
