"""Module tests: each module's Logic against the real MRML scene, its panel in the Qt stand-in
of Slicer (offscreen), and its self-test. Screenshots of the panels go to test-output/."""

from pathlib import Path

import pytest

import slicer_standin  # on sys.path through Testing/conftest.py

slicer_standin.install()

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

