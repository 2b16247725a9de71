"""One long module operation: inputs written to a private folder, an ``imse`` command run on
them in a child process (:class:`jobs.Job`), and scene nodes made from its outputs only once
it has succeeded.

Nothing partial reaches the scene: a failed or cancelled run makes no nodes, and its folder
(inputs, staged outputs) is removed however the run ends. When CUDA runs out of memory the
command is run again on the CPU (with a note in the log), as DESIGN.md asks.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

from imse.errors import Cancelled, ImageError
from imse.image import Image, write_image

from .jobs import Job, JobResult

OUT_OF_MEMORY_STATUS = 3  # imse.cli.OUT_OF_MEMORY_STATUS (not imported: it would import torch)

Result = TypeVar("Result")


class Workspace:
    """A private temporary folder for one run's inputs and outputs."""

    def __init__(self, prefix: str = "imse-") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))

    def write(self, image: Image, name: str) -> str:
        """Write ``image`` as ``name``.nrrd (geometry kept) and return its path."""
        path = self.folder / f"{name}.nrrd"
        write_image(image, path)
        return str(path)

    def path(self, name: str) -> Path:
        return self.folder / name

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class CommandRun(Generic[Result]):
    """``imse <arguments>`` in a child process; ``collect(workspace)`` turns its outputs into
    nodes after success. Poll it from a timer (:meth:`poll`) or block with :meth:`wait`.

    ``device`` (auto, cuda, cpu) is passed as ``--device`` unless it is None (commands without
    one). ``on_progress(done, total, values)`` receives the command's progress updates;
    ``on_end(run)`` is called once the run has ended, however it ended (after ``collect``), e.g.
    to remove a live plot of a run that did not succeed.
    """

    def __init__(
        self,
        workspace: Workspace,
        arguments: list[str],
        collect: Callable[[Workspace], Result],
        device: str | None = "auto",
        on_progress: Callable[[int, int, dict], None] | None = None,
        on_end: Callable[["CommandRun[Result]"], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.arguments = list(arguments)
        self.collect = collect
        self.device = device
        self.on_progress = on_progress
        self.on_end = on_end
        self.job: Job | None = None
        self.result: Result | None = None
        self.error: str | None = None
        self.cancelled = False
        self.log: list[str] = []

    def start(self) -> "CommandRun[Result]":
        device_option = ["--device", self.device] if self.device else []
        self.job = Job([*self.arguments, *device_option], on_progress=self.on_progress, device=self.device).start()
        return self

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None or self.cancelled

    def poll(self) -> bool:
        """Deliver progress; return True while the run goes on."""
        if self.finished:
            return False
        if self.job.poll():
            return True
        self._ended(self.job.result)
        return not self.finished

    def _ended(self, outcome: JobResult) -> None:
        self.log.extend(outcome.log)
        if outcome.cancelled:
            self.cancelled = True
        elif outcome.returncode == OUT_OF_MEMORY_STATUS and self.device not in (None, "cpu"):
            self.log.append(f"The GPU ran out of memory; running again on the CPU ({outcome.message}).")
            self.device = "cpu"
            self.start()
            return
        elif not outcome.succeeded:
            self.error = outcome.message or "The imse command failed; see the log."
        else:
            try:
                self.result = self.collect(self.workspace)
            except ImageError as error:
                self.error = str(error)
        self.workspace.remove()
        if self.on_end is not None:
            self.on_end(self)

    def cancel(self) -> None:
        """Stop the command and everything it started; no node is made, the folder goes."""
        if self.job is not None and not self.finished:
            self.job.cancel()
            self.poll()

    def wait(self, poll_seconds: float = 0.1) -> Result:
        """Block until the run ends; return its result or raise ImageError / Cancelled."""
        while self.poll():
            time.sleep(poll_seconds)
        if self.cancelled:
            raise Cancelled("The run was cancelled.")
        if self.error is not None:
            raise ImageError(self.error)
        return self.result
