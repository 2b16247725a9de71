"""IMSE Registration: Logic on the built-in pair, the panel with Apply and Cancel, the self-test."""

import numpy as np
import pytest

import slicer_standin


def _parameters(logic, nodes, **values):
    parameters = logic.getParameterNode()
    parameters.fixedVolume, parameters.movingVolume = nodes["fixed"], nodes["moving"]
    parameters.levels, parameters.iterations, parameters.device = 1, 30, "cpu"
    for name, value in values.items():
        setattr(parameters, name, value)
    return parameters


def _panel_with(nodes):
    """The module's widget, its panel showing the pair's fixed and moving volumes."""
    widget = slicer_standin.open_module("IMSERegistration")
    widget.ui.fixedVolumeSelector.setCurrentNode(nodes["fixed"])
    widget.ui.movingVolumeSelector.setCurrentNode(nodes["moving"])
    return widget


def test_logic_transform_reproduces_the_backend_warped_image(scene):
    """Setting the output transform on the moving volume resamples it onto the fixed grid as
    the backend's warped image does (the transform is "from parent" in Slicer)."""
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample
    from IMSESlicerLib.volumes import image_from_volume, world_image_from_volume

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    result = logic.registrationRun(_parameters(logic, nodes, similarity="MIND")).start().wait()
    assert nodes["moving"].GetParentTransformNode() is result.transform
    warped = image_from_volume(result.warped)
    fixed = image_from_volume(nodes["fixed"])
    assert warped.shape == fixed.shape
    np.testing.assert_allclose(warped.geometry.origin, fixed.geometry.origin, atol=1e-5)
    from imse.image import resample_to

    shown = resample_to(world_image_from_volume(nodes["moving"]), fixed)  # the moving volume through the new transform
    inside = fixed.array > 0
    difference = np.abs(shown.array - warped.array)[inside]
    assert np.median(difference) < 0.02 * np.percentile(warped.array[inside], 99)
    assert result.jacobian is not None and result.table is not None and result.lossPlot is not None
    assert any(row["quantity"] == "folding_percent" for row in result.rows)


def test_logic_gives_the_backend_the_combined_similarity_and_the_evaluators_reference(scene):
    """T1 moving onto a T2-like fixed volume with MIND + IMSE: the run asks the backend to put
    the moving volume in the evaluator's trained channel, and it registers."""
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    swapped = {"fixed": nodes["moving"], "moving": nodes["fixed"]}
    run = logic.registrationRun(_parameters(logic, swapped, similarity="MIND + IMSE", reference="moving", iterations=10))
    arguments = run.arguments
    assert arguments[arguments.index("--similarity") + 1] == "mind+imse"
    assert arguments[arguments.index("--reference") + 1] == "moving"
    result = run.start().wait()
    assert result.transform is not None and any(row["quantity"] == "imse_mean_error_after" for row in result.rows)


def test_logic_registers_on_the_grid_spacing_it_is_given(scene):
    """A grid spacing above 0 reaches the backend (0, the default, leaves the fixed grid), and
    the results come back on the fixed volume's grid."""
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample
    from IMSESlicerLib.volumes import image_from_volume

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    assert "--grid-spacing" not in logic.registrationRun(_parameters(logic, nodes, similarity="MIND")).arguments
    run = logic.registrationRun(_parameters(logic, nodes, similarity="MIND", gridSpacing=3.0))
    assert run.arguments[run.arguments.index("--grid-spacing") + 1] == "3.0"
    result = run.start().wait()
    assert image_from_volume(result.warped).shape == image_from_volume(nodes["fixed"]).shape
    assert float(next(row["value"] for row in result.rows if row["quantity"] == "grid_spacing_mm")) == 3.0


def test_logic_bad_input_says_what_to_do(scene):
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    with pytest.raises(ValueError, match="registration network"):
        logic.registrationRun(_parameters(logic, nodes, mode="network"))


