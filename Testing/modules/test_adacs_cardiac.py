"""AdaCS Cardiac: Logic on the LV phantom (whose truth is analytic), the panel as a user drives
it (run, switch the map shown, cancel), and its self-test."""

import time

import numpy as np
import pytest

import slicer_standin
from imse.errors import ImageError

FRAMES = dict(referenceFrame=0, lastFrame=6, frameStep=3)  # frames 0 (end-diastole), 3 and 6 (near end-systole, 5)
TINY = dict(iterations=60, device="cpu")


def true_strain(nodes, frame):
    """The phantom's analytic mean myocardial (radial, circumferential) strain in % at ``frame``."""
    table = nodes["true strain"].GetTable()
    return table.GetValue(frame, 1).ToDouble(), table.GetValue(frame, 2).ToDouble()


def node_ids(scene):
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def test_logic_on_the_phantom_cine_thickens_shortens_and_moves_like_the_truth(scene):
    from AdaCSCardiac import MAPS, AdaCSCardiacLogic
    from IMSESlicerLib.overlays import MAP_KIND_ATTRIBUTE
    from IMSESlicerLib.transforms import displacement_from_transform
    from IMSESlicerLib.volumes import image_from_volume
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "LV phantom cine")
    result = AdaCSCardiacLogic().run(nodes["LV centre"], cine=nodes["cine"], myocardium=nodes["myocardium"], **FRAMES, **TINY).start().wait()

    assert result.curves["frame"] == [0, 3, 6] and result.peakFrame in (3, 6)
    assert result.curves["radial strain (%)"][0] == 0.0
    for position, frame in enumerate([3, 6], start=1):
        radial, circumferential = result.curves["radial strain (%)"][position], result.curves["circumferential strain (%)"][position]
        true_radial, true_circumferential = true_strain(nodes, frame)
        assert radial > 0.5 * true_radial > 0, f"frame {frame}: radial {radial:.1f} % vs {true_radial:.1f} %"
        assert circumferential < 0.5 * true_circumferential < 0, f"frame {frame}: circumferential {circumferential:.1f} % vs {true_circumferential:.1f} %"
    assert len(result.rows) == 6 and np.mean([row["circumferential (%)"] for row in result.rows]) < 0
    assert result.table.GetTable().GetNumberOfRows() == 6 and result.chart.GetNumberOfPlotSeriesNodes() == 2

    browser = nodes["browser"]  # every output plays with the cine, which now shows the peak frame
    for key in ("transform", *MAPS):
        assert result.sequences[key].GetNumberOfDataNodes() == 3 and browser.IsSynchronizedSequenceNodeID(result.sequences[key].GetID())
    assert browser.GetSelectedItemNumber() == result.peakFrame
    assert result.maps["score"].GetAttribute(MAP_KIND_ATTRIBUTE) == "score"
    assert result.maps["radial strain"].GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
    reference = image_from_volume(nodes["frame"])
    score = image_from_volume(result.maps["score"])
    assert score.geometry.isclose(reference.geometry) and 0 < score.array.min() and score.array.max() <= 1

    # The displacement transform shown (reference -> peak frame) agrees with the phantom's true one.
    found = displacement_from_transform(result.transform, reference).array[0]
    truth = displacement_from_transform(nodes["true transform"], reference).array[0]
    wall = slicer_array(nodes["myocardium"]) > 0
    error = np.linalg.norm(found - truth, axis=-1)[wall].mean()
    assert error < 0.4 * np.linalg.norm(truth, axis=-1)[wall].mean()


def slicer_array(node):
    import slicer

    return slicer.util.arrayFromVolume(node)[0]


def test_logic_two_frames_a_segmentation_a_sector_start_and_a_working_spacing(scene):
    import slicer

    from AdaCSCardiac import AdaCSCardiacLogic
    from imse.phantom import lv_phantom_2d
    from IMSESlicerLib.planar import as_single_slice
    from IMSESlicerLib.volumes import image_from_volume, volume_from_image
    from imse.image import Image

    phantom = lv_phantom_2d()
    diastole = volume_from_image(scene, as_single_slice(Image(phantom.frames[0], phantom.geometry)), "ED")
    systole = volume_from_image(scene, as_single_slice(Image(phantom.frames[5], phantom.geometry)), "ES")
    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "wall")
    slicer.util.updateVolumeFromArray(label, phantom.myocardium_masks[0][None].astype(np.uint8))
    label.SetIJKToRASMatrix(_ijk_to_ras(diastole))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segments")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label, segmentation)
    segmentation.GetSegmentation().GetNthSegment(0).SetName("Myocardium")
    centre = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "centre")
    x, y = phantom.centre_mm
    centre.AddControlPoint(-x, -y, 0.0, "LV centre")  # RAS of the LPS centre
    centre.AddControlPoint(-x, -(y + 10.0), 0.0, "RV insertion")  # 10 mm along LPS +y: sector 1 starts at 90 degrees
    before = slicer.util.arrayFromVolume(systole).copy()

    result = AdaCSCardiacLogic().run(centre, referenceVolume=diastole, frameVolume=systole, myocardium=segmentation, spacing=2.0, **TINY).start().wait()

    assert result.sequences == {} and result.transform.IsA("vtkMRMLGridTransformNode") and result.background is diastole
    assert result.peakFrame == 1 and result.curves["radial strain (%)"][1] > 5 and result.curves["circumferential strain (%)"][1] < -5
    assert [row["from (deg)"] for row in result.rows] == [90.0, 150.0, 210.0, 270.0, 330.0, 30.0]
    strain = image_from_volume(result.maps["circumferential strain"])
    np.testing.assert_allclose(strain.geometry.spacing[:2], (2.0, 2.0))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(systole), before)  # inputs untouched


