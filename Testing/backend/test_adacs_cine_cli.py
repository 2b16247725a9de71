"""imse adacs register-cine: every frame of a cine onto its reference, in one command."""

import numpy as np
import pytest

from imse.cli import main
from imse.geometry import Geometry
from imse.image import Image, read_image, write_image
from imse.phantom import lv_phantom_2d

FRAMES = (0, 3, 5)  # end-diastole, end-systole, relaxing


@pytest.fixture
def cine_file(tmp_path):
    """Three frames of the LV phantom as a cine image (time along the third axis)."""
    cine = lv_phantom_2d(shape=(64, 64), frames=6)
    volume = Image(cine.frames[list(FRAMES)], Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel())))
    return cine, write_image(volume, tmp_path / "cine.nrrd")


def test_register_cine_recovers_the_phantom_motion_frame_by_frame(tmp_path, cine_file, capsys):
    cine, path = cine_file
    out = tmp_path / "out"
    assert main(["--progress", "json", "adacs", "register-cine", str(path), "--out", str(out), "--iterations", "90", "--device", "cpu"]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("IMSE-PROGRESS")]
    assert progress[-1].startswith('IMSE-PROGRESS {"done": 270, "total": 270')
    assert sorted(p.name for p in out.iterdir()) == [f"{kind}_{i:04d}.nii.gz" for kind in ("displacement_mm", "score") for i in range(3)]
    reference = read_image(out / "displacement_mm_0000.nii.gz")
    assert reference.geometry.isclose(cine.geometry) and not reference.array.any()
    assert (read_image(out / "score_0000.nii.gz").array == 1).all()
    myocardium = cine.myocardium_masks[0]
    for position, frame in enumerate(FRAMES[1:], start=1):
        found = read_image(out / f"displacement_mm_{position:04d}.nii.gz").array
        truth = np.moveaxis(cine.displacements[frame], 0, -1)
        error = np.linalg.norm(found - truth, axis=-1)[myocardium].mean()
        assert error < 0.35 * np.linalg.norm(truth, axis=-1)[myocardium].mean(), f"frame {frame}: {error:.2f} mm"
        score = read_image(out / f"score_{position:04d}.nii.gz").array
        assert 0 < score.min() and score.max() < 1


def test_register_cine_with_a_model_and_a_later_reference(tmp_path, cine_file, monkeypatch):
    """An untrained model predicts no motion and a score of 0.5; the reference frame gets zero and one."""
    import torch

    from imse.adacs import AdaCSModel, save_adacs

    _, path = cine_file
    monkeypatch.setenv("IMSE_MODEL_DIR", str(tmp_path / "models"))
    torch.manual_seed(0)
    save_adacs(AdaCSModel(2, channels=(4, 8)), tmp_path / "models", "untrained")
    out = tmp_path / "out"
    assert main(["adacs", "register-cine", str(path), "--out", str(out), "--reference-frame", "1", "--model", "untrained", "--device", "cpu"]) == 0
    assert not read_image(out / "displacement_mm_0000.nii.gz").array.any()
    np.testing.assert_allclose(read_image(out / "score_0002.nii.gz").array, 0.5, atol=1e-6)
    np.testing.assert_array_equal(read_image(out / "score_0001.nii.gz").array, 1.0)


def test_register_cine_refuses_a_reference_outside_the_cine_and_leaves_nothing(tmp_path, cine_file, capsys):
    _, path = cine_file
    with pytest.raises(SystemExit):
        main(["adacs", "register-cine", str(path), "--out", str(tmp_path / "out"), "--reference-frame", "3"])
    assert "outside the cine's 3 frames" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