def test_a_network_s_result_is_refined_for_the_demons_own_steps(scene):
    """In network mode the demons refine the network's result for their own number of steps
    (the backend counts --refine-iterations as demons steps), which the run records."""
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    values = dict(mode="network", model="mni-t1-regnet-imse-2d", similarity="IMSE", optimizer="demons", demonsIterations=6)
    run = logic.registrationRun(_parameters(logic, nodes, **values))
    assert run.arguments[run.arguments.index("--refine-iterations") + 1] == "6"
    result = run.start().wait()
    assert float(next(row["value"] for row in result.rows if row["quantity"] == "demons_iterations")) == 6
    adam = logic.registrationRun(_parameters(logic, nodes, **{**values, "optimizer": "gradient (Adam)"}))
    assert adam.arguments[adam.arguments.index("--refine-iterations") + 1] == "30"  # Adam's: the iterations box


def test_discrete_search_from_the_logic_and_the_panel(scene):
    """The logic hands the discrete optimiser and the automatic fixed mask to the backend, and
    the mask comes back as a label map; the panel greys out what the search ignores and will
    not start it with MI."""
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample
    from IMSESlicerLib.volumes import image_from_volume

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    run = logic.registrationRun(_parameters(logic, nodes, similarity="MIND", optimizer="discrete search", regularizationWeight=2.0, autoFixedMask=True))
    arguments = run.arguments
    assert arguments[arguments.index("--optimizer") + 1] == "discrete" and "--regularization-weight" not in arguments
    assert arguments[arguments.index("--fixed-mask") + 1] == "auto"
    result = run.start().wait()
    assert float(next(row["value"] for row in result.rows if row["quantity"] == "folding_percent")) == 0
    assert result.fixedMask.IsA("vtkMRMLLabelMapVolumeNode")
    mask = image_from_volume(result.fixedMask).array
    fixed = image_from_volume(nodes["fixed"]).array
    assert mask.shape == fixed.shape and 0.2 < mask.mean() < 0.9  # the head, not the whole field of view
    with pytest.raises(ValueError, match="voxel by voxel"):
        logic.registrationRun(_parameters(logic, nodes, similarity="MI", optimizer="discrete search"))

    widget = _panel_with(nodes)
    ui = widget.ui
    assert not ui.applyButton.enabled  # the panel shows the logic's last choices: MI with the discrete search
    ui.optimizerComboBox.currentIndex = ui.optimizerComboBox.findText("gradient (Adam)")
    assert ui.applyButton.enabled and ui.regularizationSpinBox.enabled and ui.iterationsSpinBox.enabled
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("MIND")
    ui.optimizerComboBox.currentIndex = ui.optimizerComboBox.findText("discrete search")
    assert ui.applyButton.enabled and not ui.regularizationSpinBox.enabled and not ui.iterationsSpinBox.enabled
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("MI")
    assert not ui.applyButton.enabled and "voxel by voxel" in ui.applyButton.toolTip
    assert ui.gridSpacingSpinBox.enabled
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("AdaCS")
    assert not ui.gridSpacingSpinBox.enabled  # AdaCS registers on its own grid


