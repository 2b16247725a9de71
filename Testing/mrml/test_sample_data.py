"""Built-in samples load into a bare scene with the right node types and geometry; the brain
pair is misaligned by its known deformation, and the Sample Data registration calls the loader."""

import sys
import types

import numpy as np
import pytest
import slicer
from slicer import vtkMRMLScene

from IMSESlicerLib import sample_data
from IMSESlicerLib.planar import as_planar
from IMSESlicerLib.sequences import frames_from_sequence
from IMSESlicerLib.volumes import RAS_FROM_LPS, image_from_volume
from imse.data import make_pair, warp_image
from imse.errors import ImageError
from imse.image import Image
from imse.metrics import dice


def true_displacement_lps(transform_node, reference: Image) -> Image:
    """The displacement held by a grid transform node, back in LPS on ``reference``'s grid."""
    ras = slicer.util.arrayFromGridTransform(transform_node)
    return Image((ras @ RAS_FROM_LPS.T).astype(np.float32), reference.geometry)


def test_the_2d_brain_pair_is_misaligned_by_its_known_deformation():
    scene = vtkMRMLScene()
    nodes = sample_data.load_sample(scene, "IMSE brain pair 2D")
    assert set(nodes) == {"fixed", "moving", "fixed labels", "moving labels", "true transform"}
    assert nodes["fixed"].GetClassName() == "vtkMRMLScalarVolumeNode"
    assert nodes["fixed labels"].GetClassName() == "vtkMRMLLabelMapVolumeNode"
    assert nodes["true transform"].GetClassName() == "vtkMRMLGridTransformNode"
    fixed = image_from_volume(nodes["fixed"])
    expected = make_pair(dim=2, seed=0)
    assert as_planar(fixed).geometry.isclose(expected.fixed.geometry, tolerance=1e-9)
    np.testing.assert_array_equal(as_planar(fixed).array, expected.fixed.array)
    fixed_labels, moving_labels = (image_from_volume(nodes[key]) for key in ("fixed labels", "moving labels"))
    truth = true_displacement_lps(nodes["true transform"], fixed)
    aligned = warp_image(moving_labels, truth, "nearest")
    before = dice(fixed_labels, moving_labels)
    after = dice(fixed_labels, aligned)
    for label in (2, 3):  # grey and white matter
        assert after[label] > before[label] + 0.05
        assert after[label] > 0.9


def test_the_3d_brain_pair_is_a_3mm_volume_pair_with_its_truth():
    scene = vtkMRMLScene()
    nodes = sample_data.load_sample(scene, "IMSE brain pair 3D")
    fixed, moving = (image_from_volume(nodes[key]) for key in ("fixed", "moving"))
    assert fixed.shape == moving.shape and min(fixed.shape) > 16
    assert fixed.geometry.spacing == (3.0, 3.0, 3.0) and moving.geometry.isclose(fixed.geometry)
    truth = true_displacement_lps(nodes["true transform"], fixed)
    assert 7.0 < np.linalg.norm(truth.array, axis=-1).max() <= 8.0 + 1e-3


def test_the_echo_cine_is_a_sequence_with_its_frame_time():
    scene = vtkMRMLScene()
    nodes = sample_data.load_sample(scene, "Echo cine")
    assert nodes["cine"].GetNumberOfDataNodes() == 120
    assert nodes["frame"] is nodes["browser"].GetProxyNode(nodes["cine"])
    frames, step = frames_from_sequence(nodes["cine"])
    assert step == pytest.approx(33.333, rel=1e-3)
    assert frames[0].shape == (1, 384, 512)
    np.testing.assert_allclose(frames[0].geometry.spacing[:2], (0.5105, 0.5105), rtol=1e-3)


def test_the_lv_phantom_comes_with_its_analytic_truth():
    scene = vtkMRMLScene()
    nodes = sample_data.load_sample(scene, "LV phantom cine")
    frames, step = frames_from_sequence(nodes["cine"])
    assert len(frames) == 10 and step is None
    myocardium = image_from_volume(nodes["myocardium"]).array[0].astype(bool)
    assert frames[0].array[0][myocardium].mean() > frames[0].array[0][~myocardium].mean()
    centre = nodes["LV centre"].GetNthControlPointPosition(0)
    ras_of_middle = RAS_FROM_LPS @ frames[0].geometry.index_to_physical([47.5, 47.5, 0.0])
    np.testing.assert_allclose(centre, ras_of_middle, atol=1e-6)
    truth = nodes["true displacement"]
    assert truth.GetNumberOfDataNodes() == 10 and truth.GetNthDataNode(5).IsA("vtkMRMLGridTransformNode")
    assert nodes["browser"].IsSynchronizedSequenceNode(truth)
    table = nodes["true strain"].GetTable()
    radial, circumferential = (slicer.util.arrayFromTableColumn(nodes["true strain"], name) for name in ("radial strain (%)", "circumferential strain (%)"))
    assert table.GetNumberOfRows() == 10 and radial[0] == pytest.approx(0.0, abs=1e-6)
    assert radial[5] > 10.0 and circumferential[5] < -10.0  # end-systole: thickening, shortening


def test_unknown_samples_are_refused():
    with pytest.raises(ImageError, match="choose one of"):
        sample_data.load_sample(vtkMRMLScene(), "Chest CT")


def test_registration_with_the_sample_data_module_loads_on_click(monkeypatch):
    registered = {}

    class SampleDataLogic:  # the real module needs Slicer's Qt application; this records the calls
        @staticmethod
        def sampleDataSourcesByCategory(category):
            return registered.setdefault(category, [])

        @staticmethod
        def registerCustomSampleDataSource(category, sampleName, uris, fileNames, nodeNames, customDownloader):
            assert len(uris) == len(fileNames) == len(nodeNames)
            registered.setdefault(category, []).append(types.SimpleNamespace(sampleName=sampleName, customDownloader=customDownloader))

    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=SampleDataLogic))
    sample_data.register_sample_data()
    sample_data.register_sample_data()  # registering again replaces, never duplicates
    assert [source.sampleName for source in registered["IMSE"]] == list(sample_data.SAMPLES)
    scene, shown = vtkMRMLScene(), []
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **layers: shown.append(layers))
    lv = registered["IMSE"][3]
    nodes = lv.customDownloader(lv)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == 2 and nodes
    assert shown[0]["background"].IsA("vtkMRMLScalarVolumeNode")
