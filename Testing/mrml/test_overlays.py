"""Maps -> coloured volumes with legends: Slicer's colour node IDs, windows, thresholds and
legends per kind, geometry kept, re-running replaces, and the overlay in every slice view."""

import numpy as np
import pytest
import slicer
from slicer import vtkMRMLScene

from IMSESlicerLib.overlays import ERROR_TRANSPARENT_FRACTION, MAP_KIND_ATTRIBUTE, SCORE_SHOWN_BELOW, MAP_KINDS, color_node, map_volume, show_overlay
from IMSESlicerLib.volumes import image_from_volume
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image
from test_volumes import oblique_geometry


def a_map(values):
    return Image(np.asarray(values, np.float32), oblique_geometry())


def rgb(node, index):
    return np.array(node.GetLookupTable().GetTableValue(index)[:3])


def legend_of(node):
    legends = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes()) if node.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")]
    assert len(legends) == 1
    return legends[0]


def test_each_kind_uses_its_slicer_colour_node_by_slicer_id():
    scene = vtkMRMLScene()
    expected = {
        "error": "vtkMRMLColorTableNodeFileInferno.txt",
        "score": "vtkMRMLColorTableNodeFileViridis.txt",
        "jacobian": "vtkMRMLColorTableNodeFileDivergingBlueRed.txt",
        "folding": "vtkMRMLColorTableNodeRed",
        "strain": "vtkMRMLColorTableNodeFileDivergingBlueRed.txt",
    }
    assert set(expected) == set(MAP_KINDS)
    for kind, node_id in expected.items():
        assert color_node(scene, kind).GetID() == node_id
    assert color_node(scene, "jacobian") is color_node(scene, "strain")  # added once, then found
    inferno, diverging, red = (scene.GetNodeByID(expected[k]) for k in ("error", "jacobian", "folding"))
    assert rgb(inferno, 0).max() < 0.05 and rgb(inferno, 255).min() > 0.6  # black to pale yellow
    low, middle, high = rgb(diverging, 0), rgb(diverging, 128), rgb(diverging, 255)
    assert low[2] > low[0] and high[0] > high[2] and middle.min() > 0.85  # blue, near white, red
    np.testing.assert_allclose(rgb(red, 255), [1.0, 0.0, 0.0])
    with pytest.raises(ImageError, match="choose one of"):
        color_node(scene, "entropy")


def test_a_scene_with_slicer_default_colours_keeps_them():
    scene = vtkMRMLScene()
    logic = slicer.vtkMRMLColorLogic()  # what Slicer attaches to its scene (without colour files here)
    logic.SetMRMLScene(scene)
    slicer_red = scene.GetNodeByID("vtkMRMLColorTableNodeRed")
    count = scene.GetNumberOfNodes()
    assert color_node(scene, "folding") is slicer_red
    assert scene.GetNumberOfNodes() == count


def test_error_map_window_threshold_and_legend():
    scene = vtkMRMLScene()
    values = np.random.default_rng(0).random((4, 5, 6)) * 0.4
    node = map_volume(scene, a_map(values), "Error before", "error")
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"
    assert not display.GetAutoWindowLevel()
    high = np.percentile(values.astype(np.float32), 99)
    assert display.GetWindowLevelMin() == pytest.approx(0.0, abs=1e-6)
    assert display.GetWindowLevelMax() == pytest.approx(high, rel=1e-5)
    assert display.GetApplyThreshold()
    assert display.GetLowerThreshold() == pytest.approx(ERROR_TRANSPARENT_FRACTION * high, rel=1e-5)
    assert display.GetUpperThreshold() >= values.max() - 1e-6
    legend = legend_of(node)
    assert legend.GetVisibility() and legend.GetTitleText() == "IMSE error |E| (normalised intensity)"
    assert legend.GetPrimaryDisplayNode() is display
    assert node.GetAttribute(MAP_KIND_ATTRIBUTE) == "error"


def test_fixed_ranges_of_score_and_jacobian_and_strain_in_percent():
    scene = vtkMRMLScene()
    score = map_volume(scene, a_map(np.full((4, 5, 6), 0.3)), "Score", "score").GetDisplayNode()
    assert (score.GetWindowLevelMin(), score.GetWindowLevelMax(), score.GetApplyThreshold()) == (0.0, 1.0, 1)
    assert score.GetUpperThreshold() == pytest.approx(SCORE_SHOWN_BELOW)  # good correspondence is not veiled
    jacobian = map_volume(scene, a_map(np.full((4, 5, 6), 1.2)), "det J", "jacobian").GetDisplayNode()
    assert (jacobian.GetWindow(), jacobian.GetLevel()) == (2.0, 1.0)  # centred on 1
    strain = np.linspace(-0.3, 0.1, 120).reshape(4, 5, 6)
    node = map_volume(scene, a_map(strain), "Radial strain", "strain")
    np.testing.assert_allclose(image_from_volume(node).array, 100 * strain, rtol=1e-5)
    display = node.GetDisplayNode()
    assert display.GetLevel() == pytest.approx(0.0, abs=1e-6)  # centred on 0, symmetric
    assert display.GetWindowLevelMax() == pytest.approx(np.percentile(np.abs(100 * strain.astype(np.float32)), 99), rel=1e-4)
    assert legend_of(node).GetTitleText() == "Strain (%)"


