"""The registration benchmark's rows of ours are ``imse register`` options: its preset rows run
the presets as they are, and a row with an option the command line does not know is refused
(it would be ignored, and the row would measure something else than its name says)."""

import sys
from pathlib import Path

import pytest

from imse.presets import PRESET_OPTIONS, PRESETS

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
