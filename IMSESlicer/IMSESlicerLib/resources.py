"""Where the extension's resources (UI files, icons, shipped models) are.

Installed, Resources/ lies beside the module files (qt-scripted-modules/Resources); run from
the source tree (IMSESlicer/ added to Slicer's additional module paths), it is the
repository's top-level Resources/, one folder up.
"""

from __future__ import annotations

from pathlib import Path

MODULES_FOLDER = Path(__file__).resolve().parents[1]


def resource_path(relative: str) -> str:
    """Absolute path of ``Resources/<relative>`` for the installed or the source-tree layout."""
    for root in (MODULES_FOLDER / "Resources", MODULES_FOLDER.parent / "Resources"):
        if (root / relative).exists():
            return str(root / relative)
    raise FileNotFoundError(f"Resources/{relative} is missing beside {MODULES_FOLDER}: reinstall the extension.")