def test_imse_demons_from_the_logic_and_the_panel(scene):
    """The logic hands the demons to the backend, which registers the built-in pair with the
    evaluator's residual (its own measure of the misalignment falls); the panel offers the
    demons with IMSE and MSE only, and greys out what they ignore."""
    from IMSERegistration import IMSERegistrationLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSERegistrationLogic()
    best = dict(similarity="IMSE", optimizer="demons", gridSpacing=2.0, flipAverage=True, evaluatorRotation=60.0, evaluatorZoom=2.0, demonsIterations=30, demonsMaxStep=1.0)
    run = logic.registrationRun(_parameters(logic, nodes, **best))
    arguments = run.arguments
    assert arguments[arguments.index("--optimizer") + 1] == "demons" and "--flip-average" in arguments
    assert arguments[arguments.index("--evaluator-zoom") + 1] == "2.0" and arguments[arguments.index("--evaluator-rotation") + 1] == "60.0"
    assert arguments[arguments.index("--demons-iterations") + 1] == "30" and arguments[arguments.index("--demons-max-step") + 1] == "1.0"
    rows = {row["quantity"]: row["value"] for row in run.start().wait().rows}
    assert str(rows["flip_average"]) == "True" and float(rows["evaluator_zoom"]) == 2.0 and float(rows["evaluator_rotation_deg"]) == 60.0
    assert int(rows["demons_iterations"]) == 30 and float(rows["demons_max_step_voxels"]) == 1.0
    assert float(rows["imse_mean_error_after"]) < 0.25 * float(rows["imse_mean_error_before"])  # measured: 0.048 -> 0.0011 (0.013 in 20 half-voxel steps)
    mind = logic.registrationRun(_parameters(logic, nodes, similarity="MIND", optimizer="gradient (Adam)", flipAverage=True, evaluatorRotation=45.0, evaluatorZoom=2.0))
    assert not {"--flip-average", "--evaluator-rotation", "--evaluator-zoom", "--demons-max-step"} & set(mind.arguments)
    with pytest.raises(ValueError, match="residual"):
        logic.registrationRun(_parameters(logic, nodes, similarity="MIND", optimizer="demons"))

    widget = _panel_with(nodes)
    ui = widget.ui
    assert not ui.applyButton.enabled and "residual" in ui.applyButton.toolTip  # the logic's last choices: MIND with the demons
    assert not ui.flipAverageCheckBox.enabled and not ui.evaluatorZoomSpinBox.enabled and not ui.evaluatorRotationSpinBox.enabled  # MIND has no evaluator
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("IMSE")
    assert ui.applyButton.enabled and not ui.regularizationSpinBox.enabled and not ui.iterationsSpinBox.enabled
    assert ui.flipAverageCheckBox.enabled and ui.evaluatorZoomSpinBox.enabled and ui.evaluatorRotationSpinBox.enabled
    ui.evaluatorRotationSpinBox.value = 30.0
    assert widget._parameterNode.evaluatorRotation == 30.0
    assert ui.demonsIterationsSpinBox.enabled and ui.demonsMaxStepSpinBox.enabled
    ui.demonsMaxStepSpinBox.value = 0.75
    assert widget._parameterNode.demonsMaxStep == 0.75  # the box sets the parameter the logic reads
    ui.optimizerComboBox.currentIndex = ui.optimizerComboBox.findText("gradient (Adam)")
    assert not ui.demonsIterationsSpinBox.enabled and not ui.demonsMaxStepSpinBox.enabled  # Adam has no demons steps
    ui.optimizerComboBox.currentIndex = ui.optimizerComboBox.findText("demons")
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("MIND + IMSE")
    assert not ui.applyButton.enabled


