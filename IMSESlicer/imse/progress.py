"""Progress reporting and cancellation for iterative jobs (registration, AdaCS)."""

from __future__ import annotations

from typing import Callable

from .errors import Cancelled

#: ``progress(done, total, values)``: iterations done so far, the planned total, and the
#: latest named values (losses, level, ...).
Progress = Callable[[int, int, dict], None]


class IterationTracker:
    """Counts iterations for a progress callback, polls ``should_stop`` before each one (raising
    :class:`~imse.errors.Cancelled` with ``cancel_message``), and keeps every iteration's values."""

    def __init__(self, total: int, progress: Progress | None, should_stop: Callable[[], bool] | None, cancel_message: str) -> None:
        self.total, self.done, self.curve = total, 0, []
        self.progress, self.should_stop, self.cancel_message = progress, should_stop, cancel_message

    def step(self, values: dict) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(self.cancel_message)
        self.done += 1
        self.curve.append(values)
        if self.progress is not None:
            self.progress(self.done, self.total, values)

    def skip(self, count: int) -> None:
        """Account for iterations that were not needed (an early stop)."""
        self.done += count
