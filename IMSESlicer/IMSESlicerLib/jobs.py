"""Long backend work outside Slicer's GUI thread: a child process running the ``imse`` command.

The child prints one ``IMSE-PROGRESS {json}`` line per update (``imse --progress json``); a
reader thread queues them, and the GUI drains the queue from a timer with :meth:`Job.poll`
(no Qt here, so this module is testable without Slicer). :meth:`Job.cancel` ends the whole
process group: SIGTERM first, which the ``imse`` command turns into a clean exit that removes
its staged outputs, then SIGKILL if it does not stop (on Windows, ``taskkill`` of the tree). :meth:`Job.wait` serves scripts and
tests.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import imse
from imse.errors import ImageError

PROGRESS_PREFIX = "IMSE-PROGRESS "


def python_executable() -> str:
    """Slicer's ``PythonSlicer`` when running inside Slicer, else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def _new_process_group() -> dict:
    """Popen options giving the child its own process group, so cancel reaches its children."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


@dataclass
class JobResult:
    """How a job ended: ``succeeded``; ``cancelled``; ``message`` (the last error line, if any);
    ``log``: every line the child wrote to stderr and its non-progress stdout lines;
    ``returncode``: the child's exit status."""

    succeeded: bool
    cancelled: bool
    message: str
    log: list[str] = field(default_factory=list)
    returncode: int | None = None


class Job:
    """One ``imse`` command in a child process (see the module docstring)."""

    def __init__(
        self,
        arguments: list[str],
        on_progress: Callable[[int, int, dict], None] | None = None,
        device: str | None = None,
    ) -> None:
        self.arguments = list(arguments)
        self.on_progress = on_progress
        self.device = device
        self.process: subprocess.Popen | None = None
        self.result: JobResult | None = None
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._log: list[str] = []
        self._cancelled = False

    def start(self) -> "Job":
        environment = dict(os.environ)
        backend_folder = str(Path(imse.__file__).resolve().parents[1])  # the folder holding imse/
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [backend_folder, environment.get("PYTHONPATH")]))
        environment["PYTHONUNBUFFERED"] = "1"
        if self.device == "cpu":
            environment["CUDA_VISIBLE_DEVICES"] = "-1"
        command = [python_executable(), "-m", "imse", "--progress", "json", *self.arguments]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            env=environment,
            **_new_process_group(),
        )
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            threading.Thread(target=self._read, args=(stream, name), daemon=True).start()
        return self

    def _read(self, stream, name: str) -> None:
        for line in stream:
            self._lines.put((name, line.rstrip("\n")))

    def poll(self) -> bool:
        """Deliver queued progress, and return True while the job runs (call it from a timer)."""
        if self.process is None:
            raise ImageError("The job was not started.")
        self._drain()
        if self.result is None and self.process.poll() is not None:
            self.process.wait()
            time.sleep(0.05)  # let the reader threads reach the end of the streams
            self._drain()
            code = self.process.returncode
            errors = [line for line in self._log if line.startswith("imse: error:")]
            message = errors[-1].removeprefix("imse: error: ") if errors else (self._log[-1] if self._log and code else "")
            self.result = JobResult(code == 0 and not self._cancelled, self._cancelled, message, list(self._log), code)
        return self.result is None

    def _drain(self) -> None:
        while True:
            try:
                name, line = self._lines.get_nowait()
            except queue.Empty:
                return
            if name == "stdout" and line.startswith(PROGRESS_PREFIX):
                update = json.loads(line[len(PROGRESS_PREFIX) :])
                if self.on_progress is not None:
                    self.on_progress(update["done"], update["total"], update["values"])
            else:
                self._log.append(line)

    def cancel(self, grace_seconds: float = 10.0) -> None:
        """Stop the job and every process it started. On POSIX the process group gets SIGTERM
        (the imse command then removes its staged outputs) and SIGKILL after
        ``grace_seconds``; on Windows ``taskkill /T /F`` ends the process tree at once (the
        caller's workspace folder holds anything it left)."""
        if self.process is None or self.process.poll() is not None:
            return
        self._cancelled = True
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.process.pid)], capture_output=True, check=False)
            self.process.wait()
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()

    def wait(self, poll_seconds: float = 0.1) -> JobResult:
        """Block until the job ends (for scripts and tests) and return how it ended."""
        while self.poll():
            time.sleep(poll_seconds)
        return self.result
