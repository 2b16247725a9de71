"""The run settings every checkpointed training command shares (``imse train-evaluator`` and
``imse train-registration``): where the model goes, how long to train, how often to validate
and save, resuming, the seed, the device and the command line recorded in the model card."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError


def invoked_command() -> str:
    """This process's command line, for a model card. The ``imse`` command appears as ``imse``
    whether it ran as the installed script or as ``python -m imse`` (whose first argument is
    the path of ``imse/__main__.py``), so the card's command runs again on another machine."""
    program, *arguments = sys.argv or [""]
    path = Path(program)
    if path.name == "imse" or (path.name == "__main__.py" and path.parent.name == "imse"):
        program = "imse"
    return shlex.join([program, *arguments])


@dataclass(kw_only=True)
class TrainingRunSettings:
    """Attributes (keyword-only, so each training's own settings can follow in any order):
        out: folder of the model (``NAME.safetensors`` + ``NAME.json``) and its checkpoints.
        name: the model's name.
        batch_size: training samples per optimiser step.
        iterations: optimiser steps in all (a resumed run counts the steps already done).
        max_minutes: stop after the step that passes this wall time and write the model
            (``None``: run every iteration).
        learning_rate: Adam's.
        validation_pairs: held-out pairs validated on every ``validation_every`` steps.
        checkpoint_every: steps between checkpoints (``resume`` continues from the last one).
        seed: seeds the weights and the sampling.
        device: ``auto``, ``cuda`` or ``cpu``.
        command: the command line, for the model card (default: this process's).
    """

    out: Path
    name: str
    batch_size: int = 8
    iterations: int = 2000
    max_minutes: float | None = None
    learning_rate: float = 1e-4
    validation_pairs: int = 8
    validation_every: int = 100
    checkpoint_every: int = 200
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    command: str = ""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for count in ("batch_size", "iterations", "validation_pairs", "validation_every", "checkpoint_every"):
            if getattr(self, count) < 1:
                raise ImageError(f"{count} must be at least 1, got {getattr(self, count)}.")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ImageError(f"max_minutes must be a positive number of minutes, got {self.max_minutes}.")
        if not self.learning_rate > 0:
            raise ImageError(f"The learning rate must be positive, got {self.learning_rate}.")
        self.command = self.command or invoked_command()