def _ijk_to_ras(volume):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix


def test_bad_inputs_are_refused_with_advice_before_anything_runs(scene):
    import slicer

    from AdaCSCardiac import AdaCSCardiacLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "LV phantom cine")
    logic = AdaCSCardiacLogic()
    empty = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "no points")
    with pytest.raises(ImageError, match="Place the LV centre"):
        logic.run(empty, cine=nodes["cine"])
    far = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "far")
    far.AddControlPoint(500.0, 500.0, 0.0, "far")
    with pytest.raises(ImageError, match="outside the frames"):
        logic.run(far, cine=nodes["cine"])
    with pytest.raises(ImageError, match="reference frame before the last"):
        logic.run(nodes["LV centre"], cine=nodes["cine"], referenceFrame=9)
    blank = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "blank")
    slicer.util.updateVolumeFromArray(blank, np.zeros((1, 96, 96), np.uint8))
    with pytest.raises(ImageError, match="no voxel"):
        logic.run(nodes["LV centre"], cine=nodes["cine"], myocardium=blank)
    with pytest.raises(ImageError, match="Choose a cine"):
        logic.run(nodes["LV centre"])


def test_panel_runs_the_cine_shows_strain_and_switches_maps(scene, screenshots):
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "LV phantom cine")
    widget = slicer_standin.open_module("AdaCSCardiac")
    ui = widget.ui
    ui.cineSelector.setCurrentNode(nodes["cine"])
    ui.lvCentreSelector.setCurrentNode(nodes["LV centre"])
    ui.myocardiumSelector.setCurrentNode(nodes["myocardium"])
    ui.lastFrameSpinBox.value = 5  # end-diastole and end-systole only, registered well enough for the screenshot
    ui.frameStepSpinBox.value = 5
    ui.iterationsSpinBox.value = 150
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    assert widget._parameterNode.myocardium is nodes["myocardium"] and widget._parameterNode.frameStep == 5
    assert ui.applyButton.enabled
    ui.applyButton.click()
    assert ui.applyButton.text == "Cancel"
    slicer_standin.wait_for_run(widget)

    result = widget.result
    assert result is not None, ui.statusLabel.text
    assert "Peak shortening at frame 5" in ui.statusLabel.text and ui.regionalTable.rowCount == 6
    assert ui.applyButton.text == "Track motion and strain"
    composite = scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundVolumeID() == result.maps["circumferential strain"].GetID()
    assert composite.GetBackgroundVolumeID() == result.background.GetID()
    ui.shownMapComboBox.currentIndex = ui.shownMapComboBox.findText("score")
    assert composite.GetForegroundVolumeID() == result.maps["score"].GetID()
    ui.shownMapComboBox.currentIndex = ui.shownMapComboBox.findText("circumferential strain")
    slicer_standin.screenshot(widget, screenshots / "AdaCSCardiac.png")
    from slicer_standin.slice_view import render_red_slice_view

    render_red_slice_view(scene, screenshots / "AdaCSCardiac-slice-view.png", "LV phantom, end-systole: circumferential strain in the wall")


def test_panel_cancel_leaves_nothing_and_removes_the_temporary_folder(scene):
    from IMSESlicerLib.sample_data import load_sample

    import slicer

    nodes = load_sample(scene, "LV phantom cine")
    widget = slicer_standin.open_module("AdaCSCardiac")
    ui = widget.ui
    ui.cineSelector.setCurrentNode(nodes["cine"])
    ui.lvCentreSelector.setCurrentNode(nodes["LV centre"])
    ui.iterationsSpinBox.value = 100000
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    before = node_ids(scene)
    ui.applyButton.click()
    folder = widget.controller.run.workspace.folder
    assert folder.exists()
    deadline = time.monotonic() + 120
    while ui.progressBar.value < 2:  # cancel while it optimises, not while it starts
        assert time.monotonic() < deadline and widget.controller.running, ui.statusLabel.text
        slicer.app.processEvents()
        time.sleep(0.05)
    ui.applyButton.click()  # Cancel
    slicer_standin.wait_for_run(widget, 60)
    assert ui.statusLabel.text.startswith("Cancelled")
    assert widget.result is None and node_ids(scene) == before
    assert not folder.exists()


def test_self_test_passes_in_the_stand_in(scene):
    import slicer

    slicer_standin.open_module("AdaCSCardiac")
    slicer.selfTests["AdaCSCardiac"]()
