"""Registration presets: complete, valid ``imse register`` settings that the command line
applies (options given on it still win) and that the panel offers per similarity."""

import json

import pytest

from imse.cli import build_parser, main
from imse.data import make_pair
from imse.image import read_image, write_image
from imse.models import find_model
from imse.presets import ENGINE_DEFAULTS, PRESET_OPTIONS, PRESETS, recommended_preset
from imse.register import RegistrationSettings

from conftest import brain_endpoint_error, unregistered_endpoint_error


def register_arguments(*extra: str) -> list[str]:
    return ["register", "fixed.nrrd", "moving.nrrd", "--out", "out", *extra]


def test_a_preset_names_every_option_and_otherwise_keeps_the_command_lines_defaults():
    defaults = vars(build_parser().parse_args(register_arguments()))
    for preset in PRESETS.values():
        assert set(preset.options) == set(PRESET_OPTIONS), preset.name
        assert all(name in defaults for name in preset.options), preset.name
    assert set(ENGINE_DEFAULTS) == set(PRESET_OPTIONS) - {"similarity"}
    assert ENGINE_DEFAULTS["levels"] == RegistrationSettings.levels and defaults["levels"] is None  # the command line's None means 3
    assert {name: value for name, value in ENGINE_DEFAULTS.items() if name != "levels"} == {name: defaults[name] for name in ENGINE_DEFAULTS if name != "levels"}


def test_the_command_line_starts_from_the_preset_and_explicit_options_win():
    parsed = build_parser().parse_args(register_arguments("--preset", "imse-2d"))
    assert parsed.preset == "imse-2d" and parsed.optimizer == "adam"  # main() parses again with the preset's defaults
    preset = PRESETS["imse-2d"].options
    parsed = build_parser(preset).parse_args(register_arguments("--preset", "imse-2d", "--demons-iterations", "5"))
    assert parsed.demons_iterations == 5
    assert (parsed.similarity, parsed.optimizer, parsed.flip_average, parsed.evaluator_rotation, parsed.evaluator_zoom) == ("imse", "demons", True, 60.0, 2.0)
    assert parsed.demons_max_step == preset["demons_max_step"] == 1.0


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_command_line_registers_with_the_settings_its_preset_translates_to(name, tmp_path, monkeypatch):
    """``RegistrationSettings.from_options`` is the one translation of options into settings:
    the command line's run of a preset gets exactly what it gives for the preset's options
    (which is what the registration benchmark's preset rows run)."""
    import imse.register

    class Captured(Exception):
        pass

    def capture(fixed, moving, settings, *arguments, **keywords):
        raise Captured(settings)

    dim = PRESETS[name].dims[-1]
    pair = make_pair(dim=dim, moving_contrast="t2", seed=3)
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nrrd")
    monkeypatch.setattr(imse.register, "register_pair", capture)
    with pytest.raises(Captured) as captured:
        main(["register", str(fixed), str(moving), "--out", str(tmp_path / "out"), "--preset", name, "--reference", "moving", "--device", "cpu"])
    expected = RegistrationSettings.from_options(PRESETS[name].options, reference="moving", device="cpu")
    assert captured.value.args[0] == expected
    options = PRESETS[name].options
    assert (expected.similarity, expected.optimizer, expected.levels, expected.demons_max_step_voxels) == (
        options["similarity"],
        options["optimizer"],
        options["levels"],
        options["demons_max_step"],
    )
    if options["similarity"] == "imse":
        assert expected.similarity_options == {
            "reference": "moving",
            "flip_average": options["flip_average"],
            "zoom": options["evaluator_zoom"],
            "rotation": options["evaluator_rotation"],
            "orientations": options["evaluator_orientations"],
            "slice_axes": options["evaluator_slice_axes"],
        }
    else:
        assert expected.similarity_options == {}  # the evaluator's options are IMSE's alone


def test_the_recommended_preset_follows_the_similarity_and_the_dimension():
    assert recommended_preset("imse", 2).name == "imse-2d"
    assert recommended_preset("imse", 3).name == "imse-3d"
    assert recommended_preset("mind", 3).name == "mind-search" and recommended_preset("mi", 2).name == "mi"
    assert recommended_preset("ncc", 2) is None and recommended_preset("mind+imse", 2) is None


