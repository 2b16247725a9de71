"""CommandRun: nodes only after success, the folder removed however the run ends, and a rerun
on the CPU when CUDA runs out of memory (the imse command's exit status 3)."""

import pytest

from IMSESlicerLib import runs
from IMSESlicerLib.jobs import JobResult
from imse.errors import ImageError


class ScriptedJob:
    """A stand-in for jobs.Job that ends as told, recording the devices it was started on."""

    outcomes: list = []
    devices: list = []

    def __init__(self, arguments, on_progress=None, device=None):
        self.arguments, self.device, self.result = arguments, device, None

    def start(self):
        ScriptedJob.devices.append(self.device)
        self.result = ScriptedJob.outcomes.pop(0)
        return self

    def poll(self):
        return False


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(runs, "Job", ScriptedJob)
    ScriptedJob.devices = []
    return ScriptedJob


def test_out_of_memory_on_the_gpu_runs_again_on_the_cpu(scripted):
    scripted.outcomes = [JobResult(False, False, "the GPU ran out of memory", [], runs.OUT_OF_MEMORY_STATUS), JobResult(True, False, "", [], 0)]
    workspace = runs.Workspace()
    run = runs.CommandRun(workspace, ["register"], lambda folder: "nodes", device="cuda")
    assert run.start().wait() == "nodes"
    assert scripted.devices == ["cuda", "cpu"] and any("running again on the CPU" in line for line in run.log)
    assert not workspace.folder.exists()


def test_a_failed_run_makes_no_nodes_and_leaves_no_folder(scripted):
    scripted.outcomes = [JobResult(False, False, "the images do not overlap", [], 2)]
    collected = []
    workspace = runs.Workspace()
    run = runs.CommandRun(workspace, ["register"], collected.append, device="cpu")
    with pytest.raises(ImageError, match="do not overlap"):
        run.start().wait()
    assert collected == [] and scripted.devices == ["cpu"] and not workspace.folder.exists()