def test_folding_shows_only_folded_voxels_and_refuses_a_jacobian():
    jacobian = np.ones((4, 5, 6))
    jacobian[1, 2, 3], jacobian[2, 2, 2] = -0.5, 0.0
    scene = vtkMRMLScene()
    node = map_volume(scene, a_map(jacobian <= 0), "Folding", "folding")
    mask = image_from_volume(node).array
    assert mask.dtype == np.uint8 and mask.sum() == 2 and mask[1, 2, 3] == 1 and mask[2, 2, 2] == 1
    display = node.GetDisplayNode()
    assert display.GetApplyThreshold() and (display.GetLowerThreshold(), display.GetUpperThreshold()) == (0.5, 1.0)
    with pytest.raises(ImageError, match="mask"):
        map_volume(scene, a_map(jacobian), "Folding", "folding")


def test_geometry_is_kept_and_a_2d_map_becomes_one_slice():
    scene = vtkMRMLScene()
    node = map_volume(scene, a_map(np.ones((4, 5, 6))), "Oblique", "score")
    assert image_from_volume(node).geometry.isclose(oblique_geometry(), tolerance=1e-9)
    flat = Image(np.ones((5, 6), np.float32), Geometry((0.5, 0.7), (3.0, 4.0), (0.0, -1.0, 1.0, 0.0)))
    volume = image_from_volume(map_volume(scene, flat, "Flat", "score"))
    assert volume.shape == (1, 5, 6)
    np.testing.assert_allclose(volume.geometry.index_to_physical([[2, 3, 0]])[0], [*flat.geometry.index_to_physical([2, 3]), 0.0])


def test_running_again_replaces_the_map_and_keeps_one_legend():
    scene = vtkMRMLScene()
    node = map_volume(scene, a_map(np.full((4, 5, 6), 0.2)), "Error", "error")
    count = scene.GetNumberOfNodes()
    again = map_volume(scene, a_map(np.full((4, 5, 6), 0.7)), "Error after", "error", node=node, value_range=(0.0, 1.0))
    assert again is node and scene.GetNumberOfNodes() == count
    assert node.GetName() == "Error after" and np.all(image_from_volume(node).array == np.float32(0.7))
    assert node.GetDisplayNode().GetWindowLevelMax() == 1.0
    legend_of(node)


def test_bad_maps_change_nothing():
    scene = vtkMRMLScene()
    node = map_volume(scene, a_map(np.full((4, 5, 6), 0.2)), "Error", "error")
    count = scene.GetNumberOfNodes()
    broken = np.full((4, 5, 6), 0.5)
    broken[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        map_volume(scene, a_map(broken), "Error", "error", node=node)
    with pytest.raises(ImageError, match="scalar"):
        map_volume(scene, Image(np.zeros((4, 5, 6, 3), np.float32), oblique_geometry()), "Field", "jacobian")
    with pytest.raises(ImageError, match="low < high"):
        map_volume(scene, a_map(np.zeros((4, 5, 6))), "Error", "error", value_range=(1.0, 1.0))
    assert scene.GetNumberOfNodes() == count
    assert np.all(image_from_volume(node).array == np.float32(0.2))


def test_show_overlay_sets_every_slice_view():
    scene = vtkMRMLScene()
    views = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", name) for name in ("Red", "Green")]
    fixed = map_volume(scene, a_map(np.ones((4, 5, 6))), "Fixed", "score")
    error = map_volume(scene, a_map(np.ones((4, 5, 6))), "Error", "error")
    assert show_overlay(fixed, error, opacity=0.4) == 2
    for view in views:
        assert (view.GetBackgroundVolumeID(), view.GetForegroundVolumeID()) == (fixed.GetID(), error.GetID())
        assert view.GetForegroundOpacity() == pytest.approx(0.4)
    with pytest.raises(ImageError, match="between 0 and 1"):
        show_overlay(fixed, error, opacity=1.5)
    with pytest.raises(ImageError, match="same scene"):
        other_scene = vtkMRMLScene()
        show_overlay(fixed, map_volume(other_scene, a_map(np.ones((4, 5, 6))), "Elsewhere", "error"))


def test_a_region_hides_the_map_outside_it_and_sets_the_window_from_inside():
    """A strain map shown in the myocardium only: the rest of the image gets no colour veil."""
    scene = vtkMRMLScene()
    geometry = Geometry((1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    strain = np.full((20, 20), 0.5, np.float32)  # large values outside the region
    strain[5:15, 5:15] = np.linspace(-0.1, 0.1, 100).reshape(10, 10)
    region = np.zeros((20, 20), bool)
    region[5:15, 5:15] = True
    node = map_volume(scene, Image(strain, geometry), "strain in the wall", "strain", region=region)
    display = node.GetDisplayNode()
    assert display.GetWindowLevelMax() == pytest.approx(-display.GetWindowLevelMin()) and display.GetWindowLevelMax() <= 10.0 + 1e-4
    stored = slicer.util.arrayFromVolume(node)[0]
    assert display.GetApplyThreshold()
    assert (stored[~region] < display.GetLowerThreshold()).all()
    assert (stored[region] >= display.GetLowerThreshold()).all() and (stored[region] <= display.GetUpperThreshold()).all()
    with pytest.raises(ImageError, match="region"):
        map_volume(scene, Image(strain, geometry), "bad", "strain", region=np.zeros((20, 20), bool))
