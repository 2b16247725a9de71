"""IMSE Quality: Logic on the built-in pair, the panel as a user drives it, its self-test."""

import numpy as np
import pytest
import vtk

import slicer_standin


def _translate(scene, node, millimetres):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, millimetres)
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    return transform


def test_logic_error_map_grows_with_misalignment_and_keeps_the_fixed_geometry(scene):
    from IMSEQuality import IMSEQualityLogic
    from IMSESlicerLib.sample_data import load_sample
    from IMSESlicerLib.volumes import image_from_volume

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSEQualityLogic()
    fixed_copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "fixed copy")
    fixed_copy.Copy(nodes["fixed"])
    node, aligned = logic.errorMap(nodes["fixed"], fixed_copy, device="cpu")
    _translate(scene, fixed_copy, 6.0)
    shifted_node, shifted = logic.errorMap(nodes["fixed"], fixed_copy, device="cpu")
    assert shifted["image"]["mean"] > 3 * aligned["image"]["mean"]
    error = image_from_volume(shifted_node)
    fixed = image_from_volume(nodes["fixed"])
    assert error.shape == fixed.shape
    np.testing.assert_allclose(error.geometry.origin, fixed.geometry.origin, atol=1e-5)
    np.testing.assert_allclose(error.geometry.spacing, fixed.geometry.spacing, atol=1e-6)
    assert shifted_node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"


def test_logic_jacobian_of_a_known_scaling(scene):
    """A transform scaling by 1.1 along x has det J = 1.1 everywhere and no folding."""
    from IMSEQuality import IMSEQualityLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "scale")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 0, 1.1)
    transform.SetMatrixTransformFromParent(matrix)
    jacobian, folding, statistics = IMSEQualityLogic().jacobianMaps(transform, nodes["fixed"])
    assert statistics["det J min"] == pytest.approx(1.1, abs=1e-3)
    assert statistics["det J max"] == pytest.approx(1.1, abs=1e-3)
    assert statistics["folding %"] == 0.0


def test_panel_computes_maps_table_and_overlay_and_updates_live(scene, screenshots):
    import slicer

    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    widget = slicer_standin.open_module("IMSEQuality")
    ui = widget.ui
    ui.fixedVolumeSelector.setCurrentNode(nodes["fixed"])
    ui.movingVolumeSelector.setCurrentNode(nodes["moving"])
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    assert widget._parameterNode.movingVolume is nodes["moving"]
    assert ui.applyButton.enabled
    ui.applyButton.click()
    error_node = scene.GetFirstNodeByName(f"{nodes['moving'].GetName()} IMSE error")
    assert error_node is not None
    assert ui.statisticsTable.rowCount >= 1
    assert "Mean |E|" in ui.statusLabel.text
    composite = scene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundVolumeID() == error_node.GetID()
    assert composite.GetBackgroundVolumeID() == nodes["fixed"].GetID()
    assert scene.GetFirstNodeByClass("vtkMRMLTableNode") is not None
    slicer_standin.screenshot(widget, screenshots / "IMSEQuality.png")
    from slicer_standin.slice_view import render_red_slice_view

    render_red_slice_view(scene, screenshots / "IMSEQuality-slice-view.png", "T2-like moving vs T1 fixed: IMSE |E| over the fixed")

    before = slicer.util.arrayFromVolume(error_node).mean()
    ui.liveCheckBox.checked = True
    _translate(scene, nodes["moving"], 8.0)
    widget.liveTimer.timeout.emit()  # the throttle timer firing after the user stops dragging
    after = slicer.util.arrayFromVolume(error_node).mean()
    assert after != pytest.approx(before)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == len(
        [n for n in (nodes["fixed"], nodes["moving"], error_node)]
    ) + sum(1 for k in nodes if k not in ("fixed", "moving") and nodes[k].IsA("vtkMRMLScalarVolumeNode"))


def test_self_test_passes_in_the_stand_in(scene):
    import slicer

    slicer_standin.open_module("IMSEQuality")
    slicer.selfTests["IMSEQuality"]()


def test_logic_falls_back_to_the_cpu_when_the_gpu_runs_out_of_memory(scene, monkeypatch):
    import torch

    from IMSEQuality import IMSEQualityLogic
    from IMSESlicerLib.sample_data import load_sample

    nodes = load_sample(scene, "IMSE brain pair 2D")
    logic = IMSEQualityLogic()
    devices = []
    real_evaluator = logic.evaluator

    def evaluator(model="", device="auto", dim=2):
        devices.append(device)
        loaded = real_evaluator(model, "cpu", dim)
        if device != "cpu":
            failing = type("OutOfMemoryEvaluator", (), {})()
            failing.error_map = lambda *args, **kwargs: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("CUDA out of memory"))
            return failing
        return loaded

    monkeypatch.setattr(logic, "evaluator", evaluator)
    node, statistics = logic.errorMap(nodes["fixed"], nodes["moving"], device="cuda")
    assert devices == ["cuda", "cpu"] and statistics["image"]["mean"] > 0
