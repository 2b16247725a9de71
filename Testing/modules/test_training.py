"""IMSE Training: short trainings of each kind that join a temporary model library, the panel
as a user drives it (live loss plot, Cancel that leaves nothing), its self-test, and the small
bridge and backend pieces it added (user model folder, table rows appended, run end hook)."""

import json
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import slicer_standin

TINY_EVALUATOR = dict(iterations=3, patchSize=32, batchSize=2, device="cpu")


@pytest.fixture
def library(tmp_path, monkeypatch) -> Path:
    """An empty user model library for the test (the child processes inherit it)."""
    folder = tmp_path / "library"
    monkeypatch.setenv("IMSE_MODEL_DIR", str(folder))
    return folder


def _training_folders() -> set[str]:
    return {path.name for path in Path(tempfile.gettempdir()).glob("imse-training-*")}


def _wait_until(condition, seconds: float = 180.0) -> None:
    """Process Qt events (the run controller's timer) until ``condition()`` holds."""
    import slicer

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the training"
        slicer.app.processEvents()
        time.sleep(0.05)


def test_user_model_directory_is_the_library_the_registry_reads(tmp_path, monkeypatch):
    from imse.models import model_directories, user_model_directory

    monkeypatch.setenv("IMSE_MODEL_DIR", str(tmp_path))
    assert user_model_directory() == tmp_path and model_directories()[-1] == tmp_path
    monkeypatch.delenv("IMSE_MODEL_DIR")
    assert user_model_directory() == Path.home() / ".imse" / "models"
    monkeypatch.setenv("IMSE_MODEL_DIR", "")  # set but empty: the default, not the working folder
    assert user_model_directory() == Path.home() / ".imse" / "models"


def test_append_row_fills_columns_the_row_lacks(scene):
    from IMSESlicerLib.tables import append_row, table_from_rows

    node = table_from_rows(scene, [{"iteration": 1, "loss": 0.5, "phase": "warm-up"}], "curve")
    append_row(node, {"iteration": 2, "loss": 0.25, "not a column": 7})
    table = node.GetTable()
    assert node.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == 3
    assert table.GetValue(1, 1).ToDouble() == 0.25 and table.GetValue(1, 2).ToString() == ""
    append_row(node, {"iteration": 3, "phase": "scoring"})
    assert math.isnan(table.GetValue(2, 1).ToDouble()) and table.GetValue(2, 2).ToString() == "scoring"


def test_logic_trains_an_evaluator_on_a_volume_and_it_joins_the_library(scene, library, capsys):
    import slicer

    from imse.cli import main
    from imse.models import list_models, load_model
    from IMSESlicerLib.sample_data import load_sample
    from IMSETraining import IMSETrainingLogic

    nodes = load_sample(scene, "IMSE brain pair 2D")
    before = slicer.util.arrayFromVolume(nodes["fixed"]).copy()
    run = IMSETrainingLogic().train("evaluator", volumes=[nodes["fixed"]], name="tiny-t1", modality="T1", **TINY_EVALUATOR)
    assert run.arguments[0] == "train-evaluator" and run.arguments[run.arguments.index("--patch-size") + 1 :][:2] == ["32", "32"]
    result = run.start().wait()

    assert result.weights == library / "tiny-t1.safetensors"
    assert sorted(path.name for path in library.iterdir()) == ["tiny-t1.json", "tiny-t1.safetensors"]  # no checkpoint, no partial file
    assert [card.name for _, card in list_models(task="evaluator", dim=2)][-1] == "tiny-t1"
    assert result.card.modality == "T1" and result.card.training["iterations"] == 3
    assert "MNI 2D T1 fixed" in result.card.training["data"]  # the volume's name reaches the model card
    assert load_model(result.weights).card.name == "tiny-t1"
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "tiny-t1: evaluator, 2D light, modality T1" in capsys.readouterr().out

    assert [row["iteration"] for row in result.curve] == [1, 2, 3]
    assert all(np.isfinite(row["loss"]) and row["loss"] > 0 for row in result.curve)
    assert result.chart.GetScene() is scene and result.chart.GetName() == "tiny-t1 training loss"
    assert result.table.GetNumberOfRows() == 3 and result.table.GetTable().GetColumnByName("validation") is not None
    assert "tiny-t1" in result.summary and "joined the model library" in result.summary
    assert not run.workspace.folder.exists()
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes["fixed"]), before)


