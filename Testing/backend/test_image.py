"""Images with geometry: file round trips, DICOM series, resampling, normalisation, tensors,
and the errors a user sees for bad input."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from imse.errors import ImageError
from imse.geometry import Geometry
from imse.image import (
    Image,
    from_tensor,
    normalize_intensity,
    read_image,
    resample_to,
    to_sitk,
    to_tensor,
    write_image,
)


def random_image(geometry, shape, seed=0):
    return Image(np.random.default_rng(seed).random(shape).astype(np.float32), geometry)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_3d_round_trip_keeps_geometry_and_values(tmp_path, oblique_geometry_3d, suffix):
    image = random_image(oblique_geometry_3d, (5, 7, 6))
    back = read_image(write_image(image, tmp_path / f"volume{suffix}"))
    assert back.geometry.isclose(image.geometry, tolerance=1e-4)
    np.testing.assert_allclose(back.array, image.array, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_2d_and_vector_round_trip(tmp_path, oblique_geometry_2d, suffix):
    image = random_image(oblique_geometry_2d, (9, 11))
    back = read_image(write_image(image, tmp_path / f"slice{suffix}"))
    assert back.dim == 2 and back.geometry.isclose(image.geometry)
    np.testing.assert_allclose(back.array, image.array, atol=1e-6)
    field = Image(np.random.default_rng(1).normal(size=(9, 11, 2)).astype(np.float32), oblique_geometry_2d)
    field_back = read_image(write_image(field, tmp_path / f"field{suffix}"))
    assert field_back.is_vector and field_back.geometry.isclose(field.geometry)
    np.testing.assert_allclose(field_back.array, field.array, atol=1e-6)


def write_dicom_series(folder, volume: sitk.Image) -> None:
    """Write a volume as one DICOM file per slice with the tags a series reader needs."""
    folder.mkdir()
    direction = volume.GetDirection()
    orientation = "\\".join(str(v) for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.GetDepth()):
        piece = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "MR",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": "1.2.826.0.1.3680043.2.1125.2",
            "0020|0037": orientation,
            "0020|0032": "\\".join(str(v) for v in position),
            "0020|0013": str(k + 1),
            "0028|0030": f"{volume.GetSpacing()[1]}\\{volume.GetSpacing()[0]}",
            "0018|0050": str(volume.GetSpacing()[2]),
        }.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)


def test_dicom_series_folder_keeps_geometry(tmp_path):
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # sagittal-like
    geometry = Geometry((0.9, 1.1, 2.5), (-40.0, 20.0, 7.0), tuple(direction.ravel()))
    values = np.random.default_rng(2).integers(0, 1000, size=(6, 10, 12)).astype(np.int16)
    write_dicom_series(tmp_path / "series", to_sitk(Image(values, geometry)))
    back = read_image(tmp_path / "series")
    assert back.geometry.isclose(geometry, tolerance=1e-3)
    np.testing.assert_array_equal(back.array, values.astype(np.float32))


def test_resample_onto_shifted_grid_moves_content(oblique_geometry_3d):
    image = random_image(Geometry.identity(3, (1.0, 1.0, 2.0)), (6, 8, 8))
    shifted_grid = Image(np.zeros((6, 8, 8)), Geometry((1.0, 1.0, 2.0), (2.0, 1.0, 0.0), tuple(np.eye(3).ravel())))
    resampled = resample_to(image, shifted_grid, interpolation="nearest", default_value=-1)
    # Voxel (i, j, k) of the new grid lies at physical (i + 2, j + 1, 2k): old index (i+2, j+1, k).
    np.testing.assert_array_equal(resampled.array[:, :-1, :-2], image.array[:, 1:, 2:])
    assert np.all(resampled.array[:, :, -2:] == -1)
    with pytest.raises(ImageError, match="interpolation"):
        resample_to(image, shifted_grid, interpolation="sinc")


def test_normalize_maps_percentiles_to_unit_range():
    values = np.concatenate([np.linspace(0, 100, 1000), [1e6]]).astype(np.float32)  # one outlier
    image = Image(values.reshape(7, 11, 13), Geometry.identity(3))
    normalised = normalize_intensity(image, percentiles=(1.0, 99.0))
    assert normalised.array.min() == -1.0 and normalised.array.max() == 1.0
    middle = normalised.array.ravel()[500]
    assert abs(middle) < 0.05  # the outlier did not squash the range
    mask = np.zeros(image.shape, bool)
    mask.ravel()[:500] = True
    assert normalize_intensity(image, mask=mask).array.ravel()[499] == 1.0
    assert image.array.max() == 1e6  # the input is untouched


def test_tensor_round_trip(oblique_geometry_3d):
    scalar = random_image(oblique_geometry_3d, (4, 5, 6))
    tensor = to_tensor(scalar)
    assert tensor.shape == (1, 1, 4, 5, 6) and tensor.dtype == torch.float32
    assert np.array_equal(from_tensor(tensor, scalar.geometry).array, scalar.array)
    vector = Image(np.random.default_rng(3).random((4, 5, 6, 3)).astype(np.float32), oblique_geometry_3d)
    vector_tensor = to_tensor(vector)
    assert vector_tensor.shape == (1, 3, 4, 5, 6)
    assert vector_tensor[0, 2, 1, 2, 3] == vector.array[1, 2, 3, 2]
    assert np.array_equal(from_tensor(vector_tensor, vector.geometry).array, vector.array)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(ImageError, match="No such file"):
        read_image(tmp_path / "missing.nii.gz")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match="Could not read"):
        read_image(garbage)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no DICOM series"):
        read_image(tmp_path / "empty")
    four_d = sitk.Image([4, 4, 4, 3], sitk.sitkFloat32)
    sitk.WriteImage(four_d, str(tmp_path / "cine.nrrd"))
    with pytest.raises(ImageError, match="only 2D and 3D"):
        read_image(tmp_path / "cine.nrrd")
    with_nan = np.ones((4, 4, 4), np.float32)
    with_nan[1, 1, 1] = np.nan
    write_image(Image(with_nan, Geometry.identity(3)), tmp_path / "nan.nrrd")
    with pytest.raises(ImageError, match="1 NaN"):
        read_image(tmp_path / "nan.nrrd")


def test_bad_arrays_and_geometry_raise_clear_errors():
    with pytest.raises(ImageError, match="empty"):
        Image(np.zeros((0, 4, 4)), Geometry.identity(3))
    with pytest.raises(ImageError, match="3D geometry needs a 3D array"):
        Image(np.zeros((4, 4)), Geometry.identity(3))
    with pytest.raises(ImageError, match="positive"):
        Geometry((1.0, 0.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    with pytest.raises(ImageError, match="singular"):
        Geometry((1.0, 1.0), (0.0, 0.0), (1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ImageError, match="single intensity"):
        normalize_intensity(Image(np.full((4, 4), 3.0), Geometry.identity(2)))
    with pytest.raises(ImageError, match="mask is empty"):
        normalize_intensity(Image(np.ones((4, 4)), Geometry.identity(2)), mask=np.zeros((4, 4), bool))


def test_failed_write_keeps_the_existing_file(tmp_path, oblique_geometry_3d):
    good = write_image(random_image(oblique_geometry_3d, (3, 4, 5)), tmp_path / "result.nrrd")
    before = good.read_bytes()
    with pytest.raises(ImageError, match="Could not write"):
        write_image(random_image(oblique_geometry_3d, (3, 4, 5)), tmp_path / "result.unknownformat")
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nrrd"]
