"""Writing files so that a failure never leaves a truncated file in place of a good one."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` on a hidden file beside ``path`` (same extension, so writers
    that choose the format by extension still do) and rename it to ``path`` only when it
    succeeded; the temporary file is removed either way. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{path.name}")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