def test_recommended_settings_fill_the_panel_as_the_command_lines_presets_do(scene):
    """The button sets every option to the preset of the chosen similarity (IMSE: of 2D or 3D
    volumes, by the fixed volume), the boxes show it, and the logic hands the backend exactly
    the preset's options; without a preset (NCC) the button is off."""
    from imse.cli import build_parser
    from imse.presets import PRESET_OPTIONS, PRESETS
    from IMSESlicerLib.sample_data import load_sample

    def backend_options(widget) -> dict:
        parsed = vars(build_parser().parse_args(widget.logic.registrationRun(widget._parameterNode).arguments))
        return {name: parsed[name] for name in PRESET_OPTIONS}

    pair2d, pair3d = load_sample(scene, "IMSE brain pair 2D"), load_sample(scene, "IMSE brain pair 3D")
    widget = _panel_with(pair2d)
    ui = widget.ui
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("NCC")
    assert not ui.recommendedButton.enabled
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("IMSE")
    assert ui.recommendedButton.enabled and "imse-2d" in ui.recommendedButton.toolTip  # the 2D pair is one slice
    ui.recommendedButton.click()
    assert ui.optimizerComboBox.currentText == "demons" and ui.levelsSpinBox.value == 1
    assert ui.flipAverageCheckBox.checked and ui.evaluatorZoomSpinBox.value == 2.0 and ui.evaluatorRotationSpinBox.value == 60.0
    assert ui.demonsIterationsSpinBox.value == 60 and ui.demonsMaxStepSpinBox.value == 1.0 and "imse-2d" in ui.statusLabel.text
    assert ui.cycleOrientationsCheckBox.checked and ui.cycleOrientationsCheckBox.enabled and ui.demonsAverageLastSpinBox.value == 12
    assert backend_options(widget) == PRESETS["imse-2d"].options

    ui.fixedVolumeSelector.setCurrentNode(pair3d["fixed"])
    ui.movingVolumeSelector.setCurrentNode(pair3d["moving"])
    assert "imse-3d" in ui.recommendedButton.toolTip
    ui.recommendedButton.click()
    assert ui.evaluatorComboBox.itemData(ui.evaluatorComboBox.currentIndex) == "mni-t1-light-2d" and ui.evaluatorRotationSpinBox.value == 0.0  # slice by slice, no turns
    assert ui.sliceAllAxesCheckBox.checked and ui.sliceAllAxesCheckBox.enabled  # across every axis of the volumes
    assert backend_options(widget) == PRESETS["imse-3d"].options

    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("MIND")
    ui.recommendedButton.click()
    assert ui.optimizerComboBox.currentText == "discrete search" and ui.autoFixedMaskCheckBox.checked
    assert ui.evaluatorComboBox.itemData(ui.evaluatorComboBox.currentIndex) == "" and not ui.flipAverageCheckBox.checked  # back to the defaults
    assert backend_options(widget) == PRESETS["mind-search"].options


def test_panel_registers_and_cancel_leaves_nothing(scene, screenshots):
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    widget = _panel_with(nodes)
    ui = widget.ui
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    ui.levelsSpinBox.value = 1
    assert not ui.referenceComboBox.enabled  # MIND does not use the evaluator
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("MIND + IMSE")
    assert ui.referenceComboBox.enabled
    ui.similarityComboBox.currentIndex = ui.similarityComboBox.findText("MIND")
    ui.iterationsSpinBox.value = 5000  # long: cancelled below
    ui.applyTransformCheckBox.checked = False
    volumes_before = scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")
    transforms_before = scene.GetNumberOfNodesByClass("vtkMRMLTransformNode")

    ui.applyButton.click()
    assert widget.controller.running and ui.applyButton.text == "Cancel"
    run = widget.controller.run
    slicer_standin.app_process_events()
    ui.applyButton.click()  # Cancel
    slicer_standin.wait_for_run(widget)
    assert run.cancelled and not run.workspace.folder.exists()
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == volumes_before
    assert scene.GetNumberOfNodesByClass("vtkMRMLTransformNode") == transforms_before
    assert "Cancelled" in ui.statusLabel.text and ui.applyButton.text == "Register"

    ui.iterationsSpinBox.value = 30
    ui.applyButton.click()
    slicer_standin.wait_for_run(widget)
    assert widget.controller.run is None and "Registered with MIND" in ui.statusLabel.text, ui.statusLabel.text
    assert scene.GetFirstNodeByName(f"{nodes['moving'].GetName()} registered") is not None
    assert scene.GetFirstNodeByName(f"{nodes['moving'].GetName()} registration transform") is not None
    assert ui.metricsTable.rowCount >= 3
    assert nodes["moving"].GetParentTransformNode() is None  # "apply" was unticked
    slicer_standin.screenshot(widget, screenshots / "IMSERegistration.png")


def test_self_test_passes_in_the_stand_in(scene):
    import slicer

    slicer_standin.open_module("IMSERegistration")
    slicer.selfTests["IMSERegistration"]()


def test_closing_the_scene_cancels_a_running_registration(scene):
    import slicer

    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    widget = _panel_with(nodes)
    widget.ui.iterationsSpinBox.value = 5000
    widget.ui.applyButton.click()
    run = widget.controller.run
    slicer.mrmlScene.Clear(0)  # File > Close Scene
    assert not widget.controller.running and run.cancelled and not run.workspace.folder.exists()
