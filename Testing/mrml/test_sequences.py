"""Cines <-> real sequence nodes: order, geometry and time step survive a round trip, the
browser shows the frames, and the cine image is what ``imse adacs train`` reads."""

import numpy as np
import pytest
import slicer
from slicer import vtkMRMLScene

from IMSESlicerLib.planar import as_planar, as_single_slice, displacement_as_single_slice
from IMSESlicerLib.sequences import cine_image_from_frames, frames_from_cine_image, frames_from_sequence, sequence_from_frames
from imse.cli import _read_cine
from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import Image, write_image
from test_volumes import oblique_geometry

ROTATED_2D = Geometry((0.5, 0.7), (12.0, -4.0), (np.cos(0.3), -np.sin(0.3), np.sin(0.3), np.cos(0.3)))


def planar_frames(count=4):
    """Frames whose every pixel says which frame it is, on a rotated anisotropic 2D grid."""
    values = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    return [Image(values + index, ROTATED_2D) for index in range(count)]


def test_2d_frames_round_trip_in_order_with_geometry_and_time_step():
    scene = vtkMRMLScene()
    frames = planar_frames()
    sequence, browser = sequence_from_frames(scene, frames, "cine", 33.333)
    assert (sequence.GetIndexName(), sequence.GetIndexUnit()) == ("time", "s")
    assert browser.GetMasterSequenceNode() is sequence and browser.GetPlaybackRateFps() == pytest.approx(30.0, rel=1e-3)
    proxy = browser.GetProxyNode(sequence)
    assert proxy is not None and proxy.IsA("vtkMRMLScalarVolumeNode")
    back, step = frames_from_sequence(sequence)
    assert step == pytest.approx(33.333, rel=1e-5)
    assert len(back) == len(frames)
    for original, read in zip(frames, back):
        planar = as_planar(read)
        np.testing.assert_array_equal(planar.array, original.array)
        assert planar.geometry.isclose(ROTATED_2D, tolerance=1e-9)


def test_3d_frames_without_times_are_indexed_by_frame_number():
    scene = vtkMRMLScene()
    frames = [Image(np.full((4, 5, 6), index, np.float32), oblique_geometry()) for index in range(3)]
    sequence, browser = sequence_from_frames(scene, frames, "volumes", None)
    assert (sequence.GetIndexName(), sequence.GetIndexUnit()) == ("frame", "")
    assert [sequence.GetNthIndexValue(i) for i in range(3)] == ["0", "1", "2"]
    assert browser.GetPlaybackRateFps() == 10.0
    back, step = frames_from_sequence(sequence)
    assert step is None
    assert [float(frame.array.mean()) for frame in back] == [0.0, 1.0, 2.0]
    assert all(frame.geometry.isclose(oblique_geometry(), tolerance=1e-9) for frame in back)


def test_times_rounded_to_milliseconds_and_in_ms_give_the_mean_step():
    scene = vtkMRMLScene()
    sequence, _ = sequence_from_frames(scene, planar_frames(), "cine", None)
    for index, value in enumerate(["0.000", "0.033", "0.067", "0.100"]):  # as Slicer's DICOM reader writes them
        sequence.UpdateIndexValue(str(index), value)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    assert frames_from_sequence(sequence)[1] == pytest.approx(33.333, rel=1e-4)
    sequence.SetIndexUnit("ms")
    assert frames_from_sequence(sequence)[1] == pytest.approx(0.033333, rel=1e-4)


def test_colour_and_empty_sequences_are_refused_with_advice():
    scene = vtkMRMLScene()
    with pytest.raises(ImageError, match="empty"):
        frames_from_sequence(scene.AddNewNodeByClass("vtkMRMLSequenceNode", "empty"))
    colour = slicer.vtkMRMLVectorVolumeNode()
    slicer.util.updateVolumeFromArray(colour, np.zeros((1, 4, 5, 3), np.uint8))
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "rgb")
    sequence.SetDataNodeAtValue(colour, "0")
    with pytest.raises(ImageError, match="Vector to Scalar"):
        frames_from_sequence(sequence)
    with pytest.raises(ImageError, match="positive"):
        sequence_from_frames(scene, planar_frames(), "cine", 0.0)


def test_cine_image_is_what_adacs_train_reads(tmp_path):
    scene = vtkMRMLScene()
    sequence, _ = sequence_from_frames(scene, planar_frames(), "cine", 40.0)
    frames, step = frames_from_sequence(sequence)
    cine = cine_image_from_frames(frames, step)
    assert cine.shape == (4, 5, 6) and cine.geometry.spacing[2] == pytest.approx(40.0)
    read, geometry = _read_cine(str(write_image(cine, tmp_path / "cine.nii.gz")), None)
    np.testing.assert_allclose(read, np.stack([frame.array for frame in planar_frames()]), atol=1e-6)
    assert geometry.isclose(ROTATED_2D, tolerance=1e-5)
    back = frames_from_cine_image(cine)
    assert len(back) == 4 and back[2].geometry.isclose(ROTATED_2D, tolerance=1e-9)
    np.testing.assert_array_equal(back[2].array, planar_frames()[2].array)


def test_cine_frames_must_share_one_planar_grid():
    frames = planar_frames(2)
    with pytest.raises(ImageError, match="same grid"):
        cine_image_from_frames([frames[0], Image(frames[1].array, Geometry.identity(2))])
    with pytest.raises(ImageError, match="single slice"):
        cine_image_from_frames([Image(np.zeros((4, 5, 6), np.float32), oblique_geometry())])


def test_single_slices_keep_every_pixel_in_place():
    image = planar_frames(1)[0]
    lifted = as_single_slice(image)
    assert lifted.shape == (1, 5, 6)
    np.testing.assert_allclose(lifted.geometry.index_to_physical([4, 3, 0]), [*ROTATED_2D.index_to_physical([4, 3]), 0.0])
    field = displacement_as_single_slice(Image(np.ones((5, 6, 2), np.float32), ROTATED_2D))
    assert field.array.shape == (1, 5, 6, 3) and np.all(field.array[..., 2] == 0) and np.all(field.array[..., :2] == 1)
