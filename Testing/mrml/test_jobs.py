"""The job runner: a real imse command in a child process, progress lines, cancel that leaves
nothing partial, and errors that reach the caller."""

import time

from IMSESlicerLib.jobs import Job
from imse.data import make_pair
from imse.image import read_image, write_image


def pair_files(folder):
    pair = make_pair(dim=2, moving_contrast="t2", seed=3)
    return write_image(pair.fixed, folder / "fixed.nrrd"), write_image(pair.moving, folder / "moving.nrrd"), pair


def test_a_registration_job_reports_progress_and_writes_its_outputs(tmp_path):
    fixed, moving, pair = pair_files(tmp_path)
    updates = []
    job = Job(["register", str(fixed), str(moving), "--out", str(tmp_path / "out"), "--levels", "1", "--iterations", "5"], on_progress=lambda done, total, values: updates.append((done, total)), device="cpu")
    result = job.start().wait()
    assert result.succeeded and not result.cancelled, result.log[-5:]
    assert [done for done, _ in updates] == list(range(1, 6)) and updates[-1][1] == 5
    assert read_image(tmp_path / "out" / "warped.nii.gz").geometry.isclose(pair.fixed.geometry)


def test_cancel_stops_the_process_and_leaves_nothing_partial(tmp_path):
    fixed, moving, _ = pair_files(tmp_path)
    updates = []
    job = Job(["register", str(fixed), str(moving), "--out", str(tmp_path / "out"), "--levels", "1", "--iterations", "100000", "--device", "cpu"], on_progress=lambda *update: updates.append(update))
    job.start()
    deadline = time.monotonic() + 120
    while not updates and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    assert updates, "the job never reported progress"
    job.cancel()
    result = job.wait()
    assert result.cancelled and not result.succeeded
    assert job.process.poll() is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.nrrd", "moving.nrrd"]  # no output, no staging folder


def test_a_failing_job_reports_the_clear_error(tmp_path):
    fixed, _, _ = pair_files(tmp_path)
    result = Job(["register", str(fixed), str(tmp_path / "missing.nrrd"), "--out", str(tmp_path / "out")]).start().wait()
    assert not result.succeeded and not result.cancelled
    assert "No such file" in result.message