def test_logic_trains_a_registration_network_on_built_in_pairs(scene, library):
    from imse.models import list_models
    from IMSETraining import IMSETrainingLogic

    run = IMSETrainingLogic().train(
        "registration", name="tiny-registration", similarity="mind", iterations=2, spacing=4.0, patchSize=48, batchSize=2,
        device="cpu", extraArguments=["--pool-size", "3", "--validation-every", "2"], scene=scene,
    )  # fmt: skip
    result = run.start().wait()
    assert result.card.task == "registration" and result.card.spacing_mm == 4.0
    assert "tiny-registration" in [card.name for _, card in list_models(task="registration")]
    assert result.table.GetNumberOfRows() == 2 and result.table.GetTable().GetColumnByName("validation_endpoint_error_mm") is not None


def test_logic_trains_adacs_on_a_cine_sequence(scene, library):
    from imse.models import list_models
    from IMSESlicerLib.sample_data import load_sample
    from IMSETraining import IMSETrainingLogic

    nodes = load_sample(scene, "LV phantom cine")
    run = IMSETrainingLogic().train("adacs", cine=nodes["cine"], name="tiny-adacs", iterations=6, batchSize=2, device="cpu")
    assert run.arguments[run.arguments.index("--displacement-warmup") + 1] == "1"
    result = run.start().wait()
    assert result.card.task == "adacs" and result.card.patch_size == [96, 96]  # the phantom's frames, whole
    assert "tiny-adacs" in [card.name for _, card in list_models(task="adacs")]
    assert {row["phase"] for row in result.curve} == {"displacement", "scoring"}
    assert result.table.GetTable().GetColumnByName("phase").GetValue(5) == result.curve[5]["phase"]


def test_bad_requests_are_refused_before_anything_starts(scene, library):
    from imse.errors import ImageError
    from imse.models import ModelCard
    from IMSESlicerLib.sample_data import load_sample
    from IMSETraining import IMSETrainingLogic

    logic = IMSETrainingLogic()
    nodes = load_sample(scene, "IMSE brain pair 2D")
    folders = _training_folders()
    with pytest.raises(ImageError, match="already in the library"):
        logic.train("evaluator", name="mni-t1-light-2d")  # a shipped model's name
    with pytest.raises(ImageError, match="cannot name a model"):
        logic.train("evaluator", name="../escape")
    with pytest.raises(ImageError, match="single slice"):
        logic.train("evaluator", volumes=[nodes["fixed"]], dimension=3)
    with pytest.raises(ImageError, match="whole frames"):
        logic.train("adacs", patchSize=32)
    with pytest.raises(ImageError, match="evaluator only"):
        logic.train("registration", volumes=[nodes["fixed"]])
    with pytest.raises(ImageError, match="Unknown training task"):
        logic.train("segmentation")
    assert _training_folders() == folders  # no temporary folder left behind
    assert not library.exists()

    assert logic.automaticName("evaluator") == "evaluator-1"
    library.mkdir()
    card = ModelCard("evaluator-1", "evaluator", "light", 2, "T1", {}, [32, 32], 2.0)
    (library / "evaluator-1.json").write_text(json.dumps(asdict(card)))
    (library / "evaluator-1.safetensors").write_bytes(b"")
    assert logic.automaticName("evaluator") == "evaluator-2"

    defaults = logic.train("adacs", iterations=600, maxMinutes=2.5)  # the built-in echo cine; warm-ups scale with the iterations
    assert defaults.arguments[:3] == ["adacs", "train", "echo"] and defaults.arguments[defaults.arguments.index("--time-limit") + 1] == "2.5"
    assert defaults.arguments[defaults.arguments.index("--scoring-warmup") + 1] == "100"
    assert defaults.arguments[defaults.arguments.index("--name") + 1] == "adacs-1"
    defaults.workspace.remove()
    builtin = logic.train("evaluator", modality="CT")  # no volume: the built-in MNI T1, whatever the modality field says
    assert builtin.arguments[:3] == ["train-evaluator", "--dim", "2"] and builtin.arguments[builtin.arguments.index("--modality") + 1] == "T1"
    builtin.workspace.remove()


