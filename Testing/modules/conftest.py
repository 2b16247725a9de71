"""Module tests: each module's Logic against the real MRML scene, its panel in the Qt stand-in
of Slicer (offscreen), and its self-test. Screenshots of the panels go to test-output/."""

import os
import sys
from pathlib import Path

import pytest

import slicer_standin  # on sys.path through Testing/conftest.py

slicer_standin.install()

EXIT_STATUS = pytest.StashKey[int]()
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture
def scene():
    """A fresh scene (slice views kept), closed again after the test."""
    import slicer

    slicer_standin.clear_scene()
    yield slicer.mrmlScene
    slicer_standin.clear_scene()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


def pytest_unconfigure(config):
    """End the process with pytest's own exit status once everything is reported.

    After a full run, Python's final clean-up can abort ("none_dealloc: deallocating None",
    exit 134) while it tears down PySide6 widgets and VTK objects that observe each other
    (the stand-in's node combo boxes observe the MRML scene); the order of that teardown is
    not ours to choose. Nothing is left to run or report at this point, so the process ends
    here, keeping the real outcome of the tests as its status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash.get(EXIT_STATUS, 0))
