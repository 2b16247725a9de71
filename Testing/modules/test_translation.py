"""IMSE Translation: Logic on the built-in pair with a T1 ground truth, geometry as shown in the
scene, bad input, the panel with Apply and Cancel, and the self-test."""

import numpy as np
import pytest
import vtk

import slicer_standin


def _parameters(logic, source, reference, **values):
    parameters = logic.getParameterNode()
    parameters.sourceVolume, parameters.referenceVolume, parameters.device = source, reference, "cpu"
    for name, value in values.items():
        setattr(parameters, name, value)
    return parameters


def test_logic_translation_beats_both_inputs_and_keeps_the_source_grid(scene):
    """The T2-like moving volume translated to T1 (the fixed volume's modality) is closer to the
    T1 truth of the moving anatomy than the source or the (misaligned) reference as given."""
    from IMSETranslation import IMSETranslationLogic, IMSETranslationTest
    from IMSESlicerLib.volumes import image_from_volume

    nodes = IMSETranslationTest.loadPairWithTruth(scene)
    logic = IMSETranslationLogic()
    result = logic.translationRun(_parameters(logic, nodes["moving"], nodes["fixed"], groundTruthVolume=nodes["truth"])).start().wait()
    scores = {row["image"]: row for row in result.rows}
    assert set(scores) == {"translated", "source as given", "reference as given"}
    for given in ("source as given", "reference as given"):
        assert scores["translated"]["NMAE"] < scores[given]["NMAE"]
        assert scores["translated"]["PSNR (dB)"] > scores[given]["PSNR (dB)"]
        assert scores["translated"]["SSIM"] > scores[given]["SSIM"]
    translated, source = image_from_volume(result.translated), image_from_volume(nodes["moving"])
    assert translated.shape == source.shape
    assert translated.geometry.isclose(source.geometry)
    reference = image_from_volume(nodes["fixed"]).array
    low, high = np.percentile(reference, [0.5, 99.5])  # the reference's intensity range
    assert low - 1e-3 <= translated.array.min() and translated.array.max() <= high + 1e-3
    assert result.table.GetTable().GetNumberOfRows() == 3
    composite = scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
    assert composite.GetBackgroundVolumeID() == nodes["moving"].GetID()
    assert composite.GetForegroundVolumeID() == result.translated.GetID()
    assert "NMAE" in result.summary


def test_logic_3d_volume_as_shown_into_a_chosen_output(scene):
    """A multi-slice oblique volume (2D evaluator, slice by slice) under a linear transform: the
    result lies where the source is shown, in the output volume the user picked, without
    metrics (random voxels: only the geometry is checked here)."""
    from imse.geometry import Geometry
    from imse.image import Image
    from IMSETranslation import IMSETranslationLogic
    from IMSESlicerLib.volumes import image_from_volume, volume_from_image

    random = np.random.default_rng(0)
    angle = np.deg2rad(30.0)  # an oblique grid, rotated about z
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    geometry = Geometry((2.5, 2.0, 3.0), (10.0, -20.0, 5.0), tuple(rotation.ravel()))
    moving = Image(random.random((4, 24, 20), dtype=np.float32), geometry)
    source = volume_from_image(scene, moving, "source")
    reference = volume_from_image(scene, Image(random.random((4, 24, 20), dtype=np.float32), geometry), "reference")
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 12.0)  # 12 mm to the right (RAS)
    shift.SetMatrixTransformToParent(matrix)
    source.SetAndObserveTransformNodeID(shift.GetID())
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my output")
    volumes_before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    logic = IMSETranslationLogic()
    result = logic.translationRun(_parameters(logic, source, reference, outputVolume=output)).start().wait()
    assert result.translated is output and result.table is None and result.rows == []
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes_before
    translated = image_from_volume(output)
    assert translated.shape == moving.shape and output.GetParentTransformNode() is None
    np.testing.assert_allclose(translated.geometry.origin, np.add(geometry.origin, (-12.0, 0.0, 0.0)), atol=1e-4)  # LPS x = -RAS x
    np.testing.assert_allclose(translated.geometry.spacing, geometry.spacing, atol=1e-6)
    np.testing.assert_allclose(translated.geometry.direction, geometry.direction, atol=1e-6)
    assert np.isfinite(translated.array).all() and translated.array.std() > 0


def test_logic_bad_input_says_what_to_do(scene):
    from IMSETranslation import IMSETranslationLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSETranslationLogic()
    with pytest.raises(ValueError, match="never overwritten"):
        logic.translationRun(_parameters(logic, nodes["moving"], nodes["fixed"], outputVolume=nodes["moving"]))
    with pytest.raises(ValueError, match="Choose a source and a reference"):
        logic.translationRun(_parameters(logic, nodes["moving"], None, outputVolume=None))


def test_panel_translates_and_cancel_leaves_nothing(scene, screenshots):
    from IMSETranslation import IMSETranslationTest

    nodes = IMSETranslationTest.loadPairWithTruth(scene)
    widget = slicer_standin.open_module("IMSETranslation")
    ui = widget.ui
    assert not ui.applyButton.enabled  # nothing chosen yet
    ui.sourceVolumeSelector.setCurrentNode(nodes["moving"])
    ui.referenceVolumeSelector.setCurrentNode(nodes["fixed"])
    ui.groundTruthVolumeSelector.setCurrentNode(nodes["truth"])
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    assert widget._parameterNode.sourceVolume is nodes["moving"] and ui.applyButton.enabled
    volumes_before = scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")
    tables_before = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")

    ui.applyButton.click()
    assert widget.controller.running and ui.applyButton.text == "Cancel"
    run = widget.controller.run
    slicer_standin.app_process_events()
    ui.applyButton.click()  # Cancel
    slicer_standin.wait_for_run(widget)
    assert run.cancelled and not run.workspace.folder.exists()
    assert scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == volumes_before
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables_before
    assert "Cancelled" in ui.statusLabel.text and ui.applyButton.text == "Translate"

    ui.applyButton.click()
    run = widget.controller.run
    slicer_standin.wait_for_run(widget)
    assert run.result is not None, ui.statusLabel.text
    assert not run.workspace.folder.exists()
    translated = scene.GetFirstNodeByName(f"{nodes['moving'].GetName()} translated")
    assert translated is run.result.translated
    assert ui.metricsTable.rowCount == 3 and "NMAE" in ui.statusLabel.text
    composite = scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundVolumeID() == translated.GetID()
    slicer_standin.screenshot(widget, screenshots / "IMSETranslation.png")


def test_self_test_passes_in_the_stand_in(scene):
    import slicer

    slicer_standin.open_module("IMSETranslation")
    slicer.selfTests["IMSETranslation"]()