def _choose(combo, text: str) -> None:
    combo.currentIndex = combo.findText(text)


def test_panel_trains_with_a_live_loss_plot_and_lists_the_new_model(scene, library, screenshots):
    from imse.models import list_models
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    widget = slicer_standin.open_module("IMSETraining")
    ui = widget.ui
    assert ui.libraryLabel.text == str(library)
    assert ui.modelNameLineEdit.placeholderText == "automatic: evaluator-1"
    _choose(ui.taskComboBox, "adacs")
    assert not ui.evaluatorDataCollapsibleButton.visible and ui.adacsDataCollapsibleButton.visible and not ui.dimensionComboBox.enabled
    _choose(ui.taskComboBox, "evaluator")
    assert ui.evaluatorDataCollapsibleButton.visible and not ui.adacsDataCollapsibleButton.visible and ui.dimensionComboBox.enabled
    ui.trainingVolumesComboBox.check(nodes["fixed"])
    ui.modelNameLineEdit.text = "panel-t1"
    ui.iterationsSpinBox.value = 4
    ui.patchSizeSpinBox.value = 32
    ui.batchSizeSpinBox.value = 2
    _choose(ui.deviceComboBox, "cpu")
    parameters = widget._parameterNode
    assert (parameters.modelName, parameters.iterations, parameters.patchSize, parameters.device) == ("panel-t1", 4, 32, "cpu")

    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    _wait_until(lambda: not widget.controller.running)
    assert ui.applyButton.text == "Train", ui.statusLabel.text
    assert "panel-t1" in ui.statusLabel.text and "joined the model library" in ui.statusLabel.text and "final loss" in ui.statusLabel.text
    assert ui.resultTable.rowCount == 4 and ui.resultTable.horizontalHeaderItem(1).text() == "loss"
    assert [card.name for _, card in list_models(task="evaluator")][-1] == "panel-t1"
    assert ui.evaluatorComboBox.findData("panel-t1") >= 0  # the model lists were refreshed
    chart = scene.GetFirstNodeByName("panel-t1 training loss")
    assert chart is not None and chart.GetNthPlotSeriesNode(0).GetTableNode().GetNumberOfRows() == 4
    assert ui.modelNameLineEdit.text == "" and ui.modelNameLineEdit.placeholderText == "automatic: evaluator-1"  # ready for another run
    slicer_standin.screenshot(widget, screenshots / "IMSETraining.png")


def test_panel_cancel_leaves_no_model_no_plot_and_no_folder(scene, library):
    widget = slicer_standin.open_module("IMSETraining")
    ui = widget.ui
    _choose(ui.taskComboBox, "evaluator")
    ui.modelNameLineEdit.text = "cancelled"
    ui.iterationsSpinBox.value = 100000
    ui.patchSizeSpinBox.value = 32
    ui.batchSizeSpinBox.value = 2
    _choose(ui.deviceComboBox, "cpu")
    ui.applyButton.click()
    workspace = widget.controller.run.workspace.folder
    _wait_until(lambda: ui.progressBar.value >= 2)  # training is under way (on the built-in MNI T1)
    chart = scene.GetFirstNodeByName("cancelled training loss")
    assert chart is not None and chart.GetNthPlotSeriesNode(0).GetTableNode().GetNumberOfRows() >= 2  # the plot is live
    assert workspace.exists()

    ui.applyButton.click()  # Cancel
    _wait_until(lambda: not widget.controller.running, 60)
    assert ui.statusLabel.text.startswith("Cancelled")
    assert ui.applyButton.text == "Train"
    assert not workspace.exists()
    assert not library.exists() or not any(library.iterdir())
    for kind in ("vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode", "vtkMRMLTableNode"):
        assert scene.GetNumberOfNodesByClass(kind) == 0, kind


def test_self_test_passes_in_the_stand_in(scene, library):
    import slicer

    slicer_standin.open_module("IMSETraining")
    slicer.selfTests["IMSETraining"]()
    assert not library.exists()  # the self-test used its own temporary library