def test_the_3d_preset_names_an_installed_2d_evaluator():
    """IMSE's best 3D row maps volumes slice by slice with the shipped 2D evaluator."""
    assert find_model(PRESETS["imse-3d"].options["model"], task="evaluator", dim=2).exists()


def register_with_preset(tmp_path, pair, preset: str, *options: str) -> tuple[dict, float]:
    """``imse register --preset PRESET`` on ``pair`` (files in ``tmp_path``): its metrics.json
    and the end-point error it leaves, as a fraction of the unregistered one."""
    fixed, moving = write_image(pair.fixed, tmp_path / "fixed.nrrd"), write_image(pair.moving, tmp_path / "moving.nrrd")
    out = tmp_path / "result"
    assert main(["register", str(fixed), str(moving), "--out", str(out), "--preset", preset, *options, "--device", "cpu"]) == 0
    error = brain_endpoint_error(read_image(out / "displacement_mm.nii.gz"), pair) / unregistered_endpoint_error(pair)
    return json.loads((out / "metrics.json").read_text()), error


def test_a_registration_with_the_imse_preset_records_it_and_improves_the_pair(tmp_path):
    pair = make_pair(dim=2, moving_contrast="t2", max_displacement_mm=5.0, seed=7)
    summary, error = register_with_preset(tmp_path, pair, "imse-2d", "--demons-iterations", "12", "--demons-average-last", "4")
    assert summary["preset"] == "imse-2d" and summary["similarity"] == "imse" and summary["optimizer"] == "demons"
    assert (summary["flip_average"], summary["evaluator_rotation_deg"], summary["evaluator_zoom"]) == (True, 60.0, 2.0)
    assert (summary["demons_iterations"], summary["demons_max_step_voxels"], summary["equalize_tissue"]) == (12, 1.0, True)
    assert (summary["evaluator_orientations"], summary["demons_average_last"], summary["evaluator_slice_axes"]) == ("cycle", 4, "first")
    assert error < 0.9


def test_the_3d_imse_preset_slices_volumes_across_every_axis_and_improves_them(tmp_path):
    pair = make_pair(dim=3, moving_contrast="t2", spacing_mm=3.0, seed=7)
    summary, error = register_with_preset(tmp_path, pair, "imse-3d", "--demons-iterations", "12", "--demons-average-last", "6")
    assert (summary["evaluator_slice_axes"], summary["evaluator_orientations"], summary["demons_iterations"]) == ("all", "cycle", 12)
    assert error < 0.9


def test_the_search_preset_masks_the_fixed_foreground(tmp_path):
    pair = make_pair(dim=2, moving_contrast="ct", max_displacement_mm=5.0, seed=7)
    summary, error = register_with_preset(tmp_path, pair, "mind-search")
    assert (summary["similarity"], summary["optimizer"], summary["fixed_mask"]) == ("mind", "discrete", "auto")
    assert (tmp_path / "result" / "fixed_mask_auto.nii.gz").exists()
    assert error < 0.8


def test_a_preset_refines_a_registration_network_s_result_with_its_steps(tmp_path, capsys):
    """With a registration network a preset sets the refinement, which --refine-iterations counts
    (the demons' steps for imse-2d); without them the preset would do nothing and is refused."""
    pair = make_pair(dim=2, moving_contrast="t2", max_displacement_mm=5.0, seed=9)
    summary, error = register_with_preset(tmp_path, pair, "imse-2d", "--model", "mni-t1-regnet-imse-2d", "--refine-iterations", "8", "--demons-average-last", "4")
    assert summary["mode"] == "network mni-t1-regnet-imse-2d + 8 refinement iterations" and summary["optimizer"] == "demons"
    assert (summary["demons_iterations"], summary["demons_average_last"], summary["evaluator_orientations"]) == (8, 4, "cycle")
    assert error < 0.95
    with pytest.raises(SystemExit) as exit_info:
        register_with_preset(tmp_path / "none", pair, "mi", "--model", "mni-t1-regnet-mind-2d")
    assert exit_info.value.code == 2 and not (tmp_path / "none" / "result").exists()
    assert "a preset sets how its result is refined: give --refine-iterations N" in capsys.readouterr().err
